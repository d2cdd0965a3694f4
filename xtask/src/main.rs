//! `cargo xtask <task>`: project chores that drive the `snl` binary as a child process.
//! xtask links neither candle nor any snl crate but `snl-budget` (the budget grammar, no
//! dependencies). Each task parses its own arguments with clap (`parse_args`).

use std::io::Write as _;

/// `println!` that never panics (see [`write_stdout`]).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that never panics (see [`write_stdout`]).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics: a stderr that cannot be written (/dev/full) loses the line,
/// and the exit code still says how xtask ended.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

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
    T::try_parse_from(argv).map_err(|e| match e.print() {
        Ok(()) => e.exit_code(),
        Err(io) => {
            errln!("error: xtask: cannot write to stdout: {io}");
            1
        }
    })
}

/// Writes to stdout. One that cannot be written (a full disk, /dev/full) ends xtask with one
/// error line and exit code 1, not a panic; a closed pipe ends it quietly (SIGPIPE, `main`).
pub fn write_stdout(text: std::fmt::Arguments) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(text).and_then(|()| stdout.flush()) {
        errln!("error: xtask: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

fn main() {
    // Rust ignores SIGPIPE, so printing to a closed pipe (`cargo xtask help | head -0`) would
    // fail; the default action ends xtask quietly, as it does any Unix tool.
    #[cfg(unix)]
    // SAFETY: first thing in main, before any other thread exists; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    let code = match task.as_deref() {
        None | Some("help" | "--help" | "-h") => {
            outln!("cargo xtask <task>\n\n{TASKS}");
            0
        }
        Some("pareto") => pareto::main(&rest),
        Some("sites") => sites::main(&rest),
        Some("bench-vs-torch") => bench::main(&rest),
        Some("pi-cost") => pi_cost::main(&rest),
        Some(other) => {
            errln!("error: xtask: unknown task `{other}`\n\n{TASKS}");
            2
        }
    };
    std::process::exit(code);
}
