//! `snl linearize`: Algorithm 1 (mask search, binarize, finetune) with the given model as
//! the frozen teacher, or a baseline selection (random, uniform per site) with the same
//! finetuning. Checkpoints after every epoch; `--resume` continues exactly.

mod checks;

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use candle::Tensor;
use serde::{Deserialize, Serialize};
use snl_core::{
    EpochReport, Finetune, FrozenMaskTraining, MaskSearch, Masked, Observer, Phase, Plan, SearchState,
    SnlConfig,
};
use snl_models::{Model, ModelConfig, params};

use super::{Context, KEPT_BEST_VAL, KEPT_LAST, RunResult, check_fits, model_split};
use crate::cli::{LinearizeArgs, Selection};
use crate::data::{self, DataConfig, Metrics, Splits, TrainBatches};
use crate::model::{self, keys, metadata};
use crate::run::{self, RunDir};
use crate::setup::usage;
use checks::{check_frozen_mask_epochs, check_new_cap, check_train_size, config_error};

/// Everything a linearization depends on: written to `config.json`, read back on resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinearizeConfig {
    /// The pretrained model: the teacher, and the student's starting point.
    pub teacher: PathBuf,
    pub model: ModelConfig,
    pub data: DataConfig,
    pub snl: SnlConfig,
    pub selection: Selection,
    /// The run's seed: data order, augmentation, and the random/uniform draw.
    pub seed: u64,
    /// The validation split's seed: on the teacher's own data, the one it was selected on.
    /// Absent in runs made before the two were told apart (then `seed`).
    #[serde(default)]
    pub split_seed: Option<u64>,
    /// random/uniform: epochs of frozen-mask training (the search's optimizer and loss)
    /// before finetuning, to match an SNL run's search.
    #[serde(default)]
    pub frozen_mask_epochs: usize,
    /// random/uniform: the same in optimizer steps (`--search-steps`; replaces the epochs).
    #[serde(default)]
    pub frozen_mask_steps: Option<usize>,
    /// At the search-epoch cap above the budget: binarize and finetune anyway (else an error).
    #[serde(default)]
    pub finish_at_cap: bool,
    /// Images of the training split the run started with, as runs recorded it before
    /// `data.train_images` (which replaces it): still checked on their resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_size: Option<usize>,
}

/// The `config.json` keys a resume may change (`--max-search-epochs`, `--finish-at-cap`): a
/// resume writes them before its next checkpoint, so the checkpoint's copy of the
/// configuration may hold the old values, which must not make the run unresumable. They only
/// say how a search at its cap ends, so the run continues exactly either way.
const RESUME_MAY_CHANGE: &[&str] = &["snl.max_search_epochs", "finish_at_cap"];

impl LinearizeConfig {
    fn split_seed(&self) -> u64 {
        self.split_seed.unwrap_or(self.seed)
    }
}

/// Where the run stands between epochs: each phase with the state it resumes from
/// ([`Phase`] only names them).
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Stage {
    Search(SearchState),
    /// A control's frozen-mask epochs finished (its masks are in the checkpoint).
    FrozenMask {
        epoch: usize,
        #[serde(default)]
        steps: usize,
    },
    Finetune {
        /// Search or frozen-mask epochs before the finetuning, and their steps.
        search_epochs: usize,
        #[serde(default)]
        search_steps: usize,
        /// Lambda when the search stopped (snl only).
        #[serde(default)]
        lambda_final: Option<f64>,
        epoch: usize,
        best_epoch: Option<usize>,
        best_val_top1: f64,
    },
}

