//! EAD, the elastic-net attack (Chen, Sharma, Zhang, Yi & Hsieh, "EAD: Elastic-Net Attacks to Deep
//! Neural Networks via Adversarial Examples", AAAI 2018, arXiv 1709.04114), untargeted,
//! minimum-norm, with the EN or the L1 decision rule.
//!
//! FISTA on `c * max(z_y - max_{j != y} z_j + kappa, 0) + ||x' - x||_2^2 + beta ||x' - x||_1`: a
//! gradient step on the smooth part at the momentum point `y_k` (learning rate decaying as
//! `lr0 * (1 - k/K)^0.5`), the box-constrained soft threshold `S_beta` for the L1 part, momentum
//! `(k+1)/(k+4)`. A per-sample binary search over `c` keeps the adversarial iterate `x_k` with the
//! smallest elastic-net cost `||d||_2^2 + beta ||d||_1` (EN rule) or `||d||_1` (L1 rule).
//!
//! Defaults follow the original `en_attack.py` (IBM/EAD-Attack) and the paper's experiments:
//! `beta = 1e-3`, 9 binary-search steps, 1000 iterations (the code's default is 10000),
//! `c0 = 1e-3`, `lr = 1e-2`, `kappa = 0`, `x_k = y_k = x` reset at every binary-search step,
//! abort early with factor 0.9999. As in [`crate::cw`], the abort test is per sample by default.
//!
//! The `torchattacks` preset reproduces torchattacks 3.5.1 `EADEN`/`EADL1` (100 iterations, abort
//! factor 0.999999 on the batch loss, no reset of `x_k`/`y_k` between binary-search steps, the
//! `real = max(onehot * z)` margin). It also reproduces an aliasing quirk of that code: `y_k` is
//! an `nn.Parameter` sharing storage with the clean images, so the first in-place gradient step
//! also moves the reference image, and every later distance, threshold and cost is measured from
//! `x - lr * grad` instead of `x` (`torchattacks_alias_origin`). The returned point is clipped to
//! `[0, 1]`.
use gfa_core::Classifier;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::attack::{describe, perturb_via_run};
use crate::cw::{AbortScope, MarginForm, cw_margin, is_adversarial, is_check_point, update_const};
use crate::preset::Preset;
use crate::threat::per_sample;
use crate::trace::Trace;
use crate::{Attack, AttackError, Norm, Result};

/// Which successful iterate EAD keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EadRule {
    /// Smallest `||d||_2^2 + beta ||d||_1`.
    En,
    /// Smallest `||d||_1`.
    L1,
}

/// EAD settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EadConfig {
    /// The preset these settings started from (recorded in result rows).
    pub preset: Preset,
    pub rule: EadRule,
    /// Weight of the L1 term (and the soft-threshold level).
    pub beta: f64,
    pub binary_search_steps: usize,
    /// FISTA iterations per binary-search step.
    pub steps: usize,
    pub initial_const: f64,
    pub lr: f64,
    pub kappa: f64,
    pub abort_early: bool,
    pub abort_tolerance: f64,
    pub abort_scope: AbortScope,
    /// Restart `x_k = y_k = x` at every binary-search step (original); torchattacks does not.
    pub reset_per_binary_step: bool,
    /// Use torchattacks' `real = max(onehot * z)` margin (a bug; compat only).
    pub torchattacks_margin: bool,
    /// Reproduce torchattacks' in-place aliasing of the reference image (compat only).
    pub torchattacks_alias_origin: bool,
}

impl Default for EadConfig {
    /// IBM/EAD-Attack `en_attack.py`: `beta=1e-3`, `BINARY_SEARCH_STEPS=9`,
    /// `INITIAL_CONST=1e-3`, `LEARNING_RATE=1e-2`, `CONFIDENCE=0`, abort factor 0.9999, reset per
    /// binary step; 1000 iterations as in the paper's experiments.
    fn default() -> Self {
        Self {
            preset: Preset::Reference,
            rule: EadRule::En,
            beta: 1e-3,
            binary_search_steps: 9,
            steps: 1000,
            initial_const: 1e-3,
            lr: 1e-2,
            kappa: 0.0,
            abort_early: true,
            abort_tolerance: 0.9999,
            abort_scope: AbortScope::Sample,
            reset_per_binary_step: true,
            torchattacks_margin: false,
            torchattacks_alias_origin: false,
        }
    }
}

