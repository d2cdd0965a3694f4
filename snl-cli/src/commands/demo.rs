//! `snl demo`: the whole job on an embedded default, for a fresh machine with no data and no
//! network. A reduced-width ResNet18 learns a synthetic 10-class task (oriented gratings with
//! random phase: telling them apart needs ReLUs), is linearized to 10% of its ReLUs with
//! Algorithm 1 and finetuned; a table compares before and after.

use std::path::PathBuf;

use anyhow::Result;
use snl_core::{Budget, SnlConfig, optim::SgdConfig};
use snl_models::{ModelConfig, ResNetConfig};

use super::linearize::{LinearizeConfig, linearize};
use super::train::{TrainConfig, train};
use super::{Context, RunResult};
use crate::cli::{DemoArgs, ScheduleKind, Selection};
use crate::cost;
use crate::data::{DataConfig, DatasetKind, Splits};
use crate::model;
use crate::run::{self, RunDir};

const SIDE: usize = 16;
const WIDTH: usize = 8;
const BATCH: usize = 64;

pub fn run(ctx: &Context, args: DemoArgs) -> Result<()> {
    let out = args.out.unwrap_or_else(free_demo_folder);
    let started = std::time::Instant::now();
    let splits = Splits::synthetic(10, SIDE, [150, 40, 40], ctx.seed)?;
    let data = DataConfig {
        dataset: DatasetKind::Synthetic,
        data_dir: None,
        offline: true,
        val_size: 400,
        batch_size: BATCH,
    };
    let model =
        ModelConfig::ResNet(ResNetConfig { width: WIDTH, image_size: SIDE, ..ResNetConfig::resnet18(10) });

    ctx.ui
        .say(format!("1/2 training a ResNet18 (width {WIDTH}, {SIDE}x{SIDE} inputs) on synthetic gratings"));
    // Both folders are claimed before any work, so a taken one fails now, not after training.
    let baseline_dir = RunDir::create(&out.join("baseline"))?;
    let snl_dir = RunDir::create(&out.join("linearized"))?;
    let train_config = TrainConfig {
        model: model.clone(),
        data: data.clone(),
        epochs: 6,
        sgd: SgdConfig { lr: 0.05, momentum: 0.9, weight_decay: 5e-4, nesterov: false },
        schedule: ScheduleKind::Cosine,
        seed: ctx.seed,
    };
    baseline_dir.write_json(run::CONFIG, &train_config)?;
    let before = train(ctx, &train_config, &splits, &baseline_dir)?;

    ctx.ui.say("2/2 linearizing to 10% of the ReLUs (Algorithm 1, a fast schedule), then finetuning");
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
    let snl_config = LinearizeConfig {
        teacher: std::path::absolute(baseline_dir.path(run::BEST))?,
        model,
        data,
        snl,
        selection: Selection::Snl,
        seed: ctx.seed,
        split_seed: Some(ctx.seed),
        frozen_mask_epochs: 0,
        frozen_mask_steps: None,
        finish_at_cap: false,
        train_size: Some(splits.train.len()),
    };
    snl_dir.write_json(run::CONFIG, &snl_config)?;
    let after = linearize(ctx, &snl_config, &splits, &snl_dir)?;
    print_table(ctx, &before, &after, &snl_dir)?;
    println!("run folder: {} ({:.0} s)", out.display(), started.elapsed().as_secs_f64());
    Ok(())
}

/// `runs/demo`, else the first of `runs/demo-2`, `runs/demo-3`, ... that does not exist.
fn free_demo_folder() -> PathBuf {
    let base = PathBuf::from("runs/demo");
    std::iter::once(base)
        .chain((2..).map(|i| PathBuf::from(format!("runs/demo-{i}"))))
        .find(|p| !p.exists())
        .unwrap_or_else(|| PathBuf::from("runs/demo"))
}

fn print_table(ctx: &Context, before: &RunResult, after: &RunResult, snl_dir: &RunDir) -> Result<()> {
    let pct = |n: usize, of: usize| 100.0 * n as f64 / of as f64;
    println!();
    println!("{:<28} {:>14} {:>14}", "", "all ReLUs", "linearized");
    println!("{:<28} {:>14} {:>14}", "ReLUs", before.relu_count, after.relu_count);
    println!("{:<28} {:>13.1}% {:>13.1}%", "share of ReLUs", 100.0, pct(after.relu_count, after.relu_total));
    println!("{:<28} {:>13.2}% {:>13.2}%", "test top-1 (chance 10%)", before.test.top1, after.test.top1);
    // The demo's synthetic data always has a validation set.
    let val = |r: &RunResult| r.val.map_or(f64::NAN, |m| m.top1);
    println!("{:<28} {:>13.2}% {:>13.2}%", "validation top-1", val(before), val(after));
    let (cb, ca) = (cost::estimate(before.relu_count), cost::estimate(after.relu_count));
    println!(
        "{:<28} {:>12.1}MB {:>12.1}MB",
        "GC offline comm. (DELPHI)", cb.delphi_offline_mb, ca.delphi_offline_mb
    );
    println!(
        "{:<28} {:>13.3}s {:>13.3}s",
        "ReLU online latency (DELPHI)", cb.delphi_online_latency_s[1], ca.delphi_online_latency_s[1]
    );
    println!(
        "{:<28} {:>12.2}MB {:>12.2}MB",
        "ReLU comm. (SPU Cheetah)", cb.spu_cheetah_measured_mb, ca.spu_cheetah_measured_mb
    );
    println!(
        "{:<28} {:>13.3}s {:>13.3}s",
        "ReLU time (SPU Cheetah)", cb.spu_cheetah_measured_s, ca.spu_cheetah_measured_s
    );
    println!();
    let model = model::load(&snl_dir.path(run::MODEL), &Default::default(), &ctx.device)?;
    let report = snl_core::ReluReport::of(&model.frozen(&ctx.device)?, model.threshold())?;
    println!("{:<10} {:>10} {:>10} {:>8}", "stage", "ReLUs", "kept", "kept %");
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
        println!("{name:<10} {total:>10} {kept:>10} {:>7.1}%", pct(kept, total));
    }
    println!();
    let sources = cost::estimate(0).sources;
    println!("cost estimates cover the ReLUs only ({}; {}).", sources[0], sources[2]);
    Ok(())
}
