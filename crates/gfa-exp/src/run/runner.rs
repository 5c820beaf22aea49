//! `gfa run`: works the pending runs of an expansion, one at a time, stage by stage.
//!
//! Per run: take its lock (before writing anything of the run) → train (+ checkpoint) →
//! evaluate → masking checks. Each stage writes its CSV atomically and then its marker (see
//! `store`), so a rerun after a kill skips finished stages and redoes an interrupted one from
//! its start, never duplicating rows (training resumes from its last epoch's checkpoint;
//! an interrupted evaluation redoes only its unfinished batches: [`crate::run::batches`]). A
//! failing run (error or panic) gets `status = failed` and its error text; the grid goes on.
//! The stages themselves are behind the [`Stages`] trait so the machinery is testable without a
//! model. Stages and their timings go to the run's `log.txt` and to the [`Monitor`].
//!
//! Several processes may work one grid (`gfa run` twice, shards, `--jobs` workers): each run is
//! worked by the one holding its lock, and the experiment-level CSVs are collected under the
//! experiment's lock.
//!
//! `eval.subset = "all_correct"` compares models: it evaluates only the points every run of the
//! expansion evaluated on the same points classifies correctly (docs/method.md §6). Such a grid trains every
//! selected run first, then intersects the trained models' correct points, then evaluates; a run
//! evaluated on an intersection records its members (`all_correct` file) and is evaluated again
//! when they change.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};

use crate::analysis::masking::{GradHealth, masking_checks};
use crate::config::grid::RunSpec;
use crate::config::spec::Subset;
use crate::results::records::{
    CheckRow, EvalRow, GfaValueRow, IndicatorRow, NormRow, PointRow, TrainRow, read_rows,
    write_rows,
};
use crate::results::store::{
    ExperimentDir, RunDir, Shard, Stage, Status, TRAIN_STEPS, checkpoint_dir,
};
use crate::run::monitor::Monitor;
use crate::run::schedule::{self, Part};
use gfa_data::atomic::{remove_dead_temp_files, write_atomic, write_atomic_with};

/// What the evaluation stage produces.
#[derive(Debug, Clone, Default)]
pub struct EvalOutput {
    pub eval: Vec<EvalRow>,
    pub norms: Vec<NormRow>,
    /// Per `eval.csv` row, the per-point outcomes (`points.csv`).
    pub points: Vec<PointRow>,
    pub gfa_value: Vec<GfaValueRow>,
    pub grad_health: Option<GradHealth>,
    /// The loss landscape (`landscape.csv`), when the grid has a `[landscape]` section.
    pub landscape: Option<Vec<crate::results::records::LandscapeRow>>,
    /// The binarization test (`binarization.csv`), when the run has a `[binarize]` table.
    pub binarization: Option<Vec<crate::results::records::BinarizationRow>>,
    /// The Indicators of Attack Failure (`indicators.csv`), when the run asks for them.
    pub indicators: Option<Vec<IndicatorRow>>,
}

/// The work of one run, stage by stage.
pub trait Stages {
    /// Train the run's model, save its checkpoint under `dir`, return one row per epoch.
    fn train(&mut self, run: &RunSpec, dir: &RunDir) -> Result<Vec<TrainRow>>;
    /// For each of the run's evaluation points (the first `eval.n` test points), whether the
    /// trained model (loaded from `dir`) classifies it correctly.
    fn correct(&mut self, run: &RunSpec, dir: &RunDir) -> Result<Vec<bool>>;
    /// Evaluate the trained model (loaded from `dir`) with the run's attack suite. `keep`: with
    /// `subset = "all_correct"`, the points every compared model classifies correctly.
    fn evaluate(
        &mut self,
        run: &RunSpec,
        dir: &RunDir,
        keep: Option<&[bool]>,
    ) -> Result<EvalOutput>;
    /// The masking checks (docs/method.md §7) from the eval rows and the indicator rows (a pure
    /// function by default).
    fn checks(
        &mut self,
        run: &RunSpec,
        eval: &[EvalRow],
        grad: Option<GradHealth>,
        indicators: &[IndicatorRow],
    ) -> Result<Vec<CheckRow>> {
        let classes = run.config.model.num_classes as usize;
        Ok(masking_checks(&run.key(), eval, grad, classes, indicators))
    }
}

