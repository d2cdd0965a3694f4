//! `vs_torch`: runs `throughput` and `torch_snl.py bench` with the same flags and prints
//! both JSON line sets, then the snl / PyTorch ratio and peak RSS per workload, with the
//! load average before and after (the figures mean little on a loaded machine). Says so
//! clearly (and still prints snl's figures) when python3, torch or the script is missing.
//!
//! `cargo run --release -p snl-bench --bin vs_torch -- --width 64 --batch 128 --threads 2`
//! `cargo xtask bench-vs-torch --arch wrn` (builds first)

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::Value;

#[derive(Parser, Debug)]
#[command(about = "snl throughput next to PyTorch's, with ratios")]
struct Args {
    #[command(flatten)]
    flags: snl_bench::BenchFlags,
    /// The PyTorch reference script (default: $SNL_TORCH_SCRIPT, else the shared reference).
    #[arg(long)]
    torch_script: Option<PathBuf>,
    #[arg(long, default_value = "python3")]
    python: String,
    /// Extra flags for `throughput` (e.g. `--snl-flag=--no-tune-alloc`).
    #[arg(long, allow_hyphen_values = true)]
    snl_flag: Vec<String>,
    /// Run snl only.
    #[arg(long)]
    no_torch: bool,
}

fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Why the PyTorch side cannot run, if it cannot.
fn torch_missing(python: &str, script: &std::path::Path) -> Option<String> {
    match Command::new(python).args(["-c", "import torch"]).output() {
        Err(e) => return Some(format!("`{python}` could not be started ({e}): python3 is not installed")),
        Ok(o) if !o.status.success() => {
            return Some(format!(
                "`{python} -c 'import torch'` failed: PyTorch is not installed for {python}"
            ));
        }
        Ok(_) => {}
    }
    (!script.exists())
        .then(|| format!("{} not found (set --torch-script or SNL_TORCH_SCRIPT)", script.display()))
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let common = [
        format!("--arch={}", a.flags.arch),
        format!("--width={}", a.flags.width),
        format!("--depth={}", a.flags.depth),
        format!("--k={}", a.flags.k),
        format!("--batch={}", a.flags.batch),
        format!("--threads={}", a.flags.threads),
        format!("--runs={}", a.flags.runs),
    ];
    println!("# load average before: {}", loadavg());

    let exe = std::env::current_exe()?;
    let throughput = exe.with_file_name(format!("throughput{}", std::env::consts::EXE_SUFFIX));
    let out = Command::new(&throughput).args(&common).args(&a.snl_flag).output().with_context(|| {
        format!(
            "running {} (build it with `cargo build --release -p snl-bench --bins`)",
            throughput.display()
        )
    })?;
    if !out.status.success() {
        bail!("throughput failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let snl = json_lines(&out.stdout);
    snl.iter().for_each(|v| println!("{v}"));
    println!("# load average after snl: {}", loadavg());

    if a.no_torch {
        return Ok(());
    }
    let script = a
        .torch_script
        .clone()
        .or_else(|| std::env::var_os("SNL_TORCH_SCRIPT").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/work/shared/reference/torch_snl.py"));
    if let Some(why) = torch_missing(&a.python, &script) {
        println!("\nPyTorch comparison SKIPPED: {why}. Only snl's figures above were measured.");
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
    println!("# load average after torch: {}", loadavg());

    let what = if a.flags.arch == "wrn" {
        format!("wrn-{}-{}", a.flags.depth, a.flags.k)
    } else {
        format!("{} width {}", a.flags.arch, a.flags.width)
    };
    println!(
        "\n{:<11} {:>10} {:>12} {:>7} {:>9} {:>10}   ({what}, batch {}, {} threads)",
        "workload",
        "snl img/s",
        "torch img/s",
        "ratio",
        "snl MiB",
        "torch MiB",
        a.flags.batch,
        a.flags.threads
    );
    for s in &snl {
        let Some(t) = torch.iter().find(|t| t["workload"] == s["workload"]) else { continue };
        let (si, ti) = (s["images_per_s"].as_f64().unwrap_or(0.0), t["images_per_s"].as_f64().unwrap_or(0.0));
        let ratio = if ti > 0.0 { si / ti } else { f64::NAN };
        println!(
            "{:<11} {:>10.1} {:>12.1} {:>6.2}x {:>9} {:>10}",
            s["workload"].as_str().unwrap_or("?"),
            si,
            ti,
            ratio,
            s["peak_rss_mib"].as_u64().unwrap_or(0),
            t["peak_rss_mib"].as_u64().unwrap_or(0)
        );
    }
    println!("(snl / PyTorch images/s; peak RSS is the process's high-water mark after each workload)");
    Ok(())
}
