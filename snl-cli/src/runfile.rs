//! Reading a run folder's files as a hostile folder may hold them: a FIFO would block the
//! open, a huge file exhaust memory; each is refused naming the file.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The most bytes of a run's JSON file or metrics log read (a long run's log is ~1 MB).
const MAX_RUN_TEXT: u64 = 256 << 20;

/// Whether `path` is a regular file: false when there is none, an error naming it when it
/// is something else (opening a FIFO would block) or cannot be examined.
pub(crate) fn regular_file(path: &Path) -> Result<bool> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(true),
        Ok(_) => bail!("{}: not a regular file", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The text of the run file `path`, None when there is none; refused when it is not a
/// regular file or holds more than [`MAX_RUN_TEXT`] bytes.
pub(crate) fn read_text(path: &Path) -> Result<Option<String>> {
    if !regular_file(path)? {
        return Ok(None);
    }
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_RUN_TEXT + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if text.len() as u64 > MAX_RUN_TEXT {
        bail!("{}: more than {MAX_RUN_TEXT} bytes, larger than any file of a run", path.display());
    }
    Ok(Some(text))
}

/// The `__metadata__` of the safetensors header of `path`, read alone (no tensor); None
/// when there is no such file. The length is checked before anything is allocated.
pub(crate) fn header_metadata(path: &Path) -> Result<Option<serde_json::Map<String, Value>>> {
    if !regular_file(path)? {
        return Ok(None);
    }
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bad = || format!("{}: not a file snl wrote (bad header)", path.display());
    let mut len = [0u8; 8];
    file.read_exact(&mut len).with_context(bad)?;
    let len = u64::from_le_bytes(len);
    let file_len = file.metadata().with_context(bad)?.len();
    if len > file_len.saturating_sub(8) || len > 100 << 20 {
        bail!(bad());
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).with_context(bad)?;
    let mut header: Value = serde_json::from_slice(&header).with_context(bad)?;
    match header["__metadata__"].take() {
        Value::Object(map) => Ok(Some(map)),
        _ => Ok(Some(serde_json::Map::new())),
    }
}
