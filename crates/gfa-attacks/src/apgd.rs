//! APGD and APGD-T: Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble
//! of diverse parameter-free attacks" (ICML 2020, arXiv 2003.01690).
//!
//! Semantics follow auto-attack `autoattack/autopgd_base.py` (`APGDAttack`,
//! `APGDAttack_targeted`; docs/attacks.md §3.3–§3.4):
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
//! same). torchattacks' APGDT-L2 `step_size[0]` bug is not reproduced (docs/attacks.md §3.4).
use gfa_core::Classifier;
use gfa_core::seed::SeededRng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::attack::{Attack, describe, perturb_via_run};
use crate::preset::{Configured, Preset};
use crate::repeated::{indices, predict, run_restarts, split};
use crate::threat::{normal, per_sample, uniform};
use crate::trace::Trace;
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

/// What one APGD run ascends, per sample; its rows follow the active batch.
enum Objective {
    Ce,
    Dlr,
    /// Targeted DLR towards `[N]` int64 target classes.
    DlrTargeted(Tensor),
}

impl Objective {
    fn new(loss: ApgdLoss) -> Self {
        match loss {
            ApgdLoss::Ce => Self::Ce,
            ApgdLoss::Dlr => Self::Dlr,
        }
    }

    fn loss(&self, logits: &Tensor, y: &Tensor) -> Tensor {
        match self {
            Self::Ce => loss::ce(logits, y),
            Self::Dlr => loss::dlr(logits, y),
            Self::DlrTargeted(t) => loss::dlr_targeted(logits, y, t),
        }
    }

    /// The rows `idx` of the objective.
    fn select(&self, idx: &Tensor) -> Self {
        match self {
            Self::Ce => Self::Ce,
            Self::Dlr => Self::Dlr,
            Self::DlrTargeted(t) => Self::DlrTargeted(t.index_select(0, idx)),
        }
    }
}

/// The per-sample state of an APGD run over the points still being attacked.
struct Active {
    /// Positions in the caller's batch `[M]` int64.
    pos: Tensor,
    x: Tensor,
    y: Tensor,
    obj: Objective,
    xa: Tensor,
    x_prev: Tensor,
    x_best: Tensor,
    g: Tensor,
    g_best: Tensor,
    loss_best: Tensor,
    loss_best_last: Tensor,
    reduced_last: Tensor,
    step: Tensor,
    /// Loss per iteration `[n_iter, M]`.
    history: Tensor,
}

impl Active {
    /// Keep the rows `idx` of every per-sample tensor.
    fn keep(&mut self, idx: &Tensor) {
        for t in [
            &mut self.pos,
            &mut self.x,
            &mut self.y,
            &mut self.xa,
            &mut self.x_prev,
            &mut self.x_best,
            &mut self.g,
            &mut self.g_best,
            &mut self.loss_best,
            &mut self.loss_best_last,
            &mut self.reduced_last,
            &mut self.step,
        ] {
            *t = t.index_select(0, idx);
        }
        self.obj = self.obj.select(idx);
        self.history = self.history.index_select(1, idx);
    }
}

