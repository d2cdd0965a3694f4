//! A generic image folder, torchvision `ImageFolder` convention: `<root>/<split>/<class>/<image>`,
//! class ids by sorted folder name, images (JPEG, PNG, searched recursively) sorted by path.
//! Symbolic links to images and to folders are followed (subsets are often made of links), but
//! each folder is read once: one reached again (`loop -> ..`, two links to it) is an error.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::{Path, PathBuf};

use crate::Split;
use crate::cifar::{CIFAR10_CLASSES, CIFAR100_FINE_CLASSES};
use crate::dataset::{Dataset, Normalization};
use crate::decode;
use crate::error::{Error, Result};

const HINT: &str = "An image folder is laid out as <root>/train/<class>/<image> and \
                    <root>/test/<class>/<image> (JPEG or PNG)";

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        out.push(entry.path());
    }
    out.sort();
    Ok(out)
}

pub(crate) fn is_image_file(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        let e = e.to_ascii_lowercase();
        e == "jpg" || e == "jpeg" || e == "png"
    })
}

/// The folders read so far, by canonical path, with the path each was first read as. A link
/// back to one of them (`loop -> ..`) would read it again, over and over until the kernel's
/// link depth limit, with other classes' images labelled as the class holding the link.
type ReadFolders = HashMap<PathBuf, PathBuf>;

/// Records `dir` as read, or fails if its canonical path was read already.
fn mark_read(dir: &Path, read: &mut ReadFolders) -> Result<()> {
    let canonical = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    match read.entry(canonical) {
        Entry::Occupied(first) => Err(Error::RepeatedFolder {
            path: dir.to_path_buf(),
            folder: first.key().clone(),
            first: first.get().clone(),
        }),
        Entry::Vacant(slot) => {
            slot.insert(dir.to_path_buf());
            Ok(())
        }
    }
}

fn collect_images(dir: &Path, read: &mut ReadFolders, out: &mut Vec<PathBuf>) -> Result<()> {
    mark_read(dir, read)?;
    let entries = read_dir_sorted(dir)?;
    // Files of this folder first (sorted), then sub-folders (sorted), like a sorted os.walk.
    for p in entries.iter().filter(|p| p.is_file() && is_image_file(p)) {
        out.push(p.clone());
    }
    for p in entries.iter().filter(|p| p.is_dir()) {
        collect_images(p, read, out)?;
    }
    Ok(())
}

/// The folder of `split` under `root`: `train`, or `test` (falling back to `val`).
pub fn split_dir(root: &Path, split: Split) -> Result<PathBuf> {
    let names: &[&str] = match split {
        Split::Train => &["train"],
        Split::Test => &["test", "val"],
    };
    let looked: Vec<PathBuf> = names.iter().map(|n| root.join(n)).collect();
    for d in &looked {
        if d.is_dir() {
            return Ok(d.clone());
        }
    }
    Err(Error::NotFound { what: format!("image folder split `{split}`"), looked, hint: HINT.to_owned() })
}

/// The normalisation an image folder gets by default: CIFAR-10's or CIFAR-100's when its class
/// folders are exactly those classes, else ImageNet's.
pub fn default_normalization(classes: &[String]) -> Normalization {
    if classes.iter().map(String::as_str).eq(CIFAR10_CLASSES) {
        Normalization::cifar10()
    } else if classes.iter().map(String::as_str).eq(CIFAR100_FINE_CLASSES) {
        Normalization::cifar100()
    } else {
        Normalization::imagenet()
    }
}

/// Loads `<root>/<split>/<class>/<image>`.
pub fn load(root: &Path, split: Split) -> Result<Dataset> {
    if !root.is_dir() {
        return Err(Error::NotFound {
            what: "image folder".to_owned(),
            looked: vec![root.to_path_buf()],
            hint: HINT.to_owned(),
        });
    }
    load_classes_dir(&split_dir(root, split)?)
}

/// Loads one split folder `<dir>/<class>/<image>`.
pub fn load_classes_dir(dir: &Path) -> Result<Dataset> {
    // The split folder counts as read: a class's `loop -> ..` leads back to it.
    let mut read = ReadFolders::new();
    mark_read(dir, &mut read)?;
    let class_dirs: Vec<PathBuf> = read_dir_sorted(dir)?.into_iter().filter(|p| p.is_dir()).collect();
    if class_dirs.is_empty() {
        return Err(Error::format(dir, format!("no class folder in it. {HINT}")));
    }
    let mut classes = Vec::with_capacity(class_dirs.len());
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for (label, cdir) in class_dirs.iter().enumerate() {
        let before = files.len();
        collect_images(cdir, &mut read, &mut files)?;
        if files.len() == before {
            return Err(Error::EmptyClass { path: cdir.clone() });
        }
        labels.resize(files.len(), label as u32);
        classes.push(cdir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    }
    let (h, w, images) = decode::decode_all(&files, None)?;
    let norm = default_normalization(&classes);
    Dataset::from_raw(images, labels, h, w, classes, norm)
}