impl EadConfig {
    /// torchattacks 3.5.1 `EADEN` (rule `En`) / `EADL1` (rule `L1`) with default arguments
    /// (`max_iterations=100`) and their quirks.
    pub fn torchattacks(rule: EadRule) -> Self {
        Self {
            preset: Preset::Torchattacks,
            rule,
            steps: 100,
            abort_tolerance: 0.999999,
            abort_scope: AbortScope::Batch,
            reset_per_binary_step: false,
            torchattacks_margin: true,
            torchattacks_alias_origin: true,
            ..Self::default()
        }
    }
}

/// The EAD attack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ead {
    pub config: EadConfig,
}

impl Ead {
    pub fn new(config: EadConfig) -> Result<Self> {
        let c = &config;
        if c.binary_search_steps == 0 || c.steps == 0 {
            return Err(AttackError::Config(
                "ead.binary_search_steps and ead.steps must be at least 1".into(),
            ));
        }
        if !(c.lr > 0.0 && c.initial_const > 0.0 && c.kappa >= 0.0 && c.beta >= 0.0) {
            return Err(AttackError::Config(format!(
                "ead needs lr > 0, initial_const > 0, kappa >= 0, beta >= 0; got lr={}, \
                 initial_const={}, kappa={}, beta={}",
                c.lr, c.initial_const, c.kappa, c.beta
            )));
        }
        Ok(Self { config })
    }
}

/// Box-constrained soft threshold of `u` around `origin` at level `beta`.
fn shrink(u: &Tensor, origin: &Tensor, beta: f64) -> Tensor {
    let diff = u - origin;
    let upper = (u - beta).clamp_max(1.0);
    let lower = (u + beta).clamp_min(0.0);
    let out = origin.where_self(&diff.abs().le(beta), &lower);
    upper.where_self(&diff.gt(beta), &out)
}

fn per_sample_sum(t: &Tensor) -> Tensor {
    t.flatten(1, -1).sum_dim_intlist(1, false, t.kind())
}

impl Attack for Ead {
    describe!(
        name: |a| match a.config.rule {
            EadRule::En => "ead-en",
            EadRule::L1 => "ead-l1",
        },
        family: MinimumNorm,
        // Both rules attack in L1 (the elastic net's sparse term); the rule only picks which
        // successful iterate is kept. Results are thresholded at L1 budgets.
        norm: |_| Norm::L1,
    );

    perturb_via_run!(no_eps);
}

