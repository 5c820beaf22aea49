//! gfa-core: models with named taps, the Gradient-Feature Alignment (GFA) regularizer and the
//! trainer.
//!
//! # Data flow
//! `gfa_data` batches (`f32` pixels in `[0, 1]`) → [`Classifier`] (its first layer normalizes)
//! → logits and, on request, the activations at every named *tap* (`input`, `conv1`, …). The
//! regularizer differentiates the task loss with respect to all taps in one autograd call
//! (double backprop) and penalizes the misalignment between each tap and its gradient.
//!
//! # Contracts
//! - Inputs are NCHW `Kind::Float` in `[0, 1]`; labels are `Int64`.
//! - Normalization is the model's first layer and is saved with its weights.
//! - Everything random is seeded from one run seed through [`seed`].
//! - A training method is one value ([`Method`], a run's `[method]` section); each lives in one
//!   file of [`method`] and is registered by one line there.

pub mod bench;
pub mod checkpoint;
pub mod classifier;
pub mod device;
pub mod error;
pub mod gfa_value;
pub mod host_memory;
pub mod import;
pub mod libtorch;
pub mod losses;
pub mod method;
pub mod metrics;
pub mod models;
pub mod provenance;
pub mod pt;
pub mod rational;
pub mod regularizer;
pub mod seed;
pub mod torchscript;
pub mod train;

/// The counted device↔host transfers of the hot loops ([`gfa_data::transfer`]).
pub use gfa_data::transfer;

pub use classifier::{Classifier, TapForward, TapPoint};
pub use device::DeviceChoice;
pub use error::{CoreError, Result};
pub use gfa_value::{GfaValue, GfaValueConfig, gfa_value};
pub use losses::TaskLoss;
pub use method::{Method, TrainMethod};
pub use models::ModelSpec;
pub use provenance::Provenance;
pub use regularizer::{PenaltyGradient, RegKind, Regularizer, RegularizerConfig};
pub use train::{EpochRecord, TrainConfig, TrainOptions, TrainOutcome, train};
