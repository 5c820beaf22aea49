//! gfa-exp: experiment grids → runs → CSV records → tables and figures; the `gfa` command line.
//!
//! # Data flow
//! 1. [`grid::ExperimentSpec::load`] reads `experiments/foo.toml`, applies `--set` overrides
//!    ([`overrides`]) on the TOML tree and checks every key ([`spec`]); errors name the file,
//!    line and TOML path, with the closest valid key.
//! 2. [`grid::ExperimentSpec::expand`] gives one [`grid::RunSpec`] per combination of `[grid]`
//!    values, `[[zip]]` rows and seeds, each with a stable `run_id` (BLAKE3 of its canonical
//!    spec). `gfa plan` prints them and snapshots each run's `config.toml` ([`store`]).
//! 3. [`runner::run_grid`] works each pending run (train → evaluate → masking checks), writing
//!    each stage's CSV atomically with a marker, so runs resume after a kill ([`records`]).
//! 4. [`report`] aggregates over seeds into `summary.csv` and the Markdown tables T1–T4;
//!    [`plot`] draws the figures. Both read only CSVs.
//!
//! Around it: [`calibrate`] turns a plan's image-gradient counts into hours on the chosen
//! device, [`doctor`] says what gfa runs on here, [`cuda_check`] checks CUDA against the CPU.

pub mod batches;
pub mod build_info;
pub mod calibrate;
pub mod cli;
pub mod commands;
pub mod cuda_check;
pub mod doctor;
pub mod escalate;
pub mod export;
pub mod fault;
pub mod grid;
pub mod import;
pub mod jobs;
pub mod legacy;
pub mod masking;
pub mod monitor;
pub mod overrides;
pub mod phase;
pub mod plot;
pub mod points;
pub mod records;
pub mod report;
pub mod runner;
pub mod spec;
pub mod stages;
pub mod stats;
pub mod store;
pub mod surrogate;

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::cli::{Cli, Command, DataCommand, DatasetArg, Emit, ExportCommand, ListWhat, PlanArgs};
use crate::grid::{ExperimentSpec, RunSpec};
use gfa_data::atomic::write_atomic;

use crate::records::ManifestRow;
use crate::store::{ExperimentDir, write_if_changed};

/// Run a parsed command line; the value is the process exit code (1 when some runs failed).
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Plan(args) => plan(&args, cli.device),
        Command::Run(args) => jobs::run_command(&args, cli.device),
        Command::Escalate(args) => escalate_command(&args, cli.device),
        Command::Report(args) => {
            let out = report::report(&args.dir)?;
            println!("{}", out.markdown);
            eprintln!(
                "wrote {}",
                out.written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            );
            Ok(0)
        }
        Command::Plot(args) => {
            let files = plot::plot_dir(&args.dir, args.format)?;
            for f in &files {
                println!("{}", f.display());
            }
            Ok(0)
        }
        Command::List(args) => {
            list(args.what);
            Ok(0)
        }
        Command::Train(args) => commands::train(&args, announce(cli.device)?).map(|_| 0),
        Command::Eval(args) => commands::eval(&args, announce(cli.device)?).map(|_| 0),
        Command::Doctor(args) => {
            let report = doctor::collect(args.data.as_deref());
            if args.json {
                println!("{}", doctor::to_json(&report));
            } else {
                print!("{}", doctor::render(&report));
            }
            Ok(0)
        }
        Command::CudaCheck(args) => cuda_check::command(&args, cli.device),
        Command::GfaValue(args) => commands::gfa_value(&args, cli.device.resolve()?).map(|_| 0),
        Command::Landscape(args) => commands::landscape(&args, cli.device.resolve()?).map(|_| 0),
        Command::Data { command: DataCommand::Fetch { dataset, dir } } => {
            fetch(dataset, dir).map(|_| 0)
        }
        Command::Import(args) => import::import(&args).map(|_| 0),
        Command::Export { command: ExportCommand::Robustbench(args) } => {
            export::robustbench(&args).map(|_| 0)
        }
    }
}

/// `gfa data fetch [cifar10 | fashion-mnist] [--dir DIR]`, with a progress bar.
fn fetch(dataset: DatasetArg, dir: Option<std::path::PathBuf>) -> Result<()> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {msg}")
            .expect("valid template"),
    );
    let mut show = |name: &str, done: u64, total: Option<u64>| {
        bar.set_message(name.to_string());
        if let Some(t) = total {
            bar.set_length(t);
        }
        bar.set_position(done);
    };
    let (name, dir, out) = match dataset {
        DatasetArg::Cifar10 => {
            let dir = dir.unwrap_or_else(|| gfa_data::cifar10::DEFAULT_DATA_DIR.into());
            let out = gfa_data::fetch::fetch_official(&dir, |d, t| show("CIFAR-10", d, t));
            ("CIFAR-10", dir, out)
        }
        DatasetArg::FashionMnist => {
            let dir = dir.unwrap_or_else(|| gfa_data::fashion::DEFAULT_DIR.into());
            let out = gfa_data::fetch::fetch_official_fashion_mnist(&dir, &mut show);
            ("Fashion-MNIST", dir, out)
        }
    };
    bar.finish_and_clear();
    let out = out.with_context(|| format!("fetching {name} into {}", dir.display()))?;
    println!("{name} is in {}", out.display());
    Ok(())
}

