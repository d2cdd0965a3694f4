//! Data for the commands: train/validation/test splits from snl-data (or the demo's
//! synthetic set), batches for snl-core, and evaluation.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use candle::{D, DType, Device, ModuleT, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use snl_data::{BatchConfig, Dataset, DatasetName, LoadOptions, Loader, Normalization, Split};

use crate::cli::DataArgs;
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

/// Where a run's data comes from, as recorded in its `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    pub dataset: DatasetKind,
    pub data_dir: Option<PathBuf>,
    pub offline: bool,
    pub val_size: usize,
    pub batch_size: usize,
}

impl DataConfig {
    pub fn from_args(args: &DataArgs, default_batch: usize) -> Result<Self> {
        let Some(dataset) = args.dataset else {
            return Err(usage(
                "--dataset is required (cifar10, cifar100, tiny-imagenet, folder or synthetic)",
            ));
        };
        if let (DatasetKind::Synthetic, Some(size)) = (dataset, args.val_size) {
            return Err(usage(format!(
                "--val-size {size}: the synthetic data has its own validation set; drop --val-size"
            )));
        }
        let batch_size = args.batch_size.unwrap_or(default_batch);
        if batch_size == 0 {
            return Err(usage("--batch-size must be at least 1"));
        }
        let data_dir = args.data_dir.as_ref().map(std::path::absolute).transpose()?;
        Ok(Self {
            dataset,
            data_dir,
            offline: args.offline,
            val_size: args.val_size.unwrap_or(5000),
            batch_size,
        })
    }
}

/// A dataset's three splits; validation is held out of the training set.
pub struct Splits {
    pub train: Arc<Dataset>,
    pub val: Arc<Dataset>,
    pub test: Arc<Dataset>,
}

impl Splits {
    /// Reads (or downloads, showing progress on `ui`) the splits `config` names.
    pub fn load(config: &DataConfig, seed: u64, ui: &Ui) -> Result<Self> {
        let DatasetKind::Named(name) = config.dataset else {
            return Self::synthetic(10, 16, [100, 20, 20], seed);
        };
        let mut opts = LoadOptions { data_dir: config.data_dir.clone(), ..LoadOptions::from_env() };
        opts.hub.offline |= config.offline;
        opts.hub.progress = Some(ui.download_progress());
        let train = snl_data::load(name, Split::Train, &opts)
            .with_context(|| format!("cannot load {name} (train)"))?;
        let test =
            snl_data::load(name, Split::Test, &opts).with_context(|| format!("cannot load {name} (test)"))?;
        Self::hold_out(train, test, config.val_size, seed)
    }

    fn hold_out(train: Dataset, test: Dataset, val_size: usize, seed: u64) -> Result<Self> {
        if val_size == 0 || val_size >= train.len() {
            return Err(usage(format!(
                "--val-size {val_size}: must be between 1 and the {} training images",
                train.len().saturating_sub(1)
            )));
        }
        let (train, val) = train.split_validation(val_size, seed)?;
        Ok(Self { train: Arc::new(train), val: Arc::new(val), test: Arc::new(test) })
    }

    /// The demo's data: `classes` gratings (an orientation and one of two frequencies each)
    /// with a random phase, contrast, tint and noise.
    /// Telling them apart needs an energy detector, i.e. nonlinearity: a network stripped of
    /// every ReLU falls towards chance, so the demo shows which ReLUs matter.
    pub fn synthetic(classes: usize, side: usize, per_class: [usize; 3], seed: u64) -> Result<Self> {
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
            val: Arc::new(make(val, 2)?),
            test: Arc::new(make(test, 3)?),
        })
    }

    pub fn classes(&self) -> usize {
        self.train.num_classes()
    }

    pub fn image_size(&self) -> usize {
        self.train.height()
    }
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
}

/// Evaluates `model` in eval mode over `data`, in order, without augmentation.
pub fn evaluate(
    model: &impl ModuleT,
    data: &Arc<Dataset>,
    batch_size: usize,
    device: &Device,
) -> Result<Metrics> {
    let loader = Loader::new(Arc::clone(data), BatchConfig::eval(batch_size), device)?;
    let (mut top1, mut top5, mut loss_sum, mut samples) = (0usize, 0usize, 0f64, 0usize);
    for batch in loader.epoch_inline(0) {
        let (x, y) = batch?;
        let logits = model.forward_t(&x, false)?;
        let n = y.dim(0)?;
        let loss = snl_core::loss::cross_entropy(&logits, &y)?.to_scalar::<f32>()?;
        loss_sum += f64::from(loss) * n as f64;
        // Rank of the true class: how many logits beat it.
        let true_logit = logits.gather(&y.to_dtype(DType::U32)?.unsqueeze(1)?, D::Minus1)?;
        let beaten = logits.broadcast_gt(&true_logit)?.to_dtype(DType::F32)?.sum(D::Minus1)?;
        for rank in beaten.to_vec1::<f32>()? {
            top1 += usize::from(rank < 1.0);
            top5 += usize::from(rank < 5.0);
        }
        samples += n;
    }
    let pct = |hits: usize| 100.0 * hits as f64 / samples.max(1) as f64;
    Ok(Metrics { samples, top1: pct(top1), top5: pct(top5), loss: loss_sum / samples.max(1) as f64 })
}
