//! The controls of a study: masks drawn at random within a budget, over the whole network
//! ([`Selection::Random`]) or as the same fraction of every site ([`Selection::Uniform`]),
//! and [`FrozenMaskTraining`], which trains them as long as an SNL search trains. They are
//! the yardstick SNL's learned masks are measured against.
//!
//! Sampling is our own: one ChaCha8 key per mask element, elements taken in key order (ties,
//! which have probability about 2^-64, by position). A draw depends only on the seed and the
//! network, not on `rand`'s shuffle algorithm.

use candle::{Module, ModuleT, Tensor, Var};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::epoch::{Until, distill_epoch};
use crate::mask::{Masked, relu_count, relu_total};
use crate::optim::{Adam, AdamConfig, Optimizer, OptimizerState};
use crate::snl::{Batches, EpochReport, Observer, Phase, Plan};
use crate::{ConfigError, Error, Result};

/// A drawn (not learned) selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Mask elements in random order over the whole network, each kept while its ReLUs
    /// still fit the budget.
    Random,
    /// `floor(budget / total * elements)` random elements of every site.
    Uniform,
}

/// Sets every mask of `model` to a draw of `selection` within `budget` ReLUs (1 kept, 0
/// linear) and freezes the masks; returns the ReLUs kept. The same `(model, selection,
/// budget, seed)` always gives the same masks.
pub fn draw_masks<M: Masked + ?Sized>(
    model: &M,
    selection: Selection,
    budget: usize,
    seed: u64,
) -> Result<usize> {
    let total = relu_total(model);
    if total == 0 {
        return Err(ConfigError::NoMasks.into());
    }
    if budget == 0 {
        return Err(ConfigError::BudgetZero.into());
    }
    let masks = model.masks();
    let sizes: Vec<usize> = masks.iter().map(|m| m.alphas().elem_count()).collect();
    // ReLUs behind one mask element: 1 for a pixel mask, H * W for a channel mask.
    let cost: Vec<usize> = masks.iter().zip(&sizes).map(|(m, &n)| m.total_relus() / n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let keys: Vec<Vec<u64>> = sizes.iter().map(|&n| (0..n).map(|_| rng.next_u64()).collect()).collect();
    let mut keep: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![0.0; n]).collect();
    let mut kept = 0;
    match selection {
        Selection::Random => {
            let mut order: Vec<(u64, usize, usize)> = keys
                .iter()
                .enumerate()
                .flat_map(|(s, k)| k.iter().enumerate().map(move |(e, &key)| (key, s, e)))
                .collect();
            order.sort_unstable();
            for (_, s, e) in order {
                if kept + cost[s] <= budget {
                    keep[s][e] = 1.0;
                    kept += cost[s];
                }
            }
        }
        Selection::Uniform => {
            let fraction = budget as f64 / total as f64;
            for (s, site_keys) in keys.iter().enumerate() {
                let n = (fraction * site_keys.len() as f64).floor() as usize;
                let mut order: Vec<(u64, usize)> =
                    site_keys.iter().enumerate().map(|(e, &k)| (k, e)).collect();
                order.sort_unstable();
                for &(_, e) in order.iter().take(n) {
                    keep[s][e] = 1.0;
                }
                kept += n * cost[s];
            }
        }
    }
    for (mask, values) in masks.iter().zip(keep) {
        let alphas = mask.alphas();
        alphas.set(&Tensor::from_vec(values, alphas.shape(), alphas.device())?.to_dtype(alphas.dtype())?)?;
        mask.set_frozen(true);
    }
    Ok(kept)
}

/// The control arm of a fair study: the mask search's optimizer (Adam at the search rate)
/// and loss (CE + KD; the lasso of a frozen mask is a constant) for a given number of steps,
/// over a student whose masks are frozen at a drawn selection ([`crate::draw_masks`]). A
/// random or uniform selection trained this way, then finetuned, has had exactly the weight
/// updates of an SNL run whose search took as many steps (its last epoch may end early, at
/// the budget: so may this training's).
#[derive(Debug)]
pub struct FrozenMaskTraining {
    plan: Plan,
    adam: Adam,
    epoch: usize,
    steps_done: usize,
    steps: usize,
}

impl FrozenMaskTraining {
    /// `steps` optimizer steps over `vars` (in a fixed order if the state is to be resumed, as
    /// for [`MaskSearch::new`]); errors when a mask of `student` is not frozen
    /// ([`Error::MaskNotFrozen`]) or `plan` does not fit `student`.
    pub fn new<M: Masked + ?Sized>(plan: &Plan, student: &M, vars: Vec<Var>, steps: usize) -> Result<Self> {
        plan.verify(student)?;
        if let Some(mask) = student.masks().into_iter().find(|m| !m.is_frozen()) {
            return Err(Error::MaskNotFrozen { site: mask.site().to_string() });
        }
        let adam = Adam::new(vars, AdamConfig::with_lr(plan.config.search_lr));
        Ok(Self { plan: plan.clone(), adam, epoch: 0, steps_done: 0, steps })
    }

    /// Continues after `epoch` finished epochs and `steps_done` steps with the saved
    /// optimizer state.
    pub fn resume<M: Masked + ?Sized>(
        plan: &Plan,
        student: &M,
        vars: Vec<Var>,
        steps: usize,
        (epoch, steps_done): (usize, usize),
        optimizer: &OptimizerState,
    ) -> Result<Self> {
        let mut training = Self::new(plan, student, vars, steps)?;
        training.adam.load_state(optimizer)?;
        (training.epoch, training.steps_done) = (epoch, steps_done);
        Ok(training)
    }

    /// Epochs finished (the last may have been cut short).
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Steps taken.
    pub fn steps_done(&self) -> usize {
        self.steps_done
    }

    /// All its steps have run.
    pub fn finished(&self) -> bool {
        self.steps_done >= self.steps
    }

    /// Adam's state, keyed by each variable's position in `vars`.
    pub fn optimizer_state(&self) -> Result<OptimizerState> {
        Ok(self.adam.state()?)
    }

    /// One epoch, or what is left of the steps; the caller checks
    /// [`FrozenMaskTraining::finished`] first.
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
        let temperature = self.plan.config.temperature;
        let sums = distill_epoch(
            Phase::FrozenMask,
            epoch,
            student,
            teacher,
            temperature,
            batches,
            observer,
            &mut self.adam,
            Until { limit: self.steps.saturating_sub(self.steps_done), stop: None },
        )?;
        self.epoch += 1;
        self.steps_done += sums.batches;
        let count = relu_count(student, self.plan.config.threshold)?;
        let accuracy = observer.evaluate(student)?;
        let report =
            sums.report(Phase::FrozenMask, epoch, count, 0.0, false, self.adam.learning_rate(), accuracy);
        observer.on_epoch(&report);
        Ok(report)
    }
}
