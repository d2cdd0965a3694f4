//! `cargo xtask pareto`: plan a budget sweep, run it through the `snl` binary (resuming what
//! a killed sweep left, refusing other settings than `OUT/sweep.json` records), collect the
//! runs' `result.json` into `pareto.csv` / `pareto.json`, and draw `pareto.svg`. Also
//! `cargo xtask sites`: the per-site bar chart of one run.
//!
//! Everything that decides (budget parsing, presets, the plan, the record's check, the
//! Pareto front, CSV and JSON) is a pure function tested below; only `main`, `collect`,
//! `read_record`, `write_record` and the runners touch the disk or start processes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::{plot, target_dir, workspace_root};

pub const USAGE: &str = "cargo xtask pareto [options]

Sweep ReLU budgets with `snl linearize` from one pretrained baseline, one run folder per
(selection, budget), then write OUT/pareto.csv, OUT/pareto.json, OUT/pareto.svg (and
pareto.png when rsvg-convert or ImageMagick is installed), and OUT/<run>/sites.svg (kept
ReLUs per site). Finished runs (result.json) are skipped, unfinished ones (config.json) are
resumed with `snl linearize --resume`: re-running the same command continues a sweep.
OUT/sweep.json records the settings of every run (all but --threads and --device): a
re-run that changes one (--seed, --lasso, --baseline, --width, ...) is refused, so is a
run folder the record does not know; choose another --out for a new sweep. More budgets
or selections may be added. Only the planned runs are collected. A failing run is reported
and the sweep goes on; the exit code is then 1.

Presets:
  smoke   synthetic data, ResNet18 width 4, 2 training epochs, budgets 30%,60%,
          1 finetuning epoch, a fast search: about a minute on 2 cores (CI)
  cpu     CIFAR-10 from ../shared/data/cifar10-jpeg (--dataset folder), ResNet18 width 8
          (61,440 ReLUs), 6 training epochs (cosine), budgets 1%,3%,10%,20%, a fast
          search (Adam lr 0.01, lambda 1e-2,4e-3,1e-3,3e-4 by budget, no warm-up),
          1 finetuning epoch: about 65 minutes
  paper   ResNet18 width 64 on CIFAR-10, the authors' schedule (160 epochs, lambda 1e-5,
          Adam 1e-3, 100 finetuning epochs), budgets 12.9k..180k, --device cuda; builds
          the binary with --features cuda (needs nvcc)

Options:
  --preset NAME            smoke | cpu | paper (default: smoke)
  --budgets LIST           e.g. 1%,2%,5%,10%,20% or 5k,12900 or 0.05 (default: the preset's)
  --selections LIST        any of snl,random,uniform (default: all three)
  --out DIR                sweep folder (default: runs/pareto-<preset>)
  --baseline MODEL         linearize this model; else train one in OUT/baseline
  --dry-run                print the plan (every command, skipped runs) and stop
  --debug                  build and use target/debug/snl (quick to compile) instead of release
  --snl PATH               use this snl binary; do not build
  --no-build               do not run cargo build (use the binary already in target/)
  --paper-points[=DATA]    add the paper's SNL points (REFERENCE section 3) for DATA
                           (cifar10, cifar100, tiny-imagenet; default: the preset's dataset)
  --no-sites               do not draw the per-site bar chart of each run
  --dataset NAME           override the preset's dataset (with --data-dir DIR)
  --data-dir DIR
  --width N                ResNet width of the baseline
  --device DEV             cpu, cuda, cuda:N
  --seed N                 global seed of every run (default 0)
  --threads N              CPU threads of every run
  --train-epochs N         baseline epochs
  --batch-size N           batch size of every run
  --lasso X | X1,X2,..     search lambda: one for every budget, or one per budget in order
                           (cpu has one per budget: its own budgets keep theirs, others
                           need --lasso)
  --finetune-epochs N, --max-search-epochs N, --warmup-epochs N, --search-lr X,
  --finetune-lr X          passed to every `snl linearize`
";

pub const SITES_USAGE: &str =
    "cargo xtask sites RUN [--model FILE] [--out FILE.svg] [--debug | --snl PATH] [--no-build]

Runs `snl count --model RUN/model.safetensors --json` and draws kept ReLUs per site as a bar
chart: RUN/sites.svg (and the JSON as RUN/sites.json).
";

/// Linearize flags a user may override from the xtask command line.
const LINEARIZE_KNOBS: &[&str] =
    &["finetune-epochs", "max-search-epochs", "warmup-epochs", "lasso", "search-lr", "finetune-lr"];

// ---------------------------------------------------------------------------------------
// Budgets and selections

/// A ReLU budget as `snl linearize --budget` takes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// ReLUs kept.
    Count(u64),
    /// Fraction of the network's ReLUs, in (0, 1).
    Fraction(f64),
}

impl Budget {
    /// `5000`, `5k`, `12.9k` (counts), `10%`, `0.1` (fractions).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let bad = || format!("bad budget `{text}`: expected a count (5000, 5k) or a fraction (10%, 0.1)");
        if let Some(p) = t.strip_suffix('%') {
            let pct: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(pct > 0.0 && pct < 100.0) {
                return Err(format!("bad budget `{text}`: a percentage must be above 0 and below 100"));
            }
            return Ok(Budget::Fraction(pct / 100.0));
        }
        if let Some(k) = t.strip_suffix(['k', 'K']) {
            let v: f64 = k.trim().parse().map_err(|_| bad())?;
            let count = (v * 1000.0).round();
            if !count.is_finite() || count < 1.0 || (v * 1000.0 - count).abs() > 1e-6 {
                return Err(bad());
            }
            return Ok(Budget::Count(count as u64));
        }
        if let Ok(n) = t.parse::<u64>() {
            return if n == 0 {
                Err(format!("bad budget `{text}`: must keep at least one ReLU"))
            } else {
                Ok(Budget::Count(n))
            };
        }
        let f: f64 = t.parse().map_err(|_| bad())?;
        if f > 0.0 && f < 1.0 { Ok(Budget::Fraction(f)) } else { Err(bad()) }
    }

    /// A comma-separated list; two spellings of one budget (`10%,0.1`) are refused.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, String> {
        let mut list: Vec<(&str, Self)> = Vec::new();
        for t in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let b = Self::parse(t)?;
            if let Some((first, _)) = list.iter().find(|(_, seen)| seen.label() == b.label()) {
                return Err(format!("--budgets: `{first}` and `{t}` are the same budget ({})", b.arg()));
            }
            list.push((t, b));
        }
        if list.is_empty() {
            return Err("--budgets: empty list".into());
        }
        Ok(list.into_iter().map(|(_, b)| b).collect())
    }

    /// The value given to `snl linearize --budget`.
    pub fn arg(&self) -> String {
        match self {
            Budget::Count(n) => n.to_string(),
            Budget::Fraction(f) => format!("{}%", fmt_num(f * 100.0)),
        }
    }

    /// Part of the run folder's name: `5000`, `10pct`, `0.5pct`.
    pub fn label(&self) -> String {
        match self {
            Budget::Count(n) => n.to_string(),
            Budget::Fraction(f) => format!("{}pct", fmt_num(f * 100.0)),
        }
    }
}

