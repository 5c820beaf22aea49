//! gfa-attacks: batched adversarial attacks on [`gfa_core::Classifier`] models.
//!
//! # The attack contract
//! - Inputs `x` are NCHW `Kind::Float` in `[0, 1]` on the model's device (or `Kind::Double`,
//!   with the model converted by `vs.double()`: the golden tests run so); labels `y` are `Int64`.
//! - The model is evaluated with `train = false` and is never changed: no weight, no BatchNorm
//!   statistic, no `.grad` of a parameter. Input gradients come from
//!   `Tensor::run_backward(&[loss], &[x], false, false)` (see [`grad`]), never `loss.backward()`.
//! - Attacks are plain config values (serde, `Default` citing the reference); the model, the
//!   budget `eps` and the seeded generator come in at call time.
//! - Every attack returns one [`AttackOutput`]; [`attack::validate`] re-runs the model on `x_adv`
//!   and checks box, budget and NaN before any number is reported. A point counts as a success
//!   only if it is misclassified AND inside the budget; clean-misclassified points are successes.
//! - Fixed-budget attacks (FGSM, PGD, APGD, Square, AutoAttack) answer "is there an adversarial
//!   example within `eps`?"; minimum-norm attacks (DeepFool, CW, EAD, FAB) return the smallest
//!   perturbation they found, and accuracy at any `eps` is derived by thresholding its norm.
//! - What each attack is (algorithm, family, white- or black-box, iterative, loss, cost, whether
//!   it records a trace) is a typed fact of the registry ([`facts`]); callers ask it instead of
//!   matching names.
//! - Iterative attacks can record, per point, each step's value and adversarial flag
//!   ([`trace`], off by default), from which [`indicators`] computes the Indicators of Attack
//!   Failure.

pub mod apgd;
pub mod attack;
pub mod autoattack;
pub mod binarize;
pub mod checks;
pub mod cw;
pub mod deepfool;
pub mod ead;
pub mod error;
pub mod eval;
pub mod fab;
pub mod facts;
pub mod fgsm;
pub mod grad;
pub mod indicators;
pub mod inner;
pub mod loss;
pub mod noise;
pub mod pgd;
pub mod preset;
pub mod registry;
pub mod repeated;
pub mod square;
pub mod threat;
pub mod trace;
pub mod transfer;

pub use attack::{Attack, AttackOutput, Family, Goal, TargetPolicy};
pub use error::{AttackError, Result};
pub use facts::{Access, Algorithm, Facts, Loss, PointCost, Steps};
pub use inner::{InnerPgd, ValidationPgd};
pub use preset::{Configured, Preset};
pub use registry::AttackSpec;
pub use threat::{Eps, Norm, ThreatModel};
