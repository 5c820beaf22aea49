//! The Gradient-Feature Alignment (GFA) regularizer and the input-gradient-norm penalty (GNR).
//!
//! GFA: "DeepDefense: Layer-Wise Gradient-Feature Alignment for Building Robust Neural Networks"
//! (Lin, Yeap, Kiringa, Zhang; arXiv 2511.13749), as restated in docs/method.md §2:
//!
//! ```text
//! g_{k,i} = ∂(Σ_j ℓ_j)/∂h_{k,i}                         (double backprop)
//! c_{k,i} = <g_{k,i}, h_{k,i}> / (‖g_{k,i}‖ ‖h_{k,i}‖ + ε)
//! R       = Σ_{k∈S} w_k · mean_i φ(c_{k,i})
//! ```
//!
//! GNR (double backprop, Drucker & LeCun 1992; Ross & Doshi-Velez, arXiv 1711.09404) uses the
//! same gradients with the term mean_i ‖g_{k,i}‖² instead of φ(c); its default tap set is the
//! input tap `input` alone (the classic input-gradient-norm penalty), GFA's is every tap.
//!
//! The gradients of all taps come from ONE `run_backward` call (`create_graph = true` when the
//! penalty is trained on); the caller then runs one backward of `mean_i ℓ_i + λ·R`. The loss is
//! summed for the tap gradients so that g_{k,i} does not depend on the batch size, which makes
//! GNR batch-size independent; the cosine is scale invariant anyway.
//!
//! Defaults are docs/method.md §2's table; `eps = 1e-8` as PyTorch's `cosine_similarity`.
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::classifier::{Classifier, Gates, TapPoint};
use crate::losses::TaskLoss;
use crate::{CoreError, Result};

/// Which penalty the regularizer computes from the tap gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegKind {
    /// Gradient-Feature Alignment: φ(cos) per tap.
    Gfa,
    /// Squared gradient norm at the taps (input only by default).
    Gnr,
}

impl RegKind {
    /// The name of the penalty's term in `train.csv` (`gfa`, `gnr`).
    pub fn name(self) -> &'static str {
        match self {
            RegKind::Gfa => "gfa",
            RegKind::Gnr => "gnr",
        }
    }
}

/// The tap set S.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "LayersRepr", into = "LayersRepr")]
pub enum Layers {
    /// `input` only (S = {0}).
    First,
    /// Every tap of the model.
    Deep,
    /// These taps, in this order (the order of `weights` when it is a list).
    Names(Vec<String>),
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum LayersRepr {
    Word(String),
    Names(Vec<String>),
}

impl TryFrom<LayersRepr> for Layers {
    type Error = String;
    fn try_from(r: LayersRepr) -> std::result::Result<Self, String> {
        match r {
            LayersRepr::Word(w) if w == "first" => Ok(Layers::First),
            LayersRepr::Word(w) if w == "deep" => Ok(Layers::Deep),
            LayersRepr::Word(w) => Err(format!(
                "regularizer.layers must be \"first\", \"deep\" or a list of tap names, got \"{w}\""
            )),
            LayersRepr::Names(n) => Ok(Layers::Names(n)),
        }
    }
}

impl From<Layers> for LayersRepr {
    fn from(l: Layers) -> Self {
        match l {
            Layers::First => LayersRepr::Word("first".into()),
            Layers::Deep => LayersRepr::Word("deep".into()),
            Layers::Names(n) => LayersRepr::Names(n),
        }
    }
}

/// φ, the penalty applied to each cosine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Penalty {
    /// 1 − c: pushes the gradient to point along the feature.
    #[default]
    OneMinusCos,
    /// 1 − |c|: along or against the feature.
    OneMinusAbsCos,
    /// 1 − c² (= sin²): along or against the feature, smooth at c = 0.
    Sin2,
}

impl Penalty {
    /// φ(c), elementwise.
    pub fn apply(self, c: &Tensor) -> Tensor {
        match self {
            Penalty::OneMinusCos => c.neg() + 1.0,
            Penalty::OneMinusAbsCos => c.abs().neg() + 1.0,
            Penalty::Sin2 => c.square().neg() + 1.0,
        }
    }
}

/// The tap weights w_k.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "WeightsRepr", into = "WeightsRepr")]
pub enum Weights {
    /// 1/|S| each.
    Uniform,
    /// One weight per tap of S, in S's order.
    List(Vec<f64>),
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum WeightsRepr {
    Word(String),
    List(Vec<f64>),
}

impl TryFrom<WeightsRepr> for Weights {
    type Error = String;
    fn try_from(r: WeightsRepr) -> std::result::Result<Self, String> {
        match r {
            WeightsRepr::Word(w) if w == "uniform" => Ok(Weights::Uniform),
            WeightsRepr::Word(w) => Err(format!(
                "regularizer.weights must be \"uniform\" or a list of numbers, got \"{w}\""
            )),
            WeightsRepr::List(v) => Ok(Weights::List(v)),
        }
    }
}

impl From<Weights> for WeightsRepr {
    fn from(w: Weights) -> Self {
        match w {
            Weights::Uniform => WeightsRepr::Word("uniform".into()),
            Weights::List(v) => WeightsRepr::List(v),
        }
    }
}

/// How the penalty's parameter gradient is computed when the penalty is trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PenaltyGradient {
    /// Double backprop: the tap gradients are computed with `create_graph` and R is
    /// differentiated through them.
    #[default]
    Exact,
    /// A forward difference of two ordinary backward passes along ∂R/∂g at the taps (see
    /// [`Regularizer::finite_difference`]); no double-backprop graph is built.
    FiniteDifference,
}

