//! Data for the commands: train/validation/test splits from snl-data (or the demo's
//! synthetic set), batches for snl-core, and evaluation.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use candle::{DType, Device, ModuleT, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use snl_data::{BatchConfig, Dataset, DatasetName, LoadOptions, Loader, Normalization, Split};

use crate::cli::DataArgs;
use crate::model::keys;
use crate::setup::usage;
use crate::ui::Ui;

/// `--dataset`: a data set snl-data finds by name, or the in-memory synthetic one (no files
/// needed). Parsed once, by clap; `config.json` and model metadata hold its name (any
/// spelling [`DatasetName`] accepts reads back, as earlier runs wrote what the user typed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DatasetKind {
    Named(DatasetName),
    Synthetic,
}

impl std::str::FromStr for DatasetKind {
    type Err = snl_data::Error;

    fn from_str(s: &str) -> Result<Self, snl_data::Error> {
        if s.trim().eq_ignore_ascii_case("synthetic") {
            return Ok(Self::Synthetic);
        }
        s.parse().map(Self::Named)
    }
}

impl std::fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Named(name) => write!(f, "{name}"),
            Self::Synthetic => f.write_str("synthetic"),
        }
    }
}

impl TryFrom<String> for DatasetKind {
    type Error = snl_data::Error;

    fn try_from(s: String) -> Result<Self, snl_data::Error> {
        s.parse()
    }
}

impl From<DatasetKind> for String {
    fn from(d: DatasetKind) -> String {
        d.to_string()
    }
}

#[cfg(test)]
mod dataset_kind_tests {
    use super::*;

    /// `config.json` of earlier runs holds what the user typed; it reads back, and is written
    /// as the canonical name.
    #[test]
    fn reads_every_spelling_and_writes_the_canonical_name() {
        for (json, kind, canonical) in [
            ("\"cifar10\"", DatasetKind::Named(DatasetName::Cifar10), "\"cifar10\""),
            ("\"CIFAR-10\"", DatasetKind::Named(DatasetName::Cifar10), "\"cifar10\""),
            ("\"tiny_imagenet\"", DatasetKind::Named(DatasetName::TinyImageNet), "\"tiny-imagenet\""),
            ("\"synthetic\"", DatasetKind::Synthetic, "\"synthetic\""),
        ] {
            let parsed: DatasetKind = serde_json::from_str(json).unwrap();
            assert_eq!(parsed, kind, "{json}");
            assert_eq!(serde_json::to_string(&parsed).unwrap(), canonical);
        }
        let err = serde_json::from_str::<DatasetKind>("\"imagenet22k\"").unwrap_err().to_string();
        assert!(err.contains("imagenet22k"), "{err}");
    }
}

/// The in-memory synthetic data: with the seed it is made with, these define every image, so
/// a run's `config.json` and its models' metadata record them (resume and eval rebuild the
/// same images).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyntheticSpec {
    pub classes: usize,
    pub image_size: usize,
    /// Images per class in the training, validation and test splits.
    pub per_class: [usize; 3],
}

impl SyntheticSpec {
    /// `--dataset synthetic`: 1000 training, 200 validation and 200 test images.
    pub const DEFAULT: Self = Self { classes: 10, image_size: 16, per_class: [100, 20, 20] };
    /// `snl demo`'s: 1500, 400 and 400 images.
    pub const DEMO: Self = Self { classes: 10, image_size: 16, per_class: [150, 40, 40] };

    /// Images in the validation split.
    pub fn val_len(&self) -> usize {
        // Saturating: an edited file's sizes are refused by `check`, not by an overflow.
        self.classes.saturating_mul(self.per_class[1])
    }

    /// The set of a run or model made before the set was recorded: the demo's recorded a
    /// validation size of 400, `--dataset synthetic` 5000 (its own set had 200 images).
    pub fn legacy(val_size: usize) -> Self {
        if val_size == Self::DEMO.val_len() { Self::DEMO } else { Self::DEFAULT }
    }

