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

/// Re-initialises every variable from a seeded generator (candle's CPU generator cannot be
/// seeded): convolution and linear weights, and linear biases, uniform in `±1/sqrt(fan_in)`
/// (PyTorch's defaults); BN weight 1, bias 0, running mean 0, variance 1, counter 0; masks 1.
pub fn init_seeded(vars: &VarMap, seed: u64) -> Result<()> {
    let all = sorted_vars(vars, |_| true);
    let shapes: std::collections::HashMap<&str, Vec<usize>> =
        all.iter().map(|(k, v)| (k.as_str(), v.dims().to_vec())).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (name, var) in &all {
        let (prefix, leaf) = name.rsplit_once('.').unwrap_or(("", name.as_str()));
        let sibling =
            |leaf: &str| if prefix.is_empty() { leaf.to_string() } else { format!("{prefix}.{leaf}") };
        let is_bn = shapes.contains_key(sibling("running_mean").as_str());
        let constant = match leaf {
            "alphas" | "running_var" => Some(1.0),
            "running_mean" | "num_batches_tracked" => Some(0.0),
            "weight" if is_bn => Some(1.0),
            "bias" if is_bn => Some(0.0),
            _ => None,
        };
        let value = match constant {
            Some(c) => var.ones_like()?.affine(c, 0.0)?,
            None => {
                let fan_in = match (leaf, var.dims()) {
                    ("weight", [_, rest @ ..]) if !rest.is_empty() => rest.iter().product::<usize>(),
                    ("bias", _) => shapes
                        .get(sibling("weight").as_str())
                        .and_then(|w| (w.len() >= 2).then(|| w[1..].iter().product::<usize>()))
                        .ok_or_else(|| {
                            Error::Candle(candle::Error::Msg(format!("init: no weight for {name}")))
                        })?,
                    _ => {
                        return Err(Error::Candle(candle::Error::Msg(format!(
                            "init: unknown variable {name}"
                        ))));
                    }
                };
                let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
                let values: Vec<f32> =
                    (0..var.elem_count()).map(|_| rng.random_range(-bound..bound)).collect();
                Tensor::from_vec(values, var.shape(), var.device())?.to_dtype(var.dtype())?
            }
        };
        var.set(&value)?;
    }
    Ok(())
}
