//! Stand-in executables for the xtask tests, written so that running them cannot fail with
//! "Text file busy" (ETXTBSY).
//!
//! A file this test process wrote itself stays open for writing in any child that another
//! test thread forked at that moment, until that child execs; running the file then fails.
//! So the bytes are written by a `sh` child, and this process never opens the file.

#![cfg(unix)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Writes `body` to `path` with mode 755, through a child process.
pub fn write_executable(path: &Path, body: &[u8]) {
    let mut child = Command::new("sh")
        .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("run sh");
    child.stdin.take().unwrap().write_all(body).unwrap();
    assert!(child.wait().unwrap().success(), "writing {}", path.display());
}

/// `tests/fake-snl.sh` as `dir/snl`, the stand-in `snl` the sweeps run.
pub fn fake_snl(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-snl.sh");
    let fake = dir.join("snl");
    write_executable(&fake, &std::fs::read(source).unwrap());
    fake
}
