//! Fast adversarial training (Wong, Rice, Kolter 2020, arXiv 2001.03994): ℓ on x′ = one FGSM
//! step of 10/255 from a uniform random start in the 8/255 ball. The FGSM step runs the model
//! in training mode, as the authors' code does.
use serde::{Deserialize, Serialize};

use super::{Registered, Step, StepLoss, TrainMethod, eps_8, frac};
use crate::Result;
use crate::train::perturb::{InnerLoss, InnerMax, Start};

fn step_10() -> f64 {
    10.0 / 255.0
}

/// `{ kind = "fast_at", eps = "8/255", step = "10/255" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FastAt {
    #[serde(default = "eps_8", deserialize_with = "frac")]
    pub eps: f64,
    #[serde(default = "step_10", deserialize_with = "frac")]
    pub step: f64,
}

impl TrainMethod for FastAt {
    fn inner(&self) -> Option<InnerMax> {
        Some(InnerMax {
            eps: self.eps,
            step: self.step,
            steps: 1,
            start: Start::Uniform,
            loss: InnerLoss::Ce,
            train_mode: true,
        })
    }

    /// The FGSM step and the update.
    fn grads_per_step(&self) -> f64 {
        2.0
    }

    fn loss(&self, step: &mut Step<'_>) -> Result<StepLoss> {
        let inner = self.inner().expect("fast AT has an inner maximization");
        let x_adv = step.perturb(&inner)?;
        Ok(step.task_loss_and_penalty(&x_adv))
    }
}

impl Registered for FastAt {
    const SUMMARY: &'static str = "task loss on one FGSM step from a random start (Wong et al.)";
    fn example() -> Self {
        FastAt { eps: eps_8(), step: step_10() }
    }
}
