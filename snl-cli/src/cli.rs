//! The command line: flags only. Each command turns its flags into a checked configuration
//! before any work starts.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use snl_core::Granularity;

use crate::data::DatasetKind;
use crate::setup::DeviceSpec;

#[derive(Debug, Parser)]
#[command(
    name = "snl",
    version,
    about = "Selective Network Linearization: fewer ReLUs for private inference",
    long_about = "Selective Network Linearization (Cho et al., ICML 2022): learn which ReLUs of a \
                  pretrained CNN to keep within a budget, turn the rest into identities, finetune.\n\n\
                  Start with `snl demo`: it needs no data and no network."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Device: cpu, cuda, cuda:N or metal (cuda and metal need a build with that feature).
    #[arg(long, global = true, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Seed of initialisation, data order, augmentation and validation split (default: 0).
    /// A resumed run, and eval on a model's own dataset, use the recorded seed: another is refused.
    #[arg(long, global = true)]
    pub seed: Option<u64>,
    /// CPU threads (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Print only results (stdout) and errors: no progress.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more detail (every epoch's loss terms).
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train, linearize and finetune a small ResNet18 on synthetic data: no downloads.
    Demo(DemoArgs),
    /// Train a baseline network from scratch (all ReLUs), keeping the best epoch on validation.
    Train(TrainArgs),
    /// Algorithm 1: learn masks to a ReLU budget, binarize them, finetune (the model is the teacher).
    Linearize(LinearizeArgs),
    /// Top-1, top-5 and loss of a model on a dataset split.
    Eval(EvalArgs),
    /// The per-site ReLU table of an architecture or a model, with a private-inference cost estimate.
    Count(CountArgs),
    /// Logits (tensor `logits`) for already-normalised NCHW f32 images (tensor `x`).
    Predict(PredictArgs),
    /// Convert a checkpoint of the authors' PyTorch scripts (.pth/.pth.tar) into an snl checkpoint.
    Import(ImportArgs),
    /// For private inference: snl's bundle (weights, U8 masks, kept indices, manifest) or one ONNX model.
    Export(ExportArgs),
}

/// The network, wherever an architecture is named.
#[derive(Debug, Clone, Default, Args)]
pub struct ModelArgs {
    /// Architecture: resnet18, resnet34, wrn-22-8, wrn-16-8, wrn-28-10 (any wrn-D-K).
    #[arg(long)]
    pub arch: Option<String>,
    /// ResNet base width (64 is the paper's; smaller trains on a CPU).
    #[arg(long)]
    pub width: Option<usize>,
    /// Number of classes (default: 10; train: the dataset's).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Input height and width (32 for CIFAR, 64 for Tiny-ImageNet; default: 32; train: the dataset's).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Stride of the stem convolution.
    #[arg(long)]
    pub stem_stride: Option<usize>,
    /// What one mask element gates: one activation (pixel) or a channel.
    #[arg(long)]
    pub granularity: Option<Granularity>,
    /// ResNet: add the standard masked stem ReLU (557,056 ReLUs for ResNet18 at 32x32).
    #[arg(long)]
    pub stem_relu: bool,
    /// WRN: add the standard masked final BN-ReLU.
    #[arg(long)]
    pub final_relu: bool,
}

