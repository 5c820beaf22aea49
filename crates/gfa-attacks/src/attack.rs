//! The [`Attack`] trait, its one output type, and the independent validator.
use std::fmt::Debug;

use gfa_core::Classifier;
use gfa_core::seed::SeededRng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::threat::{Norm, per_sample_norm};
use crate::trace::{Trace, Traced};
use crate::{AttackError, Result};

/// Fixed-budget attacks search inside `eps`; minimum-norm attacks return the smallest
/// perturbation they find and are thresholded at any `eps` afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    FixedBudget,
    MinimumNorm,
}

/// How a targeted attack picks its target class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case", deny_unknown_fields)]
pub enum TargetPolicy {
    /// A uniformly random wrong class per sample, drawn from the attack's generator.
    Random,
    /// The class with the k-th largest logit among the wrong ones (k = 1: the runner-up).
    Ranked { k: i64 },
    /// The class with the smallest logit.
    LeastLikely,
}

/// What an attack is trying to achieve.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "goal", rename_all = "snake_case", deny_unknown_fields)]
pub enum Goal {
    #[default]
    Untargeted,
    Targeted {
        #[serde(flatten)]
        policy: TargetPolicy,
    },
}

/// The descriptive methods of an [`Attack`] impl whose settings live in a `config` field:
/// `name` and `norm` are functions of the attack (`|a| a.config.norm`, `|_| "pgd"`), `family` a
/// [`Family`] variant; `config_json` serializes `config`.
macro_rules! describe {
    (name: $name:expr, family: $family:ident, norm: $norm:expr $(,)?) => {
        fn name(&self) -> &'static str {
            let f: fn(&Self) -> &'static str = $name;
            f(self)
        }
        fn family(&self) -> $crate::attack::Family {
            $crate::attack::Family::$family
        }
        fn norm(&self) -> $crate::Norm {
            let f: fn(&Self) -> $crate::Norm = $norm;
            f(self)
        }
        fn config_json(&self) -> String {
            serde_json::to_string(&self.config).unwrap_or_default()
        }
    };
}
pub(crate) use describe;

/// An [`Attack`] impl's `perturb` and `perturb_traced` through the attack's own `run(model, x, y,
/// eps, rng, trace)`, with `trace: Option<&mut Trace>`: one function serves both, so that a
/// trace never changes an output ([`crate::trace`]). `perturb_via_run!(no_eps)` for a `run(model,
/// x, y, trace)` that uses neither the budget nor a generator (DeepFool, CW, EAD).
macro_rules! perturb_via_run {
    () => {
        $crate::attack::perturb_via_run!(@impl eps, rng, [eps, rng]);
    };
    (no_eps) => {
        $crate::attack::perturb_via_run!(@impl _eps, _rng, []);
    };
    // `$eps`/`$rng` name the two parameters, `[$($arg),*]` the ones `run` takes of them.
    (@impl $eps:ident, $rng:ident, [$($arg:ident),*]) => {
        fn perturb(
            &self,
            model: &gfa_core::Classifier,
            x: &tch::Tensor,
            y: &tch::Tensor,
            $eps: f64,
            $rng: &mut gfa_core::seed::SeededRng,
        ) -> $crate::Result<(tch::Tensor, tch::Tensor)> {
            self.run(model, x, y, $($arg,)* None)
        }
        fn perturb_traced(
            &self,
            model: &gfa_core::Classifier,
            x: &tch::Tensor,
            y: &tch::Tensor,
            $eps: f64,
            $rng: &mut gfa_core::seed::SeededRng,
            trace: &mut $crate::trace::Trace,
        ) -> $crate::Result<(tch::Tensor, tch::Tensor)> {
            self.run(model, x, y, $($arg,)* Some(trace))
        }
    };
}
pub(crate) use perturb_via_run;

