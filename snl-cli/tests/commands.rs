//! End-to-end tests of every command on tiny synthetic data, `--json` outputs included, and
//! the PyTorch-name round trip (checked against the PyTorch reference when torch is installed).

mod common;

use std::path::Path;

use common::*;
use predicates::prelude::*;
use safetensors::Dtype;
use serde_json::Value;

fn as_usize(v: &Value) -> usize {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}")) as usize
}

fn count_json(args: &[&str]) -> Value {
    let output = snl().arg("count").args(args).arg("--json").output().unwrap();
    assert!(output.status.success(), "snl count {args:?}: {}", stderr(&output));
    stdout_json(&output)
}

/// The sites of a `count --json` sum to its totals; every site reports name, shape, total, kept.
fn check_count_shape(count: &Value) {
    let sites = count["sites"].as_array().expect("sites");
    assert!(!sites.is_empty());
    let (mut total, mut kept) = (0, 0);
    for site in sites {
        assert!(site["name"].as_str().is_some_and(|n| !n.is_empty()), "{site}");
        let shape: Vec<usize> = site["shape"].as_array().unwrap().iter().map(as_usize).collect();
        assert_eq!(shape.len(), 3, "{site}");
        assert_eq!(as_usize(&site["total"]), shape.iter().product::<usize>(), "{site}");
        assert!(as_usize(&site["kept"]) <= as_usize(&site["total"]));
        total += as_usize(&site["total"]);
        kept += as_usize(&site["kept"]);
    }
    assert_eq!(total, as_usize(&count["total"]));
    assert_eq!(kept, as_usize(&count["kept"]));
}

#[test]
fn count_json_gives_the_published_totals() {
    let plain = count_json(&["--arch", "resnet18"]);
    assert_eq!(as_usize(&plain["total"]), 491_520);
    assert_eq!(as_usize(&plain["kept"]), 491_520);
    assert_eq!(plain["sites"].as_array().unwrap().len(), 16);
    check_count_shape(&plain);

    let stem = count_json(&["--arch", "resnet18", "--stem-relu"]);
    assert_eq!(as_usize(&stem["total"]), 557_056);
    check_count_shape(&stem);

    let tiny = count_json(&["--arch", "resnet18", "--width", "4", "--image-size", "16"]);
    assert_eq!(as_usize(&tiny["total"]), W4_TOTAL);
    assert_eq!(tiny["sites"][0]["name"], "layer1.0.alpha1");
    assert_eq!(tiny["sites"][0]["shape"], serde_json::json!([4, 16, 16]));
    check_count_shape(&tiny);
}

#[test]
fn count_prints_a_table_without_json() {
    snl()
        .args(["count", "--arch", "resnet18", "--width", "4", "--image-size", "16"])
        .assert()
        .success()
        .stdout(predicate::str::contains("layer4.1.alpha2"))
        .stdout(predicate::str::contains(format!("{W4_TOTAL} of {W4_TOTAL} ReLUs kept")));
}

#[test]
fn train_writes_a_finished_run_folder() {
    let run = baseline();
    for file in ["config.json", "metrics.jsonl", "best.safetensors", "model.safetensors", "result.json"] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    assert!(!run.join("checkpoint.safetensors").exists(), "the resume state outlives a finished run");
    assert_eq!(metrics_without_time(run).len(), BASELINE_EPOCHS, "one metrics line per epoch");
    let result = read_json(&run.join("result.json"));
    assert_eq!(result["command"], "train");
    assert_eq!(result["dataset"], "synthetic");
    assert_eq!(as_usize(&result["relu_total"]), W4_TOTAL);
    assert_eq!(as_usize(&result["relu_count"]), W4_TOTAL);
    assert_eq!(as_usize(&result["epochs"]), BASELINE_EPOCHS);
    assert_eq!(as_usize(&result["test"]["samples"]), 200);
    assert_eq!(as_usize(&result["val"]["samples"]), 200);
    // Learned something: above the 10% of chance on 10 balanced classes.
    assert!(result["val"]["top1"].as_f64().unwrap() > 15.0, "{result}");
    let count = count_json(&["--model", run.join("model.safetensors").to_str().unwrap()]);
    assert_eq!(as_usize(&count["total"]), W4_TOTAL);
    assert_eq!(as_usize(&count["kept"]), W4_TOTAL);
}

