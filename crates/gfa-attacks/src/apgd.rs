//! APGD and APGD-T: Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble
//! of diverse parameter-free attacks" (ICML 2020, arXiv 2003.01690).
//!
//! Semantics follow auto-attack `autoattack/autopgd_base.py` (`APGDAttack`,
//! `APGDAttack_targeted`; ATTACKS.md §4.4–§4.5):
//! - random start at distance exactly `eps` (Linf: `eps * t / max|t|`, L2: on the sphere);
//! - initial step `2 * eps`, momentum 0.75 (1.0 on the first step);
//! - checkpoints after `0.22 N`, then windows shrinking by `0.03 N` down to `0.06 N` iterations;
//!   at a checkpoint the step halves where the loss rose in at most `rho = 0.75` of the window,
//!   or where the previous checkpoint did not halve and the best loss did not improve; halved
//!   points restart from their best-loss iterate (and its gradient). At the first checkpoint the
//!   window's oldest comparison reads the unfilled last history row (zeros), as in the original;
//! - any misclassified iterate counts (`x_best_adv`); restarts run only on points not yet fooled;
//! - APGD-T: targeted DLR towards the 2nd, …, 10th most likely clean class, one run per target on
//!   the points still robust.
//!
//! Defaults: `reference` = auto-attack (`n_iter=100`, `n_restarts=1`, `rho=0.75`,
//! `n_target_classes=9`); `torchattacks` = torchattacks 3.5.1 `APGD`/`APGDT` (`steps=10`, else the
//! same). torchattacks' APGDT-L2 `step_size[0]` bug is not reproduced (ATTACKS.md §0.4).
use gfa_core::Classifier;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::attack::{Attack, Family};
use crate::preset::{Configured, Preset};
use crate::repeated::{indices, predict, run_restarts};
use crate::threat::{normal, per_sample, uniform};
use crate::{AttackError, Norm, Result, grad, loss};

/// Division guard of auto-attack's `normalize`.
const TINY: f64 = 1e-12;

/// APGD settings (shared by APGD-CE and APGD-DLR). `Default` is the reference Linf preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApgdConfig {
    pub norm: Norm,
    pub preset: Preset,
    pub n_iter: usize,
    pub n_restarts: usize,
    /// Fraction of loss increases in a window below which the step halves.
    pub rho: f64,
    pub momentum: f64,
    /// Initial step as a multiple of `eps`.
    pub step_init: f64,
}

impl Default for ApgdConfig {
    /// auto-attack `APGDAttack`: n_iter=100, n_restarts=1, rho=0.75, momentum 0.75, step 2·eps.
    fn default() -> Self {
        Self::preset_for(Preset::Reference, Norm::Linf)
    }
}

impl Configured for ApgdConfig {
    fn preset_for(preset: Preset, norm: Norm) -> Self {
        let n_iter = match preset {
            Preset::Reference => 100,
            Preset::Torchattacks => 10,
        };
        Self { norm, preset, n_iter, n_restarts: 1, rho: 0.75, momentum: 0.75, step_init: 2.0 }
    }
    fn norms() -> &'static [Norm] {
        &[Norm::Linf, Norm::L2]
    }
}

/// APGD-T settings. `Default` is the reference Linf preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApgdTConfig {
    pub norm: Norm,
    pub preset: Preset,
    pub n_iter: usize,
    /// Runs per target class.
    pub n_restarts: usize,
    /// Targets: the 2nd … (n+1)-th most likely classes at the clean input (capped at C − 1).
    pub n_target_classes: usize,
    pub rho: f64,
    pub momentum: f64,
    pub step_init: f64,
}

impl Default for ApgdTConfig {
    /// auto-attack `APGDAttack_targeted`: n_iter=100, n_target_classes=9, n_restarts=1, rho=0.75.
    fn default() -> Self {
        Self::preset_for(Preset::Reference, Norm::Linf)
    }
}

impl Configured for ApgdTConfig {
    fn preset_for(preset: Preset, norm: Norm) -> Self {
        let base = ApgdConfig::preset_for(preset, norm);
        Self {
            norm,
            preset,
            n_iter: base.n_iter,
            n_restarts: 1,
            // torchattacks APGDT(n_classes=10) attacks n_classes - 1 = 9 targets, like AA.
            n_target_classes: 9,
            rho: base.rho,
            momentum: base.momentum,
            step_init: base.step_init,
        }
    }
    fn norms() -> &'static [Norm] {
        &[Norm::Linf, Norm::L2]
    }
}

/// The loss APGD ascends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApgdLoss {
    Ce,
    Dlr,
}

/// The settings of one APGD run.
#[derive(Debug, Clone, Copy)]
struct Params {
    norm: Norm,
    eps: f64,
    n_iter: usize,
    rho: f64,
    momentum: f64,
    step_init: f64,
}

