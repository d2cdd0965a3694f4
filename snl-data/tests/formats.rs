//! Tiny files in each real format: labels, counts, class order and pixel placement.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use snl_data::{Cifar, DatasetName, HubDataset, HubOptions, LoadOptions, Normalization, Split, load};

fn opts(dir: &Path) -> LoadOptions {
    // Offline with an empty cache: a test never reaches the network by accident.
    let hub =
        HubOptions { offline: true, cache_dir: Some(dir.join("no-hub-cache")), ..HubOptions::default() };
    LoadOptions { data_dir: Some(dir.to_path_buf()), local_only: false, hub, normalization: None }
}

fn check_cifar10(ds: &snl_data::Dataset, split: Split, per_file: usize) {
    let files: Vec<usize> = match split {
        Split::Train => (0..5).collect(),
        Split::Test => vec![5],
    };
    assert_eq!(ds.len(), files.len() * per_file);
    assert_eq!((ds.height(), ds.width()), (32, 32));
    assert_eq!(ds.classes()[0], "airplane");
    assert_eq!(ds.classes()[9], "truck");
    assert_eq!(ds.normalization(), Normalization::cifar10());
    let mut n = 0;
    for b in files {
        for i in 0..per_file {
            assert_eq!(ds.label(n), ((b + i) % 10) as u32, "image {n}");
            assert_eq!(ds.image(n), pattern_chw(b * 1000 + i, 32, 32).as_slice(), "image {n}");
            n += 1;
        }
    }
}

#[test]
fn cifar10_from_folder_parent_and_tar_gz() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_cifar10_dir(tmp.path(), 7);
    for split in [Split::Train, Split::Test] {
        // the release folder itself, and its parent
        check_cifar10(&snl_data::cifar::load(Cifar::Ten, split, &dir).unwrap(), split, 7);
        check_cifar10(&load(DatasetName::Cifar10, split, &opts(tmp.path())).unwrap(), split, 7);
    }
    // the official archive, found in a data folder, or given directly
    let arch_dir = tempfile::tempdir().unwrap();
    let archive = arch_dir.path().join("cifar-10-binary.tar.gz");
    tar_gz(&dir, &archive);
    for split in [Split::Train, Split::Test] {
        check_cifar10(&load(DatasetName::Cifar10, split, &opts(arch_dir.path())).unwrap(), split, 7);
        check_cifar10(&snl_data::cifar::load(Cifar::Ten, split, &archive).unwrap(), split, 7);
    }
}

#[test]
fn cifar10_without_meta_uses_builtin_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_cifar10_dir(tmp.path(), 2);
    std::fs::remove_file(dir.join("batches.meta.txt")).unwrap();
    let ds = snl_data::cifar::load(Cifar::Ten, Split::Test, &dir).unwrap();
    assert_eq!(ds.classes(), snl_data::cifar::CIFAR10_CLASSES.map(String::from).as_slice());
}

fn check_cifar100(ds: &snl_data::Dataset, f: usize, n: usize, coarse: bool) {
    assert_eq!(ds.len(), n);
    assert_eq!(ds.num_classes(), if coarse { 20 } else { 100 });
    assert_eq!(ds.normalization(), Normalization::cifar100());
    for i in 0..n {
        let want = if coarse { (i + f) % 20 } else { (3 * i + f) % 100 };
        assert_eq!(ds.label(i), want as u32);
        assert_eq!(ds.image(i), pattern_chw(f * 1000 + i, 32, 32).as_slice());
    }
    if coarse {
        assert_eq!(ds.classes()[0], "aquatic_mammals");
    } else {
        assert_eq!(ds.classes()[0], "apple");
        assert_eq!(ds.classes()[99], "worm");
    }
}

