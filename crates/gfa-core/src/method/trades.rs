//! TRADES (Zhang et al., ICML 2019, arXiv 1901.08573; the authors' `trades.py`):
//! ℓ(x) + β·KL(p(x) ‖ p(x′)), x′ the maximizer of that KL by 10 signed steps of 2/255 from
//! x + 0.001·N(0, 1) in the 8/255 L∞ ball, β = 6. The inner maximization runs the model in eval
//! mode (`model.eval()` in the authors' `trades_loss`); the loss itself in training mode.
use serde::{Deserialize, Serialize};
use tch::{Reduction, Tensor};

use super::{Registered, Step, StepLoss, TrainMethod, eps_8, frac, step_2, ten};
use crate::Result;
use crate::train::perturb::{InnerLoss, InnerMax, Start};

fn beta_6() -> f64 {
    6.0
}

/// `{ kind = "trades", eps = "8/255", step = "2/255", steps = 10, beta = 6.0 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trades {
    #[serde(default = "eps_8", deserialize_with = "frac")]
    pub eps: f64,
    #[serde(default = "step_2", deserialize_with = "frac")]
    pub step: f64,
    #[serde(default = "ten")]
    pub steps: usize,
    #[serde(default = "beta_6")]
    pub beta: f64,
}

/// TRADES' robust term from the logits at x and at x′ (both differentiable): `KL(p(x) ‖ p(x′))`
/// summed over the batch and divided by N ("batchmean").
///
/// # Shapes
/// `logits`, `logits_adv`: `[N, C]` → scalar.
pub fn kl(logits: &Tensor, logits_adv: &Tensor) -> Tensor {
    let n = logits.size()[0] as f64;
    logits_adv.log_softmax(-1, logits_adv.kind()).kl_div(
        &logits.softmax(-1, logits.kind()),
        Reduction::Sum,
        false,
    ) / n
}

impl TrainMethod for Trades {
    fn inner(&self) -> Option<InnerMax> {
        Some(InnerMax {
            eps: self.eps,
            step: self.step,
            steps: self.steps,
            start: Start::Normal(0.001),
            loss: InnerLoss::KlToClean,
            train_mode: false,
        })
    }

    /// One gradient per inner step, one for the update through both forwards.
    fn grads_per_step(&self) -> f64 {
        self.steps as f64 + 1.0
    }

    fn loss(&self, step: &mut Step<'_>) -> Result<StepLoss> {
        let inner = self.inner().expect("TRADES has an inner maximization");
        let x_adv = step.perturb(&inner)?;
        let logits = step.model.logits(step.x, true);
        let logits_adv = step.model.logits(&x_adv, true);
        let natural = step.task.mean(&logits, step.y);
        let kl = kl(&logits, &logits_adv);
        Ok(StepLoss {
            total: &natural + &kl * self.beta,
            task: natural.detach(),
            logits: logits.detach(),
            terms: vec![("kl", kl.detach())],
            taps: None,
            grads: None,
        })
    }
}

impl Registered for Trades {
    const SUMMARY: &'static str =
        "task loss + β·KL(p(x) ‖ p(x′)), x′ maximizing the KL (Zhang et al.)";
    fn example() -> Self {
        Trades { eps: eps_8(), step: step_2(), steps: ten(), beta: beta_6() }
    }
}
