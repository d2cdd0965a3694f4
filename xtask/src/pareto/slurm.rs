//! The Slurm executor: the same planned runs, handed to the cluster. One baseline job, an
//! array over the SNL runs, an array per control selection whose task i starts once SNL
//! task i finished (`aftercorr`: a control needs its SNL run's search length), and a
//! collect job. Every task re-enters `xtask pareto --task RUN`, which resumes, skips or
//! starts its run as the local sweep would, so a requeued task continues where it stopped.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cargo::shell_line;
use crate::selection;

/// sbatch options given to every job.
#[derive(Debug, Clone, Default, PartialEq, clap::Args)]
#[command(next_help_heading = "Slurm executor (--executor slurm)")]
pub struct SlurmFlags {
    /// Slurm partition
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm account
    #[arg(long)]
    pub account: Option<String>,
    /// Time limit of each job (Slurm's format, e.g. 12:00:00)
    #[arg(long)]
    pub time: Option<String>,
    /// Generic resources of each job, e.g. gpu:1
    #[arg(long)]
    pub gres: Option<String>,
    /// CPUs of each job
    #[arg(long, value_name = "N")]
    pub cpus_per_task: Option<u32>,
    /// Memory of each job, e.g. 16G
    #[arg(long)]
    pub mem: Option<String>,
    /// Any other sbatch option, e.g. --sbatch-arg=--qos=low (repeatable)
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub sbatch_arg: Vec<String>,
}

impl SlurmFlags {
    /// The `--flag` of the first Slurm option given, if any (refused with the local executor).
    pub fn first_given(&self) -> Option<&'static str> {
        let given = [
            ("--partition", self.partition.is_some()),
            ("--account", self.account.is_some()),
            ("--time", self.time.is_some()),
            ("--gres", self.gres.is_some()),
            ("--cpus-per-task", self.cpus_per_task.is_some()),
            ("--mem", self.mem.is_some()),
            ("--sbatch-arg", !self.sbatch_arg.is_empty()),
        ];
        given.iter().find(|(_, on)| *on).map(|(f, _)| *f)
    }

    fn directives(&self) -> Vec<String> {
        let mut d = Vec::new();
        let opts = [
            ("partition", &self.partition),
            ("account", &self.account),
            ("time", &self.time),
            ("gres", &self.gres),
            ("mem", &self.mem),
        ];
        for (name, value) in opts {
            if let Some(v) = value {
                d.push(format!("--{name}={v}"));
            }
        }
        if let Some(n) = self.cpus_per_task {
            d.push(format!("--cpus-per-task={n}"));
        }
        d.extend(self.sbatch_arg.iter().cloned());
        d
    }
}

/// The array of one selection: its runs, in the (seed, budget) order every array shares.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub selection: String,
    pub runs: Vec<String>,
}

/// What is written to OUT/slurm/.
#[derive(Debug, Clone, PartialEq)]
pub struct Scripts {
    pub baseline: Option<String>,
    pub runs: String,
    pub collect: String,
    /// One command line per array index (arrays one after another).
    pub tasks: String,
}

