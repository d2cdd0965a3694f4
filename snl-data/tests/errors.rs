//! Every failure is a typed error naming the file and the problem; none panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use snl_data::{BatchConfig, Cifar, DatasetName, Error, HubOptions, LoadOptions, Loader, Split, load};

fn opts(dir: &Path) -> LoadOptions {
    let hub =
        HubOptions { offline: true, cache_dir: Some(dir.join("no-hub-cache")), ..HubOptions::default() };
    LoadOptions { data_dir: Some(dir.to_path_buf()), local_only: false, hub, normalization: None }
}

fn msg(e: &Error) -> String {
    e.to_string()
}

#[test]
fn missing_release_says_where_it_looked_and_how_to_get_it() {
    let tmp = tempfile::tempdir().unwrap();
    let err = load(DatasetName::Cifar10, Split::Train, &opts(tmp.path())).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let m = msg(&err);
    assert!(m.contains("cifar-10-batches-bin") && m.contains("cifar-10-binary.tar.gz"), "{m}");
    assert!(m.contains("uoft-cs/cifar10") && m.contains("offline"), "{m}");
    let err = load(DatasetName::TinyImageNet, Split::Train, &opts(tmp.path())).unwrap_err();
    assert!(msg(&err).contains("tiny-imagenet-200.zip"), "{err}");
    let err = load(DatasetName::Folder, Split::Train, &opts(tmp.path())).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }) && msg(&err).contains("train"), "{err}");
}

/// `local_only` (the binary's `--data-dir`): a folder without the data is an error naming
/// it, never a Hub read.
#[test]
fn local_only_never_goes_to_the_hub() {
    let tmp = tempfile::tempdir().unwrap();
    let local = LoadOptions { local_only: true, ..opts(tmp.path()) };
    let err = load(DatasetName::Cifar10, Split::Train, &local).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let m = msg(&err);
    assert!(
        m.contains("cifar-10-batches-bin") && !m.contains("failed too") && !m.contains("no-hub-cache"),
        "{m}"
    );
    // Without it, the Hub is tried (and fails here: offline, empty cache).
    let m = msg(&load(DatasetName::Cifar10, Split::Train, &opts(tmp.path())).unwrap_err());
    assert!(m.contains("failed too") && m.contains("no-hub-cache"), "{m}");
}

/// A mistyped `data_dir` is reported as such, not answered with a Hub download.
#[test]
fn a_data_dir_that_does_not_exist_is_named_and_the_hub_not_tried() {
    let tmp = tempfile::tempdir().unwrap();
    let typo = tmp.path().join("cifar-typo");
    let err = load(DatasetName::Cifar10, Split::Train, &opts(&typo)).unwrap_err();
    match &err {
        Error::NotFound { looked, .. } => assert_eq!(looked, &vec![typo.clone()]),
        other => panic!("expected NotFound, got {other}"),
    }
    assert!(msg(&err).contains("cifar-typo") && !msg(&err).contains("uoft-cs/cifar10"), "{err}");
}

#[test]
fn missing_batch_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_cifar10_dir(tmp.path(), 2);
    std::fs::remove_file(dir.join("data_batch_3.bin")).unwrap();
    let err = snl_data::cifar::load(Cifar::Ten, Split::Train, &dir).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert!(msg(&err).contains("data_batch_3.bin"), "{err}");
    // the test split is still readable
    assert_eq!(snl_data::cifar::load(Cifar::Ten, Split::Test, &dir).unwrap().len(), 2);
}

#[test]
fn size_not_whole_number_of_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_cifar10_dir(tmp.path(), 3);
    let p = dir.join("test_batch.bin");
    let mut b = std::fs::read(&p).unwrap();
    b.truncate(2 * 3073 + 5);
    std::fs::write(&p, b).unwrap();
    let err = snl_data::cifar::load(Cifar::Ten, Split::Test, &dir).unwrap_err();
    match &err {
        Error::RecordSize { path, size, record } => {
            assert!(path.ends_with("test_batch.bin"));
            assert_eq!((*size, *record), (2 * 3073 + 5, 3073));
        }
        _ => panic!("{err}"),
    }
    // an empty file too
    std::fs::write(&p, b"").unwrap();
    assert!(matches!(snl_data::cifar::load(Cifar::Ten, Split::Test, &dir), Err(Error::RecordSize { .. })));
    // and CIFAR-100's 3074-byte records
    let dir = write_cifar100_dir(tmp.path(), 2, 2);
    std::fs::write(dir.join("test.bin"), vec![0u8; 3073 * 2]).unwrap();
    let err = snl_data::cifar::load(Cifar::HundredFine, Split::Test, &dir).unwrap_err();
    assert!(matches!(err, Error::RecordSize { record: 3074, .. }), "{err}");
}

