//! Bad input: one clear `error:` line, exit 2 for usage and 1 for failures, and never a new
//! or overwritten result. Bad model files have their own file, `bad_models.rs`.

mod common;

use std::path::Path;

use common::*;

#[test]
fn unknown_flags_and_values_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let model = baseline_model();
    fails(&["count", "--arch", "resnet18", "--bogus"], 2, &["unexpected argument '--bogus'"]);
    fails(&["frobnicate"], 2, &["unrecognized subcommand 'frobnicate'"]);
    fails(&["count", "--arch", "resnet99"], 2, &["--arch resnet99", "resnet18"]);
    fails(&["count", "--arch", "resnet18", "--granularity", "voxel"], 2, &["voxel"]);
    fails(&["count", "--arch", "resnet18", "--width", "four"], 2, &["four"]);
    fails(&["count", "--arch", "wrn-16-8", "--stem-relu"], 2, &["--stem-relu"]);
    fails(&["count"], 2, &["--model", "--arch"]);
    fails(&["--threads", "0", "count", "--arch", "resnet18"], 2, &["--threads"]);
    fails(
        &["--seed", "3", "count", "--arch", "resnet18"],
        2,
        &["--seed 3: `snl count` draws nothing at random"],
    );
    fails(&refs(&train_to(&out, &["--schedule", "bogus"])), 2, &["bogus"]);
    fails(&refs(&train_to(&out, &["--lr", "0"])), 2, &["--lr"]);
    fails(&refs(&train_to(&out, &["--epochs", "0"])), 2, &["--epochs"]);
    fails(&refs(&train_to(&out, &["--batch-size", "0"])), 2, &["--batch-size"]);
    fails(&["train", "--arch", "resnet18", "--dataset", "imagenet22k", "--out", s(&out)], 2, &["--dataset"]);
    fails(&["train", "--arch", "resnet18", "--out", s(&out)], 2, &["--dataset"]);
    fails(&["train", "--dataset", "synthetic", "--out", s(&out)], 2, &["--arch"]);
    // eval takes the dataset its model records; a model that records none needs --dataset.
    let unnamed = edited_model(tmp.path(), |_, meta| {
        meta.remove("dataset");
    });
    fails(&["eval", "--model", s(&unnamed)], 2, &["--dataset is required"]);
    let unknown = edited_model(tmp.path(), |_, meta| {
        meta.insert("dataset".into(), "imagenet22k".into());
    });
    fails(
        &["eval", "--model", s(&unknown)],
        2,
        &["trained on dataset `imagenet22k`, which this snl does not know"],
    );
    let lin = |budget: &str| {
        let mut args = linearize_args(&model, budget, 1);
        args.extend(["--out".to_string(), s(&out).to_string()]);
        args
    };
    fails(&refs(&lin("ten")), 2, &["--budget ten"]);
    fails(&refs(&lin("1.5")), 2, &["--budget 1.5"]);
    let mut with_flags = lin("10%");
    with_flags.extend(["--width".to_string(), "4".to_string()]);
    fails(&refs(&with_flags), 2, &["describes its own model", "drop the model flags"]);
    // A resumed run keeps its own configuration: other settings are refused, not ignored.
    fails(&["train", "--resume", s(&out), "--epochs", "5"], 2, &["--resume", "--epochs"]);
    fails(&["linearize", "--resume", s(&out), "--budget", "5k"], 2, &["--resume", "--budget"]);
    assert!(!out.exists(), "a refused command created its run folder");
}

#[test]
fn a_budget_at_or_above_the_relus_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let total = W4_TOTAL.to_string();
    for budget in [total.as_str(), "100k", "7681"] {
        let mut args = linearize_args(&baseline_model(), budget, 1);
        args.extend(["--out".to_string(), s(&out).to_string()]);
        fails(&refs(&args), 2, &[&format!("network's {total} ReLUs")]);
    }
    assert!(!out.exists());
}

#[test]
fn cuda_on_a_cpu_build_says_how_to_rebuild() {
    if cfg!(feature = "cuda") {
        return;
    }
    fails(&["--device", "cuda", "count", "--arch", "resnet18"], 2, &["--device cuda", "--features cuda"]);
    fails(&["--device", "cuda:x", "count", "--arch", "resnet18"], 2, &["cuda:x"]);
    fails(&["--device", "tpu", "count", "--arch", "resnet18"], 2, &["--device tpu"]);
}

