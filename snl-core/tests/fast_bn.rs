//! `snl_core::fast::{batch_norm_train, channel_affine}` against the plain candle
//! expressions they replace: outputs, batch statistics and all three gradients.

mod common;
use common::rel_err;

use candle::{Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(rng: &mut ChaCha8Rng, dims: &[usize], lo: f32, hi: f32) -> Tensor {
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
}

/// The train-mode expression `BatchNorm2d` computed before the fast path.
fn plain(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> (Tensor, Tensor, Tensor) {
    let c = x.dim(1).unwrap();
    let pc = |t: &Tensor| t.reshape((1, c, 1, 1)).unwrap();
    let mean = x.mean_keepdim((0, 2, 3)).unwrap();
    let centered = x.broadcast_sub(&mean).unwrap();
    let var = centered.sqr().unwrap().mean_keepdim((0, 2, 3)).unwrap();
    let scale = pc(w).broadcast_div(&(&var + eps).unwrap().sqrt().unwrap()).unwrap();
    let y = centered.broadcast_mul(&scale).unwrap().broadcast_add(&pc(b)).unwrap();
    (y, mean.flatten_all().unwrap(), var.flatten_all().unwrap())
}

fn check(seed: u64, dims: &[usize]) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // An offset mean, as after a convolution, so centring matters.
    let x = Var::from_tensor(&random(&mut rng, dims, -1.0, 3.0)).unwrap();
    let w = Var::from_tensor(&random(&mut rng, &dims[1..2], 0.5, 1.5)).unwrap();
    let b = Var::from_tensor(&random(&mut rng, &dims[1..2], -0.5, 0.5)).unwrap();
    let (want, want_mean, want_var) = plain(&x, &w, &b, 1e-5);
    let (got, mean, var) = snl_core::fast::batch_norm_train(&x, &w, &b, 1e-5).unwrap();
    assert!(rel_err(&got, &want) < 1e-5, "output {dims:?}: {}", rel_err(&got, &want));
    assert!(rel_err(&mean, &want_mean) < 1e-5, "mean {dims:?}");
    assert!(rel_err(&var, &want_var) < 1e-5, "variance {dims:?}");
    assert!(!mean.track_op() && !var.track_op(), "statistics are detached");

    let up = random(&mut rng, dims, -1.0, 1.0);
    let gw = (&want * &up).unwrap().sum_all().unwrap().backward().unwrap();
    let gg = (&got * &up).unwrap().sum_all().unwrap().backward().unwrap();
    for (name, v) in [("input", &x), ("weight", &w), ("bias", &b)] {
        let e = rel_err(gg.get(v).unwrap(), gw.get(v).unwrap());
        assert!(e < 1e-4, "{name} gradient {dims:?}: {e}");
    }
}

#[test]
fn train_mode_matches_the_plain_expression() {
    check(1, &[4, 3, 5, 5]);
    check(2, &[1, 2, 7, 3]); // batch 1
    check(3, &[33, 8, 4, 4]);
    check(4, &[16, 16, 1, 1]); // 1x1 maps: statistics over the batch alone
    check(5, &[7, 5, 9, 11]);
}

#[test]
fn a_detached_input_still_trains_weight_and_bias() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let x = random(&mut rng, &[3, 4, 2, 2], -1.0, 1.0);
    let w = Var::from_tensor(&random(&mut rng, &[4], 0.5, 1.5)).unwrap();
    let b = Var::from_tensor(&random(&mut rng, &[4], -0.5, 0.5)).unwrap();
    let (y, _, _) = snl_core::fast::batch_norm_train(&x, &w, &b, 1e-5).unwrap();
    let (want, _, _) = plain(&x, &w, &b, 1e-5);
    // Not a plain sum: the weight's gradient would be the sum of xhat, zero up to rounding.
    let up = random(&mut rng, &[3, 4, 2, 2], -1.0, 1.0);
    let gg = (&y * &up).unwrap().sum_all().unwrap().backward().unwrap();
    let gw = (&want * &up).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(gg.get(&x).is_none());
    assert!(rel_err(gg.get(&w).unwrap(), gw.get(&w).unwrap()) < 1e-4);
    assert!(rel_err(gg.get(&b).unwrap(), gw.get(&b).unwrap()) < 1e-4);
}

#[test]
fn rejects_what_it_cannot_normalise() {
    let x = Tensor::ones((1, 3, 1, 1), candle::DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::ones(3, candle::DType::F32, &Device::Cpu).unwrap();
    let err = snl_core::fast::batch_norm_train(&x, &w, &w, 1e-5).unwrap_err().to_string();
    assert!(err.contains("more than one value per channel"), "{err}");
    let x = Tensor::ones((2, 4, 3, 3), candle::DType::F32, &Device::Cpu).unwrap();
    let err = snl_core::fast::batch_norm_train(&x, &w, &w, 1e-5).unwrap_err().to_string();
    assert!(err.contains("for 4 channels"), "{err}");
}

#[test]
fn eval_mode_affine_matches_the_plain_expression() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for dims in [[5, 3, 4, 6], [1, 16, 1, 1], [2, 7, 3, 3]] {
        let x = random(&mut rng, &dims, -2.0, 2.0);
        let s = random(&mut rng, &dims[1..2], -1.0, 1.0);
        let t = random(&mut rng, &dims[1..2], -1.0, 1.0);
        let pc = |v: &Tensor| v.reshape((1, dims[1], 1, 1)).unwrap();
        let want = x.broadcast_mul(&pc(&s)).unwrap().broadcast_add(&pc(&t)).unwrap();
        let got = snl_core::fast::channel_affine(&x, &s, &t).unwrap();
        assert!(rel_err(&got, &want) < 1e-6, "{dims:?}");
        // With a graph to record it takes the plain path, gradients included.
        let xv = Var::from_tensor(&x).unwrap();
        let g = snl_core::fast::channel_affine(&xv, &s, &t).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(rel_err(g.get(&xv).unwrap(), &pc(&s).broadcast_as(x.shape()).unwrap()) < 1e-6);
    }
}
