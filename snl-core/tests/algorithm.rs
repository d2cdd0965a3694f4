//! Algorithm 1's rules: configuration checks, the lambda schedule, and a run end to end on
//! a small CNN of the caller's own (the `tiny_cnn` example, which depends on snl-core alone).

#[path = "../examples/tiny_cnn.rs"]
mod tiny_cnn;

use candle::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use snl_core::{Budget, ConfigError, Error, Finetune, LassoSchedule, MaskSearch, Masked, Phase, SnlConfig};
use tiny_cnn::TinyCnn;

const TOTAL: usize = 491_520;

fn check(config: SnlConfig) -> Result<snl_core::Plan, ConfigError> {
    config.check(TOTAL)
}

#[test]
fn paper_preset_is_the_authors_defaults() {
    let c = SnlConfig::paper(Budget::Absolute(50_000));
    assert_eq!((c.lasso, c.kappa, c.warmup_epochs, c.threshold), (1e-5, 1.1, 5, 1e-2));
    assert_eq!((c.search_lr, c.max_search_epochs, c.temperature, c.finetune_epochs), (1e-3, 2000, 4.0, 100));
    assert_eq!((c.finetune.lr, c.finetune.momentum, c.finetune.weight_decay), (1e-3, 0.9, 5e-4));
    assert!(!c.finetune.nesterov);
}

#[test]
fn budgets_resolve_to_relu_counts() {
    assert_eq!(check(SnlConfig::paper(Budget::Absolute(50_000))).unwrap().budget, 50_000);
    assert_eq!(check(SnlConfig::paper(Budget::Fraction(0.1))).unwrap().budget, 49_152);
    assert_eq!(check(SnlConfig::paper(Budget::Absolute(TOTAL - 1))).unwrap().total, TOTAL);
}

#[test]
fn every_bad_value_is_rejected_with_its_name() {
    let paper = || SnlConfig::paper(Budget::Absolute(50_000));
    let cases: Vec<(SnlConfig, ConfigError, &str)> = vec![
        (
            SnlConfig::paper(Budget::Absolute(TOTAL)),
            ConfigError::BudgetTooLarge { budget: TOTAL, total: TOTAL },
            "budget 491520 ReLUs must be below the network's 491520 ReLUs",
        ),
        (
            SnlConfig::paper(Budget::Absolute(1_000_000)),
            ConfigError::BudgetTooLarge { budget: 1_000_000, total: TOTAL },
            "1000000",
        ),
        // All the ReLUs is no linearization: refused as a fraction, as it is as a count.
        (SnlConfig::paper(Budget::Fraction(1.0)), ConfigError::FractionOutOfRange(1.0), "below all ReLUs"),
        (SnlConfig::paper(Budget::Absolute(0)), ConfigError::BudgetZero, "at least one"),
        (SnlConfig::paper(Budget::Fraction(0.0)), ConfigError::FractionOutOfRange(0.0), "fraction 0"),
        (SnlConfig::paper(Budget::Fraction(1.5)), ConfigError::FractionOutOfRange(1.5), "fraction 1.5"),
        (SnlConfig::paper(Budget::Fraction(-0.1)), ConfigError::FractionOutOfRange(-0.1), "(0, 1)"),
        (
            SnlConfig { lasso: 0.0, ..paper() },
            ConfigError::NotPositive { name: "lasso coefficient", value: 0.0 },
            "lasso coefficient",
        ),
        (
            SnlConfig { search_lr: -1e-3, ..paper() },
            ConfigError::NotPositive { name: "search learning rate", value: -1e-3 },
            "search learning rate",
        ),
        (
            SnlConfig { search_lr: f64::NAN, ..paper() },
            ConfigError::NotPositive { name: "search learning rate", value: f64::NAN },
            "NaN",
        ),
        (
            SnlConfig { temperature: 0.0, ..paper() },
            ConfigError::NotPositive { name: "temperature", value: 0.0 },
            "temperature",
        ),
        (SnlConfig { kappa: 1.0, ..paper() }, ConfigError::KappaTooSmall(1.0), "kappa"),
        (SnlConfig { threshold: 1.0, ..paper() }, ConfigError::Threshold(1.0), "threshold"),
        (SnlConfig { threshold: -0.5, ..paper() }, ConfigError::Threshold(-0.5), "threshold"),
        (SnlConfig { max_search_epochs: 0, ..paper() }, ConfigError::NoSearchEpochs, "search epochs"),
    ];
    for (config, expected, words) in cases {
        let err = check(config).unwrap_err();
        // NaN never equals itself: compare the message for that case.
        if !matches!(expected, ConfigError::NotPositive { value, .. } if value.is_nan()) {
            assert_eq!(err, expected);
        }
        assert!(err.to_string().contains(words), "`{err}` should mention `{words}`");
    }
    let mut sgd = paper();
    sgd.finetune.lr = 0.0;
    assert!(check(sgd).unwrap_err().to_string().contains("finetune learning rate"));
    let mut sgd = paper();
    sgd.finetune.momentum = 1.0;
    assert_eq!(check(sgd).unwrap_err(), ConfigError::Momentum(1.0));
    let mut sgd = paper();
    sgd.finetune.weight_decay = -1.0;
    assert!(check(sgd).unwrap_err().to_string().contains("finetune weight decay"));
    let mut sgd = paper();
    (sgd.finetune.momentum, sgd.finetune.nesterov) = (0.0, true);
    assert_eq!(check(sgd).unwrap_err(), ConfigError::NesterovWithoutMomentum);
    assert_eq!(paper().check(0).unwrap_err(), ConfigError::NoMasks);
}

