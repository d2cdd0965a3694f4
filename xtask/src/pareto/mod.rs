//! `cargo xtask pareto`: plan a budget sweep over selections and seeds, run it through the
//! `snl` binary (resuming what a killed sweep left, refusing other settings than
//! `OUT/sweep.json` records), collect the runs' `result.json` into `pareto.csv` /
//! `pareto.json`, and draw `pareto.svg`.
//!
//! `args` (command line, options), `preset`, `plan` (steps, dry-run text, estimate),
//! `record` (sweep.json), `publish` (a results folder), `collect` (rows, groups over seeds, CSV, JSON), `paper`, `status`
//! and `slurm` (scripts and submissions) decide, as pure functions with tests; `run`,
//! `slurm::submit` and this file touch the disk or start processes.

mod args;
mod collect;
mod paper;
mod plan;
mod preset;
mod publish;
mod record;
mod report;
mod run;
mod slurm;
mod status;

use std::path::{Path, PathBuf};

use args::{Mode, Options, PaperPoints};
use collect::Row;
use plan::{RunState, Step, run_state};

use crate::{cargo, plot, selection};

/// Write `path` through a temporary file beside it, so a killed xtask leaves the old file
/// or the new one.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    // Beside it, under a name no user file has (not `with_extension`, which could name one).
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".xtask-{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

