//! Achieved GFLOP/s and the CPU's FMA peak, so a throughput says how far from the hardware
//! limit it is, not only how it compares with PyTorch.
//!
//! FLOPs per image count the convolutions and the head only (twice `forward_macs`): a
//! forward pass is 1 unit, a backward pass 2 (gradients of the inputs and of the weights).
//! So inference = 1, an SGD train step = 3, an SNL step = 4 (the teacher's forward too).

use crate::Workload;

/// FLOPs of one image of `workload` on a model whose forward pass has `forward_macs`.
pub fn flops_per_image(workload: Workload, forward_macs: u128) -> f64 {
    let passes = match workload {
        Workload::Inference => 1.0,
        Workload::TrainStep => 3.0,
        Workload::SnlStep => 4.0,
    };
    2.0 * forward_macs as f64 * passes
}

/// `cores x fma_units x lanes x 2 x clock`: the f32 FLOP/s the cores could do if every
/// cycle issued `fma_units` fused multiply-adds of `lanes` floats.
#[derive(Debug, Clone, PartialEq)]
pub struct Peak {
    pub cores: usize,
    pub fma_units: usize,
    pub lanes: usize,
    /// `AVX-512`, `AVX2` or `SSE`: what set `lanes`.
    pub isa: &'static str,
    pub ghz: f64,
    /// Where the clock came from.
    pub clock_source: String,
}

impl Peak {
    /// This CPU with `threads` threads (as many cores, at most the CPUs this process may
    /// use: more threads than cores add no FMA units): lanes from the widest vector unit it reports (16 f32
    /// with AVX-512F, 8 with AVX2 and FMA), the clock from `clock_ghz` or /proc/cpuinfo's
    /// `cpu MHz` (the nominal clock in a VM; boost clocks are higher).
    pub fn detect(threads: usize, fma_units: usize, clock_ghz: Option<f64>) -> Self {
        let available = std::thread::available_parallelism().map_or(threads, usize::from);
        let cores = threads.clamp(1, available.max(1));
        let (lanes, isa) = vector_width();
        let (ghz, clock_source) = match clock_ghz {
            Some(g) => (g, "--clock-ghz".to_string()),
            None => match cpuinfo_mhz() {
                Some(mhz) => (mhz / 1000.0, "/proc/cpuinfo cpu MHz".to_string()),
                None => (f64::NAN, "unknown (give --clock-ghz)".to_string()),
            },
        };
        Self { cores, fma_units, lanes, isa, ghz, clock_source }
    }

    pub fn gflops(&self) -> f64 {
        (self.cores * self.fma_units * self.lanes * 2) as f64 * self.ghz
    }

    /// One line saying how the peak was computed.
    pub fn describe(&self) -> String {
        format!(
            "FMA peak {:.1} GFLOP/s = {} cores x {} FMA units x {} f32 lanes ({}) x 2 x {:.3} GHz ({}; FMA units per core assumed)",
            self.gflops(),
            self.cores,
            self.fma_units,
            self.lanes,
            self.isa,
            self.ghz,
            self.clock_source
        )
    }
}

fn vector_width() -> (usize, &'static str) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return (16, "AVX-512");
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return (8, "AVX2");
        }
    }
    (4, "SSE/NEON")
}

