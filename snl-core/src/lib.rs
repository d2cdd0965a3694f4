//! Selective Network Linearization (Cho et al., ICML 2022) for any candle model.
//!
//! Replace a model's `relu()` calls with [`ReluMask`]s, list them through [`Masked`], and
//! [`linearize`] it with batches you supply: the masks learn which ReLUs to keep within a
//! budget, the rest become identities, and the network is finetuned with the masks frozen.
//! This crate knows nothing about files, datasets or command lines, and never prints.

mod epoch;
mod error;
pub mod fast;
pub mod loss;
mod mask;
pub mod optim;
mod select;
mod snl;

pub use error::{ConfigError, Error, Result};
pub use mask::{Granularity, Masked, ReluMask, ReluReport, SiteReport, binarize, relu_count, relu_total};
pub use select::{FrozenMaskTraining, Selection, draw_masks};
pub use snl::{
    Batches, Budget, EpochReport, Finetune, LassoSchedule, Linearized, MaskSearch, Observer, Phase, Plan,
    SearchState, SnlConfig, linearize,
};