impl Stage {
    /// A checkpoint written before steps were counted holds 0 steps; it ran whole epochs of
    /// `per_epoch` steps only (an epoch has at least one step, so 0 after an epoch is old).
    fn count_steps_of_old_checkpoints(&mut self, per_epoch: usize) {
        match self {
            Stage::Search(s) if s.steps == 0 => s.steps = s.epoch.saturating_mul(per_epoch),
            Stage::FrozenMask { epoch, steps } if *steps == 0 => *steps = epoch.saturating_mul(per_epoch),
            Stage::Finetune { search_epochs, search_steps, .. } if *search_steps == 0 => {
                *search_steps = search_epochs.saturating_mul(per_epoch)
            }
            _ => {}
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LinearizeState {
    stage: Stage,
    /// Metric lines written for finished epochs (all phases).
    records: usize,
    seconds: f64,
}

#[derive(Serialize)]
struct EpochRecord<'a> {
    #[serde(flatten)]
    report: &'a EpochReport,
    val: Option<Metrics>,
    seconds: f64,
}

/// Seed of the random/uniform draw: the run's seed, on a stream of its own.
fn draw_seed(seed: u64) -> u64 {
    seed ^ 0x5e1ec7
}

pub fn run(ctx: &Context, args: LinearizeArgs) -> Result<()> {
    let ctx = &ctx.stopping_after(args.stop_after_epochs);
    let (config, run, splits) = match &args.resume {
        Some(dir) => {
            let run = RunDir::open(dir, RESUME_MAY_CHANGE)?;
            let mut config = run.read_config::<LinearizeConfig>("linearize")?;
            ctx.recorded_seed(config.seed, dir, "a resumed run keeps its own")?;
            // The two settings a resume may change: how a search that reached its cap ends.
            let before = (config.snl.max_search_epochs, config.finish_at_cap);
            if let Some(cap) = args.max_search_epochs {
                check_new_cap(&run, cap)?;
                config.snl.max_search_epochs = cap;
            }
            config.finish_at_cap |= args.finish_at_cap;
            let splits = Splits::load(&config.data, config.split_seed(), &ctx.ui)
                .with_context(|| dir.display().to_string())?;
            check_train_size(&config, &splits, dir)?;
            check_frozen_mask_epochs(&config, &splits, &ctx.device)?;
            if (config.snl.max_search_epochs, config.finish_at_cap) != before {
                run.write_json(run::CONFIG, &config)?;
            }
            (config, run, splits)
        }
        None => {
            let model_path = args.model.as_ref().context("--model is required")?;
            let budget = args.budget.context("--budget is required")?;
            if args.selection == Selection::Snl {
                for (flag, given) in
                    [("--search-epochs", args.search_epochs), ("--search-steps", args.search_steps)]
                {
                    if given.is_some() {
                        return Err(usage(format!(
                            "{flag} is for --selection random or uniform: an snl search runs until the budget"
                        )));
                    }
                }
            }
            let frozen_mask_epochs = args.search_epochs.unwrap_or(0);
            let teacher = model::load(model_path, &args.model_args, &ctx.device)?;
            let snl = SnlConfig {
                budget,
                lasso: args.lasso,
                kappa: args.kappa,
                warmup_epochs: args.warmup_epochs,
                threshold: args.threshold,
                search_lr: args.search_lr,
                max_search_epochs: args
                    .max_search_epochs
                    .unwrap_or(SnlConfig::paper(budget).max_search_epochs),
                temperature: args.temperature,
                finetune_epochs: args.finetune_epochs,
                finetune: snl_core::optim::SgdConfig {
                    lr: args.finetune_lr,
                    momentum: args.finetune_momentum,
                    weight_decay: args.finetune_weight_decay,
                    nesterov: false,
                },
            };
            // Every value is checked before any data is read (but --val-size against the split
            // of a teacher trained on a folder: that needs the folder's size).
            let total = snl_core::relu_total(&teacher.frozen(&ctx.device)?);
            snl.clone().check(total).map_err(|e| config_error(&e, &snl, model_path))?;
            let mut data =
                DataConfig::from_args(&args.data, 128, teacher.dataset_or(args.data.dataset, model_path)?)?;
            // The validation split is the teacher's own (on its data); --seed moves only
            // this run's data order and draws.
            let unchecked = Context { seed_given: false, device: ctx.device.clone(), ..*ctx };
            let split_seed = model_split(
                &unchecked,
                &teacher,
                model_path,
                &mut data,
                args.data.val_size,
                "linearize keeps",
            )?;
            let seed = if ctx.seed_given { ctx.seed } else { split_seed };
            let splits = Splits::load(&data, split_seed, &ctx.ui)?;
            // The size held out, which differs from the teacher's where this is other data.
            data.val_size = splits.val.as_ref().map_or(0, |val| val.len());
            data.train_images = splits.train_images;
            data.recorded_split = None;
            check_fits(model_path.display(), &teacher.config, data.dataset, &splits)?;
            // Warnings once every check has passed: a refused run prints one error line.
            splits.warn_caution(&ctx.ui);
            super::warn_cautions(ctx, &teacher, model_path)?;
            if args.selection == Selection::Snl && snl.warmup_epochs >= snl.max_search_epochs {
                ctx.ui.warn(format!(
                    "--warmup-epochs {} is not below the search cap of {} epochs: lambda stays at {:e} \
                     (--kappa {} never applies), so the search must reach the budget with it alone",
                    snl.warmup_epochs, snl.max_search_epochs, snl.lasso, snl.kappa
                ));
            }
            let config = LinearizeConfig {
                teacher: std::path::absolute(model_path)?,
                model: teacher.config.clone(),
                data,
                snl,
                selection: args.selection,
                seed,
                split_seed: Some(split_seed),
                frozen_mask_epochs,
                frozen_mask_steps: args.search_steps,
                finish_at_cap: args.finish_at_cap,
                train_size: None,
            };
            check_frozen_mask_epochs(&config, &splits, &ctx.device)?;
            let out = args.out.as_ref().context("--out is required")?;
            let run = RunDir::create(out)?;
            run.write_json(run::CONFIG, &config)?;
            (config, run, splits)
        }
    };
    let result = linearize(ctx, &config, &splits, &run)?;
    ctx.ui.result(format!(
        "{} of {} ReLUs kept (budget {}): {}test top-1 {:.2}%; run folder {}",
        result.relu_count,
        result.relu_total,
        result.budget.unwrap_or(0),
        result.val.map_or("no validation split, ".into(), |m| format!("val top-1 {:.2}%, ", m.top1)),
        result.test.top1,
        run.root().display()
    ))
}

/// Evaluates on the validation split (when there is one) after every epoch.
struct Progress<'a> {
    ctx: &'a Context,
    splits: &'a Splits,
    batch_size: usize,
    last_val: Option<Metrics>,
}

impl Observer<Model> for Progress<'_> {
    fn evaluate(&mut self, model: &Model) -> candle::Result<Option<f64>> {
        self.last_val = self
            .splits
            .evaluate_val(model, self.batch_size, &self.ctx.device)
            .map_err(candle::Error::wrap)?;
        Ok(self.last_val.map(|m| m.top1 / 100.0))
    }
}

