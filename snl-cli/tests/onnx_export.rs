//! `snl export --format onnx`: the exported model runs in real ONNX runtimes (tract, pure
//! Rust; onnxruntime when python3 has it) with `snl predict`'s logits, and with batch 1 its
//! `Relu` ops see exactly `snl count`'s kept ReLUs.
//!
//! Models: a one-epoch ResNet18 (width 4, stem ReLU) and WRN-10-1 (final ReLU) on the
//! synthetic data, each given pixel or channel masks (some sites fully linear, some fully
//! kept, the rest partly kept) and BatchNorm statistics far from the identity.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use safetensors::Dtype;
use tract_onnx::prelude::*;

const SIDE: usize = 16;
const BATCH: usize = 3;

/// A one-epoch model of `arch` (extra flags `extra`), trained once per test binary.
fn trained(arch: &str, extra: &[&str]) -> PathBuf {
    let out = scratch_root().join(format!("train-{arch}"));
    if !out.join("model.safetensors").exists() {
        let mut args = train_args(1);
        let at = args.iter().position(|a| a == "resnet18").unwrap();
        args[at] = arch.to_string();
        if arch != "resnet18" {
            args.drain(at + 1..at + 3); // --width 4: ResNet only
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["--out".into(), out.to_str().unwrap().into()]);
        snl().args(&args).assert().success();
    }
    out.join("model.safetensors")
}

fn resnet() -> &'static Path {
    static M: OnceLock<PathBuf> = OnceLock::new();
    M.get_or_init(|| trained("resnet18", &["--stem-relu"]))
}

fn wrn() -> &'static Path {
    static M: OnceLock<PathBuf> = OnceLock::new();
    M.get_or_init(|| trained("wrn-10-1", &["--final-relu"]))
}

/// xorshift64: deterministic values for masks and statistics.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn f32_tensor(shape: Vec<usize>, values: &[f32]) -> RawTensor {
    RawTensor { dtype: Dtype::F32, shape, data: values.iter().flat_map(|v| v.to_le_bytes()).collect() }
}

/// `base` with `granularity` masks: site i is fully linear when i % 4 == 0, fully kept when
/// i % 4 == 1, else about 40% kept; BN running means shifted and variances scaled.
fn variant(base: &Path, granularity: &str, out: &Path) -> PathBuf {
    let mut tensors = read_tensors(base);
    let mut meta = read_metadata(base);
    meta.insert("granularity".into(), granularity.into());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let sites: Vec<String> = tensors.keys().filter(|k| k.ends_with(".alphas")).cloned().collect();
    for (i, name) in sites.iter().enumerate() {
        let mut shape = tensors[name].shape.clone();
        if granularity == "channel" {
            shape = vec![1, shape[1], 1, 1];
        }
        let n = shape.iter().product::<usize>();
        let values: Vec<f32> = (0..n)
            .map(|_| match i % 4 {
                0 => 0.0,
                1 => 1.0,
                _ => f32::from(rng.next() < 0.4),
            })
            .collect();
        tensors.insert(name.clone(), f32_tensor(shape, &values));
    }
    for (name, t) in tensors.iter_mut() {
        if name.ends_with(".running_mean") {
            let v: Vec<f32> = t.f32s().iter().map(|m| m + rng.next() - 0.5).collect();
            *t = f32_tensor(t.shape.clone(), &v);
        } else if name.ends_with(".running_var") {
            let v: Vec<f32> = t.f32s().iter().map(|s| s * (0.5 + 1.5 * rng.next())).collect();
            *t = f32_tensor(t.shape.clone(), &v);
        }
    }
    std::fs::create_dir_all(out).unwrap();
    let path = out.join("model.safetensors");
    write_tensors(&path, &tensors, Some(meta));
    path
}

