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
    let bytes = snl_models::checkpoint::read_bytes(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let file = candle::safetensors::SliceSafetensors::new(&bytes)
        .with_context(|| format!("cannot read {} as safetensors", args.input.display()))?;
    let x = input_x(&args.input, &file)?;
    let size = loaded.config.image_size();
    let n = match x.shape[..] {
        [n, 3, h, w] if h == size && w == size => n,
        ref dims => {
            bail!("{}: `x` has shape {dims:?}, the model takes (N, 3, {size}, {size})", args.input.display())
        }
    };
    let model = loaded.frozen(&ctx.device)?;
    let mut logits = Vec::new();
    // Each batch a tensor of its own slice of the file: never a second copy of the whole input.
    let per_image = x.data.len() / n.max(1);
    for start in (0..n).step_by(args.batch_size) {
        let count = args.batch_size.min(n - start);
        let data = &x.data[start * per_image..(start + count) * per_image];
        let batch = Tensor::from_raw_buffer(data, x.dtype, &[count, 3, size, size], &ctx.device)?;
        logits.push(model.forward_t(&batch.to_dtype(DType::F32)?, false)?);
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

/// Tensor `x` of a safetensors file: its type, shape and bytes.
struct InputX<'a> {
    dtype: DType,
    shape: Vec<usize>,
    data: &'a [u8],
}

/// Tensor `x` of the safetensors `file` read from `path`, and nothing else of it; a float
/// tensor only.
fn input_x<'f>(
    path: &std::path::Path,
    file: &'f candle::safetensors::SliceSafetensors<'_>,
) -> Result<InputX<'f>> {
    let Ok(view) = file.get("x") else {
        let names: Vec<String> = file.tensors().into_iter().map(|(name, _)| name).collect();
        bail!("{}: no tensor named `x` (found: {})", path.display(), crate::run::list_some(&names));
    };
    let dtype =
        DType::try_from(view.dtype()).with_context(|| format!("{}: cannot load `x`", path.display()))?;
    if !dtype.is_float() {
        bail!(
            "{}: `x` holds {dtype:?} values; predict takes normalised float images (pixels scaled and \
             normalised as in training), not raw integers",
            path.display()
        );
    }
    Ok(InputX { dtype, shape: view.shape().to_vec(), data: view.data() })
}