/// Runs (or continues) the linearization of `run`; writes the models and `result.json`.
pub fn linearize(
    ctx: &Context,
    config: &LinearizeConfig,
    splits: &Splits,
    run: &RunDir,
) -> Result<RunResult> {
    let teacher_file = model::load(&config.teacher, &Default::default(), &ctx.device)
        .with_context(|| format!("cannot load the teacher {}", config.teacher.display()))?;
    let teacher = teacher_file.frozen(&ctx.device)?;
    let (student, vars) = teacher_file.trainable(&ctx.device)?;
    let plan = config.snl.clone().check(snl_core::relu_total(&student))?;
    let mut state =
        LinearizeState { stage: Stage::Search(fresh_search_state(&plan)), records: 0, seconds: 0.0 };
    let saved = run.load_checkpoint(&ctx.device, |saved: &LinearizeState| logged(config, saved))?;
    let mut optimizer = Default::default();
    if let Some((tensors, opt, s)) = saved {
        snl_models::checkpoint::load_into(&vars, &tensors)
            .context("the run's checkpoint does not fit its model")?;
        optimizer = opt;
        state = s;
        ctx.ui.say(format!("resuming {} after {} epochs", run.root().display(), state.records));
        if let Some(warning) = run.numerics_changed()? {
            ctx.ui.warn(warning);
        }
    } else if run.resumed() {
        ctx.ui.say(format!("{} has no checkpoint yet: starting from the first epoch", run.root().display()));
    }
    let teacher_forward = |x: &Tensor| candle::ModuleT::forward_t(&teacher, x, false);
    let mut progress = Progress { ctx, splits, batch_size: config.data.batch_size, last_val: None };
    let data_meta = config.data.metadata()?;
    let meta = |count: usize| {
        let mut extra = data_meta.clone();
        extra.extend([
            // The split's seed: what `eval` needs to rebuild the validation split.
            (keys::SEED, config.split_seed().to_string()),
            (keys::THRESHOLD, config.snl.threshold.to_string()),
            (keys::RELU_COUNT, count.to_string()),
            (keys::RELU_TOTAL, plan.total.to_string()),
        ]);
        metadata(&config.model, &extra)
    };
    let mut batches = TrainBatches::new(&splits.train, config.data.batch_size, config.seed, &ctx.device)?;
    state.stage.count_steps_of_old_checkpoints(batches.len());
    // One epoch of any phase: progress, the metrics line, the checkpoint, `--stop-after-epochs`.
    let finish_epoch = |state: &mut LinearizeState,
                        report: &EpochReport,
                        val: Option<Metrics>,
                        seconds: f64,
                        optimizer: &snl_core::optim::OptimizerState,
                        stage: Stage,
                        last: bool|
     -> Result<()> {
        log_epoch(ctx, run, report, val, seconds, plan.budget)?;
        state.records += 1;
        state.seconds += seconds;
        state.stage = stage;
        run.save_checkpoint(&vars, optimizer, &meta(report.relu_count), &*state)?;
        if !last {
            ctx.check_stop(state.records, run)?;
        }
        Ok(())
    };

    // Mask search; or a control's draw and its frozen-mask epochs.
    let mut lambda_final = None;
    if let Stage::Search(search_state) = &state.stage {
        match config.selection {
            Selection::Snl => {
                let mut search = if state.records == 0 {
                    MaskSearch::new(&plan, &student, params::trainable_vars(&vars))?
                } else {
                    MaskSearch::resume(
                        &plan,
                        &student,
                        params::trainable_vars(&vars),
                        search_state.clone(),
                        &optimizer,
                    )?
                };
                while !search.reached_budget() {
                    let reached = search.state();
                    if reached.epoch >= plan.config.max_search_epochs {
                        let err = snl_core::Error::BudgetNotReached {
                            epochs: reached.epoch,
                            count: reached.count,
                            budget: plan.budget,
                            lambda: reached.schedule.lambda,
                        };
                        if !config.finish_at_cap {
                            // The cause first, then what to do about it.
                            anyhow::bail!(
                                "{err}; continue with `snl linearize --resume {} --max-search-epochs N` (a \
                                 larger N, or --lasso/--search-lr in a new run), or end it as the authors \
                                 do with `--resume {} --finish-at-cap`",
                                run.root().display(),
                                run.root().display()
                            );
                        }
                        ctx.ui.say(format!("{err}: binarizing and finetuning anyway (--finish-at-cap)"));
                        break;
                    }
                    let started = std::time::Instant::now();
                    batches.set_bar(ctx.ui.bar(batches.len(), format!("search epoch {}", reached.epoch + 1)));
                    let report = search
                        .run_epoch(&student, &teacher_forward, &mut batches, &mut progress)
                        .map_err(|e| nan_context(e, run, state.records))?;
                    batches.finish_bar();
                    let stage = Stage::Search(search.state().clone());
                    let seconds = started.elapsed().as_secs_f64();
                    finish_epoch(
                        &mut state,
                        &report,
                        progress.last_val,
                        seconds,
                        &search.optimizer_state()?,
                        stage,
                        false,
                    )?;
                }
                lambda_final = Some(search.state().schedule.lambda);
                state.stage = finetune_stage(search.state().epoch, search.state().steps, lambda_final);
            }
            control => {
                let selection = match control {
                    Selection::Random => snl_core::Selection::Random,
                    _ => snl_core::Selection::Uniform,
                };
                let kept = snl_core::draw_masks(&student, selection, plan.budget, draw_seed(config.seed))?;
                ctx.ui.say(format!(
                    "{selection:?} draw: {kept} of {} ReLUs kept (budget {})",
                    plan.total, plan.budget
                ));
                state.stage = if frozen_mask_steps(config, batches.len()) > 0 {
                    Stage::FrozenMask { epoch: 0, steps: 0 }
                } else {
                    finetune_stage(0, 0, None)
                };
            }
        }
        optimizer = Default::default();
    }

    // A control's frozen-mask epochs: the search's training with the drawn masks.
    if let Stage::FrozenMask { epoch, steps } = state.stage {
        // A resumed control's masks came back from the checkpoint as trainable variables.
        student.masks().iter().for_each(|m| m.set_frozen(true));
        let vars_list = params::trainable_vars(&vars);
        let total = frozen_mask_steps(config, batches.len());
        // A checkpoint in this stage has steps left (the last frozen-mask epoch writes the
        // finetuning's): not so after an edit of the configuration and the checkpoint.
        if steps >= total {
            bail!(
                "{}: its checkpoint has {steps} frozen-mask steps done, but the run's configuration asks for {total} \
                 in all (edited?); start a new run",
                run.root().display()
            );
        }
        let mut training =
            FrozenMaskTraining::resume(&plan, &student, vars_list, total, (epoch, steps), &optimizer)?;
        while !training.finished() {
            let started = std::time::Instant::now();
            batches.set_bar(ctx.ui.bar(batches.len(), format!("frozen-mask epoch {}", training.epoch() + 1)));
            let report = training
                .run_epoch(&student, &teacher_forward, &mut batches, &mut progress)
                .map_err(|e| nan_context(e, run, state.records))?;
            batches.finish_bar();
            let stage = if training.finished() {
                finetune_stage(training.epoch(), training.steps_done(), None)
            } else {
                Stage::FrozenMask { epoch: training.epoch(), steps: training.steps_done() }
            };
            let seconds = started.elapsed().as_secs_f64();
            finish_epoch(
                &mut state,
                &report,
                progress.last_val,
                seconds,
                &training.optimizer_state()?,
                stage,
                false,
            )?;
        }
        optimizer = Default::default();
    }

    // Binarize, then finetune with the masks frozen.
    let Stage::Finetune {
        search_epochs,
        search_steps,
        lambda_final: saved_lambda,
        epoch: done,
        mut best_epoch,
        mut best_val_top1,
    } = state.stage.clone()
    else {
        bail!(
            "{}: the run's phases ended before its finetuning (a bug, or an edited checkpoint)",
            run.root().display()
        );
    };
    let lambda_final = lambda_final.or(saved_lambda);
    let mut finetune = Finetune::resume(&plan, &student, params::trainable_vars(&vars), done, &optimizer)?;
    let count = snl_core::relu_count(&student, plan.config.threshold)?;
    if done == 0 && best_epoch.is_none() {
        // The binarized model is the best so far (and the result when nothing is finetuned).
        run.save_model(run::BEST, &vars, &meta(count))?;
        ctx.ui.say(format!("binarized: {count} of {} ReLUs kept (budget {})", plan.total, plan.budget));
    }
    // Finetuning's data order is a stream of its own (seed + 1), as before the phases above
    // shared one loader.
    let mut batches =
        TrainBatches::new(&splits.train, config.data.batch_size, config.seed.wrapping_add(1), &ctx.device)?;
    while !finetune.finished() {
        let started = std::time::Instant::now();
        batches.set_bar(ctx.ui.bar(batches.len(), format!("finetune epoch {}", finetune.epoch() + 1)));
        let report = finetune
            .run_epoch(&student, &teacher_forward, &mut batches, &mut progress)
            .map_err(|e| nan_context(e, run, state.records))?;
        batches.finish_bar();
        let val = progress.last_val;
        // Without a validation split every epoch replaces the last: the last one is kept.
        if val.is_none_or(|m| best_epoch.is_none() || m.top1 > best_val_top1) {
            best_epoch = Some(report.epoch);
            best_val_top1 = val.map_or(0.0, |m| m.top1);
            run.save_model(run::BEST, &vars, &meta(count))?;
        }
        let stage = Stage::Finetune {
            search_epochs,
            search_steps,
            lambda_final,
            epoch: finetune.epoch(),
            best_epoch,
            best_val_top1,
        };
        let seconds = started.elapsed().as_secs_f64();
        finish_epoch(
            &mut state,
            &report,
            val,
            seconds,
            &finetune.optimizer_state(),
            stage,
            finetune.finished(),
        )?;
    }
    run.save_model(run::MODEL, &vars, &meta(count))?;

    // Only a search ended at its cap by --finish-at-cap keeps more than the budget.
    let within_budget = count <= plan.budget;
    if !within_budget {
        ctx.ui.warn(format!(
            "{} keeps {count} ReLUs, over its budget of {}: --finish-at-cap ended the search at its cap \
             (--max-search-epochs {}); result.json records within_budget: false",
            run.root().display(),
            plan.budget,
            plan.config.max_search_epochs
        ));
    }
    let best = model::load(&run.path(run::BEST), &Default::default(), &ctx.device)?.frozen(&ctx.device)?;
    let result = RunResult {
        command: "linearize".into(),
        arch: config.model.arch_name(),
        dataset: config.data.dataset.to_string(),
        selection: Some(config.selection),
        budget: Some(plan.budget),
        within_budget: Some(within_budget),
        relu_count: count,
        relu_total: plan.total,
        val: splits.evaluate_val(&best, config.data.batch_size, &ctx.device)?,
        test: data::evaluate(&best, &splits.test, config.data.batch_size, &ctx.device)?,
        model_kept: if splits.val.is_some() { KEPT_BEST_VAL } else { KEPT_LAST }.into(),
        best_epoch,
        epochs: plan.config.finetune_epochs,
        search_epochs: Some(search_epochs),
        search_steps: Some(search_steps),
        epochs_trained: search_epochs + plan.config.finetune_epochs,
        lambda0: (config.selection == Selection::Snl).then_some(plan.config.lasso),
        lambda_final,
        wall_time_s: state.seconds,
        seed: config.seed,
    };
    run.write_json(run::RESULT, &result)?;
    std::fs::remove_file(run.path(run::CHECKPOINT)).ok();
    Ok(result)
}

