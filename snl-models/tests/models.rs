//! BatchNorm semantics, frozen copies, seeded initialisation, and Algorithm 1 on both models.

use candle::{DType, Device, ModuleT, Tensor};
use candle_nn::{VarBuilder, VarMap};
use snl_core::{Budget, Granularity, Masked, SnlConfig};
use snl_models::layers::BatchNorm2d;
use snl_models::{ModelConfig, ResNetConfig, WrnConfig, params};

fn tiny_resnet() -> ModelConfig {
    ModelConfig::from(ResNetConfig { width: 2, image_size: 8, ..ResNetConfig::resnet18(3) })
}

fn tiny_wrn() -> ModelConfig {
    ModelConfig::from(WrnConfig { image_size: 8, ..WrnConfig::new(10, 1, 3).unwrap() })
}

fn input(n: usize, side: usize, seed: f64) -> Tensor {
    let count = n * 3 * side * side;
    let v: Vec<f32> = (0..count).map(|i| ((i as f64 * 0.7311 + seed).sin() * 2.0) as f32).collect();
    Tensor::from_vec(v, (n, 3, side, side), &Device::Cpu).unwrap()
}

#[test]
fn batchnorm_matches_pytorch_semantics() {
    let vars = VarMap::new();
    let bn = BatchNorm2d::new(2, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu).pp("bn")).unwrap();
    // Channel 0: values 0..8, channel 1: constant 5; batch 2, 2x2.
    let x: Vec<f32> =
        (0..16).map(|i| if (i / 4) % 2 == 0 { (i % 4 + 4 * (i / 8)) as f32 } else { 5.0 }).collect();
    let x = Tensor::from_vec(x, (2, 2, 2, 2), &Device::Cpu).unwrap();
    let y = bn.forward_t(&x, true).unwrap();
    // Channel 0 is 0..7: mean 3.5, biased variance 5.25, unbiased 6.
    let y0: Vec<f32> = y.narrow(1, 0, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let expect: Vec<f32> =
        [0., 1., 2., 3., 4., 5., 6., 7.].iter().map(|v: &f32| (v - 3.5) / (5.25f32 + 1e-5).sqrt()).collect();
    let mut sorted = y0.clone();
    sorted.sort_by(f32::total_cmp);
    for (a, b) in sorted.iter().zip(&expect) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    let mean = bn.running_mean().to_vec1::<f32>().unwrap();
    let var = bn.running_var().to_vec1::<f32>().unwrap();
    assert!((mean[0] - 0.35).abs() < 1e-6 && (mean[1] - 0.5).abs() < 1e-6, "{mean:?}");
    assert!((var[0] - (0.9 + 0.6)).abs() < 1e-5 && (var[1] - 0.9).abs() < 1e-6, "{var:?}");
    assert_eq!(bn.num_batches_tracked().unwrap(), 1);
    // The VarMap holds the updated statistics.
    let data = vars.data().lock().unwrap();
    assert_eq!(data["bn.num_batches_tracked"].as_tensor().to_scalar::<i64>().unwrap(), 1);
    assert!((data["bn.running_mean"].as_tensor().to_vec1::<f32>().unwrap()[0] - 0.35).abs() < 1e-6);
    drop(data);
    // Eval mode uses, and keeps, the running statistics.
    let e = bn.forward_t(&x, false).unwrap();
    let first = e.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
    assert!((first - (0.0 - 0.35) / (1.5f32 + 1e-5).sqrt()).abs() < 1e-5);
    assert_eq!(bn.num_batches_tracked().unwrap(), 1);
    // Each training batch counts once more, in the VarMap too.
    bn.forward_t(&x, true).unwrap();
    assert_eq!(bn.num_batches_tracked().unwrap(), 2);
    assert_eq!(
        vars.data().lock().unwrap()["bn.num_batches_tracked"].as_tensor().to_scalar::<i64>().unwrap(),
        2
    );
}

#[test]
fn statistics_take_no_gradient() {
    let (model, vars) = tiny_resnet().build_trainable(&Device::Cpu).unwrap();
    let loss = model.forward_t(&input(4, 8, 0.0), true).unwrap().sqr().unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    for (name, var) in vars.data().lock().unwrap().iter() {
        assert_eq!(grads.get(var).is_some(), !params::is_buffer(name), "{name}");
    }
}

#[test]
fn frozen_copy_records_no_graph_and_stays_put() {
    for config in [tiny_resnet(), tiny_wrn()] {
        let (student, vars) = config.build_trainable(&Device::Cpu).unwrap();
        let x = input(3, 8, 1.0);
        student.forward_t(&x, true).unwrap(); // move the statistics away from 0/1
        let teacher = config.build_frozen(&vars, &Device::Cpu).unwrap();
        assert!(teacher.masks().iter().all(|m| m.is_frozen()));
        assert!(student.masks().iter().all(|m| !m.is_frozen()));
        let t = teacher.forward_t(&x, false).unwrap();
        assert!(!t.track_op(), "the frozen teacher's output carries a graph");
        let s = student.forward_t(&x, false).unwrap();
        assert!(s.track_op());
        // Same weights, different rounding: without a graph the teacher folds each batch
        // norm into its convolution (`fast::conv2d_affine`); the student runs the two ops.
        let diff = (&t - &s).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let size = s.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff <= 1e-5 * size, "teacher and student differ by {diff} (outputs up to {size})");
        // Updating the student's variables does not reach the teacher.
        params::init_seeded(&vars, config.init_scheme(), 7).unwrap();
        let t2 = teacher.forward_t(&x, false).unwrap();
        let diff = (&t - &t2).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0);
    }
}