    /// Refuses sizes that make no data set or an absurd one (from an edited file).
    fn check(&self) -> Result<()> {
        let images =
            self.per_class.iter().fold(0usize, |n, &c| n.saturating_add(c)).saturating_mul(self.classes);
        let bytes = images.saturating_mul(self.image_size.saturating_mul(self.image_size)).saturating_mul(3);
        if self.classes == 0 || self.image_size == 0 || self.per_class.contains(&0) || bytes > 1 << 30 {
            anyhow::bail!(
                "synthetic data {}: every size must be at least 1, and the images at most 1 GiB",
                serde_json::to_string(self)?
            );
        }
        Ok(())
    }
}

/// Where a run's data comes from, as recorded in its `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    pub dataset: DatasetKind,
    pub data_dir: Option<PathBuf>,
    pub offline: bool,
    /// The validation split's size (the synthetic set's own for synthetic data).
    pub val_size: usize,
    pub batch_size: usize,
    /// The synthetic set (synthetic data only). Absent in runs made before it was recorded
    /// (then [`SyntheticSpec::legacy`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<SyntheticSpec>,
    /// Training images before the validation split was held out, counted when the run
    /// started: a resume on data that gives another count is refused (its split, epochs and
    /// steps would not be the run's), and models record it (`RecordedSplit::train_images`).
    /// Absent in runs made before it was recorded (then unchecked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_images: Option<usize>,
    /// Set when `val_size` is a model's record (`commands::model_split`); not saved.
    #[serde(skip)]
    pub recorded_split: Option<RecordedSplit>,
}

/// A validation size read from a model's metadata, on the dataset it records. Where the data
/// holds it (more training images than the split and, where the model records it, as many as
/// it was trained on), the model's split is rebuilt and another `--val-size` (`given`) is
/// refused. Where it does not, this is not the model's data (a folder changed, or another
/// one: its path is not recorded); for a folder `--val-size` then chooses, with a warning (a
/// subset of that folder would hold the model's training images). Named datasets have fixed
/// sizes: a differing `--val-size` is refused before any data is read
/// (`commands::model_split`), and a copy that cannot hold the split is an error.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedSplit {
    pub model: PathBuf,
    pub given: Option<usize>,
    /// Why the model's split is kept, for the refusal.
    pub why: String,
    /// The training images the model's split was held out of; None in models made before
    /// it was recorded.
    pub train_images: Option<usize>,
}

impl RecordedSplit {
    /// Refuses a `--val-size` other than the recorded `size`.
    pub fn refuse_another(&self, size: usize) -> Result<()> {
        match self.given.filter(|&given| given != size) {
            Some(given) => Err(usage(format!(
                "--val-size {given} differs from the validation size {size} of {}: {}; drop --val-size",
                self.model.display(),
                self.why
            ))),
            None => Ok(()),
        }
    }

    /// The validation size to hold out of `available` training images of `name`: the
    /// recorded `size` where they hold the model's split, else `given` (on a folder) with
    /// the warning to show once every check has passed.
    fn choose(&self, name: DatasetName, size: usize, available: usize) -> Result<(usize, Option<String>)> {
        let changed = self.train_images.filter(|&n| n != available);
        if size < available && changed.is_none() {
            self.refuse_another(size)?;
            return Ok((size, None));
        }
        let model = self.model.display();
        let what = match changed {
            Some(n) => format!("{model} was made from a training set of {n} images, not these {available}"),
            None => format!(
                "{model} was selected on a validation split of {size} images, which needs more than \
                 these {available} training images"
            ),
        };
        let given = match (name, self.given) {
            (DatasetName::Folder, Some(given)) => given,
            (DatasetName::Folder, None) => {
                return Err(usage(format!(
                    "{name}: {what}: this cannot be the data it was split from; give --val-size N to hold \
                     out N of them"
                )));
            }
            _ => {
                return Err(usage(format!(
                    "{name}: {what}: this cannot be the data it was split from (a partial copy?); use the \
                     whole dataset"
                )));
            }
        };
        let note = (given > 0).then(|| {
            format!(
                "--val-size {given}: a new validation split, not the one {model} was selected on ({what}); \
                 if it holds the model's training images, validation accuracy overstates"
            )
        });
        Ok((given, note))
    }
}

