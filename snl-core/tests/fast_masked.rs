//! `snl_core::fast::masked_relu` (and `masked_relu_add`, of a residual sum) against the plain
//! expression `x + a * relu(-x)` that `ReluMask::forward` computes: forward and every
//! gradient.

mod common;
use common::rel_err;

use candle::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(rng: &mut ChaCha8Rng, dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    // Exact zeros too: the gradient's convention at x = 0 must match candle's relu.
    let data: Vec<f32> =
        (0..n).map(|_| if rng.random_bool(0.05) { 0.0 } else { rng.random_range(-1.0f32..1.0) }).collect();
    Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
}

fn plain(x: &Tensor, a: &Tensor) -> Tensor {
    (x + x.neg().unwrap().relu().unwrap().broadcast_mul(a).unwrap()).unwrap()
}

fn check(seed: u64, x_dims: &[usize], a_dims: &[usize]) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = Var::from_tensor(&random(&mut rng, x_dims)).unwrap();
    // Mask values around [0, 1], some exactly 0 and 1 as after binarization.
    let a = Var::from_tensor(&random(&mut rng, a_dims).affine(0.75, 0.5).unwrap()).unwrap();
    let want = plain(&x, &a);
    let got = snl_core::fast::masked_relu(&x, &a).unwrap();
    // The forward pass computes the same expression element by element: bit-identical.
    assert_eq!(rel_err(&got, &want), 0.0, "forward {x_dims:?} {a_dims:?}");

    let up = random(&mut rng, x_dims);
    let gw = (&want * &up).unwrap().sum_all().unwrap().backward().unwrap();
    let gg = (&got * &up).unwrap().sum_all().unwrap().backward().unwrap();
    let ex = rel_err(gg.get(&x).unwrap(), gw.get(&x).unwrap());
    assert_eq!(ex, 0.0, "input gradient {x_dims:?} {a_dims:?}");
    let ea = rel_err(gg.get(&a).unwrap(), gw.get(&a).unwrap());
    assert!(ea < 1e-5, "mask gradient {x_dims:?} {a_dims:?}: {ea}");
}

#[test]
fn pixel_masks_match_the_plain_expression() {
    check(1, &[4, 3, 5, 5], &[1, 3, 5, 5]);
    check(2, &[1, 2, 7, 3], &[1, 2, 7, 3]);
    check(3, &[33, 8, 4, 4], &[1, 8, 4, 4]);
}

#[test]
fn channel_masks_match_the_plain_expression() {
    check(4, &[4, 3, 5, 5], &[1, 3, 1, 1]);
    check(5, &[1, 6, 7, 3], &[1, 6, 1, 1]);
    check(6, &[17, 16, 2, 2], &[1, 16, 1, 1]);
}

#[test]
fn other_ranks_and_broadcasts() {
    check(7, &[5, 9], &[1, 9]);
    // A broadcast the op does not cover (over H only) goes through the plain expression.
    check(8, &[2, 3, 4, 5], &[1, 3, 4, 1]);
}

/// A frozen (detached) mask gets no gradient; plain-data activations get none either.
#[test]
fn computes_only_the_gradients_the_graph_needs() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let x = Var::from_tensor(&random(&mut rng, &[3, 2, 4, 4])).unwrap();
    let a = random(&mut rng, &[1, 2, 4, 4]);
    let grads = snl_core::fast::masked_relu(&x, &a).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&a).is_none());
    let want = plain(&x, &a).sum_all().unwrap().backward().unwrap();
    assert_eq!(rel_err(grads.get(&x).unwrap(), want.get(&x).unwrap()), 0.0);

    let xs = x.as_tensor().detach();
    let av = Var::from_tensor(&a).unwrap();
    let grads = snl_core::fast::masked_relu(&xs, &av).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&xs).is_none());
    assert!(grads.get(&av).is_some());
}

#[test]
fn binary_masks_give_relu_and_identity() {
    let x = Tensor::new(&[[-2f32, -0.5, 0.0, 1.5]], &Device::Cpu).unwrap();
    let a = Tensor::new(&[[1f32, 0.0, 1.0, 0.0]], &Device::Cpu).unwrap();
    let y = snl_core::fast::masked_relu(&x, &a).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(y, vec![vec![0.0, -0.5, 0.0, 1.5]]);
}

