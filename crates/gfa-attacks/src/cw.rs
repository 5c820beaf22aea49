//! Carlini–Wagner L2 (Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks",
//! IEEE S&P 2017, arXiv 1608.04644), untargeted, minimum-norm.
//!
//! The image is reparameterized as `x_a = (tanh(w) + 1) / 2` (always inside the box), `w` starts
//! at `atanh((2x - 1) * 0.999999)` (the shrink keeps pixels at exactly 0 or 1 finite) and Adam
//! minimizes `||x_a - x||_2^2 + c * max(z_y - max_{j != y} z_j + kappa, 0)` per sample. A binary
//! search over `c` (per sample) keeps the smallest-L2 adversarial iterate seen.
//!
//! Defaults follow the original `l2_attack.py` (carlini/nn_robust_attacks): 9 binary-search steps,
//! 10000 iterations, `c0 = 1e-3`, `kappa = 0`, `lr = 1e-2`, abort early when the loss has not
//! dropped by 0.01% over a tenth of the iterations. One deliberate deviation: the abort test is
//! per sample (the original sums the loss over the batch), so a sample's result does not depend
//! on which samples share its batch; `abort_scope = "batch"` restores the original rule.
//!
//! The `torchattacks` preset reproduces torchattacks 3.5.1 `CW(c=1, kappa=0, steps=50, lr=0.01)`:
//! no binary search, no shrink (pixels at 0 or 1 never move), its margin
//! (`max(onehot * z) - max((1 - onehot) * z)`, wrong when logits are negative; docs/attacks.md §3.8)
//! and its abort rule (batch cost strictly above the previous check).
use gfa_core::Classifier;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::attack::{describe, perturb_via_run};
use crate::preset::Preset;
use crate::threat::per_sample;
use crate::trace::Trace;
use crate::{Attack, AttackError, Norm, Result};

/// Which loss the early-abort test looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbortScope {
    /// Each sample stops on its own loss (results independent of the batch composition).
    Sample,
    /// The whole batch stops on the batch-summed loss (original CW/EAD code, torchattacks).
    Batch,
}

/// How the margin `real - other` is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MarginForm {
    /// `real = z_y`, `other = max_{j != y} z_j`.
    Exact,
    /// torchattacks `CW.f`: `real = max(onehot * z)`, `other = max((1 - onehot) * z)`.
    TorchattacksCw,
    /// torchattacks `EADEN/EADL1.EAD_loss`: `real = max(onehot * z)`, `other` exact.
    TorchattacksEad,
}

/// `max(real - other + kappa, 0)` per sample.
///
/// # Shapes
/// `z`: `[N, C]`, `y`: `[N]` → `[N]`.
pub(crate) fn cw_margin(z: &Tensor, y: &Tensor, kappa: f64, form: MarginForm) -> Tensor {
    let onehot = z.zeros_like().scatter_value(1, &y.unsqueeze(1), 1.0);
    let exact_other = (z - &onehot * 1e4).amax(1, false);
    let exact_real = z.gather(1, &y.unsqueeze(1), false).squeeze_dim(1);
    let (real, other) = match form {
        MarginForm::Exact => (exact_real, exact_other),
        MarginForm::TorchattacksCw => {
            ((&onehot * z).amax(1, false), (onehot.neg().g_add_scalar(1.0) * z).amax(1, false))
        }
        MarginForm::TorchattacksEad => ((&onehot * z).amax(1, false), exact_other),
    };
    (real - other + kappa).clamp_min(0.0)
}

/// Misclassified with the kappa margin: `argmax(z + kappa * onehot(y)) != y`.
pub(crate) fn is_adversarial(z: &Tensor, y: &Tensor, kappa: f64) -> Tensor {
    let bumped = z.scatter_add(
        1,
        &y.unsqueeze(1),
        &Tensor::full([z.size()[0], 1], kappa, (z.kind(), z.device())),
    );
    bumped.argmax(1, false).ne_tensor(y)
}

/// Per-sample binary search over `c` as in the original CW/EAD code: a success lowers the upper
/// bound, a failure raises the lower bound; `c` is bisected once an upper bound exists and
/// multiplied by 10 before that.
pub(crate) fn update_const(succ: &Tensor, c: &mut Tensor, lo: &mut Tensor, hi: &mut Tensor) {
    *hi = hi.minimum(c).where_self(succ, hi);
    *lo = lo.maximum(c).where_self(&succ.logical_not(), lo);
    let bisect = (&*lo + &*hi) / 2.0;
    *c = bisect.where_self(&hi.lt(1e9), &(&*c * 10.0));
}

/// Is iteration `it` an early-abort check point (every tenth of `steps`)?
pub(crate) fn is_check_point(it: usize, steps: usize) -> bool {
    it.is_multiple_of((steps / 10).max(1))
}

/// Adam (Kingma & Ba) on one tensor, with PyTorch's update rule and defaults
/// (`betas = (0.9, 0.999)`, `eps = 1e-8`).
#[derive(Debug)]
pub(crate) struct Adam {
    lr: f64,
    m: Tensor,
    v: Tensor,
    t: i32,
}

