//! Linearize your own candle model with snl-core alone.
//!
//! A small CNN whose ReLUs are [`ReluMask`]s learns a synthetic 4-class task, is copied into
//! a frozen teacher, and is linearized to 25% of its ReLUs with Algorithm 1.
//!
//! ```text
//! cargo run --release -p snl-core --example tiny_cnn
//! ```

use candle::{DType, Device, Module, ModuleT, Result, Tensor, Var};
use candle_nn::{Conv2dConfig, Linear, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use snl_core::optim::{Optimizer, Sgd, SgdConfig};
use snl_core::{Budget, EpochReport, Linearized, Masked, Observer, ReluMask, SnlConfig};

pub const CLASSES: usize = 4;
const SIDE: usize = 8;

/// conv(3->8) -> mask -> conv(8->16, stride 2) -> mask -> global average -> linear.
pub struct TinyCnn {
    conv1: candle_nn::Conv2d,
    mask1: ReluMask,
    conv2: candle_nn::Conv2d,
    mask2: ReluMask,
    head: Linear,
}

impl TinyCnn {
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let same = Conv2dConfig { padding: 1, ..Default::default() };
        let down = Conv2dConfig { padding: 1, stride: 2, ..Default::default() };
        Ok(Self {
            conv1: candle_nn::conv2d(3, 8, 3, same, vb.pp("conv1"))?,
            mask1: ReluMask::new((8, SIDE, SIDE), snl_core::Granularity::Pixel, vb.pp("mask1"))?,
            conv2: candle_nn::conv2d(8, 16, 3, down, vb.pp("conv2"))?,
            mask2: ReluMask::new((16, SIDE / 2, SIDE / 2), snl_core::Granularity::Pixel, vb.pp("mask2"))?,
            head: candle_nn::linear(16, CLASSES, vb.pp("head"))?,
        })
    }
}

impl ModuleT for TinyCnn {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        let x = self.mask1.forward(&self.conv1.forward(x)?)?;
        let x = self.mask2.forward(&self.conv2.forward(&x)?)?;
        self.head.forward(&x.mean((2, 3))?)
    }
}

impl Masked for TinyCnn {
    fn masks(&self) -> Vec<&ReluMask> {
        vec![&self.mask1, &self.mask2]
    }
}

/// `batches` batches of `size` images: each class is a fixed random template plus noise.
pub fn synthetic_batches(batches: usize, size: usize, seed: u64) -> Result<Vec<(Tensor, Tensor)>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pixels = 3 * SIDE * SIDE;
    let mut templates = ChaCha8Rng::seed_from_u64(1234);
    let templates: Vec<f32> = (0..CLASSES * pixels).map(|_| templates.random_range(-1.0..1.0)).collect();
    (0..batches)
        .map(|_| {
            let labels: Vec<u32> = (0..size).map(|_| rng.random_range(0..CLASSES as u32)).collect();
            let images: Vec<f32> = labels
                .iter()
                .flat_map(|&c| templates[c as usize * pixels..][..pixels].to_vec())
                .map(|v| v + rng.random_range(-1.5..1.5f32))
                .collect();
            let x = Tensor::from_vec(images, (size, 3, SIDE, SIDE), &Device::Cpu)?;
            Ok((x, Tensor::new(labels, &Device::Cpu)?))
        })
        .collect()
}

/// The map's variables sorted by name. Optimizer state is matched to variables by position,
/// so a run that saves it and resumes needs a fixed order; `VarMap::all_vars()` is in hash
/// order, which differs between processes.
pub fn named_vars(vars: &VarMap) -> Vec<(String, Var)> {
    let mut named: Vec<_> = vars.data().lock().unwrap().clone().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// [`named_vars`] without the names: what the optimizers and [`snl_core::linearize`] take.
pub fn sorted_vars(vars: &VarMap) -> Vec<Var> {
    named_vars(vars).into_iter().map(|(_, v)| v).collect()
}

/// Draws every weight uniform in `±1/sqrt(fan_in)` (PyTorch's default) and zeroes every
/// bias, from `seed`, so each run gives the same model: candle's own CPU initialisation
/// cannot be seeded. The masks keep their initial 1s.
pub fn seed_weights(vars: &VarMap, seed: u64) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (name, var) in named_vars(vars) {
        let dims = var.dims().to_vec();
        let value = if name.ends_with(".weight") {
            let bound = 1.0 / (dims[1..].iter().product::<usize>() as f32).sqrt();
            let data: Vec<f32> = (0..var.elem_count()).map(|_| rng.random_range(-bound..bound)).collect();
            Tensor::from_vec(data, dims, &Device::Cpu)?
        } else if name.ends_with(".bias") {
            var.zeros_like()?
        } else {
            continue;
        };
        var.set(&value)?;
    }
    Ok(())
}

