//! A run folder: `config.json`, `metrics.jsonl`, `checkpoint.safetensors` (resume state),
//! `best.safetensors`, `model.safetensors`, `result.json`, and `.snl.lock`. Every file is
//! written atomically (temporary file, then rename), so a crash never leaves half a file.
//! One process at a time works in a run folder (`RunDir` holds an exclusive lock).

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::runfile::{header_metadata, read_text};
use anyhow::{Context, Result, anyhow, bail};
use candle::Device;
use candle_nn::VarMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use snl_core::optim::OptimizerState;
use snl_models::checkpoint::{self, StateDict, write_atomic};

pub const CONFIG: &str = "config.json";
pub const METRICS: &str = "metrics.jsonl";
pub const CHECKPOINT: &str = "checkpoint.safetensors";
pub const BEST: &str = "best.safetensors";
pub const MODEL: &str = "model.safetensors";
pub const RESULT: &str = "result.json";
/// Held locked (`flock`) by the process working in the folder; holds its pid. Removed
/// when that process is done (left behind only by a killed one, then harmless).
pub const LOCK: &str = ".snl.lock";

/// Metadata key of the resume state (JSON) inside `checkpoint.safetensors`.
const STATE_KEY: &str = "snl_state";
/// Prefix of optimizer tensors inside `checkpoint.safetensors`.
const OPTIMIZER_PREFIX: &str = "optimizer.";
/// Metadata key of the run's configuration (the JSON of `config.json`) in the checkpoint:
/// a resume whose `config.json` differs from it is refused, naming the changed keys.
const CONFIG_KEY: &str = "snl_config";
/// Metadata key of the number of `metrics.jsonl` lines the checkpoint's epochs wrote (in
/// `best.safetensors`: the lines when it was saved).
const METRICS_KEY: &str = "snl_metrics_lines";
/// Metadata key, in the checkpoint, of `best.safetensors`'s checksum when the checkpoint was
/// made: a resume refuses a best model deleted or replaced since, whose figures would not
/// be the run's. (`best.safetensors` also records the run's configuration and its line.)
const BEST_KEY: &str = "snl_best_crc32";
/// `snl_core::fast::numerics()` of the process that saved the checkpoint.
const NUMERICS_KEY: &str = "snl_numerics";
/// What a resume state says `metrics.jsonl` holds: each phase (`"train"`, `"search"`, ...)
/// and its number of epochs, in the order they ran.
pub type Logged = Vec<(&'static str, usize)>;
/// At most this many names in an error listing names (then a count of the rest).
pub const MAX_LISTED: usize = 5;

/// `names` joined with ", ", at most [`MAX_LISTED`] of them, then "and N more".
pub fn list_some(names: &[String]) -> String {
    let mut text = names.iter().take(MAX_LISTED).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > MAX_LISTED {
        text.push_str(&format!(" and {} more", names.len() - MAX_LISTED));
    }
    text
}

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
    // A lock left by a run that stopped before writing anything else does not count.
    Ok(entries.all(|e| e.is_ok_and(|e| e.file_name() == LOCK)))
}

/// An exclusive advisory lock on a run folder, released when the process ends (even killed):
/// `.snl.lock`, holding the owner's pid, removed when the run is done with the folder.
#[derive(Debug)]
struct Lock {
    /// Open for as long as the lock is held: closing it releases the lock.
    _file: File,
    path: PathBuf,
}

impl Lock {
    /// Takes the lock of `root` or says which process holds it.
    fn take(root: &Path) -> Result<Self> {
        match Self::try_take(root)? {
            Ok(lock) => Ok(lock),
            Err(pid) => {
                bail!("{} is in use by another snl process (pid {pid}); wait for it to end", root.display())
            }
        }
    }

    /// The pid of the process holding the lock of the existing folder `root`, if any (the
    /// lock is taken and released at once when free).
    fn holder(root: &Path) -> Result<Option<String>> {
        Ok(Self::try_take(root)?.err())
    }

