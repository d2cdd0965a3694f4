//! Runs that go wrong after they start: a NaN loss, a resume with other settings or an
//! edited config, two processes on one folder, NaN weights at evaluation. Each is one clear
//! `error:` line (or a warning), and the last saved checkpoint is kept.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// Sets `key` (a dotted path) of a run's config.json to `value`.
fn edit_config(run: &Path, key: &str, value: serde_json::Value) {
    let path = run.join("config.json");
    let mut config = read_json(&path);
    let mut slot = &mut config;
    for part in key.split('.') {
        slot = slot.get_mut(part).unwrap_or_else(|| panic!("no {key} in config.json"));
    }
    *slot = value;
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

/// Sets the stem weights of the run's checkpoint to the largest f32 (finite, so the
/// checkpoint loads, but its next epoch's loss is NaN) and returns the checkpoint's bytes
/// before. The file is written without a checksum, as older builds wrote them.
fn poison_checkpoint(run: &Path) -> Vec<u8> {
    let path = run.join("checkpoint.safetensors");
    let good = std::fs::read(&path).unwrap();
    let mut tensors = read_tensors(&path);
    let stem = tensors.get_mut("conv1.weight").unwrap();
    stem.data = stem.f32s().iter().flat_map(|_| f32::MAX.to_le_bytes()).collect();
    write_tensors(&path, &tensors, Some(read_metadata(&path)));
    good
}

#[test]
fn a_nan_loss_in_the_first_epoch_stops_with_nothing_saved() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    fails(
        &refs(&train_to(&out, &["--lr", "1e10"])),
        1,
        &["the loss became NaN at epoch 1", "nothing was saved"],
    );
    assert!(!out.join("checkpoint.safetensors").exists() && !out.join("result.json").exists());
}

#[test]
fn a_nan_loss_keeps_the_last_saved_checkpoint_and_names_the_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut args = train_to(&out, &["--stop-after-epochs", "1"]);
    let epochs = args.iter().position(|a| a == "--epochs").unwrap() + 1;
    args[epochs] = "3".into();
    snl().args(&args).assert().code(3);
    let checkpoint = out.join("checkpoint.safetensors");
    let best = std::fs::read(out.join("best.safetensors")).unwrap();
    // The run diverges in its second epoch: huge weights in its checkpoint.
    let good = poison_checkpoint(&out);
    let poisoned = std::fs::read(&checkpoint).unwrap();
    fails(
        &["train", "--resume", s(&out)],
        1,
        &[
            "the loss became NaN at epoch 2",
            "last saved state (after epoch 1)",
            &format!("kept in {}", checkpoint.display()),
        ],
    );
    assert_eq!(std::fs::read(&checkpoint).unwrap(), poisoned, "the last checkpoint changed");
    assert_eq!(std::fs::read(out.join("best.safetensors")).unwrap(), best);
    assert!(!out.join("result.json").exists() && !out.join("model.safetensors").exists());
    // The kept state still loads: the best model counts, and the run resumes once fixed.
    snl().args(["count", "--model", s(&out.join("best.safetensors")), "--json"]).assert().success();
    std::fs::write(&checkpoint, good).unwrap();
    snl().args(["train", "--resume", s(&out), "-q"]).assert().success();
    assert_eq!(metrics_without_time(&out).len(), 3);
}

#[test]
fn a_nan_loss_during_linearize_keeps_the_last_saved_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut args = linearize_args(&baseline_model(), "10%", 1);
    args.extend(["--out".to_string(), s(&out).to_string(), "--stop-after-epochs".into(), "1".into()]);
    snl().args(&args).assert().code(3);
    let checkpoint = out.join("checkpoint.safetensors");
    let good = poison_checkpoint(&out);
    let poisoned = std::fs::read(&checkpoint).unwrap();
    fails(
        &["linearize", "--resume", s(&out)],
        1,
        &["non-finite in epoch 2", "after epoch 1", &format!("kept in {}", checkpoint.display()), "NaN"],
    );
    assert_eq!(std::fs::read(&checkpoint).unwrap(), poisoned);
    assert!(!out.join("result.json").exists());
    std::fs::write(&checkpoint, good).unwrap();
    snl().args(["linearize", "--resume", s(&out), "-q"]).assert().success();
}

