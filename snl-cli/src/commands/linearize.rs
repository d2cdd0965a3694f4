//! `snl linearize`: Algorithm 1 (mask search, binarize, finetune) with the given model as
//! the frozen teacher, or a baseline selection (random, uniform per site) with the same
//! finetuning. Checkpoints after every epoch; `--resume` continues exactly.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use candle::Tensor;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use snl_core::{EpochReport, Finetune, MaskSearch, Masked, Observer, Phase, Plan, SearchState, SnlConfig};
use snl_data::Dataset;
use snl_models::{Model, ModelConfig, params};

use super::{Context, RunResult, check_fits, model_split, parse_budget};
use crate::cli::{LinearizeArgs, Selection};
use crate::data::{self, DataConfig, Metrics, Splits, TrainBatches};
use crate::model::{self, keys, metadata};
use crate::run::{self, RunDir};
use crate::setup::usage;

/// Everything a linearization depends on: written to `config.json`, read back on resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinearizeConfig {
    /// The pretrained model: the teacher, and the student's starting point.
    pub teacher: PathBuf,
    pub model: ModelConfig,
    pub data: DataConfig,
    pub snl: SnlConfig,
    pub selection: Selection,
    pub seed: u64,
}

/// Where the run stands between epochs.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Stage {
    Search(SearchState),
    Finetune { search_epochs: usize, epoch: usize, best_epoch: Option<usize>, best_val_top1: f64 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LinearizeState {
    stage: Stage,
    /// Metric lines written for finished epochs (both phases).
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

pub fn run(ctx: &Context, args: LinearizeArgs) -> Result<()> {
    let ctx = &ctx.stopping_after(args.stop_after_epochs);
    let (config, run, splits) = match &args.resume {
        Some(dir) => {
            let run = RunDir::open(dir)?;
            let config = run.read_json::<LinearizeConfig>(run::CONFIG)?;
            ctx.recorded_seed(config.seed, dir, "a resumed run keeps its own")?;
            let splits = Splits::load(&config.data, config.seed, &ctx.ui)?;
            (config, run, splits)
        }
        None => {
            let model_path = args.model.as_ref().context("--model is required")?;
            let budget = parse_budget(args.budget.as_deref().context("--budget is required")?)?;
            let teacher = model::load(model_path, &args.model_args, &ctx.device)?;
            let snl = SnlConfig {
                budget,
                lasso: args.lasso,
                kappa: args.kappa,
                warmup_epochs: args.warmup_epochs,
                threshold: args.threshold,
                search_lr: args.search_lr,
                max_search_epochs: args.max_search_epochs,
                temperature: args.temperature,
                finetune_epochs: args.finetune_epochs,
                finetune: snl_core::optim::SgdConfig {
                    lr: args.finetune_lr,
                    momentum: args.finetune_momentum,
                    weight_decay: args.finetune_weight_decay,
                    nesterov: false,
                },
            };
            // Every value is checked before any data is read.
            let total = snl_core::relu_total(&teacher.frozen(&ctx.device)?);
            snl.clone().check(total).map_err(|e| usage(format!("{}: {e}", model_path.display())))?;
            let mut data = DataConfig::from_args(&args.data, 128)?;
            let seed =
                model_split(ctx, &teacher, model_path, &mut data, args.data.val_size, "linearize keeps")?;
            let splits = Splits::load(&data, seed, &ctx.ui)?;
            check_fits(model_path.display(), &teacher.config, data.dataset, &splits)?;
            let config = LinearizeConfig {
                teacher: std::path::absolute(model_path)?,
                model: teacher.config.clone(),
                data,
                snl,
                selection: args.selection,
                seed,
            };
            let out = args.out.as_ref().context("--out is required")?;
            let run = RunDir::create(out)?;
            run.write_json(run::CONFIG, &config)?;
            (config, run, splits)
        }
    };
    let result = linearize(ctx, &config, &splits, &run)?;
    ctx.ui.result(format!(
        "{} of {} ReLUs kept (budget {}): val top-1 {:.2}%, test top-1 {:.2}%; run folder {}",
        result.relu_count,
        result.relu_total,
        result.budget.unwrap_or(0),
        result.val.top1,
        result.test.top1,
        run.root().display()
    ));
    Ok(())
}

/// Shows progress and evaluates on the validation split after every epoch.
struct Progress<'a> {
    ctx: &'a Context,
    val: &'a Arc<Dataset>,
    batch_size: usize,
    last_val: Option<Metrics>,
}

impl Observer<Model> for Progress<'_> {
    fn evaluate(&mut self, model: &Model) -> candle::Result<Option<f64>> {
        let metrics = data::evaluate(model, self.val, self.batch_size, &self.ctx.device)
            .map_err(candle::Error::wrap)?;
        self.last_val = Some(metrics);
        Ok(Some(metrics.top1 / 100.0))
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
    let saved = run.load_checkpoint::<LinearizeState>(&ctx.device)?;
    let mut optimizer = Default::default();
    if let Some((tensors, opt, s)) = saved {
        snl_models::checkpoint::load_into(&vars, &tensors)
            .context("the run's checkpoint does not fit its model")?;
        optimizer = opt;
        state = s;
        run.truncate_metrics(state.records)?;
        ctx.ui.say(format!("resuming {} after {} epochs", run.root().display(), state.records));
    }
    let teacher_forward = |x: &Tensor| candle::ModuleT::forward_t(&teacher, x, false);
    let mut progress = Progress { ctx, val: &splits.val, batch_size: config.data.batch_size, last_val: None };
    let meta = |count: usize| {
        metadata(
            &config.model,
            &[
                (keys::DATASET, config.data.dataset.to_string()),
                (keys::SEED, config.seed.to_string()),
                (keys::VAL_SIZE, config.data.val_size.to_string()),
                (keys::THRESHOLD, config.snl.threshold.to_string()),
                (keys::RELU_COUNT, count.to_string()),
                (keys::RELU_TOTAL, plan.total.to_string()),
            ],
        )
    };

    // Mask search (or a baseline's selection).
    if let Stage::Search(search_state) = &state.stage {
        let search_epochs = match config.selection {
            Selection::Snl => {
                let mut batches =
                    TrainBatches::new(&splits.train, config.data.batch_size, config.seed, &ctx.device)?;
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
                        return Err(snl_core::Error::BudgetNotReached {
                            epochs: reached.epoch,
                            count: reached.count,
                            budget: plan.budget,
                            lambda: reached.schedule.lambda,
                        })
                        .context(
                            "raise --max-search-epochs, --lasso or --search-lr, or resume with a larger cap",
                        );
                    }
                    let started = std::time::Instant::now();
                    let epoch = search.state().epoch;
                    batches.set_bar(ctx.ui.bar(batches.len(), format!("search epoch {}", epoch + 1)));
                    let report = search
                        .run_epoch(&student, &teacher_forward, &mut batches, &mut progress)
                        .map_err(|e| nan_context(e, run, state.records))?;
                    let seconds = started.elapsed().as_secs_f64();
                    log_epoch(ctx, run, &report, progress.last_val, seconds, plan.budget)?;
                    state.records += 1;
                    state.seconds += seconds;
                    state.stage = Stage::Search(search.state().clone());
                    run.save_checkpoint(&vars, &search.optimizer_state()?, &meta(report.relu_count), &state)?;
                    ctx.check_stop(state.records, run)?;
                }
                search.state().epoch
            }
            baseline => {
                select_baseline(&student, baseline, plan.budget, config.seed)?;
                0
            }
        };
        state.stage = Stage::Finetune { search_epochs, epoch: 0, best_epoch: None, best_val_top1: 0.0 };
        optimizer = Default::default();
    }

    // Binarize, then finetune with the masks frozen.
    let Stage::Finetune { search_epochs, epoch: done, mut best_epoch, mut best_val_top1 } =
        state.stage.clone()
    else {
        unreachable!("the search stage ends above");
    };
    let mut finetune = Finetune::resume(&plan, &student, params::trainable_vars(&vars), done, &optimizer)?;
    let count = snl_core::relu_count(&student, plan.config.threshold)?;
    if done == 0 && best_epoch.is_none() {
        // The binarized model is the best so far (and the result when nothing is finetuned).
        run.save_model(run::BEST, &vars, &meta(count))?;
        ctx.ui.say(format!("binarized: {count} of {} ReLUs kept (budget {})", plan.total, plan.budget));
    }
    let mut batches =
        TrainBatches::new(&splits.train, config.data.batch_size, config.seed.wrapping_add(1), &ctx.device)?;
    while !finetune.finished() {
        let started = std::time::Instant::now();
        batches.set_bar(ctx.ui.bar(batches.len(), format!("finetune epoch {}", finetune.epoch() + 1)));
        let report = finetune
            .run_epoch(&student, &teacher_forward, &mut batches, &mut progress)
            .map_err(|e| nan_context(e, run, state.records))?;
        let seconds = started.elapsed().as_secs_f64();
        log_epoch(ctx, run, &report, progress.last_val, seconds, plan.budget)?;
        let val_top1 = progress.last_val.map_or(0.0, |m| m.top1);
        if best_epoch.is_none() || val_top1 > best_val_top1 {
            best_epoch = Some(report.epoch);
            best_val_top1 = val_top1;
            run.save_model(run::BEST, &vars, &meta(count))?;
        }
        state.records += 1;
        state.seconds += seconds;
        state.stage = Stage::Finetune { search_epochs, epoch: finetune.epoch(), best_epoch, best_val_top1 };
        run.save_checkpoint(&vars, &finetune.optimizer_state(), &meta(count), &state)?;
        if !finetune.finished() {
            ctx.check_stop(state.records, run)?;
        }
    }
    run.save_model(run::MODEL, &vars, &meta(count))?;

    let best = model::load(&run.path(run::BEST), &Default::default(), &ctx.device)?.frozen(&ctx.device)?;
    let result = RunResult {
        command: "linearize".into(),
        arch: config.model.arch_name(),
        dataset: config.data.dataset.to_string(),
        selection: Some(config.selection),
        budget: Some(plan.budget),
        relu_count: count,
        relu_total: plan.total,
        val: data::evaluate(&best, &splits.val, config.data.batch_size, &ctx.device)?,
        test: data::evaluate(&best, &splits.test, config.data.batch_size, &ctx.device)?,
        best_epoch,
        epochs: plan.config.finetune_epochs,
        search_epochs: Some(search_epochs),
        wall_time_s: state.seconds,
        seed: config.seed,
    };
    run.write_json(run::RESULT, &result)?;
    std::fs::remove_file(run.path(run::CHECKPOINT)).ok();
    Ok(result)
}

