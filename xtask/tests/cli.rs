//! The xtask binary end to end, without the real `snl`: `--dry-run` prints the plan and an
//! estimate, and a sweep driven through a stand-in script (`tests/fake-snl.sh`, which writes
//! `result.json` files as `snl` would) collects, plots, gives controls their SNL run's search
//! length, reports a failing run, resumes it, grows by a seed, and refuses to mix other
//! settings into the sweep; `--publish` copies what a results folder holds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod support;

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

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The CSV's row of `run` as (column, value) pairs.
fn csv_row(csv: &str, run: &str) -> Vec<(String, String)> {
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let line =
        csv.lines().find(|l| l.starts_with(&format!("{run},"))).unwrap_or_else(|| panic!("{run}:\n{csv}"));
    header.iter().map(|h| h.to_string()).zip(line.split(',').map(str::to_string)).collect()
}

fn field(row: &[(String, String)], column: &str) -> String {
    row.iter().find(|(h, _)| h == column).map(|(_, v)| v.clone()).unwrap()
}

#[test]
fn bare_xtask_lists_tasks_and_bad_input_exits_2() {
    let o = xtask(&[]);
    assert!(o.status.success());
    assert!(text(&o).contains("pareto"));
    assert_eq!(xtask(&["nope"]).status.code(), Some(2));
    let o = xtask(&["pareto", "--preset", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("'nope'"), "{}", text(&o));
    let o = xtask(&["pareto", "--budgets", "10%,0.1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("`10%` and `0.1` are the same budget"), "{}", text(&o));
    let o = xtask(&["pareto", "--dry-run", "--selections", "snl,random,snl"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--selections: snl is given twice"), "{}", text(&o));
    // Values snl would refuse are refused before a baseline trains for hours.
    for (flag, value, why) in [
        ("--lasso", "0", "expected a number above 0"),
        ("--lasso", "-1", "expected a number above 0"),
        ("--search-lr", "nan", "is not a number"),
        ("--kappa", "1", "expected a number above 1"),
        ("--max-search-epochs", "0", "expected a whole number of 1 or more"),
        ("--threads", "0", "expected a whole number of 1 or more"),
        ("--batch-size", "0", "expected a whole number of 1 or more"),
    ] {
        let o = xtask(&["pareto", "--dry-run", flag, value]);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {}", text(&o));
        assert!(text(&o).contains(why), "{flag} {value}: {}", text(&o));
    }
    for task in ["pareto", "sites", "bench-vs-torch"] {
        let o = xtask(&[task, "--help"]);
        assert!(o.status.success() && text(&o).contains("Usage: cargo xtask"), "{task}: {}", text(&o));
    }
}

#[test]
fn dry_run_prints_every_command_and_an_estimate_and_runs_nothing() {
    let dir = temp("dry");
    let out = dir.join("sweep");
    let o = xtask(&[
        "pareto",
        "--preset",
        "cifar10-w16",
        "--snl",
        "/x/snl",
        "--dry-run",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert_eq!(t.matches(" train ").count(), 1, "{t}");
    assert_eq!(t.matches(" linearize --model ").count(), 24, "4 budgets x 3 selections x 2 seeds: {t}");
    let control =
        format!("--search-steps N  # N = search_steps in {}/snl-3225-s1/result.json", out.display());
    assert_eq!(t.matches(&control).count(), 2, "{t}");
    assert!(t.contains("compute: 160 baseline epochs and 216..672 linearize epochs still to run"), "{t}");
    // 160 x 150 + 216 x 350 = 99,600 s; 160 x 150 + 672 x 350 = 259,200 s.
    assert!(
        t.contains(
            "= 27.7..72.0 h wall: the baseline's at 150.0 s per epoch (preset cifar10-w16's figure; \
             --epoch-seconds to change), then the linearize runs at 350.0 s per epoch"
        ),
        "{t}"
    );
    assert!(!out.exists(), "a dry run creates nothing");
    // An absurd cap is an estimate that says so, not an overflow.
    let huge = ["pareto", "--snl", "/x/snl", "--dry-run", "--max-search-epochs", "18446744073709551615"];
    let o = xtask(&[&huge[..], &["--out", out.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("..18446744073709551615 linearize epochs"), "{}", text(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn sweep_with_a_stand_in_binary() {
    let dir = temp("sweep");
    let fake = support::fake_snl(&dir);
    let out = dir.join("sweep");
    let args =
        ["pareto", "--snl", fake.to_str().unwrap(), "--out", out.to_str().unwrap(), "--budgets", "30%,60%"];

    // The stand-in fails uniform at 60% (leaving config.json): reported, the rest goes on.
    let o = xtask(&args);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("uniform-60pct-s0 (exit code 3)"), "{t}");
    assert!(t.contains("--selection random") && t.contains("--search-steps 27"), "{t}");
    let csv = read(out.join("pareto.csv"));
    assert_eq!(csv.lines().count(), 1 + 6, "header, baseline and 5 finished runs:\n{csv}");
    // Equal training: a control trains as many epochs as its SNL run.
    let (snl, random) = (csv_row(&csv, "snl-30pct-s0"), csv_row(&csv, "random-30pct-s0"));
    assert_eq!(field(&snl, "epochs_trained"), "4");
    assert_eq!(field(&random, "epochs_trained"), "4");
    assert_eq!((field(&snl, "lambda0"), field(&random, "lambda0")), ("0.001".into(), String::new()));
    assert_eq!(field(&csv_row(&csv, "baseline"), "epochs_trained"), "0");
    let svg = read(out.join("pareto.svg"));
    assert_eq!(svg.matches("<circle").count(), 6);
    let json: serde_json::Value = serde_json::from_str(&read(out.join("pareto.json"))).unwrap();
    assert_eq!(json["runs"].as_array().unwrap().len(), 6);
    assert_eq!(json["points"].as_array().unwrap().len(), 6, "baseline, snl x2, random x2, uniform x1");
    assert!(out.join("snl-30pct-s0/sites.svg").exists());
    assert!(out.join("sweep.json").exists());

    // Published: the tables and each finished run's small files; no checkpoint, no unfinished run.
    let results = dir.join("results");
    let mut publish = args.to_vec();
    publish.extend(["--collect-only", "--publish", results.to_str().unwrap()]);
    let o = xtask(&publish);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("published pareto.* and 6 finished runs (no checkpoints)"), "{}", text(&o));
    assert_eq!(read(results.join("pareto.csv")), csv);
    assert_eq!(read(results.join("snl-30pct-s0/result.json")), read(out.join("snl-30pct-s0/result.json")));
    assert!(results.join("snl-30pct-s0/sites.svg").exists() && results.join("sweep.json").exists());
    assert!(!results.join("snl-30pct-s0/model.safetensors").exists());
    assert!(
        !results.join("baseline/best.safetensors").exists() && results.join("baseline/result.json").exists()
    );
    assert!(!results.join("uniform-60pct-s0").exists(), "unfinished");
    // Another sweep's folder, or a file, is refused before anything runs.
    let mut other = publish.clone();
    *other.last_mut().unwrap() = fake.to_str().unwrap();
    let o = xtask(&other);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("snl: not a folder; nothing was run"), "{}", text(&o));
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let mut into_sweep = args.to_vec();
    into_sweep[4] = empty.to_str().unwrap();
    into_sweep.extend(["--collect-only", "--publish", out.to_str().unwrap()]);
    let o = xtask(&into_sweep);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("a sweep folder (it has .pareto.lock)"), "{}", text(&o));
    let o = xtask(&["pareto", "--out", dir.join("none").to_str().unwrap(), "--collect-only"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("none: no such folder, so no sweep to collect"), "{}", text(&o));

    // Again: finished runs are skipped, the unfinished one resumed (as the run it was).
    // A folder the sweep did not plan is not collected.
    std::fs::create_dir_all(out.join("snl-90pct-s0")).unwrap();
    std::fs::copy(out.join("snl-30pct-s0/result.json"), out.join("snl-90pct-s0/result.json")).unwrap();
    let o = xtask(&args);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert_eq!(t.matches("# skip").count(), 6, "{t}");
    assert!(t.contains("linearize --resume"), "{t}");
    let csv = read(out.join("pareto.csv"));
    assert_eq!(csv.lines().count(), 1 + 7, "{csv}");
    assert!(!csv.contains("snl-90pct"), "{csv}");
    let resumed = csv_row(&csv, "uniform-60pct-s0");
    assert_eq!((field(&resumed, "budget"), field(&resumed, "epochs_trained")), ("600".into(), "4".into()));

    // Another seed: the record grows, the baseline is not trained again; the table has both.
    let mut two = args.to_vec();
    two.extend(["--seeds", "0,1"]);
    let o = xtask(&two);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert_eq!(t.matches(" train ").count(), 0, "{t}");
    let csv = read(out.join("pareto.csv"));
    assert_eq!(csv.lines().count(), 1 + 13, "{csv}");
    assert_eq!(field(&csv_row(&csv, "snl-60pct-s1"), "seed"), "1");
    assert!(t.contains("n=2"), "the summary is over two seeds: {t}");

    // Collecting with fewer flags collects what the record holds, not a smaller table.
    let few = ["pareto", "--snl", fake.to_str().unwrap(), "--out", out.to_str().unwrap(), "--collect-only"];
    let o = xtask(&few);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(read(out.join("pareto.csv")), csv);
    // A broken result.json: exit 1, named, and the tables left as they were.
    let result = out.join("snl-60pct-s1/result.json");
    let good = read(result.clone());
    for broken in ["{", &good.replace("\"relu_count\":", "\"relu_count\":1000000")] {
        std::fs::write(&result, broken).unwrap();
        let o = xtask(&few);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(t.contains("snl-60pct-s1/result.json: ") && t.contains("pareto.* left as they were"), "{t}");
        assert_eq!(read(out.join("pareto.csv")), csv);
    }
    std::fs::write(&result, good).unwrap();
    // A folder that is no sweep: nothing collected, nothing overwritten.
    let stranger = dir.join("stranger");
    std::fs::create_dir_all(&stranger).unwrap();
    std::fs::write(stranger.join("pareto.csv"), "mine\n").unwrap();
    let o = xtask(&["pareto", "--out", stranger.to_str().unwrap(), "--collect-only"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("holds no sweep record (sweep.json), so nothing to collect"), "{}", text(&o));
    assert_eq!(read(stranger.join("pareto.csv")), "mine\n");

    // Other settings into the same folder: refused before anything runs, nothing changed.
    let mut seed = args.to_vec();
    seed.extend(["--seed", "1"]);
    let o = xtask(&seed);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("sweep.json records other settings: --seed was 0, now 1 (baseline)"), "{t}");
    assert!(t.contains("choose another --out"), "{t}");
    assert!(!t.contains(" linearize ") && !t.contains("wrote"), "{t}");
    assert_eq!(read(out.join("pareto.csv")), csv);

    // Runs whose settings were never recorded: refused too.
    std::fs::remove_file(out.join("sweep.json")).unwrap();
    let o = xtask(&args);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("does not record (baseline, random-30pct-s0,"), "{t}");

    // A control whose SNL run never ran is reported, not run without its search length.
    let lone = dir.join("lone");
    let o = xtask(&[
        "pareto",
        "--snl",
        fake.to_str().unwrap(),
        "--out",
        lone.to_str().unwrap(),
        "--budgets",
        "30%",
        "--selections",
        "random",
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("random-30pct-s0 (skipped: its SNL run is not finished"), "{t}");
    assert!(!lone.join("random-30pct-s0").exists(), "{t}");
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

/// `--executor slurm`: the dry run writes the scripts and submits nothing; no sbatch is a
/// usage error; a refused sbatch is shown with Slurm's message and what was submitted is
/// cancelled; Slurm flags need the Slurm executor.
#[cfg(unix)]
#[test]
fn slurm_submission_and_its_bad_input() {
    let dir = temp("slurm");
    let out = dir.join("sweep");
    let base =
        ["pareto", "--snl", "/x/snl", "--budgets", "30%", "--seeds", "0,1", "--out", out.to_str().unwrap()];
    let with = |extra: &[&str]| base.iter().chain(extra).map(|s| s.to_string()).collect::<Vec<String>>();

    let o = xtask(
        &with(&["--executor", "slurm", "--partition", "p", "--dry-run"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let slurm = out.join("slurm");
    assert!(t.contains("--array=0-1 '--dependency=afterok:{0},aftercorr:{1}'"), "{t}");
    assert_eq!(read(slurm.join("tasks.txt")).lines().count(), 6, "3 selections x 2 seeds");
    assert!(read(slurm.join("runs.sbatch")).contains("#SBATCH --partition=p"));
    assert!(read(slurm.join("tasks.txt")).lines().next().unwrap().ends_with("--task snl-30pct-s0"));
    assert!(!t.contains("submitted baseline") && !out.join("sweep.json").exists(), "{t}");

    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(with(&["--executor", "slurm"]))
        .env("PATH", dir.join("nothing"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("sbatch is not on PATH (nothing was submitted)"), "{}", text(&o));

    // A stand-in sbatch takes the first job and refuses the second; scancel says what it got.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join("scancel.log");
    let sbatch = "#!/bin/sh\n[ -e \"$0.once\" ] && { echo 'sbatch: error: invalid partition specified: p' >&2; exit 1; }\ntouch \"$0.once\"; echo 41\n";
    let scancel = format!("#!/bin/sh\necho \"$@\" > {}\n", log.display());
    for (name, body) in [("sbatch", sbatch.to_string()), ("scancel", scancel)] {
        support::write_executable(&bin.join(name), body.as_bytes());
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(with(&["--executor", "slurm", "--partition", "p"]))
        .env("PATH", path)
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("sbatch refused the 2 runs (snl) job: sbatch: error: invalid partition specified: p"),
        "{t}"
    );
    assert_eq!(read(log).trim(), "41", "the baseline job is cancelled");

    let o = xtask(&with(&["--gres", "gpu:1"]).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--gres is a Slurm flag: give --executor slurm"), "{}", text(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `cargo xtask help | head -0` and `> /dev/full`: no panic; a full stdout is one error line.
#[test]
fn a_closed_or_full_stdout_never_panics() {
    let help = |stdout: std::process::Stdio| {
        Command::new(env!("CARGO_BIN_EXE_xtask")).arg("help").stdout(stdout).output().expect("run xtask")
    };
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = help(writer.into());
    assert_eq!(String::from_utf8_lossy(&o.stderr), "", "a closed pipe ends xtask quietly");
    assert_ne!(o.status.code(), Some(101));
    let Ok(full) = std::fs::File::options().write(true).open("/dev/full") else {
        println!("a_closed_or_full_stdout_never_panics: /dev/full skipped (no /dev/full)");
        return;
    };
    let o = help(full.into());
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "error: xtask: cannot write to stdout: No space left on device (os error 28)\n"
    );
}

/// A stderr that cannot be written (`2> /dev/full`) loses the message but not the exit code:
/// no panic (it was 101).
#[test]
fn a_full_stderr_never_panics() {
    let Ok(full) = std::fs::File::options().write(true).open("/dev/full") else {
        println!("a_full_stderr_never_panics: skipped (no /dev/full)");
        return;
    };
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["pareto", "--preset", "no-such-preset"])
        .stderr(full)
        .output()
        .expect("run xtask");
    assert_eq!(o.status.code(), Some(1));
}

/// `sites --out` never replaces a file it did not write (a checkpoint, a log): refused before
/// `snl` runs, the file untouched; a name not ending in .svg is refused too.
#[test]
fn sites_never_overwrites_a_file_it_did_not_write() {
    let dir = temp("sites-out");
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let model = run.join("best.safetensors");
    std::fs::write(&model, b"precious").unwrap();
    let chart = run.join("mine.svg");
    std::fs::write(&chart, b"not a chart").unwrap();
    std::fs::write(run.join("pareto.svg"), b"<svg><text>test top-1</text></svg>").unwrap();
    std::fs::write(run.join("other.svg"), b"<svg><text>run: kept ReLUs per site</text></svg>").unwrap();
    std::fs::write(run.join("other.json"), b"[1, 2]").unwrap();
    for (out, why) in [
        (model.clone(), "must end in .svg"),
        (chart.clone(), "mine.svg exists and is not a chart or counts of `xtask sites`"),
        (run.join("pareto.svg"), "pareto.svg exists and is not a chart or counts"),
        (run.join("other.svg"), "other.json exists and is not a chart or counts"),
    ] {
        let o =
            xtask(&["sites", run.to_str().unwrap(), "--out", out.to_str().unwrap(), "--snl", "/bin/false"]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains(why), "{}", text(&o));
    }
    assert_eq!(std::fs::read(&model).unwrap(), b"precious");
    assert_eq!(std::fs::read(&chart).unwrap(), b"not a chart");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A sweep stopped with `kill` takes its runs with it (Linux): left going, they would hold
/// their folders' locks and the next sweep could resume none of them.
#[cfg(target_os = "linux")]
#[test]
fn killing_the_sweep_ends_its_runs() {
    let dir = temp("kill");
    let fake = dir.join("sleepy-snl.sh");
    let pid_file = dir.join("child.pid");
    std::fs::write(&fake, format!("#!/bin/sh\necho $$ > {}\nexec sleep 120\n", pid_file.display())).unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    let out = dir.join("out");
    let mut sweep = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "pareto",
            "--preset",
            "smoke",
            "--snl",
            fake.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !pid_file.exists() || read(pid_file.clone()).trim().is_empty() {
        assert!(started.elapsed().as_secs() < 60, "the run never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let child = read(pid_file.clone()).trim().to_string();
    let alive = || {
        std::path::Path::new(&format!("/proc/{child}")).exists()
            && !read(PathBuf::from(format!("/proc/{child}/stat"))).contains(") Z ")
    };
    assert!(alive());
    std::process::Command::new("kill").arg(sweep.id().to_string()).status().unwrap();
    sweep.wait().unwrap();
    let killed = std::time::Instant::now();
    while alive() {
        assert!(killed.elapsed().as_secs() < 20, "run {child} outlived its sweep");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
