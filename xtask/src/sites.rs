//! `cargo xtask sites RUN`: the bar chart of kept ReLUs per site of one run, from
//! `snl count --json` (also drawn for every run of a sweep).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{cargo, plot};

/// Runs `snl count --model RUN/model.safetensors --json` and draws kept ReLUs per site as a
/// bar chart: RUN/sites.svg, and the counts beside it (RUN/sites.json).
#[derive(Debug, clap::Parser)]
pub struct Args {
    /// A run folder of `snl linearize`
    pub run: PathBuf,
    /// The model to count (default: RUN/model.safetensors)
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The chart (default: RUN/sites.svg); the counts go beside it (FILE.json). Replaces
    /// only an earlier chart and counts: any other file there is refused
    #[arg(long, value_name = "FILE.svg")]
    pub out: Option<PathBuf>,
    /// Build and use target/debug/snl instead of release
    #[arg(long)]
    pub debug: bool,
    /// Use this snl binary; do not build
    #[arg(long, value_name = "PATH")]
    pub snl: Option<PathBuf>,
    /// Do not run cargo build
    #[arg(long)]
    pub no_build: bool,
}

pub fn main(args: &[String]) -> i32 {
    let a: Args = match crate::parse_args("sites", args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let root = cargo::workspace_root();
    let snl = a.snl.clone().unwrap_or_else(|| cargo::binary(&root, "snl", !a.debug));
    if a.snl.is_none()
        && !a.no_build
        && let Err(e) = cargo::build(&root, &cargo::snl_build_args(!a.debug, None))
    {
        errln!("error: xtask sites: {e}");
        return 1;
    }
    let model = a.model.unwrap_or_else(|| a.run.join("model.safetensors"));
    let svg = a.out.unwrap_or_else(|| a.run.join("sites.svg"));
    match draw(&snl, &a.run, &model, &svg) {
        Ok(()) => 0,
        Err(e) => {
            errln!("error: xtask sites: {e}");
            1
        }
    }
}

/// `snl count --model MODEL --json`, parsed.
fn snl_count(snl: &Path, model: &Path) -> Result<Value, String> {
    let args = vec!["count".to_string(), "--model".into(), model.display().to_string(), "--json".into()];
    outln!("$ {}", cargo::shell_line(&snl.display().to_string(), &args));
    let out =
        Command::new(snl).args(&args).output().map_err(|e| format!("cannot start {}: {e}", snl.display()))?;
    if !out.status.success() {
        return Err(format!(
            "snl count failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("snl count --json: not JSON ({e})"))
}

/// Write the bar chart `svg` and the counts beside it (`.json`) for the model of a run
/// folder. Each replaces only a file this wrote (a chart, `snl count --json`'s counts): a
/// mistyped `--out` never destroys a checkpoint or a log.
pub fn draw(snl: &Path, dir: &Path, model: &Path, svg: &Path) -> Result<(), String> {
    if svg.extension().is_none_or(|e| e != "svg") {
        return Err(format!("{}: the chart's name must end in .svg", svg.display()));
    }
    let json = svg.with_extension("json");
    ours(svg, |text| text.starts_with("<svg") && text.contains(TITLE))?;
    ours(&json, |text| serde_json::from_str::<Value>(text).is_ok_and(|v| v["sites"].is_array()))?;
    let count = snl_count(snl, model)?;
    let name =
        dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
    let chart = plot::sites_svg(&count, &format!("{name}{TITLE}"))?;
    let text = serde_json::to_string_pretty(&count).expect("json") + "\n";
    crate::pareto::write_atomic(&json, &text)?;
    crate::pareto::write_atomic(svg, &chart)?;
    outln!("wrote {} and {}", svg.display(), json.display());
    Ok(())
}

/// The end of every chart's title: how a chart of ours is told from another SVG.
const TITLE: &str = ": kept ReLUs per site";

/// Refuses an existing `path` whose text `is_ours` does not recognise.
fn ours(path: &Path, is_ours: impl Fn(&str) -> bool) -> Result<(), String> {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        Ok(bytes) if std::str::from_utf8(&bytes).is_ok_and(&is_ours) => Ok(()),
        Ok(_) => Err(format!(
            "{} exists and is not a chart or counts of `xtask sites`; choose another --out (nothing was written)",
            path.display()
        )),
    }
}
