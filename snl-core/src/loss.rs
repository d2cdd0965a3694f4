//! The three loss terms of SNL: cross-entropy, knowledge distillation and the mask lasso.

use candle::{D, DType, Result, Tensor};
use candle_nn::ops::log_softmax;

use crate::mask::Masked;

/// Mean cross-entropy of `logits` `(N, K)` against integer `labels` `(N)`.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let labels = match labels.dtype() {
        DType::U32 | DType::I64 | DType::U8 => labels.clone(),
        _ => labels.to_dtype(DType::U32)?,
    };
    candle_nn::loss::cross_entropy(logits, &labels)
}

/// `KL(log_softmax(s/T) || softmax(t/T))`, batch mean, times `T^2`, as PyTorch's
/// `kl_div(.., reduction="batchmean") * T * T`. The teacher side takes no gradient.
pub fn distillation(student: &Tensor, teacher: &Tensor, temperature: f64) -> Result<Tensor> {
    let batch = student.dim(0)? as f64;
    let log_s = log_softmax(&(student / temperature)?, D::Minus1)?;
    let log_t = log_softmax(&(teacher.detach() / temperature)?, D::Minus1)?;
    let kl = log_t.exp()?.mul(&(log_t - log_s)?)?.sum_all()?;
    kl.affine(temperature * temperature / batch, 0.0)
}

/// Sum of `|alphas|` over every mask element of the model (unnormalised, as the authors').
pub fn lasso(model: &(impl Masked + ?Sized)) -> Result<Tensor> {
    let masks = model.masks();
    let Some(first) = masks.first() else { candle::bail!("lasso: the model has no masks") };
    masks[1..].iter().try_fold(first.l1()?, |acc, m| acc + m.l1()?)
}

/// Top-1 correct predictions in a batch.
pub fn correct(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    let predicted = logits.argmax(D::Minus1)?.to_dtype(DType::I64)?;
    let labels = labels.to_dtype(DType::I64)?;
    let hits = predicted.eq(&labels)?.to_dtype(DType::F32)?.sum_all()?;
    Ok(hits.to_scalar::<f32>()? as usize)
}
