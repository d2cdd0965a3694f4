//! One module per command; `run` dispatches after the global settings are applied.

mod count;
mod demo;
mod eval;
mod export;
mod import;
mod linearize;
mod predict;
mod train;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::cli::{Cli, Command};
use crate::data::Metrics;
use crate::setup::{self, usage};
use crate::ui::Ui;

/// What every command needs from the global flags.
pub struct Context {
    pub device: candle::Device,
    pub seed: u64,
    pub ui: Ui,
    /// The hidden `--stop-after-epochs` of train and linearize (tests of `--resume`).
    pub stop_after_epochs: Option<usize>,
}

impl Context {
    /// This context, stopping after `epochs` checkpointed epochs when given.
    pub fn stopping_after(&self, epochs: Option<usize>) -> Self {
        Self { device: self.device.clone(), seed: self.seed, ui: self.ui, stop_after_epochs: epochs }
    }

    /// `Err(Stopped)` when `--stop-after-epochs` asks to stop once `done` epochs are checkpointed.
    pub fn check_stop(&self, done: usize, run: &crate::run::RunDir) -> Result<()> {
        match self.stop_after_epochs {
            Some(n) if done >= n => {
                Err(crate::run::Stopped { epochs: done, dir: run.root().to_path_buf() }.into())
            }
            _ => Ok(()),
        }
    }
}

pub fn run(cli: Cli) -> Result<()> {
    setup::threads(cli.global.threads)?;
    let ctx = Context {
        device: setup::device(&cli.global.device)?,
        seed: cli.global.seed,
        ui: Ui::new(cli.global.quiet, cli.global.verbose),
        stop_after_epochs: None,
    };
    match cli.command {
        Command::Demo(args) => demo::run(&ctx, args),
        Command::Train(args) => train::run(&ctx, args),
        Command::Linearize(args) => linearize::run(&ctx, args),
        Command::Eval(args) => eval::run(&ctx, args),
        Command::Count(args) => count::run(&ctx, args),
        Command::Predict(args) => predict::run(&ctx, args),
        Command::Import(args) => import::run(&ctx, args),
        Command::Export(args) => export::run(&ctx, args),
    }
}

/// `result.json` of a finished run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub command: String,
    pub arch: String,
    pub dataset: String,
    pub selection: Option<crate::cli::Selection>,
    /// ReLUs allowed (linearize only).
    pub budget: Option<usize>,
    /// ReLUs the saved model keeps.
    pub relu_count: usize,
    pub relu_total: usize,
    /// Validation and test metrics of the best-by-validation model.
    pub val: Metrics,
    pub test: Metrics,
    /// Epoch (from 0) of the best model in the last training phase; None if it did not train.
    pub best_epoch: Option<usize>,
    pub epochs: usize,
    pub search_epochs: Option<usize>,
    pub wall_time_s: f64,
    pub seed: u64,
}

/// A budget: a count (`50000`, `50k`, `1.5m`) or a fraction (`10%`, `0.1`).
pub fn parse_budget(text: &str) -> Result<snl_core::Budget> {
    let t = text.trim().to_ascii_lowercase();
    let bad = || usage(format!("--budget {text}: expected a count (50000, 50k) or a fraction (10%, 0.1)"));
    if let Some(pct) = t.strip_suffix('%') {
        let p: f64 = pct.trim().parse().map_err(|_| bad())?;
        return Ok(snl_core::Budget::Fraction(p / 100.0));
    }
    let (number, scale) = match t.strip_suffix('k') {
        Some(n) => (n, 1e3),
        None => match t.strip_suffix('m') {
            Some(n) => (n, 1e6),
            None => (t.as_str(), 1.0),
        },
    };
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    if !value.is_finite() || value < 0.0 {
        return Err(bad());
    }
    if scale == 1.0 && value < 1.0 && value > 0.0 {
        return Ok(snl_core::Budget::Fraction(value));
    }
    let count = value * scale;
    if count.fract() != 0.0 {
        return Err(bad());
    }
    Ok(snl_core::Budget::Absolute(count as usize))
}

#[cfg(test)]
mod tests {
    use super::parse_budget;
    use snl_core::Budget;

    #[test]
    fn budgets_parse_as_counts_or_fractions() {
        assert_eq!(parse_budget("50000").unwrap(), Budget::Absolute(50_000));
        assert_eq!(parse_budget("50k").unwrap(), Budget::Absolute(50_000));
        assert_eq!(parse_budget("12.9K").unwrap(), Budget::Absolute(12_900));
        assert_eq!(parse_budget("1m").unwrap(), Budget::Absolute(1_000_000));
        assert_eq!(parse_budget("10%").unwrap(), Budget::Fraction(0.1));
        assert_eq!(parse_budget("0.1").unwrap(), Budget::Fraction(0.1));
        assert_eq!(parse_budget("1").unwrap(), Budget::Absolute(1));
        for bad in ["", "ten", "-5", "1.5", "k", "5%%", "nan"] {
            assert!(parse_budget(bad).is_err(), "{bad}");
        }
    }
}
