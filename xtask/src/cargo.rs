//! How xtask finds cargo, the workspace, its target folder and the `snl` binary: the one
//! home of these facts for every task.

use std::path::{Path, PathBuf};
use std::process::Command;

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

/// The cargo that runs xtask (`CARGO`), else `cargo` from PATH.
pub fn program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// A binary of this workspace as `cargo build [--release]` leaves it.
pub fn binary(root: &Path, name: &str, release: bool) -> PathBuf {
    target_dir(root)
        .join(if release { "release" } else { "debug" })
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// `cargo build` arguments of the `snl` binary.
pub fn snl_build_args(release: bool, features: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = vec!["build".into()];
    if release {
        args.push("--release".into());
    }
    args.extend(["-p".into(), "snl-cli".into()]);
    if let Some(f) = features {
        args.extend(["--features".into(), f.into()]);
    }
    args
}

/// Run `cargo ARGS` in `root`, printing the command first.
pub fn build(root: &Path, args: &[String]) -> Result<(), String> {
    let program = program();
    outln!("$ (cd {}) {}", root.display(), shell_line(&program, args));
    match Command::new(&program).args(args).current_dir(root).status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("cargo build failed ({s})")),
        Err(e) => Err(format!("cannot run {program}: {e}")),
    }
}

/// A command line as a shell would take it back.
pub fn shell_line(program: &str, args: &[String]) -> String {
    let quote = |s: &str| {
        let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-./%:=,+@".contains(c));
        if plain { s.to_string() } else { format!("'{}'", s.replace('\'', r"'\''")) }
    };
    std::iter::once(quote(program)).chain(args.iter().map(|a| quote(a))).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_lines_quote_what_needs_it() {
        let args: Vec<String> = ["--out", "a", "b c", "it's"].iter().map(|s| s.to_string()).collect();
        assert_eq!(shell_line("snl", &args), r"snl --out a 'b c' 'it'\''s'");
    }

    #[test]
    fn snl_is_built_and_found_in_the_target_folder() {
        assert_eq!(
            snl_build_args(true, Some("cuda")),
            ["build", "--release", "-p", "snl-cli", "--features", "cuda"]
        );
        assert_eq!(snl_build_args(false, None), ["build", "-p", "snl-cli"]);
        let root = Path::new("/w");
        assert!(binary(root, "snl", false).ends_with(format!("debug/snl{}", std::env::consts::EXE_SUFFIX)));
    }
}