#[test]
fn falls_back_for_other_dtypes() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let x = random(&mut rng, &[2, 3, 4, 4]).to_dtype(DType::F64).unwrap();
    let a = random(&mut rng, &[1, 3, 4, 4]).to_dtype(DType::F64).unwrap();
    let got = snl_core::fast::masked_relu(&x, &a).unwrap();
    let want = plain(&x, &a);
    let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
    assert_eq!(diff, 0.0);
}

/// `masked_relu_add(x, r, a)` against the plain expression of `x + r`: forward bit-identical,
/// both activation gradients and the mask gradient.
fn check_add(seed: u64, x_dims: &[usize], a_dims: &[usize]) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = Var::from_tensor(&random(&mut rng, x_dims)).unwrap();
    let r = Var::from_tensor(&random(&mut rng, x_dims)).unwrap();
    let a = Var::from_tensor(&random(&mut rng, a_dims).affine(0.75, 0.5).unwrap()).unwrap();
    let want = plain(&(x.as_tensor() + r.as_tensor()).unwrap(), &a);
    let got = snl_core::fast::masked_relu_add(&x, &r, &a).unwrap();
    assert_eq!(rel_err(&got, &want), 0.0, "forward {x_dims:?} {a_dims:?}");

    let up = random(&mut rng, x_dims);
    let gw = (&want * &up).unwrap().sum_all().unwrap().backward().unwrap();
    let gg = (&got * &up).unwrap().sum_all().unwrap().backward().unwrap();
    for (name, v) in [("x", &x), ("residual", &r)] {
        let e = rel_err(gg.get(v).unwrap(), gw.get(v).unwrap());
        assert_eq!(e, 0.0, "{name} gradient {x_dims:?} {a_dims:?}");
    }
    let ea = rel_err(gg.get(&a).unwrap(), gw.get(&a).unwrap());
    assert!(ea < 1e-5, "mask gradient {x_dims:?} {a_dims:?}: {ea}");
}

#[test]
fn a_residual_sum_matches_the_plain_expression() {
    check_add(11, &[4, 3, 5, 5], &[1, 3, 5, 5]);
    check_add(12, &[1, 2, 7, 3], &[1, 2, 7, 3]);
    check_add(13, &[17, 16, 2, 2], &[1, 16, 1, 1]);
    check_add(14, &[3, 6, 7, 3], &[1, 6, 1, 1]);
    // A broadcast the op does not cover goes through the plain expression.
    check_add(15, &[2, 3, 4, 5], &[1, 3, 4, 1]);
}

/// The identity shortcut: the block input is both the residual and (through other ops) an
/// input of `x`, so its gradient collects both paths; frozen masks and plain residuals get
/// no gradient.
#[test]
fn a_residual_sum_computes_the_gradients_the_graph_needs() {
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    let input = Var::from_tensor(&random(&mut rng, &[3, 2, 4, 4])).unwrap();
    let a = random(&mut rng, &[1, 2, 4, 4]);
    let x = input.affine(2.0, 0.5).unwrap();
    let got = snl_core::fast::masked_relu_add(&x, &input, &a).unwrap().sum_all().unwrap().backward().unwrap();
    let want = plain(&(&x + input.as_tensor()).unwrap(), &a).sum_all().unwrap().backward().unwrap();
    assert!(got.get(&a).is_none());
    assert_eq!(rel_err(got.get(&input).unwrap(), want.get(&input).unwrap()), 0.0);

    let av = Var::from_tensor(&a).unwrap();
    let residual = random(&mut rng, &[3, 2, 4, 4]);
    let grads = snl_core::fast::masked_relu_add(&input, &residual, &av)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(grads.get(&residual).is_none());
    assert!(grads.get(&input).is_some() && grads.get(&av).is_some());
}

#[test]
fn a_residual_of_another_shape_is_refused() {
    let x = Tensor::zeros((2, 3, 4, 4), DType::F32, &Device::Cpu).unwrap();
    let r = Tensor::zeros((2, 3, 4, 5), DType::F32, &Device::Cpu).unwrap();
    let a = Tensor::ones((1, 3, 4, 4), DType::F32, &Device::Cpu).unwrap();
    assert!(snl_core::fast::masked_relu_add(&x, &r, &a).is_err());
}
