//! FAB and FAB-T, the Fast Adaptive Boundary attack (Croce & Hein, "Minimally distorted
//! Adversarial Examples with a Fast Adaptive Boundary Attack", ICML 2020, arXiv 1907.02044),
//! Linf and L2, batched.
//!
//! Each iteration linearizes the classifier at `x1`, picks the closest linearized decision
//! boundary (untargeted: over all classes, one backward pass per class; targeted: the target
//! only), projects both `x1` and the clean `x0` onto that hyperplane inside the `[0, 1]` box
//! (exact box-constrained minimal-norm projections), and moves to a convex combination biased
//! toward `x0` (`alpha <= alpha_max`) with overshoot `eta`. After every success the iterate is
//! pulled back toward `x0` by `beta`.
//!
//! Defaults follow auto-attack `fab_pt.py` / `fab_base.py` (`FABAttack_PT`): `n_iter=100`,
//! `n_restarts=1`, `alpha_max=0.1`, `eta=1.05`, `beta=0.9`; FAB-T (AutoAttack standard) runs 9
//! targets, the classes ranked 2nd..10th by the clean logits, one restart each, only on points
//! still robust. Restarts after the first start at a random point at radius `eps / 2` (auto-attack
//! takes `min(1e10, eps) / 2`).
//!
//! Success rule (auto-attack): when `eps` is finite, a point counts (and its adversarial example
//! is kept) only if `||delta|| <= eps`; later restarts/targets run only on the points still
//! robust. With `eps = f64::INFINITY` FAB is a pure minimum-norm attack: every restart and
//! target runs on all clean-correct points and the smallest perturbation found is kept.
//!
//! The box-constrained projection onto `{z : <w, z> = b}` solves
//! `min ||d||_p s.t. <w, t + d> = b, t + d in [0, 1]^D` through its one-parameter family
//! `d_i(lambda) = -sign(w_i) min(lambda s_i, cap_i)` (`s_i = 1` for Linf, `|w_i|` for L2; `cap_i`
//! the room to the box in the descent direction): bisection isolates the linear piece, then a
//! closed-form solve on that piece (in f64). It is exact up to round-off, like auto-attack's
//! sorting-based `fab_projections.py`, and falls back to the farthest box corner when the
//! hyperplane is out of reach.
use gfa_core::Classifier;
use gfa_core::seed::SeededRng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::attack::{describe, perturb_via_run};
use crate::deepfool::logit_jacobian;
use crate::preset::Preset;
use crate::threat::{normal, per_sample, per_sample_norm, uniform};
use crate::trace::Trace;
use crate::{Attack, AttackError, Norm, Result, loss};

/// FAB settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FabConfig {
    /// The preset these settings started from (recorded in result rows).
    pub preset: Preset,
    /// `linf` or `l2`.
    pub norm: Norm,
    pub n_iter: usize,
    /// Runs per target (untargeted: runs in total); runs after the first start at random.
    pub n_restarts: usize,
    pub alpha_max: f64,
    pub eta: f64,
    pub beta: f64,
    /// FAB-T: attack the classes ranked 2..=n_target_classes+1 by the clean logits in turn.
    pub targeted: bool,
    pub n_target_classes: i64,
}

impl Default for FabConfig {
    /// auto-attack `FABAttack_PT`: `norm='Linf'`, `n_restarts=1`, `n_iter=100`,
    /// `alpha_max=0.1`, `eta=1.05`, `beta=0.9`, untargeted.
    fn default() -> Self {
        Self {
            preset: Preset::Reference,
            norm: Norm::Linf,
            n_iter: 100,
            n_restarts: 1,
            alpha_max: 0.1,
            eta: 1.05,
            beta: 0.9,
            targeted: false,
            n_target_classes: 9,
        }
    }
}

impl FabConfig {
    /// FAB-T as AutoAttack standard runs it (`fab-t`: 9 targets, 100 iterations, 1 restart).
    pub fn fab_t(norm: Norm) -> Self {
        Self { norm, targeted: true, ..Self::default() }
    }

