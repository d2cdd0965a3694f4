//! `snl count`: the per-site ReLU table of an architecture or a model, its totals, the
//! counting convention, and a private-inference cost estimate.

use std::fmt::Write as _;

use anyhow::Result;
use serde::Serialize;
use snl_core::ReluReport;
use snl_models::ModelConfig;

use super::Context;
use crate::cli::CountArgs;
use crate::cost::{self, Cost};
use crate::model::{self, DEFAULT_THRESHOLD};
use crate::setup::usage;

#[derive(Serialize)]
struct CountOutput {
    arch: String,
    convention: String,
    threshold: f64,
    total: usize,
    kept: usize,
    sites: Vec<snl_core::SiteReport>,
    cost: Cost,
}

/// Which published convention a count follows (REFERENCE §2).
pub fn convention(config: &ModelConfig) -> String {
    match (config, config.extra_activation()) {
        (ModelConfig::ResNet(_), false) => "authors' code: no ReLU after the stem".into(),
        (ModelConfig::ResNet(_), true) => "standard: with the stem ReLU (DeepReDuce, SENet, DELPHI)".into(),
        (ModelConfig::Wrn(_), false) => "authors' code: no activation after the final BN".into(),
        (ModelConfig::Wrn(_), true) => "standard: with the final BN-ReLU".into(),
    }
}

pub fn run(ctx: &Context, args: CountArgs) -> Result<()> {
    let (config, model, threshold, cautions) = match &args.model {
        Some(path) => {
            let loaded = model::load(path, &args.model_args, &ctx.device)?;
            let threshold = args.threshold.unwrap_or_else(|| loaded.threshold());
            (loaded.config.clone(), loaded.frozen(&ctx.device)?, threshold, loaded.cautions(path)?)
        }
        None => {
            if args.model_args.arch.is_none() {
                return Err(usage("give --model FILE, or --arch with the model options"));
            }
            let config = args.model_args.config(None, None)?;
            let (model, _vars) = config.build_trainable(&ctx.device)?;
            (config, model, args.threshold.unwrap_or(DEFAULT_THRESHOLD), Vec::new())
        }
    };
    let report = ReluReport::of(&model, model::check_threshold(threshold)?)?;
    for caution in cautions {
        ctx.ui.warn(caution);
    }
    let out = CountOutput {
        arch: config.arch_name(),
        convention: convention(&config),
        threshold,
        total: report.total,
        kept: report.kept,
        cost: cost::estimate(report.kept),
        sites: report.sites,
    };
    if args.json {
        return ctx.ui.result(serde_json::to_string_pretty(&out)?);
    }
    let mut t = String::new();
    writeln!(t, "{:<24} {:>16} {:>10} {:>10} {:>7}", "site", "shape (C,H,W)", "total", "kept", "kept %")?;
    for s in &out.sites {
        let shape = format!("{}x{}x{}", s.shape[0], s.shape[1], s.shape[2]);
        let pct = 100.0 * s.kept as f64 / s.total as f64;
        writeln!(t, "{:<24} {:>16} {:>10} {:>10} {:>6.1}%", s.name, shape, s.total, s.kept, pct)?;
    }
    writeln!(
        t,
        "{}: {} of {} ReLUs kept ({:.2}%) at threshold {} ({})",
        out.arch,
        out.kept,
        out.total,
        100.0 * out.kept as f64 / out.total as f64,
        out.threshold,
        out.convention
    )?;
    write!(t, "estimated private-inference cost of the kept ReLUs:")?;
    for line in out.cost.lines() {
        write!(t, "\n  {line}")?;
    }
    ctx.ui.result(t)
}
