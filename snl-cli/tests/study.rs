//! What a fair study needs of `snl linearize`: controls trained exactly as long as an SNL
//! run (`--search-epochs`), a run seed apart from the teacher's split, the cap's two
//! endings (`--max-search-epochs` raised on resume, `--finish-at-cap`), and `--val-size 0`.

mod common;

use std::path::Path;

use common::*;
use predicates::prelude::*;

fn flag_value(args: &mut [String], flag: &str, value: &str) {
    let i = args.iter().position(|a| a == flag).expect("flag present");
    args[i + 1] = value.to_string();
}

/// `root/{train,test}/<class>/<i>.png`: `per_class` 8x8 images per class and split.
fn write_image_folder(root: &Path, classes: &[&str], per_class: u32, seed: u32) {
    for split in ["train", "test"] {
        for (c, class) in (0u32..).zip(classes) {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..per_class {
                let pixel = |x: u32, y: u32| {
                    image::Rgb([(x * 30 + c * 100) as u8, (y * 30) as u8, (i * 20 + seed) as u8])
                };
                image::RgbImage::from_fn(8, 8, pixel).save(dir.join(format!("{i}.png"))).unwrap();
            }
        }
    }
}

fn phases(run: &Path) -> Vec<String> {
    metrics_without_time(run).iter().map(|m| m["phase"].as_str().unwrap().to_string()).collect()
}

#[test]
fn a_control_trains_as_many_epochs_as_the_snl_run_and_resumes_exactly() {
    let snl_run = linearized();
    let snl_result = read_json(&snl_run.join("result.json"));
    let search = snl_result["search_epochs"].as_u64().unwrap() as usize;
    assert!(search >= 2);
    assert_eq!(snl_result["epochs_trained"].as_u64().unwrap() as usize, search + 1);
    assert_eq!(snl_result["lambda0"].as_f64().unwrap(), 2e-2);
    assert!(snl_result["lambda_final"].as_f64().unwrap() >= 2e-2);

    let tmp = tempfile::tempdir().unwrap();
    let mut args = linearize_args(&baseline_model(), "10%", 1);
    args.retain(|a| a != "-q");
    args.extend(["--selection", "random", "--search-epochs", &search.to_string()].map(String::from));
    let full = tmp.path().join("random");
    snl().args(&args).arg("--out").arg(&full).assert().success();
    let result = read_json(&full.join("result.json"));
    assert_eq!(result["epochs_trained"], snl_result["epochs_trained"]);
    assert_eq!(result["search_epochs"].as_u64().unwrap() as usize, search);
    assert!(result["lambda0"].is_null() && result["lambda_final"].is_null());
    let mut want = vec!["frozen_mask".to_string(); search];
    want.push("finetune".into());
    assert_eq!(phases(&full), want);
    // The drawn mask is what the control kept, never moved by its training.
    let budget = W4_TOTAL / 10;
    let kept = result["relu_count"].as_u64().unwrap() as usize;
    assert!(kept <= budget && kept + 16 > budget, "{kept} of budget {budget}");

    // Stopped inside the frozen-mask epochs, resumed: the same run.
    let stopped = tmp.path().join("stopped");
    snl().args(&args).arg("--out").arg(&stopped).args(["--stop-after-epochs", "1"]).assert().code(3);
    snl().args(["linearize", "--resume", stopped.to_str().unwrap()]).assert().success();
    assert_eq!(result_without_time(&full), result_without_time(&stopped));
    assert_eq!(metrics_without_time(&full), metrics_without_time(&stopped));
    assert_eq!(
        read_tensors(&full.join("model.safetensors")),
        read_tensors(&stopped.join("model.safetensors"))
    );
}