/// A number without float noise: at most 4 decimals, trailing zeros dropped.
pub fn fmt_num(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

pub const SELECTIONS: &[&str] = &["snl", "random", "uniform"];

pub fn parse_selections(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for s in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !SELECTIONS.contains(&s) {
            return Err(format!("bad selection `{s}`: expected snl, random or uniform"));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    if out.is_empty() {
        return Err("--selections: empty list".into());
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Presets and options

/// An ordered list of `--flag value` pairs; setting a flag again replaces its value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flags(pub Vec<(String, String)>);

impl Flags {
    pub fn set(&mut self, flag: &str, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter_mut().find(|(f, _)| f == flag) {
            Some(slot) => slot.1 = value,
            None => self.0.push((flag.to_string(), value)),
        }
    }

    pub fn get(&self, flag: &str) -> Option<&str> {
        self.0.iter().find(|(f, _)| f == flag).map(|(_, v)| v.as_str())
    }

    fn push_to(&self, args: &mut Vec<String>) {
        for (f, v) in &self.0 {
            args.push(format!("--{f}"));
            args.push(v.clone());
        }
    }
}

fn flags(pairs: &[(&str, &str)]) -> Flags {
    Flags(pairs.iter().map(|(f, v)| (f.to_string(), v.to_string())).collect())
}

#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    pub name: String,
    /// Global flags of every `snl` run (`--device`).
    pub global: Flags,
    /// `--dataset`, `--data-dir`, `--batch-size`: given to train and linearize.
    pub data: Flags,
    /// `--arch`, `--width`: given to train.
    pub model: Flags,
    /// `--epochs`, `--schedule`, ...: given to train.
    pub train: Flags,
    /// Search and finetuning settings: given to linearize.
    pub linearize: Flags,
    pub budgets: Vec<Budget>,
    /// Cargo features the binary needs (`cuda` for `paper`).
    pub features: Option<String>,
}

pub fn preset(name: &str, root: &Path) -> Result<Preset, String> {
    let all = |list: &str| Budget::parse_list(list).expect("preset budgets parse");
    Ok(match name {
        "smoke" => Preset {
            name: name.into(),
            global: Flags::default(),
            data: flags(&[("dataset", "synthetic"), ("batch-size", "64")]),
            model: flags(&[("arch", "resnet18"), ("width", "4")]),
            train: flags(&[("epochs", "2"), ("schedule", "cosine")]),
            linearize: flags(&[
                ("lasso", "1e-3"),
                ("search-lr", "0.05"),
                ("warmup-epochs", "0"),
                ("max-search-epochs", "50"),
                ("finetune-epochs", "1"),
            ]),
            budgets: all("30%,60%"),
            features: None,
        },
        "cpu" => {
            let data_dir = root.parent().unwrap_or(root).join("shared/data/cifar10-jpeg");
            Preset {
                name: name.into(),
                global: Flags::default(),
                data: flags(&[
                    ("dataset", "folder"),
                    ("data-dir", &data_dir.display().to_string()),
                    ("batch-size", "128"),
                ]),
                model: flags(&[("arch", "resnet18"), ("width", "8")]),
                train: flags(&[("epochs", "6"), ("schedule", "cosine"), ("lr", "0.1")]),
                // One lambda per budget: with a fixed lambda the count settles where the
                // lasso balances the task gradients. 1e-3 stalls near 8% of the ReLUs; for
                // 1%, 6e-3 and 7e-3 hovered just above the budget for 2-3 epochs and 1e-2
                // fell to 0.3% in one; for 3%, 3e-3 hovered at 3.4-3.6% for 4 epochs.
                linearize: flags(&[
                    ("lasso", "1e-2,4e-3,1e-3,3e-4"),
                    ("search-lr", "0.01"),
                    ("warmup-epochs", "0"),
                    ("max-search-epochs", "8"),
                    ("finetune-epochs", "1"),
                ]),
                budgets: all("1%,3%,10%,20%"),
                features: None,
            }
        }
        "paper" => Preset {
            name: name.into(),
            global: flags(&[("device", "cuda")]),
            data: flags(&[("dataset", "cifar10")]),
            model: flags(&[("arch", "resnet18"), ("width", "64")]),
            train: flags(&[
                ("epochs", "160"),
                ("schedule", "multistep"),
                ("lr", "0.1"),
                ("batch-size", "256"),
            ]),
            linearize: flags(&[
                ("lasso", "1e-5"),
                ("search-lr", "1e-3"),
                ("warmup-epochs", "5"),
                ("max-search-epochs", "2000"),
                ("finetune-epochs", "100"),
                ("batch-size", "128"),
            ]),
            budgets: all("12.9k,14.9k,25k,49.4k,99.9k,180k"),
            features: Some("cuda".into()),
        },
        other => return Err(format!("unknown preset `{other}`: expected smoke, cpu or paper")),
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub preset: Preset,
    pub selections: Vec<String>,
    pub out: PathBuf,
    pub baseline: Option<PathBuf>,
    pub dry_run: bool,
    pub debug: bool,
    pub snl: Option<PathBuf>,
    pub build: bool,
    /// `Some("")`: the preset's dataset; `Some(name)`: that dataset's points.
    pub paper_points: Option<String>,
    pub sites: bool,
    pub seed: u64,
    pub threads: Option<usize>,
}

/// Parse `cargo xtask pareto` arguments (`--flag value` or `--flag=value`).
/// `Ok(None)` means help was asked for.
pub fn parse_options(args: &[String], root: &Path) -> Result<Option<Options>, String> {
    let mut pairs: Vec<(String, Option<String>)> = Vec::new();
    let takes_value =
        |f: &str| !matches!(f, "dry-run" | "debug" | "no-build" | "no-sites" | "paper-points" | "help");
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        let Some(body) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument `{arg}`"));
        };
        let (flag, value) = match body.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None if takes_value(body) => {
                let v = it.next().ok_or_else(|| format!("--{body} needs a value"))?;
                (body.to_string(), Some(v.clone()))
            }
            None => (body.to_string(), None),
        };
        pairs.push((flag, value));
    }
    let value = |name: &str| pairs.iter().rev().find(|(f, _)| f == name).and_then(|(_, v)| v.clone());
    let preset_name = value("preset").unwrap_or_else(|| "smoke".into());
    let mut p = preset(&preset_name, root)?;
    let mut o = Options {
        out: PathBuf::from(format!("runs/pareto-{preset_name}")),
        preset: p.clone(),
        selections: SELECTIONS.iter().map(|s| s.to_string()).collect(),
        baseline: None,
        dry_run: false,
        debug: false,
        snl: None,
        build: true,
        paper_points: None,
        sites: true,
        seed: 0,
        threads: None,
    };
    let number = |flag: &str, v: &str| -> Result<(), String> {
        v.parse::<f64>().map(|_| ()).map_err(|_| format!("--{flag}: `{v}` is not a number"))
    };
    for (flag, v) in &pairs {
        let v = v.clone();
        let need = |v: Option<String>| v.ok_or_else(|| format!("--{flag} needs a value"));
        match flag.as_str() {
            "preset" => {}
            "budgets" => p.budgets = Budget::parse_list(&need(v)?)?,
            "selections" => o.selections = parse_selections(&need(v)?)?,
            "out" => o.out = PathBuf::from(need(v)?),
            "baseline" => o.baseline = Some(PathBuf::from(need(v)?)),
            "dry-run" => o.dry_run = true,
            "debug" => o.debug = true,
            "snl" => o.snl = Some(PathBuf::from(need(v)?)),
            "no-build" => o.build = false,
            "no-sites" => o.sites = false,
            "paper-points" => o.paper_points = Some(v.unwrap_or_default()),
            "dataset" => {
                p.data.set("dataset", need(v)?);
                if value("data-dir").is_none() {
                    p.data.0.retain(|(f, _)| f != "data-dir");
                }
            }
            "data-dir" => p.data.set("data-dir", need(v)?),
            "width" => {
                let v = need(v)?;
                v.parse::<usize>().map_err(|_| format!("--width: `{v}` is not a width"))?;
                p.model.set("width", v);
            }
            "device" => p.global.set("device", need(v)?),
            "seed" => o.seed = need(v)?.parse().map_err(|_| "--seed: not an integer".to_string())?,
            "threads" => {
                o.threads = Some(need(v)?.parse().map_err(|_| "--threads: not an integer".to_string())?)
            }
            "train-epochs" => {
                let v = need(v)?;
                number(flag, &v)?;
                p.train.set("epochs", v);
            }
            "batch-size" => {
                let v = need(v)?;
                number(flag, &v)?;
                p.data.set("batch-size", &v);
                p.train.0.retain(|(f, _)| f != "batch-size");
                p.linearize.0.retain(|(f, _)| f != "batch-size");
            }
            "lasso" => {
                let v = need(v)?;
                v.split(',').try_for_each(|x| number(flag, x.trim()))?;
                p.linearize.set("lasso", v.replace(' ', ""));
            }
            knob if LINEARIZE_KNOBS.contains(&knob) => {
                let v = need(v)?;
                number(flag, &v)?;
                p.linearize.set(knob, v);
            }
            other => return Err(format!("unknown option --{other} (see cargo xtask pareto --help)")),
        }
    }
    // A preset with one lambda per budget gives its budgets theirs; others need --lasso.
    if !pairs.iter().any(|(f, _)| f == "lasso")
        && let Some(list) = preset_lasso_for(&preset(&preset_name, root)?, &p.budgets)?
    {
        p.linearize.set("lasso", list);
    }
    if let Some(list) = p.linearize.get("lasso") {
        let (values, budgets) = (list.split(',').count(), p.budgets.len());
        if values != 1 && values != budgets {
            return Err(format!(
                "--lasso `{list}`: {values} values for {budgets} budget(s); give one value, or one per budget"
            ));
        }
    }
    o.preset = p;
    Ok(Some(o))
}

// ---------------------------------------------------------------------------------------
// The plan

/// What a run folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Absent,
    /// `config.json` without `result.json`: resume it.
    Unfinished,
    /// `result.json`: skip it.
    Finished,
}

pub fn run_state(dir: &Path) -> RunState {
    if dir.join("result.json").exists() {
        RunState::Finished
    } else if dir.join("config.json").exists() {
        RunState::Unfinished
    } else {
        RunState::Absent
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Baseline,
    Linearize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `cargo build` of the `snl` binary (run in the workspace root).
    Build { program: String, args: Vec<String> },
    /// One `snl` invocation (arguments after the program name).
    Snl { role: Role, dir: PathBuf, args: Vec<String> },
    /// A finished run, left alone.
    Skip { role: Role, dir: PathBuf },
}

/// `cargo build` arguments for the binary, or `None` when a binary was given or building
/// is turned off.
pub fn build_command(o: &Options) -> Option<Vec<String>> {
    if o.snl.is_some() || !o.build {
        return None;
    }
    let mut args: Vec<String> = vec!["build".into()];
    if !o.debug {
        args.push("--release".into());
    }
    args.extend(["-p".into(), "snl-cli".into()]);
    if let Some(f) = &o.preset.features {
        args.extend(["--features".into(), f.clone()]);
    }
    Some(args)
}

/// Where the `snl` binary is (given, or in the target folder of this workspace).
pub fn snl_binary(o: &Options, root: &Path) -> PathBuf {
    if let Some(p) = &o.snl {
        return p.clone();
    }
    target_dir(root)
        .join(if o.debug { "debug" } else { "release" })
        .join(format!("snl{}", std::env::consts::EXE_SUFFIX))
}

fn global_args(o: &Options) -> Vec<String> {
    let mut args = vec!["--seed".to_string(), o.seed.to_string()];
    if let Some(t) = o.threads {
        args.extend(["--threads".into(), t.to_string()]);
    }
    o.preset.global.push_to(&mut args);
    args
}

pub fn baseline_dir(o: &Options) -> PathBuf {
    o.out.join("baseline")
}

/// The model every linearize run starts from.
pub fn baseline_model(o: &Options) -> PathBuf {
    o.baseline.clone().unwrap_or_else(|| baseline_dir(o).join("best.safetensors"))
}

pub fn run_dir(o: &Options, selection: &str, budget: &Budget) -> PathBuf {
    o.out.join(format!("{selection}-{}", budget.label()))
}

/// A run folder's name (`snl-10pct`, `baseline`).
fn folder_name(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Every step of the sweep, in order: build, baseline, then each selection over the budgets.
/// `state` says what a run folder holds (the disk in `main`, a table in tests).
pub fn plan(o: &Options, state: &dyn Fn(&Path) -> RunState) -> Vec<Step> {
    let mut steps = Vec::new();
    if let Some(args) = build_command(o) {
        steps.push(Step::Build { program: cargo(), args });
    }
    let p = &o.preset;
    if o.baseline.is_none() {
        let dir = baseline_dir(o);
        let mut args = global_args(o);
        args.push("train".into());
        match state(&dir) {
            RunState::Finished => steps.push(Step::Skip { role: Role::Baseline, dir }),
            RunState::Unfinished => {
                args.extend(["--resume".into(), dir.display().to_string()]);
                steps.push(Step::Snl { role: Role::Baseline, dir, args });
            }
            RunState::Absent => {
                p.model.push_to(&mut args);
                p.data.push_to(&mut args);
                p.train.push_to(&mut args);
                args.extend(["--out".into(), dir.display().to_string()]);
                steps.push(Step::Snl { role: Role::Baseline, dir, args });
            }
        }
    }
    let model = baseline_model(o);
    for selection in &o.selections {
        for (i, budget) in p.budgets.iter().enumerate() {
            let dir = run_dir(o, selection, budget);
            let mut args = global_args(o);
            args.push("linearize".into());
            match state(&dir) {
                RunState::Finished => steps.push(Step::Skip { role: Role::Linearize, dir }),
                RunState::Unfinished => {
                    args.extend(["--resume".into(), dir.display().to_string()]);
                    steps.push(Step::Snl { role: Role::Linearize, dir, args });
                }
                RunState::Absent => {
                    args.extend(["--model".into(), model.display().to_string()]);
                    args.extend(["--budget".into(), budget.arg()]);
                    args.extend(["--selection".into(), selection.clone()]);
                    p.data.push_to(&mut args);
                    budget_flags(&p.linearize, i).push_to(&mut args);
                    args.extend(["--out".into(), dir.display().to_string()]);
                    steps.push(Step::Snl { role: Role::Linearize, dir, args });
                }
            }
        }
    }
    steps
}

/// The lambdas of `budgets` from a preset with one per budget (`None` when it has one for
/// all). A budget not in the preset's list has none: refused.
fn preset_lasso_for(preset: &Preset, budgets: &[Budget]) -> Result<Option<String>, String> {
    let Some(list) = preset.linearize.get("lasso").filter(|l| l.contains(',')) else { return Ok(None) };
    let list: Vec<&str> = list.split(',').collect();
    let (mut picked, mut missing) = (Vec::new(), Vec::new());
    for b in budgets {
        match preset.budgets.iter().position(|p| p.label() == b.label()) {
            Some(i) => picked.push(list[i]),
            None => missing.push(b.arg()),
        }
    }
    if !missing.is_empty() {
        let own: Vec<String> = preset.budgets.iter().map(Budget::arg).collect();
        return Err(format!(
            "--budgets {}: preset {} has a lambda for its own budgets only ({}); give --lasso",
            missing.join(","),
            preset.name,
            own.join(",")
        ));
    }
    Ok(Some(picked.join(",")))
}

/// The linearize flags of the `i`-th budget: a per-budget `--lasso` list gives its `i`-th value.
fn budget_flags(linearize: &Flags, i: usize) -> Flags {
    let mut flags = linearize.clone();
    if let Some(list) = linearize.get("lasso").filter(|l| l.contains(',')) {
        let value = list.split(',').nth(i).unwrap_or(list).to_string();
        flags.set("lasso", value);
    }
    flags
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// A command line as a shell would take it back.
pub fn shell_line(program: &str, args: &[String]) -> String {
    let quote = |s: &str| {
        let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-./%:=,+@".contains(c));
        if plain { s.to_string() } else { format!("'{}'", s.replace('\'', r"'\''")) }
    };
    std::iter::once(quote(program)).chain(args.iter().map(|a| quote(a))).collect::<Vec<_>>().join(" ")
}

/// The plan as lines of text (what `--dry-run` prints).
pub fn plan_text(steps: &[Step], snl: &Path) -> Vec<String> {
    let snl = snl.display().to_string();
    steps
        .iter()
        .map(|s| match s {
            Step::Build { program, args } => {
                format!("$ (cd {}) {}", workspace_root().display(), shell_line(program, args))
            }
            Step::Snl { args, .. } => format!("$ {}", shell_line(&snl, args)),
            Step::Skip { dir, .. } => format!("# skip {}: finished (result.json)", dir.display()),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The sweep's record (OUT/sweep.json)

/// Run folder name -> the settings of that run (flag -> value).
pub type Settings = BTreeMap<String, BTreeMap<String, String>>;

pub const RECORD: &str = "sweep.json";

/// The settings of every planned run: the flags of its fresh `snl` command, without `--out`
/// and the flags that say where it runs (`--threads`, `--device`); paths made absolute.
pub fn planned_settings(o: &Options) -> Settings {
    let mut runs = Settings::new();
    for step in plan(o, &|_| RunState::Absent) {
        let Step::Snl { dir, args, .. } = step else { continue };
        let mut flags = BTreeMap::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let Some(flag) = arg.strip_prefix("--") else { continue }; // the subcommand
            let value = it.next().cloned().unwrap_or_default();
            let value = match flag {
                "out" | "threads" | "device" => continue,
                "model" | "data-dir" => {
                    std::path::absolute(&value).map_or(value, |p| p.display().to_string())
                }
                _ => value,
            };
            flags.insert(flag.to_string(), value);
        }
        runs.insert(folder_name(&dir), flags);
    }
    runs
}

/// The record to write for `planned` runs in a sweep folder whose record is `recorded`: the
/// recorded runs plus the planned ones. Refused when a planned run is recorded with other
/// settings, or when its folder holds a run (`on_disk`) that the record does not know.
pub fn merge_record(
    out: &Path,
    recorded: &Settings,
    planned: &Settings,
    on_disk: &dyn Fn(&str) -> bool,
) -> Result<Settings, String> {
    let record = out.join(RECORD);
    // flag -> (recorded value, planned value, runs)
    let mut differ: BTreeMap<&str, (&str, &str, Vec<&str>)> = BTreeMap::new();
    let mut unknown = Vec::new();
    for (run, now) in planned {
        let Some(was) = recorded.get(run) else {
            if on_disk(run) {
                unknown.push(run.as_str());
            }
            continue;
        };
        let flags: std::collections::BTreeSet<&String> = was.keys().chain(now.keys()).collect();
        for flag in flags {
            let (a, b) = (was.get(flag), now.get(flag));
            if a != b {
                let unset = "(unset)";
                let entry = differ.entry(flag).or_insert((
                    a.map_or(unset, String::as_str),
                    b.map_or(unset, String::as_str),
                    Vec::new(),
                ));
                entry.2.push(run);
            }
        }
    }
    if !unknown.is_empty() {
        return Err(format!(
            "{} holds run folders that {} does not record ({}): their settings are unknown; move them \
             away or choose another --out (nothing was run)",
            out.display(),
            record.display(),
            unknown.join(", ")
        ));
    }
    if !differ.is_empty() {
        let list: Vec<String> = differ
            .iter()
            .map(|(flag, (was, now, runs))| {
                let more =
                    if runs.len() > 1 { format!(" and {} more", runs.len() - 1) } else { String::new() };
                format!("--{flag} was {was}, now {now} ({}{more})", runs[0])
            })
            .collect();
        return Err(format!(
            "{} records other settings: {}; choose another --out for a new sweep (nothing was run)",
            record.display(),
            list.join("; ")
        ));
    }
    let mut merged = recorded.clone();
    merged.extend(planned.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(merged)
}

/// `OUT/sweep.json`'s runs, or none when there is no record.
fn read_record(out: &Path) -> Result<Settings, String> {
    let path = out.join(RECORD);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| serde_json::from_value(v.get("runs")?.clone()).ok())
        .ok_or_else(|| format!("{}: not a sweep record (a JSON object with `runs`)", path.display()))
}

/// Write `OUT/sweep.json` through a temporary file, so a killed xtask leaves the old record
/// or the new one.
fn write_record(out: &Path, runs: &Settings) -> Result<(), String> {
    let path = out.join(RECORD);
    let tmp = out.join(format!("{RECORD}.tmp"));
    let text = serde_json::to_string_pretty(&json!({ "runs": runs })).expect("json") + "\n";
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------
// Results, the Pareto front, CSV and JSON

/// One finished run, read from its `result.json`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    /// The run folder's name.
    pub name: String,
    pub dir: PathBuf,
    /// `snl`, `random`, `uniform`, or `baseline` for a train run.
    pub selection: String,
    pub budget: Option<u64>,
    pub relu_count: Option<u64>,
    pub relu_total: Option<u64>,
    pub test_top1: Option<f64>,
    pub test_top5: Option<f64>,
    pub test_loss: Option<f64>,
    pub val_top1: Option<f64>,
    pub val_top5: Option<f64>,
    pub wall_time_s: Option<f64>,
    pub seed: Option<u64>,
    pub dataset: Option<String>,
    pub arch: Option<String>,
    pub best_epoch: Option<u64>,
    /// Non-dominated among the runs of the same selection.
    pub pareto: bool,
}

impl Row {
    pub fn from_result(name: &str, dir: &Path, v: &Value) -> Row {
        let u = |k: &str| v.get(k).and_then(Value::as_u64);
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let f = |o: &str, k: &str| v.get(o).and_then(|o| o.get(k)).and_then(Value::as_f64);
        let selection = match (s("command").as_deref(), s("selection")) {
            (Some("train"), _) => "baseline".to_string(),
            (_, Some(sel)) => sel,
            _ => "unknown".to_string(),
        };
        Row {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            selection,
            budget: u("budget"),
            relu_count: u("relu_count"),
            relu_total: u("relu_total"),
            test_top1: f("test", "top1"),
            test_top5: f("test", "top5"),
            test_loss: f("test", "loss"),
            val_top1: f("val", "top1"),
            val_top5: f("val", "top5"),
            wall_time_s: v.get("wall_time_s").and_then(Value::as_f64),
            seed: u("seed"),
            dataset: s("dataset"),
            arch: s("arch"),
            best_epoch: u("best_epoch"),
            pareto: false,
        }
    }

    /// (ReLUs kept, test top-1) when both are known.
    pub fn point(&self) -> Option<(f64, f64)> {
        Some((self.relu_count? as f64, self.test_top1?))
    }
}

/// Which points are non-dominated: no other point has at most as many ReLUs and at least
/// as much accuracy, one of them strictly. Equal points are all kept.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<bool> {
    points
        .iter()
        .map(|&(r, a)| !points.iter().any(|&(r2, a2)| r2 <= r && a2 >= a && (r2 < r || a2 > a)))
        .collect()
}

/// Set `pareto` on every row: the front of its own selection.
pub fn mark_fronts(rows: &mut [Row]) {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        if r.point().is_some() {
            groups.entry(r.selection.clone()).or_default().push(i);
        }
    }
    for r in rows.iter_mut() {
        r.pareto = false;
    }
    for idx in groups.values() {
        let pts: Vec<(f64, f64)> = idx.iter().filter_map(|&i| rows[i].point()).collect();
        for (&i, on) in idx.iter().zip(pareto_front(&pts)) {
            rows[i].pareto = on;
        }
    }
}

/// Baseline first, then by selection (snl, random, uniform) and ReLU count.
pub fn sort_rows(rows: &mut [Row]) {
    let rank = |s: &str| match s {
        "baseline" => 0,
        "snl" => 1,
        "random" => 2,
        "uniform" => 3,
        _ => 4,
    };
    rows.sort_by(|a, b| {
        (rank(&a.selection), a.relu_count.unwrap_or(0), &a.name).cmp(&(
            rank(&b.selection),
            b.relu_count.unwrap_or(0),
            &b.name,
        ))
    });
}

pub const CSV_HEADER: &str = "run,selection,budget,relu_count,relu_total,relu_fraction,test_top1,test_top5,\
                              test_loss,val_top1,val_top5,pareto,best_epoch,wall_time_s,seed,dataset,arch";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

pub fn to_csv(rows: &[Row]) -> String {
    let opt = |v: Option<String>| v.unwrap_or_default();
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        let fraction = match (r.relu_count, r.relu_total) {
            (Some(c), Some(t)) if t > 0 => Some(format!("{:.6}", c as f64 / t as f64)),
            _ => None,
        };
        let fields = [
            csv_field(&r.name),
            csv_field(&r.selection),
            opt(r.budget.map(|v| v.to_string())),
            opt(r.relu_count.map(|v| v.to_string())),
            opt(r.relu_total.map(|v| v.to_string())),
            opt(fraction),
            opt(r.test_top1.map(|v| v.to_string())),
            opt(r.test_top5.map(|v| v.to_string())),
            opt(r.test_loss.map(|v| v.to_string())),
            opt(r.val_top1.map(|v| v.to_string())),
            opt(r.val_top5.map(|v| v.to_string())),
            r.pareto.to_string(),
            opt(r.best_epoch.map(|v| v.to_string())),
            opt(r.wall_time_s.map(|v| format!("{v:.1}"))),
            opt(r.seed.map(|v| v.to_string())),
            csv_field(r.dataset.as_deref().unwrap_or("")),
            csv_field(r.arch.as_deref().unwrap_or("")),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

pub fn to_json(rows: &[Row], paper: Option<&PaperSeries>) -> String {
    let runs: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "run": r.name,
                "dir": r.dir.display().to_string(),
                "selection": r.selection,
                "budget": r.budget,
                "relu_count": r.relu_count,
                "relu_total": r.relu_total,
                "test_top1": r.test_top1,
                "test_top5": r.test_top5,
                "test_loss": r.test_loss,
                "val_top1": r.val_top1,
                "val_top5": r.val_top5,
                "pareto": r.pareto,
                "best_epoch": r.best_epoch,
                "wall_time_s": r.wall_time_s,
                "seed": r.seed,
                "dataset": r.dataset,
                "arch": r.arch,
            })
        })
        .collect();
    let paper = paper.map(|p| {
        json!({
            "label": p.label,
            "source": "REFERENCE.md section 3 (the paper's Figure 3 as transcribed in later papers)",
            "points": p.points.iter().map(|(r, a)| json!({"relu_count": r, "test_top1": a})).collect::<Vec<_>>(),
        })
    });
    let mut text = serde_json::to_string_pretty(&json!({ "runs": runs, "paper": paper })).expect("json");
    text.push('\n');
    text
}

// ---------------------------------------------------------------------------------------
// The paper's points (REFERENCE.md section 3)

#[derive(Debug, Clone, PartialEq)]
pub struct PaperSeries {
    pub label: String,
    /// (ReLUs kept, test top-1 %).
    pub points: Vec<(f64, f64)>,
}

/// The paper's SNL points for a dataset (`cifar10`, `cifar100`, `tiny-imagenet`) and an
/// architecture (`resnet18`, `wrn-*`).
pub fn paper_series(dataset: &str, arch: &str) -> Option<PaperSeries> {
    let wrn = arch.starts_with("wrn");
    let points: &[(f64, f64)] = match (dataset, wrn) {
        ("cifar10", false) => &[(12_900.0, 88.23), (49_400.0, 92.27), (99_900.0, 93.50)],
        ("cifar10", true) => &[(300_000.0, 95.06)],
        ("cifar100", false) => &[
            (12_900.0, 66.53),
            (14_900.0, 67.17),
            (25_000.0, 70.05),
            (49_400.0, 73.75),
            (99_900.0, 75.94),
            (180_000.0, 77.65),
        ],
        ("tiny-imagenet", false) => &[(59_400.0, 54.24), (99_600.0, 58.94), (198_000.0, 63.39)],
        ("tiny-imagenet", true) => &[(489_000.0, 64.42)],
        _ => return None,
    };
    let net = if wrn { "WRN-22-8" } else { "ResNet18 w64" };
    Some(PaperSeries { label: format!("SNL paper ({net}, {dataset})"), points: points.to_vec() })
}

/// The dataset key of the paper's tables for a preset's `--dataset` / `--data-dir`.
pub fn paper_dataset(data: &Flags) -> Option<String> {
    let name = data.get("dataset")?.to_ascii_lowercase();
    let hint = if name == "folder" {
        Path::new(data.get("data-dir")?).file_name()?.to_string_lossy().to_ascii_lowercase()
    } else {
        name
    };
    let key = if hint.contains("cifar100") || hint.contains("cifar-100") {
        "cifar100"
    } else if hint.contains("cifar10") || hint.contains("cifar-10") {
        "cifar10"
    } else if hint.contains("tiny") {
        "tiny-imagenet"
    } else {
        return None;
    };
    Some(key.to_string())
}

// ---------------------------------------------------------------------------------------
// Running

/// Read the `result.json` of each of `dirs` that has one.
pub fn collect(dirs: &[PathBuf]) -> Vec<Row> {
    let mut rows = Vec::new();
    for dir in dirs {
        let path = dir.join("result.json");
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        match serde_json::from_str::<Value>(&text) {
            Ok(v) => {
                rows.push(Row::from_result(&folder_name(dir), dir, &v));
            }
            Err(e) => eprintln!("xtask: {}: not valid JSON ({e}); left out", path.display()),
        }
    }
    rows
}

/// A child run that failed.
#[derive(Debug)]
struct Failure {
    what: String,
    code: Option<i32>,
}

fn run_child(program: &Path, args: &[String], cwd: Option<&Path>) -> Result<(), Option<i32>> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(s.code()),
        Err(e) => {
            eprintln!("xtask: cannot start {}: {e}", program.display());
            Err(None)
        }
    }
}

