//! `gfa plan --emit slurm`: an sbatch job-array script that runs the plan as written, from any
//! folder, and what a Slurm task tells `gfa run`.
//!
//! The script names everything absolutely: the binary that wrote it (`GFA_BIN` in the
//! environment overrides it), the experiment file, the results root, the task logs
//! (`<results>/<experiment>/slurm-logs/<job name>-<job id>_<task>.log`, so a second
//! submission keeps its own). It passes the `--set` overrides and `--device`, and `exec`s gfa,
//! so that `scancel` and the time limit's SIGTERM reach it (the run is then marked
//! interrupted; submitting the script again resumes it, see `signals`). The task log holds
//! gfa's progress: one line per stage and epoch.
//!
//! Resources come from the experiment file's `[slurm]` section ([`SlurmSection`]), each
//! overridden by its `--slurm-*` flag: partition, account, time per task, CPUs per task (gfa's
//! libtorch threads follow `SLURM_CPUS_PER_TASK`), memory, GPUs per task (`--gres=gpu:N`, the
//! task's `CUDA_VISIBLE_DEVICES` passed as `--devices`) and extra `#SBATCH` lines. Without a
//! time, each task gets the calibrated estimate of its runs ([`default_time`]).
//!
//! A task that finds its run held by another process (two submissions on one folder) waits
//! for it as long as its own time limit (`--wait-locked`), then finishes or resumes it; still
//! held then, it exits with code 3, so Slurm shows the task FAILED.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::grid::{ExperimentSpec, RunSpec};
use crate::config::slurm::{SlurmSection, time_seconds};
use crate::run::signals::shell_quote;
use anyhow::{Context, Result, bail};
use gfa_core::DeviceChoice;

/// The default time limit of a task whose runs are estimated at `hours`: 1.5 times the
/// estimate plus 10 minutes (calibration is a short timing, and data loading, checkpoints and
/// the checks are not in it), in whole minutes. `None` when the estimate is not a number.
pub fn default_time(hours: f64) -> Option<u64> {
    if !hours.is_finite() || hours < 0.0 {
        return None;
    }
    Some(((hours * 1.5 * 60.0).ceil() as u64 + 10) * 60)
}

/// `H:MM:SS` (hours past 24 included), as sbatch reads it.
fn hms(secs: u64) -> String {
    format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// What the script is made of, besides the plan's runs.
#[derive(Debug, Clone)]
pub struct ScriptInputs<'a> {
    /// The experiment file and the results root, as given (made absolute here).
    pub file: &'a Path,
    pub results: &'a Path,
    pub set: &'a [String],
    /// The `--device` given to `plan` (`auto`: none passed on).
    pub device: DeviceChoice,
    /// `--tasks`: that many tasks each running `--shard i/n`; `None`: one task per run.
    pub tasks: Option<usize>,
    /// `[slurm]` with the `--slurm-*` flags applied.
    pub slurm: SlurmSection,
    /// Each run's calibrated hours, in the order of the runs.
    pub hours: Vec<f64>,
    /// The gfa binary the script runs (`GFA_BIN` overrides it at submission).
    pub binary: PathBuf,
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("making {} absolute", p.display()))
}

