//! `cargo xtask pareto`'s command line (clap) and the options it resolves to: a preset with
//! the user's overrides applied.

use std::path::{Path, PathBuf};

use clap::Parser;
use snl_budget::Budget;

use super::preset::{self, Preset};
use crate::selection;

const ABOUT: &str = "Sweep ReLU budgets with `snl linearize` from one pretrained baseline: one run \
folder per (selection, budget, seed), OUT/<selection>-<budget>-s<seed>. Then write OUT/pareto.csv, \
pareto.json, pareto.svg, pareto.md (mean and min-max over seeds; pareto.png when rsvg-convert or ImageMagick \
is installed) and OUT/<run>/sites.svg.";

const AFTER: &str = "\
For each (budget, seed) the SNL run goes first; `random` and `uniform` then train as long: they get
`--search-steps N`, N being that SNL run's `search_steps` (its result.json; its last search epoch
may end early, at the budget), so the controls' commands are completed when they run. Finished runs (result.json) are skipped, unfinished ones
(config.json) resumed with `snl linearize --resume`: re-running the same command continues a sweep.
OUT/sweep.json records the settings of every run (all but --threads and --device): a re-run that
changes one is refused, so is a run folder the record does not know. More budgets, seeds or
selections may be added. A failing run is reported and the sweep goes on; the exit code is then 1.

Presets:
  smoke        synthetic data, ResNet18 width 4, 2 training epochs, budgets 30%,60%, seed 0,
               1 finetuning epoch: about a minute on 2 cores (CI)
  cifar10-w16  issue 15's study: CIFAR-10 from ../shared/data/cifar10-jpeg (--dataset folder),
               ResNet18 width 16 (122,880 ReLUs), baseline 160 epochs (SGD 0.1, cosine),
               budgets 3225,6250,12350,24975 (the paper's fractions), seeds 0,1, one search
               schedule for every budget (lambda0 1e-3, kappa 2 after 1 epoch, Adam 0.01),
               8 finetuning epochs
  paper        ResNet18 width 64 on CIFAR-10, the authors' schedule (160 epochs, lambda 1e-5,
               Adam 1e-3, 100 finetuning epochs), budgets 12.9k..180k, --device cuda; builds
               the binary with --features cuda (needs nvcc)";