#[test]
fn a_dataset_that_cannot_be_found_says_where_it_looked() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("no-data-here");
    std::fs::create_dir_all(&data_dir).unwrap();
    let hf_home = tmp.path().join("hf");
    let out = tmp.path().join("run");
    let run = |args: &[&str]| {
        let output = snl().env("HF_HOME", &hf_home).arg("-q").args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        stderr(&output)
    };
    let err = run(&[
        "train",
        "--arch",
        "resnet18",
        "--width",
        "4",
        "--dataset",
        "cifar10",
        "--data-dir",
        s(&data_dir),
        "--offline",
        "--epochs",
        "1",
        "--out",
        s(&out),
    ]);
    assert!(err.starts_with("error: cannot load cifar10"), "{err}");
    for needle in [
        data_dir.to_str().unwrap(),                                // where it looked
        "cifar-10-binary.tar.gz",                                  // what to get
        "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", // and from where
    ] {
        assert!(err.contains(needle), "no `{needle}` in: {err}");
    }
    // --data-dir is the only place looked in: not the Hub cache too.
    assert!(!err.contains(hf_home.to_str().unwrap()), "{err}");
    assert!(!out.exists(), "a run folder was made for data that is not there");
    let err = run(&["eval", "--model", s(&baseline_model()), "--dataset", "cifar100", "--offline"]);
    assert!(err.contains("cifar100") || err.contains("CIFAR-100"), "{err}");
    assert!(err.contains(hf_home.to_str().unwrap()) && err.contains("HF_HOME"), "{err}");
    let err =
        run(&["eval", "--model", s(&baseline_model()), "--dataset", "folder", "--data-dir", s(&data_dir)]);
    assert!(err.contains(data_dir.to_str().unwrap()), "{err}");
    assert!(
        !hf_home.join("hub").read_dir().is_ok_and(|mut d| d.next().is_some()),
        "the Hub cache was written"
    );
}

#[test]
fn a_finished_run_is_never_overwritten() {
    let run = baseline();
    let before = snapshot(run);
    let needle = format!("{} holds a finished run", run.display());
    fails(&refs(&train_to(run, &[])), 1, &[&needle, "nothing was overwritten"]);
    let mut args = linearize_args(&baseline_model(), "10%", 1);
    args.extend(["--out".to_string(), s(run).to_string()]);
    fails(&refs(&args), 1, &[&needle]);
    fails(&["train", "--resume", s(run)], 1, &["finished already"]);
    assert_eq!(snapshot(run), before, "a refused command changed the finished run");

    // import never replaces a file.
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("model.safetensors");
    std::fs::write(&target, "precious").unwrap();
    let pth = Path::new(env!("CARGO_MANIFEST_DIR")).join("../snl-models/tests/data/resnet18_w4.pth.tar");
    fails(
        &["import", "--pth", s(&pth), "--arch", "resnet18", "--width", "4", "--out", s(&target)],
        1,
        &["exists"],
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
}

#[test]
fn predict_never_replaces_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model.safetensors");
    std::fs::copy(baseline_model(), &model).unwrap();
    let before = std::fs::read(&model).unwrap();
    let input = tmp.path().join("x.safetensors");
    write_input(&input, 2, 16);
    // Not even the model itself.
    let needle = format!("{} exists", model.display());
    fails(&["predict", "--model", s(&model), "--input", s(&input), "--output", s(&model)], 1, &[&needle]);
    assert_eq!(std::fs::read(&model).unwrap(), before, "predict overwrote the model");
    let other = tmp.path().join("logits.safetensors");
    std::fs::write(&other, "precious").unwrap();
    fails(&["predict", "--model", s(&model), "--input", s(&input), "--output", s(&other)], 1, &["exists"]);
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "precious");
}

