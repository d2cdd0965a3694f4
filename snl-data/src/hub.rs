//! The Hugging Face Hub: `uoft-cs/cifar10`, `uoft-cs/cifar100`, `zh-plus/tiny-imagenet` parquet
//! files, downloaded into the standard Hub cache (shared with Python) on first use and read
//! from the cache afterwards without touching the network.
//!
//! Offline mode (`HF_HUB_OFFLINE=1` or [`HubOptions::offline`]) never builds an HTTP client:
//! the cache is searched by this module (`hf-hub` does not read `HF_HUB_OFFLINE`).
//! `HF_ENDPOINT`, `HF_HOME`, `HF_HUB_CACHE` (or `HUGGINGFACE_HUB_CACHE`, `XDG_CACHE_HOME`) and
//! `HF_TOKEN` (or `HF_TOKEN_PATH`, `$HF_HOME/token`) are read here, as Python reads them, and
//! handed to `hf-hub` 0.4's blocking client. Online, the repo info at the revision lists the
//! split's files with their sizes, then each file not yet in the cache is downloaded by hf-hub
//! (which writes `blobs/`, `snapshots/<commit>/` and `refs/<revision>`); its per-file progress
//! reaches the caller's [`DownloadProgress`] as bytes of the whole split.
//!
//! Images are decoded here (HWC from the image decoder, permuted to CHW), never through
//! candle-datasets' parquet loader, which swaps height and width.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use hf_hub::{Repo, RepoType};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::Split;
use crate::cifar::{CIFAR10_CLASSES, CIFAR100_COARSE_CLASSES, CIFAR100_FINE_CLASSES};
use crate::dataset::{Dataset, Normalization};
use crate::decode::{self, InMemory};
use crate::error::{Error, Result};

/// Where and how to reach the Hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubOptions {
    /// Never touch the network; fail with a clear message if the files are not cached.
    pub offline: bool,
    /// Hub URL; `None` means `HF_ENDPOINT`, else `https://huggingface.co`.
    pub endpoint: Option<String>,
    /// Hub cache folder; `None` means `HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`.
    pub cache_dir: Option<PathBuf>,
    /// Git revision (branch, tag or commit) of the dataset repo.
    pub revision: String,
    /// Told how a download goes (this crate never prints); `None`: nobody is told.
    pub progress: Option<ProgressSink>,
}

impl Default for HubOptions {
    fn default() -> Self {
        Self { offline: false, endpoint: None, cache_dir: None, revision: "main".to_owned(), progress: None }
    }
}

/// Receives the progress of a Hub download, e.g. to draw a bar. Called from the downloading
/// thread: return quickly, never block.
pub trait DownloadProgress: Send + Sync {
    /// `files` files, `bytes` bytes in all, are about to come from `repo`.
    fn start(&self, repo: &str, files: usize, bytes: u64);
    /// `bytes` of them have arrived so far.
    fn advance(&self, bytes: u64);
    /// Every file is in the cache.
    fn finish(&self);
}

/// A shared [`DownloadProgress`]. Compares by identity, so [`HubOptions`] stays `Eq`.
#[derive(Clone)]
pub struct ProgressSink(pub Arc<dyn DownloadProgress>);

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressSink")
    }
}

impl PartialEq for ProgressSink {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ProgressSink {}

/// Relays hf-hub's progress of one file (its bytes so far) to a [`DownloadProgress`] as bytes
/// of the whole download: `before` is what the earlier files brought.
struct FileRelay<'a> {
    sink: Option<&'a dyn DownloadProgress>,
    before: u64,
    got: u64,
}

impl hf_hub::api::Progress for FileRelay<'_> {
    fn init(&mut self, _size: usize, _filename: &str) {
        // Called again when a download (re)starts; the next update is the bytes already there.
        self.got = 0;
    }

    fn update(&mut self, size: usize) {
        self.got += size as u64;
        if let Some(sink) = self.sink.filter(|_| size > 0) {
            sink.advance(self.before + self.got);
        }
    }

    fn finish(&mut self) {}
}

