//! GFA + PGD adversarial training: PGD-AT whose loss on x′ also carries λ·R_GFA(x′); the inner
//! PGD in training mode, as for `pgd_at`.
use serde::{Deserialize, Serialize};

use super::pgd_at::PgdAt;
use super::{Registered, Step, StepLoss, TrainMethod};
use crate::Result;
use crate::regularizer::{RegKind, RegularizerConfig};
use crate::train::perturb::InnerMax;

/// `{ kind = "gfa_pgd_at", lambda = 0.1, steps = 10, … }`: the PGD options of `pgd_at` and the
/// GFA options of `gfa`, side by side in one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GfaPgdAt {
    #[serde(flatten)]
    pub pgd: PgdAt,
    #[serde(flatten)]
    pub gfa: RegularizerConfig,
}

impl TrainMethod for GfaPgdAt {
    fn regularizer(&self) -> Option<(RegKind, &RegularizerConfig)> {
        Some((RegKind::Gfa, &self.gfa))
    }

    fn inner(&self) -> Option<InnerMax> {
        Some(self.pgd.inner_max())
    }

    fn check(&self) -> Result<()> {
        self.gfa.check()
    }

    /// PGD's steps, then GFA's step on x′.
    fn grads_per_step(&self) -> f64 {
        self.pgd.steps as f64 + self.gfa.grads_per_step()
    }

    fn loss(&self, step: &mut Step<'_>) -> Result<StepLoss> {
        let x_adv = step.perturb(&self.pgd.inner_max())?;
        Ok(step.task_loss_and_penalty(&x_adv))
    }
}

impl Registered for GfaPgdAt {
    const SUMMARY: &'static str =
        "PGD adversarial training with λ·R_GFA on the adversarial example";
    fn example() -> Self {
        GfaPgdAt { pgd: PgdAt::default(), gfa: RegularizerConfig::with_lambda(0.1) }
    }
    const UNWRITTEN_OPTIONS: &'static [&'static str] = &RegularizerConfig::OPTIONAL_KEYS;
}