#[test]
fn eval_json_matches_the_run_result() {
    let run = baseline();
    let best = run.join("best.safetensors");
    let output = snl()
        .args([
            "eval",
            "--model",
            best.to_str().unwrap(),
            "--dataset",
            "synthetic",
            "--batch-size",
            "100",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let eval = stdout_json(&output);
    let keys: Vec<&str> = eval.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 4, "{eval}");
    for key in ["samples", "top1", "top5", "loss"] {
        assert!(eval.get(key).is_some(), "no {key} in {eval}");
    }
    let result = read_json(&run.join("result.json"));
    // Same batches as the run's own evaluation, so the same sums.
    assert_eq!(eval, result["test"], "eval of best.safetensors on test = result.json's test metrics");

    let output = snl()
        .args(["eval", "--model", best.to_str().unwrap(), "--dataset", "synthetic", "--split", "val"])
        .args(["--batch-size", "100", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout_json(&output), result["val"]);

    snl()
        .args(["eval", "--model", best.to_str().unwrap(), "--dataset", "synthetic"])
        .assert()
        .success()
        .stdout(predicate::str::contains("top-1").and(predicate::str::contains("200 images")));
}

#[test]
fn saved_models_use_pytorch_names_and_dtypes() {
    let tensors = read_tensors(&baseline_model());
    let expect = |name: &str, dtype: Dtype, shape: &[usize]| {
        let t = tensors.get(name).unwrap_or_else(|| panic!("no {name}"));
        assert_eq!((t.dtype, t.shape.as_slice()), (dtype, shape), "{name}");
    };
    expect("conv1.weight", Dtype::F32, &[4, 3, 3, 3]);
    expect("bn1.weight", Dtype::F32, &[4]);
    expect("bn1.running_mean", Dtype::F32, &[4]);
    expect("bn1.running_var", Dtype::F32, &[4]);
    expect("bn1.num_batches_tracked", Dtype::I64, &[]);
    expect("layer1.0.alpha1.alphas", Dtype::F32, &[1, 4, 16, 16]);
    expect("layer2.0.shortcut.0.weight", Dtype::F32, &[8, 4, 1, 1]);
    expect("layer2.0.shortcut.1.num_batches_tracked", Dtype::I64, &[]);
    expect("linear.weight", Dtype::F32, &[10, 32]);
    expect("linear.bias", Dtype::F32, &[10]);
    assert_eq!(tensors.len(), 138, "the reference ResNet18's state_dict has 138 entries");
    assert!(tensors.keys().all(|k| !k.starts_with("optimizer.")), "no resume state in a model");
    // 10 batches per epoch.
    let tracked = &tensors["bn1.num_batches_tracked"].data;
    assert_eq!(i64::from_le_bytes(tracked.as_slice().try_into().unwrap()), 10 * BASELINE_EPOCHS as i64);
    let meta = read_metadata(&baseline_model());
    assert_eq!(meta.get("arch").map(String::as_str), Some("resnet18"));
    assert_eq!(meta.get("width").map(String::as_str), Some("4"));
    assert_eq!(meta.get("image_size").map(String::as_str), Some("16"));
}

fn predict(model: &Path, input: &Path, output: &Path, extra: &[&str]) -> Vec<f32> {
    snl()
        .args(["predict", "--model", model.to_str().unwrap(), "--input", input.to_str().unwrap()])
        .args(["--output", output.to_str().unwrap()])
        .args(extra)
        .assert()
        .success();
    let out = read_tensors(output);
    assert_eq!(out.keys().collect::<Vec<_>>(), ["logits"]);
    out["logits"].f32s()
}

#[test]
fn predict_is_deterministic_and_checks_the_input_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("x.safetensors");
    write_input(&input, 5, 16);
    let model = baseline_model();
    let first = predict(&model, &input, &tmp.path().join("a.safetensors"), &[]);
    let second = predict(&model, &input, &tmp.path().join("b.safetensors"), &[]);
    assert_eq!(read_tensors(&tmp.path().join("a.safetensors"))["logits"].shape, [5, 10]);
    assert_eq!(first, second, "predict is deterministic");
    assert!(first.iter().all(|v| v.is_finite()));
    // A batch at a time: the same logits (eval mode: each image on its own).
    for batch in ["1", "2"] {
        let batched = predict(
            &model,
            &input,
            &tmp.path().join(format!("batch{batch}.safetensors")),
            &["--batch-size", batch],
        );
        let diff = first.iter().zip(&batched).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(batched.len() == first.len() && diff <= 1e-5, "--batch-size {batch}: differs by {diff}");
    }

    // A batch of the wrong size is refused with one clear line.
    let wrong = tmp.path().join("x32.safetensors");
    write_input(&wrong, 2, 32);
    snl()
        .args(["predict", "--model", model.to_str().unwrap(), "--input", wrong.to_str().unwrap()])
        .args(["--output", tmp.path().join("c.safetensors").to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("(N, 3, 16, 16)"));
    assert!(!tmp.path().join("c.safetensors").exists());
}

/// The model `snl train` saved loads into the PyTorch reference with `strict=True` and gives
/// the logits `snl predict` gives; a `.pth.tar` PyTorch saves imports and predicts the same.
#[test]
fn pytorch_round_trip_against_the_reference() {
    if !torch_available("pytorch_round_trip_against_the_reference") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("x.safetensors");
    write_input(&input, 4, 16);
    let snl_logits = predict(&baseline_model(), &input, &tmp.path().join("snl.safetensors"), &[]);
    let torch_out = tmp.path().join("torch.safetensors");
    let pth = tmp.path().join("fresh.pth.tar");
    let torch_pth_out = tmp.path().join("torch_pth.safetensors");
    let script = r#"
import sys
ref, model, x, out, pth, pth_out = sys.argv[1:7]
sys.path.insert(0, ref)
import torch
from safetensors.torch import load_file, save_file
from torch_ref import ResNet
torch.manual_seed(0)
net = ResNet("resnet18", classes=10, width=4, image=16)
sd = load_file(model)
assert sd["bn1.num_batches_tracked"].dtype == torch.int64
net.load_state_dict(sd, strict=True)
net.eval()
with torch.no_grad():
    save_file({"logits": net(load_file(x)["x"]).contiguous()}, out)
# A fresh PyTorch model with random masks and BN state, saved as the authors' scripts do.
net = ResNet("resnet18", classes=10, width=4, image=16)
with torch.no_grad():
    for name, p in net.named_parameters():
        if name.endswith("alphas"):
            p.copy_(torch.rand_like(p))
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
            m.num_batches_tracked.fill_(7)
torch.save({"arch": "resnet18", "state_dict": net.state_dict(), "optimizer": {}}, pth)
net.eval()
with torch.no_grad():
    save_file({"logits": net(load_file(x)["x"]).contiguous()}, pth_out)
"#;
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args([reference_dir().as_path(), &baseline_model(), &input, &torch_out, &pth, &torch_pth_out])
        .output()
        .unwrap();
    assert!(status.status.success(), "python: {}", String::from_utf8_lossy(&status.stderr));
    let max_diff = |a: &[f32], b: &[f32]| {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
    };
    let torch_logits = read_tensors(&torch_out)["logits"].f32s();
    let diff = max_diff(&snl_logits, &torch_logits);
    assert!(diff < 1e-4, "snl predict and PyTorch differ by {diff}");

    // PyTorch's own checkpoint, imported: same names, same logits.
    let imported = tmp.path().join("imported.safetensors");
    snl()
        .args(["import", "--pth", pth.to_str().unwrap(), "--arch", "resnet18", "--width", "4"])
        .args(["--image-size", "16", "--out", imported.to_str().unwrap()])
        .assert()
        .success();
    let names = |p: &Path| read_tensors(p).keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&imported), names(&baseline_model()));
    let imported_logits = predict(&imported, &input, &tmp.path().join("imported_out.safetensors"), &[]);
    let diff = max_diff(&imported_logits, &read_tensors(&torch_pth_out)["logits"].f32s());
    assert!(diff < 1e-4, "imported .pth.tar: snl and PyTorch differ by {diff}");
}

