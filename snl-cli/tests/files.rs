//! The files snl is handed: a new output never replaces anything (a dangling symbolic link
//! included) and a missing folder for it is named before any work; a model or an input must
//! be a regular file within `checkpoint::MAX_FILE_BYTES`, refused before it is read.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use snl_models::checkpoint::MAX_FILE_BYTES;

/// `snl import` of the committed PyTorch fixture (32x32 images) to `out`: a model without
/// training one.
fn import_args(out: &Path) -> Vec<String> {
    let pth = Path::new(env!("CARGO_MANIFEST_DIR")).join("../snl-models/tests/data/resnet18_w4.pth.tar");
    let args = ["import", "--pth", s(&pth), "--arch", "resnet18", "--width", "4", "--granularity", "channel"];
    let mut args: Vec<String> = args.map(String::from).to_vec();
    args.extend(["--stem-relu", "--out", s(out)].map(String::from));
    args
}

/// A model and an input batch for it, in `dir`.
fn model_and_input(dir: &Path) -> (PathBuf, PathBuf) {
    let model = dir.join("model.safetensors");
    snl().args(import_args(&model)).assert().success();
    let input = dir.join("x.safetensors");
    write_input(&input, 2, 32);
    (model, input)
}

/// `fails(args, 1, needles)`, but killed after a minute: a device or FIFO read before it is
/// refused never ends (or fills the memory).
fn refused(args: &[&str], needles: &[&str]) {
    let output = snl().arg("-q").args(args).timeout(Duration::from_secs(60)).output().unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "snl {args:?}: {err}");
    assert!(err.starts_with("error: ") && err.lines().count() == 1, "snl {args:?}: {err}");
    for needle in needles {
        assert!(err.contains(needle), "snl {args:?}: no `{needle}` in: {err}");
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn predict_and_import_replace_neither_a_file_nor_a_dangling_link() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, input) = model_and_input(tmp.path());
    let file = tmp.path().join("precious");
    std::fs::write(&file, "precious").unwrap();
    let (link, nowhere) = (tmp.path().join("link"), tmp.path().join("nowhere"));
    std::os::unix::fs::symlink(&nowhere, &link).unwrap();
    for target in [&file, &link] {
        let needle = format!("{} exists", target.display());
        let predict = ["predict", "--model", s(&model), "--input", s(&input), "--output", s(target)];
        fails(&predict, 1, &[&needle, "--output", "nothing was overwritten"]);
        fails(&refs(&import_args(target)), 1, &[&needle, "--out"]);
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");
    assert_eq!(std::fs::read_link(&link).unwrap(), nowhere);
    assert_eq!(names(tmp.path()), ["link", "model.safetensors", "precious", "x.safetensors"]);
}

#[test]
fn a_missing_output_folder_is_named_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    // Read first, the missing model would be the error.
    let model = tmp.path().join("nope.safetensors");
    let input = tmp.path().join("x.safetensors");
    write_input(&input, 2, 32);
    let folder = tmp.path().join("no/such");
    let out = folder.join("logits.safetensors");
    let needle =
        format!("cannot write --output {}: the folder {} does not exist", out.display(), folder.display());
    fails(&["predict", "--model", s(&model), "--input", s(&input), "--output", s(&out)], 1, &[&needle]);
    let needle = format!("the folder {} does not exist", folder.display());
    fails(&["import", "--pth", s(&model), "--arch", "resnet18", "--out", s(&out)], 1, &[&needle]);
    // A file where the folder should be.
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let out = file.join("logits.safetensors");
    let needle = format!("{} is not a folder", file.display());
    fails(&["predict", "--model", s(&model), "--input", s(&input), "--output", s(&out)], 1, &[&needle]);
    assert_eq!(names(tmp.path()), ["file", "x.safetensors"]);
}

#[test]
fn devices_fifos_and_files_over_the_cap_are_refused_unread() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, input) = model_and_input(tmp.path());
    let fifo = tmp.path().join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // Sparse: refused for its size, never read.
    let big = tmp.path().join("big.safetensors");
    std::fs::File::create(&big).unwrap().set_len(MAX_FILE_BYTES + 1).unwrap();
    let over = format!("{} bytes, over the {MAX_FILE_BYTES} bytes", MAX_FILE_BYTES + 1);
    let out = tmp.path().join("logits.safetensors");
    for (bad, why) in
        [(Path::new("/dev/zero"), "not a regular file"), (&fifo, "not a regular file"), (&big, &over)]
    {
        let as_model = format!("cannot read the model {}: {why}", bad.display());
        refused(&["count", "--model", s(bad)], &[&as_model]);
        refused(&["predict", "--model", s(bad), "--input", s(&input), "--output", s(&out)], &[&as_model]);
        refused(&["import", "--pth", s(bad), "--arch", "resnet18", "--out", s(&out)], &[&as_model]);
        let as_input = format!("cannot read {}: {why}", bad.display());
        refused(&["predict", "--model", s(&model), "--input", s(bad), "--output", s(&out)], &[&as_input]);
    }
    assert!(!out.exists());
}

#[test]
fn of_predicts_racing_for_one_output_one_writes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, input) = model_and_input(tmp.path());
    let out = tmp.path().join("logits.safetensors");
    // Started together, they all find the output free; the old code let every one replace
    // the file of the one before and exit 0.
    let args = ["-q", "predict", "--model", s(&model), "--input", s(&input), "--output", s(&out)];
    let outputs: Vec<_> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..4).map(|_| scope.spawn(|| snl().args(args).output().unwrap())).collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    let codes: Vec<_> = outputs.iter().map(|o| o.status.code()).collect();
    assert_eq!(codes.iter().filter(|&&c| c == Some(0)).count(), 1, "{codes:?}");
    for failed in outputs.iter().filter(|o| !o.status.success()) {
        let err = stderr(failed);
        assert!(err.starts_with(&format!("error: {} exists", out.display())), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(read_tensors(&out)["logits"].shape, [2, 10]);
    assert_eq!(names(tmp.path()), ["logits.safetensors", "model.safetensors", "x.safetensors"]);
}

/// A NaN or infinite pixel gives its image NaN logits: written as computed, and a warning
/// names the images.
#[test]
fn predict_names_the_images_whose_logits_are_not_finite() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, _) = model_and_input(tmp.path());
    let side = 32 * 32;
    let mut pixels = vec![0.25f32; 4 * 3 * side];
    pixels[3 * side + 5] = f32::NAN;
    pixels[3 * 3 * side] = f32::INFINITY;
    let data = pixels.iter().flat_map(|v| v.to_le_bytes()).collect();
    let x = RawTensor { dtype: safetensors::Dtype::F32, shape: vec![4, 3, 32, 32], data };
    let input = tmp.path().join("nan.safetensors");
    write_tensors(&input, &[("x".to_string(), x)].into_iter().collect(), None);
    let out = tmp.path().join("logits.safetensors");
    let args = ["predict", "--model", s(&model), "--input", s(&input), "--output", s(&out)];
    let output = snl().args(args).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let needle = "warning: 2 of 4 images have NaN or infinite logits (images 1, 3; counted from 0)";
    assert!(stderr(&output).contains(needle), "{}", stderr(&output));
}
