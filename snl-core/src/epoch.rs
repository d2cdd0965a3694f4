//! One epoch of optimizer steps over a model's batches, shared by the search, the
//! finetuning and a control's frozen-mask training: the loss scalars read once per step, an
//! epoch's sums, and where an epoch may end early.

use candle::{Module, ModuleT, Tensor};

use crate::loss::{correct, cross_entropy, distillation};
use crate::mask::Masked;
use crate::optim::Optimizer;
use crate::snl::{Batches, EpochReport, Observer, Phase};
use crate::{Error, Result};

/// One epoch of `CE + KD` steps of `optimizer` over the student's training batches: the
/// finetuning's loss, and a control's frozen-mask epochs (with the search's optimizer).
#[allow(clippy::too_many_arguments)]
pub(crate) fn distill_epoch<M, T, B, O>(
    phase: Phase,
    epoch: usize,
    student: &M,
    teacher: &T,
    temperature: f64,
    batches: &mut B,
    observer: &mut O,
    optimizer: &mut impl Optimizer,
    until: Until<'_>,
) -> Result<EpochSums>
where
    M: ModuleT + Masked,
    T: Module,
    B: Batches + ?Sized,
    O: Observer<M> + ?Sized,
{
    run_batches(phase, epoch, batches, observer, until, |x, y| {
        let logits = student.forward_t(x, true)?;
        let target = teacher.forward(x)?.detach();
        let terms = [cross_entropy(&logits, y)?, distillation(&logits, &target, temperature)?];
        let loss = (&terms[0] + &terms[1])?;
        let values = step_values(&loss, &terms, &logits, y)?;
        if values.loss.is_finite() {
            optimizer.step(&loss.backward()?)?;
        }
        Ok(values)
    })
}

/// One batch's scalars, read once from the device.
pub(crate) struct StepValues {
    pub(crate) loss: f32,
    terms: [f32; 3],
    correct: usize,
    samples: usize,
}

pub(crate) fn step_values(
    loss: &Tensor,
    terms: &[Tensor],
    logits: &Tensor,
    labels: &Tensor,
) -> candle::Result<StepValues> {
    let mut values = [0f32; 3];
    for (v, t) in values.iter_mut().zip(terms) {
        *v = t.to_scalar::<f32>()?;
    }
    Ok(StepValues {
        loss: loss.to_scalar()?,
        terms: values,
        correct: correct(logits, labels)?,
        samples: labels.dim(0)?,
    })
}

#[derive(Default)]
pub(crate) struct EpochSums {
    pub(crate) batches: usize,
    loss: f64,
    terms: [f64; 3],
    correct: usize,
    samples: usize,
}

impl EpochSums {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn report(
        &self,
        phase: Phase,
        epoch: usize,
        relu_count: usize,
        lambda: f64,
        lambda_grew: bool,
        lr: f64,
        accuracy: Option<f64>,
    ) -> EpochReport {
        let n = self.batches as f64;
        EpochReport {
            phase,
            epoch,
            batches: self.batches,
            ce: self.terms[0] / n,
            kd: self.terms[1] / n,
            lasso: self.terms[2] / n,
            loss: self.loss / n,
            train_accuracy: self.correct as f64 / self.samples as f64,
            relu_count,
            lambda,
            lambda_grew,
            lr,
            accuracy,
        }
    }
}

/// Where an epoch may end early: after `limit` batches, or after the first step at which
/// `stop` says so (the search's count within its budget).
pub(crate) struct Until<'a> {
    pub(crate) limit: usize,
    pub(crate) stop: Option<Box<dyn FnMut() -> Result<bool> + 'a>>,
}

impl Until<'_> {
    /// The whole epoch.
    pub(crate) fn epoch_end() -> Self {
        Until { limit: usize::MAX, stop: None }
    }
}

/// Runs `step` over an epoch's batches, stopping with a typed error at the first loss that
/// is not finite (that batch's update is not applied).
pub(crate) fn run_batches<M: ?Sized, B, O>(
    phase: Phase,
    epoch: usize,
    batches: &mut B,
    observer: &mut O,
    until: Until<'_>,
    mut step: impl FnMut(&Tensor, &Tensor) -> candle::Result<StepValues>,
) -> Result<EpochSums>
where
    B: Batches + ?Sized,
    O: Observer<M> + ?Sized,
{
    let Until { limit, mut stop } = until;
    let mut sums = EpochSums::default();
    for (batch, item) in batches.epoch(epoch).take(limit).enumerate() {
        let (x, y) = item?;
        let v = step(&x, &y)?;
        if !v.loss.is_finite() {
            let [ce, kd, lasso] = v.terms;
            let lambda = None; // the search adds its own
            return Err(Error::NonFiniteLoss { phase, epoch, batch, value: v.loss, ce, kd, lasso, lambda });
        }
        observer.on_batch(phase, epoch, batch, v.loss);
        sums.batches += 1;
        sums.loss += f64::from(v.loss);
        for (s, t) in sums.terms.iter_mut().zip(v.terms) {
            *s += f64::from(t);
        }
        sums.correct += v.correct;
        sums.samples += v.samples;
        if let Some(stop) = stop.as_mut()
            && stop()?
        {
            break;
        }
    }
    if sums.batches == 0 {
        return Err(Error::NoBatches { phase, epoch });
    }
    Ok(sums)
}
