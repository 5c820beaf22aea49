//! One seeding entry point.
//!
//! libtorch's generators are seeded by [`seed_all`]; everything drawn on the Rust side (shuffles,
//! augmentation, target classes, random search) comes from [`rng_for`], a [`SeededRng`] derived
//! from the run seed and a purpose string, so adding a new consumer never shifts another's
//! stream. Both live in `gfa_data::rng`, the bottom of the crate chain, and every crate uses them.
pub use gfa_data::rng::{SeededRng, rng_for};

/// Seed libtorch's CPU and CUDA generators.
///
/// These generators are process-wide: every thread draws from the same stream, so two seeded
/// computations reproduce only when they do not run at the same time (this is why the workspace's
/// test binaries run their tests one at a time, `.cargo/config.toml`).
pub fn seed_all(seed: u64) {
    tch::manual_seed(seed as i64);
    if crate::device::cuda_available() {
        tch::Cuda::manual_seed_all(seed);
    }
}
