//! Save from snl, load in PyTorch with `load_state_dict(strict=True)`, compare BN updates
//! and outputs. Needs python3 with torch and safetensors; skipped (with a message, not a
//! failure) when they are not importable. tests/checkpoint.rs has a Python-free round trip.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use candle::{Device, ModuleT};
use common::{data_dir, fixture};
use snl_models::checkpoint;

/// The repository's own PyTorch reference (`SNL_TORCH_REFERENCE` overrides it).
const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../snl-bench/scripts/torch_ref.py");

fn torch_available() -> bool {
    Command::new("python3")
        .args(["-c", "import torch, safetensors"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn round_trip(name: &str) {
    let reference = std::env::var("SNL_TORCH_REFERENCE").unwrap_or_else(|_| REFERENCE.to_string());
    if !torch_available() || !Path::new(&reference).exists() {
        eprintln!("skipping {name}: python3 with torch + safetensors, or {reference}, not available");
        return;
    }
    let f = fixture(name);
    let (model, vars) = f.config.build_trainable(&Device::Cpu).unwrap();
    checkpoint::load_into(&vars, &f.model).unwrap();
    model.forward_t(&f.x, true).unwrap();
    let eval = model.forward_t(&f.x, false).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("snl.safetensors");
    let out = dir.path().join("rust_out.safetensors");
    checkpoint::save_varmap(&vars, &f.config.to_metadata(), &saved).unwrap();
    checkpoint::save(&HashMap::from([("eval_logits".to_string(), eval)]), &HashMap::new(), &out).unwrap();
    let output = Command::new("python3")
        .arg(data_dir().join("torch_check.py"))
        .arg(&reference)
        .arg(data_dir().join(name))
        .arg(&saved)
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{name}: {}", stdout.trim());
    assert!(output.status.success(), "{name}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn torch_loads_saved_resnet18_strictly() {
    round_trip("resnet18_w4_channel");
}

#[test]
fn torch_loads_saved_wrn_strictly() {
    round_trip("wrn_10_1_pixel");
}
