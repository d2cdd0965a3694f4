//! `vs_torch`: runs `throughput` and `torch_snl.py bench` with the same flags and prints
//! both JSON line sets and the snl / PyTorch ratio per workload. Reports clearly (and still
//! prints snl's figures) when python3 or torch is missing.
//!
//! `cargo run --release -p snl-bench --bin vs_torch -- --width 64 --batch 128 --threads 2`

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::Value;

#[derive(Parser, Debug)]
#[command(about = "snl throughput next to PyTorch's, with ratios")]
struct Args {
    #[arg(long, default_value = "resnet18")]
    arch: String,
    #[arg(long, default_value_t = 64)]
    width: usize,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The PyTorch reference script (default: $SNL_TORCH_SCRIPT, else the shared reference).
    #[arg(long)]
    torch_script: Option<PathBuf>,
    #[arg(long, default_value = "python3")]
    python: String,
    /// Extra flags for `throughput` (e.g. `--impl=candle`).
    #[arg(long, allow_hyphen_values = true)]
    snl_flag: Vec<String>,
}

fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let common = [
        format!("--arch={}", a.arch),
        format!("--width={}", a.width),
        format!("--batch={}", a.batch),
        format!("--threads={}", a.threads),
        format!("--runs={}", a.runs),
    ];

    let exe = std::env::current_exe()?;
    let throughput = exe.with_file_name(format!("throughput{}", std::env::consts::EXE_SUFFIX));
    let out = Command::new(&throughput).args(&common).args(&a.snl_flag).output().with_context(|| {
        format!("running {} (build it with `cargo build --release -p snl-bench`)", throughput.display())
    })?;
    if !out.status.success() {
        bail!("throughput failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let snl = json_lines(&out.stdout);
    snl.iter().for_each(|v| println!("{v}"));

    let has_torch = Command::new(&a.python)
        .args(["-c", "import torch"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has_torch {
        println!(
            "PyTorch comparison skipped: `{} -c 'import torch'` failed (python3 or torch not installed)",
            a.python
        );
        return Ok(());
    }
    let script = a
        .torch_script
        .clone()
        .or_else(|| std::env::var_os("SNL_TORCH_SCRIPT").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/work/shared/reference/torch_snl.py"));
    if !script.exists() {
        println!(
            "PyTorch comparison skipped: {} not found (set --torch-script or SNL_TORCH_SCRIPT)",
            script.display()
        );
        return Ok(());
    }
    let out = Command::new(&a.python)
        .arg(&script)
        .arg("bench")
        .args(&common)
        .output()
        .context("running torch_snl.py")?;
    if !out.status.success() {
        bail!("torch_snl.py bench failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let torch = json_lines(&out.stdout);
    torch.iter().for_each(|v| println!("{v}"));

    println!(
        "\n{:<11} {:>12} {:>12} {:>8}   ({} width {}, batch {}, {} threads)",
        "workload", "snl img/s", "torch img/s", "ratio", a.arch, a.width, a.batch, a.threads
    );
    for s in &snl {
        let Some(t) = torch.iter().find(|t| t["workload"] == s["workload"]) else { continue };
        let (si, ti) = (s["images_per_s"].as_f64().unwrap_or(0.0), t["images_per_s"].as_f64().unwrap_or(0.0));
        let ratio = if ti > 0.0 { si / ti } else { f64::NAN };
        println!("{:<11} {:>12.1} {:>12.1} {:>7.2}x", s["workload"].as_str().unwrap_or("?"), si, ti, ratio);
    }
    Ok(())
}
