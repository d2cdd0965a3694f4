//! `snl_core::fast::conv2d` against candle's own `conv2d`: forward and both gradients.

mod common;
use common::rel_err;

use candle::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(rng: &mut ChaCha8Rng, dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
}

/// candle's `conv2d` with explicit zero padding, cropped to the rows and columns the
/// windows read. candle 0.11's own conv2d backward fails with a shape mismatch when the
/// stride leaves input rows unread (its transposed convolution has no output padding),
/// so the gradients are compared with this composition of plain candle ops, which is the
/// same function and whose backward works for every shape.
fn reference_conv(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Tensor {
    let (_, _, h, wd) = x.dims4().unwrap();
    let (_, _, r, s) = w.dims4().unwrap();
    let used_h = (h + 2 * pad - r) / stride * stride + r;
    let used_w = (wd + 2 * pad - s) / stride * stride + s;
    x.pad_with_zeros(2, pad, pad)
        .and_then(|t| t.pad_with_zeros(3, pad, pad))
        .and_then(|t| t.narrow(2, 0, used_h))
        .and_then(|t| t.narrow(3, 0, used_w))
        .and_then(|t| t.conv2d(w, 0, stride, 1, 1))
        .unwrap()
}

/// candle's own backward where it works (the stride tiles the padded input).
#[test]
fn matches_candles_own_backward_where_it_works() {
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    for (dims, wdims, stride, pad) in [
        ([2, 3, 8, 8], [4, 3, 3, 3], 1, 1),
        ([2, 3, 9, 9], [4, 3, 3, 3], 2, 1),
        ([1, 4, 6, 6], [5, 4, 1, 1], 1, 0),
    ] {
        let x = Var::from_tensor(&random(&mut rng, &dims)).unwrap();
        let wt = Var::from_tensor(&random(&mut rng, &wdims)).unwrap();
        let gw =
            x.conv2d(&wt, pad, stride, 1, 1).unwrap().sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let gg = snl_core::fast::conv2d(&x, &wt, stride, pad)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(rel_err(gg.get(&x).unwrap(), gw.get(&x).unwrap()) < 1e-4);
        assert!(rel_err(gg.get(&wt).unwrap(), gw.get(&wt).unwrap()) < 1e-4);
    }
}

/// Forward, input gradient and weight gradient of both convolutions, for a random
/// upstream gradient.
fn check(
    seed: u64,
    (n, c, h, w): (usize, usize, usize, usize),
    (k, r, s): (usize, usize, usize),
    stride: usize,
    pad: usize,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = Var::from_tensor(&random(&mut rng, &[n, c, h, w])).unwrap();
    let wt = Var::from_tensor(&random(&mut rng, &[k, c, r, s])).unwrap();
    let want = x.conv2d(&wt, pad, stride, 1, 1).unwrap();
    let got = snl_core::fast::conv2d(&x, &wt, stride, pad).unwrap();
    let case = format!("x {:?} w {:?} stride {stride} pad {pad}", x.dims(), wt.dims());
    assert_eq!(got.dims(), want.dims(), "{case}");
    assert!(rel_err(&got, &want) < 1e-4, "forward {case}: {}", rel_err(&got, &want));

    let up = random(&mut rng, want.dims());
    let reference = reference_conv(&x, &wt, stride, pad);
    assert!(rel_err(&reference, &want) < 1e-5, "reference forward {case}");
    let gw = (&reference * &up).unwrap().sum_all().unwrap().backward().unwrap();
    let gg = (&got * &up).unwrap().sum_all().unwrap().backward().unwrap();
    for (name, v) in [("input", &x), ("weight", &wt)] {
        let a = gg.get(v).unwrap_or_else(|| panic!("no {name} gradient, {case}"));
        let b = gw.get(v).unwrap();
        let e = rel_err(a, b);
        assert!(e < 1e-4, "{name} gradient {case}: relative error {e}");
    }
}

#[test]
fn matches_candle_on_resnet_like_shapes() {
    check(1, (3, 4, 8, 8), (6, 3, 3), 1, 1);
    check(2, (3, 4, 8, 8), (6, 3, 3), 2, 1);
    check(3, (3, 4, 8, 8), (6, 1, 1), 2, 0);
    check(4, (3, 4, 8, 8), (6, 1, 1), 1, 0);
}

#[test]
fn matches_candle_on_odd_shapes() {
    check(5, (1, 3, 7, 5), (2, 3, 3), 1, 1);
    check(6, (1, 3, 7, 5), (2, 3, 3), 2, 1);
    check(7, (3, 5, 7, 5), (4, 3, 3), 2, 0);
    check(8, (3, 2, 9, 6), (5, 3, 2), 1, 0);
    check(9, (1, 1, 3, 3), (1, 3, 3), 1, 0);
    check(10, (2, 3, 5, 7), (3, 1, 1), 2, 0);
    check(11, (2, 3, 5, 4), (3, 3, 3), 3, 2);
    check(12, (3, 2, 4, 4), (2, 3, 3), 1, 2);
}

/// Stride-1 convolutions whose output rows are as wide as the input rows, where each
/// column-matrix row is one shifted copy of the input plane: square and flat kernels,
/// padding that adds or removes output rows, one-pixel-wide images.
#[test]
fn matches_candle_on_same_width_convolutions() {
    check(17, (2, 3, 6, 9), (4, 3, 3), 1, 1);
    check(18, (2, 3, 7, 7), (4, 5, 5), 1, 2);
    check(19, (2, 3, 6, 5), (4, 3, 1), 1, 0);
    check(20, (2, 3, 4, 6), (4, 1, 3), 1, 1);
    check(21, (3, 2, 5, 1), (2, 3, 1), 1, 1);
    check(22, (1, 2, 1, 1), (3, 3, 3), 1, 1);
    check(23, (2, 4, 5, 5), (3, 1, 1), 1, 0);
}

/// Batches large enough that several images share one column matrix (the small maps of a
/// deep stage), in both the parallel and the sequential plan.
#[test]
fn matches_candle_when_images_share_a_gemm() {
    check(13, (37, 8, 6, 6), (16, 3, 3), 1, 1);
    check(14, (37, 8, 4, 4), (16, 3, 3), 2, 1);
    check(15, (5, 8, 2, 2), (4, 1, 1), 1, 0);
    check(16, (64, 4, 3, 3), (4, 3, 3), 1, 1);
}

/// The shapes of the direct 3x3 kernel (stride 1 on maps with rows a multiple of 8 pixels,
/// stride 2 on even maps with such output rows): every block size of output channels, one
/// input channel, batch 1, rows of one and of several registers, the phase split of stride 2,
/// rows of 4 pixels (two to a register), and weight gradients summed over several groups of
/// images, and tall images. On a CPU with AVX-512F the forward and input gradient run the
/// AVX-512 kernel here instead; its unit tests check the AVX2 one against it bit for bit.
#[test]
fn matches_candle_on_direct_kernel_shapes() {
    for (seed, k) in (30..).zip([1, 2, 3, 4, 5, 6, 7, 13]) {
        check(seed, (2, 3, 8, 8), (k, 3, 3), 1, 1);
    }
    check(40, (1, 1, 16, 8), (4, 3, 3), 1, 1);
    check(41, (3, 5, 8, 24), (9, 3, 3), 1, 1);
    check(42, (2, 3, 16, 16), (5, 3, 3), 2, 1);
    check(43, (1, 4, 32, 16), (13, 3, 3), 2, 1);
    check(44, (2, 2, 16, 32), (3, 3, 3), 2, 1);
    check(45, (9, 2, 8, 8), (5, 3, 3), 1, 1);
    check(46, (3, 5, 4, 4), (7, 3, 3), 1, 1);
    check(47, (2, 3, 8, 4), (4, 3, 3), 1, 1);
    check(48, (9, 4, 8, 8), (13, 3, 3), 2, 1);
    check(49, (1, 2, 16, 8), (3, 3, 3), 2, 1);
    check(50, (2, 5, 64, 64), (6, 3, 3), 1, 1);
    check(51, (1, 4, 64, 64), (5, 3, 3), 2, 1);
}

/// The shapes of the AVX-512 weight-gradient kernel (output channels a multiple of 16;
/// channels in lanes, so rows of any width the direct layout takes): two registers of
/// channels and one, input channels off its blocks of 3, groups of images summed in order
/// (64 images of 4x4 maps make a group: 200 images give each thread of two several), width
/// 64's first stage, and stride 2. Where the CPU has no AVX-512F these run the AVX2 kernel
/// or im2col, against the same reference.
#[test]
fn matches_candle_on_channel_lane_weight_gradient_shapes() {
    check(60, (2, 5, 8, 8), (16, 3, 3), 1, 1);
    check(61, (3, 4, 4, 4), (48, 3, 3), 1, 1);
    check(62, (200, 2, 4, 4), (32, 3, 3), 1, 1);
    check(63, (2, 3, 16, 8), (16, 3, 3), 1, 1);
    check(64, (1, 64, 32, 32), (64, 3, 3), 1, 1);
    check(65, (2, 5, 8, 8), (16, 3, 3), 2, 1);
    check(66, (3, 4, 16, 16), (48, 3, 3), 2, 1);
    check(67, (1, 64, 32, 32), (128, 3, 3), 2, 1);
}

#[test]
fn random_shapes_match_candle() {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    for case in 0..40 {
        let k = *[1usize, 3].get(rng.random_range(0..2)).unwrap();
        let stride = rng.random_range(1..=2);
        let pad = rng.random_range(0..=1);
        let h = rng.random_range(k.max(2)..=11);
        let w = rng.random_range(k.max(2)..=11);
        let n = rng.random_range(1..=6);
        let c = rng.random_range(1..=6);
        let cout = rng.random_range(1..=7);
        check(100 + case, (n, c, h, w), (cout, k, k), stride, pad);
    }
}

/// A convolution whose input is plain data (the first layer) produces no input gradient,
/// and one with frozen weights no weight gradient, while the other gradient stays right.
#[test]
fn computes_only_the_gradients_the_graph_needs() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let x = random(&mut rng, &[2, 3, 6, 6]);
    let wt = Var::from_tensor(&random(&mut rng, &[4, 3, 3, 3])).unwrap();
    let grads = snl_core::fast::conv2d(&x, &wt, 1, 1).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&x).is_none());
    let want = x.conv2d(&wt, 1, 1, 1, 1).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(rel_err(grads.get(&wt).unwrap(), want.get(&wt).unwrap()) < 1e-4);

    let xv = Var::from_tensor(&x).unwrap();
    let frozen = wt.as_tensor().detach();
    let grads = snl_core::fast::conv2d(&xv, &frozen, 1, 1).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&frozen).is_none());
    let want = xv.conv2d(&frozen, 1, 1, 1, 1).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(rel_err(grads.get(&xv).unwrap(), want.get(&xv).unwrap()) < 1e-4);
}

