//! Reading and writing PyTorch-named weights.
//!
//! Reads safetensors files (as `torch_ref.py fixture` and [`save`] write them) and the
//! zip-format `.pth`/`.pth.tar` files of `torch.save` (a bare `state_dict`, or a dict with a
//! `state_dict` key as the authors' scripts write; DataParallel's `module.` prefixes are
//! stripped). Loading into a model is strict: every mismatch is reported, nothing is
//! loaded partially. Saving writes safetensors with `__metadata__` and an I64
//! `num_batches_tracked`, which PyTorch's `load_state_dict(strict=True)` accepts, plus a
//! checksum ([`CHECKSUM_KEY`]) that [`read`] verifies, so a damaged or edited file is refused.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

use candle::{DType, Device, Tensor};
use candle_nn::VarMap;
use safetensors::tensor::View;

use crate::error::{Error, Result, ShapeMismatch, StateDictMismatch};

/// Tensors by PyTorch `state_dict` name.
pub type StateDict = HashMap<String, Tensor>;

/// The file formats [`read`] recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Safetensors,
    /// PyTorch's zip-based `torch.save` format (`.pth`, `.pth.tar`, `.pt`).
    TorchZip,
}

/// A checkpoint's tensors and, for safetensors, its `__metadata__` string map.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub format: Format,
    pub tensors: StateDict,
    pub metadata: HashMap<String, String>,
}

/// A zip archive's first bytes: a member's header, or (an empty archive) the end record.
const ZIP_MAGICS: [&[u8]; 2] = [b"PK\x03\x04", b"PK\x05\x06"];

/// `__metadata__` key of the CRC-32 (hex) of a file's tensors (names, dtypes, shapes, bytes)
/// and its other metadata, written by [`save`] and checked by [`read`]. Files without it
/// (older builds, other tools) load unchecked; [`read`] leaves it out of the metadata.
pub const CHECKSUM_KEY: &str = "snl_crc32";

/// The checksum of `tensors` (sorted by name) and `metadata` (but [`CHECKSUM_KEY`]), the same
/// whether the tensors are about to be written or were just read. Every field is
/// length-prefixed, so no two different contents hash the same bytes.
fn checksum<V: View>(tensors: &[(String, V)], metadata: &HashMap<String, String>) -> String {
    let mut hasher = crc32fast::Hasher::new();
    let mut field = |bytes: &[u8]| {
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    let mut keys: Vec<_> = metadata.keys().filter(|k| *k != CHECKSUM_KEY).collect();
    keys.sort();
    for key in keys {
        field(key.as_bytes());
        field(metadata[key].as_bytes());
    }
    for (name, t) in tensors {
        field(name.as_bytes());
        field(format!("{:?} {:?}", t.dtype(), t.shape()).as_bytes());
        field(&t.data());
    }
    format!("{:08x}", hasher.finalize())
}

/// The largest file [`read_bytes`] reads, 8 GiB: twice the f32 weights of the largest model
/// snl builds ([`crate::MAX_MODEL_VALUES`]), room for its optimizer's state; real checkpoints
/// are far smaller (ResNet18 45 MB, WRN-22-8 with its momentum 140 MB).
pub const MAX_FILE_BYTES: u64 = 2 * 4 * crate::MAX_MODEL_VALUES as u64;

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.to_path_buf(), source }
}

/// Reads a checkpoint onto `device`. The format is recognised from the content (a zip
/// archive is a PyTorch file, anything else must be safetensors), not from the extension.
pub fn read(path: impl AsRef<Path>, device: &Device) -> Result<Checkpoint> {
    let path = path.as_ref();
    let bytes = read_bytes(path)?;
    let checkpoint = if ZIP_MAGICS.iter().any(|magic| bytes.starts_with(magic)) {
        Checkpoint {
            format: Format::TorchZip,
            tensors: read_pth(path, bytes, device)?,
            metadata: HashMap::new(),
        }
    } else if is_legacy_torch(&bytes) {
        return Err(Error::LegacyTorch { path: path.to_path_buf() });
    } else {
        let st_error = |source| Error::Safetensors { path: path.to_path_buf(), source };
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(st_error)?;
        // Validates offsets against the file length (a truncated file fails here).
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(st_error)?;
        let mut metadata = header.metadata().clone().unwrap_or_default();
        if let Some(expected) = metadata.remove(CHECKSUM_KEY) {
            let mut views = st.tensors();
            views.sort_by(|a, b| a.0.cmp(&b.0));
            if checksum(&views, &metadata) != expected {
                return Err(Error::ChecksumMismatch { path: path.to_path_buf() });
            }
        }
        let tensors = candle::safetensors::load_buffer(&bytes, device)?;
        Checkpoint { format: Format::Safetensors, tensors, metadata }
    };
    if checkpoint.tensors.is_empty() {
        return Err(Error::EmptyCheckpoint { path: path.to_path_buf() });
    }
    Ok(checkpoint)
}

