//! The download path without the internet: a server on 127.0.0.1 plays the Hub
//! (`HubOptions::endpoint`, what `HF_ENDPOINT` sets); the first load downloads into a temporary
//! cache, the second works offline, from the cache, with no request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::mock_hub::{SHA, serve};
use common::*;
use snl_data::{DatasetName, DownloadProgress, Error, HubOptions, LoadOptions, ProgressSink, Split, load};

/// Every progress call, in order.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl DownloadProgress for Recorder {
    fn start(&self, repo: &str, files: usize, bytes: u64) {
        self.0.lock().unwrap().push(format!("start {repo} {files} {bytes}"));
    }
    fn advance(&self, bytes: u64) {
        self.0.lock().unwrap().push(format!("advance {bytes}"));
    }
    fn finish(&self) {
        self.0.lock().unwrap().push("finish".into());
    }
}

#[test]
fn first_load_downloads_second_is_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let (h, w) = (32usize, 32usize);
    let names = snl_data::cifar::CIFAR10_CLASSES;
    let mut files = HashMap::new();
    for (split, n, seed0) in [("train", 5usize, 0usize), ("test", 3, 100)] {
        let p = tmp.path().join(format!("{split}.parquet"));
        let imgs: Vec<Vec<u8>> = (0..n).map(|i| png_bytes(&pattern_rgb(seed0 + i, h, w))).collect();
        let labels: Vec<i64> = (0..n as i64).map(|i| (i * 3 + 1) % 10).collect();
        write_hub_parquet(&p, "img", "label", &imgs, &labels, Some(&names));
        files.insert(format!("plain_text/{split}-00000-of-00001.parquet"), std::fs::read(&p).unwrap());
    }
    let train_bytes = files["plain_text/train-00000-of-00001.parquet"].len();
    let hub = serve("uoft-cs/cifar10", files);
    let cache = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let online = HubOptions {
        offline: false,
        endpoint: Some(hub.url.clone()),
        cache_dir: Some(cache.path().to_path_buf()),
        progress: Some(ProgressSink(recorder.clone())),
        ..HubOptions::default()
    };
    let lo = LoadOptions { data_dir: None, local_only: false, hub: online.clone(), normalization: None };

    // Offline before any download: a clear error naming the repo and the cache.
    let off = LoadOptions { hub: HubOptions { offline: true, ..online.clone() }, ..lo.clone() };
    let err = load(DatasetName::Cifar10, Split::Train, &off).unwrap_err();
    assert!(matches!(err, Error::HubOffline { .. }), "{err}");
    let m = err.to_string();
    assert!(
        m.contains("uoft-cs/cifar10") && m.contains("train") && m.contains("datasets--uoft-cs--cifar10"),
        "{m}"
    );
    assert!(hub.log.lock().unwrap().is_empty(), "offline mode made requests");

    // First load: downloads into the cache.
    let train = load(DatasetName::Cifar10, Split::Train, &lo).unwrap();
    assert_eq!(train.len(), 5);
    assert_eq!(train.labels(), &[1, 4, 7, 0, 3]);
    for i in 0..5 {
        assert_eq!(train.image(i), pattern_chw(i, h, w).as_slice());
    }
    let requests = hub.log.lock().unwrap().clone();
    assert!(requests.iter().any(|r| r.starts_with("GET /api/datasets/uoft-cs/cifar10")), "{requests:?}");
    assert!(requests.iter().any(|r| r.contains("train-00000-of-00001.parquet")), "{requests:?}");
    assert!(
        !requests.iter().any(|r| r.contains("test-00000")),
        "downloaded the test split too: {requests:?}"
    );
    // The caller heard of it: one file of its size started, every byte arrived, finished.
    let events = std::mem::take(&mut *recorder.0.lock().unwrap());
    assert_eq!(
        events.first().map(String::as_str),
        Some(format!("start uoft-cs/cifar10 1 {train_bytes}").as_str())
    );
    assert_eq!(events.last().map(String::as_str), Some("finish"), "{events:?}");
    assert!(events.contains(&format!("advance {train_bytes}")), "{events:?}");
    let snap = cache.path().join("datasets--uoft-cs--cifar10/snapshots").join(SHA);
    assert!(snap.join("plain_text/train-00000-of-00001.parquet").is_file());
    assert_eq!(
        std::fs::read_to_string(cache.path().join("datasets--uoft-cs--cifar10/refs/main")).unwrap().trim(),
        SHA
    );

    // Second load, offline: from the cache, no request at all.
    let n = hub.log.lock().unwrap().len();
    let again = load(DatasetName::Cifar10, Split::Train, &off).unwrap();
    assert_eq!(again.images(), train.images());
    assert_eq!(again.labels(), train.labels());
    // Online but cached: also no request.
    let again = load(DatasetName::Cifar10, Split::Train, &lo).unwrap();
    assert_eq!(again.labels(), train.labels());
    assert_eq!(hub.log.lock().unwrap().len(), n, "a cached split touched the network");

    // The other split is downloaded on demand.
    let test = load(DatasetName::Cifar10, Split::Test, &lo).unwrap();
    assert_eq!(test.len(), 3);
    assert_eq!(test.image(2), pattern_chw(102, h, w).as_slice());

    // A repo the Hub does not have: a Hub error naming it.
    let lo100 = LoadOptions { data_dir: None, ..lo.clone() };
    let err = load(DatasetName::Cifar100, Split::Train, &lo100).unwrap_err();
    assert!(matches!(err, Error::Hub { .. }) && err.to_string().contains("uoft-cs/cifar100"), "{err}");
}

#[test]
fn offline_flag_from_environment_values() {
    for (v, on) in
        [("1", true), ("true", true), ("ON", true), ("yes", true), ("0", false), ("", false), ("no", false)]
    {
        let o = HubOptions::from_env_with(|k| (k == "HF_HUB_OFFLINE").then(|| v.to_owned()));
        assert_eq!(o.offline, on, "HF_HUB_OFFLINE={v:?}");
    }
    assert!(!HubOptions::from_env_with(|_| None).offline);
    assert!(snl_data::hub::is_split_parquet("plain_text/train-00000-of-00001.parquet", "train"));
    assert!(snl_data::hub::is_split_parquet("default/valid/0000.parquet", "valid"));
    assert!(snl_data::hub::is_split_parquet("data/valid-00000-of-00001-70d52db3c749a935.parquet", "valid"));
    assert!(!snl_data::hub::is_split_parquet("plain_text/train-00000-of-00001.parquet", "test"));
    assert!(!snl_data::hub::is_split_parquet("plain_text/train_extra-0.parquet", "train"));
}
