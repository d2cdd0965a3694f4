//! The decoded, in-memory dataset: a compact `u8` store of `N x 3 x H x W` images and labels.

use crate::error::{Error, Result};
use crate::rng;

/// Per-channel mean and standard deviation (in `[0, 1]` pixel units), applied as
/// `(pixel / 255 - mean) / std`, as torchvision's `ToTensor` + `Normalize`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    /// Mean of R, G, B.
    pub mean: [f32; 3],
    /// Standard deviation of R, G, B.
    pub std: [f32; 3],
}

impl Normalization {
    /// CIFAR-10: (0.4914, 0.4822, 0.4465) / (0.2023, 0.1994, 0.2010).
    pub const fn cifar10() -> Self {
        Self { mean: [0.4914, 0.4822, 0.4465], std: [0.2023, 0.1994, 0.2010] }
    }
    /// CIFAR-100: (0.5071, 0.4867, 0.4408) / (0.2675, 0.2565, 0.2761).
    pub const fn cifar100() -> Self {
        Self { mean: [0.5071, 0.4867, 0.4408], std: [0.2675, 0.2565, 0.2761] }
    }
    /// Tiny-ImageNet: (0.480, 0.448, 0.398) / (0.277, 0.269, 0.282).
    pub const fn tiny_imagenet() -> Self {
        Self { mean: [0.480, 0.448, 0.398], std: [0.277, 0.269, 0.282] }
    }
    /// ImageNet (torchvision's usual default): (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225).
    pub const fn imagenet() -> Self {
        Self { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] }
    }
    /// No normalisation beyond scaling to `[0, 1]`.
    pub const fn identity() -> Self {
        Self { mean: [0.0; 3], std: [1.0; 3] }
    }
    /// A preset by name: `cifar10`, `cifar100`, `tiny-imagenet`, `imagenet`, `none`.
    pub fn by_name(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().replace('_', "-").as_str() {
            "cifar10" | "cifar-10" => Ok(Self::cifar10()),
            "cifar100" | "cifar-100" => Ok(Self::cifar100()),
            "tiny-imagenet" | "tinyimagenet" => Ok(Self::tiny_imagenet()),
            "imagenet" => Ok(Self::imagenet()),
            "none" | "identity" => Ok(Self::identity()),
            _ => Err(Error::Invalid(format!(
                "unknown normalisation {name:?}; known: cifar10, cifar100, tiny-imagenet, imagenet, none"
            ))),
        }
    }

    /// Look-up tables `lut[c][v] = (v / 255 - mean[c]) / std[c]`.
    pub(crate) fn luts(&self) -> [[f32; 256]; 3] {
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                *out = (v as f32 / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        lut
    }
}

/// A decoded image dataset held as one contiguous `u8` buffer in `N x 3 x H x W` (CHW) order.
#[derive(Debug, Clone)]
pub struct Dataset {
    images: Vec<u8>,
    labels: Vec<u32>,
    height: usize,
    width: usize,
    classes: Vec<String>,
    normalization: Normalization,
}

impl Dataset {
    /// Builds a dataset from raw parts, checking that sizes and labels agree.
    ///
    /// `images` holds `labels.len()` images of `3 x height x width` bytes each, channel-major.
    pub fn from_raw(
        images: Vec<u8>,
        labels: Vec<u32>,
        height: usize,
        width: usize,
        classes: Vec<String>,
        normalization: Normalization,
    ) -> Result<Self> {
        let per = 3 * height * width;
        if per == 0 {
            return Err(Error::Invalid(format!("image size {height}x{width} is empty")));
        }
        if images.len() != labels.len() * per {
            return Err(Error::Invalid(format!(
                "{} image bytes for {} labels of 3x{height}x{width} images (expected {})",
                images.len(),
                labels.len(),
                labels.len() * per
            )));
        }
        if let Some((i, &l)) = labels.iter().enumerate().find(|&(_, &l)| l as usize >= classes.len()) {
            return Err(Error::Invalid(format!("label {l} of image {i} is outside 0..{}", classes.len())));
        }
        Ok(Self { images, labels, height, width, classes, normalization })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Image height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }
    /// Image width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }
    /// Bytes per image (`3 * H * W`).
    pub fn image_bytes(&self) -> usize {
        3 * self.height * self.width
    }
    /// Class names; label `i` is `classes()[i]`.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }
    /// All labels.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }
    /// All images, `N x 3 x H x W` bytes.
    pub fn images(&self) -> &[u8] {
        &self.images
    }
    /// Image `i` as `3 x H x W` bytes (R plane, G plane, B plane, each row-major).
    ///
    /// Panics if `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        let per = self.image_bytes();
        &self.images[i * per..(i + 1) * per]
    }
    /// Label of image `i` (panics if `i >= len()`).
    pub fn label(&self, i: usize) -> u32 {
        self.labels[i]
    }
    /// The normalisation applied when batching.
    pub fn normalization(&self) -> Normalization {
        self.normalization
    }
    /// Replaces the normalisation.
    pub fn set_normalization(&mut self, normalization: Normalization) {
        self.normalization = normalization;
    }
    /// Builder-style [`set_normalization`](Self::set_normalization).
    pub fn with_normalization(mut self, normalization: Normalization) -> Self {
        self.normalization = normalization;
        self
    }
    /// Number of images per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// Per-channel mean and standard deviation of the pixels (in `[0, 1]` units).
    pub fn compute_normalization(&self) -> Normalization {
        let hw = self.height * self.width;
        let mut sum = [0f64; 3];
        let mut sq = [0f64; 3];
        for img in self.images.chunks_exact(3 * hw) {
            for c in 0..3 {
                let (mut s, mut q) = (0u64, 0u64);
                for &v in &img[c * hw..(c + 1) * hw] {
                    s += u64::from(v);
                    q += u64::from(v) * u64::from(v);
                }
                sum[c] += s as f64;
                sq[c] += q as f64;
            }
        }
        let n = (self.len() * hw).max(1) as f64;
        let mut out = Normalization::identity();
        for c in 0..3 {
            let mean = sum[c] / n / 255.0;
            let var = (sq[c] / n / (255.0 * 255.0) - mean * mean).max(0.0);
            out.mean[c] = mean as f32;
            out.std[c] = if var > 0.0 { var.sqrt() as f32 } else { 1.0 };
        }
        out
    }

    /// The images at `indices`, in that order, as a new dataset.
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset> {
        let per = self.image_bytes();
        let mut images = Vec::with_capacity(indices.len() * per);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= self.len() {
                return Err(Error::Invalid(format!("index {i} outside a dataset of {}", self.len())));
            }
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Ok(Dataset {
            images,
            labels,
            height: self.height,
            width: self.width,
            classes: self.classes.clone(),
            normalization: self.normalization,
        })
    }

    /// Splits off a held-out validation set of `n` images chosen by `seed` (uniformly at random,
    /// not stratified). Returns `(train, validation)`; both keep the original relative order.
    /// The choice depends only on `(len, n, seed)`, so it is the same on every machine.
    pub fn split_validation(&self, n: usize, seed: u64) -> Result<(Dataset, Dataset)> {
        if n > self.len() {
            return Err(Error::Invalid(format!(
                "validation split of {n} images from a dataset of {}",
                self.len()
            )));
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        let mut r = rng::validation_rng(seed);
        rng::shuffle(&mut order, &mut r);
        let mut val: Vec<usize> = order[..n].to_vec();
        let mut train: Vec<usize> = order[n..].to_vec();
        val.sort_unstable();
        train.sort_unstable();
        Ok((self.subset(&train)?, self.subset(&val)?))
    }
}