#[test]
fn cifar100_fine_and_coarse_from_folder_and_tar_gz() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_cifar100_dir(tmp.path(), 9, 5);
    let arch_dir = tempfile::tempdir().unwrap();
    tar_gz(&dir, &arch_dir.path().join("cifar-100-binary.tar.gz"));
    for root in [tmp.path(), arch_dir.path()] {
        let o = opts(root);
        check_cifar100(&load(DatasetName::Cifar100, Split::Train, &o).unwrap(), 0, 9, false);
        check_cifar100(&load(DatasetName::Cifar100, Split::Test, &o).unwrap(), 1, 5, false);
        check_cifar100(&load(DatasetName::Cifar100Coarse, Split::Train, &o).unwrap(), 0, 9, true);
        check_cifar100(&load(DatasetName::Cifar100Coarse, Split::Test, &o).unwrap(), 1, 5, true);
    }
}

/// Full-size CIFAR-10 binary files (10,000 records each, as released) against the documented
/// record layout (REFERENCE §4: a label byte, then 1,024 red, 1,024 green and 1,024 blue bytes,
/// each 32x32 row-major, so CHW already), every expected byte computed from the formula that
/// wrote it, not read back. (This was a cross-check against candle-datasets' reader, which
/// asserts exactly that layout; candle-datasets 0.11 builds hf-hub 1.0, tokio, reqwest and xet
/// into every test build.)
#[test]
fn cifar10_binary_matches_the_documented_layout() {
    const RECORDS: usize = 10_000;
    let label = |i: usize| (i * 7 % 10) as u8;
    // Pixel byte `j` (0..3072) of record `i`: channel `j / 1024`, row `j % 1024 / 32`, column `j % 32`.
    let pixel = |i: usize, j: usize| ((i * 31 + j * 7 + j / 32 * 3) % 256) as u8;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    let mut rec = vec![0u8; RECORDS * 3073];
    for (i, r) in rec.chunks_exact_mut(3073).enumerate() {
        r[0] = label(i);
        for (j, v) in r[1..].iter_mut().enumerate() {
            *v = pixel(i, j);
        }
    }
    for name in cifar10_files() {
        std::fs::write(dir.join(name), &rec).unwrap();
    }
    let ours = snl_data::cifar::load(Cifar::Ten, Split::Test, &dir).unwrap();
    assert_eq!((ours.len(), ours.height(), ours.width()), (RECORDS, 32, 32));
    assert_eq!(
        ours.labels().iter().map(|&l| l as u8).collect::<Vec<_>>(),
        (0..RECORDS).map(label).collect::<Vec<_>>()
    );
    for i in 0..RECORDS {
        let img = ours.image(i);
        assert_eq!(img.len(), 3 * 32 * 32);
        for (c, y, x) in (0..3).flat_map(|c| (0..32).flat_map(move |y| (0..32).map(move |x| (c, y, x)))) {
            assert_eq!(
                img[(c * 32 + y) * 32 + x],
                pixel(i, c * 1024 + y * 32 + x),
                "record {i} ({c}, {y}, {x})"
            );
        }
    }
    let train = snl_data::cifar::load(Cifar::Ten, Split::Train, &dir).unwrap();
    assert_eq!(train.len(), 5 * RECORDS);
    assert_eq!(train.labels()[4 * RECORDS + 3], u32::from(label(3)));
    assert_eq!(train.image(4 * RECORDS + 3), ours.image(3));
}

fn check_tiny_train(ds: &snl_data::Dataset) {
    let mut sorted = TINY_WNIDS.to_vec();
    sorted.sort();
    assert_eq!(ds.classes(), sorted.iter().map(|s| s.to_string()).collect::<Vec<_>>().as_slice());
    assert_eq!(ds.len(), 6);
    assert_eq!((ds.height(), ds.width()), (TINY_H as usize, TINY_W as usize));
    assert_eq!(ds.labels(), &[0, 0, 1, 1, 2, 2]);
    assert_eq!(ds.normalization(), Normalization::tiny_imagenet());
    for i in 0..5 {
        check_quadrants(ds.image(i), ds.height(), ds.width(), tiny_colors(i / 2), 12);
    }
    // grayscale -> RGB: three equal planes
    let g = ds.image(5);
    let hw = ds.height() * ds.width();
    assert!(g[..hw].iter().all(|&v| (i32::from(v) - 77).abs() <= 2));
    assert_eq!(&g[..hw], &g[hw..2 * hw]);
    assert_eq!(&g[..hw], &g[2 * hw..]);
}

