//! `HF_ENDPOINT`, `HF_HOME` and `HF_HUB_OFFLINE` from the environment (a test binary of its own,
//! with a single test, so setting process environment variables races with nothing).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::mock_hub::{SHA, serve};
use common::*;
use snl_data::{DatasetName, Error, LoadOptions, Split, load};

#[test]
fn environment_variables_are_honoured() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("x.parquet");
    let imgs: Vec<Vec<u8>> = (0..2).map(|i| png_bytes(&pattern_rgb(i, 32, 32))).collect();
    write_hub_parquet(&p, "img", "label", &imgs, &[2, 7], None);
    let mut files = HashMap::new();
    files.insert("plain_text/test-00000-of-00001.parquet".to_owned(), std::fs::read(&p).unwrap());
    let hub = serve("uoft-cs/cifar10", files);
    let home = tempfile::tempdir().unwrap();
    // SAFETY: this binary has a single test and no other thread reads the environment yet.
    unsafe {
        std::env::set_var("HF_ENDPOINT", &hub.url);
        std::env::set_var("HF_HOME", home.path());
        std::env::remove_var("HF_HUB_CACHE");
        std::env::remove_var("HUGGINGFACE_HUB_CACHE");
        std::env::set_var("HF_HUB_OFFLINE", "1");
    }
    let opts = LoadOptions::from_env();
    assert!(opts.hub.offline);
    assert_eq!(opts.hub.resolved_cache_dir(), home.path().join("hub"));
    let err = load(DatasetName::Cifar10, Split::Test, &opts).unwrap_err();
    assert!(matches!(err, Error::HubOffline { .. }), "{err}");
    assert!(hub.log.lock().unwrap().is_empty());

    unsafe { std::env::set_var("HF_HUB_OFFLINE", "0") };
    let opts = LoadOptions::from_env();
    assert!(!opts.hub.offline);
    let ds = load(DatasetName::Cifar10, Split::Test, &opts).unwrap();
    assert_eq!(ds.labels(), &[2, 7]);
    assert!(!hub.log.lock().unwrap().is_empty(), "HF_ENDPOINT was not used");
    let cached = home.path().join("hub/datasets--uoft-cs--cifar10/snapshots").join(SHA);
    assert!(cached.join("plain_text/test-00000-of-00001.parquet").is_file(), "HF_HOME was not used");

    unsafe { std::env::set_var("HF_HUB_OFFLINE", "1") };
    let ds = load(DatasetName::Cifar10, Split::Test, &LoadOptions::from_env()).unwrap();
    assert_eq!(ds.image(1), pattern_chw(1, 32, 32).as_slice());
}
