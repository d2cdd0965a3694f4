//! Image decoding (JPEG, PNG; grey, RGB, RGBA, 16-bit all become 8-bit RGB) straight into the
//! `3 x H x W` store, in parallel with rayon.

use std::path::{Path, PathBuf};

use image::DynamicImage;
use rayon::prelude::*;

use crate::error::{Error, Result};

/// The largest image side decoded: an image header claiming more is refused before its
/// pixels are allocated (the data sets here are 32 or 64 pixels a side).
pub const MAX_SIDE: u32 = 4096;

/// Decodes `bytes` into an 8-bit RGB image; returns `(height, width, hwc pixels)`.
pub(crate) fn decode_rgb(bytes: &[u8], name: &Path) -> Result<(usize, usize, Vec<u8>)> {
    let bad = |e: &dyn std::fmt::Display| Error::decode(name, e.to_string());
    let mut reader =
        image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| bad(&e))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| bad(&e))?;
    let rgb = match img {
        DynamicImage::ImageRgb8(b) => b,
        other => other.to_rgb8(),
    };
    let (w, h) = rgb.dimensions();
    Ok((h as usize, w as usize, rgb.into_raw()))
}

/// Decodes one JPEG or PNG (any colour type; at most [`MAX_SIDE`] pixels a side) into
/// 8-bit RGB, channels first: `(height, width, 3 x height x width bytes)`. `name` names the
/// image in errors.
pub fn decode_image(bytes: &[u8], name: &Path) -> Result<(usize, usize, Vec<u8>)> {
    let (h, w, hwc) = decode_rgb(bytes, name)?;
    let mut chw = vec![0u8; hwc.len()];
    hwc_to_chw(&hwc, &mut chw);
    Ok((h, w, chw))
}

/// A zeroed store of `count` images of `per` bytes, or an error naming `name` when that
/// cannot be allocated (instead of aborting the process).
pub(crate) fn zeroed_store(count: usize, per: usize, name: &Path) -> Result<Vec<u8>> {
    let too_big = || Error::decode(name, format!("{count} images of {per} bytes do not fit in memory"));
    let len = count.checked_mul(per).ok_or_else(too_big)?;
    let mut store = Vec::new();
    store.try_reserve_exact(len).map_err(|_| too_big())?;
    store.resize(len, 0);
    Ok(store)
}

/// HWC -> CHW into `out` (`3 * h * w` bytes).
pub(crate) fn hwc_to_chw(hwc: &[u8], out: &mut [u8]) {
    let hw = out.len() / 3;
    let (r, rest) = out.split_at_mut(hw);
    let (g, b) = rest.split_at_mut(hw);
    for (i, px) in hwc.chunks_exact(3).enumerate() {
        r[i] = px[0];
        g[i] = px[1];
        b[i] = px[2];
    }
}

/// Decodes one image into `out`, which must be `3 x h x w` bytes for the expected size.
pub(crate) fn decode_into(bytes: &[u8], name: &Path, h: usize, w: usize, out: &mut [u8]) -> Result<()> {
    let (ih, iw, hwc) = decode_rgb(bytes, name)?;
    if (ih, iw) != (h, w) {
        return Err(Error::decode(
            name,
            format!(
                "image is {ih}x{iw} (HxW) but the dataset's images are {h}x{w}; resizing is not supported"
            ),
        ));
    }
    hwc_to_chw(&hwc, out);
    Ok(())
}

/// Something that yields an image's encoded bytes (a file path, or bytes already in memory).
pub(crate) trait ImageSource: Sync {
    fn name(&self) -> PathBuf;
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R>;
}

impl ImageSource for PathBuf {
    fn name(&self) -> PathBuf {
        self.clone()
    }
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
        f(&read_capped(self, MAX_IMAGE_FILE)?)
    }
}

/// The most bytes an image file may hold: well above any encoding of [`MAX_SIDE`] pixels a
/// side (50 MB raw), far below what would exhaust memory.
const MAX_IMAGE_FILE: u64 = 256 << 20;

/// The bytes of `path`, refused (naming it) when it holds more than `cap`: checked before
/// anything is allocated, and bounded while reading (the file may grow meanwhile).
pub(crate) fn read_capped(path: &std::path::Path, cap: u64) -> Result<Vec<u8>> {
    use std::io::Read as _;
    // Checked before the open, which would block on a FIFO.
    if !std::fs::metadata(path).map_err(|e| Error::io(path, e))?.is_file() {
        return Err(Error::format(path, "not a regular file"));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let too_large =
        |n: u64| Error::format(path, format!("{n} bytes, more than the {cap} a file here may hold"));
    if len > cap {
        return Err(too_large(len));
    }
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(len as usize).map_err(|_| too_large(len))?;
    file.take(cap + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > cap {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Encoded bytes already in memory, with a display name (archive member, parquet row).
pub(crate) struct InMemory {
    pub name: PathBuf,
    pub bytes: Vec<u8>,
}

impl ImageSource for InMemory {
    fn name(&self) -> PathBuf {
        self.name.clone()
    }
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
        f(&self.bytes)
    }
}

/// Decodes every source into one CHW store. The size comes from `size` or, if `None`, from the
/// first image; every image must have it. Returns `(height, width, store)`.
pub(crate) fn decode_all<S: ImageSource>(
    sources: &[S],
    size: Option<(usize, usize)>,
) -> Result<(usize, usize, Vec<u8>)> {
    let Some(first) = sources.first() else {
        return Ok((size.map_or(0, |s| s.0), size.map_or(0, |s| s.1), Vec::new()));
    };
    let (h, w) = match size {
        Some(s) => s,
        None => first.with_bytes(|b| decode_rgb(b, &first.name()).map(|(h, w, _)| (h, w)))?,
    };
    let per = 3 * h * w;
    let mut store = zeroed_store(sources.len(), per, &first.name())?;
    decode_into_store(sources, h, w, &mut store)?;
    Ok((h, w, store))
}

/// Decodes `sources` in parallel into `store` (`sources.len() * 3 * h * w` bytes).
pub(crate) fn decode_into_store<S: ImageSource>(
    sources: &[S],
    h: usize,
    w: usize,
    store: &mut [u8],
) -> Result<()> {
    let per = 3 * h * w;
    store
        .par_chunks_mut(per)
        .zip(sources.par_iter())
        .with_min_len(64)
        .try_for_each(|(slot, src)| src.with_bytes(|bytes| decode_into(bytes, &src.name(), h, w, slot)))
}
