//! The learnable ReLU mask (the paper's `C`, the authors' `LearnableAlpha`) and the
//! [`Masked`] trait through which Algorithm 1 finds every mask of a model.

use std::sync::atomic::{AtomicBool, Ordering};

use candle::{DType, Module, Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

/// What one mask element gates: one activation (the paper's "pixel-wise" SNL)
/// or a whole channel of `H x W` activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Pixel,
    Channel,
}

impl Granularity {
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Pixel => "pixel",
            Granularity::Channel => "channel",
        }
    }
}

impl std::str::FromStr for Granularity {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "pixel" => Ok(Granularity::Pixel),
            "channel" => Ok(Granularity::Channel),
            other => Err(format!("unknown granularity `{other}` (expected pixel or channel)")),
        }
    }
}

/// A masked activation `y = a * relu(x) + (1 - a) * x`.
///
/// `alphas` has shape `(1, C, H, W)` (pixel) or `(1, C, 1, 1)` (channel) and starts at 1,
/// so a fresh mask is a plain ReLU. It trains when its `VarBuilder` hands out variables
/// (a `VarMap`); built from plain tensors it is frozen from the start. After [`ReluMask::binarize`] the mask is frozen: it takes
/// no gradient and computes exactly `relu` where `a = 1` and the identity where `a = 0`.
#[derive(Debug)]
pub struct ReluMask {
    site: String,
    alphas: Var,
    channels: usize,
    height: usize,
    width: usize,
    granularity: Granularity,
    frozen: AtomicBool,
}

impl ReluMask {
    /// A mask for activations of shape `(C, H, W)`, its parameter named `alphas` under `vb`
    /// (initialised to 1 when `vb` creates it). The site name is `vb`'s prefix.
    pub fn new(
        (channels, height, width): (usize, usize, usize),
        granularity: Granularity,
        vb: VarBuilder,
    ) -> Result<Self> {
        let shape = match granularity {
            Granularity::Pixel => (1, channels, height, width),
            Granularity::Channel => (1, channels, 1, 1),
        };
        let alphas = vb.get_with_hints(shape, "alphas", Init::Const(1.0))?;
        // Masks built from plain tensors (a teacher, an inference model) never train.
        let frozen = AtomicBool::new(!alphas.is_variable());
        Ok(Self {
            site: vb.prefix(),
            alphas: Var::from_tensor(&alphas)?,
            channels,
            height,
            width,
            granularity,
            frozen,
        })
    }

    /// The mask's place in the model (`layer1.0.alpha1`); its parameter is `<site>.alphas`.
    pub fn site(&self) -> &str {
        &self.site
    }

    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// The gated activation shape `(C, H, W)`.
    pub fn activation_shape(&self) -> (usize, usize, usize) {
        (self.channels, self.height, self.width)
    }

    /// The mask parameter, shared with the `VarMap` it came from.
    pub fn alphas(&self) -> &Var {
        &self.alphas
    }

