//! The one generator gfa draws seeded random numbers from on the Rust side.
//!
//! [`SeededRng`] is ChaCha with 12 rounds from `rand_chacha`, named explicitly: its stream is
//! fixed by the algorithm and the 32-byte key, not by whatever `rand` calls its standard
//! generator in a given release. Every seeded purpose (shuffles, augmentation, random starts,
//! attack target classes, random search) gets its own stream from [`rng_for`], keyed by the run
//! seed and a purpose string, so adding a consumer never shifts another's stream.
//!
//! (`rand` 0.8's standard generator is this very ChaCha12 generator, so runs made before the
//! generator was named draw the same numbers.)
use rand::SeedableRng;

/// The seeded generator of every crate of gfa.
pub type SeededRng = rand_chacha::ChaCha12Rng;

/// A generator for one purpose (`"shuffle/3"`, `"augment/3"`, `"square"`, …) of one run seed:
/// the ChaCha key is the BLAKE3 hash of the seed (8 bytes, little endian) and the purpose.
pub fn rng_for(seed: u64, purpose: &str) -> SeededRng {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(purpose.as_bytes());
    SeededRng::from_seed(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore};

    #[test]
    fn purposes_are_independent_and_reproducible() {
        let a: u64 = rng_for(7, "shuffle").r#gen();
        let b: u64 = rng_for(7, "shuffle").r#gen();
        let c: u64 = rng_for(7, "augment").r#gen();
        let d: u64 = rng_for(8, "shuffle").r#gen();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    /// The streams are part of every result gfa reports: a change of algorithm, key derivation
    /// or library that moves them must fail here rather than silently change every run. The
    /// values are the first draws of ChaCha12 under BLAKE3("seed ‖ purpose") keys; `rand` 0.8's
    /// standard generator, which gfa used before, drew the same (checked when the generator was
    /// named).
    #[test]
    fn streams_are_pinned() {
        let mut r = rng_for(0, "shuffle/0");
        assert_eq!([r.next_u64(), r.next_u64()], PINNED_SHUFFLE_0);
        let mut r = rng_for(12345, "perturb/7");
        assert_eq!(r.next_u32(), PINNED_PERTURB_7);
        let mut r = SeededRng::seed_from_u64(3);
        assert_eq!(r.next_u64(), PINNED_FROM_U64_3);
    }

    const PINNED_SHUFFLE_0: [u64; 2] = [18143914866143940503, 9367935878278157688];
    const PINNED_PERTURB_7: u32 = 2708124817;
    const PINNED_FROM_U64_3: u64 = 1756299670138968556;
}
