//! Per-layer times of each convolution kernel `fast::conv2d` can choose (im2col + gemm,
//! direct, Winograd), forced with `fast::conv2d_with`: the measurements behind the rule in
//! `snl-core/src/fast/geom.rs`. Batch 128, square C -> C 3x3 stride-1 layers of ResNet18 at
//! widths 16 and 64, best of several calls per kernel, the kernels alternating.
//!
//! ```sh
//! cargo run --release -p snl-bench --example conv_kernels -- 2 fwd   # threads, fwd | bwd | wgrad
//! cargo run --release -p snl-bench --example conv_kernels -- 1 fwd 512,4 # one layer, Winograd only (for perf)
//! ```
//! `bwd` times forward and backward (both gradients) of `sum(conv(x, w) * up)`, `wgrad` the
//! same with the weight gradient only (the input is no variable): minus `fwd`'s time, what
//! the weight gradient of each kernel costs.

use std::time::Instant;

use candle::{Device, Tensor, Var};
use snl_core::fast::{ConvKernel, conv2d_with};

const BATCH: usize = 128;
/// (channels, map side): ResNet18's stride-1 layers at width 16, then at width 64.
const LAYERS: [(usize, usize); 8] =
    [(16, 32), (32, 16), (64, 8), (128, 4), (64, 32), (128, 16), (256, 8), (512, 4)];

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().map_or(2, |a| a.parse().expect("threads: a number"));
    let mode = args.next().unwrap_or_else(|| "fwd".into());
    let (backward, input_grad) = match mode.as_str() {
        "fwd" => (false, false),
        "bwd" => (true, true),
        "wgrad" => (true, false),
        other => panic!("mode {other}: fwd, bwd or wgrad"),
    };
    let only = args.next().map(|a| {
        let v: Vec<usize> = a.split(',').map(|x| x.parse().expect("C,SIDE")).collect();
        (v[0], v[1])
    });
    snl_core::fast::tune_allocator();
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().expect("rayon pool");
    let randn =
        |dims: (usize, usize, usize, usize), std: f32| Tensor::randn(0f32, std, dims, &Device::Cpu).unwrap();
    if let Some((c, side)) = only {
        let (x, w) = (randn((BATCH, c, side, side), 1.0), randn((c, c, 3, 3), 0.1));
        for _ in 0..20 {
            std::hint::black_box(conv2d_with(&x, &w, 1, 1, ConvKernel::Winograd).unwrap());
        }
        return;
    }
    let kernels = [ConvKernel::Im2col, ConvKernel::Direct, ConvKernel::Winograd];
    for (c, side) in LAYERS {
        let (x, w, up) = (
            randn((BATCH, c, side, side), 1.0),
            randn((c, c, 3, 3), 0.1),
            randn((BATCH, c, side, side), 1.0),
        );
        let mut best = [f64::MAX; 3];
        for _ in 0..if c * side * side >= 65536 { 4 } else { 8 } {
            for (i, &kernel) in kernels.iter().enumerate() {
                let start = Instant::now();
                if backward {
                    let xv = if input_grad {
                        Var::from_tensor(&x).unwrap().as_tensor().clone()
                    } else {
                        x.clone()
                    };
                    let wv = Var::from_tensor(&w).unwrap();
                    let y = conv2d_with(&xv, &wv, 1, 1, kernel).unwrap();
                    std::hint::black_box((&y * &up).unwrap().sum_all().unwrap().backward().unwrap());
                } else {
                    std::hint::black_box(conv2d_with(&x, &w, 1, 1, kernel).unwrap());
                }
                best[i] = best[i].min(start.elapsed().as_secs_f64());
            }
        }
        let ms = best.map(|s| s * 1e3);
        println!(
            "{} threads {c:>3} ch {side:>2}x{side:<2}: im2col {:7.2} ms  direct {:7.2} ms  winograd {:7.2} ms  direct/winograd {:.2}x",
            threads,
            ms[0],
            ms[1],
            ms[2],
            best[1] / best[2]
        );
    }
}
