//! `snl train`: a baseline with every ReLU, SGD with momentum and weight decay, a multi-step
//! or cosine schedule, the best epoch chosen on the validation split. Resumable.

use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use snl_core::optim::{LrSchedule, Optimizer, Sgd, SgdConfig};
use snl_core::{Batches, ConfigError, Masked};
use snl_models::{ModelConfig, checkpoint, params};

use super::{Context, KEPT_BEST_VAL, KEPT_LAST, RunResult, check_fits};
use crate::cli::{ScheduleKind, TrainArgs};
use crate::data::{self, DataConfig, Splits, TrainBatches};
use crate::model::{keys, metadata};
use crate::run::{self, RunDir};
use crate::setup::usage;

/// Everything a training run depends on: written to `config.json`, read back on resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    pub model: ModelConfig,
    pub data: DataConfig,
    pub epochs: usize,
    pub sgd: SgdConfig,
    pub schedule: ScheduleKind,
    pub seed: u64,
}

impl TrainConfig {
    fn lr_schedule(&self) -> LrSchedule {
        match self.schedule {
            ScheduleKind::Multistep => multistep(self.epochs),
            ScheduleKind::Cosine => LrSchedule::Cosine { epochs: self.epochs, min_lr: 0.0 },
        }
    }
}

/// The authors' decays by 10 at 1/2 and 3/4 of the epochs, rounded up so that a short run
/// starts at --lr (one epoch never decays).
fn multistep(epochs: usize) -> LrSchedule {
    LrSchedule::MultiStep { milestones: vec![epochs.div_ceil(2), (3 * epochs).div_ceil(4)], gamma: 0.1 }
}

/// Resume state between epochs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TrainState {
    /// Epochs finished.
    epoch: usize,
    best_epoch: Option<usize>,
    best_val_top1: f64,
    /// Wall time of the finished epochs, across resumes.
    seconds: f64,
}

#[derive(Serialize)]
struct EpochRecord {
    phase: &'static str,
    epoch: usize,
    lr: f64,
    loss: f64,
    train_top1: f64,
    val: Option<data::Metrics>,
    seconds: f64,
}

pub fn run(ctx: &Context, args: TrainArgs) -> Result<()> {
    let ctx = &ctx.stopping_after(args.stop_after_epochs);
    let (config, run, splits) = match &args.resume {
        Some(dir) => {
            let run = RunDir::open(dir, &[])?;
            let config = run.read_config::<TrainConfig>("train")?;
            ctx.recorded_seed(config.seed, dir, "a resumed run keeps its own")?;
            let splits = Splits::load(&config.data, config.seed, &ctx.ui)
                .with_context(|| dir.display().to_string())?;
            (config, run, splits)
        }
        None => {
            // Bad flags fail before any data is read (which may start a download).
            let data = DataConfig::from_args(&args.data, 256, None)?;
            // Synthetic data's sizes are known already; other data's once it is read.
            let spec = data.synthetic_spec();
            args.model.config(spec.map(|s| s.classes), spec.map(|s| s.image_size))?;
            if args.epochs == 0 {
                return Err(usage("--epochs must be at least 1"));
            }
            let sgd = SgdConfig {
                lr: args.lr,
                momentum: args.momentum,
                weight_decay: args.weight_decay,
                nesterov: false,
            };
            sgd.check("--lr", "--weight-decay").map_err(|e| match e {
                ConfigError::Momentum(_) => usage(format!("--momentum: {e}")),
                e => usage(e.to_string()),
            })?;
            let out = args.out.as_ref().context("--out is required")?;
            let splits = Splits::load(&data, ctx.seed, &ctx.ui)?;
            if splits.classes() == 1 {
                ctx.ui.warn(format!(
                    "the {} data has a single class: every prediction is right, the accuracy means nothing",
                    data.dataset
                ));
            }
            let model = args.model.config(Some(splits.classes()), Some(splits.image_size()))?;
            // Only --image-size can make the model differ from the data (--classes is checked).
            check_fits(format!("--image-size {}", model.image_size()), &model, data.dataset, &splits)?;
            let config = TrainConfig {
                model,
                data: DataConfig { train_images: splits.train_images, ..data },
                epochs: args.epochs,
                sgd,
                schedule: args.schedule,
                seed: ctx.seed,
            };
            let run = RunDir::create(out)?;
            run.write_json(run::CONFIG, &config)?;
            (config, run, splits)
        }
    };
    let result = train(ctx, &config, &splits, &run)?;
    ctx.ui.result(format!(
        "{} epoch {}/{}: {}test top-1 {:.2}% ({} ReLUs); run folder {}",
        if result.val.is_some() { "best" } else { "last" },
        // Counted from 1, as the progress lines (result.json's `best_epoch` counts from 0).
        result.best_epoch.map_or("-".into(), |e| (e + 1).to_string()),
        config.epochs,
        result.val.map_or("no validation split, ".into(), |m| format!("val top-1 {:.2}%, ", m.top1)),
        result.test.top1,
        result.relu_count,
        run.root().display()
    ))
}

