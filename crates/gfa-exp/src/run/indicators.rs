//! The Indicators of Attack Failure of a run (docs/method.md §10, `indicators.csv`), computed
//! after its evaluation when the grid has an `[indicators]` section.
//!
//! On the first `n` evaluated points the model classifies correctly, each traced attack of the
//! suite runs again with its trace on ([`gfa_attacks::indicators::traced_run`]), at each of its
//! budgets (a minimum-norm attack once, at the largest), with generators seeded from the run
//! seed (`indicators/<attack>/<eps>/<batch>`). Its trace gives *silent success* and *incomplete
//! optimization* (a transfer attack's gives *transfer failure*); random points around each
//! point give *unstable predictions*; the suite's strongest white-box fixed-budget attack at a
//! budget covering the box gives *unconstrained attack failure*; masking check 8's measurement
//! gives *unavailable gradients* (not measured again). Every per-point indicator counts only the
//! points the attack failed on: the points whose robustness it may explain.

use std::collections::BTreeMap;

use anyhow::Result;
use gfa_attacks::indicators::{self as ioaf, Findings};
use gfa_attacks::{Access, AttackSpec, Eps, Family};
use gfa_core::Classifier;
use gfa_core::seed::rng_for;
use tch::Tensor;

use crate::analysis::indicators::{ATTACK_FAILURE_SHARE, outcome};
use crate::analysis::masking::GradHealth;
use crate::config::spec::{AttackEntry, IndicatorsConfig};
use crate::results::records::{IndicatorRow, RunKey};
use crate::run::batches::Suite;

/// What the indicators of one run are measured on.
pub struct Probe<'a> {
    pub model: &'a Classifier,
    /// The points (`[n, ...]`, `[n]`, on the CPU): the first `n` evaluated points the model
    /// classifies correctly.
    pub x: &'a Tensor,
    pub y: &'a Tensor,
    pub suite: Suite<'a>,
    pub config: &'a IndicatorsConfig,
    /// Masking check 8's measurement on the evaluated points.
    pub grad: Option<GradHealth>,
    pub key: &'a RunKey,
}

/// Every indicator row of the run: per traced attack and budget, then the unconstrained run and
/// the gradients.
pub fn indicator_rows(p: &Probe<'_>) -> Result<Vec<IndicatorRow>> {
    let mut rows = Vec::new();
    let mut unstable = BTreeMap::new();
    for entry in p.suite.attacks.iter().filter(|a| p.config.traces(a)) {
        for eps in runs_of(entry) {
            rows.extend(traced_rows(p, entry, eps.as_ref(), &mut unstable)?);
        }
    }
    if let Some(entry) = IndicatorsConfig::unconstrained_attack(p.suite.attacks) {
        rows.push(unconstrained(p, entry)?);
    }
    rows.extend(p.grad.map(|g| unavailable_gradients(p.key, g)));
    Ok(rows)
}

/// The budgets an entry runs at: each of a fixed-budget attack's, the largest of a
/// minimum-norm attack's (its target radius; `None` when it lists none).
fn runs_of(entry: &AttackEntry) -> Vec<Option<Eps>> {
    if entry.spec.facts().family == Family::FixedBudget {
        return entry.eps.iter().cloned().map(Some).collect();
    }
    vec![entry.eps.iter().max_by(|a, b| a.value.total_cmp(&b.value)).cloned()]
}

/// One row of `entry` (`None`: the model) for per-point `flags`.
fn row(
    key: &RunKey,
    entry: Option<&AttackEntry>,
    eps: Option<&Eps>,
    indicator: &str,
    flags: &[bool],
) -> IndicatorRow {
    let flagged = flags.iter().filter(|f| **f).count();
    let (fraction, result) = outcome(flagged, flags.len());
    IndicatorRow {
        attack: entry.map(|e| e.name.clone()).unwrap_or_default(),
        kind: entry.map(|e| e.kind.clone()).unwrap_or_default(),
        preset: entry.map(|e| e.preset.clone()).unwrap_or_default(),
        norm: entry.map(|e| e.norm.clone()).unwrap_or_default(),
        eps_text: eps.map(|e| e.text.clone()).unwrap_or_default(),
        eps: eps.map(|e| e.value),
        indicator: indicator.into(),
        n: flags.len(),
        flagged,
        fraction,
        threshold: ATTACK_FAILURE_SHARE,
        result: result.into(),
        ..IndicatorRow::keyed(key)
    }
}

/// The probe's points in batches of `eval.batch_size`, on the model's device (none without
/// points).
fn batches(p: &Probe<'_>) -> Vec<(Tensor, Tensor)> {
    if p.x.size()[0] == 0 {
        return vec![];
    }
    let size = p.suite.eval.batch_size.max(1) as i64;
    let dev = p.model.device();
    let (xs, ys) = (p.x.split(size, 0), p.y.split(size, 0));
    xs.iter().zip(&ys).map(|(x, y)| (x.to_device(dev), y.to_device(dev))).collect()
}

