//! Shared helpers: fixture loading and comparisons.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle::{Device, Tensor};
use serde_json::Value;
use snl_models::{Granularity, ModelConfig, ResNetConfig, WrnConfig};

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("data")
}

pub struct Fixture {
    pub name: String,
    pub config: ModelConfig,
    pub expected: Value,
    pub model: HashMap<String, Tensor>,
    pub x: Tensor,
    pub y: Tensor,
}

pub fn fixture(name: &str) -> Fixture {
    let dir = data_dir().join(name);
    let text = std::fs::read_to_string(dir.join("expected.json")).expect("expected.json");
    let expected: Value = serde_json::from_str(&text).expect("json");
    let u = |k: &str| expected[k].as_u64().expect(k) as usize;
    let granularity: Granularity = expected["granularity"].as_str().expect("granularity").parse().expect("g");
    let config = match expected["arch"].as_str().expect("arch") {
        "resnet18" => ModelConfig::ResNet(ResNetConfig {
            width: u("width"),
            image_size: u("image"),
            granularity,
            stem_relu: expected["stem_relu"].as_bool().expect("stem_relu"),
            ..ResNetConfig::resnet18(u("classes"))
        }),
        _ => ModelConfig::Wrn(WrnConfig {
            image_size: u("image"),
            granularity,
            final_relu: expected["final_relu"].as_bool().expect("final_relu"),
            ..WrnConfig::new(u("depth"), u("k"), u("classes")).expect("wrn config")
        }),
    };
    let model = candle::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).expect("model");
    let batch = candle::safetensors::load(dir.join("batch.safetensors"), &Device::Cpu).expect("batch");
    Fixture { name: name.to_string(), config, expected, model, x: batch["x"].clone(), y: batch["y"].clone() }
}

pub fn matrix(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .expect("rows")
        .iter()
        .map(|r| r.as_array().expect("row").iter().map(|x| x.as_f64().expect("f") as f32).collect())
        .collect()
}

pub fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len(), "row count");
    a.iter()
        .zip(b)
        .flat_map(|(r, s)| {
            assert_eq!(r.len(), s.len(), "column count");
            r.iter().zip(s).map(|(x, y)| (x - y).abs())
        })
        .fold(0.0, f32::max)
}

pub const FIXTURES: [&str; 5] = [
    "resnet18_w4_pixel",
    "resnet18_w4_channel",
    "resnet18_w4_img16_stem",
    "wrn_10_1_pixel",
    "wrn_10_1_channel",
];
