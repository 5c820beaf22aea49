//! Training methods (docs/method.md §3): how one step's loss is built.
//!
//! A method is one value, written in a run's `[method]` section as its `kind` plus its options:
//! `{ kind = "gfa", lambda = 0.3, layers = "first" }`, `{ kind = "pgd_at", steps = 3 }`. Each
//! method is one file of this module: its options (a serde struct: an unknown key is an error,
//! a missing one its default) and its [`TrainMethod`] implementation (GFA and GNR share
//! `gfa.rs`: one penalty path, two kinds). One line of the
//! registry ([`Method`], built by [`method_registry!`]) registers it; the TOML `kind`,
//! `gfa list methods`, the CLI's `--method`, the cost model and the CSV's `method`, `lambda`
//! and `method_params` columns all come from there.
//!
//! Adding a method `foo` (CONTRIBUTING.md has the full steps; gfa-core's
//! `tests/it/custom_method.rs` does them with a test-only method and registry):
//! 1. `foo.rs`: `pub struct Foo { … }` deriving `Serialize`, `Deserialize` with
//!    `#[serde(deny_unknown_fields)]`, `impl TrainMethod for Foo` (its [`TrainMethod::loss`]
//!    builds the step's loss from a [`Step`]) and `impl Registered for Foo`;
//! 2. `pub mod foo;` and one line `"foo" => Foo(foo::Foo),` in the registry at [`Method`].
//!
//! The task loss ℓ (`train.task_loss`) is not a method option: every method trains on it, and
//! the GFA/GNR penalties differentiate that same loss.
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use tch::Tensor;

use crate::classifier::Classifier;
use crate::losses::TaskLoss;
use crate::regularizer::{ParamGrads, RegKind, Regularizer, RegularizerConfig};
use crate::seed::SeededRng;
use crate::train::perturb::{InnerMax, TrainPerturbation};
use crate::{CoreError, Result};

pub mod fast_at;
pub mod gfa;
pub mod gfa_pgd_at;
pub mod gradalign;
pub mod pgd_at;
pub mod standard;
pub mod trades;

/// What a training method does in one step.
///
/// The trainer draws and augments the batch, calls [`loss`](Self::loss), then
/// [`backward`](Self::backward) and one optimizer update; it logs the returned
/// [`StepLoss`]'s named terms and per-tap values.
pub trait TrainMethod: fmt::Debug {
    /// The GFA/GNR penalty the method adds, with its options; the trainer binds it to the
    /// model's taps (checking the tap names before any step) and hands it over in
    /// [`Step::reg`], with λ for the epoch after warm-up.
    fn regularizer(&self) -> Option<(RegKind, &RegularizerConfig)> {
        None
    }

    /// The inner maximization, for adversarial methods; the trainer refuses to start without a
    /// [`TrainPerturbation`] to compute it.
    fn inner(&self) -> Option<InnerMax> {
        None
    }

    /// Checks of the options that do not depend on the model.
    fn check(&self) -> Result<()> {
        Ok(())
    }

    /// λ, the weight of the method's penalty, for the CSV's `lambda` column.
    fn lambda(&self) -> Option<f64> {
        self.regularizer().map(|(_, c)| c.lambda)
    }

    /// Image-gradient evaluations per training image and step (forward + backward of one
    /// image = 1), for `gfa plan`'s cost estimate.
    fn grads_per_step(&self) -> f64;

    /// The step's loss on the batch of `step`.
    fn loss(&self, step: &mut Step<'_>) -> Result<StepLoss>;

    /// Backpropagate the step's loss into the parameters' `.grad` (the trainer has zeroed
    /// them). The default is [`StepLoss::backward`]: one `backward()` of [`StepLoss::total`],
    /// or, for a loss that carries its parameter gradients (the finite-difference GFA
    /// gradient, [`StepLoss::grads`]), their addition to `.grad`; a method whose gradient is
    /// not (only) the autograd gradient of that scalar overrides this.
    fn backward(&self, loss: &StepLoss) -> Result<()> {
        loss.backward();
        Ok(())
    }
}

/// What a registered method shows in `gfa list methods`.
pub trait Registered: TrainMethod + Sized {
    /// One line: what the method trains on.
    const SUMMARY: &'static str;
    /// A complete value: the defaults, and a usual value for each option without a default.
    fn example() -> Self;
    /// Options that the example leaves out because they are not written at their defaults.
    const UNWRITTEN_OPTIONS: &'static [&'static str] = &[];
}