/// A non-empty environment variable.
fn env_var(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface` (Python's order).
fn hf_home() -> PathBuf {
    env_var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
        env_var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::home_dir().unwrap_or_else(std::env::temp_dir).join(".cache"))
            .join("huggingface")
    })
}

/// `HF_TOKEN`, else the file at `HF_TOKEN_PATH`, else `$HF_HOME/token` (what `hf auth login`
/// writes); none if `HF_HUB_DISABLE_IMPLICIT_TOKEN` is set.
fn token() -> Option<String> {
    let read =
        |p: PathBuf| std::fs::read_to_string(p).ok().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    if env_var("HF_HUB_DISABLE_IMPLICIT_TOKEN").is_some() {
        return None;
    }
    env_var("HF_TOKEN")
        .or_else(|| env_var("HF_TOKEN_PATH").and_then(|p| read(p.into())))
        .or_else(|| read(hf_home().join("token")))
}

/// Whether an environment flag value means "on" (`1`, `true`, `yes`, `on`, any case).
pub fn env_flag(value: &str) -> bool {
    matches!(value.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

impl HubOptions {
    /// Defaults, with `offline` set from `HF_HUB_OFFLINE`.
    pub fn from_env() -> Self {
        Self::from_env_with(|k| std::env::var(k).ok())
    }

    /// [`from_env`](Self::from_env) with an explicit variable lookup (for tests).
    pub fn from_env_with(var: impl Fn(&str) -> Option<String>) -> Self {
        Self { offline: var("HF_HUB_OFFLINE").is_some_and(|v| env_flag(&v)), ..Self::default() }
    }

    /// The cache folder used: `cache_dir`, else `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`,
    /// else `$HF_HOME/hub` (`HF_HOME` as Python resolves it).
    pub fn resolved_cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .or_else(|| {
                env_var("HF_HUB_CACHE").or_else(|| env_var("HUGGINGFACE_HUB_CACHE")).map(PathBuf::from)
            })
            .unwrap_or_else(|| hf_home().join("hub"))
    }

    /// The Hub URL used: `endpoint`, else `HF_ENDPOINT`, else `https://huggingface.co`.
    pub fn resolved_endpoint(&self) -> String {
        let url = self.endpoint.clone().or_else(|| env_var("HF_ENDPOINT"));
        url.as_deref().unwrap_or("https://huggingface.co").trim_end_matches('/').to_owned()
    }
}

/// A dataset on the Hub and how to read it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HubDataset {
    /// Repo id, `owner/name`.
    pub repo: &'static str,
    /// Image column (a struct `{bytes, path}` or plain binary).
    pub image_column: &'static str,
    /// Label column (integer).
    pub label_column: &'static str,
    /// Split names on the Hub for train and test.
    pub splits: [&'static str; 2],
    /// Class names used when the parquet metadata has none.
    pub classes: &'static [&'static str],
    /// Expected number of classes.
    pub num_classes: usize,
    /// Normalisation.
    pub normalization: Normalization,
    /// Whether class names are ImageNet wnids, to be numbered in sorted order.
    pub wnids: bool,
}

