//! Adding a training method, done once here exactly as CONTRIBUTING.md says: one type with its
//! options and its [`TrainMethod`] implementation (what `crates/gfa-core/src/method/<name>.rs`
//! would hold), one registration line. The registry here is a test-only copy of gfa's
//! ([`gfa_core::Method`]) with the new method added, built by the same macro.
//!
//! The method: Gaussian data augmentation (train on x + σ·N(0, 1), clipped to [0, 1]), logging
//! the task loss on the clean batch as a named term.
use gfa_core::method::{Registered, Step, StepLoss, TrainMethod, standard};
use gfa_core::train::TrainOptions;
use gfa_core::{Result, train};
use serde::{Deserialize, Serialize};

use super::train::{quick, splits, tiny_cnn, weights};

// --- the method's file -----------------------------------------------------------------------

/// `{ kind = "noise", sigma = 0.1 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Noise {
    #[serde(default = "sigma")]
    pub sigma: f64,
}

fn sigma() -> f64 {
    0.1
}

impl TrainMethod for Noise {
    fn check(&self) -> Result<()> {
        if self.sigma.is_nan() || self.sigma < 0.0 {
            return Err(gfa_core::CoreError::Config(format!(
                "sigma must be ≥ 0, got {}",
                self.sigma
            )));
        }
        Ok(())
    }

    fn grads_per_step(&self) -> f64 {
        1.0
    }

    fn loss(&self, step: &mut Step<'_>) -> Result<StepLoss> {
        let noisy = (step.x + step.x.randn_like() * self.sigma).clamp(0.0, 1.0);
        let mut out = step.task_loss_and_penalty(&noisy);
        let clean = tch::no_grad(|| step.task.mean(&step.model.logits(step.x, false), step.y));
        out.terms.push(("clean", clean));
        Ok(out)
    }
}

impl Registered for Noise {
    const SUMMARY: &'static str = "task loss on x + σ·N(0, 1)";
    fn example() -> Self {
        Noise { sigma: sigma() }
    }
}

// --- the registration (in gfa: one line in the registry of `method/mod.rs`) ------------------

gfa_core::method_registry! {
    /// gfa's first method and the new one.
    pub enum TestMethod {
        "standard" => Standard(standard::Standard),
        "noise" => Noise(Noise),
    }
}

// --- what the registration gives -------------------------------------------------------------

#[derive(Deserialize)]
struct Run {
    method: TestMethod,
}

#[test]
fn a_registered_method_parses_lists_and_trains() {
    // The TOML kind, with its options checked.
    let run: Run = toml::from_str("[method]\nkind = \"noise\"\nsigma = 0.05\n").unwrap();
    assert_eq!(run.method, TestMethod::Noise(Noise { sigma: 0.05 }));
    let e = toml::from_str::<Run>("[method]\nkind = \"noise\"\nsgima = 0.05\n").err().unwrap();
    assert!(e.to_string().contains("sgima") && e.to_string().contains("sigma"), "{e}");
    // The listing (`gfa list methods`) and the cost model.
    assert_eq!(TestMethod::KINDS, ["standard", "noise"]);
    let info = TestMethod::info("noise").unwrap();
    assert_eq!((info.summary, info.grads_per_step), (Noise::SUMMARY, 1.0));
    assert_eq!(info.options(), ["sigma"]);
    // The trainer runs it and logs its term by name.
    let data = splits(32, 8);
    let mut model = tiny_cnn(3);
    let before: Vec<tch::Tensor> = weights(&model).iter().map(|(_, t)| t.copy()).collect();
    let opts = TrainOptions { seed: 1, ..Default::default() };
    let out = train(&mut model, &data, &quick(2), &run.method, &opts, &mut |_| Ok(())).unwrap();
    let clean: Vec<f64> = out.records.iter().map(|r| r.terms["clean"]).collect();
    assert!(clean.iter().all(|c| c.is_finite() && *c > 0.0), "{clean:?}");
    assert!(before.iter().zip(weights(&model)).any(|(a, (_, b))| !a.equal(&b)));
    // A bad option is refused before any step.
    let bad = TestMethod::Noise(Noise { sigma: -1.0 });
    let e = train(&mut model, &data, &quick(1), &bad, &opts, &mut |_| Ok(())).unwrap_err();
    assert!(e.to_string().contains("sigma"), "{e}");
}
