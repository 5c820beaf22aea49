//! gfa-attacks as the inner maximization of adversarial training, and as the attack of the
//! trainer's validation measurement (the robust checkpoint).
//!
//! [`InnerPgd`] implements gfa-core's [`TrainPerturbation`] with this crate's [`Pgd`]: the same
//! threat model, random start (drawn from the trainer's seeded generator), signed steps and
//! projection as the `pgd` attack with `keep = "last"` and one restart, so a model is trained
//! against the PGD it is evaluated with. It covers every adversarial method of the trainer:
//! PGD-AT and GFA+PGD-AT (uniform start, CE), fast AT (one step from a uniform start), GradAlign
//! (one FGSM step from x) and TRADES (start `x + 0.001·N(0, 1)`, KL to the clean prediction).
//! The model runs in training or eval mode as [`InnerMax::train_mode`] says (each method's
//! reference code; see [`gfa_core::method`]). This is the trainer's only inner maximization:
//! gfa-core says what to maximize, this crate's PGD loop computes it.
use gfa_core::Classifier;
use gfa_core::seed::SeededRng;
use gfa_core::train::{
    InnerLoss, InnerMax, Start, TrainPerturbation, ValidationAttack, ValidationConfig,
};
use tch::{Kind, Tensor};

use crate::pgd::{Ascent, Keep, Pgd, PgdConfig};
use crate::threat::{Norm, ThreatModel, normal};
use crate::{Attack, Preset, loss};

/// The trainer's inner maximization, computed by [`Pgd`].
#[derive(Debug, Clone, Copy, Default)]
pub struct InnerPgd;

impl InnerPgd {
    /// The `pgd` attack configuration that `spec` runs (L∞, absolute step, last iterate).
    pub fn config(spec: &InnerMax) -> PgdConfig {
        PgdConfig {
            norm: Norm::Linf,
            preset: Preset::Reference,
            steps: spec.steps,
            step_size: Some(spec.step),
            rel_step: 0.25,
            random_start: spec.start == Start::Uniform,
            restarts: 1,
            keep: Keep::Last,
        }
    }
}

impl TrainPerturbation for InnerPgd {
    fn name(&self) -> &str {
        "gfa-attacks/pgd"
    }

    fn perturb(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        spec: &InnerMax,
        rng: &mut SeededRng,
    ) -> gfa_core::Result<Tensor> {
        let x = x.detach();
        let pgd = Pgd { config: Self::config(spec) };
        let tm = ThreatModel::new(Norm::Linf, spec.eps);
        let start = match spec.start {
            Start::Zero => x.copy(),
            Start::Uniform => tm.random_init(&x, rng),
            Start::Normal(sigma) => {
                tm.project(&(&x + normal(&x.size(), rng, x.device()) * sigma), &x)
            }
        };
        if spec.steps == 0 {
            return Ok(start);
        }
        let train = spec.train_mode;
        let run = match spec.loss {
            InnerLoss::Ce => {
                let ascent = Ascent { loss: &|z| loss::ce(z, y), train };
                pgd.iterate(model, &x, y, spec.eps, start, &ascent)
            }
            InnerLoss::KlToClean => {
                let p = tch::no_grad(|| model.logits(&x, train).softmax(-1, Kind::Float));
                let ascent = Ascent { loss: &|z| loss::kl_from(z, &p), train };
                pgd.iterate(model, &x, y, spec.eps, start, &ascent)
            }
        };
        let (x_adv, _queries) =
            run.map_err(|e| gfa_core::CoreError::Config(format!("inner maximization: {e}")))?;
        Ok(x_adv.detach())
    }
}

/// The attack of `[train] validation`: this crate's `pgd` attack as the evaluation suite runs
/// it (reference preset: L∞, step eps/4, uniform random start, one restart, a point counts as
/// fooled at any misclassified iterate), with the validation's steps and eps, in eval mode.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidationPgd;

impl ValidationPgd {
    /// The `pgd` attack configuration that `cfg` runs.
    pub fn config(cfg: &ValidationConfig) -> PgdConfig {
        PgdConfig { steps: cfg.steps, step_size: Some(cfg.step()), ..PgdConfig::default() }
    }
}

impl ValidationAttack for ValidationPgd {
    fn name(&self) -> &str {
        "gfa-attacks/pgd"
    }

