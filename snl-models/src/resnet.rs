//! CIFAR-style ResNet with BasicBlocks (the authors' `resnet18_in`), every ReLU a [`ReluMask`].

use candle::{Module, ModuleT, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use snl_core::{Granularity, Masked, ReluMask};

use crate::error::ConfigError;
use crate::layers::{BatchNorm2d, BlockConfig, Conv2d, Linear, conv_bn, conv_bn_mask, global_avg_pool};

/// Blocks per stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResNetDepth {
    /// Two BasicBlocks per stage (He et al. 2016, Table 1).
    ResNet18,
    /// 3, 4, 6, 3 BasicBlocks (He et al. 2016, Table 1).
    ResNet34,
}

impl ResNetDepth {
    pub fn blocks(self) -> [usize; 4] {
        match self {
            ResNetDepth::ResNet18 => [2, 2, 2, 2],
            ResNetDepth::ResNet34 => [3, 4, 6, 3],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ResNetDepth::ResNet18 => "resnet18",
            ResNetDepth::ResNet34 => "resnet34",
        }
    }
}

/// A ResNet's shape. Field defaults are those of the SNL authors' `resnet18_in` on CIFAR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResNetConfig {
    pub depth: ResNetDepth,
    pub classes: usize,
    /// Input side length: 32 for CIFAR, 64 for Tiny-ImageNet.
    pub image_size: usize,
    /// Stride of the 3x3 stem convolution (1 in the authors' code, at every input size).
    pub stem_stride: usize,
    /// Channels of the stem and the first stage (64 in the paper; the stages have 1, 2,
    /// 4, 8 times this). Smaller widths give networks a CPU can train.
    pub width: usize,
    pub granularity: Granularity,
    /// Adds the "standard" ResNet stem activation, a mask `alpha0` after the stem's `bn1`
    /// (557,056 ReLUs on 32x32 instead of the authors' 491,520; REFERENCE §2).
    pub stem_relu: bool,
}

impl ResNetConfig {
    /// ResNet18 as in the SNL paper and the authors' `resnet18_in` (REFERENCE §2): base
    /// width 64, stem stride 1, 32x32 inputs, pixel masks, no stem activation.
    pub fn resnet18(classes: usize) -> Self {
        Self {
            depth: ResNetDepth::ResNet18,
            classes,
            image_size: 32,
            stem_stride: 1,
            width: 64,
            granularity: Granularity::Pixel,
            stem_relu: false,
        }
    }

    /// ResNet34 (He et al. 2016) with the same CIFAR stem and masks as [`Self::resnet18`].
    pub fn resnet34(classes: usize) -> Self {
        Self { depth: ResNetDepth::ResNet34, ..Self::resnet18(classes) }
    }

    pub fn validate(&self) -> std::result::Result<(), ConfigError> {
        for (name, value) in [
            ("classes", self.classes),
            ("image_size", self.image_size),
            ("stem_stride", self.stem_stride),
            ("width", self.width),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { name, value });
            }
        }
        Ok(())
    }

    pub fn arch_name(&self) -> &'static str {
        self.depth.name()
    }
}

/// `conv1 -> bn1 -> alpha1 -> conv2 -> bn2 -> (+ shortcut) -> alpha2`; the shortcut is
/// `1x1 conv (stride) + BN` (`shortcut.0`, `shortcut.1`) when the shape changes. Each
/// batch norm and the mask after it are one op in training, `bn2`, the sum and `alpha2`
/// included ([`conv_bn_mask`]); the sum is never stored.
#[derive(Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    alpha1: ReluMask,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    alpha2: ReluMask,
    shortcut: Option<(Conv2d, BatchNorm2d)>,
}

