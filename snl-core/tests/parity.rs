//! snl-core against PyTorch: golden numbers from `tests/data/make_fixtures.py` (its header
//! has the exact command), compared within 1e-5 relative.

use std::collections::HashMap;

use candle::{DType, Device, Module, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use snl_core::loss::{cross_entropy, distillation, lasso};
use snl_core::optim::{Adam, AdamConfig, LrSchedule, Optimizer, Sgd, SgdConfig};
use snl_core::{Granularity, Masked, ReluMask};

fn fixtures() -> HashMap<String, Tensor> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/core.safetensors");
    candle::safetensors::load(path, &Device::Cpu).expect("fixture file")
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap()
}

/// Every element within `rel` of the expected value, relative to its magnitude. PyTorch
/// computes some values as differences of larger terms (the mask gradient is
/// `sum(g * relu(x)) - sum(g * x)`), so an element's magnitude is floored at 1% of the
/// tensor's largest.
fn assert_close(what: &str, got: &Tensor, expected: &Tensor, rel: f64) {
    assert_eq!(got.dims(), expected.dims(), "{what}: shape");
    let expected = values(expected);
    let floor = 1e-2 * expected.iter().fold(1e-6f64, |m, e| m.max(e.abs()));
    for (i, (g, e)) in values(got).iter().zip(expected).enumerate() {
        let tolerance = rel * e.abs().max(floor);
        assert!((g - e).abs() <= tolerance, "{what}[{i}]: got {g}, PyTorch {e}");
    }
}

/// A mask over a variable map, so its `alphas` train, holding the fixture's values.
fn mask_with(alphas: &Tensor, granularity: Granularity) -> ReluMask {
    let vars = VarMap::new();
    let mask =
        ReluMask::new((3, 4, 5), granularity, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu))
            .unwrap();
    mask.alphas().set(alphas).unwrap();
    mask
}

#[test]
fn masked_activation_forward_and_both_gradients_match_pytorch() {
    let f = fixtures();
    for (name, granularity) in [("pixel", Granularity::Pixel), ("channel", Granularity::Channel)] {
        let mask = mask_with(&f[&format!("mask.{name}.alphas")], granularity);
        let x = Var::from_tensor(&f["mask.x"]).unwrap();
        let y = mask.forward(&x).unwrap();
        assert_close(&format!("{name} y"), &y, &f[&format!("mask.{name}.y")], 1e-5);
        let grads = (y * &f["mask.g"]).unwrap().sum_all().unwrap().backward().unwrap();
        let dx = grads.get(&x).unwrap();
        assert_close(&format!("{name} dx"), dx, &f[&format!("mask.{name}.dx")], 1e-5);
        let da = grads.get(mask.alphas()).unwrap();
        assert_close(&format!("{name} dalphas"), da, &f[&format!("mask.{name}.dalphas")], 1e-5);
    }
}

#[test]
fn frozen_binary_mask_is_exactly_relu_or_identity() {
    let f = fixtures();
    let mask = mask_with(&f["mask.pixel.alphas"], Granularity::Pixel);
    mask.binarize(0.5).unwrap();
    let x = Var::from_tensor(&f["mask.x"]).unwrap();
    let y = mask.forward(&x).unwrap();
    let a = values(mask.alphas().as_tensor());
    let (xs, ys) = (values(&x), values(&y));
    for (i, (xv, yv)) in xs.iter().zip(&ys).enumerate() {
        let on = a[i % a.len()];
        assert!(on == 0.0 || on == 1.0, "binarized alpha {on}");
        let expected = if on == 1.0 { xv.max(0.0) } else { *xv };
        assert_eq!(*yv, expected, "element {i}");
    }
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(mask.alphas()).is_none(), "a frozen mask takes no gradient");
}

