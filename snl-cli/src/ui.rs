//! What the user sees on stderr while work runs: a progress bar per epoch on a terminal,
//! one line per epoch otherwise; nothing with `-q`. Results go to stdout.

use std::io::IsTerminal;

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

    /// A command's result (stdout), even when quiet.
    pub fn result(&self, line: impl AsRef<str>) {
        println!("{}", line.as_ref());
    }

    /// A status line (stderr), unless quiet.
    pub fn say(&self, line: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", line.as_ref());
        }
    }

    /// A warning (stderr), even when quiet: something the user must know about a result.
    pub fn warn(&self, line: impl AsRef<str>) {
        eprintln!("warning: {}", line.as_ref());
    }

    /// Detail shown only with `-v`.
    pub fn detail(&self, line: impl AsRef<str>) {
        if self.verbose {
            eprintln!("{}", line.as_ref());
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
