//! What each registered attack is, as types: the algorithm it belongs to, whether it searches
//! inside a budget or for the smallest perturbation, what it knows of the model, whether it
//! iterates, the loss it maximizes, what one run costs and whether it records a trace.
//!
//! The registry states the algorithm, family, access, steps and loss on each attack's line
//! (`registry!`) and takes the cost from the config's [`Costed`] impl, so an attack registered
//! without its facts does not compile. Everything downstream (tables, masking checks, the
//! plan's cost estimate, the evaluation's handling of minimum-norm attacks) asks these facts
//! instead of matching attack names.
use serde::{Deserialize, Serialize};

use crate::attack::Family;

/// The algorithm an attack is a variant of (APGD-CE, APGD-DLR and APGD-T are all APGD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    Fgsm,
    Pgd,
    Apgd,
    Square,
    AutoAttack,
    DeepFool,
    Cw,
    Ead,
    Fab,
    Noise,
    Transfer,
}

impl Algorithm {
    /// Every algorithm, in registry order.
    pub const ALL: &[Algorithm] = &[
        Algorithm::Fgsm,
        Algorithm::Pgd,
        Algorithm::Apgd,
        Algorithm::Square,
        Algorithm::AutoAttack,
        Algorithm::DeepFool,
        Algorithm::Cw,
        Algorithm::Ead,
        Algorithm::Fab,
        Algorithm::Noise,
        Algorithm::Transfer,
    ];

    /// The name tables print (`APGD`, `DeepFool`, …).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Fgsm => "FGSM",
            Algorithm::Pgd => "PGD",
            Algorithm::Apgd => "APGD",
            Algorithm::Square => "Square",
            Algorithm::AutoAttack => "AutoAttack",
            Algorithm::DeepFool => "DeepFool",
            Algorithm::Cw => "CW",
            Algorithm::Ead => "EAD",
            Algorithm::Fab => "FAB",
            Algorithm::Noise => "noise",
            Algorithm::Transfer => "transfer",
        }
    }
}

/// What the attack knows of the attacked model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Its input gradients (white box).
    WhiteBox,
    /// Its scores only (black box, query-based).
    BlackBox,
    /// Gradients of another model, the surrogate; the attacked model only scores the result.
    Surrogate,
    /// Nothing: a random perturbation of the budget's size (a baseline).
    Random,
}

/// Whether the attack takes one step or iterates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Steps {
    Single,
    Iterative,
}

/// The kind of loss an attack maximizes (masking check 6 compares the two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Cross-entropy.
    Ce,
    /// A logit margin (DLR, CW's margin, Square's margin).
    Margin,
}

/// The facts of one registered attack kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Facts {
    pub algorithm: Algorithm,
    /// Fixed budget (searches inside eps) or minimum norm (run once, thresholded at each eps).
    pub family: Family,
    pub access: Access,
    pub steps: Steps,
    /// The loss it maximizes (`None`: a geometric or random attack, or a mix).
    pub loss: Option<Loss>,
    /// The config key that counts its iterations or queries (`None`: FGSM's one step, or an
    /// attack whose cost is its components': AutoAttack, transfer).
    pub cost_key: Option<&'static str>,
    /// Whether it records a trace of its steps ([`crate::Attack::perturb_traced`],
    /// [`crate::trace`]): the iterative attacks and the transfer attack (one step: its examples
    /// on the surrogate).
    pub traced: bool,
}

impl Facts {
    pub fn white_box(&self) -> bool {
        self.access == Access::WhiteBox
    }
    pub fn iterative(&self) -> bool {
        self.steps == Steps::Iterative
    }
    pub fn minimum_norm(&self) -> bool {
        self.family == Family::MinimumNorm
    }
}

/// Classes assumed by the cost estimates of attacks that look at every class (DeepFool, FAB).
pub const COST_CLASSES: f64 = 10.0;

/// A forward pass costs about a third of a forward + backward (the cost unit).
pub const FORWARD_COST: f64 = 1.0 / 3.0;

/// The share of one run's budget that an attack stopping on fooled points is assumed to spend on
/// a point it fools: an eighth. Such points fall early: in `make quick`'s `eval.csv`, a fooled
/// point took 0.06–0.17 of the budget of APGD (20 iterations), Square (500 queries) and DeepFool
/// (50 steps) (GUIDE.md, "Predicted wall time").
pub const FOOLED_SHARE: f64 = 0.125;

/// What one attacked point costs, in image-gradient evaluations, by the attack's outcome on it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointCost {
    /// A point the attack fools (an attack that stops on fooled points spends part of its budget).
    pub fooled: f64,
    /// A point it does not fool: every step, restart and target class.
    pub robust: f64,
}

impl PointCost {
    /// An attack that spends its whole budget on every point.
    pub fn fixed(cost: f64) -> Self {
        Self { fooled: cost, robust: cost }
    }

    /// An attack that stops on a point once it is fooled: `robust` on a point it does not fool,
    /// [`FOOLED_SHARE`] of `one_run` (its first run: one restart, one target class) on one it
    /// does.
    pub fn stopping(one_run: f64, robust: f64) -> Self {
        Self { fooled: FOOLED_SHARE * one_run, robust }
    }

    /// The mean cost per point when the attack does not fool a share `robust` of them.
    pub fn expected(&self, robust: f64) -> f64 {
        (1.0 - robust) * self.fooled + robust * self.robust
    }
}

/// The cost model of an attack config.
pub trait Costed {
    /// The config key counting iterations or queries (see [`Facts::cost_key`]).
    const COST_KEY: Option<&'static str>;
    /// Image-gradient evaluations (forward + backward of one image; a forward alone counts
    /// [`FORWARD_COST`]) per attacked point in one run at one budget, at most: attacks that stop
    /// early on fooled points cost less ([`Costed::point_cost`]).
    fn cost_per_point(&self) -> f64;
    /// The cost of a point by outcome: by default [`Costed::cost_per_point`] whatever the
    /// outcome; attacks that stop on fooled points say how much less a fooled one costs.
    fn point_cost(&self) -> PointCost {
        PointCost::fixed(self.cost_per_point())
    }
}
