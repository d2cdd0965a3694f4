//! `cargo xtask bench-vs-torch`: build the snl-bench binaries in release mode, then run
//! `target/release/vs_torch` (snl's `throughput` and `torch_ref.py bench` with the same
//! flags, then the ratios). vs_torch says clearly when python3 or torch is missing.

use std::process::Command;

use crate::cargo;

/// Builds `cargo build --release -p snl-bench --bins`, then runs target/release/vs_torch:
/// snl's throughput (the product models, snl_core::fast ops) and `python3 snl-bench/scripts/torch_ref.py bench` with
/// the same flags, one JSON line per workload each, then a table of images/s, snl/PyTorch
/// ratio and peak RSS.
#[derive(Debug, Clone, PartialEq, Eq, clap::Parser)]
pub struct Args {
    /// ResNet base width
    #[arg(long, default_value_t = 16, value_parser = positive)]
    pub width: usize,
    /// Batch size
    #[arg(long, default_value_t = 128, value_parser = positive)]
    pub batch: usize,
    /// Threads of both sides
    #[arg(long, default_value_t = 2, value_parser = positive)]
    pub threads: usize,
    #[arg(long, default_value = "resnet18", value_parser = ["resnet18", "wrn"])]
    pub arch: String,
    /// WRN depth
    #[arg(long, default_value_t = 22, value_parser = positive)]
    pub depth: usize,
    /// WRN widen factor
    #[arg(long, default_value_t = 8, value_parser = positive)]
    pub k: usize,
    /// Timed runs per workload, median reported
    #[arg(long, default_value_t = 3, value_parser = positive)]
    pub runs: usize,
    /// Do not run cargo build
    #[arg(long)]
    pub no_build: bool,
    /// Given to vs_torch unchanged, after `--` (e.g. --no-torch, --rounds 3)
    #[arg(last = true, value_name = "VS_TORCH_FLAGS")]
    pub extra: Vec<String>,
}

fn positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("expected a positive integer, got `{text}`")),
    }
}

/// The arguments of `vs_torch`.
pub fn vs_torch_args(o: &Args) -> Vec<String> {
    let mut v = vec![
        format!("--arch={}", o.arch),
        format!("--width={}", o.width),
        format!("--depth={}", o.depth),
        format!("--k={}", o.k),
        format!("--batch={}", o.batch),
        format!("--threads={}", o.threads),
        format!("--runs={}", o.runs),
    ];
    v.extend(o.extra.iter().cloned());
    v
}

pub fn main(args: &[String]) -> i32 {
    let opts: Args = match crate::parse_args("bench-vs-torch", args) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let root = cargo::workspace_root();
    let build: Vec<String> = ["build", "--release", "-p", "snl-bench", "--bins"].map(String::from).to_vec();
    if !opts.no_build
        && let Err(e) = cargo::build(&root, &build)
    {
        errln!("error: bench-vs-torch: {e}");
        return 1;
    }
    let exe = cargo::binary(&root, "vs_torch", true);
    let args = vs_torch_args(&opts);
    errln!("$ {}", cargo::shell_line(&exe.display().to_string(), &args));
    match Command::new(&exe).args(&args).status() {
        Ok(s) if s.success() => 0,
        Ok(s) => {
            errln!("error: bench-vs-torch: vs_torch failed ({s})");
            1
        }
        Err(e) => {
            errln!(
                "error: bench-vs-torch: could not run {} ({e}); build it or drop --no-build",
                exe.display()
            );
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(s: &str) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("bench-vs-torch").chain(s.split_whitespace()))
    }

    #[test]
    fn defaults_are_the_documented_workload() {
        let o = parse("").unwrap();
        assert_eq!(
            (o.width, o.batch, o.threads, o.arch.as_str(), o.runs, o.no_build),
            (16, 128, 2, "resnet18", 3, false)
        );
        assert_eq!(
            o,
            parse("--width 16 --batch 128 --threads 2 --arch resnet18 --depth 22 --k 8 --runs 3").unwrap()
        );
    }

    #[test]
    fn flags_with_spaces_or_equals_and_passthrough() {
        let o = parse("--width 64 --batch=32 --threads 1 --arch wrn --k=4 --no-build -- --no-torch").unwrap();
        assert_eq!((o.width, o.batch, o.threads, o.k, o.no_build), (64, 32, 1, 4, true));
        let v = vs_torch_args(&o);
        assert!(v.contains(&"--arch=wrn".to_string()) && v.contains(&"--batch=32".to_string()));
        assert_eq!(v.last().map(String::as_str), Some("--no-torch"));
    }

    #[test]
    fn bad_input_is_rejected() {
        for bad in ["--width", "--width 0", "--batch x", "--arch vgg", "--frobnicate"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse("--help").unwrap_err().kind(), clap::error::ErrorKind::DisplayHelp);
    }
}