#[test]
fn a_resumed_run_refuses_another_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let trained = tmp.path().join("train");
    snl().args(train_to(&trained, &["--stop-after-epochs", "1"])).assert().code(3);
    let linearized = tmp.path().join("linearize");
    let mut args = linearize_args(&baseline_model(), "10%", 1);
    args.extend(["--out".to_string(), s(&linearized).to_string(), "--stop-after-epochs".into(), "1".into()]);
    snl().args(&args).assert().code(3);
    for (command, run) in [("train", &trained), ("linearize", &linearized)] {
        let before = snapshot(run);
        let needles = ["--seed 7", &format!("the seed 0 of {}", run.display())];
        fails(&["--seed", "7", command, "--resume", s(run)], 2, &needles);
        assert_eq!(snapshot(run), before, "a refused resume changed the run");
    }
    // The recorded seed itself is no conflict.
    snl().args(["--seed", "0", "train", "--resume", s(&trained), "-q"]).assert().success();
}

/// A copy of the baseline model with every value of the tensors named in `names` set to `value`.
fn model_with(dir: &Path, name: &str, names: &[&str], value: f32) -> PathBuf {
    let model = baseline_model();
    let mut tensors = read_tensors(&model);
    for n in names {
        let t = tensors.get_mut(*n).unwrap_or_else(|| panic!("no {n}"));
        t.data = t.f32s().iter().flat_map(|_| value.to_le_bytes()).collect();
    }
    let path = dir.join(name);
    write_tensors(&path, &tensors, Some(read_metadata(&model)));
    path
}

fn eval_json(model: &Path) -> (serde_json::Value, String) {
    let output = snl()
        .args(["eval", "--model", s(model), "--dataset", "synthetic", "--batch-size", "100", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    (stdout_json(&output), stderr(&output))
}

#[test]
fn a_constant_output_scores_chance_and_a_nan_output_scores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // A head of zeros gives all 10 classes the same logit: a tie is broken at random (in
    // expectation), so the model scores chance, 10% top-1 and 50% top-5, not 100%.
    let zeros = model_with(tmp.path(), "zeros.safetensors", &["linear.weight", "linear.bias"], 0.0);
    let (metrics, err) = eval_json(&zeros);
    let (top1, top5) = (metrics["top1"].as_f64().unwrap(), metrics["top5"].as_f64().unwrap());
    assert!((top1 - 10.0).abs() < 1e-9 && (top5 - 50.0).abs() < 1e-9, "{metrics}");
    assert!((metrics["loss"].as_f64().unwrap() - 10f64.ln()).abs() < 1e-4, "{metrics}");
    assert!(!err.contains("warning"), "{err}");
    // NaN weights: every logit NaN, every sample wrong, and a warning.
    let nan = model_with(tmp.path(), "nan.safetensors", &["linear.weight"], f32::NAN);
    let (metrics, err) = eval_json(&nan);
    assert_eq!((metrics["top1"].as_f64(), metrics["top5"].as_f64()), (Some(0.0), Some(0.0)), "{metrics}");
    assert_eq!(metrics["nonfinite"].as_u64(), Some(200), "{metrics}");
    assert!(err.contains("warning: 200 of 200 images got a NaN or infinite logit"), "{err}");
}

#[test]
fn an_edited_config_is_refused_on_resume_naming_the_changed_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    snl().args(train_to(&out, &["--stop-after-epochs", "1"])).assert().code(3);
    let original = std::fs::read(out.join("config.json")).unwrap();
    edit_config(&out, "sgd.lr", 0.2.into());
    edit_config(&out, "epochs", 5.into());
    edit_config(&out, "seed", 3.into());
    let before = snapshot(&out);
    fails(
        &["train", "--resume", s(&out)],
        1,
        &[&format!("{} was edited", out.join("config.json").display()), "changed: epochs, seed, sgd.lr"],
    );
    assert_eq!(snapshot(&out), before, "a refused resume changed the run");
    // The file as it was (formatting aside) resumes.
    let value: serde_json::Value = serde_json::from_slice(&original).unwrap();
    std::fs::write(out.join("config.json"), serde_json::to_string(&value).unwrap()).unwrap();
    snl().args(["train", "--resume", s(&out), "-q"]).assert().success();
    assert_eq!(metrics_without_time(&out).len(), 2);
}