#[test]
fn label_out_of_range() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_cifar10_dir(tmp.path(), 3);
    let bytes = cifar_records(3, 0, |i| vec![if i == 2 { 10 } else { 1 }]);
    std::fs::write(dir.join("data_batch_4.bin"), bytes).unwrap();
    let err = snl_data::cifar::load(Cifar::Ten, Split::Train, &dir).unwrap_err();
    match &err {
        Error::LabelOutOfRange { path, index, label, classes } => {
            assert!(path.ends_with("data_batch_4.bin"));
            assert_eq!((*index, *label, *classes), (2, 10, 10));
        }
        _ => panic!("{err}"),
    }
    let dir = write_cifar100_dir(tmp.path(), 2, 2);
    std::fs::write(dir.join("test.bin"), cifar_records(2, 0, |_| vec![0, 100])).unwrap();
    let err = snl_data::cifar::load(Cifar::HundredFine, Split::Test, &dir).unwrap_err();
    assert!(matches!(err, Error::LabelOutOfRange { label: 100, classes: 100, .. }), "{err}");
    // coarse label 20
    std::fs::write(dir.join("test.bin"), cifar_records(2, 0, |_| vec![20, 0])).unwrap();
    let err = snl_data::cifar::load(Cifar::HundredCoarse, Split::Test, &dir).unwrap_err();
    assert!(matches!(err, Error::LabelOutOfRange { label: 20, classes: 20, .. }), "{err}");

    // in a Hub parquet file
    let cache = tempfile::tempdir().unwrap();
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let p =
        put_in_cache(cache.path(), "uoft-cs/cifar10", "main", sha, "plain_text/test-00000-of-00001.parquet");
    let img = png_bytes(&pattern_rgb(0, 32, 32));
    write_hub_parquet(&p, "img", "label", &[img.clone(), img], &[1, 12], None);
    let hub =
        HubOptions { offline: true, cache_dir: Some(cache.path().to_path_buf()), ..HubOptions::default() };
    let lo = LoadOptions { data_dir: None, local_only: false, hub, normalization: None };
    let err = load(DatasetName::Cifar10, Split::Test, &lo).unwrap_err();
    assert!(matches!(err, Error::LabelOutOfRange { index: 1, label: 12, .. }), "{err}");
}

#[test]
fn undecodable_or_wrong_size_image() {
    let tmp = tempfile::tempdir().unwrap();
    let cls = tmp.path().join("train/cat");
    std::fs::create_dir_all(&cls).unwrap();
    std::fs::write(cls.join("a.png"), png_bytes(&pattern_rgb(0, 8, 8))).unwrap();
    std::fs::write(cls.join("b.jpg"), b"this is not a jpeg").unwrap();
    let err = load(DatasetName::Folder, Split::Train, &opts(tmp.path())).unwrap_err();
    match &err {
        Error::Decode { path, .. } => assert!(path.ends_with("b.jpg"), "{err}"),
        _ => panic!("{err}"),
    }
    std::fs::write(cls.join("b.jpg"), jpeg_bytes(&pattern_rgb(0, 8, 9))).unwrap();
    let err = load(DatasetName::Folder, Split::Train, &opts(tmp.path())).unwrap_err();
    assert!(matches!(&err, Error::Decode { path, .. } if path.ends_with("b.jpg")), "{err}");
    assert!(msg(&err).contains("8x9"), "{err}");

    // a corrupt image inside a Hub parquet file names the file and row
    let cache = tempfile::tempdir().unwrap();
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let p =
        put_in_cache(cache.path(), "uoft-cs/cifar10", "main", sha, "plain_text/test-00000-of-00001.parquet");
    write_hub_parquet(
        &p,
        "img",
        "label",
        &[png_bytes(&pattern_rgb(0, 32, 32)), vec![1, 2, 3]],
        &[1, 2],
        None,
    );
    let hub =
        HubOptions { offline: true, cache_dir: Some(cache.path().to_path_buf()), ..HubOptions::default() };
    let lo = LoadOptions { data_dir: None, local_only: false, hub, normalization: None };
    let err = load(DatasetName::Cifar10, Split::Test, &lo).unwrap_err();
    assert!(matches!(&err, Error::Decode { .. }) && msg(&err).contains("#row1"), "{err}");
}

