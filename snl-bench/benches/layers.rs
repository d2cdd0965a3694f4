//! Per-layer benches: the convolutions of ResNet18 (width 64, 32x32 inputs) forward and
//! forward + backward, candle's op against `snl_core::fast::conv2d`, the masked activation
//! against plain ReLU (and of a residual sum, fused against add-then-mask), and train-mode BatchNorm as candle ops against
//! `snl_core::fast::batch_norm_train`. Batch 32 keeps a criterion run short; the `throughput`
//! binary measures whole steps at batch 128.

use candle::{Device, Tensor, Var};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const BATCH: usize = 32;

fn randn(dims: &[usize]) -> Tensor {
    Tensor::randn(0f32, 1.0, dims, &Device::Cpu).expect("randn")
}

/// (name, cin, cout, kernel, stride, input size)
const CONVS: [(&str, usize, usize, usize, usize, usize); 7] = [
    ("stem 3-64 32x32", 3, 64, 3, 1, 32),
    ("l1 64-64 32x32", 64, 64, 3, 1, 32),
    ("l2 64-128 s2", 64, 128, 3, 2, 32),
    ("l2 1x1 64-128 s2", 64, 128, 1, 2, 32),
    ("l2 128-128 16x16", 128, 128, 3, 1, 16),
    ("l3 256-256 8x8", 256, 256, 3, 1, 8),
    ("l4 512-512 4x4", 512, 512, 3, 1, 4),
];

fn conv(x: &Tensor, w: &Tensor, stride: usize, pad: usize, fast: bool) -> Tensor {
    if fast {
        snl_core::fast::conv2d(x, w, stride, pad).expect("fast conv")
    } else {
        x.conv2d(w, pad, stride, 1, 1).expect("candle conv")
    }
}

fn convs(c: &mut Criterion) {
    snl_core::fast::tune_allocator();
    let mut g = c.benchmark_group("conv2d");
    g.sample_size(10);
    for (name, cin, cout, k, stride, hw) in CONVS {
        let pad = k / 2;
        let x = Var::from_tensor(&randn(&[BATCH, cin, hw, hw])).expect("var");
        let w = Var::from_tensor(&randn(&[cout, cin, k, k])).expect("var");
        for (label, fast) in [("candle", false), ("fast", true)] {
            g.bench_function(BenchmarkId::new(format!("forward/{label}"), name), |b| {
                b.iter(|| conv(&x.as_tensor().detach(), &w.as_tensor().detach(), stride, pad, fast))
            });
            g.bench_function(BenchmarkId::new(format!("forward+backward/{label}"), name), |b| {
                b.iter(|| {
                    let y = conv(&x, &w, stride, pad, fast);
                    y.sum_all().expect("sum").backward().expect("backward")
                })
            });
        }
    }
    g.finish();
}

fn activations(c: &mut Criterion) {
    snl_core::fast::tune_allocator();
    let mut g = c.benchmark_group("masked_activation");
    g.sample_size(20);
    let x = Var::from_tensor(&randn(&[BATCH, 64, 32, 32])).expect("var");
    let a = Var::from_tensor(&randn(&[1, 64, 32, 32])).expect("var");
    let plain = |x: &Tensor, a: &Tensor| -> Tensor {
        x.neg().and_then(|n| n.relu()).and_then(|r| r.broadcast_mul(a)).and_then(|m| x + m).expect("plain")
    };
    g.bench_function("forward/relu", |b| b.iter(|| x.as_tensor().relu().expect("relu")));
    g.bench_function("forward/plain-mask", |b| b.iter(|| plain(x.as_tensor(), a.as_tensor())));
    g.bench_function("forward/fast-mask", |b| {
        b.iter(|| snl_core::fast::masked_relu(x.as_tensor(), a.as_tensor()).expect("fast"))
    });
    g.bench_function("forward+backward/relu", |b| {
        b.iter(|| x.relu().expect("relu").sum_all().expect("sum").backward().expect("bwd"))
    });
    g.bench_function("forward+backward/plain-mask", |b| {
        b.iter(|| plain(&x, &a).sum_all().expect("sum").backward().expect("bwd"))
    });
    g.bench_function("forward+backward/fast-mask", |b| {
        b.iter(|| {
            snl_core::fast::masked_relu(&x, &a)
                .expect("fast")
                .sum_all()
                .expect("sum")
                .backward()
                .expect("bwd")
        })
    });
    // A residual block's output: the sum as its own op, then the mask, against one op.
    let r = Var::from_tensor(&randn(&[BATCH, 64, 32, 32])).expect("var");
    let sum_then_mask = |x: &Tensor, r: &Tensor| {
        snl_core::fast::masked_relu(&(x + r).expect("add"), a.as_tensor()).expect("fast")
    };
    g.bench_function("forward/add-then-fast-mask", |b| {
        b.iter(|| sum_then_mask(x.as_tensor(), r.as_tensor()))
    });
    g.bench_function("forward/fast-mask-add", |b| {
        b.iter(|| snl_core::fast::masked_relu_add(x.as_tensor(), r.as_tensor(), a.as_tensor()).expect("fast"))
    });
    g.bench_function("forward+backward/add-then-fast-mask", |b| {
        b.iter(|| sum_then_mask(&x, &r).sum_all().expect("sum").backward().expect("bwd"))
    });
    g.bench_function("forward+backward/fast-mask-add", |b| {
        b.iter(|| {
            snl_core::fast::masked_relu_add(&x, &r, &a)
                .expect("fast")
                .sum_all()
                .expect("sum")
                .backward()
                .expect("bwd")
        })
    });
    g.finish();
}

/// The train-mode BatchNorm that `snl_models::BatchNorm2d` computed before the fast path.
fn plain_batch_norm(x: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
    let c = x.dim(1).expect("dims");
    let mean = x.mean_keepdim((0, 2, 3)).expect("mean");
    let centered = x.broadcast_sub(&mean).expect("sub");
    let var = centered.sqr().and_then(|s| s.mean_keepdim((0, 2, 3))).expect("var");
    let scale =
        w.reshape((1, c, 1, 1)).and_then(|w| w.broadcast_div(&(&var + 1e-5)?.sqrt()?)).expect("scale");
    centered.broadcast_mul(&scale).and_then(|y| y.broadcast_add(&b.reshape((1, c, 1, 1))?)).expect("bn")
}

fn batch_norms(c: &mut Criterion) {
    snl_core::fast::tune_allocator();
    let mut g = c.benchmark_group("batch_norm_train");
    g.sample_size(20);
    for (name, ch, hw) in [("64 32x32", 64, 32), ("256 8x8", 256, 8)] {
        let x = Var::from_tensor(&randn(&[BATCH, ch, hw, hw])).expect("var");
        let w = Var::from_tensor(&randn(&[ch])).expect("var");
        let b = Var::from_tensor(&randn(&[ch])).expect("var");
        g.bench_function(BenchmarkId::new("forward+backward/plain", name), |bn| {
            bn.iter(|| plain_batch_norm(&x, &w, &b).sum_all().and_then(|s| s.backward()).expect("bwd"))
        });
        g.bench_function(BenchmarkId::new("forward+backward/fast", name), |bn| {
            bn.iter(|| {
                let (y, _, _) = snl_core::fast::batch_norm_train(&x, &w, &b, 1e-5).expect("fast");
                y.sum_all().and_then(|s| s.backward()).expect("bwd")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, convs, activations, batch_norms);
criterion_main!(benches);