    /// The lock, or the pid (as its lock file says) of the process that holds it.
    fn try_take(root: &Path) -> Result<std::result::Result<Self, String>> {
        use std::os::unix::fs::MetadataExt;
        let path = root.join(LOCK);
        loop {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            if !try_flock(&file).with_context(|| format!("cannot lock {}", path.display()))? {
                let mut pid = String::new();
                file.read_to_string(&mut pid).ok();
                let pid = if pid.trim().is_empty() { "unknown" } else { pid.trim() };
                return Ok(Err(pid.to_string()));
            }
            // The owner before us may have removed the file after we opened it: then this lock
            // is on a file nobody else will open, and we try again.
            let same =
                std::fs::metadata(&path).is_ok_and(|m| m.ino() == file.metadata().map_or(0, |f| f.ino()));
            if !same {
                continue;
            }
            file.set_len(0)?;
            file.rewind()?;
            // A line, so `cat` of several lock files gives one pid per line.
            writeln!(file, "{}", std::process::id())?;
            return Ok(Ok(Self { _file: file, path }));
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still locked, so a process waiting on this file retries on a new one.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: `Ok(false)` when another open file holds it.
fn try_flock(file: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor we own and keep open; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) { Ok(false) } else { Err(err) }
}

#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
    /// Held for the life of the run (every clone shares it).
    _lock: Arc<Lock>,
    /// Opened with `--resume` (not created).
    resumed: bool,
    /// `config.json` as first read: what each checkpoint records.
    config: Arc<Mutex<Option<Value>>>,
    /// The `config.json` keys a resume may change (`open`'s `may_change`).
    may_change: Arc<[String]>,
}

impl RunDir {
    /// A new run in `root`; refuses a folder that holds a run already, finished or not, and
    /// any other non-empty folder (its checkpoints, a teacher among them, would be overwritten).
    pub fn create(root: &Path) -> Result<Self> {
        if root.join(RESULT).exists() {
            bail!("{} holds a finished run; choose another --out (nothing was overwritten)", root.display());
        }
        if root.join(CHECKPOINT).exists() || root.join(CONFIG).exists() {
            // A run another process is working on cannot be resumed now: say so, not --resume.
            if let Some(pid) = Lock::holder(root)? {
                bail!(
                    "{} holds a run that another snl process (pid {pid}) is working on; wait for it to end, or choose another --out",
                    root.display()
                );
            }
            if !root.join(CHECKPOINT).exists() && !root.join(METRICS).exists() && !is_snl_config(root) {
                bail!(
                    "{} holds a {CONFIG} that is not an snl run's; choose another --out (nothing was overwritten)",
                    root.display()
                );
            }
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
        let lock = Lock::take(root)?;
        // Another process may have started a run here between the checks and the lock.
        if !is_free(root)? {
            bail!("{} was taken by another run meanwhile; choose another --out", root.display());
        }
        Ok(Self {
            root: root.to_path_buf(),
            _lock: Arc::new(lock),
            resumed: false,
            config: Arc::new(Mutex::new(None)),
            may_change: Arc::new([]),
        })
    }

    /// An unfinished run to resume. `may_change` names the `config.json` keys (dotted paths)
    /// that a resume may change (and write before its next checkpoint): they are not checked
    /// against the checkpoint.
    pub fn open(root: &Path, may_change: &[&str]) -> Result<Self> {
        if !root.join(CONFIG).exists() {
            bail!("{}: not a run folder (no {CONFIG})", root.display());
        }
        let lock = Lock::take(root)?;
        if root.join(RESULT).exists() {
            bail!("{} is finished already (it has {RESULT}); nothing to resume", root.display());
        }
        let run = Self {
            root: root.to_path_buf(),
            _lock: Arc::new(lock),
            resumed: true,
            config: Arc::new(Mutex::new(None)),
            may_change: may_change.iter().map(|k| k.to_string()).collect(),
        };
        run.check_config()?;
        Ok(run)
    }

    /// Refuses a `config.json` that differs from the one the checkpoint (if any) was made
    /// with, naming the changed keys (but those in `may_change`). Reads only the checkpoint's
    /// header: a resume with an edited configuration fails before any data is read.
    fn check_config(&self) -> Result<()> {
        let Some(saved) = self.checkpoint_metadata(CONFIG_KEY)? else { return Ok(()) };
        let changed = self.changed_since(&saved)?;
        if !changed.is_empty() {
            bail!(
                "{} was edited since the run's checkpoint (changed: {}); a run continues with the \
                 configuration it started with: put the values back, or start a new run with the new ones",
                self.path(CONFIG).display(),
                list_some(&changed)
            );
        }
        Ok(())
    }

    /// The resume state of the checkpoint, if there is one, read from its header alone.
    pub fn saved_state<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        let path = self.path(CHECKPOINT);
        self.checkpoint_metadata(STATE_KEY)?
            .map(|state| {
                serde_json::from_value(state).with_context(|| format!("{}: bad resume state", path.display()))
            })
            .transpose()
    }

