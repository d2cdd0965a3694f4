//! `snl_core::fast::batch_norm_masked_relu` against the two ops it fuses, in a row
//! (`batch_norm_train`, then `masked_relu` or `masked_relu_add`): the same bits forward
//! and backward, for every gradient the graph needs and only those.

use candle::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use snl_core::fast;

fn random(rng: &mut ChaCha8Rng, dims: &[usize], lo: f32, hi: f32) -> Tensor {
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
}

/// Which arguments are variables (take a gradient).
#[derive(Clone, Copy, Debug)]
struct Train {
    x: bool,
    params: bool,
    alphas: bool,
    residual: bool,
}

const ALL: Train = Train { x: true, params: true, alphas: true, residual: true };

/// Outputs and gradients, fused and composed, must agree to the bit. (A variable here is a
/// leaf `Var`'s tensor, as a model's parameters are.)
fn check(seed: u64, dims: &[usize], pixel_mask: bool, with_residual: bool, train: Train) {
    check_with(seed, dims, pixel_mask, with_residual, train, Tensor::clone)
}

/// [`check`] with `view` applied to every argument after it is made (a variable or not).
fn check_with(
    seed: u64,
    dims: &[usize],
    pixel_mask: bool,
    with_residual: bool,
    train: Train,
    view: impl Fn(&Tensor) -> Tensor,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let c = dims[1];
    let var_or =
        |t: Tensor, var: bool| if var { Var::from_tensor(&t).unwrap().as_tensor().clone() } else { t };
    let x = var_or(random(&mut rng, dims, -1.0, 3.0), train.x);
    let w = var_or(random(&mut rng, &[c], 0.5, 1.5), train.params);
    let b = var_or(random(&mut rng, &[c], -0.5, 0.5), train.params);
    let a_dims = if pixel_mask { vec![1, c, dims[2], dims[3]] } else { vec![1, c, 1, 1] };
    let a = var_or(random(&mut rng, &a_dims, -0.2, 1.2), train.alphas);
    let r = with_residual.then(|| var_or(random(&mut rng, dims, -2.0, 2.0), train.residual));
    let up = random(&mut rng, dims, -1.0, 1.0);
    let what = format!("{dims:?} pixel {pixel_mask} residual {with_residual} {train:?}");

    let (xv, wv, bv, av) = (view(&x), view(&w), view(&b), view(&a));
    let rv = r.as_ref().map(&view);
    let (got, mean, var) = fast::batch_norm_masked_relu(&xv, &wv, &bv, 1e-5, rv.as_ref(), &av).unwrap();
    let (y, want_mean, want_var) = fast::batch_norm_train(&xv, &wv, &bv, 1e-5).unwrap();
    let want = match &rv {
        Some(r) => fast::masked_relu_add(&y, r, &av).unwrap(),
        None => fast::masked_relu(&y, &av).unwrap(),
    };
    assert!(bits(&got) == bits(&want), "output {what}");
    assert!(bits(&mean) == bits(&want_mean) && bits(&var) == bits(&want_var), "statistics {what}");
    assert!(!mean.track_op() && !var.track_op(), "statistics are detached");

    let g_got = (&got * &up).unwrap().sum_all().unwrap().backward().unwrap();
    let g_want = (&want * &up).unwrap().sum_all().unwrap().backward().unwrap();
    let mut args = vec![("input", &x), ("weight", &w), ("bias", &b), ("mask", &a)];
    args.extend(r.iter().map(|r| ("residual", r)));
    for (name, t) in args {
        // A constant weight or bias can get an entry when the mask trains (`cat`'s backward
        // hands every part its share); what matters is every variable's gradient.
        if !t.is_variable() {
            continue;
        }
        let (g, want) = (g_got.get(t), g_want.get(t));
        let (g, want) =
            g.zip(want).unwrap_or_else(|| panic!("{name}: no gradient although it trains ({what})"));
        assert!(bits(g) == bits(want), "{name} gradient {what}");
    }
    // The input's gradient is computed only when something below the op trains.
    assert_eq!(g_got.get(&x).is_some(), train.x, "input gradient {what}");
}

#[test]
fn pixel_and_channel_masks_give_the_bits_of_the_two_ops() {
    for (seed, dims) in [(1, [4, 3, 5, 5]), (2, [5, 8, 6, 7]), (3, [33, 4, 4, 4]), (4, [2, 16, 16, 16])] {
        for pixel in [true, false] {
            check(seed, &dims, pixel, false, ALL);
        }
    }
}

