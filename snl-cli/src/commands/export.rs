//! `snl export`: what a private-inference framework needs (REFERENCE §6). It gains nothing
//! from `relu(x) * m + x * (1 - m)`: it needs, per site, the kept positions (gather, one
//! ReLU, scatter back) and which sites became fully linear.
//!
//! Writes `weights.safetensors` (PyTorch names, masks binarized, snl metadata: snl reads it
//! back as a model), `masks.safetensors` (one U8 `[C, H, W]` tensor per site),
//! `kept_indices.safetensors` (one U32 tensor of flat indices into `C*H*W` per site that
//! keeps any ReLU) and `manifest.json`; or, with `--format onnx`, one `model.onnx` that
//! computes exactly the kept ReLUs (`crate::onnx`).

use std::collections::HashMap;

use anyhow::{Context as _, Result, bail};
use candle::{DType, Device, Tensor};
use serde::Serialize;
use snl_core::Masked;

use super::Context;
use crate::cli::{ExportArgs, ExportFormat, ReluFormArg};
use crate::model::{self, Loaded, keys};
use crate::onnx::{self, ReluForm};
use crate::run;
use crate::setup::usage;
use snl_models::checkpoint::write_atomic;

#[derive(Serialize)]
struct Manifest {
    arch: String,
    threshold: f64,
    layout: &'static str,
    relu_total: usize,
    relu_kept: usize,
    files: HashMap<&'static str, &'static str>,
    sites: Vec<SiteEntry>,
}

#[derive(Serialize)]
struct SiteEntry {
    name: String,
    /// `[C, H, W]` of the activation (and of its mask tensor).
    shape: [usize; 3],
    layout: &'static str,
    kept: usize,
    total: usize,
    fully_linear: bool,
}

pub fn run(ctx: &Context, args: ExportArgs) -> Result<()> {
    let form = match (args.format, args.relu) {
        (ExportFormat::Safetensors, Some(_)) => {
            return Err(usage("--relu applies to --format onnx only (the bundle lists kept positions)"));
        }
        (_, Some(ReluFormArg::Masked)) => ReluForm::Masked,
        _ => ReluForm::Compact,
    };
    let loaded = model::load(&args.model, &args.model_args, &ctx.device)?;
    let threshold = model::check_threshold(args.threshold.unwrap_or_else(|| loaded.threshold()))?;
    if !run::is_free(&args.out)? {
        bail!(
            "{} exists and is not an empty folder; choose another --out (nothing was overwritten)",
            args.out.display()
        );
    }
    match args.format {
        ExportFormat::Safetensors => bundle(ctx, &args, &loaded, threshold),
        ExportFormat::Onnx => export_onnx(ctx, &args, &loaded, threshold, form),
    }
}

/// One ONNX model, `model.onnx`, its masks binarized at `threshold`.
fn export_onnx(
    ctx: &Context,
    args: &ExportArgs,
    loaded: &Loaded,
    threshold: f64,
    form: ReluForm,
) -> Result<()> {
    let model = loaded.frozen(&ctx.device)?;
    let mut sites = HashMap::new();
    let mut relu_total = 0;
    for m in model.masks() {
        let on: Vec<u8> = m.alphas().as_tensor().gt(threshold)?.flatten_all()?.to_vec1()?;
        let site = onnx::Site {
            shape: m.activation_shape(),
            granularity: m.granularity(),
            on: on.iter().map(|&o| o == 1).collect(),
        };
        relu_total += m.total_relus();
        sites.insert(m.site().to_string(), site);
    }
    let relu_kept: usize = sites.values().map(onnx::Site::kept_relus).sum();
    let form_name = match form {
        ReluForm::Compact => "compact",
        ReluForm::Masked => "masked",
    };
    let meta = model::metadata(
        &loaded.config,
        &[
            (keys::THRESHOLD, threshold.to_string()),
            (keys::RELU_COUNT, relu_kept.to_string()),
            (keys::RELU_TOTAL, relu_total.to_string()),
            ("relu_form", form_name.to_string()),
        ],
    );
    let meta: Vec<(String, String)> = meta.into_iter().collect();
    let proto = onnx::build(&loaded.config, &loaded.tensors, sites, form, &meta)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let path = args.out.join("model.onnx");
    write_atomic(&path, &prost::Message::encode_to_vec(&proto))?;
    ctx.ui.result(format!(
        "exported {relu_kept} of {relu_total} ReLUs ({form_name}, ONNX opset {}) to {}",
        onnx::OPSET,
        path.display()
    ));
    Ok(())
}

