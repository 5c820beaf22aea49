//! The `gfa` command line (clap derive). The rich configuration lives in the experiment TOML;
//! flags select files, runs and outputs.

use std::path::PathBuf;

use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use gfa_core::device::Precision;
use gfa_core::{DeviceChoice, Method};

use crate::results::store::Shard;

#[derive(Debug, Parser)]
#[command(
    name = "gfa",
    version = crate::results::build_info::VERSION,
    about = "Gradient-Feature Alignment workbench: experiment grids → runs → CSV → tables/figures"
)]
pub struct Cli {
    /// Where tensors live: auto, cpu, cuda or cuda:<index>. Asking for CUDA where none works is
    /// an error.
    #[arg(long, global = true, default_value = "auto", value_parser = parse_device)]
    pub device: DeviceChoice,
    /// Float32 arithmetic on GPUs: auto (tf32 on a GPU, fp32 on the CPU), fp32 (strict) or
    /// tf32 (docs/numerics.md). Default: the grid's `[run] precision` (`gfa run`, `escalate`),
    /// else auto.
    #[arg(long, global = true, value_parser = parse_precision)]
    pub precision: Option<Precision>,
    /// Deterministic cuDNN and algorithms and cuBLAS's deterministic workspace: the
    /// bit-for-bit claims of docs/numerics.md then hold on CUDA too. Also on with the grid's
    /// `[run] deterministic = true`.
    #[arg(long, global = true)]
    pub deterministic: bool,
    #[command(subcommand)]
    pub command: Command,
}

fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    s.parse::<DeviceChoice>().map_err(|e| e.to_string())
}

fn parse_precision(s: &str) -> Result<Precision, String> {
    s.parse::<Precision>().map_err(|e| e.to_string())
}