fn check_tiny_val(ds: &snl_data::Dataset) {
    assert_eq!(ds.len(), 4);
    for j in 0..4 {
        let k = (j + 1) % 3;
        assert_eq!(ds.label(j), k as u32);
        check_quadrants(ds.image(j), ds.height(), ds.width(), tiny_colors(k), 12);
    }
}

#[test]
fn tiny_imagenet_from_tree_and_zip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_tiny(tmp.path());
    check_tiny_train(&snl_data::tiny::load(Split::Train, &dir).unwrap());
    check_tiny_train(&load(DatasetName::TinyImageNet, Split::Train, &opts(tmp.path())).unwrap());
    check_tiny_val(&load(DatasetName::TinyImageNet, Split::Test, &opts(tmp.path())).unwrap());

    let zdir = tempfile::tempdir().unwrap();
    let zip = zdir.path().join("tiny-imagenet-200.zip");
    zip_dir(&dir, &zip);
    check_tiny_train(&load(DatasetName::TinyImageNet, Split::Train, &opts(zdir.path())).unwrap());
    check_tiny_val(&load(DatasetName::TinyImageNet, Split::Test, &opts(zdir.path())).unwrap());
    check_tiny_val(&snl_data::tiny::load(Split::Test, &zip).unwrap());
}

#[test]
fn image_folder_jpeg_and_png() {
    let tmp = tempfile::tempdir().unwrap();
    let (h, w) = (16usize, 24usize);
    // classes deliberately created out of order; "b_png" is PNG (exact), the others JPEG
    for class in ["c_jpg", "a_jpg", "b_png"] {
        std::fs::create_dir_all(tmp.path().join("train").join(class)).unwrap();
        std::fs::create_dir_all(tmp.path().join("test").join(class)).unwrap();
    }
    for i in 0..3 {
        let png = png_bytes(&pattern_rgb(i, h, w));
        std::fs::write(tmp.path().join("train/b_png").join(format!("img{i}.png")), &png).unwrap();
        let jpg = jpeg_bytes(&quadrants(h as u32, w as u32, QUAD));
        std::fs::write(tmp.path().join("train/a_jpg").join(format!("{i}.jpg")), &jpg).unwrap();
        std::fs::write(tmp.path().join("train/c_jpg").join(format!("{i}.JPEG")), &jpg).unwrap();
    }
    std::fs::write(tmp.path().join("train/c_jpg/notes.txt"), "not an image").unwrap();
    std::fs::write(tmp.path().join("test/a_jpg/x.jpeg"), jpeg_bytes(&quadrants(h as u32, w as u32, QUAD)))
        .unwrap();
    std::fs::write(tmp.path().join("test/b_png/y.png"), png_bytes(&pattern_rgb(9, h, w))).unwrap();
    std::fs::write(tmp.path().join("test/c_jpg/z.jpg"), jpeg_bytes(&quadrants(h as u32, w as u32, QUAD)))
        .unwrap();

    let ds = load(DatasetName::Folder, Split::Train, &opts(tmp.path())).unwrap();
    assert_eq!(ds.classes(), &["a_jpg", "b_png", "c_jpg"]);
    assert_eq!(ds.labels(), &[0, 0, 0, 1, 1, 1, 2, 2, 2]);
    assert_eq!((ds.height(), ds.width()), (h, w));
    assert_eq!(ds.normalization(), Normalization::imagenet());
    for i in 0..3 {
        assert_eq!(ds.image(3 + i), pattern_chw(i, h, w).as_slice(), "png {i}");
        check_quadrants(ds.image(i), h, w, QUAD, 12);
        check_quadrants(ds.image(6 + i), h, w, QUAD, 12);
    }
    let test = load(DatasetName::Folder, Split::Test, &opts(tmp.path())).unwrap();
    assert_eq!(test.labels(), &[0, 1, 2]);
    assert_eq!(test.image(1), pattern_chw(9, h, w).as_slice());

    let o = LoadOptions { normalization: Some(Normalization::cifar10()), ..opts(tmp.path()) };
    assert_eq!(load(DatasetName::Folder, Split::Test, &o).unwrap().normalization(), Normalization::cifar10());
}