/// Non-contiguous arguments (a transposed view) are handled like contiguous ones.
#[test]
fn accepts_strided_views() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let x = random(&mut rng, &[2, 3, 5, 6]).transpose(2, 3).unwrap();
    let wt = random(&mut rng, &[4, 3, 3, 3]).transpose(2, 3).unwrap();
    let got = snl_core::fast::conv2d(&x, &wt, 2, 1).unwrap();
    let want = x.conv2d(&wt, 1, 2, 1, 1).unwrap();
    assert!(rel_err(&got, &want) < 1e-4);
}

/// Other dtypes go through candle's own op.
#[test]
fn falls_back_for_other_dtypes() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let x = random(&mut rng, &[2, 3, 5, 5]).to_dtype(candle::DType::F64).unwrap();
    let wt = random(&mut rng, &[4, 3, 3, 3]).to_dtype(candle::DType::F64).unwrap();
    let got = snl_core::fast::conv2d(&x, &wt, 1, 1).unwrap();
    let want = x.conv2d(&wt, 1, 1, 1, 1).unwrap();
    assert_eq!(got.dtype(), candle::DType::F64);
    let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
    assert_eq!(diff, 0.0);
}

#[test]
fn rejects_mismatched_channels() {
    let x = Tensor::zeros((1, 3, 5, 5), candle::DType::F32, &Device::Cpu).unwrap();
    let wt = Tensor::zeros((2, 4, 3, 3), candle::DType::F32, &Device::Cpu).unwrap();
    assert!(snl_core::fast::conv2d(&x, &wt, 1, 1).is_err());
}

