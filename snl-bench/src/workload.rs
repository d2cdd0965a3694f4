//! The three workloads of `torch_snl.py bench`, timed the same way (one warm-up run, then
//! the median of `runs`).

use std::time::Instant;

use candle::{DType, Device, Result, Tensor};
use candle_nn::VarMap;
use serde::Serialize;
use snl_core::loss;
use snl_core::optim::{Adam, AdamConfig, Sgd, SgdConfig};

use crate::resnet::{Impl, ResNet18};

/// `torch_snl.py`'s workload names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// Student forward + backward, teacher forward, CE + KD + 1e-5 lasso, Adam.
    SnlStep,
    /// Cross-entropy, backward, SGD with momentum 0.9 and weight decay 5e-4.
    TrainStep,
    /// Teacher forward in eval mode, no graph.
    Inference,
}

impl Workload {
    pub const ALL: [Workload; 3] = [Workload::SnlStep, Workload::TrainStep, Workload::Inference];
}

/// One JSON line of `throughput`, the keys of `torch_snl.py bench` (plus `tuned_alloc`).
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    #[serde(rename = "impl")]
    pub imp: String,
    pub workload: Workload,
    pub arch: String,
    pub width: usize,
    pub batch: usize,
    pub threads: usize,
    pub median_s: f64,
    pub images_per_s: f64,
    pub peak_rss_mib: u64,
}

/// A student, its teacher, a random batch and both optimizers, as `torch_snl.py bench`
/// sets them up.
pub struct Workloads {
    pub student: ResNet18,
    pub teacher: ResNet18,
    pub varmap: VarMap,
    x: Tensor,
    y: Tensor,
    adam: Adam,
    sgd: Sgd,
}

impl Workloads {
    pub fn new(width: usize, batch: usize, imp: Impl) -> Result<Self> {
        let device = Device::Cpu;
        let (classes, image) = (10, 32);
        let (student, teacher, varmap) = ResNet18::student_and_teacher(classes, width, image, imp, &device)?;
        let x = Tensor::randn(0f32, 1.0, (batch, 3, image, image), &device)?;
        let y = Tensor::rand(0f32, classes as f32, batch, &device)?.floor()?.to_dtype(DType::U32)?;
        let adam = Adam::new(varmap.all_vars(), AdamConfig::with_lr(1e-3));
        let sgd = Sgd::new(
            varmap.all_vars(),
            SgdConfig { lr: 0.1, momentum: 0.9, weight_decay: 5e-4, nesterov: false },
        );
        Ok(Self { student, teacher, varmap, x, y, adam, sgd })
    }

    pub fn batch(&self) -> usize {
        self.x.dims()[0]
    }

    pub fn snl_step(&mut self) -> Result<()> {
        let out = self.student.forward_t(&self.x, true)?;
        let out_t = self.teacher.forward_t(&self.x, false)?;
        let lasso = loss::lasso(&self.student)?;
        let total = ((loss::cross_entropy(&out, &self.y)? + loss::distillation(&out, &out_t, 4.0)?)?
            + lasso.affine(1e-5, 0.0)?)?;
        let grads = total.backward()?;
        self.adam.step(&grads)
    }

    pub fn train_step(&mut self) -> Result<()> {
        let out = self.student.forward_t(&self.x, true)?;
        let grads = loss::cross_entropy(&out, &self.y)?.backward()?;
        self.sgd.step(&grads)
    }

    pub fn inference(&mut self) -> Result<()> {
        // Read one value back so the whole forward pass is certainly done.
        self.teacher.forward_t(&self.x, false)?.sum_all()?.to_scalar::<f32>().map(drop)
    }

    pub fn run(&mut self, w: Workload) -> Result<()> {
        match w {
            Workload::SnlStep => self.snl_step(),
            Workload::TrainStep => self.train_step(),
            Workload::Inference => self.inference(),
        }
    }

    /// One warm-up run, then the median wall time of `runs` runs, in seconds.
    pub fn median_seconds(&mut self, w: Workload, runs: usize) -> Result<f64> {
        self.run(w)?;
        let mut times = Vec::with_capacity(runs.max(1));
        for _ in 0..runs.max(1) {
            let t = Instant::now();
            self.run(w)?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    }
}
