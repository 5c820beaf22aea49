//! Transfer attack: craft adversarial examples with any white-box attack on a surrogate model and
//! score them on the target (Papernot, McDaniel & Goodfellow 2016, "Transferability in Machine
//! Learning", arXiv 1605.07277; recommended as a gradient-masking check by Athalye, Carlini &
//! Wagner 2018 and ATTACKS.md §7).
//!
//! A model that resists white-box attacks but falls to examples crafted on an independently
//! trained surrogate is masking its gradients. The target model is only evaluated, never
//! differentiated: every gradient comes from the surrogate.
use std::sync::Mutex;

use gfa_core::Classifier;
use gfa_core::seed::SeededRng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::{Attack, AttackError, Family, Norm, Result};

/// What a transfer attack records about its surrogate.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransferConfig {
    /// Where the surrogate comes from (a checkpoint path or run id); gfa-exp loads it and
    /// passes the model to [`Transfer::new`]. Recorded in result rows, not read here.
    pub surrogate: String,
}

/// Craft with `inner` on `surrogate`, return the examples for scoring on the target.
///
/// The returned queries are the inner attack's (spent on the surrogate); the target is queried
/// only by the validator.
pub fn craft_on_surrogate(
    surrogate: &Classifier,
    inner: &dyn Attack,
    x: &Tensor,
    y: &Tensor,
    eps: f64,
    rng: &mut SeededRng,
) -> Result<(Tensor, Tensor)> {
    inner.perturb(surrogate, x, y, eps, rng)
}

/// A transfer attack: a surrogate model plus the white-box attack run on it.
#[derive(Debug)]
pub struct Transfer {
    pub config: TransferConfig,
    surrogate: Mutex<Classifier>,
    inner: Box<dyn Attack>,
}

impl Transfer {
    pub fn new(config: TransferConfig, surrogate: Classifier, inner: Box<dyn Attack>) -> Self {
        Self { config, surrogate: Mutex::new(surrogate), inner }
    }

    pub fn inner(&self) -> &dyn Attack {
        self.inner.as_ref()
    }
}

impl Attack for Transfer {
    fn name(&self) -> &'static str {
        "transfer"
    }
    fn family(&self) -> Family {
        self.inner.family()
    }
    fn norm(&self) -> Norm {
        self.inner.norm()
    }
    fn config_json(&self) -> String {
        serde_json::json!({
            "surrogate": self.config.surrogate,
            "inner": self.inner.name(),
            "inner_config": serde_json::from_str::<serde_json::Value>(&self.inner.config_json())
                .unwrap_or(serde_json::Value::Null),
        })
        .to_string()
    }

    fn perturb(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        eps: f64,
        rng: &mut SeededRng,
    ) -> Result<(Tensor, Tensor)> {
        let surrogate = self
            .surrogate
            .lock()
            .map_err(|_| AttackError::Config("transfer: surrogate lock poisoned".into()))?;
        if surrogate.num_classes() != model.num_classes() {
            return Err(AttackError::Config(format!(
                "transfer: surrogate '{}' has {} classes, the target has {}",
                self.config.surrogate,
                surrogate.num_classes(),
                model.num_classes()
            )));
        }
        if surrogate.device() != model.device() {
            return Err(AttackError::Config(format!(
                "transfer: surrogate '{}' is on {:?}, the target on {:?}; load both on one device",
                self.config.surrogate,
                surrogate.device(),
                model.device()
            )));
        }
        craft_on_surrogate(&surrogate, self.inner.as_ref(), x, y, eps, rng)
    }
}
