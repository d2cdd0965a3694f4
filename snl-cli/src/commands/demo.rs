//! `snl demo`: the whole job on an embedded default, for a fresh machine with no data and no
//! network. A reduced-width ResNet18 learns a synthetic 10-class task (oriented gratings with
//! random phase: telling them apart needs ReLUs), is linearized to 10% of its ReLUs with
//! Algorithm 1 and finetuned; a table compares before and after.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::de::DeserializeOwned;
use snl_core::{Budget, SnlConfig, optim::SgdConfig};
use snl_models::{ModelConfig, ResNetConfig};

use super::linearize::{LinearizeConfig, linearize};
use super::train::{TrainConfig, train};
use super::{Context, RunResult};
use crate::cli::{DemoArgs, ScheduleKind, Selection};
use crate::cost;
use crate::data::{DataConfig, DatasetKind, Splits, SyntheticSpec};
use crate::model;
use crate::run::{self, RunDir};

const WIDTH: usize = 8;
const BATCH: usize = 64;

/// One of the demo's two runs, as `--out` or `--resume` finds its folder.
enum Step {
    /// To start (its folder claimed).
    New(RunDir),
    /// Killed before it finished (its folder locked).
    Unfinished(RunDir),
    /// Has its `result.json`.
    Finished,
}

impl Step {
    /// A fresh demo claims a new or empty folder; a resumed one takes each step as it is.
    fn claim(path: &Path, resume: bool) -> Result<Self> {
        Ok(if !resume {
            Step::New(RunDir::create(path)?)
        } else if path.join(run::RESULT).exists() {
            Step::Finished
        } else if path.join(run::CONFIG).exists() {
            Step::Unfinished(RunDir::open(path, &[])?)
        } else {
            Step::New(RunDir::create(path)?)
        })
    }
}

pub fn run(ctx: &Context, args: DemoArgs) -> Result<()> {
    let ctx = &ctx.stopping_after(args.stop_after_epochs);
    let started = std::time::Instant::now();
    let resume = args.resume.is_some();
    let out = args.resume.or(args.out).unwrap_or_else(free_demo_folder);
    let (baseline_path, snl_path) = (out.join("baseline"), out.join("linearized"));
    check_folder(&out, resume)?;
    // Both folders are claimed before any work, so a taken one fails now, not after training.
    let baseline = Step::claim(&baseline_path, resume)?;
    let linearized = Step::claim(&snl_path, resume)?;

    let train_config = match &baseline {
        Step::New(dir) => {
            let config = train_config(ctx.seed);
            dir.write_json(run::CONFIG, &config)?;
            config
        }
        Step::Unfinished(_) | Step::Finished => {
            let config: TrainConfig = recorded(&baseline_path, run::CONFIG)?;
            ctx.recorded_seed(config.seed, &out, "a resumed demo keeps its own")?;
            config
        }
    };
    // Every step trains on this data, rebuilt from the baseline's record on resume.
    let splits = Splits::load(&train_config.data, train_config.seed, &ctx.ui)?;
    ctx.ui.say(format!(
        "1/2 training a ResNet18 (width {WIDTH}, {0}x{0} inputs) on synthetic gratings",
        splits.image_size()
    ));
    let before = match baseline {
        Step::New(dir) | Step::Unfinished(dir) => train(ctx, &train_config, &splits, &dir)?,
        Step::Finished => {
            ctx.ui.say(format!("{} is finished already", baseline_path.display()));
            recorded(&baseline_path, run::RESULT)?
        }
    };

    ctx.ui.say("2/2 linearizing to 10% of the ReLUs (Algorithm 1, a fast schedule), then finetuning");
    let snl_config = match &linearized {
        Step::New(dir) => {
            let config = linearize_config(&train_config, &baseline_path, splits.train.len())?;
            dir.write_json(run::CONFIG, &config)?;
            config
        }
        Step::Unfinished(_) | Step::Finished => recorded(&snl_path, run::CONFIG)?,
    };
    if snl_config.data != train_config.data || snl_config.split_seed != Some(train_config.seed) {
        bail!(
            "{}: its data is not the baseline's ({}); put the demo's files back, or start a new demo",
            snl_path.join(run::CONFIG).display(),
            baseline_path.join(run::CONFIG).display()
        );
    }
    let after = match linearized {
        Step::New(dir) | Step::Unfinished(dir) => linearize(ctx, &snl_config, &splits, &dir)?,
        Step::Finished => recorded(&snl_path, run::RESULT)?,
    };
    let mut table = print_table(ctx, &before, &after, &snl_path)?;
    write!(table, "run folder: {} ({:.0} s)", out.display(), started.elapsed().as_secs_f64())?;
    ctx.ui.result(table)
}

