//! Robust evaluation: clean accuracy, each attack alone ("individual") and the per-sample worst
//! case over a suite ("cumulative"), at every budget each attack lists.
//!
//! Conventions (those of auto-attack's `run_standard_evaluation`):
//! - clean-misclassified points are never robust; robust accuracy is over all `n` points;
//! - the suite is evaluated in passes, one per threat model (norm) and budget, in the order they
//!   first appear: a pass holds the attacks of that norm which list that budget, in suite order,
//!   so an attack runs only at its own budgets and an L2 budget never meets an Linf attack;
//! - cumulative mode runs each attack of a pass only on the points every earlier one failed on
//!   and records the robust accuracy after each; when the individual runs were made too, it
//!   reuses their per-point results instead of attacking again (a point is robust to the suite iff
//!   every attack failed on it either way; this halves the cost, and the cumulative rows then
//!   report 0 seconds);
//! - minimum-norm attacks run once per evaluation (their target radius is the largest budget they
//!   list) and are thresholded at each of their budgets; their norm statistics are over every
//!   successful point of that one run. One listing no budget gives one row, fooled at any size;
//! - `subset = "all_correct"` keeps only the points a given mask marks (e.g. the points every
//!   compared model classifies correctly, the DeepDefense paper's protocol).
//!
//! Every attack goes through [`attack::run`], so reported numbers are validated (box, budget, NaN).
//! Randomness: each batch of each (attack, budget, stage) draws from its own generator,
//! `rng_for(seed, "eval/<name>/<eps>/<stage>/<batch>")`. Every finished batch goes to a
//! [`BatchStore`] before the next starts: an evaluation stopped at any point and started again
//! with the same store redoes only the batches it had not finished, sees the same random
//! numbers, and returns the same records.
use std::time::Instant;

use gfa_core::Classifier;
use gfa_core::seed::rng_for;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::attack::{self, BUDGET_TOL, Family};
use crate::registry::AttackSpec;
use crate::repeated::indices;
use crate::{AttackError, Eps, Norm, Result};

/// Which points are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subset {
    #[default]
    All,
    /// Only the points of the `all_correct` mask.
    AllCorrect,
}

/// What a record measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Clean,
    Individual,
    Cumulative,
}

/// What a batch of an evaluation computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The model's prediction on the clean points (`fooled`: misclassified).
    Clean,
    /// A fixed-budget attack alone on the clean-correct points, at one budget.
    Individual,
    /// A fixed-budget attack on the points the earlier attacks of its pass left.
    Cumulative,
    /// A minimum-norm attack's one run on the clean-correct points.
    MinimumNorm,
}

impl Stage {
    pub const ALL: &[Stage] =
        &[Stage::Clean, Stage::Individual, Stage::Cumulative, Stage::MinimumNorm];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Clean => "clean",
            Stage::Individual => "individual",
            Stage::Cumulative => "cumulative",
            Stage::MinimumNorm => "minimum_norm",
        }
    }
}

/// Evaluation options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalOptions {
    pub batch_size: i64,
    pub subset: Subset,
    pub individual: bool,
    pub cumulative: bool,
    /// The run seed every attack generator derives from.
    pub seed: u64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self { batch_size: 250, subset: Subset::All, individual: true, cumulative: true, seed: 0 }
    }
}

