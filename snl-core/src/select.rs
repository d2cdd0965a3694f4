//! The control selections of a study: masks drawn at random within a budget, over the whole
//! network ([`Selection::Random`]) or as the same fraction of every site
//! ([`Selection::Uniform`]). They are the yardstick SNL's learned masks are measured against.
//!
//! Sampling is our own: one ChaCha8 key per mask element, elements taken in key order (ties,
//! which have probability about 2^-64, by position). A draw depends only on the seed and the
//! network, not on `rand`'s shuffle algorithm.

use candle::Tensor;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::mask::{Masked, relu_total};
use crate::{ConfigError, Result};

/// A drawn (not learned) selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Mask elements in random order over the whole network, each kept while its ReLUs
    /// still fit the budget.
    Random,
    /// `floor(budget / total * elements)` random elements of every site.
    Uniform,
}

/// Sets every mask of `model` to a draw of `selection` within `budget` ReLUs (1 kept, 0
/// linear) and freezes the masks; returns the ReLUs kept. The same `(model, selection,
/// budget, seed)` always gives the same masks.
pub fn draw_masks<M: Masked + ?Sized>(
    model: &M,
    selection: Selection,
    budget: usize,
    seed: u64,
) -> Result<usize> {
    let total = relu_total(model);
    if total == 0 {
        return Err(ConfigError::NoMasks.into());
    }
    if budget == 0 {
        return Err(ConfigError::BudgetZero.into());
    }
    let masks = model.masks();
    let sizes: Vec<usize> = masks.iter().map(|m| m.alphas().elem_count()).collect();
    // ReLUs behind one mask element: 1 for a pixel mask, H * W for a channel mask.
    let cost: Vec<usize> = masks.iter().zip(&sizes).map(|(m, &n)| m.total_relus() / n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let keys: Vec<Vec<u64>> = sizes.iter().map(|&n| (0..n).map(|_| rng.next_u64()).collect()).collect();
    let mut keep: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![0.0; n]).collect();
    let mut kept = 0;
    match selection {
        Selection::Random => {
            let mut order: Vec<(u64, usize, usize)> = keys
                .iter()
                .enumerate()
                .flat_map(|(s, k)| k.iter().enumerate().map(move |(e, &key)| (key, s, e)))
                .collect();
            order.sort_unstable();
            for (_, s, e) in order {
                if kept + cost[s] <= budget {
                    keep[s][e] = 1.0;
                    kept += cost[s];
                }
            }
        }
        Selection::Uniform => {
            let fraction = budget as f64 / total as f64;
            for (s, site_keys) in keys.iter().enumerate() {
                let n = (fraction * site_keys.len() as f64).floor() as usize;
                let mut order: Vec<(u64, usize)> =
                    site_keys.iter().enumerate().map(|(e, &k)| (k, e)).collect();
                order.sort_unstable();
                for &(_, e) in order.iter().take(n) {
                    keep[s][e] = 1.0;
                }
                kept += n * cost[s];
            }
        }
    }
    for (mask, values) in masks.iter().zip(keep) {
        let alphas = mask.alphas();
        alphas.set(&Tensor::from_vec(values, alphas.shape(), alphas.device())?.to_dtype(alphas.dtype())?)?;
        mask.set_frozen(true);
    }
    Ok(kept)
}
