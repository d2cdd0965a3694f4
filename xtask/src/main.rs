//! `cargo xtask <task>`: project chores that drive the `snl` binary as a child process.
//! xtask links neither candle nor any snl crate but `snl-budget` (the budget grammar, no
//! dependencies). Each task parses its own arguments with clap (`parse_args`).

mod bench;
mod cargo;
mod pareto;
mod pi_cost;
mod plot;
mod selection;
mod sites;

pub use cargo::{target_dir, workspace_root};

const TASKS: &str = "tasks:
  pareto   sweep ReLU budgets with `snl linearize` (snl, random, uniform), then write
           pareto.csv, pareto.json and pareto.svg      (cargo xtask pareto --help)
  sites    bar chart of kept ReLUs per site of one run  (cargo xtask sites --help)
  bench-vs-torch  build snl-bench and run vs_torch: snl vs PyTorch images/s
           (cargo xtask bench-vs-torch --help)
  pi-cost  one private inference in SPU (Cheetah): bytes, rounds, time per variant
           (cargo xtask pi-cost --help)
  help     this list";

/// A task's arguments through clap. `Err(code)` once help (0) or an error (2) is printed.
pub fn parse_args<T: clap::Parser>(task: &str, args: &[String]) -> Result<T, i32> {
    let argv = std::iter::once(format!("cargo xtask {task}")).chain(args.iter().cloned());
    T::try_parse_from(argv).map_err(|e| {
        let _ = e.print();
        e.exit_code()
    })
}

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
        Some("sites") => sites::main(&rest),
        Some("bench-vs-torch") => bench::main(&rest),
        Some("pi-cost") => pi_cost::main(&rest),
        Some(other) => {
            eprintln!("xtask: unknown task `{other}`\n\n{TASKS}");
            2
        }
    };
    std::process::exit(code);
}