/// One training step's inputs, as the trainer hands them to [`TrainMethod::loss`].
pub struct Step<'a> {
    pub model: &'a Classifier,
    /// The (augmented) batch, `[N, 3, 32, 32]` in `[0, 1]`.
    pub x: &'a Tensor,
    /// Labels `[N]`.
    pub y: &'a Tensor,
    /// The task loss ℓ (`train.task_loss`).
    pub task: TaskLoss,
    /// The method's regularizer bound to the model, when [`TrainMethod::regularizer`] gives one.
    pub reg: Option<&'a Regularizer>,
    /// λ in force this epoch (after warm-up); 0 without a regularizer.
    pub lambda: f64,
    /// The inner maximization's implementation (adversarial methods).
    pub perturbation: Option<&'a dyn TrainPerturbation>,
    /// This epoch's perturbation generator (`rng_for(seed, "perturb/<epoch>")`).
    pub rng: &'a mut SeededRng,
}

/// One step's loss and what it logs.
#[derive(Debug)]
pub struct StepLoss {
    /// The loss that is backpropagated.
    pub total: Tensor,
    /// mean ℓ on the inputs trained on (detached); `train_loss` in `train.csv`.
    pub task: Tensor,
    /// Logits of the inputs trained on (detached); `train_acc`.
    pub logits: Tensor,
    /// Named scalar terms (detached), logged by name in `train.csv`'s `terms` column.
    pub terms: Vec<(&'static str, Tensor)>,
    /// Mean cosine and mean penalty term per tap of the regularizer's tap set, `[|S|]` each.
    pub taps: Option<(Tensor, Tensor)>,
    /// The parameter gradients of `total`, where the step computed them without autograd
    /// through `total` (`gradient = "finite_difference"`); `total` is then its value only.
    pub grads: Option<ParamGrads>,
}

impl StepLoss {
    /// The step's parameter gradients into `.grad`: [`Self::grads`] added where the step
    /// carries them, one `backward()` of [`Self::total`] otherwise.
    pub fn backward(&self) {
        match &self.grads {
            Some(g) => g.accumulate(),
            None => self.total.backward(),
        }
    }
}

impl Step<'_> {
    /// The adversarial batch x′ of `inner` around the step's batch.
    pub fn perturb(&mut self, inner: &InnerMax) -> Result<Tensor> {
        let p = self.perturbation.ok_or_else(|| {
            CoreError::Config(
                "this method needs an inner maximization (TrainOptions::perturbation, e.g. \
                 gfa_attacks::InnerPgd)"
                    .into(),
            )
        })?;
        p.perturb(self.model, self.x, self.y, inner, self.rng)
    }

    /// ℓ on `x` (training mode), plus λ·R when the step has a regularizer: the loss of
    /// standard training, GFA, GNR, and of PGD-AT, fast AT and GFA+PGD-AT on x′.
    ///
    /// With λ = 0 the graph is exactly plain training's (R is still measured and logged), so
    /// GFA at λ = 0 trains bit for bit like standard training, whatever `gradient` says. With
    /// λ > 0 and `gradient = "finite_difference"` the step's parameter gradients are computed
    /// here ([`Regularizer::finite_difference`]) and carried in [`StepLoss::grads`].
    pub fn task_loss_and_penalty(&self, x: &Tensor) -> StepLoss {
        let Some(reg) = self.reg else {
            let logits = self.model.logits(x, true);
            let loss = self.task.mean(&logits, self.y);
            return StepLoss {
                total: loss.shallow_clone(),
                task: loss.detach(),
                logits: logits.detach(),
                terms: vec![],
                taps: None,
                grads: None,
            };
        };
        // The finite-difference gradient: computed here, added to `.grad` by the backward.
        if reg.uses_finite_difference(self.lambda) {
            let (f, grads) = reg.finite_difference(self.model, x, self.y, self.lambda, true);
            return StepLoss {
                total: &f.loss + &f.reg * self.lambda,
                task: f.loss,
                logits: f.logits,
                terms: vec![(reg.kind.name(), f.reg)],
                taps: Some((f.cos, f.terms)),
                grads: Some(grads),
            };
        }
        let trained = self.lambda > 0.0;
        let f = reg.forward(self.model, x, self.y, true, trained);
        let total = if trained { &f.loss + &f.reg * self.lambda } else { f.loss.shallow_clone() };
        StepLoss {
            total,
            task: f.loss.detach(),
            logits: f.logits.detach(),
            terms: vec![(reg.kind.name(), f.reg.detach())],
            taps: Some((f.cos, f.terms)),
            grads: None,
        }
    }
}