/// Refuses a resume of a folder that holds no demo or a finished one, and a new demo in a
/// folder that holds one (naming `--resume` when it is unfinished).
fn check_folder(out: &Path, resume: bool) -> Result<()> {
    let finished = out.join("linearized").join(run::RESULT).exists();
    if resume {
        if !out.join("baseline").is_dir() {
            bail!("{}: not the folder of a demo (no baseline folder); start one with --out", out.display());
        }
        if finished {
            bail!(
                "{} is finished already (it has linearized/{}); nothing to resume",
                out.display(),
                run::RESULT
            );
        }
    } else if out.join("baseline").join(run::CONFIG).exists() {
        if finished {
            bail!("{} holds a finished demo; choose another --out (nothing was overwritten)", out.display());
        }
        bail!(
            "{} holds an unfinished demo; continue it with `snl demo --resume {}`, or choose another --out",
            out.display(),
            out.display()
        );
    }
    Ok(())
}

/// `name` (JSON) of the run folder `dir`.
fn recorded<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<T> {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a valid snl file", path.display()))
}

/// The baseline: a reduced-width ResNet18 on the demo's synthetic set.
fn train_config(seed: u64) -> TrainConfig {
    let spec = SyntheticSpec::DEMO;
    let data = DataConfig {
        dataset: DatasetKind::Synthetic,
        data_dir: None,
        offline: true,
        val_size: spec.val_len(),
        batch_size: BATCH,
        synthetic: None,
        train_images: None,
        recorded_split: None,
    }
    .with_synthetic(spec);
    let model = ModelConfig::ResNet(ResNetConfig {
        width: WIDTH,
        image_size: spec.image_size,
        ..ResNetConfig::resnet18(spec.classes)
    });
    TrainConfig {
        model,
        data,
        epochs: 6,
        sgd: SgdConfig { lr: 0.05, momentum: 0.9, weight_decay: 5e-4, nesterov: false },
        schedule: ScheduleKind::Cosine,
        seed,
    }
}

/// The linearization of the baseline in `baseline_dir`, on the baseline's data.
fn linearize_config(
    baseline: &TrainConfig,
    baseline_dir: &Path,
    train_size: usize,
) -> Result<LinearizeConfig> {
    // The paper's schedule takes hundreds of epochs; a demo affords a stronger lasso.
    let snl = SnlConfig {
        lasso: 5e-3,
        search_lr: 2e-2,
        warmup_epochs: 2,
        max_search_epochs: 100,
        finetune_epochs: 3,
        finetune: SgdConfig { lr: 1e-2, ..SnlConfig::paper(Budget::Fraction(0.1)).finetune },
        ..SnlConfig::paper(Budget::Fraction(0.1))
    };
    Ok(LinearizeConfig {
        teacher: std::path::absolute(baseline_dir.join(run::BEST))?,
        model: baseline.model.clone(),
        data: baseline.data.clone(),
        snl,
        selection: Selection::Snl,
        seed: baseline.seed,
        split_seed: Some(baseline.seed),
        frozen_mask_epochs: 0,
        frozen_mask_steps: None,
        finish_at_cap: false,
        train_size: Some(train_size),
    })
}