#[test]
fn lambda_grows_only_after_warmup_and_only_without_a_new_low() {
    let plan = check(SnlConfig::paper(Budget::Absolute(10))).unwrap();
    let mut schedule = LassoSchedule::new(&plan);
    // epoch: count after it, whether lambda grows.
    let script = [
        (0, 400_000, false), // new low
        (1, 400_000, false), // stalled, but in the warm-up
        (2, 450_000, false), // higher, warm-up
        (3, 300_000, false), // new low
        (4, 300_000, false), // stalled, last warm-up epoch
        (5, 300_000, true),  // stalled after the warm-up: grows
        (6, 310_000, true),  // higher: grows
        (7, 299_999, false), // new low
        (8, 299_999, true),
    ];
    let mut lambda = 1e-5;
    for (epoch, count, grows) in script {
        assert_eq!(schedule.after_epoch(epoch, count), grows, "epoch {epoch}");
        if grows {
            lambda *= 1.1;
        }
        assert!((schedule.lambda - lambda).abs() < 1e-18, "epoch {epoch}: lambda {}", schedule.lambda);
    }
    assert_eq!(schedule.lowest, 299_999);
}

/// A resumed run restores the schedule from JSON; lambda must come back to the bit, or the
/// resumed run's losses drift from the uninterrupted run's.
#[test]
fn the_schedule_survives_a_json_round_trip_exactly() {
    let plan =
        check(SnlConfig { lasso: 0.02, warmup_epochs: 0, ..SnlConfig::paper(Budget::Absolute(10)) }).unwrap();
    let mut schedule = LassoSchedule::new(&plan);
    for epoch in 0..40 {
        assert!(schedule.after_epoch(epoch, plan.total));
        let text = serde_json::to_string(&schedule).unwrap();
        let back: LassoSchedule = serde_json::from_str(&text).unwrap();
        assert_eq!(back.lambda.to_bits(), schedule.lambda.to_bits(), "epoch {epoch}: {text}");
    }
}

