//! The layers both networks are made of: [`Conv2d`] (the one place a convolution is
//! computed), [`BatchNorm2d`] with PyTorch's training semantics, and a [`Linear`] head.
//! Constructors take the `VarBuilder` last, as candle-nn's do.

use candle::{DType, Module, Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use snl_core::ReluMask;

use crate::error::ConfigError;

/// Side length after a convolution (PyTorch's formula, no dilation): the one place it is
/// computed. An error, not an underflow, when the kernel does not fit the padded input.
pub fn conv_output_size(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> std::result::Result<usize, ConfigError> {
    let span = (input + 2 * padding).checked_sub(kernel);
    match (span, stride) {
        (Some(span), 1..) => Ok(span / stride + 1),
        _ => Err(ConfigError::ConvDoesNotFit { input, kernel, stride, padding }),
    }
}

/// Where a residual block ([`crate::BasicBlock`], [`crate::WideBlock`]) sits: channels in
/// and out, the stride of its first convolution (and shortcut), its input's side length,
/// and what one mask element gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockConfig {
    pub cin: usize,
    pub cout: usize,
    pub stride: usize,
    pub size_in: usize,
    pub granularity: snl_core::Granularity,
}

impl BlockConfig {
    /// The block's output side length (its first 3x3 convolution's, padding 1).
    pub fn size_out(&self) -> std::result::Result<usize, ConfigError> {
        conv_output_size(self.size_in, 3, self.stride, 1)
    }

    /// A projection shortcut is needed (the shape changes).
    pub(crate) fn projects(&self) -> bool {
        self.stride != 1 || self.cin != self.cout
    }
}

/// A bias-free 2-d convolution with square kernel, stride and zero padding, weight
/// `<prefix>.weight` of shape `(out, in, k, k)` (OIHW, as PyTorch).
///
/// Every convolution of the models goes through [`Conv2d::forward`] or [`conv_bn`], both
/// `snl_core::fast` ops, so a faster CPU convolution can be swapped in here alone.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    /// PyTorch's default initialisation (`kaiming_uniform_(a = sqrt(5))`, i.e. uniform in
    /// `±1/sqrt(fan_in)`) when `vb` creates the weight.
    pub fn new(
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let bound = 1.0 / ((cin * kernel * kernel) as f64).sqrt();
        let weight = vb.get_with_hints(
            (cout, cin, kernel, kernel),
            "weight",
            Init::Uniform { lo: -bound, up: bound },
        )?;
        Ok(Self { weight, stride, padding })
    }

    /// Output side length for an input side length ([`conv_output_size`]).
    pub fn output_size(&self, input: usize) -> std::result::Result<usize, ConfigError> {
        conv_output_size(input, self.weight.dims()[2], self.stride, self.padding)
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        snl_core::fast::conv2d(x, &self.weight, self.stride, self.padding)
    }
}

/// PyTorch's `nn.BatchNorm2d` (eps 1e-5, momentum 0.1, affine, tracking running statistics).
///
/// Parameters `<prefix>.{weight,bias}` train; `<prefix>.{running_mean,running_var}` (F32)
/// and `<prefix>.num_batches_tracked` (I64, shape `[]`) are stored beside them (in the
/// `VarMap` when `vb` is VarMap-backed, so saving and loading include them) but are only
/// ever read detached: they never receive a gradient.
///
/// Train mode normalises with the batch mean and biased batch variance, then updates the
/// running mean and the running variance (with the *unbiased* batch variance) in place, and
/// counts the batch. Eval mode normalises with the running statistics.
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    num_batches_tracked: Var,
    eps: f64,
    momentum: f64,
}

