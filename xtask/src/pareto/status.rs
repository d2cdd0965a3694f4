//! `--status OUT`: how far a sweep is, from its record and run folders alone, whichever
//! executor ran it. A failed run leaves `OUT/failed/<run>` (the reason), removed once it
//! succeeds; run folders stay `snl`'s own.

use std::path::{Path, PathBuf};

use super::plan::RunState;

/// Where the reason of a failed run is kept.
pub fn failure_marker(out: &Path, run: &str) -> PathBuf {
    out.join("failed").join(run)
}

/// Record (or, with `None`, clear) the failure of `run`. Best effort: a marker is a hint.
pub fn mark(out: &Path, run: &str, why: Option<&str>) {
    let path = failure_marker(out, run);
    match why {
        Some(why) => {
            let _ = std::fs::create_dir_all(out.join("failed"))
                .and_then(|()| std::fs::write(&path, format!("{why}\n")));
        }
        None => {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub finished: Vec<String>,
    /// (run, why) for runs with a `result.json` no finished run can have (not JSON, no
    /// test top-1, ...): neither finished nor resumable.
    pub broken: Vec<(String, String)>,
    /// `config.json` without `result.json`: running, or killed (resumed by the next sweep).
    pub unfinished: Vec<String>,
    pub not_started: Vec<String>,
    /// (run, reason) for runs that are not finished and failed last time.
    pub failed: Vec<(String, String)>,
}

/// The status of `runs` (the record's), given each folder's state, failure marker and,
/// for a finished one, what is wrong with its `result.json` (`broken`).
pub fn status(
    runs: &[String],
    state: &dyn Fn(&str) -> RunState,
    failure: &dyn Fn(&str) -> Option<String>,
    broken: &dyn Fn(&str) -> Option<String>,
) -> Status {
    let mut s = Status::default();
    for run in runs {
        let st = state(run);
        match st {
            RunState::Finished => match broken(run) {
                Some(why) => s.broken.push((run.clone(), why)),
                None => s.finished.push(run.clone()),
            },
            RunState::Unfinished => s.unfinished.push(run.clone()),
            RunState::Absent => s.not_started.push(run.clone()),
        }
        if st != RunState::Finished
            && let Some(why) = failure(run)
        {
            s.failed.push((run.clone(), why.trim().to_string()));
        }
    }
    s
}

pub fn text(s: &Status, out: &Path) -> String {
    let total = s.finished.len() + s.broken.len() + s.unfinished.len() + s.not_started.len();
    let mut t = format!(
        "{}: {total} runs: {} finished, {} running or unfinished, {} not started",
        out.display(),
        s.finished.len(),
        s.unfinished.len(),
        s.not_started.len()
    );
    if !s.broken.is_empty() {
        t += &format!(", {} with a broken result.json", s.broken.len());
    }
    t += "\n";
    for (_, why) in &s.broken {
        t += &format!("broken: {why}\n");
    }
    if !s.unfinished.is_empty() {
        t += &format!("unfinished: {}\n", s.unfinished.join(", "));
    }
    for (run, why) in &s.failed {
        t += &format!("failed: {} ({why})\n", out.join(run).display());
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_counts_runs_and_lists_failures() {
        let runs: Vec<String> =
            ["baseline", "snl-1-s0", "random-1-s0", "uniform-1-s0"].map(String::from).to_vec();
        let state = |r: &str| match r {
            "baseline" => RunState::Finished,
            "snl-1-s0" | "uniform-1-s0" => RunState::Unfinished,
            _ => RunState::Absent,
        };
        let failure = |r: &str| (r != "snl-1-s0").then(|| "exit code 3\n".to_string());
        let s = status(&runs, &state, &failure, &|_| None);
        assert_eq!((s.finished.len(), s.unfinished.len(), s.not_started.len()), (1, 2, 1));
        assert_eq!(
            s.failed,
            [
                ("random-1-s0".to_string(), "exit code 3".to_string()),
                ("uniform-1-s0".into(), "exit code 3".into())
            ]
        );
        let t = text(&s, Path::new("/o"));
        assert!(t.starts_with("/o: 4 runs: 1 finished, 2 running or unfinished, 1 not started\n"), "{t}");
        assert!(t.contains("failed: /o/random-1-s0 (exit code 3)\n"), "{t}");
        let broken =
            |r: &str| (r == "baseline").then(|| "/o/baseline/result.json: no test top-1".to_string());
        let s = status(&runs, &state, &failure, &broken);
        assert_eq!((s.finished.len(), s.broken.len()), (0, 1));
        let t = text(&s, Path::new("/o"));
        assert!(
            t.starts_with("/o: 4 runs: 0 finished, 2 running or unfinished, 1 not started, 1 with a broken"),
            "{t}"
        );
        assert!(t.contains("broken: /o/baseline/result.json: no test top-1\n"), "{t}");
    }

    #[test]
    fn a_marker_is_written_and_cleared() {
        let out = std::env::temp_dir().join(format!("xtask-marker-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        mark(&out, "snl-1-s0", Some("exit code 1"));
        assert_eq!(std::fs::read_to_string(failure_marker(&out, "snl-1-s0")).unwrap(), "exit code 1\n");
        mark(&out, "snl-1-s0", None);
        assert!(!failure_marker(&out, "snl-1-s0").exists());
        std::fs::remove_dir_all(&out).unwrap();
    }
}