    /// torchattacks 3.5.1 `FAB(norm='Linf', steps=10, n_restarts=1, multi_targeted=False)`.
    pub fn torchattacks() -> Self {
        Self { preset: Preset::Torchattacks, n_iter: 10, ..Self::default() }
    }
}

/// The FAB / FAB-T attack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fab {
    pub config: FabConfig,
}

impl Fab {
    pub fn new(config: FabConfig) -> Result<Self> {
        if config.norm == Norm::L1 {
            return Err(AttackError::UnsupportedNorm { attack: "fab".into(), norm: "l1".into() });
        }
        if config.n_iter == 0 || config.n_restarts == 0 || config.n_target_classes < 1 {
            return Err(AttackError::Config(
                "fab.n_iter, fab.n_restarts and fab.n_target_classes must be at least 1".into(),
            ));
        }
        if !(config.alpha_max >= 0.0 && config.eta > 0.0 && config.beta > 0.0 && config.beta < 1.0)
        {
            return Err(AttackError::Config(format!(
                "fab needs alpha_max >= 0, eta > 0, 0 < beta < 1; got {}, {}, {}",
                config.alpha_max, config.eta, config.beta
            )));
        }
        Ok(Self { config })
    }
}

/// Box-constrained minimal-norm step from each row of `t` onto the hyperplane `<w, z> = b`.
///
/// # Shapes
/// `t`, `w`: `[m, D]`; `b`: `[m]` → `[m, D]`.
pub fn project_hyperplane(t: &Tensor, w: &Tensor, b: &Tensor, norm: Norm) -> Tensor {
    let kind = t.kind();
    let (t, w, b) = (t.to_kind(Kind::Double), w.to_kind(Kind::Double), b.to_kind(Kind::Double));
    // Orient w so that the hyperplane is reached by decreasing <w, z>: c = <w, t> - b >= 0.
    let c = (&w * &t).sum_dim_intlist(1, false, Kind::Double) - &b;
    let sgn = c.ge(0.0).to_kind(Kind::Double) * 2.0 - 1.0;
    let w = &w * sgn.unsqueeze(1);
    let c = (c * &sgn).unsqueeze(1);
    let live = match norm {
        Norm::L2 => w.abs().gt(1e-8),
        _ => w.ne(0.0),
    };
    let a = w.abs() * live.to_kind(Kind::Double);
    let cap = t.where_self(&w.gt(0.0), &(1.0 - &t));
    let s = match norm {
        Norm::L2 => a.shallow_clone(),
        _ => live.to_kind(Kind::Double),
    };
    // Breakpoint of each coordinate (where it hits the box); dead coordinates never move.
    let bp = (&cap / s.clamp_min(1e-300)).where_self(&live, &Tensor::zeros_like(&cap));
    let g_of =
        |lam: &Tensor| (&a * (&s * lam).minimum(&cap)).sum_dim_intlist(1, true, Kind::Double);
    let mut lo = Tensor::zeros_like(&c);
    let mut hi = bp.amax(1, true);
    let reachable = g_of(&hi).ge_tensor(&c);
    for _ in 0..64 {
        let mid = (&lo + &hi) / 2.0;
        let below = g_of(&mid).lt_tensor(&c);
        lo = mid.where_self(&below, &lo);
        hi = hi.where_self(&below, &mid);
    }
    // Closed form on the linear piece: saturated coordinates (bp <= lo) contribute a*cap.
    let sat = bp.le_tensor(&lo).logical_and(&live);
    let satf = sat.to_kind(Kind::Double);
    let unsat = live.logical_and(&sat.logical_not()).to_kind(Kind::Double);
    let num = &c - (&a * &cap * &satf).sum_dim_intlist(1, true, Kind::Double);
    let den = (&a * &s * unsat).sum_dim_intlist(1, true, Kind::Double);
    let lam = (num / den.clamp_min(1e-300)).clamp_min(0.0);
    let lam = lam.where_self(&den.gt(0.0), &hi);
    let lam = lam.where_self(&reachable, &Tensor::full_like(&lam, f64::INFINITY));
    let mag = (&s * &lam).minimum(&cap).where_self(&live, &Tensor::zeros_like(&cap));
    (-(w.sign()) * mag).to_kind(kind)
}

