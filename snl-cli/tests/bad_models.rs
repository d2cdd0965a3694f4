//! Bad model files: missing, corrupt, truncated, of another architecture, of integer or
//! legacy torch formats, or edited (soft or NaN masks, a newer version, a bad threshold in
//! the metadata). Each is refused or warned about with the file named, never misread.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

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

/// A BatchNorm variance below zero (an edited or broken model) is named, not folded into
/// NaN weights of an ONNX file that runtimes would run without a word.
#[test]
fn an_onnx_export_refuses_a_negative_variance() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tensors = read_tensors(&baseline_model());
    let name = tensors.keys().find(|k| k.ends_with("running_var")).unwrap().clone();
    let t = &tensors[&name];
    let mut values = t.f32s();
    values[0] = -1.0;
    let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let edited = RawTensor { dtype: t.dtype, shape: t.shape.clone(), data };
    tensors.insert(name.clone(), edited);
    let model = tmp.path().join("edited.safetensors");
    write_tensors(&model, &tensors, Some(read_metadata(&baseline_model())));
    let out = tmp.path().join("onnx");
    let args = ["export", "--format", "onnx", "--model", s(&model), "--out", s(&out)];
    fails(&args, 1, &[&format!("{name}[0] is -1: not a variance")]);
    assert!(!out.exists());
}