pub fn main(argv: &[String]) -> i32 {
    let root = cargo::workspace_root();
    let o = match crate::parse_args::<args::Args>("pareto", argv).map(|a| Options::new(a, &root)) {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            errln!("error: xtask pareto: {e}");
            return 2;
        }
        Err(code) => return code,
    };
    if let Some(note) = &o.note {
        errln!("xtask pareto: {note}");
    }
    if let Mode::Status(out) = &o.mode {
        return match record::read_record(out) {
            Ok(runs) if runs.is_empty() => {
                errln!("error: xtask pareto: {} holds no sweep record ({})", out.display(), record::RECORD);
                2
            }
            Ok(runs) => {
                let names: Vec<String> = runs.into_keys().collect();
                let failure = |run: &str| std::fs::read_to_string(status::failure_marker(out, run)).ok();
                let broken =
                    |run: &str| collect::collect(&[out.join(run)]).err().map(|lines| lines.join("; "));
                let s = status::status(&names, &|r| run_state(&out.join(r)), &failure, &broken);
                out!("{}", status::text(&s, out));
                if s.broken.is_empty() { 0 } else { 1 }
            }
            Err(e) => {
                errln!("error: xtask pareto: {e}");
                2
            }
        };
    }
    let snl = plan::snl_binary(&o, &root);
    let planned = record::planned_settings(&o);
    let on_disk = |run: &str| run_state(&o.out.join(run)) != RunState::Absent;
    let mut recorded_nothing = false;
    let mut read_before = record::Settings::new();
    let merged = record::read_record(&o.out).and_then(|old| {
        recorded_nothing = old.is_empty();
        let merged = record::merge_record(&o.out, &old, &planned, &on_disk);
        read_before = old;
        merged
    });
    let record = match merged {
        Ok(r) => r,
        Err(e) => {
            errln!("error: xtask pareto: {e}");
            return 2;
        }
    };
    if let Some(dest) = &o.publish
        && let Err(e) = publish::check(dest, &o.out, &record)
    {
        errln!("error: xtask pareto: {e}; nothing was run");
        return 2;
    }
    if o.mode == Mode::CollectOnly && recorded_nothing {
        let out = o.out.display();
        match o.out.is_dir() {
            true => errln!(
                "error: xtask pareto: --collect-only: {out} holds no sweep record ({}), so nothing to collect \
                 (nothing was written)",
                record::RECORD
            ),
            false => errln!("error: xtask pareto: --out {out}: no such folder, so no sweep to collect"),
        }
        return 2;
    }
    let steps = plan::plan(&o, &|d| run_state(d));
    // Every run the record holds (this invocation's and earlier ones', so fewer flags never
    // mean a smaller table), and the given baseline's folder (its result.json, if any).
    let mut dirs: Vec<PathBuf> = record.keys().map(|run| o.out.join(run)).collect();
    if let Some(dir) = o.baseline.as_ref().and_then(|b| b.parent())
        && !dirs.iter().any(|d| d == dir)
    {
        dirs.push(dir.to_path_buf());
    }
    if o.preset.features.as_deref() == Some("cuda") {
        outln!("note: preset `{}` runs with --device cuda: snl is built with --features cuda", o.preset.name);
    }
    if o.dry_run {
        outln!("plan for preset `{}` in {} ({} steps):", o.preset.name, o.out.display(), steps.len());
        for line in plan::plan_text(&steps, &snl) {
            outln!("{line}");
        }
        let searched = |d: &Path| run::search_count(d, "search_epochs").ok();
        let logged = |d: &Path| {
            let mut n = plan::Logged::default();
            for (phase, _) in logged_epochs(d) {
                match phase.as_str() {
                    "train" => n.train += 1,
                    "finetune" => n.finetune += 1,
                    _ => n.search += 1,
                }
            }
            n
        };
        let epochs = plan::epochs_to_run(&o, &steps, &searched, &logged);
        outln!("{}", plan::estimate_text(epochs, epoch_seconds(&o, &dirs), o.jobs));
    }
    if o.slurm.is_some() {
        return submit(&o, argv, &record, &steps, &snl, &root);
    }
    if o.dry_run {
        let out = o.out.display();
        outln!(
            "then: record the settings in {out}/{}, collect the runs' result.json into \
             {out}/pareto.csv, pareto.json, pareto.svg, pareto.md",
            record::RECORD
        );
        return 0;
    }
    let failures = match &o.mode {
        Mode::CollectOnly => {
            if run::sweep_running(&o.out) {
                outln!(
                    "note: a sweep is running in {}: collecting the runs finished so far",
                    o.out.display()
                );
            }
            Vec::new()
        }
        Mode::Task(run) => {
            let Some(step) = steps.iter().find(|s| step_run(s) == Some(run.as_str())) else {
                let runs: Vec<&String> = planned.keys().collect();
                errln!("error: xtask pareto: --task {run}: not a run of this sweep (its runs: {runs:?})");
                return 2;
            };
            // The record is the submission's; a task only checks it (above).
            return match run::execute(std::slice::from_ref(step), &snl, &root, &o.out, 1) {
                Ok(f) if f.is_empty() => 0,
                Ok(_) => 1,
                Err(e) => {
                    errln!("error: xtask pareto: {e}");
                    1
                }
            };
        }
        Mode::Sweep => {
            if let Some(b) = &o.baseline
                && !b.exists()
            {
                errln!("error: xtask pareto: --baseline {}: no such file", b.display());
                return 2;
            }
            let started = std::fs::create_dir_all(&o.out)
                .map_err(|e| format!("cannot create {}: {e}", o.out.display()))
                .and_then(|()| run::lock_sweep(&o.out))
                // Planned from the record as read before the lock: a sweep that ended in
                // between may have grown it, and writing ours would drop its runs.
                .and_then(|held| match record::read_record(&o.out)? == read_before {
                    true => Ok(held),
                    false => Err(format!(
                        "{} changed while this sweep was planned (another sweep just ended?); run it again",
                        o.out.join(record::RECORD).display()
                    )),
                })
                .and_then(|held| record::write_record(&o.out, &record).map(|()| held));
            // Held until this process ends: a second sweep of OUT is refused meanwhile.
            let _held = match started {
                Ok(held) => held,
                Err(e) => {
                    errln!("error: xtask pareto: {e}; nothing was run");
                    return 1;
                }
            };
            match run::execute(&steps, &snl, &root, &o.out, o.jobs) {
                Ok(f) => f,
                Err(e) => {
                    errln!("error: xtask pareto: {e}; nothing was run");
                    return 1;
                }
            }
        }
        Mode::Status(_) => unreachable!("handled above"),
    };
    let rows = match collect::collect(&dirs) {
        Ok(rows) => rows,
        Err(broken) => {
            errln!(
                "error: xtask pareto: {} result.json file(s) broken; pareto.* left as they were:",
                broken.len()
            );
            for why in &broken {
                errln!("  {why}");
            }
            return 1;
        }
    };
    let planned: Vec<String> = record.keys().cloned().collect();
    if let Err(e) = write_outputs(&o, &rows, &planned) {
        errln!("error: xtask pareto: {e}");
        return 1;
    }
    if o.sites {
        for r in rows.iter().filter(|r| r.selection != selection::BASELINE) {
            let (svg, model) = (r.dir.join("sites.svg"), r.dir.join("model.safetensors"));
            if !svg.exists()
                && model.exists()
                && let Err(e) = crate::sites::draw(&snl, &r.dir, &model, &svg)
            {
                errln!("warning: xtask pareto: no per-site chart for {}: {e}", r.dir.display());
            }
        }
    }
    if let Some(dest) = &o.publish {
        match publish::publish(&o.out, &rows, dest) {
            Ok(n) => {
                outln!("published pareto.* and {n} finished runs (no checkpoints) to {}", dest.display())
            }
            Err(e) => {
                errln!("error: xtask pareto: {e}");
                return 1;
            }
        }
    }
    if failures.is_empty() {
        return 0;
    }
    errln!("error: xtask pareto: {} run(s) failed:", failures.len());
    for f in &failures {
        errln!("  {} ({})", f.dir, f.why);
    }
    1
}