impl Adam {
    pub(crate) fn new(like: &Tensor, lr: f64) -> Self {
        Self { lr, m: like.zeros_like(), v: like.zeros_like(), t: 0 }
    }

    /// The updated parameter `w - lr * m_hat / (sqrt(v_hat) + eps)`.
    pub(crate) fn step(&mut self, w: &Tensor, g: &Tensor) -> Tensor {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
        self.t += 1;
        self.m = &self.m * b1 + g * (1.0 - b1);
        self.v = &self.v * b2 + g.square() * (1.0 - b2);
        let bc1 = 1.0 - b1.powi(self.t);
        let bc2 = 1.0 - b2.powi(self.t);
        let denom = self.v.sqrt() / bc2.sqrt() + eps;
        w - &self.m / denom * (self.lr / bc1)
    }
}

/// CW-L2 settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CwConfig {
    /// The preset these settings started from (recorded in result rows).
    pub preset: Preset,
    /// Binary-search steps over `c` (1 = fixed `c`).
    pub binary_search_steps: usize,
    /// Adam iterations per binary-search step.
    pub steps: usize,
    pub initial_const: f64,
    /// Confidence margin.
    pub kappa: f64,
    pub lr: f64,
    pub abort_early: bool,
    /// Abort when the loss at a check point exceeds `abort_tolerance` times the previous one.
    pub abort_tolerance: f64,
    pub abort_scope: AbortScope,
    /// `w0 = atanh((2x - 1) * tanh_shrink)`; 1.0 reproduces torchattacks (saturated pixels stuck).
    pub tanh_shrink: f64,
    /// Use torchattacks' margin `max(onehot*z) - max((1-onehot)*z)` (a bug; compat only).
    pub torchattacks_margin: bool,
}

impl Default for CwConfig {
    /// carlini/nn_robust_attacks `l2_attack.py`: `BINARY_SEARCH_STEPS=9`, `MAX_ITERATIONS=10000`,
    /// `INITIAL_CONST=1e-3`, `CONFIDENCE=0`, `LEARNING_RATE=1e-2`, `ABORT_EARLY=True` (factor
    /// 0.9999), `arctanh(... * 1.999999)`.
    fn default() -> Self {
        Self {
            preset: Preset::Reference,
            binary_search_steps: 9,
            steps: 10000,
            initial_const: 1e-3,
            kappa: 0.0,
            lr: 1e-2,
            abort_early: true,
            abort_tolerance: 0.9999,
            abort_scope: AbortScope::Sample,
            tanh_shrink: 0.999999,
            torchattacks_margin: false,
        }
    }
}

impl CwConfig {
    /// torchattacks 3.5.1 `CW(c=1, kappa=0, steps=50, lr=0.01)` with its quirks.
    pub fn torchattacks() -> Self {
        Self {
            preset: Preset::Torchattacks,
            binary_search_steps: 1,
            steps: 50,
            initial_const: 1.0,
            abort_tolerance: 1.0,
            abort_scope: AbortScope::Batch,
            tanh_shrink: 1.0,
            torchattacks_margin: true,
            ..Self::default()
        }
    }
}

/// The CW-L2 attack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cw {
    pub config: CwConfig,
}

impl Cw {
    pub fn new(config: CwConfig) -> Result<Self> {
        let c = &config;
        if c.binary_search_steps == 0 || c.steps == 0 {
            return Err(AttackError::Config(
                "cw.binary_search_steps and cw.steps must be at least 1".into(),
            ));
        }
        if !(c.lr > 0.0 && c.initial_const > 0.0 && c.kappa >= 0.0) {
            return Err(AttackError::Config(format!(
                "cw needs lr > 0, initial_const > 0, kappa >= 0; got lr={}, initial_const={}, \
                 kappa={}",
                c.lr, c.initial_const, c.kappa
            )));
        }
        if !(c.tanh_shrink > 0.0 && c.tanh_shrink <= 1.0) {
            return Err(AttackError::Config(format!(
                "cw.tanh_shrink must lie in (0, 1], got {}",
                c.tanh_shrink
            )));
        }
        Ok(Self { config })
    }
}

impl Attack for Cw {
    describe!(
        name: |_| "cw",
        family: MinimumNorm,
        norm: |_| Norm::L2,
    );

    perturb_via_run!(no_eps);
}

