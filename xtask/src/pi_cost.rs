//! `cargo xtask pi-cost`: what one private inference of a model costs in SPU (Cheetah 2PC).
//! Exports the model with `snl export` (bundle and ONNX), gets `snl predict`'s logits for a
//! fixed input, then runs `snl-bench/scripts/pi_cost.py` (the ONNX model checked in
//! onnxruntime, a JAX network from the exported weights checked against those logits, then
//! measured per variant) in a venv that holds `spu` and onnxruntime, installed on first use. Never runs in CI: it needs PyPI once and minutes of CPU.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const USAGE: &str = "cargo xtask pi-cost --model MODEL [options]

Measures one private inference (batch 1) of MODEL in SPU 0.9.5, Cheetah 2PC, both parties
in one process: variants all_relu, masked, compact and one_relu (a single kept ReLU: the
once-per-session cost), and identity (no ReLU), which bytes_relu is measured against. Writes
OUT/NAME.json and prints a table. On first use installs spu into target/pi-cost-venv (pip).

Options:
  --model PATH     an snl checkpoint (e.g. runs/demo/linearized/model.safetensors)
  --name NAME      the model's name in the table and file (default: the checkpoint's folder)
  --out DIR        where NAME.json goes (default results/pi-cost)
  --variants LIST  comma-separated (default all_relu,masked,compact,one_relu)
  --python PATH    the Python (3.11) that creates the venv (default python3.11, else python3)
  --no-build       use target/debug/snl as it is
";

const SPU: &str = "spu==0.9.5";
/// Installed beside spu: the exported ONNX model is checked in onnxruntime first.
const ONNX: [&str; 2] = ["onnx", "onnxruntime"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opts {
    pub model: PathBuf,
    pub name: String,
    pub out: PathBuf,
    pub variants: String,
    pub python: Option<String>,
    pub build: bool,
}

/// `Ok(None)` for `--help`.
pub fn parse(args: &[String]) -> Result<Option<Opts>, String> {
    let (mut model, mut name, mut out, mut python) = (None, None, PathBuf::from("results/pi-cost"), None);
    let (mut variants, mut build) = ("all_relu,masked,compact,one_relu".to_string(), true);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        let mut value =
            || inline.clone().or_else(|| it.next().cloned()).ok_or(format!("{flag} needs a value"));
        match flag {
            "-h" | "--help" => return Ok(None),
            "--model" => model = Some(PathBuf::from(value()?)),
            "--name" => name = Some(value()?),
            "--out" => out = PathBuf::from(value()?),
            "--python" => python = Some(value()?),
            "--variants" => {
                variants = value()?;
                if let Some(bad) = variants
                    .split(',')
                    .find(|v| !["all_relu", "masked", "compact", "one_relu", "identity"].contains(v))
                {
                    return Err(format!("--variants: unknown variant `{bad}`"));
                }
            }
            "--no-build" if inline.is_none() => build = false,
            "--no-build" => return Err("--no-build takes no value".into()),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    let model = model.ok_or("--model is required")?;
    let name = name.unwrap_or_else(|| default_name(&model));
    check_name(&name)?;
    Ok(Some(Opts { model, name, out, variants, python, build }))
}

/// `runs/demo/linearized/model.safetensors` -> `demo-linearized`; else the file stem. Only
/// plain folder names count (never `/`, `..`), so the name is always a safe file name.
fn default_name(model: &Path) -> String {
    let plain = |c: std::path::Component| match c {
        std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
        _ => None,
    };
    let parts: Vec<String> = model
        .parent()
        .into_iter()
        .flat_map(|p| p.components().rev().filter_map(plain).take(2))
        .filter(|c| c != "runs" && check_name(c).is_ok())
        .collect();
    let stem = model.file_stem().map(|s| s.to_string_lossy().into_owned()).filter(|s| check_name(s).is_ok());
    match parts.is_empty() {
        true => stem.unwrap_or_else(|| "model".into()),
        false => parts.into_iter().rev().collect::<Vec<_>>().join("-"),
    }
}

/// A name is a scratch folder under `target/pi-cost` (replaced on every run) and the file
/// `NAME.json`: letters, digits, `.`, `_` and `-` only, and never `.` or `..`.
fn check_name(name: &str) -> Result<(), String> {
    let safe = name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if name.is_empty() || name == "." || name == ".." || !safe {
        return Err(format!("--name `{name}`: use letters, digits, `.`, `_` and `-` (not `.` or `..`)"));
    }
    Ok(())
}

pub fn main(args: &[String]) -> i32 {
    let opts = match parse(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            out!("{USAGE}");
            return 0;
        }
        Err(e) => {
            errln!("error: pi-cost: {e}\n\n{USAGE}");
            return 2;
        }
    };
    let root = crate::workspace_root();
    let python = match venv_python(&root, opts.python.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            errln!("error: pi-cost: {e}");
            return 1;
        }
    };
    match measure(&root, &opts, &python) {
        Ok(()) => 0,
        Err(e) => {
            errln!("error: pi-cost: {e}");
            1
        }
    }
}

