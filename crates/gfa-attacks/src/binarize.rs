//! The binarization test of Zimmermann, Brendel, Tramèr & Carlini, "Increasing Confidence in
//! Adversarial Robustness Evaluations" (NeurIPS 2022, arXiv 2206.13991), after the authors' code
//! (google-research/active-adversarial-tests, `active_tests/decision_boundary_binarization.py`,
//! `interior_boundary_discrimination_attack`; docs/method.md §7 has the protocol and where gfa
//! deviates from it).
//!
//! An attack that fails on a model may fail because the model is robust there or because the
//! attack is weak on it. The test builds, per test point `x`, a problem on the same model whose
//! answer is known: the model's features before its logits (its last tap, averaged over space
//! when the tap is a feature map, which is what the final linear layer reads) are kept, and the
//! classifier on top of them is replaced by a two-class linear head. The head is trained to tell
//! `inner` samples (`x` itself and uniform draws in the ball of radius 0.95·ε) from `boundary`
//! samples (on the ε-sphere), then its threshold is moved up to just below the training sample it
//! scores highest ([`CLOSENESS`]): that sample lies within ε and crosses the new boundary, so an
//! adversarial example within ε is known to exist, and barely. The attack under test then
//! attacks `x` (label 0, inner) on this binarized model. The point passes when the attack finds
//! an adversarial example within ε; an attack that fails where one provably exists cannot be
//! trusted on that model. A point whose head does not separate its own training samples has no
//! known adversarial example and is `invalid` (the reference skips such points as failed
//! set-ups).
//!
//! The binarized model is a [`Classifier`] like any other (the feature extractor in front of the
//! head), so every attack of the registry that runs on two classes runs on it unchanged; the
//! model's weights and mode are never changed.
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use gfa_core::classifier::{Network, TapPoint, Taps};
use gfa_core::seed::{SeededRng, rng_for};
use gfa_core::{Classifier, ModelSpec};
use tch::nn::OptimizerConfig;
use tch::{Kind, Tensor, nn};

use crate::attack::{self, Attack, BUDGET_TOL, Family};
use crate::facts::Access;
use crate::registry::AttackSpec;
use crate::threat::{normal, per_sample, per_sample_norm, uniform};
use crate::{AttackError, Norm, Result};

/// Inner samples lie within this fraction of ε (the reference's `eta = 1 - 0.05`, its default
/// `relative_inner_boundary_gap`).
pub const INNER_RADIUS: f64 = 0.95;

/// The reference's inner samples per point.
pub const REFERENCE_INNER: usize = 999;

/// The attack `gfa binarize` tests when none is named: APGD-CE, the first attack of AutoAttack
/// and one that runs on a two-class model.
pub const DEFAULT_ATTACK: &str = "apgd-ce";

/// How close the head's threshold is moved to the highest-scoring training sample: its score
/// keeps `1 - CLOSENESS` of its value (the reference's `decision_boundary_closeness = 0.9999`).
pub const CLOSENESS: f64 = 0.9999;

/// The settings of one binarization test (the attack and its threat model come separately).
#[derive(Debug, Clone, PartialEq)]
pub struct BinarizeOptions {
    /// The budget ε, in the attack's norm.
    pub eps: f64,
    /// Inner training samples per point, the clean point included; `None`:
    /// [`REFERENCE_INNER`], but at most `D − boundary` for a model with `D` features, so that
    /// the training samples are not more than the features (the reference warns when they are,
    /// and a head then rarely separates them).
    pub inner: Option<usize>,
    /// Boundary training samples per point (reference: 1).
    pub boundary: usize,
    /// Fresh samples of each class on which the head's accuracy is measured (reference: 200).
    pub validation: usize,
    /// Full-batch Adam steps of the head.
    pub steps: usize,
    /// Adam's learning rate (reference: 0.05 for its Adam optimizer).
    pub lr: f64,
    /// Samples per forward pass when the features are extracted.
    pub batch_size: usize,
}

impl Default for BinarizeOptions {
    /// The reference's settings (999 inner samples, capped by the features, and one boundary
    /// sample per point, 200 validation samples per class) at L∞ 8/255, with 300 Adam steps.
    fn default() -> Self {
        Self {
            eps: 8.0 / 255.0,
            inner: None,
            boundary: 1,
            validation: 200,
            steps: 300,
            lr: 0.05,
            batch_size: 500,
        }
    }
}