/// The run folder name of a step (none for the build).
fn step_run(step: &Step) -> Option<&str> {
    match step {
        Step::Snl { dir, .. } | Step::Skip { dir, .. } => dir.file_name()?.to_str(),
        Step::Build { .. } => None,
    }
}

/// `xtask pareto`'s own arguments without the executor's and `--dry-run`: what every Slurm
/// job gives back to xtask.
pub fn forwarded(argv: &[String]) -> Vec<String> {
    const WITH_VALUE: [&str; 8] = [
        "--executor",
        "--partition",
        "--account",
        "--time",
        "--gres",
        "--cpus-per-task",
        "--mem",
        "--sbatch-arg",
    ];
    let mut out = Vec::new();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        let name = a.split('=').next().unwrap_or(a);
        if a == "--dry-run" {
            continue;
        }
        if WITH_VALUE.contains(&name) {
            if !a.contains('=') {
                it.next();
            }
            continue;
        }
        out.push(a.clone());
    }
    out
}

/// Submit the sweep to Slurm (with `--dry-run`: write the scripts and print the sbatch lines).
fn submit(
    o: &Options,
    argv: &[String],
    record: &record::Settings,
    steps: &[Step],
    snl: &Path,
    root: &Path,
) -> i32 {
    let flags = o.slurm.as_ref().expect("slurm");
    if !o.dry_run && !slurm::sbatch_on_path() {
        errln!("error: xtask pareto: --executor slurm: sbatch is not on PATH (nothing was submitted)");
        return 2;
    }
    if let Some(Step::Build { args }) = steps.first()
        && !o.dry_run
        && let Err(e) = cargo::build(root, args)
    {
        errln!("error: xtask pareto: {e}; nothing was submitted");
        return 1;
    }
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (out, cwd) = (abs(&o.out), abs(Path::new(".")));
    let xtask = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "xtask".into());
    let mut task = vec![xtask, "pareto".to_string()];
    task.extend(forwarded(argv));
    task.extend(["--out".into(), out.display().to_string(), "--snl".into(), abs(snl).display().to_string()]);
    let mut collect = task.clone();
    collect.push("--collect-only".into());
    let arrays: Vec<slurm::Array> = o
        .selections
        .iter()
        .map(|sel| slurm::Array {
            selection: sel.clone(),
            runs: o
                .preset
                .seeds
                .iter()
                .flat_map(|&seed| o.preset.budgets.iter().map(move |b| (seed, b)))
                .map(|(seed, b)| plan::folder_name(&plan::run_dir(&o.out, sel, b, seed)))
                .collect(),
        })
        .collect();
    let dir = slurm::dir(&out);
    let baseline = o.baseline.is_none();
    let scripts = slurm::scripts(flags, &dir, &cwd, &task, &collect, baseline, &arrays);
    let files = [
        ("baseline.sbatch", scripts.baseline.clone()),
        ("runs.sbatch", Some(scripts.runs.clone())),
        ("collect.sbatch", Some(scripts.collect.clone())),
        ("tasks.txt", Some(scripts.tasks.clone())),
    ];
    let written = std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
        .and_then(|()| if o.dry_run { Ok(()) } else { record::write_record(&o.out, record) })
        .and_then(|()| {
            files.iter().try_for_each(|(name, text)| {
                text.as_ref().map_or(Ok(()), |t| write_atomic(&dir.join(name), t))
            })
        });
    if let Err(e) = written {
        errln!("error: xtask pareto: {e}; nothing was submitted");
        return 1;
    }
    outln!("wrote the scripts and tasks.txt in {}", dir.display());
    let subs = slurm::submissions(&dir, baseline, &arrays);
    if o.dry_run {
        for s in &subs {
            outln!(
                "$ {}  # {}",
                cargo::shell_line("sbatch", &[vec!["--parsable".into()], s.args.clone()].concat()),
                s.what
            );
        }
        outln!("({{N}} is the job id of the N-th sbatch above, from 0; nothing was submitted)");
        return 0;
    }
    match slurm::submit(&subs) {
        Ok(ids) => {
            outln!(
                "submitted {} jobs; watch them with `squeue -j {}` and `cargo xtask pareto --status {}`",
                ids.len(),
                ids.join(","),
                o.out.display()
            );
            0
        }
        Err(e) => {
            errln!("error: xtask pareto: {e}");
            1
        }
    }
}

