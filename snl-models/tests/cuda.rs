//! Both networks on a CUDA device against the same weights on the CPU: eval and train
//! logits, the SNL loss, and every mask's gradient (what Algorithm 1 learns from).
//!
//! Built only with `--features cuda`. Without a usable device each test says so and
//! passes, unless `SNL_REQUIRE_GPU=1` (set by `scripts/gpu-check.sh`) makes that a failure.
#![cfg(feature = "cuda")]

use candle::{DType, Device, ModuleT, Tensor};
use candle_nn::VarMap;
use snl_core::loss;
use snl_models::{ModelConfig, ResNetConfig, WrnConfig, params};

/// Relative error allowed between CPU and GPU after a whole network (summation orders
/// differ in every layer).
const TOL: f32 = 1e-3;

fn gpu() -> Option<Device> {
    match Device::new_cuda(0) {
        Ok(device) => Some(device),
        Err(e) if std::env::var_os("SNL_REQUIRE_GPU").is_some_and(|v| v == "1") => {
            panic!("SNL_REQUIRE_GPU=1 but no CUDA device: {e}")
        }
        Err(e) => {
            eprintln!("skipped: no CUDA device ({e})");
            None
        }
    }
}

/// Largest elementwise difference relative to the largest magnitude of `want` (on the CPU).
fn rel_err(got: &Tensor, want: &Tensor) -> f32 {
    let g = got.to_device(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let w = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(g.len(), w.len());
    let scale = w.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    g.iter().zip(&w).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale
}

/// Logits (eval, train), the loss and each mask's gradient, by mask name.
type Run = (Tensor, Tensor, f32, Vec<(String, Tensor)>);

/// The model of `config` on `device` with the weights and masks of `source` (CPU).
fn run(config: &ModelConfig, source: &VarMap, device: &Device) -> Run {
    let (model, vars) = config.build_trainable(device).unwrap();
    {
        let src = source.data().lock().unwrap();
        for (name, var) in vars.data().lock().unwrap().iter() {
            var.set(&src[name].as_tensor().to_device(device).unwrap()).unwrap();
        }
    }
    let side = config.image_size();
    let n = 4 * 3 * side * side;
    let x: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.618).sin()).collect();
    let x = Tensor::from_vec(x, (4, 3, side, side), device).unwrap();
    let y = Tensor::new(&[0u32, 1, 2, 1], device).unwrap();
    let eval = model.forward_t(&x, false).unwrap();
    let train = model.forward_t(&x, true).unwrap();
    let l = (loss::cross_entropy(&train, &y).unwrap() + loss::distillation(&train, &eval, 4.0).unwrap())
        .unwrap()
        .add(&loss::lasso(&model).unwrap().affine(1e-3, 0.0).unwrap())
        .unwrap();
    let grads = l.backward().unwrap();
    let masks = vars.data().lock().unwrap();
    let mut mask_grads: Vec<(String, Tensor)> = masks
        .iter()
        .filter(|(name, _)| params::is_mask(name))
        .map(|(name, var)| (name.clone(), grads.get(var).expect("a mask gradient").clone()))
        .collect();
    mask_grads.sort_by(|a, b| a.0.cmp(&b.0));
    (eval, train, l.to_scalar::<f32>().unwrap(), mask_grads)
}

fn same_on_both(config: ModelConfig) {
    let Some(gpu) = gpu() else { return };
    let (_, source) = config.build_trainable(&Device::Cpu).unwrap();
    params::init_seeded(&source, config.init_scheme(), 3).unwrap();
    // Masks away from 1, so the linear part of every activation counts too.
    for (name, var) in source.data().lock().unwrap().iter() {
        if params::is_mask(name) {
            var.set(&Tensor::rand(0f32, 1.0, var.shape(), &Device::Cpu).unwrap()).unwrap();
        }
    }
    let (ce, ct, cl, cg) = run(&config, &source, &Device::Cpu);
    let (ge, gt, gl, gg) = run(&config, &source, &gpu);
    let what = config.arch_name();
    assert!(rel_err(&ge, &ce) < TOL, "{what}: eval logits differ, {:e}", rel_err(&ge, &ce));
    assert!(rel_err(&gt, &ct) < TOL, "{what}: train logits differ, {:e}", rel_err(&gt, &ct));
    assert!((gl - cl).abs() <= TOL * cl.abs(), "{what}: loss {gl} on CUDA, {cl} on the CPU");
    assert_eq!(gg.len(), cg.len());
    for ((name, g), (_, c)) in gg.iter().zip(&cg) {
        assert_eq!(g.dtype(), DType::F32);
        assert!(rel_err(g, c) < TOL, "{what}: gradient of {name} differs, {:e}", rel_err(g, c));
    }
}

#[test]
fn resnet18_matches_the_cpu() {
    same_on_both(ModelConfig::from(ResNetConfig { width: 4, image_size: 16, ..ResNetConfig::resnet18(10) }));
}

#[test]
fn wrn_matches_the_cpu() {
    same_on_both(ModelConfig::from(WrnConfig { image_size: 16, ..WrnConfig::new(10, 2, 10).unwrap() }));
}