fn check_params(name: &str, norm: Norm, n_iter: usize, restarts: usize, rho: f64) -> Result<()> {
    if !ApgdConfig::norms().contains(&norm) {
        return Err(AttackError::UnsupportedNorm { attack: name.into(), norm: norm.to_string() });
    }
    if n_iter == 0 || restarts == 0 {
        return Err(AttackError::Config(format!("{name}: n_iter and n_restarts must be >= 1")));
    }
    if !(0.0..=1.0).contains(&rho) {
        return Err(AttackError::Config(format!("{name}: rho must lie in [0, 1], got {rho}")));
    }
    Ok(())
}

/// `v / (‖v‖ + 1e-12)` per sample, in the attack's norm.
fn normalize(v: &Tensor, norm: Norm) -> Tensor {
    let n = crate::threat::per_sample_norm(v, norm);
    v / per_sample(&(n + TINY), v)
}

/// auto-attack's projection: Linf clip to the ball then the box; L2 rescale to the ball then clip.
fn project(z: &Tensor, x: &Tensor, norm: Norm, eps: f64) -> Tensor {
    match norm {
        Norm::L2 => {
            let d = z - x;
            let n = crate::threat::per_sample_norm(&d, Norm::L2).clamp_max(eps);
            (x + normalize(&d, Norm::L2) * per_sample(&n, &d)).clamp(0.0, 1.0)
        }
        _ => z.maximum(&(x - eps)).minimum(&(x + eps)).clamp(0.0, 1.0),
    }
}

/// One APGD run on every point. Returns `x_best_adv` (the latest misclassified iterate, or the
/// start where none was) and whether any iterate was misclassified.
///
/// # Shapes
/// `x`: `[N, ...]`, `y`: `[N]` → (`[N, ...]`, `[N]` bool).
fn apgd_single(
    model: &Classifier,
    x: &Tensor,
    y: &Tensor,
    p: Params,
    loss_fn: &dyn Fn(&Tensor) -> Tensor,
    rng: &mut StdRng,
) -> (Tensor, Tensor) {
    let (n, dev) = (x.size()[0], x.device());
    let x = x.detach();
    let t = match p.norm {
        Norm::L2 => normal(&x.size(), rng, dev),
        _ => uniform(&x.size(), rng, dev) * 2.0 - 1.0,
    };
    let mut xa = (&x + normalize(&t, p.norm) * p.eps).clamp(0.0, 1.0);
    let (loss0, mut g, logits) = grad::input_grad(model, &xa, loss_fn);
    let mut x_best = xa.copy();
    let mut x_best_adv = xa.copy();
    let mut g_best = g.copy();
    let mut acc = logits.argmax(1, false).eq_tensor(y);
    let mut loss_best = loss0;

    let n_iter = p.n_iter;
    let mut k = ((0.22 * n_iter as f64) as usize).max(1);
    let k_min = ((0.06 * n_iter as f64) as usize).max(1);
    let k_dec = ((0.03 * n_iter as f64) as usize).max(1);
    let mut step = Tensor::full([n], p.step_init * p.eps, (Kind::Float, dev));
    let mut x_prev = xa.copy();
    let mut history: Vec<Tensor> =
        (0..n_iter).map(|_| Tensor::zeros([n], (Kind::Float, dev))).collect();
    let mut since_check = 0;
    let mut loss_best_last = loss_best.copy();
    let mut reduced_last = Tensor::ones([n], (Kind::Bool, dev));

    for i in 0..n_iter {
        let a = if i == 0 { 1.0 } else { p.momentum };
        let momentum_dir = &xa - &x_prev;
        x_prev = xa.copy();
        let dir = match p.norm {
            Norm::L2 => normalize(&g, Norm::L2),
            _ => g.sign(),
        };
        let z = project(&(&xa + dir * per_sample(&step, &xa)), &x, p.norm, p.eps);
        let z = &xa + (&z - &xa) * a + momentum_dir * (1.0 - a);
        xa = project(&z, &x, p.norm, p.eps);

        let (l, g_new, logits) = grad::input_grad(model, &xa, loss_fn);
        g = g_new;
        let ok = logits.argmax(1, false).eq_tensor(y);
        acc = acc.logical_and(&ok);
        x_best_adv = xa.where_self(&per_sample(&ok.logical_not(), &xa), &x_best_adv);

        history[i] = l.copy();
        let improved = l.gt_tensor(&loss_best);
        let imp = per_sample(&improved, &xa);
        x_best = xa.where_self(&imp, &x_best);
        g_best = g.where_self(&imp, &g_best);
        loss_best = l.where_self(&improved, &loss_best);

        since_check += 1;
        if since_check == k {
            let mut rises = Tensor::zeros([n], (Kind::Float, dev));
            for c in 0..k {
                let cur = i as isize - c as isize;
                let prev = (cur - 1).rem_euclid(n_iter as isize) as usize;
                rises += history[cur as usize].gt_tensor(&history[prev]).to_kind(Kind::Float);
            }
            let oscillating = rises.le(k as f64 * p.rho);
            let stalled =
                reduced_last.logical_not().logical_and(&loss_best_last.ge_tensor(&loss_best));
            let reduce = oscillating.logical_or(&stalled);
            reduced_last = reduce.copy();
            loss_best_last = loss_best.copy();
            step = (&step / 2.0).where_self(&reduce, &step);
            let r = per_sample(&reduce, &xa);
            xa = x_best.where_self(&r, &xa);
            g = g_best.where_self(&r, &g);
            since_check = 0;
            k = k.saturating_sub(k_dec).max(k_min);
        }
    }
    (x_best_adv, acc.logical_not())
}

