//! Model configurations from flags or checkpoint metadata, and checkpoints in and out.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use candle::Device;
use candle_nn::VarMap;
use snl_models::checkpoint::{self, StateDict};
use snl_models::{Model, ModelConfig};

use crate::cli::ModelArgs;
use crate::setup::usage;

/// Metadata keys snl adds beside the model's own (`snl_models::metadata_keys`).
pub mod keys {
    pub const FORMAT: &str = "format";
    pub const FORMAT_SNL: &str = "snl";
    pub const VERSION: &str = "snl_version";
    pub const THRESHOLD: &str = "threshold";
    pub const RELU_COUNT: &str = "relu_count";
    pub const RELU_TOTAL: &str = "relu_total";
    pub const DATASET: &str = "dataset";
    pub const SEED: &str = "seed";
    /// The size of the validation split the model was selected on.
    pub const VAL_SIZE: &str = "val_size";
    /// The training images that split was held out of (`data::DataConfig::train_images`).
    pub const TRAIN_IMAGES: &str = "train_images";
    /// The synthetic set (JSON of `data::SyntheticSpec`), on synthetic data.
    pub const SYNTHETIC: &str = "synthetic";
    /// What a model records of the data it was trained on: a file made from it (`export`)
    /// keeps them, so its validation split is rebuilt rather than drawn anew.
    pub const DATA_RECORD: [&str; 5] = [DATASET, SEED, VAL_SIZE, TRAIN_IMAGES, SYNTHETIC];
}

/// The default threshold (the authors' eps).
pub const DEFAULT_THRESHOLD: f64 = 1e-2;

/// `threshold` when it is in [0, 1) (alphas start at 1), else a usage error naming it.
pub fn check_threshold(threshold: f64) -> Result<f64> {
    if !(0.0..1.0).contains(&threshold) {
        return Err(usage(format!("--threshold {threshold}: must be in [0, 1)")));
    }
    Ok(threshold)
}

impl ModelArgs {
    fn any_given(&self) -> bool {
        self.arch.is_some()
            || self.width.is_some()
            || self.classes.is_some()
            || self.image_size.is_some()
            || self.stem_stride.is_some()
            || self.granularity.is_some()
            || self.stem_relu
            || self.final_relu
    }

    /// The configuration these flags describe; `classes` and `image_size` default to the
    /// dataset's when it is known.
    pub fn config(&self, dataset_classes: Option<usize>, dataset_size: Option<usize>) -> Result<ModelConfig> {
        let Some(arch) = &self.arch else {
            return Err(usage("give the architecture with --arch (resnet18, resnet34, wrn-22-8, ...)"));
        };
        let classes = self.classes.or(dataset_classes).unwrap_or(10);
        if let (Some(flag), Some(data)) = (self.classes, dataset_classes)
            && flag != data
        {
            return Err(usage(format!("--classes {flag} but the dataset has {data} classes")));
        }
        let mut config =
            ModelConfig::from_arch(arch, classes).map_err(|e| usage(format!("--arch {arch}: {e}")))?;
        if let Some(size) = self.image_size.or(dataset_size) {
            config = config.with_image_size(size);
        }
        if let Some(width) = self.width {
            if !matches!(config, ModelConfig::ResNet(_)) {
                return Err(usage("--width applies to ResNets; a WRN's width is its widen factor (wrn-D-K)"));
            }
            config = config.with_width(width);
        }
        if let Some(stride) = self.stem_stride {
            config = config.with_stem_stride(stride);
        }
        if let Some(g) = self.granularity {
            config = config.with_granularity(g);
        }
        match (&config, self.stem_relu, self.final_relu) {
            (ModelConfig::Wrn(_), true, _) => {
                return Err(usage("--stem-relu is for ResNets; WRN has --final-relu"));
            }
            (ModelConfig::ResNet(_), _, true) => {
                return Err(usage("--final-relu is for WRN; ResNets have --stem-relu"));
            }
            _ => {}
        }
        config = config.with_extra_activation(self.stem_relu || self.final_relu);
        config.validate().map_err(|e| usage(e.to_string()))?;
        Ok(config)
    }
}

/// A checkpoint's tensors and the configuration that describes them.
pub struct Loaded {
    pub config: ModelConfig,
    pub tensors: StateDict,
    pub metadata: HashMap<String, String>,
}

