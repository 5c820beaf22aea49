//! Attack strength ordering on the trained fixture model (the golden fixture's `cnn`): iterative
//! attacks are at least as strong as FGSM, APGD at least as strong as PGD, within noise. PGD is
//! the reference preset (20 steps of eps/4): torchattacks' fixed 2/255 step cannot cross the
//! fixture's large budget in 10 steps, so it may legitimately lose to FGSM there.
use gfa_attacks::{Attack, attack};
use gfa_core::seed::SeededRng;
use rand::SeedableRng;
use serde_json::json;
use tch::Kind;

use super::common::spec;
use super::golden_data;

fn robust_acc(a: &dyn Attack, eps: f64) -> f64 {
    let (m, x, y) = golden_data();
    let out = attack::run(a, &m, &x, &y, eps, &mut SeededRng::seed_from_u64(1)).unwrap();
    out.success.logical_not().to_kind(Kind::Float).mean(Kind::Float).double_value(&[])
}

#[test]
fn pgd_beats_fgsm_and_apgd_beats_pgd() {
    let eps = super::golden::eps("eps_linf");
    let fgsm = robust_acc(spec(json!({"kind": "fgsm"})).build().unwrap().as_ref(), eps);
    let pgd = robust_acc(spec(json!({"kind": "pgd"})).build().unwrap().as_ref(), eps);
    let apgd = robust_acc(spec(json!({"kind": "apgd-ce"})).build().unwrap().as_ref(), eps);
    let noise = 2.0 / 128.0;
    assert!(pgd <= fgsm + noise, "PGD-20 {pgd} vs FGSM {fgsm}");
    assert!(apgd <= pgd + noise, "APGD-CE {apgd} vs PGD-20 {pgd}");
    // The model is not trivially broken or trivially robust at this budget.
    assert!(fgsm > apgd || fgsm > 0.05, "fgsm {fgsm}, apgd {apgd}");
}
