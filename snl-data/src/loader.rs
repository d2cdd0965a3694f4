//! Seeded, augmented batches as candle tensors, produced ahead on a background thread.
//!
//! The order and augmentation of epoch `e` depend only on `(seed, e)` through one ChaCha8
//! stream per epoch, our own Fisher-Yates shuffle and our own bounded sampling (see `rng.rs`):
//! the same seed and epoch give the same batches on any machine, whatever the batch size of
//! the consumer's hardware or the number of threads.

use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use candle::{Device, Tensor};
use rand::RngCore;

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::rng;

/// How batches are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchConfig {
    /// Images per batch (> 0).
    pub batch_size: usize,
    /// Shuffle the order every epoch.
    pub shuffle: bool,
    /// Random crop with `pad`-pixel zero padding and random horizontal flip (p = 0.5),
    /// as torchvision's `RandomCrop(size, padding=pad)` + `RandomHorizontalFlip()`.
    pub augment: bool,
    /// Zero padding of the random crop, in pixels (4 for CIFAR).
    pub pad: usize,
    /// Drop a last, incomplete batch.
    pub drop_last: bool,
    /// Seed of the order and the augmentation.
    pub seed: u64,
    /// Batches produced ahead of the consumer (capacity of the channel), at least 1.
    pub prefetch: usize,
}

impl BatchConfig {
    /// Training: shuffled, augmented (pad 4 + flip), incomplete last batch kept, 3 batches ahead.
    pub fn train(batch_size: usize, seed: u64) -> Self {
        Self { batch_size, shuffle: true, augment: true, pad: 4, drop_last: false, seed, prefetch: 3 }
    }
    /// Evaluation: dataset order, no augmentation, every image.
    pub fn eval(batch_size: usize) -> Self {
        Self { batch_size, shuffle: false, augment: false, pad: 0, drop_last: false, seed: 0, prefetch: 3 }
    }
}

/// Augmentation drawn for one image: crop offset (`dy`, `dx` in `0..=2*pad`) and flip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aug {
    /// Vertical crop offset in the padded image.
    pub dy: u16,
    /// Horizontal crop offset in the padded image.
    pub dx: u16,
    /// Mirror left-right after cropping.
    pub flip: bool,
}

/// Everything random about one epoch: the image order and each position's augmentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochPlan {
    /// Epoch number.
    pub epoch: usize,
    /// Dataset index of each position of the epoch.
    pub order: Vec<u32>,
    /// Augmentation of each position (empty when augmentation is off).
    pub aug: Vec<Aug>,
}

/// Makes batches of a dataset. Cheap to clone (the dataset is shared).
#[derive(Debug, Clone)]
pub struct Loader {
    data: Arc<Dataset>,
    config: BatchConfig,
    device: Device,
    luts: Arc<[[f32; 256]; 3]>,
}

impl Loader {
    /// A loader of `data` on `device`.
    pub fn new(data: impl Into<Arc<Dataset>>, config: BatchConfig, device: &Device) -> Result<Self> {
        let data = data.into();
        if config.batch_size == 0 {
            return Err(Error::Invalid("batch size 0".to_owned()));
        }
        if config.augment && config.pad > 255 {
            return Err(Error::Invalid(format!("crop padding {} (at most 255)", config.pad)));
        }
        let luts = Arc::new(data.normalization().luts());
        Ok(Self { data, config, device: device.clone(), luts })
    }

