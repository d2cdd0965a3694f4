//! The `smoke` preset end to end with the real `snl` (built by xtask with `--debug`): a
//! baseline on synthetic data, SNL and both controls at two budgets (the controls trained
//! as long as SNL searched), then the collected CSV, JSON and SVG; a second run skips every
//! finished run.

use std::process::Command;

#[test]
fn smoke_preset_sweeps_collects_and_resumes() {
    let out = std::env::temp_dir().join(format!("xtask-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["pareto", "--preset", "smoke", "--debug", "--threads", "2", "--out"])
            .arg(&out)
            .current_dir(root)
            .output()
            .expect("run xtask")
    };
    let first = run();
    let log = format!("{}{}", String::from_utf8_lossy(&first.stdout), String::from_utf8_lossy(&first.stderr));
    assert!(first.status.success(), "{log}");

    let csv = std::fs::read_to_string(out.join("pareto.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 7, "header, baseline, 3 selections x 2 budgets:\n{csv}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("pareto.json")).unwrap()).unwrap();
    assert_eq!(json["runs"].as_array().unwrap().len(), 7);
    let svg = std::fs::read_to_string(out.join("pareto.svg")).unwrap();
    assert_eq!(svg.matches("<circle class=\"run").count(), 7);
    assert!(out.join("snl-30pct-s0/sites.svg").exists());
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

    let again = run();
    let log = format!("{}{}", String::from_utf8_lossy(&again.stdout), String::from_utf8_lossy(&again.stderr));
    assert!(again.status.success(), "{log}");
    assert_eq!(log.matches("# skip").count(), 7, "{log}");
    let _ = std::fs::remove_dir_all(&out);
}