fn code_text(code: Option<i32>) -> String {
    code.map_or_else(|| "no exit code (killed or not started)".into(), |c| format!("exit code {c}"))
}

/// `snl count --model MODEL --json`, parsed.
fn snl_count(snl: &Path, model: &Path) -> Result<Value, String> {
    let args = vec!["count".to_string(), "--model".into(), model.display().to_string(), "--json".into()];
    println!("$ {}", shell_line(&snl.display().to_string(), &args));
    let out =
        Command::new(snl).args(&args).output().map_err(|e| format!("cannot start {}: {e}", snl.display()))?;
    if !out.status.success() {
        return Err(format!(
            "snl count failed ({}): {}",
            code_text(out.status.code()),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("snl count --json: not JSON ({e})"))
}

/// Write `DIR/sites.json` and the bar chart `svg` for the model of a run folder.
fn draw_sites(snl: &Path, dir: &Path, model: &Path, svg: &Path) -> Result<(), String> {
    let count = snl_count(snl, model)?;
    let title = format!(
        "{}: kept ReLUs per site",
        dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned(),)
    );
    let chart = plot::sites_svg(&count, &title)?;
    let text = serde_json::to_string_pretty(&count).expect("json") + "\n";
    std::fs::write(dir.join("sites.json"), text).map_err(|e| e.to_string())?;
    std::fs::write(svg, chart).map_err(|e| format!("cannot write {}: {e}", svg.display()))?;
    println!("wrote {}", svg.display());
    Ok(())
}

/// `pareto.png` from `pareto.svg` when a converter is installed; quietly nothing otherwise.
fn try_png(svg: &Path, png: &Path) -> bool {
    let attempts: [(&str, Vec<String>); 2] = [
        ("rsvg-convert", vec!["-o".into(), png.display().to_string(), svg.display().to_string()]),
        ("convert", vec![svg.display().to_string(), png.display().to_string()]),
    ];
    for (program, args) in attempts {
        let ok = Command::new(program)
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok && png.exists() {
            return true;
        }
    }
    false
}

fn build(root: &Path, program: &str, args: &[String]) -> Result<(), String> {
    println!("$ (cd {}) {}", root.display(), shell_line(program, args));
    run_child(Path::new(program), args, Some(root))
        .map_err(|c| format!("cargo build failed ({})", code_text(c)))
}

pub fn main(args: &[String]) -> i32 {
    let root = workspace_root();
    let o = match parse_options(args, &root) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("xtask pareto: {e}\n\n{USAGE}");
            return 2;
        }
    };
    let snl = snl_binary(&o, &root);
    let planned = planned_settings(&o);
    let on_disk = |run: &str| run_state(&o.out.join(run)) != RunState::Absent;
    let record = match read_record(&o.out).and_then(|old| merge_record(&o.out, &old, &planned, &on_disk)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("xtask pareto: {e}");
            return 2;
        }
    };
    let steps = plan(&o, &|d| run_state(d));
    let paper = match &o.paper_points {
        None => None,
        Some(key) => {
            let key = if key.is_empty() { paper_dataset(&o.preset.data) } else { Some(key.clone()) };
            let arch = o.preset.model.get("arch").unwrap_or("resnet18");
            let series = key.as_deref().and_then(|k| paper_series(k, arch));
            if series.is_none() {
                eprintln!(
                    "xtask: no paper points for dataset {} and {arch} (REFERENCE section 3 has cifar10, \
                     cifar100, tiny-imagenet); none drawn",
                    key.as_deref().unwrap_or("(unknown)")
                );
            }
            series
        }
    };
    if o.preset.features.as_deref() == Some("cuda") {
        println!(
            "note: preset `{}` runs with --device cuda: the snl binary must be built with --features cuda",
            o.preset.name
        );
    }
    if o.dry_run {
        println!("plan for preset `{}` in {} ({} steps):", o.preset.name, o.out.display(), steps.len());
        for line in plan_text(&steps, &snl) {
            println!("{line}");
        }
        println!(
            "then: record the settings in {0}/{RECORD}, collect the runs' result.json into \
             {0}/pareto.csv, pareto.json, pareto.svg",
            o.out.display()
        );
        return 0;
    }
    if let Some(b) = &o.baseline
        && !b.exists()
    {
        eprintln!("xtask pareto: --baseline {}: no such file", b.display());
        return 2;
    }
    if let Err(e) = std::fs::create_dir_all(&o.out) {
        eprintln!("xtask pareto: cannot create {}: {e}", o.out.display());
        return 1;
    }
    if let Err(e) = write_record(&o.out, &record) {
        eprintln!("xtask pareto: {e}; nothing was run");
        return 1;
    }

    let mut failures: Vec<Failure> = Vec::new();
    let mut baseline_failed = false;
    let total = steps.iter().filter(|s| matches!(s, Step::Snl { .. })).count();
    let mut done = 0;
    for step in &steps {
        match step {
            Step::Build { program, args } => {
                if let Err(e) = build(&root, program, args) {
                    eprintln!("xtask pareto: {e}; nothing was run");
                    return 1;
                }
                if !snl.exists() {
                    eprintln!("xtask pareto: {} missing after the build", snl.display());
                    return 1;
                }
            }
            Step::Skip { dir, .. } => println!("# skip {}: finished (result.json)", dir.display()),
            Step::Snl { role, dir, args } => {
                done += 1;
                if *role == Role::Linearize && baseline_failed {
                    eprintln!("# [{done}/{total}] skip {}: the baseline failed", dir.display());
                    failures.push(Failure { what: dir.display().to_string(), code: None });
                    continue;
                }
                println!("# [{done}/{total}] {}", dir.display());
                println!("$ {}", shell_line(&snl.display().to_string(), args));
                if let Err(code) = run_child(&snl, args, None) {
                    eprintln!("xtask pareto: run {} failed ({}); going on", dir.display(), code_text(code));
                    failures.push(Failure { what: dir.display().to_string(), code });
                    if *role == Role::Baseline {
                        baseline_failed = true;
                    }
                }
            }
        }
    }

    // The planned runs only, and the given baseline's folder (its result.json, if any).
    let mut dirs: Vec<PathBuf> = planned.keys().map(|run| o.out.join(run)).collect();
    if let Some(dir) = o.baseline.as_ref().and_then(|b| b.parent())
        && !dirs.iter().any(|d| d == dir)
    {
        dirs.push(dir.to_path_buf());
    }
    let mut rows = collect(&dirs);
    mark_fronts(&mut rows);
    sort_rows(&mut rows);
    let write = |name: &str, text: &str| {
        let path = o.out.join(name);
        match std::fs::write(&path, text) {
            Ok(()) => println!("wrote {}", path.display()),
            Err(e) => eprintln!("xtask pareto: cannot write {}: {e}", path.display()),
        }
    };
    write("pareto.csv", &to_csv(&rows));
    write("pareto.json", &to_json(&rows, paper.as_ref()));
    // An image folder is named by its directory (`cifar10-jpeg`), not as `folder`.
    let dataset = match (o.preset.data.get("dataset"), o.preset.data.get("data-dir")) {
        (Some("folder"), Some(dir)) => Path::new(dir).file_name().map(|n| n.to_string_lossy().into_owned()),
        (name, _) => name.map(str::to_string),
    };
    let title = format!(
        "{} width {} on {}: test top-1 vs ReLUs kept (preset {})",
        o.preset.model.get("arch").unwrap_or("model"),
        o.preset.model.get("width").unwrap_or("?"),
        dataset.as_deref().unwrap_or("?"),
        o.preset.name
    );
    write("pareto.svg", &plot::pareto_svg(&rows, paper.as_ref(), &title));
    let png = o.out.join("pareto.png");
    if try_png(&o.out.join("pareto.svg"), &png) {
        println!("wrote {}", png.display());
    }
    if o.sites {
        for r in rows.iter().filter(|r| r.selection != "baseline") {
            let svg = r.dir.join("sites.svg");
            let model = r.dir.join("model.safetensors");
            if svg.exists() || !model.exists() {
                continue;
            }
            if let Err(e) = draw_sites(&snl, &r.dir, &model, &svg) {
                eprintln!("xtask pareto: no per-site chart for {}: {e}", r.dir.display());
            }
        }
    }

    let mut summary = String::new();
    let _ = writeln!(summary, "{} runs collected in {}", rows.len(), o.out.display());
    for r in rows.iter().filter(|r| r.pareto && r.selection == "snl") {
        let _ = writeln!(
            summary,
            "  snl front: {} ReLUs -> {:.2}% ({})",
            r.relu_count.unwrap_or(0),
            r.test_top1.unwrap_or(f64::NAN),
            r.name
        );
    }
    print!("{summary}");
    if failures.is_empty() {
        0
    } else {
        eprintln!("xtask pareto: {} run(s) failed:", failures.len());
        for f in &failures {
            eprintln!("  {} ({})", f.what, code_text(f.code));
        }
        1
    }
}

