//! Tiny-ImageNet-200 in its official layout, from the extracted folder or the `.zip`.
//! Class ids follow the **sorted** wnids (the ImageFolder convention PyTorch checkpoints use);
//! the test split is the official `val/` set (the official test set has no labels).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::Split;
use crate::dataset::{Dataset, Normalization};
use crate::decode::{self, InMemory};
use crate::error::{Error, Result};
use crate::folder::is_image_file;

const FOLDER: &str = "tiny-imagenet-200";
const ARCHIVE: &str = "tiny-imagenet-200.zip";
const HINT: &str = "Download http://cs231n.stanford.edu/tiny-imagenet-200.zip into the data folder \
                    (no need to unpack it), or load from the Hub (zh-plus/tiny-imagenet)";
/// Images decoded per chunk when reading from the zip.
const ZIP_CHUNK: usize = 4096;
/// Compressed bytes held at most before a chunk is decoded (4096 official images are ~10 MB;
/// without it, 4096 members of [`MAX_MEMBER`] would be held at once).
const ZIP_CHUNK_BYTES: usize = 64 << 20;
/// The largest zip member read (the annotations are about 2 MB, an image a few KB).
const MAX_MEMBER: u64 = 64 << 20;

enum Tree {
    Dir(PathBuf),
    Zip { path: PathBuf, archive: zip::ZipArchive<std::fs::File>, prefix: String, names: Vec<String> },
}

impl Tree {
    fn open(location: &Path) -> Result<Tree> {
        if location.is_file() {
            return Tree::open_zip(location);
        }
        let candidates = [location.to_path_buf(), location.join(FOLDER)];
        for d in &candidates {
            if d.join("wnids.txt").is_file() {
                return Ok(Tree::Dir(d.clone()));
            }
        }
        let z = location.join(ARCHIVE);
        if z.is_file() {
            return Tree::open_zip(&z);
        }
        let mut looked: Vec<PathBuf> = candidates.iter().map(|d| d.join("wnids.txt")).collect();
        looked.push(z);
        Err(Error::NotFound { what: "Tiny-ImageNet-200".to_owned(), looked, hint: HINT.to_owned() })
    }

    fn open_zip(path: &Path) -> Result<Tree> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut archive = zip::ZipArchive::new(file).map_err(|e| Error::archive(path, e.to_string()))?;
        // Members sharing one compressed stream would each inflate it again.
        if archive.has_overlapping_files().map_err(|e| Error::archive(path, e.to_string()))? {
            return Err(Error::archive(path, "members share compressed data, as no Tiny-ImageNet zip does"));
        }
        let mut names: Vec<String> = archive
            .file_names()
            .map(|n| n.map(|n| n.into_owned()))
            .collect::<zip::result::ZipResult<_>>()
            .map_err(|e| Error::archive(path, e.to_string()))?;
        let prefix = names
            .iter()
            .filter_map(|n| n.strip_suffix("wnids.txt"))
            .filter(|p| p.is_empty() || p.ends_with('/'))
            .min_by_key(|p| p.len())
            .map(str::to_owned)
            .ok_or_else(|| Error::NotFound {
                what: "wnids.txt in the Tiny-ImageNet archive".to_owned(),
                looked: vec![path.to_path_buf()],
                hint: HINT.to_owned(),
            })?;
        // Sorted, so a folder's members are one range (`list_images`), not a scan of all.
        names.sort_unstable();
        Ok(Tree::Zip { path: path.to_path_buf(), archive, prefix, names })
    }

    /// Display name of `rel` (a path, or `archive.zip/member`).
    fn name(&self, rel: &str) -> PathBuf {
        match self {
            Tree::Dir(d) => d.join(rel),
            Tree::Zip { path, prefix, .. } => path.join(format!("{prefix}{rel}")),
        }
    }

    fn read(&mut self, rel: &str) -> Result<Vec<u8>> {
        match self {
            Tree::Dir(d) => {
                let p = d.join(rel);
                if !p.is_file() {
                    return Err(Error::NotFound {
                        what: format!("Tiny-ImageNet file {rel}"),
                        looked: vec![p],
                        hint: HINT.to_owned(),
                    });
                }
                decode::read_capped(&p, MAX_MEMBER)
            }
            Tree::Zip { path, archive, prefix, .. } => {
                let member = format!("{prefix}{rel}");
                let f = match archive.by_name(&member) {
                    Ok(f) => f,
                    Err(zip::result::ZipError::FileNotFound) => {
                        return Err(Error::NotFound {
                            what: format!("member {member}"),
                            looked: vec![path.clone()],
                            hint: HINT.to_owned(),
                        });
                    }
                    Err(e) => return Err(Error::archive(&*path, format!("member {member}: {e}"))),
                };
                if f.size() > MAX_MEMBER {
                    return Err(Error::archive(
                        &*path,
                        format!("member {member} declares {} bytes, over the {MAX_MEMBER} allowed", f.size()),
                    ));
                }
                // The declared size only bounds the read: the data may be shorter.
                let mut out = Vec::new();
                f.take(MAX_MEMBER)
                    .read_to_end(&mut out)
                    .map_err(|e| Error::archive(&*path, format!("member {member}: {e}")))?;
                Ok(out)
            }
        }
    }

    /// Image files directly in folder `rel` (sorted); `None` if the folder does not exist.
    fn list_images(&self, rel: &str) -> Result<Option<Vec<String>>> {
        match self {
            Tree::Dir(d) => {
                let dir = d.join(rel);
                if !dir.is_dir() {
                    return Ok(None);
                }
                let mut out = Vec::new();
                for e in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
                    let e = e.map_err(|e| Error::io(&dir, e))?;
                    let p = e.path();
                    let fname = e.file_name().to_string_lossy().into_owned();
                    if p.is_file() && is_image_file(&p) && !fname.starts_with('.') {
                        out.push(format!("{rel}/{fname}"));
                    }
                }
                out.sort();
                Ok(Some(out))
            }
            Tree::Zip { prefix, names, .. } => {
                let dir = format!("{prefix}{rel}/");
                let first = names.partition_point(|n| n.as_str() < dir.as_str());
                let mut any = false;
                let mut out = Vec::new();
                for rest in names[first..].iter().map_while(|n| n.strip_prefix(&dir)) {
                    any = true;
                    if !rest.is_empty() && !rest.contains('/') && is_image_file(Path::new(rest)) {
                        out.push(format!("{rel}/{rest}"));
                    }
                }
                out.sort();
                Ok(any.then_some(out))
            }
        }
    }

    fn decode(&mut self, files: &[String]) -> Result<(usize, usize, Vec<u8>)> {
        if let Tree::Dir(d) = self {
            let paths: Vec<PathBuf> = files.iter().map(|f| d.join(f)).collect();
            return decode::decode_all(&paths, None);
        }
        let Some(first) = files.first() else { return Ok((0, 0, Vec::new())) };
        let first_bytes = self.read(first)?;
        let (h, w, _) = decode::decode_rgb(&first_bytes, &self.name(first))?;
        let per = 3 * h * w;
        let mut store = decode::zeroed_store(files.len(), per, &self.name(first))?;
        // Decoded a chunk at a time, the chunk bounded in images and in bytes held.
        let (mut mem, mut held, mut done) = (Vec::new(), 0, 0);
        for (i, f) in files.iter().enumerate() {
            let bytes = self.read(f)?;
            held += bytes.len();
            mem.push(InMemory { name: self.name(f), bytes });
            if mem.len() == ZIP_CHUNK || held >= ZIP_CHUNK_BYTES || i + 1 == files.len() {
                decode::decode_into_store(&mem, h, w, &mut store[done * per..(done + mem.len()) * per])?;
                done += mem.len();
                (held, mem) = (0, Vec::new());
            }
        }
        Ok((h, w, store))
    }
}

