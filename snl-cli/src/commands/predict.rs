//! `snl predict`: logits for a batch of already-normalised images, in eval mode, a batch
//! at a time.

use std::collections::HashMap;

use anyhow::{Context as _, Result, bail};
use candle::{DType, ModuleT, Tensor};

use super::Context;
use crate::cli::PredictArgs;
use crate::model;
use crate::setup::usage;

pub fn run(ctx: &Context, args: PredictArgs) -> Result<()> {
    super::check_new_file(&args.output, "--output")?;
    if args.batch_size == 0 {
        return Err(usage("--batch-size must be at least 1"));
    }
    let loaded = model::load(&args.model, &args.model_args, &ctx.device)?;
    let x = read_x(&args.input, &ctx.device)?;
    let size = loaded.config.image_size();
    let n = match x.dims() {
        &[n, 3, h, w] if h == size && w == size => n,
        dims => {
            bail!("{}: `x` has shape {dims:?}, the model takes (N, 3, {size}, {size})", args.input.display())
        }
    };
    let model = loaded.frozen(&ctx.device)?;
    let mut logits = Vec::new();
    for start in (0..n).step_by(args.batch_size) {
        let batch = x.narrow(0, start, args.batch_size.min(n - start))?.to_dtype(DType::F32)?;
        logits.push(model.forward_t(&batch, false)?);
    }
    let logits = if logits.is_empty() {
        Tensor::zeros((0, loaded.config.classes()), DType::F32, &ctx.device)?
    } else {
        Tensor::cat(&logits, 0)?
    };
    // A NaN or infinite pixel makes its image's logits NaN: said, with the images named.
    let bad: Vec<usize> = logits
        .to_dtype(DType::F32)?
        .to_vec2::<f32>()?
        .iter()
        .enumerate()
        .filter(|(_, row)| row.iter().any(|v| !v.is_finite()))
        .map(|(i, _)| i)
        .collect();
    let out = HashMap::from([("logits".to_string(), logits)]);
    // Atomic: a failed write leaves no half file, and a file made meanwhile is kept.
    snl_models::checkpoint::save_new(&out, &HashMap::new(), &args.output)?;
    super::warn_cautions(ctx, &loaded, &args.model)?;
    ctx.ui.result(format!("wrote logits {:?} to {}", out["logits"].dims(), args.output.display()))?;
    if !bad.is_empty() {
        let listed: Vec<String> = bad.iter().map(usize::to_string).collect();
        ctx.ui.warn(format!(
            "{} of {n} images have NaN or infinite logits (images {}; counted from 0): their pixels in {} \
             may not be finite",
            bad.len(),
            crate::run::list_some(&listed),
            args.input.display()
        ));
    }
    Ok(())
}

/// Tensor `x` of the safetensors file `path`, and nothing else of it; a float tensor only.
/// A regular file of bounded size only (`checkpoint::read_bytes`).
fn read_x(path: &std::path::Path, device: &candle::Device) -> Result<Tensor> {
    let bytes = snl_models::checkpoint::read_bytes(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let file = candle::safetensors::SliceSafetensors::new(&bytes)
        .with_context(|| format!("cannot read {} as safetensors", path.display()))?;
    let Ok(view) = file.get("x") else {
        let names: Vec<String> = file.tensors().into_iter().map(|(name, _)| name).collect();
        bail!("{}: no tensor named `x` (found: {})", path.display(), crate::run::list_some(&names));
    };
    let x = candle::safetensors::Load::load(&view, device)
        .with_context(|| format!("{}: cannot load `x`", path.display()))?;
    if !x.dtype().is_float() {
        bail!(
            "{}: `x` holds {:?} values; predict takes normalised float images (pixels scaled and \
             normalised as in training), not raw integers",
            path.display(),
            x.dtype()
        );
    }
    Ok(x)
}
