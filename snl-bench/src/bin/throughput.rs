//! `throughput`: one JSON line per workload (snl_step, train_step, inference) with the keys
//! of `torch_ref.py bench`, for a side-by-side comparison with PyTorch. Runs the product
//! models of snl-models (whose layers use `snl_core::fast`), as `snl` users do.
//!
//! `cargo run --release -p snl-bench --bin throughput -- --width 64 --batch 128 --threads 2`
//! `cargo run --release -p snl-bench --bin throughput -- --arch wrn --depth 22 --k 8`
//! `cargo run --release -p snl-bench --features cuda --bin throughput -- --device cuda`

use anyhow::Context;
use clap::Parser;
use snl_bench::{Arch, Measurement, Workload, Workloads, flops_per_image, peak_rss_mib};

#[derive(Parser, Debug)]
#[command(about = "snl training and inference throughput, as torch_ref.py bench measures it")]
struct Args {
    #[command(flatten)]
    flags: snl_bench::BenchFlags,
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
    /// Print only the FMA throughput these cores reach (`--threads` of them), one line per
    /// instruction set, and no workload.
    #[arg(long)]
    fma_peak: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let names = Workload::ALL.map(|w| w.name());
    if let Some(unknown) = args.only.iter().find(|o| !names.contains(&o.as_str())) {
        anyhow::bail!("--only {unknown}: no such workload (one of {})", names.join(", "));
    }
    if args.fma_peak {
        println!("{}", snl_bench::MeasuredPeak::measure(args.flags.threads).describe());
        return Ok(());
    }
    // stdout is JSON lines; the CPU every figure must name goes to stderr.
    eprintln!("# cpu: {}", snl_bench::cpu_description());
    let tuned = !args.no_tune_alloc && snl_core::fast::tune_allocator();
    // candle sizes its gemm parallelism from RAYON_NUM_THREADS, the pool from the builder.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", args.flags.threads.to_string()) };
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.flags.threads)
        .build_global()
        .context("building the rayon pool")?;
    let arch = Arch {
        name: args.flags.arch.clone(),
        width: args.flags.width,
        depth: args.flags.depth,
        k: args.flags.k,
    };
    let device = snl_bench::device(&args.flags.device)?;
    let mut w = Workloads::new(&arch, args.flags.batch, args.seed, &device)
        .with_context(|| format!("building {} (width {})", args.flags.arch, args.flags.width))?;
    let macs = w.config.forward_macs();
    let imp = if tuned { "snl" } else { "snl-untuned-alloc" };
    for workload in Workload::ALL {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == workload.name()) {
            continue;
        }
        let median = w.median_seconds(workload, args.flags.runs)?;
        let images_per_s = args.flags.batch as f64 / median;
        let m = Measurement {
            imp: imp.to_string(),
            workload,
            arch: args.flags.arch.clone(),
            width: args.flags.width,
            batch: args.flags.batch,
            threads: args.flags.threads,
            device: args.flags.device.clone(),
            median_s: (median * 1e4).round() / 1e4,
            images_per_s: (images_per_s * 100.0).round() / 100.0,
            gflop_per_s: (images_per_s * flops_per_image(workload, macs) / 1e7).round() / 100.0,
            peak_rss_mib: peak_rss_mib(),
        };
        println!("{}", serde_json::to_string(&m)?);
    }
    Ok(())
}
