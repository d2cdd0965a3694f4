//! The plan: every step of a sweep, built from the options and what each run folder holds
//! (pure: the disk is asked through a function). Also what `--dry-run` prints: the commands
//! and a compute estimate.

use std::path::{Path, PathBuf};

use snl_budget::Budget;

use super::args::Options;
use crate::cargo::{self, shell_line};
use crate::selection;

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
    Build { args: Vec<String> },
    /// One `snl` invocation (arguments after the program name).
    Snl {
        role: Role,
        dir: PathBuf,
        args: Vec<String>,
        /// A control's SNL run: `--search-steps` is its `search_steps`, known once it ran.
        search_of: Option<PathBuf>,
    },
    /// A finished run, left alone.
    Skip { role: Role, dir: PathBuf },
}

impl Step {
    /// The full `snl` arguments of a control, given its SNL run's search length.
    pub fn with_search_steps(args: &[String], n: u64) -> Vec<String> {
        let mut args = args.to_vec();
        args.extend(["--search-steps".into(), n.to_string()]);
        args
    }
}

/// Where the `snl` binary is (given, or in the target folder of this workspace).
pub fn snl_binary(o: &Options, root: &Path) -> PathBuf {
    o.snl.clone().unwrap_or_else(|| cargo::binary(root, "snl", !o.debug))
}

pub fn baseline_dir(o: &Options) -> PathBuf {
    o.out.join("baseline")
}

/// The model every linearize run starts from.
pub fn baseline_model(o: &Options) -> PathBuf {
    o.baseline.clone().unwrap_or_else(|| baseline_dir(o).join("best.safetensors"))
}

pub fn run_dir(out: &Path, selection: &str, budget: &Budget, seed: u64) -> PathBuf {
    out.join(format!("{selection}-{}-s{seed}", budget.label()))
}

/// A run folder's name (`snl-3225-s0`, `baseline`).
pub fn folder_name(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn global_args(o: &Options, seed: u64, threads: Option<usize>) -> Vec<String> {
    let mut args = vec!["--seed".to_string(), seed.to_string()];
    if let Some(t) = threads {
        args.extend(["--threads".into(), t.to_string()]);
    }
    o.preset.global.push_to(&mut args);
    args
}

/// Every step of the sweep, in order: build, baseline (first seed), then for each seed and
/// budget SNL and its controls. `state` says what a run folder holds.
pub fn plan(o: &Options, state: &dyn Fn(&Path) -> RunState) -> Vec<Step> {
    let mut steps = Vec::new();
    let p = &o.preset;
    if o.snl.is_none() && o.build {
        steps.push(Step::Build { args: cargo::snl_build_args(!o.debug, p.features.as_deref()) });
    }
    let run =
        |role, dir: PathBuf, mut args: Vec<String>, fresh: &dyn Fn(&mut Vec<String>), of| match state(&dir) {
            RunState::Finished => Step::Skip { role, dir },
            RunState::Unfinished => {
                args.extend(["--resume".into(), dir.display().to_string()]);
                Step::Snl { role, dir, args, search_of: None }
            }
            RunState::Absent => {
                fresh(&mut args);
                args.extend(["--out".into(), dir.display().to_string()]);
                Step::Snl { role, dir, args, search_of: of }
            }
        };
    let first_seed = p.seeds.first().copied().unwrap_or(0);
    if o.baseline.is_none() {
        let mut args = global_args(o, first_seed, o.baseline_threads);
        args.push("train".into());
        let fresh = |args: &mut Vec<String>| {
            p.model.push_to(args);
            p.data.push_to(args);
            p.train.push_to(args);
        };
        steps.push(run(Role::Baseline, baseline_dir(o), args, &fresh, None));
    }
    let model = baseline_model(o).display().to_string();
    for &seed in &p.seeds {
        for budget in &p.budgets {
            for sel in &o.selections {
                let mut args = global_args(o, seed, o.threads);
                args.push("linearize".into());
                let fresh = |args: &mut Vec<String>| {
                    args.extend(["--model".into(), model.clone()]);
                    args.extend(["--budget".into(), budget.to_string()]);
                    args.extend(["--selection".into(), sel.clone()]);
                    p.data.push_to(args);
                    p.linearize.push_to(args);
                };
                let snl = (sel != selection::SNL).then(|| run_dir(&o.out, selection::SNL, budget, seed));
                steps.push(run(Role::Linearize, run_dir(&o.out, sel, budget, seed), args, &fresh, snl));
            }
        }
    }
    steps
}

/// The plan as lines of text (what `--dry-run` prints); a control's search length is
/// shown as where it will come from.
pub fn plan_text(steps: &[Step], snl: &Path) -> Vec<String> {
    let snl = snl.display().to_string();
    steps
        .iter()
        .map(|s| match s {
            Step::Build { args } => {
                format!(
                    "$ (cd {}) {}",
                    cargo::workspace_root().display(),
                    shell_line(&cargo::program(), args)
                )
            }
            Step::Snl { args, search_of: None, .. } => format!("$ {}", shell_line(&snl, args)),
            Step::Snl { args, search_of: Some(from), .. } => format!(
                "$ {} --search-steps N  # N = search_steps in {}",
                shell_line(&snl, args),
                from.join("result.json").display()
            ),
            Step::Skip { dir, .. } => format!("# skip {}: finished (result.json)", dir.display()),
        })
        .collect()
}

/// Epochs that update weights in the runs still to run, as a range: an SNL search stops
/// anywhere from 1 to `--max-search-epochs` epochs, and a control trains as long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epochs {
    pub min: u64,
    pub max: u64,
}

