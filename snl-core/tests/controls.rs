//! The control arm of a study: drawn selections (`draw_masks`) and frozen-mask training,
//! on the `tiny_cnn` example's model.

#[allow(dead_code)] // the example's own reporting
#[path = "../examples/tiny_cnn.rs"]
mod tiny_cnn;

use candle::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use snl_core::{
    Budget, Error, FrozenMaskTraining, Masked, Selection, SnlConfig, draw_masks, relu_count, relu_total,
};
use tiny_cnn::TinyCnn;

fn student() -> (TinyCnn, VarMap) {
    let vars = VarMap::new();
    let student = TinyCnn::new(VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu)).unwrap();
    tiny_cnn::seed_weights(&vars, 0).unwrap();
    (student, vars)
}

fn teacher(x: &Tensor) -> candle::Result<Tensor> {
    x.mean((1, 2, 3))?.unsqueeze(1)?.repeat((1, tiny_cnn::CLASSES))
}

fn mask_values(model: &TinyCnn) -> Vec<Vec<f32>> {
    model.masks().iter().map(|m| m.alphas().as_tensor().flatten_all().unwrap().to_vec1().unwrap()).collect()
}

fn values(vars: &VarMap) -> Vec<(String, Vec<f32>)> {
    tiny_cnn::named_vars(vars)
        .into_iter()
        .map(|(name, v)| (name, v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

#[test]
fn random_draws_fill_the_budget_over_the_whole_network() {
    let (model, _) = student();
    let total = relu_total(&model);
    for budget in [1, 100, total / 3, total - 1] {
        let kept = draw_masks(&model, Selection::Random, budget, 7).unwrap();
        // Pixel masks: every element is one ReLU, so the budget is met exactly.
        assert_eq!(kept, budget);
        assert_eq!(relu_count(&model, 0.01).unwrap(), budget);
        let masks = mask_values(&model);
        assert!(masks.iter().flatten().all(|&a| a == 0.0 || a == 1.0));
        assert!(model.masks().iter().all(|m| m.is_frozen()));
    }
}

#[test]
fn uniform_draws_keep_the_same_fraction_of_every_site() {
    let (model, _) = student();
    let total = relu_total(&model);
    let budget = total / 4;
    let kept = draw_masks(&model, Selection::Uniform, budget, 3).unwrap();
    let fraction = budget as f64 / total as f64;
    let mut sum = 0;
    for (m, values) in model.masks().iter().zip(mask_values(&model)) {
        let ones = values.iter().filter(|&&a| a == 1.0).count();
        assert_eq!(ones, (fraction * values.len() as f64).floor() as usize, "{}", m.site());
        sum += ones;
    }
    assert_eq!(kept, sum);
    assert!(kept <= budget);
}

#[test]
fn a_draw_depends_only_on_the_seed() {
    let (a, _) = student();
    let (b, _) = student();
    for selection in [Selection::Random, Selection::Uniform] {
        draw_masks(&a, selection, 300, 11).unwrap();
        draw_masks(&b, selection, 300, 11).unwrap();
        assert_eq!(mask_values(&a), mask_values(&b));
        draw_masks(&b, selection, 300, 12).unwrap();
        assert_ne!(mask_values(&a), mask_values(&b));
    }
    // Pinned: our own sampling over ChaCha8, so neither a new `rand` nor another platform
    // may move a draw (the first kept positions of each site for seed 11, random, 300 ReLUs).
    draw_masks(&a, Selection::Random, 300, 11).unwrap();
    let first: Vec<Vec<usize>> = mask_values(&a)
        .iter()
        .map(|v| v.iter().enumerate().filter(|(_, x)| **x == 1.0).map(|(i, _)| i).take(5).collect())
        .collect();
    assert_eq!(first, PINNED_RANDOM_11);
}

const PINNED_RANDOM_11: [[usize; 5]; 2] = [[0, 1, 4, 6, 7], [2, 3, 4, 15, 17]];

#[test]
fn frozen_mask_training_takes_its_steps_moves_weights_never_masks_and_resumes_exactly() {
    let config = SnlConfig { search_lr: 1e-2, ..SnlConfig::paper(Budget::Absolute(200)) };
    let run = |stop_after: Option<usize>| {
        let (model, vars) = student();
        let plan = config.clone().check(relu_total(&model)).unwrap();
        draw_masks(&model, Selection::Random, plan.budget, 5).unwrap();
        let masks = mask_values(&model);
        let mut batches = tiny_cnn::synthetic_batches(2, 8, 3).unwrap();
        let vars_list = tiny_cnn::sorted_vars(&vars);
        // 5 steps of 2-batch epochs: two whole epochs and one of a single step, as after an
        // SNL search that reached its budget one step into its third epoch.
        let mut training = FrozenMaskTraining::new(&plan, &model, vars_list.clone(), 5).unwrap();
        let mut reports = Vec::new();
        while !training.finished() {
            if Some(training.epoch()) == stop_after {
                // Save and rebuild, as a killed run resumed from its checkpoint would.
                let state = training.optimizer_state().unwrap();
                let at = (training.epoch(), training.steps_done());
                training =
                    FrozenMaskTraining::resume(&plan, &model, vars_list.clone(), 5, at, &state).unwrap();
            }
            reports.push(training.run_epoch(&model, &teacher, &mut batches, &mut ()).unwrap());
        }
        assert_eq!(mask_values(&model), masks, "the drawn masks never move");
        assert!(
            reports.iter().all(|r| r.phase == snl_core::Phase::FrozenMask && r.relu_count == plan.budget)
        );
        (values(&vars), reports)
    };
    let (_, start) = student();
    let (uninterrupted, reports) = run(None);
    assert_eq!(reports.iter().map(|r| r.batches).collect::<Vec<_>>(), [2, 2, 1]);
    let moved = values(&start)
        .iter()
        .zip(&uninterrupted)
        .filter(|((name, a), (_, b))| !name.contains("mask") && a != b)
        .count();
    assert!(moved > 0, "the weights trained");
    for stop_after in [1, 2] {
        let (resumed, resumed_reports) = run(Some(stop_after));
        assert_eq!(resumed, uninterrupted);
        assert_eq!(resumed_reports, reports);
    }
}

#[test]
fn frozen_mask_training_refuses_masks_that_could_move() {
    let (model, vars) = student();
    let plan = SnlConfig::paper(Budget::Absolute(100)).check(relu_total(&model)).unwrap();
    let err = FrozenMaskTraining::new(&plan, &model, tiny_cnn::sorted_vars(&vars), 1).unwrap_err();
    assert!(matches!(&err, Error::MaskNotFrozen { site } if site == "mask1"), "{err}");
}
