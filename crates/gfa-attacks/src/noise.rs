//! Random noise at the budget: the baseline of gradient-masking check 7 (docs/method.md §7; Carlini et
//! al., "On Evaluating Adversarial Robustness", arXiv 1902.06705, §5). Each of `samples` draws is
//! Gaussian noise scaled to norm exactly `eps` (Linf: its largest coordinate is `eps`; L2, L1:
//! its norm is `eps`), added and clipped to `[0, 1]`; a point counts as fooled when any draw
//! fools it. If noise does better than PGD, PGD's gradients are not finding the way.
use gfa_core::Classifier;
use gfa_core::seed::SeededRng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::attack::{Attack, describe};
use crate::preset::{Configured, Preset};
use crate::repeated::predict;
use crate::threat::{normal, per_sample, per_sample_norm};
use crate::{AttackError, Norm, Result};

/// Noise settings; both presets are the same (no library defines this baseline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoiseConfig {
    pub norm: Norm,
    pub preset: Preset,
    /// Draws per point (each one model query).
    pub samples: usize,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        Self::preset_for(Preset::Reference, Norm::Linf)
    }
}

impl Configured for NoiseConfig {
    fn preset_for(preset: Preset, norm: Norm) -> Self {
        Self { norm, preset, samples: 10 }
    }
    fn norms() -> &'static [Norm] {
        &[Norm::Linf, Norm::L2, Norm::L1]
    }
}

/// `x` plus Gaussian noise of `norm` exactly `eps` per sample, clipped to `[0, 1]`.
fn draw(x: &Tensor, eps: f64, norm: Norm, rng: &mut SeededRng) -> Tensor {
    let g = normal(&x.size(), rng, x.device());
    let scale = per_sample_norm(&g, norm).clamp_min(1e-12);
    (x + &g / per_sample(&scale, &g) * eps).clamp(0.0, 1.0)
}

#[derive(Debug, Clone)]
pub struct Noise {
    pub config: NoiseConfig,
}

impl Noise {
    pub fn new(config: NoiseConfig) -> Result<Self> {
        if config.samples == 0 {
            return Err(AttackError::Config("noise: samples must be at least 1".into()));
        }
        Ok(Self { config })
    }
}

impl Attack for Noise {
    describe!(
        name: |_| "noise",
        family: FixedBudget,
        norm: |a| a.config.norm,
    );
    fn perturb(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        eps: f64,
        rng: &mut SeededRng,
    ) -> Result<(Tensor, Tensor)> {
        let n = x.size()[0];
        let mut best = x.copy();
        let mut fooled = Tensor::zeros([n], (Kind::Bool, x.device()));
        for _ in 0..self.config.samples {
            let xn = draw(x, eps, self.config.norm, rng);
            let mis = predict(model, &xn).ne_tensor(y).logical_and(&fooled.logical_not());
            best = xn.where_self(&per_sample(&mis, &xn), &best);
            fooled = fooled.logical_or(&mis);
        }
        let q = Tensor::full([n], self.config.samples as i64, (Kind::Int64, x.device()));
        Ok((best, q))
    }
}

impl crate::facts::Costed for NoiseConfig {
    const COST_KEY: Option<&'static str> = Some("samples");
    /// One forward pass per draw.
    fn cost_per_point(&self) -> f64 {
        self.samples as f64 * crate::facts::FORWARD_COST
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Away from the box edges every draw has norm exactly `eps`, up to float32 rounding: the
    /// draw's scaling and the check's norm are libtorch sums of ≤ 3072 terms, which it adds in a
    /// cascade on every CPU code path (relative error ≲ (log2 3072 + 16) · 6e-8 ≈ 2e-6), so
    /// 1e-4 of eps is far above it and far below a draw of the wrong norm.
    #[test]
    fn draws_have_the_budget_norm() {
        let x = Tensor::full([3, 3, 32, 32], 0.5, (Kind::Float, tch::Device::Cpu));
        let mut rng = SeededRng::seed_from_u64(0);
        for (norm, eps) in [(Norm::Linf, 8.0 / 255.0), (Norm::L2, 0.5), (Norm::L1, 5.0)] {
            let d = per_sample_norm(&(draw(&x, eps, norm, &mut rng) - &x), norm);
            let err = (d - eps).abs().max().double_value(&[]);
            assert!(err < 1e-4 * eps.max(1.0), "{norm:?}: {err}");
        }
    }
}