impl BatchNorm2d {
    pub const EPS: f64 = 1e-5;
    pub const MOMENTUM: f64 = 0.1;

    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        let running_mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?;
        let running_var = vb.get_with_hints(channels, "running_var", Init::Const(1.0))?;
        let tracked = vb.get_with_hints_dtype((), "num_batches_tracked", Init::Const(0.0), DType::I64)?;
        // `Var::from_tensor` shares the storage of a VarMap variable (so in-place updates
        // reach the VarMap) and copies a plain tensor (a frozen model keeps its own copy).
        Ok(Self {
            weight,
            bias,
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
            num_batches_tracked: Var::from_tensor(&tracked)?,
            eps: Self::EPS,
            momentum: Self::MOMENTUM,
        })
    }

    pub fn running_mean(&self) -> Tensor {
        self.running_mean.as_tensor().detach()
    }

    pub fn running_var(&self) -> Tensor {
        self.running_var.as_tensor().detach()
    }

    pub fn num_batches_tracked(&self) -> Result<i64> {
        self.num_batches_tracked.as_tensor().to_dtype(DType::I64)?.to_scalar::<i64>()
    }

    fn forward_train(&self, x: &Tensor) -> Result<Tensor> {
        let (out, mean, var) = snl_core::fast::batch_norm_train(x, &self.weight, &self.bias, self.eps)?;
        self.update_running_stats(x, &mean, &var)?;
        Ok(out)
    }

    /// [`Self::forward_train`] followed by `mask` (of the sum with `residual`), as one op.
    fn forward_train_masked(&self, x: &Tensor, residual: Option<&Tensor>, mask: &ReluMask) -> Result<Tensor> {
        let alphas = mask.forward_alphas();
        let (out, mean, var) =
            snl_core::fast::batch_norm_masked_relu(x, &self.weight, &self.bias, self.eps, residual, &alphas)?;
        self.update_running_stats(x, &mean, &var)?;
        Ok(out)
    }

    /// Updates the running statistics with a training batch's `mean` and biased `var`.
    fn update_running_stats(&self, x: &Tensor, mean: &Tensor, var: &Tensor) -> Result<()> {
        let (n, _, h, w) = x.dims4()?;
        let count = n * h * w;
        let m = self.momentum;
        let unbias = count as f64 / (count - 1) as f64;
        let new_mean =
            (self.running_mean.as_tensor().detach().affine(1.0 - m, 0.0)? + mean.affine(m, 0.0)?)?;
        let new_var =
            (self.running_var.as_tensor().detach().affine(1.0 - m, 0.0)? + var.affine(m * unbias, 0.0)?)?;
        self.running_mean.set(&new_mean)?;
        self.running_var.set(&new_var)?;
        // Counted on the device: reading the count back to the host would make every training
        // step wait for a GPU -> CPU copy.
        let tracked = self.num_batches_tracked.as_tensor().detach();
        self.num_batches_tracked.set(&(&tracked + Tensor::ones((), tracked.dtype(), x.device())?)?)
    }

    /// Eval mode as a per-channel `(scale, shift)`: `x * scale + shift`.
    fn eval_affine(&self) -> Result<(Tensor, Tensor)> {
        let std = (self.running_var() + self.eps)?.sqrt()?;
        let scale = self.weight.div(&std)?;
        let shift = self.bias.sub(&self.running_mean().mul(&scale)?)?;
        Ok((scale, shift))
    }

    fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        let (scale, shift) = self.eval_affine()?;
        snl_core::fast::channel_affine(x, &scale, &shift)
    }
}

/// `bn(conv(x))`. In eval mode one op, [`snl_core::fast::conv2d_affine`], which folds the
/// batch norm into the convolution when nothing needs a gradient (a teacher, inference).
pub fn conv_bn(conv: &Conv2d, bn: &BatchNorm2d, x: &Tensor, train: bool) -> Result<Tensor> {
    if train {
        return bn.forward_train(&conv.forward(x)?);
    }
    let (scale, shift) = bn.eval_affine()?;
    snl_core::fast::conv2d_affine(x, &conv.weight, &scale, &shift, conv.stride, conv.padding)
}

/// `mask(bn(conv(x)) + residual)` (without `+ residual` when it is `None`). In train mode
/// the batch norm and the mask are one op ([`snl_core::fast::batch_norm_masked_relu`]), in
/// eval mode the convolution and the batch norm ([`conv_bn`]).
pub fn conv_bn_mask(
    conv: &Conv2d,
    bn: &BatchNorm2d,
    mask: &ReluMask,
    x: &Tensor,
    residual: Option<&Tensor>,
    train: bool,
) -> Result<Tensor> {
    if train {
        return bn.forward_train_masked(&conv.forward(x)?, residual, mask);
    }
    let y = conv_bn(conv, bn, x, false)?;
    match residual {
        Some(r) => mask.forward_residual(&y, r),
        None => mask.forward(&y),
    }
}

/// `mask(bn(x))`, one op in train mode.
pub fn bn_mask(bn: &BatchNorm2d, mask: &ReluMask, x: &Tensor, train: bool) -> Result<Tensor> {
    match train {
        true => bn.forward_train_masked(x, None, mask),
        false => mask.forward(&bn.forward_eval(x)?),
    }
}

impl candle::ModuleT for BatchNorm2d {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train { self.forward_train(x) } else { self.forward_eval(x) }
    }
}

/// A fully connected layer `<prefix>.{weight,bias}`, weight `(out, in)` as PyTorch.
#[derive(Debug, Clone)]
pub struct Linear {
    inner: candle_nn::Linear,
}

impl Linear {
    /// PyTorch's default initialisation (weight and bias uniform in `±1/sqrt(in)`).
    pub fn new(cin: usize, cout: usize, vb: VarBuilder) -> Result<Self> {
        let bound = 1.0 / (cin as f64).sqrt();
        let init = Init::Uniform { lo: -bound, up: bound };
        let weight = vb.get_with_hints((cout, cin), "weight", init)?;
        let bias = vb.get_with_hints(cout, "bias", init)?;
        Ok(Self { inner: candle_nn::Linear::new(weight, Some(bias)) })
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.inner.forward(x)
    }
}

/// Global average pooling `(N, C, H, W) -> (N, C)` as a mean (differentiable for any size).
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    x.mean((2, 3))
}
