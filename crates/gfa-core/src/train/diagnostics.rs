//! Collapse diagnostics: what a model looks like while it trains, measured on a fixed batch.
//!
//! A GFA run that collapses to chance decides it in its first few hundred steps, so the trainer
//! takes a *probe* every `every` optimizer steps of the first `epochs` epochs and at the end of
//! every epoch (`[train] diagnostics`). A probe looks at the first `batch` training images
//! (after the validation hold-out; never augmented) and the first `batch` test images, in eval
//! mode, and measures:
//!
//! - accuracy on both batches and the mean task loss on the training one;
//! - the method's penalty R on the training batch (GFA/GNR methods) and the mean cosine between
//!   the loss gradient and the feature at every tap of the model (the run's tap point);
//! - the input-gradient norm: mean over the batch of ‖∂ℓ_i/∂x_i‖₂, x in `[0, 1]` pixels;
//! - per tap after `input`, the fraction of *dead* units: elements of the tap's post-activation
//!   feature that are exactly zero on every image of the batch (dead ReLUs on ReLU taps);
//! - the entropy of the histogram of predicted classes, divided by ln(classes): 1 when every
//!   class is predicted equally often, 0 when one class is predicted for every image;
//! - the collapse flag: training-batch accuracy below 1.5× chance.
//!
//! A probe draws no random number, updates no BatchNorm statistic and accumulates no parameter
//! gradient (the tap and input gradients come from `run_backward` with explicit inputs), so a
//! run trains bit for bit the same with the diagnostics on or off. Cost: one forward and
//! backward of `batch` images and one forward of `batch` test images per probe (plus a forward
//! with post-activation taps when the run's taps are read before the activation).
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::classifier::{Classifier, TapPoint};
use crate::losses::TaskLoss;
use crate::metrics;
use crate::regularizer::{Regularizer, cosine};
use crate::{CoreError, Result};

/// `[train] diagnostics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiagnosticsConfig {
    /// Images in each fixed batch (training and test); 0 turns the diagnostics off.
    pub batch: usize,
    /// A probe every `every` optimizer steps during the first `epochs` epochs (0: at the end of
    /// each epoch only).
    pub every: usize,
    pub epochs: usize,
}

impl Default for DiagnosticsConfig {
    /// 256 images, every 25 steps of the first 2 epochs.
    fn default() -> Self {
        Self { batch: 256, every: 25, epochs: 2 }
    }
}

impl DiagnosticsConfig {
    /// Whether this is [`DiagnosticsConfig::default`].
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    pub fn enabled(&self) -> bool {
        self.batch > 0
    }

    /// Whether a probe is due before optimizer step `in_epoch` (0-based within the 0-based
    /// `epoch`) when `done` steps have been made since the start of training. The step count
    /// at the start of a later epoch was probed at the end of the previous one.
    pub fn due(&self, epoch: usize, in_epoch: usize, done: usize) -> bool {
        self.enabled()
            && self.every > 0
            && epoch < self.epochs
            && done.is_multiple_of(self.every)
            && (in_epoch > 0 || epoch == 0)
    }
}

/// One tap of a [`Probe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TapProbe {
    pub tap: String,
    /// Mean cosine between ∂ℓ/∂h and h over the fixed training batch.
    pub cos: f64,
    /// Fraction of the tap's units that are zero on every image of the batch (none at `input`).
    pub dead: Option<f64>,
}

/// The diagnostics of one moment of training (see the module documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// 1-based epoch in which the probe was taken.
    pub epoch: usize,
    /// Optimizer steps made since the start of training (0: the initial weights).
    pub step: usize,
    pub train_acc: f64,
    /// Accuracy on the fixed test batch (none without a test split).
    pub test_acc: Option<f64>,
    /// Mean task loss on the fixed training batch.
    pub loss: f64,
    /// The method's penalty R on the fixed training batch (methods with a regularizer).
    pub penalty: Option<f64>,
    /// λ in force (methods with a regularizer).
    pub lambda: Option<f64>,
    /// Every tap of the model, `input` first.
    pub taps: Vec<TapProbe>,
    /// Mean over the batch of ‖∂ℓ_i/∂x_i‖₂.
    pub grad_norm: f64,
    /// Entropy of the predicted-class histogram / ln(classes), in [0, 1].
    pub pred_entropy: f64,
    /// Training-batch accuracy below 1.5× chance.
    pub collapse: bool,
}