/// An sbatch job-array script running the plan's runs (see the module documentation). It is
/// one function of just over 100 lines because it writes the script top to bottom, a line per
/// `#SBATCH` setting and per shell step, in the order sbatch reads them.
pub fn script(spec: &ExperimentSpec, runs: &[RunSpec], inp: &ScriptInputs) -> Result<String> {
    let n = match inp.tasks {
        Some(0) => bail!("--tasks must be at least 1"),
        Some(t) => t.min(runs.len().max(1)),
        None => runs.len(),
    };
    let file = absolute(inp.file)?;
    let results = absolute(inp.results)?;
    let logs = results.join(&spec.name).join("slurm-logs");
    let s = &inp.slurm;
    // The longest task's estimate (a shard holds every n-th run).
    let task_hours = |i: usize| -> f64 {
        inp.hours.iter().enumerate().filter(|(k, _)| k % n == i).map(|(_, h)| *h).sum()
    };
    let estimate = (0..n).map(task_hours).fold(0.0, f64::max);
    let time = match &s.time {
        Some(t) => Some(time_seconds(t).map_err(anyhow::Error::msg)?),
        None => default_time(estimate),
    };

    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "#!/bin/bash");
    let per = if inp.tasks.is_some() { "a shard each (--shard)" } else { "one run each (--only)" };
    let _ = writeln!(
        w,
        "# gfa experiment `{}`: {} runs in {n} array tasks, {per}.",
        spec.name,
        runs.len()
    );
    let _ = writeln!(w, "# Written by `gfa plan --emit slurm`; submit it from any folder:");
    let _ = writeln!(w, "#   sbatch {}", results.join(&spec.name).join("slurm.sh").display());
    let _ = writeln!(
        w,
        "# A task stopped by scancel or its time limit marks its run interrupted; submitting\n\
         # the script again resumes it and skips finished runs. GFA_BIN overrides the binary."
    );
    let _ = writeln!(w, "#SBATCH --job-name=gfa-{}", spec.name);
    let _ = writeln!(w, "#SBATCH --array=1-{n}");
    let _ = writeln!(w, "#SBATCH --output={}/%x-%A_%a.log", logs.display());
    if let Some(t) = &s.time {
        let _ = writeln!(w, "#SBATCH --time={t}");
    } else if let Some(t) = time {
        let _ =
            writeln!(w, "# --time: 1.5 x the longest task's calibrated {estimate:.2} h + 10 min");
        let _ = writeln!(w, "#SBATCH --time={}", hms(t));
    }
    let _ = writeln!(w, "#SBATCH --cpus-per-task={}", s.cpus_per_task.unwrap_or(1));
    if let Some(m) = &s.mem {
        let _ = writeln!(w, "#SBATCH --mem={m}");
    }
    if let Some(p) = &s.partition {
        let _ = writeln!(w, "#SBATCH --partition={p}");
    }
    if let Some(a) = &s.account {
        let _ = writeln!(w, "#SBATCH --account={a}");
    }
    if let Some(g) = s.gpus {
        let _ = writeln!(w, "#SBATCH --gres=gpu:{g}");
    }
    for e in &s.extra {
        let _ = writeln!(w, "#SBATCH {e}");
    }
    let _ = writeln!(w, "set -euo pipefail");
    let _ = writeln!(
        w,
        "GFA=\"${{GFA_BIN:-{}}}\"",
        inp.binary.display().to_string().replace(['"', '$', '`', '\\'], "")
    );
    let mut cmd = String::from("exec \"$GFA\"");
    if s.gpus.is_some() {
        let _ = writeln!(
            w,
            "# Slurm lists the task's GPUs in CUDA_VISIBLE_DEVICES; gfa sees them as cuda:0, …\n\
             ngpu=$(tr ',' '\\n' <<< \"${{CUDA_VISIBLE_DEVICES:?Slurm gave this task no GPU}}\" \
             | wc -l)\n\
             DEVICES=$(seq -s, -f 'cuda:%.0f' 0 $((ngpu - 1)))"
        );
    } else if inp.device != DeviceChoice::Auto {
        let _ = write!(cmd, " --device {}", shell_quote(&inp.device.to_string()));
    }
    let _ = write!(
        cmd,
        " run {} --results {}",
        shell_quote(&file.display().to_string()),
        shell_quote(&results.display().to_string())
    );
    for o in inp.set {
        let _ = write!(cmd, " --set {}", shell_quote(o));
    }
    if s.gpus.is_some() {
        cmd.push_str(" --devices \"$DEVICES\"");
    }
    // Wait for a run another submission holds as long as the task may run.
    let _ = write!(cmd, " --wait-locked {}", time.unwrap_or(24 * 3600));
    if inp.tasks.is_some() {
        let _ = writeln!(w, "{cmd} --shard \"${{SLURM_ARRAY_TASK_ID}}/{n}\"");
    } else {
        let ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
        let _ = writeln!(w, "IDS=({})", ids.join(" "));
        let _ = writeln!(w, "{cmd} --only \"${{IDS[$((SLURM_ARRAY_TASK_ID - 1))]}}\"");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_time_is_the_estimate_with_a_margin() {
        // 1.5 x 2 h + 10 min = 190 min.
        assert_eq!(default_time(2.0), Some(190 * 60));
        assert_eq!(default_time(f64::NAN), None);
    }
}
