//! A stdout that is closed (`snl ... | head -0`) or full (`> /dev/full`): never a panic; a
//! closed pipe ends snl quietly, a full stdout is one `error:` line and exit code 1.

use std::process::{Command, Output, Stdio};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `snl count` (which prints a table) with its stdout `stdout`.
fn count_into(stdout: impl Into<Stdio>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snl"))
        .args(["--threads", "1", "count", "--arch", "resnet18", "--width", "4", "--image-size", "16"])
        .stdout(stdout)
        .output()
        .unwrap()
}

#[test]
fn a_closed_or_full_stdout_never_panics() {
    // Closed before snl starts, so its first write meets no reader.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = count_into(writer);
    assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
    assert_ne!(output.status.code(), Some(101));
    assert_eq!(stderr(&output), "", "a closed pipe ends snl quietly");

    let Ok(full) = std::fs::File::options().write(true).open("/dev/full") else {
        println!("a_closed_or_full_stdout_never_panics: /dev/full skipped (no /dev/full)");
        return;
    };
    let output = count_into(full);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(stderr(&output), "error: cannot write to stdout: No space left on device (os error 28)\n");
}

/// clap's help goes through the same check: `snl --help > /dev/full` is not a silent success.
#[test]
fn help_into_a_full_stdout_is_an_error() {
    let Ok(full) = std::fs::File::options().write(true).open("/dev/full") else {
        println!("help_into_a_full_stdout_is_an_error: skipped (no /dev/full)");
        return;
    };
    let output = Command::new(env!("CARGO_BIN_EXE_snl")).arg("--help").stdout(full).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(stderr(&output), "error: cannot write to stdout: No space left on device (os error 28)\n");
}
