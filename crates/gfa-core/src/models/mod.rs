//! The model registry: [`ModelSpec`] names an architecture and its options; [`ModelSpec::build`]
//! makes the network. Adding a model is one file here plus one [`Arch`] variant.
//!
//! Tensor names follow PyTorch `state_dict` naming of the twins in `scripts/pytorch_models.py`
//! (see `docs/models.md`), so weights move between gfa and PyTorch as safetensors.
use serde::{Deserialize, Serialize};
use tch::nn;

use crate::classifier::Network;
use crate::{CoreError, Result};

mod cnn;
mod linear;
mod mlp;
mod normalize;

pub use cnn::Cnn;
pub use linear::Linear;
pub use mlp::Mlp;
pub use normalize::Normalize;

/// Architectures gfa can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// Flatten → one affine map (closed-form tests).
    Linear,
    /// Flatten → hidden `widths` with ReLU → classes (SPEC §3).
    Mlp,
    /// The classic robustness CNN: conv64 ×2 → pool → conv128 ×2 → pool → fc256 → fc256 → fc.
    Cnn,
}

impl Arch {
    pub const ALL: &[Arch] = &[Arch::Linear, Arch::Mlp, Arch::Cnn];

    pub fn name(self) -> &'static str {
        match self {
            Arch::Linear => "linear",
            Arch::Mlp => "mlp",
            Arch::Cnn => "cnn",
        }
    }
}

/// A model as written in a run config (`[model]` table).
///
/// `mean = std = [0.5; 3]` (the default) maps `[0, 1]` pixels to the paper's `[-1, 1]` inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSpec {
    pub arch: Arch,
    /// Channel/unit multiplier (`cnn`, `mlp`); 0.25 is the CPU-quick `cnn`.
    pub width: f64,
    /// Hidden widths of `mlp` (before `width` scaling).
    pub widths: Vec<i64>,
    /// Whether the first layer normalizes (switch off for checkpoints trained without it).
    pub normalize: bool,
    pub mean: [f64; 3],
    pub std: [f64; 3],
    pub num_classes: i64,
    /// Bias of the `linear` model.
    pub bias: bool,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            arch: Arch::Cnn,
            width: 1.0,
            widths: vec![1024, 512, 256],
            normalize: true,
            mean: [0.5; 3],
            std: [0.5; 3],
            num_classes: 10,
            bias: true,
        }
    }
}

impl ModelSpec {
    /// A spec with defaults for `arch`.
    pub fn of(arch: Arch) -> Self {
        Self { arch, ..Self::default() }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(CoreError::Config(msg));
        if !(self.width > 0.0 && self.width.is_finite()) {
            return bad(format!("model.width must be a positive number, got {}", self.width));
        }
        if self.num_classes < 2 {
            return bad(format!("model.num_classes must be at least 2, got {}", self.num_classes));
        }
        if self.std.iter().any(|s| !(*s > 0.0)) {
            return bad(format!("model.std must be positive, got {:?}", self.std));
        }
        if self.arch == Arch::Mlp && (self.widths.is_empty() || self.widths.iter().any(|w| *w < 1))
        {
            return bad(format!("model.widths must be positive integers, got {:?}", self.widths));
        }
        Ok(())
    }

    /// Scale a channel count by `width`, never below 1.
    pub fn scaled(&self, c: i64) -> i64 {
        ((c as f64 * self.width).round() as i64).max(1)
    }

    /// Build the network under `root` (normalization is added by the `Classifier`).
    pub fn build(&self, root: &nn::Path) -> Result<Box<dyn Network>> {
        self.validate()?;
        Ok(match self.arch {
            Arch::Linear => Box::new(Linear::new(root, self)),
            Arch::Mlp => Box::new(Mlp::new(root, self)),
            Arch::Cnn => Box::new(Cnn::new(root, self)),
        })
    }
}
