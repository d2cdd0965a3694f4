use candle::{Device, Tensor, Var};
use std::time::Instant;
fn med(mut f: impl FnMut()) -> f64 {
    f();
    let mut v: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[3]
}
fn main() {
    snl_core::fast::tune_allocator();
    let w0: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(16);
    let n = 128;
    let shapes = [
        (3, w0, 3, 1, 32, 1),
        (w0, w0, 3, 1, 32, 4),
        (w0, 2 * w0, 3, 2, 32, 1),
        (w0, 2 * w0, 1, 2, 32, 1),
        (2 * w0, 2 * w0, 3, 1, 16, 3),
        (2 * w0, 4 * w0, 3, 2, 16, 1),
        (4 * w0, 4 * w0, 3, 1, 8, 3),
        (4 * w0, 8 * w0, 3, 2, 8, 1),
        (8 * w0, 8 * w0, 3, 1, 4, 3),
    ];
    let (mut tf, mut tx, mut tw) = (0.0, 0.0, 0.0);
    for (c, k, r, s, hw, count) in shapes {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, c, hw, hw), &Device::Cpu).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (k, c, r, r), &Device::Cpu).unwrap()).unwrap();
        let pad = r / 2;
        let oh = (hw + 2 * pad - r) / s + 1;
        let flops = 2.0 * (n * k * c * r * r * oh * oh) as f64;
        let xd = x.as_tensor().detach();
        let wd = w.as_tensor().detach();
        let f = med(|| {
            snl_core::fast::conv2d(&xd, &wd, s, pad).unwrap();
        });
        let fx = med(|| {
            snl_core::fast::conv2d(&x, &wd, s, pad).unwrap().sum_all().unwrap().backward().unwrap();
        });
        let fw = med(|| {
            snl_core::fast::conv2d(&xd, &w, s, pad).unwrap().sum_all().unwrap().backward().unwrap();
        });
        let (dx, dw) = (fx - f, fw - f);
        println!(
            "{c:4}->{k:4} {r}x{r} s{s} {hw:2}px x{count}: fwd {:6.2} ms {:5.1} GF/s | dx {:6.2} ms {:5.1} | dw {:6.2} ms {:5.1}",
            f * 1e3,
            flops / f / 1e9,
            dx * 1e3,
            flops / dx / 1e9,
            dw * 1e3,
            flops / dw / 1e9
        );
        tf += f * count as f64;
        tx += dx * count as f64;
        tw += dw * count as f64;
    }
    println!("total: fwd {:.1} ms, dx {:.1} ms, dw {:.1} ms", tf * 1e3, tx * 1e3, tw * 1e3);
}
