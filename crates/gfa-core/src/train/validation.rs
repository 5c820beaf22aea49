//! The robust checkpoint: model selection on held-out training images, never on the test set.
//!
//! Adversarially trained models overfit: their robust test accuracy peaks and then falls while
//! training goes on (Rice, Wong & Kolter 2020, "Overfitting in adversarially robust deep
//! learning", arXiv 2002.11569), so the usual practice is to keep the epoch with the best robust
//! accuracy on a validation split. `[train] validation = { n = 1000, attack = "pgd", steps = 10,
//! every = 1 }`:
//!
//! - before the first epoch, `n` training images are drawn without replacement by the run seed
//!   (`rng_for(seed, "validation/holdout")`) and removed from the training set;
//! - every `every` epochs, and after the last one, the trainer measures clean accuracy and
//!   accuracy under the validation attack (L∞ PGD of `steps` steps of eps/4 at `eps`, random
//!   start, eval mode) on them; each measurement uses the same random starts
//!   (`rng_for(seed, "validation/attack")`), so epochs are compared on the same attack;
//! - the weights of the epoch with the highest robust validation accuracy (the earliest one on a
//!   tie) are written to `best.safetensors` beside `final.safetensors`.
//!
//! The attack is computed by gfa-attacks (`gfa_attacks::ValidationPgd`, the `pgd` attack of the
//! evaluation suite) behind [`ValidationAttack`], as the inner maximization is behind
//! [`super::TrainPerturbation`], so gfa-core does not depend on the attacks crate.
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::classifier::Classifier;
use crate::method::{eps_8, frac, ten};
use crate::seed::{SeededRng, rng_for};
use crate::{CoreError, Result};

/// The attack of the validation measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidationAttackKind {
    /// L∞ PGD, step eps/4, uniform random start.
    #[default]
    Pgd,
}

/// `[train] validation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationConfig {
    /// Training images held out.
    #[serde(default = "thousand")]
    pub n: usize,
    #[serde(default)]
    pub attack: ValidationAttackKind,
    /// Attack iterations.
    #[serde(default = "ten")]
    pub steps: usize,
    /// Measure every `every` epochs (and after the last).
    #[serde(default = "one")]
    pub every: usize,
    /// L∞ budget of the attack (`"8/255"` accepted).
    #[serde(default = "eps_8", deserialize_with = "frac")]
    pub eps: f64,
}

fn thousand() -> usize {
    1000
}

fn one() -> usize {
    1
}

impl Default for ValidationConfig {
    /// 1000 images, PGD-10 at L∞ 8/255, every epoch.
    fn default() -> Self {
        Self { n: 1000, attack: ValidationAttackKind::Pgd, steps: 10, every: 1, eps: eps_8() }
    }
}

impl ValidationConfig {
    /// Checks of the values that do not depend on the data.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(CoreError::Config(m));
        if self.n == 0 || self.steps == 0 || self.every == 0 {
            return bad(format!(
                "train.validation: n, steps and every must be at least 1, got n = {}, steps = {}, \
                 every = {}",
                self.n, self.steps, self.every
            ));
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return bad(format!(
                "train.validation.eps must be a positive number, got {}",
                self.eps
            ));
        }
        Ok(())
    }

    /// Whether the 0-based `epoch` of `epochs` is measured.
    pub fn due(&self, epoch: usize, epochs: usize) -> bool {
        (epoch + 1) % self.every.max(1) == 0 || epoch + 1 == epochs
    }

    /// Step size of the PGD iterations: eps/4, the `pgd` attack's reference preset.
    pub fn step(&self) -> f64 {
        self.eps / 4.0
    }
}

/// Split `0..len` into (held-out, training) positions: `n` drawn by the run seed, both sorted.
pub fn holdout(len: usize, n: usize, seed: u64) -> Result<(Vec<i64>, Vec<i64>)> {
    if n >= len {
        return Err(CoreError::Config(format!(
            "train.validation.n = {n} holds out every training image (the training split has \
             {len}); lower train.validation.n or train on more data (data.n_train)"
        )));
    }
    let mut order: Vec<i64> = (0..len as i64).collect();
    order.shuffle(&mut rng_for(seed, "validation/holdout"));
    let (mut held, mut kept) = (order[..n].to_vec(), order[n..].to_vec());
    held.sort_unstable();
    kept.sort_unstable();
    Ok((held, kept))
}

