//! Decode speed of the real cifar10-jpeg folder and augmented-batch throughput.
//!
//! `cargo run --release -p snl-data --example speed [-- <cifar10-jpeg folder>]`

use std::time::Instant;

use candle::Device;
use snl_data::{BatchConfig, DatasetName, LoadOptions, Loader, Split, load};

fn main() -> snl_data::Result<()> {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/cifar10-jpeg").to_owned());
    let opts = LoadOptions { data_dir: Some(root.into()), ..LoadOptions::default() };

    let t = Instant::now();
    let train = load(DatasetName::Folder, Split::Train, &opts)?;
    let t_train = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let test = load(DatasetName::Folder, Split::Test, &opts)?;
    let t_test = t.elapsed().as_secs_f64();
    let n = train.len() + test.len();
    println!(
        "decode: {} train in {t_train:.2} s + {} test in {t_test:.2} s = {:.2} s ({:.0} images/s, {} threads)",
        train.len(),
        test.len(),
        t_train + t_test,
        n as f64 / (t_train + t_test),
        rayon::current_num_threads()
    );

    let (train, _val) = train.split_validation(5_000, 0)?;
    let loader = Loader::new(train, BatchConfig::train(128, 42), &Device::Cpu)?;

    // The CPU work of a batch alone (crop + flip + normalise into f32), one thread.
    let plan = loader.plan(0);
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    let t = Instant::now();
    let mut images = 0;
    for k in 0..loader.num_batches() {
        images += loader.fill_batch(&plan, k, &mut xs, &mut ys);
    }
    let s = t.elapsed().as_secs_f64();
    println!("fill_batch (one thread, batch 128): {:.0} images/s", images as f64 / s);

    // Whole epochs through the public iterator: plan, fill, tensors, background thread.
    for epoch in 0..3 {
        let t = Instant::now();
        let mut images = 0;
        let mut batches = 0;
        for b in loader.epoch(epoch) {
            let (x, _y) = b?;
            images += x.dim(0)?;
            batches += 1;
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "epoch {epoch}: {batches} augmented batches of 128 in {s:.3} s = {:.0} batches/s, {:.0} images/s",
            batches as f64 / s,
            images as f64 / s
        );
    }
    Ok(())
}
