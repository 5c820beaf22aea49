//! The worker pool of `gfa run --jobs N`: the run's work spread over worker processes.
//!
//! With `--jobs N` (or `[run] jobs = N` in the experiment file) the command starts up to N
//! children of the same binary at once, each working one run (`--only <id>`) with its share of
//! the cores (`--threads`, `OMP_NUM_THREADS`) or its own device (`--devices cuda:0,cuda:1`).
//! The parent keeps the grid's progress bar, passes each child's lines through, and records a
//! child that dies without a word (a crash, a kill) as that run's failure. Everything a child
//! writes goes through the same runner as a single process (the run's lock, atomic files, the
//! experiment's lock for the collected CSVs), so the results are those of `--jobs 1` (bit for
//! bit where libtorch's thread count does not change the arithmetic).
//!
//! An all-correct grid (`eval.subset = "all_correct"`), or one with a transfer attack (whose
//! surrogate must be trained first), runs in two phases: every selected run
//! is trained first (workers with `--train-only`), then each is evaluated on the intersection.
//! Runs that share one training (`train_key`) are never in flight together: the second waits
//! and takes the first's checkpoint.
//!
//! Every flag is checked before any work starts: `--jobs 0`, more jobs than selected runs, or a
//! `--devices` entry naming a GPU that does not exist are errors that write nothing.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;

use anyhow::{Context, Result, anyhow, bail};
use gfa_core::DeviceChoice;
use tch::Device;

use crate::config::grid::RunSpec;
use crate::config::spec::Subset;
use crate::results::store::{ExperimentDir, Stage, Status};
use crate::run::monitor::Monitor;
use crate::run::runner::{self, RunOptions, RunSummary};
use crate::run::schedule::{self, Dispatch, Part};

/// What the command line asks of the pool: `--jobs`, `--devices`, `--threads`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobFlags {
    pub jobs: Option<usize>,
    pub devices: Vec<DeviceChoice>,
    pub threads: Option<usize>,
}

/// The `gfa run` command line a worker process is started with: the experiment file, its
/// `--set` overrides, the results folder and `--quiet`.
#[derive(Debug, Clone)]
pub struct WorkerArgs {
    pub file: PathBuf,
    pub set: Vec<String>,
    pub results: PathBuf,
    pub quiet: bool,
    /// `--wait-locked`, passed on.
    pub wait_locked: Option<u64>,
}

/// How many runs at once, where, with how many threads each.
#[derive(Debug, Clone, PartialEq)]
pub struct Jobs {
    pub jobs: usize,
    /// Worker k runs on `devices[k % len]` (one entry: every worker on it).
    pub devices: Vec<Device>,
    /// libtorch threads of each process (`None`: libtorch's default, all cores).
    pub threads: Option<usize>,
}

/// `SLURM_CPUS_PER_TASK` of a Slurm task (set when the job asks for `--cpus-per-task`).
pub fn slurm_cpus_per_task() -> Option<usize> {
    std::env::var("SLURM_CPUS_PER_TASK").ok()?.trim().parse().ok().filter(|n| *n > 0)
}

/// The cores this process may use: a Slurm task's `SLURM_CPUS_PER_TASK` (what it was given,
/// whether or not the cluster confines it to them), else the cores the OS lets it run on.
pub fn cores() -> usize {
    slurm_cpus_per_task()
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

impl Jobs {
    /// Check `--jobs`, `--devices` and `--threads` against the selection (`runs` selected runs)
    /// and the machine. `file_jobs` is `[run] jobs` of the experiment file: a wish, capped at
    /// the selection (so `--only` works on a grid that asks for 4), where the flag is a demand.
    /// `slurm_cpus` is a Slurm task's `SLURM_CPUS_PER_TASK`: one process uses that many
    /// threads (libtorch's default would take every core of the node).
    pub fn resolve(
        args: &JobFlags,
        file_jobs: Option<usize>,
        runs: usize,
        device: DeviceChoice,
        cores: usize,
        slurm_cpus: Option<usize>,
    ) -> Result<Jobs> {
        let devices = if args.devices.is_empty() {
            vec![device.resolve()?]
        } else {
            let mut out = Vec::new();
            for d in &args.devices {
                out.push(d.resolve().with_context(|| format!("--devices: {d}"))?);
            }
            out
        };
        let jobs = match (args.jobs, file_jobs) {
            (Some(0), _) => bail!("--jobs 0: give the number of runs to work at once, at least 1"),
            (Some(j), _) if j > runs.max(1) => bail!(
                "--jobs {j}: the selection has only {runs} run{}; use --jobs {} or fewer",
                if runs == 1 { "" } else { "s" },
                runs.max(1)
            ),
            (Some(j), _) => j,
            (None, Some(j)) => j.clamp(1, runs.max(1)),
            (None, None) if !args.devices.is_empty() => devices.len().min(runs.max(1)),
            (None, None) => 1,
        };
        let threads = match args.threads {
            Some(0) => bail!("--threads 0: give the number of libtorch threads, at least 1"),
            Some(t) => Some(t),
            None if jobs > 1 => Some((cores / jobs).max(1)),
            None => slurm_cpus,
        };
        Ok(Jobs { jobs, devices, threads })
    }
}

/// What a worker process was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Train only (an all-correct grid's first phase).
    Train,
    /// Every stage.
    All,
}

