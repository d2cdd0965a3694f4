//! `snl import`: a checkpoint of the authors' PyTorch scripts to an snl checkpoint.

use anyhow::Result;

use super::Context;
use crate::cli::ImportArgs;
use crate::model::{self, keys, metadata};

pub fn run(ctx: &Context, args: ImportArgs) -> Result<()> {
    super::check_new_file(&args.out, "--out")?;
    let loaded = model::load(&args.pth, &args.model_args, &ctx.device)?;
    let frozen = loaded.frozen(&ctx.device)?;
    let threshold = loaded.threshold();
    let meta = metadata(
        &loaded.config,
        &[
            (keys::THRESHOLD, threshold.to_string()),
            (keys::RELU_COUNT, snl_core::relu_count(&frozen, threshold)?.to_string()),
            (keys::RELU_TOTAL, snl_core::relu_total(&frozen).to_string()),
        ],
    );
    // Never over a file made meanwhile.
    snl_models::checkpoint::save_new(&loaded.tensors, &meta, &args.out)?;
    ctx.ui.result(format!(
        "imported {} ({}, {} tensors) into {}",
        args.pth.display(),
        loaded.config.arch_name(),
        loaded.tensors.len(),
        args.out.display()
    ))?;
    Ok(())
}
