//! A run folder: `config.json`, `metrics.jsonl`, `checkpoint.safetensors` (resume state),
//! `best.safetensors`, `model.safetensors`, `result.json`. Every file is written atomically
//! (temporary file, then rename), so a crash never leaves half a file.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle::Device;
use candle_nn::VarMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use snl_core::optim::OptimizerState;
use snl_models::checkpoint::{self, StateDict, write_atomic};

pub const CONFIG: &str = "config.json";
pub const METRICS: &str = "metrics.jsonl";
pub const CHECKPOINT: &str = "checkpoint.safetensors";
pub const BEST: &str = "best.safetensors";
pub const MODEL: &str = "model.safetensors";
pub const RESULT: &str = "result.json";

/// Metadata key of the resume state (JSON) inside `checkpoint.safetensors`.
const STATE_KEY: &str = "snl_state";
/// Prefix of optimizer tensors inside `checkpoint.safetensors`.
const OPTIMIZER_PREFIX: &str = "optimizer.";

/// A run stopped on purpose by the hidden `--stop-after-epochs` (exit code 3).
#[derive(Debug)]
pub struct Stopped {
    pub epochs: usize,
    pub dir: PathBuf,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stopped after {} epochs as asked; resume with --resume {}",
            self.epochs,
            self.dir.display()
        )
    }
}

impl std::error::Error for Stopped {}

/// Whether `path` is missing or an empty folder: where a new run or export may write.
pub fn is_free(path: &Path) -> Result<bool> {
    if !path.exists() {
        return Ok(true);
    }
    if !path.is_dir() {
        return Ok(false);
    }
    let mut entries =
        std::fs::read_dir(path).with_context(|| format!("cannot read the folder {}", path.display()))?;
    Ok(entries.next().is_none())
}

#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// A new run in `root`; refuses a folder that holds a run already, finished or not, and
    /// any other non-empty folder (its checkpoints, a teacher among them, would be overwritten).
    pub fn create(root: &Path) -> Result<Self> {
        if root.join(RESULT).exists() {
            bail!("{} holds a finished run; choose another --out (nothing was overwritten)", root.display());
        }
        if root.join(CHECKPOINT).exists() || root.join(CONFIG).exists() {
            bail!(
                "{} holds an unfinished run; continue it with --resume {} or choose another --out",
                root.display(),
                root.display()
            );
        }
        if !is_free(root)? {
            bail!(
                "{} exists and is not an empty folder; choose a new or empty --out, or continue an unfinished run with --resume (nothing was overwritten)",
                root.display()
            );
        }
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create the run folder {}", root.display()))?;
        Ok(Self { root: root.to_path_buf() })
    }

    /// An unfinished run to resume.
    pub fn open(root: &Path) -> Result<Self> {
        if !root.join(CONFIG).exists() {
            bail!("{}: not a run folder (no {CONFIG})", root.display());
        }
        if root.join(RESULT).exists() {
            bail!("{} is finished already (it has {RESULT}); nothing to resume", root.display());
        }
        Ok(Self { root: root.to_path_buf() })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn write_json(&self, name: &str, value: &impl Serialize) -> Result<()> {
        let mut text = serde_json::to_string_pretty(value)?;
        text.push('\n');
        Ok(write_atomic(&self.path(name), text.as_bytes())?)
    }

    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let path = self.path(name);
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a valid snl file", path.display()))
    }

    /// Appends one line to `metrics.jsonl`.
    pub fn append_metrics(&self, record: &impl Serialize) -> Result<()> {
        let path = self.path(METRICS);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        writeln!(file, "{}", serde_json::to_string(record)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Keeps the first `lines` records of `metrics.jsonl`: those of the epochs a resumed run
    /// keeps (a run killed after logging an epoch but before its checkpoint logs it again).
    pub fn truncate_metrics(&self, lines: usize) -> Result<()> {
        let path = self.path(METRICS);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let kept: String = text.lines().take(lines).map(|l| format!("{l}\n")).collect();
        Ok(write_atomic(&path, kept.as_bytes())?)
    }

    /// Saves the resume state: model tensors, optimizer tensors and `state` (JSON).
    pub fn save_checkpoint(
        &self,
        vars: &VarMap,
        optimizer: &OptimizerState,
        metadata: &HashMap<String, String>,
        state: &impl Serialize,
    ) -> Result<()> {
        let mut tensors = checkpoint::detached_copy(vars)?;
        for (k, v) in optimizer {
            tensors.insert(format!("{OPTIMIZER_PREFIX}{k}"), v.clone());
        }
        let mut metadata = metadata.clone();
        metadata.insert(STATE_KEY.into(), serde_json::to_string(state)?);
        checkpoint::save(&tensors, &metadata, self.path(CHECKPOINT))?;
        Ok(())
    }

    /// Reads the resume state back: model tensors, optimizer state, and `state`, if any.
    pub fn load_checkpoint<T: DeserializeOwned>(
        &self,
        device: &Device,
    ) -> Result<Option<(StateDict, OptimizerState, T)>> {
        let path = self.path(CHECKPOINT);
        if !path.exists() {
            return Ok(None);
        }
        let read =
            checkpoint::read(&path, device).with_context(|| format!("cannot read {}", path.display()))?;
        let state =
            read.metadata.get(STATE_KEY).with_context(|| format!("{}: no resume state", path.display()))?;
        let state =
            serde_json::from_str(state).with_context(|| format!("{}: bad resume state", path.display()))?;
        let (mut model, mut optimizer) = (StateDict::new(), OptimizerState::new());
        for (k, v) in read.tensors {
            match k.strip_prefix(OPTIMIZER_PREFIX) {
                Some(slot) => optimizer.insert(slot.to_string(), v),
                None => model.insert(k, v),
            };
        }
        Ok(Some((model, optimizer, state)))
    }

    /// Saves a model checkpoint (PyTorch names, snl metadata) under `name`.
    pub fn save_model(&self, name: &str, vars: &VarMap, metadata: &HashMap<String, String>) -> Result<()> {
        checkpoint::save_varmap(vars, metadata, self.path(name))?;
        Ok(())
    }
}