#[test]
fn import_committed_pth_fixtures_then_count_without_flags() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../snl-models/tests/data");
    let tmp = tempfile::tempdir().unwrap();
    let mut counts = vec![];
    // The authors' layout, DataParallel `module.` prefixes, and a bare state_dict.
    for name in ["resnet18_w4.pth.tar", "resnet18_w4_module.pth.tar", "resnet18_w4_bare.pth"] {
        let out = tmp.path().join(format!("{name}.safetensors"));
        snl()
            .args([
                "import",
                "--pth",
                data.join(name).to_str().unwrap(),
                "--arch",
                "resnet18",
                "--width",
                "4",
            ])
            .args(["--granularity", "channel", "--stem-relu", "--out", out.to_str().unwrap()])
            .assert()
            .success();
        let tensors = read_tensors(&out);
        assert!(tensors.contains_key("alpha0.alphas") && tensors.contains_key("conv1.weight"));
        assert!(tensors.keys().all(|k| !k.starts_with("module.")), "{name}: module. prefix kept");
        assert_eq!(tensors["bn1.num_batches_tracked"].dtype, Dtype::I64);
        let count = count_json(&["--model", out.to_str().unwrap()]);
        assert_eq!(count["arch"], "resnet18");
        // 32x32 with the stem ReLU at width 4: a sixteenth of 557056.
        assert_eq!(as_usize(&count["total"]), 557_056 / 16);
        check_count_shape(&count);
        counts.push(count);
    }
    assert!(counts.windows(2).all(|w| w[0] == w[1]), "the three layouts hold the same model");
}

