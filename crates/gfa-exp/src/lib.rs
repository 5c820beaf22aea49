//! gfa-exp: experiment grids → runs → CSV records → tables and figures; the `gfa` command line.
//!
//! The crate is five layers, each a folder whose files import only the layers above it here:
//! 1. [`config`]: the experiment TOML. [`config::grid::ExperimentSpec::load`] reads
//!    `experiments/foo.toml`, applies `--set` overrides ([`config::overrides`]) on the TOML tree
//!    and checks every key ([`config::spec`]); errors name the file, line and TOML path, with
//!    the closest valid key. [`config::grid::ExperimentSpec::expand`] gives one
//!    [`config::grid::RunSpec`] per combination of `[grid]` values, `[[zip]]` rows and seeds,
//!    each with a stable `run_id` (BLAKE3 of its canonical spec).
//! 2. [`results`]: the files of a results folder: the CSV records ([`results::records`]) and the
//!    store ([`results::store`]: layout, markers, locks), so runs resume after a kill.
//! 3. [`analysis`]: pure functions over the records: [`analysis::report`] aggregates over seeds
//!    into `summary.csv` and the Markdown tables; [`analysis::plot`] draws the figures. Both
//!    read only CSVs.
//! 4. [`run`]: the work. [`run::runner::run_grid`] works each pending run (train → evaluate →
//!    masking checks), writing each stage's CSV atomically with a marker.
//! 5. [`cli`]: the command line, one file per command or command family; [`run()`] below
//!    dispatches a parsed command line to them.

pub mod analysis;
pub mod cli;
pub mod config;
pub mod results;
pub mod run;

use anyhow::Result;

use crate::cli::args::{Cli, Command, DataCommand, ExportCommand};
use crate::cli::{announce, commands};

/// Run a parsed command line; the value is the process exit code (1 when some runs failed).
pub fn run(cli: Cli) -> Result<i32> {
    // One precision and determinism policy for every command (docs/numerics.md), set before
    // the first tensor; `auto` resolves for the device the command would use.
    // `gfa run` and `escalate` apply them again with the grid's `[run]` keys, before theirs.
    let device = cli.device.resolve().unwrap_or(tch::Device::Cpu);
    let flags = cli::NumericsFlags { precision: cli.precision, deterministic: cli.deterministic };
    flags.apply(Default::default(), device)?;
    match cli.command {
        Command::Plan(args) => cli::plan::plan(&args, cli.device),
        Command::Run(args) => cli::run::run_command(&args, cli.device, flags),
        Command::Escalate(args) => cli::run::escalate_command(&args, cli.device, flags),
        Command::Report(args) => cli::report::report(&args),
        Command::Plot(args) => cli::report::plot(&args),
        Command::List(args) => {
            cli::list::list(args.what);
            Ok(0)
        }
        Command::Train(args) => commands::train(&args, announce(cli.device)?).map(|_| 0),
        Command::Eval(args) => commands::eval(&args, announce(cli.device)?).map(|_| 0),
        Command::Doctor(args) => cli::doctor::command(&args),
        Command::CudaCheck(args) => cli::cuda_check::command(&args, cli.device),
        Command::GfaValue(args) => commands::gfa_value(&args, cli.device.resolve()?).map(|_| 0),
        Command::Landscape(args) => commands::landscape(&args, cli.device.resolve()?).map(|_| 0),
        Command::Binarize(args) => cli::binarize::binarize(&args, cli.device.resolve()?),
        Command::Data { command: DataCommand::Fetch { dataset, dir } } => {
            cli::data::fetch(dataset, dir).map(|_| 0)
        }
        Command::Import(args) => cli::import::import(&args).map(|_| 0),
        Command::Export { command: ExportCommand::Robustbench(args) } => {
            cli::export::robustbench(&args).map(|_| 0)
        }
    }
}
