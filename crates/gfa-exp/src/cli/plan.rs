//! `gfa plan`: the numbered runs of an experiment with their estimated cost, the plan's files,
//! and (`--emit slurm`) a job-array script.

use std::fmt::Write as _;

use anyhow::{Result, bail};
use gfa_data::atomic::write_atomic;

use crate::cli::args::{Emit, PlanArgs};
use crate::cli::calibrate;
use crate::config::cost;
use crate::config::grid::{RunSpec, load};
use crate::results::plan::write_plan;
use crate::run::{runner, schedule};

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
        row.push(fmt_cost(cost::estimate_cost(r)));
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

pub fn plan(args: &PlanArgs, choice: gfa_core::DeviceChoice) -> Result<i32> {
    let (spec, runs) = load(&args.grid.file, &args.grid.set, args.grid.max_runs)?;
    let device = choice.resolve()?;
    let workers = match (args.jobs, spec.jobs) {
        (Some(0), _) => bail!("--jobs 0: give the number of workers, at least 1"),
        (Some(j), _) => j,
        (None, Some(j)) => j.clamp(1, runs.len().max(1)),
        (None, None) => 1,
    };
    if workers > 1 {
        // Each worker of `gfa run --jobs N` has cores / N threads: time the models so.
        tch::set_num_threads((crate::run::jobs::cores() / workers).max(1) as i32);
    }
    let cal = calibrate::calibrate(&runs, device)?;
    print!("{}", plan_table(&runs, Some(&cal)));
    let total: f64 = runs.iter().map(cost::estimate_cost).sum();
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
    let costs: schedule::Costs = runs.iter().map(|r| (r.run_id.clone(), cal.seconds(r))).collect();
    let all: Vec<&RunSpec> = runs.iter().collect();
    let two = runner::trains_first(&all, &runner::RunOptions::default());
    println!(
        "predicted wall time with {workers} worker{} (gfa run --jobs {workers}): {} with the \
         longest runs first ({} in the grid's order)",
        if workers == 1 { "" } else { "s" },
        schedule::clock(schedule::predict(&all, &costs, workers, two, true)),
        schedule::clock(schedule::predict(&all, &costs, workers, two, false)),
    );
    if runs.iter().any(|r| !r.attacks.is_empty()) {
        println!("  (the evaluation's cost assumes {})", cost::ASSUMED.describe());
    }
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
        let slurm = spec.slurm.merged(&args.slurm.section());
        slurm.check().map_err(|(key, m)| {
            anyhow::anyhow!("--slurm-{}: {m}", key.replace("cpus_per_task", "cpus"))
        })?;
        let inputs = crate::cli::slurm::ScriptInputs {
            file: &args.grid.file,
            results: &args.grid.results,
            set: &args.grid.set,
            device: choice,
            tasks: args.tasks,
            slurm,
            hours: runs.iter().map(|r| cal.hours(r)).collect(),
            binary: std::env::current_exe()
                .map_err(|e| anyhow::anyhow!("locating the gfa binary for the script: {e}"))?,
        };
        let script = crate::cli::slurm::script(&spec, &runs, &inputs)?;
        let p = exp.root.join("slurm.sh");
        write_atomic(&p, script.as_bytes())?;
        // Slurm opens the task logs in a folder that must exist.
        let logs = exp.root.join("slurm-logs");
        std::fs::create_dir_all(&logs)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", logs.display()))?;
        println!(
            "wrote {}; submit it with: sbatch {}",
            p.display(),
            std::path::absolute(&p)?.display()
        );
    }
    Ok(0)
}
