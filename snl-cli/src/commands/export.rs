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
use std::path::Path;

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
    if !args.binarize {
        refuse_soft_masks(&args.model, &loaded)?;
    }
    if !run::is_free(&args.out)? {
        bail!(
            "{} exists and is not an empty folder; choose another --out (nothing was overwritten)",
            args.out.display()
        );
    }
    let mut summary = String::new();
    publish(&args.out, |dir| {
        summary = match args.format {
            ExportFormat::Safetensors => bundle(ctx, dir, &loaded, threshold)?,
            ExportFormat::Onnx => export_onnx(ctx, dir, &loaded, threshold, form)?,
        };
        Ok(())
    })?;
    ctx.ui.result(format!("{summary} to {}", args.out.display()))?;
    Ok(())
}

/// Refuses masks with values other than 0 and 1 (a model saved mid-search): the export
/// binarizes them, so it would compute another network than `predict` and `eval` compute
/// with the same file, and say nothing (logits 22% apart on such a file).
fn refuse_soft_masks(path: &Path, loaded: &Loaded) -> Result<()> {
    let soft = loaded.soft_masks()?;
    if soft.is_empty() {
        return Ok(());
    }
    Err(usage(format!(
        "{}: masks with values other than 0 and 1 (a model mid-search?): {}; its export would compute \
         another network than predict and eval do. Finish it with `snl linearize`, or pass --binarize to \
         export it binarized at the threshold",
        path.display(),
        run::list_some(&soft)
    )))
}

/// A folder being written, removed when dropped (once renamed into place it is gone).
struct Staging(std::path::PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the export into a fresh folder beside `out` and renames that onto `out`: a failed
/// export leaves nothing behind (a half-written folder used to refuse the retry), and of two
/// exports to the same `out` one fails instead of both mixing their files into it (the
/// rename replaces at most an empty folder).
fn publish(out: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    // A name the rename cannot take, or a link it would not follow: said as such, not
    // blamed on another process after the work is done.
    if out.file_name().is_none() {
        bail!("--out {}: give a folder name to create", out.display());
    }
    if out.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
        bail!("--out {}: a symbolic link; give the folder itself (nothing was written)", out.display());
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    // A name no other process picks: its pid, and the clock for a second export of ours.
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let staging = Staging(parent.join(format!(".snl-export-{}-{nanos}", std::process::id())));
    std::fs::create_dir(&staging.0).with_context(|| format!("cannot create {}", staging.0.display()))?;
    write(&staging.0)?;
    if let Err(e) = std::fs::rename(&staging.0, out) {
        bail!(
            "{} could not be written ({e}): did another process write there meanwhile? Nothing was overwritten",
            out.display()
        );
    }
    Ok(())
}

/// One ONNX model, `model.onnx`, its masks binarized at `threshold`, in `out`; returns
/// what was exported.
fn export_onnx(ctx: &Context, out: &Path, loaded: &Loaded, threshold: f64, form: ReluForm) -> Result<String> {
    let model = loaded.frozen(&ctx.device)?;
    let mut sites = HashMap::new();
    let mut relu_total = 0;
    for m in model.masks() {
        let on: Vec<u8> = m.kept(threshold)?.flatten_all()?.to_vec1()?;
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
    write_atomic(&out.join("model.onnx"), &prost::Message::encode_to_vec(&proto))?;
    Ok(format!("exported {relu_kept} of {relu_total} ReLUs ({form_name}, ONNX opset {})", onnx::OPSET))
}

/// snl's bundle: weights, U8 masks, kept indices, manifest, in `out`; returns what was
/// exported.
fn bundle(ctx: &Context, out: &Path, loaded: &Loaded, threshold: f64) -> Result<String> {
    let model = loaded.frozen(&ctx.device)?;
    let (mut weights, mut masks, mut indices, mut sites) =
        (loaded.tensors.clone(), HashMap::new(), HashMap::new(), vec![]);
    for m in model.masks() {
        let (c, h, w) = m.activation_shape();
        // Binary and expanded to the activation's shape, whatever the granularity.
        let on = m.kept(threshold)?;
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
    let (relu_kept, relu_total) =
        (sites.iter().map(|s| s.kept).sum::<usize>(), sites.iter().map(|s| s.total).sum::<usize>());
    // The weights are an snl checkpoint (`count`, `eval`, `predict` read them back); the
    // other files name their architecture only.
    let mut extra: Vec<(&str, String)> = keys::DATA_RECORD
        .into_iter()
        .filter_map(|k| loaded.metadata.get(k).map(|v| (k, v.clone())))
        .collect();
    extra.extend([
        (keys::THRESHOLD, threshold.to_string()),
        (keys::RELU_COUNT, relu_kept.to_string()),
        (keys::RELU_TOTAL, relu_total.to_string()),
    ]);
    let weights_meta = model::metadata(&loaded.config, &extra);
    snl_models::checkpoint::save(&weights, &weights_meta, out.join("weights.safetensors"))?;
    let meta = HashMap::from([("arch".to_string(), loaded.config.arch_name())]);
    snl_models::checkpoint::save(&masks, &meta, out.join("masks.safetensors"))?;
    snl_models::checkpoint::save(&indices, &meta, out.join("kept_indices.safetensors"))?;
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
    write_atomic(&out.join("manifest.json"), text.as_bytes())?;
    let linear = manifest.sites.iter().filter(|s| s.fully_linear).count();
    Ok(format!(
        "exported {} of {} ReLUs ({} of {} sites fully linear)",
        manifest.relu_kept,
        manifest.relu_total,
        linear,
        manifest.sites.len(),
    ))
}
