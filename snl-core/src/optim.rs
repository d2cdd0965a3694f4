//! SGD with momentum and Adam with PyTorch's exact update rules, learning-rate schedules,
//! and optimizer state that can be saved and restored so a run resumes exactly. Both
//! implement candle-nn's [`Optimizer`] (candle-nn's own SGD has no momentum or weight decay,
//! and its AdamW's state cannot be saved: REFERENCE §7).
//!
//! Optimizers take their variables as a `Vec<Var>` and key their state by position in it,
//! so a resumed optimizer must get the variables in the order they had when the state was
//! saved: a fixed order such as sorted by name, never `VarMap::all_vars()` (hash order,
//! which differs between processes). Restoring checks each tensor's shape against its
//! variable, so most mix-ups are an error; variables of equal shape cannot be told apart.
//!
//! Variables without a gradient in a step (BatchNorm running statistics, frozen masks)
//! are skipped entirely, as PyTorch skips parameters whose `.grad` is `None`.
//!
//! Every update reads the variable through `detach()`: an expression on a `Var` records a
//! graph, and a momentum or moment buffer built from one would keep the previous step's
//! buffers (and through them every earlier step's) alive, so memory would grow each step.

use std::collections::HashMap;

use candle::backprop::GradStore;
use candle::{DType, Tensor, Var};
pub use candle_nn::Optimizer;
use serde::{Deserialize, Serialize};

use crate::{ConfigError, Error};

/// Optimizer state as named tensors (`<slot>.<index>`, the index a variable's position in
/// the optimizer's `vars`), ready for a safetensors file.
pub type OptimizerState = HashMap<String, Tensor>;

/// `torch.optim.SGD` settings (dampening 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

impl SgdConfig {
    /// The one check of SGD settings: a positive, finite learning rate (an error naming it
    /// `lr_name`), a non-negative, finite weight decay (`wd_name`), momentum in [0, 1), and
    /// Nesterov only with momentum. Callers name the values as their users know them.
    pub fn check(&self, lr_name: &'static str, wd_name: &'static str) -> Result<(), ConfigError> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(ConfigError::NotPositive { name: lr_name, value: self.lr });
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(ConfigError::Negative { name: wd_name, value: self.weight_decay });
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(ConfigError::Momentum(self.momentum));
        }
        if self.nesterov && self.momentum == 0.0 {
            return Err(ConfigError::NesterovWithoutMomentum);
        }
        Ok(())
    }
}

/// `torch.optim.SGD`: `g = grad + wd * p; buf = momentum * buf + g` (`buf = g` on the first
/// step); `g = g + momentum * buf` with Nesterov, else `g = buf`; `p -= lr * g`.
#[derive(Debug)]
pub struct Sgd {
    vars: Vec<Var>,
    config: SgdConfig,
    momentum: Vec<Option<Tensor>>,
}

impl Sgd {
    /// SGD over `vars`, in a fixed order (e.g. sorted by name) if its state is to be resumed.
    pub fn new(vars: Vec<Var>, config: SgdConfig) -> Self {
        let momentum = vec![None; vars.len()];
        Self { vars, config, momentum }
    }

    /// Momentum buffers as `momentum_buffer.<i>` (absent for variables never stepped).
    pub fn state(&self) -> OptimizerState {
        self.momentum
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.as_ref().map(|b| (format!("momentum_buffer.{i}"), b.clone())))
            .collect()
    }

    /// Restores [`Sgd::state`] saved with the same `vars` in the same order; an error for an
    /// unknown key or a buffer whose shape is not its variable's.
    pub fn load_state(&mut self, state: &OptimizerState) -> Result<(), Error> {
        check_slots(state, &["momentum_buffer"], self.vars.len())?;
        for (i, var) in self.vars.iter().enumerate() {
            self.momentum[i] = restore(state, "momentum_buffer", i, var)?;
        }
        Ok(())
    }
}

/// [`Optimizer::new`] checks the configuration ([`SgdConfig::check`]); [`Sgd::new`] does not.
impl Optimizer for Sgd {
    type Config = SgdConfig;

