//! Data-pipeline benches: batches of 128 augmented (pad-4 crop + flip) and normalised
//! images of the real CIFAR-10 image folder (`/work/shared/data/cifar10-jpeg`, decoded once
//! by `snl_data::load`), as `snl train --dataset folder` makes them. Throughput in images/s.
//!
//! * `epoch/prefetch`: `Loader::epoch` (batches made on its background thread), consumed
//!   as fast as possible: the steady-state rate the training loop can be fed at.
//! * `batch/inline`: `Loader::batch` on the calling thread: the CPU cost of one batch.
//!
//! Set `SNL_BENCH_DATA` to use another image folder. When the folder is missing the bench
//! says so and measures nothing.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use candle::Device;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use snl_data::{BatchConfig, DatasetName, LoadOptions, Loader, Split};

const BATCH: usize = 128;

fn data_dir() -> PathBuf {
    std::env::var_os("SNL_BENCH_DATA").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/cifar10-jpeg"))
    })
}

fn pipeline(c: &mut Criterion) {
    let dir = data_dir();
    if !dir.join("train").is_dir() {
        eprintln!("data bench skipped: no image folder at {} (set SNL_BENCH_DATA)", dir.display());
        return;
    }
    let opts = LoadOptions { data_dir: Some(dir.clone()), ..LoadOptions::from_env() };
    let t = Instant::now();
    let ds = snl_data::load(DatasetName::Folder, Split::Train, &opts).expect("loading the image folder");
    eprintln!(
        "decoded {} images of {} in {:.1} s (once, not measured)",
        ds.len(),
        dir.display(),
        t.elapsed().as_secs_f64()
    );
    let loader = Loader::new(ds, BatchConfig::train(BATCH, 0), &Device::Cpu).expect("loader");

    let mut g = c.benchmark_group("cifar10_folder_train_b128");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(20);

    // One long-lived epoch iterator, restarted (next epoch) when it runs out, so the
    // prefetch thread's start-up is not in every sample.
    let mut epoch = 0usize;
    let mut batches = loader.epoch(epoch);
    g.bench_function("epoch/prefetch", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let next = match batches.next() {
                    Some(batch) => batch,
                    None => {
                        epoch += 1;
                        batches = loader.epoch(epoch);
                        batches.next().expect("a fresh epoch has batches")
                    }
                };
                let (images, _labels) = next.expect("batch");
                spent += t.elapsed();
                std::hint::black_box(images);
            }
            spent
        })
    });
    drop(batches);

    let plan = loader.plan(0);
    let mut k = 0;
    g.bench_function("batch/inline", |b| {
        b.iter(|| {
            let out = loader.batch(&plan, k).expect("batch");
            k = (k + 1) % loader.num_batches();
            out
        })
    });
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