/// APGD-CE or APGD-DLR.
#[derive(Debug, Clone)]
pub struct Apgd {
    pub config: ApgdConfig,
    pub loss: ApgdLoss,
}

impl Apgd {
    pub fn new(config: ApgdConfig, loss: ApgdLoss) -> Result<Self> {
        check_params("apgd", config.norm, config.n_iter, config.n_restarts, config.rho)?;
        Ok(Self { config, loss })
    }

    fn params(&self, eps: f64) -> Params {
        let c = &self.config;
        Params {
            norm: c.norm,
            eps,
            n_iter: c.n_iter,
            rho: c.rho,
            momentum: c.momentum,
            step_init: c.step_init,
        }
    }
}

impl Attack for Apgd {
    fn name(&self) -> &'static str {
        match self.loss {
            ApgdLoss::Ce => "apgd-ce",
            ApgdLoss::Dlr => "apgd-dlr",
        }
    }
    fn family(&self) -> Family {
        Family::FixedBudget
    }
    fn norm(&self) -> Norm {
        self.config.norm
    }
    fn config_json(&self) -> String {
        serde_json::to_string(&self.config).unwrap_or_default()
    }
    fn perturb(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        eps: f64,
        rng: &mut StdRng,
    ) -> Result<(Tensor, Tensor)> {
        if self.loss == ApgdLoss::Dlr && model.num_classes() < 3 {
            return Err(AttackError::Config("apgd-dlr needs at least 3 classes".into()));
        }
        let p = self.params(eps);
        let loss_kind = self.loss;
        run_restarts(model, x, y, self.config.n_restarts, rng, |xs, ys, r| {
            let f = |z: &Tensor| match loss_kind {
                ApgdLoss::Ce => loss::ce(z, ys),
                ApgdLoss::Dlr => loss::dlr(z, ys),
            };
            let (adv, _) = apgd_single(model, xs, ys, p, &f, r);
            let q = Tensor::full([xs.size()[0]], p.n_iter as i64 + 1, (Kind::Int64, xs.device()));
            Ok((adv, q))
        })
    }
}

/// APGD-T: targeted DLR over the most likely wrong classes.
#[derive(Debug, Clone)]
pub struct ApgdT {
    pub config: ApgdTConfig,
}

impl ApgdT {
    pub fn new(config: ApgdTConfig) -> Result<Self> {
        check_params("apgd-t", config.norm, config.n_iter, config.n_restarts, config.rho)?;
        if config.n_target_classes == 0 {
            return Err(AttackError::Config("apgd-t: n_target_classes must be >= 1".into()));
        }
        Ok(Self { config })
    }
}

impl Attack for ApgdT {
    fn name(&self) -> &'static str {
        "apgd-t"
    }
    fn family(&self) -> Family {
        Family::FixedBudget
    }
    fn norm(&self) -> Norm {
        self.config.norm
    }
    fn config_json(&self) -> String {
        serde_json::to_string(&self.config).unwrap_or_default()
    }
    fn perturb(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        eps: f64,
        rng: &mut StdRng,
    ) -> Result<(Tensor, Tensor)> {
        let c = &self.config;
        let n_cls = model.num_classes();
        if n_cls < 4 {
            return Err(AttackError::Config(format!(
                "apgd-t (targeted DLR) needs at least 4 classes, the model has {n_cls}"
            )));
        }
        let n_targets = (c.n_target_classes as i64).min(n_cls - 1);
        let p = Params {
            norm: c.norm,
            eps,
            n_iter: c.n_iter,
            rho: c.rho,
            momentum: c.momentum,
            step_init: c.step_init,
        };
        let mut x_adv = x.detach().copy();
        let mut queries = Tensor::zeros([x.size()[0]], (Kind::Int64, x.device()));
        let mut robust = predict(model, x).eq_tensor(y);
        for tc in 2..=n_targets + 1 {
            for _ in 0..c.n_restarts {
                let idx = indices(&robust);
                if idx.numel() == 0 {
                    return Ok((x_adv, queries));
                }
                let (xs, ys) = (x.index_select(0, &idx), y.index_select(0, &idx));
                // The target is fixed from the clean logits: the tc-th largest.
                let (_, order) = tch::no_grad(|| model.logits(&xs, false)).sort(1, true);
                let target = order.select(1, tc - 1);
                let f = |z: &Tensor| loss::dlr_targeted(z, &ys, &target);
                let (adv, fooled) = apgd_single(model, &xs, &ys, p, &f, rng);
                let merged = adv.where_self(&per_sample(&fooled, &adv), &xs);
                x_adv = x_adv.index_copy(0, &idx, &merged);
                let q =
                    Tensor::full([xs.size()[0]], p.n_iter as i64 + 1, (Kind::Int64, x.device()));
                queries = queries.index_add(0, &idx, &q);
                robust = robust.index_copy(0, &idx, &fooled.logical_not());
            }
        }
        Ok((x_adv, queries))
    }
}