/// What the test concluded at one point.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The attack found an adversarial example of the binarized model within ε.
    Pass,
    /// It did not, although one is known.
    Fail,
    /// No adversarial example is known (the head misclassifies one of its training samples, or
    /// the binarized model does not reproduce the known one): the point does not count.
    Invalid(String),
}

impl Outcome {
    /// `pass`, `fail` or `invalid`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Invalid(_) => "invalid",
        }
    }
}

/// The test at one point.
#[derive(Debug, Clone, PartialEq)]
pub struct PointOutcome {
    /// Position of the point in the batch given to [`binarization_test`].
    pub index: usize,
    pub label: i64,
    pub outcome: Outcome,
    /// Inner training samples used (the clean point included).
    pub inner: usize,
    /// The head's accuracy on its own training samples, before its threshold moves (1 for a
    /// valid point).
    pub train_acc: f64,
    /// The head's accuracy (before its threshold moves) on fresh inner and boundary samples,
    /// drawn as the training samples are; `None` with `validation = 0`.
    pub val_inner_acc: Option<f64>,
    pub val_boundary_acc: Option<f64>,
    /// The norm, in the attack's threat model, of the perturbation the attack returned.
    pub adv_norm: Option<f64>,
    pub seconds: f64,
}

/// The position in [`Classifier::tap_names`] of the features the test reads: the last tap, the
/// input of the final linear layer (up to a global average over space). An error for a model
/// with no tap after `input` (the `linear` model, a TorchScript module).
pub fn feature_tap(model: &Classifier) -> Result<usize> {
    let names = model.tap_names();
    if names.len() < 2 {
        return Err(AttackError::Config(format!(
            "the binarization test reads the model's features before its logits (its last tap \
             after `input`), and this model ({}) has no tap after `input`: test a model with \
             hidden layers (mlp, cnn, a ResNet), or a gfa architecture's weights imported with \
             gfa import instead of a TorchScript module",
            model.spec.arch.name()
        )));
    }
    Ok(names.len() - 1)
}

/// An error unless `spec` can attack a binarized (two-class) model: a transfer attack has no
/// binarized surrogate, an attack that needs three or more classes cannot run, and the test
/// samples L∞ and L2 balls only.
pub fn check_attack(spec: &AttackSpec) -> Result<()> {
    let kind = spec.kind();
    if spec.facts().access == Access::Surrogate {
        return Err(AttackError::Config(format!(
            "attack \"{kind}\" crafts its examples on a surrogate model, and the binarized model \
             has none: test a white-box or black-box attack (pgd, apgd-ce, square, …)"
        )));
    }
    let need = spec.min_classes();
    if need > 2 {
        return Err(AttackError::Config(format!(
            "attack \"{kind}\" needs a model with at least {need} classes and the binarized model \
             has 2: test apgd-ce, pgd, fgsm, square, fab, deepfool, or autoattack with version = \
             \"custom\" and such components"
        )));
    }
    let norm = spec.norm();
    if norm == Norm::L1 {
        return Err(AttackError::Config(format!(
            "attack \"{kind}\" attacks in l1, and the binarization test samples L∞ and L2 balls \
             only: give the attack norm = \"linf\" or \"l2\""
        )));
    }
    spec.build()?;
    Ok(())
}

/// Every check of a test's inputs, before any work: the model's feature tap (returned), the
/// attack, and the options.
pub fn check(model: &Classifier, spec: &AttackSpec, opts: &BinarizeOptions) -> Result<usize> {
    let tap = feature_tap(model)?;
    check_attack(spec)?;
    if !(opts.eps.is_finite() && opts.eps > 0.0) {
        return Err(AttackError::Config(format!(
            "the binarization test needs a budget eps > 0 (its boundary samples lie on the \
             eps-sphere), got {}",
            opts.eps
        )));
    }
    let counts = [
        ("inner", opts.inner.unwrap_or(1)),
        ("boundary", opts.boundary),
        ("steps", opts.steps),
        ("batch_size", opts.batch_size),
    ];
    if let Some((key, _)) = counts.iter().find(|(_, v)| *v == 0) {
        return Err(AttackError::Config(format!("binarization {key} must be at least 1, got 0")));
    }
    if !(opts.lr.is_finite() && opts.lr > 0.0) {
        return Err(AttackError::Config(format!(
            "binarization lr must be a positive number, got {}",
            opts.lr
        )));
    }
    Ok(tap)
}

