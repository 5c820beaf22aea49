//! The attacks' hot loops and their device↔host transfers, counted at the instrumented places
//! (`gfa_core::transfer`): a PGD iteration reads nothing back and copies nothing; an APGD
//! iteration reads at most once (which points it fooled, so that they leave the batch).
use gfa_attacks::Attack;
use gfa_attacks::apgd::{Apgd, ApgdConfig, ApgdLoss};
use gfa_attacks::pgd::{Keep, Pgd, PgdConfig};
use gfa_core::seed::rng_for;
use gfa_core::transfer;

use super::common::{batch, predicted, tiny_cnn};

/// (reads, uploads) of one `perturb` of `attack` on 32 points the model classifies correctly.
fn transfers(attack: &dyn Attack) -> (u64, u64) {
    let model = tiny_cnn(4);
    let (x, _) = batch(32, 4, 0.0, 1.0);
    let y = predicted(&model, &x);
    let (r0, u0) = (transfer::reads(), transfer::uploads());
    let _ = attack.perturb(&model, &x, &y, 8.0 / 255.0, &mut rng_for(0, "transfers")).unwrap();
    (transfer::reads() - r0, transfer::uploads() - u0)
}

#[test]
fn a_pgd_iteration_reads_nothing_back_and_copies_nothing() {
    for keep in [Keep::Last, Keep::Any] {
        let pgd = |steps| Pgd::new(PgdConfig { steps, keep, ..PgdConfig::default() }).unwrap();
        let (short, long) = (transfers(&pgd(3)), transfers(&pgd(13)));
        assert_eq!(short, long, "{keep:?}: 10 more iterations changed (reads, uploads)");
        assert!(short.0 <= 2 && short.1 <= 1, "{keep:?}: {short:?} per run");
    }
}

#[test]
fn an_apgd_iteration_reads_at_most_once() {
    let apgd =
        |n_iter| Apgd::new(ApgdConfig { n_iter, ..ApgdConfig::default() }, ApgdLoss::Ce).unwrap();
    let (short, long) = (transfers(&apgd(10)), transfers(&apgd(40)));
    let reads = long.0 - short.0;
    assert!(reads <= 30, "{reads} reads in 30 more iterations");
    // The step-size checkpoints send their row indices (2 copies each, every few iterations).
    let uploads = long.1 - short.1;
    assert!(uploads <= 2 * 30 / 3, "{uploads} copies in 30 more iterations");
}
