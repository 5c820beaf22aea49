//! `gfa run` and `gfa escalate`: an experiment's pending runs, worked in this process or by
//! `--jobs N` worker processes ([`crate::run::jobs`]); then the `[escalate]` rule on them.

use anyhow::{Result, bail};
use gfa_core::DeviceChoice;
use tch::Device;

use crate::cli::args::{EscalateArgs, Order, RunArgs};
use crate::cli::calibrate::calibrate;
use crate::cli::{NumericsFlags, announce};
use crate::config::grid::{RunSpec, load};
use crate::results::plan::write_plan;
use crate::results::store::{ExperimentDir, Stage, Status};
use crate::results::timing::GridTiming;
use crate::run::escalate;
use crate::run::jobs::{JobFlags, Jobs, Pool, WorkerArgs, cores, slurm_cpus_per_task};
use crate::run::monitor::{Monitor, Show};
use crate::run::runner::{self, RunOptions, RunSummary};
use crate::run::schedule;
use crate::run::signals;
use crate::run::stages::TorchStages;

impl RunArgs {
    /// The flags that size the worker pool.
    pub fn job_flags(&self) -> JobFlags {
        JobFlags { jobs: self.jobs, devices: self.devices.clone(), threads: self.threads }
    }
}

/// `gfa run`: the exit code is 1 when a run failed.
pub fn run_command(args: &RunArgs, device: DeviceChoice, flags: NumericsFlags) -> Result<i32> {
    let (spec, runs) = load(&args.grid.file, &args.grid.set, args.grid.max_runs)?;
    let opts = RunOptions {
        only: args.only.clone(),
        shard: args.shard,
        monitor: Monitor::default(),
        train_only: args.train_only,
        wait_locked: args.wait_locked.map(std::time::Duration::from_secs),
        costs: None,
    };
    runner::check_only(&runs, &opts.only)?;
    let selected = runner::select(&runs, &opts).len();
    let jobs = Jobs::resolve(
        &args.job_flags(),
        spec.jobs,
        selected,
        device,
        cores(),
        slurm_cpus_per_task(),
    )?;
    // The numerics of the flags or the grid's `[run]`, for the device this process works on
    // (`--jobs` workers get them as flags).
    flags.apply(spec.numerics, jobs.devices[0])?;
    let exp = write_plan(&spec, &runs, &args.grid.results)?;
    signals::install(signals::Announce { command: signals::command_line(), worker: args.worker })?;
    if let Some(t) = jobs.threads {
        tch::set_num_threads(t as i32);
    }
    if !args.worker {
        announce_devices(args, &jobs, device)?;
    }
    let started = std::time::Instant::now();
    let (costs, wall) = order_runs(args, &exp, &runs, &opts, &jobs);
    let order = if costs.is_some() { Order::Lpt } else { Order::Arrival };
    let opts = RunOptions { costs, ..opts };
    let monitor = match (args.worker, args.quiet) {
        (_, true) => Monitor::with(Show::Quiet),
        (true, false) => Monitor::with(Show::Worker),
        (false, false) => Monitor::new(false),
    };
    let opts = RunOptions { monitor: monitor.clone(), ..opts };
    let summary = if jobs.jobs == 1 {
        let mut stages = TorchStages { device: jobs.devices[0], monitor };
        runner::run_grid(&exp, &runs, &mut stages, &opts)?
    } else {
        let worker = WorkerArgs {
            file: args.grid.file.clone(),
            set: args.grid.set.clone(),
            results: args.grid.results.clone(),
            quiet: args.quiet,
            wait_locked: args.wait_locked,
        };
        let pool = Pool { args: &worker, jobs: &jobs, exp: &exp, monitor: &monitor };
        pool.run_grid(&runs, &opts)?
    };
    if args.worker {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        let timing = GridTiming {
            workers: jobs.jobs,
            order: format!("{order:?}").to_lowercase(),
            predicted_s: wall,
            measured_s: started.elapsed().as_secs_f64(),
            runs_done: summary.done.len(),
        };
        timing.write(&exp)?;
        println!("{}", timing.line());
        println!(
            "{} runs done, {} already done, {} failed, {} locked by another process",
            summary.done.len(),
            summary.already_done.len(),
            summary.failed.len(),
            summary.locked.len()
        );
        for (id, e) in &summary.failed {
            eprintln!("failed {id}: {e}");
        }
    }
    Ok(exit_code(args, &summary))
}