/// Counting and binarizing compare each alpha with the threshold exactly: an alpha stored as
/// the f32 nearest 0.1 is above 0.1 (candle's `gt` would round 0.1 to that f32 first and
/// call them equal, so `count` and the binarized model disagreed by that ReLU).
#[test]
fn an_alpha_at_the_threshold_is_counted_and_binarized_alike() {
    let tenth = 0.1f32;
    let mut values = vec![0.0f32; 60];
    values[..5].copy_from_slice(&[tenth, tenth.next_down(), tenth.next_up(), 0.0, 1.0]);
    let mask = mask_with(&Tensor::from_vec(values, (1, 3, 4, 5), &Device::Cpu).unwrap(), Granularity::Pixel);
    // f64: 0.1f32 = 0.10000000149 > 0.1; its predecessor 0.0999999940 is not.
    assert_eq!(mask.kept_elements(0.1).unwrap(), 3);
    mask.binarize(0.1).unwrap();
    let binary = mask.alphas().as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(binary[..5], [1.0, 0.0, 1.0, 0.0, 1.0]);
    assert_eq!(mask.kept_elements(0.1).unwrap(), 3, "counted again after binarizing");
}

#[test]
fn losses_match_pytorch() {
    let f = fixtures();
    let (s, t) = (&f["loss.student"], &f["loss.teacher"]);
    let scalar = |t: &Tensor| Tensor::new(&[t.to_scalar::<f32>().unwrap()], &Device::Cpu).unwrap();
    assert_close("ce", &scalar(&cross_entropy(s, &f["loss.labels"]).unwrap()), &f["loss.ce"], 1e-5);
    assert_close("kd T=4", &scalar(&distillation(s, t, 4.0).unwrap()), &f["loss.kd_t4"], 1e-5);
    assert_close("kd T=1", &scalar(&distillation(s, t, 1.0).unwrap()), &f["loss.kd_t1"], 1e-5);

    struct Two(ReluMask, ReluMask);
    impl Masked for Two {
        fn masks(&self) -> Vec<&ReluMask> {
            vec![&self.0, &self.1]
        }
    }
    let model = Two(
        mask_with(&f["mask.pixel.alphas"], Granularity::Pixel),
        mask_with(&f["mask.channel.alphas"], Granularity::Channel),
    );
    assert_close("lasso", &scalar(&lasso(&model).unwrap()), &f["loss.lasso"], 1e-5);
}

/// Three steps on `loss_k = sum(p * g_k)`, as the fixture script does.
fn three_steps(
    f: &HashMap<String, Tensor>,
    mut step: impl FnMut(&Var, &candle::backprop::GradStore),
) -> Vec<Tensor> {
    let p = Var::from_tensor(&f["optim.p0"].copy().unwrap()).unwrap();
    (0..3)
        .map(|k| {
            let grads =
                (p.as_tensor() * &f[&format!("optim.g{k}")]).unwrap().sum_all().unwrap().backward().unwrap();
            step(&p, &grads);
            p.as_tensor().copy().unwrap()
        })
        .collect()
}

fn check_steps(f: &HashMap<String, Tensor>, name: &str, got: Vec<Tensor>) {
    for (k, p) in got.iter().enumerate() {
        assert_close(&format!("{name} step {}", k + 1), p, &f[&format!("optim.{name}.p{}", k + 1)], 1e-5);
    }
}

#[test]
fn adam_matches_pytorch_for_three_steps() {
    let f = fixtures();
    let cases = [
        ("adam", AdamConfig::with_lr(1e-3)),
        ("adam_wd", AdamConfig { lr: 1e-2, beta1: 0.8, beta2: 0.99, eps: 1e-6, weight_decay: 0.1 }),
    ];
    for (name, config) in cases {
        let mut adam = None;
        let got = three_steps(&f, |p, grads| {
            adam.get_or_insert_with(|| Adam::new(vec![p.clone()], config)).step(grads).unwrap()
        });
        check_steps(&f, name, got);
    }
}