#[test]
fn linearize_keeps_the_budget_and_exports_a_bundle() {
    let run = linearized();
    assert!(!run.join("checkpoint.safetensors").exists());
    let result = read_json(&run.join("result.json"));
    assert_eq!(result["command"], "linearize");
    assert_eq!(result["selection"], "snl");
    assert_eq!(as_usize(&result["budget"]), W4_TOTAL / 10);
    assert_eq!(as_usize(&result["relu_total"]), W4_TOTAL);
    let kept = as_usize(&result["relu_count"]);
    assert!(kept > 0 && kept <= W4_TOTAL / 10, "{result}");
    assert!(as_usize(&result["search_epochs"]) >= 1);
    let metrics = metrics_without_time(run);
    assert_eq!(metrics.len(), as_usize(&result["search_epochs"]) + 1);
    assert_eq!(metrics.last().unwrap()["phase"], "finetune");

    let model = run.join("model.safetensors");
    let count = count_json(&["--model", model.to_str().unwrap()]);
    assert_eq!(as_usize(&count["kept"]), kept);
    assert_eq!(as_usize(&count["total"]), W4_TOTAL);
    check_count_shape(&count);

    let out = tempfile::tempdir().unwrap();
    let bundle = out.path().join("bundle");
    snl()
        .args(["export", "--model", model.to_str().unwrap(), "--out", bundle.to_str().unwrap()])
        .assert()
        .success();
    let manifest = read_json(&bundle.join("manifest.json"));
    assert_eq!(as_usize(&manifest["relu_total"]), W4_TOTAL);
    assert_eq!(as_usize(&manifest["relu_kept"]), kept);
    let masks = read_tensors(&bundle.join("masks.safetensors"));
    let indices = read_tensors(&bundle.join("kept_indices.safetensors"));
    let sites = manifest["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 16);
    assert_eq!(masks.len(), sites.len());
    for (site, counted) in sites.iter().zip(count["sites"].as_array().unwrap()) {
        let name = site["name"].as_str().unwrap();
        assert_eq!(site["name"], counted["name"]);
        assert_eq!(site["kept"], counted["kept"], "{name}: export and count agree");
        let shape: Vec<usize> = site["shape"].as_array().unwrap().iter().map(as_usize).collect();
        let (kept, total) = (as_usize(&site["kept"]), as_usize(&site["total"]));
        assert_eq!(total, shape.iter().product::<usize>());
        assert!(site["layout"].as_str().unwrap().starts_with("CHW"));
        assert_eq!(site["fully_linear"].as_bool().unwrap(), kept == 0, "{name}");
        let mask = &masks[name];
        assert_eq!((mask.dtype, &mask.shape), (Dtype::U8, &shape), "{name}");
        assert!(mask.data.iter().all(|&b| b <= 1));
        assert_eq!(mask.data.iter().filter(|&&b| b == 1).count(), kept, "{name}");
        match indices.get(name) {
            Some(idx) => {
                assert_eq!((idx.dtype, idx.shape.as_slice()), (Dtype::U32, [kept].as_slice()), "{name}");
                let flat: Vec<usize> = idx
                    .data
                    .chunks_exact(4)
                    .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
                    .collect();
                assert!(flat.iter().all(|&i| mask.data[i] == 1), "{name}: indices point at kept positions");
            }
            None => assert_eq!(kept, 0, "{name}: kept ReLUs but no indices"),
        }
    }
    let weights = read_tensors(&bundle.join("weights.safetensors"));
    assert_eq!(weights.len(), 138);
    let alphas = weights["layer1.0.alpha1.alphas"].f32s();
    assert!(alphas.iter().all(|&a| a == 0.0 || a == 1.0), "exported masks are binary");
    // The weights describe their own model: snl reads them back and counts the exported ReLUs.
    let exported = count_json(&["--model", bundle.join("weights.safetensors").to_str().unwrap()]);
    assert_eq!((as_usize(&exported["kept"]), as_usize(&exported["total"])), (kept, W4_TOTAL));
    // And keep the model's record of its data: its validation split is rebuilt, not drawn anew.
    let (theirs, ours) = (read_metadata(&model), read_metadata(&bundle.join("weights.safetensors")));
    for key in ["dataset", "seed", "val_size", "synthetic"] {
        assert_eq!(ours.get(key), theirs.get(key), "{key}");
        assert!(ours.contains_key(key), "{key}");
    }

    // An existing, non-empty export folder is refused and left alone.
    let before = std::fs::read(bundle.join("manifest.json")).unwrap();
    snl()
        .args(["export", "--model", model.to_str().unwrap(), "--out", bundle.to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("nothing was overwritten"));
    assert_eq!(std::fs::read(bundle.join("manifest.json")).unwrap(), before);
}

#[test]
fn linearize_baselines_keep_the_budget() {
    let tmp = tempfile::tempdir().unwrap();
    for selection in ["random", "uniform"] {
        let out = tmp.path().join(selection);
        let mut args = linearize_args(&baseline_model(), "1000", 0);
        args.extend(["--selection".into(), selection.into(), "--out".into(), out.to_str().unwrap().into()]);
        snl().args(&args).assert().success();
        let result = read_json(&out.join("result.json"));
        assert_eq!(result["selection"], selection);
        assert_eq!(as_usize(&result["search_epochs"]), 0);
        let kept = as_usize(&result["relu_count"]);
        assert!(kept <= 1000 && kept > 900, "{selection}: {kept} of budget 1000");
        let count = count_json(&["--model", out.join("model.safetensors").to_str().unwrap()]);
        assert_eq!(as_usize(&count["kept"]), kept);
    }
}

#[test]
fn help_and_version_work_for_every_command() {
    snl().arg("--version").assert().success().stdout(predicate::str::contains("snl"));
    for command in ["demo", "train", "linearize", "eval", "count", "predict", "import", "export"] {
        snl().args([command, "--help"]).assert().success().stdout(predicate::str::contains("Usage"));
    }
    // The test-only flag stays out of the help.
    snl().args(["train", "--help"]).assert().success().stdout(predicate::str::contains("stop-after").not());
}

/// The main job end to end: a baseline, a linearized model within 10% of its ReLUs that
/// still solves the task, both run folders complete, and the before/after table.
#[test]
fn demo_trains_linearizes_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let output = snl().args(["demo", "--out"]).arg(tmp.path()).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let baseline = read_json(&tmp.path().join("baseline/result.json"));
    let linearized = read_json(&tmp.path().join("linearized/result.json"));
    assert_eq!(linearized["relu_total"], 15360);
    assert_eq!(linearized["budget"], 1536);
    let kept = linearized["relu_count"].as_u64().unwrap();
    assert!(kept > 0 && kept <= 1536, "{kept} ReLUs kept");
    for result in [&baseline, &linearized] {
        let top1 = result["test"]["top1"].as_f64().unwrap();
        assert!(top1 > 90.0, "test top-1 {top1} on a task the demo's model solves");
    }
    for file in ["best.safetensors", "model.safetensors", "config.json", "metrics.jsonl"] {
        assert!(tmp.path().join("baseline").join(file).is_file(), "baseline/{file}");
        assert!(tmp.path().join("linearized").join(file).is_file(), "linearized/{file}");
    }
    let table = String::from_utf8_lossy(&output.stdout);
    let relus = table.lines().find(|l| l.starts_with("ReLUs")).unwrap_or_else(|| panic!("{table}"));
    assert_eq!(relus.split_whitespace().collect::<Vec<_>>(), ["ReLUs", "15360", &kept.to_string()]);
    assert!(table.contains("layer4") && table.contains("run folder"), "{table}");
}

#[test]
fn demo_refuses_a_finished_run_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let baseline = tmp.path().join("baseline");
    std::fs::create_dir_all(&baseline).unwrap();
    std::fs::write(baseline.join("result.json"), "{\"keep\": true}\n").unwrap();
    snl()
        .args(["-q", "demo", "--out", tmp.path().to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with("error: ").and(predicate::str::contains("finished run")));
    assert_eq!(std::fs::read_to_string(baseline.join("result.json")).unwrap(), "{\"keep\": true}\n");

    // A taken `linearized` folder is refused before the baseline is trained, not after.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("linearized")).unwrap();
    std::fs::write(tmp.path().join("linearized/notes.txt"), "mine").unwrap();
    snl()
        .args(["-q", "demo", "--out", tmp.path().to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("linearized").and(predicate::str::contains("not an empty folder")));
    assert!(!tmp.path().join("baseline/result.json").exists());
    assert_eq!(std::fs::read_to_string(tmp.path().join("linearized/notes.txt")).unwrap(), "mine");
}

#[test]
fn eval_rebuilds_the_validation_split_with_the_models_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("seed5");
    snl().args(["--seed", "5"]).args(train_args(1)).arg("--out").arg(&run).assert().success();
    let best = run.join("best.safetensors");
    let eval = |seed: &[&str]| {
        snl()
            .args(seed)
            .args(["eval", "--model", best.to_str().unwrap(), "--dataset", "synthetic", "--split", "val"])
            .args(["--batch-size", "100", "--json"])
            .output()
            .unwrap()
    };
    // Without --seed (whose default is 0) as with --seed 5: the run's own validation split.
    for seed in [&[][..], &["--seed", "5"]] {
        let output = eval(seed);
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(stdout_json(&output), read_json(&run.join("result.json"))["val"]);
    }
    let output = eval(&["--seed", "3"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.starts_with("error: --seed 3 differs from the seed 5 of"), "{err}");
    assert!(output.stdout.is_empty());
    // On synthetic data the seed draws the test images too, and the error says so.
    let args = ["eval", "--model", s(&best), "--dataset", "synthetic", "--split", "test"];
    fails(&[&["--seed", "3"][..], &args].concat(), 2, &["the synthetic images the model was trained on"]);

    // Linearizing it without --seed keeps its data and validation split too, and records so.
    let snl_run = tmp.path().join("snl");
    let mut args = linearize_args(&best, "25%", 0);
    let at = args.iter().position(|a| a == "--max-search-epochs").unwrap();
    args[at + 1] = "1".into();
    args.push("--out".into());
    let output = snl().args(&args).arg(&snl_run).output().unwrap();
    // One search epoch need not reach the budget; the run's config is written before it starts.
    let config = read_json(&snl_run.join("config.json"));
    assert_eq!(config["seed"], 5, "{}", stderr(&output));
    assert_eq!(config["split_seed"], 5, "{}", stderr(&output));
    // With --seed 3 the run's data order and draws move (a study's seeds), but its validation
    // split is still the model's own (seed 5): never one holding the model's training images.
    let output = snl().args(["--seed", "3"]).args(&args).arg(tmp.path().join("snl3")).output().unwrap();
    let config = read_json(&tmp.path().join("snl3").join("config.json"));
    assert_eq!(
        (config["seed"].as_u64(), config["split_seed"].as_u64()),
        (Some(3), Some(5)),
        "{}",
        stderr(&output)
    );
}

/// Runs `snl args` (with `-q`): success, nothing on stderr, one stdout line holding `result`.
fn quiet<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S], result: &str) {
    let output = snl().args(args).output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    assert_eq!(stderr(&output), "", "{args:?}: -q printed more than the result");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().count(), 1, "{args:?}: {stdout}");
    assert!(stdout.contains(result), "{args:?}: no `{result}` in {stdout}");
}

