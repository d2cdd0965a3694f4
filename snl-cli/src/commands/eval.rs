//! `snl eval`: top-1, top-5 and loss of a model on the test or validation split.

use anyhow::Result;

use super::{Context, check_fits, model_split, warn_cautions};
use crate::cli::{EvalArgs, EvalSplit};
use crate::data::{self, DataConfig, DatasetKind, Splits};
use crate::model;

pub fn run(ctx: &Context, args: EvalArgs) -> Result<()> {
    if let (EvalSplit::Test, Some(size)) = (args.split, args.data.val_size) {
        // A flag that would do nothing is refused, as elsewhere.
        return Err(crate::setup::usage(format!(
            "--val-size {size}: the test split holds nothing out; drop --val-size (it shapes --split val)"
        )));
    }
    let loaded = model::load(&args.model, &args.model_args, &ctx.device)?;
    let mut data =
        DataConfig::from_args(&args.data, 256, loaded.dataset_or(args.data.dataset, &args.model)?)?;
    // The test split of a real dataset is the same whatever the seed; synthetic images are not.
    let seed_matters = args.split == EvalSplit::Val || data.dataset == DatasetKind::Synthetic;
    let unchecked = Context { seed_given: false, device: ctx.device.clone(), ..*ctx };
    let split_ctx = if seed_matters { ctx } else { &unchecked };
    let seed = model_split(split_ctx, &loaded, &args.model, &mut data, args.data.val_size, "eval rebuilds")?;
    let unsplit = data.recorded_split.as_ref().is_some_and(|rec| rec.given.is_none()) && data.val_size == 0;
    if args.split == EvalSplit::Val && unsplit {
        // Said before any data is read (which may start a download).
        return Err(crate::setup::usage(format!(
            "{}: trained on every training image (--val-size 0), it has no validation split; use --split test",
            args.model.display()
        )));
    }
    if args.split == EvalSplit::Test {
        // The test split does not depend on one: no default --val-size 5000 to refuse on a
        // small training set nobody asked to split.
        data.val_size = 0;
        data.recorded_split = None;
    }
    let splits = Splits::load(&data, seed, &ctx.ui)?;
    check_fits(args.model.display(), &loaded.config, data.dataset, &splits)?;
    splits.warn_caution(&ctx.ui);
    let split = match args.split {
        EvalSplit::Test => &splits.test,
        EvalSplit::Val => splits.val()?,
    };
    let metrics = data::evaluate(&loaded.frozen(&ctx.device)?, split, data.batch_size, &ctx.device)?;
    warn_cautions(ctx, &loaded, &args.model)?;
    if metrics.nonfinite > 0 {
        ctx.ui.warn(format!(
            "{} of {} images got a NaN or infinite logit from {} (counted wrong); its weights may be broken",
            metrics.nonfinite,
            metrics.samples,
            args.model.display()
        ));
    }
    if args.json {
        ctx.ui.result(serde_json::to_string(&metrics)?)?;
    } else {
        let name = if args.split == EvalSplit::Test { "test" } else { "val" };
        ctx.ui.result(format!(
            "{} on {} ({name}, {} images): top-1 {:.2}%, top-5 {:.2}%, loss {:.4}",
            args.model.display(),
            data.dataset,
            metrics.samples,
            metrics.top1,
            metrics.top5,
            metrics.loss
        ))?;
    }
    Ok(())
}
