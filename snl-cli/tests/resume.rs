//! `--resume`: a run stopped after an epoch (the hidden `--stop-after-epochs`, exit code 3)
//! and resumed ends exactly where the uninterrupted run ends: same tensors, same metrics.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use predicates::prelude::*;

/// The same names, dtypes and shapes, and values bitwise equal (else within 1e-6).
fn assert_same_model(a: &Path, b: &Path) {
    let (ta, tb) = (read_tensors(a), read_tensors(b));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    let mut inexact = vec![];
    for (name, x) in &ta {
        let y = &tb[name];
        assert_eq!((x.dtype, &x.shape), (y.dtype, &y.shape), "{name}");
        if x.data != y.data {
            let diff = x.f32s().iter().zip(y.f32s()).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
            assert!(diff <= 1e-6, "{name}: resumed and uninterrupted differ by {diff}");
            inexact.push(name.clone());
        }
    }
    if !inexact.is_empty() {
        println!("{}: {} tensors equal within 1e-6 but not bitwise", b.display(), inexact.len());
    }
    assert_eq!(read_metadata(a), read_metadata(b));
}

/// Runs `args --out <dir>/stopped-N --stop-after-epochs N` (exit 3, checkpoint left), then
/// `--resume`: the run must end as the uninterrupted run `full` (same `args`) ended.
fn check_resume(command: &str, args: &[String], stop: usize, full: &Path, dir: &Path) {
    assert!(!full.join("checkpoint.safetensors").exists());
    let resumed = dir.join(format!("stopped-{stop}"));
    snl()
        .args(args)
        .arg("--out")
        .arg(&resumed)
        .args(["--stop-after-epochs", &stop.to_string()])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(format!(
            "stopped after {stop} epochs as asked; resume with --resume"
        )));
    assert!(resumed.join("checkpoint.safetensors").is_file(), "the stopped run keeps its checkpoint");
    assert!(!resumed.join("result.json").exists() && !resumed.join("model.safetensors").exists());
    assert_eq!(metrics_without_time(&resumed).len(), stop);
    // An unfinished run folder is not reused as a new run's --out.
    snl()
        .args(args)
        .arg("--out")
        .arg(&resumed)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("unfinished run").and(predicate::str::contains("--resume")));

    // The run folder names its data and settings: --resume needs nothing else.
    snl()
        .args([command, "--resume", resumed.to_str().unwrap()])
        .assert()
        .success()
        .stderr(predicate::str::contains(format!("resuming {}", resumed.display())))
        .stderr(predicate::str::contains("not bit-identically").not());
    assert!(!resumed.join("checkpoint.safetensors").exists());
    assert_same_model(&full.join("model.safetensors"), &resumed.join("model.safetensors"));
    assert_same_model(&full.join("best.safetensors"), &resumed.join("best.safetensors"));
    assert_eq!(result_without_time(full), result_without_time(&resumed));
    assert_eq!(metrics_without_time(full), metrics_without_time(&resumed));

    // A finished run is not resumed again.
    snl()
        .args([command, "--resume", resumed.to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("finished already"));
}

/// `-q` off: the resume line goes to stderr.
fn loud(args: Vec<String>) -> Vec<String> {
    args.into_iter().filter(|a| a != "-q").collect()
}

#[test]
fn train_resumed_after_an_epoch_matches_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let args = loud(train_args(3));
    let full = tmp.path().join("uninterrupted");
    snl().args(&args).arg("--out").arg(&full).assert().success();
    check_resume("train", &args, 1, &full, tmp.path());
}

/// The flags of the linearizations below: 2 finetuning epochs.
fn linearize_flags() -> Vec<String> {
    loud(linearize_args(&baseline_model(), "10%", 2))
}

/// The uninterrupted linearization, shared by the tests below (they run in parallel).
fn uninterrupted_linearization() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let full = scratch_root().join("linearize-uninterrupted");
        snl().args(linearize_flags()).arg("--out").arg(&full).assert().success();
        full
    })
}

fn search_epochs(run: &Path) -> usize {
    read_json(&run.join("result.json"))["search_epochs"].as_u64().unwrap() as usize
}

#[test]
fn linearize_resumed_during_the_search_matches_an_uninterrupted_run() {
    let full = uninterrupted_linearization();
    assert!(search_epochs(full) >= 2, "the search takes 2 epochs or more, so 1 stops inside it");
    let tmp = tempfile::tempdir().unwrap();
    check_resume("linearize", &linearize_flags(), 1, full, tmp.path());
}

#[test]
fn linearize_resumed_during_finetuning_matches_an_uninterrupted_run() {
    let full = uninterrupted_linearization();
    let search = search_epochs(full);
    let metrics = metrics_without_time(full);
    assert_eq!(metrics.len(), search + 2);
    assert_eq!(metrics[search]["phase"], "finetune");
    let tmp = tempfile::tempdir().unwrap();
    // Stopped after the first finetuning epoch, whatever the search took.
    check_resume("linearize", &linearize_flags(), search + 1, full, tmp.path());
}

#[test]
fn a_resume_without_a_checkpoint_starts_over_without_duplicating_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let args = loud(train_args(2));
    let full = tmp.path().join("uninterrupted");
    snl().args(&args).arg("--out").arg(&full).assert().success();
    // Killed after logging its first epoch, before its first checkpoint.
    let killed = tmp.path().join("killed");
    std::fs::create_dir_all(&killed).unwrap();
    std::fs::copy(full.join("config.json"), killed.join("config.json")).unwrap();
    let metrics = std::fs::read_to_string(full.join("metrics.jsonl")).unwrap();
    std::fs::write(killed.join("metrics.jsonl"), format!("{}\n", metrics.lines().next().unwrap())).unwrap();
    snl()
        .args(["train", "--resume", killed.to_str().unwrap()])
        .assert()
        .success()
        .stderr(predicate::str::contains(format!("{} has no checkpoint yet", killed.display())));
    assert_eq!(metrics_without_time(&full), metrics_without_time(&killed));
    assert_same_model(&full.join("model.safetensors"), &killed.join("model.safetensors"));
}

/// A checkpoint records the numerics it was saved with (threads, instruction set); a resume
/// under others continues, with a warning that it is no longer bit-identical.
#[test]
fn a_resume_with_other_threads_says_it_is_not_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let args = with_flag(train_to(&run, &["--stop-after-epochs", "1"]), "--epochs", "2");
    snl().args(&args).assert().code(3);
    let saved = read_metadata(&run.join("checkpoint.safetensors"))["snl_numerics"].clone();
    assert!(saved.starts_with("1 threads, "), "{saved}");
    let mut two = assert_cmd::Command::cargo_bin("snl").unwrap();
    two.args(["--threads", "2", "train", "--resume", s(&run)]).env("HF_HUB_OFFLINE", "1");
    let output = two.output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let warning = format!("was saved with {saved}, this process runs 2 threads");
    assert!(
        stderr(&output).contains(&warning) && stderr(&output).contains("not bit-identically"),
        "{}",
        stderr(&output)
    );
}
