//! Batches: seeded order and augmentation, normalisation, background production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use candle::Device;
use common::*;
use snl_data::{BatchConfig, Dataset, Loader, Normalization};

/// `n` pattern images of 3x6x10 (non-square), label i % 4.
fn dataset(n: usize) -> Dataset {
    let (h, w) = (6, 10);
    let mut images = Vec::new();
    for i in 0..n {
        images.extend(pattern_chw(i, h, w));
    }
    let labels = (0..n as u32).map(|i| i % 4).collect();
    let classes = ["a", "b", "c", "d"].map(String::from).to_vec();
    Dataset::from_raw(images, labels, h, w, classes, Normalization::cifar10()).unwrap()
}

fn collect(loader: &Loader, epoch: usize) -> Vec<(Vec<f32>, Vec<u32>, Vec<usize>)> {
    loader
        .epoch(epoch)
        .map(|b| {
            let (x, y) = b.unwrap();
            let dims = x.dims().to_vec();
            (x.flatten_all().unwrap().to_vec1::<f32>().unwrap(), y.to_vec1::<u32>().unwrap(), dims)
        })
        .collect()
}

#[test]
fn eval_batches_are_normalised_in_order() {
    let ds = dataset(10);
    let norm = ds.normalization();
    let loader = Loader::new(ds.clone(), BatchConfig::eval(4), &Device::Cpu).unwrap();
    assert_eq!(loader.num_batches(), 3);
    let batches = collect(&loader, 0);
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[0].2, vec![4, 3, 6, 10]);
    assert_eq!(batches[2].2, vec![2, 3, 6, 10]);
    let xs: Vec<f32> = batches.iter().flat_map(|b| b.0.clone()).collect();
    let ys: Vec<u32> = batches.iter().flat_map(|b| b.1.clone()).collect();
    assert_eq!(ys, ds.labels());
    let hw = 60;
    for (k, (&v, &x)) in ds.images().iter().zip(&xs).enumerate() {
        let c = (k / hw) % 3;
        let want = (f32::from(v) / 255.0 - norm.mean[c]) / norm.std[c];
        assert!((x - want).abs() < 1e-6, "element {k}: {x} vs {want}");
    }
}

#[test]
fn same_seed_and_epoch_same_batches() {
    let ds = dataset(37);
    let a = Loader::new(ds.clone(), BatchConfig::train(8, 11), &Device::Cpu).unwrap();
    let b = Loader::new(ds.clone(), BatchConfig { prefetch: 1, ..BatchConfig::train(8, 11) }, &Device::Cpu)
        .unwrap();
    assert_eq!(collect(&a, 3), collect(&b, 3));
    // background thread and inline production agree
    let inline: Vec<_> = a.epoch_inline(3).map(|r| r.unwrap().1.to_vec1::<u32>().unwrap()).collect();
    assert_eq!(inline, collect(&a, 3).into_iter().map(|b| b.1).collect::<Vec<_>>());
    // different epoch or seed: different order
    assert_ne!(a.plan(3).order, a.plan(4).order);
    let c = Loader::new(ds.clone(), BatchConfig::train(8, 12), &Device::Cpu).unwrap();
    assert_ne!(a.plan(3).order, c.plan(3).order);
    // every image once per epoch
    let mut order = a.plan(5).order;
    order.sort_unstable();
    assert_eq!(order, (0..37).collect::<Vec<u32>>());
    // the plan does not depend on the batch size
    let d = Loader::new(ds, BatchConfig::train(5, 11), &Device::Cpu).unwrap();
    assert_eq!(a.plan(3), d.plan(3));
}

/// Pins the generator across machines and releases: these values must never change.
#[test]
fn plan_is_pinned() {
    let loader = Loader::new(dataset(10), BatchConfig::train(4, 2024), &Device::Cpu).unwrap();
    let plan = loader.plan(1);
    let got: Vec<(u32, u16, u16, bool)> =
        plan.order.iter().zip(&plan.aug).map(|(&i, a)| (i, a.dy, a.dx, a.flip)).collect();
    let expected = [
        (3, 3, 1, false),
        (8, 3, 2, false),
        (7, 3, 4, false),
        (1, 6, 4, true),
        (4, 2, 5, true),
        (2, 7, 4, false),
        (6, 2, 1, true),
        (5, 5, 4, true),
        (0, 1, 6, false),
        (9, 0, 8, false),
    ];
    assert_eq!(got, expected);
}

