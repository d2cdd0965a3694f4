//! `throughput`: one JSON line per workload (snl_step, train_step, inference) with the keys
//! of `torch_snl.py bench`, for a side-by-side comparison with PyTorch. Runs the product
//! models of snl-models (whose layers use `snl_core::fast`), as `snl` users do.
//!
//! `cargo run --release -p snl-bench --bin throughput -- --width 64 --batch 128 --threads 2`
//! `cargo run --release -p snl-bench --bin throughput -- --arch wrn --depth 22 --k 8`

use anyhow::Context;
use clap::Parser;
use snl_bench::{Arch, Measurement, Workload, Workloads, peak_rss_mib};

#[derive(Parser, Debug)]
#[command(about = "snl training and inference throughput, as torch_snl.py bench measures it")]
struct Args {
    /// `resnet18` or `wrn` (WideResNet-depth-k), as torch_snl.py; any other snl-models
    /// arch name (resnet34, wrn-16-8, ...) for snl alone.
    #[arg(long, default_value = "resnet18")]
    arch: String,
    /// ResNet base width (ignored by wrn).
    #[arg(long, default_value_t = 64)]
    width: usize,
    /// WRN depth.
    #[arg(long, default_value_t = 22)]
    depth: usize,
    /// WRN widen factor.
    #[arg(long, default_value_t = 8)]
    k: usize,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Rayon (and so candle and gemm) threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Timed runs per workload, after one warm-up run; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seed of the weight initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Leave glibc's allocator at its defaults (no snl_core::fast::tune_allocator, which
    /// the `snl` binary calls at start-up).
    #[arg(long)]
    no_tune_alloc: bool,
    /// Only these workloads (comma-separated: snl_step,train_step,inference).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tuned = !args.no_tune_alloc && snl_core::fast::tune_allocator();
    // candle sizes its gemm parallelism from RAYON_NUM_THREADS, the pool from the builder.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string()) };
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build_global()
        .context("building the rayon pool")?;
    let arch = Arch { name: args.arch.clone(), width: args.width, depth: args.depth, k: args.k };
    let mut w = Workloads::new(&arch, args.batch, args.seed)
        .with_context(|| format!("building {} (width {})", args.arch, args.width))?;
    let imp = if tuned { "snl" } else { "snl-untuned-alloc" };
    for workload in Workload::ALL {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == workload.name()) {
            continue;
        }
        let median = w.median_seconds(workload, args.runs)?;
        let m = Measurement {
            imp: imp.to_string(),
            workload,
            arch: args.arch.clone(),
            width: args.width,
            batch: args.batch,
            threads: args.threads,
            median_s: (median * 1e4).round() / 1e4,
            images_per_s: ((args.batch as f64 / median) * 100.0).round() / 100.0,
            peak_rss_mib: peak_rss_mib(),
        };
        println!("{}", serde_json::to_string(&m)?);
    }
    Ok(())
}