#[test]
fn a_small_cnn_of_our_own_is_linearized_to_its_budget() {
    let budget = 192; // a quarter of the CNN's 768 ReLUs
    let out = tiny_cnn::run(Budget::Absolute(budget)).unwrap();
    let l = &out.linearized;
    assert_eq!(out.relu_total, 768);
    let search: Vec<_> = out.reports.iter().filter(|r| r.phase == Phase::Search).collect();
    assert_eq!(search.len(), l.search_epochs);
    // The search stops at the first epoch within the budget, and not before.
    assert!(search.last().unwrap().relu_count <= budget);
    assert!(search[..search.len() - 1].iter().all(|r| r.relu_count > budget));
    // The binarized network keeps exactly the count the search ended with.
    assert_eq!(l.relu_count, search.last().unwrap().relu_count);
    let finetune: Vec<_> = out.reports.iter().filter(|r| r.phase == Phase::Finetune).collect();
    assert_eq!(finetune.len(), 5);
    assert!(finetune.iter().all(|r| r.relu_count == l.relu_count && r.accuracy.is_some()));
    // Accuracy after finetuning is reported; on this easy task it stays far above chance (25%).
    assert!(out.final_accuracy > 0.6, "accuracy after linearization {}", out.final_accuracy);
    // Seeded from start to end: a second run gives the same masks, schedule and accuracy.
    let again = tiny_cnn::run(Budget::Absolute(budget)).unwrap();
    assert_eq!(again.reports, out.reports);
    assert_eq!(again.linearized.lambda.to_bits(), l.lambda.to_bits());
    assert_eq!(again.final_accuracy.to_bits(), out.final_accuracy.to_bits());
    eprintln!(
        "tiny CNN: {:.1}% with 768 ReLUs, {:.1}% with {} after {} search epochs",
        100.0 * out.baseline_accuracy,
        100.0 * out.final_accuracy,
        l.relu_count,
        l.search_epochs
    );
}

#[test]
fn search_gives_up_with_a_typed_error_after_max_epochs() {
    let vars = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
    let student = tiny_cnn::TinyCnn::new(vb).unwrap();
    let teacher = |x: &Tensor| x.mean((1, 2, 3))?.unsqueeze(1)?.repeat((1, tiny_cnn::CLASSES));
    let mut config = SnlConfig::paper(Budget::Absolute(1));
    config.max_search_epochs = 2;
    let mut batches = tiny_cnn::synthetic_batches(2, 8, 3).unwrap();
    let err =
        snl_core::linearize(&student, vars.all_vars(), &teacher, &mut batches, config, &mut ()).unwrap_err();
    match err {
        Error::BudgetNotReached { epochs, count, budget, lambda } => {
            assert_eq!((epochs, budget), (2, 1));
            assert!(count > 1);
            assert_eq!(lambda, 1e-5);
        }
        other => panic!("expected BudgetNotReached, got {other}"),
    }
}

/// A seeded student over a fresh variable map.
fn student() -> (TinyCnn, VarMap) {
    let vars = VarMap::new();
    let student = TinyCnn::new(VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu)).unwrap();
    tiny_cnn::seed_weights(&vars, 0).unwrap();
    (student, vars)
}

fn teacher(x: &Tensor) -> candle::Result<Tensor> {
    x.mean((1, 2, 3))?.unsqueeze(1)?.repeat((1, tiny_cnn::CLASSES))
}

/// A few epochs at most: without the check, each case below would run to this cap and fail
/// with `BudgetNotReached` instead.
fn short_search() -> SnlConfig {
    SnlConfig { max_search_epochs: 2, finetune_epochs: 0, ..SnlConfig::paper(Budget::Absolute(10)) }
}

fn linearize_error(student: &TinyCnn, vars: Vec<candle::Var>) -> Error {
    let mut batches = tiny_cnn::synthetic_batches(1, 8, 3).unwrap();
    snl_core::linearize(student, vars, &teacher, &mut batches, short_search(), &mut ()).unwrap_err()
}

