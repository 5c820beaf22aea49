//! DeepFool (Moosavi-Dezfooli, Fawzi & Frossard, "DeepFool: a simple and accurate method to fool
//! deep neural networks", CVPR 2016, arXiv 1511.04599), minimum-norm, L2 and Linf.
//!
//! Each step linearizes the logit differences `g_k = f_k - f_y` around the current point, picks
//! the closest linearized boundary `l = argmin_k |g_k| / ||grad g_k||_q` (q the dual norm: L2 for
//! L2, L1 for Linf) and moves onto it. The whole batch runs at once: one backward pass per
//! candidate class per step over the still-correct samples (an active mask), never a loop over
//! images.
//!
//! Defaults follow the original LTS4 `Python/deepfool.py`: 50 steps, overshoot 0.02 applied to
//! the accumulated perturbation (`x = x0 + (1 + overshoot) r_tot`), 10 candidate classes ranked by
//! the clean logits. The Linf step is foolbox's `LinfDeepFoolAttack` (distance `|g| / ||w||_1`,
//! direction `sign(w)`). Deviations, all documented in docs/attacks.md §3.7: the label attacked is the
//! ground truth `y` (a clean-misclassified point is returned unchanged, norm 0; for correctly
//! classified points this is the predicted class, as in the original), and every iterate is
//! clipped to `[0, 1]`.
//!
//! The `torchattacks` preset reproduces torchattacks 3.5.1 `DeepFool` (steps 50, overshoot 0.02,
//! all classes as candidates, overshoot applied to every step from the current point:
//! `x <- clip01(x + (1 + os) |g_l| w_l / ||w_l||^2)`).
use gfa_core::Classifier;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::attack::{describe, perturb_via_run};
use crate::preset::Preset;
use crate::threat::{per_sample, per_sample_norm};
use crate::trace::Trace;
use crate::{Attack, AttackError, Norm, Result, loss};

/// Where the overshoot is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overshoot {
    /// `x = clip01(x0 + (1 + os) r_tot)` (original LTS4 code, foolbox).
    Total,
    /// `x <- clip01(x + (1 + os) r_step)`: compounds over steps (torchattacks).
    PerStep,
}

/// DeepFool settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeepFoolConfig {
    /// The preset these settings started from (recorded in result rows).
    pub preset: Preset,
    /// `l2` or `linf`.
    pub norm: Norm,
    /// Maximum number of linearization steps.
    pub steps: usize,
    pub overshoot: f64,
    /// Number of classes considered, the true class included, ranked by the clean logits
    /// (clamped to the number of classes).
    pub candidates: i64,
    pub overshoot_mode: Overshoot,
}

impl Default for DeepFoolConfig {
    /// LTS4 `Python/deepfool.py`: `num_classes=10`, `overshoot=0.02`, `max_iter=50`, overshoot on
    /// the total perturbation.
    fn default() -> Self {
        Self {
            preset: Preset::Reference,
            norm: Norm::L2,
            steps: 50,
            overshoot: 0.02,
            candidates: 10,
            overshoot_mode: Overshoot::Total,
        }
    }
}

impl DeepFoolConfig {
    /// torchattacks 3.5.1 `DeepFool(steps=50, overshoot=0.02)`: every class is a candidate and
    /// the overshoot multiplies each step.
    pub fn torchattacks() -> Self {
        Self {
            preset: Preset::Torchattacks,
            candidates: i64::MAX,
            overshoot_mode: Overshoot::PerStep,
            ..Self::default()
        }
    }
}

/// The DeepFool attack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeepFool {
    pub config: DeepFoolConfig,
}

impl DeepFool {
    pub fn new(config: DeepFoolConfig) -> Result<Self> {
        if config.norm == Norm::L1 {
            return Err(AttackError::UnsupportedNorm {
                attack: "deepfool".into(),
                norm: "l1".into(),
            });
        }
        if config.candidates < 2 {
            return Err(AttackError::Config(format!(
                "deepfool.candidates must be at least 2, got {}",
                config.candidates
            )));
        }
        if !(config.overshoot >= 0.0 && config.overshoot.is_finite()) {
            return Err(AttackError::Config(format!(
                "deepfool.overshoot must be a finite number >= 0, got {}",
                config.overshoot
            )));
        }
        Ok(Self { config })
    }
}

/// Gradients of the selected logits `logits.gather(1, classes)` with respect to `x`, one backward
/// pass per column over the whole batch (each sample's logits depend only on its own input).
///
/// # Shapes
/// `x`: `[n, ...]` requiring grad; `logits`: `[n, C]`; `classes`: `[n, K]` → `[K, n, ...]`.
pub(crate) fn logit_jacobian(x: &Tensor, logits: &Tensor, classes: &Tensor) -> Tensor {
    let sel = logits.gather(1, classes, false);
    let k = sel.size()[1];
    let grads: Vec<Tensor> = (0..k)
        .map(|j| {
            let out = sel.select(1, j).sum(sel.kind());
            Tensor::run_backward(&[out], &[x], j + 1 < k, false).remove(0)
        })
        .collect();
    Tensor::stack(&grads, 0)
}

/// `w[l_i, i]` for every sample `i`.
///
/// # Shapes
/// `w`: `[K, n, ...]`, `l`: `[n]` int64 → `[n, ...]`.
pub(crate) fn select_rows(w: &Tensor, l: &Tensor) -> Tensor {
    let shape = w.size();
    let flat = w.flatten(2, -1).transpose(0, 1);
    let d = flat.size()[2];
    let idx = l.view([-1, 1, 1]).expand([shape[1], 1, d], false);
    flat.gather(1, &idx, false).squeeze_dim(1).view(&shape[1..])
}

