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

/// The cost model of an attack config.
pub trait Costed {
    /// The config key counting iterations or queries (see [`Facts::cost_key`]).
    const COST_KEY: Option<&'static str>;
    /// Image-gradient evaluations (forward + backward of one image; a forward alone counts
    /// [`FORWARD_COST`]) per attacked point in one run at one budget, at most: attacks that stop
    /// early on fooled points cost less. For comparing runs of a plan.
    fn cost_per_point(&self) -> f64;
}