/// Later flags replace earlier ones (`args_override_self`): a Slurm task's command line is
/// the user's with `--out`, `--snl` and `--task` appended.
#[derive(Debug, Parser)]
#[command(about = ABOUT, after_help = AFTER, args_override_self = true, allow_negative_numbers = true)]
pub struct Args {
    /// The settings to start from (see Presets below)
    #[arg(long, default_value = "smoke", value_parser = preset::NAMES)]
    pub preset: String,
    /// Budgets, e.g. 1%,2%,5% or 5k,12900 or 0.05 (default: the preset's)
    #[arg(long, value_name = "LIST", value_parser = budget_list)]
    pub budgets: Option<BudgetList>,
    /// Any of snl,random,uniform (default: all three)
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = selection::LINEARIZE)]
    pub selections: Option<Vec<String>>,
    /// Seeds of the linearize runs, e.g. 0,1; the baseline trains with the first (default: the preset's)
    #[arg(long, alias = "seed", value_name = "LIST", value_delimiter = ',')]
    pub seeds: Option<Vec<u64>>,
    /// Sweep folder (default: runs/pareto-<preset>)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Linearize this model; else train one in OUT/baseline
    #[arg(long, value_name = "MODEL")]
    pub baseline: Option<PathBuf>,
    /// Print the plan (every command, skipped runs) and a compute estimate, and stop
    #[arg(long)]
    pub dry_run: bool,
    /// Collect the finished runs OUT/sweep.json records into pareto.csv, pareto.json, pareto.svg,
    /// pareto.md; run nothing. A broken result.json is an error (exit 1) that leaves them as they were
    #[arg(long, conflicts_with = "dry_run")]
    pub collect_only: bool,
    /// Also copy pareto.*, sweep.json and each finished run's config.json, metrics.jsonl,
    /// result.json and sites.svg (never a checkpoint) into DIR/ and DIR/<run>/: a results folder
    #[arg(long, value_name = "DIR", conflicts_with_all = ["dry_run", "task", "status"])]
    pub publish: Option<PathBuf>,
    /// Run only this planned run (a Slurm array task): skipped when finished, else resumed or started
    #[arg(long, value_name = "RUN", conflicts_with_all = ["dry_run", "collect_only"])]
    pub task: Option<String>,
    /// Print how many runs of the sweep in OUT are finished, unfinished or not started, the
    /// failures, and finished runs whose result.json is broken (then exit 1)
    #[arg(long, value_name = "OUT", conflicts_with_all = ["dry_run", "collect_only", "task"])]
    pub status: Option<PathBuf>,
    /// local: run here; slurm: submit the sweep with sbatch
    #[arg(long, default_value = "local", value_parser = ["local", "slurm"])]
    pub executor: String,
    /// Runs at once here (each then gets the cores / N threads unless --threads is given, and
    /// writes its output to OUT/logs/<run>.log; the baseline, which runs alone, keeps every core)
    #[arg(long, value_name = "N", default_value_t = 1, conflicts_with_all = ["task", "status", "collect_only"])]
    pub jobs: usize,
    /// Seconds per epoch for the estimate (default: measured in OUT's metrics.jsonl, else the preset's)
    #[arg(long, value_name = "S")]
    pub epoch_seconds: Option<f64>,
    /// Build and use target/debug/snl (quick to compile) instead of release
    #[arg(long)]
    pub debug: bool,
    /// Use this snl binary; do not build
    #[arg(long, value_name = "PATH")]
    pub snl: Option<PathBuf>,
    /// Do not run cargo build (use the binary already in target/)
    #[arg(long)]
    pub no_build: bool,
    /// Draw the paper's SNL points of DATA (cifar10, cifar100, tiny-imagenet; default: the preset's dataset)
    #[arg(long, value_name = "DATA")]
    pub paper_points: Option<String>,
    /// Draw no paper points
    #[arg(long, conflicts_with = "paper_points")]
    pub no_paper_points: bool,
    /// Do not draw the per-site bar chart of each run
    #[arg(long)]
    pub no_sites: bool,
    /// Override the preset's dataset (with --data-dir DIR)
    #[arg(long)]
    pub dataset: Option<String>,
    /// Override the preset's data folder
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// ResNet width of the baseline
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub width: Option<usize>,
    /// cpu, cuda, cuda:N
    #[arg(long)]
    pub device: Option<String>,
    /// CPU threads of every run
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub threads: Option<usize>,
    /// Baseline epochs
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub train_epochs: Option<usize>,
    /// Batch size of every run
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub batch_size: Option<usize>,
    /// Initial lasso coefficient lambda of every SNL search
    #[arg(long, value_name = "X", value_parser = positive, help_heading = "snl linearize (every run)")]
    pub lasso: Option<String>,
    /// Lambda's growth factor when the ReLU count stalls (above 1)
    #[arg(long, value_name = "X", value_parser = above_one, help_heading = "snl linearize (every run)")]
    pub kappa: Option<String>,
    /// Search epochs before lambda may grow
    #[arg(long, value_name = "N", help_heading = "snl linearize (every run)")]
    pub warmup_epochs: Option<usize>,
    /// Adam learning rate of the search (and of a control's frozen-mask epochs)
    #[arg(long, value_name = "X", value_parser = positive, help_heading = "snl linearize (every run)")]
    pub search_lr: Option<String>,
    /// The longest search
    #[arg(long, value_name = "N", value_parser = at_least_one, help_heading = "snl linearize (every run)")]
    pub max_search_epochs: Option<usize>,
    /// Finetuning epochs, the same for every selection
    #[arg(long, value_name = "N", help_heading = "snl linearize (every run)")]
    pub finetune_epochs: Option<usize>,
    /// Finetuning SGD learning rate
    #[arg(long, value_name = "X", value_parser = positive, help_heading = "snl linearize (every run)")]
    pub finetune_lr: Option<String>,
    #[command(flatten)]
    pub slurm: super::slurm::SlurmFlags,
}

/// `--budgets`' value: the whole list, so two spellings of one budget are refused.
#[derive(Debug, Clone)]
pub struct BudgetList(pub Vec<Budget>);