impl HubDataset {
    /// `uoft-cs/cifar10`.
    pub const CIFAR10: HubDataset = HubDataset {
        repo: "uoft-cs/cifar10",
        image_column: "img",
        label_column: "label",
        splits: ["train", "test"],
        classes: &CIFAR10_CLASSES,
        num_classes: 10,
        normalization: Normalization::cifar10(),
        wnids: false,
    };
    /// `uoft-cs/cifar100`, fine labels.
    pub const CIFAR100: HubDataset = HubDataset {
        repo: "uoft-cs/cifar100",
        image_column: "img",
        label_column: "fine_label",
        splits: ["train", "test"],
        classes: &CIFAR100_FINE_CLASSES,
        num_classes: 100,
        normalization: Normalization::cifar100(),
        wnids: false,
    };
    /// `uoft-cs/cifar100`, coarse labels.
    pub const CIFAR100_COARSE: HubDataset = HubDataset {
        repo: "uoft-cs/cifar100",
        image_column: "img",
        label_column: "coarse_label",
        splits: ["train", "test"],
        classes: &CIFAR100_COARSE_CLASSES,
        num_classes: 20,
        normalization: Normalization::cifar100(),
        wnids: false,
    };
    /// `zh-plus/tiny-imagenet` (its `valid` split is the test split).
    pub const TINY_IMAGENET: HubDataset = HubDataset {
        repo: "zh-plus/tiny-imagenet",
        image_column: "image",
        label_column: "label",
        splits: ["train", "valid"],
        classes: &[],
        num_classes: 200,
        normalization: Normalization::tiny_imagenet(),
        wnids: true,
    };

    /// The Hub's name of `split`.
    pub fn split_name(&self, split: Split) -> &'static str {
        match split {
            Split::Train => self.splits[0],
            Split::Test => self.splits[1],
        }
    }
}

/// Loads `split` of `ds` from the Hub cache, downloading it first unless offline.
pub fn load(ds: &HubDataset, split: Split, opts: &HubOptions) -> Result<Dataset> {
    let files = fetch(ds.repo, ds.split_name(split), opts)?;
    read_parquet_files(ds, &files)
}

/// Local paths of the parquet files of `split` in `repo`: from the cache if complete there,
/// else (unless offline) downloaded into the cache first.
pub fn fetch(repo: &str, split: &str, opts: &HubOptions) -> Result<Vec<PathBuf>> {
    let cache = opts.resolved_cache_dir();
    let repo_dir = cache.join(format!("datasets--{}", repo.replace('/', "--")));
    let cached = find_in_cache(&repo_dir, &opts.revision, split);
    let why = match cached {
        Ok(files) => return Ok(files),
        Err(why) => why,
    };
    if opts.offline {
        return Err(Error::HubOffline {
            repo: repo.to_owned(),
            what: format!("split `{split}` at revision `{}` ({why})", opts.revision),
            cache: repo_dir,
        });
    }
    download(repo, split, opts, &cache)
}

fn hub_err(repo: &str, msg: impl Into<String>) -> Error {
    Error::Hub { repo: repo.to_owned(), msg: msg.into() }
}

const NET_HINT: &str = "(no network? set HF_HUB_OFFLINE=1 to use only the local cache, HF_ENDPOINT for a \
                        mirror, or give a data folder with the official release)";