/// Run `attack` on the probe's points batch by batch, each batch with its own generator
/// (`indicators/<purpose>/<batch>`), and join the findings.
fn batched(
    p: &Probe<'_>,
    purpose: &str,
    mut run: impl FnMut(&Tensor, &Tensor, &mut gfa_core::seed::SeededRng) -> Result<Findings>,
) -> Result<Findings> {
    let mut all =
        Findings { success: vec![], silent_success: vec![], incomplete_optimization: vec![] };
    for (b, (xs, ys)) in batches(p).iter().enumerate() {
        let mut rng = rng_for(p.suite.seed, &format!("indicators/{purpose}/{b}"));
        let f = run(xs, ys, &mut rng)?;
        all.success.extend(f.success);
        all.silent_success.extend(f.silent_success);
        all.incomplete_optimization.extend(f.incomplete_optimization);
    }
    Ok(all)
}

/// Per point, unstable predictions for `spec`'s probe loss at radius `eps`, over the probe's
/// points; computed once per (loss, norm, eps) and kept in `cache`.
fn unstable_points(
    p: &Probe<'_>,
    spec: &AttackSpec,
    eps: &Eps,
    cache: &mut BTreeMap<String, Vec<f64>>,
) -> Result<Vec<f64>> {
    let (name, loss) = ioaf::probe_loss(&spec.facts());
    let purpose = format!("unstable/{name}/{}/{}", spec.norm(), eps.text);
    if let Some(v) = cache.get(&purpose) {
        return Ok(v.clone());
    }
    let (norm, samples) = (spec.norm(), p.config.samples);
    let mut out = Vec::new();
    for (b, (xs, ys)) in batches(p).iter().enumerate() {
        let mut rng = rng_for(p.suite.seed, &format!("indicators/{purpose}/{b}"));
        out.extend(ioaf::unstable_predictions(
            p.model, xs, ys, loss, norm, eps.value, samples, &mut rng,
        )?);
    }
    cache.insert(purpose, out.clone());
    Ok(out)
}

/// The rows of one traced attack at one budget.
fn traced_rows(
    p: &Probe<'_>,
    entry: &AttackEntry,
    eps: Option<&Eps>,
    cache: &mut BTreeMap<String, Vec<f64>>,
) -> Result<Vec<IndicatorRow>> {
    let attack = entry.spec.build_with(p.suite.surrogates)?;
    let value = eps.map_or(f64::INFINITY, |e| e.value);
    let text = eps.map_or("", |e| e.text.as_str());
    let purpose = format!("{}/{}/{text}", entry.name, entry.preset);
    let f = batched(p, &purpose, |x, y, rng| {
        Ok(ioaf::traced_run(attack.as_ref(), p.model, x, y, value, rng)?)
    })?;
    let at = |indicator: &str, flags: &[bool]| row(p.key, Some(entry), eps, indicator, flags);
    if entry.spec.facts().access == Access::Surrogate {
        // Its one step is the example on the surrogate: fooled there, not on the target.
        return Ok(vec![at("transfer_failure", &f.silent_success)]);
    }
    let mut rows = vec![
        at("silent_success", &f.silent_success),
        at("incomplete_optimization", &f.incomplete_optimization),
    ];
    if let Some(eps) = eps {
        let metric = unstable_points(p, &entry.spec, eps, cache)?;
        let flags: Vec<bool> =
            metric.iter().zip(&f.success).map(|(m, s)| !*s && *m > ioaf::UNSTABLE_TOL).collect();
        rows.push(at("unstable_predictions", &flags));
    }
    Ok(rows)
}

/// Unconstrained attack failure: `entry` at a budget covering the box
/// ([`ioaf::unbounded_eps`]) fails on a point without a silent success.
fn unconstrained(p: &Probe<'_>, entry: &AttackEntry) -> Result<IndicatorRow> {
    let attack = entry.spec.build_with(p.suite.surrogates)?;
    let eps = ioaf::unbounded_eps(attack.norm(), p.x);
    let traced = entry.spec.facts().traced;
    let purpose = format!("unconstrained/{}/{}", entry.name, entry.preset);
    let f = batched(p, &purpose, |x, y, rng| {
        if traced {
            return Ok(ioaf::traced_run(attack.as_ref(), p.model, x, y, eps, rng)?);
        }
        let out = gfa_attacks::attack::run(attack.as_ref(), p.model, x, y, eps, rng)?;
        let success = Vec::<bool>::try_from(&out.success.to_device(tch::Device::Cpu))?;
        let none = vec![false; success.len()];
        Ok(Findings { success, silent_success: none.clone(), incomplete_optimization: none })
    })?;
    let flags: Vec<bool> =
        f.success.iter().zip(&f.silent_success).map(|(s, silent)| !*s && !*silent).collect();
    let budget = Eps { text: "unbounded".into(), value: eps };
    Ok(row(p.key, Some(entry), Some(&budget), "unconstrained_attack_failure", &flags))
}

/// Unavailable gradients: masking check 8's points with an all-zero or a non-finite input
/// gradient, on every evaluated point.
fn unavailable_gradients(key: &RunKey, g: GradHealth) -> IndicatorRow {
    // The fractions are counts over n: k / n · n rounds back to k exactly.
    let count = |f: f64| (f * g.n as f64).round() as usize;
    let bad = (count(g.zero_frac) + count(g.nonfinite_frac)).min(g.n);
    let flags: Vec<bool> = (0..g.n).map(|i| i < bad).collect();
    row(key, None, None, "unavailable_gradients", &flags)
}
