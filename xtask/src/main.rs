//! `cargo xtask <task>`: project chores that drive the `snl` binary as a child process.
//! xtask links neither candle nor any snl crate.

mod bench;
mod pareto;
mod pi_cost;
mod plot;

use std::path::{Path, PathBuf};

/// The workspace root (xtask's parent folder): xtask runs `cargo build` there.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target folder for a build run in `root`: `CARGO_TARGET_DIR` (a relative one is
/// taken from `root`, as cargo does there) or `root/target`.
pub fn target_dir(root: &Path) -> PathBuf {
    root.join(std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into()))
}

const TASKS: &str = "tasks:
  pareto   sweep ReLU budgets with `snl linearize` (snl, random, uniform), then write
           pareto.csv, pareto.json and pareto.svg      (cargo xtask pareto --help)
  sites    bar chart of kept ReLUs per site of one run  (cargo xtask sites --help)
  bench-vs-torch  build snl-bench and run vs_torch: snl vs PyTorch images/s
           (cargo xtask bench-vs-torch --help)
  pi-cost  one private inference in SPU (Cheetah): bytes, rounds, time per variant
           (cargo xtask pi-cost --help)
  help     this list";

fn main() {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    let code = match task.as_deref() {
        None | Some("help" | "--help" | "-h") => {
            println!("cargo xtask <task>\n\n{TASKS}");
            0
        }
        Some("pareto") => pareto::main(&rest),
        Some("sites") => pareto::sites_main(&rest),
        Some("bench-vs-torch") => bench::main(&rest),
        Some("pi-cost") => pi_cost::main(&rest),
        Some(other) => {
            eprintln!("xtask: unknown task `{other}`\n\n{TASKS}");
            2
        }
    };
    std::process::exit(code);
}