/// One APGD run. Returns, per point of the batch, `x_best_adv` (an iterate that fools the model,
/// or the random start where none did), whether any iterate fooled it, and the model queries.
///
/// A point leaves the batch at the first iterate that fools it, and that iterate is its result
/// (auto-attack keeps iterating it and returns the last fooling iterate). Each point's trajectory
/// — step size, checkpoints, momentum — is its own and the model is in eval mode, so the points
/// still attacked follow the same iterates either way: success per point is auto-attack's, and the
/// cost falls with the points already fooled. Queries count the start and each iteration a point
/// took part in; a `trace` records the objective and the adversarial flag at the start and at
/// each iteration, of the points taking part in it.
///
/// # Shapes
/// `x`: `[N, ...]`, `y`: `[N]` → (`[N, ...]`, `[N]` bool, `[N]` int64).
/// (One function, long on purpose: it follows auto-attack's `attack_single_run` step by step,
/// so the two read side by side.)
fn apgd_single(
    model: &Classifier,
    x: &Tensor,
    y: &Tensor,
    p: Params,
    obj: Objective,
    rng: &mut SeededRng,
    mut trace: Option<&mut Trace>,
) -> (Tensor, Tensor, Tensor) {
    let (n, dev) = (x.size()[0], x.device());
    let x = x.detach();
    let t = match p.norm {
        Norm::L2 => normal(&x.size(), rng, dev),
        _ => uniform(&x.size(), rng, dev) * 2.0 - 1.0,
    };
    let xa = (&x + normalize(&t, p.norm) * p.eps).clamp(0.0, 1.0);
    let (loss0, g, logits) = grad::input_grad(model, &xa, |z| obj.loss(z, y));
    let n_iter = p.n_iter;
    let mut out = xa.copy();
    let mut fooled = logits.argmax(1, false).ne_tensor(y);
    if let Some(t) = trace.as_deref_mut() {
        t.record(&loss0, &fooled);
    }
    let mut queries = Tensor::full([n], n_iter as i64 + 1, (Kind::Int64, dev));
    let _ = queries.masked_fill_(&fooled, 1);
    let mut s = Active {
        pos: Tensor::arange(n, (Kind::Int64, dev)),
        x_prev: xa.copy(),
        x_best: xa.copy(),
        g_best: g.copy(),
        loss_best_last: loss0.copy(),
        loss_best: loss0,
        reduced_last: Tensor::ones([n], (Kind::Bool, dev)),
        step: Tensor::full([n], p.step_init * p.eps, (x.kind(), dev)),
        history: Tensor::zeros([n_iter as i64, n], (x.kind(), dev)),
        x,
        y: y.shallow_clone(),
        obj,
        xa,
        g,
    };
    if let Some((_, rest)) = split(&fooled) {
        s.keep(&rest);
    }

    let mut k = ((0.22 * n_iter as f64) as usize).max(1);
    let k_min = ((0.06 * n_iter as f64) as usize).max(1);
    let k_dec = ((0.03 * n_iter as f64) as usize).max(1);
    let mut since_check = 0;
    for i in 0..n_iter {
        if s.pos.numel() == 0 {
            break;
        }
        let a = if i == 0 { 1.0 } else { p.momentum };
        let momentum_dir = &s.xa - &s.x_prev;
        s.x_prev = s.xa.copy();
        let dir = match p.norm {
            Norm::L2 => normalize(&s.g, Norm::L2),
            _ => s.g.sign(),
        };
        let z = project(&(&s.xa + dir * per_sample(&s.step, &s.xa)), &s.x, p.norm, p.eps);
        let z = &s.xa + (&z - &s.xa) * a + momentum_dir * (1.0 - a);
        s.xa = project(&z, &s.x, p.norm, p.eps);

        let (l, g, logits) = grad::input_grad(model, &s.xa, |z| s.obj.loss(z, &s.y));
        s.g = g;
        let hit = logits.argmax(1, false).ne_tensor(&s.y);
        if let Some(t) = trace.as_deref_mut() {
            t.record_at(&s.pos, &l, &hit);
        }
        // The iteration's one device→host read: which points it fooled.
        let rest = split(&hit).map(|(h, rest)| {
            let at = s.pos.index_select(0, &h);
            out = out.index_copy(0, &at, &s.xa.index_select(0, &h));
            fooled = fooled.index_fill(0, &at, 1);
            queries = queries.index_fill(0, &at, i as i64 + 2);
            rest
        });
        s.history.get(i as i64).copy_(&l);
        let improved = l.gt_tensor(&s.loss_best);
        let imp = per_sample(&improved, &s.xa);
        s.x_best = s.xa.where_self(&imp, &s.x_best);
        s.g_best = s.g.where_self(&imp, &s.g_best);
        s.loss_best = l.where_self(&improved, &s.loss_best);

        since_check += 1;
        if since_check == k {
            // Rows i-k+1 ..= i against their predecessors; the first checkpoint's oldest row
            // compares with the unfilled last row, as in auto-attack.
            let cur: Vec<i64> = (0..k).map(|c| i as i64 - c as i64).collect();
            let prev: Vec<i64> = cur.iter().map(|c| (c - 1).rem_euclid(n_iter as i64)).collect();
            let pick = |r: &[i64]| s.history.index_select(0, &Tensor::from_slice(r).to(dev));
            let rises = pick(&cur).gt_tensor(&pick(&prev)).to_kind(Kind::Float).sum_dim_intlist(
                0,
                false,
                Kind::Float,
            );
            let oscillating = rises.le(k as f64 * p.rho);
            let stalled =
                s.reduced_last.logical_not().logical_and(&s.loss_best_last.ge_tensor(&s.loss_best));
            let reduce = oscillating.logical_or(&stalled);
            s.reduced_last = reduce.copy();
            s.loss_best_last = s.loss_best.copy();
            s.step = (&s.step / 2.0).where_self(&reduce, &s.step);
            let r = per_sample(&reduce, &s.xa);
            s.xa = s.x_best.where_self(&r, &s.xa);
            s.g = s.g_best.where_self(&r, &s.g);
            since_check = 0;
            k = k.saturating_sub(k_dec).max(k_min);
        }

        if let Some(rest) = rest {
            s.keep(&rest);
        }
    }
    (out, fooled, queries)
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
    describe!(
        name: |a| match a.loss {
            ApgdLoss::Ce => "apgd-ce",
            ApgdLoss::Dlr => "apgd-dlr",
        },
        family: FixedBudget,
        norm: |a| a.config.norm,
    );
    perturb_via_run!();
}

