//! `cargo xtask pareto`: plan a budget sweep over selections and seeds, run it through the
//! `snl` binary (resuming what a killed sweep left, refusing other settings than
//! `OUT/sweep.json` records), collect the runs' `result.json` into `pareto.csv` /
//! `pareto.json`, and draw `pareto.svg`.
//!
//! `args` (command line, options), `preset`, `plan` (steps, dry-run text, estimate),
//! `record` (sweep.json), `collect` (rows, groups over seeds, CSV, JSON) and `paper` decide,
//! as pure functions with tests; `run` and this file touch the disk or start processes.

mod args;
mod collect;
mod paper;
mod plan;
mod preset;
mod record;
mod run;

use std::path::{Path, PathBuf};

use args::{Options, PaperPoints};
use collect::Row;
use plan::{RunState, run_state};

use crate::{cargo, plot, selection};

/// Write `path` through a temporary file beside it, so a killed xtask leaves the old file
/// or the new one.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

pub fn main(argv: &[String]) -> i32 {
    let root = cargo::workspace_root();
    let o = match crate::parse_args::<args::Args>("pareto", argv).map(|a| Options::new(a, &root)) {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            eprintln!("xtask pareto: {e}");
            return 2;
        }
        Err(code) => return code,
    };
    let snl = plan::snl_binary(&o, &root);
    let planned = record::planned_settings(&o);
    let on_disk = |run: &str| run_state(&o.out.join(run)) != RunState::Absent;
    let merged =
        record::read_record(&o.out).and_then(|old| record::merge_record(&o.out, &old, &planned, &on_disk));
    let record = match merged {
        Ok(r) => r,
        Err(e) => {
            eprintln!("xtask pareto: {e}");
            return 2;
        }
    };
    let steps = plan::plan(&o, &|d| run_state(d));
    // The planned runs only, and the given baseline's folder (its result.json, if any).
    let mut dirs: Vec<PathBuf> = planned.keys().map(|run| o.out.join(run)).collect();
    if let Some(dir) = o.baseline.as_ref().and_then(|b| b.parent())
        && !dirs.iter().any(|d| d == dir)
    {
        dirs.push(dir.to_path_buf());
    }
    if o.preset.features.as_deref() == Some("cuda") {
        println!(
            "note: preset `{}` runs with --device cuda: snl is built with --features cuda",
            o.preset.name
        );
    }
    if o.dry_run {
        println!("plan for preset `{}` in {} ({} steps):", o.preset.name, o.out.display(), steps.len());
        for line in plan::plan_text(&steps, &snl) {
            println!("{line}");
        }
        let searched = |d: &Path| run::search_epochs(d).ok();
        let epochs = plan::epochs_to_run(&o, &steps, &searched);
        println!("{}", plan::estimate_text(epochs, epoch_seconds(&o, &dirs)));
        let out = o.out.display();
        println!(
            "then: record the settings in {out}/{}, collect the runs' result.json into \
             {out}/pareto.csv, pareto.json, pareto.svg",
            record::RECORD
        );
        return 0;
    }
    if let Some(b) = &o.baseline
        && !b.exists()
    {
        eprintln!("xtask pareto: --baseline {}: no such file", b.display());
        return 2;
    }
    let started = std::fs::create_dir_all(&o.out)
        .map_err(|e| format!("cannot create {}: {e}", o.out.display()))
        .and_then(|()| record::write_record(&o.out, &record));
    if let Err(e) = started {
        eprintln!("xtask pareto: {e}; nothing was run");
        return 1;
    }
    let failures = match run::execute(&steps, &snl, &root) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("xtask pareto: {e}; nothing was run");
            return 1;
        }
    };
    let rows = collect::collect(&dirs);
    if let Err(e) = write_outputs(&o, &rows) {
        eprintln!("xtask pareto: {e}");
        return 1;
    }
    if o.sites {
        for r in rows.iter().filter(|r| r.selection != selection::BASELINE) {
            let (svg, model) = (r.dir.join("sites.svg"), r.dir.join("model.safetensors"));
            if !svg.exists()
                && model.exists()
                && let Err(e) = crate::sites::draw(&snl, &r.dir, &model, &svg)
            {
                eprintln!("xtask pareto: no per-site chart for {}: {e}", r.dir.display());
            }
        }
    }
    if failures.is_empty() {
        return 0;
    }
    eprintln!("xtask pareto: {} run(s) failed:", failures.len());
    for f in &failures {
        eprintln!("  {} ({})", f.dir, f.why);
    }
    1
}

/// Seconds per epoch for the estimate, and where the figure comes from.
fn epoch_seconds(o: &Options, dirs: &[PathBuf]) -> Option<(f64, String)> {
    if let Some(s) = o.epoch_seconds {
        return Some((s, "--epoch-seconds".into()));
    }
    let logged: Vec<f64> = dirs
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("metrics.jsonl")).ok())
        .flat_map(|text| text.lines().filter_map(collect::epoch_seconds).collect::<Vec<_>>())
        .collect();
    if !logged.is_empty() {
        let mean = logged.iter().sum::<f64>() / logged.len() as f64;
        return Some((
            mean,
            format!("mean of the {} epochs logged in {}/*/metrics.jsonl", logged.len(), o.out.display()),
        ));
    }
    let s = o.preset.epoch_seconds?;
    Some((s, format!("preset {}'s figure; --epoch-seconds to change", o.preset.name)))
}

/// pareto.csv, pareto.json, pareto.svg (and .png) in OUT, and the summary on stdout.
fn write_outputs(o: &Options, rows: &[Row]) -> Result<(), String> {
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
                eprintln!(
                    "xtask: no paper points for {d} and {arch} (REFERENCE section 3 has cifar10, cifar100, tiny-imagenet)"
                );
            }
            series
        }
    };
    let write = |name: &str, text: &str| {
        let path = o.out.join(name);
        write_atomic(&path, text).map(|()| println!("wrote {}", path.display()))
    };
    write("pareto.csv", &collect::to_csv(rows))?;
    write("pareto.json", &collect::to_json(rows, &groups, paper.as_ref()))?;
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
        println!("wrote {}", png.display());
    }
    println!("{} runs collected in {}; test top-1 mean (min-max) over seeds:", rows.len(), o.out.display());
    print!("{}", collect::summary(&groups));
    Ok(())
}
