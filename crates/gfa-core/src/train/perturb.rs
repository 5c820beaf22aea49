//! The inner maximization of adversarial training, behind [`TrainPerturbation`] so that
//! gfa-exp can plug in gfa-attacks' implementations while gfa-core stays independent of them
//! (STYLE §1.1). [`LinfPgd`] is the built-in L∞ PGD (Madry et al. 2018, arXiv 1706.06083), used
//! when none is given.
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

use crate::Result;
use crate::classifier::Classifier;

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
        rng: &mut StdRng,
    ) -> Result<Tensor>;
}

/// The built-in L∞ PGD.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinfPgd;

impl TrainPerturbation for LinfPgd {
    fn name(&self) -> &str {
        "linf_pgd"
    }

    fn perturb(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        spec: &InnerMax,
        _rng: &mut StdRng,
    ) -> Result<Tensor> {
        let x = x.detach();
        let clean_logp = match spec.loss {
            InnerLoss::KlToClean => Some(tch::no_grad(|| {
                model.logits(&x, spec.train_mode).log_softmax(-1, Kind::Float)
            })),
            InnerLoss::Ce => None,
        };
        let mut x_adv = match spec.start {
            Start::Zero => x.shallow_clone(),
            Start::Uniform => &x + (x.rand_like() * 2.0 - 1.0) * spec.eps,
            Start::Normal(sigma) => &x + x.randn_like() * sigma,
        };
        x_adv = project(&x_adv, &x, spec.eps);
        for _ in 0..spec.steps {
            let xa = x_adv.detach().set_requires_grad(true);
            let logits = model.logits(&xa, spec.train_mode);
            let loss = match &clean_logp {
                None => logits.cross_entropy_loss::<Tensor>(y, None, Reduction::Sum, -100, 0.0),
                Some(p) => logits.log_softmax(-1, Kind::Float).kl_div(p, Reduction::Sum, true),
            };
            let g = Tensor::run_backward(&[loss], &[&xa], false, false).remove(0);
            x_adv = project(&(xa.detach() + g.sign() * spec.step), &x, spec.eps);
        }
        Ok(x_adv.detach())
    }
}

/// Clip into the L∞ ball around `x0` and into `[0, 1]`.
fn project(x: &Tensor, x0: &Tensor, eps: f64) -> Tensor {
    let lo = (x0 - eps).clamp_min(0.0);
    let hi = (x0 + eps).clamp_max(1.0);
    x.maximum(&lo).minimum(&hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Arch, ModelSpec};

    #[test]
    fn stays_in_ball_and_box_and_raises_the_loss() {
        crate::seed::seed_all(0);
        let spec = ModelSpec { width: 0.0625, ..ModelSpec::of(Arch::Cnn) };
        let model = Classifier::new(&spec, tch::Device::Cpu).unwrap();
        let x = Tensor::rand([4, 3, 32, 32], (Kind::Float, tch::Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2, 3]);
        let eps = 8.0 / 255.0;
        let inner = InnerMax {
            eps,
            step: 2.0 / 255.0,
            steps: 5,
            start: Start::Uniform,
            loss: InnerLoss::Ce,
            train_mode: false,
        };
        let mut rng = crate::seed::rng_for(0, "test");
        let xa = LinfPgd.perturb(&model, &x, &y, &inner, &mut rng).unwrap();
        let linf = (&xa - &x).abs().max().double_value(&[]);
        assert!(linf <= eps + 1e-6, "{linf}");
        assert!(xa.min().double_value(&[]) >= 0.0 && xa.max().double_value(&[]) <= 1.0);
        let ce = |z: &Tensor| crate::losses::TaskLoss::Ce.mean(&model.logits(z, false), &y);
        assert!(ce(&xa).double_value(&[]) > ce(&x).double_value(&[]));
        for v in model.vs.trainable_variables() {
            assert!(!v.grad().defined(), "no parameter gradient may be accumulated");
        }
    }
}
