//! `cargo xtask bench-vs-torch`: build the snl-bench binaries in release mode, then run
//! `target/release/vs_torch` (snl's `throughput` and `torch_ref.py bench` with the same
//! flags, then the ratios). vs_torch says clearly when python3 or torch is missing.

use std::process::Command;

pub const USAGE: &str = "cargo xtask bench-vs-torch [options] [-- VS_TORCH_FLAGS...]

Builds `cargo build --release -p snl-bench --bins`, then runs target/release/vs_torch:
snl's throughput (the product models, snl_core::fast ops) and
`python3 snl-bench/scripts/torch_ref.py bench` with the same flags, one JSON line per
workload each, then a table of images/s, snl/PyTorch ratio and peak RSS.

Options:
  --width N      ResNet base width (default 16)
  --batch N      batch size (default 128)
  --threads N    threads of both sides (default 2)
  --arch NAME    resnet18 | wrn (default resnet18)
  --depth N      WRN depth (default 22)
  --k N          WRN widen factor (default 8)
  --runs N       timed runs per workload, median reported (default 3)
  --no-build     do not run cargo build
  -- ...         anything after `--` goes to vs_torch unchanged (e.g. --no-torch,
                 --rounds 3 for medians over 3 pairs of runs)
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opts {
    pub width: usize,
    pub batch: usize,
    pub threads: usize,
    pub arch: String,
    pub depth: usize,
    pub k: usize,
    pub runs: usize,
    pub build: bool,
    pub extra: Vec<String>,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            width: 16,
            batch: 128,
            threads: 2,
            arch: "resnet18".into(),
            depth: 22,
            k: 8,
            runs: 3,
            build: true,
            extra: Vec::new(),
        }
    }
}

/// `Ok(None)` for `--help`.
pub fn parse(args: &[String]) -> Result<Option<Opts>, String> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline.clone().or_else(|| it.next().cloned()).ok_or_else(|| format!("{name} needs a value"))
        };
        let number = |name: &str, v: String| -> Result<usize, String> {
            match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{name}: expected a positive integer, got `{v}`")),
            }
        };
        match flag {
            "-h" | "--help" => return Ok(None),
            "--width" => o.width = number(flag, value(flag)?)?,
            "--batch" => o.batch = number(flag, value(flag)?)?,
            "--threads" => o.threads = number(flag, value(flag)?)?,
            "--depth" => o.depth = number(flag, value(flag)?)?,
            "--k" => o.k = number(flag, value(flag)?)?,
            "--runs" => o.runs = number(flag, value(flag)?)?,
            "--arch" => {
                let a = value(flag)?;
                if a != "resnet18" && a != "wrn" {
                    return Err(format!("--arch: expected resnet18 or wrn, got `{a}`"));
                }
                o.arch = a;
            }
            "--no-build" => o.build = false,
            "--" => {
                o.extra = it.cloned().collect();
                break;
            }
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(Some(o))
}

/// The arguments of `vs_torch`.
pub fn vs_torch_args(o: &Opts) -> Vec<String> {
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
    let opts = match parse(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("bench-vs-torch: {e}\n\n{USAGE}");
            return 2;
        }
    };
    let root = crate::workspace_root();
    if opts.build {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        eprintln!("$ cargo build --release -p snl-bench --bins");
        match Command::new(cargo)
            .current_dir(&root)
            .args(["build", "--release", "-p", "snl-bench", "--bins"])
            .status()
        {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("bench-vs-torch: cargo build failed ({s})");
                return 1;
            }
            Err(e) => {
                eprintln!("bench-vs-torch: could not run cargo: {e}");
                return 1;
            }
        }
    }
    let exe =
        crate::target_dir(&root).join("release").join(format!("vs_torch{}", std::env::consts::EXE_SUFFIX));
    let args = vs_torch_args(&opts);
    eprintln!("$ {} {}", exe.display(), args.join(" "));
    match Command::new(&exe).args(&args).status() {
        Ok(s) if s.success() => 0,
        Ok(s) => {
            eprintln!("bench-vs-torch: vs_torch failed ({s})");
            1
        }
        Err(e) => {
            eprintln!("bench-vs-torch: could not run {} ({e}); build it or drop --no-build", exe.display());
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    /// Every `--flag X ... (default V)` line of USAGE: giving `--flag V` changes nothing.
    #[test]
    fn usage_states_the_parsed_defaults() {
        let defaults = parse(&[]).unwrap().unwrap();
        let documented: Vec<(&str, &str)> = USAGE
            .lines()
            .filter_map(|line| {
                let flag = line.trim_start().strip_prefix("--")?.split_whitespace().next()?;
                Some((flag, line.split("(default ").nth(1)?.strip_suffix(')')?))
            })
            .collect();
        let flags: Vec<&str> = documented.iter().map(|(f, _)| *f).collect();
        assert_eq!(flags, ["width", "batch", "threads", "arch", "depth", "k", "runs"]);
        for (flag, value) in documented {
            let o = parse(&[format!("--{flag}"), value.to_string()]).unwrap().unwrap();
            assert_eq!(o, defaults, "USAGE says --{flag} defaults to {value}");
        }
    }

    #[test]
    fn flags_with_spaces_or_equals_and_passthrough() {
        let o = parse(&args("--width 64 --batch=32 --threads 1 --arch wrn --k=4 --no-build -- --no-torch"))
            .unwrap()
            .unwrap();
        assert_eq!((o.width, o.batch, o.threads, o.k, o.build), (64, 32, 1, 4, false));
        assert_eq!(o.arch, "wrn");
        let v = vs_torch_args(&o);
        assert!(v.contains(&"--arch=wrn".to_string()) && v.contains(&"--batch=32".to_string()));
        assert_eq!(v.last().map(String::as_str), Some("--no-torch"));
    }

    #[test]
    fn bad_input_is_rejected() {
        assert!(parse(&args("--width")).is_err());
        assert!(parse(&args("--width 0")).is_err());
        assert!(parse(&args("--batch x")).is_err());
        assert!(parse(&args("--arch vgg")).is_err());
        assert!(parse(&args("--frobnicate")).is_err());
        assert_eq!(parse(&args("--help")).unwrap(), None);
    }
}