impl Apgd {
    /// `perturb` with an optional trace.
    fn run(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        eps: f64,
        rng: &mut SeededRng,
        trace: Option<&mut Trace>,
    ) -> Result<(Tensor, Tensor)> {
        if self.loss == ApgdLoss::Dlr && model.num_classes() < 3 {
            return Err(AttackError::Config("apgd-dlr needs at least 3 classes".into()));
        }
        let p = self.params(eps);
        let loss_kind = self.loss;
        run_restarts(model, x, y, self.config.n_restarts, rng, trace, |xs, ys, r, t| {
            let (adv, _, q) = apgd_single(model, xs, ys, p, Objective::new(loss_kind), r, t);
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
    describe!(
        name: |_| "apgd-t",
        family: FixedBudget,
        norm: |a| a.config.norm,
    );
    perturb_via_run!();
}

impl ApgdT {
    /// `perturb` with an optional trace: one run per target class and restart, on the points
    /// still robust, each recording at its rows.
    fn run(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        eps: f64,
        rng: &mut SeededRng,
        mut trace: Option<&mut Trace>,
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
                let obj = Objective::DlrTargeted(target);
                let (adv, fooled, q) = Trace::scoped(trace.as_deref_mut(), &idx, |t| {
                    apgd_single(model, &xs, &ys, p, obj, rng, t)
                });
                let merged = adv.where_self(&per_sample(&fooled, &adv), &xs);
                x_adv = x_adv.index_copy(0, &idx, &merged);
                queries = queries.index_add(0, &idx, &q);
                robust = robust.index_copy(0, &idx, &fooled.logical_not());
            }
        }
        Ok((x_adv, queries))
    }
}

impl crate::facts::Costed for ApgdConfig {
    const COST_KEY: Option<&'static str> = Some("n_iter");
    /// `n_iter` gradients per restart.
    fn cost_per_point(&self) -> f64 {
        (self.n_iter * self.n_restarts.max(1)) as f64
    }
    /// A point leaves the run once fooled.
    fn point_cost(&self) -> crate::facts::PointCost {
        crate::facts::PointCost::stopping(self.n_iter as f64, self.cost_per_point())
    }
}

impl crate::facts::Costed for ApgdTConfig {
    const COST_KEY: Option<&'static str> = Some("n_iter");
    /// `n_iter` gradients per target class and restart.
    fn cost_per_point(&self) -> f64 {
        (self.n_iter * self.n_restarts.max(1) * self.n_target_classes.max(1)) as f64
    }
    /// A point leaves the run once fooled, and later targets and restarts run on the rest.
    fn point_cost(&self) -> crate::facts::PointCost {
        crate::facts::PointCost::stopping(self.n_iter as f64, self.cost_per_point())
    }
}