/// One FAB run on `x0` (all correctly classified) with labels `y`; returns the best adversarial
/// example and its norm (`inf` where none was found). A `trace` records the start and each
/// iteration's new point ([`record`]).
/// (One function, long on purpose: it follows auto-attack's `attack_single_run` step by step,
/// so the two read side by side.)
// The run's inputs plus the trace.
#[allow(clippy::too_many_arguments)]
fn single_run(
    cfg: &FabConfig,
    model: &Classifier,
    x0: &Tensor,
    y: &Tensor,
    target: Option<&Tensor>,
    start_radius: Option<f64>,
    rng: &mut SeededRng,
    mut trace: Option<&mut Trace>,
) -> (Tensor, Tensor) {
    let n = x0.size()[0];
    let shape = x0.size();
    let dev = x0.device();
    let nc = model.num_classes();
    let x0f = x0.flatten(1, -1);
    let mut x1 = match start_radius {
        None => x0.shallow_clone(),
        Some(r) => {
            let t = match cfg.norm {
                Norm::L2 => normal(&shape, rng, dev),
                _ => uniform(&shape, rng, dev) * 2.0 - 1.0,
            };
            let nrm = per_sample_norm(&t, cfg.norm).clamp_min(1e-12);
            (x0 + &t / per_sample(&nrm, &t) * (r * 0.5)).clamp(0.0, 1.0)
        }
    };
    let mut adv = x0.shallow_clone();
    let mut best = Tensor::full([n], f64::INFINITY, (x0.kind(), dev));
    for i in 0..cfg.n_iter {
        let xv = x1.detach().set_requires_grad(true);
        let z = model.logits(&xv, false);
        if i == 0 {
            record(trace.as_deref_mut(), &z.detach(), y, &(&x1 - x0));
        }
        // df: [n, K] logit differences to y; dg: [n, K, D] their gradients.
        let (df, dg) = match target {
            Some(t) => {
                let diff =
                    z.gather(1, &t.unsqueeze(1), false) - z.gather(1, &y.unsqueeze(1), false);
                let g =
                    Tensor::run_backward(&[diff.sum(diff.kind())], &[&xv], false, false).remove(0);
                (diff.detach(), g.flatten(1, -1).unsqueeze(1))
            }
            None => {
                let all =
                    Tensor::arange(nc, (Kind::Int64, dev)).unsqueeze(0).expand([n, nc], false);
                let jac = logit_jacobian(&xv, &z, &all).flatten(2, -1).transpose(0, 1);
                let zd = z.detach();
                let gy =
                    jac.gather(1, &y.view([-1, 1, 1]).expand([n, 1, jac.size()[2]], false), false);
                let df = &zd - zd.gather(1, &y.unsqueeze(1), false);
                let df = df.scatter_value(1, &y.unsqueeze(1), 1e10);
                (df, &jac - gy)
            }
        };
        let dual = match cfg.norm {
            Norm::L2 => dg.square().sum_dim_intlist(2, false, dg.kind()).sqrt(),
            _ => dg.abs().sum_dim_intlist(2, false, dg.kind()),
        };
        let dist = df.abs() / (dual + 1e-12);
        let ind = dist.argmin(1, true);
        let d_len = dg.size()[2];
        let w = dg.gather(1, &ind.unsqueeze(2).expand([n, 1, d_len], false), false).squeeze_dim(1);
        let x1f = x1.flatten(1, -1);
        let b = -df.gather(1, &ind, false).squeeze_dim(1)
            + (&w * &x1f).sum_dim_intlist(1, false, w.kind());
        let d3 = project_hyperplane(
            &Tensor::cat(&[&x1f, &x0f], 0),
            &Tensor::cat(&[&w, &w], 0),
            &Tensor::cat(&[&b, &b], 0),
            cfg.norm,
        );
        let a0 = per_sample_norm(&d3, cfg.norm).clamp_min(1e-8);
        let (a1, a2) = (a0.narrow(0, 0, n), a0.narrow(0, n, n));
        let alpha = (&a1 / (&a1 + &a2)).clamp(0.0, cfg.alpha_max).unsqueeze(1);
        let d1 = d3.narrow(0, 0, n);
        let d2 = d3.narrow(0, n, n);
        let x1n = ((&x1f + d1 * cfg.eta) * alpha.neg().g_add_scalar(1.0)
            + (&x0f + d2 * cfg.eta) * &alpha)
            .clamp(0.0, 1.0)
            .view(shape.as_slice());
        let z1 = tch::no_grad(|| model.logits(&x1n, false));
        record(trace.as_deref_mut(), &z1, y, &(&x1n - x0));
        let is_adv = z1.argmax(1, false).ne_tensor(y);
        let t = per_sample_norm(&(&x1n - x0), cfg.norm);
        let better = is_adv.logical_and(&t.lt_tensor(&best));
        best = t.where_self(&better, &best);
        adv = x1n.where_self(&per_sample(&better, &x1n), &adv);
        let back = x0 + (&x1n - x0) * cfg.beta;
        x1 = back.where_self(&per_sample(&is_adv, &x1n), &x1n);
    }
    (adv, best)
}

