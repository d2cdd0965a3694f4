//! Which variables of a model's `VarMap` are weights, masks or BatchNorm buffers; counts;
//! and a seeded (reproducible) initialisation.

use candle::{Tensor, Var};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// BatchNorm running statistics and batch counter: stored, never trained.
pub fn is_buffer(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var") || name.ends_with("num_batches_tracked")
}

/// A ReLU mask parameter (`<site>.alphas`).
pub fn is_mask(name: &str) -> bool {
    name == "alphas" || name.ends_with(".alphas")
}

fn sorted_vars(vars: &VarMap, keep: impl Fn(&str) -> bool) -> Vec<(String, Var)> {
    let data = vars.data().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut out: Vec<(String, Var)> =
        data.iter().filter(|(k, _)| keep(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Weights and masks (everything but BN buffers), sorted by name: the variables Algorithm
/// 1's optimizers train.
pub fn trainable_vars(vars: &VarMap) -> Vec<Var> {
    sorted_vars(vars, |k| !is_buffer(k)).into_iter().map(|(_, v)| v).collect()
}

/// Weights only (no masks, no buffers), sorted by name: for training a baseline with the
/// masks held at 1.
pub fn weight_vars(vars: &VarMap) -> Vec<Var> {
    sorted_vars(vars, |k| !is_buffer(k) && !is_mask(k)).into_iter().map(|(_, v)| v).collect()
}

/// Trainable weights, masks and BN buffers excluded (11,173,962 for ResNet18, 10 classes).
pub fn weight_count(vars: &VarMap) -> usize {
    sorted_vars(vars, |k| !is_buffer(k) && !is_mask(k)).iter().map(|(_, v)| v.elem_count()).sum()
}

/// How a family of networks initialises its convolution and linear layers in the authors'
/// code (REFERENCE §2, "Initialisation").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitScheme {
    /// `archs_unstructured/cifar_resnet.py` `_weights_init`: `kaiming_normal_` (fan_in, gain
    /// sqrt 2) on every convolution and linear weight; linear biases keep PyTorch's default
    /// U(±1/sqrt(fan_in)).
    ResNet,
    /// The authors' WideResNet: convolutions `kaiming_normal_(mode='fan_out',
    /// nonlinearity='relu')`; the linear weight PyTorch's default U(±1/sqrt(fan_in)), its bias 0.
    Wrn,
}

/// Re-initialises every variable from a seeded generator (candle's CPU generator cannot be
/// seeded) as the authors' models do: convolution and linear weights by `scheme`; BN weight 1,
/// bias 0, running mean 0, variance 1, counter 0; masks 1. Normal draws are our own
/// Box-Muller over ChaCha8, so the values do not depend on `rand_distr`'s algorithms.
pub fn init_seeded(vars: &VarMap, scheme: InitScheme, seed: u64) -> Result<()> {
    let all = sorted_vars(vars, |_| true);
    let shapes: std::collections::HashMap<&str, Vec<usize>> =
        all.iter().map(|(k, v)| (k.as_str(), v.dims().to_vec())).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (name, var) in &all {
        let (prefix, leaf) = name.rsplit_once('.').unwrap_or(("", name.as_str()));
        let sibling =
            |leaf: &str| if prefix.is_empty() { leaf.to_string() } else { format!("{prefix}.{leaf}") };
        let is_bn = shapes.contains_key(sibling("running_mean").as_str());
        let unknown = || Error::Candle(candle::Error::Msg(format!("init: unknown variable {name}")));
        let rule = match leaf {
            "alphas" | "running_var" => Draw::Constant(1.0),
            "running_mean" | "num_batches_tracked" => Draw::Constant(0.0),
            "weight" if is_bn => Draw::Constant(1.0),
            "bias" if is_bn => Draw::Constant(0.0),
            "weight" => match (scheme, var.dims()) {
                // A convolution: (out, in, kh, kw).
                (InitScheme::ResNet, [_, rest @ ..]) if rest.len() == 3 => {
                    Draw::Normal((2.0 / rest.iter().product::<usize>() as f64).sqrt())
                }
                (InitScheme::Wrn, [out, _, kh, kw]) => Draw::Normal((2.0 / (out * kh * kw) as f64).sqrt()),
                // A linear layer: (out, in).
                (InitScheme::ResNet, [_, fan_in]) => Draw::Normal((2.0 / *fan_in as f64).sqrt()),
                (InitScheme::Wrn, [_, fan_in]) => Draw::Uniform(1.0 / (*fan_in as f64).sqrt()),
                _ => return Err(unknown()),
            },
            "bias" => {
                let fan_in = shapes
                    .get(sibling("weight").as_str())
                    .and_then(|w| (w.len() >= 2).then(|| w[1..].iter().product::<usize>()))
                    .ok_or_else(|| {
                        Error::Candle(candle::Error::Msg(format!("init: no weight for {name}")))
                    })?;
                match scheme {
                    InitScheme::ResNet => Draw::Uniform(1.0 / (fan_in.max(1) as f64).sqrt()),
                    InitScheme::Wrn => Draw::Constant(0.0),
                }
            }
            _ => return Err(unknown()),
        };
        let value = match rule {
            Draw::Constant(c) => var.ones_like()?.affine(c, 0.0)?,
            Draw::Normal(std) => {
                let values: Vec<f32> =
                    (0..var.elem_count()).map(|_| (std * normal(&mut rng)) as f32).collect();
                Tensor::from_vec(values, var.shape(), var.device())?.to_dtype(var.dtype())?
            }
            Draw::Uniform(bound) => {
                let bound = bound as f32;
                let values: Vec<f32> =
                    (0..var.elem_count()).map(|_| rng.random_range(-bound..bound)).collect();
                Tensor::from_vec(values, var.shape(), var.device())?.to_dtype(var.dtype())?
            }
        };
        var.set(&value)?;
    }
    Ok(())
}

/// What one variable is filled with.
enum Draw {
    Constant(f64),
    /// Zero mean, this standard deviation.
    Normal(f64),
    /// Uniform in ±bound.
    Uniform(f64),
}

/// One standard normal draw (Box-Muller; the second value of the pair is not kept, so each
/// draw takes exactly two uniforms and the stream stays simple to reproduce).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // (0, 1]: ln never sees 0.
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