#[test]
fn sgd_matches_pytorch_for_three_steps() {
    let f = fixtures();
    let cases = [
        ("sgd", SgdConfig { lr: 0.1, momentum: 0.9, weight_decay: 5e-4, nesterov: false }),
        ("sgd_nesterov", SgdConfig { lr: 0.05, momentum: 0.9, weight_decay: 1e-2, nesterov: true }),
        ("sgd_plain", SgdConfig { lr: 0.1, momentum: 0.0, weight_decay: 0.0, nesterov: false }),
    ];
    for (name, config) in cases {
        let mut sgd = None;
        let got = three_steps(&f, |p, grads| {
            sgd.get_or_insert_with(|| Sgd::new(vec![p.clone()], config)).step(grads).unwrap()
        });
        check_steps(&f, name, got);
    }
}

#[test]
fn optimizer_state_round_trip_resumes_exactly() {
    let f = fixtures();
    let config = AdamConfig::with_lr(1e-3);
    // Two steps, save, a fresh optimizer restores the state and takes the third.
    let p = Var::from_tensor(&f["optim.p0"].copy().unwrap()).unwrap();
    let grad_of = |k: usize| {
        (p.as_tensor() * &f[&format!("optim.g{k}")]).unwrap().sum_all().unwrap().backward().unwrap()
    };
    let mut adam = Adam::new(vec![p.clone()], config);
    adam.step(&grad_of(0)).unwrap();
    adam.step(&grad_of(1)).unwrap();
    let saved = adam.state().unwrap();
    let mut resumed = Adam::new(vec![p.clone()], config);
    resumed.load_state(&saved).unwrap();
    resumed.step(&grad_of(2)).unwrap();
    assert_close("adam resumed step 3", p.as_tensor(), &f["optim.adam.p3"], 1e-5);

    let p = Var::from_tensor(&f["optim.p0"].copy().unwrap()).unwrap();
    let grad_of = |k: usize| {
        (p.as_tensor() * &f[&format!("optim.g{k}")]).unwrap().sum_all().unwrap().backward().unwrap()
    };
    let config = SgdConfig { lr: 0.1, momentum: 0.9, weight_decay: 5e-4, nesterov: false };
    let mut sgd = Sgd::new(vec![p.clone()], config);
    sgd.step(&grad_of(0)).unwrap();
    let saved = sgd.state();
    let mut resumed = Sgd::new(vec![p.clone()], config);
    resumed.load_state(&saved).unwrap();
    resumed.step(&grad_of(1)).unwrap();
    resumed.step(&grad_of(2)).unwrap();
    assert_close("sgd resumed step 3", p.as_tensor(), &f["optim.sgd.p3"], 1e-5);
}

