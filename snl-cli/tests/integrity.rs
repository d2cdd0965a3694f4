//! Damaged or edited run files on `--resume`: a metrics log cut off or missing lines, a
//! checkpoint whose bytes or resume state changed, NaN weights. Each is refused with one
//! `error:` line naming the file, and nothing in the run folder changes; a checkpoint
//! without a checksum (an older build's) still resumes.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;
use snl_models::checkpoint::CHECKSUM_KEY;

/// A training run of 3 epochs stopped after `epochs` (exit 3, checkpoint kept).
fn stopped_train(dir: &Path, epochs: usize) -> PathBuf {
    let out = dir.join(format!("train-{epochs}"));
    let args = with_flag(train_to(&out, &["--stop-after-epochs", &epochs.to_string()]), "--epochs", "3");
    snl().args(args).assert().code(3);
    out
}

/// `snl COMMAND --resume RUN` fails with one line holding every `needle`, changing nothing.
fn refused(command: &str, run: &Path, needles: &[&str]) {
    let before = snapshot(run);
    fails(&[command, "--resume", s(run)], 1, needles);
    assert_eq!(snapshot(run), before, "a refused resume changed the run");
}

/// Rewrites the checkpoint of `run` with its tensors and `metadata`.
fn rewrite_checkpoint(run: &Path, metadata: std::collections::HashMap<String, String>) {
    let path = run.join("checkpoint.safetensors");
    write_tensors(&path, &read_tensors(&path), Some(metadata));
}

/// The checkpoint's resume state with `key` set to `value`, in `metadata`.
fn edit_state(metadata: &mut std::collections::HashMap<String, String>, key: &str, value: Value) {
    let mut state: Value = serde_json::from_str(&metadata["snl_state"]).unwrap();
    state[key] = value;
    metadata.insert("snl_state".into(), state.to_string());
}

#[test]
fn a_damaged_metrics_log_is_refused_naming_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let run = stopped_train(tmp.path(), 2);
    let metrics = run.join("metrics.jsonl");
    let good = std::fs::read_to_string(&metrics).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    assert_eq!(lines.len(), 2);
    let name = metrics.display().to_string();
    let cases = [
        // Cut off in the middle of the last record.
        (format!("{}\n{}", lines[0], &lines[1][..lines[1].len() / 2]), "line 2: not a JSON record"),
        // The first record deleted: epoch 1 is where epoch 0 belongs.
        (
            format!("{}\n", lines[1]),
            "line 1: expected phase \"train\" epoch 0, found phase \"train\" epoch 1",
        ),
        // A record deleted at the end.
        (format!("{}\n", lines[0]), "line 2: missing (the file has 1 lines)"),
        (String::new(), "line 1: missing (the file has 0 lines)"),
        (
            format!("{}\n{}\n", lines[0], lines[0]),
            "line 2: expected phase \"train\" epoch 1, found phase \"train\" epoch 0",
        ),
    ];
    for (text, problem) in cases {
        std::fs::write(&metrics, &text).unwrap();
        refused("train", &run, &[&format!("{name}, line "), problem, "nothing was changed"]);
    }
    // A record cut off after the checkpointed ones (killed while logging) is dropped.
    std::fs::write(&metrics, format!("{good}{}", &lines[1][..20])).unwrap();
    snl().args(["train", "--resume", s(&run), "-q"]).assert().success();
    let epochs: Vec<u64> = metrics_without_time(&run).iter().map(|r| r["epoch"].as_u64().unwrap()).collect();
    assert_eq!(epochs, [0, 1, 2]);
}

#[test]
fn a_linearize_metrics_log_with_a_line_lost_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("linearize");
    let mut args = linearize_args(&baseline_model(), "10%", 1);
    args.extend(["--out".to_string(), s(&run).to_string(), "--stop-after-epochs".into(), "2".into()]);
    snl().args(&args).assert().code(3);
    let metrics = run.join("metrics.jsonl");
    let good = std::fs::read_to_string(&metrics).unwrap();
    let second = good.lines().nth(1).unwrap();
    std::fs::write(&metrics, format!("{second}\n")).unwrap();
    let needle = format!(
        "{}, line 1: expected phase \"search\" epoch 0, found phase \"search\" epoch 1",
        metrics.display()
    );
    refused("linearize", &run, &[&needle]);
    std::fs::write(&metrics, good).unwrap();
    snl().args(["linearize", "--resume", s(&run), "-q"]).assert().success();
}

