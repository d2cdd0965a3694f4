//! Pre-activation WideResNet-depth-k (Zagoruyko & Komodakis 2016, the authors'
//! `wide_resnet_22_8`), every ReLU a [`ReluMask`].

use candle::{Module, ModuleT, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use snl_core::{Granularity, Masked, ReluMask};

use crate::error::ConfigError;
use crate::layers::{BatchNorm2d, BlockConfig, Conv2d, Linear, bn_mask, conv_bn_mask, global_avg_pool};

/// A WideResNet's shape. Defaults are those of the SNL authors' WRN-22-8 on CIFAR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrnConfig {
    /// Total depth; `(depth - 4) / 6` blocks per group.
    pub depth: usize,
    /// Widen factor k: the groups have 16k, 32k, 64k channels.
    pub widen: usize,
    pub classes: usize,
    /// Input side length: 32 for CIFAR, 64 for Tiny-ImageNet.
    pub image_size: usize,
    /// Stride of the 3x3 stem convolution (1 in the authors' code).
    pub stem_stride: usize,
    pub granularity: Granularity,
    /// Adds a mask `alpha_final` after the final `bn1` (the standard WRN's last BN-ReLU;
    /// 1,392,640 ReLUs for WRN-22-8 on 32x32 instead of the authors' 1,359,872).
    pub final_relu: bool,
}

impl WrnConfig {
    /// WRN-`depth`-`widen` on 32x32 inputs, pixel masks, no final activation. Fails
    /// unless `(depth - 4) % 6 == 0` and `depth >= 10`.
    pub fn new(depth: usize, widen: usize, classes: usize) -> std::result::Result<Self, ConfigError> {
        let config = Self {
            depth,
            widen,
            classes,
            image_size: 32,
            stem_stride: 1,
            granularity: Granularity::Pixel,
            final_relu: false,
        };
        config.validate()?;
        Ok(config)
    }

    fn preset(depth: usize, widen: usize, classes: usize) -> Self {
        Self {
            depth,
            widen,
            classes,
            image_size: 32,
            stem_stride: 1,
            granularity: Granularity::Pixel,
            final_relu: false,
        }
    }

    /// WRN-22-8, the SNL paper's WideResNet (REFERENCE §2).
    pub fn wrn_22_8(classes: usize) -> Self {
        Self::preset(22, 8, classes)
    }

    /// WRN-16-8 (Zagoruyko & Komodakis 2016, Table 4).
    pub fn wrn_16_8(classes: usize) -> Self {
        Self::preset(16, 8, classes)
    }

    /// WRN-28-10 (Zagoruyko & Komodakis 2016, their best CIFAR network).
    pub fn wrn_28_10(classes: usize) -> Self {
        Self::preset(28, 10, classes)
    }

    pub fn blocks_per_group(&self) -> usize {
        (self.depth - 4) / 6
    }

    pub fn validate(&self) -> std::result::Result<(), ConfigError> {
        if self.depth < 10 || !(self.depth - 4).is_multiple_of(6) {
            return Err(ConfigError::WrnDepth(self.depth));
        }
        for (name, value) in [
            ("widen", self.widen),
            ("classes", self.classes),
            ("image_size", self.image_size),
            ("stem_stride", self.stem_stride),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { name, value });
            }
        }
        Ok(())
    }

    /// `wrn-D-K`.
    pub fn arch_name(&self) -> String {
        format!("wrn-{}-{}", self.depth, self.widen)
    }
}

/// `bn1 -> alpha1 -> conv1 (stride) -> bn2 -> alpha2 -> conv2`, plus the raw input when
/// the channels match, else `convShortcut` (1x1, stride) of the activated input.
#[derive(Debug)]
pub struct WideBlock {
    bn1: BatchNorm2d,
    alpha1: ReluMask,
    conv1: Conv2d,
    bn2: BatchNorm2d,
    alpha2: ReluMask,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
}

