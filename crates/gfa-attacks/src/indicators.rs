//! Indicators of Attack Failure: Pintor, Demetrio, Sotgiu, Melis, Demontis & Biggio,
//! "Indicators of Attack Failure: Debugging and Improving Optimization of Adversarial Examples"
//! (NeurIPS 2022, arXiv 2106.09947); reference code pralab/IndicatorsOfAttackFailure,
//! `src/indicators/indicators.py`.
//!
//! Per point, signs that the attack, not the model, is why the point looks robust
//! (docs/method.md §10 has each definition, its threshold and how it relates to the masking
//! checks):
//! - *silent success* and *incomplete optimization* come from the attack's trace
//!   ([`crate::trace`], [`findings`]);
//! - *unstable predictions* from the loss at random points near the clean one
//!   ([`unstable_predictions`]);
//! - *unconstrained attack failure* from a run at a budget that covers the whole box
//!   ([`unbounded_eps`]);
//! - *transfer failure* from a transfer attack's trace (its one step is on the surrogate);
//! - *unavailable gradients* is masking check 8's measurement ([`crate::checks`]), read where
//!   the checks keep it.
use gfa_core::Classifier;
use gfa_core::seed::SeededRng;
use tch::{Device, Kind, Tensor};

use crate::attack::{self, Attack};
use crate::threat::{per_sample, per_sample_norm, uniform};
use crate::trace::Traced;
use crate::{Norm, Result, loss};

/// Incomplete optimization looks at the last this many values of a point's trajectory (the
/// reference's `num_steps = min(len(loss), 10)`).
pub const INCOMPLETE_WINDOW: usize = 10;
/// … and flags it when its best value, rescaled to [0, 1] over the trajectory, still rose by
/// more than this over them (the reference's `diffs > 0.05`).
pub const INCOMPLETE_TOL: f64 = 0.05;
/// Unstable predictions draws this many random points per evaluated point (the reference's
/// `gamma = 100`).
pub const UNSTABLE_SAMPLES: usize = 100;
/// … and flags a point whose loss changes, on average over them, by more than this fraction of
/// its value at the clean point. The reference code returns the average (capped at 1) and sets
/// no threshold; 0.1 is gfa's.
pub const UNSTABLE_TOL: f64 = 0.1;

/// Whether a trajectory (the values an attack drove up, in order) was still improving at its
/// end: rescaled to [0, 1] by its minimum and maximum, its running best rose by more than
/// [`INCOMPLETE_TOL`] over the last [`INCOMPLETE_WINDOW`] values. A trajectory of fewer than two
/// values, or a constant one, has not moved and is not flagged. (The reference minimizes its
/// loss and keeps a running minimum; gfa's traces are oriented to rise, so the running maximum.)
pub fn incomplete_optimization(values: &[f64]) -> bool {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.len() < 2 || hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return false;
    }
    let first = values.len() - values.len().min(INCOMPLETE_WINDOW);
    // The running best at the window's first value; at its last it is `hi`.
    let best_before = values[..=first].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (hi - best_before) / (hi - lo) > INCOMPLETE_TOL
}

/// What a traced run says of each point.
#[derive(Debug, Clone, PartialEq)]
pub struct Findings {
    /// The returned point fools the model (within the budget): [`attack::validate`]'s success.
    pub success: Vec<bool>,
    /// Some iterate fooled the model but the returned point does not (for a transfer attack:
    /// the example fooled the surrogate, not the target: a transfer failure).
    pub silent_success: Vec<bool>,
    /// The attack failed and its trajectory was still improving ([`incomplete_optimization`]).
    pub incomplete_optimization: Vec<bool>,
}

/// The findings of a trace and the run's validated success per point.
pub fn findings(traced: &Traced, success: &[bool]) -> Findings {
    findings_at_radius(traced, success, None)
}

/// [`findings`] of a minimum-norm attack traced at a target radius: `reached` says, per point,
/// whether the attack ended at an adversarial point at any norm. Where it did, outside the
/// radius, the attack completed its optimization (it found the point farther from the boundary
/// than the radius), so incomplete optimization counts only the points it never fooled.
pub fn findings_at_radius(traced: &Traced, success: &[bool], reached: Option<&[bool]>) -> Findings {
    let any = traced.any_adversarial();
    let silent = success.iter().zip(&any).map(|(s, a)| *a && !*s).collect();
    let done = |i: usize| reached.is_some_and(|r| r[i]);
    let incomplete = success
        .iter()
        .enumerate()
        .map(|(i, s)| !*s && !done(i) && incomplete_optimization(&traced.values(i)))
        .collect();
    Findings {
        success: success.to_vec(),
        silent_success: silent,
        incomplete_optimization: incomplete,
    }
}

/// Run `attack` with its trace ([`attack::run_traced`]) and read its findings.
pub fn traced_run(
    attack: &dyn Attack,
    model: &Classifier,
    x: &Tensor,
    y: &Tensor,
    eps: f64,
    rng: &mut SeededRng,
) -> Result<Findings> {
    let (out, traced) = attack::run_traced(attack, model, x, y, eps, rng)?;
    let success = Vec::<bool>::try_from(&out.success.to_device(Device::Cpu))?;
    if attack.family() != attack::Family::MinimumNorm || !eps.is_finite() {
        return Ok(findings(&traced, &success));
    }
    // Where the attack ended: adversarial at any norm (its success is counted within `eps`).
    let z = tch::no_grad(|| model.logits(&out.x_adv, false));
    let reached = z.argmax(1, false).ne_tensor(y).to_device(Device::Cpu);
    let reached = Vec::<bool>::try_from(&reached)?;
    Ok(findings_at_radius(&traced, &success, Some(&reached)))
}

