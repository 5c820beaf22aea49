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
        if self.n == 0 {
            return bad("train.validation.n = 0 holds out no image: give the number of training                         images to hold out (1000 is usual), or remove train.validation"
                .into());
        }
        if self.every == 0 {
            return bad("train.validation.every = 0: measure every k >= 1 epochs (1: after                         every epoch)"
                .into());
        }
        if self.steps == 0 {
            return bad("train.validation.steps = 0: the PGD attack needs at least 1 step                         (10 is usual)"
                .into());
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return bad(format!(
                "train.validation.eps must be a positive number (\"8/255\"), got {}",
                self.eps
            ));
        }
        Ok(())
    }

    /// Whether the 0-based `epoch` of `epochs` is measured.
    pub fn due(&self, epoch: usize, epochs: usize) -> bool {
        (epoch + 1).is_multiple_of(self.every.max(1)) || epoch + 1 == epochs
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

/// The epoch whose weights are the robust checkpoint after the 1-based `epoch`, which measured
/// `v` (or nothing), given the records of the epochs before it: the highest robust validation
/// accuracy so far, the earliest epoch on a tie. Only validation numbers are compared.
pub fn best_epoch(
    before: &[super::EpochRecord],
    epoch: usize,
    v: Option<&ValidationRecord>,
) -> Option<usize> {
    let previous = before.iter().rev().find_map(|r| r.best_epoch);
    let best = previous.and_then(|e| before.get(e - 1)?.validation);
    match (v, best) {
        (Some(v), Some(b)) if v.robust_acc > b.robust_acc => Some(epoch),
        (Some(_), None) => Some(epoch),
        _ => previous,
    }
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
        for (bad, key) in [
            (ValidationConfig { n: 0, ..Default::default() }, "train.validation.n"),
            (ValidationConfig { every: 0, ..Default::default() }, "train.validation.every"),
            (ValidationConfig { steps: 0, ..Default::default() }, "train.validation.steps"),
            (ValidationConfig { eps: -0.1, ..Default::default() }, "train.validation.eps"),
        ] {
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
        assert!(ValidationConfig::default().validate().is_ok());
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

    /// The highest robust validation accuracy so far wins, the earliest epoch on a tie; epochs
    /// without a measurement keep the choice; clean accuracy does not enter it.
    #[test]
    fn best_epoch_follows_robust_validation_accuracy() {
        let measured =
            [None, Some((0.9, 0.5)), None, Some((0.95, 0.3)), Some((0.2, 0.5)), Some((0.1, 0.7))];
        let mut records: Vec<super::super::EpochRecord> = Vec::new();
        let mut chosen = Vec::new();
        for (i, m) in measured.iter().enumerate() {
            let v = m.map(|(clean_acc, robust_acc)| ValidationRecord { clean_acc, robust_acc });
            let best = best_epoch(&records, i + 1, v.as_ref());
            chosen.push(best);
            records.push(super::super::EpochRecord {
                epoch: i + 1,
                validation: v,
                best_epoch: best,
                ..Default::default()
            });
        }
        assert_eq!(chosen, vec![None, Some(2), Some(2), Some(2), Some(2), Some(6)]);
    }

    #[test]
    fn measured_every_k_epochs_and_after_the_last() {
        let v = ValidationConfig { every: 3, ..Default::default() };
        let due: Vec<usize> = (0..7).filter(|&e| v.due(e, 7)).map(|e| e + 1).collect();
        assert_eq!(due, vec![3, 6, 7]);
    }
}
