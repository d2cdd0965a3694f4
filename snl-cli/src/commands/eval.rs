//! `snl eval`: top-1, top-5 and loss of a model on the test or validation split.

use anyhow::Result;

use super::Context;
use crate::cli::{EvalArgs, EvalSplit};
use crate::data::{self, DataConfig, Splits};
use crate::model;

pub fn run(ctx: &Context, args: EvalArgs) -> Result<()> {
    let loaded = model::load(&args.model, &args.model_args, &ctx.device)?;
    let data = DataConfig::from_args(&args.data, 256)?;
    let splits = Splits::load(&data, ctx.seed)?;
    super::linearize::check_fits(&loaded.config, &splits, &args.model)?;
    let split = match args.split {
        EvalSplit::Test => &splits.test,
        EvalSplit::Val => &splits.val,
    };
    let metrics = data::evaluate(&loaded.frozen(&ctx.device)?, split, data.batch_size, &ctx.device)?;
    if args.json {
        println!("{}", serde_json::to_string(&metrics)?);
    } else {
        let name = if args.split == EvalSplit::Test { "test" } else { "val" };
        println!(
            "{} on {} ({name}, {} images): top-1 {:.2}%, top-5 {:.2}%, loss {:.4}",
            args.model.display(),
            data.dataset,
            metrics.samples,
            metrics.top1,
            metrics.top5,
            metrics.loss
        );
    }
    Ok(())
}
