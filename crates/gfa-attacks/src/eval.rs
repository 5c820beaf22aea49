//! Robust evaluation: clean accuracy, each attack alone ("individual") and the per-sample worst
//! case over a suite ("cumulative"), at every budget of an eps list.
//!
//! Conventions (ATTACKS.md §2, §10; auto-attack `run_standard_evaluation`):
//! - clean-misclassified points are never robust; robust accuracy is over all `n` points;
//! - cumulative mode runs each attack only on the points every earlier attack failed on and
//!   records the robust accuracy after each; when the individual runs were made too, it reuses
//!   their per-point results instead of attacking again (a point is robust to the suite iff every
//!   attack failed on it either way; this halves the cost, and the cumulative rows then report
//!   0 seconds);
//! - minimum-norm attacks run once (with the largest eps as their target radius) and are
//!   thresholded at every eps; their norm statistics are over successful points only;
//! - `subset = "all_correct"` keeps only the points a given mask marks (e.g. the points every
//!   compared model classifies correctly, the DeepDefense paper's protocol).
//!
//! Every attack goes through [`attack::run`], so reported numbers are validated (box, budget, NaN).
//! Randomness: one `SeededRng` per (attack, eps, mode, batch) from `gfa_core::seed::rng_for`.
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
    pub attack: String,
    pub preset: String,
    pub config: String,
    pub family: Option<Family>,
    pub norm: Option<Norm>,
    pub eps_text: String,
    pub eps: f64,
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
}

/// Progress of one (attack, eps, mode) pass, reported after every batch.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    pub attack: &'a str,
    pub eps: &'a str,
    pub mode: Mode,
    pub done: i64,
    pub total: i64,
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
    fn clone_shallow(&self) -> Self {
        Self {
            success: self.success.shallow_clone(),
            norm: self.norm.shallow_clone(),
            queries: self.queries.shallow_clone(),
            seconds: self.seconds,
        }
    }
}

struct Ctx<'a> {
    model: &'a Classifier,
    x: &'a Tensor,
    y: &'a Tensor,
    opts: &'a EvalOptions,
    device: Device,
}

