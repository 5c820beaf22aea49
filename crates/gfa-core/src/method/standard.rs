//! Standard training: the task loss ℓ on the clean (augmented) batch, nothing else.
use serde::{Deserialize, Serialize};

use super::{Registered, Step, StepLoss, TrainMethod};
use crate::Result;

/// `{ kind = "standard" }`: no options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Standard {}

impl TrainMethod for Standard {
    fn grads_per_step(&self) -> f64 {
        1.0
    }

    fn loss(&self, step: &mut Step<'_>) -> Result<StepLoss> {
        Ok(step.task_loss_and_penalty(step.x))
    }
}

impl Registered for Standard {
    const SUMMARY: &'static str = "task loss only";
    fn example() -> Self {
        Standard {}
    }
}