/// `runs/demo`, else the first of `runs/demo-2`, `runs/demo-3`, ... that does not exist.
fn free_demo_folder() -> PathBuf {
    let base = PathBuf::from("runs/demo");
    std::iter::once(base)
        .chain((2..).map(|i| PathBuf::from(format!("runs/demo-{i}"))))
        .find(|p| !p.exists())
        .unwrap_or_else(|| PathBuf::from("runs/demo"))
}

/// The before/after table and the linearized model's kept ReLUs per stage.
fn print_table(ctx: &Context, before: &RunResult, after: &RunResult, snl_dir: &Path) -> Result<String> {
    let pct = |n: usize, of: usize| 100.0 * n as f64 / of as f64;
    let mut t = String::new();
    writeln!(t)?;
    writeln!(t, "{:<28} {:>14} {:>14}", "", "all ReLUs", "linearized")?;
    writeln!(t, "{:<28} {:>14} {:>14}", "ReLUs", before.relu_count, after.relu_count)?;
    writeln!(
        t,
        "{:<28} {:>13.1}% {:>13.1}%",
        "share of ReLUs",
        100.0,
        pct(after.relu_count, after.relu_total)
    )?;
    writeln!(t, "{:<28} {:>13.2}% {:>13.2}%", "test top-1 (chance 10%)", before.test.top1, after.test.top1)?;
    // The demo's synthetic data always has a validation set.
    let val = |r: &RunResult| r.val.map_or(f64::NAN, |m| m.top1);
    writeln!(t, "{:<28} {:>13.2}% {:>13.2}%", "validation top-1", val(before), val(after))?;
    let (cb, ca) = (cost::estimate(before.relu_count), cost::estimate(after.relu_count));
    writeln!(
        t,
        "{:<28} {:>12.1}MB {:>12.1}MB",
        "GC offline comm. (DELPHI)", cb.delphi_offline_mb, ca.delphi_offline_mb
    )?;
    writeln!(
        t,
        "{:<28} {:>13.3}s {:>13.3}s",
        "ReLU online latency (DELPHI)", cb.delphi_online_latency_s[1], ca.delphi_online_latency_s[1]
    )?;
    writeln!(
        t,
        "{:<28} {:>12.2}MB {:>12.2}MB",
        "ReLU comm. (SPU Cheetah)", cb.spu_cheetah_measured_mb, ca.spu_cheetah_measured_mb
    )?;
    writeln!(
        t,
        "{:<28} {:>13.3}s {:>13.3}s",
        "ReLU time (SPU Cheetah)", cb.spu_cheetah_measured_s, ca.spu_cheetah_measured_s
    )?;
    writeln!(t)?;
    let model = model::load(&snl_dir.join(run::MODEL), &Default::default(), &ctx.device)?;
    let report = snl_core::ReluReport::of(&model.frozen(&ctx.device)?, model.threshold())?;
    writeln!(t, "{:<10} {:>10} {:>10} {:>8}", "stage", "ReLUs", "kept", "kept %")?;
    let mut stages: Vec<(String, usize, usize)> = Vec::new();
    for site in &report.sites {
        let stage = site.name.split('.').next().unwrap_or("").to_string();
        match stages.last_mut() {
            Some((name, total, kept)) if *name == stage => {
                *total += site.total;
                *kept += site.kept;
            }
            _ => stages.push((stage, site.total, site.kept)),
        }
    }
    for (name, total, kept) in stages {
        writeln!(t, "{name:<10} {total:>10} {kept:>10} {:>7.1}%", pct(kept, total))?;
    }
    writeln!(t)?;
    let sources = cost::estimate(0).sources;
    writeln!(t, "cost estimates cover the ReLUs only ({}; {}).", sources[0], sources[2])?;
    Ok(t)
}