/// The epochs of each phase `saved` has logged (a control's stand-in for the search is
/// `frozen_mask`), or why it cannot be this run's.
fn logged(config: &LinearizeConfig, saved: &LinearizeState) -> Result<run::Logged> {
    let logged = match saved.stage {
        Stage::Search(ref search) => vec![("search", search.epoch)],
        Stage::FrozenMask { epoch, .. } => vec![("frozen_mask", epoch)],
        Stage::Finetune { search_epochs, epoch, .. } => {
            if epoch > config.snl.finetune_epochs {
                bail!(
                    "after finetuning epoch {epoch}, but the run finetunes {} epochs (edited?); start a new run",
                    config.snl.finetune_epochs
                );
            }
            let before = if config.selection == Selection::Snl { "search" } else { "frozen_mask" };
            vec![(before, search_epochs), ("finetune", epoch)]
        }
    };
    let epochs =
        run::total_epochs(&logged).context("its phases' epoch counts overflow (edited?); start a new run")?;
    if epochs != saved.records {
        bail!("its phases count {epochs} epochs, its records {} (edited?); start a new run", saved.records);
    }
    Ok(logged)
}

/// The finetuning's first stage, after a search (or a control's stand-in) of these epochs
/// and steps.
fn finetune_stage(search_epochs: usize, search_steps: usize, lambda_final: Option<f64>) -> Stage {
    Stage::Finetune {
        search_epochs,
        search_steps,
        lambda_final,
        epoch: 0,
        best_epoch: None,
        best_val_top1: 0.0,
    }
}