#[test]
fn empty_class_folder() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("train/cat")).unwrap();
    std::fs::create_dir_all(tmp.path().join("train/dog")).unwrap();
    std::fs::write(tmp.path().join("train/cat/a.png"), png_bytes(&pattern_rgb(0, 8, 8))).unwrap();
    std::fs::write(tmp.path().join("train/dog/readme.txt"), "no images here").unwrap();
    let err = load(DatasetName::Folder, Split::Train, &opts(tmp.path())).unwrap_err();
    assert!(matches!(&err, Error::EmptyClass { path } if path.ends_with("train/dog")), "{err}");

    // Tiny-ImageNet class with an empty images/ folder
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_tiny(tmp.path());
    let imgs = dir.join("train/n05555555/images");
    for e in std::fs::read_dir(&imgs).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let err = snl_data::tiny::load(Split::Train, &dir).unwrap_err();
    assert!(matches!(&err, Error::EmptyClass { path } if path.ends_with("n05555555/images")), "{err}");
}

/// `train/{cat,dog}` with one image each, and `extra` beside `train` with one more.
#[cfg(unix)]
fn image_folder_tree() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for (i, folder) in ["train/cat", "train/dog", "extra"].into_iter().enumerate() {
        std::fs::create_dir_all(tmp.path().join(folder)).unwrap();
        std::fs::write(tmp.path().join(folder).join("a.png"), png_bytes(&pattern_rgb(i, 8, 8))).unwrap();
    }
    tmp
}

/// Checks that loading `train` is refused because `path` reached `folder` again, first read as
/// `first`, in a one-line message naming all three. A loop used to be read until the kernel's
/// link depth limit (about 40 times over), and a link's folder under the link's class.
#[cfg(unix)]
fn refused_as_read_twice(tmp: &tempfile::TempDir, path: &str, folder: &str, first: &str) {
    let err = match load(DatasetName::Folder, Split::Train, &opts(tmp.path())) {
        Ok(ds) => panic!("loaded {} images (the tree holds 3), labels {:?}", ds.len(), ds.labels()),
        Err(err) => err,
    };
    let (m, root) = (msg(&err), tmp.path());
    let canonical = std::fs::canonicalize(root.join(folder)).unwrap();
    match &err {
        Error::RepeatedFolder { path: p, folder: f, first: f1 } => {
            assert_eq!((p, f, f1), (&root.join(path), &canonical, &root.join(first)), "{m}");
        }
        _ => panic!("{m}"),
    }
    assert!(m.contains(path) && m.contains(&canonical.display().to_string()) && m.contains(first), "{m}");
    assert!(!m.contains('\n'), "{m}");
}

#[cfg(unix)]
#[test]
fn image_folder_link_back_to_an_ancestor() {
    // `train/cat/loop -> ..` is the split folder again
    let tmp = image_folder_tree();
    std::os::unix::fs::symlink("..", tmp.path().join("train/cat/loop")).unwrap();
    refused_as_read_twice(&tmp, "train/cat/loop", "train", "train");
}

#[cfg(unix)]
#[test]
fn image_folder_link_to_itself() {
    let tmp = image_folder_tree();
    std::os::unix::fs::symlink(".", tmp.path().join("train/dog/loop")).unwrap();
    refused_as_read_twice(&tmp, "train/dog/loop", "train/dog", "train/dog");
}

#[cfg(unix)]
#[test]
fn image_folder_two_links_to_one_folder() {
    // outside the tree, one link relative and one absolute
    let tmp = image_folder_tree();
    std::os::unix::fs::symlink("../../extra", tmp.path().join("train/cat/more")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("extra"), tmp.path().join("train/dog/more")).unwrap();
    refused_as_read_twice(&tmp, "train/dog/more", "extra", "train/cat/more");
}

#[cfg(unix)]
#[test]
fn image_folder_link_to_another_class() {
    // that class would be read twice, once under the wrong label
    let tmp = image_folder_tree();
    std::os::unix::fs::symlink("../dog", tmp.path().join("train/cat/dogs")).unwrap();
    refused_as_read_twice(&tmp, "train/dog", "train/dog", "train/cat/dogs");
}