/// The venv's python, with `spu` importable; creates the venv and installs spu on first use.
fn venv_python(root: &Path, python: Option<&str>) -> Result<PathBuf, String> {
    let venv = crate::target_dir(root).join("pi-cost-venv");
    let py = venv.join("bin").join("python");
    let has_spu = |py: &Path| {
        Command::new(py)
            .args(["-c", "import spu, jax, onnx, onnxruntime"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if py.exists() && has_spu(&py) {
        return Ok(py);
    }
    let base = match python {
        Some(p) => p.to_string(),
        None if Command::new("python3.11").arg("--version").output().is_ok_and(|o| o.status.success()) => {
            "python3.11".into()
        }
        None => "python3".into(),
    };
    let install = format!(
        "install Python 3.11 with venv and pip (e.g. apt-get install python3.11 python3.11-venv), \
         then rerun, or install {SPU} {} into {} yourself",
        ONNX.join(" "),
        venv.display()
    );
    errln!(
        "error: pi-cost: first use: installing {SPU} (and jax), {} into {} with {base} -m pip",
        ONNX.join(", "),
        venv.display()
    );
    run(Command::new(&base).args(["-m", "venv"]).arg(&venv))
        .map_err(|e| format!("cannot create a venv with {base} ({e}); {install}"))?;
    run(Command::new(&py).args(["-m", "pip", "install", "--quiet", SPU]).args(ONNX))
        .map_err(|e| format!("cannot install {SPU} ({e}; no network to PyPI?); {install}"))?;
    if !has_spu(&py) {
        return Err(format!("{} cannot import spu after installing it; {install}", py.display()));
    }
    Ok(py)
}

fn measure(root: &Path, o: &Opts, python: &Path) -> Result<(), String> {
    // A result is never replaced: refused before minutes of work.
    let result = o.out.join(format!("{}.json", o.name));
    if result.symlink_metadata().is_ok() {
        return Err(format!(
            "{} exists; give another --name or --out (results are never overwritten)",
            result.display()
        ));
    }
    if o.build {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        run(Command::new(cargo).current_dir(root).args(["build", "-p", "snl-cli"]))?;
    }
    let snl = crate::target_dir(root).join("debug").join(format!("snl{}", std::env::consts::EXE_SUFFIX));
    // Scratch under target/: ours to replace.
    let work = crate::target_dir(root).join("pi-cost").join(&o.name);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let bundle = work.join("bundle");
    run(Command::new(&snl).arg("export").arg("--model").arg(&o.model).arg("--out").arg(&bundle))?;
    let onnx = work.join("onnx");
    run(Command::new(&snl)
        .args(["export", "--format", "onnx", "--model"])
        .arg(&o.model)
        .arg("--out")
        .arg(&onnx))?;
    let weights = bundle.join("weights.safetensors");
    let side = image_size(&weights)?;
    let input = work.join("input.safetensors");
    write_input(&input, side)?;
    let logits = work.join("logits.safetensors");
    run(Command::new(&snl)
        .args(["predict", "--model"])
        .arg(&weights)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&logits))?;
    std::fs::create_dir_all(&o.out).map_err(|e| format!("cannot create {}: {e}", o.out.display()))?;
    let script = root.join("snl-bench/scripts/pi_cost.py");
    run(Command::new(python)
        .arg(script)
        .arg("--weights")
        .arg(&weights)
        .arg("--input")
        .arg(&input)
        .arg("--expect")
        .arg(&logits)
        .arg("--onnx")
        .arg(onnx.join("model.onnx"))
        .args(["--model", &o.name, "--variants", &o.variants, "--out"])
        .arg(&result))
}

/// Prints and runs `cmd`; an error unless it exits 0.
fn run(cmd: &mut Command) -> Result<(), String> {
    let shown: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    errln!("$ {}", shown.join(" "));
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("`{}` failed ({s})", shown[0])),
        Err(e) => Err(format!("cannot run `{}`: {e}", shown[0])),
    }
}