impl WideBlock {
    /// `alpha1` gates the block's input side length (pre-activation), `alpha2` its output's.
    pub fn new(c: &BlockConfig, vb: VarBuilder) -> crate::Result<Self> {
        let BlockConfig { cin, cout, stride, size_in, granularity } = *c;
        let size_out = c.size_out()?;
        let conv_shortcut = if c.projects() {
            Some(Conv2d::new(cin, cout, 1, stride, 0, vb.pp("convShortcut"))?)
        } else {
            None
        };
        Ok(Self {
            bn1: BatchNorm2d::new(cin, vb.pp("bn1"))?,
            alpha1: ReluMask::new((cin, size_in, size_in), granularity, vb.pp("alpha1"))?,
            conv1: Conv2d::new(cin, cout, 3, stride, 1, vb.pp("conv1"))?,
            bn2: BatchNorm2d::new(cout, vb.pp("bn2"))?,
            alpha2: ReluMask::new((cout, size_out, size_out), granularity, vb.pp("alpha2"))?,
            conv2: Conv2d::new(cout, cout, 3, 1, 1, vb.pp("conv2"))?,
            conv_shortcut,
        })
    }
}

impl ModuleT for WideBlock {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let o = bn_mask(&self.bn1, &self.alpha1, x, train)?;
        let out = conv_bn_mask(&self.conv1, &self.bn2, &self.alpha2, &o, None, train)?;
        let out = self.conv2.forward(&out)?;
        match &self.conv_shortcut {
            Some(conv) => out + conv.forward(&o)?,
            None => out + x,
        }
    }
}

impl Masked for WideBlock {
    fn masks(&self) -> Vec<&ReluMask> {
        vec![&self.alpha1, &self.alpha2]
    }
}

/// WideResNet: `conv1` (16 channels), groups `block1..block3` (`blockG.layer.I`) at 16k,
/// 32k, 64k channels (strides 1, 2, 2), final `bn1` (optional mask `alpha_final`), global
/// average pooling and `fc`.
#[derive(Debug)]
pub struct WideResNet {
    conv1: Conv2d,
    groups: Vec<Vec<WideBlock>>,
    bn1: BatchNorm2d,
    alpha_final: Option<ReluMask>,
    fc: Linear,
}

impl WideResNet {
    pub fn new(config: &WrnConfig, vb: VarBuilder) -> crate::Result<Self> {
        config.validate()?;
        let g = config.granularity;
        let channels = [16, 16 * config.widen, 32 * config.widen, 64 * config.widen];
        let conv1 = Conv2d::new(3, channels[0], 3, config.stem_stride, 1, vb.pp("conv1"))?;
        let mut size = conv1.output_size(config.image_size)?;
        let mut groups = Vec::with_capacity(3);
        for gi in 0..3 {
            let gvb = vb.pp(format!("block{}", gi + 1)).pp("layer");
            let mut group = Vec::with_capacity(config.blocks_per_group());
            for b in 0..config.blocks_per_group() {
                let (cin, stride) =
                    if b == 0 { (channels[gi], if gi == 0 { 1 } else { 2 }) } else { (channels[gi + 1], 1) };
                let block =
                    BlockConfig { cin, cout: channels[gi + 1], stride, size_in: size, granularity: g };
                size = block.size_out()?;
                group.push(WideBlock::new(&block, gvb.pp(b))?);
            }
            groups.push(group);
        }
        let bn1 = BatchNorm2d::new(channels[3], vb.pp("bn1"))?;
        let alpha_final = if config.final_relu {
            Some(ReluMask::new((channels[3], size, size), g, vb.pp("alpha_final"))?)
        } else {
            None
        };
        let fc = Linear::new(channels[3], config.classes, vb.pp("fc"))?;
        Ok(Self { conv1, groups, bn1, alpha_final, fc })
    }
}

impl ModuleT for WideResNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut out = self.conv1.forward(x)?;
        for block in self.groups.iter().flatten() {
            out = block.forward_t(&out, train)?;
        }
        out = match &self.alpha_final {
            Some(alpha) => bn_mask(&self.bn1, alpha, &out, train)?,
            None => self.bn1.forward_t(&out, train)?,
        };
        self.fc.forward(&global_avg_pool(&out)?)
    }
}

impl Masked for WideResNet {
    fn masks(&self) -> Vec<&ReluMask> {
        let mut masks: Vec<&ReluMask> = self.groups.iter().flatten().flat_map(|b| b.masks()).collect();
        masks.extend(self.alpha_final.iter());
        masks
    }
}
