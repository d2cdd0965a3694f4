//! Process-wide settings from the global flags: device and threads.

use anyhow::Result;
use candle::Device;

/// A flag value that cannot be used (exit code 2, as clap's own usage errors).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

pub fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// `--device`: `cpu`, `cuda`, `cuda:N`, `metal` or `metal:N`, parsed by clap. A device this
/// build lacks the feature for is refused while parsing, with the command that adds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
    Metal(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        let (kind, ordinal) = match spec.split_once(':') {
            Some((kind, n)) => {
                let n = n
                    .parse::<usize>()
                    .map_err(|_| format!("--device {spec}: `{n}` is not a device number"))?;
                (kind, n)
            }
            None => (spec, 0),
        };
        match kind {
            "cpu" if ordinal == 0 => Ok(Self::Cpu),
            "cuda" if cfg!(feature = "cuda") => Ok(Self::Cuda(ordinal)),
            "metal" if cfg!(feature = "metal") => Ok(Self::Metal(ordinal)),
            "cuda" | "metal" => Err(format!(
                "--device {spec}: this snl was built without {kind} support; rebuild with `cargo build --release -p snl-cli --features {kind}`"
            )),
            _ => Err(format!("--device {spec}: expected cpu, cuda, cuda:N or metal")),
        }
    }
}

/// Opens the device (a GPU that is absent fails here, naming it).
pub fn device(spec: DeviceSpec) -> Result<Device> {
    let device = match spec {
        DeviceSpec::Cpu => Device::Cpu,
        DeviceSpec::Cuda(n) => Device::new_cuda(n)?,
        DeviceSpec::Metal(n) => Device::new_metal(n)?,
    };
    Ok(device)
}

/// More threads than this many per core only slow the kernels down (10,000 hung for minutes).
const THREADS_PER_CORE: usize = 4;

/// Sets the CPU thread count for candle's kernels before any of them runs. A count far
/// above the cores is capped; the returned warning says so.
pub fn threads(threads: Option<usize>) -> Result<Option<String>> {
    let mut warning = None;
    if let Some(mut n) = threads {
        if n == 0 {
            return Err(usage("--threads must be at least 1"));
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cap = cores * THREADS_PER_CORE;
        if n > cap {
            warning = Some(format!("--threads {n}: this machine has {cores} cores; using {cap} threads"));
            n = cap;
        }
        // SAFETY: called first thing in `main`'s command, before any other thread exists.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
    let _tuned = snl_core::fast::tune_allocator();
    Ok(warning)
}