/// Where the data comes from.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// cifar10, cifar100, tiny-imagenet, folder (with --data-dir: <dir>/{train,test}/<class>/<image>),
    /// or synthetic (a small in-memory 10-class task of 16x16 images, 1000 to train, 200 to
    /// validate, 200 to test, for trying things out; no --data-dir or --val-size).
    /// Required by train unless it --resumes (the run names its data); eval and linearize
    /// default to the dataset their model records.
    #[arg(long)]
    pub dataset: Option<DatasetKind>,
    /// A local copy (folder or official archive), the only place looked in (no Hub if the
    /// data is not there); without it, the Hugging Face Hub cache.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Never touch the network (also HF_HUB_OFFLINE=1); fail if the data is not cached.
    #[arg(long)]
    pub offline: bool,
    /// Images held out of the training set for validation (model selection; default: 5000).
    /// 0 trains on every training image, as the authors do: with no validation split the
    /// last epoch's model is kept (never one chosen on the test set). Not for synthetic
    /// data, which has its own validation set. `eval` and `linearize` rebuild the split a
    /// model records, on its dataset; this chooses only where that data cannot hold it.
    #[arg(long)]
    pub val_size: Option<usize>,
    /// Batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run folder, holding `baseline` and `linearized` (default: the first free runs/demo,
    /// runs/demo-2, ...). A folder holding a demo is refused: continue it with --resume.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue a killed demo from its folder: an unfinished step resumes at its last finished
    /// epoch, a finished one is kept, with the demo's own data and settings.
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// For tests: exit with code 3 once a step has N epochs checkpointed.
    #[arg(long, hide = true)]
    pub stop_after_epochs: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Decay by 10 at 1/2 and 3/4 of the epochs (the authors' baseline).
    Multistep,
    /// Cosine annealing to zero.
    Cosine,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Epochs (the authors train 160).
    #[arg(long, default_value_t = 160)]
    pub epochs: usize,
    /// SGD learning rate.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.1)]
    pub lr: f64,
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.9)]
    pub momentum: f64,
    #[arg(long, allow_negative_numbers = true, default_value_t = 5e-4)]
    pub weight_decay: f64,
    #[arg(long, value_enum, default_value_t = ScheduleKind::Multistep)]
    pub schedule: ScheduleKind,
    /// Run folder (created; must not hold a finished run).
    #[arg(long, required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Continue a killed run from its folder, at its last finished epoch, with the run's own
    /// configuration (other settings are refused).
    #[arg(long, conflicts_with_all = ["out", "epochs", "lr", "momentum", "weight_decay", "schedule", "arch", "width", "classes", "image_size", "stem_stride", "granularity", "stem_relu", "final_relu", "dataset", "data_dir", "offline", "val_size", "batch_size"])]
    pub resume: Option<PathBuf>,
    /// For tests: exit with code 3 once N epochs (counted from the run's start) are checkpointed.
    #[arg(long, hide = true)]
    pub stop_after_epochs: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    /// Algorithm 1's learned masks.
    Snl,
    /// Baseline: the budget's ReLUs drawn at random over the whole network.
    Random,
    /// Baseline: the same fraction kept at random in every site.
    Uniform,
}

