//! `vs_torch`: runs `throughput` and `torch_ref.py bench` with the same flags and prints
//! both JSON line sets, then the snl / PyTorch ratio and peak RSS per workload, with the
//! load average before and after (the figures mean little on a loaded machine). Says so
//! clearly (and still prints snl's figures) when python3, torch or the script is missing.
//!
//! On a shared machine one pair of runs can be off by a third either way, so `--rounds N`
//! runs the pair N times back to back and reports the median images/s of each side and the
//! median (and range) of the N per-round ratios.
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
    /// The PyTorch reference script (default: $SNL_TORCH_SCRIPT, else the repository's
    /// `snl-bench/scripts/torch_ref.py`).
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
    /// Pairs of runs (snl, then PyTorch); the table gives medians over them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// FMA units per core, for the FMA peak (2 on recent x86 server cores).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    fma_units: u64,
    /// Core clock for the FMA peak (default: /proc/cpuinfo's `cpu MHz`).
    #[arg(long, value_parser = positive_ghz)]
    clock_ghz: Option<f64>,
}

fn positive_ghz(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(g) if g.is_finite() && g > 0.0 => Ok(g),
        _ => Err(format!("`{s}` is not a clock in GHz (a positive number)")),
    }
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One side's JSON lines, from `cmd` (`what` names it in errors).
fn run(cmd: &mut Command, what: &str) -> anyhow::Result<Vec<Value>> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let lines = json_lines(&out.stdout);
    lines.iter().for_each(|v| println!("{v}"));
    println!("# load average after {what}: {}", loadavg());
    Ok(lines)
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
        format!("--device={}", a.flags.device),
    ];
    println!("# cpu: {}", snl_bench::cpu_description());
    println!("# load average before: {}", loadavg());

    let exe = std::env::current_exe()?;
    let throughput = exe.with_file_name(format!("throughput{}", std::env::consts::EXE_SUFFIX));
    let snl_cmd = || {
        let mut cmd = Command::new(&throughput);
        cmd.args(&common).args(&a.snl_flag);
        cmd
    };
    let script = a
        .torch_script
        .clone()
        .or_else(|| std::env::var_os("SNL_TORCH_SCRIPT").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/torch_ref.py")));
    // Why PyTorch cannot run; `--no-torch` skips it without a reason to print.
    let missing = if a.no_torch { None } else { torch_missing(&a.python, &script) };
    let with_torch = !a.no_torch && missing.is_none();
    // Per round: snl's and PyTorch's JSON lines.
    let mut rounds = Vec::new();
    for round in 1..=a.rounds {
        if a.rounds > 1 {
            println!("# round {round} of {}", a.rounds);
        }
        let snl = run(&mut snl_cmd(), "throughput").with_context(|| {
            format!("{} (build it with `cargo build --release -p snl-bench --bins`)", throughput.display())
        })?;
        let torch = if with_torch {
            run(Command::new(&a.python).arg(&script).arg("bench").args(&common), "torch_ref.py bench")?
        } else {
            Vec::new()
        };
        rounds.push((snl, torch));
    }
    if let Some(why) = missing {
        println!("\nPyTorch comparison SKIPPED: {why}. Only snl's figures above were measured.");
    }
    if !with_torch {
        return Ok(());
    }

    let what = if a.flags.arch == "wrn" {
        format!("wrn-{}-{}", a.flags.depth, a.flags.k)
    } else {
        format!("{} width {}", a.flags.arch, a.flags.width)
    };
    let macs = snl_bench::Arch {
        name: a.flags.arch.clone(),
        width: a.flags.width,
        depth: a.flags.depth,
        k: a.flags.k,
    }
    .config(10)?
    .forward_macs();
    // The share of the CPU's FMA peak means nothing for a GPU run: no share, no peak line.
    let on_cpu = a.flags.device == "cpu";
    let peak = snl_bench::Peak::detect(a.flags.threads, a.fma_units as usize, a.clock_ghz);
    // Measured after both sides ran, so neither competes with it.
    let measured = on_cpu.then(|| snl_bench::MeasuredPeak::measure(a.flags.threads));
    println!(
        "\n{:<11} {:>10} {:>12} {:>7} {:>9} {:>10} {:>16}   ({what}, batch {}, {} threads)",
        "workload",
        "snl img/s",
        "torch img/s",
        "ratio",
        "snl MiB",
        "torch MiB",
        "snl GFLOP/s",
        a.flags.batch,
        a.flags.threads
    );
    let field = |v: &Value, key: &str| v[key].as_f64().unwrap_or(0.0);
    for workload in rounds[0].0.iter().map(|v| v["workload"].clone()) {
        let pick = |lines: &[Value]| lines.iter().find(|v| v["workload"] == workload).cloned();
        let pairs: Vec<(Value, Value)> =
            rounds.iter().filter_map(|(s, t)| Some((pick(s)?, pick(t)?))).collect();
        if pairs.is_empty() {
            continue;
        }
        let snl: Vec<f64> = pairs.iter().map(|(s, _)| field(s, "images_per_s")).collect();
        let torch: Vec<f64> = pairs.iter().map(|(_, t)| field(t, "images_per_s")).collect();
        let ratios: Vec<f64> =
            snl.iter().zip(&torch).map(|(s, t)| if *t > 0.0 { s / t } else { f64::NAN }).collect();
        let rss = |side: fn(&(Value, Value)) -> &Value| {
            pairs.iter().map(|p| side(p)["peak_rss_mib"].as_u64().unwrap_or(0)).max().unwrap_or(0)
        };
        let range = if ratios.len() > 1 {
            let (lo, hi) = ratios.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
            format!("   ratios {lo:.2}-{hi:.2}")
        } else {
            String::new()
        };
        let gflops = snl_bench::Workload::ALL
            .into_iter()
            .find(|w| workload.as_str() == Some(w.name()))
            .map_or(f64::NAN, |w| median(&snl) * snl_bench::flops_per_image(w, macs) / 1e9);
        let share = match &measured {
            Some(m) => format!(
                "({:>4.1}% nominal, {:>4.1}% measured)",
                100.0 * gflops / peak.gflops(),
                100.0 * gflops / m.gflops()
            ),
            None => String::new(),
        };
        println!(
            "{:<11} {:>10.1} {:>12.1} {:>6.2}x {:>9} {:>10} {:>7.1} {share}{range}",
            workload.as_str().unwrap_or("?"),
            median(&snl),
            median(&torch),
            median(&ratios),
            rss(|p| &p.0),
            rss(|p| &p.1),
            gflops,
        );
    }
    if let Some(m) = &measured {
        println!("{}", peak.describe());
        println!("{}", m.describe());
    }
    println!(
        "(snl / PyTorch images/s{}; peak RSS is the process's high-water mark after each workload)",
        if a.rounds > 1 {
            format!(", medians of {} rounds, ratio = median of the per-round ratios", a.rounds)
        } else {
            String::new()
        }
    );
    Ok(())
}
