//! The xtask binary end to end, without the real `snl`: `--dry-run` prints the plan, and a
//! sweep driven through a stand-in script (`tests/fake-snl.sh`, which writes `result.json`
//! files as `snl` would) collects, plots, reports a failing run, resumes it, and refuses to
//! mix other settings into the sweep.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).output().expect("run xtask")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn bare_xtask_lists_tasks() {
    let o = xtask(&[]);
    assert!(o.status.success());
    assert!(text(&o).contains("pareto"));
    assert_eq!(xtask(&["nope"]).status.code(), Some(2));
    assert_eq!(xtask(&["pareto", "--preset", "nope"]).status.code(), Some(2));
}

#[test]
fn dry_run_prints_every_command_and_runs_nothing() {
    let dir = temp("dry");
    let out = dir.join("sweep");
    let o = xtask(&["pareto", "--preset", "smoke", "--debug", "--dry-run", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("build -p snl-cli"), "{t}");
    assert_eq!(t.matches(" train ").count(), 1, "{t}");
    assert_eq!(t.matches(" linearize ").count(), 6, "{t}");
    assert!(t.contains("--selection uniform"));
    assert!(!out.exists(), "a dry run creates nothing");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn sweep_with_a_stand_in_binary() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp("sweep");
    let fake = dir.join("snl");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-snl.sh"), &fake).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = dir.join("sweep");
    let args =
        ["pareto", "--snl", fake.to_str().unwrap(), "--out", out.to_str().unwrap(), "--budgets", "30%,60%"];

    // The stand-in fails uniform at 60% (leaving config.json): reported, the rest goes on.
    let o = xtask(&args);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("uniform-60pct (exit code 3)"), "{t}");
    let csv = std::fs::read_to_string(out.join("pareto.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 6, "header, baseline and 5 finished runs:\n{csv}");
    let svg = std::fs::read_to_string(out.join("pareto.svg")).unwrap();
    assert_eq!(svg.matches("<circle").count(), 6);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("pareto.json")).unwrap()).unwrap();
    assert_eq!(json["runs"].as_array().unwrap().len(), 6);
    assert!(out.join("snl-30pct/sites.svg").exists());
    assert!(out.join("sweep.json").exists());

    // Again: finished runs are skipped, the unfinished one resumed (as the run it was).
    // A folder the sweep did not plan is not collected.
    std::fs::create_dir_all(out.join("snl-90pct")).unwrap();
    std::fs::copy(out.join("snl-30pct/result.json"), out.join("snl-90pct/result.json")).unwrap();
    let o = xtask(&args);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert_eq!(t.matches("# skip").count(), 6, "{t}");
    assert!(t.contains("linearize --resume"), "{t}");
    let csv = std::fs::read_to_string(out.join("pareto.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 7, "{csv}");
    assert!(!csv.contains("snl-90pct"), "{csv}");
    let resumed: Vec<&str> = csv.lines().filter(|l| l.starts_with("uniform-60pct,")).collect();
    assert_eq!(resumed.len(), 1, "{csv}");
    assert!(resumed[0].starts_with("uniform-60pct,uniform,600,597,1000,"), "{csv}");

    // Other settings into the same folder: refused before anything runs, nothing changed.
    let mut seed = args.to_vec();
    seed.extend(["--seed", "1"]);
    let o = xtask(&seed);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("sweep.json records other settings: --seed was 0, now 1 (baseline and 6 more)"),
        "{t}"
    );
    assert!(t.contains("choose another --out"), "{t}");
    assert!(!t.contains(" linearize ") && !t.contains("wrote"), "{t}");
    assert_eq!(std::fs::read_to_string(out.join("pareto.csv")).unwrap(), csv);

    // Runs whose settings were never recorded: refused too.
    std::fs::remove_file(out.join("sweep.json")).unwrap();
    let o = xtask(&args);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("does not record (baseline, random-30pct,"), "{t}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A relative CARGO_TARGET_DIR is where cargo put the build: under the workspace root, where
/// xtask runs `cargo build`, not under the current folder.
#[test]
fn bench_finds_a_relative_target_dir_under_the_workspace_root() {
    let cwd = temp("bench-cwd");
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["bench-vs-torch", "--no-build"])
        .env("CARGO_TARGET_DIR", "xtask-no-such-target")
        .current_dir(&cwd)
        .output()
        .expect("run xtask");
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let exe = root.join("xtask-no-such-target/release/vs_torch");
    assert!(t.contains(&format!("could not run {}", exe.display())), "{t}");
    std::fs::remove_dir_all(&cwd).unwrap();
}