    /// Activations (ReLUs) this site computes when every mask element is on.
    pub fn total_relus(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// ReLUs gated by one mask element.
    fn relus_per_element(&self) -> usize {
        match self.granularity {
            Granularity::Pixel => 1,
            Granularity::Channel => self.height * self.width,
        }
    }

    /// `alphas > eps` (the authors' signed comparison) as a U8 tensor of the alphas' shape:
    /// each alpha, as an f32, compared with `eps` exactly (as in f64), whatever the device.
    /// The one comparison counting, binarizing and exporting share, so they never disagree
    /// on an alpha that rounds to `eps` (candle rounds a scalar to the tensor's type first).
    pub fn kept(&self, eps: f64) -> Result<Tensor> {
        self.alphas.as_tensor().to_dtype(DType::F32)?.gt(f64::from(f32_at_most(eps)))
    }

    /// Mask elements above `eps` ([`Self::kept`]).
    pub fn kept_elements(&self, eps: f64) -> Result<usize> {
        let kept = self.kept(eps)?.flatten_all()?.to_vec1::<u8>()?;
        Ok(kept.iter().filter(|&&k| k == 1).count())
    }

    /// ReLUs kept at threshold `eps`.
    pub fn kept_relus(&self, eps: f64) -> Result<usize> {
        Ok(self.kept_elements(eps)? * self.relus_per_element())
    }

    /// Algorithm 1, line 11: `alphas = (alphas > eps)`, then freeze.
    pub fn binarize(&self, eps: f64) -> Result<()> {
        let a = self.alphas.as_tensor();
        let binary = self.kept(eps)?.to_dtype(a.dtype())?;
        self.alphas.set(&binary)?;
        self.frozen.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Frozen masks take no gradient (set by [`ReluMask::binarize`], or by a caller that
    /// loads an already linearized model).
    pub fn set_frozen(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::Relaxed);
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::Relaxed)
    }

    /// `|alphas|` summed: this site's share of the lasso term.
    pub fn l1(&self) -> Result<Tensor> {
        self.alphas.as_tensor().abs()?.sum_all()
    }

    pub fn report(&self, eps: f64) -> Result<SiteReport> {
        let (c, h, w) = self.activation_shape();
        Ok(SiteReport {
            name: self.site.clone(),
            shape: [c, h, w],
            total: self.total_relus(),
            kept: self.kept_relus(eps)?,
        })
    }

    /// The mask values as the forward pass uses them (detached when frozen), for ops that
    /// apply the mask themselves ([`crate::fast::batch_norm_masked_relu`]).
    pub fn forward_alphas(&self) -> Tensor {
        if self.is_frozen() { self.alphas.as_tensor().detach() } else { self.alphas.as_tensor().clone() }
    }

    /// `forward(x + residual)` (a residual block's output) in one op that keeps no sum:
    /// [`crate::fast::masked_relu_add`].
    pub fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        crate::fast::masked_relu_add(x, residual, &self.forward_alphas())
    }
}

impl Module for ReluMask {
    /// `a * relu(x) + (1 - a) * x`, computed as `x + a * relu(-x)` (the same function and
    /// gradients) by [`crate::fast::masked_relu`]: one pass each way on the CPU.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::fast::masked_relu(x, &self.forward_alphas())
    }
}

/// Any model whose ReLUs are [`ReluMask`]s. Algorithm 1 reaches the masks only through this.
pub trait Masked {
    /// Every mask, in forward order.
    fn masks(&self) -> Vec<&ReluMask>;
}

/// One site in a ReLU report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteReport {
    /// The mask's site (`layer1.0.alpha1`).
    pub name: String,
    /// The gated activation shape `[C, H, W]`.
    pub shape: [usize; 3],
    /// ReLUs with every element on.
    pub total: usize,
    /// ReLUs kept at the report's threshold.
    pub kept: usize,
}

/// A model's ReLUs at threshold `eps`, per site and in total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReluReport {
    pub threshold: f64,
    pub sites: Vec<SiteReport>,
    pub total: usize,
    pub kept: usize,
}

impl ReluReport {
    pub fn of(model: &(impl Masked + ?Sized), eps: f64) -> Result<Self> {
        let sites = model.masks().iter().map(|m| m.report(eps)).collect::<Result<Vec<_>>>()?;
        Ok(Self {
            threshold: eps,
            total: sites.iter().map(|s| s.total).sum(),
            kept: sites.iter().map(|s| s.kept).sum(),
            sites,
        })
    }
}

/// ReLUs kept at `eps` (`#(alphas > eps)`, per element gated), over every mask.
pub fn relu_count(model: &(impl Masked + ?Sized), eps: f64) -> Result<usize> {
    model.masks().iter().map(|m| m.kept_relus(eps)).sum()
}

/// ReLUs of the model with every mask on.
pub fn relu_total(model: &(impl Masked + ?Sized)) -> usize {
    model.masks().iter().map(|m| m.total_relus()).sum()
}

/// Binarize and freeze every mask (Algorithm 1, line 11).
pub fn binarize(model: &(impl Masked + ?Sized), eps: f64) -> Result<()> {
    model.masks().iter().try_for_each(|m| m.binarize(eps))
}

/// The largest f32 at most `x`: for every f32 `a`, `a > f32_at_most(x)` exactly when
/// `f64::from(a) > x` (an `x` between two f32s rounds down, not to the nearer one).
fn f32_at_most(x: f64) -> f32 {
    let r = x as f32;
    if f64::from(r) > x { r.next_down() } else { r }
}
