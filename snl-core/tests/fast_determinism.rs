//! The fast ops' batch reductions (conv2d weight gradient, mask and batch norm gradients)
//! give the same bits on every run with the same thread count, whichever thread does which
//! part: a seeded run is reproducible.

use candle::{Device, Tensor, Var};

fn ramp(dims: &[usize], scale: f32) -> Tensor {
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n).map(|i| ((i * 7919 % 1009) as f32 / 1009.0 - 0.5) * scale).collect();
    Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
}

/// Weight and mask gradients of a conv + masked activation, then a conv + batch norm +
/// masked activation in one op, over a batch of 512 small images.
fn gradients() -> Vec<Vec<u32>> {
    let x = ramp(&[512, 8, 6, 6], 2.0);
    let w = Var::from_tensor(&ramp(&[8, 8, 3, 3], 0.3)).unwrap();
    let a = Var::from_tensor(&ramp(&[1, 8, 6, 6], 1.0)).unwrap();
    let y = snl_core::fast::conv2d(&x, &w, 1, 1).unwrap();
    let z = snl_core::fast::masked_relu(&y, &a).unwrap();
    let w2 = Var::from_tensor(&ramp(&[8, 8, 3, 3], 0.2)).unwrap();
    let (gamma, beta) =
        (Var::from_tensor(&ramp(&[8], 1.0)).unwrap(), Var::from_tensor(&ramp(&[8], 0.5)).unwrap());
    let a2 = Var::from_tensor(&ramp(&[1, 8, 1, 1], 1.0)).unwrap();
    let y2 = snl_core::fast::conv2d(&z, &w2, 1, 1).unwrap();
    let (z2, _, _) = snl_core::fast::batch_norm_masked_relu(&y2, &gamma, &beta, 1e-5, Some(&z), &a2).unwrap();
    let up = ramp(&[512, 8, 6, 6], 1.0);
    let grads = (&z2 * &up).unwrap().sum_all().unwrap().backward().unwrap();
    [&w, &a, &w2, &gamma, &beta, &a2].iter().map(|v| bits(grads.get(v).unwrap())).collect()
}

#[test]
fn gradients_are_bit_identical_from_run_to_run() {
    // More threads than cores in candle's pool, where the fast ops run, so which thread
    // takes which work varies from run to run.
    // SAFETY: the only test of this binary sets it before any candle op creates the pool
    // (which reads it) and before any other thread of ours reads the environment.
    unsafe { std::env::set_var("CANDLE_NUM_THREADS", "4") };
    assert_eq!(candle::utils::barrier_pool().n_workers(), 3);
    let first = gradients();
    for run in 1..25 {
        assert!(gradients() == first, "run {run} differs from run 0");
    }
}
