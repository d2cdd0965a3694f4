//! Algorithm 1 of the paper, as the authors' code runs it: mask search with a growing lasso
//! coefficient, binarization, and finetuning with the masks frozen.
//!
//! Each phase is a small state machine that runs one epoch at a time, so a caller can save
//! its state between epochs and resume exactly; [`linearize`] runs the whole algorithm.

use candle::{Module, ModuleT, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::epoch::{Until, distill_epoch, run_batches, step_values};
use crate::loss::{cross_entropy, distillation, lasso};
use crate::mask::{Masked, binarize, relu_count, relu_total};
use crate::optim::{Adam, AdamConfig, LrSchedule, Optimizer, OptimizerState, Sgd, SgdConfig};
use crate::{ConfigError, Error, Result};

/// How many ReLUs the linearized network may keep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Budget {
    /// A number of ReLUs.
    Absolute(usize),
    /// A fraction of the network's ReLUs, in (0, 1): all of them is no linearization.
    Fraction(f64),
}

/// Algorithm 1's settings. [`SnlConfig::paper`] gives the authors' values;
/// [`SnlConfig::check`] validates them against a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnlConfig {
    /// ReLUs to keep: the search runs until the count is within it.
    pub budget: Budget,
    /// Initial lasso coefficient lambda.
    pub lasso: f64,
    /// Growth factor of lambda when the count stalls.
    pub kappa: f64,
    /// Epochs (from 0) before lambda may grow.
    pub warmup_epochs: usize,
    /// A mask element counts as a ReLU when `alphas > threshold`.
    pub threshold: f64,
    /// Adam learning rate of the mask search.
    pub search_lr: f64,
    /// Search epochs after which a count still above the budget is an error
    /// ([`Error::BudgetNotReached`]) rather than a run that never ends.
    pub max_search_epochs: usize,
    /// Distillation temperature T.
    pub temperature: f64,
    /// Epochs of finetuning after binarization (0: the binarized network as it is).
    pub finetune_epochs: usize,
    /// Finetuning optimizer; its rate follows a cosine over `finetune_epochs`.
    pub finetune: SgdConfig,
}

impl SnlConfig {
    /// The authors' defaults (REFERENCE §1: `snl_finetune_unstructured.py` as run by their
    /// scripts): lambda 1e-5, kappa 1.1 after 5 epochs, eps 1e-2, Adam 1e-3, at most 2000
    /// search epochs, T = 4, 100 finetuning epochs of SGD 1e-3, momentum 0.9, wd 5e-4.
    pub fn paper(budget: Budget) -> Self {
        Self {
            budget,
            lasso: 1e-5,
            kappa: 1.1,
            warmup_epochs: 5,
            threshold: 1e-2,
            search_lr: 1e-3,
            max_search_epochs: 2000,
            temperature: 4.0,
            finetune_epochs: 100,
            finetune: SgdConfig { lr: 1e-3, momentum: 0.9, weight_decay: 5e-4, nesterov: false },
        }
    }

    /// Validates every value for a network of `total` ReLUs and resolves the budget.
    pub fn check(self, total: usize) -> Result<Plan, ConfigError> {
        if total == 0 {
            return Err(ConfigError::NoMasks);
        }
        let budget = match self.budget {
            Budget::Absolute(b) => b,
            Budget::Fraction(f) if f > 0.0 && f < 1.0 => (f * total as f64).floor() as usize,
            Budget::Fraction(f) => return Err(ConfigError::FractionOutOfRange(f)),
        };
        if budget == 0 {
            return Err(ConfigError::BudgetZero);
        }
        if budget >= total {
            return Err(ConfigError::BudgetTooLarge { budget, total });
        }
        positive("lasso coefficient", self.lasso)?;
        positive("search learning rate", self.search_lr)?;
        positive("temperature", self.temperature)?;
        if !(self.kappa > 1.0 && self.kappa.is_finite()) {
            return Err(ConfigError::KappaTooSmall(self.kappa));
        }
        if !(0.0..1.0).contains(&self.threshold) {
            return Err(ConfigError::Threshold(self.threshold));
        }
        self.finetune.check("finetune learning rate", "finetune weight decay")?;
        if self.max_search_epochs == 0 {
            return Err(ConfigError::NoSearchEpochs);
        }
        Ok(Plan { config: self, budget, total })
    }
}

