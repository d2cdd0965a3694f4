//! One configuration type and one model type over both architectures.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;

use candle::{DType, Device, ModuleT, Result as CandleResult, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use snl_core::{Granularity, Masked, ReluMask};

use crate::error::{ConfigError, Result};
use crate::resnet::{ResNet, ResNetConfig};
use crate::wrn::{WideResNet, WrnConfig};

/// Either architecture, with its settings.
///
/// Arch names parse with [`ModelConfig::from_arch`]: `resnet18`, `resnet34`, `wrn-D-K`
/// (`wrn-22-8`, `wrn-16-8`, `wrn-28-10`, ...; `wide_resnet_D_K`, the authors' spelling, too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "lowercase")]
pub enum ModelConfig {
    ResNet(ResNetConfig),
    Wrn(WrnConfig),
}

/// The most values a model may hold (weights, masks, statistics): 2^30, 4 GiB of f32.
/// The paper's largest network, WRN-22-8, holds about 20 million.
pub const MAX_MODEL_VALUES: u128 = 1 << 30;

/// Metadata keys written by [`ModelConfig::to_metadata`].
pub mod keys {
    pub const ARCH: &str = "arch";
    pub const CLASSES: &str = "classes";
    pub const IMAGE_SIZE: &str = "image_size";
    pub const STEM_STRIDE: &str = "stem_stride";
    pub const WIDTH: &str = "width";
    pub const GRANULARITY: &str = "granularity";
    pub const EXTRA_ACTIVATION: &str = "extra_activation";
}

impl ModelConfig {
    /// The named architecture's preset for `classes` classes (32x32 inputs, pixel masks,
    /// no extra activation, full width).
    pub fn from_arch(arch: &str, classes: usize) -> Result<Self, ConfigError> {
        let name = arch.trim().to_ascii_lowercase();
        match name.as_str() {
            "resnet18" | "resnet-18" | "resnet18_in" => {
                return Ok(Self::ResNet(ResNetConfig::resnet18(classes)));
            }
            "resnet34" | "resnet-34" => return Ok(Self::ResNet(ResNetConfig::resnet34(classes))),
            _ => {}
        }
        let rest = name
            .strip_prefix("wrn-")
            .or_else(|| name.strip_prefix("wrn_"))
            .or_else(|| name.strip_prefix("wide_resnet_"))
            .or_else(|| name.strip_prefix("wide-resnet-"))
            .ok_or_else(|| ConfigError::UnknownArch(arch.to_string()))?;
        let mut parts = rest.split(['-', '_']);
        let (Some(d), Some(k), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ConfigError::UnknownArch(arch.to_string()));
        };
        let (Ok(depth), Ok(widen)) = (d.parse::<usize>(), k.parse::<usize>()) else {
            return Err(ConfigError::UnknownArch(arch.to_string()));
        };
        Ok(Self::Wrn(WrnConfig::new(depth, widen, classes)?))
    }

    /// How the authors' code initialises this family ([`crate::params::init_seeded`]).
    pub fn init_scheme(&self) -> crate::params::InitScheme {
        match self {
            Self::ResNet(_) => crate::params::InitScheme::ResNet,
            Self::Wrn(_) => crate::params::InitScheme::Wrn,
        }
    }

    /// `resnet18`, `resnet34` or `wrn-D-K`; [`ModelConfig::from_arch`] parses it back.
    pub fn arch_name(&self) -> String {
        match self {
            Self::ResNet(c) => c.arch_name().to_string(),
            Self::Wrn(c) => c.arch_name(),
        }
    }

    pub fn classes(&self) -> usize {
        match self {
            Self::ResNet(c) => c.classes,
            Self::Wrn(c) => c.classes,
        }
    }

    pub fn image_size(&self) -> usize {
        match self {
            Self::ResNet(c) => c.image_size,
            Self::Wrn(c) => c.image_size,
        }
    }

    pub fn granularity(&self) -> Granularity {
        match self {
            Self::ResNet(c) => c.granularity,
            Self::Wrn(c) => c.granularity,
        }
    }

    /// The "standard" extra activation: ResNet's stem ReLU or WRN's final BN-ReLU.
    pub fn extra_activation(&self) -> bool {
        match self {
            Self::ResNet(c) => c.stem_relu,
            Self::Wrn(c) => c.final_relu,
        }
    }

    pub fn with_image_size(mut self, size: usize) -> Self {
        match &mut self {
            Self::ResNet(c) => c.image_size = size,
            Self::Wrn(c) => c.image_size = size,
        }
        self
    }

    pub fn with_stem_stride(mut self, stride: usize) -> Self {
        match &mut self {
            Self::ResNet(c) => c.stem_stride = stride,
            Self::Wrn(c) => c.stem_stride = stride,
        }
        self
    }

    pub fn with_granularity(mut self, granularity: Granularity) -> Self {
        match &mut self {
            Self::ResNet(c) => c.granularity = granularity,
            Self::Wrn(c) => c.granularity = granularity,
        }
        self
    }

    pub fn with_extra_activation(mut self, on: bool) -> Self {
        match &mut self {
            Self::ResNet(c) => c.stem_relu = on,
            Self::Wrn(c) => c.final_relu = on,
        }
        self
    }

    /// ResNet base width (ignored by WRN, whose width is its widen factor).
    pub fn with_width(mut self, width: usize) -> Self {
        if let Self::ResNet(c) = &mut self {
            c.width = width;
        }
        self
    }

    /// Checks every dimension, and that the model would hold at most [`MAX_MODEL_VALUES`]
    /// (a bad width, image size or class count is an error here, not an aborted allocation),
    /// counting each mask at its activation's size: channel masks are small, but a forward
    /// pass and an export hold one image's activations (an image size of 2^32 wrapped the
    /// ReLU counts, 10^6 aborted on an 8 TB allocation).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Self::ResNet(c) => c.validate()?,
            Self::Wrn(c) => c.validate()?,
        }
        let values = self.size_bound(true);
        if values > MAX_MODEL_VALUES {
            let width = match self {
                Self::ResNet(c) => format!(", width {}", c.width),
                Self::Wrn(_) => String::new(),
            };
            return Err(ConfigError::TooLarge {
                arch: self.arch_name(),
                classes: self.classes(),
                image_size: self.image_size(),
                width,
                values,
                limit: MAX_MODEL_VALUES,
            });
        }
        Ok(())
    }

    /// A lower bound of the number of values in the model's `state_dict`, found without
    /// building it: the second 3x3 convolution and the masks of every block, and the head.
    pub fn min_values(&self) -> u128 {
        self.size_bound(self.granularity() == Granularity::Pixel)
    }

    /// [`Self::min_values`], with each mask counted at its activation's size (`pixel`) or
    /// its channels'.
    fn size_bound(&self, pixel: bool) -> u128 {
        let side = |s: usize, stride: usize| crate::layers::conv_output_size(s, 3, stride, 1).unwrap_or(1);
        // Per block at `channels` wide on `size`-sided maps: `masks` masks, one 3x3 conv.
        let block = |channels: usize, size: usize, masks: u128| -> u128 {
            let c = channels as u128;
            let mask = if pixel { c.saturating_mul((size as u128).saturating_pow(2)) } else { c };
            mask.saturating_mul(masks).saturating_add(c.saturating_mul(c).saturating_mul(9))
        };
        let (stages, head): (Vec<(usize, usize, usize)>, usize) = match self {
            Self::ResNet(c) => {
                let mut size = side(c.image_size, c.stem_stride);
                let mut stages = Vec::new();
                for (s, blocks) in c.depth.blocks().into_iter().enumerate() {
                    if s > 0 {
                        size = side(size, 2);
                    }
                    stages.push((blocks, c.width.saturating_mul(1 << s), size));
                }
                (stages, c.width.saturating_mul(8))
            }
            Self::Wrn(c) => {
                let mut size = side(c.image_size, c.stem_stride);
                let mut stages = Vec::new();
                for g in 0..3 {
                    if g > 0 {
                        size = side(size, 2);
                    }
                    stages.push((c.depth.saturating_sub(4) / 6, c.widen.saturating_mul(16 << g), size));
                }
                (stages, c.widen.saturating_mul(64))
            }
        };
        let body = stages.iter().fold(0u128, |sum, &(blocks, channels, size)| {
            sum.saturating_add(block(channels, size, 2).saturating_mul(blocks as u128))
        });
        body.saturating_add((head as u128).saturating_mul(self.classes() as u128))
    }

    /// Multiply-accumulates of one image's forward pass in the convolutions and the head
    /// (BatchNorm, masks and sums are elementwise and not counted); FLOPs are twice this.
    /// Derived from the shape alone, as `min_values` is; a test pins it to PyTorch's count.
    pub fn forward_macs(&self) -> u128 {
        let side = |s: u128, k: usize, stride: usize, pad: usize| {
            crate::layers::conv_output_size(s as usize, k, stride, pad).unwrap_or(1) as u128
        };
        // A k x k convolution from `cin` to `cout` channels onto `out`-sided maps.
        let conv = |out: u128, cin: usize, cout: usize, k: u128| {
            out.saturating_mul(out).saturating_mul(cin as u128 * cout as u128).saturating_mul(k * k)
        };
        let stage_stride = |stage: usize| if stage == 0 { 1 } else { 2 };
        // Input side, stem stride and channels, per stage (blocks, channels, stride), head inputs.
        let (image, stem_stride, stem, stages, head) = match self {
            Self::ResNet(c) => {
                let blocks = c.depth.blocks().into_iter().enumerate();
                let stages = blocks.map(|(s, n)| (n, c.width.saturating_mul(1 << s), stage_stride(s)));
                (c.image_size, c.stem_stride, c.width, stages.collect::<Vec<_>>(), c.width.saturating_mul(8))
            }
            Self::Wrn(c) => {
                let stages =
                    (0..3).map(|g| (c.blocks_per_group(), c.widen.saturating_mul(16 << g), stage_stride(g)));
                (c.image_size, c.stem_stride, 16, stages.collect(), c.widen.saturating_mul(64))
            }
        };
        let mut size = side(image as u128, 3, stem_stride, 1);
        let mut macs = conv(size, 3, stem, 3);
        let mut channels = stem;
        for (blocks, out_channels, stride) in stages {
            for b in 0..blocks {
                let stride = if b == 0 { stride } else { 1 };
                size = side(size, 3, stride, 1);
                macs = macs.saturating_add(conv(size, channels, out_channels, 3)).saturating_add(conv(
                    size,
                    out_channels,
                    out_channels,
                    3,
                ));
                // The projection shortcut (ResNet's `shortcut.0`, WRN's `convShortcut`).
                if stride != 1 || channels != out_channels {
                    macs = macs.saturating_add(conv(size, channels, out_channels, 1));
                }
                channels = out_channels;
            }
        }
        macs.saturating_add(head as u128 * self.classes() as u128)
    }

    /// Builds the model, its tensors named as the PyTorch reference under `vb`. A
    /// VarMap-backed `vb` gives a trainable model whose variables (BN running statistics
    /// included) live in the VarMap; a tensor-backed one gives a frozen model.
    pub fn build(&self, vb: VarBuilder) -> Result<Model> {
        self.validate()?;
        Ok(match self {
            Self::ResNet(c) => Model::ResNet(ResNet::new(c, vb)?),
            Self::Wrn(c) => Model::Wrn(WideResNet::new(c, vb)?),
        })
    }

    /// A fresh trainable model (PyTorch's default initialisation) in a new `VarMap`.
    pub fn build_trainable(&self, device: &Device) -> Result<(Model, VarMap)> {
        let vars = VarMap::new();
        let model = self.build(VarBuilder::from_varmap(&vars, DType::F32, device))?;
        Ok((model, vars))
    }

    /// A frozen copy (a teacher, an evaluation model) of the weights in `vars`: every tensor
    /// is copied and detached, so the copy records no graph, its masks are frozen, and later
    /// updates of `vars` do not reach it.
    pub fn build_frozen(&self, vars: &VarMap, device: &Device) -> Result<Model> {
        let tensors = crate::checkpoint::detached_copy(vars)?;
        self.build_from_tensors(tensors, device)
    }

    /// A frozen model over `tensors` (e.g. from [`crate::checkpoint::read`]); a missing
    /// name or wrong shape is an error. Use [`crate::checkpoint::load_into`] to also reject
    /// unexpected names.
    pub fn build_from_tensors(&self, tensors: HashMap<String, Tensor>, device: &Device) -> Result<Model> {
        self.build(VarBuilder::from_tensors(tensors, DType::F32, device))
    }

    /// The shape of every tensor in the model's `state_dict`, by name: what a checkpoint
    /// must hold to load ([`crate::checkpoint::compare`]). The constructors, the one home of
    /// names and shapes, run over a [`VarBuilder`] that records each request and answers
    /// with a zero-stride view: no weight is allocated or initialised.
    pub fn tensor_shapes(&self) -> Result<HashMap<String, Vec<usize>>> {
        let shapes = Mutex::new(HashMap::new());
        let vb = VarBuilder::from_backend(Box::new(ShapeRecorder(&shapes)), DType::F32, Device::Cpu);
        self.build(vb)?;
        Ok(shapes.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// The configuration as a flat string map (for safetensors `__metadata__`).
    pub fn to_metadata(&self) -> HashMap<String, String> {
        let (stride, width) = match self {
            Self::ResNet(c) => (c.stem_stride, Some(c.width)),
            Self::Wrn(c) => (c.stem_stride, None),
        };
        let mut m = HashMap::from([
            (keys::ARCH.to_string(), self.arch_name()),
            (keys::CLASSES.to_string(), self.classes().to_string()),
            (keys::IMAGE_SIZE.to_string(), self.image_size().to_string()),
            (keys::STEM_STRIDE.to_string(), stride.to_string()),
            (keys::GRANULARITY.to_string(), self.granularity().as_str().to_string()),
            (keys::EXTRA_ACTIVATION.to_string(), self.extra_activation().to_string()),
        ]);
        if let Some(width) = width {
            m.insert(keys::WIDTH.to_string(), width.to_string());
        }
        m
    }

    /// Reads back [`ModelConfig::to_metadata`]; `arch` and `classes` are required, the rest
    /// default to the preset's values.
    pub fn from_metadata(meta: &HashMap<String, String>) -> Result<Self, ConfigError> {
        fn parse<T: FromStr>(meta: &HashMap<String, String>, key: &str) -> Result<Option<T>, ConfigError> {
            meta.get(key)
                .map(|v| {
                    v.trim()
                        .parse::<T>()
                        .map_err(|_| ConfigError::Metadata(format!("{key} = `{v}` is invalid")))
                })
                .transpose()
        }
        let arch = meta.get(keys::ARCH).ok_or_else(|| ConfigError::Metadata("no `arch` key".into()))?;
        let classes = parse::<usize>(meta, keys::CLASSES)?
            .ok_or_else(|| ConfigError::Metadata("no `classes` key".into()))?;
        let mut config = Self::from_arch(arch, classes)?;
        if let Some(v) = parse(meta, keys::IMAGE_SIZE)? {
            config = config.with_image_size(v);
        }
        if let Some(v) = parse(meta, keys::STEM_STRIDE)? {
            config = config.with_stem_stride(v);
        }
        if let Some(v) = parse(meta, keys::WIDTH)? {
            config = config.with_width(v);
        }
        if let Some(v) = parse::<Granularity>(meta, keys::GRANULARITY)? {
            config = config.with_granularity(v);
        }
        if let Some(v) = parse(meta, keys::EXTRA_ACTIVATION)? {
            config = config.with_extra_activation(v);
        }
        config.validate()?;
        Ok(config)
    }
}

/// A [`VarBuilder`] backend that notes each requested name and shape (for
/// [`ModelConfig::tensor_shapes`]) and hands back a broadcast zero, which allocates nothing.
struct ShapeRecorder<'a>(&'a Mutex<HashMap<String, Vec<usize>>>);