#[test]
fn a_new_run_never_writes_into_a_folder_with_files() {
    // The teacher's own folder: linearizing it there would overwrite best.safetensors.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("teacher");
    std::fs::create_dir_all(&dir).unwrap();
    let teacher = dir.join("best.safetensors");
    std::fs::copy(baseline_model(), &teacher).unwrap();
    let before = snapshot(&dir);
    let needle = format!("{} exists and is not an empty folder", dir.display());
    let mut args = linearize_args(&teacher, "10%", 1);
    args.extend(["--out".to_string(), s(&dir).to_string()]);
    fails(&refs(&args), 1, &[&needle, "--resume"]);
    fails(&refs(&train_to(&dir, &[])), 1, &[&needle]);
    assert_eq!(snapshot(&dir), before, "a refused run changed the folder");
}

#[test]
fn export_checks_its_folder_and_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("bundle");
    std::fs::write(&file, "precious").unwrap();
    let model = baseline_model();
    fails(&["export", "--model", s(&model), "--out", s(&file)], 1, &[&format!("{} exists", file.display())]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");
    let out = tmp.path().join("out");
    for bad in ["2", "1"] {
        let args = ["export", "--model", s(&model), "--threshold", bad, "--out", s(&out)];
        fails(&args, 2, &[&format!("--threshold {bad}"), "[0, 1)"]);
    }
    assert!(!out.exists(), "a refused export wrote its folder");
    // A link (dangling, or to an empty folder) is named as such, not blamed on another process.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for (name, target) in [("dangling", tmp.path().join("nowhere")), ("to-empty", empty.clone())] {
        let link = tmp.path().join(name);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        fails(&["export", "--model", s(&model), "--out", s(&link)], 1, &["a symbolic link"]);
    }
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

#[test]
fn a_budget_fraction_must_be_below_100_percent() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    for budget in ["100%", "0%", "150%"] {
        let mut args = linearize_args(&baseline_model(), budget, 1);
        args.extend(["--out".to_string(), s(&out).to_string()]);
        let err =
            fails(&refs(&args), 2, &[&format!("--budget {budget}"), "below 100%", "fewer than the network"]);
        assert!(!err.contains("(0, 1]"), "{err}");
    }
    // A fraction too small to keep one ReLU is named in a few characters, not 300 digits.
    let mut args = linearize_args(&baseline_model(), "1e-300", 1);
    args.extend(["--out".to_string(), s(&out).to_string()]);
    let err = fails(&refs(&args), 2, &["--budget 1.000e-298%: budget must keep at least one ReLU"]);
    assert!(err.len() < 200, "{err}");
    assert!(!out.exists());
}

#[test]
fn a_model_that_does_not_fit_the_data_is_refused_before_its_run_folder_is_made() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    // The synthetic images are 16x16.
    let needles = ["--image-size 32", "32x32 images", "synthetic data has 10 classes of 16x16 images"];
    fails(&refs(&train_to(&out, &["--image-size", "32"])), 2, &needles);
    assert!(!out.exists(), "a refused train made its run folder");
    snl().args(train_to(&out, &[])).assert().success();
}

#[test]
fn train_flags_fail_before_any_data_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    // CIFAR-10 is not in the tests' Hub cache: reading it would fail first.
    let data = ["train", "--arch", "resnet18", "--dataset", "cifar10", "--offline", "--out", s(&out)];
    for flag in ["--epochs=0", "--lr=-1", "--momentum=1", "--weight-decay=-1"] {
        let name = flag.split('=').next().unwrap();
        fails(&[&data[..], &[flag]].concat(), 2, &[name]);
    }
    assert!(!out.exists());
}

#[test]
fn val_size_is_refused_for_the_synthetic_data() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let needles = ["--val-size 999999", "synthetic data has its own validation set"];
    fails(&refs(&train_to(&out, &["--val-size", "999999"])), 2, &needles);
    // (--split val: on the test split, which holds nothing out, the flag is refused first.)
    let model = baseline_model();
    let eval = ["eval", "--model", s(&model), "--dataset", "synthetic", "--split", "val", "--val-size", "10"];
    fails(&eval, 2, &["--val-size 10", "synthetic data has its own validation set"]);
    assert!(!out.exists());
}