/// Resolve the device and say on stdout where the work runs (the first line of `gfa run`,
/// `train` and `eval`); `--device auto` falling back to the CPU on a machine with an NVIDIA
/// driver also warns on stderr.
pub(crate) fn announce(choice: gfa_core::DeviceChoice) -> Result<tch::Device> {
    let device = choice.resolve()?;
    println!("device: {}", gfa_core::device::describe(device));
    if let Some(w) = gfa_core::device::auto_fallback_warning(choice, device) {
        eprintln!("{w}");
    }
    Ok(device)
}

/// `gfa escalate FILE`: the file's `[escalate]` rule on its evaluated runs.
fn escalate_command(args: &cli::EscalateArgs, device: gfa_core::DeviceChoice) -> Result<i32> {
    let (spec, runs) = load(&args.grid.file, &args.grid.set)?;
    let Some(esc) = &spec.escalate else {
        bail!(
            "{} has no [escalate] table, so no run is escalated: add one (experiments/README.md \
             shows the keys)",
            args.grid.file.display()
        );
    };
    runner::check_only(&runs, &args.only)?;
    let exp = ExperimentDir::new(&args.grid.results, &spec.name);
    let monitor = monitor::Monitor::new(args.quiet);
    let mut stages = stages::TorchStages { device: announce(device)?, monitor: monitor.clone() };
    let opts = runner::RunOptions { only: args.only.clone(), monitor, ..Default::default() };
    let done = escalate::escalate(&exp, &runs, esc, &mut stages, &opts)?;
    println!("{} runs escalated", done.len());
    Ok(0)
}

/// Load and expand an experiment file.
pub fn load(file: &Path, set: &[String]) -> Result<(ExperimentSpec, Vec<RunSpec>)> {
    let spec = ExperimentSpec::load(file, set)?;
    let runs = spec.expand()?;
    Ok((spec, runs))
}

/// Write the manifest and each run's config snapshot; refuses a run folder whose config differs.
pub fn write_plan(
    spec: &ExperimentSpec,
    runs: &[RunSpec],
    results: &Path,
) -> Result<ExperimentDir> {
    let exp = ExperimentDir::new(results, &spec.name);
    // Only what is missing or different is written: processes sharing the folder (two
    // `gfa run`, `--jobs` workers) agree on these files and rewrite nothing.
    for r in runs {
        let dir = exp.run(&r.run_id);
        dir.write_config(&r.config_toml())?;
        write_if_changed(&dir.file("overrides.toml"), r.overrides_toml().as_bytes())?;
    }
    let rows: Vec<ManifestRow> = runs.iter().map(RunSpec::manifest_row).collect();
    write_if_changed(&exp.manifest(), &records::to_csv_bytes(&rows)?)?;
    Ok(exp)
}

