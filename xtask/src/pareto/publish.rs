//! `--publish DIR`: the part of a sweep a results folder in a repository holds: the tables
//! and figure, the sweep record, and each finished run's small files. Never a checkpoint:
//! they are large, and the commands rebuild them.

use std::path::Path;

use super::collect::Row;
use super::record::{RECORD, Settings, read_record};
use super::run::LOCK;

/// Files of the sweep folder that are published when present.
const SWEEP_FILES: [&str; 6] = ["pareto.csv", "pareto.json", "pareto.md", "pareto.svg", "pareto.png", RECORD];

/// Files of a finished run's folder that are published when present.
const RUN_FILES: [&str; 4] = ["config.json", "metrics.jsonl", "result.json", "sites.svg"];

/// Refuses, before anything runs, a `--publish` folder that would lose something: a file,
/// the sweep folder itself, another sweep's folder (its lock), or a results folder of
/// another sweep (a `sweep.json` recording a run that `record`, this sweep's, records
/// otherwise or not at all). A results folder of this sweep, or one without a record (a
/// folder of other results), is fine.
pub fn check(dest: &Path, out: &Path, record: &Settings) -> Result<(), String> {
    let refuse = |why: String| Err(format!("--publish {}: {why}", dest.display()));
    if dest.exists() && !dest.is_dir() {
        return refuse("not a folder".into());
    }
    if same(out, dest) {
        return refuse("that is the sweep folder; give another folder".into());
    }
    if dest.join(LOCK).exists() {
        return refuse(format!("a sweep folder (it has {LOCK}), not a results folder"));
    }
    let other = read_record(dest)?.into_iter().find(|(run, settings)| record.get(run) != Some(settings));
    if let Some((run, _)) = other {
        return refuse(format!(
            "its {RECORD} is another sweep's (it records run {run} otherwise); publish into another folder"
        ));
    }
    Ok(())
}

/// Copy the sweep files of `out` and the run files of every row (finished runs only: a row
/// has a result.json) into `dest` and `dest/<run>/`; returns the number of runs published.
/// Each file is written beside its target and renamed, so a killed xtask leaves the old
/// file or the new one. [`check`] has vetted `dest`.
pub fn publish(out: &Path, rows: &[Row], dest: &Path) -> Result<usize, String> {
    std::fs::create_dir_all(dest).map_err(|e| format!("--publish {}: {e}", dest.display()))?;
    for name in SWEEP_FILES {
        copy_if_present(&out.join(name), &dest.join(name))?;
    }
    for row in rows {
        let to = dest.join(&row.name);
        if same(&row.dir, &to) {
            continue;
        }
        // A link there would have the copies land in whatever folder it names.
        if to.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(format!(
                "--publish: {} is a symbolic link; nothing is written through it",
                to.display()
            ));
        }
        std::fs::create_dir_all(&to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
        for name in RUN_FILES {
            copy_if_present(&row.dir.join(name), &to.join(name))?;
        }
    }
    Ok(rows.len())
}

