//! CIFAR-10 and synthetic image data for gfa.
//!
//! Images are stored as `u8` tensors of shape `[N, 3, 32, 32]` (NCHW, the official record order)
//! and labels as `i64` tensors of shape `[N]`. Batches come out as `f32` in `[0, 1]` on the
//! requested device: normalization belongs to the model, never to the data.

pub mod dataset;
pub mod error;

pub use dataset::{Dataset, Splits};
pub use error::{DataError, Result};
