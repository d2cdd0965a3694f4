//! `snl`: train, linearize, evaluate, count, predict, import and export SNL models.
//!
//! `main` only parses, runs and reports: exit 0 on success, 1 on failure (one line per cause
//! of the error chain), 2 on a usage error (from clap, or a bad flag value found later), 3 when
//! the hidden `--stop-after-epochs` of train and linearize stopped a run on purpose (for tests
//! of `--resume`).

mod cli;
mod commands;
mod cost;
mod data;
mod model;
mod run;
mod setup;
mod ui;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    if let Err(err) = commands::run(cli) {
        if let Some(stopped) = err.downcast_ref::<run::Stopped>() {
            eprintln!("{stopped}");
            std::process::exit(3);
        }
        eprintln!("error: {err}");
        for cause in err.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        let usage = err.downcast_ref::<setup::UsageError>().is_some();
        std::process::exit(if usage { 2 } else { 1 });
    }
}