/// Symbolic links keep working where each folder is read once: a subset made of links to image
/// files, a class folder that is a link, a link to a folder outside the tree, a linked split.
#[cfg(unix)]
#[test]
fn image_folder_through_symlinks() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let (root, (h, w)) = (tmp.path(), (8usize, 8usize));
    let put = |rel: &str, seed: usize| {
        std::fs::create_dir_all(root.join(rel).parent().unwrap()).unwrap();
        std::fs::write(root.join(rel), png_bytes(&pattern_rgb(seed, h, w))).unwrap();
    };
    for i in 0..3 {
        put(&format!("full/train/cat/{i}.png"), i);
    }
    put("full/train/dog/0.png", 10);
    put("full/train/dog/1.png", 11);
    put("more-cats/x.png", 20);

    // the subset: two of the three cats (one absolute link, one relative), more cats from a
    // folder outside the tree, and the dog class folder itself a link
    std::fs::create_dir_all(root.join("subset/train/cat")).unwrap();
    symlink(root.join("full/train/cat/0.png"), root.join("subset/train/cat/0.png")).unwrap();
    symlink("../../../full/train/cat/2.png", root.join("subset/train/cat/2.png")).unwrap();
    symlink("../../../more-cats", root.join("subset/train/cat/more")).unwrap();
    symlink(root.join("full/train/dog"), root.join("subset/train/dog")).unwrap();
    // and a split folder that is a link to the subset's
    std::fs::create_dir_all(root.join("linked")).unwrap();
    symlink("../subset/train", root.join("linked/train")).unwrap();

    for dir in ["subset", "linked"] {
        let ds = load(DatasetName::Folder, Split::Train, &opts(&root.join(dir))).unwrap();
        assert_eq!(ds.classes(), &["cat", "dog"], "{dir}");
        assert_eq!(ds.labels(), &[0, 0, 0, 1, 1], "{dir}");
        for (i, seed) in [0, 2, 20, 10, 11].into_iter().enumerate() {
            assert_eq!(ds.image(i), pattern_chw(seed, h, w).as_slice(), "{dir} image {i}");
        }
    }
}