/// Which runs to work.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Only these run ids (all when empty).
    pub only: Vec<String>,
    pub shard: Option<Shard>,
    /// Where progress is shown (nothing by default).
    pub monitor: Monitor,
    /// Only train the selected runs (a `--jobs` worker's first phase on an all-correct grid).
    pub train_only: bool,
    /// `--wait-locked`: how long to wait, after the other runs, for the runs another process
    /// holds, then work them (finished by the holder, or resumed where a stopped holder left
    /// them). `None`: skip them.
    pub wait_locked: Option<std::time::Duration>,
    /// The runs' calibrated costs: pending runs are taken longest first
    /// ([`crate::run::schedule`]); `None` takes them in the grid's order.
    pub costs: Option<crate::run::schedule::Costs>,
}

/// What `run_grid` did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Runs finished by this call.
    pub done: Vec<String>,
    /// Runs already finished before this call.
    pub already_done: Vec<String>,
    /// Runs that failed: (run id, error).
    pub failed: Vec<(String, String)>,
    /// Runs another process holds.
    pub locked: Vec<String>,
}

/// Whether every selected run is trained before any is evaluated: the all-correct intersection
/// needs every compared model, a transfer attack its surrogate run (one outside the selection
/// must be trained by another shard or call first), a run that starts from another run's
/// weights (`[train] init`) that source (trained first, by this call if need be). `gfa run
/// --jobs` follows the same rule.
pub fn trains_first(selected: &[&RunSpec], opts: &RunOptions) -> bool {
    opts.train_only
        || selected.iter().any(|r| {
            r.config.eval.subset == Subset::AllCorrect
                || !r.surrogates.is_empty()
                || r.init.as_ref().is_some_and(|i| i.run_id().is_some())
        })
}

/// The runs of `runs` selected by `--only` / `--shard` (shards split the full expansion).
pub fn select<'a>(runs: &'a [RunSpec], opts: &RunOptions) -> Vec<&'a RunSpec> {
    runs.iter()
        .enumerate()
        .filter(|(k, _)| opts.shard.is_none_or(|s| s.contains(*k)))
        .filter(|(_, r)| opts.only.is_empty() || opts.only.iter().any(|o| r.run_id.starts_with(o)))
        .map(|(_, r)| r)
        .collect()
}

#[derive(Serialize, Deserialize)]
struct GradHealthFile {
    zero_frac: f64,
    nonfinite_frac: f64,
    n: usize,
}

/// How far [`visit`] takes a run.
#[derive(Clone, Copy)]
enum Upto<'a> {
    Trained,
    /// Every stage; `keep` is the run's shared all-correct points when its subset asks for them.
    Checked(Option<&'a Common>),
}

/// The points every run of an all-correct group classifies correctly, or why there are none.
type Common = std::result::Result<Points, String>;

/// An all-correct intersection and what it was taken over.
#[derive(Debug, Clone, PartialEq)]
pub struct Points {
    pub keep: Vec<bool>,
    /// The member runs and the count, e.g. `3896c68b7bac,5839a7fc3737: 512 of 1000`.
    pub key: String,
}

/// The file recording which intersection a run was evaluated on.
const ALL_CORRECT: &str = "all_correct";

/// An error unless every `--only` id (or id prefix) names a run of `runs`; `gfa run` checks
/// them before it writes anything.
pub fn check_only(runs: &[RunSpec], only: &[String]) -> Result<()> {
    for id in only {
        if !runs.iter().any(|r| r.run_id.starts_with(id.as_str())) {
            return Err(anyhow!(
                "--only {id}: no run of this expansion has that id; `gfa plan` lists the run ids \
                 (a unique prefix is enough)"
            ));
        }
    }
    Ok(())
}