impl Ctx<'_> {
    /// `[n]` bool on the CPU: whether the model classifies each point correctly (batched).
    fn clean_correct(&self) -> Tensor {
        let n = self.x.size()[0];
        let mut correct = Vec::new();
        let mut done = 0;
        while done < n {
            let len = self.opts.batch_size.min(n - done);
            let xs = self.x.narrow(0, done, len).to_device(self.device);
            let ys = self.y.narrow(0, done, len).to_device(self.device);
            let pred = crate::repeated::predict(self.model, &xs);
            correct.push(pred.eq_tensor(&ys).to_device(Device::Cpu));
            done += len;
        }
        if correct.is_empty() {
            Tensor::zeros([0], (Kind::Bool, Device::Cpu))
        } else {
            Tensor::cat(&correct, 0)
        }
    }

    /// Run `attack` on the points `idx` (CPU int64) in batches.
    fn run(
        &self,
        attack: &dyn attack::Attack,
        idx: &Tensor,
        eps: &Eps,
        mode: Mode,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<PointResults> {
        let total = idx.numel() as i64;
        let (mut succ, mut norms, mut qs) = (Vec::new(), Vec::new(), Vec::new());
        let start = Instant::now();
        let mut done = 0;
        let mut batch = 0;
        while done < total {
            let len = self.opts.batch_size.min(total - done);
            let chunk = idx.narrow(0, done, len);
            let xs = self.x.index_select(0, &chunk).to_device(self.device);
            let ys = self.y.index_select(0, &chunk).to_device(self.device);
            let purpose = format!("eval/{}/{}/{mode:?}/{batch}", attack.name(), eps.text);
            let mut rng = rng_for(self.opts.seed, &purpose);
            let out = attack::run(attack, self.model, &xs, &ys, eps.value, &mut rng)?;
            succ.push(out.success.to_device(Device::Cpu));
            norms.push(out.norm(attack.norm()).to_device(Device::Cpu));
            qs.push(out.queries.to_kind(Kind::Float).to_device(Device::Cpu));
            done += len;
            batch += 1;
            progress(&Progress { attack: attack.name(), eps: &eps.text, mode, done, total });
        }
        let cat = |v: &[Tensor], kind: Kind| {
            if v.is_empty() { Tensor::zeros([0], (kind, Device::Cpu)) } else { Tensor::cat(v, 0) }
        };
        Ok(PointResults {
            success: cat(&succ, Kind::Bool),
            norm: cat(&norms, Kind::Float),
            queries: cat(&qs, Kind::Float),
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}

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

/// An attack of an evaluation suite and the preset it was configured from.
#[derive(Debug)]
pub struct SuiteEntry {
    pub attack: Box<dyn attack::Attack>,
    pub preset: String,
}

impl SuiteEntry {
    pub fn from_spec(spec: &AttackSpec) -> Result<Self> {
        Ok(Self { attack: spec.build()?, preset: spec.preset_name().name().to_string() })
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

/// Evaluate `model` on `points` under every attack of `suite` at every budget of `eps`.
pub fn evaluate(
    model: &Classifier,
    points: Points<'_>,
    suite: &[AttackSpec],
    eps: &[Eps],
    opts: &EvalOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Vec<EvalRecord>> {
    let entries = suite.iter().map(SuiteEntry::from_spec).collect::<Result<Vec<_>>>()?;
    evaluate_suite(model, points, &entries, eps, opts, progress)
}

/// [`evaluate`] on already built attacks.
pub fn evaluate_suite(
    model: &Classifier,
    points: Points<'_>,
    suite: &[SuiteEntry],
    eps: &[Eps],
    opts: &EvalOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Vec<EvalRecord>> {
    if opts.batch_size < 1 {
        return Err(AttackError::Config("eval batch_size must be >= 1".into()));
    }
    let (x, y) = selected(points, opts.subset)?;
    let ctx = Ctx { model, x: &x, y: &y, opts, device: model.device() };
    let start = Instant::now();
    let correct = ctx.clean_correct();
    let n = x.size()[0];
    let ev = Evaluation { ctx, suite, n, clean_acc: frac(&correct, n), correct };
    let mut records = vec![EvalRecord {
        seconds: start.elapsed().as_secs_f64(),
        ..ev.base("clean", "", "{}".into())
    }];
    // Minimum-norm attacks: one run each on the clean-correct points, at the largest eps.
    let max_eps = eps.iter().map(|e| e.value).fold(0.0, f64::max);
    let max_eps = Eps { text: format!("{max_eps}"), value: max_eps };
    let mut min_norm: Vec<Option<PointResults>> = Vec::new();
    for entry in suite {
        min_norm.push(match entry.attack.family() {
            Family::MinimumNorm => Some(ev.on_correct(entry, &max_eps, progress)?),
            _ => None,
        });
    }
    for e in eps {
        // Per attack, its results on every clean-correct point and the successes within `e`:
        // the min-norm runs, and the individual runs when made.
        let mut on_correct: Vec<Option<(PointResults, Tensor)>> = min_norm
            .iter()
            .map(|r| r.as_ref().map(|r| (r.clone_shallow(), threshold(r, e))))
            .collect();
        if opts.individual {
            records.extend(ev.individual(e, &mut on_correct, progress)?);
        }
        if opts.cumulative {
            records.extend(ev.cumulative(e, &on_correct, progress)?);
        }
    }
    Ok(records)
}

/// The points of `points` that `subset` keeps, on the CPU (index bookkeeping lives there;
/// batches move to the model's device).
fn selected(points: Points<'_>, subset: Subset) -> Result<(Tensor, Tensor)> {
    let (x, y) = (points.x.to_device(Device::Cpu), points.y.to_device(Device::Cpu));
    if subset == Subset::All {
        return Ok((x, y));
    }
    let mask = points.all_correct.ok_or_else(|| {
        AttackError::Config(
            "subset = \"all_correct\" needs the mask of points all compared models classify \
             correctly"
                .into(),
        )
    })?;
    if mask.size() != [x.size()[0]] {
        return Err(AttackError::ShapeMismatch {
            what: "all_correct mask".into(),
            expected: format!("[{}]", x.size()[0]),
            got: format!("{:?}", mask.size()),
        });
    }
    let idx = indices(&mask.to_device(Device::Cpu).to_kind(Kind::Bool));
    Ok((x.index_select(0, &idx), y.index_select(0, &idx)))
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
    /// A record with the clean columns filled in.
    fn base(&self, attack: &str, preset: &str, config: String) -> EvalRecord {
        EvalRecord {
            attack: attack.into(),
            preset: preset.into(),
            config,
            family: None,
            norm: None,
            eps_text: "0".into(),
            eps: 0.0,
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
        }
    }

    /// The record of `entry` at `e`: `robust` points left, `success` over the attacked points,
    /// `r` the attack's per-point results.
    fn record(
        &self,
        (entry, e, mode): (&SuiteEntry, &Eps, Mode),
        robust: i64,
        success: &Tensor,
        r: &PointResults,
    ) -> EvalRecord {
        // Minimum-norm attacks report their norms over every success of their one run.
        let norm_mask =
            if entry.attack.family() == Family::MinimumNorm { &r.success } else { success };
        let (median_norm, mean_norm, max_norm) = stats(&r.norm, norm_mask);
        let attacked = success.numel() as i64;
        let a = entry.attack.as_ref();
        EvalRecord {
            family: Some(a.family()),
            norm: Some(a.norm()),
            eps_text: e.text.clone(),
            eps: e.value,
            mode,
            robust_acc: if self.n == 0 { 0.0 } else { robust as f64 / self.n as f64 },
            success_rate: (attacked > 0).then(|| frac(success, attacked)),
            median_norm,
            mean_norm,
            max_norm,
            queries: (attacked > 0).then(|| r.queries.mean(Kind::Float).double_value(&[])),
            seconds: r.seconds,
            ..self.base(a.name(), &entry.preset, a.config_json())
        }
    }

    /// `entry` alone on every clean-correct point.
    fn on_correct(
        &self,
        entry: &SuiteEntry,
        e: &Eps,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<PointResults> {
        self.ctx.run(entry.attack.as_ref(), &indices(&self.correct), e, Mode::Individual, progress)
    }

    /// The individual rows at `e`; runs the fixed-budget attacks into `on_correct`.
    fn individual(
        &self,
        e: &Eps,
        on_correct: &mut [Option<(PointResults, Tensor)>],
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Vec<EvalRecord>> {
        let correct = self.correct.sum(Kind::Int64).int64_value(&[]);
        let mut records = Vec::new();
        for (i, entry) in self.suite.iter().enumerate() {
            if on_correct[i].is_none() {
                let r = self.on_correct(entry, e, progress)?;
                let s = r.success.shallow_clone();
                on_correct[i] = Some((r, s));
            }
            let (r, success) = on_correct[i].as_ref().expect("set above");
            let robust = correct - success.sum(Kind::Int64).int64_value(&[]);
            records.push(self.record((entry, e, Mode::Individual), robust, success, r));
        }
        Ok(records)
    }

    /// The cumulative rows at `e`: each attack on the points every earlier one failed on,
    /// taken from `on_correct` where the attack already ran on all correct points.
    fn cumulative(
        &self,
        e: &Eps,
        on_correct: &[Option<(PointResults, Tensor)>],
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Vec<EvalRecord>> {
        let correct_idx = indices(&self.correct);
        let mut robust = self.correct.copy();
        let mut records = Vec::new();
        for (i, entry) in self.suite.iter().enumerate() {
            let idx = indices(&robust);
            let (r, success) = match &on_correct[i] {
                Some((r, s)) => {
                    // Pick the still-robust points out of the results on all correct ones.
                    let pos = indices(&robust.index_select(0, &correct_idx));
                    let pr = PointResults {
                        success: r.success.index_select(0, &pos),
                        norm: r.norm.index_select(0, &pos),
                        queries: r.queries.index_select(0, &pos),
                        seconds: 0.0,
                    };
                    (pr, s.index_select(0, &pos))
                }
                None => {
                    let r =
                        self.ctx.run(entry.attack.as_ref(), &idx, e, Mode::Cumulative, progress)?;
                    let s = r.success.shallow_clone();
                    (r, s)
                }
            };
            let fooled = idx.masked_select(&success);
            robust = robust.index_fill(0, &fooled, 0);
            let count = robust.sum(Kind::Int64).int64_value(&[]);
            records.push(self.record((entry, e, Mode::Cumulative), count, &success, &r));
        }
        Ok(records)
    }
}

/// The records' robust accuracy at the end of each cumulative pass, per eps text.
pub fn worst_case(records: &[EvalRecord]) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for r in records.iter().filter(|r| r.mode == Mode::Cumulative) {
        match out.iter_mut().find(|(e, _)| *e == r.eps_text) {
            Some(slot) => slot.1 = r.robust_acc,
            None => out.push((r.eps_text.clone(), r.robust_acc)),
        }
    }
    out
}