/// A budget no point of the `[0, 1]` box exceeds, for images shaped like `x`: L∞ 1, L2 the
/// box's diagonal √d, L1 its d pixels. An attack that fails at it fails unconstrained.
pub fn unbounded_eps(norm: Norm, x: &Tensor) -> f64 {
    let d = x.size()[1..].iter().product::<i64>() as f64;
    match norm {
        Norm::Linf => 1.0,
        Norm::L2 => d.sqrt(),
        Norm::L1 => d,
    }
}

/// Random offsets for [`unstable_predictions`]: each pixel uniform in `[−radius/2, radius/2]`
/// (the reference's `(rand − 0.5) · radius`), for L2 and L1 rescaled to norm `radius/2`.
fn offsets(shape: &[i64], norm: Norm, radius: f64, rng: &mut SeededRng, device: Device) -> Tensor {
    let d = (uniform(shape, rng, device) - 0.5) * radius;
    match norm {
        Norm::Linf => d,
        n => {
            let size = per_sample_norm(&d, n).clamp_min(1e-12);
            &d / per_sample(&size, &d) * (radius / 2.0)
        }
    }
}

/// Per point, the mean over `samples` random points `x + δ` (clipped to the box; δ from
/// [`offsets`]) of the relative change of the per-sample `loss`, `|L(x + δ) − L(x)| / |L(x)|`
/// (divided by 1 where `L(x) = 0`), capped at 1: the reference's unstable-predictions metric. A
/// point is flagged above [`UNSTABLE_TOL`].
///
/// # Shapes
/// `x`: `[N, ...]`, `y`: `[N]` → `N` values.
// The model and points, the probe's loss and ball, and its generator.
#[allow(clippy::too_many_arguments)]
pub fn unstable_predictions(
    model: &Classifier,
    x: &Tensor,
    y: &Tensor,
    loss: loss::PerSample,
    norm: Norm,
    radius: f64,
    samples: usize,
    rng: &mut SeededRng,
) -> Result<Vec<f64>> {
    let at = |z: &Tensor| tch::no_grad(|| loss(&model.logits(z, false), y)).to_kind(Kind::Double);
    let reference = at(x);
    let scale = reference.abs();
    let scale = scale.ones_like().where_self(&scale.eq(0.0), &scale);
    let mut total = reference.zeros_like();
    for _ in 0..samples {
        let z = (x + offsets(&x.size(), norm, radius, rng, x.device())).clamp(0.0, 1.0);
        total += (at(&z) - &reference).abs() / &scale;
    }
    let mean = (total / samples.max(1) as f64).clamp_max(1.0);
    Ok(Vec::try_from(&mean.to_device(Device::Cpu))?)
}

/// The loss [`unstable_predictions`] probes for an attack of these facts, and its name: the
/// cross-entropy (`ce`) for the CE attacks, the logit margin `z_y − max_{j≠y} z_j` (`margin`)
/// for every other (the margin attacks, and those without a loss of their own, which drive that
/// margin to the boundary).
pub fn probe_loss(facts: &crate::Facts) -> (&'static str, loss::PerSample) {
    match facts.loss {
        Some(crate::Loss::Ce) => ("ce", loss::ce),
        _ => ("margin", loss::cw_margin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_optimization_reads_the_last_ten_values_of_the_running_best() {
        // Plateaued: the best reached 1.0 at step 2 and the last ten values stay below it.
        let mut flat = vec![0.0, 0.5, 1.0];
        flat.extend([0.9; 12]);
        assert!(!incomplete_optimization(&flat));
        // Still rising: the best gains 10 % of the range within the last ten values.
        let mut rising: Vec<f64> = (0..20).map(|i| f64::from(i) * 0.1).collect();
        assert!(incomplete_optimization(&rising));
        // Twelve values, the window the last ten: the best before it is 0.96875 or 0.9375 (binary
        // fractions, exact), so the window gains 3.1 % (not flagged) or 6.25 % (flagged).
        let twelve = |b: f64| [vec![0.0, b, b], vec![b; 8], vec![1.0]].concat();
        assert!(!incomplete_optimization(&twelve(0.96875)));
        assert!(incomplete_optimization(&twelve(0.9375)));
        // Shorter than the window: the window is the whole trajectory, which moved.
        rising = vec![0.0, 0.96875, 1.0];
        assert!(incomplete_optimization(&rising));
        // Two values that differ: the window holds both, the whole range moved.
        assert!(incomplete_optimization(&[1.0, 1.5]));
        assert!(!incomplete_optimization(&[1.0]));
        assert!(!incomplete_optimization(&[2.0, 2.0, 2.0]));
        assert!(!incomplete_optimization(&[]));
    }

    #[test]
    fn unbounded_budgets_cover_the_box() {
        let x = Tensor::zeros([2, 3, 4, 4], (Kind::Float, Device::Cpu));
        assert_eq!(unbounded_eps(Norm::Linf, &x), 1.0);
        assert_eq!(unbounded_eps(Norm::L2, &x), 48f64.sqrt());
        assert_eq!(unbounded_eps(Norm::L1, &x), 48.0);
    }

    #[test]
    fn offsets_have_the_reference_size() {
        let mut rng = rand::SeedableRng::seed_from_u64(3);
        let d = offsets(&[4, 3, 8, 8], Norm::Linf, 0.2, &mut rng, Device::Cpu);
        assert!(d.abs().max().double_value(&[]) <= 0.1);
        let d = offsets(&[4, 3, 8, 8], Norm::L2, 0.2, &mut rng, Device::Cpu);
        let n: Vec<f32> = per_sample_norm(&d, Norm::L2).try_into().unwrap();
        assert!(n.iter().all(|v| (v - 0.1).abs() < 1e-6), "{n:?}");
    }
}