#[test]
fn a_student_whose_masks_cannot_train_is_refused_naming_the_mask() {
    // Built from plain tensors (as a teacher is), every mask is frozen.
    let (_, vars) = student();
    let tensors =
        tiny_cnn::named_vars(&vars).into_iter().map(|(k, v)| (k, v.as_tensor().copy().unwrap())).collect();
    let frozen = TinyCnn::new(VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu)).unwrap();
    let err = linearize_error(&frozen, tiny_cnn::sorted_vars(&vars));
    assert!(matches!(&err, Error::FrozenMask { site } if site == "mask1"), "{err}");
    assert!(err.to_string().contains("mask `mask1` is frozen"), "{err}");

    // An already linearized (binarized) student.
    let (linearized, vars) = student();
    snl_core::binarize(&linearized, 1e-2).unwrap();
    let err = linearize_error(&linearized, tiny_cnn::sorted_vars(&vars));
    assert!(matches!(&err, Error::FrozenMask { site } if site == "mask1"), "{err}");

    // Trainable masks, but the second one's alphas are not handed to the search.
    let (model, vars) = student();
    let without_mask2: Vec<_> = tiny_cnn::named_vars(&vars)
        .into_iter()
        .filter(|(name, _)| name != "mask2.alphas")
        .map(|(_, v)| v)
        .collect();
    let err = linearize_error(&model, without_mask2.clone());
    assert!(matches!(&err, Error::MaskNotInVars { site } if site == "mask2"), "{err}");
    assert!(err.to_string().contains("mask `mask2`"), "{err}");
    let plan = short_search().check(snl_core::relu_total(&model)).unwrap();
    let err = MaskSearch::new(&plan, &model, without_mask2).unwrap_err();
    assert!(matches!(&err, Error::MaskNotInVars { site } if site == "mask2"), "{err}");
    // Masks compare by variable, not by value: a copy of the alphas is not the mask.
    let mut with_copy = tiny_cnn::sorted_vars(&vars);
    let copy = candle::Var::from_tensor(&model.masks()[1].alphas().as_tensor().copy().unwrap()).unwrap();
    with_copy.retain(|v| v.id() != model.masks()[1].alphas().id());
    with_copy.push(copy);
    let err = MaskSearch::new(&plan, &model, with_copy).unwrap_err();
    assert!(matches!(&err, Error::MaskNotInVars { site } if site == "mask2"), "{err}");
    assert!(MaskSearch::new(&plan, &model, tiny_cnn::sorted_vars(&vars)).is_ok());
}

#[test]
fn a_plan_that_does_not_fit_the_student_is_refused() {
    let (model, vars) = student();
    let total = snl_core::relu_total(&model);
    let config = SnlConfig::paper(Budget::Fraction(0.25));
    let fits = config.clone().check(total).unwrap();
    let another_network = config.clone().check(TOTAL).unwrap();
    let mut edited_budget = fits.clone();
    edited_budget.budget = total;
    let mut edited_config = fits.clone();
    edited_config.config.kappa = 0.5;
    let mismatch = |plan_budget, plan_total| {
        Error::Config(ConfigError::PlanMismatch { plan_budget, plan_total, budget: total / 4, total })
    };
    let cases = [
        (another_network, mismatch(TOTAL / 4, TOTAL)),
        (edited_budget, mismatch(total, total)),
        (edited_config, Error::Config(ConfigError::KappaTooSmall(0.5))),
    ];
    for (plan, expected) in cases {
        let search = MaskSearch::new(&plan, &model, tiny_cnn::sorted_vars(&vars)).unwrap_err();
        assert_eq!(search.to_string(), expected.to_string());
        let optimizer = Default::default();
        let resumed =
            Finetune::resume(&plan, &model, tiny_cnn::sorted_vars(&vars), 0, &optimizer).unwrap_err();
        assert_eq!(resumed.to_string(), expected.to_string());
        // Refused before binarizing: the student's masks still train.
        assert!(model.masks().iter().all(|m| !m.is_frozen()));
    }
    assert!(Finetune::new(&fits, &model, tiny_cnn::sorted_vars(&vars)).is_ok());
}

#[test]
fn without_finetuning_the_last_report_is_the_last_search_epochs() {
    let (model, vars) = student();
    let mut config = SnlConfig::paper(Budget::Absolute(700));
    (config.lasso, config.search_lr, config.finetune_epochs) = (5e-3, 2e-2, 0);
    let mut batches = tiny_cnn::synthetic_batches(2, 8, 3).unwrap();
    let mut reports = Recorded(Vec::new());
    let done = snl_core::linearize(
        &model,
        tiny_cnn::sorted_vars(&vars),
        &teacher,
        &mut batches,
        config,
        &mut reports,
    )
    .unwrap();
    assert_eq!(done.finetune_epochs, 0);
    assert_eq!(reports.0.len(), done.search_epochs);
    assert_eq!(done.last.as_ref(), reports.0.last());
    assert_eq!(done.last.unwrap().phase, Phase::Search);
}