impl PenaltyGradient {
    /// Exact is left out of serialized configs, so they (and run ids) read as before the option.
    fn is_exact(&self) -> bool {
        *self == PenaltyGradient::Exact
    }
}

/// The default relative step δ of the finite-difference gradient (see
/// [`Regularizer::finite_difference`] for the choice).
pub const DEFAULT_FD_STEP: f64 = 1e-3;

/// The GFA options, shared by the methods that train with a tap-gradient penalty (`gfa`,
/// `gnr`, `gfa_pgd_at`): the keys of their `[method]` table besides `kind` (and, for
/// `gfa_pgd_at`, the PGD keys). docs/method.md §2's defaults for every key but λ, which has none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegularizerConfig {
    /// λ ≥ 0, the weight of R. With λ = 0 the run trains exactly like plain training and
    /// still logs R and the per-tap cosines.
    pub lambda: f64,
    /// The tap set; when absent, every tap for GFA and the input tap for GNR
    /// ([`Self::layers`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Layers>,
    /// φ (GFA only).
    #[serde(default)]
    pub penalty: Penalty,
    #[serde(default = "uniform")]
    pub weights: Weights,
    #[serde(default)]
    pub tap: TapPoint,
    /// λ ramps linearly over the first k epochs: epoch e (0-based) uses λ·min(1, (e+1)/k).
    #[serde(default)]
    pub lambda_warmup_epochs: usize,
    /// λ ramps linearly over the first k optimizer steps: step s (0-based, counted from the start
    /// of training) uses λ·min(1, (s+1)/k) (times the epoch ramp when both are set), e.g. λ
    /// ramped over the first epoch of a fine-tuning run. Left out of the serialized value at 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lambda_warmup_steps: usize,
    /// ε in the cosine's denominator (PyTorch `cosine_similarity`'s default).
    #[serde(default = "eps_1e8")]
    pub eps: f64,
    /// The penalty's parameter gradient: `exact` (double backprop, the default) or
    /// `finite_difference`. Left out of the serialized value when exact, so that configs
    /// written before the option keep their hashes and run ids.
    #[serde(default, skip_serializing_if = "PenaltyGradient::is_exact")]
    pub gradient: PenaltyGradient,
    /// δ of the finite difference, in (0, 1): the offsets are at most δ times the norm of each
    /// tap in S ([`DEFAULT_FD_STEP`] when absent; see [`Self::fd_step`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd_step: Option<f64>,
}

