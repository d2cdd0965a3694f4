//! Running a plan: child processes, a control's search length read from its SNL run, and
//! the failures reported at the end. The only part of the sweep that starts processes.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::plan::{Role, Step};
use crate::cargo::{self, shell_line};

/// A run that failed or could not start.
#[derive(Debug)]
pub struct Failure {
    pub dir: String,
    pub why: String,
}

/// The `search_epochs` an SNL run folder's `result.json` reports.
pub fn search_epochs(snl_run: &Path) -> Result<u64, String> {
    let path = snl_run.join("result.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("its SNL run is not finished ({}: {e})", path.display()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: not JSON ({e})", path.display()))?;
    v.get("search_epochs")
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("{}: no search_epochs", path.display()))
}

fn run_child(program: &Path, args: &[String]) -> Result<(), String> {
    match Command::new(program).args(args).status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(s.code().map_or_else(|| format!("{s}"), |c| format!("exit code {c}"))),
        Err(e) => Err(format!("cannot start {}: {e}", program.display())),
    }
}

/// Run every step in order. Returns the failures, or `Err` when nothing could run (the
/// build failed). After a failed baseline, linearize runs are reported as skipped.
/// Each failure is also marked in `out` for `--status`.
pub fn execute(steps: &[Step], snl: &Path, root: &Path, out: &Path) -> Result<Vec<Failure>, String> {
    let mut failures = Vec::new();
    let mut baseline_failed = false;
    let total = steps.iter().filter(|s| matches!(s, Step::Snl { .. })).count();
    let mut done = 0;
    for step in steps {
        let (role, dir, args, search_epochs_of) = match step {
            Step::Build { args } => {
                cargo::build(root, args)?;
                if !snl.exists() {
                    return Err(format!("{} missing after the build", snl.display()));
                }
                continue;
            }
            Step::Skip { dir, .. } => {
                println!("# skip {}: finished (result.json)", dir.display());
                continue;
            }
            Step::Snl { role, dir, args, search_epochs_of } => (role, dir, args, search_epochs_of),
        };
        done += 1;
        let name = super::plan::folder_name(dir);
        let fail = |why: String| {
            super::status::mark(out, &name, Some(&why));
            Failure { dir: dir.display().to_string(), why }
        };
        if *role == Role::Linearize && baseline_failed {
            eprintln!("# [{done}/{total}] skip {}: the baseline failed", dir.display());
            failures.push(fail("skipped: the baseline failed".into()));
            continue;
        }
        let args = match search_epochs_of {
            None => args.clone(),
            Some(from) => match search_epochs(from) {
                Ok(n) => Step::with_search_epochs(args, n),
                Err(e) => {
                    eprintln!("# [{done}/{total}] skip {}: {e}", dir.display());
                    failures.push(fail(format!("skipped: {e}")));
                    continue;
                }
            },
        };
        println!("# [{done}/{total}] {}", dir.display());
        println!("$ {}", shell_line(&snl.display().to_string(), &args));
        match run_child(snl, &args) {
            Ok(()) => super::status::mark(out, &name, None),
            Err(why) => {
                eprintln!("xtask pareto: run {} failed ({why}); going on", dir.display());
                failures.push(fail(why));
                baseline_failed |= *role == Role::Baseline;
            }
        }
    }
    Ok(failures)
}

/// `pareto.png` from `pareto.svg` when a converter is installed; quietly nothing otherwise.
pub fn try_png(svg: &Path, png: &Path) -> bool {
    let (svg, png) = (svg.display().to_string(), png.display().to_string());
    let attempts: [(&str, Vec<String>); 2] =
        [("rsvg-convert", vec!["-o".into(), png.clone(), svg.clone()]), ("convert", vec![svg, png.clone()])];
    attempts.into_iter().any(|(program, args)| {
        Command::new(program)
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            && Path::new(&png).exists()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_control_reads_its_snl_runs_search_length() {
        let dir = std::env::temp_dir().join(format!("xtask-search-epochs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(search_epochs(&dir).unwrap_err().starts_with("its SNL run is not finished"));
        std::fs::write(dir.join("result.json"), r#"{"search_epochs":null}"#).unwrap();
        assert!(search_epochs(&dir).unwrap_err().ends_with("result.json: no search_epochs"));
        std::fs::write(dir.join("result.json"), r#"{"search_epochs":7}"#).unwrap();
        assert_eq!(search_epochs(&dir), Ok(7));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