/// The announcement of where the work runs: `--device`, or each of `--devices`.
fn announce_devices(args: &RunArgs, jobs: &Jobs, device: DeviceChoice) -> Result<()> {
    if args.devices.is_empty() {
        announce(device)?;
    } else {
        // The work goes to the --devices, not to --device.
        let each: Vec<String> = jobs
            .devices
            .iter()
            .map(|d| gfa_core::device::describe(*d) + &crate::cli::numerics_text(*d))
            .collect();
        println!("devices: {}", each.join("; "));
    }
    Ok(())
}

/// Longest runs first: the pending runs' costs, calibrated on the workers' device with the
/// workers' threads (a worker works one run: nothing to order), and the predicted wall time,
/// printed. `(None, None)`: the grid's order.
fn order_runs(
    args: &RunArgs,
    exp: &ExperimentDir,
    runs: &[RunSpec],
    opts: &RunOptions,
    jobs: &Jobs,
) -> (Option<schedule::Costs>, Option<f64>) {
    let selected = runner::select(runs, opts);
    let costs = match (args.order, args.worker) {
        (Order::Lpt, false) => match pending_costs(exp, &selected, jobs.devices[0]) {
            Ok(costs) => costs,
            Err(e) => {
                eprintln!(
                    "warning: timing the grid's models failed ({e:#}): taking the runs in the \
                     grid's order"
                );
                return (None, None);
            }
        },
        _ => return (None, None),
    };
    let two = runner::trains_first(&selected, opts) && !opts.train_only;
    let predicted = schedule::predict(&selected, &costs, jobs.jobs, two, true);
    if predicted <= 0.0 {
        return (Some(costs), None);
    }
    println!(
        "predicted wall time {} with {} worker{} (longest runs first, calibrated costs; `gfa \
         plan` says how)",
        schedule::clock(predicted),
        jobs.jobs,
        if jobs.jobs == 1 { "" } else { "s" }
    );
    (Some(costs), Some(predicted))
}

/// `gfa run`'s exit code: 1 when a run failed, 3 when runs waited for are still held by
/// another process, else 0.
fn exit_code(args: &RunArgs, summary: &RunSummary) -> i32 {
    match (summary.failed.is_empty(), summary.locked.is_empty()) {
        (false, _) => 1,
        // Waited for and still held: a scheduler should show that this task did not finish.
        (true, false) if args.wait_locked.is_some() => {
            if !args.worker {
                eprintln!(
                    "error: {} still held by another process after --wait-locked {} s: {}; \
                     rerun once that process ends",
                    if summary.locked.len() == 1 { "a run is" } else { "runs are" },
                    args.wait_locked.unwrap_or(0),
                    summary.locked.join(", ")
                );
            }
            3
        }
        (true, _) => 0,
    }
}

/// The calibrated seconds still to spend on each of `selected` on `device` (0 for a part a
/// previous call finished): `gfa plan`'s calibration, one short timed pass per model.
fn pending_costs(
    exp: &ExperimentDir,
    selected: &[&RunSpec],
    device: Device,
) -> Result<schedule::Costs> {
    let todo: Vec<RunSpec> = selected.iter().map(|r| (*r).clone()).collect();
    let cal = calibrate(&todo, device)?;
    let mut costs = schedule::Costs::new();
    for r in selected {
        let dir = exp.run(&r.run_id);
        let (train, eval) = cal.seconds(r);
        let finished = dir.status() == Status::Done && Stage::ALL.iter().all(|s| dir.has(*s));
        let train = if dir.has(Stage::Trained) { 0.0 } else { train };
        costs.insert(r.run_id.clone(), (train, if finished { 0.0 } else { eval }));
    }
    Ok(costs)
}

