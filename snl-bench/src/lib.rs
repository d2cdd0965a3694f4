//! Benchmarks of snl against PyTorch: the workloads of `torch_snl.py bench` (an SNL step,
//! an SGD train step, inference) on a ResNet18, run either through candle's plain ops or
//! through `snl_core::fast`, and the measurement helpers the `throughput` binary and the
//! criterion benches share.

pub mod resnet;
pub mod workload;

pub use resnet::{Impl, ResNet18};
pub use workload::{Measurement, Workload, Workloads};

/// Peak resident set size of this process so far, in MiB (as `torch_snl.py` reports it).
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