/// A control's frozen-mask steps: `--search-steps`, or `--search-epochs` whole epochs of
/// `batches_per_epoch`.
fn frozen_mask_steps(config: &LinearizeConfig, batches_per_epoch: usize) -> usize {
    config.frozen_mask_steps.unwrap_or(config.frozen_mask_epochs.saturating_mul(batches_per_epoch))
}

fn fresh_search_state(plan: &Plan) -> SearchState {
    SearchState { epoch: 0, steps: 0, schedule: snl_core::LassoSchedule::new(plan), count: plan.total }
}

/// A non-finite loss names the last checkpoint (saved before the loss went wrong, not
/// necessarily good: its weights may be what diverged).
fn nan_context(err: snl_core::Error, run: &RunDir, records: usize) -> anyhow::Error {
    let hint = match &err {
        snl_core::Error::NonFiniteLoss { .. } if records > 0 => format!(
            "the loss became non-finite in epoch {} of the run; stopped. The last saved state (after epoch {records}) \
             is kept in {}",
            records + 1,
            run.path(run::CHECKPOINT).display()
        ),
        snl_core::Error::NonFiniteLoss { .. } => {
            "the loss became non-finite in epoch 1 of the run; stopped before it finished, nothing was saved"
                .into()
        }
        _ => return err.into(),
    };
    anyhow::Error::new(err).context(hint)
}

