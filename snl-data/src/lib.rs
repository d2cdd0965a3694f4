//! Datasets as seeded, augmented candle batches.
//!
//! * Readers: CIFAR-10/100 binary releases (folder or official `.tar.gz`), Tiny-ImageNet-200
//!   (folder or `.zip`), torchvision-style image folders, and the Hugging Face Hub parquet
//!   files of `uoft-cs/cifar10`, `uoft-cs/cifar100`, `zh-plus/tiny-imagenet`.
//! * Every reader decodes once into a compact [`Dataset`] (`u8`, `N x 3 x H x W`, labels).
//! * A [`Loader`] turns it into batches: seeded shuffle, random crop with zero padding,
//!   horizontal flip, normalisation, in one pass into an `f32` buffer, produced ahead on a
//!   background thread. Same seed and epoch, same batches, on any machine.
//!
//! This crate knows nothing about models or masks. It never prints and never panics on bad
//! input: every failure is an [`Error`] naming the file and the problem.
//!
//! ```no_run
//! use snl_data::{BatchConfig, DatasetName, LoadOptions, Loader, Split, load};
//! # fn main() -> snl_data::Result<()> {
//! let opts = LoadOptions { data_dir: Some("data".into()), ..LoadOptions::from_env() };
//! let train = load("cifar10".parse::<DatasetName>()?, Split::Train, &opts)?;
//! let (train, val) = train.split_validation(5_000, 0)?;
//! let loader = Loader::new(train, BatchConfig::train(128, 42), &candle::Device::Cpu)?;
//! for batch in loader.epoch(0) {
//!     let (images, labels) = batch?; // f32 (128, 3, 32, 32), u32 (128)
//!     # let _ = (images, labels);
//! }
//! # let _ = val; Ok(()) }
//! ```

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, clippy::print_stderr)]

pub mod cifar;
mod dataset;
mod decode;
mod error;
pub mod folder;
pub mod hub;
mod loader;
mod rng;
pub mod tiny;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use cifar::Cifar;
pub use dataset::{Dataset, Normalization};
pub use decode::{MAX_SIDE, decode_image};
pub use error::{Error, Result};
pub use hub::{DownloadProgress, HubDataset, HubOptions, ProgressSink};
pub use loader::{Aug, BatchConfig, EpochBatches, EpochPlan, Loader};

/// Which half of a dataset. For Tiny-ImageNet, `Test` is the official validation set (the
/// official test set has no labels), as papers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// Training images.
    Train,
    /// Test images.
    Test,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
}

impl FromStr for Split {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            _ => Err(Error::UnknownSplit { name: s.to_owned() }),
        }
    }
}

/// The datasets this crate can find by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetName {
    /// CIFAR-10 (binary release, or `uoft-cs/cifar10`).
    Cifar10,
    /// CIFAR-100 with fine labels (binary release, or `uoft-cs/cifar100`).
    Cifar100,
    /// CIFAR-100 with coarse (20 superclass) labels.
    Cifar100Coarse,
    /// Tiny-ImageNet-200 (official zip or folder, or `zh-plus/tiny-imagenet`).
    TinyImageNet,
    /// A torchvision-style image folder `<data_dir>/<split>/<class>/<image>`.
    Folder,
}

impl DatasetName {
    /// Accepted names (the first spelling of each).
    pub const KNOWN: [&'static str; 5] =
        ["cifar10", "cifar100", "cifar100-coarse", "tiny-imagenet", "folder"];

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::Cifar10 => "cifar10",
            DatasetName::Cifar100 => "cifar100",
            DatasetName::Cifar100Coarse => "cifar100-coarse",
            DatasetName::TinyImageNet => "tiny-imagenet",
            DatasetName::Folder => "folder",
        }
    }

    /// The Hub dataset behind this name, if any.
    pub fn hub(self) -> Option<HubDataset> {
        match self {
            DatasetName::Cifar10 => Some(HubDataset::CIFAR10),
            DatasetName::Cifar100 => Some(HubDataset::CIFAR100),
            DatasetName::Cifar100Coarse => Some(HubDataset::CIFAR100_COARSE),
            DatasetName::TinyImageNet => Some(HubDataset::TINY_IMAGENET),
            DatasetName::Folder => None,
        }
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatasetName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let k = s.trim().to_ascii_lowercase().replace('_', "-");
        Ok(match k.as_str() {
            "cifar10" | "cifar-10" => DatasetName::Cifar10,
            "cifar100" | "cifar-100" | "cifar100-fine" => DatasetName::Cifar100,
            "cifar100-coarse" | "cifar-100-coarse" => DatasetName::Cifar100Coarse,
            "tiny-imagenet" | "tinyimagenet" | "tiny-imagenet-200" => DatasetName::TinyImageNet,
            "folder" | "imagefolder" | "image-folder" => DatasetName::Folder,
            _ => return Err(Error::UnknownDataset { name: s.to_owned(), known: Self::KNOWN.to_vec() }),
        })
    }
}