impl Loaded {
    /// The dataset the metadata says the model was trained on, if it names one snl knows.
    pub fn dataset(&self) -> Option<crate::data::DatasetKind> {
        self.metadata.get(keys::DATASET)?.parse().ok()
    }

    /// The dataset to use: `given`, else the model's; a name this snl does not know is
    /// said as such (not as a missing `--dataset`).
    pub fn dataset_or(
        &self,
        given: Option<crate::data::DatasetKind>,
        path: &Path,
    ) -> Result<Option<crate::data::DatasetKind>> {
        match (given, self.metadata.get(keys::DATASET)) {
            (Some(kind), _) => Ok(Some(kind)),
            (None, Some(name)) if self.dataset().is_none() => Err(usage(format!(
                "{}: trained on dataset `{name}`, which this snl does not know; give --dataset",
                path.display()
            ))),
            (None, _) => Ok(self.dataset()),
        }
    }

    /// The metadata's threshold (checked by [`load`]; else the authors' 1e-2).
    pub fn threshold(&self) -> f64 {
        self.metadata.get(keys::THRESHOLD).and_then(|t| t.parse().ok()).unwrap_or(DEFAULT_THRESHOLD)
    }

    /// Mask tensors holding values other than 0 and 1 (a model saved mid-search), each as
    /// `name (n of total)`, sorted.
    pub fn soft_masks(&self) -> Result<Vec<String>> {
        let mut soft = Vec::new();
        for (name, t) in self.tensors.iter().filter(|(name, _)| name.ends_with(".alphas")) {
            let values = t.to_dtype(candle::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            let n = values.iter().filter(|&&v| v != 0.0 && v != 1.0).count();
            if n > 0 {
                soft.push(format!("{name} ({n} of {})", values.len()));
            }
        }
        soft.sort();
        Ok(soft)
    }

    /// What to know before trusting figures computed from the model at `path`: masks that are
    /// not binary (the commands differ on them) and a file from a newer snl.
    pub fn cautions(&self, path: &Path) -> Result<Vec<String>> {
        let mut cautions = Vec::new();
        let soft = self.soft_masks()?;
        if !soft.is_empty() {
            cautions.push(format!(
                "{}: masks with values other than 0 and 1 (a model mid-search?): {}; eval and predict \
                 use them as they are, count and export binarize them at the threshold",
                path.display(),
                crate::run::list_some(&soft)
            ));
        }
        if let Some(written) = self.metadata.get(keys::VERSION)
            && newer_than_this(written)
        {
            cautions.push(format!(
                "{}: written by snl {written}, newer than this snl {}; it may record what this version \
                 does not know",
                path.display(),
                env!("CARGO_PKG_VERSION")
            ));
        }
        Ok(cautions)
    }

    /// A trainable copy: a fresh VarMap loaded strictly from the checkpoint.
    pub fn trainable(&self, device: &Device) -> Result<(Model, VarMap)> {
        let (model, vars) = self.config.build_trainable(device)?;
        checkpoint::load_into(&vars, &self.tensors)?;
        Ok((model, vars))
    }

    /// A frozen model (records no graph).
    pub fn frozen(&self, device: &Device) -> Result<Model> {
        Ok(self.config.build_from_tensors(self.tensors.clone(), device)?)
    }
}

/// Reads a model checkpoint: an snl checkpoint describes itself; any other (PyTorch's own
/// safetensors or .pth) needs the model flags. Names and shapes are checked strictly.
pub fn load(path: &Path, args: &ModelArgs, device: &Device) -> Result<Loaded> {
    if !path.exists() {
        bail!("{}: no such file", path.display());
    }
    let read = checkpoint::read(path, device)
        .with_context(|| format!("cannot read the model {}", path.display()))?;
    let mut integers: Vec<String> = read
        .tensors
        .iter()
        .filter(|(name, t)| !t.dtype().is_float() && !name.ends_with("num_batches_tracked"))
        .map(|(name, t)| format!("{name} ({:?})", t.dtype()))
        .collect();
    if !integers.is_empty() {
        integers.sort();
        bail!(
            "{}: integer tensors where weights must be floats: {}; not a model checkpoint?",
            path.display(),
            crate::run::list_some(&integers)
        );
    }
    let config = if read.metadata.contains_key(snl_models::metadata_keys::ARCH) {
        if args.any_given() {
            return Err(usage(format!(
                "{} describes its own model ({}); drop the model flags",
                path.display(),
                read.metadata[snl_models::metadata_keys::ARCH]
            )));
        }
        ModelConfig::from_metadata(&read.metadata)
            .with_context(|| format!("{}: bad snl metadata", path.display()))?
    } else if args.arch.is_some() {
        args.config(None, None)?
    } else {
        return Err(usage(format!(
            "{} has no snl metadata: describe its model with --arch and the model options",
            path.display()
        )));
    };
    // Building the model to compare shapes allocates it: a small file whose metadata claims a
    // huge model (an image size of 3000, say) is refused before that.
    let stored: u128 = read.tensors.values().map(|t| t.elem_count() as u128).sum();
    let claimed = config.min_values();
    if claimed > stored.saturating_mul(4).max(1 << 24) {
        bail!(
            "{} does not fit {}: that model holds at least {claimed} values, the file only {stored}",
            path.display(),
            config.arch_name()
        );
    }
    let mismatch = checkpoint::compare(&config.tensor_shapes()?, &read.tensors);
    if !mismatch.is_empty() {
        // Masks of the other granularity misfit every site: say which flag fits them.
        let mask_is = |shape: &[usize]| match shape {
            [1, _, 1, 1] => Some("channel"),
            [1, _, _, _] => Some("pixel"),
            _ => None,
        };
        let other = mismatch
            .shapes
            .iter()
            .filter(|m| m.name.ends_with(".alphas"))
            .find_map(|m| mask_is(&m.found).filter(|&found| Some(found) != mask_is(&m.expected)));
        let hint =
            other.map_or(String::new(), |g| format!(" (its masks are per {g}: give --granularity {g})"));
        bail!("{} does not fit {}: {mismatch}{hint}", path.display(), config.arch_name());
    }
    // A bad threshold in the file is the file's fault, not a --threshold the user never gave.
    if let Some(t) = read.metadata.get(keys::THRESHOLD)
        && !t.parse::<f64>().is_ok_and(|v| (0.0..1.0).contains(&v))
    {
        bail!("{}: metadata threshold `{t}`: must be a number in [0, 1)", path.display());
    }
    // A NaN mask value makes every output NaN and every count 0 without a word.
    for (name, t) in read.tensors.iter().filter(|(name, _)| name.ends_with(".alphas")) {
        let bad = checkpoint::count_non_finite(t)?;
        if bad > 0 {
            bail!("{}: {name} has {bad} values that are not finite (NaN or infinite)", path.display());
        }
    }
    Ok(Loaded { config, tensors: read.tensors, metadata: read.metadata })
}

/// Whether `version` (`major.minor.patch`) is above this build's; one that does not parse is
/// not one this build wrote.
fn newer_than_this(version: &str) -> bool {
    let parse = |v: &str| -> Option<Vec<u64>> { v.split('.').map(|p| p.parse().ok()).collect() };
    match (parse(version), parse(env!("CARGO_PKG_VERSION"))) {
        (Some(written), Some(this)) => written > this,
        _ => true,
    }
}

/// The metadata of an snl checkpoint: the model's configuration and provenance.
pub fn metadata(config: &ModelConfig, extra: &[(&str, String)]) -> HashMap<String, String> {
    let mut m = config.to_metadata();
    m.insert(keys::FORMAT.into(), keys::FORMAT_SNL.into());
    m.insert(keys::VERSION.into(), env!("CARGO_PKG_VERSION").into());
    for (k, v) in extra {
        m.insert((*k).into(), v.clone());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::newer_than_this;

    #[test]
    fn only_a_later_or_unreadable_version_is_newer() {
        let this = env!("CARGO_PKG_VERSION");
        let [major, minor, patch]: [u64; 3] =
            this.split('.').map(|p| p.parse().unwrap()).collect::<Vec<_>>().try_into().unwrap();
        assert!(!newer_than_this(this));
        assert!(!newer_than_this("0.0.0"));
        assert!(newer_than_this(&format!("{major}.{minor}.{}", patch + 1)));
        assert!(newer_than_this(&format!("{major}.{}.0", minor + 1)));
        assert!(newer_than_this(&format!("{}.0.0", major + 1)));
        assert!(newer_than_this("next"));
    }
}
