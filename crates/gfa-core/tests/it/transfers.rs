//! The training step's device↔host transfers, counted at the instrumented places
//! (`gfa_core::transfer`) and held to their budget: no read and no copy per step for standard
//! training and exact GFA (the loss's finiteness and the metrics stay on the device and are
//! read at the end of the epoch), one read per step for the finite-difference GFA gradient
//! (the offset scale), and a fixed number per epoch (the order, the augmentation draws).
use gfa_core::method::gfa::Gfa;
use gfa_core::regularizer::{PenaltyGradient, RegularizerConfig};
use gfa_core::train::{TrainOptions, train};
use gfa_core::{Method, transfer};

use super::train::{quick, splits, tiny_cnn};

/// (reads, uploads) of one epoch of `method` on `n` training images (batch 8: n / 8 steps).
fn transfers(method: &Method, n: i64) -> (u64, u64) {
    let data = splits(n, 16);
    let mut model = tiny_cnn(3);
    let (r0, u0) = (transfer::reads(), transfer::uploads());
    train(&mut model, &data, &quick(1), method, &TrainOptions::default(), &mut |_| Ok(())).unwrap();
    (transfer::reads() - r0, transfer::uploads() - u0)
}

/// Transfers per step: the difference between an epoch of 8 steps and one of 2, over 6.
fn per_step(method: &Method) -> (f64, f64, (u64, u64)) {
    let short = transfers(method, 16);
    let long = transfers(method, 64);
    let per = |a: u64, b: u64| (b as f64 - a as f64) / 6.0;
    (per(short.0, long.0), per(short.1, long.1), short)
}

#[test]
fn a_training_step_reads_nothing_back_and_copies_nothing() {
    let gfa = |gradient| {
        Method::Gfa(Gfa(RegularizerConfig { gradient, ..RegularizerConfig::with_lambda(0.3) }))
    };
    for (method, reads_per_step) in [
        (Method::default(), 0.0),
        (gfa(PenaltyGradient::Exact), 0.0),
        (gfa(PenaltyGradient::FiniteDifference), 1.0),
    ] {
        let (reads, uploads, (epoch_reads, epoch_uploads)) = per_step(&method);
        assert_eq!(reads, reads_per_step, "{method:?}: device→host reads per step");
        assert_eq!(uploads, 0.0, "{method:?}: host→device copies per step");
        // Per epoch: the order and the augmentation draws up, the finiteness check, the
        // running sums and the test accuracy back (and the model and data on the CPU: none).
        assert!(epoch_uploads <= 2, "{method:?}: {epoch_uploads} copies in a 2-step epoch");
        assert!(epoch_reads <= 12, "{method:?}: {epoch_reads} reads in a 2-step epoch");
    }
}
