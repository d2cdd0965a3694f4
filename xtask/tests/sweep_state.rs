//! `scripts/sweep-state.sh`, which carries a sweep to the next machine: a sweep saved,
//! restored in place of its folder and run again goes on where it stopped; the refusals
//! protect the sweep folder, running runs and anything that is not a saved state.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod support;

fn script(args: &[&Path]) -> Output {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/sweep-state.sh");
    Command::new("bash").arg(path).args(args).output().expect("run bash")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A fresh folder, removed when the value drops.
struct Temp(PathBuf);

impl Temp {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sweep-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `save OUT STATE` run while another process holds the flock on `lock`.
fn save_while_locked(lock: &Path, out: &Path, state: &Path) -> Output {
    // `-o`: the lock is flock's own, not inherited by `sleep`, so killing flock frees it.
    let mut holder =
        Command::new("flock").arg("-o").arg(lock).args(["sleep", "30"]).spawn().expect("run flock");
    let held = || !Command::new("flock").arg("-n").arg(lock).arg("true").status().unwrap().success();
    for _ in 0..250 {
        if held() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = script(&[Path::new("save"), out, state]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    o
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A sweep run by the stand-in `snl` of `tests/fake-snl.sh` in `root/sweep`: 6 runs finish,
/// `uniform-60pct-s0` fails after writing its config.json (unfinished). Returns the xtask
/// arguments that run it.
fn fake_sweep(root: &Path) -> Vec<String> {
    let fake = support::fake_snl(root);
    let args: Vec<String> = ["pareto", "--snl", fake.to_str().unwrap(), "--out"]
        .into_iter()
        .map(String::from)
        .chain([root.join("sweep").display().to_string(), "--budgets".into(), "30%,60%".into()])
        .collect();
    let o = Command::new(env!("CARGO_BIN_EXE_xtask")).args(&args).output().unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("1 run(s) failed:\n  ") && t.contains("uniform-60pct-s0 (exit code 3)"), "{t}");
    args
}

#[test]
fn a_sweep_saved_and_restored_in_place_goes_on_where_it_stopped() {
    let root = Temp::new("round-trip");
    let args = fake_sweep(&root.0);
    let out = root.0.join("sweep");
    let state = root.0.join("results/sweep-state");

    let o = script(&[Path::new("save"), &out, &state]);
    assert!(o.status.success(), "{}", text(&o));
    let runs = [
        "baseline",
        "random-30pct-s0",
        "random-60pct-s0",
        "snl-30pct-s0",
        "snl-60pct-s0",
        "sweep.json",
        "uniform-30pct-s0",
        "uniform-60pct-s0",
    ];
    assert_eq!(names(&state), runs, "the record and every run; no lock, log or table");
    assert_eq!(
        names(&state.join("baseline")),
        ["best.safetensors", "config.json", "metrics.jsonl", "result.json"],
        "the finished baseline keeps its best model, the teacher"
    );
    assert!(
        !state.join("snl-30pct-s0/model.safetensors").exists()
            && state.join("snl-30pct-s0/result.json").exists(),
        "a finished linearize run without its model"
    );
    assert_eq!(names(&state.join("uniform-60pct-s0")), ["config.json"], "the unfinished run whole");

    // A new machine: the sweep folder is gone; restored at the same path, the sweep resumes.
    std::fs::rename(&out, root.0.join("lost")).unwrap();
    let o = script(&[Path::new("restore"), &state, &out]);
    assert!(o.status.success(), "{}", text(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_xtask")).args(&args).output().unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert_eq!(t.matches("# skip").count(), 6, "the finished runs are not run again: {t}");
    assert!(t.contains("linearize --resume") && t.contains("uniform-60pct-s0"), "{t}");
    let csv = std::fs::read_to_string(out.join("pareto.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 7, "{csv}");

    // Restoring over a sweep is refused; saving again replaces the state.
    let o = script(&[Path::new("restore"), &state, &out]);
    assert!(!o.status.success() && text(&o).contains("already holds a sweep"), "{}", text(&o));
    let o = script(&[Path::new("save"), &out, &state]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_dir(state.parent().unwrap()).unwrap().count(),
        1,
        "no old or temporary copy left"
    );
    assert!(state.join("uniform-60pct-s0/result.json").exists(), "now finished");
}

#[test]
fn save_refuses_to_replace_what_is_not_a_saved_state() {
    let root = Temp::new("refusals");
    fake_sweep(&root.0);
    let out = root.0.join("sweep");
    let refused = |state: &Path, why: &str| {
        let o = script(&[Path::new("save"), &out, state]);
        assert!(!o.status.success(), "{} was accepted", state.display());
        let e = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(e.contains(why) && e.lines().count() == 1, "{}: {e}", state.display());
    };
    refused(&out, "inside the sweep folder");
    refused(&out.join("state"), "inside the sweep folder");
    refused(&root.0, "sweep folder");
    let file = root.0.join("file");
    std::fs::write(&file, "keep").unwrap();
    refused(&file, "not a folder");
    let notes = root.0.join("notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("todo.txt"), "keep").unwrap();
    refused(&notes, "not part of a saved state");
    let link = root.0.join("link");
    std::os::unix::fs::symlink(&notes, &link).unwrap();
    refused(&link, "symbolic link");
    assert_eq!(std::fs::read_to_string(notes.join("todo.txt")).unwrap(), "keep");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");

    // Not a sweep, or a sweep with no run yet: nothing to save, and a saved state stays.
    let state = root.0.join("state");
    let o = script(&[Path::new("save"), &out, &state]);
    assert!(o.status.success(), "{}", text(&o));
    let empty = root.0.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = script(&[Path::new("save"), &empty, &state]);
    assert!(!o.status.success() && text(&o).contains("no sweep.json"), "{}", text(&o));
    std::fs::copy(out.join("sweep.json"), empty.join("sweep.json")).unwrap();
    let o = script(&[Path::new("save"), &empty, &state]);
    assert!(!o.status.success() && text(&o).contains("holds no run folder"), "{}", text(&o));
    assert!(state.join("baseline/best.safetensors").exists(), "the saved state is kept");
}

/// A run, or the sweep, whose process holds its lock is not copied mid-write.
#[test]
fn save_refuses_while_a_run_or_the_sweep_holds_its_lock() {
    let root = Temp::new("running");
    fake_sweep(&root.0);
    let out = root.0.join("sweep");
    for lock in [out.join("uniform-60pct-s0/.snl.lock"), out.join(".pareto.lock")] {
        let o = save_while_locked(&lock, &out, &root.0.join("state"));
        assert!(!o.status.success(), "saved while {} was held", lock.display());
        assert!(text(&o).contains("is running"), "{}", text(&o));
        assert!(!root.0.join("state").exists());
    }
}

/// A save never loses more than it replaces: not over a state that is further along than
/// the sweep folder (a run missing there, or fewer lines of metrics: the state was not
/// restored first), nor over a state holding a file the folder no longer has; and symbolic
/// links in a run are refused, not followed (a linked run folder was saved empty).
#[test]
fn save_refuses_to_lose_what_the_state_has() {
    let root = Temp::new("lose");
    fake_sweep(&root.0);
    let out = root.0.join("sweep");
    let state = root.0.join("state");
    let o = script(&[Path::new("save"), &out, &state]);
    assert!(o.status.success(), "{}", text(&o));
    let refused = |why: &str| {
        let o = script(&[Path::new("save"), &out, &state]);
        let e = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success() && e.contains(why) && e.lines().count() == 1, "{why}: {e}");
        assert!(state.join("baseline/best.safetensors").exists(), "{why}: the state was touched");
    };

    let metrics = out.join("baseline/metrics.jsonl");
    let saved = std::fs::read_to_string(&metrics).unwrap();
    assert!(!saved.is_empty());
    std::fs::write(&metrics, "").unwrap();
    refused("fewer lines of metrics");
    std::fs::write(&metrics, &saved).unwrap();

    std::fs::rename(out.join("snl-30pct-s0"), root.0.join("aside")).unwrap();
    refused("which");
    std::os::unix::fs::symlink(root.0.join("aside"), out.join("snl-30pct-s0")).unwrap();
    refused("symbolic link");
    std::fs::remove_file(out.join("snl-30pct-s0")).unwrap();
    std::fs::rename(root.0.join("aside"), out.join("snl-30pct-s0")).unwrap();

    std::fs::write(state.join("baseline/notes.txt"), "keep").unwrap();
    refused("notes.txt is not in");
    std::fs::remove_file(state.join("baseline/notes.txt")).unwrap();

    let o = script(&[Path::new("save"), &out, &state]);
    assert!(o.status.success(), "all put back: {}", text(&o));
}

/// One save at a time per folder of states; a path that starts with a dash is a path.
#[test]
fn saves_take_turns_and_take_any_path() {
    let root = Temp::new("turns");
    fake_sweep(&root.0);
    let out = root.0.join("sweep");
    let o = save_while_locked(&root.0, &out, &root.0.join("state"));
    assert!(!o.status.success() && text(&o).contains("another save"), "{}", text(&o));
    assert!(!root.0.join("state").exists());

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/sweep-state.sh");
    let o = Command::new("bash")
        .arg(path)
        .args(["save", "sweep", "-state//"])
        .current_dir(&root.0)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(root.0.join("-state/baseline/best.safetensors").exists());
}

/// A restore copies into a folder that holds none of the state's names, and writes
/// sweep.json last: one that failed midway can be run again.
#[test]
fn restore_never_merges_and_can_be_run_again() {
    let root = Temp::new("restore");
    fake_sweep(&root.0);
    let (out, state) = (root.0.join("sweep"), root.0.join("state"));
    let o = script(&[Path::new("save"), &out, &state]);
    assert!(o.status.success(), "{}", text(&o));

    let target = root.0.join("target");
    std::fs::create_dir_all(target.join("baseline")).unwrap();
    std::fs::write(target.join("baseline/best.safetensors"), "mine").unwrap();
    let o = script(&[Path::new("restore"), &state, &target]);
    assert!(!o.status.success() && text(&o).contains("exists"), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(target.join("baseline/best.safetensors")).unwrap(), "mine");
    let o = script(&[Path::new("restore"), &state, &state.join("inner")]);
    assert!(!o.status.success() && text(&o).contains("inside the state"), "{}", text(&o));

    // A restore cut short before sweep.json: the runs are there, the sweep is not; the
    // copied runs are removed by hand and the restore runs again.
    std::fs::remove_dir_all(&target).unwrap();
    let o = script(&[Path::new("restore"), &state, &target]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(names(&target), names(&state));
}