/// One measurement: an attack (or `clean`) at one budget in one mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// The suite entry's name (`clean` for the clean record).
    pub name: String,
    /// The attack's registry name (empty for the clean record).
    pub attack: String,
    pub preset: String,
    pub config: String,
    pub family: Option<Family>,
    pub norm: Option<Norm>,
    /// The budget as written; empty for the clean record and for a minimum-norm attack that
    /// lists no budget (fooled at any size).
    pub eps_text: String,
    pub eps: Option<f64>,
    pub mode: Mode,
    pub n: i64,
    pub clean_acc: f64,
    pub robust_acc: f64,
    /// Fooled points (inside the budget) over the points this attack ran on.
    pub success_rate: Option<f64>,
    /// Norm statistics over the successful points only (in the attack's norm).
    pub median_norm: Option<f64>,
    pub mean_norm: Option<f64>,
    pub max_norm: Option<f64>,
    /// Mean queries per attacked point.
    pub queries: Option<f64>,
    pub seconds: f64,
    /// Per evaluated point: its position in the points given to the evaluation ([`Points::x`]).
    #[serde(skip)]
    pub index: Vec<i64>,
    /// Per evaluated point: robust at this record (classified correctly and not fooled by this
    /// attack at this budget, nor, in a cumulative record, by an earlier attack of its pass).
    #[serde(skip)]
    pub robust: Vec<bool>,
    /// Per evaluated point: the norm of the perturbation that fooled it (NaN where this attack did
    /// not fool it; a minimum-norm attack's norm at any size). Empty for the clean record.
    #[serde(skip)]
    pub point_norm: Vec<f32>,
}

/// Progress of one (attack, budget, stage), reported after every batch.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    pub attack: &'a str,
    pub eps: &'a str,
    pub stage: Stage,
    pub done: i64,
    pub total: i64,
}

/// What identifies one batch of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchKey {
    /// The suite entry's name (`clean` for the clean pass).
    pub attack: String,
    /// The entry's preset (empty for the clean pass).
    pub preset: String,
    /// The attack's threat model (`None` for the clean pass).
    pub norm: Option<Norm>,
    /// The budget; a minimum-norm run's target radius (its largest budget, text empty and value
    /// infinite when it lists none); `0` for the clean pass.
    pub eps: Eps,
    pub stage: Stage,
    /// 0-based batch number within this (attack, budget, stage).
    pub batch: usize,
    /// The batch's points: positions in the evaluated tensors ([`Points::x`]).
    pub index: Vec<i64>,
}

/// The per-point results of one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchResult {
    /// Misclassified at the attack's output, inside the budget for a fixed-budget attack, at any
    /// size for a minimum-norm one; for the clean pass, misclassified without attack.
    pub fooled: Vec<bool>,
    /// The perturbation's norm in the attack's threat model (empty for the clean pass).
    pub norm: Vec<f32>,
    /// Queries (gradient steps or forward passes) spent on each point (empty for the clean pass).
    pub queries: Vec<i64>,
    pub seconds: f64,
}

impl BatchResult {
    /// Whether the result has one value per point of a batch of `len` points.
    fn fits(&self, len: usize, stage: Stage) -> bool {
        let per_point = if stage == Stage::Clean { 0 } else { len };
        self.fooled.len() == len && self.norm.len() == per_point && self.queries.len() == per_point
    }
}

/// Where an evaluation keeps its finished batches, so that an interrupted one resumes.
pub trait BatchStore {
    /// The result of a batch finished earlier with exactly this key, if any.
    fn get(&mut self, key: &BatchKey) -> Option<BatchResult>;
    /// Record a finished batch durably (it is called before the next batch starts).
    fn put(&mut self, key: &BatchKey, result: &BatchResult) -> Result<()>;
}

/// A store that keeps nothing: every batch is computed.
pub struct NoStore;

impl BatchStore for NoStore {
    fn get(&mut self, _: &BatchKey) -> Option<BatchResult> {
        None
    }
    fn put(&mut self, _: &BatchKey, _: &BatchResult) -> Result<()> {
        Ok(())
    }
}

/// Per-point results of one attack over a set of points (CPU tensors).
struct PointResults {
    /// Misclassified at `x_adv` (and inside the budget for fixed-budget attacks).
    success: Tensor,
    norm: Tensor,
    queries: Tensor,
    seconds: f64,
}

