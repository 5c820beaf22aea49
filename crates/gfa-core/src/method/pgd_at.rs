//! PGD adversarial training (Madry et al. 2018, arXiv 1706.06083): ℓ on x′, the L∞ PGD
//! maximizer of the cross-entropy around x. The inner PGD runs the model in training mode
//! (BatchNorm on batch statistics), as Madry et al.'s code (one train-mode graph) and Rice et
//! al.'s PyTorch code do.
use serde::{Deserialize, Serialize};

use super::{Registered, Step, StepLoss, TrainMethod, eps_8, frac, step_2, ten, yes};
use crate::Result;
use crate::train::perturb::{InnerLoss, InnerMax, Start};

/// `{ kind = "pgd_at", eps = "8/255", step = "2/255", steps = 10, random_start = true }`
/// (Madry's CIFAR-10 settings); budgets in `[0, 1]` pixel units, `"a/b"` accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgdAt {
    #[serde(default = "eps_8", deserialize_with = "frac")]
    pub eps: f64,
    #[serde(default = "step_2", deserialize_with = "frac")]
    pub step: f64,
    #[serde(default = "ten")]
    pub steps: usize,
    #[serde(default = "yes")]
    pub random_start: bool,
}

impl Default for PgdAt {
    fn default() -> Self {
        PgdAt { eps: eps_8(), step: step_2(), steps: ten(), random_start: yes() }
    }
}

impl PgdAt {
    /// The inner maximization: `steps` signed steps on the summed CE, training mode.
    pub fn inner_max(&self) -> InnerMax {
        InnerMax {
            eps: self.eps,
            step: self.step,
            steps: self.steps,
            start: if self.random_start { Start::Uniform } else { Start::Zero },
            loss: InnerLoss::Ce,
            train_mode: true,
        }
    }
}

impl TrainMethod for PgdAt {
    fn inner(&self) -> Option<InnerMax> {
        Some(self.inner_max())
    }

    /// One gradient per PGD step, one for the update.
    fn grads_per_step(&self) -> f64 {
        self.steps as f64 + 1.0
    }

    fn loss(&self, step: &mut Step<'_>) -> Result<StepLoss> {
        let x_adv = step.perturb(&self.inner_max())?;
        Ok(step.task_loss_and_penalty(&x_adv))
    }
}

impl Registered for PgdAt {
    const SUMMARY: &'static str = "task loss on the L∞ PGD adversarial example (Madry et al.)";
    fn example() -> Self {
        Self::default()
    }
}