fn download(repo: &str, split: &str, opts: &HubOptions, cache: &Path) -> Result<Vec<PathBuf>> {
    let api = hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(cache.to_path_buf()))
        .with_endpoint(opts.resolved_endpoint())
        .with_token(token())
        .with_progress(false)
        .build()
        .map_err(|e| hub_err(repo, format!("cannot create the client: {e}")))?;
    let dataset = Repo::with_revision(repo.to_owned(), RepoType::Dataset, opts.revision.clone());
    let handle = api.repo(dataset.clone());
    let (sha, files) = list_files(&handle).map_err(|e| {
        hub_err(repo, format!("cannot list the files at revision `{}`: {e} {NET_HINT}", opts.revision))
    })?;
    let mut wanted: Vec<(String, u64)> =
        files.into_iter().filter(|(f, _)| is_split_parquet(f, split)).collect();
    wanted.sort();
    if wanted.is_empty() {
        return Err(hub_err(
            repo,
            format!("no parquet file for split `{split}` at revision `{}`", opts.revision),
        ));
    }
    let repo_dir = cache.join(dataset.folder_name());
    let snapshot = repo_dir.join("snapshots").join(&sha);
    let missing: Vec<&(String, u64)> = wanted.iter().filter(|(f, _)| !snapshot.join(f).is_file()).collect();
    if missing.is_empty() {
        // Every file is in the snapshot already: only `refs/<revision>` was missing.
        let ref_path = repo_dir.join("refs").join(&opts.revision);
        hf_hub::Cache::new(cache.to_path_buf())
            .repo(dataset)
            .create_ref(&sha)
            .map_err(|e| Error::io(ref_path, e))?;
        return Ok(wanted.iter().map(|(f, _)| snapshot.join(f)).collect());
    }
    let sink = opts.progress.as_ref().map(|s| &*s.0);
    if let Some(sink) = sink {
        sink.start(repo, missing.len(), missing.iter().map(|(_, size)| size).sum());
    }
    let mut before = 0;
    let mut paths = Vec::with_capacity(wanted.len());
    for (name, size) in &wanted {
        let cached = snapshot.join(name);
        if cached.is_file() {
            paths.push(cached);
            continue;
        }
        let relay = FileRelay { sink, before, got: 0 };
        let path = handle.download_with_progress(name, relay).map_err(|e| {
            hub_err(repo, format!("cannot download {name} of split `{split}`: {e} {NET_HINT}"))
        })?;
        paths.push(path);
        before += size;
    }
    if let Some(sink) = sink {
        sink.finish();
    }
    Ok(paths)
}

/// The commit of the handle's revision and every file there with its size (`blobs=true` asks
/// the Hub for sizes; a file without one counts 0 bytes).
fn list_files(
    handle: &hf_hub::api::sync::ApiRepo,
) -> std::result::Result<(String, Vec<(String, u64)>), String> {
    let response = handle.info_request().query("blobs", "true").call().map_err(|e| e.to_string())?;
    let info: serde_json::Value = response.into_json().map_err(|e| format!("unreadable answer: {e}"))?;
    let sha = info.get("sha").and_then(|s| s.as_str()).ok_or("the answer names no commit")?;
    let siblings = info.get("siblings").and_then(|s| s.as_array()).ok_or("the answer lists no files")?;
    let files = siblings
        .iter()
        .filter_map(|f| {
            let name = f.get("rfilename")?.as_str()?;
            Some((name.to_owned(), f.get("size").and_then(|s| s.as_u64()).unwrap_or(0)))
        })
        .collect();
    Ok((sha.to_owned(), files))
}

/// Whether `rel` (a path in the repo) is a parquet file of `split`: `.../<split>-*.parquet`,
/// `.../<split>.parquet` or `.../<split>/*.parquet` (the `refs/convert/parquet` layout).
pub fn is_split_parquet(rel: &str, split: &str) -> bool {
    if !rel.ends_with(".parquet") {
        return false;
    }
    let mut parts: Vec<&str> = rel.split('/').collect();
    let Some(base) = parts.pop() else { return false };
    base.starts_with(&format!("{split}-")) || base == format!("{split}.parquet") || parts.contains(&split)
}

/// `(index, total)` of a shard named `...-00001-of-00004...`.
fn shard_of(base: &str) -> Option<(u32, u32)> {
    let at = base.find("-of-")?;
    let before = &base[..at];
    let idx_start = before.rfind('-')? + 1;
    let idx = before[idx_start..].parse().ok()?;
    let after = &base[at + 4..];
    let total_len = after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len());
    let total = after[..total_len].parse().ok()?;
    Some((idx, total))
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let r = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        // Real folders only: a symlinked one (`x -> .`) would be walked without end.
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&path, &r, out);
        } else if path.is_file() {
            // `is_file` follows the snapshot symlink: a dangling one (missing blob) is skipped.
            out.push((r, path));
        }
    }
}