fn budget_list(text: &str) -> Result<BudgetList, String> {
    Budget::parse_list(text).map(BudgetList).map_err(|e| e.to_string())
}

// The checks below are `snl`'s own (it refuses the same values), made here too so a sweep
// fails at once rather than after its baseline's hours of training.

/// A number above `min` given to `snl` as typed (so the sweep record compares the user's
/// spelling).
fn number_above(text: &str, min: f64) -> Result<String, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > min => Ok(text.trim().to_string()),
        Ok(v) if v.is_finite() => Err(format!("`{text}`: expected a number above {min}")),
        _ => Err(format!("`{text}` is not a number")),
    }
}

fn positive(text: &str) -> Result<String, String> {
    number_above(text, 0.0)
}

fn above_one(text: &str) -> Result<String, String> {
    number_above(text, 1.0)
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{text}`: expected a whole number of 1 or more")),
    }
}

/// What this invocation does.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Run (or, with `--dry-run`, print) the whole sweep.
    Sweep,
    CollectOnly,
    /// One planned run, by folder name.
    Task(String),
    /// Report on the sweep in this folder.
    Status(PathBuf),
}

/// Which paper points the figure shows.
#[derive(Debug, Clone, PartialEq)]
pub enum PaperPoints {
    /// Those of the preset's dataset, if the paper has any.
    Preset,
    Dataset(String),
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub mode: Mode,
    /// Submit with sbatch instead of running here.
    pub slurm: Option<super::slurm::SlurmFlags>,
    pub preset: Preset,
    /// In `selection::LINEARIZE`'s order, without repeats.
    pub selections: Vec<String>,
    pub out: PathBuf,
    pub baseline: Option<PathBuf>,
    pub dry_run: bool,
    pub epoch_seconds: Option<f64>,
    pub debug: bool,
    pub snl: Option<PathBuf>,
    pub build: bool,
    pub paper_points: PaperPoints,
    pub sites: bool,
    /// Where `--publish` copies the results.
    pub publish: Option<PathBuf>,
    pub threads: Option<usize>,
    /// The baseline's threads: it always runs alone (every other run needs it), so when
    /// `--jobs` split the cores it still gets them all.
    pub baseline_threads: Option<usize>,
    /// Runs at once (local executor), at most one per core.
    pub jobs: usize,
    /// What was changed from the command line and why, to print (`--jobs` above the cores).
    pub note: Option<String>,
}

impl Options {
    /// The preset named by `a`, with `a`'s overrides; `root` is the workspace (data paths).
    pub fn new(a: Args, root: &Path) -> Result<Options, String> {
        let mut p = preset::preset(&a.preset, root)?;
        if let Some(BudgetList(b)) = a.budgets {
            p.budgets = b;
        }
        if let Some(seeds) = a.seeds {
            let mut unique: Vec<u64> = Vec::new();
            for s in seeds {
                if unique.contains(&s) {
                    return Err(format!("--seeds: {s} is given twice"));
                }
                unique.push(s);
            }
            p.seeds = unique;
        }
        if let Some(d) = a.dataset {
            p.data.set("dataset", d);
            p.data.remove("data-dir");
        }
        if let Some(d) = a.data_dir {
            p.data.set("data-dir", d);
        }
        if let Some(w) = a.width {
            p.model.set("width", w.to_string());
        }
        if let Some(d) = a.device {
            p.global.set("device", d);
        }
        if let Some(e) = a.train_epochs {
            p.train.set("epochs", e.to_string());
        }
        if let Some(b) = a.batch_size {
            p.data.set("batch-size", b.to_string());
            p.train.remove("batch-size");
            p.linearize.remove("batch-size");
        }
        let knobs = [
            ("lasso", a.lasso),
            ("kappa", a.kappa),
            ("warmup-epochs", a.warmup_epochs.map(|n| n.to_string())),
            ("search-lr", a.search_lr),
            ("max-search-epochs", a.max_search_epochs.map(|n| n.to_string())),
            ("finetune-epochs", a.finetune_epochs.map(|n| n.to_string())),
            ("finetune-lr", a.finetune_lr),
        ];
        for (flag, value) in knobs {
            if let Some(v) = value {
                p.linearize.set(flag, v);
            }
        }
        if let Some(s) = a.epoch_seconds
            && !(s.is_finite() && s > 0.0)
        {
            return Err(format!("--epoch-seconds {s}: expected a positive number"));
        }
        let given = a.selections.unwrap_or_else(|| selection::LINEARIZE.map(String::from).to_vec());
        if let Some(twice) = given.iter().enumerate().find_map(|(i, s)| given[..i].contains(s).then_some(s)) {
            return Err(format!("--selections: {twice} is given twice"));
        }
        let selections = selection::LINEARIZE
            .iter()
            .filter(|s| given.iter().any(|g| g == *s))
            .map(|s| s.to_string())
            .collect();
        let mode = match (a.collect_only, a.task, a.status) {
            (_, Some(run), _) => Mode::Task(run),
            (_, _, Some(out)) => Mode::Status(out),
            (true, _, _) => Mode::CollectOnly,
            _ => Mode::Sweep,
        };
        let slurm = match a.executor.as_str() {
            "slurm" if mode != Mode::Sweep => {
                return Err(
                    "--executor slurm submits a whole sweep: drop --task, --collect-only or --status".into(),
                );
            }
            "slurm" if a.publish.is_some() => {
                return Err("--publish with --executor slurm: the jobs run later; publish with \
                            --collect-only --publish DIR once they ended"
                    .into());
            }
            "slurm" => Some(a.slurm),
            _ => match a.slurm.first_given() {
                Some(flag) => return Err(format!("{flag} is a Slurm flag: give --executor slurm")),
                None => None,
            },
        };
        if a.jobs == 0 {
            return Err("--jobs 0: expected 1 or more runs at once".into());
        }
        if slurm.is_some() && a.jobs > 1 {
            return Err(
                "--jobs is for --executor local: Slurm runs the array tasks side by side itself".into()
            );
        }
        // More runs at once than cores only slows each down; side by side they share the cores
        // instead of each taking them all.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let jobs = a.jobs.min(cores);
        let note = (jobs < a.jobs).then(|| {
            format!("--jobs {}: this machine has {cores} cores; running at most {jobs} runs at once", a.jobs)
        });
        let threads = a.threads.or_else(|| (jobs > 1).then(|| (cores / jobs).max(1)));
        let baseline_threads = a.threads.or_else(|| (jobs > 1).then_some(cores));
        let paper_points = match (a.no_paper_points, a.paper_points) {
            (true, _) => PaperPoints::None,
            (false, Some(d)) => PaperPoints::Dataset(d),
            (false, None) => PaperPoints::Preset,
        };
        Ok(Options {
            mode,
            slurm,
            out: a.out.unwrap_or_else(|| PathBuf::from(format!("runs/pareto-{}", p.name))),
            preset: p,
            selections,
            baseline: a.baseline,
            dry_run: a.dry_run,
            epoch_seconds: a.epoch_seconds,
            debug: a.debug,
            snl: a.snl,
            build: !a.no_build,
            paper_points,
            sites: !a.no_sites,
            publish: a.publish,
            threads,
            baseline_threads,
            jobs,
            note,
        })
    }

    /// Parse a command line (tests, and `main` through `crate::parse_args`).
    #[cfg(test)]
    pub fn parse(line: &str, root: &Path) -> Result<Options, String> {
        let argv = std::iter::once("pareto").chain(line.split_whitespace());
        let args = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        Options::new(args, root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(line: &str) -> Options {
        Options::parse(line, Path::new("/repo/main")).unwrap()
    }

    #[test]
    fn options_override_the_preset() {
        let o = opts(
            "--preset cifar10-w16 --budgets 1%,20% --selections uniform,snl --train-epochs 3 \
             --finetune-epochs=4 --threads 2 --kappa 2 --seeds 3,1",
        );
        assert_eq!(o.preset.budgets, [Budget::Fraction(0.01), Budget::Fraction(0.2)]);
        assert_eq!(o.selections, ["snl", "uniform"], "in the canonical order");
        assert_eq!(o.preset.seeds, [3, 1], "the baseline trains with the first");
        assert_eq!(o.preset.train.get("epochs"), Some("3"));
        assert_eq!(o.preset.linearize.get("finetune-epochs"), Some("4"));
        assert_eq!(o.preset.linearize.get("kappa"), Some("2"));
        assert_eq!(o.preset.data.get("data-dir"), Some("/repo/shared/data/cifar10-jpeg"));
        assert_eq!(o.out, PathBuf::from("runs/pareto-cifar10-w16"));
        assert_eq!(o.threads, Some(2));
        assert_eq!(o.paper_points, PaperPoints::Preset);
        assert_eq!(opts("--seed 5").preset.seeds, [5], "--seed N is a list of one");
        assert_eq!(opts("--preset cifar10-w16 --dataset cifar100").preset.data.get("data-dir"), None);
        assert_eq!(opts("--no-paper-points").paper_points, PaperPoints::None);
        assert_eq!(opts("--out a --out b").out, PathBuf::from("b"), "the last flag counts");
        assert_eq!(opts("--task snl-30pct-s0").mode, Mode::Task("snl-30pct-s0".into()));
        assert_eq!(opts("--status runs/x").mode, Mode::Status("runs/x".into()));
        assert_eq!(opts("--collect-only").mode, Mode::CollectOnly);
        let slurm =
            opts("--executor slurm --partition p --sbatch-arg=--qos=low --sbatch-arg --nice").slurm.unwrap();
        assert_eq!((slurm.partition.as_deref(), slurm.sbatch_arg.len()), (Some("p"), 2));
        assert_eq!(opts("--lasso 1e-4").preset.linearize.get("lasso"), Some("1e-4"), "as typed");
        assert_eq!(
            (o.jobs, opts("").jobs, opts("").threads),
            (1, 1, None),
            "one run at a time, snl's threads"
        );
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let two = opts("--jobs 2");
        assert!(two.threads.is_some_and(|t| t >= 1), "side by side, each gets its share of the cores");
        let baseline_threads = (cores > 1).then_some(cores);
        assert_eq!(two.baseline_threads, baseline_threads, "the baseline runs alone, on every core");
        assert_eq!(opts("--jobs 2 --threads 3").threads, Some(3), "as given");
        assert_eq!(opts("--jobs 2 --threads 3").baseline_threads, Some(3), "as given");
        let many = opts("--jobs 100000");
        assert_eq!((many.jobs, many.threads), (cores, (cores > 1).then_some(1)), "one run per core");
        assert!(many.note.is_some_and(|n| n.starts_with("--jobs 100000: this machine has")));
        assert_eq!(opts("--jobs 1").note, None);
    }

    #[test]
    fn bad_options_are_refused_with_the_value() {
        let err = |line: &str| Options::parse(line, Path::new("/r")).unwrap_err();
        assert!(err("--preset cpu").contains("invalid value 'cpu'"), "the cpu preset is gone");
        assert!(err("--bogus 1").contains("--bogus"));
        assert!(err("--selections snl,best").contains("'best'"));
        assert!(err("--budgets 10%,0.1").contains("`10%` and `0.1` are the same budget (10%)"));
        assert!(err("--budgets 1.5").contains("bad budget `1.5`"));
        assert!(err("--lasso x").contains("`x` is not a number"));
        assert!(err("--seeds 0,0").contains("--seeds: 0 is given twice"));
        assert!(err("--seeds a").contains("'a'"));
        assert!(err("--epoch-seconds 0").contains("--epoch-seconds 0"));
        assert!(err("--paper-points cifar10 --no-paper-points").contains("cannot be used with"));
        assert!(err("--partition gpu").contains("--partition is a Slurm flag: give --executor slurm"));
        assert!(err("--executor slurm --task snl-10pct-s0").contains("drop --task"));
        assert!(err("--executor slurm --publish r").contains("publish with --collect-only --publish DIR"));
        assert!(err("--executor pbs").contains("'pbs'"));
        assert!(err("--jobs 0").contains("--jobs 0"));
        assert!(err("--jobs 2 --executor slurm").contains("--jobs is for --executor local"));
        assert!(err("--jobs 2 --task snl-30pct-s0").contains("cannot be used with"));
        assert_eq!(opts("--budgets 1.5m").preset.budgets, [Budget::Count(1_500_000)], "snl's grammar");
    }
}
