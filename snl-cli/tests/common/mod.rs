//! Shared by the end-to-end tests: the `snl` binary on one thread, tiny fast settings,
//! one baseline trained once per test binary, and safetensors/JSON readers.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use assert_cmd::Command;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

/// ReLUs of `resnet18 --width 4` at 16x16 (the synthetic data's size), as `snl count` says.
pub const W4_TOTAL: usize = 7680;

/// `snl` on one thread (deterministic), never touching the network or a real Hub cache.
pub fn snl() -> Command {
    let mut cmd = Command::cargo_bin("snl").expect("the snl binary");
    cmd.args(["--threads", "1"]).env("HF_HUB_OFFLINE", "1").env_remove("HF_HUB_CACHE");
    cmd.env("HF_HOME", scratch_root().join("hf-home"));
    cmd
}

/// Flags of a tiny training run: ResNet18 width 4 on the synthetic data.
pub fn train_args(epochs: usize) -> Vec<String> {
    let epochs = epochs.to_string();
    [
        "train",
        "--arch",
        "resnet18",
        "--width",
        "4",
        "--dataset",
        "synthetic",
        "--batch-size",
        "100",
        "--epochs",
        &epochs,
        "-q",
    ]
    .map(String::from)
    .to_vec()
}

/// Flags of a fast linearization of `model` to `budget`: a search of about 5 epochs.
///
/// Adam moves every mask element by about the learning rate per step, so with search lr
/// 0.02 the alphas the lasso wins fall from 1 together and cross the 0.01 threshold in the
/// fifth epoch, leaving about 5% of the ReLUs whatever the seed. With a larger learning rate
/// (0.05) they oscillate around 0 by more than the threshold and the count can stall
/// above a 10% budget for tens of epochs, depending on float rounding.
pub fn linearize_args(model: &Path, budget: &str, finetune_epochs: usize) -> Vec<String> {
    let model = model.to_str().expect("utf-8 path").to_string();
    let finetune = finetune_epochs.to_string();
    [
        "linearize",
        "--model",
        &model,
        "--budget",
        budget,
        "--dataset",
        "synthetic",
        "--batch-size",
        "100",
        "--lasso",
        "2e-2",
        "--search-lr",
        "0.02",
        "--warmup-epochs",
        "0",
        "--max-search-epochs",
        "30",
        "--finetune-epochs",
        &finetune,
        "-q",
    ]
    .map(String::from)
    .to_vec()
}

/// This test binary's scratch folder under the target dir (emptied once per process).
pub fn scratch_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let exe = std::env::current_exe().expect("test exe");
        let name = exe.file_stem().and_then(|s| s.to_str()).unwrap_or("tests").to_string();
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("snl-cli-e2e").join(name);
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("scratch folder");
        root
    })
}

/// Epochs of the shared baseline: enough that seed 0 learns the synthetic task well above
/// chance (2 epochs at width 4 left it within a few points of chance for some seeds).
pub const BASELINE_EPOCHS: usize = 4;

/// A baseline run folder (`BASELINE_EPOCHS` epochs), trained once per test binary.
pub fn baseline() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let out = scratch_root().join("baseline");
        let mut args = train_args(BASELINE_EPOCHS);
        args.extend(["--out".into(), out.to_str().unwrap().into()]);
        snl().args(&args).assert().success();
        out
    })
}

/// The baseline's final model.
pub fn baseline_model() -> PathBuf {
    baseline().join("model.safetensors")
}

/// A linearized run folder (10% budget, 1 finetuning epoch), made once per test binary.
pub fn linearized() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let out = scratch_root().join("linearized");
        let mut args = linearize_args(&baseline_model(), "10%", 1);
        args.extend(["--out".into(), out.to_str().unwrap().into()]);
        snl().args(&args).assert().success();
        out
    })
}

/// One tensor of a safetensors file: dtype, shape, raw little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl RawTensor {
    pub fn f32s(&self) -> Vec<f32> {
        assert_eq!(self.dtype, Dtype::F32, "not an f32 tensor");
        self.data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
    }
}

pub fn read_tensors(path: &Path) -> BTreeMap<String, RawTensor> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let t =
                RawTensor { dtype: view.dtype(), shape: view.shape().to_vec(), data: view.data().to_vec() };
            (name, t)
        })
        .collect()
}

/// A file's metadata as snl reads it: without its checksum, so that a file written from it
/// (edited, as a test does) is one without a checksum, as older builds wrote them.
pub fn read_metadata(path: &Path) -> HashMap<String, String> {
    let mut meta = read_raw_metadata(path);
    meta.remove(snl_models::checkpoint::CHECKSUM_KEY);
    meta
}