/// The fixed batches of a run's probes, on the model's device.
#[derive(Debug)]
pub struct FixedBatches {
    x: Tensor,
    y: Tensor,
    test: Option<(Tensor, Tensor)>,
}

impl FixedBatches {
    /// The first `n` images of `train` and of `test` (when it is not empty).
    pub fn new(
        train: &gfa_data::Dataset,
        test: &gfa_data::Dataset,
        n: usize,
        dev: tch::Device,
    ) -> Self {
        let head = |d: &gfa_data::Dataset| {
            let n = n.min(d.len()) as i64;
            d.batch(&Tensor::arange(n, (Kind::Int64, tch::Device::Cpu)), dev)
        };
        let (x, y) = head(train);
        Self { x, y, test: (!test.is_empty()).then(|| head(test)) }
    }
}

/// What a probe needs besides the model and the batches.
#[derive(Debug, Clone, Copy)]
pub struct ProbeContext<'a> {
    pub task: TaskLoss,
    /// The method's regularizer: its tap point and penalty are the run's.
    pub reg: Option<&'a Regularizer>,
    pub lambda: Option<f64>,
    /// 1-based epoch and steps made so far.
    pub at: (usize, usize),
}

/// Fraction of `h`'s units (elements of one sample) that are zero on every sample.
///
/// # Shapes
/// `h`: `[N, ...]` → scalar in [0, 1].
pub fn dead_fraction(h: &Tensor) -> f64 {
    let alive = h.flatten(1, -1).ne(0.0).any_dim(0, false).to_kind(Kind::Double);
    1.0 - alive.mean(Kind::Double).double_value(&[])
}

/// Entropy of the histogram of `pred` over `classes` classes, divided by ln(classes).
///
/// # Shapes
/// `pred`: `[N]` int64 class indices.
pub fn prediction_entropy(pred: &Tensor, classes: i64) -> f64 {
    let n = pred.size()[0];
    if n == 0 || classes < 2 {
        return 0.0;
    }
    let p = pred.bincount::<Tensor>(None, classes).to_kind(Kind::Double) / n as f64;
    let h = -(&p * p.clamp_min(1e-300).log()).sum(Kind::Double).double_value(&[]);
    // One class only: the sum is −0; written as 0.
    if h > 0.0 { h / (classes as f64).ln() } else { 0.0 }
}

/// Take one probe of `model` on `batches`.
pub fn probe(model: &Classifier, batches: &FixedBatches, ctx: ProbeContext<'_>) -> Result<Probe> {
    let point = ctx.reg.map_or(TapPoint::PostActivation, |r| r.cfg.tap);
    let eps = ctx.reg.map_or(1e-8, |r| r.cfg.eps);
    let x = batches.x.detach().set_requires_grad(true);
    let fwd = model.forward_taps(&x, false, point);
    let per_sample = ctx.task.per_sample(&fwd.logits, &batches.y);
    let mut inputs = vec![x.shallow_clone()];
    inputs.extend(fwd.taps.iter().map(Tensor::shallow_clone));
    // One autograd call for the input and every tap; parameter `.grad`s stay untouched.
    let grads = Tensor::run_backward(&[per_sample.sum(per_sample.kind())], &inputs, false, false);
    let (gx, g_taps) =
        grads.split_first().ok_or_else(|| CoreError::Config("no gradient".into()))?;
    let grad_norm =
        gx.flatten(1, -1).norm_scalaropt_dim(2, 1, false).mean(Kind::Double).double_value(&[]);
    let penalty = ctx.reg.map(|r| {
        let (reg, _, _) = r.penalty(&r.select(&fwd.taps), &r.select(g_taps));
        reg.double_value(&[])
    });
    // Dead units are read after the activation, whatever the run's tap point.
    let post = match point {
        TapPoint::PostActivation => fwd.taps.iter().map(Tensor::shallow_clone).collect(),
        TapPoint::PreActivation => {
            tch::no_grad(|| model.forward_taps(&batches.x, false, TapPoint::PostActivation).taps)
        }
    };
    let taps = model
        .tap_names()
        .into_iter()
        .enumerate()
        .map(|(k, tap)| TapProbe {
            tap,
            cos: cosine(&g_taps[k], &fwd.taps[k], eps).mean(Kind::Double).double_value(&[]),
            dead: (k > 0).then(|| dead_fraction(&post[k])),
        })
        .collect();
    let pred = fwd.logits.detach().argmax(-1, false);
    let accuracy = |p: &Tensor, y: &Tensor| {
        p.eq_tensor(y).to_kind(Kind::Double).mean(Kind::Double).double_value(&[])
    };
    let train_acc = accuracy(&pred, &batches.y);
    let test_acc = batches
        .test
        .as_ref()
        .map(|(xt, yt)| tch::no_grad(|| accuracy(&model.logits(xt, false).argmax(-1, false), yt)));
    let classes = model.num_classes();
    Ok(Probe {
        epoch: ctx.at.0,
        step: ctx.at.1,
        train_acc,
        test_acc,
        loss: per_sample.detach().mean(Kind::Double).double_value(&[]),
        penalty,
        lambda: ctx.lambda,
        taps,
        grad_norm,
        pred_entropy: prediction_entropy(&pred, classes),
        collapse: train_acc < 1.5 * metrics::chance(classes),
    })
}

