//! Benchmarks of snl against PyTorch: the workloads of `torch_ref.py bench` (an SNL step,
//! an SGD train step, inference) on the product models of snl-models (ResNet18, WRN), with
//! the product's losses and optimizers, and the measurement helpers the `throughput` binary
//! and the criterion benches share.
//!
//! The whole-model workloads run exactly what `snl` users run: snl-models' layers call
//! `snl_core::fast::{conv2d, masked_relu}`. candle's own ops are compared against the fast
//! ones only per layer (`benches/layers.rs`).

pub mod peak;
pub mod workload;

pub use peak::{MeasuredPeak, Peak, cpu_description, flops_per_image};
pub use workload::{Arch, BenchFlags, Measurement, Workload, Workloads, device};

/// Peak resident set size of this process so far, in MiB (as `torch_ref.py` reports it).
pub fn peak_rss_mib() -> u64 {
    #[cfg(unix)]
    {
        // SAFETY: getrusage only writes the struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0 {
            // ru_maxrss is in KiB on Linux.
            return (usage.ru_maxrss.max(0) as u64) / 1024;
        }
    }
    0
}