fn parse_shard(s: &str) -> Result<Shard, String> {
    s.parse()
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Expand an experiment: print the numbered runs, write manifest.csv and each config.toml.
    Plan(PlanArgs),
    /// Train, evaluate and check every pending run of an experiment (resumable).
    Run(RunArgs),
    /// After `gfa run`: evaluate the runs that beat the reference by the file's `[escalate]`
    /// margin again, with its added attacks (e.g. AutoAttack), and recheck them (resumable).
    Escalate(EscalateArgs),
    /// Aggregate a results folder over seeds into summary.csv and Markdown tables.
    Report(ReportArgs),
    /// Draw the figures of a results folder (SVG and PNG).
    Plot(PlotArgs),
    /// List what a TOML may name: models, methods, attacks, presets, sections.
    List(ListArgs),
    /// Train one model from flags or a run TOML; writes train.csv and checkpoints into --out.
    Train(TrainArgs),
    /// Attack a trained model: print a table, optionally append eval.csv rows.
    Eval(EvalArgs),
    /// Compute the GFA value (mean tap-gradient cosine per tap) of a trained model.
    #[command(name = "gfa-value")]
    GfaValue(GfaValueArgs),
    /// Loss landscape L(x + α·u_radial + β·u_tangential) of a trained model on a grid.
    Landscape(LandscapeArgs),
    /// The binarization test of an attack on a trained model (docs/method.md §7): per test point,
    /// a two-class head on the model's features with an adversarial example known within eps;
    /// does the attack find it?
    Binarize(BinarizeArgs),
    /// What gfa runs on here: libtorch, CPU code path, threads, CUDA backend and GPUs, CIFAR-10,
    /// the libtorch cache; and how to fix what is missing.
    Doctor(DoctorArgs),
    /// gfa on CUDA against gfa on the CPU (same weights and points), and its GPU speed; what
    /// scripts/gpu-check.sh runs.
    #[command(name = "cuda-check")]
    CudaCheck(CudaCheckArgs),
    /// Dataset utilities.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Turn a PyTorch checkpoint (torch.save of a state dict) into gfa weights (safetensors).
    Import(ImportArgs),
    /// Write a run's results in another tool's format.
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DatasetArg {
    Cifar10,
    #[value(name = "fashion-mnist", alias = "fashion_mnist")]
    FashionMnist,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Download CIFAR-10 (binary version) or Fashion-MNIST and check the published MD5s.
    Fetch {
        /// Which data set.
        #[arg(value_enum, default_value = "cifar10")]
        dataset: DatasetArg,
        /// Destination folder (default: data for CIFAR-10, data/fashion-mnist for
        /// Fashion-MNIST).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// How a model normalizes its [0, 1] inputs: none, cifar10, imagenet, MEAN,STD or one mean per
/// channel then one std per channel.
fn parse_normalization(s: &str) -> Result<gfa_core::import::Normalization, String> {
    s.parse()
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The .pt file: torch.save(model.state_dict()), or a checkpoint dict holding the state
    /// dict under state_dict, model or net.
    pub input: PathBuf,
    /// gfa architecture whose tensor names the state dict has (gfa list models).
    #[arg(long)]
    pub model: String,
    #[arg(long)]
    pub width: Option<f64>,
    /// How the model expects its inputs: `none` (it takes [0, 1] pixels), `cifar10`,
    /// `imagenet`, or MEAN,STD (one value each, or one per channel: m1,m2,m3,s1,s2,s3) when
    /// its data loader normalized them.
    #[arg(long, value_parser = parse_normalization)]
    pub normalize: gfa_core::import::Normalization,
    /// Input images as CxHxW (default 3x32x32; 1x28x28 for Fashion-MNIST models).
    #[arg(long, default_value = "3x32x32", value_parser = parse_input)]
    pub input_shape: [i64; 3],
    /// Output weights file (.safetensors).
    #[arg(short, long)]
    pub out: PathBuf,
}

fn parse_input(s: &str) -> Result<[i64; 3], String> {
    let bad = || format!("bad input shape '{s}': expected CxHxW, e.g. 3x32x32");
    let v: Vec<i64> =
        s.split('x').map(|d| d.trim().parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    match v[..] {
        [c, h, w] if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
        _ => Err(bad()),
    }
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// RobustBench's model-info JSON from a run's eval.csv (needs an AutoAttack row).
    Robustbench(RobustbenchArgs),
}

#[derive(Debug, Args)]
pub struct RobustbenchArgs {
    /// A run folder: results/<experiment>/<run_id> (gfa run), a gfa train --out folder with
    /// its eval.csv (gfa eval --csv), or a folder with the eval.csv of gfa eval --weights |
    /// --torchscript (with --dataset).
    pub run_dir: PathBuf,
    /// Output file (default: <run_dir>/robustbench.json).
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// The budget to report when eval.csv has AutoAttack rows at several (e.g. 8/255).
    #[arg(long)]
    pub eps: Option<String>,
    /// The threat model to report when eval.csv has AutoAttack rows of both (linf or l2).
    #[arg(long)]
    pub norm: Option<String>,
    /// The data set, for a folder holding only the eval.csv of `gfa eval --weights |
    /// --torchscript … --csv` (a run folder's config names it): e.g. cifar10.
    #[arg(long)]
    pub dataset: Option<String>,
}

/// An experiment file, its overrides and the results root.
#[derive(Debug, Args)]
pub struct GridArgs {
    /// Experiment TOML.
    pub file: PathBuf,
    /// Override a key before expansion, e.g. --set train.epochs=1 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Results root; runs go to <results>/<experiment>/<run_id>/.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Refuse a grid that expands to more runs than this (checked before expanding).
    #[arg(long, value_name = "N", default_value_t = crate::config::grid::MAX_RUNS)]
    pub max_runs: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Emit {
    /// An sbatch job-array script (one task per run, or per shard with --tasks).
    Slurm,
}

/// The order in which `gfa run` takes a grid's pending runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Order {
    /// Longest first by the calibrated cost (training, then evaluation), ties by run id.
    #[default]
    Lpt,
    /// The grid's order.
    Arrival,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub grid: GridArgs,
    /// Also write a launcher script into the results folder.
    #[arg(long, value_enum)]
    pub emit: Option<Emit>,
    /// With --emit slurm: number of array tasks, each running `--shard i/n` (default: one task
    /// per run, each running `--only <id>`).
    #[arg(long)]
    pub tasks: Option<usize>,
    /// Refuse (exit code 3, nothing written) when the grid would run on the CPU: for GPU-scale
    /// grids.
    #[arg(long)]
    pub require_cuda: bool,
    /// Predict the grid's wall time with N workers (`gfa run --jobs N`: the runs longest first
    /// over the calibrated costs, each worker timed with cores / N threads). Default: `[run]
    /// jobs` of the experiment file, else 1.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    #[command(flatten)]
    pub slurm: SlurmFlags,
}

/// `--emit slurm`: each overrides its key of the experiment file's `[slurm]` section.
#[derive(Debug, Args, Default)]
pub struct SlurmFlags {
    /// Slurm partition of the tasks.
    #[arg(long, value_name = "NAME")]
    pub slurm_partition: Option<String>,
    /// Slurm account the tasks are charged to.
    #[arg(long, value_name = "NAME")]
    pub slurm_account: Option<String>,
    /// Time limit per task, as sbatch --time takes it (default: 1.5 x the calibrated estimate
    /// of the task's runs + 10 min).
    #[arg(long, value_name = "TIME")]
    pub slurm_time: Option<String>,
    /// CPUs per task (default 1); gfa takes them as its libtorch threads.
    #[arg(long, value_name = "N")]
    pub slurm_cpus: Option<usize>,
    /// Memory per task, as sbatch --mem takes it, e.g. 8G.
    #[arg(long, value_name = "SIZE")]
    pub slurm_mem: Option<String>,
    /// GPUs per task (--gres=gpu:N; gfa runs on the GPUs Slurm gives the task).
    #[arg(long, value_name = "N")]
    pub slurm_gpus: Option<usize>,
    /// One more #SBATCH line, e.g. --slurm-extra=--qos=long (repeatable).
    #[arg(long, value_name = "OPTION", allow_hyphen_values = true)]
    pub slurm_extra: Vec<String>,
}

impl SlurmFlags {
    pub fn section(&self) -> crate::config::slurm::SlurmSection {
        crate::config::slurm::SlurmSection {
            partition: self.slurm_partition.clone(),
            account: self.slurm_account.clone(),
            time: self.slurm_time.clone(),
            cpus_per_task: self.slurm_cpus,
            mem: self.slurm_mem.clone(),
            gpus: self.slurm_gpus,
            extra: self.slurm_extra.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// CIFAR-10 folder to look for (else $GFA_DATA_DIR, else data/).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CudaCheckArgs {
    /// Test points of the comparisons and of the APGD-CE timing.
    #[arg(long, default_value_t = 500)]
    pub n: usize,
    /// Timed training steps per case.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Append one JSON line per comparison and timing to this file.
    #[arg(long)]
    pub jsonl: Option<PathBuf>,
    /// Write the trained weights and the points here, for the PyTorch side of the timing.
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// Without a GPU: run every step on the CPU against itself, to check the plumbing
    /// (proves nothing about CUDA).
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub grid: GridArgs,
    /// Only this run id (or unique prefix); repeatable.
    #[arg(long)]
    pub only: Vec<String>,
    /// Work only shard i of n (1-based): runs whose position k has k mod n = i-1.
    #[arg(long, value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// Work N runs at once, each in a child process with its share of the cores (or one of
    /// --devices each). Default: `[run] jobs` of the experiment file, else the number of
    /// --devices, else 1.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Devices of the --jobs workers, e.g. cuda:0,cuda:1 (worker k uses the k-th, round robin).
    #[arg(long, value_delimiter = ',', value_parser = parse_device, value_name = "LIST")]
    pub devices: Vec<DeviceChoice>,
    /// libtorch threads per process (default: all cores, or a Slurm task's
    /// SLURM_CPUS_PER_TASK; with --jobs N, cores / N each).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// A run another process holds: wait up to SECONDS (after the other runs) for its lock,
    /// then finish or resume it; still held then, exit with code 3. Without the flag such a
    /// run is skipped and counted as locked (exit code 0). The Slurm script passes it.
    #[arg(long, value_name = "SECONDS")]
    pub wait_locked: Option<u64>,
    /// No progress bar and no progress lines (each run's log.txt is still written).
    #[arg(long)]
    pub quiet: bool,
    /// The order in which pending runs are taken: `lpt` (longest first by the calibrated cost
    /// of `gfa plan`, ties by run id) or `arrival` (the grid's order).
    #[arg(long, value_enum, default_value = "lpt")]
    pub order: Order,
    /// Only train the selected runs (a --jobs worker's first phase on an all-correct grid).
    #[arg(long, hide = true)]
    pub train_only: bool,
    /// Run as a --jobs worker: progress lines without times on stderr, a JSON summary on
    /// stdout.
    #[arg(long, hide = true)]
    pub worker: bool,
}

#[derive(Debug, Args)]
pub struct EscalateArgs {
    #[command(flatten)]
    pub grid: GridArgs,
    /// Only this run id (or unique prefix); repeatable.
    #[arg(long)]
    pub only: Vec<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A results folder, results/<experiment>.
    pub dir: PathBuf,
    /// Refuse (an error, nothing written) when a planned run is not finished (never started,
    /// running, interrupted or failed); without it they are listed and their table rows marked.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlotFormat {
    Svg,
    Png,
    Both,
}

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// A results folder, results/<experiment>.
    pub dir: PathBuf,
    #[arg(long, value_enum, default_value = "both")]
    pub format: PlotFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListWhat {
    Models,
    Methods,
    Attacks,
    Presets,
    Sections,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(value_enum)]
    pub what: ListWhat,
}

#[derive(Debug, Args)]
pub struct RunDirArgs {
    /// A run folder, results/<experiment>/<run_id> (holding config.toml).
    pub run_dir: PathBuf,
}

/// Where the images come from (flags shared by train, eval and gfa-value).
#[derive(Debug, Clone, Args, Default)]
pub struct DataArgs {
    /// The data folder (CIFAR-10: else $GFA_DATA_DIR, else data/; Fashion-MNIST: else
    /// $GFA_FASHION_MNIST_DIR, else data/fashion-mnist).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Which data set (default cifar10).
    #[arg(long, value_enum, conflicts_with = "synthetic")]
    pub dataset: Option<DatasetArg>,
    /// Use gfa-data's deterministic synthetic set instead of CIFAR-10.
    #[arg(long)]
    pub synthetic: bool,
    /// Use only the first N training points.
    #[arg(long)]
    pub n_train: Option<usize>,
    /// Use only the first N test points.
    #[arg(long)]
    pub n_test: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OptimizerKind {
    Sgd,
    Adam,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayersArg {
    First,
    Deep,
}

/// How the penalty's parameter gradient is computed (the `gradient` option of gfa, gnr and
/// gfa_pgd_at).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GradientArg {
    /// Double backprop.
    Exact,
    /// Two ordinary backward passes, no double-backprop graph.
    #[value(name = "finite_difference")]
    FiniteDifference,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// A run TOML (sections data, model, method, train; e.g. a run's config.toml);
    /// the model/method flags are then not used.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Architecture (gfa list models).
    #[arg(long, default_value = "cnn")]
    pub model: String,
    #[arg(long)]
    pub width: Option<f64>,
    /// The training method, with its default options (gfa list methods; an experiment TOML sets
    /// any option).
    #[arg(long, default_value = "standard", value_parser = PossibleValuesParser::new(Method::KINDS))]
    pub method: String,
    /// λ of a method with a penalty (gfa, gnr, gfa_pgd_at); required for them.
    #[arg(long)]
    pub lambda: Option<f64>,
    /// The penalty's tap set (default: deep for gfa, first for gnr).
    #[arg(long, value_enum)]
    pub layers: Option<LayersArg>,
    /// The penalty's parameter gradient (gfa, gnr, gfa_pgd_at): exact (default) or
    /// finite_difference.
    #[arg(long, value_enum)]
    pub gradient: Option<GradientArg>,
    /// The finite difference's step, relative to each tap's norm, in (0, 1) (default 1e-3).
    #[arg(long)]
    pub fd_step: Option<f64>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long, value_enum, default_value = "sgd")]
    pub optimizer: OptimizerKind,
    /// Learning rate (default 0.1 for SGD, 1e-3 for Adam).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Hold out this many training images and keep the epoch with the best PGD-10 accuracy on
    /// them as best.safetensors (`[train] validation = { n = N }`).
    #[arg(long, value_name = "N")]
    pub validation: Option<usize>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Output folder: train.csv, train_steps.csv, run.toml and the checkpoint files.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Continue from the checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SplitArg {
    Train,
    Test,
}

/// A trained model: a checkpoint folder, or a weights file plus its model flags.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A checkpoint folder (as written by gfa train --out or gfa run).
    #[arg(long, conflicts_with = "weights")]
    pub checkpoint: Option<PathBuf>,
    /// With --checkpoint: the robust checkpoint best.safetensors (a run trained with
    /// validation) instead of the final weights.
    #[arg(long, requires = "checkpoint")]
    pub best: bool,
    /// A .safetensors weights file (needs --model, --width).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Any PyTorch model as a TorchScript file (torch.jit.save of a scripted or traced module;
    /// scripts/export_torchscript.py): evaluated through libtorch on [0, 1] pixels, in eval
    /// mode. Opaque: no taps after `input`, no training.
    #[arg(long, conflicts_with_all = ["checkpoint", "weights"])]
    pub torchscript: Option<PathBuf>,
    #[arg(long, default_value = "cnn")]
    pub model: String,
    #[arg(long)]
    pub width: Option<f64>,
    /// With --weights: how the model expects its inputs, when the file has no
    /// normalize.mean/normalize.std: `none` ([0, 1] pixels), `cifar10`, `imagenet` or MEAN,STD
    /// (one value each, or one per channel: m1,m2,m3,s1,s2,s3). With --torchscript: gfa's
    /// normalization in front of a module that does not normalize itself (default none).
    #[arg(long, conflicts_with = "checkpoint", value_parser = parse_normalization)]
    pub normalize: Option<gfa_core::import::Normalization>,
    /// With --checkpoint: evaluate on the data that --data / --dataset / --synthetic name even
    /// though the checkpoint was trained on other data.
    #[arg(long, requires = "checkpoint")]
    pub other_data: bool,
}

#[derive(Debug, Args)]
pub struct GfaValueArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Number of points (the first n of the split).
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    #[command(flatten)]
    pub data: DataArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Comma-separated attack kinds (gfa list attacks).
    #[arg(long, default_value = "apgd-ce,square")]
    pub attacks: String,
    /// Comma-separated budgets, e.g. 2/255,8/255.
    #[arg(long, default_value = "8/255")]
    pub eps: String,
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    #[arg(long, default_value = "reference")]
    pub preset: String,
    /// Threat model: linf, l2 or l1 (default: each attack's own, L2 for cw and deepfool, L1
    /// for ead, L∞ for the others).
    #[arg(long)]
    pub norm: Option<String>,
    #[arg(long, default_value_t = 250)]
    pub batch_size: usize,
    /// Seed of the attacks' random generators.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Checkpoint folder of the surrogate model a `transfer` attack crafts its examples on
    /// (e.g. a standard-training run's `checkpoints/`).
    #[arg(long)]
    pub surrogate: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Append the rows to this CSV (eval.csv layout).
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LandscapeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Number of test points the loss is averaged over.
    #[arg(long, default_value_t = 256)]
    pub n: usize,
    /// α and β range over [-radius, radius] (L∞ pixel units, "a/b" accepted).
    #[arg(long, default_value = "8/255")]
    pub radius: String,
    /// Grid points per axis (odd, so that 0 is on the grid).
    #[arg(long, default_value_t = 21)]
    pub steps: usize,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Seed of the tangential direction.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub data: DataArgs,
    /// Output CSV (default: landscape.csv in the checkpoint folder).
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BinarizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The attack tested: a kind (gfa list attacks) or an inline TOML table of its keys, e.g.
    /// '{ kind = "pgd", steps = 1, step_size = 1e-4 }'.
    #[arg(long, default_value = gfa_attacks::binarize::DEFAULT_ATTACK)]
    pub attack: String,
    /// The attack's preset (reference or torchattacks), unless --attack's table names one.
    #[arg(long, default_value = "reference")]
    pub preset: String,
    /// Threat model, linf or l2 (default: the attack's own), unless --attack's table names one.
    #[arg(long)]
    pub norm: Option<String>,
    /// The budget eps, e.g. 8/255.
    #[arg(long, default_value = "8/255")]
    pub eps: String,
    /// Test points: the first n of the test split.
    #[arg(long, default_value_t = 100)]
    pub n: usize,
    /// Inner samples per point (inside 0.95·eps), the clean point included (default: 999, at
    /// most the model's feature dimension − --boundary).
    #[arg(long)]
    pub inner: Option<usize>,
    /// Samples per point on the eps-sphere.
    #[arg(long, default_value_t = 1)]
    pub boundary: usize,
    /// Fresh samples per class for the head's validation accuracy.
    #[arg(long, default_value_t = 200)]
    pub validation: usize,
    /// Adam steps of the head.
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 0.05)]
    pub lr: f64,
    /// Samples per forward pass.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Seed of the samples and of the attack.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub data: DataArgs,
    /// Output CSV (default: binarization.csv in the --checkpoint folder).
    #[arg(long)]
    pub csv: Option<PathBuf>,
}
