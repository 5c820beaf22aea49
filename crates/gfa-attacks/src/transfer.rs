//! Transfer attack: craft adversarial examples with any white-box attack on a surrogate model and
//! score them on the target (Papernot, McDaniel & Goodfellow 2016, "Transferability in Machine
//! Learning", arXiv 1605.07277; recommended as a gradient-masking check by Athalye, Carlini &
//! Wagner 2018, arXiv 1802.00420).
//!
//! A model that resists white-box attacks but falls to examples crafted on an independently
//! trained surrogate is masking its gradients. The target model is only evaluated, never
//! differentiated: every gradient comes from the surrogate.
use std::sync::Mutex;

use gfa_core::Classifier;
use gfa_core::seed::SeededRng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::attack::perturb_via_run;
use crate::facts::Access;
use crate::pgd::PgdConfig;
use crate::preset::{Configured, Preset};
use crate::registry::AttackSpec;
use crate::trace::Trace;
use crate::{Attack, AttackError, Family, Norm, Result, loss};

/// A transfer attack's settings: the surrogate and the white-box attack run on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransferConfig {
    /// The preset these settings started from (recorded in result rows).
    pub preset: Preset,
    /// The threat model (the inner attack's).
    pub norm: Norm,
    /// Where the surrogate comes from. `gfa run`: `"standard"` (default) is the grid's
    /// standard-training run of the same model, data and seed; otherwise a run id (or unique
    /// prefix) of the experiment or a checkpoint folder. `gfa eval`: a checkpoint folder
    /// (`--surrogate`). The caller loads it ([`Surrogates`]).
    pub surrogate: String,
    /// The fixed-budget white-box attack crafted on the surrogate (default: the preset's PGD).
    pub attack: Box<AttackSpec>,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self::preset_for(Preset::Reference, Norm::Linf)
    }
}

impl Configured for TransferConfig {
    fn preset_for(preset: Preset, norm: Norm) -> Self {
        Self {
            preset,
            norm,
            surrogate: STANDARD_SURROGATE.into(),
            attack: Box::new(AttackSpec::Pgd(PgdConfig::preset_for(preset, norm))),
        }
    }
    fn norms() -> &'static [Norm] {
        &[Norm::Linf, Norm::L2]
    }
}

impl crate::facts::Costed for TransferConfig {
    /// The inner attack's key counts the cost.
    const COST_KEY: Option<&'static str> = None;
    /// The inner attack's cost on the surrogate, plus one forward pass on the target.
    fn cost_per_point(&self) -> f64 {
        self.attack.cost_per_point() + crate::facts::FORWARD_COST
    }
    /// The inner attack's, plus the forward pass.
    fn point_cost(&self) -> crate::facts::PointCost {
        let inner = self.attack.point_cost();
        let f = crate::facts::FORWARD_COST;
        crate::facts::PointCost { fooled: inner.fooled + f, robust: inner.robust + f }
    }
}

/// The surrogate name meaning "the grid's standard-training model".
pub const STANDARD_SURROGATE: &str = "standard";

/// Loads the surrogate models transfer attacks name.
pub trait Surrogates {
    /// The model `name` refers to, and a description of what was loaded (recorded in result
    /// rows, e.g. `standard = run 3896c68b7bac`).
    fn load(&self, name: &str) -> Result<(String, Classifier)>;
}

/// No surrogate can be loaded: building a transfer attack is an error saying how to give one.
pub struct NoSurrogates;

impl Surrogates for NoSurrogates {
    fn load(&self, name: &str) -> Result<(String, Classifier)> {
        Err(AttackError::Config(format!(
            "transfer: the surrogate model \"{name}\" must be loaded by the caller: `gfa run` \
             loads a grid's runs, `gfa eval --surrogate DIR` a checkpoint"
        )))
    }
}

/// Build a transfer attack from its settings, loading the surrogate through `surrogates`.
pub fn build(config: &TransferConfig, surrogates: &dyn Surrogates) -> Result<Transfer> {
    let inner = config.attack.build_with(surrogates)?;
    let facts = config.attack.facts();
    if facts.family != Family::FixedBudget || facts.access != Access::WhiteBox {
        return Err(AttackError::Config(format!(
            "transfer: the attack crafted on the surrogate must be a fixed-budget white-box \
             attack (fgsm, pgd, apgd-ce, …), not \"{}\"",
            config.attack.kind()
        )));
    }
    if inner.norm() != config.norm {
        return Err(AttackError::Config(format!(
            "transfer: the inner attack \"{}\" attacks {} but the transfer is {}; give the inner \
             attack norm = \"{}\"",
            config.attack.kind(),
            inner.norm(),
            config.norm,
            config.norm
        )));
    }
    let (resolved, model) = surrogates.load(&config.surrogate)?;
    Ok(Transfer::new(config.clone(), resolved, model, inner))
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
    /// What the surrogate name resolved to.
    resolved: String,
    surrogate: Mutex<Classifier>,
    inner: Box<dyn Attack>,
}

impl Transfer {
    pub fn new(
        config: TransferConfig,
        resolved: String,
        surrogate: Classifier,
        inner: Box<dyn Attack>,
    ) -> Self {
        Self { config, resolved, surrogate: Mutex::new(surrogate), inner }
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
    /// The settings, with the surrogate as resolved (`standard = run 3896c68b7bac`).
    fn config_json(&self) -> String {
        let config = TransferConfig { surrogate: self.resolved.clone(), ..self.config.clone() };
        serde_json::to_string(&config).unwrap_or_default()
    }

    // The trace is one step: the surrogate's cross-entropy at the crafted examples and whether
    // they fool the surrogate (a point fooling it but not the target is a transfer failure).
    perturb_via_run!();
}

impl Transfer {
    /// `perturb` with an optional trace.
    fn run(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        eps: f64,
        rng: &mut SeededRng,
        trace: Option<&mut Trace>,
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
        let (adv, queries) = craft_on_surrogate(&surrogate, self.inner.as_ref(), x, y, eps, rng)?;
        if let Some(t) = trace {
            let z = tch::no_grad(|| surrogate.logits(&adv, false));
            t.record(&loss::ce(&z, y), &z.argmax(1, false).ne_tensor(y));
        }
        Ok((adv, queries))
    }
}
