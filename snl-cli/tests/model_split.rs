//! A model's recorded validation split meets other data: where the data holds it, it is
//! rebuilt and another `--val-size` is refused; where it cannot (fewer training images than
//! the split), this is not the model's data, the error says so, and `--val-size` chooses.
//! (The dead end this replaces: "give a smaller --val-size", then "--val-size differs".)

mod common;
use common::*;

use std::path::Path;

/// `args` with the synthetic data replaced by the image folder `data`.
fn on_folder(mut args: Vec<String>, data: &Path) -> Vec<String> {
    let at = args.iter().position(|a| a == "synthetic").unwrap();
    args[at] = "folder".into();
    args.extend(["--data-dir".into(), s(data).into()]);
    args
}

#[test]
fn a_recorded_split_is_kept_where_it_fits_and_chosen_anew_where_it_cannot() {
    let tmp = tempfile::tempdir().unwrap();
    let classes: Vec<String> = (0..10).map(|c| format!("c{c}")).collect();
    let names: Vec<&str> = classes.iter().map(String::as_str).collect();
    let (own, small) = (tmp.path().join("own"), tmp.path().join("small"));
    image_folder(&own, "train", &names, 3);
    image_folder(&own, "test", &names, 1);
    image_folder(&small, "train", &names, 1);
    image_folder(&small, "test", &names, 1);

    // A model selected on 20 of its folder's 30 training images.
    let run = tmp.path().join("baseline");
    let mut train = on_folder(train_args(1), &own);
    train.extend(["--val-size", "20", "--out", s(&run)].map(String::from));
    let output = snl().args(&train).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let model = run.join("best.safetensors");
    let eval = |data: &Path, extra: &[&str]| {
        let mut args =
            ["eval", "--model", s(&model), "--dataset", "folder", "--data-dir", s(data), "--split", "val"]
                .map(String::from)
                .to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };

    // Its own folder: the split is the model's, another size is refused, none needed.
    let refused = fails(
        &refs(&eval(&own, &["--val-size", "4"])),
        2,
        &["--val-size 4 differs from the validation size 20"],
    );
    assert!(refused.contains(s(&model)), "{refused}");
    let test_split = ["eval", "--model", s(&model), "--data-dir", s(&small), "--val-size", "4"];
    fails(&test_split, 2, &["--val-size 4: the test split holds nothing out"]);
    let needle = "--dataset folder needs --data-dir <dir>";
    fails(&["eval", "--model", s(&model)], 2, &[needle]);
    // (Without --dataset: the model records it.)
    let args = ["eval", "--model", s(&model), "--data-dir", s(&own), "--split", "val"];
    let output = snl().args(args).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("on folder (val, 20 images)"));

    // A folder of 10 training images cannot hold it: said so, with the way out, not the
    // advice to give a --val-size that the next run refuses.
    let needles = [
        &format!(
            "{} was selected on a validation split of 20 images, which needs more than these 10",
            s(&model)
        )[..],
        "this cannot be the data it was split from; give --val-size N",
    ];
    fails(&refs(&eval(&small, &[])), 2, &needles);
    let output = snl().args(eval(&small, &["--val-size", "4"])).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("(val, 4 images)"));

    // A linearized run on it records the size it held out, in its config and its models.
    let out = tmp.path().join("linearized");
    // Six training images search one step per epoch: one epoch, then binarized at the cap.
    let mut linearize =
        with_flag(on_folder(linearize_args(&model, "50%", 0), &small), "--max-search-epochs", "1");
    linearize.extend(["--finish-at-cap", "--val-size", "4", "--out", s(&out)].map(String::from));
    let output = snl().args(&linearize).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(read_json(&out.join("config.json"))["data"]["val_size"], 4);
    assert_eq!(read_json(&out.join("result.json"))["val"]["samples"], 4);
    assert_eq!(read_metadata(&out.join("best.safetensors"))["val_size"], "4");
    let warning = "warning: --val-size 4: a new validation split, not the 20 images";
    assert!(stderr(&output).contains(warning), "{}", stderr(&output));
}

/// A named dataset's size is fixed: a `--val-size` against its model's split is refused
/// before any data is read (there is none here: no CIFAR-10 on disk and no network).
#[test]
fn a_named_datasets_split_is_refused_before_any_data_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let base = baseline_model();
    let mut meta = read_metadata(&base);
    meta.insert("dataset".into(), "cifar10".into());
    let model = tmp.path().join("cifar10-model.safetensors");
    write_tensors(&model, &read_tensors(&base), Some(meta));
    let args = ["eval", "--model", s(&model), "--split", "val", "--val-size", "10"];
    fails(&args, 2, &["--val-size 10 differs from the validation size 200", "drop --val-size"]);
}