/// The FMA throughput these cores actually reach: `threads` threads, each a loop of
/// independent fused multiply-adds on registers of one instruction set, nothing else. It
/// settles what the nominal figure above can only assume: the clock a VM hides, and
/// whether the core has two FMA units of that width (AMD Zen 4 splits a 512-bit FMA in two
/// 256-bit halves, so AVX-512 there is no faster than AVX2).
#[derive(Debug, Clone, PartialEq)]
pub struct MeasuredPeak {
    pub threads: usize,
    /// `(isa, GFLOP/s)` for each instruction set this CPU has, widest first.
    pub by_isa: Vec<(&'static str, f64)>,
}

impl MeasuredPeak {
    /// Runs each loop [`FMA_TRIES`] times for 0.1-0.5 s (`threads` at once) per instruction
    /// set and keeps the fastest: on a shared machine a neighbour can slow one try by a third,
    /// never speed it up.
    pub fn measure(threads: usize) -> Self {
        let threads = threads.max(1);
        let by_isa = fma_loops()
            .into_iter()
            .map(|(isa, lanes, run)| {
                // One untimed run brings the cores up to their clock.
                run(FMA_ITERS / 4);
                let best = (0..FMA_TRIES)
                    .map(|_| {
                        let start = std::time::Instant::now();
                        std::thread::scope(|s| {
                            for _ in 0..threads {
                                s.spawn(|| run(FMA_ITERS));
                            }
                        });
                        start.elapsed().as_secs_f64()
                    })
                    .fold(f64::INFINITY, f64::min);
                let flops = (threads * FMA_ITERS * FMA_CHAINS * lanes * 2) as f64;
                (isa, flops / best / 1e9)
            })
            .collect();
        Self { threads, by_isa }
    }

    /// The fastest instruction set's figure (NaN where none ran).
    pub fn gflops(&self) -> f64 {
        self.by_isa.iter().map(|(_, g)| *g).fold(f64::NAN, f64::max)
    }

    pub fn describe(&self) -> String {
        let parts: Vec<String> = self.by_isa.iter().map(|(isa, g)| format!("{isa} {g:.1}")).collect();
        format!(
            "measured FMA peak with {} threads (independent FMAs only, best of {FMA_TRIES}): {} GFLOP/s",
            self.threads,
            if parts.is_empty() { "none (no FMA unit detected)".to_string() } else { parts.join(", ") }
        )
    }
}

/// Iterations per timed loop, and independent accumulators per iteration: enough to cover
/// 2 units x 4-5 cycles of FMA latency.
const FMA_ITERS: usize = 100_000_000;
const FMA_CHAINS: usize = 12;
/// Timed runs per instruction set.
const FMA_TRIES: usize = 3;

type FmaLoop = fn(usize);

/// `(isa, f32 lanes, loop)` for the instruction sets this CPU has, widest first.
fn fma_loops() -> Vec<(&'static str, usize, FmaLoop)> {
    #[allow(unused_mut)]
    let mut loops: Vec<(&'static str, usize, FmaLoop)> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY (both): the CPU has the features each loop is compiled for.
            loops.push(("AVX-512", 16, |n| unsafe { fma_x86::avx512(n) }));
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            loops.push(("AVX2", 8, |n| unsafe { fma_x86::avx2(n) }));
        }
    }
    loops
}

#[cfg(target_arch = "x86_64")]
mod fma_x86 {
    use std::arch::x86_64::*;

    use super::FMA_CHAINS;

    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512(iters: usize) {
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); FMA_CHAINS];
        for _ in 0..iters {
            for v in &mut acc {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        std::hint::black_box(acc);
    }

    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2(iters: usize) {
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); FMA_CHAINS];
        for _ in 0..iters {
            for v in &mut acc {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        std::hint::black_box(acc);
    }
}

/// This CPU as every figure must name it: /proc/cpuinfo's model name and its SIMD flags
/// (`avx*`, `fma`), e.g. `Intel(R) Xeon(R) Processor; fma avx avx2 avx512f ...`; `unknown
/// CPU` where there is no /proc/cpuinfo.
pub fn cpu_description() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| describe_cpu(&text))
        .unwrap_or_else(|| "unknown CPU (no /proc/cpuinfo)".to_string())
}

