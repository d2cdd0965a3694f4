//! The sweep's record, `OUT/sweep.json`: the settings of every planned run, so a re-run
//! with other settings (or a folder of unknown runs) is refused and two sweeps never mix.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Value, json};

use super::args::Options;
use super::plan::{RunState, Step, folder_name, plan};

/// Run folder name -> the settings of that run (flag -> value).
pub type Settings = BTreeMap<String, BTreeMap<String, String>>;

pub const RECORD: &str = "sweep.json";

/// The settings of every planned run: the flags of its fresh `snl` command, without `--out`
/// and the flags that say where it runs (`--threads`, `--device`); paths made absolute. A
/// control's search length is recorded as coming from its SNL run.
pub fn planned_settings(o: &Options) -> Settings {
    let mut runs = Settings::new();
    for step in plan(o, &|_| RunState::Absent) {
        let Step::Snl { dir, args, search_of, .. } = step else { continue };
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
        if let Some(snl) = search_of {
            flags.insert("search-steps".into(), format!("search_steps of {}", folder_name(&snl)));
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
        let flags: BTreeSet<&String> = was.keys().chain(now.keys()).collect();
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
pub fn read_record(out: &Path) -> Result<Settings, String> {
    let path = out.join(RECORD);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let runs: Settings = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| serde_json::from_value(v.get("runs")?.clone()).ok())
        .ok_or_else(|| format!("{}: not a sweep record (a JSON object with `runs`)", path.display()))?;
    // Run names become folders of OUT: plain names only, never a path out of it.
    let plain = |name: &str| !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\']);
    if let Some(bad) = runs.keys().find(|name| !plain(name)) {
        return Err(format!("{}: run `{bad}` is not a plain folder name (edited?)", path.display()));
    }
    Ok(runs)
}

/// Write `OUT/sweep.json` atomically: a killed xtask leaves the old record or the new one.
pub fn write_record(out: &Path, runs: &Settings) -> Result<(), String> {
    let text = serde_json::to_string_pretty(&json!({ "runs": runs })).expect("json") + "\n";
    super::write_atomic(&out.join(RECORD), &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(line: &str) -> Settings {
        planned_settings(&Options::parse(&format!("--out /s {line}"), Path::new("/repo/main")).unwrap())
    }

    #[test]
    fn the_record_holds_what_decides_each_run() {
        let runs = planned("--selections snl,uniform --budgets 10% --seeds 0,1 --lasso 2e-3 --threads 2");
        let names: Vec<&String> = runs.keys().collect();
        assert_eq!(
            names,
            ["baseline", "snl-10pct-s0", "snl-10pct-s1", "uniform-10pct-s0", "uniform-10pct-s1"]
        );
        let snl = &runs["snl-10pct-s1"];
        assert_eq!(snl.get("lasso").map(String::as_str), Some("2e-3"));
        assert_eq!(snl.get("model").map(String::as_str), Some("/s/baseline/best.safetensors"));
        assert_eq!(snl.get("seed").map(String::as_str), Some("1"));
        assert_eq!((snl.get("out"), snl.get("threads"), snl.get("search-steps")), (None, None, None));
        let control = &runs["uniform-10pct-s1"];
        assert_eq!(control.get("search-steps").map(String::as_str), Some("search_steps of snl-10pct-s1"));
        assert_eq!(runs["baseline"].get("seed").map(String::as_str), Some("0"));
        assert_eq!(runs["baseline"].get("width").map(String::as_str), Some("4"));
    }

    #[test]
    fn a_rerun_with_other_settings_is_refused() {
        let nothing_on_disk = |_: &str| false;
        let first = planned("--budgets 10%,20% --lasso 1e-2");
        let record = merge_record(Path::new("/s"), &Settings::new(), &first, &nothing_on_disk).unwrap();
        assert_eq!(record, first);
        // The same settings, fewer runs, more budgets or more seeds: the record grows.
        let same = |line: &str| merge_record(Path::new("/s"), &record, &planned(line), &|_: &str| true);
        assert_eq!(same("--budgets 10%,20% --lasso 1e-2 --threads 1").unwrap(), record);
        assert_eq!(same("--budgets 20% --lasso 1e-2 --selections random").unwrap(), record);
        let more = same("--budgets 10%,40% --lasso 1e-2").unwrap_err();
        assert!(more.contains("does not record (random-40pct-s0, snl-40pct-s0, uniform-40pct-s0)"), "{more}");
        let grown = merge_record(
            Path::new("/s"),
            &record,
            &planned("--budgets 10% --lasso 1e-2 --seeds 0,1"),
            &nothing_on_disk,
        )
        .unwrap();
        assert!(grown.contains_key("snl-10pct-s1") && grown.contains_key("snl-20pct-s0"));
        // Another first seed (the baseline's), lambda, search lr or baseline.
        let reseeded = planned("--budgets 10%,20% --lasso 1e-2 --seeds 1,0");
        let err = merge_record(Path::new("/s"), &record, &reseeded, &nothing_on_disk).unwrap_err();
        assert!(err.contains("--seed was 0, now 1 (baseline)"), "{err}");
        let err = same("--budgets 10%,20% --lasso 1e-3 --search-lr 0.1").unwrap_err();
        assert!(err.contains("--lasso was 1e-2, now 1e-3 (random-10pct-s0 and 5 more)"), "{err}");
        assert!(err.contains("--search-lr was 0.05, now 0.1 (random-10pct-s0 and 5 more)"), "{err}");
        assert!(err.ends_with("choose another --out for a new sweep (nothing was run)"), "{err}");
        let err = same("--budgets 10%,20% --lasso 1e-2 --baseline /b/best.safetensors").unwrap_err();
        assert!(err.contains("--model was /s/baseline/best.safetensors, now /b/best.safetensors"), "{err}");
        let err = same("--budgets 10%,20% --lasso 1e-2 --width 8").unwrap_err();
        assert!(err.contains("--width was 4, now 8 (baseline)"), "{err}");
    }

    /// A record naming a run by a path (edited) would point the sweep at folders outside OUT.
    #[test]
    fn a_record_with_a_run_path_is_refused() {
        let out = std::env::temp_dir().join(format!("xtask-record-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        let runs = planned("--budgets 10%");
        write_record(&out, &runs).unwrap();
        assert_eq!(read_record(&out).unwrap(), runs);
        for bad in ["../other/snl-10pct-s0", "/abs/snl-10pct-s0", "..", ""] {
            let mut edited = runs.clone();
            edited.insert(bad.to_string(), BTreeMap::new());
            write_record(&out, &edited).unwrap();
            let err = read_record(&out).unwrap_err();
            assert!(err.contains(&format!("run `{bad}` is not a plain folder name")), "{err}");
        }
        std::fs::remove_dir_all(&out).unwrap();
    }
}
