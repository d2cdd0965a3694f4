//! `snl predict`: logits for a batch of already-normalised images, in eval mode.

use std::collections::HashMap;

use anyhow::{Context as _, Result, bail};
use candle::{DType, ModuleT};

use super::Context;
use crate::cli::PredictArgs;
use crate::model;

pub fn run(ctx: &Context, args: PredictArgs) -> Result<()> {
    if args.output.exists() {
        bail!("{} exists; choose another --output (nothing was overwritten)", args.output.display());
    }
    let loaded = model::load(&args.model, &args.model_args, &ctx.device)?;
    let inputs = candle::safetensors::load(&args.input, &ctx.device)
        .with_context(|| format!("cannot read {} as safetensors", args.input.display()))?;
    let Some(x) = inputs.get("x") else {
        bail!(
            "{}: no tensor named `x` (found: {:?})",
            args.input.display(),
            inputs.keys().collect::<Vec<_>>()
        );
    };
    let size = loaded.config.image_size();
    match x.dims() {
        &[_, 3, h, w] if h == size && w == size => {}
        dims => {
            bail!("{}: `x` has shape {dims:?}, the model takes (N, 3, {size}, {size})", args.input.display())
        }
    }
    let logits = loaded.frozen(&ctx.device)?.forward_t(&x.to_dtype(DType::F32)?, false)?;
    let out = HashMap::from([("logits".to_string(), logits)]);
    // Atomic: a failed write leaves no half file.
    snl_models::checkpoint::save(&out, &HashMap::new(), &args.output)?;
    ctx.ui.result(format!("wrote logits {:?} to {}", out["logits"].dims(), args.output.display()));
    Ok(())
}