fn positive(name: &'static str, value: f64) -> Result<(), ConfigError> {
    if value > 0.0 && value.is_finite() { Ok(()) } else { Err(ConfigError::NotPositive { name, value }) }
}

/// A checked configuration with its budget resolved against the network. Its fields are
/// public (and it deserializes) so a run can save it; [`MaskSearch`] and [`Finetune`] check
/// again that it is what [`SnlConfig::check`] gives for their student.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub config: SnlConfig,
    /// ReLUs to keep at most.
    pub budget: usize,
    /// ReLUs of the network with every mask on.
    pub total: usize,
}

impl Plan {
    /// Errors unless checking this plan's configuration against `student` gives this plan.
    pub(crate) fn verify<M: Masked + ?Sized>(&self, student: &M) -> Result<(), ConfigError> {
        let fresh = self.config.clone().check(relu_total(student))?;
        if fresh == *self {
            Ok(())
        } else {
            Err(ConfigError::PlanMismatch {
                plan_budget: self.budget,
                plan_total: self.total,
                budget: fresh.budget,
                total: fresh.total,
            })
        }
    }
}

/// Errors unless every mask of `student` trains and its `alphas` are among `vars`:
/// otherwise the lasso never moves that mask, and the search runs to its epoch cap.
fn check_masks_train<M: Masked + ?Sized>(student: &M, vars: &[Var]) -> Result<()> {
    for mask in student.masks() {
        let site = mask.site().to_string();
        if mask.is_frozen() {
            return Err(Error::FrozenMask { site });
        }
        let id = mask.alphas().id();
        if !vars.iter().any(|v| v.id() == id) {
            return Err(Error::MaskNotInVars { site });
        }
    }
    Ok(())
}

/// Lambda's growth rule: after each search epoch, a new lowest count is recorded; otherwise,
/// once the warm-up is over, lambda is multiplied by kappa.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LassoSchedule {
    pub lambda: f64,
    pub lowest: usize,
    pub kappa: f64,
    pub warmup_epochs: usize,
}

impl LassoSchedule {
    pub fn new(plan: &Plan) -> Self {
        let c = &plan.config;
        Self { lambda: c.lasso, lowest: plan.total, kappa: c.kappa, warmup_epochs: c.warmup_epochs }
    }

    /// Records the count that search epoch `epoch` (from 0) ended with; true when lambda grew.
    pub fn after_epoch(&mut self, epoch: usize, count: usize) -> bool {
        if count < self.lowest {
            self.lowest = count;
            false
        } else if epoch >= self.warmup_epochs {
            self.lambda *= self.kappa;
            true
        } else {
            false
        }
    }
}

/// The two phases that train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Search,
    /// A control's stand-in for the search: its optimizer and loss with the masks frozen.
    FrozenMask,
    Finetune,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Search => "mask search",
            Phase::FrozenMask => "frozen-mask training",
            Phase::Finetune => "finetuning",
        })
    }
}

/// Batches for an epoch, supplied by the caller: snl-core does not know where data comes from.
pub trait Batches {
    /// The `(images, labels)` batches of epoch `epoch` (from 0) of a phase, in order.
    fn epoch(&mut self, epoch: usize) -> Box<dyn Iterator<Item = candle::Result<(Tensor, Tensor)>> + '_>;
}

/// The same batches every epoch.
impl Batches for Vec<(Tensor, Tensor)> {
    fn epoch(&mut self, _epoch: usize) -> Box<dyn Iterator<Item = candle::Result<(Tensor, Tensor)>> + '_> {
        Box::new(self.iter().map(|(x, y)| Ok((x.clone(), y.clone()))))
    }
}

/// Receives progress; the library itself never prints.
pub trait Observer<M: ?Sized> {
    /// After each optimizer step, with that batch's total loss.
    fn on_batch(&mut self, _phase: Phase, _epoch: usize, _batch: usize, _loss: f32) {}
    /// After each epoch: an accuracy (in [0, 1]) for the report, if the caller evaluates.
    fn evaluate(&mut self, _model: &M) -> candle::Result<Option<f64>> {
        Ok(None)
    }
    fn on_epoch(&mut self, _report: &EpochReport) {}
}