#[test]
fn truncated_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_cifar10_dir(tmp.path(), 20);
    let arch = tempfile::tempdir().unwrap();
    let tgz = arch.path().join("cifar-10-binary.tar.gz");
    tar_gz(&dir, &tgz);
    let b = std::fs::read(&tgz).unwrap();
    std::fs::write(&tgz, &b[..b.len() / 2]).unwrap();
    let err = snl_data::cifar::load(Cifar::Ten, Split::Train, &tgz).unwrap_err();
    assert!(matches!(&err, Error::Archive { path, .. } if path == &tgz), "{err}");
    assert!(msg(&err).contains("truncated"), "{err}");

    let tiny = write_tiny(tmp.path());
    let zip = arch.path().join("tiny-imagenet-200.zip");
    zip_dir(&tiny, &zip);
    let b = std::fs::read(&zip).unwrap();
    std::fs::write(&zip, &b[..b.len() - 40]).unwrap();
    let err = snl_data::tiny::load(Split::Train, &zip).unwrap_err();
    assert!(matches!(&err, Error::Archive { path, .. } if path == &zip), "{err}");
}

#[test]
fn unknown_dataset_and_split_names() {
    let err = "imagenet-1k".parse::<DatasetName>().unwrap_err();
    let m = msg(&err);
    assert!(matches!(err, Error::UnknownDataset { .. }));
    for k in DatasetName::KNOWN {
        assert!(m.contains(k), "{m}");
        assert_eq!(k.parse::<DatasetName>().unwrap().as_str(), k);
    }
    assert_eq!("CIFAR-10".parse::<DatasetName>().unwrap(), DatasetName::Cifar10);
    assert!(matches!("validation".parse::<Split>(), Err(Error::UnknownSplit { .. })));
    assert_eq!("Test".parse::<Split>().unwrap(), Split::Test);
}

#[test]
fn malformed_annotations_and_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_tiny(tmp.path());
    std::fs::write(dir.join("val/val_annotations.txt"), "val_0.JPEG\tn00000000\t0\t0\t1\t1\n").unwrap();
    let err = snl_data::tiny::load(Split::Test, &dir).unwrap_err();
    assert!(matches!(&err, Error::Format { path, .. } if path.ends_with("val_annotations.txt")), "{err}");
    assert!(msg(&err).contains("n00000000"), "{err}");
    std::fs::write(dir.join("val/val_annotations.txt"), "val_404.JPEG\tn01443537\t0\t0\t1\t1\n").unwrap();
    let err = snl_data::tiny::load(Split::Test, &dir).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }) && msg(&err).contains("val_404.JPEG"), "{err}");

    let cache = tempfile::tempdir().unwrap();
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let p =
        put_in_cache(cache.path(), "uoft-cs/cifar10", "main", sha, "plain_text/test-00000-of-00001.parquet");
    write_hub_parquet(&p, "picture", "label", &[png_bytes(&pattern_rgb(0, 32, 32))], &[1], None);
    let hub =
        HubOptions { offline: true, cache_dir: Some(cache.path().to_path_buf()), ..HubOptions::default() };
    let lo = LoadOptions { data_dir: None, local_only: false, hub, normalization: None };
    let err = load(DatasetName::Cifar10, Split::Test, &lo).unwrap_err();
    assert!(matches!(err, Error::Format { .. }) && msg(&err).contains("no column `img`"), "{err}");
    std::fs::write(&p, b"PAR1 garbage").unwrap();
    let err = load(DatasetName::Cifar10, Split::Test, &lo).unwrap_err();
    assert!(matches!(err, Error::Format { .. }), "{err}");
}

#[test]
fn invalid_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_cifar10_dir(tmp.path(), 4);
    let ds = snl_data::cifar::load(Cifar::Ten, Split::Test, &dir).unwrap();
    assert!(matches!(ds.split_validation(5, 0), Err(Error::Invalid(_))));
    assert!(matches!(
        Loader::new(ds, BatchConfig::train(0, 1), &candle::Device::Cpu),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(snl_data::Normalization::by_name("imagenet-21k"), Err(Error::Invalid(_))));
    let err = load(DatasetName::Folder, Split::Train, &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
}
