//! Image decoding (JPEG, PNG; grey, RGB, RGBA, 16-bit all become 8-bit RGB) straight into the
//! `3 x H x W` store, in parallel with rayon.

use std::path::{Path, PathBuf};

use image::DynamicImage;
use rayon::prelude::*;

use crate::error::{Error, Result};

/// Decodes `bytes` into an 8-bit RGB image; returns `(height, width, hwc pixels)`.
pub(crate) fn decode_rgb(bytes: &[u8], name: &Path) -> Result<(usize, usize, Vec<u8>)> {
    let img = image::load_from_memory(bytes).map_err(|e| Error::decode(name, e.to_string()))?;
    let rgb = match img {
        DynamicImage::ImageRgb8(b) => b,
        other => other.to_rgb8(),
    };
    let (w, h) = rgb.dimensions();
    Ok((h as usize, w as usize, rgb.into_raw()))
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
        let bytes = std::fs::read(self).map_err(|e| Error::io(self, e))?;
        f(&bytes)
    }
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
    let mut store = vec![0u8; sources.len() * per];
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
