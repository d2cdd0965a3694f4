//! Running a plan: child processes, a control's search length read from its SNL run, and
//! the failures reported at the end. The only part of the sweep that starts processes.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};

use serde_json::Value;

use super::plan::{Role, Step};
use crate::cargo::{self, shell_line};

/// A run that failed or could not start.
#[derive(Debug)]
pub struct Failure {
    pub dir: String,
    pub why: String,
}

/// A count an SNL run folder's `result.json` reports: `search_epochs` (the estimate's) or
/// `search_steps` (what its controls train).
pub fn search_count(snl_run: &Path, field: &str) -> Result<u64, String> {
    let path = snl_run.join("result.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("its SNL run is not finished ({}: {e})", path.display()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: not JSON ({e})", path.display()))?;
    // The SNL run of this folder, not a result copied from another budget or seed.
    let row = super::collect::Row::from_result(&super::plan::folder_name(snl_run), snl_run, &v);
    match row.check_identity() {
        Ok(()) if row.selection == crate::selection::SNL => {}
        Ok(()) => {
            return Err(format!("{}: a {} run's result, not an SNL run's", path.display(), row.selection));
        }
        Err(why) => return Err(format!("{}: {why}", path.display())),
    }
    v.get(field).and_then(Value::as_u64).ok_or_else(|| format!("{}: no {field}", path.display()))
}

/// The sweep's lock file in OUT, held (`flock`) by the one process running the sweep, which
/// writes its pid in it.
pub const LOCK: &str = ".pareto.lock";

/// Locks `out` for this process, or says that another sweep holds it. The lock goes with
/// the returned file (and with the process, however it ends).
pub fn lock_sweep(out: &Path) -> Result<std::fs::File, String> {
    let path = out.join(LOCK);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            // The holder's pid, so a script can stop the sweep (`kill $(cat OUT/.pareto.lock)`; on
            // Linux its runs end with it).
            let mut f = &file;
            f.set_len(0)
                .and_then(|()| writeln!(f, "{}", std::process::id()))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "another `xtask pareto` is running the sweep in {} ({} is locked): let it finish or stop it",
            out.display(),
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// Whether another process holds the lock of the sweep in `out` (it is running).
pub fn sweep_running(out: &Path) -> bool {
    let Ok(file) = std::fs::File::open(out.join(LOCK)) else { return false };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// Where a run's output goes: this terminal, or (several runs at once) a log file.
fn run_child(program: &Path, args: &[String], log: Option<&Path>) -> Result<(), String> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    end_with_this_process(&mut cmd);
    if let Some(log) = log {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        let err = file.try_clone().map_err(|e| format!("{}: {e}", log.display()))?;
        cmd.stdout(file).stderr(err);
    }
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(s.code().map_or_else(|| format!("{s}"), |c| format!("exit code {c}"))),
        Err(e) => Err(format!("cannot start {}: {e}", program.display())),
    }
}

/// Makes the child get SIGTERM when this process ends (Linux): a sweep stopped with `kill`
/// would otherwise leave its runs going, holding their folders' locks, so the next sweep
/// could resume none of them. (The thread that starts a child waits for it, so the signal
/// comes only when the process ends.)
fn end_with_this_process(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls (prctl, getppid) run between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                // Ended already, before the call above: then do not start at all.
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// One `snl` run of the plan.
struct Run<'a> {
    role: Role,
    dir: &'a Path,
    args: &'a [String],
    search_of: Option<&'a Path>,
}