/// `cargo xtask sites RUN`: the per-site bar chart of one run.
pub fn sites_main(args: &[String]) -> i32 {
    let root = workspace_root();
    let (mut run, mut model, mut out, mut debug, mut snl_given, mut build_it) =
        (None, None, None, false, None, true);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| it.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        let r = match a.as_str() {
            "-h" | "--help" => {
                println!("{SITES_USAGE}");
                return 0;
            }
            "--model" => value("--model").map(|v| model = Some(PathBuf::from(v))),
            "--out" => value("--out").map(|v| out = Some(PathBuf::from(v))),
            "--snl" => value("--snl").map(|v| snl_given = Some(PathBuf::from(v))),
            "--debug" => {
                debug = true;
                Ok(())
            }
            "--no-build" => {
                build_it = false;
                Ok(())
            }
            s if !s.starts_with("--") && run.is_none() => {
                run = Some(PathBuf::from(s));
                Ok(())
            }
            s => Err(format!("unexpected argument `{s}`")),
        };
        if let Err(e) = r {
            eprintln!("xtask sites: {e}\n\n{SITES_USAGE}");
            return 2;
        }
    }
    let Some(run) = run else {
        eprintln!("xtask sites: which run folder?\n\n{SITES_USAGE}");
        return 2;
    };
    let mut o = match parse_options(&[], &root) {
        Ok(Some(o)) => o,
        _ => unreachable!("default options parse"),
    };
    o.debug = debug;
    o.snl = snl_given;
    o.build = build_it;
    let snl = snl_binary(&o, &root);
    if let Some(args) = build_command(&o)
        && let Err(e) = build(&root, &cargo(), &args)
    {
        eprintln!("xtask sites: {e}");
        return 1;
    }
    let model = model.unwrap_or_else(|| run.join("model.safetensors"));
    let svg = out.unwrap_or_else(|| run.join("sites.svg"));
    match draw_sites(&snl, &run, &model, &svg) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("xtask sites: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &str) -> Vec<String> {
        list.split_whitespace().map(str::to_string).collect()
    }

    fn opts(list: &str) -> Options {
        parse_options(&args(list), Path::new("/repo/main")).unwrap().unwrap()
    }

    #[test]
    fn budgets_parse() {
        assert_eq!(Budget::parse("5000").unwrap(), Budget::Count(5000));
        assert_eq!(Budget::parse("5k").unwrap(), Budget::Count(5000));
        assert_eq!(Budget::parse("12.9K").unwrap(), Budget::Count(12_900));
        assert_eq!(Budget::parse("10%").unwrap(), Budget::Fraction(0.1));
        assert_eq!(Budget::parse("0.25").unwrap(), Budget::Fraction(0.25));
        assert_eq!(Budget::parse(" 99.5% ").unwrap(), Budget::Fraction(0.995));
        assert!(Budget::parse("100%").is_err());
        for bad in ["0", "0%", "150%", "-5", "abc", "1.5", "0.0001k", ""] {
            assert!(Budget::parse(bad).is_err(), "{bad} should be refused");
        }
        let list = Budget::parse_list("1%,2%,5k").unwrap();
        assert_eq!(list, vec![Budget::Fraction(0.01), Budget::Fraction(0.02), Budget::Count(5000)]);
        assert!(Budget::parse_list(",").is_err());
    }

    #[test]
    fn two_spellings_of_one_budget_are_refused() {
        let err = Budget::parse_list("10%,0.1").unwrap_err();
        assert_eq!(err, "--budgets: `10%` and `0.1` are the same budget (10%)");
        let err = Budget::parse_list("5k, 1%, 5000").unwrap_err();
        assert_eq!(err, "--budgets: `5k` and `5000` are the same budget (5000)");
        assert!(parse_options(&args("--budgets 30%,30%"), Path::new("/r")).is_err());
    }

    #[test]
    fn budget_labels_and_args() {
        assert_eq!(Budget::parse("7%").unwrap().arg(), "7%");
        assert_eq!(Budget::parse("7%").unwrap().label(), "7pct");
        assert_eq!(Budget::parse("0.5%").unwrap().label(), "0.5pct");
        assert_eq!(Budget::parse("0.1").unwrap().arg(), "10%");
        assert_eq!(Budget::parse("12.9k").unwrap().arg(), "12900");
        assert_eq!(Budget::parse("12.9k").unwrap().label(), "12900");
    }

    #[test]
    fn selections_parse() {
        assert_eq!(parse_selections("snl, random,snl").unwrap(), vec!["snl", "random"]);
        assert!(parse_selections("snl,best").is_err());
    }

    #[test]
    fn options_override_the_preset() {
        let o = opts(
            "--preset cpu --budgets 1%,20% --selections snl --train-epochs 3 --finetune-epochs=4 --threads 2",
        );
        assert_eq!(o.preset.budgets.len(), 2);
        assert_eq!(o.preset.train.get("epochs"), Some("3"));
        assert_eq!(o.preset.linearize.get("finetune-epochs"), Some("4"));
        assert_eq!(o.preset.data.get("data-dir"), Some("/repo/shared/data/cifar10-jpeg"));
        assert_eq!(o.out, PathBuf::from("runs/pareto-cpu"));
        assert_eq!(o.threads, Some(2));
        assert!(parse_options(&args("--preset gpu"), Path::new("/r")).is_err());
        assert!(parse_options(&args("--bogus 1"), Path::new("/r")).is_err());
        assert!(parse_options(&args("--help"), Path::new("/r")).unwrap().is_none());
        let o = opts("--preset cpu --dataset cifar100");
        assert_eq!(o.preset.data.get("data-dir"), None);
        let o = opts("--paper-points");
        assert_eq!(o.paper_points.as_deref(), Some(""));
    }

    #[test]
    fn cpu_preset_spans_one_to_twenty_percent() {
        let p = preset("cpu", Path::new("/r/main")).unwrap();
        assert!(p.budgets.len() >= 4);
        assert_eq!(p.budgets.first(), Some(&Budget::Fraction(0.01)));
        assert_eq!(p.budgets.last(), Some(&Budget::Fraction(0.2)));
        assert_eq!(p.data.get("dataset"), Some("folder"));
        let paper = preset("paper", Path::new("/r/main")).unwrap();
        assert_eq!(paper.global.get("device"), Some("cuda"));
        assert_eq!(paper.features.as_deref(), Some("cuda"));
        assert_eq!(paper.model.get("width"), Some("64"));
    }

    #[test]
    fn dry_run_plan_of_a_fresh_smoke_sweep() {
        let o = opts("--preset smoke --debug --out /tmp/sw");
        let steps = plan(&o, &|_| RunState::Absent);
        // build, baseline, 3 selections x 2 budgets
        assert_eq!(steps.len(), 1 + 1 + 6);
        match &steps[0] {
            Step::Build { args, .. } => assert_eq!(args, &args_vec("build -p snl-cli")),
            s => panic!("first step {s:?}"),
        }
        match &steps[1] {
            Step::Snl { role: Role::Baseline, args, dir } => {
                assert_eq!(dir, Path::new("/tmp/sw/baseline"));
                assert_eq!(
                    shell_line("snl", args),
                    "snl --seed 0 train --arch resnet18 --width 4 --dataset synthetic --batch-size 64 \
                     --epochs 2 --schedule cosine --out /tmp/sw/baseline"
                );
            }
            s => panic!("second step {s:?}"),
        }
        match &steps[2] {
            Step::Snl { role: Role::Linearize, args, dir } => {
                assert_eq!(dir, Path::new("/tmp/sw/snl-30pct"));
                assert_eq!(
                    shell_line("snl", args),
                    "snl --seed 0 linearize --model /tmp/sw/baseline/best.safetensors --budget 30% \
                     --selection snl --dataset synthetic --batch-size 64 --lasso 1e-3 --search-lr 0.05 \
                     --warmup-epochs 0 --max-search-epochs 50 --finetune-epochs 1 --out /tmp/sw/snl-30pct"
                );
            }
            s => panic!("third step {s:?}"),
        }
        let dirs: Vec<String> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Snl { role: Role::Linearize, dir, .. } => {
                    Some(dir.file_name().unwrap().to_string_lossy().into_owned())
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            dirs,
            ["snl-30pct", "snl-60pct", "random-30pct", "random-60pct", "uniform-30pct", "uniform-60pct"]
        );
        let text = plan_text(&steps, Path::new("target/debug/snl"));
        assert!(text[1].starts_with("$ target/debug/snl --seed 0 train"));
    }

    fn args_vec(s: &str) -> Vec<String> {
        args(s)
    }

    #[test]
    fn plan_resumes_and_skips() {
        let o = opts("--preset smoke --out /s --selections snl --budgets 10%,20%,30% --snl /bin/snl");
        let state = |d: &Path| match d.file_name().unwrap().to_str().unwrap() {
            "baseline" | "snl-10pct" => RunState::Finished,
            "snl-20pct" => RunState::Unfinished,
            _ => RunState::Absent,
        };
        let steps = plan(&o, &state);
        assert_eq!(steps.len(), 4, "no build with --snl: {steps:?}");
        assert!(matches!(&steps[0], Step::Skip { role: Role::Baseline, .. }));
        assert!(matches!(&steps[1], Step::Skip { role: Role::Linearize, .. }));
        match &steps[2] {
            Step::Snl { args, .. } => {
                assert_eq!(shell_line("snl", args), "snl --seed 0 linearize --resume /s/snl-20pct")
            }
            s => panic!("{s:?}"),
        }
        assert!(matches!(&steps[3], Step::Snl { role: Role::Linearize, .. }));
    }

    #[test]
    fn a_lasso_list_gives_each_budget_its_own_lambda() {
        let lassos = |o: &Options| -> Vec<String> {
            plan(o, &|_| RunState::Absent)
                .iter()
                .filter_map(|s| match s {
                    Step::Snl { role: Role::Linearize, args, .. } => {
                        let at = args.iter().position(|a| a == "--lasso").expect("--lasso");
                        Some(args[at + 1].clone())
                    }
                    _ => None,
                })
                .collect()
        };
        let o =
            opts("--preset smoke --out /s --selections snl --budgets 10%,20% --lasso 1e-2,2e-3 --snl /s/snl");
        assert_eq!(lassos(&o), ["1e-2", "2e-3"]);
        let o = opts(
            "--preset smoke --out /s --selections snl,random --budgets 10%,20% --lasso 5e-4 --snl /s/snl",
        );
        assert_eq!(lassos(&o), ["5e-4"; 4]);
        // The cpu preset's list has one value per budget; other budgets need their own.
        let cpu = opts("--preset cpu --selections snl --snl /s/snl");
        assert_eq!(lassos(&cpu), ["1e-2", "4e-3", "1e-3", "3e-4"]);
        let root = Path::new("/w");
        let cpu = opts("--preset cpu --selections snl --budgets 20%,3% --snl /s/snl");
        assert_eq!(lassos(&cpu), ["3e-4", "4e-3"], "the preset's lambdas of those budgets");
        let err = parse_options(&args_vec("--preset cpu --budgets 5%,10%"), root).unwrap_err();
        assert_eq!(
            err,
            "--budgets 5%: preset cpu has a lambda for its own budgets only (1%,3%,10%,20%); give --lasso"
        );
        // As many budgets as the preset has lambdas, none of them its own: not by position.
        let err = parse_options(&args_vec("--preset cpu --budgets 2%,4%,8%,16%"), root).unwrap_err();
        assert!(err.starts_with("--budgets 2%,4%,8%,16%: preset cpu has a lambda for its own"), "{err}");
        let cpu = opts("--preset cpu --selections snl --budgets 0.2,1%,0.03,10% --snl /s/snl");
        assert_eq!(lassos(&cpu), ["3e-4", "1e-2", "4e-3", "1e-3"], "matched by budget, any spelling");
        let err = parse_options(&args_vec("--budgets 10%,20% --lasso 1e-2,2e-3,1e-4"), root).unwrap_err();
        assert!(err.contains("3 values for 2 budget(s)"), "{err}");
        let err = parse_options(&args_vec("--budgets 5% --lasso 1e-3,x"), root).unwrap_err();
        assert!(err.contains("`x` is not a number"), "{err}");
        assert!(parse_options(&args_vec("--preset cpu --budgets 5%,10% --lasso 1e-3"), root).is_ok());
    }

    #[test]
    fn plan_with_a_given_baseline_trains_nothing() {
        let o =
            opts("--preset paper --baseline pre/best.safetensors --selections random --budgets 5k --seed 3");
        let steps = plan(&o, &|_| RunState::Absent);
        match &steps[0] {
            Step::Build { args, .. } => {
                assert_eq!(args, &args_vec("build --release -p snl-cli --features cuda"))
            }
            s => panic!("{s:?}"),
        }
        assert_eq!(steps.len(), 2);
        match &steps[1] {
            Step::Snl { args, .. } => {
                let line = shell_line("snl", args);
                assert!(line.starts_with("snl --seed 3 --device cuda linearize --model pre/best.safetensors --budget 5000 --selection random"), "{line}");
                assert!(line.contains("--finetune-epochs 100"));
            }
            s => panic!("{s:?}"),
        }
    }

    fn row(name: &str, sel: &str, relus: u64, acc: f64) -> Row {
        Row {
            name: name.into(),
            selection: sel.into(),
            relu_count: Some(relus),
            relu_total: Some(1000),
            test_top1: Some(acc),
            ..Row::default()
        }
    }

    #[test]
    fn pareto_front_keeps_non_dominated_points() {
        let pts = [(100.0, 50.0), (200.0, 60.0), (300.0, 55.0), (50.0, 50.0), (200.0, 60.0), (400.0, 70.0)];
        assert_eq!(pareto_front(&pts), vec![false, true, false, true, true, true]);
        assert_eq!(pareto_front(&[]), Vec::<bool>::new());
        assert_eq!(pareto_front(&[(1.0, 1.0)]), vec![true]);
    }

    #[test]
    fn fronts_are_per_selection() {
        let mut rows = vec![
            row("snl-a", "snl", 100, 80.0),
            row("snl-b", "snl", 200, 79.0),
            row("random-a", "random", 100, 60.0),
            row("random-b", "random", 200, 70.0),
            Row { name: "broken".into(), selection: "snl".into(), ..Row::default() },
        ];
        mark_fronts(&mut rows);
        let on: Vec<bool> = rows.iter().map(|r| r.pareto).collect();
        assert_eq!(on, vec![true, false, true, true, false]);
    }

    #[test]
    fn rows_from_result_json() {
        let v: Value = serde_json::from_str(
            r#"{"command":"linearize","selection":"uniform","budget":500,"relu_count":498,"relu_total":1000,
                "val":{"samples":10,"top1":40.0,"top5":90.0,"loss":1.5},
                "test":{"samples":10,"top1":42.5,"top5":91.0,"loss":1.4},
                "wall_time_s":3.25,"seed":0,"dataset":"synthetic","arch":"resnet18","best_epoch":1}"#,
        )
        .unwrap();
        let r = Row::from_result("uniform-50pct", Path::new("x/uniform-50pct"), &v);
        assert_eq!(r.selection, "uniform");
        assert_eq!(r.point(), Some((498.0, 42.5)));
        assert_eq!(r.val_top5, Some(90.0));
        let t: Value =
            serde_json::from_str(r#"{"command":"train","selection":null,"budget":null,"relu_count":1000}"#)
                .unwrap();
        let b = Row::from_result("baseline", Path::new("x/baseline"), &t);
        assert_eq!((b.selection.as_str(), b.budget, b.test_top1), ("baseline", None, None));
    }

    #[test]
    fn csv_has_a_header_and_a_row_per_run() {
        let mut rows = vec![row("snl-10pct", "snl", 100, 80.5), row("base,line", "baseline", 1000, 90.0)];
        mark_fronts(&mut rows);
        sort_rows(&mut rows);
        let csv = to_csv(&rows);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], CSV_HEADER);
        let cols = CSV_HEADER.split(',').count();
        assert_eq!(lines[2].split(',').count(), cols);
        assert!(lines[1].starts_with("\"base,line\",baseline,,1000,1000,1.000000,90,"), "{}", lines[1]);
        assert!(lines[2].starts_with("snl-10pct,snl,,100,1000,0.100000,80.5,"), "{}", lines[2]);
        assert!(lines[2].contains(",true,"));
    }

    #[test]
    fn json_round_trips() {
        let mut rows = vec![row("snl-10pct", "snl", 100, 80.5), row("random-10pct", "random", 100, 70.0)];
        mark_fronts(&mut rows);
        let paper = paper_series("cifar10", "resnet18");
        let v: Value = serde_json::from_str(&to_json(&rows, paper.as_ref())).unwrap();
        let runs = v["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0]["run"], "snl-10pct");
        assert_eq!(runs[0]["relu_count"], 100);
        assert_eq!(runs[0]["test_top1"], 80.5);
        assert_eq!(runs[0]["pareto"], true);
        assert_eq!(v["paper"]["points"].as_array().unwrap().len(), 3);
        let none: Value = serde_json::from_str(&to_json(&[], None)).unwrap();
        assert!(none["paper"].is_null());
    }

    #[test]
    fn paper_points_follow_the_dataset() {
        let p = preset("cpu", Path::new("/w/main")).unwrap();
        assert_eq!(paper_dataset(&p.data).as_deref(), Some("cifar10"));
        assert_eq!(paper_series("cifar100", "resnet18").unwrap().points.len(), 6);
        assert_eq!(paper_series("cifar10", "wrn-22-8").unwrap().points, vec![(300_000.0, 95.06)]);
        assert!(paper_series("synthetic", "resnet18").is_none());
        assert_eq!(paper_dataset(&preset("smoke", Path::new("/w")).unwrap().data), None);
    }

    #[test]
    fn collect_reads_finished_runs_only() {
        let dir = std::env::temp_dir().join(format!("xtask-collect-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, result) in [
            ("baseline", Some(r#"{"command":"train","relu_count":10,"relu_total":10,"test":{"top1":90}}"#)),
            (
                "snl-50pct",
                Some(r#"{"command":"linearize","selection":"snl","relu_count":5,"test":{"top1":80}}"#),
            ),
            ("random-50pct", None),
        ] {
            std::fs::create_dir_all(dir.join(name)).unwrap();
            if let Some(r) = result {
                std::fs::write(dir.join(name).join("result.json"), r).unwrap();
            } else {
                std::fs::write(dir.join(name).join("config.json"), "{}").unwrap();
            }
        }
        assert_eq!(run_state(&dir.join("baseline")), RunState::Finished);
        assert_eq!(run_state(&dir.join("random-50pct")), RunState::Unfinished);
        assert_eq!(run_state(&dir.join("nothing")), RunState::Absent);
        let dirs: Vec<PathBuf> =
            ["baseline", "snl-50pct", "random-50pct", "nothing"].iter().map(|n| dir.join(n)).collect();
        let rows = collect(&dirs);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["baseline", "snl-50pct"]);
        assert!(collect(&dirs[1..]).iter().all(|r| r.name != "baseline"), "only the folders given");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_record_holds_what_decides_each_run() {
        let o =
            opts("--preset smoke --out /s --selections snl --budgets 10%,20% --lasso 1e-2,2e-3 --threads 2");
        let runs = planned_settings(&o);
        assert_eq!(runs.keys().collect::<Vec<_>>(), ["baseline", "snl-10pct", "snl-20pct"]);
        let run = &runs["snl-20pct"];
        assert_eq!(run.get("lasso").map(String::as_str), Some("2e-3"));
        assert_eq!(run.get("model").map(String::as_str), Some("/s/baseline/best.safetensors"));
        assert_eq!(run.get("seed").map(String::as_str), Some("0"));
        assert_eq!((run.get("out"), run.get("threads")), (None, None), "not settings");
        assert_eq!(runs["baseline"].get("width").map(String::as_str), Some("4"));
    }

    #[test]
    fn a_rerun_with_other_settings_is_refused() {
        let planned = |list: &str| planned_settings(&opts(&format!("--preset smoke --out /s {list}")));
        let nothing_on_disk = |_: &str| false;
        let first = planned("--budgets 10%,20% --lasso 1e-2,2e-3");
        let record = merge_record(Path::new("/s"), &Settings::new(), &first, &nothing_on_disk).unwrap();
        assert_eq!(record, first);
        // The same settings, fewer runs, or more budgets: the record grows.
        let same = |list: &str| merge_record(Path::new("/s"), &record, &planned(list), &|_: &str| true);
        assert_eq!(same("--budgets 10%,20% --lasso 1e-2,2e-3 --threads 1").unwrap(), record);
        assert_eq!(same("--budgets 20% --lasso 2e-3 --selections random").unwrap(), record);
        let more = same("--budgets 10%,40% --lasso 1e-2,1e-4").unwrap_err();
        assert!(more.contains("holds run folders that /s/sweep.json does not record"), "{more}");
        let grown = merge_record(
            Path::new("/s"),
            &record,
            &planned("--budgets 10%,40% --lasso 1e-2,1e-4"),
            &nothing_on_disk,
        )
        .unwrap();
        assert!(grown.contains_key("snl-40pct") && grown.contains_key("snl-20pct"));
        // Another seed, lambda, search lr or baseline.
        let err = same("--budgets 10%,20% --lasso 1e-2,2e-3 --seed 1").unwrap_err();
        assert_eq!(
            err,
            "/s/sweep.json records other settings: --seed was 0, now 1 (baseline and 6 more); choose \
             another --out for a new sweep (nothing was run)"
        );
        let err = same("--budgets 10%,20% --lasso 1e-2,1e-3 --search-lr 0.1").unwrap_err();
        assert!(err.contains("--lasso was 2e-3, now 1e-3 (random-20pct and 2 more)"), "{err}");
        assert!(err.contains("--search-lr was 0.05, now 0.1 (random-10pct and 5 more)"), "{err}");
        let err = same("--budgets 10%,20% --lasso 1e-2,2e-3 --baseline /b/best.safetensors").unwrap_err();
        assert!(err.contains("--model was /s/baseline/best.safetensors, now /b/best.safetensors"), "{err}");
        let err = same("--budgets 10%,20% --lasso 1e-2,2e-3 --width 8").unwrap_err();
        assert!(err.contains("--width was 4, now 8 (baseline)"), "{err}");
    }

    #[test]
    fn shell_lines_quote_what_needs_it() {
        let line = shell_line(
            "snl",
            &args_vec("--out a").into_iter().chain(["b c".to_string(), "it's".into()]).collect::<Vec<_>>(),
        );
        assert_eq!(line, r"snl --out a 'b c' 'it'\''s'");
    }
}