    /// The keys of `config.json` that differ from `earlier`, but those a resume may change.
    fn changed_since(&self, earlier: &Value) -> Result<Vec<String>> {
        let mut changed = changed_keys(earlier, &self.config()?);
        changed.retain(|key| !self.may_change.contains(key));
        Ok(changed)
    }

    /// The JSON value stored under `key` in the checkpoint's header; None without a checkpoint.
    fn checkpoint_metadata(&self, key: &str) -> Result<Option<Value>> {
        let path = self.path(CHECKPOINT);
        let Some(metadata) = header_metadata(&path)? else { return Ok(None) };
        let text = metadata
            .get(key)
            .and_then(Value::as_str)
            .with_context(|| format!("{}: no resume state ({key})", path.display()))?;
        let value = serde_json::from_str(text)
            .with_context(|| format!("{}: bad resume state ({key})", path.display()))?;
        Ok(Some(value))
    }

    /// Refuses a `best.safetensors` that is not the one the checkpoint (`metadata`, of
    /// `lines` metrics lines) recorded, or is gone: but a newer best of this run, saved in
    /// the epoch after the checkpoint by a process killed before its next one, is fine
    /// (that epoch runs again and saves it again).
    fn check_best(&self, metadata: &HashMap<String, String>, lines: usize) -> Result<()> {
        let Some(recorded) = metadata.get(BEST_KEY) else { return Ok(()) };
        let path = self.path(BEST);
        let Some(best) = header_metadata(&path)? else {
            bail!(
                "{}: missing, but the run's checkpoint records it (deleted?); the run cannot finish \
                 without its best model: put it back, or start a new run (nothing was changed)",
                path.display()
            );
        };
        let text = |key: &str| best.get(key).and_then(Value::as_str);
        if text(checkpoint::CHECKSUM_KEY) == Some(recorded.as_str()) {
            return Ok(());
        }
        let config = text(CONFIG_KEY).and_then(|c| serde_json::from_str::<Value>(c).ok());
        let newer = text(METRICS_KEY).and_then(|l| l.parse::<usize>().ok()).is_some_and(|l| l >= lines);
        if newer
            && let Some(config) = config
            && self.changed_since(&config)?.is_empty()
        {
            return Ok(());
        }
        bail!(
            "{}: not the best model the run's checkpoint recorded (replaced or edited?); the run's \
             figures would be another model's: put it back, or start a new run (nothing was changed)",
            path.display()
        )
    }

    /// The run's `config.json` as `command`'s configuration; a run of the other command
    /// (train or linearize, told apart by its keys) is named, with the command that resumes it.
    pub fn read_config<T: DeserializeOwned>(&self, command: &str) -> Result<T> {
        let value = self.config()?;
        let made_by = if value.get("teacher").is_some() {
            Some("linearize")
        } else if value.get("epochs").is_some() && value.get("sgd").is_some() {
            Some("train")
        } else {
            None
        };
        if let Some(other) = made_by.filter(|&other| other != command) {
            bail!(
                "{} is a `snl {other}` run, not a `snl {command}` one; continue it with `snl {other} --resume {}`",
                self.root.display(),
                self.root.display()
            );
        }
        let path = self.path(CONFIG);
        serde_json::from_value(value).with_context(|| format!("{}: not a valid snl file", path.display()))
    }