/// The result of one attack on one batch.
///
/// # Shapes
/// `x_adv`: like `x`; `success`: `[N]` bool; norms: `[N]` float; `queries`: `[N]` int64.
#[derive(Debug)]
pub struct AttackOutput {
    pub x_adv: Tensor,
    /// Misclassified AND inside the budget (set by [`validate`]).
    pub success: Tensor,
    pub l0: Tensor,
    pub l1: Tensor,
    pub l2: Tensor,
    pub linf: Tensor,
    /// Forward passes spent per sample (score-based attacks) or gradient steps (the others).
    pub queries: Tensor,
}

impl AttackOutput {
    /// Norm of the perturbation in the attack's own threat model.
    pub fn norm(&self, norm: Norm) -> &Tensor {
        match norm {
            Norm::Linf => &self.linf,
            Norm::L2 => &self.l2,
            Norm::L1 => &self.l1,
        }
    }
}

/// An adversarial attack. Attacks are plain values; the model comes in at call time.
pub trait Attack: Debug + Send + Sync {
    /// Registry name, e.g. `"pgd"`, `"apgd-ce"`.
    fn name(&self) -> &'static str;
    fn family(&self) -> Family;
    fn norm(&self) -> Norm;
    /// The config as compact JSON, for result rows.
    fn config_json(&self) -> String;

    /// Attack `x` (labels `y`) within `eps` (ignored by pure minimum-norm attacks, which still
    /// receive it so FAB-style attacks can use it as a target radius). Returns the raw
    /// adversarial batch and per-sample query counts; [`run`] validates it.
    fn perturb(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        eps: f64,
        rng: &mut SeededRng,
    ) -> Result<(Tensor, Tensor)>;

    /// [`Attack::perturb`], recording every step of every point in `trace` ([`crate::trace`]):
    /// the same tensors as `perturb` with the same generator, bit for bit. The attacks whose
    /// registry facts say they trace ([`crate::Facts::traced`]) override it; the others answer
    /// [`AttackError::NoTrace`].
    fn perturb_traced(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        eps: f64,
        rng: &mut SeededRng,
        trace: &mut Trace,
    ) -> Result<(Tensor, Tensor)> {
        let _ = (model, x, y, eps, rng, trace);
        Err(no_trace(self.name()))
    }
}

/// The error of an attack kind that records no trace, naming the kinds that do.
pub fn no_trace(kind: &str) -> AttackError {
    let traced: Vec<&str> = crate::registry::AttackSpec::KINDS
        .iter()
        .copied()
        .filter(|k| crate::registry::facts(k).is_some_and(|f| f.traced))
        .collect();
    AttackError::NoTrace { attack: kind.to_string(), traced: traced.join(", ") }
}

/// Run `attack` and validate its output. The only way results leave an attack.
pub fn run(
    attack: &dyn Attack,
    model: &Classifier,
    x: &Tensor,
    y: &Tensor,
    eps: f64,
    rng: &mut SeededRng,
) -> Result<AttackOutput> {
    check_inputs(x, y)?;
    let (x_adv, queries) = attack.perturb(model, x, y, eps, rng)?;
    validate(model, x, y, &x_adv, budget_of(attack, eps), queries)
}

/// [`run`] with the attack's trace ([`Attack::perturb_traced`]): the validated output and, per
/// point, every step the attack took. A minimum-norm attack given a finite `eps` is traced at
/// that target radius: its success, and each recorded iterate's "adversarial" flag, count only
/// perturbations within it ([`Trace::set_budget`]), as the evaluation thresholds its norms.
pub fn run_traced(
    attack: &dyn Attack,
    model: &Classifier,
    x: &Tensor,
    y: &Tensor,
    eps: f64,
    rng: &mut SeededRng,
) -> Result<(AttackOutput, Traced)> {
    check_inputs(x, y)?;
    let mut trace = Trace::new(x.size()[0]);
    let radius =
        (attack.family() == Family::MinimumNorm && eps.is_finite()).then(|| (attack.norm(), eps));
    if let Some((norm, eps)) = radius {
        trace.set_budget(norm, eps);
    }
    let (x_adv, queries) = attack.perturb_traced(model, x, y, eps, rng, &mut trace)?;
    let mut out = validate(model, x, y, &x_adv, budget_of(attack, eps), queries)?;
    if let Some((norm, eps)) = radius {
        let n = match norm {
            Norm::Linf => &out.linf,
            Norm::L2 => &out.l2,
            Norm::L1 => &out.l1,
        };
        out.success = out.success.logical_and(&n.le(eps + BUDGET_TOL));
    }
    Ok((out, trace.finish()))
}