impl PointResults {
    /// The batches' results end to end.
    fn from_batches(batches: &[BatchResult]) -> Self {
        let fooled: Vec<bool> = batches.iter().flat_map(|b| b.fooled.iter().copied()).collect();
        let norm: Vec<f32> = batches.iter().flat_map(|b| b.norm.iter().copied()).collect();
        let queries: Vec<i64> = batches.iter().flat_map(|b| b.queries.iter().copied()).collect();
        Self {
            success: Tensor::from_slice(&fooled),
            norm: Tensor::from_slice(&norm),
            queries: Tensor::from_slice(&queries).to_kind(Kind::Float),
            seconds: batches.iter().map(|b| b.seconds).sum(),
        }
    }

    fn clone_shallow(&self) -> Self {
        Self {
            success: self.success.shallow_clone(),
            norm: self.norm.shallow_clone(),
            queries: self.queries.shallow_clone(),
            seconds: self.seconds,
        }
    }

    /// The results of the points at positions `pos`, at no cost.
    fn select(&self, pos: &Tensor) -> Self {
        Self {
            success: self.success.index_select(0, pos),
            norm: self.norm.index_select(0, pos),
            queries: self.queries.index_select(0, pos),
            seconds: 0.0,
        }
    }
}

/// The store and the progress callback an evaluation reports to.
struct Io<'a> {
    store: &'a mut dyn BatchStore,
    progress: &'a mut dyn FnMut(&Progress),
}

/// The evaluated points, on the CPU (index bookkeeping lives there; batches move to the
/// model's device).
struct Ctx<'a> {
    model: &'a Classifier,
    x: Tensor,
    y: Tensor,
    /// `[n]` int64: each evaluated point's position in [`Points::x`].
    orig: Tensor,
    opts: &'a EvalOptions,
    device: Device,
}

