//! PGD: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks"
//! (ICLR 2018, arXiv 1706.06083), Linf and L2, on the cross-entropy.
//!
//! Defaults (docs/attacks.md §3.2):
//! - `reference`: 20 steps, step `eps/4` (Linf; 2/255 at 8/255) or `eps/5` (L2; 0.1 at 0.5),
//!   uniform random start, 1 restart, and any misclassified iterate counts ("PGD-any").
//! - `torchattacks` 3.5.1 `PGD`/`PGDL2`: 10 steps, absolute step 2/255 (Linf) or 0.2 (L2), random
//!   start, the last iterate is returned ("PGD-last").
use gfa_core::Classifier;
use gfa_core::seed::SeededRng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::attack::{Attack, describe, perturb_via_run};
use crate::preset::{Configured, Preset};
use crate::repeated::{predict, run_restarts};
use crate::threat::{ThreatModel, per_sample, per_sample_norm};
use crate::trace::Trace;
use crate::{AttackError, Norm, Result, grad, loss};

/// Which iterate an iterative attack returns for a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// The latest misclassified iterate if there is one (auto-attack's `x_best_adv`).
    #[default]
    Any,
    /// The last iterate (torchattacks, foolbox).
    Last,
}

/// PGD settings. `Default` is the reference Linf preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PgdConfig {
    pub norm: Norm,
    pub preset: Preset,
    pub steps: usize,
    /// Absolute step size; when absent the step is `rel_step * eps`.
    pub step_size: Option<f64>,
    pub rel_step: f64,
    pub random_start: bool,
    /// Runs on the points not fooled yet (1 = a single run).
    pub restarts: usize,
    pub keep: Keep,
}

impl Default for PgdConfig {
    /// Reference PGD-Linf: 20 steps of `eps/4`, random start, 1 restart, any iterate
    /// (Madry et al. evaluate with 20 steps of 2/255 at 8/255; docs/attacks.md §3.2).
    fn default() -> Self {
        Self::preset_for(Preset::Reference, Norm::Linf)
    }
}

impl Configured for PgdConfig {
    fn preset_for(preset: Preset, norm: Norm) -> Self {
        match preset {
            Preset::Reference => Self {
                norm,
                preset,
                steps: 20,
                step_size: None,
                rel_step: if norm == Norm::L2 { 0.2 } else { 0.25 },
                random_start: true,
                restarts: 1,
                keep: Keep::Any,
            },
            // torchattacks 3.5.1: PGD(alpha=2/255, steps=10), PGDL2(alpha=0.2, steps=10).
            Preset::Torchattacks => Self {
                norm,
                preset,
                steps: 10,
                step_size: Some(if norm == Norm::L2 { 0.2 } else { 2.0 / 255.0 }),
                rel_step: if norm == Norm::L2 { 0.2 } else { 0.25 },
                random_start: true,
                restarts: 1,
                keep: Keep::Last,
            },
        }
    }
    fn norms() -> &'static [Norm] {
        &[Norm::Linf, Norm::L2]
    }
}

#[derive(Debug, Clone)]
pub struct Pgd {
    pub config: PgdConfig,
}

impl Pgd {
    pub fn new(config: PgdConfig) -> Result<Self> {
        if !PgdConfig::norms().contains(&config.norm) {
            return Err(AttackError::UnsupportedNorm {
                attack: "pgd".into(),
                norm: config.norm.to_string(),
            });
        }
        if config.steps == 0 || config.restarts == 0 {
            return Err(AttackError::Config("pgd: steps and restarts must be at least 1".into()));
        }
        Ok(Self { config })
    }

    /// One PGD run on every point of the batch.
    fn single(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        eps: f64,
        rng: &mut SeededRng,
        trace: Option<&mut Trace>,
    ) -> Result<(Tensor, Tensor)> {
        let c = &self.config;
        let tm = ThreatModel::new(c.norm, eps);
        let start = if c.random_start { tm.random_init(x, rng) } else { x.detach().copy() };
        let ascent = Ascent { loss: &|z| loss::ce(z, y), train: false };
        self.iterate_traced(model, x, y, eps, start, &ascent, trace)
    }

