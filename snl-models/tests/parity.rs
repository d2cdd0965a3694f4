//! Numerical parity with the PyTorch reference (`snl-bench/scripts/torch_ref.py fixture`, see
//! tests/data/make_fixtures.sh): logits in eval and train mode, loss terms and mask
//! gradients, for ResNet18 and WRN, pixel and channel masks.

mod common;

use candle::{Device, ModuleT};
use common::{FIXTURES, fixture, matrix, max_abs_diff};
use snl_core::loss::{cross_entropy, distillation, lasso};
use snl_core::{Granularity, Masked};
use snl_models::checkpoint;

fn check(name: &str) {
    let f = fixture(name);
    let (model, vars) = f.config.build_trainable(&Device::Cpu).expect("build");
    checkpoint::load_into(&vars, &f.model).expect("strict load");

    // Mask sizes as the reference counts them (mask elements).
    let elements: usize = model.masks().iter().map(|m| m.alphas().elem_count()).sum();
    assert_eq!(elements as u64, f.expected["relu_total"].as_u64().unwrap(), "{name}: mask elements");
    let kept: usize = model.masks().iter().map(|m| m.kept_elements(1e-2).unwrap()).sum();
    assert_eq!(kept as u64, f.expected["relu_count_eps_0.01"].as_u64().unwrap(), "{name}: kept elements");
    if f.config.granularity() == Granularity::Pixel {
        assert_eq!(snl_core::relu_total(&model), elements);
    }

    let eval = model.forward_t(&f.x, false).expect("eval forward");
    let d_eval = max_abs_diff(&eval.to_vec2::<f32>().unwrap(), &matrix(&f.expected["eval_logits"]));
    let train = model.forward_t(&f.x, true).expect("train forward");
    let d_train = max_abs_diff(&train.to_vec2::<f32>().unwrap(), &matrix(&f.expected["train_logits"]));
    eprintln!("{name}: max |logits - torch| eval {d_eval:.2e}, train {d_train:.2e}");
    assert!(d_eval < 1e-4, "{name}: eval logits differ by {d_eval}");
    assert!(d_train < 1e-4, "{name}: train logits differ by {d_train}");

    let teacher = eval.detach();
    let ce = cross_entropy(&train, &f.y).unwrap();
    let kd = distillation(&train, &teacher, 4.0).unwrap();
    let l1 = lasso(&model).unwrap();
    let loss = (&ce + &kd).unwrap().add(&l1.affine(1e-5, 0.0).unwrap()).unwrap();
    for (term, value, key, tol) in [
        ("ce", &ce, "cross_entropy", 1e-5),
        ("kd", &kd, "kd_t4", 1e-5),
        ("loss", &loss, "loss_lambda_1e-5", 1e-5),
    ] {
        let ours = value.to_scalar::<f32>().unwrap() as f64;
        let theirs = f.expected[key].as_f64().unwrap();
        eprintln!("{name}: {term} {ours:.7} vs {theirs:.7} (diff {:.1e})", (ours - theirs).abs());
        assert!((ours - theirs).abs() < tol, "{name}: {term} {ours} vs {theirs}");
    }
    // The lasso is a sum over up to 10^5 elements: compare relatively at f32 precision.
    let ours = l1.to_scalar::<f32>().unwrap() as f64;
    let theirs = f.expected["lasso"].as_f64().unwrap();
    assert!((ours - theirs).abs() <= 1e-5 * theirs.abs().max(1.0), "{name}: lasso {ours} vs {theirs}");

    let grads = loss.backward().expect("backward");
    let expected = f.expected["mask_grad_sums"].as_object().unwrap();
    assert_eq!(expected.len(), model.masks().len(), "{name}: number of masks");
    let mut worst: f64 = 0.0;
    for mask in model.masks() {
        let key = format!("{}.alphas", mask.site());
        let theirs =
            expected.get(&key).unwrap_or_else(|| panic!("{name}: no gradient for {key}")).as_f64().unwrap();
        let grad = grads.get(mask.alphas()).unwrap_or_else(|| panic!("{name}: {key} got no gradient"));
        let ours = grad.sum_all().unwrap().to_scalar::<f32>().unwrap() as f64;
        let rel = (ours - theirs).abs() / theirs.abs().max(1e-3);
        worst = worst.max(rel);
        assert!(rel < 1e-3, "{name}: {key} gradient sum {ours} vs {theirs} (relative {rel:.2e})");
    }
    eprintln!("{name}: worst relative mask-gradient-sum difference {worst:.2e}");
}

#[test]
fn parity_resnet18_pixel() {
    check(FIXTURES[0]);
}

#[test]
fn parity_resnet18_channel_stem_relu() {
    check(FIXTURES[1]);
}

#[test]
fn parity_resnet18_16px_stem_relu_7_classes() {
    check(FIXTURES[2]);
}

#[test]
fn parity_wrn_pixel() {
    check(FIXTURES[3]);
}

#[test]
fn parity_wrn_channel_final_relu() {
    check(FIXTURES[4]);
}