fn log_epoch(
    ctx: &Context,
    run: &RunDir,
    report: &EpochReport,
    val: Option<Metrics>,
    seconds: f64,
    budget: usize,
) -> Result<()> {
    run.append_metrics(&EpochRecord { report, val, seconds })?;
    let val = val.map_or(String::new(), |m| format!(", val top-1 {:.2}%", m.top1));
    match report.phase {
        Phase::Search => ctx.ui.say(format!(
            "search epoch {:>3}: {} ReLUs (budget {budget}), lambda {:.2e}{}, loss {:.4} ({:.1}s)",
            report.epoch + 1,
            report.relu_count,
            report.lambda,
            val,
            report.loss,
            seconds
        )),
        Phase::FrozenMask | Phase::Finetune => ctx.ui.say(format!(
            "{} epoch {:>3}: loss {:.4}, train top-1 {:.2}%{} (lr {:.2e}, {:.1}s)",
            if report.phase == Phase::Finetune { "finetune" } else { "frozen-mask" },
            report.epoch + 1,
            report.loss,
            100.0 * report.train_accuracy,
            val,
            report.lr,
            seconds
        )),
    }
    ctx.ui.detail(format!("  ce {:.4}, kd {:.4}, lasso {:.1}", report.ce, report.kd, report.lasso));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_checkpoints_count_whole_epochs_as_their_steps() {
        let old = |json: &str| {
            let mut stage: Stage = serde_json::from_str(json).unwrap();
            stage.count_steps_of_old_checkpoints(10);
            stage
        };
        let frozen = old(r#"{"FrozenMask":{"epoch":2}}"#);
        assert!(matches!(frozen, Stage::FrozenMask { epoch: 2, steps: 20 }), "{frozen:?}");
        let finetune = old(
            r#"{"Finetune":{"search_epochs":3,"lambda_final":null,"epoch":1,"best_epoch":0,"best_val_top1":50.0}}"#,
        );
        assert!(
            matches!(finetune, Stage::Finetune { search_epochs: 3, search_steps: 30, .. }),
            "{finetune:?}"
        );
        let search = old(
            r#"{"Search":{"epoch":4,"schedule":{"lambda":0.001,"lowest":9,"kappa":2.0,"warmup_epochs":1},"count":9}}"#,
        );
        assert!(matches!(&search, Stage::Search(s) if s.steps == 40), "{search:?}");
        // A new checkpoint keeps its own count, a short last epoch included.
        let new = old(r#"{"FrozenMask":{"epoch":2,"steps":17}}"#);
        assert!(matches!(new, Stage::FrozenMask { epoch: 2, steps: 17 }), "{new:?}");
    }
}
