//! `throughput`: one JSON line per workload (snl_step, train_step, inference) with the keys
//! of `torch_snl.py bench`, for a side-by-side comparison with PyTorch.
//!
//! `cargo run --release -p snl-bench --bin throughput -- --width 64 --batch 128 --threads 2`

use anyhow::{Context, bail};
use clap::Parser;
use snl_bench::{Impl, Measurement, Workload, Workloads, peak_rss_mib};

#[derive(Parser, Debug)]
#[command(about = "snl training and inference throughput, as torch_snl.py bench measures it")]
struct Args {
    /// Architecture (resnet18; wrn comes with snl-models).
    #[arg(long, default_value = "resnet18")]
    arch: String,
    #[arg(long, default_value_t = 64)]
    width: usize,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Rayon (and so candle and gemm) threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Timed runs per workload, after one warm-up run; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// `fast` (snl_core::fast) or `candle` (candle's own ops).
    #[arg(long = "impl", value_enum, default_value = "fast")]
    imp: Impl,
    /// Leave glibc's allocator at its defaults (no snl_core::fast::tune_allocator).
    #[arg(long)]
    no_tune_alloc: bool,
    /// Only these workloads (comma-separated: snl_step,train_step,inference).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.arch != "resnet18" {
        bail!("--arch {}: only resnet18 is benchmarked until snl-models provides the others", args.arch);
    }
    let tuned = !args.no_tune_alloc && snl_core::fast::tune_allocator();
    // candle sizes its gemm parallelism from RAYON_NUM_THREADS, the pool from the builder.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string()) };
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build_global()
        .context("building the rayon pool")?;
    let mut w = Workloads::new(args.width, args.batch, args.imp)?;
    let imp = match (args.imp, tuned) {
        (Impl::Fast, true) => "snl-fast",
        (Impl::Fast, false) => "snl-fast-untuned-alloc",
        (Impl::Candle, true) => "candle-tuned-alloc",
        (Impl::Candle, false) => "candle",
    };
    for workload in Workload::ALL {
        let name = serde_json::to_value(workload)?;
        if !args.only.is_empty() && !args.only.iter().any(|o| name == o.as_str()) {
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