/// A file's metadata as stored, its checksum included.
pub fn read_raw_metadata(path: &Path) -> HashMap<String, String> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    meta.metadata().clone().unwrap_or_default()
}

/// Writes `tensors` as safetensors with `metadata` (exactly: a checksum in it is kept).
pub fn write_tensors(
    path: &Path,
    tensors: &BTreeMap<String, RawTensor>,
    metadata: Option<HashMap<String, String>>,
) {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(k, t)| {
            (k.clone(), safetensors::tensor::TensorView::new(t.dtype, t.shape.clone(), &t.data).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, metadata, path).unwrap();
}

/// An f32 NCHW batch `x` of deterministic values in about [-2, 2].
pub fn write_input(path: &Path, n: usize, side: usize) {
    let count = n * 3 * side * side;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<u8> = (0..count)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let v = ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0;
            v.to_le_bytes()
        })
        .collect();
    let x = RawTensor { dtype: Dtype::F32, shape: vec![n, 3, side, side], data };
    write_tensors(path, &BTreeMap::from([("x".to_string(), x)]), None);
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn stdout_json(output: &std::process::Output) -> Value {
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `result.json` without its wall time (which differs between identical runs).
pub fn result_without_time(run: &Path) -> Value {
    let mut result = read_json(&run.join("result.json"));
    result.as_object_mut().unwrap().remove("wall_time_s");
    result
}

/// `metrics.jsonl` records without their timings.
pub fn metrics_without_time(run: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("seconds");
            v
        })
        .collect()
}

/// Whether the PyTorch reference can run: `torch_ref.py` in the repository and
/// `python3 -c "import torch"` working; prints why a test skips when not.
pub fn torch_available(test: &str) -> bool {
    let script = reference_dir().join("torch_ref.py");
    if !script.is_file() {
        println!("{test}: skipped (no {})", script.display());
        return false;
    }
    let ok = std::process::Command::new("python3")
        .args(["-c", "import torch, safetensors"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("{test}: skipped (python3 cannot import torch and safetensors)");
    }
    ok
}

/// `snl-bench/scripts`, the folder of the repository's PyTorch reference `torch_ref.py`.
pub fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../snl-bench/scripts")
}

/// Runs `snl -q args`, checks the exit code and that stderr is one `error:` line (clap's usage
/// errors add their usage hint; failures are that line alone) holding every `needle`.
pub fn fails(args: &[&str], code: i32, needles: &[&str]) -> String {
    let output = snl().arg("-q").args(args).output().unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(code), "snl {args:?}: {err}");
    assert!(
        output.stdout.is_empty(),
        "snl {args:?} printed a result: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines[0].starts_with("error: "), "snl {args:?}: {err}");
    assert_eq!(err.matches("error:").count(), 1, "snl {args:?}: more than one error line: {err}");
    if code == 1 {
        assert_eq!(lines.len(), 1, "snl {args:?}: more than one line: {err}");
    }
    for needle in needles {
        assert!(err.contains(needle), "snl {args:?}: no `{needle}` in: {err}");
    }
    err
}

/// A path as an argument.
pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Every file of a folder and its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect()
}

/// `train_args(2)` writing to `out`, then `extra`.
pub fn train_to(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = train_args(2);
    args.extend(["--out".to_string(), s(out).to_string()]);
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Borrowed arguments, for [`fails`].
pub fn refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// An image folder `<root>/<split>/<class>/<i>.png` of 16x16 images, `per_class` per class.
pub fn image_folder(root: &Path, split: &str, classes: &[&str], per_class: usize) {
    for (k, class) in classes.iter().enumerate() {
        let dir = root.join(split).join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class {
            let img = image::RgbImage::from_fn(16, 16, |x, y| {
                image::Rgb([(x * 16) as u8, (y * 16) as u8, (k * 60 + i) as u8])
            });
            img.save(dir.join(format!("{i}.png"))).unwrap();
        }
    }
}

/// `args` with `flag` set to `value`: replaced where given, else appended.
pub fn with_flag(mut args: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    match args.iter().position(|a| a == flag) {
        Some(i) => args[i + 1] = value.to_string(),
        None => args.extend([flag.to_string(), value.to_string()]),
    }
    args
}

/// A copy of the baseline model with `edit` applied to its first mask and its metadata.
pub fn edited_model(dir: &Path, edit: impl Fn(&mut Vec<f32>, &mut HashMap<String, String>)) -> PathBuf {
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