/// Work every selected run. Errors of single runs are recorded, not returned; the result is
/// an error only when the results folder itself cannot be written.
pub fn run_grid(
    exp: &ExperimentDir,
    runs: &[RunSpec],
    stages: &mut dyn Stages,
    opts: &RunOptions,
) -> Result<RunSummary> {
    check_only(runs, &opts.only)?;
    let selected = select(runs, opts);
    let compare = trains_first(&selected, opts);
    let bar = &opts.monitor;
    bar.set_total(selected.len() as u64 * (1 + u64::from(compare && !opts.train_only)));
    let mut summary = RunSummary::default();
    let mut common = BTreeMap::new();
    let costs = opts.costs.as_ref();
    if compare {
        let order = schedule::order(selected.clone(), costs, Part::Train);
        let trained = |id: &str| exp.run(id).has(Stage::Trained);
        for run in schedule::sources_first(order, runs, &trained) {
            bar.status(format!("training {} {}", run.run_id, run.axes_text()));
            if selected.iter().any(|r| r.run_id == run.run_id) {
                visit(exp, run, stages, bar, &mut summary, Upto::Trained)?;
                bar.inc();
            } else {
                train_source(exp, run, stages, opts, &mut summary)?;
            }
        }
        if opts.train_only {
            bar.finish();
            return Ok(summary);
        }
        if selected.iter().any(|r| r.config.eval.subset == Subset::AllCorrect) {
            common = common_points(exp, runs, stages);
        }
    }
    let part = if compare { Part::Eval } else { Part::Whole };
    for run in schedule::order(selected, costs, part) {
        // A run locked by another process or failed in training is not tried again.
        if summary.locked.contains(&run.run_id)
            || summary.failed.iter().any(|(id, _)| id == &run.run_id)
        {
            bar.inc();
            continue;
        }
        bar.status(format!("{} {}", run.run_id, run.axes_text()));
        let keep = match run.config.eval.subset {
            Subset::AllCorrect => common.get(&points_key(run)),
            Subset::All => None,
        };
        visit(exp, run, stages, bar, &mut summary, Upto::Checked(keep))?;
        bar.inc();
    }
    if let Some(limit) = opts.wait_locked {
        wait_for_locked(exp, runs, stages, opts, &common, &mut summary, limit)?;
    }
    bar.finish();
    Ok(summary)
}

/// Train `run`, a `[train] init` source outside the selection (`--only`, `--shard`, a `--jobs`
/// worker), before the runs that start from it. Held by another process, it is waited for with
/// `--wait-locked` (its holder trains it), else left: the runs that start from it then fail
/// saying so. It is not one of this call's runs, so it is not counted as one.
fn train_source(
    exp: &ExperimentDir,
    run: &RunSpec,
    stages: &mut dyn Stages,
    opts: &RunOptions,
    summary: &mut RunSummary,
) -> Result<()> {
    let mut own = RunSummary::default();
    visit(exp, run, stages, &opts.monitor, &mut own, Upto::Trained)?;
    if let (Some(limit), false) = (opts.wait_locked, own.locked.is_empty()) {
        let deadline = Instant::now() + limit;
        let dir = exp.run(&run.run_id);
        opts.monitor.line(&format!("run {}: waiting for the process that holds it", run.run_id));
        while dir.try_lock()?.is_none() && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        visit(exp, run, stages, &opts.monitor, &mut RunSummary::default(), Upto::Trained)?;
    }
    summary.failed.extend(own.failed);
    Ok(())
}