/// `image_size` from an snl checkpoint's safetensors metadata.
fn image_size(path: &Path) -> Result<usize, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let len = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()) as usize);
    let header = len.and_then(|n| bytes.get(8..8usize.checked_add(n)?));
    let meta: Option<serde_json::Value> = header.and_then(|h| serde_json::from_slice(h).ok());
    meta.as_ref()
        .and_then(|m| m["__metadata__"]["image_size"].as_str())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{}: no image_size in its metadata (not an snl checkpoint?)", path.display()))
}

/// One fixed f32 image `x` of shape `[1, 3, side, side]` (values in about [-2, 2]).
fn write_input(path: &Path, side: usize) -> Result<(), String> {
    let count = 3 * side * side;
    let data: Vec<u8> =
        (0..count).flat_map(|i| (((i * 7919) % 1000) as f32 / 250.0 - 2.0).to_le_bytes()).collect();
    let header = serde_json::json!({"x": {"dtype": "F32", "shape": [1, 3, side, side], "data_offsets": [0, data.len()]}});
    let mut header = header.to_string().into_bytes();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    bytes.extend(data);
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn flags_and_defaults() {
        let o = parse(&args("--model runs/demo/linearized/model.safetensors --no-build")).unwrap().unwrap();
        assert_eq!(o.name, "demo-linearized");
        assert_eq!(o.out, PathBuf::from("results/pi-cost"));
        assert_eq!(o.variants, "all_relu,masked,compact,one_relu");
        assert!(!o.build);
        let o = parse(&args("--model=m.safetensors --name=r18 --variants compact")).unwrap().unwrap();
        assert_eq!((o.name.as_str(), o.variants.as_str()), ("r18", "compact"));
        assert_eq!(parse(&args("--help")).unwrap(), None);
    }

    #[test]
    fn bad_input_is_rejected() {
        assert!(parse(&args("--no-build")).unwrap_err().contains("--model"));
        assert!(parse(&args("--model m --variants relu")).unwrap_err().contains("`relu`"));
        assert!(parse(&args("--model m --bogus")).unwrap_err().contains("--bogus"));
        assert!(parse(&args("--model")).unwrap_err().contains("needs a value"));
        assert!(parse(&args("--model m --no-build=false")).unwrap_err().contains("takes no value"));
        for bad in ["..", ".", "a/b", "", "x y"] {
            let err = parse(&["--model=m".to_string(), format!("--name={bad}")]).unwrap_err();
            assert!(err.contains(&format!("--name `{bad}`")), "{err}");
        }
    }

    /// The default name never climbs out of the scratch folder: only plain folder names.
    #[test]
    fn default_names_are_safe() {
        for (model, name) in [
            ("runs/demo/linearized/model.safetensors", "demo-linearized"),
            ("/model.safetensors", "model"),
            ("../m.safetensors", "m"),
            ("/tmp/m.safetensors", "tmp"),
            ("../../a b/m.safetensors", "m"),
            ("m.safetensors", "m"),
        ] {
            assert_eq!(default_name(Path::new(model)), name, "{model}");
            assert!(check_name(&default_name(Path::new(model))).is_ok());
        }
    }

    #[test]
    fn input_round_trips_through_the_header() {
        let dir = std::env::temp_dir().join(format!("pi-cost-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.safetensors");
        write_input(&path, 4).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        assert_eq!(header["x"]["shape"], serde_json::json!([1, 3, 4, 4]));
        assert_eq!(bytes.len(), 8 + n + 3 * 16 * 4);
        assert!(image_size(&path).unwrap_err().contains("no image_size"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