/// Accept a number or a rational string such as `"8/255"` (parsed, never evaluated).
pub(crate) fn frac<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrText {
        Num(f64),
        Text(String),
    }
    match NumOrText::deserialize(d)? {
        NumOrText::Num(v) => Ok(v),
        NumOrText::Text(s) => crate::rational::parse_rational(&s).map_err(|why| {
            serde::de::Error::custom(format!("expected a number or \"a/b\", got \"{s}\": {why}"))
        }),
    }
}

pub(crate) fn eps_8() -> f64 {
    8.0 / 255.0
}

pub(crate) fn step_2() -> f64 {
    2.0 / 255.0
}

pub(crate) fn ten() -> usize {
    10
}

pub(crate) fn yes() -> bool {
    true
}

/// One row of `gfa list methods`.
#[derive(Debug, Clone, Serialize)]
pub struct MethodInfo {
    pub kind: &'static str,
    pub summary: &'static str,
    /// Image-gradient evaluations per image and step of the example.
    pub grads_per_step: f64,
    /// The example value as a TOML-like inline table.
    pub example: serde_json::Value,
    /// [`Registered::UNWRITTEN_OPTIONS`].
    #[serde(skip)]
    pub unwritten: &'static [&'static str],
}

impl MethodInfo {
    /// The entry of options type `M` under `kind` (used by [`method_registry!`]).
    pub fn of<M: Registered + Serialize>(kind: &'static str) -> MethodInfo {
        let example = M::example();
        let mut value = serde_json::to_value(&example).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.insert("kind".into(), kind.into());
        }
        MethodInfo {
            kind,
            summary: M::SUMMARY,
            grads_per_step: example.grads_per_step(),
            example: value,
            unwritten: M::UNWRITTEN_OPTIONS,
        }
    }

    /// The option names of the method (the keys of its example, `kind` excluded, and its
    /// unwritten options), sorted.
    pub fn options(&self) -> Vec<String> {
        let keys = self.example.as_object().map(|m| m.keys().cloned().collect());
        let mut keys: Vec<String> = keys.unwrap_or_default();
        keys.retain(|k| k != "kind");
        keys.extend(self.unwritten.iter().map(|k| k.to_string()));
        keys.sort();
        keys.dedup();
        keys
    }
}

/// Defines a method registry: an enum with one variant per `"kind" => Variant(options type),`
/// line, (de)serialized as `{ kind = "…", options… }`, with `KINDS`, `name()`, `list()` and
/// `info()`, and a [`TrainMethod`] implementation that defers to the variant. gfa's registry is
/// [`Method`] below; a test can build its own with an extra method.
#[macro_export]
macro_rules! method_registry {
    ($(#[$meta:meta])* $vis:vis enum $name:ident {
        $( $kind:literal => $variant:ident($cfg:ty), )*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(tag = "kind")]
        $vis enum $name {
            $( #[serde(rename = $kind)] $variant($cfg), )*
        }

        impl $name {
            /// Every registered kind, in registry order.
            pub const KINDS: &'static [&'static str] = &[$($kind),*];

            /// The method's `kind`.
            pub fn name(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => $kind, )*
                }
            }

            /// The registered methods (`gfa list methods`).
            pub fn list() -> Vec<$crate::method::MethodInfo> {
                vec![$( $crate::method::MethodInfo::of::<$cfg>($kind), )*]
            }

            /// The registry entry of `kind`.
            pub fn info(kind: &str) -> Option<$crate::method::MethodInfo> {
                Self::list().into_iter().find(|m| m.kind == kind)
            }

            fn as_dyn(&self) -> &dyn $crate::method::TrainMethod {
                match self {
                    $( Self::$variant(m) => m, )*
                }
            }
        }

        impl $crate::method::TrainMethod for $name {
            fn regularizer(
                &self,
            ) -> Option<($crate::RegKind, &$crate::RegularizerConfig)> {
                self.as_dyn().regularizer()
            }
            fn inner(&self) -> Option<$crate::train::InnerMax> {
                self.as_dyn().inner()
            }
            fn check(&self) -> $crate::Result<()> {
                self.as_dyn().check()
            }
            fn lambda(&self) -> Option<f64> {
                self.as_dyn().lambda()
            }
            fn grads_per_step(&self) -> f64 {
                self.as_dyn().grads_per_step()
            }
            fn loss(
                &self,
                step: &mut $crate::method::Step<'_>,
            ) -> $crate::Result<$crate::method::StepLoss> {
                self.as_dyn().loss(step)
            }
            fn backward(&self, loss: &$crate::method::StepLoss) -> $crate::Result<()> {
                self.as_dyn().backward(loss)
            }
        }
    };
}