/// The numbered table `gfa plan` prints (with each run's estimated hours when calibrated).
pub fn plan_table(runs: &[RunSpec], cal: Option<&calibrate::Calibration>) -> String {
    let mut keys: Vec<String> = Vec::new();
    for r in runs {
        for (k, _) in &r.axes {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    let mut header = vec!["#".to_string(), "run_id".into(), "seed".into()];
    header.extend(keys.iter().cloned());
    header.push("est. cost (M grad)".into());
    if let Some(c) = cal {
        header.push(format!("est. h ({})", gfa_core::device::device_name(c.device)));
    }
    let mut rows = vec![header];
    for r in runs {
        let mut row = vec![r.index.to_string(), r.run_id.clone(), r.seed.to_string()];
        for k in &keys {
            row.push(
                r.axes.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone()).unwrap_or_default(),
            );
        }
        row.push(fmt_cost(grid::estimate_cost(r)));
        if let Some(c) = cal {
            row.push(calibrate::fmt_hours(c.hours(r)));
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> =
            row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}", w = *w)).collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

/// A cost with about three significant digits.
fn fmt_cost(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}")
    } else if x >= 0.1 {
        format!("{x:.2}")
    } else {
        format!("{x:.1e}")
    }
}

fn plan(args: &PlanArgs, choice: gfa_core::DeviceChoice) -> Result<i32> {
    let (spec, runs) = load(&args.grid.file, &args.grid.set)?;
    let device = choice.resolve()?;
    let cal = calibrate::calibrate(&runs, device)?;
    print!("{}", plan_table(&runs, Some(&cal)));
    let total: f64 = runs.iter().map(grid::estimate_cost).sum();
    let hours: f64 = runs.iter().map(|r| cal.hours(r)).sum();
    let dev = gfa_core::device::device_name(device);
    println!(
        "{} runs of experiment `{}` (up to {} attacks per run); total est. cost {} M \
         image-gradients, about {} on {dev}",
        runs.len(),
        spec.name,
        runs.iter().map(|r| r.attacks.len()).max().unwrap_or(0),
        fmt_cost(total),
        calibrate::fmt_hours(hours)
    );
    println!("  (calibrated on {dev}: {})", cal.summary());
    if args.require_cuda && !device.is_cuda() {
        let why = match gfa_core::device::load_cuda_backend() {
            Err(e) => format!("libtorch's CUDA backend did not load ({e})"),
            Ok(()) => "libtorch's CUDA backend sees no GPU".into(),
        };
        eprintln!(
            "error: refusing to run `{}` on the CPU: it is a GPU-scale grid (about {} on {dev}) \
             and no CUDA device is usable: {why}. `gfa doctor` says what is missing. To run it \
             on the CPU anyway, drop --require-cuda (make reproduce: DEVICE=cpu make reproduce).",
            spec.name,
            calibrate::fmt_hours(hours)
        );
        return Ok(3);
    }
    let exp = write_plan(&spec, &runs, &args.grid.results)?;
    println!("wrote {}", exp.manifest().display());
    if args.emit == Some(Emit::Slurm) {
        let script = slurm_script(
            &spec,
            &runs,
            &args.grid.file,
            &args.grid.set,
            &args.grid.results,
            args.tasks,
        )?;
        let p = exp.root.join("slurm.sh");
        write_atomic(&p, script.as_bytes())?;
        println!("wrote {}", p.display());
    }
    Ok(0)
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// An sbatch job-array script running the plan's runs.
pub fn slurm_script(
    spec: &ExperimentSpec,
    runs: &[RunSpec],
    file: &Path,
    set: &[String],
    results: &Path,
    tasks: Option<usize>,
) -> Result<String> {
    let mut common = format!(
        "gfa run {} --results {} --quiet",
        shell_quote(&file.display().to_string()),
        shell_quote(&results.display().to_string())
    );
    for s in set {
        let _ = write!(common, " --set {}", shell_quote(s));
    }
    let mut out = String::new();
    let n = match tasks {
        Some(0) => bail!("--tasks must be at least 1"),
        Some(t) => t.min(runs.len().max(1)),
        None => runs.len(),
    };
    let _ = writeln!(out, "#!/bin/bash");
    let _ =
        writeln!(out, "# gfa experiment `{}`: {} runs in {n} array tasks.", spec.name, runs.len());
    let _ = writeln!(out, "#SBATCH --job-name=gfa-{}", spec.name);
    let _ = writeln!(out, "#SBATCH --array=1-{n}");
    let _ = writeln!(out, "#SBATCH --output={}/%x-%a.log", results.join(&spec.name).display());
    let _ = writeln!(out, "set -euo pipefail");
    if tasks.is_some() {
        let _ = writeln!(out, "{common} --shard \"${{SLURM_ARRAY_TASK_ID}}/{n}\"");
    } else {
        let ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
        let _ = writeln!(out, "IDS=({})", ids.join(" "));
        let _ = writeln!(out, "{common} --only \"${{IDS[$((SLURM_ARRAY_TASK_ID - 1))]}}\"");
    }
    Ok(out)
}

fn list(what: ListWhat) {
    match what {
        ListWhat::Models => {
            for m in gfa_core::models::catalog() {
                println!(
                    "{:<16} {:>11} params  taps: {}  ({})",
                    m.name,
                    m.parameters,
                    m.taps.join(","),
                    m.description
                );
            }
        }
        ListWhat::Methods => {
            for m in gfa_core::Method::list() {
                let also = if m.unwritten.is_empty() {
                    String::new()
                } else {
                    format!("\n            also: {}", m.unwritten.join(", "))
                };
                println!(
                    "{:<11} {:>4} grad/step  {}\n            e.g. {}{also}",
                    m.kind,
                    m.grads_per_step,
                    m.summary,
                    spec::method_inline(&spec::json_table(&m.example))
                );
            }
        }
        ListWhat::Attacks => {
            for a in gfa_attacks::registry::list() {
                let norms: Vec<String> = a.norms.iter().map(|n| n.to_string()).collect();
                let f = a.facts;
                println!(
                    "{:<11} {} ({:?}, {:?}, {:?}) norms: {}  defaults: {}",
                    a.kind,
                    f.algorithm.name(),
                    f.family,
                    f.access,
                    f.steps,
                    norms.join(","),
                    a.defaults
                );
            }
        }
        ListWhat::Presets => spec::PRESETS.iter().for_each(|m| println!("{m}")),
        ListWhat::Sections => spec::RUN_SECTIONS.iter().for_each(|m| println!("{m}")),
    }
}
