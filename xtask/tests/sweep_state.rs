//! `scripts/sweep-state.sh`, which carries a sweep to the next machine: a sweep saved,
//! restored in place of its folder and run again goes on where it stopped; the refusals
//! protect the sweep folder, running runs and anything that is not a saved state.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
    use std::os::unix::fs::PermissionsExt;
    let fake = root.join("snl");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-snl.sh"), &fake).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let args: Vec<String> = ["pareto", "--snl", fake.to_str().unwrap(), "--out"]
        .into_iter()
        .map(String::from)
        .chain([root.join("sweep").display().to_string(), "--budgets".into(), "30%,60%".into()])
        .collect();
    let o = Command::new(env!("CARGO_BIN_EXE_xtask")).args(&args).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
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
        // `flock` holds the lock for the life of the `sleep` it runs.
        let mut holder = Command::new("flock").arg(&lock).args(["sleep", "30"]).spawn().expect("run flock");
        let held = || !Command::new("flock").arg("-n").arg(&lock).arg("true").status().unwrap().success();
        for _ in 0..250 {
            if held() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let o = script(&[Path::new("save"), &out, &root.0.join("state")]);
        holder.kill().unwrap();
        holder.wait().unwrap();
        assert!(!o.status.success(), "saved while {} was held", lock.display());
        assert!(text(&o).contains("is running"), "{}", text(&o));
        assert!(!root.0.join("state").exists());
    }
}