impl BasicBlock {
    /// Both masks gate the block's output side length.
    pub fn new(c: &BlockConfig, vb: VarBuilder) -> crate::Result<Self> {
        let BlockConfig { cin, cout, stride, granularity, .. } = *c;
        let size = c.size_out()?;
        let shortcut = if c.projects() {
            let sc = vb.pp("shortcut");
            Some((Conv2d::new(cin, cout, 1, stride, 0, sc.pp("0"))?, BatchNorm2d::new(cout, sc.pp("1"))?))
        } else {
            None
        };
        Ok(Self {
            conv1: Conv2d::new(cin, cout, 3, stride, 1, vb.pp("conv1"))?,
            bn1: BatchNorm2d::new(cout, vb.pp("bn1"))?,
            alpha1: ReluMask::new((cout, size, size), granularity, vb.pp("alpha1"))?,
            conv2: Conv2d::new(cout, cout, 3, 1, 1, vb.pp("conv2"))?,
            bn2: BatchNorm2d::new(cout, vb.pp("bn2"))?,
            alpha2: ReluMask::new((cout, size, size), granularity, vb.pp("alpha2"))?,
            shortcut,
        })
    }
}

impl ModuleT for BasicBlock {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let out = conv_bn_mask(&self.conv1, &self.bn1, &self.alpha1, x, None, train)?;
        let residual = match &self.shortcut {
            Some((conv, bn)) => conv_bn(conv, bn, x, train)?,
            None => x.clone(),
        };
        conv_bn_mask(&self.conv2, &self.bn2, &self.alpha2, &out, Some(&residual), train)
    }
}

impl Masked for BasicBlock {
    fn masks(&self) -> Vec<&ReluMask> {
        vec![&self.alpha1, &self.alpha2]
    }
}

/// ResNet for small images: 3x3 stem `conv1`/`bn1` (optional mask `alpha0`), four stages
/// `layer1..layer4` of BasicBlocks (widths w, 2w, 4w, 8w; strides 1, 2, 2, 2), global
/// average pooling and `linear`.
#[derive(Debug)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    alpha0: Option<ReluMask>,
    layers: Vec<Vec<BasicBlock>>,
    linear: Linear,
}

impl ResNet {
    pub fn new(config: &ResNetConfig, vb: VarBuilder) -> crate::Result<Self> {
        config.validate()?;
        let w = config.width;
        let g = config.granularity;
        let conv1 = Conv2d::new(3, w, 3, config.stem_stride, 1, vb.pp("conv1"))?;
        let bn1 = BatchNorm2d::new(w, vb.pp("bn1"))?;
        let mut size = conv1.output_size(config.image_size)?;
        let alpha0 =
            if config.stem_relu { Some(ReluMask::new((w, size, size), g, vb.pp("alpha0"))?) } else { None };
        let mut cin = w;
        let mut layers = Vec::with_capacity(4);
        for (stage, &blocks) in config.depth.blocks().iter().enumerate() {
            let cout = w << stage;
            let lvb = vb.pp(format!("layer{}", stage + 1));
            let mut layer = Vec::with_capacity(blocks);
            for b in 0..blocks {
                let stride = if b == 0 && stage > 0 { 2 } else { 1 };
                let block = BlockConfig { cin, cout, stride, size_in: size, granularity: g };
                size = block.size_out()?;
                layer.push(BasicBlock::new(&block, lvb.pp(b))?);
                cin = cout;
            }
            layers.push(layer);
        }
        let linear = Linear::new(cin, config.classes, vb.pp("linear"))?;
        Ok(Self { conv1, bn1, alpha0, layers, linear })
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut out = match &self.alpha0 {
            Some(alpha0) => conv_bn_mask(&self.conv1, &self.bn1, alpha0, x, None, train)?,
            None => conv_bn(&self.conv1, &self.bn1, x, train)?,
        };
        for block in self.layers.iter().flatten() {
            out = block.forward_t(&out, train)?;
        }
        self.linear.forward(&global_avg_pool(&out)?)
    }
}

impl Masked for ResNet {
    fn masks(&self) -> Vec<&ReluMask> {
        let mut masks: Vec<&ReluMask> = self.alpha0.iter().collect();
        masks.extend(self.layers.iter().flatten().flat_map(|b| b.masks()));
        masks
    }
}