#[test]
fn quiet_still_prints_every_commands_result_on_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    let at = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    let input = at("x.safetensors");
    write_input(Path::new(&input), 2, 16);
    let model = baseline_model();
    let model = model.to_str().unwrap();
    let pth = Path::new(env!("CARGO_MANIFEST_DIR")).join("../snl-models/tests/data/resnet18_w4.pth.tar");
    let mut train = train_args(1); // train_args and linearize_args hold -q
    train.extend(["--out".into(), at("train")]);
    quiet(&train, "best epoch 1/1: val top-1");
    let mut linearize = linearize_args(Path::new(model), "10%", 0);
    linearize.extend(["--out".into(), at("linearize")]);
    quiet(&linearize, "ReLUs kept (budget");
    let flags = ["--arch", "resnet18", "--width", "4", "--granularity", "channel", "--stem-relu"];
    let imported = at("i");
    let import = [&["-q", "import", "--pth", pth.to_str().unwrap()][..], &flags, &["--out", &imported]];
    quiet(&import.concat(), "imported");
    quiet(&["-q", "export", "--model", model, "--out", &at("bundle")], "exported");
    quiet(
        &["-q", "predict", "--model", model, "--input", &input, "--output", &at("logits")],
        "wrote logits [2, 10]",
    );
}