impl SimpleBackend for ShapeRecorder<'_> {
    fn get(&self, shape: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> CandleResult<Tensor> {
        let mut shapes = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        shapes.insert(name.to_string(), shape.dims().to_vec());
        Tensor::zeros((), dtype, dev)?.broadcast_as(shape)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> CandleResult<Tensor> {
        Err(candle::Error::CannotFindTensor { path: name.to_string() })
    }

    fn contains_tensor(&self, _: &str) -> bool {
        false
    }
}

impl From<ResNetConfig> for ModelConfig {
    fn from(c: ResNetConfig) -> Self {
        Self::ResNet(c)
    }
}

impl From<WrnConfig> for ModelConfig {
    fn from(c: WrnConfig) -> Self {
        Self::Wrn(c)
    }
}

/// A built network of either architecture. `forward_t(x, train)`: `train` selects batch
/// statistics (and running-statistics updates) in every BatchNorm.
#[derive(Debug)]
pub enum Model {
    ResNet(ResNet),
    Wrn(WideResNet),
}

impl ModuleT for Model {
    fn forward_t(&self, x: &Tensor, train: bool) -> CandleResult<Tensor> {
        match self {
            Self::ResNet(m) => m.forward_t(x, train),
            Self::Wrn(m) => m.forward_t(x, train),
        }
    }
}

impl Masked for Model {
    fn masks(&self) -> Vec<&ReluMask> {
        match self {
            Self::ResNet(m) => m.masks(),
            Self::Wrn(m) => m.masks(),
        }
    }
}
