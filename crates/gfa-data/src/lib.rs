//! CIFAR-10, Fashion-MNIST and synthetic image data for gfa.
//!
//! # Data flow
//!
//! ```text
//! cifar-10-batches-bin/ or cifar-10-binary.tar.gz ──cifar10::load──┐
//!     Fashion-MNIST *-idx3-ubyte[.gz], *-idx1-ubyte[.gz] ──fashion::load_dir──┤
//!                                  synthetic(n_train, n_test, seed)─┴─> Splits { train, test }
//!   Dataset (u8 NCHW in memory) ──Batcher (seeded order)──> (x f32 [0,1] on device, y i64)
//!   x ──AugmentConfig::apply(x, rng)──> x (training only)
//! ```
//!
//! # Layout contract
//!
//! - A [`Dataset`] stores images as `u8` tensors of shape `[N, C, H, W]`: `[N, 3, 32, 32]` for
//!   CIFAR-10 (the official record order of a red, a green and a blue 32×32 row-major plane),
//!   `[N, 1, 28, 28]` for Fashion-MNIST ([`fashion`], IDX files read by [`idx`]), and labels as
//!   `i64` tensors of shape `[N]` in `0..classes.len()`. Storage stays on the CPU. Models take
//!   their input shape from the data.
//! - Batches come out as `x`: `f32` in `[0, 1]` (`u8 / 255`) on the requested device and `y`:
//!   `i64`. Normalization belongs to the model's first layer, never to the data.
//! - CIFAR-10 is read from the official binary layout, unchanged: `data_batch_1.bin` …
//!   `data_batch_5.bin` (train, in that order), `test_batch.bin`, `batches.meta.txt` (class
//!   names in label order), records of 1 label byte + 3,072 pixel bytes. Any copy in that
//!   layout works (the official download or a re-encoded one). The location is `--data`, else
//!   `$GFA_DATA_DIR`, else `./data` ([`resolve_data_dir`]), and may be the
//!   `cifar-10-batches-bin` folder, its parent, or the `.tar.gz`.
//! - Everything random (shuffles, augmentation, synthetic data) is drawn on the Rust side from a
//!   [`SeededRng`] the caller seeds (usually through [`rng_for`]), so results do not depend on
//!   the device or on the `rand` release.
//!
//! Two primitives every gfa crate shares live here, at the bottom of the dependency chain:
//! [`rng`] (the one seeded generator) and [`atomic`] (the one way to write a file).
//!
//! ```
//! use gfa_data::{AugmentConfig, Batcher, synthetic};
//! use gfa_data::rng_for;
//!
//! let splits = synthetic(64, 16, 0);
//! let batcher = Batcher::new(&splits.train, 32).unwrap().drop_last(true);
//! let mut rng = rng_for(0, "example");
//! let epoch = batcher.shuffled(&mut rng);
//! for (x, y) in epoch {
//!     let x = AugmentConfig::default().apply(&x, &mut rng).unwrap();
//!     assert_eq!(x.size(), [32, 3, 32, 32]);
//!     assert_eq!(y.size(), [32]);
//! }
//! ```

pub mod atomic;
pub mod augment;
pub mod batcher;
pub mod cifar10;
pub mod dataset;
pub mod error;
pub mod fashion;
pub mod fetch;
pub mod idx;
pub mod rng;
pub mod synthetic;
pub mod transfer;

pub use augment::{AugmentConfig, AugmentDraw};
pub use batcher::{Batcher, Epoch};
pub use cifar10::{load as load_cifar10, resolve_data_dir};
pub use dataset::{Dataset, Splits};
pub use error::{DataError, Result};
pub use fetch::{fetch_cifar10, fetch_fashion_mnist, fetch_official, fetch_official_fashion_mnist};
pub use rng::{SeededRng, rng_for};
pub use synthetic::{synthetic, synthetic_shaped};