/// The student's count after every search step (`on_batch` comes after the step).
struct CountsPerStep<'a> {
    student: &'a TinyCnn,
    counts: Vec<usize>,
}

impl<M> snl_core::Observer<M> for CountsPerStep<'_> {
    fn on_batch(&mut self, phase: Phase, _epoch: usize, _batch: usize, _loss: f32) {
        if phase == Phase::Search {
            self.counts.push(snl_core::relu_count(self.student, 1e-2).unwrap());
        }
    }
}

#[test]
fn a_search_ends_at_the_first_step_within_its_budget_even_mid_epoch() {
    let (model, vars) = student();
    // A lambda this large takes most masks under the threshold within the first epoch.
    let mut config = SnlConfig::paper(Budget::Absolute(600));
    (config.lasso, config.search_lr, config.finetune_epochs) = (5e-2, 5e-2, 0);
    let mut batches = tiny_cnn::synthetic_batches(40, 8, 3).unwrap();
    let mut seen = CountsPerStep { student: &model, counts: Vec::new() };
    let plan = config.check(768).unwrap();
    let mut search = MaskSearch::new(&plan, &model, tiny_cnn::sorted_vars(&vars)).unwrap();
    let last = search.run(&model, &teacher, &mut batches, &mut seen).unwrap().unwrap();
    let counts = &seen.counts;
    // It stopped at the first step whose count is within the budget, before the epoch's end.
    assert!(counts.len() < 40, "the search ran {} steps of a 40-batch epoch: {counts:?}", counts.len());
    assert!(
        *counts.last().unwrap() <= 600 && counts[..counts.len() - 1].iter().all(|&c| c > 600),
        "{counts:?}"
    );
    assert_eq!((last.epoch, last.batches, last.relu_count), (0, counts.len(), *counts.last().unwrap()));
    assert_eq!((search.state().epoch, search.state().steps), (1, counts.len()));
}

struct Recorded(Vec<snl_core::EpochReport>);

impl<M> snl_core::Observer<M> for Recorded {
    fn on_epoch(&mut self, report: &snl_core::EpochReport) {
        self.0.push(report.clone());
    }
}

fn values(vars: &VarMap) -> Vec<(String, Vec<f32>)> {
    tiny_cnn::named_vars(vars)
        .into_iter()
        .map(|(name, v)| (name, v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

#[test]
fn a_non_finite_loss_stops_the_run_with_a_typed_error() {
    let (model, vars) = student();
    let mut batches = tiny_cnn::synthetic_batches(3, 8, 3).unwrap();
    let poisoned = (batches[1].0.ones_like().unwrap() * f64::NAN).unwrap();
    batches[1].0 = poisoned;
    let before = values(&vars);
    let config = SnlConfig::paper(Budget::Absolute(10));
    let err = snl_core::linearize(
        &model,
        tiny_cnn::sorted_vars(&vars),
        &teacher,
        &mut batches,
        config.clone(),
        &mut (),
    )
    .unwrap_err();
    match &err {
        Error::NonFiniteLoss { phase: Phase::Search, epoch: 0, batch: 1, value, .. } => {
            assert!(value.is_nan())
        }
        other => panic!("expected NonFiniteLoss at batch 1, got {other}"),
    }
    assert!(err.to_string().contains("epoch 0, batch 1"), "{err}");
    // Only the first (finite) batch was applied: the weights are those of one search step
    // on that batch alone from the same start, and the poisoned one never reached them.
    let (reference, reference_vars) = student();
    assert_eq!(values(&reference_vars), before, "the same start");
    let plan = config.check(snl_core::relu_total(&reference)).unwrap();
    let mut search = MaskSearch::new(&plan, &reference, tiny_cnn::sorted_vars(&reference_vars)).unwrap();
    let mut first = vec![batches[0].clone()];
    search.run_epoch(&reference, &teacher, &mut first, &mut ()).unwrap();
    let after = values(&vars);
    assert_ne!(after, before, "the first batch was applied");
    assert_eq!(after, values(&reference_vars));
}
