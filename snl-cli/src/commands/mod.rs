//! One module per command; `run` dispatches after the global settings are applied.

mod count;
mod demo;
mod eval;
mod export;
mod import;
mod linearize;
mod predict;
mod train;

use std::path::Path;
use std::str::FromStr;

use anyhow::{Context as _, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::cli::{Cli, Command};
use crate::data::{DataConfig, DatasetKind, Metrics, RecordedSplit, SyntheticSpec};
use crate::model::{Loaded, keys};
use crate::setup::{self, usage};
use crate::ui::Ui;
use snl_data::DatasetName;

/// What every command needs from the global flags.
pub struct Context {
    pub device: candle::Device,
    /// `--seed`, else 0.
    pub seed: u64,
    /// Whether `--seed` was given (a recorded seed is checked against it).
    pub seed_given: bool,
    pub ui: Ui,
    /// The hidden `--stop-after-epochs` of train and linearize (tests of `--resume`).
    pub stop_after_epochs: Option<usize>,
}

impl Context {
    /// This context, stopping after `epochs` checkpointed epochs when given.
    pub fn stopping_after(&self, epochs: Option<usize>) -> Self {
        Self { stop_after_epochs: epochs, device: self.device.clone(), ..*self }
    }

    /// `recorded`, the seed of `source`; a `--seed` that differs is refused (`why` says why it
    /// must be the recorded one).
    pub fn recorded_seed(&self, recorded: u64, source: &std::path::Path, why: &str) -> Result<u64> {
        if self.seed_given && self.seed != recorded {
            return Err(usage(format!(
                "--seed {} differs from the seed {recorded} of {}: {why}; drop --seed",
                self.seed,
                source.display()
            )));
        }
        Ok(recorded)
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
    let threads_warning = setup::threads(cli.global.threads)?;
    let ctx = Context {
        device: setup::device(cli.global.device)?,
        seed: cli.global.seed.unwrap_or(0),
        seed_given: cli.global.seed.is_some(),
        ui: Ui::new(cli.global.quiet, cli.global.verbose),
        stop_after_epochs: None,
    };
    // A flag that would do nothing is refused, as elsewhere: these draw nothing at random.
    let unseeded = match &cli.command {
        Command::Count(_) => Some("count"),
        Command::Predict(_) => Some("predict"),
        Command::Import(_) => Some("import"),
        Command::Export(_) => Some("export"),
        _ => None,
    };
    if let (Some(command), Some(seed)) = (unseeded, cli.global.seed) {
        return Err(usage(format!("--seed {seed}: `snl {command}` draws nothing at random; drop --seed")));
    }
    if let Some(warning) = threads_warning {
        ctx.ui.warn(warning);
    }
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

/// Refuses `path`, the new file of `flag`, when its folder is missing or something is at
/// `path` (a dangling symbolic link too): before any work, not after it. The write itself
/// never replaces anything either (`checkpoint::write_new`).
pub fn check_new_file(path: &Path, flag: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        let why = if dir.exists() { "is not a folder" } else { "does not exist" };
        bail!("cannot write {flag} {}: the folder {} {why}", path.display(), dir.display());
    }
    match path.symlink_metadata() {
        Ok(_) => bail!("{} exists; choose another {flag} (nothing was overwritten)", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot check {flag} {}", path.display())),
    }
}

/// The model (`name` says which) must take the data's images and classes.
pub fn check_fits(
    name: impl std::fmt::Display,
    config: &snl_models::ModelConfig,
    dataset: crate::data::DatasetKind,
    splits: &crate::data::Splits,
) -> Result<()> {
    if config.classes() != splits.classes() || config.image_size() != splits.image_size() {
        return Err(usage(format!(
            "{name}: a {}-class model for {}x{} images, but the {dataset} data has {} classes of {}x{} images",
            config.classes(),
            config.image_size(),
            config.image_size(),
            splits.classes(),
            splits.image_size(),
            splits.image_size()
        )));
    }
    Ok(())
}

/// The seed with which to rebuild the splits of `data` for the model of `path`, setting
/// `data.val_size` (and the synthetic set) too: on the data the model was trained on, the
/// seed, validation size and synthetic set its metadata records (else "val" could hold the
/// model's training images, and the synthetic set would be other images), and a `--seed`
/// that differs is refused (`use_` says what needs them), as is a differing `--val-size`
/// when the data turns out to hold the model's split (`data::RecordedSplit`); on other
/// data, `--seed` and `data`'s own.
pub fn model_split(
    ctx: &Context,
    loaded: &Loaded,
    path: &Path,
    data: &mut DataConfig,
    val_size_given: Option<usize>,
    use_: &str,
) -> Result<u64> {
    let same_data = |recorded: &String| recorded.parse().ok() == Some(data.dataset);
    if !loaded.metadata.get(keys::DATASET).is_some_and(same_data) {
        return Ok(ctx.seed);
    }
    let why = if data.dataset == DatasetKind::Synthetic {
        format!("{use_} the synthetic images the model was trained on (the seed draws them)")
    } else {
        format!("{use_} the validation split the model was selected on")
    };
    let mut seed = ctx.seed;
    if let Some(recorded) = recorded(loaded, keys::SEED, path)? {
        seed = ctx.recorded_seed(recorded, path, &why)?;
    }
    if let Some(size) = recorded(loaded, keys::VAL_SIZE, path)? {
        // A model trained on every image has no split to keep: any held out of them trained it.
        let why = match size {
            0 => "every training image trained it (--val-size 0), so none is held out".to_string(),
            _ => why,
        };
        let train_images = recorded(loaded, keys::TRAIN_IMAGES, path)?;
        // A named dataset's size is fixed: refused before any data is read. A folder's is
        // settled once its training set is counted (`data::RecordedSplit`).
        let rec = RecordedSplit { model: path.to_path_buf(), given: val_size_given, why, train_images };
        if data.dataset != DatasetKind::Named(DatasetName::Folder) {
            rec.refuse_another(size)?;
        }
        data.val_size = size;
        data.recorded_split = Some(rec);
    }
    if data.dataset == DatasetKind::Synthetic {
        let spec = match loaded.metadata.get(keys::SYNTHETIC) {
            Some(text) => serde_json::from_str(text).map_err(|e| {
                anyhow!("{}: bad {} `{text}` in its metadata: {e}", path.display(), keys::SYNTHETIC)
            })?,
            // Made before the set was recorded: its validation size tells which it was.
            None => SyntheticSpec::legacy(data.val_size),
        };
        *data = data.clone().with_synthetic(spec);
    }
    Ok(seed)
}

/// The number the model's metadata records under `key`, if any.
fn recorded<T: FromStr>(loaded: &Loaded, key: &str, path: &Path) -> Result<Option<T>> {
    let parse =
        |v: &String| v.parse().map_err(|_| anyhow!("{}: bad {key} `{v}` in its metadata", path.display()));
    loaded.metadata.get(key).map(parse).transpose()
}

/// Warns of each of [`Loaded::cautions`] about the model at `path`.
pub fn warn_cautions(ctx: &Context, loaded: &Loaded, path: &Path) -> Result<()> {
    for caution in loaded.cautions(path)? {
        ctx.ui.warn(caution);
    }
    Ok(())
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
    /// `relu_count <= budget` (linearize only): false when `--finish-at-cap` ended a search
    /// above its budget. Absent in runs made before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_budget: Option<bool>,
    /// ReLUs the saved model keeps.
    pub relu_count: usize,
    pub relu_total: usize,
    /// Validation and test metrics of the kept model; no validation metrics with
    /// `--val-size 0`.
    pub val: Option<Metrics>,
    pub test: Metrics,
    /// Which model was kept: [`KEPT_BEST_VAL`] or [`KEPT_LAST`].
    pub model_kept: String,
    /// Epoch (from 0) of the best model in the last training phase; None if no epoch of it
    /// was kept: nothing trained, or (linearize) the binarized model before finetuning did
    /// best on validation, or was kept as is (`--finetune-epochs 0`).
    pub best_epoch: Option<usize>,
    pub epochs: usize,
    /// Search epochs (snl) or frozen-mask epochs (random, uniform) before the finetuning.
    pub search_epochs: Option<usize>,
    /// Optimizer steps of those epochs (the last may end early, at the budget): a control
    /// given `--search-steps` this many trains exactly as long as the SNL run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_steps: Option<usize>,
    /// Every epoch of this run that updated weights (all phases; one cut short counts).
    pub epochs_trained: usize,
    /// The search's initial and final lasso coefficient (snl only).
    pub lambda0: Option<f64>,
    pub lambda_final: Option<f64>,
    pub wall_time_s: f64,
    pub seed: u64,
}

/// `result.json`'s `model_kept` with a validation split.
pub const KEPT_BEST_VAL: &str = "the epoch with the best validation top-1";
/// `model_kept` with `--val-size 0`: never an epoch chosen on the test set.
pub const KEPT_LAST: &str = "the last epoch (no validation split: --val-size 0)";

/// `--budget`'s value parser: the grammar of `snl_budget` (counts `50000`, `50k`, `1.5m`;
/// fractions `10%`, `0.1`), shared with xtask, as snl-core's `Budget`.
pub fn parse_budget(text: &str) -> std::result::Result<snl_core::Budget, String> {
    match text.parse::<snl_budget::Budget>().map_err(|e| format!("--budget {text}: {}", e.reason()))? {
        snl_budget::Budget::Count(n) => usize::try_from(n)
            .map(snl_core::Budget::Absolute)
            .map_err(|_| format!("--budget {text}: more ReLUs than this platform can count")),
        snl_budget::Budget::Fraction(f) => Ok(snl_core::Budget::Fraction(f)),
    }
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
        assert_eq!(parse_budget("1.5m").unwrap(), Budget::Absolute(1_500_000));
        assert_eq!(parse_budget("10%").unwrap(), Budget::Fraction(0.1));
        assert_eq!(parse_budget("0.1").unwrap(), Budget::Fraction(0.1));
        assert_eq!(parse_budget("1").unwrap(), Budget::Absolute(1));
        for bad in ["", "ten", "-5", "1.5", "k", "5%%", "nan", "100%", "0%", "-5%", "150%", "nan%", "0"] {
            let err = parse_budget(bad).unwrap_err();
            assert!(err.starts_with(&format!("--budget {bad}: ")), "{bad}: {err}");
        }
    }
}