/// What one validation measurement found.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValidationRecord {
    pub clean_acc: f64,
    pub robust_acc: f64,
}

/// The validation attack, implemented outside gfa-core (`gfa_attacks::ValidationPgd`).
///
/// Contract: the result is detached, inside the L∞ ball of radius `cfg.eps` around `x` and
/// inside `[0, 1]`; a point counts as robust when the model classifies the returned point
/// correctly. Forwards are in eval mode; the weights and BatchNorm statistics are not changed
/// and no parameter gradient is accumulated. Randomness comes only from `rng`.
pub trait ValidationAttack: std::fmt::Debug {
    fn name(&self) -> &str;
    fn perturb(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        cfg: &ValidationConfig,
        rng: &mut SeededRng,
    ) -> Result<Tensor>;
}

/// Clean and robust accuracy of `model` on `data`, in batches of `batch`.
pub fn measure(
    model: &Classifier,
    data: &gfa_data::Dataset,
    cfg: &ValidationConfig,
    attack: &dyn ValidationAttack,
    batch: usize,
    seed: u64,
) -> Result<ValidationRecord> {
    let mut rng = rng_for(seed, "validation/attack");
    let (mut clean, mut robust) = (0.0, 0.0);
    let n = data.len();
    let correct = |x: &Tensor, y: &Tensor| {
        tch::no_grad(|| model.logits(x, false).argmax(-1, false).eq_tensor(y))
            .to_kind(Kind::Double)
            .sum(Kind::Double)
            .double_value(&[])
    };
    for start in (0..n).step_by(batch.max(1)) {
        let len = batch.max(1).min(n - start);
        let index = Tensor::arange_start(
            start as i64,
            (start + len) as i64,
            (Kind::Int64, tch::Device::Cpu),
        );
        let (x, y) = data.batch(&index, model.device());
        clean += correct(&x, &y);
        let adv = attack.perturb(model, &x, &y, cfg, &mut rng)?;
        robust += correct(&adv, &y);
    }
    let n = n.max(1) as f64;
    Ok(ValidationRecord { clean_acc: clean / n, robust_acc: robust / n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        validation: ValidationConfig,
    }

    #[test]
    fn the_table_parses_with_defaults_and_rational_eps() {
        let d: Doc = toml::from_str("validation = { n = 500, eps = \"4/255\" }").unwrap();
        assert_eq!((d.validation.n, d.validation.steps, d.validation.every), (500, 10, 1));
        assert!((d.validation.eps - 4.0 / 255.0).abs() < 1e-15);
        assert!((d.validation.step() - 1.0 / 255.0).abs() < 1e-15);
        let e = toml::from_str::<Doc>("validation = { n = 5, atack = \"pgd\" }").err().unwrap();
        assert!(e.to_string().contains("atack"), "{e}");
        let e = toml::from_str::<Doc>("validation = { attack = \"fgsm\" }").err().unwrap();
        assert!(e.to_string().contains("pgd"), "{e}");
        assert!(ValidationConfig { every: 0, ..Default::default() }.validate().is_err());
    }

    #[test]
    fn holdout_is_seeded_disjoint_and_complete() {
        let (a, b) = holdout(50, 10, 7).unwrap();
        assert_eq!((a.len(), b.len()), (10, 40));
        let mut all: Vec<i64> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..50).collect::<Vec<i64>>());
        assert_eq!(holdout(50, 10, 7).unwrap().0, a, "same seed, same images");
        assert_ne!(holdout(50, 10, 8).unwrap().0, a, "another seed, other images");
        let e = holdout(10, 10, 0).unwrap_err().to_string();
        assert!(e.contains("train.validation.n") && e.contains("10"), "{e}");
    }

    #[test]
    fn measured_every_k_epochs_and_after_the_last() {
        let v = ValidationConfig { every: 3, ..Default::default() };
        let due: Vec<usize> = (0..7).filter(|&e| v.due(e, 7)).map(|e| e + 1).collect();
        assert_eq!(due, vec![3, 6, 7]);
    }
}
