//! A deterministic CIFAR-shaped toy dataset for tests, examples and the smoke grid.
//!
//! Class `k` is a colored sinusoidal grating: orientation `(k mod 5)·36°`, 2 cycles per image
//! for `k < 5` and 4 for `k ≥ 5`, and a per-class mix of the grating across the R, G, B planes.
//! Each sample scales its class grating by a random contrast, adds a random brightness offset
//! and uniform pixel noise, and is rounded to `u8` like CIFAR-10. The classes are far apart
//! compared with the noise, so a small CNN (or even a linear model) learns them in one epoch,
//! yet no single pixel decides the label.
//!
//! Everything random comes from a [`SeededRng`] keyed by `(seed, split)`, so the train split does
//! not depend on `n_test` and both are identical on every machine. (The key layout predates
//! [`crate::rng_for`] and is kept: changing it would change the set and every number measured
//! on it.)
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use tch::{Device, Kind, Tensor};

use crate::dataset::{Dataset, Splits};
use crate::rng::SeededRng;

/// Number of classes of the synthetic set.
pub const NUM_CLASSES: i64 = 10;
/// Image side, as CIFAR-10.
pub const SIDE: i64 = 32;
/// Peak grating amplitude, in pixel units (0–255), before the per-sample contrast.
const AMPLITUDE: f64 = 64.0;
/// Half-width of the uniform pixel noise, in pixel units.
const NOISE: f64 = 48.0;
/// Per-sample contrast range.
const CONTRAST: (f64, f64) = (0.6, 1.0);
/// Half-width of the per-sample brightness offset, in pixel units.
const BRIGHTNESS: f64 = 24.0;

/// A train and a test split of `n_train` / `n_test` images `[N, 3, 32, 32]` `u8` with
/// balanced labels (class `k` gets `⌈(n − k) / 10⌉` samples), in a seeded random order.
pub fn synthetic(n_train: usize, n_test: usize, seed: u64) -> Splits {
    synthetic_shaped(n_train, n_test, seed, 3, SIDE)
}

/// [`synthetic`] with `channels` planes of `side`×`side` pixels (`1, 28` is Fashion-MNIST's
/// shape). With one channel each class is its grating alone (no colour mix); `synthetic` is this
/// with `3, 32`.
pub fn synthetic_shaped(
    n_train: usize,
    n_test: usize,
    seed: u64,
    channels: i64,
    side: i64,
) -> Splits {
    let classes: Vec<String> = (0..NUM_CLASSES).map(|k| format!("pattern{k}")).collect();
    let patterns = class_patterns_shaped(channels, side);
    let split = |n: usize, tag: u8| {
        let (images, labels) = generate(&patterns, n, &mut split_rng(seed, tag));
        Dataset { images, labels, classes: classes.clone() }
    };
    Splits { train: split(n_train, 0), test: split(n_test, 1) }
}

/// The generator of one split: the ChaCha key is the seed, a tag and the split id.
fn split_rng(seed: u64, split: u8) -> SeededRng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..24].copy_from_slice(b"gfa-data:synth:\0");
    key[24] = split;
    SeededRng::from_seed(key)
}

/// The 10 class gratings, unit amplitude.
///
/// # Shapes
/// `[10, 3, 32, 32]` `f64`.
pub fn class_patterns() -> Tensor {
    class_patterns_shaped(3, SIDE)
}

/// The 10 class gratings on `channels` planes of `side`×`side`.
///
/// # Shapes
/// `[10, channels, side, side]` `f64`.
fn class_patterns_shaped(channels: i64, side: i64) -> Tensor {
    let opts = (Kind::Double, Device::Cpu);
    let k = Tensor::arange(NUM_CLASSES, opts);
    let theta = k.remainder(5.0) * (std::f64::consts::PI / 5.0);
    let cycles = (k.ge(5.0).to_kind(Kind::Double) + 1.0) * 2.0;
    let coord = Tensor::arange(side, opts);
    let (i, j) = (coord.view([1, side, 1]), coord.view([1, 1, side]));
    let along = i * theta.cos().view([-1, 1, 1]) + j * theta.sin().view([-1, 1, 1]);
    let phase = along * (cycles.view([-1, 1, 1]) * (2.0 * std::f64::consts::PI / side as f64));
    let grating = phase.sin().unsqueeze(1); // [10, 1, side, side]
    if channels != 3 {
        return grating.expand([NUM_CLASSES, channels, side, side], false).contiguous();
    }
    // Channel weights cos(2πk/10 + 2πc/3): each class spreads its grating differently over RGB.
    let c = Tensor::arange(3, opts).view([1, 3]);
    let mix = (k.view([-1, 1]) * (2.0 * std::f64::consts::PI / NUM_CLASSES as f64)
        + c * (2.0 * std::f64::consts::PI / 3.0))
        .cos();
    grating * mix.view([NUM_CLASSES, 3, 1, 1])
}