/// `--wait-locked`: wait up to `limit` (from now, for all of them) for each run another
/// process held, and work it once its lock is free: a holder that finished leaves it done, one
/// that was stopped leaves it to resume here. Runs still held at the limit stay `locked`.
fn wait_for_locked(
    exp: &ExperimentDir,
    runs: &[RunSpec],
    stages: &mut dyn Stages,
    opts: &RunOptions,
    common: &BTreeMap<String, Common>,
    summary: &mut RunSummary,
    limit: std::time::Duration,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    let held = std::mem::take(&mut summary.locked);
    for id in held {
        let Some(run) = runs.iter().find(|r| r.run_id == id) else { continue };
        let dir = exp.run(&id);
        opts.monitor.line(&format!("run {id}: waiting for the process that holds it"));
        loop {
            // Probe, then let go at once: `visit` takes the lock itself.
            if dir.try_lock()?.is_some() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        let keep = match run.config.eval.subset {
            Subset::AllCorrect => common.get(&points_key(run)),
            Subset::All => None,
        };
        let upto = if opts.train_only { Upto::Trained } else { Upto::Checked(keep) };
        visit(exp, run, stages, &opts.monitor, summary, upto)?;
    }
    Ok(())
}

/// Take one run up to a stage under its lock, recording the outcome in `summary`. Nothing of
/// the run is written before the lock is held.
fn visit(
    exp: &ExperimentDir,
    run: &RunSpec,
    stages: &mut dyn Stages,
    bar: &Monitor,
    summary: &mut RunSummary,
    upto: Upto,
) -> Result<()> {
    let dir = exp.run(&run.run_id);
    // The lock comes first: a process that does not hold it writes nothing of the run.
    let Some(_lock) = dir.try_lock()? else {
        bar.line(&format!("run {}: another process is working it; skipped", run.run_id));
        summary.locked.push(run.run_id.clone());
        return Ok(());
    };
    remove_dead_temp_files(&dir.path);
    remove_dead_temp_files(&checkpoint_dir(&dir));
    dir.write_config(&run.config_toml())?;
    write_atomic(&dir.file("overrides.toml"), run.overrides_toml().as_bytes())?;
    if let Upto::Checked(Some(Ok(points))) = upto {
        let before = std::fs::read_to_string(dir.file(ALL_CORRECT)).unwrap_or_default();
        if dir.has(Stage::Evaluated) && before.trim() != points.key {
            dir.unmark_from(Stage::Evaluated)?;
        }
    }
    let finished = match upto {
        Upto::Trained => dir.has(Stage::Trained),
        Upto::Checked(_) => dir.status() == Status::Done && Stage::ALL.iter().all(|s| dir.has(*s)),
    };
    if finished {
        if !matches!(upto, Upto::Checked(_)) {
            return Ok(());
        }
        // A done run is done when its files parse: a cut row (a crash or a full disk while it
        // was written) makes the stage that wrote the file run again.
        match crate::results::store::damaged_file(&dir) {
            None => {
                summary.already_done.push(run.run_id.clone());
                return Ok(());
            }
            Some((stage, e)) => {
                let what = if stage == Stage::Trained { "training" } else { "evaluation" };
                bar.line(&format!("run {}: damaged: {e:#}; redoing its {what}", run.run_id));
                dir.unmark_from(stage)?;
            }
        }
    }
    dir.set_status(&Status::Running)?;
    let outcome = catch_unwind(AssertUnwindSafe(|| work_run(exp, run, &dir, stages, bar, upto)))
        .unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(anyhow!("panicked: {msg}"))
        });
    match (outcome, upto) {
        (Ok(()), Upto::Trained) => dir.set_status(&Status::Pending)?,
        (Ok(()), Upto::Checked(_)) => {
            dir.set_status(&Status::Done)?;
            summary.done.push(run.run_id.clone());
        }
        (Err(e), _) => {
            let text = format!("{e:#}");
            bar.event(&dir, &format!("failed: {text}"));
            dir.set_status(&Status::Failed(text.clone()))?;
            summary.failed.push((run.run_id.clone(), text));
        }
    }
    crate::results::store::collect_all(exp)
}

/// What makes two runs' evaluation points the same: the data and the number of points.
fn points_key(run: &RunSpec) -> String {
    let d = &run.config.data;
    format!("{:?} {:?} {:?} {}", d.source, d.dir, d.n_test, run.config.eval.n)
}

/// For each group of all-correct runs of the expansion that share their evaluation points, the
/// points every one of their trained models classifies correctly (or why that is not known yet).
fn common_points(
    exp: &ExperimentDir,
    runs: &[RunSpec],
    stages: &mut dyn Stages,
) -> BTreeMap<String, Common> {
    let mut groups: BTreeMap<String, Vec<&RunSpec>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.config.eval.subset == Subset::AllCorrect) {
        groups.entry(points_key(r)).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|(key, members)| {
            let points = intersect(exp, &members, stages);
            (key, points)
        })
        .collect()
}

