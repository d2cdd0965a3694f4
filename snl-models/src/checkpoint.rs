//! Reading and writing PyTorch-named weights.
//!
//! Reads safetensors files (as `torch_ref.py fixture` and [`save`] write them) and the
//! zip-format `.pth`/`.pth.tar` files of `torch.save` (a bare `state_dict`, or a dict with a
//! `state_dict` key as the authors' scripts write; DataParallel's `module.` prefixes are
//! stripped). Loading into a model is strict: every mismatch is reported, nothing is
//! loaded partially. Saving writes safetensors with `__metadata__` and an I64
//! `num_batches_tracked`, which PyTorch's `load_state_dict(strict=True)` accepts.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use candle::{DType, Device, Tensor};
use candle_nn::VarMap;

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

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.to_path_buf(), source }
}

/// Reads a checkpoint onto `device`. The format is recognised from the content (a zip
/// archive is a PyTorch file, anything else must be safetensors), not from the extension.
pub fn read(path: impl AsRef<Path>, device: &Device) -> Result<Checkpoint> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    let checkpoint = if bytes.starts_with(ZIP_MAGIC) {
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
        safetensors::SafeTensors::deserialize(&bytes).map_err(st_error)?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let tensors = candle::safetensors::load_buffer(&bytes, device)?;
        Checkpoint { format: Format::Safetensors, tensors, metadata }
    };
    if checkpoint.tensors.is_empty() {
        return Err(Error::EmptyCheckpoint { path: path.to_path_buf() });
    }
    Ok(checkpoint)
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

/// Copies of the tensors in `vars`, detached: later updates of `vars` do not reach them.
pub fn detached_copy(vars: &VarMap) -> Result<StateDict> {
    let data = vars.data().lock().map_err(|_| lock_error())?;
    data.iter().map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?.detach()))).collect()
}

/// Writes `bytes` to a new temporary file beside `path` (a unique name, so two writers never
/// share one), syncs it, then renames it over `path`: a crash never leaves half a file. The
/// one way snl writes files (checkpoints here, run files in snl-cli).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let write = || -> std::io::Result<()> {
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        // The mode of a file made by `File::create` (0666 less the umask), not tempfile's 0600.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let mut tmp = builder.tempfile_in(dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    };
    // A failed write drops (deletes) its temporary file.
    write().map_err(|e| io_error(path, e))
}

/// Writes `tensors` as safetensors with `metadata` as `__metadata__`, atomically
/// ([`write_atomic`]). `*num_batches_tracked` is written as I64 whatever its dtype.
pub fn save(tensors: &StateDict, metadata: &HashMap<String, String>, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let mut entries = tensors
        .iter()
        .map(|(name, t)| {
            let t = if name.ends_with("num_batches_tracked") { t.to_dtype(DType::I64)? } else { t.clone() };
            Ok((name.clone(), t.to_device(&Device::Cpu)?.contiguous()?))
        })
        .collect::<Result<Vec<_>>>()?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let bytes = safetensors::serialize(entries, Some(metadata.clone()))
        .map_err(|source| Error::Safetensors { path: path.to_path_buf(), source })?;
    write_atomic(path, &bytes)
}

/// [`save`] of every tensor in `vars` (weights, masks, BN statistics).
pub fn save_varmap(vars: &VarMap, metadata: &HashMap<String, String>, path: impl AsRef<Path>) -> Result<()> {
    let tensors = {
        let data = vars.data().lock().map_err(|_| lock_error())?;
        data.iter().map(|(k, v)| (k.clone(), v.as_detached_tensor())).collect::<StateDict>()
    };
    save(&tensors, metadata, path)
}
