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

impl fmt::Display for StateDictMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!("{} missing: {}", self.missing.len(), self.missing.join(", ")));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!("{} unexpected: {}", self.unexpected.len(), self.unexpected.join(", ")));
        }
        if !self.shapes.is_empty() {
            let shapes: Vec<String> = self
                .shapes
                .iter()
                .map(|s| format!("{} (model {:?}, checkpoint {:?})", s.name, s.expected, s.found))
                .collect();
            parts.push(format!("{} with a different shape: {}", shapes.len(), shapes.join(", ")));
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
    #[error("{path}: not a safetensors file: {source}")]
    Safetensors {
        path: PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
    #[error("{path}: cannot read the PyTorch checkpoint: {source}")]
    Pth {
        path: PathBuf,
        #[source]
        source: candle::Error,
    },
    #[error("{path}: the checkpoint holds no tensors")]
    EmptyCheckpoint { path: PathBuf },
    #[error("checkpoint does not match the model: {0}")]
    StateDict(StateDictMismatch),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
