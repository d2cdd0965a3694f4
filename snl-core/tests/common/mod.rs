//! Helpers shared by the fast-path equality tests.

use candle::Tensor;

/// Largest elementwise difference, relative to the largest magnitude of `want`.
pub fn rel_err(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims());
    let g = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let w = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = w.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    g.iter().zip(&w).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale
}
