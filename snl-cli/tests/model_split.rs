//! A model's recorded validation split meets other data: where the data holds it, it is
//! rebuilt and another `--val-size` is refused; where it cannot (another count of training
//! images than the model records, or fewer than the split), this is not the model's data,
//! the error says so, and `--val-size` chooses.
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
    let needle = "the model was trained on an image folder, whose path it does not record: give --data-dir";
    fails(&["eval", "--model", s(&model)], 2, &[needle]);
    let needle = "--dataset folder needs --data-dir <dir>";
    fails(&["eval", "--model", s(&model), "--dataset", "folder"], 2, &[needle]);
    // (Without --dataset: the model records it.)
    let args = ["eval", "--model", s(&model), "--data-dir", s(&own), "--split", "val"];
    let output = snl().args(args).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("on folder (val, 20 images)"));

    // A folder of 10 training images cannot hold it: said so, with the way out, not the
    // advice to give a --val-size that the next run refuses.
    let needles = [
        &format!("{} was made from a training set of 30 images, not these 10", s(&model))[..],
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
    let warning = "warning: --val-size 4: a new validation split, not the one";
    assert!(stderr(&output).contains(warning), "{}", stderr(&output));
}

/// A named dataset's size is fixed: a `--val-size` against its model's split is refused
/// before any data is read (there is none here: no CIFAR-10 on disk and no network), and a
/// copy too small for the split is no place to choose another.
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

    // A partial local copy (50 training images) cannot hold the model's 200: said so,
    // without the advice to give a --val-size that the check above refuses.
    let copy = tmp.path().join("cifar").join("cifar-10-batches-bin");
    std::fs::create_dir_all(&copy).unwrap();
    for file in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    {
        let records: Vec<u8> = (0..10u8).flat_map(|i| std::iter::once(i).chain([i * 20; 3072])).collect();
        std::fs::write(copy.join(format!("{file}.bin")), records).unwrap();
    }
    let args = ["eval", "--model", s(&model), "--data-dir", s(copy.parent().unwrap()), "--split", "val"];
    let out = fails(&args, 2, &["which needs more than these 50 training images", "(a partial copy?)"]);
    assert!(!out.contains("--val-size N"), "{out}");
}

/// A folder that gained images since the model was trained: its split drawn again would be
/// other images, some of which trained the model, so validation accuracy would overstate
/// without a word. The model records its training set's size: refused, naming both sizes;
/// `--val-size` then chooses, with a warning. A resumed training run on it is refused too.
#[test]
fn a_folder_that_changed_is_not_the_models_split() {
    let tmp = tempfile::tempdir().unwrap();
    let names = ["a", "b"];
    let data = tmp.path().join("data");
    image_folder(&data, "train", &names, 8);
    image_folder(&data, "test", &names, 1);
    let run = tmp.path().join("baseline");
    let mut train = on_folder(with_flag(train_args(2), "--stop-after-epochs", "1"), &data);
    train.extend(["--val-size", "4", "--out", s(&run)].map(String::from));
    snl().args(&train).assert().code(3);
    assert_eq!(read_json(&run.join("config.json"))["data"]["train_images"], 16);
    let model = run.join("best.safetensors");
    assert_eq!(read_metadata(&model)["train_images"], "16");
    let eval = ["eval", "--model", s(&model), "--data-dir", s(&data), "--split", "val"];
    let output = snl().args(eval).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));

    image_folder(&data, "train", &["a"], 9); // one more image of class a
    let model_text = model.display().to_string();
    let needles = [
        &format!("{model_text} was made from a training set of 16 images, not these 17")[..],
        "--val-size N",
    ];
    fails(&eval, 2, &needles);
    let output = snl().args(eval).args(["--val-size", "4"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let warning =
        format!("warning: --val-size 4: a new validation split, not the one {model_text} was selected on");
    assert!(stderr(&output).contains(&warning), "{}", stderr(&output));
    let before = snapshot(&run);
    let needles = [&format!("{}: the run started on 16 training images", run.display())[..], "now gives 17"];
    fails(&["train", "--resume", s(&run)], 1, &needles);
    assert_eq!(snapshot(&run), before, "a refused resume changed the run");
}

/// A model trained on every image (`--val-size 0`, the authors' setting) has no validation
/// split: asked for one, the error says so before any data is read, and a `--val-size` on
/// its own data is refused for the right reason.
#[test]
fn a_model_trained_on_every_image_has_no_validation_split() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    image_folder(&data, "train", &["a", "b"], 4);
    image_folder(&data, "test", &["a", "b"], 1);
    let run = tmp.path().join("all");
    let mut train = on_folder(train_args(1), &data);
    train.extend(["--val-size", "0", "--out", s(&run)].map(String::from));
    snl().args(&train).assert().success();
    let model = run.join("model.safetensors");
    let eval = ["eval", "--model", s(&model), "--data-dir", s(&data), "--split", "val"];
    let needle =
        format!("{}: trained on every training image (--val-size 0), it has no validation split", s(&model));
    fails(&eval, 2, &[&needle, "--split test"]);
    let missing = ["eval", "--model", s(&model), "--data-dir", "/nonexistent/snl-data", "--split", "val"];
    fails(&missing, 2, &[&needle]);
    let mut given = eval.to_vec();
    given.extend(["--val-size", "2"]);
    fails(&given, 2, &["every training image trained it (--val-size 0), so none is held out"]);
}
