//! CIFAR-style ResNet with BasicBlocks (the authors' `resnet18_in`), every ReLU a [`ReluMask`].

use candle::{Module, ModuleT, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use snl_core::{Granularity, Masked, ReluMask};

use crate::error::ConfigError;
use crate::layers::{BatchNorm2d, Conv2d, Linear, conv_bn, global_avg_pool};

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

    /// Side lengths after the stem and each stage.
    fn sizes(&self) -> [usize; 5] {
        let stem = conv_out(self.image_size, 3, self.stem_stride, 1);
        let mut sizes = [stem; 5];
        for stage in 1..4 {
            sizes[stage + 1] = conv_out(sizes[stage], 3, 2, 1);
        }
        sizes
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

/// Side length after a convolution (PyTorch's formula, no dilation).
pub(crate) fn conv_out(input: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    (input + 2 * padding).saturating_sub(kernel) / stride + 1
}

/// `conv1 -> bn1 -> alpha1 -> conv2 -> bn2 -> (+ shortcut) -> alpha2`; the shortcut is
/// `1x1 conv (stride) + BN` (`shortcut.0`, `shortcut.1`) when the shape changes. The sum
/// and `alpha2` are one op ([`ReluMask::forward_residual`]) that keeps no sum for backward.
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
    /// A block from `cin` to `cout` channels whose output side length is `size`.
    pub fn new(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        stride: usize,
        size: usize,
        granularity: Granularity,
    ) -> Result<Self> {
        let shortcut = if stride != 1 || cin != cout {
            let sc = vb.pp("shortcut");
            Some((Conv2d::new(sc.pp("0"), cin, cout, 1, stride, 0)?, BatchNorm2d::new(sc.pp("1"), cout)?))
        } else {
            None
        };
        Ok(Self {
            conv1: Conv2d::new(vb.pp("conv1"), cin, cout, 3, stride, 1)?,
            bn1: BatchNorm2d::new(vb.pp("bn1"), cout)?,
            alpha1: ReluMask::new(vb.pp("alpha1"), (cout, size, size), granularity)?,
            conv2: Conv2d::new(vb.pp("conv2"), cout, cout, 3, 1, 1)?,
            bn2: BatchNorm2d::new(vb.pp("bn2"), cout)?,
            alpha2: ReluMask::new(vb.pp("alpha2"), (cout, size, size), granularity)?,
            shortcut,
        })
    }
}

impl ModuleT for BasicBlock {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let out = self.alpha1.forward(&conv_bn(&self.conv1, &self.bn1, x, train)?)?;
        let out = conv_bn(&self.conv2, &self.bn2, &out, train)?;
        let residual = match &self.shortcut {
            Some((conv, bn)) => conv_bn(conv, bn, x, train)?,
            None => x.clone(),
        };
        self.alpha2.forward_residual(&out, &residual)
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
        let sizes = config.sizes();
        let w = config.width;
        let g = config.granularity;
        let conv1 = Conv2d::new(vb.pp("conv1"), 3, w, 3, config.stem_stride, 1)?;
        let bn1 = BatchNorm2d::new(vb.pp("bn1"), w)?;
        let alpha0 = if config.stem_relu {
            Some(ReluMask::new(vb.pp("alpha0"), (w, sizes[0], sizes[0]), g)?)
        } else {
            None
        };
        let mut cin = w;
        let mut layers = Vec::with_capacity(4);
        for (stage, &blocks) in config.depth.blocks().iter().enumerate() {
            let cout = w << stage;
            let stride = if stage == 0 { 1 } else { 2 };
            let size = sizes[stage + 1];
            let lvb = vb.pp(format!("layer{}", stage + 1));
            let mut layer = Vec::with_capacity(blocks);
            for b in 0..blocks {
                let (bin, bstride) = if b == 0 { (cin, stride) } else { (cout, 1) };
                layer.push(BasicBlock::new(lvb.pp(b), bin, cout, bstride, size, g)?);
            }
            layers.push(layer);
            cin = cout;
        }
        let linear = Linear::new(vb.pp("linear"), cin, config.classes)?;
        Ok(Self { conv1, bn1, alpha0, layers, linear })
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut out = conv_bn(&self.conv1, &self.bn1, x, train)?;
        if let Some(alpha0) = &self.alpha0 {
            out = alpha0.forward(&out)?;
        }
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