/// The budget a fixed-budget attack's output is checked against (`None`: minimum norm).
fn budget_of(attack: &dyn Attack, eps: f64) -> Option<(Norm, f64)> {
    match attack.family() {
        Family::FixedBudget => Some((attack.norm(), eps)),
        Family::MinimumNorm => None,
    }
}

fn check_inputs(x: &Tensor, y: &Tensor) -> Result<()> {
    if !matches!(x.kind(), Kind::Float | Kind::Double) || x.dim() < 2 {
        return Err(AttackError::ShapeMismatch {
            what: "x".into(),
            expected: "float or double tensor [N, ...]".into(),
            got: format!("{:?} {:?}", x.kind(), x.size()),
        });
    }
    if y.kind() != Kind::Int64 || y.size() != [x.size()[0]] {
        return Err(AttackError::ShapeMismatch {
            what: "y".into(),
            expected: format!("int64 [{}]", x.size()[0]),
            got: format!("{:?} {:?}", y.kind(), y.size()),
        });
    }
    let (lo, hi) = (x.min().double_value(&[]), x.max().double_value(&[]));
    if lo < 0.0 || hi > 1.0 || lo.is_nan() || hi.is_nan() {
        return Err(AttackError::InputOutOfRange(format!(
            "pixels must lie in [0, 1]; got [{lo}, {hi}]"
        )));
    }
    Ok(())
}

/// Tolerance on the budget: float32 round-off of `x0 + delta` after clipping.
pub const BUDGET_TOL: f64 = 1e-5;

/// Re-run the model on `x_adv` and check box, budget (when given) and NaN. Success is
/// misclassified AND inside the budget.
pub fn validate(
    model: &Classifier,
    x: &Tensor,
    y: &Tensor,
    x_adv: &Tensor,
    budget: Option<(Norm, f64)>,
    queries: Tensor,
) -> Result<AttackOutput> {
    if x_adv.size() != x.size() {
        return Err(AttackError::Invalid(format!(
            "x_adv has shape {:?}, x has {:?}",
            x_adv.size(),
            x.size()
        )));
    }
    let x_adv = x_adv.detach();
    if x_adv.isnan().any().int64_value(&[]) != 0 {
        return Err(AttackError::Invalid("x_adv contains NaN".into()));
    }
    let (lo, hi) = (x_adv.min().double_value(&[]), x_adv.max().double_value(&[]));
    if lo < 0.0 || hi > 1.0 {
        return Err(AttackError::Invalid(format!("x_adv leaves the [0, 1] box: [{lo}, {hi}]")));
    }
    let delta = &x_adv - x;
    let flat = delta.flatten(1, -1);
    let l0 = flat.ne(0.0).sum_dim_intlist(1, false, Kind::Float);
    let (l1, l2, linf) = (
        per_sample_norm(&delta, Norm::L1),
        per_sample_norm(&delta, Norm::L2),
        per_sample_norm(&delta, Norm::Linf),
    );
    let pred = tch::no_grad(|| model.logits(&x_adv, false)).argmax(1, false);
    let mut success = pred.ne_tensor(y);
    if let Some((norm, eps)) = budget {
        let n = match norm {
            Norm::Linf => &linf,
            Norm::L2 => &l2,
            Norm::L1 => &l1,
        };
        let over = n.gt(eps + BUDGET_TOL);
        if over.any().int64_value(&[]) != 0 {
            return Err(AttackError::Invalid(format!(
                "x_adv exceeds the {norm} budget {eps}: max norm {}",
                n.max().double_value(&[])
            )));
        }
        success = success.logical_and(&n.le(eps + BUDGET_TOL));
    }
    Ok(AttackOutput { x_adv, success, l0, l1, l2, linf, queries })
}
