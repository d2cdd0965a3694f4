//! `snl`: train, linearize, evaluate, count, predict, import and export SNL models.
//!
//! `main` only parses, runs and reports: exit 0 on success, 1 on failure (one `error:` line:
//! the error and its causes, see `one_line`), 2 on a usage error (from clap, or a bad flag
//! value found later), 3 when the hidden `--stop-after-epochs` of train, linearize and demo stopped
//! a run on purpose (for tests of `--resume`). A closed stdout pipe ends it quietly (SIGPIPE);
//! a stdout it cannot write (a full disk) is a failure like any other.

mod cli;
mod commands;
mod cost;
mod data;
mod model;
mod onnx;
mod run;
mod runfile;
mod setup;
mod ui;

use clap::Parser;

fn main() {
    // Rust ignores SIGPIPE, so a write to a closed pipe (`snl eval ... | head -0`) fails and
    // printing panics; the default action ends snl quietly, as it does any Unix tool.
    #[cfg(unix)]
    // SAFETY: first thing in main, before any other thread exists; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = cli::Cli::try_parse().unwrap_or_else(|e| {
        // clap's own `exit` would say nothing when `--help` cannot be written (/dev/full).
        if let Err(io) = e.print() {
            ui::status(&format!("error: cannot write to stdout: {io}"));
            std::process::exit(1);
        }
        std::process::exit(e.exit_code())
    });
    if let Err(err) = commands::run(cli) {
        if let Some(stopped) = err.downcast_ref::<run::Stopped>() {
            ui::status(&stopped.to_string());
            std::process::exit(3);
        }
        ui::status(&format!("error: {}", one_line(&err)));
        let usage = err.downcast_ref::<setup::UsageError>().is_some();
        std::process::exit(if usage { 2 } else { 1 });
    }
}

/// The error and its causes joined with ": ". A cause whose text is already printed (library
/// errors show their source in their own message) is skipped, as is its leading
/// `subject: ` when the subject (a file name) is already printed.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = err.to_string();
    for cause in err.chain().skip(1).map(|c| c.to_string()) {
        if line.contains(&cause) {
            continue;
        }
        let rest = match cause.split_once(": ") {
            Some((subject, rest)) if line.contains(subject) => rest,
            _ => &cause,
        };
        line = format!("{line}: {rest}");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn causes_join_on_one_line_without_repeats() {
        let io = std::io::Error::other("invalid header length");
        let err = anyhow::Error::new(io)
            .context("m.safetensors: not a safetensors file: invalid header length")
            .context("cannot read the model m.safetensors");
        assert_eq!(
            one_line(&err),
            "cannot read the model m.safetensors: not a safetensors file: invalid header length"
        );
        let err = anyhow::anyhow!("No such file or directory").context("cannot read a.json");
        assert_eq!(one_line(&err), "cannot read a.json: No such file or directory");
    }
}
