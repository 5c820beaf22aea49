//! Presets: which library's defaults an attack config starts from.
//!
//! - `reference`: the original authors' settings (auto-attack for APGD/APGD-T/Square/AutoAttack,
//!   Madry et al. for PGD; docs/attacks.md §2). Report these.
//! - `torchattacks`: torchattacks 3.5.1 defaults and quirks (10-step APGD, last-iterate PGD,
//!   `resc_schedule=True` Square), to reproduce numbers made with that library.
//!
//! A config is written as its preset plus overrides: `{ kind = "pgd", preset = "torchattacks",
//! steps = 20 }` starts from torchattacks' PGD and changes only `steps`.
use serde::{Deserialize, Serialize};

use crate::Norm;

/// The origin of an attack's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    #[default]
    Reference,
    Torchattacks,
}

impl Preset {
    pub const ALL: &[Preset] = &[Preset::Reference, Preset::Torchattacks];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Reference => "reference",
            Preset::Torchattacks => "torchattacks",
        }
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A config with per-preset, per-norm defaults (torchattacks' `PGD` and `PGDL2` differ).
pub trait Configured: Sized {
    /// The defaults of `preset` for the `norm` threat model.
    fn preset_for(preset: Preset, norm: Norm) -> Self;
    /// The threat models the attack supports.
    fn norms() -> &'static [Norm];
}
