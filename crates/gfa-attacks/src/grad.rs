//! Input gradients without touching the model.
use gfa_core::Classifier;
use tch::Tensor;

/// Per-sample loss, its gradient with respect to `x`, and the logits, from one eval-mode forward.
///
/// `loss` maps logits `[N, C]` to per-sample losses `[N]`; the gradient of their sum is returned,
/// so each sample's gradient is its own. No parameter `.grad` is written.
pub fn input_grad(
    model: &Classifier,
    x: &Tensor,
    loss: impl Fn(&Tensor) -> Tensor,
) -> (Tensor, Tensor, Tensor) {
    input_grad_in(model, x, loss, false)
}

/// [`input_grad`] with the forward in training mode when `train` (the trainer's inner
/// maximizations; attacks never use it).
pub fn input_grad_in(
    model: &Classifier,
    x: &Tensor,
    loss: impl Fn(&Tensor) -> Tensor,
    train: bool,
) -> (Tensor, Tensor, Tensor) {
    let x = x.detach().set_requires_grad(true);
    let logits = model.logits(&x, train);
    let per_sample = loss(&logits);
    let g = Tensor::run_backward(&[per_sample.sum(per_sample.kind())], &[&x], false, false);
    (per_sample.detach(), g[0].detach(), logits.detach())
}
