//! The Winograd F(2x2, 3x3) kernel of `fast::conv2d` against im2col + gemm (itself held to
//! candle's conv2d in `fast_conv.rs`): forward and both gradients, every tile position,
//! maps from 2x2 up, channel counts off every block size. Its products are summed in
//! another order, so the bound is float rounding, not bits.

mod common;
use common::rel_err;

use candle::{Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use snl_core::fast::{ConvKernel, conv2d_with};

fn random(rng: &mut ChaCha8Rng, dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
}

/// Output, input gradient and weight gradient of `sum(conv(x, w) * up)` with kernel `kernel`.
fn run(x: &Tensor, w: &Tensor, up: &Tensor, kernel: ConvKernel) -> (Tensor, Tensor, Tensor) {
    let (xv, wv) = (Var::from_tensor(x).unwrap(), Var::from_tensor(w).unwrap());
    let y = conv2d_with(&xv, &wv, 1, 1, kernel).unwrap();
    let grads = (&y * up).unwrap().sum_all().unwrap().backward().unwrap();
    (y, grads.get(&xv).unwrap().clone(), grads.get(&wv).unwrap().clone())
}

#[test]
fn winograd_matches_im2col_forward_and_both_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    // (images, in channels, out channels, height, width)
    for (n, c, k, h, w) in [
        (1, 1, 1, 2, 2),
        (3, 3, 5, 8, 8),
        (2, 7, 9, 6, 10),
        (2, 16, 16, 32, 32),
        (9, 64, 32, 4, 4),
        (17, 33, 65, 8, 8),
        (1, 130, 3, 2, 4),
    ] {
        let x = random(&mut rng, &[n, c, h, w]);
        let wt = random(&mut rng, &[k, c, 3, 3]);
        let up = random(&mut rng, &[n, k, h, w]);
        let (y0, dx0, dw0) = run(&x, &wt, &up, ConvKernel::Im2col);
        let (y1, dx1, dw1) = run(&x, &wt, &up, ConvKernel::Winograd);
        let (ey, edx, edw) = (rel_err(&y1, &y0), rel_err(&dx1, &dx0), rel_err(&dw1, &dw0));
        assert!(
            ey < 2e-6 && edx < 2e-6 && edw < 2e-6,
            "{n}x{c}->{k} {h}x{w}: forward {ey:e}, input gradient {edx:e}, weight gradient {edw:e}"
        );
    }
}

/// Where Winograd does not apply (stride 2, odd maps, 1x1) the forced choice falls back
/// and the results are the other kernels'.
#[test]
fn where_winograd_does_not_apply_it_falls_back() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (dims, wdims, stride, pad) in [
        ([2, 4, 9, 9], [5, 4, 3, 3], 1, 1),
        ([2, 4, 8, 8], [5, 4, 3, 3], 2, 1),
        ([2, 4, 8, 8], [5, 4, 1, 1], 1, 0),
    ] {
        let x = random(&mut rng, &dims);
        let wt = random(&mut rng, &wdims);
        let want = conv2d_with(&x, &wt, stride, pad, ConvKernel::Im2col).unwrap();
        let got = conv2d_with(&x, &wt, stride, pad, ConvKernel::Winograd).unwrap();
        assert!(rel_err(&got, &want) < 1e-5, "{dims:?} {wdims:?} stride {stride}");
    }
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
}

/// The automatic choice takes Winograd for wide layers (ResNet18's last three stages at
/// width 64) and the direct kernel for narrow ones, forward and input gradient; the weight
/// gradient of a layer under 256 channels runs the AVX-512 direct kernel where the CPU has
/// it, even under a Winograd forward. A Winograd result is the same bits from run to run.
#[test]
fn auto_picks_winograd_for_wide_layers_only_and_repeats_its_bits() {
    #[cfg(target_arch = "x86_64")]
    let avx512 = std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for (c, hw, winograd) in [(256, 8, true), (128, 16, true), (128, 4, false), (64, 32, false)] {
        let n = 2;
        let x = random(&mut rng, &[n, c, hw, hw]);
        let wt = random(&mut rng, &[c, c, 3, 3]);
        let up = random(&mut rng, &[n, c, hw, hw]);
        let auto = run(&x, &wt, &up, ConvKernel::Auto);
        let expected = if winograd { ConvKernel::Winograd } else { ConvKernel::Direct };
        let forced = run(&x, &wt, &up, expected);
        // The rule of `Geom::weight_grad_kernel`: each of these layers fits the AVX-512
        // kernel's cache budget, so below 256 channels it is the direct one where it exists.
        let weight_kernel =
            if winograd && (c >= 256 || !avx512) { &forced } else { &run(&x, &wt, &up, ConvKernel::Direct) };
        assert_eq!(bits(&auto.0), bits(&forced.0), "{c} channels {hw}x{hw}: forward");
        assert_eq!(bits(&auto.1), bits(&forced.1), "{c} channels {hw}x{hw}: input gradient");
        assert_eq!(bits(&auto.2), bits(&weight_kernel.2), "{c} channels {hw}x{hw}: weight gradient");
        if winograd {
            let again = run(&x, &wt, &up, ConvKernel::Winograd);
            let all = |r: &(Tensor, Tensor, Tensor)| [bits(&r.0), bits(&r.1), bits(&r.2)];
            assert_eq!(all(&again), all(&forced));
            let other = run(&x, &wt, &up, ConvKernel::Direct);
            assert_ne!(bits(&other.0), bits(&forced.0), "{c} channels: the kernels differ in rounding");
            assert_ne!(bits(&other.2), bits(&forced.2), "{c} channels: the weight gradients too");
        }
    }
}