    /// The dataset.
    pub fn dataset(&self) -> &Dataset {
        &self.data
    }
    /// The configuration.
    pub fn config(&self) -> &BatchConfig {
        &self.config
    }
    /// The device batches are put on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        let (n, b) = (self.data.len(), self.config.batch_size);
        if self.config.drop_last { n / b } else { n.div_ceil(b) }
    }

    /// Images per epoch (all of them, or all full batches with `drop_last`).
    pub fn num_images(&self) -> usize {
        if self.config.drop_last { self.num_batches() * self.config.batch_size } else { self.data.len() }
    }

    /// Positions of batch `k` in the epoch order.
    pub fn batch_range(&self, k: usize) -> Range<usize> {
        let b = self.config.batch_size;
        let start = (k * b).min(self.data.len());
        start..((k + 1) * b).min(self.data.len())
    }

    /// The order and augmentation of `epoch`; a function of `(seed, epoch)` and the dataset size.
    pub fn plan(&self, epoch: usize) -> EpochPlan {
        let n = self.data.len();
        let mut order: Vec<u32> = (0..n as u32).collect();
        let mut r = rng::epoch_rng(self.config.seed, epoch as u64);
        if self.config.shuffle {
            rng::shuffle(&mut order, &mut r);
        }
        let aug = if self.config.augment {
            let span = 2 * self.config.pad as u64 + 1;
            (0..n)
                .map(|_| Aug {
                    dy: rng::below(&mut r, span) as u16,
                    dx: rng::below(&mut r, span) as u16,
                    flip: r.next_u32() & 1 == 1,
                })
                .collect()
        } else {
            Vec::new()
        };
        EpochPlan { epoch, order, aug }
    }

    /// Fills batch `k` of `plan` into `images` (`n x 3 x H x W` f32, normalised) and `labels`,
    /// clearing them first; returns the number of images `n`. This is the whole CPU cost of a
    /// batch: one pass of crop + flip + normalise from the `u8` store, no tensor op.
    pub fn fill_batch(
        &self,
        plan: &EpochPlan,
        k: usize,
        images: &mut Vec<f32>,
        labels: &mut Vec<u32>,
    ) -> usize {
        let range = self.batch_range(k);
        let per = self.data.image_bytes();
        let n = range.len();
        images.clear();
        images.resize(n * per, 0.0);
        labels.clear();
        for (slot, pos) in range.enumerate() {
            let idx = plan.order[pos] as usize;
            labels.push(self.data.label(idx));
            let dst = &mut images[slot * per..(slot + 1) * per];
            let src = self.data.image(idx);
            match plan.aug.get(pos) {
                Some(a) => augment_into(
                    src,
                    dst,
                    self.data.height(),
                    self.data.width(),
                    self.config.pad,
                    *a,
                    &self.luts,
                ),
                None => normalise_into(src, dst, &self.luts),
            }
        }
        n
    }

    /// Batch `k` of `plan` as tensors: images `f32 (n, 3, H, W)`, labels `u32 (n)`.
    pub fn batch(&self, plan: &EpochPlan, k: usize) -> Result<(Tensor, Tensor)> {
        let mut images = Vec::new();
        let mut labels = Vec::new();
        let n = self.fill_batch(plan, k, &mut images, &mut labels);
        self.to_tensors(images, labels, n)
    }

    fn to_tensors(&self, images: Vec<f32>, labels: Vec<u32>, n: usize) -> Result<(Tensor, Tensor)> {
        let (h, w) = (self.data.height(), self.data.width());
        let x = Tensor::from_vec(images, (n, 3, h, w), &self.device)?;
        let y = Tensor::from_vec(labels, n, &self.device)?;
        Ok((x, y))
    }

    /// The batches of `epoch`, produced on a background thread `prefetch` batches ahead.
    /// Dropping the iterator stops the thread.
    pub fn epoch(&self, epoch: usize) -> EpochBatches {
        let total = self.num_batches();
        let (tx, rx) = sync_channel(self.config.prefetch.max(1));
        let loader = self.clone();
        let spawned = std::thread::Builder::new().name("snl-data-batches".to_owned()).spawn(move || {
            let plan = loader.plan(epoch);
            for k in 0..total {
                let item = loader.batch(&plan, k);
                let failed = item.is_err();
                if tx.send(item).is_err() || failed {
                    break;
                }
            }
        });
        match spawned {
            Ok(handle) => {
                EpochBatches { inner: Inner::Thread { rx: Some(rx), handle: Some(handle) }, next: 0, total }
            }
            // No thread available: make the same batches on the caller's thread.
            Err(_) => self.epoch_inline(epoch),
        }
    }

    /// The same batches as [`epoch`](Self::epoch), made on the calling thread when asked for.
    pub fn epoch_inline(&self, epoch: usize) -> EpochBatches {
        let plan = self.plan(epoch);
        EpochBatches {
            inner: Inner::Inline { loader: self.clone(), plan },
            next: 0,
            total: self.num_batches(),
        }
    }
}

enum Inner {
    Thread { rx: Option<Receiver<Result<(Tensor, Tensor)>>>, handle: Option<JoinHandle<()>> },
    Inline { loader: Loader, plan: EpochPlan },
}

/// Iterator over one epoch's batches `(images f32 (n,3,H,W), labels u32 (n))`.
pub struct EpochBatches {
    inner: Inner,
    next: usize,
    total: usize,
}

impl std::fmt::Debug for EpochBatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.inner {
            Inner::Thread { .. } => "background thread",
            Inner::Inline { .. } => "inline",
        };
        f.debug_struct("EpochBatches")
            .field("next", &self.next)
            .field("total", &self.total)
            .field("kind", &kind)
            .finish()
    }
}