fn intersect(exp: &ExperimentDir, members: &[&RunSpec], stages: &mut dyn Stages) -> Common {
    let mut keep: Option<Vec<bool>> = None;
    let mut ids = BTreeSet::new();
    for m in members {
        // Runs sharing one training are one model.
        if !ids.insert(m.run_id.clone()) {
            continue;
        }
        let dir = exp.run(&m.run_id);
        if !dir.has(Stage::Trained) {
            return Err(format!(
                "all_correct compares every run evaluated on the same points, and run {} is not \
                 trained (another shard or --only selection, or its training failed); train it, \
                 then rerun",
                m.run_id
            ));
        }
        let ok = stages.correct(m, &dir).map_err(|e| {
            format!("classifying the evaluation points with run {}: {e:#}", m.run_id)
        })?;
        keep = Some(match keep {
            None => ok,
            Some(k) if k.len() == ok.len() => k.iter().zip(&ok).map(|(a, b)| *a && *b).collect(),
            Some(k) => {
                return Err(format!(
                    "run {} has {} evaluation points, the others {}",
                    m.run_id,
                    ok.len(),
                    k.len()
                ));
            }
        });
    }
    let keep = keep.unwrap_or_default();
    let n = keep.iter().filter(|k| **k).count();
    let ids: Vec<String> = ids.into_iter().collect();
    Ok(Points { key: format!("{}: {n} of {}", ids.join(","), keep.len()), keep })
}

/// A run's binarization test (`[binarize]`), beside its evaluation.
pub const BINARIZATION: &str = "binarization.csv";

/// The file in a run folder naming what its training depends on ([`RunSpec::train_key`]).
const TRAIN_KEY: &str = "train_key";

/// A finished run of `exp` whose training equals `run`'s (same [`RunSpec::train_key`]).
fn trained_twin(exp: &ExperimentDir, run: &RunSpec) -> Option<RunDir> {
    let key = run.train_key();
    exp.runs().ok()?.into_iter().find(|d| {
        d.id() != run.run_id
            && d.has(Stage::Trained)
            && std::fs::read_to_string(d.file(TRAIN_KEY)).is_ok_and(|k| k.trim() == key)
    })
}

/// Take `from`'s checkpoint folder, train.csv and train_steps.csv (re-keyed to `run`) instead
/// of training again.
fn adopt_training(from: &RunDir, run: &RunSpec, dir: &RunDir) -> Result<()> {
    let (src, dst) = (checkpoint_dir(from), checkpoint_dir(dir));
    if src.is_dir() {
        std::fs::create_dir_all(&dst).with_context(|| format!("creating {}", dst.display()))?;
        for entry in
            std::fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))?
        {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            if !path.is_file() || name.starts_with('.') {
                continue;
            }
            // A hard link where the file system allows (checkpoints are never rewritten once a
            // run is trained), else a copy; either is written atomically.
            write_atomic_with(&dst.join(name), |tmp| {
                std::fs::hard_link(&path, tmp).or_else(|_| std::fs::copy(&path, tmp).map(drop))
            })?;
        }
    }
    let steps = TRAIN_STEPS;
    if from.file(steps).is_file() {
        rekeyed(from, dir, steps, |r: &mut crate::results::records::StepRow| {
            r.run_id.clone_from(&run.run_id)
        })?;
    }
    rekeyed(from, dir, "train.csv", |r: &mut TrainRow| r.run_id.clone_from(&run.run_id))
}

/// Copy the CSV `name` of `from` into `to`, each row changed by `set`.
fn rekeyed<T>(from: &RunDir, to: &RunDir, name: &str, set: impl Fn(&mut T)) -> Result<()>
where
    T: serde::de::DeserializeOwned + Serialize + Default,
{
    let mut rows: Vec<T> = read_rows(&from.file(name))?;
    rows.iter_mut().for_each(set);
    write_rows(&to.file(name), &rows)
}

/// Write an evaluation's files into the run folder and mark it evaluated (`gfa run` and `gfa
/// escalate`). The finished batches of its log served a resume of this evaluation and go.
pub fn write_evaluation(dir: &RunDir, out: &EvalOutput) -> Result<()> {
    write_rows(&dir.file("eval.csv"), &out.eval)?;
    write_rows(&dir.file("norms.csv"), &out.norms)?;
    write_rows(&dir.file("points.csv"), &out.points)?;
    write_rows(&dir.file("gfa_value.csv"), &out.gfa_value)?;
    if let Some(rows) = &out.landscape {
        write_rows(&dir.file("landscape.csv"), rows)?;
    }
    if let Some(rows) = &out.binarization {
        write_rows(&dir.file(BINARIZATION), rows)?;
    }
    match &out.indicators {
        Some(rows) => write_rows(&dir.file(INDICATORS), rows)?,
        // An evaluation without indicators leaves none of an earlier one's behind.
        None if dir.file(INDICATORS).exists() => std::fs::remove_file(dir.file(INDICATORS))
            .with_context(|| format!("removing {}", dir.file(INDICATORS).display()))?,
        None => {}
    }
    let gh = out.grad_health.map(|g| GradHealthFile {
        zero_frac: g.zero_frac,
        nonfinite_frac: g.nonfinite_frac,
        n: g.n,
    });
    write_atomic(&dir.file("grad_health.json"), serde_json::to_string(&gh)?.as_bytes())?;
    dir.mark(Stage::Evaluated)?;
    crate::run::batches::remove(&dir.file(crate::run::batches::FILE))
}

