//! The three workloads of `torch_ref.py bench`, timed the same way (one warm-up run, then
//! the median of `runs`), on snl-models' product models.

use std::time::Instant;

use candle::{DType, Device, ModuleT, Result, Tensor};
use serde::Serialize;
use snl_core::loss;
use snl_core::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use snl_models::{Model, ModelConfig, params};

/// `torch_ref.py`'s workload names.
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

    /// `snl_step`, `train_step`, `inference`.
    pub fn name(self) -> &'static str {
        match self {
            Workload::SnlStep => "snl_step",
            Workload::TrainStep => "train_step",
            Workload::Inference => "inference",
        }
    }
}

/// The flags `throughput`, `vs_torch` and `torch_ref.py bench` share.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchFlags {
    /// `resnet18`, `resnet34` or `wrn` (WideResNet-depth-k, 22-8 by default), as torch_ref.py;
    /// any other snl-models arch name (wrn-16-8, ...) for snl alone.
    #[arg(long, default_value = "resnet18")]
    pub arch: String,
    /// ResNet base width (ignored by wrn).
    #[arg(long, default_value_t = 64)]
    pub width: usize,
    /// WRN depth.
    #[arg(long, default_value_t = 22)]
    pub depth: usize,
    /// WRN widen factor.
    #[arg(long, default_value_t = 8)]
    pub k: usize,
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Rayon (and so candle and gemm) threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Timed runs per workload, after one warm-up run; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// `cpu`, `cuda` or `cuda:N` (`cuda` needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Opens the device `spec` names: `cpu`, `cuda` or `cuda:N`.
pub fn device(spec: &str) -> anyhow::Result<Device> {
    let ordinal = match spec.split_once(':') {
        None if spec == "cpu" => return Ok(Device::Cpu),
        None if spec == "cuda" => 0,
        Some(("cuda", n)) => n
            .parse::<usize>()
            .map_err(|_| anyhow::anyhow!("--device {spec}: `{n}` is not a device number"))?,
        _ => anyhow::bail!("--device {spec}: expected cpu, cuda or cuda:N"),
    };
    if !cfg!(feature = "cuda") {
        anyhow::bail!("--device {spec}: built without CUDA; rebuild with `--features cuda`");
    }
    Device::new_cuda(ordinal).map_err(|e| anyhow::anyhow!("--device {spec}: {e}"))
}

/// The architecture flags of `torch_ref.py bench`: `--arch resnet18|resnet34 --width W` or
/// `--arch wrn --depth D --k K` (WRN-22-8 by default). Any other name snl-models knows
/// (`wrn-16-8`, ...) is accepted too, for snl alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arch {
    pub name: String,
    pub width: usize,
    pub depth: usize,
    pub k: usize,
}

impl Arch {
    pub fn resnet18(width: usize) -> Self {
        Self { name: "resnet18".into(), width, depth: 22, k: 8 }
    }

    pub fn wrn(depth: usize, k: usize) -> Self {
        Self { name: "wrn".into(), width: 64, depth, k }
    }

    /// The snl-models configuration for `classes` classes (32x32 inputs, pixel masks).
    pub fn config(&self, classes: usize) -> anyhow::Result<ModelConfig> {
        let name = match self.name.as_str() {
            "wrn" => format!("wrn-{}-{}", self.depth, self.k),
            other => other.to_string(),
        };
        let config = ModelConfig::from_arch(&name, classes)?.with_width(self.width);
        config.validate()?;
        Ok(config)
    }
}

/// One JSON line of `throughput`, the keys of `torch_ref.py bench`.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    #[serde(rename = "impl")]
    pub imp: String,
    pub workload: Workload,
    pub arch: String,
    pub width: usize,
    pub batch: usize,
    pub threads: usize,
    /// `cpu` or `cuda:N`, as `--device` gave it.
    pub device: String,
    pub median_s: f64,
    pub images_per_s: f64,
    /// Convolution and head FLOPs done per second ([`crate::flops_per_image`]).
    pub gflop_per_s: f64,
    pub peak_rss_mib: u64,
}

/// A student, its teacher, a random batch and both optimizers, as `torch_ref.py bench`
/// sets them up (teacher = frozen copy of the student's initial weights), on one device.
pub struct Workloads {
    pub config: ModelConfig,
    pub student: Model,
    pub teacher: Model,
    pub vars: candle_nn::VarMap,
    x: Tensor,
    y: Tensor,
    adam: Adam,
    sgd: Sgd,
    device: Device,
}

impl Workloads {
    pub fn new(arch: &Arch, batch: usize, seed: u64, device: &Device) -> anyhow::Result<Self> {
        let device = device.clone();
        let classes = 10;
        let config = arch.config(classes)?;
        let image = config.image_size();
        let (student, vars) = config.build_trainable(&device)?;
        params::init_seeded(&vars, config.init_scheme(), seed)?;
        let teacher = config.build_frozen(&vars, &device)?;
        let x = Tensor::randn(0f32, 1.0, (batch, 3, image, image), &device)?;
        let y = Tensor::rand(0f32, classes as f32, batch, &device)?.floor()?.to_dtype(DType::U32)?;
        let adam = Adam::new(params::trainable_vars(&vars), AdamConfig::with_lr(1e-3));
        let sgd = Sgd::new(
            params::trainable_vars(&vars),
            SgdConfig { lr: 0.1, momentum: 0.9, weight_decay: 5e-4, nesterov: false },
        );
        Ok(Self { config, student, teacher, vars, x, y, adam, sgd, device })
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

    /// One warm-up run, then the median wall time of `runs` runs, in seconds. On a GPU each
    /// run ends when the device has finished its queued work.
    pub fn median_seconds(&mut self, w: Workload, runs: usize) -> Result<f64> {
        self.run(w)?;
        self.device.synchronize()?;
        let mut times = Vec::with_capacity(runs.max(1));
        for _ in 0..runs.max(1) {
            let t = Instant::now();
            self.run(w)?;
            self.device.synchronize()?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_flags_map_to_product_configs() {
        assert_eq!(Arch::resnet18(16).config(10).unwrap().arch_name(), "resnet18");
        assert_eq!(Arch::wrn(22, 8).config(10).unwrap().arch_name(), "wrn-22-8");
        assert_eq!(Arch::wrn(16, 4).config(10).unwrap().arch_name(), "wrn-16-4");
        assert!(Arch { name: "vgg".into(), ..Arch::resnet18(16) }.config(10).is_err());
    }

    #[test]
    fn device_flag_values() {
        assert!(device("cpu").unwrap().is_cpu());
        for bad in ["gpu", "cuda:x", "cpu:1", "metal"] {
            let e = device(bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--device {bad}: ")), "{e}");
        }
        // Without the feature, or without a GPU, `cuda` is an error naming the flag.
        match device("cuda") {
            Ok(gpu) => assert!(cfg!(feature = "cuda") && gpu.is_cuda()),
            Err(e) => {
                let e = e.to_string();
                assert!(e.starts_with("--device cuda: "), "{e}");
                assert!(cfg!(feature = "cuda") || e.contains("--features cuda"), "{e}");
            }
        }
    }

    #[test]
    fn tiny_resnet_runs_every_workload() {
        let mut w = Workloads::new(&Arch::resnet18(2), 2, 0, &Device::Cpu).unwrap();
        for workload in Workload::ALL {
            w.run(workload).unwrap();
        }
    }
}