#[test]
fn augmentation_is_a_padded_crop_with_flip() {
    let ds = dataset(6).with_normalization(Normalization::identity());
    let loader = Loader::new(ds.clone(), BatchConfig::train(6, 5), &Device::Cpu).unwrap();
    let plan = loader.plan(0);
    let (x, y) = loader.batch(&plan, 0).unwrap();
    let x: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    let y: Vec<u32> = y.to_vec1().unwrap();
    let (h, w, pad) = (6usize, 10usize, 4isize);
    let mut flips = 0;
    for (slot, (&idx, a)) in plan.order.iter().zip(&plan.aug).enumerate() {
        assert_eq!(y[slot], ds.label(idx as usize));
        flips += usize::from(a.flip);
        assert!(a.dy <= 8 && a.dx <= 8);
        let src = ds.image(idx as usize);
        for c in 0..3 {
            for oy in 0..h {
                for ox in 0..w {
                    let cx = if a.flip { w - 1 - ox } else { ox };
                    let (sy, sx) = (oy as isize + a.dy as isize - pad, cx as isize + a.dx as isize - pad);
                    let want = if sy < 0 || sx < 0 || sy >= h as isize || sx >= w as isize {
                        0.0
                    } else {
                        f32::from(src[c * h * w + sy as usize * w + sx as usize]) / 255.0
                    };
                    assert_eq!(x[slot * 3 * h * w + c * h * w + oy * w + ox], want);
                }
            }
        }
    }
    let _ = flips;
    // over many epochs the offsets cover 0..=8 and flips are about half
    let mut seen = [false; 9];
    let mut flips = 0usize;
    let mut total = 0usize;
    for e in 0..200 {
        for a in loader.plan(e).aug {
            seen[a.dx as usize] = true;
            flips += usize::from(a.flip);
            total += 1;
        }
    }
    assert!(seen.iter().all(|&s| s));
    assert!((flips as f64 / total as f64 - 0.5).abs() < 0.05);
}

#[test]
fn drop_last_and_partial_batches() {
    let ds = dataset(10);
    let cfg = BatchConfig { drop_last: true, ..BatchConfig::train(4, 0) };
    let loader = Loader::new(ds.clone(), cfg, &Device::Cpu).unwrap();
    assert_eq!(loader.num_batches(), 2);
    assert_eq!(loader.num_images(), 8);
    let b = collect(&loader, 0);
    assert_eq!(b.len(), 2);
    assert!(b.iter().all(|b| b.1.len() == 4));
    let loader = Loader::new(ds, BatchConfig::train(4, 0), &Device::Cpu).unwrap();
    let it = loader.epoch(0);
    assert_eq!(it.len(), 3);
    let sizes: Vec<usize> = it.map(|b| b.unwrap().1.dim(0).unwrap()).collect();
    assert_eq!(sizes, vec![4, 4, 2]);
}

#[test]
fn dropping_an_epoch_early_stops_the_producer() {
    let loader =
        Loader::new(dataset(200), BatchConfig { prefetch: 1, ..BatchConfig::train(2, 0) }, &Device::Cpu)
            .unwrap();
    for _ in 0..20 {
        let mut it = loader.epoch(0);
        let _ = it.next().unwrap().unwrap();
        // dropped here with the producer blocked on a full channel: must not hang
    }
}

#[test]
fn validation_split_is_seeded_and_disjoint() {
    let ds = dataset(50);
    let (train, val) = ds.split_validation(12, 3).unwrap();
    assert_eq!((train.len(), val.len()), (38, 12));
    let (train2, val2) = ds.split_validation(12, 3).unwrap();
    assert_eq!(val.images(), val2.images());
    assert_eq!(train.labels(), train2.labels());
    let (_, val3) = ds.split_validation(12, 4).unwrap();
    assert_ne!(val.images(), val3.images());
    // disjoint and complete: every original image appears exactly once
    let mut all: Vec<&[u8]> = (0..train.len()).map(|i| train.image(i)).collect();
    all.extend((0..val.len()).map(|i| val.image(i)));
    all.sort();
    let mut orig: Vec<&[u8]> = (0..ds.len()).map(|i| ds.image(i)).collect();
    orig.sort();
    assert_eq!(all, orig);
    assert_eq!(train.classes(), ds.classes());
    assert_eq!(val.normalization(), ds.normalization());
}

#[test]
fn computed_normalization() {
    let ds = Dataset::from_raw(
        vec![0, 255, 0, 255, 51, 51],
        vec![0],
        1,
        2,
        vec!["x".into()],
        Normalization::identity(),
    )
    .unwrap();
    let n = ds.compute_normalization();
    assert!((n.mean[0] - 0.5).abs() < 1e-6 && (n.std[0] - 0.5).abs() < 1e-6);
    assert!((n.mean[2] - 0.2).abs() < 1e-6 && n.std[2] == 1.0);
    assert!(
        Dataset::from_raw(vec![0; 5], vec![0], 1, 2, vec!["x".into()], Normalization::identity()).is_err()
    );
    assert!(
        Dataset::from_raw(vec![0; 6], vec![1], 1, 2, vec!["x".into()], Normalization::identity()).is_err()
    );
}
