//! snl-models' typed errors.

use std::fmt;
use std::path::PathBuf;

/// A model configuration that cannot be built; each variant names the value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "WideResNet depth {0} is invalid: (depth - 4) must be a positive multiple of 6 (10, 16, 22, 28, ...)"
    )]
    WrnDepth(usize),
    #[error("{name} must be at least 1, got {value}")]
    Zero { name: &'static str, value: usize },
    #[error(
        "unknown architecture `{0}` (expected resnet18, resnet34, wrn-22-8 or any wrn-DEPTH-K, e.g. wrn-16-8)"
    )]
    UnknownArch(String),
    #[error("model metadata: {0}")]
    Metadata(String),
    #[error(
        "{arch} with {classes} classes, {image_size}x{image_size} inputs{width} would hold over {values} values \
         in its weights and one image's masked activations (the limit is {limit}, 4 GiB of f32): check the \
         width, the image size and the number of classes"
    )]
    TooLarge { arch: String, classes: usize, image_size: usize, width: String, values: u128, limit: u128 },
    #[error(
        "a {kernel}x{kernel} convolution with stride {stride} and padding {padding} does not fit a side of {input}"
    )]
    ConvDoesNotFit { input: usize, kernel: usize, stride: usize, padding: usize },
}

/// One tensor whose shape differs between a checkpoint and the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    pub name: String,
    /// The model's shape.
    pub expected: Vec<usize>,
    /// The checkpoint's shape.
    pub found: Vec<usize>,
}

/// Everything that keeps a checkpoint from loading strictly into a model, all at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateDictMismatch {
    /// In the model, not in the checkpoint.
    pub missing: Vec<String>,
    /// In the checkpoint, not in the model.
    pub unexpected: Vec<String>,
    pub shapes: Vec<ShapeMismatch>,
}

impl StateDictMismatch {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.shapes.is_empty()
    }
}

/// Names listed per kind of mismatch; the rest are counted (a width change misfits every
/// tensor: listing them all made a line of 10 KB).
const LISTED: usize = 5;

fn some(names: impl ExactSizeIterator<Item = String>) -> String {
    let total = names.len();
    let mut text = names.take(LISTED).collect::<Vec<_>>().join(", ");
    if total > LISTED {
        text.push_str(&format!(" and {} more", total - LISTED));
    }
    text
}

impl fmt::Display for StateDictMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!("{} missing: {}", self.missing.len(), some(self.missing.iter().cloned())));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!(
                "{} unexpected: {}",
                self.unexpected.len(),
                some(self.unexpected.iter().cloned())
            ));
        }
        if !self.shapes.is_empty() {
            let shapes = self
                .shapes
                .iter()
                .map(|s| format!("{} (model {:?}, checkpoint {:?})", s.name, s.expected, s.found));
            parts.push(format!("{} with a different shape: {}", self.shapes.len(), some(shapes)));
        }
        write!(f, "{}", parts.join("; "))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Candle(#[from] candle::Error),
    #[error("invalid model configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a safetensors file (nor a torch.save zip archive): {source}")]
    Safetensors {
        path: PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
    #[error(
        "{path}: a legacy (non-zip) torch.save file; snl reads the zip format of PyTorch 1.6 and later: \
         convert it with python -c \"import torch; torch.save(torch.load('OLD', map_location='cpu', \
         weights_only=False), 'NEW.pth')\" (only for a file you trust: loading runs its pickle)"
    )]
    LegacyTorch { path: PathBuf },
    #[error("{path}: cannot read the PyTorch checkpoint: {source}")]
    Pth {
        path: PathBuf,
        #[source]
        source: crate::pth::PthError,
    },
    #[error("{path}: not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path}: {bytes} bytes, over the {limit} bytes snl reads from a file")]
    FileTooLarge { path: PathBuf, bytes: u64, limit: u64 },
    #[error("{path} exists; nothing was overwritten")]
    Exists { path: PathBuf },
    #[error("{path}: checksum mismatch: the file was modified or damaged")]
    ChecksumMismatch { path: PathBuf },
    #[error("{path}: the checkpoint holds no tensors")]
    EmptyCheckpoint { path: PathBuf },
    #[error("checkpoint does not match the model: {0}")]
    StateDict(StateDictMismatch),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
