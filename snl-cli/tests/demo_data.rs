//! The synthetic data a run and its models record (so resume and eval rebuild the same
//! images), a killed `snl demo` continued with `--resume`, and a flag that would do nothing
//! refused.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;

use common::*;
use serde_json::{Value, json};

/// `snl eval --split val --json` of `model` on the synthetic data.
fn eval_val(model: &Path, batch: &str) -> Output {
    snl()
        .args(["eval", "--model", s(model), "--dataset", "synthetic", "--split", "val"])
        .args(["--batch-size", batch, "--json"])
        .output()
        .unwrap()
}

/// `val.samples` of every line of a run's `metrics.jsonl`.
fn val_samples(run: &Path) -> Vec<Value> {
    metrics_without_time(run).iter().map(|m| m["val"]["samples"].clone()).collect()
}

/// The issue: `train --resume` of a killed demo's baseline rebuilt `--dataset synthetic` at
/// its default sizes (val 400 -> 200 mid-run), and a killed demo could not be finished.
#[test]
fn a_killed_demo_resumes_on_its_own_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dk = tmp.path().join("dk");
    let baseline = dk.join("baseline");
    // Killed during the baseline's training, after 2 of its 6 epochs.
    snl().args(["demo", "--out", s(&dk), "--stop-after-epochs", "2"]).assert().code(3);
    let data = &read_json(&baseline.join("config.json"))["data"];
    assert_eq!(data["val_size"], 400, "{data}");
    assert_eq!(data["synthetic"], json!({"classes": 10, "image_size": 16, "per_class": [150, 40, 40]}));
    fails(&["demo", "--out", s(&dk)], 1, &["unfinished demo", &format!("snl demo --resume {}", s(&dk))]);

    // The baseline alone, resumed as a train run, keeps the demo's data.
    snl().args(["train", "--resume", s(&baseline), "--stop-after-epochs", "4"]).assert().code(3);
    assert_eq!(val_samples(&baseline), vec![json!(400); 4]);

    // The demo resumes its baseline at epoch 4, then linearizes it.
    let output = snl().args(["demo", "--resume", s(&dk)]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains(&format!("resuming {} after epoch 4", baseline.display())));
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.lines().any(|l| l.starts_with("ReLUs")) && table.contains("run folder"), "{table}");
    assert_eq!(val_samples(&baseline), vec![json!(400); 6]);
    for step in ["baseline", "linearized"] {
        let result = read_json(&dk.join(step).join("result.json"));
        assert_eq!(result["val"]["samples"], 400, "{step}: {result}");
        assert_eq!(result["test"]["samples"], 400, "{step}: {result}");
    }
    assert!(val_samples(&dk.join("linearized")).iter().all(|v| *v == 400));
    fails(&["demo", "--resume", s(&dk)], 1, &["finished already"]);
    fails(&["demo", "--out", s(&dk)], 1, &["finished demo"]);

    // The model records the demo's set: eval on `--dataset synthetic` rebuilds its 400
    // validation images, not the default set's 200.
    let best = baseline.join("best.safetensors");
    let meta = read_metadata(&best);
    assert_eq!(meta["val_size"], "400");
    assert_eq!(meta["synthetic"], r#"{"classes":10,"image_size":16,"per_class":[150,40,40]}"#);
    let output = eval_val(&best, "64");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout_json(&output), read_json(&baseline.join("result.json"))["val"]);
}

#[test]
fn a_demo_resume_needs_a_demo_folder() {
    let tmp = tempfile::tempdir().unwrap();
    fails(&["demo", "--resume", s(tmp.path())], 1, &["not the folder of a demo"]);
    fails(&["demo", "--resume", s(tmp.path()), "--out", s(tmp.path())], 2, &["--out"]);
}

/// `model` with its metadata changed by `edit`, written to `to`.
fn with_metadata(model: &Path, to: &Path, edit: impl FnOnce(&mut HashMap<String, String>)) {
    let mut meta = read_metadata(model);
    edit(&mut meta);
    write_tensors(to, &read_tensors(model), Some(meta));
}

#[test]
fn synthetic_runs_record_their_data_and_eval_rebuilds_it() {
    let run = baseline();
    let data = &read_json(&run.join("config.json"))["data"];
    assert_eq!(data["val_size"], 200, "the real validation size, not --val-size's default 5000");
    assert_eq!(data["synthetic"], json!({"classes": 10, "image_size": 16, "per_class": [100, 20, 20]}));
    let best = run.join("best.safetensors");
    let meta = read_metadata(&best);
    assert_eq!(meta["val_size"], "200");
    assert_eq!(meta["synthetic"], r#"{"classes":10,"image_size":16,"per_class":[100,20,20]}"#);
    let output = eval_val(&best, "100");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout_json(&output), read_json(&run.join("result.json"))["val"]);

    // The recorded set is the one eval builds.
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("other.safetensors");
    with_metadata(&best, &other, |m| {
        m.insert("synthetic".into(), r#"{"classes":10,"image_size":16,"per_class":[100,30,20]}"#.into());
    });
    let output = eval_val(&other, "100");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout_json(&output)["samples"], 300);
    // Models made before the set was recorded: the demo's recorded 400, others 5000.
    for (val_size, samples) in [("400", 400), ("5000", 200)] {
        let old = tmp.path().join(format!("old-{val_size}.safetensors"));
        with_metadata(&best, &old, |m| {
            m.remove("synthetic");
            m.insert("val_size".into(), val_size.into());
        });
        let output = eval_val(&old, "100");
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(stdout_json(&output)["samples"], samples, "recorded val_size {val_size}");
    }
    // A recorded set that makes no data is refused, naming it.
    let bad = tmp.path().join("bad.safetensors");
    // (The second's validation size, 2 x 2^63, overflows: refused, not a panic.)
    for spec in [
        r#"{"classes":10,"image_size":16,"per_class":[100,0,20]}"#,
        r#"{"classes":2,"image_size":1,"per_class":[1,9223372036854775808,1]}"#,
    ] {
        with_metadata(&best, &bad, |m| {
            m.insert("synthetic".into(), spec.into());
        });
        fails(
            &["eval", "--model", s(&bad), "--dataset", "synthetic"],
            1,
            &[&format!("synthetic data {spec}: every size must be at least 1")],
        );
    }
}

#[test]
fn data_dir_with_synthetic_data_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut args = train_to(&out, &["--data-dir", "/nonexistent"]);
    args.retain(|a| a != "-q");
    fails(&refs(&args), 2, &["--data-dir /nonexistent", "reads no files", "drop --data-dir"]);
    assert!(!out.exists(), "nothing is written");
    fails(
        &["eval", "--model", s(&baseline_model()), "--dataset", "synthetic", "--data-dir", "/tmp"],
        2,
        &["--data-dir"],
    );
}