#[test]
fn files_snl_writes_carry_a_checksum_and_flipped_bytes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let run = stopped_train(tmp.path(), 1);
    let checkpoint = run.join("checkpoint.safetensors");
    for file in [&checkpoint, &run.join("best.safetensors")] {
        let checksum = &read_raw_metadata(file)[CHECKSUM_KEY];
        assert!(checksum.len() == 8 && checksum.chars().all(|c| c.is_ascii_hexdigit()), "{checksum}");
    }
    let good = std::fs::read(&checkpoint).unwrap();
    let mut bytes = good.clone();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 64].iter_mut().for_each(|b| *b ^= 0xff);
    std::fs::write(&checkpoint, &bytes).unwrap();
    let mismatch = format!("{}: checksum mismatch: the file was modified or damaged", checkpoint.display());
    refused("train", &run, &[&mismatch]);
    // A model file is checked wherever snl reads it.
    let best = tmp.path().join("best.safetensors");
    std::fs::copy(run.join("best.safetensors"), &best).unwrap();
    let mut bytes = std::fs::read(&best).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&best, &bytes).unwrap();
    fails(&["count", "--model", s(&best)], 1, &[&format!("{}: checksum mismatch", best.display())]);
    std::fs::write(&checkpoint, good).unwrap();
    snl().args(["train", "--resume", s(&run), "-q"]).assert().success();
}

#[test]
fn an_edited_resume_state_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let run = stopped_train(tmp.path(), 2);
    let path = run.join("checkpoint.safetensors");
    let good = std::fs::read(&path).unwrap();
    let checksum = format!("{}: checksum mismatch", path.display());
    // With its checksum kept, any edit of the metadata is caught by it.
    let mut metadata = read_raw_metadata(&path);
    edit_state(&mut metadata, "epoch", 100.into());
    rewrite_checkpoint(&run, metadata);
    refused("train", &run, &[&checksum]);
    // Without one (as older builds wrote), the state itself is checked.
    let mut metadata = read_metadata(&path);
    edit_state(&mut metadata, "epoch", 100.into());
    rewrite_checkpoint(&run, metadata.clone());
    refused(
        "train",
        &run,
        &[&format!("{}: bad resume state", path.display()), "after epoch 100, but the run has 3 epochs"],
    );
    edit_state(&mut metadata, "epoch", 1.into());
    rewrite_checkpoint(&run, metadata.clone());
    refused("train", &run, &["1 epochs done, but 2 metrics lines recorded"]);
    edit_state(&mut metadata, "epoch", 2.into());
    metadata.insert("snl_metrics_lines".into(), "1".into());
    rewrite_checkpoint(&run, metadata);
    refused("train", &run, &["2 epochs done, but 1 metrics lines recorded"]);
    std::fs::write(&path, good).unwrap();
    snl().args(["train", "--resume", s(&run), "-q"]).assert().success();
    assert_eq!(read_json(&run.join("result.json"))["epochs_trained"], 3);
    assert_eq!(metrics_without_time(&run).len(), 3);
}

#[test]
fn a_checkpoint_without_a_checksum_still_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let run = stopped_train(tmp.path(), 1);
    for name in ["checkpoint.safetensors", "best.safetensors"] {
        let path = run.join(name);
        assert!(read_raw_metadata(&path).contains_key(CHECKSUM_KEY));
        write_tensors(&path, &read_tensors(&path), Some(read_metadata(&path)));
        assert!(!read_raw_metadata(&path).contains_key(CHECKSUM_KEY));
    }
    snl().args(["train", "--resume", s(&run), "-q"]).assert().success();
    assert_eq!(metrics_without_time(&run).len(), 3);
    // What the resumed run wrote carries one again.
    assert!(read_raw_metadata(&run.join("model.safetensors")).contains_key(CHECKSUM_KEY));
}

#[test]
fn nan_weights_in_a_checkpoint_are_refused_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let run = stopped_train(tmp.path(), 1);
    let path = run.join("checkpoint.safetensors");
    let good = std::fs::read(&path).unwrap();
    let mut tensors = read_tensors(&path);
    let weight = tensors.get_mut("layer1.0.conv1.weight").unwrap();
    let mut values = weight.f32s();
    values[3] = f32::NAN;
    values[5] = f32::INFINITY;
    weight.data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_tensors(&path, &tensors, Some(read_metadata(&path)));
    let needle = format!("{}: layer1.0.conv1.weight has 2 values that are not finite", path.display());
    refused("train", &run, &[&needle, "start a new run"]);
    std::fs::write(&path, good).unwrap();
    snl().args(["train", "--resume", s(&run), "-q"]).assert().success();
}

