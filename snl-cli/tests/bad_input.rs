//! Bad input: one clear `error:` line, exit 2 for usage and 1 for failures, and never a new
//! or overwritten result.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

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
fn a_missing_checkpoint_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.safetensors");
    let out = tmp.path().join("out");
    let input = tmp.path().join("x.safetensors");
    write_input(&input, 1, 16);
    let needle = format!("{}: no such file", missing.display());
    fails(&["eval", "--model", s(&missing), "--dataset", "synthetic"], 1, &[&needle]);
    fails(&["count", "--model", s(&missing)], 1, &[&needle]);
    fails(&["export", "--model", s(&missing), "--out", s(&out)], 1, &[&needle]);
    fails(&["predict", "--model", s(&missing), "--input", s(&input), "--output", s(&out)], 1, &[&needle]);
    fails(&["import", "--pth", s(&missing), "--arch", "resnet18", "--out", s(&out)], 1, &[&needle]);
    let mut args = linearize_args(&missing, "10%", 1);
    args.extend(["--out".to_string(), s(&out).to_string()]);
    fails(&refs(&args), 1, &[&needle]);
    assert!(!out.exists());
    // --resume of a folder that holds no run.
    fails(&["train", "--resume", s(tmp.path())], 1, &["not a run folder"]);
    fails(&["linearize", "--resume", s(&out)], 1, &["not a run folder"]);
}

#[test]
fn corrupt_checkpoints_fail_with_the_file_named() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(baseline_model()).unwrap();
    let truncated = tmp.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let header_cut = tmp.path().join("header_cut.safetensors");
    std::fs::write(&header_cut, &bytes[..100]).unwrap();
    let text = tmp.path().join("notes.safetensors");
    std::fs::write(&text, "these are not the weights you are looking for\n").unwrap();
    let empty = tmp.path().join("empty.safetensors");
    std::fs::write(&empty, "").unwrap();
    let zip_junk = tmp.path().join("junk.pth");
    std::fs::write(&zip_junk, b"PK\x03\x04 not really a zip").unwrap();
    for bad in [&truncated, &header_cut, &text, &empty] {
        let needle = format!("cannot read the model {}", bad.display());
        fails(&["eval", "--model", s(bad), "--dataset", "synthetic"], 1, &[&needle, "safetensors"]);
        fails(&["count", "--model", s(bad)], 1, &[&needle]);
    }
    let out = tmp.path().join("imported.safetensors");
    fails(&["import", "--pth", s(&zip_junk), "--arch", "resnet18", "--out", s(&out)], 1, &[s(&zip_junk)]);
    assert!(!out.exists());
}