/// The `batches` of each logged epoch of a phase.
fn batches_of(run: &Path, phase: &str) -> Vec<u64> {
    metrics_without_time(run)
        .iter()
        .filter(|m| m["phase"] == phase)
        .map(|m| m["batches"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_control_given_search_steps_takes_exactly_the_snl_runs_steps() {
    let snl_run = linearized();
    let snl_result = read_json(&snl_run.join("result.json"));
    let steps = snl_result["search_steps"].as_u64().unwrap();
    let searched = batches_of(snl_run, "search");
    assert_eq!(searched.iter().sum::<u64>(), steps, "search_steps is the search epochs' batches");
    assert!(searched.last() < searched.first(), "the fixture's search ends mid-epoch: {searched:?}");

    let tmp = tempfile::tempdir().unwrap();
    let mut args = linearize_args(&baseline_model(), "10%", 1);
    args.extend(["--selection", "uniform", "--search-steps", &steps.to_string()].map(String::from));
    let full = tmp.path().join("uniform");
    snl().args(&args).arg("--out").arg(&full).assert().success();
    let result = read_json(&full.join("result.json"));
    assert_eq!(batches_of(&full, "frozen_mask"), searched, "the same steps, epoch by epoch");
    assert_eq!(
        (&result["search_steps"], &result["epochs_trained"]),
        (&snl_result["search_steps"], &snl_result["epochs_trained"])
    );
    // Stopped after its first epoch and resumed: the same run.
    let stopped = tmp.path().join("stopped");
    snl().args(&args).arg("--out").arg(&stopped).args(["--stop-after-epochs", "1"]).assert().code(3);
    snl().args(["linearize", "--resume", stopped.to_str().unwrap(), "-q"]).assert().success();
    assert_eq!(result_without_time(&full), result_without_time(&stopped));
    assert_eq!(metrics_without_time(&full), metrics_without_time(&stopped));
}

#[test]
fn search_epochs_and_steps_are_for_controls_only() {
    let tmp = tempfile::tempdir().unwrap();
    for flag in ["--search-epochs", "--search-steps"] {
        let mut args = linearize_args(&baseline_model(), "10%", 1);
        args.extend([flag, "2", "--out", tmp.path().join("x").to_str().unwrap()].map(String::from));
        snl()
            .args(&args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!("{flag} is for --selection random or uniform")));
    }
    assert!(!tmp.path().join("x").exists());
}

#[test]
fn the_run_seed_moves_data_order_and_draws_but_not_the_teachers_split() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = linearize_args(&baseline_model(), "10%", 0);
    args.extend(["--selection", "uniform"].map(String::from));
    let (a, b) = (tmp.path().join("seed0"), tmp.path().join("seed1"));
    snl().args(&args).arg("--out").arg(&a).assert().success();
    snl().args(&args).args(["--seed", "1"]).arg("--out").arg(&b).assert().success();
    let (ra, rb) = (read_json(&a.join("result.json")), read_json(&b.join("result.json")));
    assert_eq!((ra["seed"].as_u64(), rb["seed"].as_u64()), (Some(0), Some(1)));
    let masks = |run: &Path| {
        read_tensors(&run.join("model.safetensors"))
            .into_iter()
            .filter(|(name, _)| name.ends_with("alphas"))
            .collect::<Vec<_>>()
    };
    assert_ne!(masks(&a), masks(&b), "another seed draws another mask");
    // Both are checked on the teacher's validation split: the same images.
    assert_eq!(ra["val"]["samples"], rb["val"]["samples"]);
    let config: serde_json::Value = read_json(&b.join("config.json"));
    assert_eq!(config["split_seed"].as_u64(), Some(0));
    // eval rebuilds that split from the model's metadata.
    assert_eq!(read_metadata(&b.join("model.safetensors"))["seed"], "0");
}

#[test]
fn a_search_at_its_cap_resumes_with_a_larger_cap_or_finishes_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = linearize_args(&baseline_model(), "10%", 1);
    args.retain(|a| a != "-q");
    flag_value(&mut args, "--max-search-epochs", "1");
    let run = tmp.path().join("capped");
    let out = snl().args(&args).arg("--out").arg(&run).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let advice = format!("snl linearize --resume {} --max-search-epochs N", run.display());
    // One error line, after the epoch's progress line, with the cause and the advice.
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    let (cause, what_to_do) = (errors[0].find("gave up after 1 epochs"), errors[0].find(&advice));
    assert!(cause.is_some() && what_to_do.is_some() && cause < what_to_do, "the cause first: {err}");

    // The advice works: the search goes on from its checkpoint.
    let resume =
        |extra: &[&str]| snl().args(["linearize", "--resume", run.to_str().unwrap()]).args(extra).assert();
    resume(&["--max-search-epochs", "2"]).code(1).stderr(predicate::str::contains("gave up after 2 epochs"));
    assert_eq!(read_json(&run.join("config.json"))["snl"]["max_search_epochs"], 2);
    resume(&["--finish-at-cap"])
        .success()
        .stderr(predicate::str::contains("binarizing and finetuning anyway"));
    let result = read_json(&run.join("result.json"));
    assert_eq!(result["search_epochs"], 2);
    assert!(result["relu_count"].as_u64().unwrap() > result["budget"].as_u64().unwrap());
    // Other settings are still refused on resume.
    snl().args(["linearize", "--resume", run.to_str().unwrap(), "--lasso", "1"]).assert().code(2);
}

#[test]
fn val_size_zero_trains_on_every_image_and_keeps_the_last_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_image_folder(&data, &["a", "b"], 6, 3);
    let out = tmp.path().join("run");
    snl()
        .args(["train", "--arch", "resnet18", "--width", "2", "--dataset", "folder", "--batch-size", "4"])
        .args(["--epochs", "2", "--val-size", "0", "--data-dir", data.to_str().unwrap(), "--out"])
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("last epoch 2/2: no validation split"));
    let result = read_json(&out.join("result.json"));
    assert!(result["val"].is_null());
    assert_eq!(result["best_epoch"], 1);
    assert!(result["model_kept"].as_str().unwrap().contains("last epoch"));
    assert_eq!(read_tensors(&out.join("model.safetensors")), read_tensors(&out.join("best.safetensors")));
    assert!(metrics_without_time(&out).iter().all(|m| m["val"].is_null()));
    snl()
        .args(["eval", "--model", out.join("best.safetensors").to_str().unwrap(), "--dataset", "folder"])
        .args(["--data-dir", data.to_str().unwrap(), "--split", "val"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--val-size 0"));
}