    fn new(vars: Vec<Var>, config: SgdConfig) -> candle::Result<Self> {
        config.check("learning rate", "weight decay").map_err(candle::Error::wrap)?;
        Ok(Sgd::new(vars, config))
    }

    fn step(&mut self, grads: &GradStore) -> candle::Result<()> {
        let c = self.config;
        for (var, buf) in self.vars.iter().zip(self.momentum.iter_mut()) {
            let Some(grad) = grads.get(var) else { continue };
            let (grad, value) = (grad.detach(), var.as_tensor().detach());
            let mut g = if c.weight_decay != 0.0 {
                (&grad + value.affine(c.weight_decay, 0.0)?)?
            } else {
                grad.clone()
            };
            if c.momentum != 0.0 {
                let next = match buf.take() {
                    None => g.clone(),
                    Some(b) => (b.affine(c.momentum, 0.0)? + &g)?,
                };
                g = if c.nesterov { (g + next.affine(c.momentum, 0.0)?)? } else { next.clone() };
                *buf = Some(next);
            }
            var.set(&(value - g.affine(c.lr, 0.0)?)?)?;
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.config.lr = lr;
    }
}

/// `torch.optim.Adam` settings (no AMSGrad; weight decay as an L2 term in the gradient).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamConfig {
    /// PyTorch's defaults at learning rate `lr`.
    pub fn with_lr(lr: f64) -> Self {
        Self { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// `torch.optim.Adam` with a step count per variable:
/// `m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
///  p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
#[derive(Debug)]
pub struct Adam {
    vars: Vec<Var>,
    config: AdamConfig,
    slots: Vec<Option<AdamSlot>>,
}

#[derive(Debug, Clone)]
struct AdamSlot {
    step: u64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

impl Adam {
    /// Adam over `vars`, in a fixed order (e.g. sorted by name) if its state is to be resumed.
    pub fn new(vars: Vec<Var>, config: AdamConfig) -> Self {
        let slots = vec![None; vars.len()];
        Self { vars, config, slots }
    }

    /// `exp_avg.<i>`, `exp_avg_sq.<i>` and `step.<i>` (I64 scalar) per variable stepped.
    pub fn state(&self) -> candle::Result<OptimizerState> {
        let mut state = OptimizerState::new();
        for (i, s) in self.slots.iter().enumerate() {
            let Some(s) = s else { continue };
            state.insert(format!("exp_avg.{i}"), s.exp_avg.clone());
            state.insert(format!("exp_avg_sq.{i}"), s.exp_avg_sq.clone());
            let step = Tensor::new(s.step as i64, s.exp_avg.device())?;
            state.insert(format!("step.{i}"), step);
        }
        Ok(state)
    }

    /// Restores [`Adam::state`] saved with the same `vars` in the same order; an error for an
    /// unknown key, an incomplete slot, or a moment whose shape is not its variable's.
    pub fn load_state(&mut self, state: &OptimizerState) -> Result<(), Error> {
        check_slots(state, &["exp_avg", "exp_avg_sq", "step"], self.vars.len())?;
        for (i, var) in self.vars.iter().enumerate() {
            let exp_avg = restore(state, "exp_avg", i, var)?;
            let exp_avg_sq = restore(state, "exp_avg_sq", i, var)?;
            let step = state.get(&format!("step.{i}"));
            self.slots[i] = match (exp_avg, exp_avg_sq, step) {
                (None, None, None) => None,
                (Some(exp_avg), Some(exp_avg_sq), Some(step)) => {
                    let step = step.to_dtype(DType::I64)?.to_scalar::<i64>()?;
                    let step = u64::try_from(step)
                        .map_err(|_| Error::OptimizerState(format!("step.{i} is negative")))?;
                    Some(AdamSlot { step, exp_avg, exp_avg_sq })
                }
                _ => return Err(Error::OptimizerState(format!("variable {i} has an incomplete Adam state"))),
            };
        }
        Ok(())
    }
}

impl Optimizer for Adam {
    type Config = AdamConfig;

    fn new(vars: Vec<Var>, config: AdamConfig) -> candle::Result<Self> {
        Ok(Adam::new(vars, config))
    }

    fn step(&mut self, grads: &GradStore) -> candle::Result<()> {
        let c = self.config;
        for (var, slot) in self.vars.iter().zip(self.slots.iter_mut()) {
            let Some(grad) = grads.get(var) else { continue };
            let (grad, value) = (grad.detach(), var.as_tensor().detach());
            let g = if c.weight_decay != 0.0 {
                (&grad + value.affine(c.weight_decay, 0.0)?)?
            } else {
                grad.clone()
            };
            let s = match slot.take() {
                None => AdamSlot {
                    step: 1,
                    exp_avg: g.affine(1.0 - c.beta1, 0.0)?,
                    exp_avg_sq: g.sqr()?.affine(1.0 - c.beta2, 0.0)?,
                },
                Some(s) => AdamSlot {
                    step: s.step + 1,
                    exp_avg: (s.exp_avg.affine(c.beta1, 0.0)? + g.affine(1.0 - c.beta1, 0.0)?)?,
                    exp_avg_sq: (s.exp_avg_sq.affine(c.beta2, 0.0)?
                        + g.sqr()?.affine(1.0 - c.beta2, 0.0)?)?,
                },
            };
            let t = s.step as i32;
            let bias1 = 1.0 - c.beta1.powi(t);
            let bias2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
            let denom = s.exp_avg_sq.sqrt()?.affine(1.0 / bias2_sqrt, c.eps)?;
            let update = s.exp_avg.div(&denom)?.affine(c.lr / bias1, 0.0)?;
            var.set(&(value - update)?)?;
            *slot = Some(s);
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.config.lr = lr;
    }
}

/// Every key must be `<slot>.<i>` with a known slot and `i` below `vars`.
fn check_slots(state: &OptimizerState, slots: &[&str], vars: usize) -> Result<(), Error> {
    for key in state.keys() {
        let known = key
            .rsplit_once('.')
            .is_some_and(|(slot, i)| slots.contains(&slot) && i.parse::<usize>().is_ok_and(|i| i < vars));
        if !known {
            return Err(Error::OptimizerState(format!(
                "unexpected entry `{key}` for an optimizer over {vars} variables"
            )));
        }
    }
    Ok(())
}

fn restore(state: &OptimizerState, slot: &str, i: usize, var: &Var) -> Result<Option<Tensor>, Error> {
    let key = format!("{slot}.{i}");
    let Some(t) = state.get(&key) else { return Ok(None) };
    if t.dims() != var.dims() {
        return Err(Error::OptimizerState(format!(
            "`{key}` has shape {:?}, its variable {:?}",
            t.dims(),
            var.dims()
        )));
    }
    Ok(Some(t.to_device(var.device())?.to_dtype(var.dtype())?))
}

/// A learning rate per epoch, as PyTorch's schedulers stepped once per epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrSchedule {
    /// The base rate throughout.
    Constant,
    /// `CosineAnnealingLR(T_max = epochs, eta_min = min_lr)`.
    Cosine { epochs: usize, min_lr: f64 },
    /// `MultiStepLR(milestones, gamma)`.
    MultiStep { milestones: Vec<usize>, gamma: f64 },
}

impl LrSchedule {
    /// The learning rate of epoch `epoch` (from 0) for base rate `base`.
    pub fn lr(&self, base: f64, epoch: usize) -> f64 {
        match self {
            LrSchedule::Constant => base,
            LrSchedule::Cosine { epochs, min_lr } => {
                let progress = epoch as f64 / (*epochs).max(1) as f64;
                min_lr + (base - min_lr) * (1.0 + (std::f64::consts::PI * progress).cos()) / 2.0
            }
            LrSchedule::MultiStep { milestones, gamma } => {
                let passed = milestones.iter().filter(|&&m| m <= epoch).count();
                base * gamma.powi(passed as i32)
            }
        }
    }
}
