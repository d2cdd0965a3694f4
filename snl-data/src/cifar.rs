//! CIFAR-10 and CIFAR-100 binary releases, from the extracted folder or straight from the
//! official `.tar.gz` (streamed, never unpacked to disk).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::Split;
use crate::dataset::{Dataset, Normalization};
use crate::error::{Error, Result};

const PIXELS: usize = 3 * 32 * 32;

/// CIFAR-10 class names, label order.
pub const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// CIFAR-100 fine class names, label order.
pub const CIFAR100_FINE_CLASSES: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

/// CIFAR-100 coarse (superclass) names, label order.
pub const CIFAR100_COARSE_CLASSES: [&str; 20] = [
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
];

/// Which CIFAR release, and for CIFAR-100 which label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cifar {
    /// CIFAR-10.
    Ten,
    /// CIFAR-100 with its fine (100-class) labels, as papers train.
    HundredFine,
    /// CIFAR-100 with its coarse (20-superclass) labels.
    HundredCoarse,
}

struct Layout {
    folder: &'static str,
    archive: &'static str,
    train: &'static [&'static str],
    test: &'static [&'static str],
    names_file: &'static str,
    record: usize,
    /// Offset of the label byte used.
    label_at: usize,
    builtin: &'static [&'static str],
    what: &'static str,
    hint: &'static str,
}

impl Cifar {
    fn layout(self) -> Layout {
        match self {
            Cifar::Ten => Layout {
                folder: "cifar-10-batches-bin",
                archive: "cifar-10-binary.tar.gz",
                train: &[
                    "data_batch_1.bin",
                    "data_batch_2.bin",
                    "data_batch_3.bin",
                    "data_batch_4.bin",
                    "data_batch_5.bin",
                ],
                test: &["test_batch.bin"],
                names_file: "batches.meta.txt",
                record: 1 + PIXELS,
                label_at: 0,
                builtin: &CIFAR10_CLASSES,
                what: "CIFAR-10 binary release",
                hint: "Download https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz into the data \
                       folder (no need to unpack it), or load from the Hub (uoft-cs/cifar10)",
            },
            Cifar::HundredFine | Cifar::HundredCoarse => {
                let coarse = self == Cifar::HundredCoarse;
                Layout {
                    folder: "cifar-100-binary",
                    archive: "cifar-100-binary.tar.gz",
                    train: &["train.bin"],
                    test: &["test.bin"],
                    names_file: if coarse { "coarse_label_names.txt" } else { "fine_label_names.txt" },
                    record: 2 + PIXELS,
                    label_at: usize::from(!coarse),
                    builtin: if coarse { &CIFAR100_COARSE_CLASSES } else { &CIFAR100_FINE_CLASSES },
                    what: "CIFAR-100 binary release",
                    hint: "Download https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz into the data \
                           folder (no need to unpack it), or load from the Hub (uoft-cs/cifar100)",
                }
            }
        }
    }

    /// The normalisation of this release.
    pub fn normalization(self) -> Normalization {
        match self {
            Cifar::Ten => Normalization::cifar10(),
            _ => Normalization::cifar100(),
        }
    }
}

/// A file (or archive member) name and its bytes.
pub type Named = (PathBuf, Vec<u8>);

enum Found {
    Dir(PathBuf),
    TarGz(PathBuf),
}

fn is_archive(p: &Path) -> bool {
    let s = p.to_string_lossy();
    s.ends_with(".tar.gz") || s.ends_with(".tgz")
}

fn locate(lay: &Layout, location: &Path) -> Result<Found> {
    if location.is_file() && is_archive(location) {
        return Ok(Found::TarGz(location.to_path_buf()));
    }
    let has_release = |d: &Path| {
        d.join(lay.names_file).is_file() || lay.train.iter().chain(lay.test).any(|f| d.join(f).is_file())
    };
    let candidates = [location.to_path_buf(), location.join(lay.folder)];
    for d in &candidates {
        if d.is_dir() && has_release(d) {
            return Ok(Found::Dir(d.clone()));
        }
    }
    let archive = location.join(lay.archive);
    if archive.is_file() {
        return Ok(Found::TarGz(archive));
    }
    let mut looked = candidates.to_vec();
    looked.push(archive);
    Err(Error::NotFound { what: lay.what.to_owned(), looked, hint: lay.hint.to_owned() })
}