/// Observes nothing.
impl<M: ?Sized> Observer<M> for () {}

/// One epoch of a phase. Loss terms are means over the epoch's batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    pub phase: Phase,
    pub epoch: usize,
    pub batches: usize,
    pub ce: f64,
    pub kd: f64,
    /// Sum of `|alphas|` (search only; 0 while finetuning).
    pub lasso: f64,
    /// The optimized loss: `ce + kd + lambda * lasso` (search) or `ce + kd` (finetune).
    pub loss: f64,
    /// Top-1 accuracy on the epoch's training batches, in [0, 1].
    pub train_accuracy: f64,
    /// ReLUs kept at the threshold after the epoch.
    pub relu_count: usize,
    /// Lambda used during the epoch (search only).
    pub lambda: f64,
    /// Whether lambda grew after this epoch.
    pub lambda_grew: bool,
    pub lr: f64,
    /// The caller's evaluation, when it evaluates.
    pub accuracy: Option<f64>,
}

/// Where the mask search stands between epochs: all a resumed run needs besides the
/// weights and the optimizer state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchState {
    /// Epochs finished; the last may have ended early, at the budget.
    pub epoch: usize,
    /// Optimizer steps taken (0 in a state saved before steps were counted).
    #[serde(default)]
    pub steps: usize,
    pub schedule: LassoSchedule,
    /// Count after the last finished epoch (the total before the first).
    pub count: usize,
}

/// Algorithm 1, lines 4-10: Adam over weights and masks on `CE + KD + lambda * lasso`.
#[derive(Debug)]
pub struct MaskSearch {
    plan: Plan,
    adam: Adam,
    state: SearchState,
}

impl MaskSearch {
    /// A search of `student` over `vars`: every trainable variable of the student, masks
    /// included, in a fixed order (e.g. sorted by name) if its state is to be resumed, since
    /// optimizer state is matched to variables by position. Errors when `plan` is not what
    /// its configuration gives for `student` ([`ConfigError::PlanMismatch`]), or when a mask
    /// cannot train ([`Error::FrozenMask`], [`Error::MaskNotInVars`]).
    pub fn new<M: Masked + ?Sized>(plan: &Plan, student: &M, vars: Vec<Var>) -> Result<Self> {
        let state = SearchState { epoch: 0, steps: 0, schedule: LassoSchedule::new(plan), count: plan.total };
        Self::with_state(plan, student, vars, state)
    }

    /// Continues a search saved with [`MaskSearch::state`] and [`MaskSearch::optimizer_state`],
    /// checked as [`MaskSearch::new`]. `vars` must be in the order they had when the state was
    /// saved (e.g. sorted by name both times; `VarMap::all_vars()` is in hash order, which
    /// differs between processes): state whose shapes do not fit is an error, but variables
    /// of one shape in another order would silently swap their moments.
    pub fn resume<M: Masked + ?Sized>(
        plan: &Plan,
        student: &M,
        vars: Vec<Var>,
        state: SearchState,
        optimizer: &OptimizerState,
    ) -> Result<Self> {
        let mut search = Self::with_state(plan, student, vars, state)?;
        search.adam.load_state(optimizer)?;
        Ok(search)
    }

    fn with_state<M: Masked + ?Sized>(
        plan: &Plan,
        student: &M,
        vars: Vec<Var>,
        state: SearchState,
    ) -> Result<Self> {
        plan.verify(student)?;
        check_masks_train(student, &vars)?;
        let adam = Adam::new(vars, AdamConfig::with_lr(plan.config.search_lr));
        Ok(Self { plan: plan.clone(), adam, state })
    }

    /// Where the search stands, to save between epochs.
    pub fn state(&self) -> &SearchState {
        &self.state
    }

    /// Adam's state, keyed by each variable's position in `vars` (see [`MaskSearch::resume`]).
    pub fn optimizer_state(&self) -> Result<OptimizerState> {
        Ok(self.adam.state()?)
    }

    /// The count is within the budget: the search is over.
    pub fn reached_budget(&self) -> bool {
        self.state.count <= self.plan.budget
    }

