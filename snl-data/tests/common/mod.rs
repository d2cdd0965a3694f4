//! Writers of tiny files in each real format, and checks on pixel placement.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod mock_hub;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, Int64Array, RecordBatch, StringArray, StructArray};
use arrow_schema::{DataType, Field, Fields, Schema};
use image::{ImageEncoder, RgbImage};

/// A non-symmetric pattern: channel, row and column all move the value differently, so a
/// swapped height/width or channel order gives different bytes.
pub fn pattern(seed: usize, c: usize, y: usize, x: usize) -> u8 {
    ((seed * 13 + c * 97 + y * 31 + x * 7 + y * x) % 256) as u8
}

/// CHW bytes of the pattern image.
pub fn pattern_chw(seed: usize, h: usize, w: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(3 * h * w);
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                v.push(pattern(seed, c, y, x));
            }
        }
    }
    v
}

/// The same image as an `RgbImage` (HWC).
pub fn pattern_rgb(seed: usize, h: usize, w: usize) -> RgbImage {
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let (x, y) = (x as usize, y as usize);
        image::Rgb([pattern(seed, 0, y, x), pattern(seed, 1, y, x), pattern(seed, 2, y, x)])
    })
}

pub fn png_bytes(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

pub fn jpeg_bytes(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 98).encode_image(img).unwrap();
    out
}

pub fn gray_jpeg_bytes(h: u32, w: u32, v: u8) -> Vec<u8> {
    let img = image::GrayImage::from_pixel(w, h, image::Luma([v]));
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 98).encode_image(&img).unwrap();
    out
}

/// Four flat quadrants (top-left, top-right, bottom-left, bottom-right): survives JPEG and
/// still tells rows from columns and channels apart.
pub fn quadrants(h: u32, w: u32, colors: [[u8; 3]; 4]) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let q = usize::from(y >= h / 2) * 2 + usize::from(x >= w / 2);
        image::Rgb(colors[q])
    })
}

pub const QUAD: [[u8; 3]; 4] = [[250, 10, 10], [10, 250, 10], [10, 10, 250], [250, 250, 10]];

/// Checks the quadrant centres of CHW image `img` (h x w) within `tol`.
pub fn check_quadrants(img: &[u8], h: usize, w: usize, colors: [[u8; 3]; 4], tol: i32) {
    for (q, col) in colors.iter().enumerate() {
        let y = if q >= 2 { 3 * h / 4 } else { h / 4 };
        let x = if q % 2 == 1 { 3 * w / 4 } else { w / 4 };
        for c in 0..3 {
            let got = i32::from(img[c * h * w + y * w + x]);
            assert!(
                (got - i32::from(col[c])).abs() <= tol,
                "quadrant {q} channel {c}: got {got}, want {}",
                col[c]
            );
        }
    }
}

/// A CIFAR record file: `n` records of `label_bytes(i)` then the pattern image `seed0 + i`.
pub fn cifar_records(n: usize, seed0: usize, label_bytes: impl Fn(usize) -> Vec<u8>) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..n {
        v.extend(label_bytes(i));
        v.extend(pattern_chw(seed0 + i, 32, 32));
    }
    v
}

pub const CIFAR10_NAMES: &str = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";