/// A worker that ended: its run, its slot, how it exited, its summary (when it printed one)
/// and its last lines on stderr.
struct Finished {
    run_id: String,
    slot: usize,
    status: std::io::Result<ExitStatus>,
    summary: Option<RunSummary>,
    tail: Vec<String>,
}

/// The worker processes of one `gfa run --jobs N`.
pub struct Pool<'a> {
    pub args: &'a WorkerArgs,
    pub jobs: &'a Jobs,
    pub exp: &'a ExperimentDir,
    pub monitor: &'a Monitor,
}

impl Pool<'_> {
    /// The parallel counterpart of [`runner::run_grid`]: the same phases and summary.
    pub fn run_grid(&self, runs: &[RunSpec], opts: &RunOptions) -> Result<RunSummary> {
        let selected = runner::select(runs, opts);
        let compare = runner::trains_first(&selected, opts);
        let two_phases = compare && !opts.train_only;
        let threads = match self.jobs.threads {
            Some(t) => format!("{t} libtorch thread{} each", if t == 1 { "" } else { "s" }),
            None => "libtorch's default threads".into(),
        };
        let devices: Vec<String> =
            self.jobs.devices.iter().map(|d| gfa_core::device::device_name(*d)).collect();
        self.monitor.line(&format!(
            "{} runs with {} worker processes, {threads} (on {})",
            selected.len(),
            self.jobs.jobs,
            devices.join(", ")
        ));
        self.monitor.set_total(selected.len() as u64 * (1 + u64::from(two_phases)));
        let mut summary = RunSummary::default();
        if compare {
            let mut trained = RunSummary::default();
            let todo: Vec<&RunSpec> = selected
                .iter()
                .copied()
                .filter(|r| {
                    let done = self.exp.run(&r.run_id).has(Stage::Trained);
                    if done {
                        self.monitor.inc();
                    }
                    !done
                })
                .collect();
            self.work(todo, Phase::Train, (opts, Part::Train), &mut trained)?;
            summary.failed = trained.failed;
            summary.locked = trained.locked;
            if opts.train_only {
                self.monitor.finish();
                return Ok(summary);
            }
        }
        let mut todo = Vec::new();
        for run in selected {
            let skip = summary.locked.contains(&run.run_id)
                || summary.failed.iter().any(|(id, _)| id == &run.run_id);
            // A finished run needs no worker, except on an all-correct grid, where the worker
            // checks whether the intersection it was evaluated on still holds.
            let dir = self.exp.run(&run.run_id);
            let finished = dir.status() == Status::Done && Stage::ALL.iter().all(|s| dir.has(*s));
            if finished && run.config.eval.subset == Subset::All {
                summary.already_done.push(run.run_id.clone());
            }
            if skip || (finished && run.config.eval.subset == Subset::All) {
                self.monitor.inc();
            } else {
                todo.push(run);
            }
        }
        let part = if two_phases { Part::Eval } else { Part::Whole };
        self.work(todo, Phase::All, (opts, part), &mut summary)?;
        crate::results::store::collect_all(self.exp)?;
        self.monitor.finish();
        Ok(summary)
    }

    /// Work `todo` with up to `jobs` workers at once; their outcomes go into `summary`.
    /// The runs go out longest first ([`schedule::Dispatch`] over [`schedule::order`]).
    /// `part` of their costs (`opts.costs`) orders them.
    fn work(
        &self,
        todo: Vec<&RunSpec>,
        phase: Phase,
        (opts, part): (&RunOptions, Part),
        summary: &mut RunSummary,
    ) -> Result<()> {
        // The runs this pool has still to finish.
        let mut unfinished: Vec<String> = todo.iter().map(|r| r.run_id.clone()).collect();
        let queue = schedule::order(todo, opts.costs.as_ref(), part);
        let mut dispatch = Dispatch::new(queue, self.jobs.jobs);
        let mut in_flight: Vec<&RunSpec> = Vec::new();
        let (tx, rx) = mpsc::channel::<Finished>();
        loop {
            // Runs sharing one training: the second waits and takes the first's model. A run
            // that starts from another run's weights waits for that source's training when the
            // pool works it (else its worker trains it first).
            let failed: Vec<String> = summary.failed.iter().map(|(id, _)| id.clone()).collect();
            while let Some((run, slot)) = dispatch.next(|r| {
                let shares = in_flight.iter().any(|f| f.train_key() == r.train_key());
                let trained = self.exp.run(&r.run_id).has(Stage::Trained);
                (!shares || trained)
                    && source_ready(r, &unfinished, &failed, |id| {
                        self.exp.run(id).has(Stage::Trained)
                    })
            }) {
                self.monitor.line(&format!(
                    "worker {slot} takes {} (seed {}{}{})",
                    run.run_id,
                    run.seed,
                    if run.axes.is_empty() { "" } else { "; " },
                    run.axes_text()
                ));
                self.spawn(run, slot, phase, tx.clone())?;
                in_flight.push(run);
                self.show_in_flight(&in_flight);
            }
            if in_flight.is_empty() {
                // What is left waits for a source that failed here.
                for run in dispatch.drain() {
                    let source = run.init.as_ref().and_then(|i| i.run_id()).unwrap_or_default();
                    let text = format!(
                        "not started: its [train] init source, run {source}, was not trained \
                         (its training, or its own source's, failed); rerun once it is"
                    );
                    let dir = self.exp.run(&run.run_id);
                    if let Some(_lock) = dir.try_lock()? {
                        dir.set_status(&Status::Failed(text.clone()))?;
                    }
                    self.monitor.line(&format!("run {}: {text}", run.run_id));
                    self.monitor.inc();
                    summary.failed.push((run.run_id.clone(), text));
                }
                return Ok(());
            }
            let f = rx.recv().map_err(|_| anyhow!("a worker's watcher thread died"))?;
            in_flight.retain(|r| r.run_id != f.run_id);
            unfinished.retain(|id| *id != f.run_id);
            dispatch.freed(f.slot);
            self.record(f, summary)?;
            self.monitor.inc();
            self.show_in_flight(&in_flight);
        }
    }

    fn show_in_flight(&self, in_flight: &[&RunSpec]) {
        let ids: Vec<&str> = in_flight.iter().map(|r| r.run_id.as_str()).collect();
        self.monitor.status(format!("working {}", ids.join(", ")));
    }

    /// The command line of the worker for `run` in slot `slot`.
    fn command(&self, run: &RunSpec, slot: usize, phase: Phase) -> Result<Command> {
        let exe = std::env::current_exe().context("locating the gfa binary for the workers")?;
        let device = self.jobs.devices[slot % self.jobs.devices.len()];
        let a = self.args;
        let mut cmd = Command::new(exe);
        cmd.arg("--device").arg(gfa_core::device::device_name(device));
        if let Some((asked, n)) = gfa_core::device::Numerics::applied() {
            cmd.arg("--precision").arg(asked.to_string());
            if n.deterministic {
                cmd.arg("--deterministic");
            }
        }
        cmd.arg("run");
        cmd.arg(&a.file).arg("--results").arg(&a.results);
        for s in &a.set {
            cmd.arg("--set").arg(s);
        }
        cmd.args(["--only", &run.run_id, "--jobs", "1", "--worker"]);
        if let Some(t) = self.jobs.threads {
            cmd.arg("--threads").arg(t.to_string());
            cmd.env("OMP_NUM_THREADS", t.to_string()).env("MKL_NUM_THREADS", t.to_string());
        }
        if phase == Phase::Train {
            cmd.arg("--train-only");
        }
        if a.quiet {
            cmd.arg("--quiet");
        }
        if let Some(w) = a.wait_locked {
            cmd.arg("--wait-locked").arg(w.to_string());
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        Ok(cmd)
    }

    /// Start the worker for `run`; a watcher thread passes its stderr lines on and reports its
    /// end on `done`.
    fn spawn(
        &self,
        run: &RunSpec,
        slot: usize,
        phase: Phase,
        done: mpsc::Sender<Finished>,
    ) -> Result<()> {
        let dir = self.exp.run(&run.run_id);
        let Some(mut child) =
            crate::run::signals::spawn(&mut self.command(run, slot, phase)?, &dir.path)
                .with_context(|| format!("starting the worker process for run {}", run.run_id))?
        else {
            // Stopping (SIGTERM or SIGINT): the signal's thread ends the process.
            return Ok(());
        };
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let monitor = self.monitor.clone();
        let run_id = run.run_id.clone();
        std::thread::spawn(move || {
            // stdout is read on its own thread so that neither pipe can fill and block the
            // worker.
            let out = std::thread::spawn(move || {
                let mut text = String::new();
                if let Some(mut s) = stdout {
                    let _ = s.read_to_string(&mut text);
                }
                text
            });
            let mut tail: VecDeque<String> = VecDeque::new();
            if let Some(s) = stderr {
                for line in BufReader::new(s).lines().map_while(|l| l.ok()) {
                    monitor.line(&line);
                    tail.push_back(line);
                    if tail.len() > 20 {
                        tail.pop_front();
                    }
                }
            }
            let status = child.wait();
            crate::run::signals::worker_ended(child.id());
            let text = out.join().unwrap_or_default();
            let summary = text.lines().rev().find_map(|l| serde_json::from_str(l).ok());
            let _ = done.send(Finished { run_id, slot, status, summary, tail: tail.into() });
        });
        Ok(())
    }

    /// Fold a worker's outcome into `summary`. A worker that printed no summary died (killed,
    /// crashed, or failed before its run began): that is the run's failure, recorded in its
    /// `status` like any other once its lock is free.
    fn record(&self, f: Finished, summary: &mut RunSummary) -> Result<()> {
        if let Some(s) = f.summary {
            summary.done.extend(s.done);
            summary.already_done.extend(s.already_done);
            summary.failed.extend(s.failed);
            summary.locked.extend(s.locked);
            return Ok(());
        }
        let how = match &f.status {
            Ok(s) => exit_text(s),
            Err(e) => format!("could not be waited for ({e})"),
        };
        let mut text = format!("the worker process {how}");
        if !f.tail.is_empty() {
            text.push_str(&format!("; its last lines:\n{}", f.tail.join("\n")));
        }
        let dir = self.exp.run(&f.run_id);
        // A worker stopped by SIGTERM or SIGINT marked its run interrupted (or this process
        // will, see `signals`): that is no failure of the run.
        if crate::run::signals::stopping() || matches!(dir.status(), Status::Interrupted(_)) {
            summary.failed.push((f.run_id, "interrupted".into()));
            return Ok(());
        }
        if let Some(_lock) = dir.try_lock()? {
            dir.set_status(&Status::Failed(text.clone()))?;
            dir.log(&format!("failed: {text}"));
        }
        self.monitor.line(&format!("run {} failed: {text}", f.run_id));
        summary.failed.push((f.run_id, text));
        Ok(())
    }
}

/// Whether `run` may start as far as its `[train] init` source is concerned: it has none, the
/// source is trained, or this pool does not work it (the run's worker then trains it first) —
/// not while the pool has still to finish it, and not once it failed here.
fn source_ready(
    run: &RunSpec,
    unfinished: &[String],
    failed: &[String],
    trained: impl Fn(&str) -> bool,
) -> bool {
    let Some(id) = run.init.as_ref().and_then(|i| i.run_id()) else { return true };
    trained(id) || !(unfinished.iter().any(|u| u == id) || failed.iter().any(|f| f == id))
}

/// How a process ended, in words.
fn exit_text(s: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        (None, None) => "ended".into(),
    }
}