/// snl's bundle: weights, U8 masks, kept indices, manifest.
fn bundle(ctx: &Context, args: &ExportArgs, loaded: &Loaded, threshold: f64) -> Result<()> {
    let model = loaded.frozen(&ctx.device)?;
    let (mut weights, mut masks, mut indices, mut sites) =
        (loaded.tensors.clone(), HashMap::new(), HashMap::new(), vec![]);
    for m in model.masks() {
        let (c, h, w) = m.activation_shape();
        // Binary and expanded to the activation's shape, whatever the granularity.
        let on = m.alphas().as_tensor().gt(threshold)?;
        let full = on
            .broadcast_as((1, c, h, w))?
            .reshape((c, h, w))?
            .to_dtype(DType::U8)?
            .to_device(&Device::Cpu)?;
        let flat: Vec<u8> = full.flatten_all()?.to_vec1()?;
        let kept: Vec<u32> =
            flat.iter().enumerate().filter(|&(_, &v)| v == 1).map(|(i, _)| i as u32).collect();
        weights.insert(format!("{}.alphas", m.site()), on.to_dtype(DType::F32)?);
        sites.push(SiteEntry {
            name: m.site().to_string(),
            shape: [c, h, w],
            layout: "CHW (of NCHW activations)",
            kept: kept.len(),
            total: c * h * w,
            fully_linear: kept.is_empty(),
        });
        if !kept.is_empty() {
            let n = kept.len();
            indices.insert(m.site().to_string(), Tensor::from_vec(kept, n, &Device::Cpu)?);
        }
        masks.insert(m.site().to_string(), full);
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let (relu_kept, relu_total) =
        (sites.iter().map(|s| s.kept).sum::<usize>(), sites.iter().map(|s| s.total).sum::<usize>());
    // The weights are an snl checkpoint (`count`, `eval`, `predict` read them back); the
    // other files name their architecture only.
    let weights_meta = model::metadata(
        &loaded.config,
        &[
            (keys::THRESHOLD, threshold.to_string()),
            (keys::RELU_COUNT, relu_kept.to_string()),
            (keys::RELU_TOTAL, relu_total.to_string()),
        ],
    );
    snl_models::checkpoint::save(&weights, &weights_meta, args.out.join("weights.safetensors"))?;
    let meta = HashMap::from([("arch".to_string(), loaded.config.arch_name())]);
    snl_models::checkpoint::save(&masks, &meta, args.out.join("masks.safetensors"))?;
    snl_models::checkpoint::save(&indices, &meta, args.out.join("kept_indices.safetensors"))?;
    let manifest = Manifest {
        arch: loaded.config.arch_name(),
        threshold,
        layout: "NCHW",
        relu_total,
        relu_kept,
        files: HashMap::from([
            ("weights", "weights.safetensors"),
            ("masks", "masks.safetensors"),
            ("kept_indices", "kept_indices.safetensors"),
        ]),
        sites,
    };
    let mut text = serde_json::to_string_pretty(&manifest)?;
    text.push('\n');
    write_atomic(&args.out.join("manifest.json"), text.as_bytes())?;
    let linear = manifest.sites.iter().filter(|s| s.fully_linear).count();
    ctx.ui.result(format!(
        "exported {} of {} ReLUs ({} of {} sites fully linear) to {}",
        manifest.relu_kept,
        manifest.relu_total,
        linear,
        manifest.sites.len(),
        args.out.display()
    ));
    Ok(())
}