/// The file of a run's Indicators of Attack Failure.
pub const INDICATORS: &str = "indicators.csv";

/// `<stage> done (12.3 s)` into the log and the monitor.
fn done(bar: &Monitor, dir: &RunDir, stage: &str, t0: Instant) {
    bar.event(dir, &format!("{stage} done ({:.1} s)", t0.elapsed().as_secs_f64()));
}

fn work_run(
    exp: &ExperimentDir,
    run: &RunSpec,
    dir: &RunDir,
    stages: &mut dyn Stages,
    bar: &Monitor,
    upto: Upto,
) -> Result<()> {
    if !dir.has(Stage::Trained) {
        // Later stages belong to the previous model, if any.
        dir.unmark_from(Stage::Trained)?;
        let t0 = Instant::now();
        if let Some(twin) = trained_twin(exp, run) {
            bar.event(dir, &format!("train: taking the trained model of run {}", twin.id()));
            adopt_training(&twin, run, dir)
                .with_context(|| format!("taking the trained model of run {}", twin.id()))?;
        } else {
            bar.event(dir, &format!("train start {}", run.axes_text()));
            let rows = stages.train(run, dir).context("training")?;
            write_rows(&dir.file("train.csv"), &rows)?;
        }
        write_atomic(&dir.file(TRAIN_KEY), run.train_key().as_bytes())?;
        dir.mark(Stage::Trained)?;
        done(bar, dir, "train", t0);
    }
    let Upto::Checked(common) = upto else { return Ok(()) };
    if !dir.has(Stage::Evaluated) {
        dir.unmark_from(Stage::Evaluated)?;
        let t0 = Instant::now();
        bar.event(dir, "evaluate start");
        let points = match (run.config.eval.subset, common) {
            (Subset::All, _) => None,
            (Subset::AllCorrect, Some(Ok(p))) => Some(p),
            (Subset::AllCorrect, Some(Err(e))) => return Err(anyhow!("{e}")),
            (Subset::AllCorrect, None) => {
                return Err(anyhow!("all_correct: the compared models' points are missing"));
            }
        };
        let out =
            stages.evaluate(run, dir, points.map(|p| p.keep.as_slice())).context("evaluation")?;
        if let Some(p) = points {
            write_atomic(&dir.file(ALL_CORRECT), p.key.as_bytes())?;
        }
        write_evaluation(dir, &out)?;
        done(bar, dir, "evaluate", t0);
    }
    if !dir.has(Stage::Checked) {
        let t0 = Instant::now();
        let eval: Vec<EvalRow> = read_rows(&dir.file("eval.csv"))?;
        let gh: Option<GradHealthFile> = std::fs::read_to_string(dir.file("grad_health.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .flatten();
        let gh = gh.map(|g| GradHealth {
            zero_frac: g.zero_frac,
            nonfinite_frac: g.nonfinite_frac,
            n: g.n,
        });
        let indicators: Vec<IndicatorRow> = match dir.file(INDICATORS) {
            p if p.is_file() => read_rows(&p)?,
            _ => vec![],
        };
        let rows = stages.checks(run, &eval, gh, &indicators).context("masking checks")?;
        let binarization = crate::analysis::report::base::read_opt(&dir.file(BINARIZATION))?;
        let rows = crate::analysis::binarization::with_binarization(rows, &binarization);
        write_rows(&dir.file("checks.csv"), &rows)?;
        dir.mark(Stage::Checked)?;
        done(bar, dir, "checks", t0);
    }
    Ok(())
}