/// Where to look for data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadOptions {
    /// A local folder (or archive) with the data; for CIFAR and Tiny-ImageNet, when it is `None`
    /// (or, unless `local_only`, holds no copy), the Hub is used.
    pub data_dir: Option<PathBuf>,
    /// With a `data_dir`, never go to the Hub: a `data_dir` without the data is an error
    /// (the `snl` binary's `--data-dir` promises the local copy).
    pub local_only: bool,
    /// Hub settings.
    pub hub: HubOptions,
    /// Override the dataset's normalisation.
    pub normalization: Option<Normalization>,
}

impl LoadOptions {
    /// No data folder, Hub settings from the environment (`HF_HUB_OFFLINE`).
    pub fn from_env() -> Self {
        Self { data_dir: None, local_only: false, hub: HubOptions::from_env(), normalization: None }
    }
}

/// Finds and loads `split` of `name`.
///
/// * CIFAR-10/100: in `data_dir`, the extracted `cifar-10-batches-bin/` (`cifar-100-binary/`),
///   its parent, or the official `cifar-10-binary.tar.gz` (`cifar-100-binary.tar.gz`), also
///   given directly as `data_dir`;
/// * Tiny-ImageNet: `tiny-imagenet-200/`, its parent, or `tiny-imagenet-200.zip`;
/// * otherwise (no `data_dir`, or none of these in it and not `local_only`) the Hub cache,
///   downloading unless offline;
/// * `folder`: `<data_dir>/<split>/<class>/<image>` (`data_dir` required).
///
/// A `data_dir` that does not exist is an error, never a reason to go to the Hub: it is
/// most likely a mistyped path.
pub fn load(name: DatasetName, split: Split, opts: &LoadOptions) -> Result<Dataset> {
    if let Some(dir) = opts.data_dir.as_deref().filter(|dir| !dir.exists()) {
        return Err(Error::NotFound {
            what: format!("the data folder {}", dir.display()),
            looked: vec![dir.to_path_buf()],
            hint: "Check the path".into(),
        });
    }
    let local = |dir: &std::path::Path| match name {
        DatasetName::Cifar10 => cifar::load(Cifar::Ten, split, dir),
        DatasetName::Cifar100 => cifar::load(Cifar::HundredFine, split, dir),
        DatasetName::Cifar100Coarse => cifar::load(Cifar::HundredCoarse, split, dir),
        DatasetName::TinyImageNet => tiny::load(split, dir),
        DatasetName::Folder => folder::load(dir, split),
    };
    let data = match (&opts.data_dir, name.hub()) {
        (Some(dir), None) => local(dir)?,
        (None, None) => {
            return Err(Error::Invalid(format!(
                "the `{name}` dataset needs a data folder (<dir>/<split>/<class>/)"
            )));
        }
        (None, Some(hub_ds)) => hub::load(&hub_ds, split, &opts.hub)?,
        (Some(dir), Some(_)) if opts.local_only => local(dir)?,
        (Some(dir), Some(hub_ds)) => match local(dir) {
            Err(Error::NotFound { what, mut looked, hint }) => match hub::load(&hub_ds, split, &opts.hub) {
                Ok(d) => d,
                Err(hub_err) => {
                    looked.push(opts.hub.resolved_cache_dir());
                    return Err(Error::NotFound {
                        what,
                        looked,
                        hint: format!("{hint}. The Hub ({}) failed too: {hub_err}", hub_ds.repo),
                    });
                }
            },
            other => other?,
        },
    };
    Ok(match opts.normalization {
        Some(n) => data.with_normalization(n),
        None => data,
    })
}