#[test]
fn a_truncated_model_is_one_line_naming_the_file_once() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(baseline_model()).unwrap();
    let truncated = tmp.path().join("trunc.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = fails(&["count", "--model", s(&truncated)], 1, &["not a safetensors file"]);
    assert!(err.starts_with(&format!("error: cannot read the model {}: ", truncated.display())), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(err.matches("trunc.safetensors").count(), 1, "{err}");
}

#[test]
fn a_checkpoint_of_another_architecture_lists_what_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let tensors = read_tensors(&baseline_model());
    let mut meta = read_metadata(&baseline_model());

    // PyTorch-named weights without snl metadata, described with the wrong width.
    let bare = tmp.path().join("bare.safetensors");
    write_tensors(&bare, &tensors, None);
    let err = fails(
        &[
            "eval",
            "--model",
            s(&bare),
            "--arch",
            "resnet18",
            "--width",
            "2",
            "--image-size",
            "16",
            "--dataset",
            "synthetic",
        ],
        1,
        &[
            &format!("{} does not fit resnet18", bare.display()),
            "conv1.weight (model [2, 3, 3, 3], checkpoint [4, 3, 3, 3])",
            // Every tensor misfits: a few are named, the rest counted (not a 10 KB line).
            "117 with a different shape",
            "and 112 more",
        ],
    );
    assert!(err.contains("with a different shape"), "{err}");
    // Described right, it counts.
    snl()
        .args([
            "count",
            "--model",
            s(&bare),
            "--arch",
            "resnet18",
            "--width",
            "4",
            "--image-size",
            "16",
            "--json",
        ])
        .assert()
        .success()
        .stdout(predicates::str::contains(format!("\"total\": {W4_TOTAL}")));
    // Without the model flags it cannot be described at all.
    fails(&["count", "--model", s(&bare)], 2, &["no snl metadata", "--arch"]);
    // A stem ReLU the checkpoint does not have: a missing name.
    fails(
        &[
            "count",
            "--model",
            s(&bare),
            "--arch",
            "resnet18",
            "--width",
            "4",
            "--image-size",
            "16",
            "--stem-relu",
        ],
        1,
        &["1 missing: alpha0.alphas"],
    );

    // snl metadata that lies about the width.
    meta.insert("width".into(), "2".into());
    let lying = tmp.path().join("lying.safetensors");
    write_tensors(&lying, &tensors, Some(meta));
    fails(
        &["count", "--model", s(&lying)],
        1,
        &["does not fit resnet18", "bn1.weight (model [2], checkpoint [4])"],
    );

    // A tensor missing and one too many.
    let mut renamed = tensors.clone();
    let fc = renamed.remove("linear.weight").unwrap();
    renamed.insert("fc.weight".into(), fc);
    let odd = tmp.path().join("renamed.safetensors");
    write_tensors(&odd, &renamed, Some(read_metadata(&baseline_model())));
    fails(&["count", "--model", s(&odd)], 1, &["1 missing: linear.weight", "1 unexpected: fc.weight"]);

    // The committed PyTorch fixture (channel masks, stem ReLU) imported as a pixel model.
    let pth = Path::new(env!("CARGO_MANIFEST_DIR")).join("../snl-models/tests/data/resnet18_w4.pth.tar");
    let out = tmp.path().join("imported.safetensors");
    fails(
        &["import", "--pth", s(&pth), "--arch", "resnet18", "--width", "4", "--out", s(&out)],
        1,
        &[
            "1 unexpected: alpha0.alphas",
            "layer1.0.alpha1.alphas (model [1, 4, 32, 32], checkpoint [1, 4, 1, 1])",
            "(its masks are per channel: give --granularity channel)",
        ],
    );
    assert!(!out.exists());

    // A model for other images than the data's.
    let count_32 = tmp.path().join("w4_32.safetensors");
    snl()
        .args(["import", "--pth", s(&pth), "--arch", "resnet18", "--width", "4", "--granularity", "channel"])
        .args(["--stem-relu", "--out", s(&count_32)])
        .assert()
        .success();
    fails(&["eval", "--model", s(&count_32), "--dataset", "synthetic"], 2, &["for 32x32 images", "16x16"]);
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
        hf_home.to_str().unwrap(),                                 // the Hub cache it tried
        "offline",
    ] {
        assert!(err.contains(needle), "no `{needle}` in: {err}");
    }
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
fn integer_weights_and_integer_images_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tensors = read_tensors(&baseline_model());
    tensors.get_mut("conv1.weight").unwrap().dtype = safetensors::Dtype::I32;
    let ints = tmp.path().join("ints.safetensors");
    write_tensors(&ints, &tensors, Some(read_metadata(&baseline_model())));
    fails(&["count", "--model", s(&ints)], 1, &[s(&ints), "integer tensors", "conv1.weight (I32)"]);

    let input = tmp.path().join("pixels.safetensors");
    let x =
        RawTensor { dtype: safetensors::Dtype::U8, shape: vec![2, 3, 16, 16], data: vec![128; 2 * 3 * 256] };
    write_tensors(&input, &BTreeMap::from([("x".to_string(), x)]), None);
    let output = tmp.path().join("logits.safetensors");
    let model = baseline_model();
    let args = ["predict", "--model", s(&model), "--input", s(&input), "--output", s(&output)];
    fails(&args, 1, &[s(&input), "U8", "normalised float images"]);
    assert!(!output.exists());
}