fn uniform() -> Weights {
    Weights::Uniform
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn eps_1e8() -> f64 {
    1e-8
}

impl RegularizerConfig {
    /// Weight λ and docs/method.md §2's defaults otherwise: `layers` by kind, φ = 1 − c, uniform
    /// weights, post-activation taps, no warm-up, ε = 1e-8, the exact gradient.
    pub fn with_lambda(lambda: f64) -> Self {
        Self {
            lambda,
            layers: None,
            penalty: Penalty::OneMinusCos,
            weights: Weights::Uniform,
            tap: TapPoint::PostActivation,
            lambda_warmup_epochs: 0,
            lambda_warmup_steps: 0,
            eps: eps_1e8(),
            gradient: PenaltyGradient::Exact,
            fd_step: None,
        }
    }

    /// The keys left out of the serialized value at their defaults (beside those written
    /// always): with them, the full list of the options.
    pub const OPTIONAL_KEYS: [&'static str; 4] =
        ["layers", "lambda_warmup_steps", "gradient", "fd_step"];

    /// Image-gradient evaluations per image of a step on the penalty: forward, the
    /// double-backprop call for the tap gradients and the backward through both (3), or the
    /// finite difference's two ordinary forward/backward passes (2).
    pub fn grads_per_step(&self) -> f64 {
        match self.gradient {
            PenaltyGradient::Exact => 3.0,
            PenaltyGradient::FiniteDifference => 2.0,
        }
    }

    /// δ of the finite-difference gradient, the default filled in.
    pub fn fd_step(&self) -> f64 {
        self.fd_step.unwrap_or(DEFAULT_FD_STEP)
    }

    /// The tap set with the kind's default filled in.
    pub fn layers(&self, kind: RegKind) -> Layers {
        match (&self.layers, kind) {
            (Some(l), _) => l.clone(),
            (None, RegKind::Gnr) => Layers::First,
            (None, RegKind::Gfa) => Layers::Deep,
        }
    }

    /// λ used in epoch `epoch` (0-based) at the optimizer step `step` (0-based, counted from the
    /// start of training), after the warm-up ramps.
    pub fn lambda_at(&self, epoch: usize, step: usize) -> f64 {
        let ramp =
            |i: usize, k: usize| if k == 0 { 1.0 } else { ((i + 1) as f64 / k as f64).min(1.0) };
        match (self.lambda_warmup_epochs, self.lambda_warmup_steps) {
            (0, 0) => self.lambda,
            (e, 0) => self.lambda * ramp(epoch, e),
            (e, k) => self.lambda * ramp(epoch, e) * ramp(step, k),
        }
    }

    /// Checks values that do not depend on the model.
    pub fn check(&self) -> Result<()> {
        let bad = |key: &str, m: String| Err(CoreError::invalid(format!("method.{key}"), m));
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return bad("lambda", format!("must be a finite number ≥ 0, got {}", self.lambda));
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return bad("eps", format!("must be a positive number, got {}", self.eps));
        }
        if let Weights::List(w) = &self.weights
            && w.iter().any(|v| !(*v >= 0.0 && v.is_finite()))
        {
            return bad("weights", format!("must be finite and ≥ 0, got {w:?}"));
        }
        if let Some(Layers::Names(n)) = &self.layers
            && n.is_empty()
        {
            return bad("layers", "is an empty list; name at least one tap".into());
        }
        if let Some(d) = self.fd_step
            && !(d > 0.0 && d < 1.0)
        {
            return bad(
                "fd_step",
                format!(
                    "must be a number in (0, 1) (the finite difference's step relative to each \
                     tap's norm; default {DEFAULT_FD_STEP:e}), got {d}"
                ),
            );
        }
        Ok(())
    }
}

/// c_i = <g_i, h_i> / (‖g_i‖ ‖h_i‖ + ε) over the flattened sample.
///
/// # Shapes
/// `g`, `h`: `[N, ...]` → `[N]`.
pub fn cosine(g: &Tensor, h: &Tensor, eps: f64) -> Tensor {
    let g = g.flatten(1, -1);
    let h = h.flatten(1, -1);
    let dot = (&g * &h).sum_dim_intlist(1, false, h.kind());
    let gn = g.norm_scalaropt_dim(2, 1, false);
    let hn = h.norm_scalaropt_dim(2, 1, false);
    dot / (gn * hn + eps)
}

/// The regularizer of one run, bound to a model's tap names.
#[derive(Debug, Clone)]
pub struct Regularizer {
    pub kind: RegKind,
    pub cfg: RegularizerConfig,
    /// ℓ, whose summed gradient at the taps the penalty uses.
    pub task: TaskLoss,
    /// Positions of S in the model's tap list.
    index: Vec<usize>,
    names: Vec<String>,
    weights: Vec<f64>,
}

/// One batch through the model and the regularizer.
#[derive(Debug)]
pub struct RegForward {
    pub logits: Tensor,
    /// mean_i ℓ_i (with graph).
    pub loss: Tensor,
    /// R, a scalar; with graph to the parameters when computed with `create_graph`.
    pub reg: Tensor,
    /// Mean cosine per tap of S, `[|S|]`, detached.
    pub cos: Tensor,
    /// Mean penalty term per tap of S (before weighting), `[|S|]`, detached.
    pub terms: Tensor,
}

impl Regularizer {
    /// Bind the penalty `kind` with options `cfg` and task loss `task` to a model's
    /// `tap_names`; an unknown tap name is an error naming it and the valid ones.
    pub fn new(
        kind: RegKind,
        cfg: &RegularizerConfig,
        task: TaskLoss,
        tap_names: &[String],
    ) -> Result<Self> {
        cfg.check()?;
        let names: Vec<String> = match cfg.layers(kind) {
            Layers::First => vec![tap_names[0].clone()],
            Layers::Deep => tap_names.to_vec(),
            Layers::Names(n) => n,
        };
        let mut index = Vec::with_capacity(names.len());
        for n in &names {
            match tap_names.iter().position(|t| t == n) {
                Some(i) if index.contains(&i) => {
                    return Err(CoreError::invalid(
                        "method.layers",
                        format!("lists tap \"{n}\" twice"),
                    ));
                }
                Some(i) => index.push(i),
                None => {
                    return Err(CoreError::invalid(
                        "method.layers",
                        format!(
                            "unknown tap \"{n}\"; this model's taps are {}",
                            tap_names.join(", ")
                        ),
                    ));
                }
            }
        }
        let weights = match &cfg.weights {
            Weights::Uniform => vec![1.0 / names.len().max(1) as f64; names.len()],
            Weights::List(w) if w.len() != names.len() => {
                return Err(CoreError::invalid(
                    "method.weights",
                    format!(
                        "has {} entries but the tap set ({}) has {}",
                        w.len(),
                        names.join(", "),
                        names.len()
                    ),
                ));
            }
            Weights::List(w) => w.clone(),
        };
        Ok(Self { kind, cfg: cfg.clone(), task, index, names, weights })
    }

    /// Names of the taps in S.
    pub fn tap_names(&self) -> &[String] {
        &self.names
    }

    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The taps of S out of a full tap list (as returned by `Classifier::forward_taps`).
    pub fn select(&self, taps: &[Tensor]) -> Vec<Tensor> {
        self.index.iter().map(|&i| taps[i].shallow_clone()).collect()
    }

    /// R and its per-tap parts, given the taps of S and the loss gradients at them.
    /// Returns `(R, mean cosine per tap, mean term per tap)`; R keeps whatever graph `taps` and
    /// `grads` carry, the two vectors `[|S|]` are detached.
    pub fn penalty(&self, taps: &[Tensor], grads: &[Tensor]) -> (Tensor, Tensor, Tensor) {
        assert_eq!(taps.len(), grads.len(), "one gradient per tap");
        let device = taps.first().map(|t| t.device()).unwrap_or(tch::Device::Cpu);
        let kind = taps.first().map(|t| t.kind()).unwrap_or(Kind::Float);
        let mut reg = Tensor::zeros([], (kind, device));
        let mut cos = Vec::with_capacity(taps.len());
        let mut terms = Vec::with_capacity(taps.len());
        for ((h, g), w) in taps.iter().zip(grads).zip(&self.weights) {
            let c = cosine(g, h, self.cfg.eps);
            let term = match self.kind {
                RegKind::Gnr => g.flatten(1, -1).square().sum_dim_intlist(1, false, kind),
                RegKind::Gfa => self.cfg.penalty.apply(&c),
            }
            .mean(kind);
            // Out of place on purpose: an in-place `+=` on the zero leaf breaks the autograd graph.
            #[allow(clippy::assign_op_pattern)]
            {
                reg = reg + &term * *w;
            }
            cos.push(c.detach().mean(kind));
            terms.push(term.detach());
        }
        let stack = |v: Vec<Tensor>| {
            if v.is_empty() { Tensor::zeros([0], (kind, device)) } else { Tensor::stack(&v, 0) }
        };
        (reg, stack(cos), stack(terms))
    }

    /// Forward `x` (pixels in `[0, 1]`), the task loss, and R.
    ///
    /// `create_graph` keeps R differentiable with respect to the parameters (training with
    /// λ > 0); without it R and the cosines are only measured.
    ///
    /// # Shapes
    /// `x`: `[N, 3, 32, 32]`, `y`: `[N]` → logits `[N, C]`, scalars, `[|S|]`.
    pub fn forward(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        train: bool,
        create_graph: bool,
    ) -> RegForward {
        let fwd = model.forward_taps(x, train, self.cfg.tap);
        let per_sample = self.task.per_sample(&fwd.logits, y);
        let taps = self.select(&fwd.taps);
        // One autograd call for all taps; the graph is kept for the caller's backward.
        let grads =
            Tensor::run_backward(&[per_sample.sum(per_sample.kind())], &taps, true, create_graph);
        let (reg, cos, terms) = self.penalty(&taps, &grads);
        let reg = if create_graph { reg } else { reg.detach() };
        RegForward { logits: fwd.logits, loss: per_sample.mean(per_sample.kind()), reg, cos, terms }
    }

    /// Whether a step at weight `lambda` takes the finite-difference path of
    /// [`Self::finite_difference`] (λ > 0 and `gradient = "finite_difference"`). At λ = 0 a
    /// step is plain training's whatever `gradient` says.
    pub fn uses_finite_difference(&self, lambda: f64) -> bool {
        lambda > 0.0 && self.cfg.gradient == PenaltyGradient::FiniteDifference
    }

    /// One batch's parameter gradients of mean_i ℓ_i + λ·R, for every parameter that requires
    /// one, the penalty's part by a finite difference of two ordinary backward passes (whatever
    /// `gradient` says: a step calls it when [`Self::uses_finite_difference`]). Returns the
    /// values a step logs (detached; R and the cosines are measured at the unshifted taps, as
    /// [`Self::forward`] does) and the gradients, which [`ParamGrads::accumulate`] adds to the
    /// parameters' `.grad` (the training method's backward). Nothing is written to `.grad` here.
    /// With λ = 0 the gradients are those of mean_i ℓ_i, from one forward and one backward.
    ///
    /// The math. Let F(θ, o) = Σ_i ℓ_i with an offset o_k added where tap h_k is read
    /// ([`Classifier::forward_taps_with`]), so g_k = ∂F/∂o_k at o = 0. R depends on θ through
    /// h_k(θ) and g_k(θ); with u_k = ∂R/∂h_k and v_k = ∂R/∂g_k (cheap, in closed form:
    /// `partials`),
    ///
    /// ```text
    /// ∇θR = Σ_k (∂h_k/∂θ)ᵀ u_k + Σ_k (∂g_k/∂θ)ᵀ v_k
    ///     = Σ_k (∂h_k/∂θ)ᵀ u_k + d/dt ∇θF(θ, t·v)|_{t=0}       (symmetry of mixed partials)
    /// ```
    ///
    /// Pass 1 runs the forward at o = 0, recording the network's switches (ReLU masks, max-pool
    /// indices), and one backward of F to the taps and the parameters: g_k and
    /// G₀ = ∇θF(θ, 0). Pass 2 runs the forward at o = t·v with those switches replayed and one
    /// backward of F(θ, t·v) + t·Σ_k <u_k, h̃_k>, h̃_k the taps of that pass: G_t. Then
    ///
    /// ```text
    /// ∇θ(mean ℓ + λR) ≈ G₀/N + λ·(G_t − G₀)/t
    /// ```
    ///
    /// Neither pass builds a graph through the tap gradients, and pass 1's graph is freed
    /// before pass 2 runs: the memory is that of plain training plus u and the offsets (the
    /// size of the taps of S), G₀ (the size of the parameters) and the switches (one byte per
    /// ReLU input).
    ///
    /// Why the switches are replayed. Double backprop differentiates ReLU's and max pooling's
    /// backward with the mask and the argmax held fixed (ReLU'' = 0). A shifted forward that
    /// recomputes them crosses the kinks of every unit within reach of the offset, and on a
    /// network of realistic size (`cnn` width 0.25, batch 128) those jumps of the gradient
    /// swamp the difference at any step. With the switches frozen, F(θ, ·) is the smooth
    /// function whose derivative double backprop computes, and the difference converges to it.
    ///
    /// Step and error. A forward difference: truncation O(t) (h̃_k = h_k + O(t) in the u-term
    /// has the same order), from the smooth parts (softmax, cross-entropy, BatchNorm's batch
    /// statistics). A central difference would halve the order but needs a third pass, as
    /// costly as the exact double backprop. One scalar t serves all taps and samples
    /// (BatchNorm couples the samples and the taps are nested, so the passes cannot be split):
    /// t = δ · min_k ‖h_k‖/‖v_k‖ (norms over the batch, taps of S with both non-zero), so the
    /// offset at every tap is at most δ of the tap's norm (δ = `fd_step`, default
    /// [`DEFAULT_FD_STEP`]). Rounding: G_t − G₀ is the difference of two float32 gradients,
    /// off by about u·‖G‖ (u = 2⁻²⁴ ≈ 6e-8, times an accumulation factor); a relative change δ
    /// of the taps moves the gradient by a relative amount of order δ, so rounding contributes
    /// a relative error of order u/δ against O(δ) of truncation. `examples/fd_accuracy.rs`
    /// measures both against the exact gradient; δ = 1e-3 sits at the bottom of its U, with
    /// relative errors of a few 1e-3 (`results/bench/fd_accuracy.md`).
    ///
    /// BatchNorm: pass 2 runs in the same mode as pass 1; its running statistics are restored
    /// after it, so they move once per step as on the exact path.
    ///
    /// # Shapes
    /// `x`: `[N, 3, 32, 32]`, `y`: `[N]` → logits `[N, C]`, scalars, `[|S|]`.
    pub fn finite_difference(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        lambda: f64,
        train: bool,
    ) -> (RegForward, ParamGrads) {
        let params: Vec<Tensor> =
            model.vs.variables().into_values().filter(|t| t.requires_grad()).collect();
        if lambda <= 0.0 {
            let f = self.forward(model, x, y, train, false);
            let grads = Tensor::run_backward(&[&f.loss], &params, false, false);
            let grads = params.into_iter().zip(grads).filter(|(_, g)| g.defined()).collect();
            return (detached(f), ParamGrads(grads));
        }
        let loss_fn = self.task;

        let PassOne { taps, grads, g0, logits, loss, gates, with_u } =
            self.fd_pass_one(model, x, y, train, &params);
        let n = y.size()[0] as f64;

        let Partials { reg, cos, terms, u, v, tap_norms } = self.partials(&taps, grads, &with_u);
        let t = self.fd_offset_scale(&tap_norms, &v);
        // Only u_k and the offsets t·v_k (made in place of v_k) go on to pass 2.
        drop(taps);

        // Pass 2: forward at o = t·v, backward of F(θ, t·v) + t·Σ_k <u_k, h̃_k>.
        let mut offsets: Vec<Option<Tensor>> = (0..model.tap_names().len()).map(|_| None).collect();
        for (&i, mut vk) in self.index.iter().zip(v) {
            let _ = vk.g_mul_scalar_(t);
            offsets[i] = Some(vk);
        }
        let buffers: Vec<(Tensor, Tensor)> = model
            .vs
            .variables()
            .into_values()
            .filter(|b| !b.requires_grad())
            .map(|b| {
                let saved = b.copy();
                (b, saved)
            })
            .collect();
        let fwd = model.forward_taps_with(x, train, self.cfg.tap, offsets, gates);
        let mut objective = loss_fn.sum(&fwd.logits, y);
        for (hk, uk) in self.select(&fwd.taps).iter().zip(&u) {
            if let Some(uk) = uk {
                let dot = hk.flatten(0, -1).dot(&uk.flatten(0, -1));
                // Out of place, as in `penalty`.
                #[allow(clippy::assign_op_pattern)]
                {
                    objective = objective + dot * t;
                }
            }
        }
        // The graph keeps what the backward needs; the handles on the taps and u go now.
        drop((fwd, u));
        let g_t = Tensor::run_backward(&[objective], &params, false, false);
        // After the backward: BatchNorm's backward saved the running statistics.
        tch::no_grad(|| {
            for (mut b, saved) in buffers {
                b.copy_(&saved);
            }
        });

        let mut out = Vec::with_capacity(params.len());
        for ((p, a), mut b) in params.into_iter().zip(&g0).zip(g_t) {
            if a.defined() && b.defined() {
                // G₀/N + λ·(G_t − G₀)/t, in place of G_t.
                let _ = b.g_sub_(a).g_mul_scalar_(lambda / t).g_add_(&(a / n));
                out.push((p, b));
            }
        }
        (RegForward { logits, loss, reg, cos, terms }, ParamGrads(out))
    }

    /// Pass 1 of [`Self::finite_difference`]: the tap gradients and G₀ from one
    /// ordinary backward (no `create_graph`: nothing hangs off the gradients), the switches
    /// recorded for pass 2.
    fn fd_pass_one(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        train: bool,
        params: &[Tensor],
    ) -> PassOne {
        let record = Gates::Record(Vec::new());
        let fwd = model.forward_taps_with(x, train, self.cfg.tap, Vec::new(), record);
        let per_sample = self.task.per_sample(&fwd.logits, y);
        let taps = self.select(&fwd.taps);
        let inputs: Vec<&Tensor> = taps.iter().chain(params).collect();
        let sum = per_sample.sum(per_sample.kind());
        let mut grads = Tensor::run_backward(&[sum], &inputs, false, false);
        let g0 = grads.split_off(taps.len());
        PassOne {
            with_u: taps.iter().map(|t| !t.is_leaf()).collect(),
            taps: taps.iter().map(Tensor::detach).collect(),
            grads,
            g0,
            logits: fwd.logits.detach(),
            loss: per_sample.detach().mean(per_sample.kind()),
            gates: fwd.gates.replay(),
        }
    }

    /// R, its per-tap parts and the partials u_k = ∂R/∂h_k, v_k = ∂R/∂g_k in closed form
    /// (cheaper than autograd through [`Self::penalty`], whose values it reproduces). Per
    /// sample, with d = <g, h>, a = ‖g‖, b = ‖h‖, D = ab + ε, c = d/D and s = w/N·φ'(c):
    ///
    /// ```text
    /// v = s/D·h − s·c·b/(a·D)·g        u = s/D·g − s·c·a/(b·D)·h
    /// ```
    ///
    /// the second terms 0 where a (resp. b) is 0, as autograd's gradient of a zero norm. GNR
    /// (term ‖g‖²): v = 2w/N·g and no u.
    ///
    /// v_k is written over g_k; u_k is left out where `with_u[k]` is false (a tap that is a
    /// leaf of the graph, such as the normalized input: nothing upstream has parameters).
    fn partials(&self, taps: &[Tensor], grads: Vec<Tensor>, with_u: &[bool]) -> Partials {
        let kind = taps.first().map_or(Kind::Float, Tensor::kind);
        let mut reg =
            Tensor::zeros([], (kind, taps.first().map_or(tch::Device::Cpu, Tensor::device)));
        let (mut cos, mut terms, mut u, mut v, mut tap_norms) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (((h, mut g), w), &with_u) in taps.iter().zip(grads).zip(&self.weights).zip(with_u) {
            // g_k's storage becomes v_k (in place where the flattened view shares it).
            let n = h.size()[0] as f64;
            let (h2, mut g2) = (h.flatten(1, -1), g.flatten(1, -1));
            // Batched dot products: one pass over g and h, no product tensor.
            let dot = g2.unsqueeze(1).bmm(&h2.unsqueeze(2)).view([-1]);
            let a = g2.norm_scalaropt_dim(2, 1, false);
            let b = h2.norm_scalaropt_dim(2, 1, false);
            let den = &a * &b + self.cfg.eps;
            let c = &dot / &den;
            let per_sample = |p: &Tensor| p.unsqueeze(1);
            let (term, vk, uk) = match self.kind {
                RegKind::Gnr => {
                    let term = g2.square().sum_dim_intlist(1, false, kind).mean(kind);
                    let _ = g.g_mul_scalar_(2.0 * w / n);
                    (term, g, None)
                }
                RegKind::Gfa => {
                    let dphi = match self.cfg.penalty {
                        Penalty::OneMinusCos => c.ones_like().neg(),
                        Penalty::OneMinusAbsCos => c.sign().neg(),
                        Penalty::Sin2 => &c * -2.0,
                    };
                    let s = dphi * (w / n);
                    let p = per_sample(&(&s / &den));
                    let scd = &s * &c / &den;
                    let zero_where =
                        |x: Tensor, norm: &Tensor| x.where_scalarother(&norm.gt(0.0), 0.0);
                    let qg = per_sample(&zero_where(&scd * &b / &a, &a));
                    let qh = per_sample(&zero_where(&scd * &a / &b, &b));
                    let uk = with_u.then(|| (&g2 * &p).addcmul_(&h2, &qh.neg()).view_as(h));
                    let _ = g2.g_mul_(&qg.neg()).addcmul_(&h2, &p);
                    let term = self.cfg.penalty.apply(&c).mean(kind);
                    (term, g2.view_as(h), uk)
                }
            };
            #[allow(clippy::assign_op_pattern)]
            {
                reg = reg + &term * *w;
            }
            cos.push(c.mean(kind));
            terms.push(term);
            tap_norms.push(b.square().sum(kind).sqrt());
            u.push(uk);
            v.push(vk);
        }
        let stack = |t: Vec<Tensor>| {
            if t.is_empty() { reg.zeros_like().view([0]) } else { Tensor::stack(&t, 0) }
        };
        Partials { cos: stack(cos), terms: stack(terms), tap_norms: stack(tap_norms), reg, u, v }
    }

    /// t = δ · min_k ‖h_k‖/‖v_k‖ over the taps of S where both norms are non-zero (δ when
    /// there is none: then the offsets are zero or the taps are).
    fn fd_offset_scale(&self, tap_norms: &Tensor, v: &[Tensor]) -> f64 {
        // Both norms in one read: ‖h_k‖ then ‖v_k‖.
        let mut norms = vec![tap_norms.to_kind(Kind::Double).flatten(0, -1)];
        norms.extend(v.iter().map(|v| v.norm().to_kind(Kind::Double).view([1])));
        let both = crate::transfer::read_f64s(&Tensor::cat(&norms, 0));
        let (hn, vn) = both.split_at(tap_norms.numel().min(both.len()));
        let ratio = hn
            .iter()
            .zip(vn)
            .map(|(h, v)| h / v)
            .filter(|r| r.is_finite() && *r > 0.0)
            .fold(f64::INFINITY, f64::min);
        self.cfg.fd_step() * if ratio.is_finite() { ratio } else { 1.0 }
    }
}

/// What pass 1 of the finite difference hands to pass 2.
struct PassOne {
    /// The taps of S (detached).
    taps: Vec<Tensor>,
    /// g_k, the loss gradients at the taps of S.
    grads: Vec<Tensor>,
    /// G₀ = ∇θ Σ_i ℓ_i, one per parameter (undefined for a parameter the loss does not use).
    g0: Vec<Tensor>,
    logits: Tensor,
    loss: Tensor,
    /// The recorded switches, ready to replay.
    gates: Gates,
    /// Whether tap k depends on the parameters (it is not a leaf), so that u_k matters.
    with_u: Vec<bool>,
}

/// R and its partials at the taps of S (see [`Regularizer::partials`]).
struct Partials {
    /// R (a scalar).
    reg: Tensor,
    /// Mean cosine and mean term per tap, `[|S|]`.
    cos: Tensor,
    terms: Tensor,
    /// u_k = ∂R/∂h_k (none for GNR).
    u: Vec<Option<Tensor>>,
    /// v_k = ∂R/∂g_k.
    v: Vec<Tensor>,
    /// ‖h_k‖ over the batch, `[|S|]`.
    tap_norms: Tensor,
}

/// `f` with its tensors detached (what the trainer logs).
fn detached(f: RegForward) -> RegForward {
    RegForward {
        logits: f.logits.detach(),
        loss: f.loss.detach(),
        reg: f.reg.detach(),
        cos: f.cos,
        terms: f.terms,
    }
}

/// Parameter gradients computed outside `.grad` ([`Regularizer::finite_difference`]): each
/// parameter with the gradient to add to it.
#[derive(Debug)]
pub struct ParamGrads(pub Vec<(Tensor, Tensor)>);

impl ParamGrads {
    /// `p.grad += d` for each pair, creating the gradient where `p` has none yet (the backward
    /// of Σ p·d writes exactly d).
    pub fn accumulate(&self) {
        for (p, d) in &self.0 {
            let mut g = p.grad();
            if g.defined() {
                tch::no_grad(|| {
                    let _ = g.g_add_(d);
                });
            } else {
                (p * d).sum(p.kind()).backward();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["input", "conv1", "fc1"].map(String::from).to_vec()
    }

    fn gfa(cfg: &RegularizerConfig) -> Result<Regularizer> {
        Regularizer::new(RegKind::Gfa, cfg, TaskLoss::Ce, &names())
    }

    #[test]
    fn layers_parse_words_and_lists() {
        #[derive(Deserialize)]
        struct W {
            method: RegularizerConfig,
        }
        let w: W = toml::from_str("[method]\nlambda = 1\nlayers = [\"input\", \"fc1\"]").unwrap();
        let want = Layers::Names(vec!["input".into(), "fc1".into()]);
        assert_eq!(w.method.layers(RegKind::Gfa), want);
        let w: W = toml::from_str("[method]\nlambda = 1.0\nlayers = \"first\"").unwrap();
        assert_eq!(w.method.layers(RegKind::Gfa), Layers::First);
        let e = toml::from_str::<W>("[method]\nlambda = 1.0\nlayers = \"frist\"").err().unwrap();
        assert!(e.to_string().contains("frist"), "{e}");
        let e = toml::from_str::<W>("[method]\nlamda = 1.0").err().unwrap();
        assert!(e.to_string().contains("lamda"), "{e}");
    }

    #[test]
    fn default_layers_depend_on_kind() {
        let cfg = RegularizerConfig::with_lambda(1.0);
        assert_eq!(cfg.layers(RegKind::Gfa), Layers::Deep);
        assert_eq!(cfg.layers(RegKind::Gnr), Layers::First);
        let r = gfa(&cfg).unwrap();
        assert_eq!(r.tap_names(), &names()[..]);
        assert_eq!(r.weights(), &[1.0 / 3.0; 3]);
    }

    #[test]
    fn unknown_tap_is_named_with_the_valid_ones() {
        let cfg = RegularizerConfig {
            layers: Some(Layers::Names(vec!["conv9".into()])),
            ..RegularizerConfig::with_lambda(1.0)
        };
        let e = gfa(&cfg).unwrap_err().to_string();
        assert!(e.contains("conv9") && e.contains("input, conv1, fc1"), "{e}");
    }

    #[test]
    fn weight_count_must_match_taps() {
        let cfg = RegularizerConfig {
            weights: Weights::List(vec![1.0, 2.0]),
            ..RegularizerConfig::with_lambda(1.0)
        };
        let e = gfa(&cfg).unwrap_err().to_string();
        assert!(e.contains("2 entries") && e.contains("has 3"), "{e}");
    }

    #[test]
    fn warmup_ramps_linearly() {
        let cfg =
            RegularizerConfig { lambda_warmup_epochs: 4, ..RegularizerConfig::with_lambda(2.0) };
        let l: Vec<f64> = (0..6).map(|e| cfg.lambda_at(e, 1000 * e)).collect();
        assert_eq!(l, vec![0.5, 1.0, 1.5, 2.0, 2.0, 2.0]);
        // Over steps: step s of training uses λ (s + 1)/k up to step k − 1.
        let cfg =
            RegularizerConfig { lambda_warmup_steps: 4, ..RegularizerConfig::with_lambda(2.0) };
        let l: Vec<f64> = (0..6).map(|s| cfg.lambda_at(s / 3, s)).collect();
        assert_eq!(l, vec![0.5, 1.0, 1.5, 2.0, 2.0, 2.0]);
        // Both: the product of the two ramps.
        let cfg = RegularizerConfig { lambda_warmup_epochs: 2, ..cfg };
        assert_eq!(cfg.lambda_at(0, 1), 2.0 * 0.5 * 0.5);
        assert_eq!(cfg.lambda_at(1, 9), 2.0);
    }

    #[test]
    fn cosine_and_penalties_closed_form() {
        // Rows: parallel, orthogonal, anti-parallel. In float64: the 1e-8 stabilizer moves a
        // cosine by ≤ 1e-8 / (|g||h|) ≤ 1e-9 here, rounding by ~1e-16 on every CPU code path.
        let h = Tensor::from_slice(&[1.0f64, 2.0, 1.0, 0.0, 3.0, 4.0]).view([3, 2]);
        let g = Tensor::from_slice(&[2.0f64, 4.0, 0.0, 5.0, -6.0, -8.0]).view([3, 2]);
        let c = cosine(&g, &h, 1e-8);
        let want = [1.0, 0.0, -1.0];
        for (i, w) in want.iter().enumerate() {
            assert!((c.double_value(&[i as i64]) - w).abs() < 1e-8);
        }
        let v = |p: Penalty| Vec::<f64>::try_from(p.apply(&c)).unwrap();
        let close = |a: Vec<f64>, b: [f64; 3]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-8);
        assert!(close(v(Penalty::OneMinusCos), [0.0, 1.0, 2.0]));
        assert!(close(v(Penalty::OneMinusAbsCos), [0.0, 1.0, 0.0]));
        assert!(close(v(Penalty::Sin2), [0.0, 1.0, 0.0]));
    }

    #[test]
    fn gradient_mode_parses_and_exact_configs_serialize_as_before() {
        #[derive(Deserialize)]
        struct W {
            method: RegularizerConfig,
        }
        let w: W = toml::from_str(
            "[method]\nlambda = 0.3\ngradient = \"finite_difference\"\nfd_step = 2e-3",
        )
        .unwrap();
        assert_eq!(w.method.gradient, PenaltyGradient::FiniteDifference);
        assert_eq!(w.method.fd_step(), 2e-3);
        let w: W = toml::from_str("[method]\nlambda = 0.3").unwrap();
        assert_eq!((w.method.gradient, w.method.fd_step()), (PenaltyGradient::Exact, 1e-3));
        let e = toml::from_str::<W>("[method]\nlambda = 0.3\ngradient = \"finite\"").err();
        assert!(e.unwrap().to_string().contains("finite_difference"));
        // Exact configs (the default) write neither key, so their hashes and run ids stand.
        let json = serde_json::to_string(&RegularizerConfig::with_lambda(0.3)).unwrap();
        assert!(!json.contains("gradient") && !json.contains("fd_step"), "{json}");
        let fd = RegularizerConfig {
            gradient: PenaltyGradient::FiniteDifference,
            fd_step: Some(2e-3),
            ..RegularizerConfig::with_lambda(0.3)
        };
        let json = serde_json::to_string(&fd).unwrap();
        assert!(json.contains("\"gradient\":\"finite_difference\",\"fd_step\":0.002"), "{json}");
    }

    #[test]
    fn fd_step_outside_zero_one_is_an_error_naming_the_key_and_range() {
        for bad in [0.0, -1e-3, f64::NAN, 1.0, f64::INFINITY] {
            let cfg = RegularizerConfig {
                gradient: PenaltyGradient::FiniteDifference,
                fd_step: Some(bad),
                ..RegularizerConfig::with_lambda(1.0)
            };
            let e = gfa(&cfg).unwrap_err().to_string();
            assert!(e.contains("method.fd_step") && e.contains("(0, 1)"), "{bad}: {e}");
        }
    }

    /// The finite difference's first pass leaves no graph on the tap gradients (a
    /// `create_graph` there would hang the double-backprop graph off them).
    #[test]
    fn finite_difference_builds_no_graph_through_the_tap_gradients() {
        use crate::models::{Arch, ModelSpec};
        tch::manual_seed(1);
        let spec = ModelSpec { widths: vec![8, 4], num_classes: 3, ..ModelSpec::of(Arch::Mlp) };
        let model = Classifier::new(&spec, tch::Device::Cpu).unwrap();
        let cfg = RegularizerConfig::with_lambda(1.0);
        let reg = Regularizer::new(RegKind::Gfa, &cfg, TaskLoss::Ce, &model.tap_names()).unwrap();
        let x = Tensor::rand([4, 3, 32, 32], (Kind::Float, tch::Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2, 0]);
        let params = model.vs.trainable_variables();
        let one = reg.fd_pass_one(&model, &x, &y, true, &params);
        assert_eq!(one.grads.len(), 3);
        for t in one.grads.iter().chain(&one.g0).chain(&one.taps) {
            assert!(t.defined() && !t.requires_grad());
        }
        // and the exact path's do carry one.
        let f = model.forward_taps(&x, true, TapPoint::PostActivation);
        let l = TaskLoss::Ce.sum(&f.logits, &y);
        let g = Tensor::run_backward(&[l], &f.taps, true, true);
        assert!(g[1].requires_grad());
    }

    /// The closed-form partials of the finite difference equal autograd's through `penalty`,
    /// zero gradients and zero taps included (double precision: agreement to 1e-12).
    #[test]
    fn closed_form_partials_match_autograd() {
        tch::manual_seed(5);
        let opts = (Kind::Double, tch::Device::Cpu);
        let taps = vec![Tensor::randn([5, 3, 4], opts), Tensor::randn([5, 7], opts)];
        let grads = [Tensor::randn([5, 3, 4], opts), Tensor::randn([5, 7], opts)];
        let _ = grads[0].get(1).zero_();
        let _ = taps[1].get(2).zero_();
        taps[0].get(3).copy_(&(grads[0].get(3) * 2.0)); // c = 1 exactly
        let names: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let base = RegularizerConfig {
            weights: Weights::List(vec![0.3, 1.7]),
            layers: Some(Layers::Deep),
            ..RegularizerConfig::with_lambda(1.0)
        };
        let mut cfgs: Vec<(RegKind, RegularizerConfig)> =
            [Penalty::OneMinusCos, Penalty::OneMinusAbsCos, Penalty::Sin2]
                .map(|penalty| (RegKind::Gfa, RegularizerConfig { penalty, ..base.clone() }))
                .to_vec();
        cfgs.push((RegKind::Gnr, base.clone()));
        for (kind, cfg) in cfgs {
            let reg = Regularizer::new(kind, &cfg, TaskLoss::Ce, &names).unwrap();
            let h: Vec<Tensor> = taps.iter().map(|t| t.detach().set_requires_grad(true)).collect();
            let g: Vec<Tensor> = grads.iter().map(|t| t.detach().set_requires_grad(true)).collect();
            let (r, cos, terms) = reg.penalty(&h, &g);
            let leaves: Vec<&Tensor> = h.iter().chain(&g).collect();
            let auto = Tensor::run_backward(&[&r], &leaves, false, false);
            let copies: Vec<Tensor> = grads.iter().map(Tensor::copy).collect();
            let p = reg.partials(&taps, copies, &[true, true]);
            let close = |a: &Tensor, b: &Tensor| {
                (a - b).abs().max().double_value(&[])
                    <= 1e-12 * b.abs().max().double_value(&[]).max(1.0)
            };
            assert!(close(&p.reg, &r.detach()) && close(&p.cos, &cos) && close(&p.terms, &terms));
            for k in 0..2 {
                assert!(close(&p.v[k], &auto[2 + k]), "{:?} v{k}", cfg.penalty);
                match &p.u[k] {
                    Some(u) => assert!(close(u, &auto[k]), "{:?} u{k}", cfg.penalty),
                    None => assert_eq!(kind, RegKind::Gnr),
                }
            }
        }
    }
}