/// The largest CIFAR binary file: CIFAR-100's `train.bin` is 50,000 records of 3,074 bytes,
/// CIFAR-10's batches 10,000 of 3,073; nothing larger is read (or allocated).
pub const MAX_MEMBER: u64 = 6 * 30_730_000;
/// The most a deflate stream can expand (about 1032:1), so the most bytes a `.tar.gz` of a
/// given size can hold.
const MAX_GZIP_RATIO: u64 = 1032;

/// Loads a CIFAR split from `location`: the extracted folder (`cifar-10-batches-bin/`,
/// `cifar-100-binary/`), its parent, a folder holding the official `.tar.gz`, or the `.tar.gz`.
pub fn load(kind: Cifar, split: Split, location: &Path) -> Result<Dataset> {
    let lay = kind.layout();
    match locate(&lay, location)? {
        Found::Dir(dir) => {
            let mut sources = Vec::new();
            for f in split_files(&lay, split) {
                let p = dir.join(f);
                if !p.is_file() {
                    return Err(Error::NotFound {
                        what: format!("{} file {f}", lay.what),
                        looked: vec![p],
                        hint: lay.hint.to_owned(),
                    });
                }
                sources.push((p.clone(), read_file(&p)?));
            }
            let np = dir.join(lay.names_file);
            let names = if np.is_file() { Some((np.clone(), read_file(&np)?)) } else { None };
            from_records(kind, &sources, names)
        }
        Found::TarGz(archive) => {
            let file = std::fs::File::open(&archive).map_err(|e| Error::io(&archive, e))?;
            let len = file.metadata().map_err(|e| Error::io(&archive, e))?.len();
            load_tar_gz(kind, split, std::io::BufReader::with_capacity(1 << 20, file), len, &archive)
        }
    }
}

fn split_files(lay: &Layout, split: Split) -> &'static [&'static str] {
    match split {
        Split::Train => lay.train,
        Split::Test => lay.test,
    }
}

