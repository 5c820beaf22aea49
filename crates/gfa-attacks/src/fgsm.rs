//! FGSM: Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples"
//! (ICLR 2015, arXiv 1412.6572). One signed-gradient step of size `eps` on the cross-entropy,
//! clipped to `[0, 1]`, Linf only. Identical in the reference and torchattacks 3.5.1 (`FGSM`).
use gfa_core::Classifier;
use gfa_core::seed::SeededRng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::attack::{Attack, describe};
use crate::preset::{Configured, Preset};
use crate::{AttackError, Norm, Result, grad, loss};

/// FGSM has no tunable parameter; both presets are the same attack.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FgsmConfig {
    pub norm: Norm,
    pub preset: Preset,
}

impl Configured for FgsmConfig {
    fn preset_for(preset: Preset, norm: Norm) -> Self {
        Self { norm, preset }
    }
    fn norms() -> &'static [Norm] {
        &[Norm::Linf]
    }
}

#[derive(Debug, Clone)]
pub struct Fgsm {
    pub config: FgsmConfig,
}

impl Fgsm {
    pub fn new(config: FgsmConfig) -> Result<Self> {
        if config.norm != Norm::Linf {
            return Err(AttackError::UnsupportedNorm {
                attack: "fgsm".into(),
                norm: config.norm.to_string(),
            });
        }
        Ok(Self { config })
    }
}

impl Attack for Fgsm {
    describe!(
        name: |_| "fgsm",
        family: FixedBudget,
        norm: |_| Norm::Linf,
    );
    fn perturb(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        eps: f64,
        _rng: &mut SeededRng,
    ) -> Result<(Tensor, Tensor)> {
        let (_, g, _) = grad::input_grad(model, x, |z| loss::ce(z, y));
        let x_adv = (x + g.sign() * eps).clamp(0.0, 1.0);
        Ok((x_adv, Tensor::ones([x.size()[0]], (Kind::Int64, x.device()))))
    }
}

impl crate::facts::Costed for FgsmConfig {
    const COST_KEY: Option<&'static str> = None;
    /// One gradient.
    fn cost_per_point(&self) -> f64 {
        1.0
    }
}