    /// `steps` ascent steps on `ascent`'s per-sample loss from `start`, projected onto the ball
    /// around `x` and the box; returns the iterate `keep` asks for and the queries.
    pub(crate) fn iterate(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        eps: f64,
        start: Tensor,
        ascent: &Ascent<'_>,
    ) -> Result<(Tensor, Tensor)> {
        self.iterate_traced(model, x, y, eps, start, ascent, None)
    }

    /// [`Pgd::iterate`], recording in `trace` the loss and the adversarial flag of every iterate
    /// (each one whose gradient is taken, and the last).
    // The iteration's inputs plus the trace.
    #[allow(clippy::too_many_arguments)]
    fn iterate_traced(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        eps: f64,
        start: Tensor,
        ascent: &Ascent<'_>,
        mut trace: Option<&mut Trace>,
    ) -> Result<(Tensor, Tensor)> {
        let Ascent { loss, train } = *ascent;
        let c = &self.config;
        let tm = ThreatModel::new(c.norm, eps);
        let alpha = c.step_size.unwrap_or(c.rel_step * eps);
        let mut xa = start;
        let mut best = xa.copy();
        let mut fooled = Tensor::zeros([x.size()[0]], (Kind::Bool, x.device()));
        for _ in 0..c.steps {
            let (l, g, logits) = grad::input_grad_in(model, &xa, loss, train);
            if let Some(t) = trace.as_deref_mut() {
                t.record(&l, &logits.argmax(1, false).ne_tensor(y));
            }
            if c.keep == Keep::Any {
                let mis = logits.argmax(1, false).ne_tensor(y);
                best = xa.where_self(&per_sample(&mis, &xa), &best);
                fooled = fooled.logical_or(&mis);
            }
            let stepped = if c.preset == Preset::Torchattacks && c.norm == Norm::L2 {
                // torchattacks' PGDL2 differentiates the batch-mean CE and divides by
                // `‖g‖ + 1e-10`: points whose gradient is tiny move less than a full step.
                let g = &g / x.size()[0] as f64;
                let n = per_sample_norm(&g, Norm::L2) + 1e-10;
                &xa + &g / per_sample(&n, &g) * alpha
            } else {
                tm.step(&xa, &g, alpha)
            };
            xa = tm.project(&stepped, x);
        }
        if let Some(t) = trace {
            let z = tch::no_grad(|| model.logits(&xa, train));
            t.record(&loss(&z).detach(), &z.argmax(1, false).ne_tensor(y));
        }
        let out = match c.keep {
            Keep::Last => xa,
            Keep::Any => {
                let mis = predict(model, &xa).ne_tensor(y);
                best = xa.where_self(&per_sample(&mis, &xa), &best);
                fooled = fooled.logical_or(&mis);
                best.where_self(&per_sample(&fooled, &xa), &xa)
            }
        };
        let q = Tensor::full([x.size()[0]], c.steps as i64, (Kind::Int64, x.device()));
        Ok((out, q))
    }
}

/// What a PGD run ascends: a per-sample loss of the logits, with the model's forwards in
/// training mode (`train`, the trainer's inner maximization, [`crate::inner`]) or eval mode
/// (attacks).
#[derive(Clone, Copy)]
pub(crate) struct Ascent<'a> {
    pub loss: &'a dyn Fn(&Tensor) -> Tensor,
    pub train: bool,
}

impl Attack for Pgd {
    describe!(
        name: |_| "pgd",
        family: FixedBudget,
        norm: |a| a.config.norm,
    );
    perturb_via_run!();
}

impl Pgd {
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
        // torchattacks semantics: one run on every point, the last iterate as is.
        if self.config.keep == Keep::Last && self.config.restarts == 1 {
            return self.single(model, x, y, eps, rng, trace);
        }
        run_restarts(model, x, y, self.config.restarts, rng, trace, |xs, ys, r, t| {
            self.single(model, xs, ys, eps, r, t)
        })
    }
}

impl crate::facts::Costed for PgdConfig {
    const COST_KEY: Option<&'static str> = Some("steps");
    /// `steps` gradients per restart.
    fn cost_per_point(&self) -> f64 {
        (self.steps * self.restarts.max(1)) as f64
    }
    /// Every step of a run: a fooled point pays its first run, only a robust one every restart.
    fn point_cost(&self) -> crate::facts::PointCost {
        crate::facts::PointCost { fooled: self.steps as f64, robust: self.cost_per_point() }
    }
}
