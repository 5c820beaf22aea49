//! The tap-gradient penalty methods, ℓ + λ·R on the clean batch, through one path
//! ([`crate::regularizer`]: all taps' gradients from one double-backprop call):
//!
//! - `gfa`: R_GFA, the Gradient-Feature Alignment penalty ("DeepDefense: Layer-Wise
//!   Gradient-Feature Alignment", arXiv 2511.13749), the misalignment between each tap's feature
//!   and the loss gradient there;
//! - `gnr`: R_GNR, the squared norm of the loss gradient at the taps (double backprop, Drucker &
//!   LeCun 1992; Ross & Doshi-Velez, arXiv 1711.09404).
//!
//! Both take the GFA options ([`RegularizerConfig`]); `layers` defaults to every tap for GFA and
//! to the input tap alone for GNR (the classic input-gradient-norm penalty); `penalty` is GFA's.
use serde::{Deserialize, Serialize};

use super::{Registered, Step, StepLoss, TrainMethod};
use crate::Result;
use crate::regularizer::{RegKind, RegularizerConfig};

/// `{ kind = "gfa", lambda = 0.3, layers = "deep", … }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Gfa(pub RegularizerConfig);

/// `{ kind = "gnr", lambda = 1.0, … }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Gnr(pub RegularizerConfig);

/// The one [`TrainMethod`] of both: only the penalty kind differs.
macro_rules! penalty_method {
    ($name:ident, $kind:expr, $summary:literal, $lambda:literal) => {
        impl TrainMethod for $name {
            fn regularizer(&self) -> Option<(RegKind, &RegularizerConfig)> {
                Some(($kind, &self.0))
            }

            fn check(&self) -> Result<()> {
                self.0.check()
            }

            fn grads_per_step(&self) -> f64 {
                self.0.grads_per_step()
            }

            fn loss(&self, step: &mut Step<'_>) -> Result<StepLoss> {
                Ok(step.task_loss_and_penalty(step.x))
            }
        }

        impl Registered for $name {
            const SUMMARY: &'static str = $summary;
            fn example() -> Self {
                $name(RegularizerConfig::with_lambda($lambda))
            }
            const UNWRITTEN_OPTIONS: &'static [&'static str] = &RegularizerConfig::OPTIONAL_KEYS;
        }
    };
}

penalty_method!(
    Gfa,
    RegKind::Gfa,
    "task loss + λ·R_GFA, the gradient-feature misalignment at the taps",
    0.3
);
penalty_method!(
    Gnr,
    RegKind::Gnr,
    "task loss + λ·R_GNR, the squared loss-gradient norm at the taps",
    1.0
);