/// The complete set of cached parquet files of `split`, or why there is none.
fn find_in_cache(repo_dir: &Path, revision: &str, split: &str) -> std::result::Result<Vec<PathBuf>, String> {
    let is_sha = revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit());
    let sha = if is_sha {
        revision.to_owned()
    } else {
        let r = repo_dir.join("refs").join(revision);
        match std::fs::read_to_string(&r) {
            Ok(s) => s.trim().to_owned(),
            Err(_) => return Err(format!("no {} (never downloaded)", r.display())),
        }
    };
    let snap = repo_dir.join("snapshots").join(&sha);
    let mut all = Vec::new();
    walk(&snap, "", &mut all);
    let mut files: Vec<(String, PathBuf)> =
        all.into_iter().filter(|(r, _)| is_split_parquet(r, split)).collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no parquet file of the split under {}", snap.display()));
    }
    // Sharded names say how many shards there are: all must be present.
    let mut shards: std::collections::BTreeMap<(String, u32), BTreeSet<u32>> = Default::default();
    for (rel, _) in &files {
        let (dir, base) = rel.rsplit_once('/').unwrap_or(("", rel));
        if let Some((i, n)) = shard_of(base) {
            shards.entry((dir.to_owned(), n)).or_default().insert(i);
        }
    }
    for ((dir, n), got) in &shards {
        if got.len() as u32 != *n {
            return Err(format!(
                "only {} of the {n} shards of the split in {}/{dir}",
                got.len(),
                snap.display()
            ));
        }
    }
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

fn ints(col: &ArrayRef) -> Option<Vec<Option<i64>>> {
    macro_rules! prim {
        ($t:ty) => {
            col.as_primitive_opt::<$t>().map(|a| a.iter().map(|v| v.map(|v| v as i64)).collect())
        };
    }
    match col.data_type() {
        DataType::Int8 => prim!(Int8Type),
        DataType::Int16 => prim!(Int16Type),
        DataType::Int32 => prim!(Int32Type),
        DataType::Int64 => prim!(Int64Type),
        DataType::UInt8 => prim!(UInt8Type),
        DataType::UInt16 => prim!(UInt16Type),
        DataType::UInt32 => prim!(UInt32Type),
        DataType::UInt64 => prim!(UInt64Type),
        _ => None,
    }
}

fn binaries(col: &ArrayRef) -> Option<Vec<Option<Vec<u8>>>> {
    let col = match col.data_type() {
        DataType::Struct(_) => col.as_struct_opt()?.column_by_name("bytes")?.clone(),
        _ => col.clone(),
    };
    match col.data_type() {
        DataType::Binary => Some(col.as_binary::<i32>().iter().map(|v| v.map(<[u8]>::to_vec)).collect()),
        DataType::LargeBinary => Some(col.as_binary::<i64>().iter().map(|v| v.map(<[u8]>::to_vec)).collect()),
        DataType::BinaryView => Some(col.as_binary_view().iter().map(|v| v.map(<[u8]>::to_vec)).collect()),
        _ => None,
    }
}

/// Class names stored by the `datasets` library in the parquet metadata (`huggingface` key).
fn hf_class_names(kv: Option<&Vec<parquet::file::metadata::KeyValue>>, column: &str) -> Option<Vec<String>> {
    let json = kv?.iter().find(|k| k.key == "huggingface")?.value.as_ref()?;
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let names = v.get("info")?.get("features")?.get(column)?.get("names")?.as_array()?;
    names.iter().map(|n| n.as_str().map(str::to_owned)).collect()
}

