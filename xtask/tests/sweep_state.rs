//! `scripts/sweep-state.sh`, which carries a sweep's unfinished runs and its teacher to the
//! next machine: a save and restore round trip keeps exactly what the sweep needs, and the
//! refusals protect the sweep folder and anything that is not a saved state.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script(args: &[&Path]) -> Output {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/sweep-state.sh");
    Command::new("bash").arg(path).args(args).output().expect("run bash")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sweep-state-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(path: PathBuf, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A sweep folder with a finished baseline, a finished and an unfinished linearize run, a
/// log folder and a stale lock.
fn sweep(root: &Path) -> PathBuf {
    let out = root.join("out");
    for f in ["config.json", "metrics.jsonl", "result.json", "best.safetensors", "checkpoint.safetensors"] {
        write(out.join("baseline").join(f), &format!("baseline {f}"));
    }
    for f in ["config.json", "metrics.jsonl", "result.json", "model.safetensors"] {
        write(out.join("snl-10-s0").join(f), &format!("finished {f}"));
    }
    for f in ["config.json", "metrics.jsonl", "checkpoint.safetensors", "best.safetensors", ".snl.lock"] {
        write(out.join("random-10-s0").join(f), &format!("unfinished {f}"));
    }
    write(out.join("logs/baseline.log"), "log");
    out
}

#[test]
fn save_then_restore_rebuilds_what_the_sweep_resumes_from() {
    let root = temp("round-trip");
    let out = sweep(&root);
    // The results folder as `--publish` leaves it: finished runs without checkpoints.
    let results = root.join("results");
    for run in ["baseline", "snl-10-s0"] {
        for f in ["config.json", "metrics.jsonl", "result.json"] {
            write(results.join(run).join(f), &std::fs::read_to_string(out.join(run).join(f)).unwrap());
        }
    }
    write(results.join("README.md"), "not a run");
    let state = results.join("sweep-state");

    let o = script(&[Path::new("save"), &out, &state]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(names(&state), ["baseline", "random-10-s0"]);
    assert_eq!(
        names(&state.join("baseline")),
        ["best.safetensors"],
        "only the teacher of a finished baseline"
    );
    assert_eq!(
        names(&state.join("random-10-s0")),
        ["best.safetensors", "checkpoint.safetensors", "config.json", "metrics.jsonl"],
        "an unfinished run whole, without its lock"
    );

    // Saving again replaces the state.
    std::fs::remove_dir_all(out.join("random-10-s0")).unwrap();
    let o = script(&[Path::new("save"), &out, &state]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(names(&state), ["baseline"]);
    let out = sweep(&root.join("again"));
    let o = script(&[Path::new("save"), &out, &state]);
    assert!(o.status.success(), "{}", stderr(&o));

    let fresh = root.join("fresh");
    let o = script(&[Path::new("restore"), &state, &fresh]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(names(&fresh), ["baseline", "random-10-s0", "snl-10-s0"]);
    for (run, f) in [
        ("baseline", "best.safetensors"),
        ("baseline", "result.json"),
        ("snl-10-s0", "result.json"),
        ("random-10-s0", "checkpoint.safetensors"),
    ] {
        assert_eq!(
            std::fs::read(fresh.join(run).join(f)).unwrap(),
            std::fs::read(out.join(run).join(f)).unwrap(),
            "{run}/{f}"
        );
    }
    // A folder that already holds runs is not restored into.
    let o = script(&[Path::new("restore"), &state, &fresh]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already holds runs"), "{}", stderr(&o));
}

#[test]
fn save_refuses_to_replace_what_is_not_a_saved_state() {
    let root = temp("refusals");
    let out = sweep(&root);
    let refused = |state: &Path, why: &str| {
        let o = script(&[Path::new("save"), &out, state]);
        assert!(!o.status.success(), "{} was accepted", state.display());
        let e = stderr(&o);
        assert!(e.contains(why) && e.lines().count() == 1, "{}: {e}", state.display());
    };
    refused(&out, "inside the sweep folder");
    refused(&out.join("state"), "inside the sweep folder");
    refused(&root, "sweep folder");
    let file = root.join("file");
    write(file.clone(), "keep");
    refused(&file, "not a folder");
    let notes = root.join("notes");
    write(notes.join("todo.txt"), "keep");
    refused(&notes, "not a run folder");
    assert_eq!(std::fs::read_to_string(notes.join("todo.txt")).unwrap(), "keep");
    assert_eq!(std::fs::read_to_string(file).unwrap(), "keep");
    assert!(out.join("baseline/checkpoint.safetensors").exists(), "the sweep folder is untouched");

    let o = script(&[Path::new("save"), &root.join("nosuch"), &root.join("state")]);
    assert!(!o.status.success() && stderr(&o).contains("no such sweep folder"), "{}", stderr(&o));
}

/// A run whose process holds its lock and is not paused is not copied mid-write.
#[test]
fn save_refuses_a_running_run() {
    let root = temp("running");
    let out = sweep(&root);
    let lock = out.join("random-10-s0/.snl.lock");
    // `flock` holds the lock for the life of the `sleep` it runs.
    let mut holder = Command::new("flock").arg(&lock).args(["sleep", "30"]).spawn().expect("run flock");
    std::fs::write(&lock, holder.id().to_string()).unwrap();
    // Wait until the lock is really held.
    for _ in 0..100 {
        let free = Command::new("flock").args(["-n"]).arg(&lock).arg("true").status().unwrap().success();
        if !free {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = script(&[Path::new("save"), &out, &root.join("state")]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(!o.status.success(), "saved a running run");
    assert!(stderr(&o).contains("is running"), "{}", stderr(&o));
    assert!(!root.join("state").exists());
}