#[test]
fn a_model_too_large_to_build_is_an_error_not_an_abort() {
    fails(&["count", "--arch", "resnet18", "--width", "100000"], 2, &["width 100000", "would hold over"]);
    // Training on synthetic data: the error names its 16x16 images, not the default 32x32.
    let train = [
        "train",
        "--arch",
        "resnet18",
        "--width",
        "100000",
        "--dataset",
        "synthetic",
        "--out",
        "/nonexistent/x",
    ];
    fails(&train, 2, &["16x16 inputs, width 100000", "would hold over"]);
    fails(
        &["count", "--arch", "resnet18", "--image-size", "100000"],
        2,
        &["100000x100000", "would hold over"],
    );
    let tmp = tempfile::tempdir().unwrap();
    let tensors = read_tensors(&baseline_model());
    for (key, value, needle) in [
        ("image_size", "100000", "would hold over"),
        ("width", "100000", "would hold over"),
        ("classes", "4000000000", "would hold over"),
        // Within the limits, but far more than the file holds: refused before building.
        ("image_size", "3000", "that model holds at least"),
    ] {
        let mut meta = read_metadata(&baseline_model());
        meta.insert(key.into(), value.into());
        let path = tmp.path().join(format!("{key}-{value}.safetensors"));
        write_tensors(&path, &tensors, Some(meta));
        fails(&["count", "--model", s(&path)], 1, &[s(&path), needle]);
    }
}

#[test]
fn a_folder_with_a_foreign_config_is_not_called_an_unfinished_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("project");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"name": "my project", "debug": true}"#).unwrap();
    let before = snapshot(&dir);
    let err = fails(&refs(&train_to(&dir, &[])), 1, &["config.json that is not an snl run's"]);
    assert!(!err.contains("unfinished"), "{err}");
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn far_too_many_threads_are_capped_with_a_warning() {
    // Not `snl()`, which sets --threads itself.
    let output = std::process::Command::new(assert_cmd::cargo::cargo_bin("snl"))
        .args(["--threads", "100000", "count", "--arch", "resnet18", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let cores = std::thread::available_parallelism().unwrap().get();
    let needle =
        format!("warning: --threads 100000: this machine has {cores} cores; using {} threads", 4 * cores);
    assert!(stderr(&output).contains(&needle), "{}", stderr(&output));
}

#[test]
fn train_and_test_folders_must_name_the_same_classes() {
    let folder_train = |data: &Path, out: &Path| -> Vec<String> {
        let mut args = train_args(1);
        let at = args.iter().position(|a| a == "synthetic").unwrap();
        args[at] = "folder".into();
        args.extend(["--data-dir", s(data), "--val-size", "1", "--out", s(out)].map(String::from));
        args
    };
    let tmp = tempfile::tempdir().unwrap();
    for (name, test, needle) in [
        ("renamed", &["ant", "cat"][..], "only in train: bee; only in test: cat"),
        ("extra", &["ant", "bee", "cow"][..], "only in test: cow"),
    ] {
        let data = tmp.path().join(name);
        image_folder(&data, "train", &["ant", "bee"], 3);
        image_folder(&data, "test", test, 2);
        let out = tmp.path().join(format!("{name}-run"));
        fails(&refs(&folder_train(&data, &out)), 1, &["classes are not the training split's", needle]);
        assert!(!out.exists(), "a refused run made its folder");
    }
    // One class: it trains, with a warning that its accuracy means nothing.
    let data = tmp.path().join("one");
    image_folder(&data, "train", &["ant"], 3);
    image_folder(&data, "test", &["ant"], 2);
    let out = tmp.path().join("one-run");
    let output = snl().args(folder_train(&data, &out)).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("warning: the folder data has a single class"), "{}", stderr(&output));
}

#[test]
fn bad_linearize_values_are_refused_naming_their_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let model = baseline_model();
    // Each value as given, negative ones included (clap takes them as values, not flags).
    let bad = [
        ("--max-search-epochs", "0"),
        ("--lasso", "NaN"),
        ("--lasso", "inf"),
        ("--lasso", "0"),
        ("--lasso", "-1"),
        ("--kappa", "-1"),
        ("--threshold", "1"),
        ("--temperature", "0"),
        ("--search-lr", "-1"),
        ("--finetune-lr", "0"),
        ("--finetune-weight-decay", "-1"),
        ("--budget", "-5"),
        ("--budget", "-5%"),
    ];
    for (flag, value) in bad {
        let mut args = with_flag(linearize_args(&model, "10%", 1), flag, value);
        args.extend(["--out".into(), s(&out).into()]);
        let err = fails(&refs(&args), 2, &[&format!("{flag} {value}: ")]);
        assert!(!err.contains(s(&model)), "blames the model: {err}");
    }
    assert!(!out.exists(), "a refused command created its run folder");
}

