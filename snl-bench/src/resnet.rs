//! The ResNet18 of `torch_snl.py` (the SNL authors' topology: 3x3 stem without ReLU, four
//! stages of two basic blocks, masked activations after `bn1` and after the residual sum,
//! pixel masks by default), with every convolution and masked activation routed through
//! either candle's plain ops or `snl_core::fast`, so both can be measured on one model.
//!
//! This is a benchmark model, not the product's: snl-models owns the real one.

use candle::{DType, Device, Module, ModuleT, Result, Tensor};
use candle_nn::{BatchNorm, Linear, VarBuilder, VarMap};
use snl_core::{Granularity, Masked, ReluMask};

/// Which ops a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Impl {
    /// candle 0.11's own conv2d and the plain masked-activation expression.
    Candle,
    /// `snl_core::fast::{conv2d, masked_relu}`.
    Fast,
}

struct Conv {
    weight: Tensor,
    stride: usize,
    padding: usize,
}

impl Conv {
    fn new(vb: VarBuilder, cin: usize, cout: usize, k: usize, stride: usize, padding: usize) -> Result<Self> {
        let bound = 1.0 / ((cin * k * k) as f64).sqrt();
        let init = candle_nn::Init::Uniform { lo: -bound, up: bound };
        let weight = vb.get_with_hints((cout, cin, k, k), "weight", init)?;
        Ok(Self { weight, stride, padding })
    }

    fn forward(&self, x: &Tensor, imp: Impl) -> Result<Tensor> {
        match imp {
            Impl::Candle => x.conv2d(&self.weight, self.padding, self.stride, 1, 1),
            Impl::Fast => snl_core::fast::conv2d(x, &self.weight, self.stride, self.padding),
        }
    }
}

fn masked(mask: &ReluMask, x: &Tensor, imp: Impl) -> Result<Tensor> {
    match imp {
        Impl::Candle => mask.forward(x),
        Impl::Fast => {
            let a = mask.alphas().as_tensor();
            let a = if mask.is_frozen() { a.detach() } else { a.clone() };
            snl_core::fast::masked_relu(x, &a)
        }
    }
}

fn bn(vb: VarBuilder, c: usize) -> Result<BatchNorm> {
    candle_nn::batch_norm(c, candle_nn::BatchNormConfig::default(), vb)
}

struct Block {
    conv1: Conv,
    bn1: BatchNorm,
    alpha1: ReluMask,
    conv2: Conv,
    bn2: BatchNorm,
    alpha2: ReluMask,
    shortcut: Option<(Conv, BatchNorm)>,
}

impl Block {
    fn new(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        stride: usize,
        hw: usize,
        g: Granularity,
    ) -> Result<Self> {
        let shortcut = if stride != 1 || cin != cout {
            Some((Conv::new(vb.pp("shortcut.0"), cin, cout, 1, stride, 0)?, bn(vb.pp("shortcut.1"), cout)?))
        } else {
            None
        };
        Ok(Self {
            conv1: Conv::new(vb.pp("conv1"), cin, cout, 3, stride, 1)?,
            bn1: bn(vb.pp("bn1"), cout)?,
            alpha1: ReluMask::new(vb.pp("alpha1"), (cout, hw, hw), g)?,
            conv2: Conv::new(vb.pp("conv2"), cout, cout, 3, 1, 1)?,
            bn2: bn(vb.pp("bn2"), cout)?,
            alpha2: ReluMask::new(vb.pp("alpha2"), (cout, hw, hw), g)?,
            shortcut,
        })
    }

    fn forward(&self, x: &Tensor, train: bool, imp: Impl) -> Result<Tensor> {
        let out = self.bn1.forward_t(&self.conv1.forward(x, imp)?, train)?;
        let out = masked(&self.alpha1, &out, imp)?;
        let out = self.bn2.forward_t(&self.conv2.forward(&out, imp)?, train)?;
        let short = match &self.shortcut {
            Some((conv, bn)) => bn.forward_t(&conv.forward(x, imp)?, train)?,
            None => x.clone(),
        };
        masked(&self.alpha2, &(out + short)?, imp)
    }
}

/// ResNet18 for `image x image` inputs, `torch_snl.py`'s `ResNet18(classes, width, image)`.
pub struct ResNet18 {
    conv1: Conv,
    bn1: BatchNorm,
    blocks: Vec<Block>,
    linear: Linear,
    imp: Impl,
}

impl ResNet18 {
    pub fn new(vb: VarBuilder, classes: usize, width: usize, image: usize, imp: Impl) -> Result<Self> {
        let g = Granularity::Pixel;
        let mut blocks = Vec::new();
        let (mut cin, mut hw) = (width, image);
        for (i, mult) in [1, 2, 4, 8].into_iter().enumerate() {
            let stride = if i == 0 { 1 } else { 2 };
            hw /= stride;
            let cout = width * mult;
            let layer = vb.pp(format!("layer{}", i + 1));
            blocks.push(Block::new(layer.pp("0"), cin, cout, stride, hw, g)?);
            blocks.push(Block::new(layer.pp("1"), cout, cout, 1, hw, g)?);
            cin = cout;
        }
        Ok(Self {
            conv1: Conv::new(vb.pp("conv1"), 3, width, 3, 1, 1)?,
            bn1: bn(vb.pp("bn1"), width)?,
            blocks,
            linear: candle_nn::linear(cin, classes, vb.pp("linear"))?,
            imp,
        })
    }

    /// A trainable student (weights in `varmap`) and a teacher with the same weights built
    /// from detached copies, so its forward pass records no graph.
    pub fn student_and_teacher(
        classes: usize,
        width: usize,
        image: usize,
        imp: Impl,
        device: &Device,
    ) -> Result<(Self, Self, VarMap)> {
        let varmap = VarMap::new();
        let student =
            Self::new(VarBuilder::from_varmap(&varmap, DType::F32, device), classes, width, image, imp)?;
        let copies = varmap
            .data()
            .lock()
            .map_err(|_| candle::Error::Msg("varmap lock poisoned".into()))?
            .iter()
            .map(|(name, var)| Ok((name.clone(), var.as_tensor().copy()?.detach())))
            .collect::<Result<std::collections::HashMap<_, _>>>()?;
        let teacher =
            Self::new(VarBuilder::from_tensors(copies, DType::F32, device), classes, width, image, imp)?;
        Ok((student, teacher, varmap))
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut out = self.bn1.forward_t(&self.conv1.forward(x, self.imp)?, train)?;
        for block in &self.blocks {
            out = block.forward(&out, train, self.imp)?;
        }
        self.linear.forward(&out.mean((2, 3))?)
    }
}

impl Masked for ResNet18 {
    fn masks(&self) -> Vec<&ReluMask> {
        self.blocks.iter().flat_map(|b| [&b.alpha1, &b.alpha2]).collect()
    }
}