#[test]
fn a_lost_checkpoint_with_logged_epochs_is_refused_not_restarted() {
    let tmp = tempfile::tempdir().unwrap();
    let run = stopped_train(tmp.path(), 2);
    std::fs::remove_file(run.join("checkpoint.safetensors")).unwrap();
    let checkpoint = run.join("checkpoint.safetensors").display().to_string();
    refused(
        "train",
        &run,
        &[&format!("{checkpoint}: missing"), "records 2 finished epochs", "nothing was changed"],
    );
    // Killed after logging its first epoch, before the first checkpoint: it starts over.
    let metrics = run.join("metrics.jsonl");
    let first = std::fs::read_to_string(&metrics).unwrap().lines().next().unwrap().to_string();
    std::fs::write(&metrics, format!("{first}\n")).unwrap();
    snl().args(["train", "--resume", s(&run), "-q"]).assert().success();
    let epochs: Vec<u64> = metrics_without_time(&run).iter().map(|r| r["epoch"].as_u64().unwrap()).collect();
    assert_eq!(epochs, [0, 1, 2]);
}

/// `best.safetensors` is what result.json's figures come from: one deleted or replaced since
/// the checkpoint is refused at the start of the resume, not after the remaining epochs;
/// a newer best of the same run (saved by an epoch killed before its checkpoint) is fine.
#[test]
fn a_best_model_deleted_or_replaced_since_the_checkpoint_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let run = stopped_train(tmp.path(), 2);
    let best = run.join("best.safetensors");
    let name = best.display().to_string();
    let saved = std::fs::read(&best).unwrap();
    std::fs::remove_file(&best).unwrap();
    refused(
        "train",
        &run,
        &[&format!("{name}: missing, but the run's checkpoint records it"), "nothing was changed"],
    );
    // Another run's model in its place.
    std::fs::copy(baseline_model(), &best).unwrap();
    refused("train", &run, &[&format!("{name}: not the best model the run's checkpoint recorded")]);
    // This run's best, edited to say it came from an epoch before the checkpoint's, or after.
    let tensors = read_tensors_of(&saved, tmp.path());
    let mut metadata = read_metadata(&tmp.path().join("saved.safetensors"));
    metadata.remove(CHECKSUM_KEY);
    for (lines, resumes) in [("1", false), ("3", true)] {
        metadata.insert("snl_metrics_lines".into(), lines.into());
        write_tensors(&best, &tensors, Some(metadata.clone()));
        if resumes {
            snl().args(["train", "--resume", s(&run), "-q"]).assert().success();
        } else {
            refused("train", &run, &[&format!("{name}: not the best model")]);
        }
    }
}

/// The tensors of the safetensors `bytes` (written to `dir/saved.safetensors`).
fn read_tensors_of(bytes: &[u8], dir: &Path) -> std::collections::BTreeMap<String, RawTensor> {
    let path = dir.join("saved.safetensors");
    std::fs::write(&path, bytes).unwrap();
    read_tensors(&path)
}

/// A newer best of a linearize run is accepted even when the resume changes a key a resume
/// may change (`--max-search-epochs`, which rewrites config.json before the check).
#[test]
fn a_newer_best_survives_a_resume_that_changes_the_search_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("linearize");
    let mut args = linearize_args(&baseline_model(), "25%", 4);
    args.extend(["--out".to_string(), s(&run).to_string(), "--stop-after-epochs".into(), "1".into()]);
    snl().args(&args).assert().code(3);
    // Go on one epoch at a time until a finetuning epoch is checkpointed.
    for stop in 2..20 {
        let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        if metrics.contains("\"finetune\"") {
            break;
        }
        let stop = stop.to_string();
        snl().args(["linearize", "--resume", s(&run), "-q", "--stop-after-epochs", &stop]).assert().code(3);
    }
    let best = run.join("best.safetensors");
    let lines = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().count();
    let mut metadata = read_metadata(&best);
    metadata.insert("snl_metrics_lines".into(), (lines + 1).to_string());
    write_tensors(&best, &read_tensors(&best), Some(metadata));
    snl().args(["linearize", "--resume", s(&run), "-q", "--max-search-epochs", "31"]).assert().success();
}

/// A run file replaced by a FIFO is an error naming it, not a read that waits forever for a
/// writer (opening a FIFO blocks).
#[test]
fn a_run_file_that_is_a_fifo_is_refused_not_waited_on() {
    let tmp = tempfile::tempdir().unwrap();
    let run = stopped_train(tmp.path(), 1);
    for name in ["checkpoint.safetensors", "metrics.jsonl", "config.json"] {
        let path = run.join(name);
        let kept = tmp.path().join(name);
        std::fs::rename(&path, &kept).unwrap();
        if !std::process::Command::new("mkfifo").arg(&path).status().is_ok_and(|s| s.success()) {
            println!("skipped: no mkfifo here");
            return;
        }
        let output = snl()
            .args(["train", "--resume", s(&run)])
            .timeout(std::time::Duration::from_secs(120))
            .output()
            .unwrap();
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(&format!("{}: not a regular file", path.display())), "{name}: {err}");
        std::fs::remove_file(&path).unwrap();
        std::fs::rename(&kept, &path).unwrap();
    }
}