/// `n` draws uniform in the ball of radius `r` around `x0` (`[1, C, H, W]`), clipped to the box
/// (the reference's inner samples: uniform per coordinate for L∞; for L2 a Gaussian direction at
/// radius `r · u^(1/d)`).
fn inside(x0: &Tensor, n: usize, norm: Norm, r: f64, rng: &mut SeededRng) -> Tensor {
    let mut shape = x0.size();
    shape[0] = n as i64;
    let dev = x0.device();
    let delta = match norm {
        Norm::L2 => {
            let dir = normal(&shape, rng, dev);
            let len = per_sample_norm(&dir, Norm::L2).clamp_min(1e-12);
            let d = (x0.numel() as f64).max(1.0);
            let radius = uniform(&[n as i64], rng, dev).pow_tensor_scalar(1.0 / d) * r;
            &dir / per_sample(&len, &dir) * per_sample(&radius, &dir)
        }
        _ => (uniform(&shape, rng, dev) * 2.0 - 1.0) * r,
    };
    (x0 + delta).clamp(0.0, 1.0)
}

/// `n` draws on the ε-sphere around `x0`: a random direction (uniform per coordinate for L∞,
/// Gaussian for L2) scaled so that the perturbation still has norm ε after the box clip (the
/// reference's clipping-aware rescaling; here by bisection on the scale, in float64). Where the
/// box leaves no room to reach ε, the largest perturbation along the direction is taken.
fn on_sphere(x0: &Tensor, n: usize, norm: Norm, eps: f64, rng: &mut SeededRng) -> Tensor {
    let mut shape = x0.size();
    shape[0] = n as i64;
    let dev = x0.device();
    let dir = match norm {
        Norm::L2 => normal(&shape, rng, dev),
        _ => uniform(&shape, rng, dev) * 2.0 - 1.0,
    };
    let (x0d, dir) = (x0.to_kind(Kind::Double), dir.to_kind(Kind::Double));
    let reach = |c: &Tensor| {
        let x = (&x0d + &dir * per_sample(c, &dir)).clamp(0.0, 1.0);
        per_sample_norm(&(x - &x0d), norm)
    };
    // The clipped norm grows with the scale: double `hi` until it reaches ε, then bisect.
    let mut lo = Tensor::zeros([n as i64], (Kind::Double, dev));
    let mut hi = per_sample_norm(&dir, norm).clamp_min(1e-12).reciprocal() * eps;
    for _ in 0..64 {
        let short = reach(&hi).lt(eps);
        if short.any().int64_value(&[]) == 0 {
            break;
        }
        hi = hi.where_self(&short.logical_not(), &(&hi * 2.0));
    }
    for _ in 0..64 {
        let mid = (&lo + &hi) * 0.5;
        let over = reach(&mid).gt(eps);
        hi = mid.where_self(&over, &hi);
        lo = lo.where_self(&over, &mid);
    }
    (&x0d + &dir * per_sample(&lo, &dir)).clamp(0.0, 1.0).to_kind(x0.kind())
}

/// The features the head reads: the tap `tap` of `model` at `x`, averaged over space when it is
/// a feature map, flattened.
///
/// # Shapes
/// `x`: `[N, C, H, W]` → `[N, D]`.
fn features(model: &Classifier, x: &Tensor, tap: usize) -> Tensor {
    let mut taps = model.forward_taps(x, false, TapPoint::PostActivation).taps;
    let t = taps.swap_remove(tap);
    let t = if t.dim() == 4 { t.mean_dim([2i64, 3].as_slice(), false, None) } else { t };
    t.flatten(1, -1)
}

/// [`features`] of `x` in batches of `batch`, without a graph, on the model's device.
fn features_batched(model: &Classifier, x: &Tensor, tap: usize, batch: usize) -> Tensor {
    tch::no_grad(|| {
        let dev = model.device();
        let f: Vec<Tensor> = x
            .split(batch as i64, 0)
            .iter()
            .map(|xb| features(model, &xb.to_device(dev), tap).detach())
            .collect();
        Tensor::cat(&f, 0)
    })
}

/// A trained head: the score `s = (f - mu)·w + b` of features `f` (class 1, the boundary, where
/// `s > 0`). Centring first keeps the score's rounding at the scale of the features' spread
/// rather than of their size.
#[derive(Debug)]
struct Head {
    mu: Tensor,
    w: Tensor,
    b: f64,
}

impl Head {
    fn score(&self, f: &Tensor) -> Tensor {
        (f - &self.mu).mv(&self.w) + self.b
    }
}