#[test]
fn a_control_longer_than_the_search_epoch_cap_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    // linearize_args caps the search at 30 epochs; the synthetic set has 10 batches of 100.
    // (Without the check the first trains 31 epochs, the last until killed.)
    for (flag, value, needle) in [
        ("--search-steps", "301", "needs 31 epochs of 10 batches"),
        ("--search-epochs", "31", "needs 31 epochs"),
        ("--search-steps", "18446744073709551615", "needs 1844674407370955162 epochs of 10 batches"),
    ] {
        let mut args = linearize_args(&baseline_model(), "10%", 1);
        args.extend([flag, value, "--selection", "random", "--out", s(&out)].map(String::from));
        fails(&refs(&args), 2, &[&format!("{flag} {value} "), needle, "--max-search-epochs 30"]);
    }
    assert!(!out.exists(), "a refused command created its run folder");
}

#[test]
fn a_resume_of_the_other_commands_run_names_the_command_that_resumes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let trained = tmp.path().join("train");
    snl().args(train_to(&trained, &["--stop-after-epochs", "1"])).assert().code(3);
    let linearized = tmp.path().join("linearize");
    let mut args = linearize_args(&baseline_model(), "10%", 1);
    args.extend(["--out", s(&linearized), "--stop-after-epochs", "1"].map(String::from));
    snl().args(&args).assert().code(3);
    for (command, run, made_by) in [("linearize", &trained, "train"), ("train", &linearized, "linearize")] {
        let before = snapshot(run);
        let needles = [
            &format!("is a `snl {made_by}` run") as &str,
            &format!("`snl {made_by} --resume {}`", run.display()),
        ];
        fails(&[command, "--resume", s(run)], 1, &needles);
        assert_eq!(snapshot(run), before, "a refused resume changed the run");
    }
}

/// The test split needs no validation split: a small folder is evaluated without a word
/// about the default `--val-size` (the validation split still needs one that fits).
#[test]
fn eval_on_the_test_split_does_not_hold_out_a_validation_split() {
    let tmp = tempfile::tempdir().unwrap();
    let classes: Vec<String> = (0..10).map(|c| format!("c{c}")).collect();
    let names: Vec<&str> = classes.iter().map(String::as_str).collect();
    image_folder(tmp.path(), "train", &names, 2);
    image_folder(tmp.path(), "test", &names, 1);
    let model = baseline_model();
    let args = ["eval", "--model", s(&model), "--dataset", "folder", "--data-dir", s(tmp.path())];
    let output = snl().args(args).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let mut val = args.to_vec();
    val.extend(["--split", "val"]);
    fails(&val, 2, &["folder: a validation split of 5000 images", "its 20 training images", "default 5000"]);
}

/// A warm-up as long as the search cap leaves lambda at its first value: said at the start,
/// not discovered when the search stops at its cap.
#[test]
fn a_warmup_as_long_as_the_search_cap_is_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = linearize_args(&baseline_model(), "25%", 0);
    let set = |args: &mut Vec<String>, flag: &str, value: &str| {
        let at = args.iter().position(|a| a == flag).unwrap();
        args[at + 1] = value.into();
    };
    set(&mut args, "--warmup-epochs", "2");
    set(&mut args, "--max-search-epochs", "1");
    args.extend(["--out".into(), s(&tmp.path().join("run")).into()]);
    let output = snl().args(&args).output().unwrap();
    let needle = "warning: --warmup-epochs 2 is not below the search cap of 1 epochs: lambda stays at 2e-2";
    assert!(stderr(&output).contains(needle), "{}", stderr(&output));
}
