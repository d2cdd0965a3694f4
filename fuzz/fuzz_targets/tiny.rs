//! Tiny-ImageNet: `wnids.txt` + `val_annotations.txt` (split at the first NUL), or, when the
//! input is a zip, the whole archive as `tiny-imagenet-200.zip`.
#![no_main]

mod common;

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use snl_data::{Split, tiny};

fuzz_target!(|data: &[u8]| {
    if data.starts_with(b"PK") {
        let dir = tempfile::tempdir().expect("temp dir");
        let zip = dir.path().join("tiny-imagenet-200.zip");
        std::fs::write(&zip, data).expect("write");
        for split in [Split::Test, Split::Train] {
            let _ = tiny::load(split, &zip);
        }
        return;
    }
    let (wnids, annotations) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(wnids) = tiny::parse_wnids(wnids, Path::new("wnids.txt")) else { return };
    if let Ok((files, labels)) = tiny::parse_annotations(annotations, &wnids, Path::new("ann.txt")) {
        assert_eq!(files.len(), labels.len());
        assert!(labels.iter().all(|&l| (l as usize) < wnids.len()));
    }
});