/// The model name and SIMD flags of the first processor of a /proc/cpuinfo text, flags
/// sorted as /proc/cpuinfo lists them.
fn describe_cpu(text: &str) -> Option<String> {
    let field = |name: &str| {
        text.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split_once(':'))
    };
    let model = field("model name").map_or("unknown model", |(_, v)| v.trim());
    let (_, flags) = field("flags")?;
    let simd: Vec<&str> = flags.split_whitespace().filter(|f| f.starts_with("avx") || *f == "fma").collect();
    Some(format!("{model}; {}", if simd.is_empty() { "no AVX".to_string() } else { simd.join(" ") }))
}

fn cpuinfo_mhz() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    parse_cpu_mhz(&text)
}

/// The first `cpu MHz` value of a /proc/cpuinfo text.
fn parse_cpu_mhz(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("cpu MHz"))?;
    let mhz: f64 = line.split(':').nth(1)?.trim().parse().ok()?;
    (mhz.is_finite() && mhz > 0.0).then_some(mhz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_model_and_the_simd_flags() {
        let text = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\ncpu MHz\t\t: 2000.0\n\
                    flags\t\t: fpu sse2 avx fma avx2 avx512f avx512_bf16 bmi2\n\nprocessor\t: 1\n\
                    model name\t: Other\nflags\t\t: avx\n";
        assert_eq!(
            describe_cpu(text).as_deref(),
            Some("Intel(R) Xeon(R) Processor; avx fma avx2 avx512f avx512_bf16")
        );
        assert_eq!(describe_cpu("model name\t: Old\nflags\t\t: sse2\n").as_deref(), Some("Old; no AVX"));
        assert_eq!(describe_cpu("model name\t: No flags line\n"), None);
    }

    #[test]
    fn peak_is_the_product_of_its_parts() {
        let p =
            Peak { cores: 2, fma_units: 2, lanes: 16, isa: "AVX-512", ghz: 3.1, clock_source: String::new() };
        assert!((p.gflops() - 396.8).abs() < 1e-9);
        assert!(p.describe().starts_with("FMA peak 396.8 GFLOP/s = 2 cores x 2 FMA units x 16 f32 lanes"));
    }

    /// The loop runs and reports a positive figure for every instruction set it found; on
    /// x86-64 with AVX2 (every machine this project runs on) there is one.
    #[test]
    fn measured_peak_covers_the_cpus_instruction_sets() {
        let m = MeasuredPeak::measure(1);
        assert_eq!(m.by_isa.len(), fma_loops().len());
        // At most 2 FMA units x 16 lanes x 2 FLOP at 6 GHz: a loop the compiler folded away
        // would claim more.
        assert!(
            m.by_isa.iter().all(|(_, g)| g.is_finite() && *g > 0.0 && *g < 2.0 * 16.0 * 2.0 * 6.0),
            "{m:?}"
        );
        assert!(m.describe().contains("with 1 threads"));
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            assert!(m.by_isa.iter().any(|(isa, _)| *isa == "AVX2"));
        }
    }

    #[test]
    fn cpu_mhz_is_read_from_the_first_processor() {
        let text = "processor\t: 0\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2445.404\n\nprocessor\t: 1\ncpu MHz\t\t: 1200.0\n";
        assert_eq!(parse_cpu_mhz(text), Some(2445.404));
        assert_eq!(parse_cpu_mhz("cpu MHz : nan\n"), None);
        assert_eq!(parse_cpu_mhz("model name : x\n"), None);
    }

    #[test]
    fn workloads_count_forward_and_backward_passes() {
        // ResNet18 at width 64 on 32x32: 555,422,720 MACs (PyTorch hooks, model_macs test).
        let macs = 555_422_720;
        assert!((flops_per_image(Workload::Inference, macs) / 1e9 - 1.1108).abs() < 1e-3);
        assert_eq!(
            flops_per_image(Workload::TrainStep, macs),
            3.0 * flops_per_image(Workload::Inference, macs)
        );
        assert_eq!(
            flops_per_image(Workload::SnlStep, macs),
            4.0 * flops_per_image(Workload::Inference, macs)
        );
    }
}