/// `gfa escalate FILE`: the file's `[escalate]` rule on its evaluated runs.
pub fn escalate_command(
    args: &EscalateArgs,
    device: DeviceChoice,
    flags: NumericsFlags,
) -> Result<i32> {
    let (spec, runs) = load(&args.grid.file, &args.grid.set, args.grid.max_runs)?;
    flags.apply(spec.numerics, device.resolve()?)?;
    let Some(esc) = &spec.escalate else {
        bail!(
            "{} has no [escalate] table, so no run is escalated: add one (experiments/README.md \
             shows the keys)",
            args.grid.file.display()
        );
    };
    runner::check_only(&runs, &args.only)?;
    let exp = ExperimentDir::new(&args.grid.results, &spec.name);
    let monitor = Monitor::new(args.quiet);
    let mut stages = TorchStages { device: announce(device)?, monitor: monitor.clone() };
    let opts = runner::RunOptions { only: args.only.clone(), monitor, ..Default::default() };
    let done = escalate::escalate(&exp, &runs, esc, &mut stages, &opts)?;
    println!("{} runs escalated", done.len());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::jobs::Jobs;
    use clap::Parser;

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["gfa", "run", "x.toml"];
        argv.extend_from_slice(extra);
        match crate::cli::args::Cli::parse_from(argv).command {
            crate::cli::args::Command::Run(a) => a,
            _ => unreachable!(),
        }
    }

    fn resolve(extra: &[&str], file: Option<usize>, runs: usize) -> Result<Jobs> {
        Jobs::resolve(&args(extra).job_flags(), file, runs, DeviceChoice::Cpu, 8, None)
    }

    #[test]
    fn a_slurm_task_takes_its_cpus_as_threads() {
        let slurm = |extra: &[&str], runs| {
            let flags = args(extra).job_flags();
            Jobs::resolve(&flags, None, runs, DeviceChoice::Cpu, 3, Some(3)).unwrap()
        };
        assert_eq!(slurm(&[], 1).threads, Some(3));
        assert_eq!(slurm(&["--threads", "2"], 1).threads, Some(2));
        assert_eq!(slurm(&["--jobs", "3"], 4).threads, Some(1));
    }

    #[test]
    fn jobs_threads_and_their_errors() {
        let j = resolve(&[], None, 4).unwrap();
        assert_eq!((j.jobs, j.threads, j.devices), (1, None, vec![Device::Cpu]));
        let j = resolve(&["--jobs", "2"], None, 4).unwrap();
        assert_eq!((j.jobs, j.threads), (2, Some(4)));
        let j = resolve(&["--jobs", "3", "--threads", "1"], None, 4).unwrap();
        assert_eq!((j.jobs, j.threads), (3, Some(1)));
        // The file's wish is capped at the selection; the flag wins over the file.
        assert_eq!(resolve(&[], Some(4), 1).unwrap().jobs, 1);
        assert_eq!(resolve(&["--jobs", "2"], Some(4), 4).unwrap().jobs, 2);
        let e = resolve(&["--jobs", "0"], None, 4).unwrap_err().to_string();
        assert!(e.contains("--jobs 0") && e.contains("at least 1"), "{e}");
        let e = resolve(&["--jobs", "5"], None, 4).unwrap_err().to_string();
        assert!(e.contains("only 4 runs") && e.contains("--jobs 4 or fewer"), "{e}");
        let e = resolve(&["--threads", "0"], None, 4).unwrap_err().to_string();
        assert!(e.contains("--threads 0"), "{e}");
    }

    #[test]
    fn devices_set_the_default_jobs_and_a_missing_gpu_is_an_error() {
        let j = resolve(&["--devices", "cpu,cpu"], None, 4).unwrap();
        assert_eq!((j.jobs, j.devices.len()), (2, 2));
        if !gfa_core::device::cuda_available() {
            let e = resolve(&["--devices", "cpu,cuda:0"], None, 4).unwrap_err();
            let e = format!("{e:#}");
            assert!(e.contains("--devices: cuda:0") && e.contains("cuda:0"), "{e}");
        }
        let n = gfa_core::device::cuda_device_count();
        let missing = format!("cuda:{}", n + 7);
        let e = resolve(&["--devices", &missing], None, 4).unwrap_err();
        assert!(format!("{e:#}").contains(&missing), "{e:#}");
    }
}