/// Top-1 accuracy of `model` in eval mode.
pub fn accuracy(model: &impl ModuleT, batches: &[(Tensor, Tensor)]) -> Result<f64> {
    let (mut hits, mut seen) = (0, 0);
    for (x, y) in batches {
        hits += snl_core::loss::correct(&model.forward_t(x, false)?, y)?;
        seen += y.dim(0)?;
    }
    Ok(hits as f64 / seen as f64)
}

/// Reports held-out accuracy after every epoch, and keeps the reports.
pub struct Recorder<'a> {
    pub held_out: &'a [(Tensor, Tensor)],
    pub reports: Vec<EpochReport>,
}

impl Observer<TinyCnn> for Recorder<'_> {
    fn evaluate(&mut self, model: &TinyCnn) -> Result<Option<f64>> {
        accuracy(model, self.held_out).map(Some)
    }
    fn on_epoch(&mut self, report: &EpochReport) {
        self.reports.push(report.clone());
    }
}

pub struct Outcome {
    pub baseline_accuracy: f64,
    pub linearized: Linearized,
    pub final_accuracy: f64,
    pub relu_total: usize,
    pub reports: Vec<EpochReport>,
}

/// Trains the CNN, then linearizes it to `budget` with a fast search schedule.
pub fn run(budget: Budget) -> snl_core::Result<Outcome> {
    let train = synthetic_batches(16, 32, 1)?;
    let held_out = synthetic_batches(8, 32, 2)?;

    let vars = VarMap::new();
    let student = TinyCnn::new(VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu))?;
    seed_weights(&vars, 0)?;
    let config = SgdConfig { lr: 0.05, momentum: 0.9, weight_decay: 5e-4, nesterov: false };
    let mut sgd = Sgd::new(sorted_vars(&vars), config);
    for _ in 0..4 {
        for (x, y) in &train {
            let loss = snl_core::loss::cross_entropy(&student.forward_t(x, true)?, y)?;
            sgd.step(&loss.backward()?)?;
        }
    }
    let baseline_accuracy = accuracy(&student, &held_out)?;

    // The teacher: a copy of the weights as plain tensors, so it records no graph (a copy:
    // the optimizers update the student's variables in place).
    let frozen = vars
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?.detach())))
        .collect::<Result<_>>()?;
    let teacher = TinyCnn::new(VarBuilder::from_tensors(frozen, DType::F32, &Device::Cpu))?;
    let teacher = |x: &Tensor| teacher.forward_t(x, false);

    // The paper's schedule needs hundreds of epochs; a toy problem can afford a strong lasso.
    let mut snl = SnlConfig::paper(budget);
    snl.lasso = 5e-3;
    snl.search_lr = 2e-2;
    snl.max_search_epochs = 200;
    snl.finetune_epochs = 5;
    snl.finetune.lr = 1e-2;

    let mut recorder = Recorder { held_out: &held_out, reports: Vec::new() };
    let mut batches = train;
    let linearized =
        snl_core::linearize(&student, sorted_vars(&vars), &teacher, &mut batches, snl, &mut recorder)?;
    Ok(Outcome {
        baseline_accuracy,
        final_accuracy: accuracy(&student, &held_out)?,
        relu_total: snl_core::relu_total(&student),
        reports: recorder.reports,
        linearized,
    })
}

#[allow(dead_code)]
fn main() -> snl_core::Result<()> {
    let out = run(Budget::Fraction(0.25))?;
    let l = &out.linearized;
    println!("all {} ReLUs: held-out accuracy {:.1}%", out.relu_total, 100.0 * out.baseline_accuracy);
    println!(
        "mask search: {} epochs to {} ReLUs (budget {}), lambda {:.2e}",
        l.search_epochs, l.relu_count, l.plan.budget, l.lambda
    );
    println!(
        "after {} finetuning epochs: held-out accuracy {:.1}%",
        l.finetune_epochs,
        100.0 * out.final_accuracy
    );
    Ok(())
}