impl DataConfig {
    /// The data `args` name; without `--dataset`, `model_dataset` (the one a model records).
    pub fn from_args(
        args: &DataArgs,
        default_batch: usize,
        model_dataset: Option<DatasetKind>,
    ) -> Result<Self> {
        let Some(dataset) = args.dataset.or(model_dataset) else {
            return Err(usage(
                "--dataset is required (cifar10, cifar100, tiny-imagenet, folder or synthetic)",
            ));
        };
        if dataset == DatasetKind::Synthetic {
            if let Some(size) = args.val_size {
                return Err(usage(format!(
                    "--val-size {size}: the synthetic data has its own validation set; drop --val-size"
                )));
            }
            if let Some(dir) = &args.data_dir {
                return Err(usage(format!(
                    "--data-dir {}: the synthetic data is made in memory and reads no files; drop --data-dir",
                    dir.display()
                )));
            }
        }
        if dataset == DatasetKind::Named(DatasetName::Folder)
            && args.data_dir.is_none()
            && args.dataset.is_none()
        {
            return Err(usage(
                "the model was trained on an image folder, whose path it does not record: give --data-dir <dir>",
            ));
        }
        if dataset == DatasetKind::Named(DatasetName::Folder) && args.data_dir.is_none() {
            return Err(usage(
                "--dataset folder needs --data-dir <dir>, laid out as <dir>/train/<class>/<image> and \
                 <dir>/test/<class>/<image>",
            ));
        }
        let batch_size = args.batch_size.unwrap_or(default_batch);
        if batch_size == 0 {
            return Err(usage("--batch-size must be at least 1"));
        }
        let data_dir = args.data_dir.as_ref().map(std::path::absolute).transpose()?;
        let config = Self {
            dataset,
            data_dir,
            offline: args.offline,
            val_size: args.val_size.unwrap_or(5000),
            batch_size,
            synthetic: None,
            train_images: None,
            recorded_split: None,
        };
        Ok(match dataset {
            DatasetKind::Synthetic => config.with_synthetic(SyntheticSpec::DEFAULT),
            DatasetKind::Named(_) => config,
        })
    }

    /// This configuration on the synthetic set `spec` (and its validation size).
    pub fn with_synthetic(self, spec: SyntheticSpec) -> Self {
        Self { synthetic: Some(spec), val_size: spec.val_len(), ..self }
    }

    /// The synthetic set (None for other data).
    pub fn synthetic_spec(&self) -> Option<SyntheticSpec> {
        (self.dataset == DatasetKind::Synthetic)
            .then(|| self.synthetic.unwrap_or_else(|| SyntheticSpec::legacy(self.val_size)))
    }

    /// What a model's metadata records of its data: the dataset, the validation size, the
    /// training images it was held out of and, for synthetic data, the set (see
    /// `commands::model_split`).
    pub fn metadata(&self) -> Result<Vec<(&'static str, String)>> {
        let mut meta = vec![(keys::DATASET, self.dataset.to_string())];
        match self.synthetic_spec() {
            Some(spec) => {
                meta.push((keys::VAL_SIZE, spec.val_len().to_string()));
                meta.push((keys::SYNTHETIC, serde_json::to_string(&spec)?));
            }
            None => meta.push((keys::VAL_SIZE, self.val_size.to_string())),
        }
        if let Some(n) = self.train_images {
            meta.push((keys::TRAIN_IMAGES, n.to_string()));
        }
        Ok(meta)
    }
}

/// A dataset's three splits; validation is held out of the training set.
pub struct Splits {
    pub train: Arc<Dataset>,
    /// None with `--val-size 0`: every training image trains.
    pub val: Option<Arc<Dataset>>,
    pub test: Arc<Dataset>,
    /// Training images before the hold-out (`DataConfig::train_images`); None for the
    /// synthetic data, whose validation set is made apart.
    pub train_images: Option<usize>,
    /// A warning for the caller to show once its own checks have passed (a refused command
    /// prints one error line): a new validation split where a model's could not be rebuilt.
    pub caution: Option<String>,
}

