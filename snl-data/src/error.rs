//! Typed errors: every variant names the file (or archive member, or Hub repo) and the problem.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while finding, reading, decoding or batching data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder the dataset needs is not there.
    #[error("{what} not found; looked in: {}. {hint}", display_paths(.looked))]
    NotFound {
        /// What was being looked for (e.g. "CIFAR-10 binary release").
        what: String,
        /// Every place that was tried, in order.
        looked: Vec<PathBuf>,
        /// How to get the data.
        hint: String,
    },

    /// An I/O error on a named file.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A fixed-record binary file whose size is not a whole, non-zero number of records.
    #[error(
        "{}: size {size} bytes is not a whole, non-zero number of {record}-byte records \
         (truncated or not a CIFAR binary file?)",
        .path.display()
    )]
    RecordSize {
        /// The file (or `archive!member`).
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The record size in bytes.
        record: usize,
    },

    /// A label outside `0..classes`.
    #[error("{}: record {index} has label {label}, outside 0..{classes}", .path.display())]
    LabelOutOfRange {
        /// The file.
        path: PathBuf,
        /// The record (row, image) index in that file.
        index: usize,
        /// The label found.
        label: i64,
        /// The number of classes.
        classes: usize,
    },

    /// An image that cannot be decoded, or does not have the dataset's size.
    #[error("{}: cannot use image: {msg}", .path.display())]
    Decode {
        /// The image file (or `archive!member`, or `parquet file#row`).
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },

    /// A class folder with no image in it.
    #[error("{}: class folder contains no JPEG or PNG image", .path.display())]
    EmptyClass {
        /// The class folder.
        path: PathBuf,
    },

    /// A folder of an image folder reached a second time through symbolic links (a loop such as
    /// `loop -> ..`, or two links to one folder): following it would read its images again.
    #[error(
        "{}: leads to folder {}, already read as {}; a symbolic link loop or a second link to \
         one folder would read its images twice",
        .path.display(),
        .folder.display(),
        .first.display()
    )]
    RepeatedFolder {
        /// The path that reached the folder again.
        path: PathBuf,
        /// The folder, as its canonical path.
        folder: PathBuf,
        /// The path it was first read as.
        first: PathBuf,
    },

    /// An archive (`.tar.gz`, `.zip`) that is truncated or corrupt.
    #[error("{}: unreadable archive ({msg}); is it truncated? Download it again", .path.display())]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },

    /// A file with the right name but wrong contents (bad annotation line, missing column...).
    #[error("{}: {msg}", .path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },

    /// A dataset name this crate does not know.
    #[error("unknown dataset {name:?}; known datasets: {}", .known.join(", "))]
    UnknownDataset {
        /// The name given.
        name: String,
        /// The names accepted.
        known: Vec<&'static str>,
    },

    /// A split name this crate does not know.
    #[error("unknown split {name:?}; known splits: train, test")]
    UnknownSplit {
        /// The name given.
        name: String,
    },

    /// A Hugging Face Hub error (network, missing repo or file, bad response).
    #[error("Hugging Face Hub, dataset {repo}: {msg}")]
    Hub {
        /// The repo id (`owner/name`).
        repo: String,
        /// What went wrong.
        msg: String,
    },

    /// Offline mode (`HF_HUB_OFFLINE=1` or the offline flag) and the files are not in the cache.
    #[error(
        "Hugging Face Hub, dataset {repo}: {what} is not in the local cache {} and offline mode is on \
         (HF_HUB_OFFLINE=1 or the offline flag); run once with network access, or point HF_HOME / \
         HF_HUB_CACHE at a cache that has it",
        .cache.display()
    )]
    HubOffline {
        /// The repo id.
        repo: String,
        /// What is missing (e.g. "split `train` (no parquet file under snapshots/)").
        what: String,
        /// The cache folder that was searched.
        cache: PathBuf,
    },

    /// An invalid argument (batch size 0, validation split larger than the set, ...).
    #[error("invalid argument: {0}")]
    Invalid(String),

    /// A tensor could not be built.
    #[error(transparent)]
    Candle(#[from] candle::Error),

    /// The background batch producer stopped unexpectedly.
    #[error("the background batch producer stopped unexpectedly")]
    ProducerStopped,
}

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(nowhere)".to_owned();
    }
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub(crate) fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format { path: path.into(), msg: msg.into() }
    }
    pub(crate) fn decode(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Decode { path: path.into(), msg: msg.into() }
    }
    pub(crate) fn archive(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Archive { path: path.into(), msg: msg.into() }
    }
}