/// Trace one point of every row (FAB has no loss of its own: the negated logit margin
/// `max_{j≠y} z_j − z_y`, which it drives up to the boundary, and whether the point, at
/// perturbation `delta` from the clean one, is adversarial within the trace's budget).
fn record(trace: Option<&mut Trace>, logits: &Tensor, y: &Tensor, delta: &Tensor) {
    if let Some(t) = trace {
        let adv = logits.argmax(1, false).ne_tensor(y);
        t.record_iterate(&-loss::cw_margin(logits, y), &adv, delta);
    }
}

impl Attack for Fab {
    describe!(
        name: |a| if a.config.targeted { "fab-t" } else { "fab" },
        family: MinimumNorm,
        norm: |a| a.config.norm,
    );

    perturb_via_run!();
}

impl Fab {
    /// `perturb` with an optional trace: each run (per target and restart) records at the rows
    /// it attacks.
    fn run(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        eps: f64,
        rng: &mut SeededRng,
        mut trace: Option<&mut Trace>,
    ) -> Result<(Tensor, Tensor)> {
        let cfg = &self.config;
        let n = x.size()[0];
        let dev = x.device();
        let x0 = x.detach();
        let budget = eps.is_finite();
        // Random restarts start at eps/2 (auto-attack), or at its default radius without eps.
        let radius = if budget {
            eps
        } else {
            match cfg.norm {
                Norm::L2 => 1.0,
                _ => 0.3,
            }
        };
        let z0 = tch::no_grad(|| model.logits(&x0, false));
        let correct = z0.argmax(1, false).eq_tensor(y);
        let mut robust = correct.shallow_clone();
        let mut best = Tensor::full([n], f64::INFINITY, (x0.kind(), dev));
        let mut x_adv = x0.shallow_clone();
        let mut queries = Tensor::zeros([n], (Kind::Int64, dev));
        let ranked = z0.argsort(1, true);
        let targets: Vec<Option<i64>> = if cfg.targeted {
            (1..=cfg.n_target_classes.min(model.num_classes() - 1)).map(Some).collect()
        } else {
            vec![None]
        };
        for target_rank in targets {
            for restart in 0..cfg.n_restarts {
                let pool = if budget { &robust } else { &correct };
                let idx = pool.nonzero().squeeze_dim(1);
                if idx.numel() == 0 {
                    break;
                }
                let xs = x0.index_select(0, &idx);
                let ys = y.index_select(0, &idx);
                let ts = target_rank.map(|r| ranked.select(1, r).index_select(0, &idx));
                let start = (restart > 0).then_some(radius);
                let (adv, norm) = Trace::scoped(trace.as_deref_mut(), &idx, |t| {
                    single_run(cfg, model, &xs, &ys, ts.as_ref(), start, rng, t)
                });
                queries = queries.index_add(
                    0,
                    &idx,
                    &Tensor::full([idx.numel() as i64], cfg.n_iter as i64, (Kind::Int64, dev)),
                );
                let mut ok = norm.lt_tensor(&best.index_select(0, &idx));
                if budget {
                    ok = ok.logical_and(&norm.le(eps));
                }
                let new_best = norm.where_self(&ok, &best.index_select(0, &idx));
                best = best.index_copy(0, &idx, &new_best);
                let cur = x_adv.index_select(0, &idx);
                let merged = adv.where_self(&per_sample(&ok, &adv), &cur);
                x_adv = x_adv.index_copy(0, &idx, &merged);
                let still = robust.index_select(0, &idx).logical_and(&ok.logical_not());
                robust = robust.index_copy(0, &idx, &still);
            }
        }
        Ok((x_adv, queries))
    }
}