impl Iterator for EpochBatches {
    type Item = Result<(Tensor, Tensor)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.total {
            return None;
        }
        let item = match &mut self.inner {
            Inner::Thread { rx, .. } => match rx.as_ref().map(Receiver::recv) {
                Some(Ok(item)) => item,
                _ => Err(Error::ProducerStopped),
            },
            Inner::Inline { loader, plan } => loader.batch(plan, self.next),
        };
        self.next = if item.is_ok() { self.next + 1 } else { self.total };
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.total - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for EpochBatches {}

impl Drop for EpochBatches {
    fn drop(&mut self) {
        if let Inner::Thread { rx, handle } = &mut self.inner {
            // Closing the channel first makes a producer blocked on a full channel return.
            drop(rx.take());
            if let Some(h) = handle.take() {
                let _ = h.join();
            }
        }
    }
}

/// `dst[i] = lut[c][src[i]]` over the three planes.
fn normalise_into(src: &[u8], dst: &mut [f32], luts: &[[f32; 256]; 3]) {
    let hw = src.len() / 3;
    for c in 0..3 {
        let lut = &luts[c];
        for (o, &s) in dst[c * hw..(c + 1) * hw].iter_mut().zip(&src[c * hw..(c + 1) * hw]) {
            *o = lut[s as usize];
        }
    }
}

/// Random crop of the `pad`-padded image at offset (`dy`, `dx`), optional mirror, normalise:
/// one pass from `u8` to `f32`. Padding pixels are zero before normalisation, as torchvision.
fn augment_into(src: &[u8], dst: &mut [f32], h: usize, w: usize, pad: usize, a: Aug, luts: &[[f32; 256]; 3]) {
    let hw = h * w;
    let oy = a.dy as isize - pad as isize;
    let ox = a.dx as isize - pad as isize;
    let (wi, hi) = (w as isize, h as isize);
    // Output columns [x0, x1) read the source; the rest is padding.
    let (x0, x1) = if a.flip { (ox.max(0), (wi + ox).min(wi)) } else { ((-ox).max(0), (wi - ox).min(wi)) };
    let (x0, x1) = (x0.clamp(0, wi) as usize, x1.clamp(0, wi) as usize);
    for c in 0..3 {
        let lut = &luts[c];
        let padv = lut[0];
        let splane = &src[c * hw..(c + 1) * hw];
        let dplane = &mut dst[c * hw..(c + 1) * hw];
        for (y, row) in dplane.chunks_exact_mut(w).enumerate() {
            let sy = y as isize + oy;
            if sy < 0 || sy >= hi || x0 >= x1 {
                row.fill(padv);
                continue;
            }
            let srow = &splane[sy as usize * w..(sy as usize + 1) * w];
            row[..x0].fill(padv);
            row[x1..].fill(padv);
            if a.flip {
                // out[x] = src[w - 1 - x + ox]
                let lo = (wi - x1 as isize + ox) as usize;
                let hi_ = (wi - x0 as isize + ox) as usize;
                for (o, &s) in row[x0..x1].iter_mut().zip(srow[lo..hi_].iter().rev()) {
                    *o = lut[s as usize];
                }
            } else {
                // out[x] = src[x + ox]
                let lo = (x0 as isize + ox) as usize;
                for (o, &s) in row[x0..x1].iter_mut().zip(&srow[lo..lo + (x1 - x0)]) {
                    *o = lut[s as usize];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: pad with zeros, crop, flip, then normalise — torchvision's order.
    fn reference(src: &[u8], h: usize, w: usize, pad: usize, a: Aug, luts: &[[f32; 256]; 3]) -> Vec<f32> {
        let (ph, pw) = (h + 2 * pad, w + 2 * pad);
        let mut out = vec![0f32; 3 * h * w];
        for c in 0..3 {
            let mut padded = vec![0u8; ph * pw];
            for y in 0..h {
                for x in 0..w {
                    padded[(y + pad) * pw + x + pad] = src[c * h * w + y * w + x];
                }
            }
            for y in 0..h {
                for x in 0..w {
                    let cx = if a.flip { w - 1 - x } else { x };
                    let v = padded[(y + a.dy as usize) * pw + cx + a.dx as usize];
                    out[c * h * w + y * w + x] = luts[c][v as usize];
                }
            }
        }
        out
    }

    #[test]
    fn augment_matches_pad_crop_flip_reference() {
        let (h, w, pad) = (5, 7, 3);
        let src: Vec<u8> = (0..3 * h * w).map(|i| (i * 7 % 251 + 1) as u8).collect();
        let luts = crate::Normalization::cifar10().luts();
        for dy in 0..=2 * pad as u16 {
            for dx in 0..=2 * pad as u16 {
                for flip in [false, true] {
                    let a = Aug { dy, dx, flip };
                    let mut got = vec![f32::NAN; 3 * h * w];
                    augment_into(&src, &mut got, h, w, pad, a, &luts);
                    assert_eq!(got, reference(&src, h, w, pad, a, &luts), "{a:?}");
                }
            }
        }
    }

    #[test]
    fn pad_larger_than_image_is_all_padding_or_partial() {
        let (h, w, pad) = (2, 2, 4);
        let src = vec![9u8; 12];
        let luts = crate::Normalization::identity().luts();
        for dy in 0..=8 {
            for dx in 0..=8 {
                for flip in [false, true] {
                    let a = Aug { dy, dx, flip };
                    let mut got = vec![f32::NAN; 12];
                    augment_into(&src, &mut got, h, w, pad, a, &luts);
                    assert_eq!(got, reference(&src, h, w, pad, a, &luts), "{a:?}");
                }
            }
        }
    }
}