impl Ctx<'_> {
    /// Run `entry` (the clean pass when `None`) on the points `idx` (positions in `self.x`) in
    /// batches, each taken from the store when it holds it, else computed and stored.
    fn run(
        &self,
        entry: Option<&SuiteEntry>,
        idx: &Tensor,
        eps: &Eps,
        stage: Stage,
        io: &mut Io,
    ) -> Result<PointResults> {
        let total = idx.numel() as i64;
        let name = entry.map_or(CLEAN, |e| e.name.as_str());
        let mut batches = Vec::new();
        let mut done = 0;
        while done < total {
            let len = self.opts.batch_size.min(total - done);
            let chunk = idx.narrow(0, done, len);
            let key = BatchKey {
                attack: name.to_string(),
                preset: entry.map(|e| e.preset.clone()).unwrap_or_default(),
                norm: entry.map(|e| e.attack.norm()),
                eps: eps.clone(),
                stage,
                batch: batches.len(),
                index: Vec::try_from(&self.orig.index_select(0, &chunk))?,
            };
            let result = match io.store.get(&key) {
                Some(r) if r.fits(len as usize, stage) => r,
                _ => {
                    let r = self.batch(entry, &chunk, &key)?;
                    io.store.put(&key, &r)?;
                    r
                }
            };
            batches.push(result);
            done += len;
            (io.progress)(&Progress { attack: name, eps: &eps.text, stage, done, total });
        }
        Ok(PointResults::from_batches(&batches))
    }

    /// Compute one batch.
    fn batch(
        &self,
        entry: Option<&SuiteEntry>,
        chunk: &Tensor,
        key: &BatchKey,
    ) -> Result<BatchResult> {
        let xs = self.x.index_select(0, chunk).to_device(self.device);
        let ys = self.y.index_select(0, chunk).to_device(self.device);
        let start = Instant::now();
        let Some(entry) = entry else {
            let logits = tch::no_grad(|| self.model.logits(&xs, false));
            let bad = logits.isfinite().all_dim(1, false).logical_not();
            let points = bad.sum(Kind::Int64).int64_value(&[]);
            if points > 0 {
                let (of, batch) = (logits.size()[0], key.batch);
                return Err(crate::AttackError::NonFiniteLogits { points, of, batch });
            }
            let wrong = logits.argmax(1, false).ne_tensor(&ys);
            return Ok(BatchResult {
                fooled: Vec::try_from(&wrong.to_device(Device::Cpu))?,
                norm: vec![],
                queries: vec![],
                seconds: start.elapsed().as_secs_f64(),
            });
        };
        let purpose =
            format!("eval/{}/{}/{}/{}", entry.name, key.eps.text, key.stage.name(), key.batch);
        let mut rng = rng_for(self.opts.seed, &purpose);
        let a = entry.attack.as_ref();
        let out = attack::run(a, self.model, &xs, &ys, key.eps.value, &mut rng)?;
        let cpu = |t: &Tensor, kind: Kind| t.to_device(Device::Cpu).to_kind(kind);
        Ok(BatchResult {
            fooled: Vec::try_from(&cpu(&out.success, Kind::Bool))?,
            norm: Vec::try_from(&cpu(out.norm(a.norm()), Kind::Float))?,
            queries: Vec::try_from(&cpu(&out.queries, Kind::Int64))?,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}

/// The name of the clean pass in batch keys.
pub const CLEAN: &str = "clean";

fn stats(norm: &Tensor, success: &Tensor) -> (Option<f64>, Option<f64>, Option<f64>) {
    let v = norm.masked_select(success);
    if v.numel() == 0 {
        return (None, None, None);
    }
    // torch's median picks the lower middle; the mean of the two middles is the usual median.
    let (sorted, _) = v.sort(0, false);
    let m = v.numel() as i64;
    let med = (sorted.double_value(&[(m - 1) / 2]) + sorted.double_value(&[m / 2])) / 2.0;
    (Some(med), Some(v.mean(Kind::Float).double_value(&[])), Some(v.max().double_value(&[])))
}

fn frac(count: &Tensor, n: i64) -> f64 {
    if n == 0 { 0.0 } else { count.sum(Kind::Int64).int64_value(&[]) as f64 / n as f64 }
}

/// An attack of an evaluation suite: its name in results, the preset it was configured from,
/// and the budgets it runs at (fixed budget) or is thresholded at (minimum norm).
#[derive(Debug)]
pub struct SuiteEntry {
    pub name: String,
    pub attack: Box<dyn attack::Attack>,
    pub preset: String,
    pub eps: Vec<Eps>,
}

impl SuiteEntry {
    /// The entry of `spec`, named after its kind, at `eps`.
    pub fn from_spec(spec: &AttackSpec, eps: &[Eps]) -> Result<Self> {
        Ok(Self {
            name: spec.kind().to_string(),
            attack: spec.build()?,
            preset: spec.preset_name().name().to_string(),
            eps: eps.to_vec(),
        })
    }

    fn minimum_norm(&self) -> bool {
        self.attack.family() == Family::MinimumNorm
    }

    /// A minimum-norm run's target radius: its largest budget (infinite when it lists none).
    fn target(&self) -> Eps {
        match self.eps.iter().max_by(|a, b| a.value.total_cmp(&b.value)) {
            Some(e) => e.clone(),
            None => Eps { text: String::new(), value: f64::INFINITY },
        }
    }
}

/// The points an evaluation runs on.
#[derive(Debug, Clone, Copy)]
pub struct Points<'a> {
    /// `[N, ...]` float in `[0, 1]`, any device.
    pub x: &'a Tensor,
    /// Labels `[N]`.
    pub y: &'a Tensor,
    /// `[N]` bool: the points every compared model classifies correctly; what
    /// `subset = "all_correct"` keeps.
    pub all_correct: Option<&'a Tensor>,
}

impl<'a> Points<'a> {
    /// Every point of `x`, `y`.
    pub fn all(x: &'a Tensor, y: &'a Tensor) -> Self {
        Points { x, y, all_correct: None }
    }
}

/// Evaluate `model` on `points` under every attack of `suite` at every budget of `eps` (each
/// attack named after its kind), keeping nothing between calls.
pub fn evaluate(
    model: &Classifier,
    points: Points<'_>,
    suite: &[AttackSpec],
    eps: &[Eps],
    opts: &EvalOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Vec<EvalRecord>> {
    let entries =
        suite.iter().map(|s| SuiteEntry::from_spec(s, eps)).collect::<Result<Vec<_>>>()?;
    evaluate_suite(model, points, &entries, opts, &mut NoStore, progress)
}

/// The passes of a suite: per threat model and budget, in the order they first appear, the
/// positions of the entries that list that budget.
fn passes(suite: &[SuiteEntry]) -> Vec<(Eps, Vec<usize>)> {
    let mut out: Vec<(Norm, Eps, Vec<usize>)> = Vec::new();
    for (i, entry) in suite.iter().enumerate() {
        let norm = entry.attack.norm();
        for e in &entry.eps {
            match out.iter_mut().find(|(n, o, _)| *n == norm && o.text == e.text) {
                Some((_, _, members)) => members.push(i),
                None => out.push((norm, e.clone(), vec![i])),
            }
        }
    }
    out.into_iter().map(|(_, e, members)| (e, members)).collect()
}

/// An error unless every entry has a unique (name, preset) and a fixed-budget entry a budget.
fn check_suite(suite: &[SuiteEntry], opts: &EvalOptions) -> Result<()> {
    if opts.batch_size < 1 {
        return Err(AttackError::Config("eval batch_size must be >= 1".into()));
    }
    for (i, e) in suite.iter().enumerate() {
        if e.name == CLEAN {
            return Err(AttackError::Config(format!("an attack cannot be named \"{CLEAN}\"")));
        }
        if suite[..i].iter().any(|o| o.name == e.name && o.preset == e.preset) {
            return Err(AttackError::Config(format!(
                "two attacks of the suite are named \"{}\" ({}); give one another name",
                e.name, e.preset
            )));
        }
        if e.eps.is_empty() && !e.minimum_norm() {
            return Err(AttackError::Config(format!(
                "attack \"{}\" searches inside a budget and lists none; give it eps",
                e.name
            )));
        }
    }
    Ok(())
}

/// [`evaluate`] on already built attacks, each at its own budgets, resuming from `store`.
pub fn evaluate_suite(
    model: &Classifier,
    points: Points<'_>,
    suite: &[SuiteEntry],
    opts: &EvalOptions,
    store: &mut dyn BatchStore,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Vec<EvalRecord>> {
    check_suite(suite, opts)?;
    let (x, y, orig) = selected(points, opts.subset)?;
    let n = x.size()[0];
    let ctx = Ctx { model, x, y, orig, opts, device: model.device() };
    let mut io = Io { store, progress };
    let all = Tensor::arange(n, (Kind::Int64, Device::Cpu));
    let zero = Eps { text: "0".into(), value: 0.0 };
    let clean = ctx.run(None, &all, &zero, Stage::Clean, &mut io)?;
    let correct = clean.success.logical_not();
    let ev = Evaluation { ctx, suite, n, clean_acc: frac(&correct, n), correct };
    let mut records = vec![EvalRecord { seconds: clean.seconds, ..ev.base() }];
    // Minimum-norm attacks: one run each on the clean-correct points.
    let mut min_norm: Vec<Option<PointResults>> = Vec::new();
    for entry in suite {
        min_norm.push(match entry.minimum_norm() {
            true => Some(ev.on_correct(entry, &entry.target(), Stage::MinimumNorm, &mut io)?),
            false => None,
        });
    }
    for (e, members) in passes(suite) {
        // Per member, its results on every clean-correct point and its successes within `e`:
        // the min-norm runs, and the individual runs when made.
        let mut on_correct: Vec<Option<(PointResults, Tensor)>> = members
            .iter()
            .map(|&i| min_norm[i].as_ref().map(|r| (r.clone_shallow(), threshold(r, &e))))
            .collect();
        if opts.individual {
            records.extend(ev.individual(&members, &e, &mut on_correct, &mut io)?);
        }
        if opts.cumulative {
            records.extend(ev.cumulative(&members, &e, &on_correct, &mut io)?);
        }
    }
    // A minimum-norm attack without a budget: one row, fooled at any size.
    for (entry, r) in suite.iter().zip(&min_norm) {
        if let (Some(r), true) = (r, entry.eps.is_empty()) {
            let on = (&indices(&ev.correct), &ev.correct);
            records.push(ev.record((entry, None, Mode::Individual), on, &r.success, r));
        }
    }
    Ok(records)
}

/// The points of `points` that `subset` keeps, on the CPU, and their positions in `points`.
fn selected(points: Points<'_>, subset: Subset) -> Result<(Tensor, Tensor, Tensor)> {
    let (x, y) = (points.x.to_device(Device::Cpu), points.y.to_device(Device::Cpu));
    let n = x.size()[0];
    if subset == Subset::All {
        return Ok((x, y, Tensor::arange(n, (Kind::Int64, Device::Cpu))));
    }
    let mask = points.all_correct.ok_or_else(|| {
        AttackError::Config(
            "subset = \"all_correct\" needs the mask of points all compared models classify \
             correctly"
                .into(),
        )
    })?;
    if mask.size() != [n] {
        return Err(AttackError::ShapeMismatch {
            what: "all_correct mask".into(),
            expected: format!("[{n}]"),
            got: format!("{:?}", mask.size()),
        });
    }
    let idx = indices(&mask.to_device(Device::Cpu).to_kind(Kind::Bool));
    Ok((x.index_select(0, &idx), y.index_select(0, &idx), idx))
}

/// A min-norm result thresholded at `e`: fooled and inside the budget.
fn threshold(r: &PointResults, e: &Eps) -> Tensor {
    r.success.logical_and(&r.norm.le(e.value + BUDGET_TOL))
}

/// One evaluation in progress: the points, the suite, and the clean pass's results.
struct Evaluation<'a> {
    ctx: Ctx<'a>,
    suite: &'a [SuiteEntry],
    n: i64,
    clean_acc: f64,
    /// `[n]` bool: classified correctly without attack.
    correct: Tensor,
}

impl Evaluation<'_> {
    /// The clean record; every other record starts from it.
    fn base(&self) -> EvalRecord {
        EvalRecord {
            name: CLEAN.into(),
            attack: String::new(),
            preset: String::new(),
            config: "{}".into(),
            family: None,
            norm: None,
            eps_text: String::new(),
            eps: None,
            mode: Mode::Clean,
            n: self.n,
            clean_acc: self.clean_acc,
            robust_acc: self.clean_acc,
            success_rate: None,
            median_norm: None,
            mean_norm: None,
            max_norm: None,
            queries: None,
            seconds: 0.0,
            index: Vec::try_from(&self.ctx.orig).unwrap_or_default(),
            robust: Vec::try_from(&self.correct).unwrap_or_default(),
            point_norm: Vec::new(),
        }
    }

    /// The record of `entry` at `e` (`None`: at any size): `success` over the points `attacked`
    /// (positions in the evaluated points) of `r`, the attack's per-point results; `before` the
    /// points robust before this attack (the clean-correct ones, or, in a cumulative pass, those
    /// every earlier attack failed on).
    fn record(
        &self,
        (entry, e, mode): (&SuiteEntry, Option<&Eps>, Mode),
        (attacked, before): (&Tensor, &Tensor),
        success: &Tensor,
        r: &PointResults,
    ) -> EvalRecord {
        let fooled_at = attacked.masked_select(success);
        let robust_now = before.index_fill(0, &fooled_at, 0);
        let robust = robust_now.sum(Kind::Int64).int64_value(&[]);
        let attacked_n = success.numel() as i64;
        // Minimum-norm attacks report their norms over every success of their one run.
        let norm_mask = if entry.minimum_norm() { &r.success } else { success };
        let (median_norm, mean_norm, max_norm) = stats(&r.norm, norm_mask);
        let found = r.norm.where_self(norm_mask, &Tensor::from(f32::NAN));
        let point_norm = Tensor::full([self.n], f64::NAN, (Kind::Float, Device::Cpu))
            .index_copy(0, attacked, &found);
        let a = entry.attack.as_ref();
        EvalRecord {
            name: entry.name.clone(),
            attack: a.name().into(),
            preset: entry.preset.clone(),
            config: a.config_json(),
            family: Some(a.family()),
            norm: Some(a.norm()),
            eps_text: e.map(|e| e.text.clone()).unwrap_or_default(),
            eps: e.map(|e| e.value),
            mode,
            robust_acc: if self.n == 0 { 0.0 } else { robust as f64 / self.n as f64 },
            success_rate: (attacked_n > 0).then(|| frac(success, attacked_n)),
            median_norm,
            mean_norm,
            max_norm,
            queries: (attacked_n > 0).then(|| r.queries.mean(Kind::Float).double_value(&[])),
            seconds: r.seconds,
            robust: Vec::try_from(&robust_now).unwrap_or_default(),
            point_norm: Vec::try_from(&point_norm).unwrap_or_default(),
            ..self.base()
        }
    }

    /// `entry` alone on every clean-correct point.
    fn on_correct(
        &self,
        entry: &SuiteEntry,
        e: &Eps,
        stage: Stage,
        io: &mut Io,
    ) -> Result<PointResults> {
        self.ctx.run(Some(entry), &indices(&self.correct), e, stage, io)
    }

    /// The individual rows of the pass `members` at `e`; runs the fixed-budget attacks into
    /// `on_correct`.
    fn individual(
        &self,
        members: &[usize],
        e: &Eps,
        on_correct: &mut [Option<(PointResults, Tensor)>],
        io: &mut Io,
    ) -> Result<Vec<EvalRecord>> {
        let mut records = Vec::new();
        let correct_idx = indices(&self.correct);
        for (k, &i) in members.iter().enumerate() {
            let entry = &self.suite[i];
            if on_correct[k].is_none() {
                let r = self.on_correct(entry, e, Stage::Individual, io)?;
                let s = r.success.shallow_clone();
                on_correct[k] = Some((r, s));
            }
            let (r, success) = on_correct[k].as_ref().expect("set above");
            let on = (&correct_idx, &self.correct);
            records.push(self.record((entry, Some(e), Mode::Individual), on, success, r));
        }
        Ok(records)
    }

    /// The cumulative rows of the pass `members` at `e`: each attack on the points every earlier
    /// one failed on, taken from `on_correct` where the attack already ran on all correct points.
    fn cumulative(
        &self,
        members: &[usize],
        e: &Eps,
        on_correct: &[Option<(PointResults, Tensor)>],
        io: &mut Io,
    ) -> Result<Vec<EvalRecord>> {
        let correct_idx = indices(&self.correct);
        let mut robust = self.correct.copy();
        let mut records = Vec::new();
        for (k, &i) in members.iter().enumerate() {
            let entry = &self.suite[i];
            let idx = indices(&robust);
            let (r, success) = match &on_correct[k] {
                Some((r, s)) => {
                    // Pick the still-robust points out of the results on all correct ones.
                    let pos = indices(&robust.index_select(0, &correct_idx));
                    (r.select(&pos), s.index_select(0, &pos))
                }
                None => {
                    let r = self.ctx.run(Some(entry), &idx, e, Stage::Cumulative, io)?;
                    let s = r.success.shallow_clone();
                    (r, s)
                }
            };
            let rec =
                self.record((entry, Some(e), Mode::Cumulative), (&idx, &robust), &success, &r);
            robust = robust.index_fill(0, &idx.masked_select(&success), 0);
            records.push(rec);
        }
        Ok(records)
    }
}