    /// Whether this run was opened to resume.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// `config.json` as read the first time (the configuration the run works with).
    fn config(&self) -> Result<Value> {
        let mut cached = self.config.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if cached.is_none() {
            *cached = Some(self.read_json::<Value>(CONFIG)?);
        }
        Ok(cached.clone().unwrap_or_default())
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes `name`; a new `config.json` (a resume's raised search cap) is also what the
    /// next checkpoints record.
    pub fn write_json(&self, name: &str, value: &impl Serialize) -> Result<()> {
        let mut text = serde_json::to_string_pretty(value)?;
        text.push('\n');
        write_atomic(&self.path(name), text.as_bytes())?;
        if name == CONFIG {
            *self.config.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                Some(serde_json::from_str(&text)?);
        }
        Ok(())
    }

    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let path = self.path(name);
        let text =
            read_text(&path)?.with_context(|| format!("cannot read {}: no such file", path.display()))?;
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

    /// The first lines of `metrics.jsonl`, those `expected` describes, each checked to be the
    /// record of its phase and epoch (epochs count from 0 in each phase). A line cut off, lost
    /// or out of place is an error naming it; the file is not changed here.
    fn checked_metrics(&self, expected: &Logged) -> Result<String> {
        let path = self.path(METRICS);
        let total =
            total_epochs(expected).with_context(|| format!("{}: epoch counts overflow", path.display()))?;
        let text = self.metrics_text()?;
        let mut lines = text.lines();
        let mut kept = String::new();
        let mut number = 0;
        for &(phase, epochs) in expected {
            for epoch in 0..epochs {
                number += 1;
                let bad = |problem: String| {
                    anyhow!(
                        "{}, line {number}: {problem}; the run's checkpoint needs the records of its {total} \
                         finished epochs there (nothing was changed)",
                        path.display()
                    )
                };
                let line = lines
                    .next()
                    .ok_or_else(|| bad(format!("missing (the file has {} lines)", number - 1)))?;
                let record: Value = serde_json::from_str(line)
                    .map_err(|e| bad(format!("not a JSON record (cut off or edited?): {e}")))?;
                if record["phase"].as_str() != Some(phase) || record["epoch"].as_u64() != Some(epoch as u64) {
                    return Err(bad(format!(
                        "expected phase \"{phase}\" epoch {epoch}, found phase {} epoch {}",
                        record["phase"], record["epoch"]
                    )));
                }
                kept.push_str(line);
                kept.push('\n');
            }
        }
        Ok(kept)
    }

    /// Replaces `metrics.jsonl` by `kept` (its first lines) unless it holds just that: the
    /// lines of the epochs a resumed run keeps (a run killed after logging an epoch but before
    /// its checkpoint logs it again).
    fn keep_metrics(&self, kept: &str) -> Result<()> {
        if self.metrics_text()? == kept {
            return Ok(());
        }
        Ok(write_atomic(&self.path(METRICS), kept.as_bytes())?)
    }

    fn metrics_text(&self) -> Result<String> {
        Ok(read_text(&self.path(METRICS))?.unwrap_or_default())
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
        metadata.insert(CONFIG_KEY.into(), serde_json::to_string(&self.config()?)?);
        metadata.insert(METRICS_KEY.into(), self.metrics_text()?.lines().count().to_string());
        metadata.insert(NUMERICS_KEY.into(), snl_core::fast::numerics());
        let best = header_metadata(&self.path(BEST))?;
        if let Some(crc) = best.as_ref().and_then(|m| m.get(checkpoint::CHECKSUM_KEY)).and_then(Value::as_str)
        {
            metadata.insert(BEST_KEY.into(), crc.to_string());
        }
        checkpoint::save(&tensors, &metadata, self.path(CHECKPOINT))?;
        Ok(())
    }

    /// A warning when the checkpoint was saved under other numerics (threads, instruction
    /// set: `snl_core::fast::numerics`) than this process runs: the run continues, but its
    /// sums round differently from an uninterrupted run's. None when they agree or the
    /// checkpoint (an older build's) does not say.
    pub fn numerics_changed(&self) -> Result<Option<String>> {
        let path = self.path(CHECKPOINT);
        let Some(meta) = header_metadata(&path)? else { return Ok(None) };
        let now = snl_core::fast::numerics();
        Ok(meta.get(NUMERICS_KEY).and_then(Value::as_str).filter(|&saved| saved != now).map(|saved| {
            format!(
                "{} was saved with {saved}, this process runs {now}: the run continues, but not \
                 bit-identically to an uninterrupted run (give --threads to match; another CPU kind \
                 cannot be matched)",
                path.display()
            )
        }))
    }

    /// Reads the resume state back: model tensors, optimizer state, and `state`, if any.
    /// `logged` gives the epochs `state` says were logged, or refuses a state that cannot be
    /// the run's. Before anything changes, the state must agree with the checkpoint's line
    /// count, `metrics.jsonl` must hold those records ([`Self::checked_metrics`]) and every
    /// tensor must be finite; then the file is cut back to them (to nothing when there is no
    /// checkpoint yet). `open` has checked `config.json` against the checkpoint.
    pub fn load_checkpoint<T: DeserializeOwned>(
        &self,
        device: &Device,
        logged: impl FnOnce(&T) -> Result<Logged>,
    ) -> Result<Option<(StateDict, OptimizerState, T)>> {
        let path = self.path(CHECKPOINT);
        if !path.exists() {
            // Killed before its first checkpoint, a run has logged at most its first epoch;
            // more lines mean the checkpoint was lost, and starting over would erase them.
            let lines = self.metrics_text()?.lines().count();
            if lines > 1 {
                bail!(
                    "{}: missing, but {} records {lines} finished epochs (deleted?); the run cannot \
                     continue: start a new run, or move {METRICS} away to start this one over \
                     (nothing was changed)",
                    path.display(),
                    self.path(METRICS).display()
                );
            }
            self.keep_metrics("")?;
            return Ok(None);
        }
        let read =
            checkpoint::read(&path, device).with_context(|| format!("cannot read {}", path.display()))?;
        let meta = |key: &str| {
            read.metadata.get(key).with_context(|| format!("{}: no resume state ({key})", path.display()))
        };
        let lines: usize = meta(METRICS_KEY)?
            .parse()
            .with_context(|| format!("{}: bad resume state ({METRICS_KEY})", path.display()))?;
        let state = meta(STATE_KEY)?;
        let state: T =
            serde_json::from_str(state).with_context(|| format!("{}: bad resume state", path.display()))?;
        let expected = logged(&state).with_context(|| format!("{}: bad resume state", path.display()))?;
        let epochs = total_epochs(&expected).with_context(|| {
            format!("{}: bad resume state: epoch counts overflow (edited?)", path.display())
        })?;
        if epochs != lines {
            bail!(
                "{}: bad resume state: {epochs} epochs done, but {lines} metrics lines recorded (edited?); \
                 start a new run",
                path.display()
            );
        }
        let kept = self.checked_metrics(&expected)?;
        self.check_best(&read.metadata, lines)?;
        // A NaN weight would make the next loss NaN; a NaN optimizer buffer, every weight.
        for (name, t) in &read.tensors {
            let bad = checkpoint::count_non_finite(t)?;
            if bad > 0 {
                bail!(
                    "{}: {name} has {bad} values that are not finite (NaN or infinite); the run cannot \
                     continue from it: start a new run (nothing was changed)",
                    path.display()
                );
            }
        }
        self.keep_metrics(&kept)?;
        let (mut model, mut optimizer) = (StateDict::new(), OptimizerState::new());
        for (k, v) in read.tensors {
            match k.strip_prefix(OPTIMIZER_PREFIX) {
                Some(slot) => optimizer.insert(slot.to_string(), v),
                None => model.insert(k, v),
            };
        }
        Ok(Some((model, optimizer, state)))
    }

    /// Saves a model checkpoint (PyTorch names, snl metadata) under `name`; the best model
    /// also records the run's configuration and metrics line ([`Self::check_best`]).
    pub fn save_model(&self, name: &str, vars: &VarMap, metadata: &HashMap<String, String>) -> Result<()> {
        let mut metadata = metadata.clone();
        if name == BEST {
            metadata.insert(CONFIG_KEY.into(), serde_json::to_string(&self.config()?)?);
            metadata.insert(METRICS_KEY.into(), self.metrics_text()?.lines().count().to_string());
        }
        checkpoint::save_varmap(vars, &metadata, self.path(name))?;
        Ok(())
    }
}

/// The epochs of all phases of `logged`; None when the sum overflows (an edited state).
pub fn total_epochs(logged: &Logged) -> Option<usize> {
    logged.iter().try_fold(0usize, |n, (_, epochs)| n.checked_add(*epochs))
}

/// Whether `root`'s `config.json` is one snl wrote (a JSON object with a `seed` and a `data`).
fn is_snl_config(root: &Path) -> bool {
    let text = read_text(&root.join(CONFIG)).ok().flatten().unwrap_or_default();
    serde_json::from_str::<Value>(&text).is_ok_and(|v| {
        v.get("seed").is_some_and(Value::is_u64) && v.get("data").is_some_and(Value::is_object)
    })
}

/// The dotted paths of the values that differ between `a` and `b` (leaves, sorted).
pub fn changed_keys(a: &Value, b: &Value) -> Vec<String> {
    fn walk(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let sub = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    walk(x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null), &sub, out);
                }
            }
            _ if a != b => out.push(if path.is_empty() { "(the whole file)".into() } else { path.into() }),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(a, b, "", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::{LOCK, RunDir, changed_keys, list_some};
    use serde_json::json;

    #[test]
    fn a_locked_run_folder_is_refused_naming_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("run");
        let run = RunDir::create(&root).unwrap();
        run.write_json(super::CONFIG, &json!({"seed": 0, "data": {}})).unwrap();
        // flock locks belong to an open file: a second open, even in this process, is refused.
        let err = RunDir::open(&root, &[]).unwrap_err().to_string();
        let pid = std::process::id();
        assert_eq!(
            err,
            format!("{} is in use by another snl process (pid {pid}); wait for it to end", root.display())
        );
        // A new run there is told who works on it, not to resume it.
        let err = RunDir::create(&root).unwrap_err().to_string();
        assert!(err.contains(&format!("another snl process (pid {pid}) is working on")), "{err}");
        assert!(!err.contains("--resume"), "{err}");
        assert!(root.join(LOCK).exists());
        drop(run);
        assert!(!root.join(LOCK).exists(), "the lock file outlived its run");
        // Once free, the unfinished run is named, and asking left no lock behind.
        let err = RunDir::create(&root).unwrap_err().to_string();
        assert!(err.contains("unfinished run") && err.contains("--resume"), "{err}");
        assert!(!root.join(LOCK).exists(), "a refused create left a lock file");
        let reopened = RunDir::open(&root, &[]).unwrap();
        assert!(reopened.resumed());
    }

    #[test]
    fn changed_keys_name_every_differing_leaf() {
        let a = json!({"epochs": 4, "sgd": {"lr": 0.1, "momentum": 0.9}, "seed": 0, "data": {"x": null}});
        let b = json!({"epochs": 5, "sgd": {"lr": 0.2, "momentum": 0.9}, "seed": 0, "extra": 1, "data": {}});
        assert_eq!(changed_keys(&a, &b), ["epochs", "extra", "sgd.lr"]);
        assert!(changed_keys(&a, &a).is_empty());
        assert_eq!(changed_keys(&json!(1), &json!([1])), ["(the whole file)"]);
    }

    #[test]
    fn long_lists_are_cut_to_a_few_names_and_a_count() {
        let names: Vec<String> = (0..40).map(|i| format!("layer{i}.weight")).collect();
        let text = list_some(&names);
        assert!(text.starts_with("layer0.weight, layer1.weight") && text.ends_with(" and 35 more"), "{text}");
        assert_eq!(list_some(&names[..2]), "layer0.weight, layer1.weight");
    }
}
