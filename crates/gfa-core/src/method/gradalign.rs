//! GradAlign (Andriushchenko & Flammarion, NeurIPS 2020, arXiv 2007.02617; the authors'
//! `train.py`): FGSM adversarial training (α = ε, from x) plus λ_align·(1 − cos(∇ₓℓ(x),
//! ∇ₓℓ(x + η))), η uniform in the ε-ball, λ_align = 0.2. The FGSM step and the alignment term
//! run the model in training mode, as the authors' code (built on Wong et al.'s) does.
use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{Registered, Step, StepLoss, TrainMethod, eps_8, frac};
use crate::Result;
use crate::classifier::Classifier;
use crate::losses::TaskLoss;
use crate::train::perturb::{InnerLoss, InnerMax, Start};

fn align_02() -> f64 {
    0.2
}

/// `{ kind = "gradalign", eps = "8/255", step = "8/255", align_lambda = 0.2 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradAlign {
    #[serde(default = "eps_8", deserialize_with = "frac")]
    pub eps: f64,
    #[serde(default = "eps_8", deserialize_with = "frac")]
    pub step: f64,
    #[serde(default = "align_02")]
    pub align_lambda: f64,
}

/// GradAlign's penalty `1 − mean cos` at x and x + η (`train` selects the forward mode): the
/// first gradient detached, the second differentiable (double backprop), x + η not clipped, the
/// mean taken over the points whose two gradients are non-zero; zero when there is none.
///
/// # Shapes
/// `x`, `eta`: `[N, 3, 32, 32]`, `y`: `[N]` → scalar.
pub fn penalty(
    model: &Classifier,
    x: &Tensor,
    y: &Tensor,
    eta: &Tensor,
    task: TaskLoss,
    train: bool,
) -> Tensor {
    let x1 = x.detach().set_requires_grad(true);
    let l1 = task.sum(&model.logits(&x1, train), y);
    let g1 = Tensor::run_backward(&[l1], &[&x1], false, false).remove(0).flatten(1, -1);
    let x2 = (x.detach() + eta).set_requires_grad(true);
    let l2 = task.sum(&model.logits(&x2, train), y);
    let g2 = Tensor::run_backward(&[l2], &[&x2], true, true).remove(0).flatten(1, -1);
    let n1 = g1.norm_scalaropt_dim(2, [1i64], false);
    let n2 = g2.norm_scalaropt_dim(2, [1i64], false);
    let keep = n1.gt(0.0).logical_and(&n2.gt(0.0));
    let denom = (&n1 * &n2).where_scalarother(&keep, 1.0);
    let kind = g1.kind();
    let cos = ((&g1 * &g2).sum_dim_intlist(1, false, kind) / denom).where_scalarother(&keep, 0.0);
    let kept = keep.sum(kind).clamp_min(1.0);
    let any = keep.any().to_kind(kind);
    (cos.sum(kind) / kept).neg() * &any + any
}

impl TrainMethod for GradAlign {
    fn inner(&self) -> Option<InnerMax> {
        Some(InnerMax {
            eps: self.eps,
            step: self.step,
            steps: 1,
            start: Start::Zero,
            loss: InnerLoss::Ce,
            train_mode: true,
        })
    }

    /// The FGSM step, the two input gradients of the penalty, and the update.
    fn grads_per_step(&self) -> f64 {
        4.0
    }

    fn loss(&self, step: &mut Step<'_>) -> Result<StepLoss> {
        let inner = self.inner().expect("GradAlign has an inner maximization");
        let x_adv = step.perturb(&inner)?;
        let logits_adv = step.model.logits(&x_adv, true);
        let loss = step.task.mean(&logits_adv, step.y);
        let eta = (step.x.rand_like() * 2.0 - 1.0) * self.eps;
        let align = penalty(step.model, step.x, step.y, &eta, step.task, true);
        Ok(StepLoss {
            total: &loss + &align * self.align_lambda,
            task: loss.detach(),
            logits: logits_adv.detach(),
            terms: vec![("align", align.detach())],
            taps: None,
            grads: None,
        })
    }
}

impl Registered for GradAlign {
    const SUMMARY: &'static str = "FGSM training + λ_align·(1 − cos) of the input gradients at x and x + η (Andriushchenko & Flammarion)";
    fn example() -> Self {
        GradAlign { eps: eps_8(), step: eps_8(), align_lambda: align_02() }
    }
}