fn fresh_search_state(plan: &Plan) -> SearchState {
    SearchState { epoch: 0, schedule: snl_core::LassoSchedule::new(plan), count: plan.total }
}

/// A non-finite loss names the last good checkpoint.
fn nan_context(err: snl_core::Error, run: &RunDir, records: usize) -> anyhow::Error {
    let hint = match &err {
        snl_core::Error::NonFiniteLoss { .. } if records > 0 => format!(
            "the loss became non-finite in epoch {} of the run; stopped. The last good state (after epoch {records}) \
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
        Phase::Finetune => ctx.ui.say(format!(
            "finetune epoch {:>3}: loss {:.4}, train top-1 {:.2}%{} (lr {:.2e}, {:.1}s)",
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

/// The baselines: `budget` mask elements' worth of ReLUs chosen at random over the whole
/// network (`random`), or the same fraction at random within every site (`uniform`).
fn select_baseline(model: &Model, selection: Selection, budget: usize, seed: u64) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5e1ec7);
    let masks = model.masks();
    let total = snl_core::relu_total(model);
    let mut keep: Vec<Vec<f32>> = masks.iter().map(|m| vec![0f32; m.alphas().elem_count()]).collect();
    let per_element = |m: &snl_core::ReluMask| m.total_relus() / m.alphas().elem_count();
    match selection {
        Selection::Random => {
            let mut all: Vec<(usize, usize)> =
                keep.iter().enumerate().flat_map(|(s, k)| (0..k.len()).map(move |e| (s, e))).collect();
            all.shuffle(&mut rng);
            let mut kept = 0;
            for (s, e) in all {
                let cost = per_element(masks[s]);
                if kept + cost <= budget {
                    keep[s][e] = 1.0;
                    kept += cost;
                }
            }
        }
        Selection::Uniform => {
            let fraction = budget as f64 / total as f64;
            for k in keep.iter_mut() {
                let n = (fraction * k.len() as f64).floor() as usize;
                let mut order: Vec<usize> = (0..k.len()).collect();
                order.shuffle(&mut rng);
                order.into_iter().take(n).for_each(|e| k[e] = 1.0);
            }
        }
        Selection::Snl => unreachable!("snl learns its masks"),
    }
    for (m, k) in masks.iter().zip(keep) {
        let values = Tensor::from_vec(k, m.alphas().shape(), m.alphas().device())?;
        m.alphas().set(&values)?;
    }
    Ok(())
}
