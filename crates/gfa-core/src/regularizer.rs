//! The Gradient-Feature Alignment (GFA) regularizer and the input-gradient-norm penalty (GNR).
//!
//! GFA: "DeepDefense: Layer-Wise Gradient-Feature Alignment for Building Robust Neural Networks"
//! (Lin, Yeap, Kiringa, Zhang; arXiv 2511.13749), as restated in SPEC §2:
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
//! Defaults are SPEC §2's table; `eps = 1e-8` as PyTorch's `cosine_similarity`.
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::classifier::{Classifier, TapPoint};
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

/// The GFA options, shared by the methods that train with a tap-gradient penalty (`gfa`,
/// `gnr`, `gfa_pgd_at`): the keys of their `[method]` table besides `kind` (and, for
/// `gfa_pgd_at`, the PGD keys). SPEC §2's defaults for every key but λ, which has none.
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
    /// ε in the cosine's denominator (PyTorch `cosine_similarity`'s default).
    #[serde(default = "eps_1e8")]
    pub eps: f64,
}

fn uniform() -> Weights {
    Weights::Uniform
}

fn eps_1e8() -> f64 {
    1e-8
}

impl RegularizerConfig {
    /// Weight λ and SPEC §2's defaults otherwise: `layers` by kind, φ = 1 − c, uniform
    /// weights, post-activation taps, no warm-up, ε = 1e-8.
    pub fn with_lambda(lambda: f64) -> Self {
        Self {
            lambda,
            layers: None,
            penalty: Penalty::OneMinusCos,
            weights: Weights::Uniform,
            tap: TapPoint::PostActivation,
            lambda_warmup_epochs: 0,
            eps: eps_1e8(),
        }
    }

    /// The tap set with the kind's default filled in.
    pub fn layers(&self, kind: RegKind) -> Layers {
        match (&self.layers, kind) {
            (Some(l), _) => l.clone(),
            (None, RegKind::Gnr) => Layers::First,
            (None, RegKind::Gfa) => Layers::Deep,
        }
    }

    /// λ used in epoch `epoch` (0-based), after the warm-up ramp.
    pub fn lambda_at(&self, epoch: usize) -> f64 {
        match self.lambda_warmup_epochs {
            0 => self.lambda,
            k => self.lambda * ((epoch + 1) as f64 / k as f64).min(1.0),
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
        let l: Vec<f64> = (0..6).map(|e| cfg.lambda_at(e)).collect();
        assert_eq!(l, vec![0.5, 1.0, 1.5, 2.0, 2.0, 2.0]);
    }

    #[test]
    fn cosine_and_penalties_closed_form() {
        // Rows: parallel, orthogonal, anti-parallel.
        let h = Tensor::from_slice(&[1.0f32, 2.0, 1.0, 0.0, 3.0, 4.0]).view([3, 2]);
        let g = Tensor::from_slice(&[2.0f32, 4.0, 0.0, 5.0, -6.0, -8.0]).view([3, 2]);
        let c = cosine(&g, &h, 1e-8);
        let want = [1.0, 0.0, -1.0];
        for (i, w) in want.iter().enumerate() {
            assert!((c.double_value(&[i as i64]) - w).abs() < 1e-6);
        }
        let v = |p: Penalty| Vec::<f64>::try_from(p.apply(&c)).unwrap();
        let close = |a: Vec<f64>, b: [f64; 3]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
        assert!(close(v(Penalty::OneMinusCos), [0.0, 1.0, 2.0]));
        assert!(close(v(Penalty::OneMinusAbsCos), [0.0, 1.0, 0.0]));
        assert!(close(v(Penalty::Sin2), [0.0, 1.0, 0.0]));
    }
}