/// The step at which the collapse flag rose for the collapse in force at the last probe: the
/// step of the first probe of the uninterrupted run of flagged probes that ends at the last
/// one; none when the last probe is not flagged. 0 means the model never left chance.
pub fn collapse_step<'a>(probes: impl DoubleEndedIterator<Item = &'a Probe>) -> Option<usize> {
    let mut first = None;
    for p in probes.rev() {
        if !p.collapse {
            break;
        }
        first = Some(p.step);
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(step: usize, collapse: bool) -> Probe {
        Probe {
            epoch: 1,
            step,
            train_acc: 0.1,
            test_acc: None,
            loss: 2.3,
            penalty: None,
            lambda: None,
            taps: vec![],
            grad_norm: 0.0,
            pred_entropy: 0.0,
            collapse,
        }
    }

    #[test]
    fn collapse_step_is_the_start_of_the_last_flagged_run() {
        let run = |flags: &[bool]| {
            let p: Vec<Probe> = flags.iter().enumerate().map(|(i, f)| at(25 * i, *f)).collect();
            collapse_step(p.iter())
        };
        assert_eq!(run(&[true, false, false, true, true]), Some(75));
        assert_eq!(run(&[true, true, true]), Some(0), "never left chance");
        assert_eq!(run(&[true, true, false]), None, "recovered");
        assert_eq!(run(&[]), None);
    }

    #[test]
    fn dead_units_and_entropy_closed_form() {
        // Unit 0 is zero on both samples (dead), unit 1 on one of them, unit 2 never.
        let h = Tensor::from_slice(&[0.0f32, 1.0, 2.0, 0.0, 0.0, 3.0]).view([2, 3]);
        assert!((dead_fraction(&h) - 1.0 / 3.0).abs() < 1e-12);
        let one_class = Tensor::from_slice(&[2i64, 2, 2, 2]);
        assert_eq!(prediction_entropy(&one_class, 4), 0.0);
        let uniform = Tensor::from_slice(&[0i64, 1, 2, 3]);
        assert!((prediction_entropy(&uniform, 4) - 1.0).abs() < 1e-12);
        // Two classes of four, equally often: ln 2 / ln 4 = 1/2.
        let two = Tensor::from_slice(&[0i64, 1, 0, 1]);
        assert!((prediction_entropy(&two, 4) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn probes_are_due_every_k_steps_of_the_first_epochs() {
        let d = DiagnosticsConfig { batch: 8, every: 10, epochs: 2 };
        assert!(d.due(0, 0, 0), "the initial weights");
        assert!(d.due(0, 10, 10) && !d.due(0, 11, 11));
        // Step 40 starts epoch 2: its count was probed at the end of epoch 1.
        assert!(!d.due(1, 0, 40) && d.due(1, 10, 50));
        assert!(!d.due(2, 10, 90), "only the first 2 epochs");
        assert!(!DiagnosticsConfig { batch: 0, ..d.clone() }.due(0, 0, 0));
        assert!(!DiagnosticsConfig { every: 0, ..d }.due(0, 0, 0));
    }
}