fn generate(patterns: &Tensor, n: usize, rng: &mut SeededRng) -> (Tensor, Tensor) {
    let mut labels: Vec<i64> = (0..n as i64).map(|i| i % NUM_CLASSES).collect();
    labels.shuffle(rng);
    let contrast: Vec<f64> = (0..n).map(|_| rng.gen_range(CONTRAST.0..=CONTRAST.1)).collect();
    let brightness: Vec<f64> = (0..n).map(|_| rng.gen_range(-BRIGHTNESS..=BRIGHTNESS)).collect();
    let [_, c, h, w] = patterns.size()[..] else { unreachable!("patterns are NCHW") };
    let mut noise = vec![0u8; n * (c * h * w) as usize];
    rng.fill_bytes(&mut noise);

    let n = n as i64;
    let shape = [n, c, h, w];
    let y = Tensor::from_slice(&labels);
    let signal = patterns.index_select(0, &y) * Tensor::from_slice(&contrast).view([n, 1, 1, 1]);
    let noise =
        (Tensor::from_slice(&noise).view(shape).to_kind(Kind::Double) - 127.5) * (NOISE / 127.5);
    let x = signal * AMPLITUDE + Tensor::from_slice(&brightness).view([n, 1, 1, 1]) + noise + 127.5;
    (x.round().clamp(0.0, 255.0).to_kind(Kind::Uint8), y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_kinds_and_balance() {
        let s = synthetic(23, 10, 0);
        assert_eq!(s.train.images.size(), [23, 3, 32, 32]);
        assert_eq!(s.train.images.kind(), Kind::Uint8);
        assert_eq!(s.train.labels.kind(), Kind::Int64);
        assert_eq!(s.train.class_counts(), [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]);
        assert_eq!(s.test.class_counts(), [1; 10]);
        assert_eq!(s.train.classes.len(), 10);
    }

    #[test]
    fn one_channel_shape_and_cifar_shape_unchanged() {
        let s = synthetic_shaped(12, 5, 0, 1, 28);
        assert_eq!(s.train.images.size(), [12, 1, 28, 28]);
        assert_eq!(s.test.class_counts(), [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]);
        let (a, b) = (synthetic(8, 2, 3), synthetic_shaped(8, 2, 3, 3, 32));
        assert!(a.train.images.equal(&b.train.images) && a.test.labels.equal(&b.test.labels));
    }

    #[test]
    fn class_means_separate_the_classes() {
        // Nearest class mean (fit on train) must classify held-out samples almost perfectly:
        // the labels are carried by the images, not by chance. Both shapes: colour 32×32 and
        // grey 28×28.
        for (channels, side) in [(3, 32), (1, 28)] {
            let s = synthetic_shaped(1000, 500, 4, channels, side);
            let x = s.train.images.to_kind(Kind::Float).flatten(1, -1);
            let onehot = s.train.labels.one_hot(10).to_kind(Kind::Float); // [N, 10]
            let means = onehot.tr().matmul(&x)
                / onehot.sum_dim_intlist(0, false, Kind::Float).view([10, 1]);
            let xt = s.test.images.to_kind(Kind::Float).flatten(1, -1);
            let d = xt.unsqueeze(1) - means.unsqueeze(0); // [M, 10, D]
            let pred = d.square().sum_dim_intlist(2, false, Kind::Float).argmin(1, false);
            let acc = pred.eq_tensor(&s.test.labels).to_kind(Kind::Float).mean(Kind::Float);
            let acc = acc.double_value(&[]);
            assert!(acc > 0.95, "{channels}×{side}: nearest-class-mean accuracy {acc}");
        }
    }
}