/// Trains (or continues) the baseline of `run`, then writes `model.safetensors`,
/// `best.safetensors` and `result.json`.
pub fn train(ctx: &Context, config: &TrainConfig, splits: &Splits, run: &RunDir) -> Result<RunResult> {
    let (model, vars) = config.model.build_trainable(&ctx.device)?;
    params::init_seeded(&vars, config.model.init_scheme(), config.seed)?;
    // A baseline keeps every ReLU: the masks stay at 1 and take no gradient.
    model.masks().iter().for_each(|m| m.set_frozen(true));
    let mut sgd = Sgd::new(params::weight_vars(&vars), config.sgd);
    let mut state = TrainState::default();
    let logged = |saved: &TrainState| {
        if saved.epoch > config.epochs {
            bail!(
                "after epoch {}, but the run has {} epochs (edited?); start a new run",
                saved.epoch,
                config.epochs
            );
        }
        Ok(vec![("train", saved.epoch)])
    };
    if let Some((tensors, optimizer, saved)) = run.load_checkpoint(&ctx.device, logged)? {
        checkpoint::load_into(&vars, &tensors).context("the run's checkpoint does not fit its model")?;
        sgd.load_state(&optimizer)?;
        state = saved;
        ctx.ui.say(format!("resuming {} after epoch {}", run.root().display(), state.epoch));
        if let Some(warning) = run.numerics_changed()? {
            ctx.ui.warn(warning);
        }
    } else if run.resumed() {
        ctx.ui.say(format!("{} has no checkpoint yet: starting from epoch 1", run.root().display()));
    }
    let mut extra = config.data.metadata()?;
    extra.extend([
        (keys::SEED, config.seed.to_string()),
        (keys::RELU_TOTAL, snl_core::relu_total(&model).to_string()),
        (keys::RELU_COUNT, snl_core::relu_total(&model).to_string()),
    ]);
    let meta = metadata(&config.model, &extra);
    let mut batches = TrainBatches::new(&splits.train, config.data.batch_size, config.seed, &ctx.device)?;
    let schedule = config.lr_schedule();
    for epoch in state.epoch..config.epochs {
        let epoch_start = Instant::now();
        let lr = schedule.lr(config.sgd.lr, epoch);
        sgd.set_learning_rate(lr);
        let bar = ctx.ui.bar(batches.len(), format!("train epoch {}/{}", epoch + 1, config.epochs));
        batches.set_bar(bar.clone());
        let (mut loss_sum, mut hits, mut seen, mut steps) = (0f64, 0usize, 0usize, 0usize);
        for (i, batch) in batches.epoch(epoch).enumerate() {
            let (x, y) = batch?;
            let logits = candle::ModuleT::forward_t(&model, &x, true)?;
            let loss = snl_core::loss::cross_entropy(&logits, &y)?;
            let value = loss.to_scalar::<f32>()?;
            if !value.is_finite() {
                if state.epoch == 0 {
                    bail!(
                        "the loss became {value} at epoch 1, batch {}; stopped before the first epoch finished, \
                         nothing was saved: lower --lr and start again with another --out",
                        i + 1
                    );
                }
                bail!(
                    "the loss became {value} at epoch {}, batch {}; stopped. The last saved state (after epoch {}) \
                     is kept in {}: lower --lr and start again with another --out",
                    epoch + 1,
                    i + 1,
                    state.epoch,
                    run.path(run::CHECKPOINT).display()
                );
            }
            sgd.step(&loss.backward()?)?;
            loss_sum += f64::from(value);
            hits += snl_core::loss::correct(&logits, &y)?;
            seen += y.dim(0)?;
            steps += 1;
        }
        bar.finish_and_clear();
        let val = splits.evaluate_val(&model, config.data.batch_size, &ctx.device)?;
        let record = EpochRecord {
            phase: "train",
            epoch,
            lr,
            loss: loss_sum / steps.max(1) as f64,
            train_top1: 100.0 * hits as f64 / seen.max(1) as f64,
            val,
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        state.seconds += record.seconds;
        run.append_metrics(&record)?;
        // Without a validation split every epoch replaces the last: the last one is kept.
        let better = val.is_none_or(|m| state.best_epoch.is_none() || m.top1 > state.best_val_top1);
        if better {
            state.best_epoch = Some(epoch);
            state.best_val_top1 = val.map_or(0.0, |m| m.top1);
            run.save_model(run::BEST, &vars, &meta)?;
        }
        state.epoch = epoch + 1;
        run.save_checkpoint(&vars, &sgd.state(), &meta, &state)?;
        ctx.ui.say(format!(
            "epoch {:>3}/{}: loss {:.4}, train top-1 {:.2}%{} (lr {:.2e}, {:.1}s)",
            epoch + 1,
            config.epochs,
            record.loss,
            record.train_top1,
            val.map_or(String::new(), |m| format!(", val top-1 {:.2}%", m.top1)),
            lr,
            record.seconds
        ));
        if state.epoch < config.epochs {
            ctx.check_stop(state.epoch, run)?;
        }
    }
    run.save_model(run::MODEL, &vars, &meta)?;
    let best =
        crate::model::load(&run.path(run::BEST), &Default::default(), &ctx.device)?.frozen(&ctx.device)?;
    let result = RunResult {
        command: "train".into(),
        arch: config.model.arch_name(),
        dataset: config.data.dataset.to_string(),
        selection: None,
        budget: None,
        within_budget: None,
        relu_count: snl_core::relu_total(&model),
        relu_total: snl_core::relu_total(&model),
        val: splits.evaluate_val(&best, config.data.batch_size, &ctx.device)?,
        test: data::evaluate(&best, &splits.test, config.data.batch_size, &ctx.device)?,
        model_kept: if splits.val.is_some() { KEPT_BEST_VAL } else { KEPT_LAST }.into(),
        best_epoch: state.best_epoch,
        epochs: config.epochs,
        search_epochs: None,
        search_steps: None,
        epochs_trained: config.epochs,
        lambda0: None,
        lambda_final: None,
        wall_time_s: state.seconds,
        seed: config.seed,
    };
    run.write_json(run::RESULT, &result)?;
    std::fs::remove_file(run.path(run::CHECKPOINT)).ok();
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::multistep;

    #[test]
    fn multistep_decays_at_half_and_three_quarters_and_short_runs_start_at_the_lr() {
        let lrs = |epochs: usize| (0..epochs).map(|e| multistep(epochs).lr(1.0, e)).collect::<Vec<_>>();
        assert_eq!(lrs(1), [1.0]);
        assert_eq!(lrs(2), [1.0, 0.1]);
        assert_eq!(lrs(3), [1.0, 1.0, 0.1]);
        assert_eq!(lrs(4), [1.0, 1.0, 0.1, 0.1 * 0.1]);
        let paper = lrs(160);
        assert!(paper[..80].iter().all(|&lr| lr == 1.0) && paper[80..120].iter().all(|&lr| lr == 0.1));
        assert!(paper[120..].iter().all(|&lr| lr == 0.1 * 0.1), "{paper:?}");
    }
}