    /// One search epoch, ended early at the first step whose count is within the budget,
    /// then the count and lambda's update.
    pub fn run_epoch<M, T, B, O>(
        &mut self,
        student: &M,
        teacher: &T,
        batches: &mut B,
        observer: &mut O,
    ) -> Result<EpochReport>
    where
        M: ModuleT + Masked,
        T: Module,
        B: Batches + ?Sized,
        O: Observer<M> + ?Sized,
    {
        let epoch = self.state.epoch;
        let lambda = self.state.schedule.lambda;
        let temperature = self.plan.config.temperature;
        let (budget, threshold) = (self.plan.budget, self.plan.config.threshold);
        // The count is checked after every step, so that a search whose count falls fast
        // (a large lambda) ends at its budget rather than far below it at the epoch's end.
        let within_budget = move || Ok(relu_count(student, threshold)? <= budget);
        let until = Until { limit: usize::MAX, stop: Some(Box::new(within_budget)) };
        let sums = run_batches(Phase::Search, epoch, batches, observer, until, |x, y| {
            let logits = student.forward_t(x, true)?;
            let target = teacher.forward(x)?.detach();
            let terms =
                [cross_entropy(&logits, y)?, distillation(&logits, &target, temperature)?, lasso(student)?];
            let loss = (&terms[0] + &terms[1])?.add(&terms[2].affine(lambda, 0.0)?)?;
            let values = step_values(&loss, &terms, &logits, y)?;
            if values.loss.is_finite() {
                self.adam.step(&loss.backward()?)?;
            }
            Ok(values)
        })
        .map_err(|mut err| {
            // The terms alone may be finite: the loss weighs the lasso by lambda.
            if let Error::NonFiniteLoss { lambda: weight, .. } = &mut err {
                *weight = Some(lambda);
            }
            err
        })?;
        let count = relu_count(student, self.plan.config.threshold)?;
        let lambda_grew = self.state.schedule.after_epoch(epoch, count);
        self.state.epoch += 1;
        self.state.steps += sums.batches;
        self.state.count = count;
        let accuracy = observer.evaluate(student)?;
        let report = sums.report(
            Phase::Search,
            epoch,
            count,
            lambda,
            lambda_grew,
            self.adam.learning_rate(),
            accuracy,
        );
        observer.on_epoch(&report);
        Ok(report)
    }

    /// Runs epochs until the count is within the budget; a typed error when the epoch cap
    /// passes first. Returns the last epoch's report (none when no epoch was needed).
    pub fn run<M, T, B, O>(
        &mut self,
        student: &M,
        teacher: &T,
        batches: &mut B,
        observer: &mut O,
    ) -> Result<Option<EpochReport>>
    where
        M: ModuleT + Masked,
        T: Module,
        B: Batches + ?Sized,
        O: Observer<M> + ?Sized,
    {
        let mut last = None;
        while !self.reached_budget() {
            if self.state.epoch >= self.plan.config.max_search_epochs {
                return Err(Error::BudgetNotReached {
                    epochs: self.state.epoch,
                    count: self.state.count,
                    budget: self.plan.budget,
                    lambda: self.state.schedule.lambda,
                });
            }
            last = Some(self.run_epoch(student, teacher, batches, observer)?);
        }
        Ok(last)
    }
}

/// Algorithm 1, line 12: SGD with momentum and weight decay, cosine-annealed, on `CE + KD`
/// with every mask binarized and frozen.
#[derive(Debug)]
pub struct Finetune {
    plan: Plan,
    sgd: Sgd,
    schedule: LrSchedule,
    epoch: usize,
}

impl Finetune {
    /// Binarizes and freezes the student's masks (idempotent on binary masks), then
    /// prepares SGD over `vars`; frozen masks take no gradient and so are never stepped.
    /// `vars` in a fixed order (e.g. sorted by name) if the state is to be resumed, as for
    /// [`MaskSearch::new`]; errors, before binarizing, when `plan` is not what its
    /// configuration gives for `student`.
    pub fn new<M: Masked + ?Sized>(plan: &Plan, student: &M, vars: Vec<Var>) -> Result<Self> {
        plan.verify(student)?;
        binarize(student, plan.config.threshold)?;
        let schedule = LrSchedule::Cosine { epochs: plan.config.finetune_epochs, min_lr: 0.0 };
        let sgd = Sgd::new(vars, plan.config.finetune);
        Ok(Self { plan: plan.clone(), sgd, schedule, epoch: 0 })
    }

