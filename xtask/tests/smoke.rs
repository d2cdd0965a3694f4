//! The `smoke` preset end to end with the real `snl` (built by xtask with `--debug`): a
//! baseline on synthetic data, SNL (and its controls, trained as long as SNL searched) at two
//! budgets, then the collected CSV, JSON and SVG; a second run skips every finished run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sweep(out: &Path, selections: &str) -> (Output, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "pareto",
            "--preset",
            "smoke",
            "--debug",
            "--threads",
            "2",
            "--selections",
            selections,
            "--out",
        ])
        .arg(out)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
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
    let (again, log) = sweep(out, selections);
    assert!(again.status.success(), "{log}");
    assert_eq!(log.matches("# skip").count(), runs, "{log}");
    csv
}

#[test]
fn smoke_preset_sweeps_collects_and_resumes() {
    let out = temp("smoke");
    sweeps_collects_and_resumes(&out, "snl", 3);
    let _ = std::fs::remove_dir_all(&out);
}

/// The controls run with `snl linearize --selection random|uniform --search-epochs N`, N
/// read from their SNL run, and report `epochs_trained` in result.json.
#[test]
fn smoke_controls_train_as_long_as_snl() {
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
    let _ = std::fs::remove_dir_all(&out);
}
