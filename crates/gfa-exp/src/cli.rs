//! The `gfa` command line (clap derive). The rich configuration lives in the experiment TOML;
//! flags select files, runs and outputs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use gfa_core::DeviceChoice;

use crate::store::Shard;

#[derive(Debug, Parser)]
#[command(
    name = "gfa",
    version,
    about = "Gradient-Feature Alignment workbench: experiment grids → runs → CSV → tables/figures"
)]
pub struct Cli {
    /// Where tensors live: auto, cpu, cuda or cuda:<index>. Asking for CUDA where none works is
    /// an error.
    #[arg(long, global = true, default_value = "auto", value_parser = parse_device)]
    pub device: DeviceChoice,
    #[command(subcommand)]
    pub command: Command,
}

fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    s.parse::<DeviceChoice>().map_err(|e| e.to_string())
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
    /// Aggregate a results folder over seeds into summary.csv and Markdown tables.
    Report(ReportArgs),
    /// Draw the figures of a results folder (SVG and PNG).
    Plot(PlotArgs),
    /// List what a TOML may name: models, methods, attacks, presets, sections.
    List(ListArgs),
    /// Train one run from its config.toml (as `gfa run` does for each run).
    Train(RunDirArgs),
    /// Evaluate one trained run with its attack suite.
    Eval(RunDirArgs),
    /// Compute the GFA value (mean tap-gradient cosine per tap) of a trained run.
    #[command(name = "gfa-value")]
    GfaValue(RunDirArgs),
    /// Compute the loss landscape along radial/tangential directions of a trained run.
    Landscape(RunDirArgs),
    /// Dataset utilities.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Download CIFAR-10 (binary version) and check its MD5.
    Fetch {
        /// Destination folder.
        #[arg(long, default_value = "data")]
        dir: PathBuf,
    },
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Emit {
    /// An sbatch job-array script (one task per run, or per shard with --tasks).
    Slurm,
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
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A results folder, results/<experiment>.
    pub dir: PathBuf,
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