/// The binarized model's head: logits `[-t/2, t/2]` with `t = (s - shift)·scale`, `s` the
/// trained head's score. The score is computed as the threshold was set from it (see
/// [`moved`]), so the known example's logits come out as when the threshold was placed.
#[derive(Debug)]
struct Moved {
    head: Head,
    shift: f64,
    scale: f64,
}

/// The base model's feature extractor with a [`Moved`] head on top: a two-class network.
#[derive(Debug)]
struct Binarized {
    base: Arc<Mutex<Classifier>>,
    tap: usize,
    head: Moved,
}

impl Network for Binarized {
    fn forward(&self, x: &Tensor, _train: bool, _taps: Option<&mut Taps>) -> Tensor {
        // The base model runs in eval mode whatever the caller asks: the test never trains it.
        let base = self.base.lock().unwrap_or_else(PoisonError::into_inner);
        let Moved { head, shift, scale } = &self.head;
        let t = (head.score(&features(&base, x, self.tap)) - *shift) * *scale;
        Tensor::stack(&[&t * -0.5, &t * 0.5], 1)
    }

    fn tap_names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The head trained on `z` (standardized features) to score boundary samples (`is_boundary`)
/// above zero: logistic regression with the two classes weighted equally, full-batch Adam from
/// zero (no random draw). Returns `(w, b)`.
fn fit(z: &Tensor, is_boundary: &Tensor, opts: &BinarizeOptions) -> Result<(Tensor, f64)> {
    let vs = nn::VarStore::new(z.device());
    let w = vs.root().zeros("w", &[z.size()[1]]);
    let b = vs.root().zeros("b", &[1]);
    let mut opt = nn::Adam::default().build(&vs, opts.lr)?;
    let inner = is_boundary.logical_not();
    for _ in 0..opts.steps {
        let s = z.mv(&w) + &b;
        let loss = s.masked_select(&inner).softplus().mean(Kind::Float) * 0.5
            + (-s.masked_select(is_boundary)).softplus().mean(Kind::Float) * 0.5;
        opt.backward_step(&loss);
    }
    Ok((w.detach().copy(), b.double_value(&[0])))
}

/// The inner samples per point for `model`, whose features at tap `tap` have dimension `D`
/// (see [`BinarizeOptions::inner`]): as given, else `min(999, D − boundary)`, at least 1.
fn inner_count(model: &Classifier, x: &Tensor, tap: usize, opts: &BinarizeOptions) -> usize {
    opts.inner.unwrap_or_else(|| {
        let one = x.narrow(0, 0, x.size()[0].min(1)).to_device(model.device());
        let d = features_batched(model, &one, tap, 1).size()[1] as usize;
        REFERENCE_INNER.min(d.saturating_sub(opts.boundary)).max(1)
    })
}

/// Fraction of `s > 0` equal to `want_boundary`.
fn acc(s: &Tensor, want_boundary: bool) -> f64 {
    let right = if want_boundary { s.gt(0.0) } else { s.le(0.0) };
    right.to_kind(Kind::Double).mean(Kind::Double).double_value(&[])
}

/// A point's samples, head and binarized model, before the attack.
struct Setup {
    head: Moved,
    /// The training sample the binarized model is known to misclassify, `[1, C, H, W]`.
    known: Tensor,
    train_acc: f64,
    val: Option<(f64, f64)>,
}

/// The binarized head of `trained`: its threshold moved up next to the known example (the
/// training sample it scores highest, `s` holding the samples' scores), which keeps `1 -
/// CLOSENESS` of its score, then its logits scaled to span 1 over the samples (the reference's
/// default `rescale_logits = "fixed"`), so that the cross-entropy does not saturate. The known
/// example's score is taken as the binarized model computes it, from its features on their own
/// (a batch of one): a batched forward may round its features otherwise, by more than the
/// margin left. Returns the head and the known example, `[1, C, H, W]`.
fn moved(
    model: &Classifier,
    trained: Head,
    (samples, s): (&Tensor, &Tensor),
    tap: usize,
) -> (Moved, Tensor) {
    let known = samples.narrow(0, s.argmax(0, false).int64_value(&[]), 1);
    let s_known = trained.score(&features_batched(model, &known, tap, 1)).double_value(&[0]);
    let shift = CLOSENESS * s_known;
    let spread = (s - shift).abs().max().double_value(&[]);
    let scale = if spread > 0.0 { 1.0 / spread } else { 1.0 };
    (Moved { head: trained, shift, scale }, known)
}

/// Draw the point's training samples, train its head, measure it on fresh samples, then move its
/// threshold next to the highest-scoring training sample and scale its logits ([`moved`]).
fn setup(
    model: &Classifier,
    x0: &Tensor,
    tap: usize,
    norm: Norm,
    (opts, n_inner): (&BinarizeOptions, usize),
    rng: &mut SeededRng,
) -> Result<Setup> {
    let inner = inside(x0, n_inner - 1, norm, INNER_RADIUS * opts.eps, rng);
    let boundary = on_sphere(x0, opts.boundary, norm, opts.eps, rng);
    let samples = Tensor::cat(&[x0, &inner, &boundary], 0);
    let f = features_batched(model, &samples, tap, opts.batch_size);
    let is_boundary =
        Tensor::arange(samples.size()[0], (Kind::Int64, f.device())).ge(n_inner as i64);
    let mu = f.mean_dim(0, false, None);
    let sd = f.std_dim(0, false, false);
    // A feature constant over the samples gets scale 1 (its standardized value is 0 anyway).
    let sd = sd.where_self(&sd.gt(0.0), &sd.ones_like());
    let (w, b) = fit(&((&f - &mu) / &sd), &is_boundary, opts)?;
    let trained = Head { mu, w: &w / &sd, b };
    let s = trained.score(&f);
    let (s_in, s_out) =
        (s.narrow(0, 0, n_inner as i64), s.narrow(0, n_inner as i64, opts.boundary as i64));
    let train_acc = (acc(&s_in, false) * n_inner as f64 + acc(&s_out, true) * opts.boundary as f64)
        / (n_inner + opts.boundary) as f64;
    let val = (opts.validation > 0).then(|| {
        let v_in = inside(x0, opts.validation, norm, INNER_RADIUS * opts.eps, rng);
        let v_out = on_sphere(x0, opts.validation, norm, opts.eps, rng);
        let score = |x: &Tensor| trained.score(&features_batched(model, x, tap, opts.batch_size));
        (acc(&score(&v_in), false), acc(&score(&v_out), true))
    });
    let (head, known) = moved(model, trained, (&samples, &s), tap);
    Ok(Setup { head, known, train_acc, val })
}

/// Why no adversarial example of `binarized` is known at `x0`, if none is: the head misclassifies
/// a training sample, or the binarized model (recomputing the features one point at a time) does
/// not classify `x0` as inner and the known sample as boundary.
fn invalid_reason(
    binarized: &Classifier,
    x0: &Tensor,
    known: &Tensor,
    train_acc: f64,
) -> Option<String> {
    if train_acc < 1.0 {
        return Some(format!(
            "the head separates {:.2}% of its training samples, not all: no adversarial example \
             is known",
            100.0 * train_acc
        ));
    }
    let pred = |x: &Tensor| crate::repeated::predict(binarized, x).int64_value(&[0]);
    if pred(x0) != 0 || pred(known) != 1 {
        return Some(
            "the binarized model does not reproduce the head's training scores (the clean point \
             is not inner, or the known example not boundary)"
                .into(),
        );
    }
    None
}

/// Whether `attack` finds an adversarial example of `binarized` within `eps` at `x0` (label 0,
/// "inner"), and the norm of the perturbation it returned. A minimum-norm attack's perturbation
/// counts when it is at most `eps`.
fn attack_point(
    attack: &dyn Attack,
    binarized: &Classifier,
    x0: &Tensor,
    eps: f64,
    rng: &mut SeededRng,
) -> Result<(bool, f64)> {
    let inner = Tensor::zeros([1], (Kind::Int64, x0.device()));
    let o = attack::run(attack, binarized, x0, &inner, eps, rng)?;
    let dist = o.norm(attack.norm()).double_value(&[0]);
    let within = attack.family() == Family::FixedBudget || dist <= eps + BUDGET_TOL;
    Ok((o.success.int64_value(&[0]) != 0 && within, dist))
}

/// Run the binarization test of `spec` at every point of `x` (labels `y`, kept in the outcome
/// only): per point a head on `model`'s features, a binarized model, and the attack on it.
/// Everything random comes from `seed` (`rng_for(seed, "binarize/<i>/…")`). `progress` sees each
/// finished point (done, total). The model comes back unchanged.
///
/// # Shapes
/// `x`: `[N, C, H, W]` in `[0, 1]`; `y`: `[N]` int64.
pub fn binarization_test(
    model: Classifier,
    x: &Tensor,
    y: &Tensor,
    spec: &AttackSpec,
    opts: &BinarizeOptions,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<PointOutcome>, Classifier)> {
    let tap = check(&model, spec, opts)?;
    let attack = spec.build()?;
    let n_inner = inner_count(&model, x, tap, opts);
    let norm = attack.norm();
    let device = model.device();
    let two_class = ModelSpec {
        num_classes: 2,
        normalize: false,
        layout: Default::default(),
        ..model.spec.clone()
    };
    let base = Arc::new(Mutex::new(model));
    let n = x.size()[0] as usize;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        let x0 = x.narrow(0, i as i64, 1).to_device(device);
        let mut rng = rng_for(seed, &format!("binarize/{i}/samples"));
        let Setup { head, known, train_acc, val } = {
            let m = base.lock().unwrap_or_else(PoisonError::into_inner);
            setup(&m, &x0, tap, norm, (opts, n_inner), &mut rng)?
        };
        let net = Binarized { base: Arc::clone(&base), tap, head };
        let vs = nn::VarStore::new(device);
        let binarized = Classifier::with_network(vs, &two_class, Box::new(net))
            .map_err(|e| AttackError::Config(e.to_string()))?;
        let (outcome, adv_norm) = match invalid_reason(&binarized, &x0, &known, train_acc) {
            Some(reason) => (Outcome::Invalid(reason), None),
            None => {
                let mut arng = rng_for(seed, &format!("binarize/{i}/attack"));
                let (won, dist) =
                    attack_point(attack.as_ref(), &binarized, &x0, opts.eps, &mut arng)?;
                (if won { Outcome::Pass } else { Outcome::Fail }, Some(dist))
            }
        };
        out.push(PointOutcome {
            index: i,
            label: y.int64_value(&[i as i64]),
            outcome,
            inner: n_inner,
            train_acc,
            val_inner_acc: val.map(|v| v.0),
            val_boundary_acc: val.map(|v| v.1),
            adv_norm,
            seconds: t0.elapsed().as_secs_f64(),
        });
        progress(i + 1, n);
    }
    let model = Arc::try_unwrap(base)
        .map_err(|_| AttackError::Config("the binarized models outlived the test".into()))?
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    Ok((out, model))
}