impl Ead {
    /// `perturb` with an optional trace: per ISTA iteration of every binary-search step, the
    /// negated objective `-(c·margin + ‖δ‖₂² + β‖δ‖₁)` at the new iterate and whether it is
    /// adversarial, of the points not stopped early.
    // Long on purpose: the ISTA loop and its binary search over c follow the reference
    // implementation step by step, so the two read side by side.
    fn run(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        mut trace: Option<&mut Trace>,
    ) -> Result<(Tensor, Tensor)> {
        let cfg = &self.config;
        let n = x.size()[0];
        let dev = x.device();
        let opts = (x.kind(), dev);
        let x0 = x.detach();
        let form =
            if cfg.torchattacks_margin { MarginForm::TorchattacksEad } else { MarginForm::Exact };
        let mut origin = x0.shallow_clone();
        let mut c = Tensor::full([n], cfg.initial_const, opts);
        let mut lo = Tensor::zeros([n], opts);
        let mut hi = Tensor::full([n], 1e10, opts);
        let mut best_cost = Tensor::full([n], f64::INFINITY, opts);
        let mut best_adv = x0.shallow_clone();
        let mut queries = Tensor::zeros([n], (Kind::Int64, dev));
        let mut x_k = x0.shallow_clone();
        let mut y_k = x0.shallow_clone();
        let mut first_step = true;
        for b in 0..cfg.binary_search_steps {
            if cfg.binary_search_steps >= 10 && b + 1 == cfg.binary_search_steps {
                c = hi.shallow_clone();
            }
            if cfg.reset_per_binary_step {
                x_k = x0.shallow_clone();
                y_k = x0.shallow_clone();
            }
            let mut succ = Tensor::zeros([n], (Kind::Bool, dev));
            let mut best_b = Tensor::full([n], f64::INFINITY, opts);
            let mut active = Tensor::ones([n], (Kind::Bool, dev));
            let mut prev = Tensor::full([n], 1e6, opts);
            let mut prev_batch = 1e6;
            for k in 0..cfg.steps {
                let lr = cfg.lr * (1.0 - k as f64 / cfg.steps as f64).sqrt();
                // Gradient of the smooth part (margin + squared L2) at y_k.
                let yv = y_k.detach().set_requires_grad(true);
                let z = model.logits(&yv, false);
                let smooth = &c * cw_margin(&z, y, cfg.kappa, form)
                    + per_sample_sum(&(&yv - &origin).square());
                let g = Tensor::run_backward(&[smooth.sum(smooth.kind())], &[&yv], false, false)
                    .remove(0);
                let u = y_k.detach() - g * lr;
                if cfg.torchattacks_alias_origin && first_step {
                    origin = u.shallow_clone();
                }
                first_step = false;
                let x_new = shrink(&u, &origin, cfg.beta);
                let zt = (k + 1) as f64 / (k + 4) as f64;
                y_k = &x_new + (&x_new - &x_k) * zt;
                x_k = x_new;
                queries += active.to_kind(Kind::Int64);
                // Score the new x_k.
                let z = tch::no_grad(|| model.logits(&x_k, false));
                let d = &x_k - &origin;
                let l2 = per_sample_sum(&d.square());
                let l1 = per_sample_sum(&d.abs());
                let loss = &c * cw_margin(&z, y, cfg.kappa, form) + &l2 + &l1 * cfg.beta;
                if let Some(t) = trace.as_deref_mut() {
                    let adv = is_adversarial(&z, y, cfg.kappa);
                    t.record_iterate_where(&active, &-&loss, &adv, &(&x_k - &x0));
                }
                if cfg.abort_early && is_check_point(k, cfg.steps) {
                    match cfg.abort_scope {
                        AbortScope::Sample => {
                            let stop = loss.gt_tensor(&(&prev * cfg.abort_tolerance));
                            active = active.logical_and(&stop.logical_not());
                            prev = loss.shallow_clone();
                            if active.any().int64_value(&[]) == 0 {
                                break;
                            }
                        }
                        AbortScope::Batch => {
                            let total = loss.sum(loss.kind()).double_value(&[]);
                            if total > prev_batch * cfg.abort_tolerance {
                                break;
                            }
                            prev_batch = total;
                        }
                    }
                }
                let cost = match cfg.rule {
                    EadRule::En => &l2 + &l1 * cfg.beta,
                    EadRule::L1 => l1,
                };
                let adv = is_adversarial(&z, y, cfg.kappa).logical_and(&active);
                let better_b = adv.logical_and(&cost.lt_tensor(&best_b));
                best_b = cost.where_self(&better_b, &best_b);
                succ = succ.logical_or(&better_b);
                let better = adv.logical_and(&cost.lt_tensor(&best_cost));
                best_cost = cost.where_self(&better, &best_cost);
                best_adv = x_k.where_self(&per_sample(&better, &x_k), &best_adv);
            }
            update_const(&succ, &mut c, &mut lo, &mut hi);
        }
        Ok((best_adv.clamp(0.0, 1.0), queries))
    }
}

impl crate::facts::Costed for EadConfig {
    const COST_KEY: Option<&'static str> = Some("steps");
    /// `steps` gradients per binary-search step.
    fn cost_per_point(&self) -> f64 {
        (self.steps * self.binary_search_steps.max(1)) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrink_is_the_box_constrained_soft_threshold() {
        // In float64: one subtraction or clamp per element, ≤ 1.1e-16 off the closed form.
        let origin = Tensor::from_slice(&[0.5f64, 0.5, 0.5, 0.99, 0.01]);
        let u = Tensor::from_slice(&[0.7f64, 0.505, 0.3, 1.5, -0.5]);
        let v: Vec<f64> = shrink(&u, &origin, 0.01).try_into().unwrap();
        let want = [0.69, 0.5, 0.31, 1.0, 0.0];
        for (a, b) in v.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{v:?}");
        }
    }

    #[test]
    fn config_is_strict() {
        assert!(serde_json::from_str::<EadConfig>(r#"{"betta": 1}"#).is_err());
        let c: EadConfig = serde_json::from_str(r#"{"rule": "l1"}"#).unwrap();
        assert_eq!(c.rule, EadRule::L1);
        assert!(Ead::new(EadConfig { steps: 0, ..Default::default() }).is_err());
    }
}