fn export(model: &Path, out: &Path, extra: &[&str]) -> PathBuf {
    snl()
        .args([
            "export",
            "--format",
            "onnx",
            "--model",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(extra)
        .assert()
        .success();
    out.join("model.onnx")
}

fn predict(model: &Path, input: &Path, out: &Path) -> Vec<f32> {
    snl()
        .args(["predict", "--model", model.to_str().unwrap(), "--input", input.to_str().unwrap()])
        .args(["--output", out.to_str().unwrap()])
        .assert()
        .success();
    read_tensors(out)["logits"].f32s()
}

fn input_values(path: &Path) -> Vec<f32> {
    read_tensors(path)["x"].f32s()
}

/// Logits of the ONNX model in tract for a `[n, 3, SIDE, SIDE]` batch.
fn tract_logits(onnx: &Path, n: usize, x: &[f32]) -> Vec<f32> {
    let model = tract_onnx::onnx()
        .model_for_path(onnx)
        .unwrap()
        .with_input_fact(0, f32::fact([n, 3, SIDE, SIDE]).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input = tract_ndarray::Array4::from_shape_vec((n, 3, SIDE, SIDE), x.to_vec()).unwrap();
    let out = model.run(tvec!(Tensor::from(input).into())).unwrap();
    out[0].to_plain_array_view::<f32>().unwrap().iter().copied().collect()
}

/// Elements entering the model's `Relu` ops for one image, from tract's shape analysis.
fn relu_inputs(onnx: &Path) -> usize {
    let proto = tract_onnx::onnx().proto_model_for_path(onnx).unwrap();
    let graph = proto.graph.as_ref().unwrap();
    let mut model = tract_onnx::onnx().model_for_path(onnx).unwrap();
    model.set_input_fact(0, f32::fact([1, 3, SIDE, SIDE]).into()).unwrap();
    model.analyse(false).unwrap();
    graph
        .node
        .iter()
        .filter(|n| n.op_type == "Relu")
        .map(|n| {
            let node = model.node_by_name(&n.name).unwrap();
            let shape =
                model.outlet_fact(node.inputs[0]).unwrap().shape.as_concrete_finite().unwrap().unwrap();
            shape.iter().product::<usize>()
        })
        .sum()
}

fn metadata_props(onnx: &Path) -> HashMap<String, String> {
    let proto = tract_onnx::onnx().proto_model_for_path(onnx).unwrap();
    assert!(proto.opset_import.iter().any(|o| o.domain.is_empty() && o.version >= 13));
    proto.metadata_props.iter().map(|p| (p.key.clone(), p.value.clone())).collect()
}

/// `max |a - b| <= 1e-4 * max |b|`.
fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: sizes differ");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff <= 1e-4 * scale, "{what}: max |difference| {diff} > 1e-4 * {scale}");
}

fn kept_by_count(model: &Path) -> (usize, usize) {
    let output = snl().args(["count", "--model", model.to_str().unwrap(), "--json"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let json = stdout_json(&output);
    (json["kept"].as_u64().unwrap() as usize, json["total"].as_u64().unwrap() as usize)
}

/// python3 with onnxruntime, else `None` after saying why the check is skipped.
fn onnxruntime(test: &str) -> Option<()> {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("{test}: onnxruntime part skipped (python3 cannot import onnxruntime and numpy)");
    }
    ok.then_some(())
}

fn onnxruntime_logits(onnx: &Path, x: &[f32], dir: &Path) -> Vec<f32> {
    let raw = dir.join("x.f32");
    std::fs::write(&raw, x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let script = format!(
        "import numpy as np, onnxruntime as ort\n\
         s = ort.InferenceSession({:?}, providers=['CPUExecutionProvider'])\n\
         x = np.fromfile({:?}, dtype='<f4').reshape(-1, 3, {SIDE}, {SIDE})\n\
         print(' '.join(repr(float(v)) for v in s.run(['logits'], {{'input': x}})[0].ravel()))",
        onnx.to_str().unwrap(),
        raw.to_str().unwrap()
    );
    let out = std::process::Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "onnxruntime: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().split_whitespace().map(|v| v.parse().unwrap()).collect()
}

/// The whole check for one architecture and granularity.
fn check(name: &str, base: &Path, granularity: &str) {
    let dir = scratch_root().join(name);
    let model = variant(base, granularity, &dir.join("model"));
    let (kept, total) = kept_by_count(&model);
    assert!(
        0 < kept && kept < total,
        "{name}: the masks should keep some ReLUs, not all ({kept} of {total})"
    );
    let input = dir.join("x.safetensors");
    write_input(&input, BATCH, SIDE);
    let x = input_values(&input);
    let want = predict(&model, &input, &dir.join("logits.safetensors"));

    let compact = export(&model, &dir.join("compact"), &[]);
    assert_close(&format!("{name} compact, tract"), &tract_logits(&compact, BATCH, &x), &want);
    let one = &x[..3 * SIDE * SIDE];
    assert_close(
        &format!("{name} compact, tract, batch 1"),
        &tract_logits(&compact, 1, one),
        &want[..want.len() / BATCH],
    );
    assert_eq!(relu_inputs(&compact), kept, "{name}: elements entering Relu ops, compact");
    let meta = metadata_props(&compact);
    assert_eq!(meta["relu_count"], kept.to_string());
    assert_eq!(meta["relu_total"], total.to_string());
    assert_eq!(meta["relu_form"], "compact");
    assert_eq!(meta["granularity"], granularity);
    assert!(meta.contains_key("arch") && meta.contains_key("threshold"));

    let masked = export(&model, &dir.join("masked"), &["--relu", "masked"]);
    assert_close(&format!("{name} masked, tract"), &tract_logits(&masked, BATCH, &x), &want);
    assert_eq!(relu_inputs(&masked), total, "{name}: the masked form pays for every ReLU");

    if onnxruntime(name).is_some() {
        assert_close(&format!("{name} compact, onnxruntime"), &onnxruntime_logits(&compact, &x, &dir), &want);
        assert_close(&format!("{name} masked, onnxruntime"), &onnxruntime_logits(&masked, &x, &dir), &want);
    }
}

#[test]
fn resnet_pixel_masks() {
    check("resnet-pixel", resnet(), "pixel");
}

#[test]
fn resnet_channel_masks() {
    check("resnet-channel", resnet(), "channel");
}

#[test]
fn wrn_pixel_masks() {
    check("wrn-pixel", wrn(), "pixel");
}

#[test]
fn wrn_channel_masks() {
    check("wrn-channel", wrn(), "channel");
}

/// A model with every ReLU kept is all plain `Relu`s; one with none has no `Relu` at all.
#[test]
fn all_kept_and_all_linear_models() {
    let dir = scratch_root().join("extremes");
    let onnx = export(wrn(), &dir.join("all"), &[]);
    assert_eq!(relu_inputs(&onnx), kept_by_count(wrn()).1);
    let mut tensors = read_tensors(wrn());
    for (name, t) in tensors.iter_mut() {
        if name.ends_with(".alphas") {
            *t = f32_tensor(t.shape.clone(), &vec![0.0; t.shape.iter().product()]);
        }
    }
    let linear = dir.join("linear.safetensors");
    write_tensors(&linear, &tensors, Some(read_metadata(wrn())));
    let onnx = export(&linear, &dir.join("none"), &[]);
    assert_eq!(relu_inputs(&onnx), 0);
    let input = dir.join("x.safetensors");
    write_input(&input, 2, SIDE);
    let want = predict(&linear, &input, &dir.join("logits.safetensors"));
    assert_close("fully linear WRN", &tract_logits(&onnx, 2, &input_values(&input)), &want);
}

#[test]
fn bad_export_options_are_refused_in_one_line() {
    let dir = scratch_root().join("bad");
    let out = dir.join("out");
    let output = snl()
        .args([
            "export",
            "--model",
            resnet().to_str().unwrap(),
            "--relu",
            "masked",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("--relu") && err.contains("--format onnx") && err.trim().lines().count() == 1,
        "{err}"
    );
    assert!(!out.exists(), "nothing may be written");

    let output = snl()
        .args([
            "export",
            "--format",
            "tflite",
            "--model",
            resnet().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("tflite"), "{}", stderr(&output));

    // A non-empty folder is never written into.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("model.onnx"), b"mine").unwrap();
    let output = snl()
        .args([
            "export",
            "--format",
            "onnx",
            "--model",
            resnet().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("not an empty folder"), "{}", stderr(&output));
    assert_eq!(std::fs::read(out.join("model.onnx")).unwrap(), b"mine");
}