impl Splits {
    /// Reads (or downloads, showing progress on `ui`) the splits `config` names.
    pub fn load(config: &DataConfig, seed: u64, ui: &Ui) -> Result<Self> {
        let DatasetKind::Named(name) = config.dataset else {
            return Self::synthetic(&config.synthetic_spec().unwrap_or(SyntheticSpec::DEFAULT), seed);
        };
        // `--data-dir` promises the local copy: no Hub when it lacks the data.
        let local_only = config.data_dir.is_some();
        let mut opts =
            LoadOptions { data_dir: config.data_dir.clone(), local_only, ..LoadOptions::from_env() };
        opts.hub.offline |= config.offline;
        opts.hub.progress = Some(ui.download_progress());
        let train = snl_data::load(name, Split::Train, &opts)
            .with_context(|| format!("cannot load {name} (train)"))?;
        let test =
            snl_data::load(name, Split::Test, &opts).with_context(|| format!("cannot load {name} (test)"))?;
        same_classes(train.classes(), test.classes())
            .with_context(|| format!("{name}: the test split's classes are not the training split's"))?;
        Self::hold_out(name, train, test, config, seed)
    }

    fn hold_out(
        name: DatasetName,
        train: Dataset,
        test: Dataset,
        config: &DataConfig,
        seed: u64,
    ) -> Result<Self> {
        let available = train.len();
        if let Some(started) = config.train_images.filter(|&n| n != available) {
            let data = match &config.data_dir {
                Some(folder) => format!("the {} data in {}", config.dataset, folder.display()),
                None => format!("the {} data", config.dataset),
            };
            anyhow::bail!(
                "the run started on {started} training images, but {data} now gives {available}; a run \
                 resumes only on the data it started with: restore it, or start a new run"
            );
        }
        let (val_size, caution) = match &config.recorded_split {
            None => (config.val_size, None),
            Some(rec) => rec.choose(name, config.val_size, available)?,
        };
        let splits = |train, val, caution| Self {
            train: Arc::new(train),
            val,
            test: Arc::new(test),
            train_images: Some(available),
            caution,
        };
        if val_size == 0 {
            return Ok(splits(train, None, None));
        }
        // Worded for --val-size and its default (a model's record that does not fit is above).
        if val_size >= available {
            return Err(usage(format!(
                "{name}: a validation split of {val_size} images needs more than its {available} training \
                 images; give a smaller --val-size (default 5000; 0: no validation split)"
            )));
        }
        let (train, val) = train.split_validation(val_size, seed)?;
        Ok(splits(train, Some(Arc::new(val)), caution))
    }

    /// The synthetic data: `spec.classes` gratings (an orientation and one of two frequencies
    /// each) with a random phase, contrast, tint and noise.
    /// Telling them apart needs an energy detector, i.e. nonlinearity: a network stripped of
    /// every ReLU falls towards chance, so the demo shows which ReLUs matter.
    fn synthetic(spec: &SyntheticSpec, seed: u64) -> Result<Self> {
        spec.check()?;
        let SyntheticSpec { classes, image_size: side, per_class } = *spec;
        let names: Vec<String> = (0..classes).map(|c| format!("grating-{c}")).collect();
        let make = |count: usize, stream: u64| -> Result<Dataset> {
            let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(stream));
            let mut images = Vec::with_capacity(count * classes * 3 * side * side);
            let mut labels = Vec::with_capacity(count * classes);
            for i in 0..count * classes {
                let c = i % classes;
                // Orientations in [0, pi/2] only: a horizontal flip (training augmentation)
                // maps theta to pi - theta, which must not turn one class into another.
                let orientations = classes.div_ceil(2).max(2);
                let angle = std::f32::consts::FRAC_PI_2 * (c / 2) as f32 / (orientations - 1) as f32;
                let frequency = 2.0 * std::f32::consts::PI * (2.0 + (c % 2) as f32) / side as f32;
                let (dx, dy) = (angle.cos() * frequency, angle.sin() * frequency);
                let phase: f32 = rng.random_range(0.0..std::f32::consts::TAU);
                let contrast: f32 = rng.random_range(0.5..1.0);
                let tint: [f32; 3] =
                    [rng.random_range(-0.2..0.2), rng.random_range(-0.2..0.2), rng.random_range(-0.2..0.2)];
                for channel in tint {
                    for y in 0..side {
                        for x in 0..side {
                            let wave = (dx * x as f32 + dy * y as f32 + phase).sin() * contrast;
                            let noise: f32 = rng.random_range(-0.35..0.35);
                            let v = 0.5 + 0.4 * wave + channel + noise;
                            images.push((v.clamp(0.0, 1.0) * 255.0).round() as u8);
                        }
                    }
                }
                labels.push(c as u32);
            }
            let norm = Normalization { mean: [0.5; 3], std: [0.25; 3] };
            Ok(Dataset::from_raw(images, labels, side, side, names.clone(), norm)?)
        };
        let [train, val, test] = per_class;
        Ok(Self {
            train: Arc::new(make(train, 1)?),
            val: Some(Arc::new(make(val, 2)?)),
            test: Arc::new(make(test, 3)?),
            train_images: None,
            caution: None,
        })
    }

    /// Shows [`Self::caution`], if any (call once the command's own checks have passed).
    pub fn warn_caution(&self, ui: &Ui) {
        if let Some(caution) = &self.caution {
            ui.warn(caution);
        }
    }

    /// The validation split, or an error saying the run has none.
    pub fn val(&self) -> Result<&Arc<Dataset>> {
        self.val.as_ref().ok_or_else(|| {
            usage("no validation split: --val-size 0 holds out no images (every training image trains)")
        })
    }

    /// Metrics on the validation split; None without one.
    pub fn evaluate_val(
        &self,
        model: &impl ModuleT,
        batch_size: usize,
        device: &Device,
    ) -> Result<Option<Metrics>> {
        self.val.as_ref().map(|val| evaluate(model, val, batch_size, device)).transpose()
    }

    pub fn classes(&self) -> usize {
        self.train.num_classes()
    }

    pub fn image_size(&self) -> usize {
        self.train.height()
    }
}

