//! The inner maximization of adversarial training, behind [`TrainPerturbation`]: gfa-core says
//! what to maximize ([`InnerMax`]), gfa-attacks computes it (`gfa_attacks::InnerPgd`, the same
//! PGD as the `pgd` attack), so there is one PGD loop and gfa-core does not depend on attacks.
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::Result;
use crate::classifier::Classifier;
use crate::seed::SeededRng;

/// The loss the inner maximization ascends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InnerLoss {
    /// Summed cross-entropy with the true labels (PGD-AT, fast AT, GradAlign).
    Ce,
    /// Summed KL(p(x) ‖ p(x')) to the clean prediction (TRADES).
    KlToClean,
}

/// Where the iteration starts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// At x (FGSM).
    Zero,
    /// Uniform in the ε-ball (Madry PGD, Wong et al. fast AT).
    Uniform,
    /// x + σ·N(0, 1), σ = 0.001 in TRADES.
    Normal(f64),
}

/// What one inner maximization does: L∞ ball of radius `eps` around x, intersected with
/// `[0, 1]`; `steps` signed-gradient steps of size `step`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InnerMax {
    pub eps: f64,
    pub step: f64,
    pub steps: usize,
    pub start: Start,
    pub loss: InnerLoss,
    /// Forward in training mode, as the method's reference code does: BatchNorm normalizes
    /// with the batch's statistics and updates its running statistics. `false`: eval mode.
    /// Models without BatchNorm or dropout (`mlp`, `cnn`) compute the same either way.
    pub train_mode: bool,
}

/// An inner maximization for adversarial training.
///
/// Contract: `x` is `[N, 3, 32, 32]` in `[0, 1]`; the result is detached, inside the L∞ ball of
/// radius `spec.eps` around `x` and inside `[0, 1]`. The implementation must not change the
/// weights nor accumulate parameter gradients (take input gradients with
/// `Tensor::run_backward(&[loss], &[x], false, false)`); its forwards are in training mode
/// exactly when `spec.train_mode` says so (then BatchNorm running statistics move, as in the
/// methods' reference code).
/// libtorch's generator is seeded per epoch by the trainer; `rng` is for Rust-side draws.
pub trait TrainPerturbation: std::fmt::Debug {
    fn name(&self) -> &str;
    fn perturb(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        spec: &InnerMax,
        rng: &mut SeededRng,
    ) -> Result<Tensor>;
}
