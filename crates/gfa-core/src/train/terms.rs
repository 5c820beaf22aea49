//! The loss terms TRADES and GradAlign add to the task loss, as functions of the model and
//! given inputs (the trainer draws x′ and η; the golden tests pass PyTorch's).
//!
//! - TRADES (Zhang et al., ICML 2019, arXiv 1901.08573; the authors' `trades.py`):
//!   `KL(p(x) ‖ p(x′))` summed over the batch and divided by N ("batchmean").
//! - GradAlign (Andriushchenko & Flammarion, NeurIPS 2020, arXiv 2007.02617; the authors'
//!   `train.py`): `1 − mean cos(∇ₓℓ(x), ∇ₓℓ(x + η))`, the first gradient detached, the second
//!   differentiable (double backprop), η uniform in the ε-ball and x + η not clipped, the mean
//!   taken over the points whose two gradients are non-zero.
use tch::{Kind, Reduction, Tensor};

use crate::Classifier;
use crate::losses::TaskLoss;

/// TRADES' robust term from the logits at x and at x′ (both differentiable).
///
/// # Shapes
/// `logits`, `logits_adv`: `[N, C]` → scalar.
pub fn trades_kl(logits: &Tensor, logits_adv: &Tensor) -> Tensor {
    let n = logits.size()[0] as f64;
    logits_adv.log_softmax(-1, Kind::Float).kl_div(
        &logits.softmax(-1, Kind::Float),
        Reduction::Sum,
        false,
    ) / n
}

/// GradAlign's penalty `1 − mean cos` at x and x + η (`train` selects the forward mode, as the
/// trainer's other forwards). Zero when no point has two non-zero gradients.
///
/// # Shapes
/// `x`, `eta`: `[N, 3, 32, 32]`, `y`: `[N]` → scalar.
pub fn gradalign_penalty(
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
    let cos =
        ((&g1 * &g2).sum_dim_intlist(1, false, Kind::Float) / denom).where_scalarother(&keep, 0.0);
    let kept = keep.sum(Kind::Float).clamp_min(1.0);
    let any = keep.any().to_kind(Kind::Float);
    (cos.sum(Kind::Float) / kept).neg() * &any + any
}