/// The bytes of the regular file `path`. Anything else is refused before it is opened (a
/// device such as /dev/zero or a FIFO never ends, or blocks), and so is a file over
/// [`MAX_FILE_BYTES`] before anything is allocated.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let io = |e| io_error(path, e);
    if !std::fs::metadata(path).map_err(io)?.is_file() {
        return Err(Error::NotAFile { path: path.to_path_buf() });
    }
    let file = std::fs::File::open(path).map_err(io)?;
    // Checked again on the open file: the path may have been replaced meanwhile.
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(Error::NotAFile { path: path.to_path_buf() });
    }
    let too_large = |bytes| Error::FileTooLarge { path: path.to_path_buf(), bytes, limit: MAX_FILE_BYTES };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(meta.len() as usize).map_err(|_| io(std::io::ErrorKind::OutOfMemory.into()))?;
    // Bounded even if the file grows while it is read.
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Whether `bytes` open as a legacy `torch.save` file: a pickle (protocol 2 or later) whose
/// first object is torch's magic number 0x1950a86a20f9469cfc6c.
fn is_legacy_torch(bytes: &[u8]) -> bool {
    const MAGIC: [u8; 12] = [0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
    bytes.len() >= 14 && bytes[0] == 0x80 && (2..=5).contains(&bytes[1]) && bytes[2..14] == MAGIC
}

fn read_pth(path: &Path, bytes: Vec<u8>, device: &Device) -> Result<StateDict> {
    let len = bytes.len() as u64;
    let entries = crate::pth::read(std::io::Cursor::new(bytes), len, device)
        .map_err(|source| Error::Pth { path: path.to_path_buf(), source })?;
    // DataParallel's `module.` prefixes.
    Ok(entries
        .into_iter()
        .map(|(name, t)| (name.strip_prefix("module.").map(str::to_string).unwrap_or(name), t))
        .collect())
}

fn lock_error() -> Error {
    Error::Candle(candle::Error::Msg("the VarMap's lock is poisoned".into()))
}

/// What keeps `tensors` from loading strictly into a model whose tensors have the shapes
/// in `expected`; empty when they match exactly.
pub fn compare(expected: &HashMap<String, Vec<usize>>, tensors: &StateDict) -> StateDictMismatch {
    let mut m = StateDictMismatch::default();
    for (name, shape) in expected {
        match tensors.get(name) {
            None => m.missing.push(name.clone()),
            Some(t) if t.dims() != shape.as_slice() => m.shapes.push(ShapeMismatch {
                name: name.clone(),
                expected: shape.clone(),
                found: t.dims().to_vec(),
            }),
            Some(_) => {}
        }
    }
    m.unexpected = tensors.keys().filter(|k| !expected.contains_key(*k)).cloned().collect();
    m.missing.sort();
    m.unexpected.sort();
    m.shapes.sort_by(|a, b| a.name.cmp(&b.name));
    m
}

/// Copies `tensors` into the variables of `vars` (a model built on that VarMap sees them
/// at once), converting dtype and device. Strict: unless names and shapes match exactly,
/// nothing is written and the error lists every missing, unexpected and misshapen name.
pub fn load_into(vars: &VarMap, tensors: &StateDict) -> Result<()> {
    let data = vars.data().lock().map_err(|_| lock_error())?;
    let expected = data.iter().map(|(k, v)| (k.clone(), v.dims().to_vec())).collect();
    let mismatch = compare(&expected, tensors);
    if !mismatch.is_empty() {
        return Err(Error::StateDict(mismatch));
    }
    // Convert everything first so that a failure leaves the VarMap untouched.
    let converted = data
        .iter()
        .map(|(name, var)| Ok((var, tensors[name].to_dtype(var.dtype())?.to_device(var.device())?)))
        .collect::<Result<Vec<_>>>()?;
    for (var, t) in converted {
        var.set(&t)?;
    }
    Ok(())
}

/// How many values of `t` are NaN or infinite (0 for integer tensors).
pub fn count_non_finite(t: &Tensor) -> Result<usize> {
    if !t.dtype().is_float() {
        return Ok(0);
    }
    let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(values.iter().filter(|v| !v.is_finite()).count())
}

/// Copies of the tensors in `vars`, detached: later updates of `vars` do not reach them.
pub fn detached_copy(vars: &VarMap) -> Result<StateDict> {
    let data = vars.data().lock().map_err(|_| lock_error())?;
    data.iter().map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?.detach()))).collect()
}

