//! A network as one ONNX model (opset 13, batch dimension `N`, input `input` `[N, 3, H, W]`,
//! output `logits` `[N, classes]`), the form a private-inference engine reads.
//!
//! Eval-mode BatchNorm is folded into the convolution before it (WRN's pre-activation
//! BatchNorms follow a sum, not a convolution: they stay a `Mul` and an `Add`). Each mask
//! site is written as [`ReluForm`] says. The graph follows the module structure of
//! snl-models (REFERENCE §2 names); every mask site must be used exactly once, so a walk
//! that drifted from the models fails instead of exporting a different network.

pub mod proto;

use std::collections::HashMap;

use anyhow::{Context as _, Result, bail, ensure};
use candle::{DType, Tensor};
use snl_core::Granularity;
use snl_models::{ModelConfig, ResNetConfig, WrnConfig};

use proto::{Attribute, attribute_type, data_type};

/// The opset written: Gather, ScatterND, Flatten and Gemm as in ONNX 1.8 (IR version 7).
pub const OPSET: i64 = 13;
const IR_VERSION: i64 = 7;
/// PyTorch's BatchNorm2d eps, as snl-models.
const BN_EPS: f32 = 1e-5;

/// How a mask site becomes operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReluForm {
    /// Only kept ReLUs are computed: nothing for a fully linear site, a plain `Relu` for a
    /// fully kept one, else `Gather` of the kept positions (pixel masks) or channels (channel
    /// masks), `Relu`, and `ScatterND` back into the activation.
    Compact,
    /// `a * relu(x) + (1 - a) * x` with `a` a constant: every position pays for a ReLU.
    Masked,
}

/// One binarized mask site.
#[derive(Debug, Clone)]
pub struct Site {
    /// `(C, H, W)` of the gated activation.
    pub shape: (usize, usize, usize),
    pub granularity: Granularity,
    /// Per mask element (`C*H*W` for pixel masks, `C` for channel masks): kept or not.
    pub on: Vec<bool>,
}

impl Site {
    /// ReLUs this site keeps (a kept channel keeps `H*W`).
    pub fn kept_relus(&self) -> usize {
        let per = match self.granularity {
            Granularity::Pixel => 1,
            Granularity::Channel => self.shape.1 * self.shape.2,
        };
        self.on.iter().filter(|&&o| o).count() * per
    }
}

/// protobuf's 2 GiB message limit, less room for the graph's nodes.
const MAX_ONNX_BYTES: usize = (2 << 30) - (16 << 20);

/// The ONNX model of `config` with weights `tensors` (PyTorch names) and masks `sites` (by
/// site name); `metadata` goes to `metadata_props`.
pub fn build(
    config: &ModelConfig,
    tensors: &HashMap<String, Tensor>,
    sites: HashMap<String, Site>,
    form: ReluForm,
    metadata: &[(String, String)],
) -> Result<proto::Model> {
    let mut b = Builder { tensors, sites, form, nodes: vec![], inits: vec![] };
    let x = "input".to_string();
    let features = match config {
        ModelConfig::ResNet(c) => b.resnet(c, x)?,
        ModelConfig::Wrn(c) => b.wrn(c, x)?,
    };
    let head = match config {
        ModelConfig::ResNet(_) => "linear",
        ModelConfig::Wrn(_) => "fc",
    };
    b.head(features, head)?;
    if let Some(site) = b.sites.keys().next() {
        bail!("mask site {site} is not on the exported graph (the walk does not match the model)");
    }
    // Every weight sits inside the protobuf, which no reader takes past 2 GiB.
    let weight_bytes: usize = b.inits.iter().map(|t| t.raw_data.len()).sum();
    if weight_bytes >= MAX_ONNX_BYTES {
        bail!(
            "the model's weights take {weight_bytes} bytes, more than an ONNX file holds ({MAX_ONNX_BYTES}, \
             protobuf's limit); export it as safetensors instead"
        );
    }
    let size = config.image_size() as i64;
    let input = value_info("input", vec![dim_n(), dim(3), dim(size), dim(size)]);
    let output = value_info("logits", vec![dim_n(), dim(config.classes() as i64)]);
    let graph = proto::Graph {
        node: b.nodes,
        name: config.arch_name(),
        initializer: b.inits,
        input: vec![input],
        output: vec![output],
    };
    let mut props: Vec<proto::StringStringEntry> =
        metadata.iter().map(|(k, v)| proto::StringStringEntry { key: k.clone(), value: v.clone() }).collect();
    props.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(proto::Model {
        ir_version: IR_VERSION,
        producer_name: "snl".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        opset_import: vec![proto::OperatorSetId { domain: String::new(), version: OPSET }],
        metadata_props: props,
    })
}