#[test]
fn seeded_init_is_reproducible() {
    let config = tiny_wrn();
    let (a, va) = config.build_trainable(&Device::Cpu).unwrap();
    let (b, vb) = config.build_trainable(&Device::Cpu).unwrap();
    params::init_seeded(&va, config.init_scheme(), 42).unwrap();
    params::init_seeded(&vb, config.init_scheme(), 42).unwrap();
    let x = input(2, 8, 2.0);
    let ya = a.forward_t(&x, false).unwrap().to_vec2::<f32>().unwrap();
    let yb = b.forward_t(&x, false).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(ya, yb);
    params::init_seeded(&vb, config.init_scheme(), 43).unwrap();
    assert_ne!(ya, b.forward_t(&x, false).unwrap().to_vec2::<f32>().unwrap());
    let data = va.data().lock().unwrap();
    assert_eq!(
        data["block1.layer.0.alpha1.alphas"].as_tensor().min_all().unwrap().to_scalar::<f32>().unwrap(),
        1.0
    );
    assert_eq!(data["bn1.running_var"].as_tensor().min_all().unwrap().to_scalar::<f32>().unwrap(), 1.0);
}

#[test]
fn algorithm_1_runs_on_both_models() {
    for config in [tiny_resnet().with_granularity(Granularity::Channel), tiny_wrn()] {
        let (student, vars) = config.build_trainable(&Device::Cpu).unwrap();
        params::init_seeded(&vars, config.init_scheme(), 1).unwrap();
        let teacher_model = config.build_frozen(&vars, &Device::Cpu).unwrap();
        let teacher = |x: &Tensor| teacher_model.forward_t(x, false);
        let labels = Tensor::new(&[0u32, 1, 2, 1], &Device::Cpu).unwrap();
        let mut batches = vec![(input(4, 8, 3.0), labels.clone()), (input(4, 8, 4.0), labels)];
        let total = snl_core::relu_total(&student);
        let mut snl = SnlConfig::paper(Budget::Fraction(0.9));
        snl.lasso = 1.0;
        snl.search_lr = 0.1;
        snl.max_search_epochs = 50;
        snl.finetune_epochs = 1;
        let done = snl_core::linearize(
            &student,
            params::trainable_vars(&vars),
            &teacher,
            &mut batches,
            snl,
            &mut (),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", config.arch_name()));
        assert!(done.relu_count <= total * 9 / 10, "{} of {total}", done.relu_count);
        assert!(student.masks().iter().all(|m| m.is_frozen()));
    }
}

/// Mean and standard deviation of a tensor's values.
fn moments(t: &Tensor) -> (f64, f64) {
    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// The authors' initialisation (REFERENCE §2): every ResNet conv and linear weight
/// kaiming-normal on fan_in (std sqrt(2/fan_in)), linear bias U(±1/sqrt(fan_in)); every WRN
/// conv kaiming-normal on fan_out, linear weight U(±1/sqrt(fan_in)), linear bias 0. Each
/// sample std must lie within 5 standard errors (sigma / sqrt(2n)) of the target.
#[test]
fn seeded_init_matches_the_authors_distributions() {
    // Wide enough that every tensor has hundreds of values.
    let resnet = ModelConfig::from(ResNetConfig { width: 16, image_size: 8, ..ResNetConfig::resnet18(10) });
    let wrn = ModelConfig::from(WrnConfig { image_size: 8, ..WrnConfig::new(10, 2, 10).unwrap() });
    for config in [resnet, wrn] {
        let is_wrn = matches!(config, ModelConfig::Wrn(_));
        let (_, vars) = config.build_trainable(&Device::Cpu).unwrap();
        params::init_seeded(&vars, config.init_scheme(), 3).unwrap();
        let data = vars.data().lock().unwrap();
        let mut checked = (0, 0);
        for (name, var) in data.iter() {
            let t = var.as_tensor();
            let dims = t.dims().to_vec();
            let (prefix, leaf) = name.rsplit_once('.').unwrap();
            let is_bn = data.contains_key(&format!("{prefix}.running_mean"));
            if t.dtype() != DType::F32 {
                continue; // num_batches_tracked
            }
            let (mean, std) = moments(t);
            let n = t.elem_count() as f64;
            let target = match (leaf, dims.len(), is_bn) {
                ("weight", 4, false) => {
                    checked.0 += 1;
                    let fan = if is_wrn { dims[0] * dims[2] * dims[3] } else { dims[1] * dims[2] * dims[3] };
                    (2.0 / fan as f64).sqrt()
                }
                ("weight", 2, false) => {
                    checked.1 += 1;
                    let fan_in = dims[1] as f64;
                    if is_wrn { 1.0 / fan_in.sqrt() / 3f64.sqrt() } else { (2.0 / fan_in).sqrt() }
                }
                ("bias", 1, false) if is_wrn => {
                    assert_eq!((mean, std), (0.0, 0.0), "{name}: WRN linear bias must be 0");
                    continue;
                }
                _ => continue,
            };
            let tolerance = 5.0 / (2.0 * n).sqrt();
            assert!(
                (std / target - 1.0).abs() < tolerance,
                "{name} {dims:?}: std {std}, want {target} (±{tolerance})"
            );
            assert!(mean.abs() < 5.0 * target / n.sqrt(), "{name}: mean {mean}");
        }
        assert!(checked.0 > 5 && checked.1 == 1, "{checked:?}");
        if !is_wrn {
            let bias = data["linear.bias"].as_tensor();
            let bound = 1.0 / (data["linear.weight"].as_tensor().dims()[1] as f32).sqrt();
            assert!(bias.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() <= bound);
        }
    }
}