/// The convolution with a folded eval-mode batch norm equals the two plain ops, with one or
/// several images per column matrix, stride 1 and 2; with a graph it is the two plain ops
/// and their gradients; a scale of the wrong length is an error.
#[test]
fn conv2d_affine_matches_convolution_then_channel_affine() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    for (dims, k, r, stride, pad) in [
        ([3, 4, 8, 8], 6, 3, 1, 1),
        ([3, 4, 9, 9], 5, 3, 2, 1),
        ([2, 3, 16, 16], 13, 3, 2, 1),
        ([37, 8, 4, 4], 16, 3, 1, 1),
        ([5, 8, 4, 4], 7, 1, 2, 0),
    ] {
        let x = random(&mut rng, &dims);
        let wt = random(&mut rng, &[k, dims[1], r, r]);
        let (scale, shift) = (random(&mut rng, &[k]), random(&mut rng, &[k]));
        let want = snl_core::fast::channel_affine(&x.conv2d(&wt, pad, stride, 1, 1).unwrap(), &scale, &shift)
            .unwrap();
        let got = snl_core::fast::conv2d_affine(&x, &wt, &scale, &shift, stride, pad).unwrap();
        assert_eq!(got.dims(), want.dims());
        assert!(
            rel_err(&got, &want) < 1e-5,
            "x {dims:?} k {k} r {r} stride {stride}: {}",
            rel_err(&got, &want)
        );

        let xv = Var::from_tensor(&x).unwrap();
        let up = random(&mut rng, want.dims());
        let grad =
            |y: Tensor| (y * &up).unwrap().sum_all().unwrap().backward().unwrap().get(&xv).unwrap().clone();
        let plain = grad(
            snl_core::fast::channel_affine(&xv.conv2d(&wt, pad, stride, 1, 1).unwrap(), &scale, &shift)
                .unwrap(),
        );
        let fused = grad(snl_core::fast::conv2d_affine(&xv, &wt, &scale, &shift, stride, pad).unwrap());
        assert!(rel_err(&fused, &plain) < 1e-4);
    }
    let x = random(&mut rng, &[2, 3, 5, 5]);
    let wt = random(&mut rng, &[4, 3, 3, 3]);
    let short = random(&mut rng, &[3]);
    assert!(snl_core::fast::conv2d_affine(&x, &wt, &short, &short, 1, 1).is_err());
}

/// An empty batch: an empty output, an empty input gradient and a zero weight gradient,
/// with every kernel (no chunk to run must not mean a panic or uninitialised memory).
#[test]
fn an_empty_batch_gives_zero_weight_gradients() {
    for (c, hw, k, stride) in [(16, 8, 16, 1), (16, 8, 32, 2), (3, 5, 4, 1)] {
        let x = Var::from_tensor(&Tensor::zeros((0, c, hw, hw), DType::F32, &Device::Cpu).unwrap()).unwrap();
        let wt = Var::from_tensor(&Tensor::ones((k, c, 3, 3), DType::F32, &Device::Cpu).unwrap()).unwrap();
        let y = snl_core::fast::conv2d(&x, &wt, stride, 1).unwrap();
        assert_eq!(y.dims(), [0, k, hw.div_ceil(stride), hw.div_ceil(stride)]);
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert_eq!(grads.get(&x).unwrap().dims(), [0, c, hw, hw]);
        let dw = grads.get(&wt).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(dw.iter().all(|&v| v == 0.0), "{c} -> {k}, stride {stride}: {dw:?}");
    }
}