/// `Ok` when `test` names the same classes as `train` in the same order (a label means the
/// same class in both), else an error naming the classes that differ.
fn same_classes(train: &[String], test: &[String]) -> Result<()> {
    if train == test {
        return Ok(());
    }
    let only = |a: &[String], b: &[String]| -> Vec<String> {
        a.iter().filter(|c| !b.contains(c)).cloned().collect()
    };
    let (only_train, only_test) = (only(train, test), only(test, train));
    if only_train.is_empty() && only_test.is_empty() {
        anyhow::bail!("the same {} classes in another order", train.len());
    }
    let mut parts = Vec::new();
    if !only_train.is_empty() {
        parts.push(format!("only in train: {}", crate::run::list_some(&only_train)));
    }
    if !only_test.is_empty() {
        parts.push(format!("only in test: {}", crate::run::list_some(&only_test)));
    }
    anyhow::bail!("{}", parts.join("; "))
}

/// Training batches for snl-core: shuffled and augmented per (seed, epoch).
pub struct TrainBatches {
    loader: Loader,
    bar: indicatif::ProgressBar,
}

impl TrainBatches {
    pub fn new(data: &Arc<Dataset>, batch_size: usize, seed: u64, device: &Device) -> Result<Self> {
        let loader = Loader::new(Arc::clone(data), BatchConfig::train(batch_size, seed), device)?;
        Ok(Self { loader, bar: indicatif::ProgressBar::hidden() })
    }

    pub fn len(&self) -> usize {
        self.loader.num_batches()
    }

    /// Shows progress on `bar` for the next epochs.
    pub fn set_bar(&mut self, bar: indicatif::ProgressBar) {
        self.bar = bar;
    }

    /// Clears the bar, so the epoch's summary line is not printed over it.
    pub fn finish_bar(&self) {
        self.bar.finish_and_clear();
    }
}

impl snl_core::Batches for TrainBatches {
    fn epoch(&mut self, epoch: usize) -> Box<dyn Iterator<Item = candle::Result<(Tensor, Tensor)>> + '_> {
        let bar = self.bar.clone();
        bar.reset();
        Box::new(self.loader.epoch(epoch).map(move |b| {
            bar.inc(1);
            b.map_err(candle::Error::wrap)
        }))
    }
}

/// Top-1 and top-5 accuracy (percent) and mean cross-entropy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub samples: usize,
    pub top1: f64,
    pub top5: f64,
    pub loss: f64,
    /// Samples with a NaN or infinite logit (each counted wrong); omitted when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nonfinite: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Credit of one sample's `logits` at top-1 and top-5 (each in 0..=1), and whether a logit is