#[test]
fn a_residual_sum_gives_the_bits_of_the_two_ops() {
    for (seed, dims) in [(5, [4, 3, 5, 5]), (6, [7, 5, 9, 11]), (7, [16, 16, 1, 1]), (8, [1, 2, 7, 3])] {
        for pixel in [true, false] {
            check(seed, &dims, pixel, true, ALL);
        }
    }
}

#[test]
fn strided_arguments_and_derived_parameters_give_the_bits_of_the_two_ops() {
    // Activations, residual and pixel mask as strided views; weight, bias and a channel mask
    // as tracked tensors that are not themselves variables.
    let view = |t: &Tensor| match t.rank() == 4 && t.dim(3).unwrap() > 1 {
        true => t.transpose(2, 3).unwrap().contiguous().unwrap().transpose(2, 3).unwrap(),
        false => t.affine(1.0, 0.0).unwrap(),
    };
    for pixel in [true, false] {
        for residual in [false, true] {
            check_with(10, &[3, 4, 5, 7], pixel, residual, ALL, view);
            check_with(11, &[3, 4, 5, 7], pixel, residual, Train { alphas: false, ..ALL }, view);
        }
    }
}

#[test]
fn computes_only_the_gradients_the_graph_needs() {
    let cases = [
        // finetuning: the mask frozen (detached), everything else trains
        Train { alphas: false, ..ALL },
        // a frozen network whose masks alone train
        Train { x: false, params: false, residual: false, alphas: true },
        // nothing below the op trains, the residual does
        Train { x: false, params: false, alphas: false, residual: true },
        Train { x: true, params: false, alphas: false, residual: false },
    ];
    for (i, train) in cases.into_iter().enumerate() {
        for residual in [false, true] {
            check(20 + i as u64, &[3, 4, 6, 5], true, residual, train);
            check(30 + i as u64, &[3, 4, 6, 5], false, residual, train);
        }
    }
}

#[test]
fn falls_back_to_the_two_ops_where_they_do_not_apply() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let x = random(&mut rng, &[3, 2, 4, 4], -1.0, 1.0);
    let (w, b) = (
        Tensor::ones(2, DType::F32, &Device::Cpu).unwrap(),
        Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap(),
    );
    // A mask of neither broadcast shape goes to masked_relu's plain expression.
    let a = random(&mut rng, &[1, 1, 4, 4], 0.0, 1.0);
    let (got, _, _) = fast::batch_norm_masked_relu(&x, &w, &b, 1e-5, None, &a).unwrap();
    let want = fast::masked_relu(&fast::batch_norm_train(&x, &w, &b, 1e-5).unwrap().0, &a).unwrap();
    assert!(bits(&got) == bits(&want));
    // f64 goes to the plain expressions.
    let x64 = x.to_dtype(DType::F64).unwrap();
    let (w64, b64) = (w.to_dtype(DType::F64).unwrap(), b.to_dtype(DType::F64).unwrap());
    let a64 = random(&mut rng, &[1, 2, 4, 4], 0.0, 1.0).to_dtype(DType::F64).unwrap();
    let (got, _, _) = fast::batch_norm_masked_relu(&x64, &w64, &b64, 1e-5, None, &a64).unwrap();
    assert_eq!(got.dtype(), DType::F64);
    let want = fast::masked_relu(&fast::batch_norm_train(&x64, &w64, &b64, 1e-5).unwrap().0, &a64).unwrap();
    let bits64 = |t: &Tensor| {
        t.flatten_all().unwrap().to_vec1::<f64>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    };
    assert!(bits64(&got) == bits64(&want), "f64: the two ops' plain expressions");
}

#[test]
fn refuses_what_the_batch_norm_refuses() {
    let x = Tensor::zeros((2, 3, 4, 4), DType::F32, &Device::Cpu).unwrap();
    let a = Tensor::ones((1, 3, 4, 4), DType::F32, &Device::Cpu).unwrap();
    let two = Tensor::ones(2, DType::F32, &Device::Cpu).unwrap();
    let err = fast::batch_norm_masked_relu(&x, &two, &two, 1e-5, None, &a).unwrap_err().to_string();
    assert!(err.contains("for 3 channels"), "{err}");
    let single = Tensor::zeros((1, 3, 1, 1), DType::F32, &Device::Cpu).unwrap();
    let a1 = Tensor::ones((1, 3, 1, 1), DType::F32, &Device::Cpu).unwrap();
    let three = Tensor::ones(3, DType::F32, &Device::Cpu).unwrap();
    let err = fast::batch_norm_masked_relu(&single, &three, &three, 1e-5, None, &a1).unwrap_err().to_string();
    assert!(err.contains("more than one value per channel"), "{err}");
}
