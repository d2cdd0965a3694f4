//! What `snl linearize` refuses before any epoch runs: configuration values (named by
//! their flag), a resume's cap below the epochs searched, a resume on another training set,
//! and a control whose frozen-mask training would outrun `--max-search-epochs`.

use std::path::Path;

use anyhow::Result;
use snl_core::{Budget, ConfigError, SnlConfig};

use super::{LinearizeConfig, LinearizeState, Stage};
use crate::cli::Selection;
use crate::data::{Splits, TrainBatches};
use crate::run::RunDir;
use crate::setup::usage;

/// The flag of each value [`SnlConfig::check`] names.
const FLAGS: [(&str, &str); 5] = [
    ("lasso coefficient", "--lasso"),
    ("search learning rate", "--search-lr"),
    ("temperature", "--temperature"),
    ("finetune learning rate", "--finetune-lr"),
    ("finetune weight decay", "--finetune-weight-decay"),
];

/// A usage error naming the flag and value `err` is about; the budget's also names the
/// model whose ReLUs it is measured against.
pub(super) fn config_error(err: &ConfigError, snl: &SnlConfig, model: &Path) -> anyhow::Error {
    let flag = match err {
        ConfigError::NotPositive { name, value } | ConfigError::Negative { name, value } => {
            FLAGS.iter().find(|(n, _)| n == name).map(|(_, flag)| format!("{flag} {value}"))
        }
        ConfigError::KappaTooSmall(v) => Some(format!("--kappa {v}")),
        ConfigError::Threshold(v) => Some(format!("--threshold {v}")),
        ConfigError::Momentum(v) => Some(format!("--finetune-momentum {v}")),
        ConfigError::NoSearchEpochs => Some(format!("--max-search-epochs {}", snl.max_search_epochs)),
        ConfigError::BudgetTooLarge { .. } | ConfigError::BudgetZero | ConfigError::FractionOutOfRange(_) => {
            let budget = match snl.budget {
                Budget::Absolute(n) => n.to_string(),
                // Tiny fractions in exponent form: `{}` writes 1e-300 as 300 digits.
                Budget::Fraction(f) if f != 0.0 && f.abs() < 1e-5 => format!("{:.3e}%", f * 100.0),
                Budget::Fraction(f) => format!("{}%", f * 100.0),
            };
            return usage(format!("--budget {budget}: {err} of {}", model.display()));
        }
        _ => None,
    };
    usage(format!("{}: {err}", flag.unwrap_or_else(|| model.display().to_string())))
}

/// A resume's `--max-search-epochs cap` must leave the search somewhere to go: not below
/// the epochs it has searched already (it would stop at once, at a cap it has passed).
pub(super) fn check_new_cap(run: &RunDir, cap: usize) -> Result<()> {
    if cap == 0 {
        return Err(usage("--max-search-epochs 0: must be at least 1"));
    }
    if let Some(LinearizeState { stage: Stage::Search(searched), .. }) = run.saved_state()?
        && cap < searched.epoch
    {
        return Err(usage(format!(
            "--max-search-epochs {cap} is below the {} search epochs {} has run already: give at least {} \
             to search on, or --finish-at-cap to end the search where it is",
            searched.epoch,
            run.root().display(),
            searched.epoch.saturating_add(1)
        )));
    }
    Ok(())
}

/// A resumed run must train on the training set it started with (when its size is recorded).
pub(super) fn check_train_size(config: &LinearizeConfig, splits: &Splits, dir: &Path) -> Result<()> {
    let now = splits.train.len();
    match config.train_size {
        Some(started) if started != now => {
            let data = match &config.data.data_dir {
                Some(folder) => format!("the {} data in {}", config.data.dataset, folder.display()),
                None => format!("the {} data", config.data.dataset),
            };
            anyhow::bail!(
                "{}: the run started on {started} training images, but {data} now gives {now}; a run resumes \
                 only on the data it started with: restore it, or start a new run",
                dir.display()
            )
        }
        _ => Ok(()),
    }
}

/// A control's frozen-mask training stands in for a search, so it obeys the search's
/// epoch cap: refused when its steps need more epochs than `--max-search-epochs`.
pub(super) fn check_frozen_mask_epochs(
    config: &LinearizeConfig,
    splits: &Splits,
    device: &candle::Device,
) -> Result<()> {
    let batches = TrainBatches::new(&splits.train, config.data.batch_size, config.seed, device)?.len();
    if config.selection == Selection::Snl || batches == 0 {
        return Ok(());
    }
    let cap = config.snl.max_search_epochs;
    let (given, epochs) = match config.frozen_mask_steps {
        Some(steps) => (format!("--search-steps {steps}"), steps.div_ceil(batches)),
        None => (format!("--search-epochs {}", config.frozen_mask_epochs), config.frozen_mask_epochs),
    };
    if epochs > cap {
        return Err(usage(format!(
            "{given} needs {epochs} epochs of {batches} batches, more than --max-search-epochs {cap}: a control \
             trains at most as long as a search may; raise --max-search-epochs or train fewer steps"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value the core checks is refused naming its flag, never the model file.
    #[test]
    fn each_bad_value_names_its_flag() {
        let model = Path::new("base.safetensors");
        let paper = SnlConfig::paper(Budget::Fraction(0.1));
        type Edit = fn(&mut SnlConfig);
        let cases: [(&str, Edit); 11] = [
            ("--lasso NaN", |c| c.lasso = f64::NAN),
            ("--lasso -1", |c| c.lasso = -1.0),
            ("--lasso inf", |c| c.lasso = f64::INFINITY),
            ("--search-lr 0", |c| c.search_lr = 0.0),
            ("--temperature 0", |c| c.temperature = 0.0),
            ("--kappa -1", |c| c.kappa = -1.0),
            ("--threshold 1", |c| c.threshold = 1.0),
            ("--finetune-lr 0", |c| c.finetune.lr = 0.0),
            ("--finetune-weight-decay -1", |c| c.finetune.weight_decay = -1.0),
            ("--finetune-momentum 1", |c| c.finetune.momentum = 1.0),
            ("--max-search-epochs 0", |c| c.max_search_epochs = 0),
        ];
        for (want, edit) in cases {
            let mut config = paper.clone();
            edit(&mut config);
            let err = config.clone().check(1000).unwrap_err();
            let text = config_error(&err, &config, model).to_string();
            assert!(text.starts_with(&format!("{want}: ")), "{want}: {text}");
            assert!(!text.contains("base.safetensors"), "{text}");
        }
        let mut config = paper;
        config.budget = Budget::Absolute(5000);
        let err = config.clone().check(1000).unwrap_err();
        let text = config_error(&err, &config, model).to_string();
        assert_eq!(
            text,
            "--budget 5000: budget 5000 ReLUs must be below the network's 1000 ReLUs of base.safetensors"
        );
    }
}