#[test]
fn a_legacy_torch_file_says_how_to_convert_it() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old.pth");
    let mut bytes = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec();
    bytes.extend([0u8; 64]);
    std::fs::write(&old, bytes).unwrap();
    let out = tmp.path().join("m.safetensors");
    fails(
        &["import", "--pth", s(&old), "--arch", "resnet18", "--out", s(&out)],
        1,
        &["legacy (non-zip) torch.save file", "torch.save(torch.load("],
    );
    assert!(!out.exists());
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

/// A copy of the baseline model with `edit` applied to its first mask and its metadata.
fn edited_model(dir: &Path, edit: impl Fn(&mut Vec<f32>, &mut HashMap<String, String>)) -> PathBuf {
    let base = baseline_model();
    let mut tensors = read_tensors(&base);
    let mut meta = read_metadata(&base);
    let site = tensors.keys().find(|k| k.ends_with(".alphas")).unwrap().clone();
    let mut values = tensors[&site].f32s();
    edit(&mut values, &mut meta);
    let t = &tensors[&site];
    let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let edited = RawTensor { dtype: t.dtype, shape: t.shape.clone(), data };
    tensors.insert(site, edited);
    let path = dir.join("edited.safetensors");
    write_tensors(&path, &tensors, Some(meta));
    path
}

/// A model saved mid-search (masks between 0 and 1) is not exported as another network
/// without a word: refused, or binarized when asked; its export folder then appears whole.
#[test]
fn export_refuses_soft_masks_unless_told_to_binarize() {
    let tmp = tempfile::tempdir().unwrap();
    let model = edited_model(tmp.path(), |v, _| v[..3].fill(0.5));
    let out = tmp.path().join("bundle");
    fails(
        &["export", "--model", s(&model), "--out", s(&out)],
        2,
        &["other than 0 and 1", "(3 of", "--binarize"],
    );
    assert!(!out.exists(), "a refused export wrote its folder");
    std::fs::create_dir(&out).unwrap();
    snl().args(["export", "--model", s(&model), "--out", s(&out), "--binarize"]).assert().success();
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["kept_indices.safetensors", "manifest.json", "masks.safetensors", "weights.safetensors"]
    );
    let leftovers = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".snl-export-"));
    assert_eq!(leftovers.count(), 0, "the staging folder was left behind");
}

/// Figures from a model saved mid-search, or by a newer snl, come with a warning naming it.
#[test]
fn soft_masks_and_a_newer_snl_version_are_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let soft = edited_model(tmp.path(), |v, _| v[..3].fill(0.5));
    for command in ["count", "eval"] {
        let mut args = vec![command, "--model", s(&soft)];
        if command == "eval" {
            args.extend(["--dataset", "synthetic"]);
        }
        let output = snl().args(&args).output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        let needle = format!("warning: {}: masks with values other than 0 and 1", soft.display());
        assert!(
            stderr(&output).contains(&needle) && stderr(&output).contains("(3 of"),
            "{}",
            stderr(&output)
        );
    }
    let newer = edited_model(tmp.path(), |_, m| {
        m.insert("snl_version".into(), "99.0.0".into());
    });
    let output = snl().args(["count", "--model", s(&newer)]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("written by snl 99.0.0, newer than this snl"), "{}", stderr(&output));
    let own = snl().args(["count", "--model", s(&baseline_model())]).output().unwrap();
    assert!(!stderr(&own).contains("warning"), "{}", stderr(&own));
}

/// What a file says about itself is checked as the file's: a NaN mask, a threshold out of
/// range in its metadata (it used to be blamed on a --threshold never given).
#[test]
fn a_checkpoint_with_nan_masks_or_a_bad_threshold_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let nan = edited_model(tmp.path(), |v, _| v[7] = f32::NAN);
    fails(&["count", "--model", s(&nan)], 1, &[&nan.display().to_string(), "not finite"]);
    for bad in ["5", "NaN", "abc"] {
        let model = edited_model(tmp.path(), |_, m| {
            m.insert("threshold".into(), bad.into());
        });
        let out = fails(&["count", "--model", s(&model)], 1, &[&format!("metadata threshold `{bad}`")]);
        assert!(!out.contains("--threshold"), "{out}");
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