/// Writes `bytes` to a new temporary file beside `path` (a unique name, so two writers never
/// share one), syncs it, then renames it over `path`: a crash never leaves half a file. For
/// files their writer owns (a run's checkpoints, in the run folder it holds locked); a file
/// the user names is written with [`write_new`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    persist(temp_beside(path, bytes)?, path, true)
}

/// [`write_atomic`] that never replaces anything at `path`: not a file made while this one
/// was being written (by another process, say), not a dangling symbolic link. Then it fails
/// with [`Error::Exists`] and leaves no temporary file. The one no-clobber write of snl.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    persist(temp_beside(path, bytes)?, path, false)
}

/// A synced temporary file holding `bytes`, in `path`'s folder (a rename never crosses file
/// systems), named after `path`.
fn temp_beside(path: &Path, bytes: &[u8]) -> Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let write = || -> std::io::Result<tempfile::NamedTempFile> {
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        // The mode of a file made by `File::create` (0666 less the umask), not tempfile's 0600.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        // tempfile's errors end with " at path <the temporary file>": the error names `path`.
        let mut tmp = builder.tempfile_in(dir).map_err(|e| match e.to_string().split_once(" at path ") {
            Some((message, _)) => std::io::Error::new(e.kind(), message),
            None => e,
        })?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        Ok(tmp)
    };
    // A failed write drops (deletes) its temporary file.
    write().map_err(|e| io_error(path, e))
}

/// Moves `tmp` to `path`, over what is there only when `replace`.
fn persist(tmp: tempfile::NamedTempFile, path: &Path, replace: bool) -> Result<()> {
    // On failure the temporary file comes back in the error, and is deleted with it.
    let moved = if replace { tmp.persist(path) } else { tmp.persist_noclobber(path) };
    match moved.map_err(|e| e.error) {
        Ok(_) => Ok(()),
        Err(e) if !replace && e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(Error::Exists { path: path.to_path_buf() })
        }
        Err(e) => Err(io_error(path, e)),
    }
}

/// Writes `tensors` as safetensors with `metadata` as `__metadata__`, atomically
/// ([`write_atomic`]). `*num_batches_tracked` is written as I64 whatever its dtype.
pub fn save(tensors: &StateDict, metadata: &HashMap<String, String>, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    write_atomic(path, &serialize(tensors, metadata, path)?)
}

/// [`save`] to a new file: never replaces anything at `path` ([`write_new`]).
pub fn save_new(
    tensors: &StateDict,
    metadata: &HashMap<String, String>,
    path: impl AsRef<Path>,
) -> Result<()> {
    let path = path.as_ref();
    write_new(path, &serialize(tensors, metadata, path)?)
}

fn serialize(tensors: &StateDict, metadata: &HashMap<String, String>, path: &Path) -> Result<Vec<u8>> {
    let mut entries = tensors
        .iter()
        .map(|(name, t)| {
            let t = if name.ends_with("num_batches_tracked") { t.to_dtype(DType::I64)? } else { t.clone() };
            Ok((name.clone(), t.to_device(&Device::Cpu)?.contiguous()?))
        })
        .collect::<Result<Vec<_>>>()?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut metadata = metadata.clone();
    metadata.insert(CHECKSUM_KEY.into(), checksum(&entries, &metadata));
    let mut bytes = safetensors::serialize(entries, Some(metadata))
        .map_err(|source| Error::Safetensors { path: path.to_path_buf(), source })?;
    sort_header(&mut bytes);
    Ok(bytes)
}