/// Loads Tiny-ImageNet-200 from `location`: the extracted `tiny-imagenet-200/` folder, its
/// parent, a folder holding `tiny-imagenet-200.zip`, or the zip itself.
pub fn load(split: Split, location: &Path) -> Result<Dataset> {
    let mut tree = Tree::open(location)?;
    let wnids = parse_wnids(&tree.read("wnids.txt")?, &tree.name("wnids.txt"))?;

    let mut files = Vec::new();
    let mut labels: Vec<u32> = Vec::new();
    match split {
        Split::Train => {
            for (label, wnid) in wnids.iter().enumerate() {
                let rel = format!("train/{wnid}/images");
                match tree.list_images(&rel)? {
                    None => {
                        return Err(Error::NotFound {
                            what: format!("training folder of class {wnid}"),
                            looked: vec![tree.name(&rel)],
                            hint: HINT.to_owned(),
                        });
                    }
                    Some(v) if v.is_empty() => return Err(Error::EmptyClass { path: tree.name(&rel) }),
                    Some(v) => {
                        labels.resize(labels.len() + v.len(), label as u32);
                        files.extend(v);
                    }
                }
            }
        }
        Split::Test => {
            let ann_rel = "val/val_annotations.txt";
            let ann_name = tree.name(ann_rel);
            (files, labels) = parse_annotations(&tree.read(ann_rel)?, &wnids, &ann_name)?;
            if let Tree::Dir(d) = &tree
                && let Some(missing) = files.iter().find(|f| !d.join(f).is_file())
            {
                return Err(Error::NotFound {
                    what: format!("validation image listed in {}", ann_name.display()),
                    looked: vec![d.join(missing)],
                    hint: HINT.to_owned(),
                });
            }
        }
    }
    let (h, w, images) = tree.decode(&files)?;
    Dataset::from_raw(images, labels, h, w, wnids, Normalization::tiny_imagenet())
}

/// The class ids of `wnids.txt` (`bytes`, named `name` in errors), sorted and deduplicated:
/// label `i` is the `i`-th.
pub fn parse_wnids(bytes: &[u8], name: &Path) -> Result<Vec<String>> {
    let text = String::from_utf8_lossy(bytes);
    let mut wnids: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    wnids.sort();
    wnids.dedup();
    if wnids.is_empty() {
        return Err(Error::format(name, "no class id in it"));
    }
    Ok(wnids)
}

/// The images (`val/images/<file>`) and labels listed in `val_annotations.txt` (`bytes`,
/// named `name` in errors), labels by position in `wnids` (sorted, as [`parse_wnids`] gives).
pub fn parse_annotations(bytes: &[u8], wnids: &[String], name: &Path) -> Result<(Vec<String>, Vec<u32>)> {
    let index: HashMap<&str, u32> = wnids.iter().enumerate().map(|(i, w)| (w.as_str(), i as u32)).collect();
    let text = String::from_utf8_lossy(bytes);
    let (mut files, mut labels) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut parts = line.split('\t');
        let (Some(file), Some(wnid)) = (parts.next(), parts.next()) else {
            return Err(Error::format(
                name,
                format!("line {}: expected `file<TAB>wnid<TAB>box`, got {line:?}", n + 1),
            ));
        };
        let Some(&label) = index.get(wnid.trim()) else {
            return Err(Error::format(
                name,
                format!("line {}: class id {:?} is not in wnids.txt", n + 1, wnid.trim()),
            ));
        };
        files.push(format!("val/images/{}", file.trim()));
        labels.push(label);
    }
    if files.is_empty() {
        return Err(Error::format(name, "no annotation in it"));
    }
    Ok((files, labels))
}