/// Dual norm of a batch of gradients `[K, n, ...]` → `[K, n]`.
fn dual_norm(w: &Tensor, norm: Norm) -> Tensor {
    let flat = w.flatten(2, -1);
    match norm {
        Norm::L2 => flat.square().sum_dim_intlist(2, false, flat.kind()).sqrt(),
        _ => flat.abs().sum_dim_intlist(2, false, flat.kind()),
    }
}

impl Attack for DeepFool {
    describe!(
        name: |_| "deepfool",
        family: MinimumNorm,
        norm: |a| a.config.norm,
    );

    perturb_via_run!(no_eps);
}

/// Trace the iterates of every point (DeepFool has no loss of its own: the negated logit
/// margin `max_{j≠y} z_j − z_y`, which it drives up to the boundary); `delta` is each iterate's
/// perturbation from the clean point (adversarial counts only within the trace's budget).
fn record(trace: Option<&mut Trace>, logits: &Tensor, y: &Tensor, delta: &Tensor) {
    if let Some(t) = trace {
        let adv = logits.argmax(1, false).ne_tensor(y);
        t.record_iterate(&-loss::cw_margin(logits, y), &adv, delta);
    }
}

impl DeepFool {
    /// `perturb` with an optional trace: every iterate of every point, the last included.
    fn run(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        mut trace: Option<&mut Trace>,
    ) -> Result<(Tensor, Tensor)> {
        let cfg = &self.config;
        let n = x.size()[0];
        let x0 = x.detach();
        let nc = model.num_classes();
        let k = cfg.candidates.min(nc);
        // Candidate classes: y first, then the other top-ranked classes of the clean logits.
        let z0 = tch::no_grad(|| model.logits(&x0, false));
        let masked = z0.scatter_value(1, &y.unsqueeze(1), f64::INFINITY);
        let candidates = masked.topk(k, 1, true, true).1;
        let mut x_adv = x0.shallow_clone();
        let mut r_tot = x0.zeros_like();
        let mut queries = Tensor::zeros([n], (Kind::Int64, x.device()));
        let scale = 1.0 + cfg.overshoot;
        let mut all_fooled = false;
        for _ in 0..cfg.steps {
            let logits = tch::no_grad(|| model.logits(&x_adv, false));
            record(trace.as_deref_mut(), &logits, y, &(&x_adv - &x0));
            let active = logits.argmax(1, false).eq_tensor(y);
            if active.sum(Kind::Int64).int64_value(&[]) == 0 {
                all_fooled = true;
                break;
            }
            let idx = active.nonzero().squeeze_dim(1);
            // Only the still-correct samples go through the backward passes.
            let xs = x_adv.index_select(0, &idx).detach().set_requires_grad(true);
            let zs = model.logits(&xs, false);
            let cand = candidates.index_select(0, &idx);
            let jac = logit_jacobian(&xs, &zs, &cand);
            let zsel = zs.detach().gather(1, &cand, false);
            // g_k = f_k - f_y and w_k = grad g_k for the wrong candidates (columns 1..k).
            let f = (zsel.narrow(1, 1, k - 1) - zsel.narrow(1, 0, 1)).transpose(0, 1);
            let w = jac.narrow(0, 1, k - 1) - jac.narrow(0, 0, 1);
            let wn = dual_norm(&w, cfg.norm) + 1e-12;
            let dist = f.abs() / &wn;
            let l = dist.argmin(0, false);
            let dist_l = dist.gather(0, &l.unsqueeze(0), false).squeeze_dim(0);
            let w_l = select_rows(&w, &l);
            let dir = match cfg.norm {
                Norm::L2 => {
                    let nrm = per_sample_norm(&w_l, Norm::L2) + 1e-12;
                    &w_l / per_sample(&nrm, &w_l)
                }
                _ => w_l.sign(),
            };
            let r = dir * per_sample(&dist_l, &w_l);
            match cfg.overshoot_mode {
                Overshoot::Total => {
                    let rt = r_tot.index_select(0, &idx) + &r;
                    r_tot = r_tot.index_copy(0, &idx, &rt);
                    let xs_new = (x0.index_select(0, &idx) + rt * scale).clamp(0.0, 1.0);
                    x_adv = x_adv.detach().index_copy(0, &idx, &xs_new);
                }
                Overshoot::PerStep => {
                    let xs_new = (xs.detach() + r * scale).clamp(0.0, 1.0);
                    x_adv = x_adv.detach().index_copy(0, &idx, &xs_new);
                }
            }
            queries = queries.index_add(0, &idx, &Tensor::ones_like(&idx));
        }
        if trace.is_some() && !all_fooled {
            let delta = &x_adv - &x0;
            record(trace, &tch::no_grad(|| model.logits(&x_adv, false)), y, &delta);
        }
        Ok((x_adv.detach(), queries))
    }
}

impl crate::facts::Costed for DeepFoolConfig {
    const COST_KEY: Option<&'static str> = Some("steps");
    /// Per step, the gradients of the candidate classes' logits.
    fn cost_per_point(&self) -> f64 {
        self.steps as f64 * (self.candidates as f64).min(crate::facts::COST_CLASSES)
    }
    /// Only the still-correct points take a step.
    fn point_cost(&self) -> crate::facts::PointCost {
        crate::facts::PointCost::stopping(self.cost_per_point(), self.cost_per_point())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_rejects_unknown_keys_and_l1() {
        assert!(serde_json::from_str::<DeepFoolConfig>(r#"{"stepz": 3}"#).is_err());
        let c: DeepFoolConfig = serde_json::from_str(r#"{"norm": "linf"}"#).unwrap();
        assert_eq!(c.steps, 50);
        assert!(DeepFool::new(DeepFoolConfig { norm: Norm::L1, ..Default::default() }).is_err());
    }
}