struct Builder<'a> {
    tensors: &'a HashMap<String, Tensor>,
    sites: HashMap<String, Site>,
    form: ReluForm,
    nodes: Vec<proto::Node>,
    inits: Vec<proto::TensorProto>,
}

impl Builder<'_> {
    /// ResNet's features: stem, the four stages of BasicBlocks (`conv1 -> bn1 -> alpha1 ->
    /// conv2 -> bn2 -> + shortcut -> alpha2`).
    fn resnet(&mut self, c: &ResNetConfig, x: String) -> Result<String> {
        let mut x = self.conv(&x, "conv1", Some("bn1"), c.stem_stride)?;
        if c.stem_relu {
            x = self.act(x, "alpha0")?;
        }
        for (stage, &blocks) in c.depth.blocks().iter().enumerate() {
            for block in 0..blocks {
                let p = format!("layer{}.{block}", stage + 1);
                let stride = if stage > 0 && block == 0 { 2 } else { 1 };
                let o = self.conv(&x, &format!("{p}.conv1"), Some(&format!("{p}.bn1")), stride)?;
                let o = self.act(o, &format!("{p}.alpha1"))?;
                let o = self.conv(&o, &format!("{p}.conv2"), Some(&format!("{p}.bn2")), 1)?;
                let residual = if self.tensors.contains_key(&format!("{p}.shortcut.0.weight")) {
                    self.conv(&x, &format!("{p}.shortcut.0"), Some(&format!("{p}.shortcut.1")), stride)?
                } else {
                    x
                };
                let sum = self.op("Add", &format!("{p}.add"), &[&o, &residual], vec![]);
                x = self.act(sum, &format!("{p}.alpha2"))?;
            }
        }
        Ok(x)
    }

    /// WRN's features: `conv1`, three groups of pre-activation blocks (`bn1 -> alpha1 ->
    /// conv1 -> bn2 -> alpha2 -> conv2`, plus the input or `convShortcut` of the activated
    /// input), the final `bn1` (and `alpha_final`).
    fn wrn(&mut self, c: &WrnConfig, x: String) -> Result<String> {
        let mut x = self.conv(&x, "conv1", None, c.stem_stride)?;
        for group in 0..3 {
            for block in 0..c.blocks_per_group() {
                let p = format!("block{}.layer.{block}", group + 1);
                let stride = if group > 0 && block == 0 { 2 } else { 1 };
                let o = self.batch_norm(&x, &format!("{p}.bn1"))?;
                let o = self.act(o, &format!("{p}.alpha1"))?;
                let out = self.conv(&o, &format!("{p}.conv1"), Some(&format!("{p}.bn2")), stride)?;
                let out = self.act(out, &format!("{p}.alpha2"))?;
                let out = self.conv(&out, &format!("{p}.conv2"), None, 1)?;
                let residual = if self.tensors.contains_key(&format!("{p}.convShortcut.weight")) {
                    self.conv(&o, &format!("{p}.convShortcut"), None, stride)?
                } else {
                    x
                };
                x = self.op("Add", &format!("{p}.add"), &[&out, &residual], vec![]);
            }
        }
        x = self.batch_norm(&x, "bn1")?;
        if c.final_relu {
            x = self.act(x, "alpha_final")?;
        }
        Ok(x)
    }

    /// Global average pooling and the linear layer `prefix`, writing `logits`.
    fn head(&mut self, x: String, prefix: &str) -> Result<()> {
        let pooled = self.op("GlobalAveragePool", "pool", &[&x], vec![]);
        let flat = self.op("Flatten", "flatten", &[&pooled], vec![int("axis", 1)]);
        let (wd, w) = self.get(&format!("{prefix}.weight"))?;
        let (bd, bias) = self.get(&format!("{prefix}.bias"))?;
        let w = self.init_f32(&format!("{prefix}.weight"), &wd, w);
        let bias = self.init_f32(&format!("{prefix}.bias"), &bd, bias);
        self.op("Gemm", "logits", &[&flat, &w, &bias], vec![int("transB", 1)]);
        Ok(())
    }

    /// Convolution `prefix` (square kernel, padding `k / 2`, no bias) with the eval-mode
    /// BatchNorm `bn` folded in: weight scaled per output channel, the shift as its bias.
    fn conv(&mut self, x: &str, prefix: &str, bn: Option<&str>, stride: usize) -> Result<String> {
        let (dims, mut w) = self.get(&format!("{prefix}.weight"))?;
        ensure!(
            dims.len() == 4 && dims[2] == dims[3],
            "{prefix}.weight has shape {dims:?}, not (O, I, k, k)"
        );
        let k = dims[2] as i64;
        let mut inputs = vec![x.to_string()];
        let bias = match bn {
            Some(bn) => {
                let (scale, shift) = self.bn_affine(bn, dims[0])?;
                let per = w.len() / dims[0];
                for (o, chunk) in w.chunks_mut(per).enumerate() {
                    chunk.iter_mut().for_each(|v| *v *= scale[o]);
                }
                Some(shift)
            }
            None => None,
        };
        inputs.push(self.init_f32(&format!("{prefix}.weight"), &dims, w));
        if let Some(shift) = bias {
            inputs.push(self.init_f32(&format!("{prefix}.bias"), &[dims[0]], shift));
        }
        let (s, p) = (stride as i64, k / 2);
        let attrs =
            vec![ints("kernel_shape", &[k, k]), ints("strides", &[s, s]), ints("pads", &[p, p, p, p])];
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(self.op("Conv", prefix, &refs, attrs))
    }

    /// An eval-mode BatchNorm on its own: `x * scale + shift` per channel.
    fn batch_norm(&mut self, x: &str, prefix: &str) -> Result<String> {
        let channels = self.get(&format!("{prefix}.weight"))?.0[0];
        let (scale, shift) = self.bn_affine(prefix, channels)?;
        let scale = self.init_f32(&format!("{prefix}.scale"), &[1, channels, 1, 1], scale);
        let shift = self.init_f32(&format!("{prefix}.shift"), &[1, channels, 1, 1], shift);
        let scaled = self.op("Mul", &format!("{prefix}.mul"), &[x, &scale], vec![]);
        Ok(self.op("Add", prefix, &[&scaled, &shift], vec![]))
    }

    /// BatchNorm `prefix` in eval mode as `(scale, shift)`, computed as snl-models does.
    fn bn_affine(&self, prefix: &str, channels: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let [gamma, beta, mean, var] =
            ["weight", "bias", "running_mean", "running_var"].map(|n| self.get(&format!("{prefix}.{n}")));
        let (gamma, beta, mean, var) = (gamma?.1, beta?.1, mean?.1, var?.1);
        ensure!(
            [&gamma, &beta, &mean, &var].iter().all(|v| v.len() == channels),
            "{prefix}: BatchNorm tensors do not have {channels} channels"
        );
        // A variance the square root cannot take (at or below -eps, NaN) would fold to NaN or inf
        // weights that ONNX runtimes run without a word.
        if let Some((c, v)) = var.iter().enumerate().find(|(_, v)| !v.is_finite() || **v + BN_EPS <= 0.0) {
            bail!("{prefix}.running_var[{c}] is {v}: not a variance (edited or broken model)");
        }
        let scale: Vec<f32> = gamma.iter().zip(&var).map(|(g, v)| g / (v + BN_EPS).sqrt()).collect();
        let shift = beta.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
        Ok((scale, shift))
    }

    /// Mask site `site` applied to `x`, as `self.form` says.
    fn act(&mut self, x: String, site: &str) -> Result<String> {
        let s = self.sites.remove(site).with_context(|| format!("the model has no mask site {site}"))?;
        let (c, h, w) = s.shape;
        let relu = format!("{site}.relu");
        let pixel = s.granularity == Granularity::Pixel;
        if self.form == ReluForm::Masked {
            let dims = if pixel { [1, c, h, w] } else { [1, c, 1, 1] };
            let a: Vec<f32> = s.on.iter().map(|&o| if o { 1.0 } else { 0.0 }).collect();
            let linear: Vec<f32> = a.iter().map(|a| 1.0 - a).collect();
            let a = self.init_f32(&format!("{site}.mask"), &dims, a);
            let linear = self.init_f32(&format!("{site}.one_minus_mask"), &dims, linear);
            let r = self.op("Relu", &relu, &[&x], vec![]);
            let kept = self.op("Mul", &format!("{site}.relu_part"), &[&r, &a], vec![]);
            let passed = self.op("Mul", &format!("{site}.linear_part"), &[&x, &linear], vec![]);
            return Ok(self.op("Add", site, &[&kept, &passed], vec![]));
        }
        let kept: Vec<i64> = s.on.iter().enumerate().filter(|(_, o)| **o).map(|(i, _)| i as i64).collect();
        if kept.is_empty() {
            return Ok(x);
        }
        if kept.len() == s.on.len() {
            return Ok(self.op("Relu", &relu, &[&x], vec![]));
        }
        // The gated axis (flat positions or channels) first, so that one Gather and one
        // ScatterND along axis 0 serve any batch size.
        let units_first = if pixel {
            let flat = self.op("Flatten", &format!("{site}.flatten"), &[&x], vec![int("axis", 1)]);
            self.op("Transpose", &format!("{site}.units_first"), &[&flat], vec![ints("perm", &[1, 0])])
        } else {
            self.op("Transpose", &format!("{site}.units_first"), &[&x], vec![ints("perm", &[1, 0, 2, 3])])
        };
        let n = kept.len();
        let gather_idx = self.init_i64(&format!("{site}.kept_positions"), &[n], kept.clone());
        let scatter_idx = self.init_i64(&format!("{site}.kept_positions_nd"), &[n, 1], kept);
        let gathered =
            self.op("Gather", &format!("{site}.gather"), &[&units_first, &gather_idx], vec![int("axis", 0)]);
        let r = self.op("Relu", &relu, &[&gathered], vec![]);
        let scattered =
            self.op("ScatterND", &format!("{site}.scatter"), &[&units_first, &scatter_idx, &r], vec![]);
        Ok(if pixel {
            let back = self.op(
                "Transpose",
                &format!("{site}.batch_first"),
                &[&scattered],
                vec![ints("perm", &[1, 0])],
            );
            let shape = self.init_i64(&format!("{site}.shape"), &[4], vec![-1, c as i64, h as i64, w as i64]);
            self.op("Reshape", site, &[&back, &shape], vec![])
        } else {
            self.op("Transpose", site, &[&scattered], vec![ints("perm", &[1, 0, 2, 3])])
        })
    }

    /// Shape and f32 values of the checkpoint tensor `name`.
    fn get(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let t = self.tensors.get(name).with_context(|| format!("the checkpoint has no tensor {name}"))?;
        Ok((t.dims().to_vec(), t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?))
    }

    fn init_f32(&mut self, name: &str, dims: &[usize], values: Vec<f32>) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.init(name, dims, data_type::FLOAT, raw)
    }

    fn init_i64(&mut self, name: &str, dims: &[usize], values: Vec<i64>) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.init(name, dims, data_type::INT64, raw)
    }

    fn init(&mut self, name: &str, dims: &[usize], data_type: i32, raw_data: Vec<u8>) -> String {
        let dims = dims.iter().map(|&d| d as i64).collect();
        self.inits.push(proto::TensorProto { dims, data_type, name: name.into(), raw_data });
        name.into()
    }

    /// Node `name` whose one output is also called `name`.
    fn op(&mut self, op_type: &str, name: &str, inputs: &[&str], attribute: Vec<Attribute>) -> String {
        self.nodes.push(proto::Node {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![name.into()],
            name: name.into(),
            op_type: op_type.into(),
            attribute,
        });
        name.into()
    }
}

fn int(name: &str, i: i64) -> Attribute {
    Attribute { name: name.into(), i, ints: vec![], r#type: attribute_type::INT }
}

fn ints(name: &str, ints: &[i64]) -> Attribute {
    Attribute { name: name.into(), i: 0, ints: ints.to_vec(), r#type: attribute_type::INTS }
}

fn dim(size: i64) -> proto::Dimension {
    proto::Dimension { value: Some(proto::Dim::Value(size)) }
}

/// The batch dimension, left open.
fn dim_n() -> proto::Dimension {
    proto::Dimension { value: Some(proto::Dim::Param("N".into())) }
}

fn value_info(name: &str, dim: Vec<proto::Dimension>) -> proto::ValueInfo {
    let shape = Some(proto::TensorShape { dim });
    let tensor_type = Some(proto::TensorType { elem_type: data_type::FLOAT, shape });
    proto::ValueInfo { name: name.into(), r#type: Some(proto::TypeProto { tensor_type }) }
}
