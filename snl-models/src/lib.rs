//! ResNet and WideResNet with SNL masks, weight-for-weight compatible with the SNL authors'
//! PyTorch models (`resnet18_in`, `wide_resnet_22_8`) and `torch_ref.py`.
//!
//! ```no_run
//! use candle::{Device, ModuleT, Tensor};
//! use snl_models::{ModelConfig, checkpoint, params};
//!
//! # fn main() -> snl_models::Result<()> {
//! let config = ModelConfig::from_arch("resnet18", 10)?;
//! let (student, vars) = config.build_trainable(&Device::Cpu)?;
//! checkpoint::load_into(&vars, &checkpoint::read("resnet18.pth.tar", &Device::Cpu)?.tensors)?;
//! let teacher = config.build_frozen(&vars, &Device::Cpu)?; // no graph, frozen masks
//! let x = Tensor::zeros((2, 3, 32, 32), candle::DType::F32, &Device::Cpu)?;
//! let _logits = student.forward_t(&x, true)?; // batch statistics
//! let _vars = params::trainable_vars(&vars); // for snl_core::linearize
//! # let _ = teacher; Ok(()) }
//! ```
//!
//! This crate knows nothing about datasets, training loops or command lines, and never
//! prints.

pub mod checkpoint;
mod error;
pub mod layers;
mod model;
pub mod params;
pub mod pth;
mod resnet;
mod wrn;

pub use error::{ConfigError, Error, Result, ShapeMismatch, StateDictMismatch};
pub use layers::BlockConfig;
pub use model::{MAX_MODEL_VALUES, Model, ModelConfig, keys as metadata_keys};
pub use pth::PthError;
pub use resnet::{BasicBlock, ResNet, ResNetConfig, ResNetDepth};
pub use snl_core::Granularity;
pub use wrn::{WideBlock, WideResNet, WrnConfig};