/// Seconds per epoch for the estimate, the baseline's and a linearize run's, and where each
/// figure comes from: the median of the epochs of that kind logged in OUT (an epoch that ran
/// while the sweep was paused or shared logs hours), else the preset's figure.
fn epoch_seconds(o: &Options, dirs: &[PathBuf]) -> [Option<(f64, String)>; 2] {
    if let Some(s) = o.epoch_seconds {
        return [Some((s, "--epoch-seconds".into())), Some((s, "--epoch-seconds".into()))];
    }
    let epochs: Vec<(String, f64)> = dirs.iter().flat_map(|d| logged_epochs(d)).collect();
    let median = |baseline: bool| {
        let kind = usize::from(!baseline);
        let mut s: Vec<f64> =
            epochs.iter().filter(|(phase, _)| (phase == "train") == baseline).map(|e| e.1).collect();
        if s.is_empty() {
            let p = o.preset.epoch_seconds?[kind];
            return Some((p, format!("preset {}'s figure; --epoch-seconds to change", o.preset.name)));
        }
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let m = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
        Some((m, format!("median of {n} logged in {}", o.out.display())))
    };
    [median(true), median(false)]
}

/// The phase and seconds of each epoch a run folder's `metrics.jsonl` logged (none without
/// the file).
fn logged_epochs(run: &Path) -> Vec<(String, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .map(|text| text.lines().filter_map(collect::logged_epoch).collect())
        .unwrap_or_default()
}

/// pareto.csv, pareto.json, pareto.svg (and .png), pareto.md in OUT, and the summary on stdout;
/// `planned` names every run of the sweep record, finished or not.
fn write_outputs(o: &Options, rows: &[Row], planned: &[String]) -> Result<(), String> {
    let groups = collect::groups(rows);
    let arch = o.preset.model.get("arch").unwrap_or("resnet18");
    let paper = match &o.paper_points {
        PaperPoints::None => None,
        PaperPoints::Preset => {
            paper::paper_dataset(&o.preset.data).and_then(|d| paper::paper_series(&d, arch))
        }
        PaperPoints::Dataset(d) => {
            let series = paper::paper_series(d, arch);
            if series.is_none() {
                errln!(
                    "error: xtask: no paper points for {d} and {arch} (REFERENCE section 3 has cifar10, cifar100, tiny-imagenet)"
                );
            }
            series
        }
    };
    let write = |name: &str, text: &str| {
        let path = o.out.join(name);
        write_atomic(&path, text).map(|()| outln!("wrote {}", path.display()))
    };
    write("pareto.csv", &collect::to_csv(rows))?;
    write("pareto.json", &collect::to_json(rows, &groups, paper.as_ref()))?;
    write("pareto.md", &report::to_markdown(rows, &groups, planned))?;
    let dots: Vec<plot::Dot> = rows
        .iter()
        .filter_map(|r| {
            let (fraction, top1, relus) = (r.fraction()?, r.test_top1?, r.relu_count?);
            Some(plot::Dot { selection: r.selection.clone(), name: r.name.clone(), fraction, relus, top1 })
        })
        .collect();
    let means: Vec<plot::Mean> = groups
        .iter()
        .map(|g| plot::Mean {
            selection: g.selection.clone(),
            fraction: g.fraction,
            mean: g.mean,
            min: g.min,
            max: g.max,
            runs: g.runs,
            front: g.front,
        })
        .collect();
    let reference = paper.map(|p| plot::Reference {
        label: p.label.clone(),
        points: p.points.iter().map(|&(r, a)| (r / p.total, a)).collect(),
    });
    // An image folder is named by its directory (`cifar10-jpeg`), not as `folder`.
    let dataset = match (o.preset.data.get("dataset"), o.preset.data.get("data-dir")) {
        (Some("folder"), Some(dir)) => Path::new(dir).file_name().map(|n| n.to_string_lossy().into_owned()),
        (name, _) => name.map(str::to_string),
    };
    let title = format!(
        "{arch} width {} on {}: test top-1 vs ReLUs kept (preset {})",
        o.preset.model.get("width").unwrap_or("?"),
        dataset.as_deref().unwrap_or("?"),
        o.preset.name
    );
    write("pareto.svg", &plot::pareto_svg(&dots, &means, reference.as_ref(), &title))?;
    let png = o.out.join("pareto.png");
    if run::try_png(&o.out.join("pareto.svg"), &png) {
        outln!("wrote {}", png.display());
    }
    outln!("{} runs collected in {}; test top-1 mean (min-max) over seeds:", rows.len(), o.out.display());
    out!("{}", collect::summary(&groups));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_jobs_get_the_sweeps_own_arguments() {
        let argv: Vec<String> = "--preset smoke --executor slurm --partition=p --sbatch-arg --qos=low --dry-run \
             --seeds 0,1 --gres gpu:1 --sbatch-arg=--nice --executor=slurm --time 1:00:00 --mem 4G --account a \
             --cpus-per-task 2 --threads 2"
            .split_whitespace()
            .map(String::from)
            .collect();
        assert_eq!(forwarded(&argv), ["--preset", "smoke", "--seeds", "0,1", "--threads", "2"]);
    }
}