impl Cw {
    /// `perturb` with an optional trace: per Adam iteration of every binary-search step, the
    /// negated objective `-(‖δ‖² + c·margin)` and whether the iterate is adversarial, of the
    /// points not stopped early.
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
        let x0 = x.detach();
        let form =
            if cfg.torchattacks_margin { MarginForm::TorchattacksCw } else { MarginForm::Exact };
        let w0 = ((&x0 * 2.0 - 1.0) * cfg.tanh_shrink).clamp(-1.0, 1.0).atanh();
        let opts = (x0.kind(), dev);
        let mut c = Tensor::full([n], cfg.initial_const, opts);
        let mut lo = Tensor::zeros([n], opts);
        let mut hi = Tensor::full([n], 1e10, opts);
        let mut best_l2 = Tensor::full([n], f64::INFINITY, opts);
        let mut best_adv = x0.shallow_clone();
        let mut queries = Tensor::zeros([n], (Kind::Int64, dev));
        for b in 0..cfg.binary_search_steps {
            if cfg.binary_search_steps >= 10 && b + 1 == cfg.binary_search_steps {
                c = hi.shallow_clone();
            }
            let mut w = w0.shallow_clone();
            let mut adam = Adam::new(&w, cfg.lr);
            let mut succ = Tensor::zeros([n], (Kind::Bool, dev));
            let mut active = Tensor::ones([n], (Kind::Bool, dev));
            let mut prev = Tensor::full([n], 1e6, opts);
            let mut prev_batch = 1e6;
            for it in 0..cfg.steps {
                let wv = w.detach().set_requires_grad(true);
                let xa = (wv.tanh() + 1.0) / 2.0;
                let z = model.logits(&xa, false);
                let l2 = (&xa - &x0).square().flatten(1, -1).sum_dim_intlist(1, false, xa.kind());
                let f = cw_margin(&z, y, cfg.kappa, form);
                let loss = &l2 + &c * &f;
                let g =
                    Tensor::run_backward(&[loss.sum(loss.kind())], &[&wv], false, false).remove(0);
                w = adam.step(&wv.detach(), &g);
                let (z, l2, loss, xa) = (z.detach(), l2.detach(), loss.detach(), xa.detach());
                if let Some(t) = trace.as_deref_mut() {
                    let adv = is_adversarial(&z, y, cfg.kappa);
                    t.record_iterate_where(&active, &-&loss, &adv, &(&xa - &x0));
                }
                queries += active.to_kind(Kind::Int64);
                // The success test uses the logits of this iterate, before the Adam step.
                let improved = is_adversarial(&z, y, cfg.kappa)
                    .logical_and(&l2.lt_tensor(&best_l2))
                    .logical_and(&active);
                succ = succ.logical_or(&improved);
                best_l2 = l2.where_self(&improved, &best_l2);
                best_adv = xa.where_self(&per_sample(&improved, &xa), &best_adv);
                if cfg.abort_early && is_check_point(it, cfg.steps) {
                    match cfg.abort_scope {
                        AbortScope::Sample => {
                            let stop = loss.gt_tensor(&(&prev * cfg.abort_tolerance));
                            active = active.logical_and(&stop.logical_not());
                            prev = loss;
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
            }
            update_const(&succ, &mut c, &mut lo, &mut hi);
        }
        Ok((best_adv.clamp(0.0, 1.0), queries))
    }
}

impl crate::facts::Costed for CwConfig {
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
    fn margin_forms_differ_only_on_negative_logits() {
        let z = Tensor::from_slice(&[-1.0f32, -3.0, -2.0, 2.0, 1.0, 0.5]).view([2, 3]);
        let y = Tensor::from_slice(&[0i64, 0]);
        let exact: Vec<f32> = cw_margin(&z, &y, 0.0, MarginForm::Exact).try_into().unwrap();
        let bug: Vec<f32> = cw_margin(&z, &y, 0.0, MarginForm::TorchattacksCw).try_into().unwrap();
        // Row 0: z_y = -1, other = -2 → margin 1; the bug sees real = 0, other = 0 → 0.
        assert_eq!(exact, vec![1.0, 1.0]);
        assert_eq!(bug, vec![0.0, 1.0]);
    }

    #[test]
    fn binary_search_bisects_after_success_and_grows_before() {
        let succ = Tensor::from_slice(&[true, false]);
        let mut c = Tensor::from_slice(&[1.0f32, 1.0]);
        let mut lo = Tensor::zeros([2], (Kind::Float, tch::Device::Cpu));
        let mut hi = Tensor::full([2], 1e10, (Kind::Float, tch::Device::Cpu));
        update_const(&succ, &mut c, &mut lo, &mut hi);
        let c: Vec<f32> = c.try_into().unwrap();
        assert_eq!(c, vec![0.5, 10.0]);
    }

    #[test]
    fn adam_first_step_moves_by_lr_against_the_gradient_sign() {
        // In float64: the first step is `lr · g / (|g| + 1e-8)` exactly up to a few roundings
        // (≤ 1e-17 here, on any CPU code path).
        let w = Tensor::from_slice(&[0.0f64, 1.0]);
        let g = Tensor::from_slice(&[3.0f64, -0.5]);
        let mut adam = Adam::new(&w, 0.01);
        let v: Vec<f64> = adam.step(&w, &g).try_into().unwrap();
        let want = [-0.01 * 3.0 / (3.0 + 1e-8), 1.0 + 0.01 * 0.5 / (0.5 + 1e-8)];
        assert!((v[0] - want[0]).abs() < 1e-15 && (v[1] - want[1]).abs() < 1e-15, "{v:?}");
    }

    #[test]
    fn config_is_strict() {
        assert!(serde_json::from_str::<CwConfig>(r#"{"stepss": 1}"#).is_err());
        assert!(Cw::new(CwConfig { tanh_shrink: 1.5, ..Default::default() }).is_err());
    }
}