    fn perturb(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        cfg: &ValidationConfig,
        rng: &mut SeededRng,
    ) -> gfa_core::Result<Tensor> {
        let config_error =
            |e: crate::AttackError| gfa_core::CoreError::Config(format!("validation attack: {e}"));
        let pgd = Pgd::new(Self::config(cfg)).map_err(config_error)?;
        let (x_adv, _queries) = pgd.perturb(model, x, y, cfg.eps, rng).map_err(config_error)?;
        Ok(x_adv.detach())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gfa_core::models::{Arch, ModelSpec};
    use gfa_core::seed::rng_for;
    use gfa_core::{Method, TrainMethod};

    fn setup() -> (Classifier, Tensor, Tensor) {
        gfa_core::seed::seed_all(3);
        let spec = ModelSpec { width: 0.0625, ..ModelSpec::of(Arch::Cnn) };
        let model = Classifier::new(&spec, tch::Device::Cpu).unwrap();
        let x = Tensor::rand([6, 3, 32, 32], (Kind::Float, tch::Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 5]);
        (model, x, y)
    }

    /// An eval-mode L∞ 8/255 inner maximization of `steps` steps of 2/255.
    fn spec(steps: usize, start: Start, loss: InnerLoss) -> InnerMax {
        InnerMax { eps: 8.0 / 255.0, step: 2.0 / 255.0, steps, start, loss, train_mode: false }
    }

    /// The inner PGD of `pgd_at` (Madry defaults) is gfa-attacks' `pgd` for the same seed.
    /// (`cnn` has no BatchNorm, so the inner loop's training mode computes what eval mode does.)
    #[test]
    fn pgd_at_inner_equals_the_pgd_attack() {
        let (model, x, y) = setup();
        let method: Method = serde_json::from_str(r#"{"kind": "pgd_at"}"#).unwrap();
        let inner = method.inner().unwrap();
        assert_eq!((inner.steps, inner.start), (10, Start::Uniform));
        let mut rng = rng_for(7, "perturb/0");
        let trained_on = InnerPgd.perturb(&model, &x, &y, &inner, &mut rng).unwrap();

        let attack = Pgd::new(PgdConfig {
            steps: 10,
            step_size: Some(2.0 / 255.0),
            keep: Keep::Last,
            ..PgdConfig::default()
        })
        .unwrap();
        let mut rng = rng_for(7, "perturb/0");
        let (evaluated, _) = attack.perturb(&model, &x, &y, 8.0 / 255.0, &mut rng).unwrap();
        assert_eq!(trained_on, evaluated);
        assert!((&trained_on - &x).abs().max().double_value(&[]) > 7.0 / 255.0);
    }

    /// The validation attack is the evaluation's `pgd` with the validation's steps and budget.
    #[test]
    fn validation_attack_is_the_pgd_attack() {
        let (model, x, y) = setup();
        let cfg = ValidationConfig { steps: 5, eps: 4.0 / 255.0, ..Default::default() };
        let mut rng = rng_for(1, "validation/attack");
        let validated = ValidationPgd.perturb(&model, &x, &y, &cfg, &mut rng).unwrap();
        let attack = Pgd::new(PgdConfig { steps: 5, ..PgdConfig::default() }).unwrap();
        let mut rng = rng_for(1, "validation/attack");
        let (evaluated, _) = attack.perturb(&model, &x, &y, 4.0 / 255.0, &mut rng).unwrap();
        assert_eq!(validated, evaluated);
        assert!((&validated - &x).abs().max().double_value(&[]) <= 4.0 / 255.0 + 1e-6);
    }

    /// TRADES' inner maximization stays in the ball and box and raises the KL to the clean
    /// prediction; no parameter gradient is written.
    #[test]
    fn trades_inner_raises_the_kl() {
        let (model, x, y) = setup();
        let inner = spec(5, Start::Normal(0.001), InnerLoss::KlToClean);
        let mut rng = rng_for(0, "t");
        let xa = InnerPgd.perturb(&model, &x, &y, &inner, &mut rng).unwrap();
        assert!((&xa - &x).abs().max().double_value(&[]) <= 8.0 / 255.0 + 1e-6);
        assert!(xa.min().double_value(&[]) >= 0.0 && xa.max().double_value(&[]) <= 1.0);
        let p = model.logits(&x, false).softmax(-1, Kind::Float);
        let kl = loss::kl_from(&model.logits(&xa, false), &p).sum(Kind::Float);
        assert!(kl.double_value(&[]) > 1e-6, "KL {}", kl.double_value(&[]));
        for v in model.vs.trainable_variables() {
            assert!(!v.grad().defined());
        }
    }

    /// Each method's inner maximization runs in the mode of its reference code; on a model with
    /// BatchNorm, training mode moves the running statistics and changes x', eval mode does not.
    #[test]
    fn train_mode_follows_the_method_and_reaches_batchnorm() {
        let mode = |json: &str| {
            let m: Method = serde_json::from_str(json).unwrap();
            m.inner().unwrap().train_mode
        };
        for kind in ["pgd_at", "fast_at", "gradalign"] {
            assert!(mode(&format!(r#"{{"kind": "{kind}"}}"#)), "{kind}");
        }
        assert!(mode(r#"{"kind": "gfa_pgd_at", "lambda": 0.1}"#));
        assert!(!mode(r#"{"kind": "trades"}"#));

        gfa_core::seed::seed_all(5);
        let arch = ModelSpec { width: 0.0625, ..ModelSpec::of(Arch::PreActResNet18) };
        let model = Classifier::new(&arch, tch::Device::Cpu).unwrap();
        let x = Tensor::rand([6, 3, 32, 32], (Kind::Float, tch::Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 5]);
        let stats = || -> Vec<Tensor> {
            let vars = model.vs.variables();
            let mut names: Vec<&String> =
                vars.keys().filter(|n| n.ends_with("running_mean")).collect();
            names.sort();
            names.iter().map(|n| vars[*n].copy()).collect()
        };
        let before = stats();
        assert!(!before.is_empty());
        let mut inner = spec(2, Start::Zero, InnerLoss::Ce);
        let mut rng = rng_for(0, "t");
        let eval = InnerPgd.perturb(&model, &x, &y, &inner, &mut rng).unwrap();
        assert!(before.iter().zip(stats()).all(|(a, b)| a.equal(&b)), "eval mode moved BN");
        inner.train_mode = true;
        let train = InnerPgd.perturb(&model, &x, &y, &inner, &mut rng).unwrap();
        assert!(before.iter().zip(stats()).any(|(a, b)| !a.equal(&b)), "training mode kept BN");
        assert!(!eval.equal(&train));
        for v in model.vs.trainable_variables() {
            assert!(!v.grad().defined());
        }
    }
}