    /// Continues after `epoch` finished epochs with the saved optimizer state, `vars` in the
    /// order they had when it was saved (see [`MaskSearch::resume`]).
    pub fn resume<M: Masked + ?Sized>(
        plan: &Plan,
        student: &M,
        vars: Vec<Var>,
        epoch: usize,
        optimizer: &OptimizerState,
    ) -> Result<Self> {
        let mut finetune = Self::new(plan, student, vars)?;
        finetune.sgd.load_state(optimizer)?;
        finetune.epoch = epoch;
        Ok(finetune)
    }

    /// Epochs finished.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// All `finetune_epochs` have run.
    pub fn finished(&self) -> bool {
        self.epoch >= self.plan.config.finetune_epochs
    }

    /// SGD's momentum buffers, keyed by each variable's position in `vars`.
    pub fn optimizer_state(&self) -> OptimizerState {
        self.sgd.state()
    }

    /// One finetuning epoch at this epoch's cosine learning rate. It does not stop at
    /// `finetune_epochs`: the caller checks [`Finetune::finished`].
    pub fn run_epoch<M, T, B, O>(
        &mut self,
        student: &M,
        teacher: &T,
        batches: &mut B,
        observer: &mut O,
    ) -> Result<EpochReport>
    where
        M: ModuleT + Masked,
        T: Module,
        B: Batches + ?Sized,
        O: Observer<M> + ?Sized,
    {
        let epoch = self.epoch;
        let lr = self.schedule.lr(self.plan.config.finetune.lr, epoch);
        self.sgd.set_learning_rate(lr);
        let temperature = self.plan.config.temperature;
        let sums = distill_epoch(
            Phase::Finetune,
            epoch,
            student,
            teacher,
            temperature,
            batches,
            observer,
            &mut self.sgd,
            Until::epoch_end(),
        )?;
        self.epoch += 1;
        let count = relu_count(student, self.plan.config.threshold)?;
        let accuracy = observer.evaluate(student)?;
        let report = sums.report(Phase::Finetune, epoch, count, 0.0, false, lr, accuracy);
        observer.on_epoch(&report);
        Ok(report)
    }
}

/// What [`linearize`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Linearized {
    pub plan: Plan,
    /// Search epochs, the last perhaps cut short at the budget.
    pub search_epochs: usize,
    /// Optimizer steps of the search: what a control trains to match it.
    pub search_steps: usize,
    /// Lambda when the search stopped.
    pub lambda: f64,
    /// ReLUs kept by the binarized, finetuned network.
    pub relu_count: usize,
    pub finetune_epochs: usize,
    /// The last finetuning epoch's report, or the last search epoch's when `finetune_epochs`
    /// is 0.
    pub last: Option<EpochReport>,
}

/// Algorithm 1 end to end: linearizes `student` (whose trainable variables, masks included,
/// are `vars`) to the configured budget against the frozen `teacher`, in place. Errors as
/// [`MaskSearch::new`] when a mask cannot train.
pub fn linearize<M, T, B, O>(
    student: &M,
    vars: Vec<Var>,
    teacher: &T,
    batches: &mut B,
    config: SnlConfig,
    observer: &mut O,
) -> Result<Linearized>
where
    M: ModuleT + Masked,
    T: Module,
    B: Batches + ?Sized,
    O: Observer<M> + ?Sized,
{
    let plan = config.check(relu_total(student))?;
    let mut search = MaskSearch::new(&plan, student, vars.clone())?;
    let mut last = search.run(student, teacher, batches, observer)?;
    let mut finetune = Finetune::new(&plan, student, vars)?;
    while !finetune.finished() {
        last = Some(finetune.run_epoch(student, teacher, batches, observer)?);
    }
    Ok(Linearized {
        search_epochs: search.state().epoch,
        search_steps: search.state().steps,
        lambda: search.state().schedule.lambda,
        relu_count: relu_count(student, plan.config.threshold)?,
        finetune_epochs: finetune.epoch(),
        last,
        plan,
    })
}