/// The test split of real data is the same whatever the seed: eval's `--seed` is not refused
/// there (on the validation split, which the seed draws, it is).
#[test]
fn eval_on_the_test_split_of_real_data_takes_any_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let classes: Vec<String> = (0..10).map(|c| format!("c{c}")).collect();
    let names: Vec<&str> = classes.iter().map(String::as_str).collect();
    image_folder(tmp.path(), "train", &names, 3);
    image_folder(tmp.path(), "test", &names, 1);
    let run = tmp.path().join("run");
    let data = ["--dataset", "folder", "--data-dir", s(tmp.path())];
    let train = ["train", "--arch", "resnet18", "--width", "4", "--epochs", "1", "--val-size", "10"];
    snl().args(["--seed", "5", "-q"]).args(train).args(data).arg("--out").arg(&run).assert().success();
    let model = run.join("best.safetensors");
    let eval = |seed: &str, split: &str| {
        let args = ["--seed", seed, "eval", "--model", s(&model), "--split", split, "--json"];
        snl().args(args).args(data).output().unwrap()
    };
    let (own, other) = (eval("5", "test"), eval("3", "test"));
    assert!(other.status.success(), "{}", stderr(&other));
    assert_eq!(stdout_json(&other), stdout_json(&own));
    assert_eq!(stdout_json(&own), read_json(&run.join("result.json"))["test"]);
    let val = eval("3", "val");
    assert_eq!(val.status.code(), Some(2), "{}", stderr(&val));
    assert!(stderr(&val).contains("the validation split the model was selected on"), "{}", stderr(&val));
}