#[test]
fn hub_cache_offline_cifar10_cifar100_tiny() {
    let cache = tempfile::tempdir().unwrap();
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let (h, w) = (32usize, 32usize);
    let hub =
        HubOptions { offline: true, cache_dir: Some(cache.path().to_path_buf()), ..HubOptions::default() };
    let lo = LoadOptions { data_dir: None, local_only: false, hub: hub.clone(), normalization: None };

    // CIFAR-10: PNG bytes, names from the `huggingface` metadata.
    let imgs: Vec<Vec<u8>> = (0..4).map(|i| png_bytes(&pattern_rgb(i, h, w))).collect();
    let p =
        put_in_cache(cache.path(), "uoft-cs/cifar10", "main", sha, "plain_text/test-00000-of-00001.parquet");
    let names = snl_data::cifar::CIFAR10_CLASSES;
    write_hub_parquet(&p, "img", "label", &imgs, &[3, 1, 4, 9], Some(&names));
    let ds = load(DatasetName::Cifar10, Split::Test, &lo).unwrap();
    assert_eq!(ds.labels(), &[3, 1, 4, 9]);
    assert_eq!(ds.classes()[0], "airplane");
    for i in 0..4 {
        assert_eq!(ds.image(i), pattern_chw(i, h, w).as_slice(), "hub image {i}: HWC -> CHW");
    }
    // the train split is not cached: a clear offline error
    let err = load(DatasetName::Cifar10, Split::Train, &lo).unwrap_err();
    assert!(matches!(err, snl_data::Error::HubOffline { .. }), "{err}");

    // CIFAR-100: fine and coarse columns in the same file, two shards.
    for shard in 0..2 {
        let rel = format!("cifar100/train-0000{shard}-of-00002.parquet");
        let p = put_in_cache(cache.path(), "uoft-cs/cifar100", "main", sha, &rel);
        let path = p.clone();
        let imgs: Vec<Vec<u8>> = (0..2).map(|i| png_bytes(&pattern_rgb(10 * shard + i, h, w))).collect();
        // write both label columns: build with fine, then rewrite with an extra column
        write_two_label_parquet(&path, &imgs, &[(shard * 50) as i64, 99], &[(shard * 5) as i64, 19]);
    }
    let fine = load(DatasetName::Cifar100, Split::Train, &lo).unwrap();
    assert_eq!(fine.labels(), &[0, 99, 50, 99]);
    assert_eq!(fine.classes()[99], "worm");
    assert_eq!(fine.image(2), pattern_chw(10, h, w).as_slice());
    let coarse = load(DatasetName::Cifar100Coarse, Split::Train, &lo).unwrap();
    assert_eq!(coarse.labels(), &[0, 19, 5, 19]);
    // a missing shard makes the cached split incomplete
    let repo = cache.path().join("datasets--uoft-cs--cifar100/snapshots").join(sha).join("cifar100");
    std::fs::remove_file(repo.join("train-00001-of-00002.parquet")).unwrap();
    let err = load(DatasetName::Cifar100, Split::Train, &lo).unwrap_err();
    assert!(err.to_string().contains("shards"), "{err}");

    // Tiny-ImageNet: JPEG, non-square here, label names are wnids in a non-sorted order.
    let wn = ["n3", "n1", "n2"];
    let p = put_in_cache(
        cache.path(),
        "zh-plus/tiny-imagenet",
        "main",
        sha,
        "data/valid-00000-of-00001-abc.parquet",
    );
    let imgs: Vec<Vec<u8>> = (0..3).map(|k| jpeg_bytes(&quadrants(16, 24, tiny_colors(k)))).collect();
    let mut names200: Vec<String> = wn.iter().map(|s| s.to_string()).collect();
    names200.extend((3..200).map(|i| format!("n{i:03}x")));
    let refs: Vec<&str> = names200.iter().map(String::as_str).collect();
    write_hub_parquet(&p, "image", "label", &imgs, &[0, 1, 2], Some(&refs));
    let ds = load(DatasetName::TinyImageNet, Split::Test, &lo).unwrap();
    assert_eq!(ds.num_classes(), 200);
    // sorted: n003x.. < n1 < n2 < n3 ? ("n0.." < "n1" < "n2" < "n3") -> ids by rank
    let rank = |w: &str| ds.classes().iter().position(|c| c == w).unwrap() as u32;
    assert_eq!(ds.labels(), &[rank("n3"), rank("n1"), rank("n2")]);
    assert_eq!((ds.height(), ds.width()), (16, 24));
    check_quadrants(ds.image(1), 16, 24, tiny_colors(1), 12);
    let _ = HubDataset::TINY_IMAGENET;
}

/// `uoft-cs/cifar100`'s layout: `img`, `fine_label`, `coarse_label`.
fn write_two_label_parquet(path: &Path, imgs: &[Vec<u8>], fine: &[i64], coarse: &[i64]) {
    use arrow_array::{ArrayRef, BinaryArray, Int64Array, RecordBatch, StringArray, StructArray};
    use arrow_schema::{DataType, Field, Fields, Schema};
    use std::sync::Arc;
    let fields = Fields::from(vec![
        Field::new("bytes", DataType::Binary, true),
        Field::new("path", DataType::Utf8, true),
    ]);
    let img = StructArray::new(
        fields.clone(),
        vec![
            Arc::new(BinaryArray::from_iter_values(imgs.iter())) as ArrayRef,
            Arc::new(StringArray::from_iter_values(imgs.iter().map(|_| "x.png"))) as ArrayRef,
        ],
        None,
    );
    let schema = Arc::new(Schema::new(vec![
        Field::new("img", DataType::Struct(fields), true),
        Field::new("fine_label", DataType::Int64, true),
        Field::new("coarse_label", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(img) as ArrayRef,
            Arc::new(Int64Array::from(fine.to_vec())) as ArrayRef,
            Arc::new(Int64Array::from(coarse.to_vec())) as ArrayRef,
        ],
    )
    .unwrap();
    let mut wr =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    wr.write(&batch).unwrap();
    wr.close().unwrap();
}