/// Run every step, at most `jobs` runs at once: the baseline before any linearize run, a
/// control after its SNL run, otherwise in plan order. With `jobs > 1` each run's output goes
/// to `out/logs/<run>.log`. Returns the failures, or `Err` when nothing could run (the
/// build failed). After a failed baseline, linearize runs are reported as skipped.
/// Each failure is also marked in `out` for `--status`.
pub fn execute(
    steps: &[Step],
    snl: &Path,
    root: &Path,
    out: &Path,
    jobs: usize,
) -> Result<Vec<Failure>, String> {
    let mut runs = Vec::new();
    for step in steps {
        match step {
            Step::Build { args } => {
                cargo::build(root, args)?;
                if !snl.exists() {
                    return Err(format!("{} missing after the build", snl.display()));
                }
            }
            Step::Skip { dir, .. } => outln!("# skip {}: finished (result.json)", dir.display()),
            Step::Snl { role, dir, args, search_of } => {
                runs.push(Run { role: *role, dir, args, search_of: search_of.as_deref() })
            }
        }
    }
    let logs = (jobs > 1).then(|| out.join("logs"));
    if let Some(logs) = &logs {
        std::fs::create_dir_all(logs).map_err(|e| format!("cannot create {}: {e}", logs.display()))?;
    }
    let baseline = runs.iter().position(|r| r.role == Role::Baseline);
    let after: Vec<Vec<usize>> = runs
        .iter()
        .map(|r| match r.role {
            Role::Baseline => Vec::new(),
            Role::Linearize => {
                let snl_run = r.search_of.and_then(|of| runs.iter().position(|s| s.dir == of));
                baseline.into_iter().chain(snl_run).collect()
            }
        })
        .collect();
    let failures = Mutex::new(Vec::new());
    let baseline_failed = AtomicBool::new(false);
    let started = AtomicUsize::new(0);
    let total = runs.len();
    schedule(&after, jobs, &|i| {
        let Run { role, dir, args, search_of } = &runs[i];
        let n = started.fetch_add(1, Ordering::SeqCst) + 1;
        let name = super::plan::folder_name(dir);
        let fail = |why: String| {
            super::status::mark(out, &name, Some(&why));
            lock(&failures).push(Failure { dir: dir.display().to_string(), why });
        };
        if *role == Role::Linearize && baseline_failed.load(Ordering::SeqCst) {
            errln!("# [{n}/{total}] skip {}: the baseline failed", dir.display());
            return fail("skipped: the baseline failed".into());
        }
        let args = match search_of {
            None => args.to_vec(),
            Some(from) => match search_count(from, "search_steps") {
                Ok(n) => Step::with_search_steps(args, n),
                Err(e) => {
                    errln!("# [{n}/{total}] skip {}: {e}", dir.display());
                    return fail(format!("skipped: {e}"));
                }
            },
        };
        let log = logs.as_ref().map(|l| l.join(format!("{name}.log")));
        let whither = log.as_ref().map_or(String::new(), |l| format!(" (output: {})", l.display()));
        outln!("# [{n}/{total}] {}{whither}", dir.display());
        outln!("$ {}", shell_line(&snl.display().to_string(), &args));
        match run_child(snl, &args, log.as_deref()) {
            Ok(()) => {
                super::status::mark(out, &name, None);
                if log.is_some() {
                    outln!("# done {}", dir.display());
                }
            }
            Err(why) => {
                errln!("xtask pareto: run {} failed ({why}); going on", dir.display());
                fail(why);
                if *role == Role::Baseline {
                    baseline_failed.store(true, Ordering::SeqCst);
                }
            }
        }
    });
    Ok(failures.into_inner().unwrap_or_else(PoisonError::into_inner))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Calls `run(i)` for every job `i`, at most `jobs` at once, each once the jobs `after[i]`
/// have returned, the lowest ready index first. `after` must have no cycle (a plan's
/// prerequisites come before the runs that wait for them).
fn schedule(after: &[Vec<usize>], jobs: usize, run: &(dyn Fn(usize) + Sync)) {
    struct Board {
        started: Vec<bool>,
        done: Vec<bool>,
    }
    /// Marks a job done even when it panics, so no worker waits for it forever.
    struct Finish<'a>(&'a Mutex<Board>, &'a Condvar, usize);
    impl Drop for Finish<'_> {
        fn drop(&mut self) {
            lock(self.0).done[self.2] = true;
            self.1.notify_all();
        }
    }
    let n = after.len();
    let board = Mutex::new(Board { started: vec![false; n], done: vec![false; n] });
    let ready = Condvar::new();
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, n.max(1)) {
            s.spawn(|| {
                loop {
                    let mut b = lock(&board);
                    let i = loop {
                        match (0..n).find(|&i| !b.started[i] && after[i].iter().all(|&p| b.done[p])) {
                            Some(i) => break i,
                            None if b.started.iter().all(|&s| s) => return,
                            None => b = ready.wait(b).unwrap_or_else(PoisonError::into_inner),
                        }
                    };
                    b.started[i] = true;
                    drop(b);
                    let _finish = Finish(&board, &ready, i);
                    run(i);
                }
            });
        }
    });
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
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_control_reads_its_snl_runs_search_length() {
        let root = std::env::temp_dir().join(format!("xtask-search-epochs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("snl-5-s1");
        std::fs::create_dir_all(&dir).unwrap();
        assert!(search_count(&dir, "search_steps").unwrap_err().starts_with("its SNL run is not finished"));
        let result = |seed: u64, sel: &str, steps: &str| {
            format!(
                r#"{{"selection":"{sel}","budget":5,"seed":{seed},"epochs_trained":9,"search_epochs":7,"search_steps":{steps}}}"#
            )
        };
        std::fs::write(dir.join("result.json"), result(1, "snl", "null")).unwrap();
        assert!(search_count(&dir, "search_steps").unwrap_err().ends_with("result.json: no search_steps"));
        std::fs::write(dir.join("result.json"), result(1, "snl", "66")).unwrap();
        assert_eq!(
            (search_count(&dir, "search_epochs"), search_count(&dir, "search_steps")),
            (Ok(7), Ok(66))
        );
        // Another seed's result copied in, or a control's: not this SNL run's length.
        std::fs::write(dir.join("result.json"), result(0, "snl", "66")).unwrap();
        assert!(search_count(&dir, "search_steps").unwrap_err().contains("not the run of folder `snl-5-s1`"));
        let control = root.join("random-5-s1");
        std::fs::create_dir_all(&control).unwrap();
        std::fs::write(control.join("result.json"), result(1, "random", "66")).unwrap();
        assert!(search_count(&control, "search_steps").unwrap_err().contains("a random run's result"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Jobs 0 and 1 wait for nothing, 2 and 3 for 0, 4 for 2: records each job's start and
    /// end, and how many ran at once. A job waits (up to 20 s) for a second one to be running
    /// when `pair` says it should find one, so two at once is seen however slow the machine.
    fn trace(jobs: usize, pair: &[usize]) -> (Vec<String>, usize) {
        let after = vec![vec![], vec![], vec![0], vec![0], vec![2]];
        let state = Mutex::new((Vec::new(), 0usize, 0usize));
        let changed = Condvar::new();
        schedule(&after, jobs, &|i| {
            let mut s = lock(&state);
            s.0.push(format!("start {i}"));
            s.1 += 1;
            s.2 = s.2.max(s.1);
            changed.notify_all();
            if pair.contains(&i) {
                s = changed.wait_timeout_while(s, Duration::from_secs(20), |s| s.2 < 2).unwrap().0;
            }
            s.0.push(format!("end {i}"));
            s.1 -= 1;
        });
        let s = state.into_inner().unwrap();
        (s.0, s.2)
    }

    #[test]
    fn a_second_sweep_of_one_folder_is_refused_until_the_first_ends_and_is_seen_running() {
        let dir = std::env::temp_dir().join(format!("xtask-sweep-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!sweep_running(&dir), "no lock file yet");
        std::fs::write(dir.join(LOCK), "a longer stale pid").unwrap();
        let first = lock_sweep(&dir).unwrap();
        assert!(sweep_running(&dir));
        // A line, so `cat` of several lock files gives one pid per line.
        let pid = format!("{}\n", std::process::id());
        assert_eq!(std::fs::read_to_string(dir.join(LOCK)).unwrap(), pid, "the holder's pid, alone");
        let err = lock_sweep(&dir).unwrap_err();
        assert_eq!(std::fs::read_to_string(dir.join(LOCK)).unwrap(), pid, "a refused sweep leaves it");
        assert!(err.starts_with("another `xtask pareto` is running the sweep in"), "{err}");
        drop(first);
        assert!(!sweep_running(&dir), "the lock file stays, unlocked");
        assert!(lock_sweep(&dir).is_ok(), "free again");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_job_at_a_time_keeps_the_plan_order() {
        let (events, most) = trace(1, &[]);
        let expected: Vec<String> = (0..5).flat_map(|i| [format!("start {i}"), format!("end {i}")]).collect();
        assert_eq!((events, most), (expected, 1));
    }

    #[test]
    fn two_jobs_run_at_once_and_wait_for_what_they_need() {
        let (events, most) = trace(2, &[0, 1]);
        assert_eq!(most, 2, "{events:?}");
        let at = |e: &str| events.iter().position(|x| x == e).unwrap_or_else(|| panic!("{e}: {events:?}"));
        assert!(at("start 2") > at("end 0") && at("start 3") > at("end 0"), "{events:?}");
        assert!(at("start 4") > at("end 2"), "{events:?}");
        assert_eq!(events.len(), 10, "each job once: {events:?}");
    }

    #[test]
    fn more_jobs_than_work_and_no_work_end() {
        assert_eq!(trace(8, &[]).0.len(), 10);
        schedule(&[], 3, &|_| unreachable!("no job"));
    }
}