/// not finite. Ties are broken uniformly at random, in expectation: with `g` other classes
/// above the true one and `t` level with it, top-k credit is `(k - g) / (t + 1)` clamped to
/// 0..=1. So a constant output scores chance (1/C at top-1), never 100%, and a sample with a
/// non-finite logit is wrong.
pub fn hits(logits: &[f32], label: usize) -> (f64, f64, bool) {
    if logits.iter().any(|v| !v.is_finite()) || label >= logits.len() {
        return (0.0, 0.0, true);
    }
    let truth = logits[label];
    let others = logits.iter().enumerate().filter(|&(j, _)| j != label);
    let above = others.clone().filter(|&(_, &v)| v > truth).count() as f64;
    let level = others.filter(|&(_, &v)| v == truth).count() as f64;
    let credit = |k: f64| ((k - above) / (level + 1.0)).clamp(0.0, 1.0);
    (credit(1.0), credit(5.0), false)
}

/// Evaluates `model` in eval mode over `data`, in order, without augmentation.
pub fn evaluate(
    model: &impl ModuleT,
    data: &Arc<Dataset>,
    batch_size: usize,
    device: &Device,
) -> Result<Metrics> {
    let loader = Loader::new(Arc::clone(data), BatchConfig::eval(batch_size), device)?;
    let (mut top1, mut top5, mut nonfinite, mut loss_sum, mut samples) = (0f64, 0f64, 0usize, 0f64, 0usize);
    for batch in loader.epoch_inline(0) {
        let (x, y) = batch?;
        let logits = model.forward_t(&x, false)?;
        let n = y.dim(0)?;
        let loss = snl_core::loss::cross_entropy(&logits, &y)?.to_scalar::<f32>()?;
        loss_sum += f64::from(loss) * n as f64;
        let labels = y.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        for (row, label) in logits.to_dtype(DType::F32)?.to_vec2::<f32>()?.iter().zip(labels) {
            let (one, five, bad) = hits(row, label as usize);
            top1 += one;
            top5 += five;
            nonfinite += usize::from(bad);
        }
        samples += n;
    }
    let pct = |credit: f64| 100.0 * credit / samples.max(1) as f64;
    Ok(Metrics {
        samples,
        top1: pct(top1),
        top5: pct(top5),
        loss: loss_sum / samples.max(1) as f64,
        nonfinite,
    })
}

#[cfg(test)]
mod tests {
    use super::{hits, same_classes};

    #[test]
    fn train_and_test_must_name_the_same_classes() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(same_classes(&names(&["a", "b"]), &names(&["a", "b"])).is_ok());
        let err = same_classes(&names(&["a", "b", "c"]), &names(&["a", "x", "c", "y"])).unwrap_err();
        assert_eq!(err.to_string(), "only in train: b; only in test: x, y");
        let err = same_classes(&names(&["a", "b"]), &names(&["a", "b", "c"])).unwrap_err();
        assert_eq!(err.to_string(), "only in test: c");
        let err = same_classes(&names(&["a", "b"]), &names(&["b", "a"])).unwrap_err();
        assert_eq!(err.to_string(), "the same 2 classes in another order");
    }

    #[test]
    fn ties_are_shared_and_non_finite_logits_are_wrong() {
        assert_eq!(hits(&[0.0; 10], 3), (0.1, 0.5, false), "a constant output scores chance");
        assert_eq!(hits(&[1.0, 2.0, 2.0], 1), (0.5, 1.0, false), "a two-way tie for first is half a hit");
        assert_eq!(hits(&[1.0, 3.0, 2.0], 1), (1.0, 1.0, false));
        assert_eq!(hits(&[5.0, 4.0, 3.0, 2.0, 1.0, 0.0], 4), (0.0, 1.0, false));
        assert_eq!(hits(&[5.0, 4.0, 3.0, 2.0, 1.0, 1.0], 4), (0.0, 0.5, false));
        assert_eq!(hits(&[9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 1.0], 6), (0.0, 0.0, false));
        assert_eq!(hits(&[f32::NAN; 4], 0), (0.0, 0.0, true));
        assert_eq!(hits(&[0.0, 9.0, f32::INFINITY], 1), (0.0, 0.0, true));
        assert_eq!(hits(&[0.0, f32::NAN, 1.0], 2), (0.0, 0.0, true));
    }
}