method_registry! {
    /// A training method and its options: a run's `[method]` section.
    pub enum Method {
        "standard" => Standard(standard::Standard),
        "gfa" => Gfa(gfa::Gfa),
        "gnr" => Gnr(gfa::Gnr),
        "pgd_at" => PgdAt(pgd_at::PgdAt),
        "fast_at" => FastAt(fast_at::FastAt),
        "trades" => Trades(trades::Trades),
        "gradalign" => GradAlign(gradalign::GradAlign),
        "gfa_pgd_at" => GfaPgdAt(gfa_pgd_at::GfaPgdAt),
    }
}

impl Default for Method {
    /// Standard training.
    fn default() -> Self {
        Method::Standard(standard::Standard {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        method: Method,
    }

    fn parse(text: &str) -> std::result::Result<Method, String> {
        toml::from_str::<Doc>(text).map(|d| d.method).map_err(|e| e.to_string())
    }

    #[test]
    fn every_kind_round_trips_its_example() {
        assert_eq!(Method::list().len(), Method::KINDS.len());
        for info in Method::list() {
            let m: Method = serde_json::from_value(info.example.clone()).unwrap();
            assert_eq!(m.name(), info.kind);
            assert_eq!(serde_json::to_value(&m).unwrap(), info.example, "{}", info.kind);
            m.check().unwrap();
            assert!(info.grads_per_step >= 1.0 && !info.summary.is_empty());
        }
    }

    #[test]
    fn options_parse_with_rational_eps_and_typos_are_named() {
        let m = parse("[method]\nkind = \"pgd_at\"\neps = \"4/255\"\nsteps = 7\n").unwrap();
        let inner = m.inner().unwrap();
        assert!((inner.eps - 4.0 / 255.0).abs() < 1e-12);
        assert!((inner.step - 2.0 / 255.0).abs() < 1e-12);
        assert_eq!(inner.steps, 7);
        let e = parse("[method]\nkind = \"pgd_at\"\nstpes = 3\n").unwrap_err();
        assert!(e.contains("stpes") && e.contains("steps"), "{e}");
        let e = parse("[method]\nkind = \"gfa\"\nlambda = 0.1\nlayres = \"first\"\n").unwrap_err();
        assert!(e.contains("layres") && e.contains("layers"), "{e}");
        let e = parse("[method]\nkind = \"gfa_pgd_at\"\nlambda = 0.1\nlamda = 1\n").unwrap_err();
        assert!(e.contains("lamda"), "{e}");
        let e = parse("[method]\nkind = \"sgd\"\n").unwrap_err();
        assert!(e.contains("sgd") && e.contains("gfa_pgd_at"), "{e}");
    }

    #[test]
    fn penalty_methods_list_their_unwritten_options() {
        for kind in ["gfa", "gnr", "gfa_pgd_at"] {
            let options = Method::info(kind).unwrap().options();
            for key in ["lambda", "layers", "gradient", "fd_step"] {
                assert!(options.iter().any(|o| o == key), "{kind}: {options:?}");
            }
        }
        assert!(!Method::info("pgd_at").unwrap().options().iter().any(|o| o == "gradient"));
    }

    #[test]
    fn penalty_methods_need_lambda() {
        for kind in ["gfa", "gnr", "gfa_pgd_at"] {
            let e = parse(&format!("[method]\nkind = \"{kind}\"\n")).unwrap_err();
            assert!(e.contains("lambda"), "{kind}: {e}");
        }
        let m = parse("[method]\nkind = \"gfa_pgd_at\"\nlambda = 0.1\nsteps = 3\n").unwrap();
        assert_eq!((m.lambda(), m.inner().unwrap().steps), (Some(0.1), 3));
        assert_eq!(parse("[method]\nkind = \"trades\"\n").unwrap().lambda(), None);
    }

    #[test]
    fn cost_follows_the_options() {
        let pgd = |steps: usize| parse(&format!("[method]\nkind = \"pgd_at\"\nsteps = {steps}\n"));
        assert_eq!(pgd(10).unwrap().grads_per_step(), 11.0);
        assert_eq!(pgd(3).unwrap().grads_per_step(), 4.0);
        assert_eq!(Method::default().grads_per_step(), 1.0);
        let gfa = |extra: &str| parse(&format!("[method]\nkind = \"gfa\"\nlambda = 1{extra}\n"));
        assert_eq!(gfa("").unwrap().grads_per_step(), 3.0);
        assert_eq!(gfa("\ngradient = \"finite_difference\"").unwrap().grads_per_step(), 2.0);
        let m = parse(
            "[method]\nkind = \"gfa_pgd_at\"\nlambda = 1\nsteps = 3\ngradient = \"finite_difference\"\n",
        );
        assert_eq!(m.unwrap().grads_per_step(), 5.0);
    }
}