/// Reads a file of at most [`MAX_MEMBER`] bytes.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    if len > MAX_MEMBER {
        return Err(Error::format(path, format!("{len} bytes; no CIFAR file is over {MAX_MEMBER} bytes")));
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Loads a CIFAR split from the official `.tar.gz` read from `reader` (`compressed_len`
/// bytes long; no member may declare more than that can hold); `name` names it in errors.
pub fn load_tar_gz(
    kind: Cifar,
    split: Split,
    reader: impl Read,
    compressed_len: u64,
    name: &Path,
) -> Result<Dataset> {
    let lay = kind.layout();
    let files = split_files(&lay, split);
    let mut wanted: Vec<&str> = files.to_vec();
    wanted.push(lay.names_file);
    let limit = MAX_MEMBER.min(compressed_len.saturating_mul(MAX_GZIP_RATIO));
    let mut got = read_tar_gz(reader, name, lay.folder, &wanted, limit)?;
    let mut sources = Vec::new();
    for f in files {
        let member = name.join(lay.folder).join(f);
        match got.remove(*f) {
            Some(b) => sources.push((member, b)),
            None => {
                return Err(Error::NotFound {
                    what: format!("member {}/{f}", lay.folder),
                    looked: vec![name.to_path_buf()],
                    hint: format!("the archive is not the official {}; {}", lay.archive, lay.hint),
                });
            }
        }
    }
    let names = got.remove(lay.names_file).map(|b| (name.join(lay.folder).join(lay.names_file), b));
    from_records(kind, &sources, names)
}

/// Decodes CIFAR binary records: `sources` are the split's files (name, bytes), `names` the
/// optional class-names file (else the built-in names).
pub fn from_records(kind: Cifar, sources: &[Named], names: Option<Named>) -> Result<Dataset> {
    let lay = kind.layout();
    let classes: Vec<String> = match names {
        Some((path, bytes)) => {
            let text = String::from_utf8_lossy(&bytes);
            let names: Vec<String> =
                text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
            if names.len() != lay.builtin.len() {
                return Err(Error::format(
                    path,
                    format!("{} class names, expected {}", names.len(), lay.builtin.len()),
                ));
            }
            names
        }
        None => lay.builtin.iter().map(|s| (*s).to_owned()).collect(),
    };
    for (path, bytes) in sources {
        if bytes.is_empty() || bytes.len() % lay.record != 0 {
            return Err(Error::RecordSize {
                path: path.clone(),
                size: bytes.len() as u64,
                record: lay.record,
            });
        }
    }
    let total: usize = sources.iter().map(|(_, b)| b.len() / lay.record).sum();
    let mut images = Vec::with_capacity(total * PIXELS);
    let mut labels = Vec::with_capacity(total);
    for (path, bytes) in sources {
        for (index, rec) in bytes.chunks_exact(lay.record).enumerate() {
            let label = rec[lay.label_at];
            if usize::from(label) >= classes.len() {
                return Err(Error::LabelOutOfRange {
                    path: path.clone(),
                    index,
                    label: i64::from(label),
                    classes: classes.len(),
                });
            }
            labels.push(u32::from(label));
            images.extend_from_slice(&rec[lay.record - PIXELS..]);
        }
    }
    Dataset::from_raw(images, labels, 32, 32, classes, kind.normalization())
}

/// The most bytes a CIFAR `.tar.gz` may inflate to (the official ones hold under 200 MB):
/// past it, a bomb of members nobody reads is an error, not minutes of inflating.
const MAX_TAR_BYTES: u64 = 1 << 30;

/// A reader that fails once it has given `left` bytes.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 && !buf.is_empty() {
            return Err(std::io::Error::other(format!("it inflates to more than {MAX_TAR_BYTES} bytes")));
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Streams a `.tar.gz` and returns the members whose file name is in `wanted` and whose parent
/// folder is `folder` (or that sit at the top level), keyed by file name. A wanted member
/// that declares more than `limit` bytes is an error before anything is allocated for it.
fn read_tar_gz(
    reader: impl Read,
    archive: &Path,
    folder: &str,
    wanted: &[&str],
    limit: u64,
) -> Result<HashMap<String, Vec<u8>>> {
    let gz = Capped { inner: flate2::read::GzDecoder::new(reader), left: MAX_TAR_BYTES };
    let mut tar = tar::Archive::new(gz);
    let bad = |e: std::io::Error| Error::archive(archive, e.to_string());
    let mut out = HashMap::new();
    // Raw: a GNU long-name or PAX entry is skipped like any other, not read whole into memory
    // by the tar crate (the official archives have neither).
    for entry in tar.entries().map_err(bad)?.raw(true) {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
        let parent_ok = match path.parent().and_then(|p| p.file_name()) {
            None => true,
            Some(p) => p == folder,
        };
        if !parent_ok || !wanted.contains(&name.as_str()) || out.contains_key(&name) {
            continue;
        }
        let size = entry.size();
        if size > limit {
            return Err(Error::archive(
                archive,
                format!(
                    "member {} declares {size} bytes, more than the archive can hold ({limit})",
                    path.display()
                ),
            ));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut bytes).map_err(bad)?;
        if bytes.len() as u64 != size {
            return Err(Error::archive(
                archive,
                format!("member {} ends after {} of its {size} bytes", path.display(), bytes.len()),
            ));
        }
        out.insert(name, bytes);
        if out.len() == wanted.len() {
            break;
        }
    }
    Ok(out)
}