/// The scripts of a submission. `task` is the xtask command line of one run without the run's
/// name, `collect` the collect-only one; `cwd` is where they run.
pub fn scripts(
    flags: &SlurmFlags,
    slurm_dir: &Path,
    cwd: &Path,
    task: &[String],
    collect: &[String],
    baseline: bool,
    arrays: &[Array],
) -> Scripts {
    let header = |name: &str, log: &str, requeue: bool| {
        let mut s =
            format!("#!/bin/bash\n#SBATCH --job-name=snl-{name}\n#SBATCH --chdir={}\n", cwd.display());
        s += &format!("#SBATCH --output={}/{log}\n", slurm_dir.display());
        if requeue {
            // A requeued task appends to its log, so the log shows the run being resumed.
            s += "#SBATCH --requeue\n#SBATCH --open-mode=append\n";
        }
        for d in flags.directives() {
            s += &format!("#SBATCH {d}\n");
        }
        s + "set -eu\n"
    };
    let command = |run: &str| {
        let mut args = task[1..].to_vec();
        args.extend(["--task".into(), run.to_string()]);
        shell_line(&task[0], &args)
    };
    let baseline = baseline
        .then(|| header("baseline", "baseline-%j.out", true) + &format!("exec {}\n", command("baseline")));
    let runs = header("runs", "%x-%A_%a.out", true)
        + &format!(
            "# Array task i runs line OFFSET+i+1 of tasks.txt (OFFSET: this script's argument): one run,\n\
             # skipped when finished, resumed when unfinished (also after a requeue), else started.\n\
             line=$(sed -n \"$(( ${{1:-0}} + SLURM_ARRAY_TASK_ID + 1 ))p\" {})\n\
             eval \"exec $line\"\n",
            slurm_dir.join("tasks.txt").display()
        );
    let collect = header("collect", "collect-%j.out", false)
        + &format!("exec {}\n", shell_line(&collect[0], &collect[1..]));
    let tasks: String = arrays.iter().flat_map(|a| a.runs.iter()).map(|r| command(r) + "\n").collect();
    Scripts { baseline, runs, collect, tasks }
}

/// One sbatch submission: its arguments after `sbatch --parsable`, and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub what: String,
    pub args: Vec<String>,
}

/// The sbatch submissions in order; `{N}` in a dependency stands for the id of submission N.
pub fn submissions(slurm_dir: &Path, baseline: bool, arrays: &[Array]) -> Vec<Submission> {
    let script = |name: &str| slurm_dir.join(name).display().to_string();
    let mut subs = Vec::new();
    if baseline {
        subs.push(Submission { what: "baseline".into(), args: vec![script("baseline.sbatch")] });
    }
    let after_baseline = baseline.then(|| "afterok:{0}".to_string());
    let (mut offset, mut snl_array, mut arrays_ids) = (0, None, Vec::new());
    for a in arrays.iter().filter(|a| !a.runs.is_empty()) {
        let mut deps: Vec<String> = after_baseline.iter().cloned().collect();
        if a.selection != selection::SNL
            && let Some(i) = snl_array
        {
            deps.push(format!("aftercorr:{{{i}}}"));
        }
        let mut args = vec![format!("--array=0-{}", a.runs.len() - 1)];
        if !deps.is_empty() {
            args.push(format!("--dependency={}", deps.join(",")));
        }
        args.extend([script("runs.sbatch"), offset.to_string()]);
        if a.selection == selection::SNL {
            snl_array = Some(subs.len());
        }
        arrays_ids.push(format!("{{{}}}", subs.len()));
        subs.push(Submission { what: format!("{} runs ({})", a.runs.len(), a.selection), args });
        offset += a.runs.len();
    }
    let mut args = Vec::new();
    if !arrays_ids.is_empty() {
        args.push(format!("--dependency=afterany:{}", arrays_ids.join(":")));
    } else if baseline {
        args.push("--dependency=afterany:{0}".into());
    }
    args.push(script("collect.sbatch"));
    subs.push(Submission { what: "collect".into(), args });
    subs
}

/// `sbatch --parsable` each submission in order; on a refusal cancel what was submitted.
/// Returns the job ids.
pub fn submit(subs: &[Submission]) -> Result<Vec<String>, String> {
    let mut ids: Vec<String> = Vec::new();
    for s in subs {
        let args: Vec<String> = s
            .args
            .iter()
            .map(|a| ids.iter().enumerate().fold(a.clone(), |a, (i, id)| a.replace(&format!("{{{i}}}"), id)))
            .collect();
        outln!("$ {}", shell_line("sbatch", &[vec!["--parsable".to_string()], args.clone()].concat()));
        let out = Command::new("sbatch").arg("--parsable").args(&args).output();
        let result = match out {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                Ok(text.trim().split(';').next().unwrap_or("").to_string())
            }
            Ok(o) => Err(format!(
                "sbatch refused the {} job: {}",
                s.what,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!("cannot run sbatch: {e}")),
        };
        match result {
            Ok(id) => {
                outln!("submitted {} as job {id}", s.what);
                ids.push(id);
            }
            Err(e) => {
                if !ids.is_empty() {
                    outln!("$ scancel {}", ids.join(" "));
                    let _ = Command::new("scancel").args(&ids).status();
                }
                return Err(format!("{e} (cancelled the {} job(s) already submitted)", ids.len()));
            }
        }
    }
    Ok(ids)
}