/// A buffer that recorded a graph would hold the previous step's buffers, and through them
/// every earlier step's: memory would grow by a few copies of the model each step.
#[test]
fn optimizer_state_records_no_graph_across_steps() {
    let p = Var::from_tensor(&Tensor::arange(0f32, 6.0, &Device::Cpu).unwrap()).unwrap();
    let step_grads = || (p.as_tensor() * p.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
    for nesterov in [false, true] {
        let mut sgd =
            Sgd::new(vec![p.clone()], SgdConfig { lr: 0.1, momentum: 0.9, weight_decay: 5e-4, nesterov });
        for _ in 0..3 {
            sgd.step(&step_grads()).unwrap();
        }
        for (key, t) in sgd.state() {
            assert!(!t.track_op(), "sgd (nesterov {nesterov}) {key} records a graph");
        }
    }
    let config = AdamConfig { weight_decay: 0.1, ..AdamConfig::with_lr(1e-3) };
    let mut adam = Adam::new(vec![p.clone()], config);
    for _ in 0..3 {
        adam.step(&step_grads()).unwrap();
    }
    for (key, t) in adam.state().unwrap() {
        assert!(!t.track_op(), "adam {key} records a graph");
    }
}

#[test]
fn optimizer_state_with_wrong_shape_or_unknown_key_is_rejected() {
    let p = Var::zeros((5, 7), DType::F32, &Device::Cpu).unwrap();
    let mut adam = Adam::new(vec![p.clone()], AdamConfig::with_lr(1e-3));
    let bad_shape: HashMap<_, _> = [
        ("exp_avg.0".to_string(), Tensor::zeros((7, 5), DType::F32, &Device::Cpu).unwrap()),
        ("exp_avg_sq.0".to_string(), Tensor::zeros((5, 7), DType::F32, &Device::Cpu).unwrap()),
        ("step.0".to_string(), Tensor::new(1i64, &Device::Cpu).unwrap()),
    ]
    .into();
    let err = adam.load_state(&bad_shape).unwrap_err().to_string();
    assert!(err.contains("exp_avg.0") && err.contains("[7, 5]"), "{err}");
    let unknown: HashMap<_, _> =
        [("exp_avg.3".to_string(), Tensor::zeros((5, 7), DType::F32, &Device::Cpu).unwrap())].into();
    let err = adam.load_state(&unknown).unwrap_err().to_string();
    assert!(err.contains("exp_avg.3"), "{err}");
    let mut sgd = Sgd::new(vec![p], SgdConfig { lr: 0.1, momentum: 0.9, weight_decay: 0.0, nesterov: false });
    assert!(sgd.load_state(&unknown).is_err());
}

#[test]
fn learning_rate_schedules_match_pytorch() {
    let f = fixtures();
    let check = |name: &str, schedule: LrSchedule| {
        let expected = values(&f[name]);
        for (epoch, e) in expected.iter().enumerate() {
            let got = schedule.lr(0.1, epoch);
            assert!((got - e).abs() <= 1e-12 + 1e-9 * e.abs(), "{name} epoch {epoch}: {got} vs {e}");
        }
    };
    check("lr.cosine_10", LrSchedule::Cosine { epochs: 10, min_lr: 0.0 });
    check("lr.multistep_80_120", LrSchedule::MultiStep { milestones: vec![80, 120], gamma: 0.1 });
}

/// Through candle-nn's `Optimizer` (generic code): the trait's `new` refuses a bad SGD
/// configuration naming the value, `backward_step` is the PyTorch-exact step, and the
/// learning rate reads back as set.
#[test]
fn optimizers_work_through_candle_nns_trait() {
    fn steps<O: Optimizer>(config: O::Config, f: &HashMap<String, Tensor>) -> Vec<Tensor> {
        let p = Var::from_tensor(&f["optim.p0"].copy().unwrap()).unwrap();
        let mut opt = O::new(vec![p.clone()], config).unwrap();
        let lr = opt.learning_rate();
        opt.set_learning_rate(lr * 2.0);
        assert_eq!(opt.learning_rate(), lr * 2.0);
        opt.set_learning_rate(lr);
        (0..3)
            .map(|k| {
                opt.backward_step(&(p.as_tensor() * &f[&format!("optim.g{k}")]).unwrap().sum_all().unwrap())
                    .unwrap();
                p.as_tensor().copy().unwrap()
            })
            .collect()
    }
    let f = fixtures();
    let sgd = SgdConfig { lr: 0.1, momentum: 0.9, weight_decay: 5e-4, nesterov: false };
    check_steps(&f, "sgd", steps::<Sgd>(sgd, &f));
    check_steps(&f, "adam", steps::<Adam>(AdamConfig::with_lr(1e-3), &f));

    let p = Var::zeros(3, DType::F32, &Device::Cpu).unwrap();
    let bad = [
        (SgdConfig { lr: -1.0, ..sgd }, "learning rate"),
        (SgdConfig { lr: f64::NAN, ..sgd }, "learning rate"),
        (SgdConfig { weight_decay: -1e-4, ..sgd }, "weight decay"),
        (SgdConfig { momentum: 1.0, ..sgd }, "momentum"),
        (SgdConfig { momentum: 0.0, nesterov: true, ..sgd }, "Nesterov"),
    ];
    for (config, needle) in bad {
        let err = <Sgd as Optimizer>::new(vec![p.clone()], config).unwrap_err().to_string();
        assert!(err.contains(needle), "{config:?}: {err}");
    }
}
