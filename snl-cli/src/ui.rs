//! What the user sees on stderr while work runs: a progress bar per epoch on a terminal,
//! one line per epoch otherwise; nothing with `-q`. Results go to stdout.

use std::io::{IsTerminal, Write};

use anyhow::Context;

use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use snl_data::{DownloadProgress, ProgressSink};

#[derive(Debug, Clone, Copy)]
pub struct Ui {
    quiet: bool,
    verbose: bool,
    bars: bool,
}

impl Ui {
    pub fn new(quiet: bool, verbose: bool) -> Self {
        Self { quiet, verbose, bars: !quiet && std::io::stderr().is_terminal() }
    }

    /// A command's result (stdout), even when quiet. A stdout that cannot take it (a full
    /// disk) is an error, not a panic; a closed pipe ends the process (`main`).
    pub fn result(&self, text: impl AsRef<str>) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", text.as_ref()).and_then(|()| out.flush()).context("cannot write to stdout")
    }

    /// A status line (stderr), unless quiet.
    pub fn say(&self, line: impl AsRef<str>) {
        if !self.quiet {
            status(line.as_ref());
        }
    }

    /// A warning (stderr), even when quiet: something the user must know about a result.
    pub fn warn(&self, line: impl AsRef<str>) {
        status(&format!("warning: {}", line.as_ref()));
    }

    /// Detail shown only with `-v`.
    pub fn detail(&self, line: impl AsRef<str>) {
        if self.verbose {
            status(line.as_ref());
        }
    }

    /// Shows a Hub download: a line when it starts, then a bar in bytes on a terminal.
    pub fn download_progress(&self) -> ProgressSink {
        let bar = if self.bars {
            let style = ProgressStyle::with_template(
                "{msg:>24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            ProgressBar::new(0).with_style(style)
        } else {
            ProgressBar::hidden()
        };
        ProgressSink(Arc::new(DownloadBar { ui: *self, bar }))
    }

    /// A bar over `len` batches, hidden when stderr is not a terminal or with `-q`.
    pub fn bar(&self, len: usize, label: impl Into<String>) -> ProgressBar {
        if !self.bars {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len as u64);
        let style =
            ProgressStyle::with_template("{msg:>24} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {prefix}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(label.into());
        bar
    }
}

/// A line on stderr. Progress that cannot be shown (stderr full) never stops the work.
pub fn status(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// snl-data reports a download's progress; the binary draws it.
struct DownloadBar {
    ui: Ui,
    bar: ProgressBar,
}

impl DownloadProgress for DownloadBar {
    fn start(&self, repo: &str, files: usize, bytes: u64) {
        let mb = bytes as f64 / 1e6;
        self.ui.say(format!("downloading {files} file(s), {mb:.1} MB, of {repo} into the Hub cache"));
        self.bar.set_length(bytes);
        self.bar.set_message(repo.to_string());
    }

    fn advance(&self, bytes: u64) {
        self.bar.set_position(bytes);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