/// The share of `outcomes` that passed among the valid ones: `(passed, valid)`.
pub fn pass_count(outcomes: &[PointOutcome]) -> (usize, usize) {
    let passed = outcomes.iter().filter(|o| o.outcome == Outcome::Pass).count();
    let valid = outcomes.iter().filter(|o| !matches!(o.outcome, Outcome::Invalid(_))).count();
    (passed, valid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Boundary samples lie on the ε-sphere after the box clip and inner samples inside 0.95·ε,
    /// in both norms, around an image with many pixels at 0 and 1 (where the clip bites). Float32
    /// pixels round by at most 6e-8 each, so a norm is off by at most 1.2e-7 (L∞) or
    /// √192 · 1.2e-7 = 1.7e-6 (L2, 192 pixels); 1e-5 bounds both, and a sample off the sphere
    /// (no rescaling: the Gaussian direction's own norm) misses it by far more.
    #[test]
    fn samples_lie_where_the_test_needs_them() {
        let mut rng = SeededRng::seed_from_u64(0);
        let x0 = (uniform(&[1, 3, 8, 8], &mut rng, tch::Device::Cpu) * 3.0 - 1.0).clamp(0.0, 1.0);
        for (norm, eps) in [(Norm::Linf, 8.0 / 255.0), (Norm::L2, 0.5)] {
            let b = on_sphere(&x0, 16, norm, eps, &mut rng);
            let d = per_sample_norm(&(&b - &x0), norm);
            let off = (d - eps).abs().max().double_value(&[]);
            assert!(off < 1e-5, "{norm}: boundary samples {off} off the sphere");
            let i = inside(&x0, 16, norm, INNER_RADIUS * eps, &mut rng);
            let d = per_sample_norm(&(&i - &x0), norm).max().double_value(&[]);
            assert!(d <= INNER_RADIUS * eps + 1e-5, "{norm}: inner sample at {d}");
            for t in [&b, &i] {
                assert!(t.min().double_value(&[]) >= 0.0 && t.max().double_value(&[]) <= 1.0);
            }
        }
    }
}