/// Whether `sbatch` is on PATH.
pub fn sbatch_on_path() -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("sbatch").is_file()))
}

/// Where the scripts go.
pub fn dir(out: &Path) -> PathBuf {
    out.join("slurm")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrays() -> Vec<Array> {
        ["snl", "random"]
            .iter()
            .map(|s| Array {
                selection: s.to_string(),
                runs: vec![format!("{s}-10pct-s0"), format!("{s}-10pct-s1")],
            })
            .collect()
    }

    #[test]
    fn controls_wait_for_the_snl_task_of_the_same_index() {
        let subs = submissions(Path::new("/o/slurm"), true, &arrays());
        let args: Vec<String> = subs.iter().map(|s| s.args.join(" ")).collect();
        assert_eq!(
            args,
            [
                "/o/slurm/baseline.sbatch",
                "--array=0-1 --dependency=afterok:{0} /o/slurm/runs.sbatch 0",
                "--array=0-1 --dependency=afterok:{0},aftercorr:{1} /o/slurm/runs.sbatch 2",
                "--dependency=afterany:{1}:{2} /o/slurm/collect.sbatch",
            ]
        );
        // A given baseline: no baseline job; controls alone wait for nothing.
        let only = [Array { selection: "uniform".into(), runs: vec!["uniform-10pct-s0".into()] }];
        let args: Vec<String> =
            submissions(Path::new("/o/slurm"), false, &only).iter().map(|s| s.args.join(" ")).collect();
        assert_eq!(
            args,
            ["--array=0-0 /o/slurm/runs.sbatch 0", "--dependency=afterany:{0} /o/slurm/collect.sbatch"]
        );
    }

    #[test]
    fn scripts_hold_the_directives_and_one_task_line_per_run() {
        let flags = SlurmFlags {
            partition: Some("gpu".into()),
            gres: Some("gpu:1".into()),
            sbatch_arg: vec!["--qos=low".into()],
            ..SlurmFlags::default()
        };
        let task: Vec<String> = ["/b/xtask", "pareto", "--out", "/o"].map(String::from).to_vec();
        let collect: Vec<String> =
            ["/b/xtask", "pareto", "--out", "/o", "--collect-only"].map(String::from).to_vec();
        let s = scripts(&flags, Path::new("/o/slurm"), Path::new("/w"), &task, &collect, true, &arrays());
        assert_eq!(
            s.tasks.lines().collect::<Vec<_>>(),
            [
                "/b/xtask pareto --out /o --task snl-10pct-s0",
                "/b/xtask pareto --out /o --task snl-10pct-s1",
                "/b/xtask pareto --out /o --task random-10pct-s0",
                "/b/xtask pareto --out /o --task random-10pct-s1",
            ]
        );
        for d in [
            "#SBATCH --partition=gpu\n",
            "#SBATCH --gres=gpu:1\n",
            "#SBATCH --qos=low\n",
            "#SBATCH --requeue\n",
            "#SBATCH --chdir=/w\n",
        ] {
            assert!(s.runs.contains(d), "{d}");
        }
        assert!(
            s.runs.contains("sed -n \"$(( ${1:-0} + SLURM_ARRAY_TASK_ID + 1 ))p\" /o/slurm/tasks.txt"),
            "{}",
            s.runs
        );
        assert!(s.baseline.unwrap().ends_with("exec /b/xtask pareto --out /o --task baseline\n"));
        assert!(
            s.collect.ends_with("exec /b/xtask pareto --out /o --collect-only\n")
                && !s.collect.contains("--requeue")
        );
        assert_eq!(flags.first_given(), Some("--partition"));
        assert_eq!(SlurmFlags::default().first_given(), None);
    }
}
