//! The `smoke` preset end to end with the real `snl`: a baseline on synthetic data, SNL (and
//! its controls, trained as long as SNL searched) at two budgets, then the collected CSV, JSON
//! and SVG; a second run skips every finished run. Two runs at a time (`--jobs 2`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// target/debug/snl as `cargo test --workspace` builds it. xtask's own `--debug` build
/// (`cargo build -p snl-cli`) resolves features without the dev-dependencies (tract-onnx
/// turns on features of num-complex, getrandom and prost), so inside the test suite it would
/// compile candle and everything above it a second time: minutes of CI. Building the
/// workspace's tests again is a no-op there, and builds the real binary when this file runs alone.
fn snl() -> &'static Path {
    static SNL: OnceLock<PathBuf> = OnceLock::new();
    SNL.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["test", "--workspace", "--no-run", "--quiet"])
            .current_dir(ROOT)
            .status()
            .expect("run cargo");
        assert!(status.success(), "cargo test --workspace --no-run failed");
        let xtask = Path::new(env!("CARGO_BIN_EXE_xtask"));
        xtask.with_file_name(format!("snl{}", std::env::consts::EXE_SUFFIX))
    })
}

fn sweep(out: &Path, selections: &str) -> (Output, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["pareto", "--preset", "smoke", "--snl"])
        .arg(snl())
        .args(["--jobs", "2", "--threads", "1", "--selections", selections, "--out"])
        .arg(out)
        .current_dir(ROOT)
        .output()
        .expect("run xtask");
    let log = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o, log)
}

fn temp(name: &str) -> PathBuf {
    let out = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    out
}

/// Runs the sweep twice; returns pareto.csv. `runs` counts the baseline.
fn sweeps_collects_and_resumes(out: &Path, selections: &str, runs: usize) -> String {
    let (first, log) = sweep(out, selections);
    assert!(first.status.success(), "{log}");
    let csv = std::fs::read_to_string(out.join("pareto.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + runs, "{csv}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("pareto.json")).unwrap()).unwrap();
    assert_eq!(json["runs"].as_array().unwrap().len(), runs);
    let svg = std::fs::read_to_string(out.join("pareto.svg")).unwrap();
    assert_eq!(svg.matches("<circle class=\"run").count(), runs);
    assert!(out.join("snl-30pct-s0/sites.svg").exists());
    // Two runs at a time (where there are two cores): each run's output is in its log.
    if std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2) {
        let log = std::fs::read_to_string(out.join("logs/snl-30pct-s0.log")).unwrap();
        assert!(log.contains("finetun"), "{log}");
    }
    let (again, log) = sweep(out, selections);
    assert!(again.status.success(), "{log}");
    assert_eq!(log.matches("# skip").count(), runs, "{log}");
    csv
}

/// The whole sweep, twice; the controls run with `snl linearize --selection random|uniform
/// --search-steps N`, N read from their SNL run, and report `epochs_trained` in result.json.
/// (One test: a sweep of SNL alone would only repeat a part of this one.)
#[test]
fn smoke_preset_sweeps_collects_resumes_and_controls_train_as_long_as_snl() {
    let out = temp("smoke-controls");
    let csv = sweeps_collects_and_resumes(&out, "snl,random,uniform", 7);
    // Equal training: each control's epochs_trained (column 9) is its SNL run's.
    let epochs = |run: &str| {
        let line = csv.lines().find(|l| l.starts_with(&format!("{run},"))).expect(run);
        line.split(',').nth(8).unwrap().to_string()
    };
    for budget in ["30pct", "60pct"] {
        let snl = epochs(&format!("snl-{budget}-s0"));
        assert!(!snl.is_empty(), "{csv}");
        assert_eq!(epochs(&format!("random-{budget}-s0")), snl, "{csv}");
        assert_eq!(epochs(&format!("uniform-{budget}-s0")), snl, "{csv}");
    }
    let md = std::fs::read_to_string(out.join("pareto.md")).unwrap();
    assert!(md.contains("- equal epochs_trained within each of the 2 (budget, seed) cells"), "{md}");
    assert!(md.contains("| budget | SNL - random | SNL - uniform |"), "{md}");
    let _ = std::fs::remove_dir_all(&out);
}