#[test]
fn a_run_folder_is_worked_on_by_one_process_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut args = train_to(&out, &["--stop-after-epochs", "1"]);
    let epochs = args.iter().position(|a| a == "--epochs").unwrap() + 1;
    args[epochs] = "500".into();
    snl().args(&args).assert().code(3);
    let lock = out.join(".snl.lock");
    assert!(!lock.exists(), "the lock outlived its run");
    // A long resume holds the folder (its lock file names it once taken)...
    let mut first = std::process::Command::new(assert_cmd::cargo::cargo_bin("snl"))
        .args(["--threads", "1", "-q", "train", "--resume", s(&out)])
        .env("HF_HUB_OFFLINE", "1")
        .spawn()
        .unwrap();
    let pid = first.id().to_string();
    let mut polls = 0;
    // The lock file holds the pid as a line of its own.
    while std::fs::read_to_string(&lock).unwrap_or_default() != format!("{pid}\n") {
        assert!(first.try_wait().unwrap().is_none(), "the first resume ended early");
        polls += 1;
        assert!(polls < 6000, "the first resume never took the lock");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // ...so a second is refused, naming the first's pid.
    let second = fails(
        &["train", "--resume", s(&out)],
        1,
        &[&format!("{} is in use by another snl process (pid {pid})", out.display())],
    );
    // A new run there is told the same, not to resume what another process is running.
    let err =
        fails(&refs(&train_to(&out, &[])), 1, &[&format!("another snl process (pid {pid}) is working on")]);
    assert!(!err.contains("--resume"), "{err}");
    first.kill().unwrap();
    first.wait().unwrap();
    // A killed run's lock file is left behind, and is no obstacle.
    assert!(lock.exists(), "{second}");
    snl().args(["train", "--resume", s(&out), "-q", "--stop-after-epochs", "1"]).assert().code(3);
}