/// Whether both paths exist and are one folder, however spelled.
fn same(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

fn copy_if_present(from: &Path, to: &Path) -> Result<(), String> {
    if !from.is_file() {
        return Ok(());
    }
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(".part");
    let tmp = Path::new(&tmp);
    // A leftover `.part` is ours to replace, but never followed if it is a link.
    if tmp.symlink_metadata().is_ok() {
        std::fs::remove_file(tmp).map_err(|e| format!("cannot remove {}: {e}", tmp.display()))?;
    }
    std::fs::copy(from, tmp)
        .and_then(|_| std::fs::rename(tmp, to))
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::record::write_record;
    use super::*;

    #[test]
    fn copies_tables_record_and_small_run_files_but_no_checkpoint() {
        let dir = std::env::temp_dir().join(format!("xtask-publish-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (out, dest) = (dir.join("sweep"), dir.join("results"));
        let run = out.join("snl-100-s0");
        std::fs::create_dir_all(&run).unwrap();
        for (path, text) in [
            (out.join("pareto.csv"), "csv"),
            (out.join(RECORD), "{}"),
            (out.join(".pareto.lock"), ""),
            (run.join("config.json"), "config"),
            (run.join("metrics.jsonl"), "metrics"),
            (run.join("result.json"), "result"),
            (run.join("model.safetensors"), "weights"),
            (run.join("checkpoint.safetensors"), "weights"),
        ] {
            std::fs::write(path, text).unwrap();
        }
        // A stale copy is replaced.
        std::fs::create_dir_all(dest.join("snl-100-s0")).unwrap();
        std::fs::write(dest.join("snl-100-s0/result.json"), "old").unwrap();
        let row = Row { name: "snl-100-s0".into(), dir: run.clone(), ..Row::default() };
        assert_eq!(publish(&out, std::slice::from_ref(&row), &dest), Ok(1));
        let read = |p: &str| std::fs::read_to_string(dest.join(p)).unwrap();
        assert_eq!(read("pareto.csv"), "csv");
        assert_eq!(read(RECORD), "{}");
        assert_eq!(read("snl-100-s0/result.json"), "result");
        assert_eq!(read("snl-100-s0/metrics.jsonl"), "metrics");
        let mut published: Vec<String> = std::fs::read_dir(dest.join("snl-100-s0"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        published.sort();
        assert_eq!(published, ["config.json", "metrics.jsonl", "result.json"]);
        assert!(!dest.join(".pareto.lock").exists() && !dest.join("pareto.svg").exists());

        // A run's folder there that is a link to another folder: nothing written through it,
        // nor through a leftover `.part` link.
        let elsewhere = dir.join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::remove_dir_all(dest.join("snl-100-s0")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dest.join("snl-100-s0")).unwrap();
        let err = publish(&out, std::slice::from_ref(&row), &dest).unwrap_err();
        assert!(err.contains("snl-100-s0 is a symbolic link"), "{err}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        std::fs::remove_file(dest.join("snl-100-s0")).unwrap();
        std::os::unix::fs::symlink(elsewhere.join("victim"), dest.join("pareto.csv.part")).unwrap();
        assert_eq!(publish(&out, std::slice::from_ref(&row), &dest), Ok(1));
        assert!(!elsewhere.join("victim").exists() && read("pareto.csv") == "csv");

        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_a_folder_that_would_lose_something() {
        let dir = std::env::temp_dir().join(format!("xtask-publish-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (out, dest) = (dir.join("sweep"), dir.join("results"));
        std::fs::create_dir_all(&out).unwrap();
        let flags = |seed: &str| BTreeMap::from([("seed".to_string(), seed.to_string())]);
        let record: Settings = BTreeMap::from([("snl-100-s0".to_string(), flags("0"))]);
        let err = |dest: &Path| check(dest, &out, &record).unwrap_err();

        assert_eq!(check(&dest, &out, &record), Ok(()), "a folder to be made");
        assert!(err(&out.join(".")).ends_with("that is the sweep folder; give another folder"));
        std::fs::write(dir.join("file"), "").unwrap();
        assert!(err(&dir.join("file")).ends_with("not a folder"));
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::write(dest.join(LOCK), "").unwrap();
        assert!(err(&dest).contains("a sweep folder (it has .pareto.lock)"));
        std::fs::remove_file(dest.join(LOCK)).unwrap();

        // This sweep's earlier record (a subset) is fine; another sweep's is refused.
        write_record(&dest, &BTreeMap::new()).unwrap();
        assert_eq!(check(&dest, &out, &record), Ok(()));
        write_record(&dest, &record).unwrap();
        assert_eq!(check(&dest, &out, &record), Ok(()));
        write_record(&dest, &BTreeMap::from([("snl-100-s0".to_string(), flags("1"))])).unwrap();
        assert!(
            err(&dest).contains("its sweep.json is another sweep's (it records run snl-100-s0 otherwise)")
        );
        write_record(&dest, &BTreeMap::from([("random-5-s0".to_string(), flags("0"))])).unwrap();
        assert!(err(&dest).contains("records run random-5-s0 otherwise"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