/// Writes a CIFAR-10 release folder `root/cifar-10-batches-bin` with `per_file` records per
/// batch file; batch `b` (0..5 train, 5 test) record `i` has label `(b + i) % 10` and image
/// seed `b * 1000 + i`.
pub fn write_cifar10_dir(root: &Path, per_file: usize) -> std::path::PathBuf {
    let dir = root.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    for (b, name) in cifar10_files().iter().enumerate() {
        let bytes = cifar_records(per_file, b * 1000, |i| vec![((b + i) % 10) as u8]);
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    std::fs::write(dir.join("batches.meta.txt"), CIFAR10_NAMES).unwrap();
    dir
}

pub fn cifar10_files() -> [&'static str; 6] {
    [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ]
}

/// CIFAR-100 `train.bin` (`n_train` records) and `test.bin` (`n_test`): record `i` of file
/// `f` has coarse `(i + f) % 20`, fine `(3 i + f) % 100`, image seed `f * 1000 + i`.
pub fn write_cifar100_dir(root: &Path, n_train: usize, n_test: usize) -> std::path::PathBuf {
    let dir = root.join("cifar-100-binary");
    std::fs::create_dir_all(&dir).unwrap();
    for (f, (name, n)) in [("train.bin", n_train), ("test.bin", n_test)].into_iter().enumerate() {
        let bytes = cifar_records(n, f * 1000, |i| vec![((i + f) % 20) as u8, ((3 * i + f) % 100) as u8]);
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let fine: String = snl_data::cifar::CIFAR100_FINE_CLASSES.iter().map(|s| format!("{s}\n")).collect();
    let coarse: String = snl_data::cifar::CIFAR100_COARSE_CLASSES.iter().map(|s| format!("{s}\n")).collect();
    std::fs::write(dir.join("fine_label_names.txt"), fine).unwrap();
    std::fs::write(dir.join("coarse_label_names.txt"), coarse).unwrap();
    dir
}

/// Packs folder `dir` as `<archive>` (`.tar.gz`) with top folder `dir`'s name.
pub fn tar_gz(dir: &Path, archive: &Path) {
    let f = std::fs::File::create(archive).unwrap();
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    let mut t = tar::Builder::new(gz);
    t.append_dir_all(dir.file_name().unwrap(), dir).unwrap();
    t.into_inner().unwrap().finish().unwrap();
}

/// Zips folder `dir` into `archive` with top folder `dir`'s name (directory entries included).
pub fn zip_dir(dir: &Path, archive: &Path) {
    let f = std::fs::File::create(archive).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let top = dir.file_name().unwrap().to_string_lossy().into_owned();
    let mut stack = vec![(dir.to_path_buf(), top)];
    while let Some((d, name)) = stack.pop() {
        z.add_directory(format!("{name}/"), opts).unwrap();
        let mut entries: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            let child = format!("{name}/{}", p.file_name().unwrap().to_string_lossy());
            if p.is_dir() {
                stack.push((p, child));
            } else {
                z.start_file(child, opts).unwrap();
                z.write_all(&std::fs::read(&p).unwrap()).unwrap();
            }
        }
    }
    z.finish().unwrap();
}

pub const TINY_WNIDS: [&str; 3] = ["n09999999", "n01443537", "n05555555"]; // deliberately unsorted
pub const TINY_H: u32 = 16;
pub const TINY_W: u32 = 24;

/// Tiny-ImageNet-style colours: class `k` (sorted-wnid id) gets quadrant colours rotated by k.
pub fn tiny_colors(k: usize) -> [[u8; 3]; 4] {
    let mut c = QUAD;
    c.rotate_left(k % 4);
    c
}

/// Writes `root/tiny-imagenet-200` with 2 training images per class (the last class's second
/// image grayscale) and 4 validation images.
pub fn write_tiny(root: &Path) -> std::path::PathBuf {
    let dir = root.join("tiny-imagenet-200");
    std::fs::create_dir_all(dir.join("val/images")).unwrap();
    std::fs::write(dir.join("wnids.txt"), TINY_WNIDS.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("words.txt"), "n01443537\tgoldfish\n").unwrap();
    let mut sorted = TINY_WNIDS.to_vec();
    sorted.sort();
    for (k, wnid) in sorted.iter().enumerate() {
        let d = dir.join("train").join(wnid).join("images");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(dir.join("train").join(wnid).join(format!("{wnid}_boxes.txt")), "").unwrap();
        std::fs::write(
            d.join(format!("{wnid}_0.JPEG")),
            jpeg_bytes(&quadrants(TINY_H, TINY_W, tiny_colors(k))),
        )
        .unwrap();
        let second = if k == 2 {
            gray_jpeg_bytes(TINY_H, TINY_W, 77)
        } else {
            jpeg_bytes(&quadrants(TINY_H, TINY_W, tiny_colors(k)))
        };
        std::fs::write(d.join(format!("{wnid}_1.JPEG")), second).unwrap();
    }
    // val: image j belongs to sorted class (j + 1) % 3.
    let mut ann = String::new();
    for j in 0..4 {
        let k = (j + 1) % 3;
        std::fs::write(
            dir.join("val/images").join(format!("val_{j}.JPEG")),
            jpeg_bytes(&quadrants(TINY_H, TINY_W, tiny_colors(k))),
        )
        .unwrap();
        ann.push_str(&format!("val_{j}.JPEG\t{}\t0\t0\t10\t10\n", sorted[k]));
    }
    std::fs::write(dir.join("val/val_annotations.txt"), ann).unwrap();
    dir
}

/// A parquet file in the Hub's layout: `image_col` struct {bytes, path}, integer `label_col`,
/// and the `datasets` library's `huggingface` metadata with the class names.
pub fn write_hub_parquet(
    path: &Path,
    image_col: &str,
    label_col: &str,
    images: &[Vec<u8>],
    labels: &[i64],
    names: Option<&[&str]>,
) {
    let bytes = BinaryArray::from_iter_values(images.iter());
    let paths = StringArray::from_iter_values((0..images.len()).map(|i| format!("{i}.png")));
    let fields = Fields::from(vec![
        Field::new("bytes", DataType::Binary, true),
        Field::new("path", DataType::Utf8, true),
    ]);
    let img = StructArray::new(
        fields.clone(),
        vec![Arc::new(bytes) as ArrayRef, Arc::new(paths) as ArrayRef],
        None,
    );
    let schema = Arc::new(Schema::new(vec![
        Field::new(image_col, DataType::Struct(fields), true),
        Field::new(label_col, DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(img) as ArrayRef, Arc::new(Int64Array::from(labels.to_vec())) as ArrayRef],
    )
    .unwrap();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let f = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, schema, None).unwrap();
    if let Some(names) = names {
        let json = serde_json::json!({"info": {"features": {
            image_col: {"_type": "Image"},
            label_col: {"_type": "ClassLabel", "names": names},
        }}});
        w.append_key_value_metadata(parquet::file::metadata::KeyValue::new(
            "huggingface".to_owned(),
            json.to_string(),
        ));
    }
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Lays a file out in a Hub cache as hf-hub does: `refs/<rev>`, `snapshots/<sha>/<rel>`.
pub fn put_in_cache(cache: &Path, repo: &str, rev: &str, sha: &str, rel: &str) -> std::path::PathBuf {
    let repo_dir = cache.join(format!("datasets--{}", repo.replace('/', "--")));
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    std::fs::write(repo_dir.join("refs").join(rev), sha).unwrap();
    let p = repo_dir.join("snapshots").join(sha).join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    p
}