#[derive(Debug, Args)]
pub struct LinearizeArgs {
    /// The pretrained model (snl checkpoint, or PyTorch-named safetensors with model flags).
    #[arg(long, required_unless_present = "resume")]
    pub model: Option<PathBuf>,
    /// ReLUs to keep: a count (50000, 50k, 1.5m) or a fraction (10%, 0.1).
    #[arg(long, allow_hyphen_values = true, required_unless_present = "resume", value_parser = crate::commands::parse_budget)]
    pub budget: Option<snl_core::Budget>,
    #[command(flatten)]
    pub model_args: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// How ReLUs are chosen: snl (learned) or a baseline (random, uniform).
    #[arg(long, value_enum, default_value_t = Selection::Snl)]
    pub selection: Selection,
    /// Initial lasso coefficient lambda.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1e-5)]
    pub lasso: f64,
    /// Lambda's growth factor when the count stalls.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.1)]
    pub kappa: f64,
    /// Search epochs before lambda may grow.
    #[arg(long, allow_negative_numbers = true, default_value_t = 5)]
    pub warmup_epochs: usize,
    /// A mask element counts as a ReLU when alphas > threshold.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1e-2)]
    pub threshold: f64,
    /// Adam learning rate of the mask search.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1e-3)]
    pub search_lr: f64,
    /// Search epochs after which a count still above the budget stops the run (default 2000;
    /// may be raised on --resume to continue a search that reached it). A control's
    /// --search-epochs/--search-steps may not need more epochs.
    #[arg(long, allow_negative_numbers = true)]
    pub max_search_epochs: Option<usize>,
    /// At --max-search-epochs with the count still above the budget, binarize and finetune
    /// anyway (the authors' behaviour; the model then keeps more ReLUs than the budget)
    /// instead of stopping with an error. Also accepted with --resume.
    #[arg(long)]
    pub finish_at_cap: bool,
    /// random/uniform only: whole epochs of the search's optimizer and loss (Adam at
    /// --search-lr on CE + KD) with the drawn mask frozen, before the finetuning (default 0).
    /// An SNL search ends at the first step within its budget, so its last epoch may be
    /// short: to train exactly as much as an SNL run, give --search-steps its `search_steps`.
    #[arg(long, allow_negative_numbers = true, conflicts_with = "search_steps")]
    pub search_epochs: Option<usize>,
    /// random/uniform only: as --search-epochs, in optimizer steps: the `search_steps` of the
    /// SNL run to match (its last search epoch may end early, at the budget)
    #[arg(long, allow_negative_numbers = true)]
    pub search_steps: Option<usize>,
    /// Distillation temperature.
    #[arg(long, allow_negative_numbers = true, default_value_t = 4.0)]
    pub temperature: f64,
    /// Finetuning epochs after binarizing (0 stops after binarizing).
    #[arg(long, allow_negative_numbers = true, default_value_t = 100)]
    pub finetune_epochs: usize,
    #[arg(long, allow_negative_numbers = true, default_value_t = 1e-3)]
    pub finetune_lr: f64,
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.9)]
    pub finetune_momentum: f64,
    #[arg(long, allow_negative_numbers = true, default_value_t = 5e-4)]
    pub finetune_weight_decay: f64,
    /// Run folder (created; must not hold a finished run).
    #[arg(long, required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Continue a killed run from its folder, at its last finished epoch, with the run's own
    /// configuration (other settings are refused, except --max-search-epochs and
    /// --finish-at-cap).
    #[arg(long, conflicts_with_all = ["out", "model", "budget", "selection", "lasso", "kappa", "warmup_epochs", "threshold", "search_lr", "search_epochs", "search_steps", "temperature", "finetune_epochs", "finetune_lr", "finetune_momentum", "finetune_weight_decay", "arch", "width", "classes", "image_size", "stem_stride", "granularity", "stem_relu", "final_relu", "dataset", "data_dir", "offline", "val_size", "batch_size"])]
    pub resume: Option<PathBuf>,
    /// For tests: exit with code 3 once N epochs (counted from the run's start) are checkpointed.
    #[arg(long, hide = true)]
    pub stop_after_epochs: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EvalSplit {
    Test,
    Val,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The model (snl checkpoint, or PyTorch-named safetensors with model flags).
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub model_args: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, value_enum, default_value_t = EvalSplit::Test)]
    pub split: EvalSplit,
    /// Print one JSON object (samples, top1, top5, loss).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CountArgs {
    /// A model whose masks to count (else --arch describes a fresh network). A checkpoint
    /// without snl metadata needs --arch and the model options too.
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub model_args: ModelArgs,
    /// A mask element counts when alphas > threshold (default: the checkpoint's, else 0.01).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Print one JSON object (arch, convention, threshold, total, kept, sites, cost).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The model (snl checkpoint, or PyTorch-named safetensors with model flags).
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub model_args: ModelArgs,
    /// safetensors with tensor `x`: float (N, 3, H, W), already normalised (integer images,
    /// e.g. u8 pixels, are refused: normalise them first).
    #[arg(long)]
    pub input: PathBuf,
    /// safetensors to write with tensor `logits` (N, classes).
    #[arg(long)]
    pub output: PathBuf,
    /// Images per forward pass (bounds the memory used).
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The PyTorch checkpoint (zip-format .pth/.pth.tar; `state_dict` key and `module.` prefix handled).
    #[arg(long)]
    pub pth: PathBuf,
    #[command(flatten)]
    pub model_args: ModelArgs,
    /// The snl checkpoint to write (.safetensors; must not exist).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The model (snl checkpoint, or PyTorch-named safetensors with model flags).
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub model_args: ModelArgs,
    /// A mask element is kept when alphas > threshold (default: the checkpoint's, else 0.01).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Folder to write (created; an existing one must be empty).
    #[arg(long)]
    pub out: PathBuf,
    /// What to write: snl's bundle (`safetensors`), or one ONNX model, `model.onnx` (`onnx`).
    #[arg(long, value_enum, default_value_t = ExportFormat::Safetensors)]
    pub format: ExportFormat,
    /// ONNX only: a site's ReLUs as `compact` (only kept positions are computed: gather, ReLU,
    /// scatter back; default) or `masked` (a*relu(x) + (1-a)*x: every position pays).
    #[arg(long, value_enum)]
    pub relu: Option<ReluFormArg>,
    /// Export a model whose masks are not all 0 or 1 (one saved mid-search) binarized at the
    /// threshold. Without it such a model is refused: its export would compute another
    /// network than `predict` and `eval` do with the same file.
    #[arg(long)]
    pub binarize: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Safetensors,
    Onnx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReluFormArg {
    Compact,
    Masked,
}