/// The epochs still to run: the baseline's (it runs alone) and the linearize runs'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compute {
    pub baseline: u64,
    pub linearize: Epochs,
}

/// The epochs a run folder has logged, by phase (a control's frozen-mask epochs count as
/// search: they stand in for it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Logged {
    pub train: u64,
    pub search: u64,
    pub finetune: u64,
}

/// The epochs of the runs `steps` will run. `searched` gives the search length of a
/// finished SNL run, `logged` what a run folder has already logged: a run to resume has
/// only the rest to go, and once it finetunes its search is over.
pub fn epochs_to_run(
    o: &Options,
    steps: &[Step],
    searched: &dyn Fn(&Path) -> Option<u64>,
    logged: &dyn Fn(&Path) -> Logged,
) -> Compute {
    let flag = |f: &super::preset::Flags, name: &str, default: u64| {
        f.get(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(default)
    };
    let p = &o.preset;
    // `snl`'s own defaults where the preset leaves a flag out.
    let (train, finetune) = (flag(&p.train, "epochs", 160), flag(&p.linearize, "finetune-epochs", 100));
    let max_search = flag(&p.linearize, "max-search-epochs", 2000);
    let mut c = Compute { baseline: 0, linearize: Epochs { min: 0, max: 0 } };
    for step in steps {
        let Step::Snl { role, dir, .. } = step else { continue };
        let done = logged(dir);
        if *role == Role::Baseline {
            c.baseline += train.saturating_sub(done.train);
            continue;
        }
        let known = searched(&snl_run_of(dir));
        let (lo, hi) = match (done.finetune, known) {
            (1.., _) => (0, 0),
            (0, Some(n)) => (n.saturating_sub(done.search), n.saturating_sub(done.search)),
            // An unfinished search may have reached its budget in its last logged epoch.
            (0, None) => ((done.search == 0).into(), max_search.saturating_sub(done.search)),
        };
        let rest = finetune.saturating_sub(done.finetune);
        // Saturating: a huge --max-search-epochs or an edited result is an estimate, not a panic.
        c.linearize.min = c.linearize.min.saturating_add(lo.saturating_add(rest));
        c.linearize.max = c.linearize.max.saturating_add(hi.saturating_add(rest));
    }
    c
}

/// The SNL run whose search a run's search length follows (`random-3225-s0` ->
/// `snl-3225-s0`; an SNL run's is its own): see [`run_dir`].
fn snl_run_of(dir: &Path) -> PathBuf {
    let name = folder_name(dir);
    let rest = name.split_once('-').map_or(name.as_str(), |(_, rest)| rest);
    dir.with_file_name(format!("{}-{rest}", selection::SNL))
}

/// `--dry-run`'s estimate, saying how it is computed: the baseline alone, then the
/// linearize runs `jobs` at a time. Each figure of `seconds` (baseline, linearize) is that
/// of one run as it runs in the sweep, a linearize run beside the others.
pub fn estimate_text(c: Compute, seconds: [Option<(f64, String)>; 2], jobs: usize) -> String {
    let range = |a: u64, b: u64| if a == b { format!("{a}") } else { format!("{a}..{b}") };
    let e = c.linearize;
    let mut text = format!(
        "compute: {} baseline epochs and {} linearize epochs still to run (per linearize run \
         1..max-search-epochs search epochs, known once its SNL run finished, + finetuning \
         epochs; less what runs to resume have logged)",
        c.baseline,
        range(e.min, e.max)
    );
    let [Some((sb, source_b)), Some((sl, source_l))] = seconds else {
        return text + "; seconds per epoch unknown (give --epoch-seconds S)";
    };
    let hours = |n: u64| (c.baseline as f64 * sb + n as f64 * sl / jobs as f64) / 3600.0;
    let wall = if e.min == e.max {
        format!("{:.1}", hours(e.min))
    } else {
        format!("{:.1}..{:.1}", hours(e.min), hours(e.max))
    };
    text += &format!(" = {wall} h wall: the baseline's at {sb:.1} s per epoch ({source_b}), then ");
    if jobs > 1 {
        text += &format!("{jobs} linearize runs at once at {sl:.1} s per epoch each ({source_l})");
    } else {
        text += &format!("the linearize runs at {sl:.1} s per epoch ({source_l})");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(line: &str) -> Options {
        Options::parse(line, Path::new("/repo/main")).unwrap()
    }

    fn line(step: &Step) -> String {
        match step {
            Step::Snl { args, .. } => shell_line("snl", args),
            s => panic!("{s:?}"),
        }
    }

    fn names(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Snl { dir, .. } | Step::Skip { dir, .. } => Some(folder_name(dir)),
                Step::Build { .. } => None,
            })
            .collect()
    }

    #[test]
    fn a_fresh_smoke_sweep() {
        let o = opts("--preset smoke --debug --out /tmp/sw");
        let steps = plan(&o, &|_| RunState::Absent);
        assert_eq!(steps[0], Step::Build { args: cargo::snl_build_args(false, None) });
        assert_eq!(
            line(&steps[1]),
            "snl --seed 0 train --arch resnet18 --width 4 --dataset synthetic --batch-size 64 \
             --epochs 2 --schedule cosine --out /tmp/sw/baseline"
        );
        assert_eq!(
            line(&steps[2]),
            "snl --seed 0 linearize --model /tmp/sw/baseline/best.safetensors --budget 30% \
             --selection snl --dataset synthetic --batch-size 64 --lasso 1e-3 --search-lr 0.05 \
             --warmup-epochs 0 --max-search-epochs 50 --finetune-epochs 1 --out /tmp/sw/snl-30pct-s0"
        );
        assert_eq!(
            names(&steps),
            [
                "baseline",
                "snl-30pct-s0",
                "random-30pct-s0",
                "uniform-30pct-s0",
                "snl-60pct-s0",
                "random-60pct-s0",
                "uniform-60pct-s0"
            ]
        );
        // Controls wait for the SNL run of their budget and seed.
        match &steps[3] {
            Step::Snl { search_of, args, .. } => {
                assert_eq!(search_of.as_deref(), Some(Path::new("/tmp/sw/snl-30pct-s0")));
                assert!(!args.contains(&"--search-steps".to_string()));
                let full = Step::with_search_steps(args, 7);
                assert_eq!(full[full.len() - 2..], ["--search-steps", "7"]);
            }
            s => panic!("{s:?}"),
        }
        let text = plan_text(&steps, Path::new("target/debug/snl"));
        assert!(text[1].starts_with("$ target/debug/snl --seed 0 train"));
        assert!(
            text[3].ends_with("--search-steps N  # N = search_steps in /tmp/sw/snl-30pct-s0/result.json")
        );
    }

    #[test]
    fn side_by_side_runs_share_the_cores_but_the_baseline_keeps_them() {
        let threads = |line: &str| -> Vec<Option<String>> {
            plan(&opts(line), &|_| RunState::Absent)
                .iter()
                .filter_map(|s| match s {
                    Step::Snl { args, .. } => {
                        Some(args.iter().position(|a| a == "--threads").map(|i| args[i + 1].clone()))
                    }
                    _ => None,
                })
                .collect()
        };
        let given = threads("--preset smoke --out /s --snl /bin/snl --threads 3 --jobs 2");
        assert!(given.iter().all(|t| t.as_deref() == Some("3")), "{given:?}");
        assert!(threads("--preset smoke --out /s --snl /bin/snl").iter().all(Option::is_none));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cores > 1 {
            let shared = threads("--preset smoke --out /s --snl /bin/snl --jobs 2");
            assert_eq!(shared[0], Some(cores.to_string()), "the baseline");
            let share = Some((cores / 2).to_string());
            assert!(shared[1..].iter().all(|t| *t == share), "{shared:?}");
        }
    }

    #[test]
    fn seeds_give_a_folder_each_and_one_baseline() {
        let o = opts("--preset cifar10-w16 --out /s --snl /bin/snl --budgets 3225 --seeds 0,1");
        let steps = plan(&o, &|_| RunState::Absent);
        assert_eq!(
            names(&steps),
            [
                "baseline",
                "snl-3225-s0",
                "random-3225-s0",
                "uniform-3225-s0",
                "snl-3225-s1",
                "random-3225-s1",
                "uniform-3225-s1"
            ]
        );
        assert!(
            line(&steps[0]).starts_with("snl --seed 0 train --arch resnet18 --width 16 --dataset folder")
        );
        assert!(
            line(&steps[4])
                .starts_with("snl --seed 1 linearize --model /s/baseline/best.safetensors --budget 3225")
        );
        match &steps[6] {
            Step::Snl { search_of, .. } => {
                assert_eq!(search_of.as_deref(), Some(Path::new("/s/snl-3225-s1")))
            }
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn plan_resumes_and_skips() {
        let o = opts("--out /s --selections snl,random --budgets 10%,20% --snl /bin/snl");
        let state = |d: &Path| match folder_name(d).as_str() {
            "baseline" | "snl-10pct-s0" => RunState::Finished,
            "random-10pct-s0" => RunState::Unfinished,
            _ => RunState::Absent,
        };
        let steps = plan(&o, &state);
        assert_eq!(steps.len(), 5, "no build with --snl: {steps:?}");
        assert!(matches!(&steps[0], Step::Skip { role: Role::Baseline, .. }));
        assert!(matches!(&steps[1], Step::Skip { role: Role::Linearize, .. }));
        // A control being resumed has its search length in its config already.
        assert_eq!(
            steps[2],
            Step::Snl {
                role: Role::Linearize,
                dir: "/s/random-10pct-s0".into(),
                args: ["--seed", "0", "linearize", "--resume", "/s/random-10pct-s0"]
                    .map(String::from)
                    .to_vec(),
                search_of: None,
            }
        );
    }

    #[test]
    fn a_given_baseline_trains_nothing() {
        let o =
            opts("--preset paper --baseline pre/best.safetensors --selections random --budgets 5k --seed 3");
        let steps = plan(&o, &|_| RunState::Absent);
        assert_eq!(steps[0], Step::Build { args: cargo::snl_build_args(true, Some("cuda")) });
        assert_eq!(steps.len(), 2);
        let l = line(&steps[1]);
        assert!(l.starts_with("snl --seed 3 --device cuda linearize --model pre/best.safetensors --budget 5000 --selection random"), "{l}");
    }

    #[test]
    fn the_estimate_counts_epochs_still_to_run() {
        let o = opts("--preset cifar10-w16 --out /s --snl /bin/snl");
        let none = |_: &Path| Logged::default();
        let compute = |baseline, min, max| Compute { baseline, linearize: Epochs { min, max } };
        // Fresh: baseline 160, then 24 runs of 1..20 search + 8 finetuning epochs.
        let all = plan(&o, &|_| RunState::Absent);
        assert_eq!(epochs_to_run(&o, &all, &|_| None, &none), compute(160, 24 * 9, 24 * 28));
        // The baseline is done and snl-3225-s0 searched 5 epochs: its controls train 5 + 8.
        let state = |d: &Path| match folder_name(d).as_str() {
            "baseline" | "snl-3225-s0" => RunState::Finished,
            "snl-6250-s0" | "random-3225-s0" | "uniform-3225-s0" => RunState::Unfinished,
            _ => RunState::Absent,
        };
        let steps = plan(&o, &state);
        let searched = |d: &Path| (folder_name(d) == "snl-3225-s0").then_some(5);
        assert_eq!(
            epochs_to_run(&o, &steps, &searched, &none),
            compute(0, 2 * 13 + 21 * 9, 2 * 13 + 21 * 28)
        );
        // Runs to resume have only the rest to go: a control 2 epochs into its 5, one into
        // its finetuning, and an SNL run 3 epochs into a search of unknown length (which may
        // have reached its budget in its last epoch).
        let logged = |d: &Path| match folder_name(d).as_str() {
            "random-3225-s0" => Logged { search: 2, ..Logged::default() },
            "uniform-3225-s0" => Logged { search: 5, finetune: 1, ..Logged::default() },
            "snl-6250-s0" => Logged { search: 3, ..Logged::default() },
            _ => Logged::default(),
        };
        let c = epochs_to_run(&o, &steps, &searched, &logged);
        let (min, max) = (3 + 8 + 7 + 8 + 20 * 9, 3 + 8 + 7 + (20 - 3) + 8 + 20 * 28);
        assert_eq!(c, compute(0, min, max));
        // A baseline 30 epochs in has 130 to go.
        let baseline = |d: &Path| Logged {
            train: if folder_name(d) == "baseline" { 30 } else { 0 },
            ..Logged::default()
        };
        assert_eq!(epochs_to_run(&o, &all, &|_| None, &baseline).baseline, 130);

        let secs = |s: f64, from: &str| Some((s, from.to_string()));
        let one = estimate_text(compute(10, 100, 200), [secs(36.0, "b"), secs(72.0, "l")], 1);
        assert!(one.starts_with("compute: 10 baseline epochs and 100..200 linearize epochs"), "{one}");
        // 10 x 36 s + 100..200 x 72 s = 7,560..14,760 s.
        assert!(one.contains("= 2.1..4.1 h wall: the baseline's at 36.0 s per epoch (b), then the linearize runs at 72.0 s per epoch (l)"), "{one}");
        let two = estimate_text(compute(10, 100, 100), [secs(36.0, "b"), secs(72.0, "l")], 2);
        assert!(
            two.contains("= 1.1 h wall")
                && two.ends_with("2 linearize runs at once at 72.0 s per epoch each (l)"),
            "{two}"
        );
        assert!(estimate_text(compute(1, 1, 1), [None, None], 1).contains("give --epoch-seconds"));
    }
}
