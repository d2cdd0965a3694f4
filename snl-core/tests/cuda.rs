//! The `fast` ops on a CUDA device against the same ops on the CPU (whose own tests hold
//! them to candle's plain ops), forward and backward. On CUDA each op is candle's plain op
//! (with `--features cudnn`, the convolution is `fast::conv2d`'s cuDNN op).
//!
//! Built only with `--features cuda`. Without a usable device each test says so and
//! passes, unless `SNL_REQUIRE_GPU=1` (set by `scripts/gpu-check.sh`) makes that a failure.
#![cfg(feature = "cuda")]

mod common;
use common::rel_err;

use candle::{Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use snl_core::fast;

/// Relative error allowed between the CPU and the GPU (different summation orders).
const TOL: f32 = 1e-4;

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

fn random(rng: &mut ChaCha8Rng, dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
}

/// `cpu` and `gpu` agree within [`TOL`], `what` naming the comparison.
fn close(what: &str, gpu: &Tensor, cpu: &Tensor) {
    let err = rel_err(&gpu.to_device(&Device::Cpu).unwrap(), cpu);
    assert!(err < TOL, "{what}: relative error {err:e} between CUDA and CPU");
}

/// Runs `f` (output from vars) on both devices over copies of `inputs`, and compares the
/// output and the gradient of `sum(output * probe)` for every input.
fn same_on_both(what: &str, gpu: &Device, inputs: &[Tensor], f: impl Fn(&[Var]) -> Tensor) {
    let run = |device: &Device| {
        let vars: Vec<Var> =
            inputs.iter().map(|t| Var::from_tensor(&t.to_device(device).unwrap()).unwrap()).collect();
        let y = f(&vars);
        // A fixed, non-uniform output gradient.
        let probe = y.ones_like().unwrap().cumsum(y.rank() - 1).unwrap().sin().unwrap();
        let grads = (&y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g: Vec<Tensor> = vars.iter().map(|v| grads.get(v).expect("a gradient").clone()).collect();
        (y, g)
    };
    let (y_cpu, g_cpu) = run(&Device::Cpu);
    let (y_gpu, g_gpu) = run(gpu);
    close(&format!("{what}: output"), &y_gpu, &y_cpu);
    for (i, (g, c)) in g_gpu.iter().zip(&g_cpu).enumerate() {
        close(&format!("{what}: gradient of input {i}"), g, c);
    }
}

#[test]
fn conv2d_forward_and_gradients() {
    let Some(gpu) = gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // ResNet's and WRN's shapes: 3x3 stride 1 and 2 with padding 1, 1x1 shortcuts with
    // stride 2, and odd sizes where the stride leaves the last input row unread.
    for (x, w, stride, pad) in [
        ([4, 3, 16, 16], [8, 3, 3, 3], 1, 1),
        ([4, 8, 16, 16], [16, 8, 3, 3], 2, 1),
        ([4, 8, 16, 16], [16, 8, 1, 1], 2, 0),
        ([2, 5, 9, 7], [6, 5, 3, 3], 2, 1),
        ([2, 4, 8, 8], [3, 4, 5, 5], 1, 0),
    ] {
        let inputs = [random(&mut rng, &x), random(&mut rng, &w)];
        same_on_both(&format!("conv2d {x:?} * {w:?} stride {stride} pad {pad}"), &gpu, &inputs, |v| {
            fast::conv2d(&v[0], &v[1], stride, pad).unwrap()
        });
    }
}

#[test]
fn conv2d_affine_without_a_graph() {
    let Some(gpu) = gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let dims: [&[usize]; 4] = [&[4, 8, 8, 8], &[16, 8, 3, 3], &[16], &[16]];
    let ts = dims.map(|d| random(&mut rng, d));
    let run = |device: &Device| {
        let t: Vec<Tensor> = ts.iter().map(|t| t.to_device(device).unwrap()).collect();
        fast::conv2d_affine(&t[0], &t[1], &t[2], &t[3], 2, 1).unwrap()
    };
    close("conv2d_affine", &run(&gpu), &run(&Device::Cpu));
}

#[test]
fn masked_relu_pixel_and_channel_masks() {
    let Some(gpu) = gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for mask in [[1, 4, 6, 6], [1, 4, 1, 1]] {
        let inputs = [random(&mut rng, &[3, 4, 6, 6]), random(&mut rng, &mask)];
        same_on_both(&format!("masked_relu, mask {mask:?}"), &gpu, &inputs, |v| {
            fast::masked_relu(&v[0], &v[1]).unwrap()
        });
        let inputs =
            [random(&mut rng, &[3, 4, 6, 6]), random(&mut rng, &[3, 4, 6, 6]), random(&mut rng, &mask)];
        same_on_both(&format!("masked_relu_add, mask {mask:?}"), &gpu, &inputs, |v| {
            fast::masked_relu_add(&v[0], &v[1], &v[2]).unwrap()
        });
    }
}

#[test]
fn batch_norm_train_and_channel_affine() {
    let Some(gpu) = gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let inputs = [random(&mut rng, &[4, 6, 5, 5]), random(&mut rng, &[6]), random(&mut rng, &[6])];
    same_on_both("batch_norm_train", &gpu, &inputs, |v| {
        fast::batch_norm_train(&v[0], &v[1], &v[2], 1e-5).unwrap().0
    });
    same_on_both("channel_affine", &gpu, &inputs, |v| fast::channel_affine(&v[0], &v[1], &v[2]).unwrap());
    let stats = |device: &Device| {
        let t: Vec<Tensor> = inputs.iter().map(|t| t.to_device(device).unwrap()).collect();
        let (_, mean, var) = fast::batch_norm_train(&t[0], &t[1], &t[2], 1e-5).unwrap();
        (mean, var)
    };
    let ((gm, gv), (cm, cv)) = (stats(&gpu), stats(&Device::Cpu));
    close("batch_norm_train: mean", &gm, &cm);
    close("batch_norm_train: variance", &gv, &cv);
}

#[test]
fn batch_norm_masked_relu_with_and_without_a_residual() {
    let Some(gpu) = gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for mask in [[1, 4, 6, 6], [1, 4, 1, 1]] {
        let dims: [&[usize]; 5] = [&[3, 4, 6, 6], &[4], &[4], &mask, &[3, 4, 6, 6]];
        let inputs = dims.map(|d| random(&mut rng, d));
        same_on_both(&format!("batch_norm_masked_relu, mask {mask:?}"), &gpu, &inputs[..4], |v| {
            fast::batch_norm_masked_relu(&v[0], &v[1], &v[2], 1e-5, None, &v[3]).unwrap().0
        });
        same_on_both(&format!("batch_norm_masked_relu + residual, mask {mask:?}"), &gpu, &inputs, |v| {
            fast::batch_norm_masked_relu(&v[0], &v[1], &v[2], 1e-5, Some(&v[4]), &v[3]).unwrap().0
        });
    }
}