/// Reads and decodes the parquet files of one split.
pub fn read_parquet_files(ds: &HubDataset, files: &[PathBuf]) -> Result<Dataset> {
    let mut sources = Vec::new();
    let mut labels_raw = Vec::new();
    let mut names: Option<Vec<String>> = None;
    for path in files {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| Error::format(path, format!("not a readable parquet file: {e}")))?;
        if names.is_none() {
            names = hf_class_names(builder.metadata().file_metadata().key_value_metadata(), ds.label_column);
        }
        let schema = builder.schema().clone();
        let col_index = |c: &str| {
            schema.index_of(c).map_err(|_| {
                let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                Error::format(path, format!("no column `{c}` (columns: {})", have.join(", ")))
            })
        };
        let (ii, li) = (col_index(ds.image_column)?, col_index(ds.label_column)?);
        let mask = ProjectionMask::roots(builder.parquet_schema(), [ii, li]);
        let mut row = 0usize;
        let reader = builder
            .with_projection(mask)
            .build()
            .map_err(|e| Error::format(path, format!("cannot read: {e}")))?;
        for batch in reader {
            let batch = batch.map_err(|e| Error::format(path, format!("cannot read: {e}")))?;
            let (Some(img), Some(lab)) =
                (batch.column_by_name(ds.image_column), batch.column_by_name(ds.label_column))
            else {
                return Err(Error::format(path, "projected columns missing"));
            };
            let imgs = binaries(img).ok_or_else(|| {
                Error::format(
                    path,
                    format!("column `{}` is {}, not image bytes", ds.image_column, img.data_type()),
                )
            })?;
            let labs = ints(lab).ok_or_else(|| {
                Error::format(
                    path,
                    format!("column `{}` is {}, not integers", ds.label_column, lab.data_type()),
                )
            })?;
            for (bytes, label) in imgs.into_iter().zip(labs) {
                let name = PathBuf::from(format!("{}#row{row}", path.display()));
                let Some(bytes) = bytes else { return Err(Error::decode(name, "image is null")) };
                let Some(label) = label else {
                    return Err(Error::format(path, format!("row {row}: label is null")));
                };
                labels_raw.push((label, path.clone(), row));
                sources.push(InMemory { name, bytes });
                row += 1;
            }
        }
    }

    // Class names and numbering: the metadata's if it has the right count, else the built-in
    // names; Tiny-ImageNet wnids are renumbered in sorted order.
    // Names repeated would merge two classes into one: then the built-in names too.
    let distinct = |n: &Vec<String>| n.iter().collect::<std::collections::HashSet<_>>().len() == n.len();
    let names = names.filter(|n| n.len() == ds.num_classes && distinct(n));
    let (classes, remap): (Vec<String>, Option<Vec<u32>>) = match names {
        Some(n) if ds.wnids => {
            let mut sorted = n.clone();
            sorted.sort();
            let remap = n.iter().map(|w| sorted.binary_search(w).unwrap_or(0) as u32).collect();
            (sorted, Some(remap))
        }
        Some(n) => (n, None),
        None if ds.classes.len() == ds.num_classes => {
            (ds.classes.iter().map(|s| (*s).to_owned()).collect(), None)
        }
        None => ((0..ds.num_classes).map(|i| format!("{i}")).collect(), None),
    };
    let mut labels = Vec::with_capacity(labels_raw.len());
    for (label, path, row) in labels_raw {
        if label < 0 || label as usize >= classes.len() {
            return Err(Error::LabelOutOfRange { path, index: row, label, classes: classes.len() });
        }
        let l = label as u32;
        labels.push(remap.as_ref().map_or(l, |m| m[l as usize]));
    }
    let (h, w, images) = decode::decode_all(&sources, None)?;
    Dataset::from_raw(images, labels, h, w, classes, ds.normalization)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A snapshot folder with a symlink back to itself is walked once, not without end.
    #[cfg(unix)]
    #[test]
    fn walk_does_not_follow_symlinked_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("plain_text");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("train-00000-of-00001.parquet"), b"x").unwrap();
        std::os::unix::fs::symlink(tmp.path(), dir.join("again")).unwrap();
        std::os::unix::fs::symlink(".", tmp.path().join("here")).unwrap();
        let mut out = Vec::new();
        walk(tmp.path(), "", &mut out);
        let names: Vec<&str> = out.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(names, ["plain_text/train-00000-of-00001.parquet"]);
    }
}