#[test]
fn a_resume_that_changed_the_cap_and_failed_can_still_be_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let capped = |cap: &str, extra: &[&str]| {
        let mut args = with_flag(linearize_args(&baseline_model(), "10%", 1), "--max-search-epochs", cap);
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let run = tmp.path().join("run");
    fails(&refs(&capped("2", &["--out", s(&run)])), 1, &["gave up after 2 epochs"]);
    // A cap below the epochs searched is refused before anything changes.
    let before = snapshot(&run);
    fails(
        &["linearize", "--resume", s(&run), "--max-search-epochs", "1"],
        2,
        &["--max-search-epochs 1 is below the 2 search epochs", "--finish-at-cap"],
    );
    assert_eq!(snapshot(&run), before, "a refused resume changed the run");
    // A resume raising the cap writes config.json, then fails before its next checkpoint...
    let good = poison_checkpoint(&run);
    fails(&["linearize", "--resume", s(&run), "--max-search-epochs", "3"], 1, &["non-finite in epoch 3"]);
    assert_eq!(read_json(&run.join("config.json"))["snl"]["max_search_epochs"], 3);
    std::fs::write(run.join("checkpoint.safetensors"), good).unwrap();
    // ...and the run still resumes, ending as a run given that cap from the start.
    let output = snl().args(["linearize", "--resume", s(&run), "-q", "--finish-at-cap"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let full = tmp.path().join("full");
    snl().args(capped("3", &["--finish-at-cap", "--out", s(&full)])).assert().success();
    assert_eq!(result_without_time(&run), result_without_time(&full));
    assert_eq!(metrics_without_time(&run), metrics_without_time(&full));
    // The search ended above its budget: result.json and a warning say so.
    let result = read_json(&run.join("result.json"));
    assert!(result["relu_count"].as_u64() > result["budget"].as_u64(), "{result}");
    assert_eq!(result["within_budget"], false);
    let err = stderr(&output);
    assert!(err.contains(&format!("warning: {} keeps ", run.display())), "{err}");
    assert!(err.contains("over its budget of 768") && err.contains("within_budget: false"), "{err}");
    // A run within its budget says so.
    assert_eq!(read_json(&linearized().join("result.json"))["within_budget"], true);
}

/// Applies `edit` to the run's config.json and to the copy its checkpoint holds.
fn edit_config_and_checkpoint(run: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let mut config = read_json(&run.join("config.json"));
    edit(&mut config);
    std::fs::write(run.join("config.json"), serde_json::to_string(&config).unwrap()).unwrap();
    let path = run.join("checkpoint.safetensors");
    let mut metadata = read_metadata(&path);
    let mut config: serde_json::Value = serde_json::from_str(&metadata["snl_config"]).unwrap();
    edit(&mut config);
    metadata.insert("snl_config".into(), config.to_string());
    write_tensors(&path, &read_tensors(&path), Some(metadata));
}

#[test]
fn a_control_resumed_on_fewer_training_images_is_refused_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    image_folder(&data, "train", &["ant", "bee"], 12);
    image_folder(&data, "test", &["ant", "bee"], 2);
    let folder = ["--dataset", "folder", "--data-dir", s(&data), "--batch-size", "4"];
    let teacher = tmp.path().join("teacher");
    snl()
        .args(["train", "--arch", "resnet18", "--width", "4", "--epochs", "1", "--val-size", "0", "-q"])
        .args(folder)
        .args(["--out", s(&teacher)])
        .assert()
        .success();
    let run = tmp.path().join("random");
    snl()
        .args(["linearize", "--model", s(&teacher.join("model.safetensors")), "--budget", "10%", "-q"])
        .args(folder)
        .args(["--selection", "random", "--search-epochs", "2", "--finetune-epochs", "1"])
        .args(["--out", s(&run), "--stop-after-epochs", "1"])
        .assert()
        .code(3);
    assert_eq!(read_json(&run.join("config.json"))["data"]["train_images"], 24);
    // 10 images left: the 6 steps done are all the 2 epochs of 3 batches would now take.
    for class in ["ant", "bee"] {
        for i in 5..12 {
            std::fs::remove_file(data.join("train").join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    let before = snapshot(&run);
    let needles = [
        &format!("{}: the run started on 24 training images", run.display()) as &str,
        &format!("the folder data in {} now gives 10", data.display()),
    ];
    fails(&["linearize", "--resume", s(&run)], 1, &needles);
    assert_eq!(snapshot(&run), before, "a refused resume changed the run");
    // As an older build recorded it: the training split's size after the hold-out.
    edit_config_and_checkpoint(&run, |c: &mut serde_json::Value| {
        c["data"].as_object_mut().unwrap().remove("train_images").unwrap();
        c["train_size"] = 24.into();
    });
    fails(&["linearize", "--resume", s(&run)], 1, &needles);
    // A run made before the size was recorded: its steps no longer fit, and it says so.
    edit_config_and_checkpoint(&run, |c: &mut serde_json::Value| {
        c.as_object_mut().unwrap().remove("train_size").unwrap();
    });
    fails(&["linearize", "--resume", s(&run)], 1, &["6 frozen-mask steps done", "asks for 6 in all"]);
}

#[test]
fn an_overflowing_lasso_weight_is_shown_with_the_terms() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = with_flag(linearize_args(&baseline_model(), "10%", 1), "--lasso", "1e38");
    args.extend(["--out".into(), s(&tmp.path().join("run")).into()]);
    fails(&refs(&args), 1, &["loss became inf", &format!("lasso {W4_TOTAL} x lambda 1e38)")]);
}