impl crate::facts::Costed for FabConfig {
    const COST_KEY: Option<&'static str> = Some("n_iter");
    /// Per iteration and restart: the gradients of every class's logit (untargeted), or of the
    /// target's and the true class's (per target, FAB-T).
    fn cost_per_point(&self) -> f64 {
        let per_iter = if self.targeted {
            2.0 * self.n_target_classes.max(1) as f64
        } else {
            crate::facts::COST_CLASSES
        };
        (self.n_iter * self.n_restarts.max(1)) as f64 * per_iter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closed forms in float64 (a few operations on values ≤ 3: rounding ≤ 1e-15 on every CPU
    /// code path), to 1e-12.
    fn rows(v: &[f64], m: i64) -> Tensor {
        Tensor::from_slice(v).view([m, -1])
    }

    #[test]
    fn projection_without_box_is_the_textbook_one() {
        // t = (0.5, 0.5), w = (1, 2), b = 2: L2 step c/||w||^2 * w with c = 1.5 - 2 = -0.5.
        let t = rows(&[0.5, 0.5], 1);
        let w = rows(&[1.0, 2.0], 1);
        let b = Tensor::from_slice(&[2.0f64]);
        let d: Vec<f64> = project_hyperplane(&t, &w, &b, Norm::L2).view([-1]).try_into().unwrap();
        assert!((d[0] - 0.1).abs() < 1e-12 && (d[1] - 0.2).abs() < 1e-12, "{d:?}");
        // Linf: every coordinate moves by c / ||w||_1 = 0.5 / 3 in the direction of sign(w).
        let d: Vec<f64> = project_hyperplane(&t, &w, &b, Norm::Linf).view([-1]).try_into().unwrap();
        assert!((d[0] - 1.0 / 6.0).abs() < 1e-12 && (d[1] - 1.0 / 6.0).abs() < 1e-12, "{d:?}");
    }

    #[test]
    fn projection_respects_the_box_and_reaches_the_plane() {
        // t = (0.9, 0.1), w = (1, 1), b = 1.6: the first coordinate can only rise by 0.1.
        let t = rows(&[0.9, 0.1], 1);
        let w = rows(&[1.0, 1.0], 1);
        let b = Tensor::from_slice(&[1.6f64]);
        for norm in [Norm::L2, Norm::Linf] {
            let d: Vec<f64> = project_hyperplane(&t, &w, &b, norm).view([-1]).try_into().unwrap();
            assert!((d[0] - 0.1).abs() < 1e-12 && (d[1] - 0.5).abs() < 1e-12, "{norm} {d:?}");
        }
        // Out of reach (b = 3): the farthest corner.
        let b = Tensor::from_slice(&[3.0f64]);
        let d: Vec<f64> = project_hyperplane(&t, &w, &b, Norm::L2).view([-1]).try_into().unwrap();
        assert!((d[0] - 0.1).abs() < 1e-12 && (d[1] - 0.9).abs() < 1e-12, "{d:?}");
    }
}
