//! The real `shared/data/cifar10-jpeg` image folder (CIFAR-10 as JPEG files).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use snl_data::{DatasetName, LoadOptions, Normalization, Split, load};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/cifar10-jpeg");

#[test]
fn real_cifar10_jpeg_folder() {
    let root = Path::new(ROOT);
    // The folder sits beside the checkout on the project's machines and in CI; a clone
    // elsewhere has no such folder, and its `cargo test` must still pass.
    if !root.is_dir() {
        eprintln!("skipped: no {ROOT} beside this checkout");
        return;
    }
    let opts = LoadOptions { data_dir: Some(root.to_path_buf()), ..LoadOptions::default() };
    let names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
    for (split, n) in [(Split::Train, 50_000), (Split::Test, 10_000)] {
        let ds = load(DatasetName::Folder, split, &opts).unwrap();
        assert_eq!(ds.len(), n);
        assert_eq!((ds.height(), ds.width()), (32, 32));
        assert_eq!(ds.classes(), names.map(String::from).as_slice());
        assert_eq!(ds.class_counts(), vec![n / 10; 10]);
        assert_eq!(ds.normalization(), Normalization::cifar10());
        // labels are grouped by class in folder order
        assert!(ds.labels().windows(2).all(|w| w[0] <= w[1]));
        // not all black: a real decode happened
        let mean = ds.images().iter().map(|&v| f64::from(v)).sum::<f64>() / ds.images().len() as f64;
        assert!((90.0..160.0).contains(&mean), "mean pixel {mean}");
    }
}
