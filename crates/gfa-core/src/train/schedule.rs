//! Learning-rate schedules, evaluated once per epoch like PyTorch's `MultiStepLR` and
//! `CosineAnnealingLR` (closed form, `eta_min = 0`, `T_max = epochs`) stepped after each epoch.
use serde::{Deserialize, Serialize};

use crate::{CoreError, Result};

/// The `[train.schedule]` table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Multiply by `gamma` at each milestone epoch (0-based epoch index at which the drop
    /// takes effect), as `MultiStepLR`.
    Step { milestones: Vec<usize>, gamma: f64 },
    /// lr·(1 + cos(π·e/E))/2 for epoch e of E.
    Cosine,
}

impl Schedule {
    /// The learning rate of epoch `epoch` (0-based) of `epochs`, from base rate `lr`.
    pub fn lr_at(&self, lr: f64, epoch: usize, epochs: usize) -> f64 {
        match self {
            Schedule::Constant => lr,
            Schedule::Step { milestones, gamma } => {
                let drops = milestones.iter().filter(|m| **m <= epoch).count();
                lr * gamma.powi(drops as i32)
            }
            Schedule::Cosine => {
                let e = epoch as f64 / epochs.max(1) as f64;
                lr * 0.5 * (1.0 + (std::f64::consts::PI * e).cos())
            }
        }
    }

    pub fn validate(&self) -> Result<()> {
        if let Schedule::Step { gamma, .. } = self
            && !(*gamma > 0.0 && gamma.is_finite())
        {
            return Err(CoreError::invalid(
                "train.schedule.gamma",
                format!("must be a positive number, got {gamma}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_and_cosine_values() {
        let s = Schedule::Step { milestones: vec![2, 4], gamma: 0.1 };
        let v: Vec<f64> = (0..5).map(|e| s.lr_at(1.0, e, 5)).collect();
        let want = [1.0, 1.0, 0.1, 0.1, 0.01];
        assert!(v.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12), "{v:?}");
        let c = Schedule::Cosine;
        assert_eq!(c.lr_at(0.2, 0, 4), 0.2);
        assert!((c.lr_at(0.2, 2, 4) - 0.1).abs() < 1e-12);
        assert_eq!(Schedule::Constant.lr_at(0.3, 7, 8), 0.3);
    }
}