/// Rewrites the JSON header of the safetensors `bytes` with its keys sorted, in place (the
/// same length: only the order changes). safetensors writes the metadata in a `HashMap`'s
/// order, which differs from one process to the next: sorted, the same model is the same
/// bytes in every run.
fn sort_header(bytes: &mut [u8]) {
    let Some(len) = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    else {
        return;
    };
    let Some(header) = bytes.get(8..8 + len) else { return };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(header) else { return };
    let Ok(mut sorted) = serde_json::to_vec(&sort_keys(value)) else { return };
    if sorted.len() <= len {
        sorted.resize(len, b' ');
        bytes[8..8 + len].copy_from_slice(&sorted);
    }
}

/// `value` with every object's keys in order (inserted sorted: right whether serde_json's
/// maps sort or, with its `preserve_order` feature, keep insertion order).
fn sort_keys(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sort_keys(v))).collect())
        }
        other => other,
    }
}

/// [`save`] of every tensor in `vars` (weights, masks, BN statistics).
pub fn save_varmap(vars: &VarMap, metadata: &HashMap<String, String>, path: impl AsRef<Path>) -> Result<()> {
    let tensors = {
        let data = vars.data().lock().map_err(|_| lock_error())?;
        data.iter().map(|(k, v)| (k.clone(), v.as_detached_tensor())).collect::<StateDict>()
    };
    save(&tensors, metadata, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two maps of the same metadata iterate in different orders (each has its own random
    /// state); the files are the same bytes, their header keys sorted, and read back.
    #[test]
    fn the_same_model_is_the_same_bytes() {
        let tensors: StateDict = (0..6)
            .map(|i| (format!("layer{i}.weight"), Tensor::full(i as f32, (2, 3), &Device::Cpu).unwrap()))
            .collect();
        let entries: Vec<(String, String)> =
            (0..40).map(|i| (format!("key{i}"), format!("value {i}"))).collect();
        let files: Vec<Vec<u8>> = (0..8)
            .map(|_| serialize(&tensors, &entries.iter().cloned().collect(), Path::new("m")).unwrap())
            .collect();
        assert!(files.windows(2).all(|w| w[0] == w[1]), "the bytes differ between saves");
        let len = u64::from_le_bytes(files[0][..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&files[0][8..8 + len]).unwrap();
        let keys: Vec<&String> = header["__metadata__"].as_object().unwrap().keys().collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        std::fs::write(&path, &files[0]).unwrap();
        let back = read(&path, &Device::Cpu).unwrap();
        assert_eq!(back.metadata.len(), 40);
        assert_eq!(back.tensors["layer5.weight"].to_vec2::<f32>().unwrap()[1][2], 5.0);
    }

    /// What only a unit test reaches: the window between writing the temporary file and
    /// moving it into place, where another process may create the target.
    #[test]
    fn a_target_made_after_the_temporary_file_is_never_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("logits.safetensors");
        let names = || {
            let mut names: Vec<String> = std::fs::read_dir(tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        let written = temp_beside(&target, b"new").unwrap();
        std::fs::write(&target, b"theirs").unwrap();
        let err = persist(written, &target, false).unwrap_err();
        assert!(matches!(err, Error::Exists { .. }), "{err}");
        assert!(err.to_string().contains("logits.safetensors exists"), "{err}");
        assert_eq!(std::fs::read(&target).unwrap(), b"theirs");
        assert_eq!(names(), ["logits.safetensors"], "the temporary file was left behind");

        // A dangling symbolic link made meanwhile is kept too, not followed.
        #[cfg(unix)]
        {
            let link = tmp.path().join("link");
            std::os::unix::fs::symlink(tmp.path().join("nowhere"), &link).unwrap();
            let err = persist(temp_beside(&link, b"new").unwrap(), &link, false).unwrap_err();
            assert!(matches!(err, Error::Exists { .. }), "{err}");
            assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
            assert_eq!(names(), ["link", "logits.safetensors"]);
        }

        // The owner's writes do replace.
        persist(temp_beside(&target, b"new").unwrap(), &target, true).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
    }
}
