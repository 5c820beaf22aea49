//! Golden fixtures from torchattacks 3.5.1 and auto-attack (a392200), made by
//! `tests/fixtures/gen_attack_fixtures.py` on a tiny trained `cnn` (see the script's docstring):
//!
//! ```python
//! torchattacks.FGSM(model, eps=8/255)(x[:32], y[:32])
//! torchattacks.PGD(model, eps=8/255, alpha=2/255, steps=10, random_start=False)(x[:32], y[:32])
//! torchattacks.PGDL2(model, eps=0.5, alpha=0.1, steps=10, random_start=False)(x[:32], y[:32])
//! APGDAttack(model, norm="Linf", eps=EPS_LINF, n_iter=100, loss="ce", seed=s).perturb(x, y)  # s=0..2
//! AutoAttack(model, "Linf", eps=EPS_LINF, version="custom", attacks_to_run=["apgd-ce", "apgd-t", "square"])
//! ```
//!
//! Deterministic attacks must match to 1e-6; randomized ones must leave a robust count within
//! one point (of 128) of the range over auto-attack's three seeds.
use std::collections::HashMap;
use std::path::PathBuf;

use gfa_attacks::{Attack, attack};
use gfa_core::models::Arch;
use gfa_core::seed::SeededRng;
use gfa_core::{Classifier, ModelSpec};
use rand::SeedableRng;
use serde_json::json;
use tch::{Device, Kind, Tensor};

use super::common::{max_diff, spec};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn model() -> Classifier {
    let spec = ModelSpec { arch: Arch::Cnn, width: 0.125, ..ModelSpec::default() };
    let mut m = Classifier::new(&spec, Device::Cpu).unwrap();
    m.vs.load(fixture("attack_model.safetensors")).unwrap();
    m.freeze();
    m
}

fn golden() -> HashMap<String, Tensor> {
    Tensor::read_safetensors(fixture("attack_golden.safetensors")).unwrap().into_iter().collect()
}

fn data(g: &HashMap<String, Tensor>) -> (Tensor, Tensor) {
    (g["x_u8"].to_kind(Kind::Float) / 255.0, g["y"].shallow_clone())
}

fn exact(kind: serde_json::Value, key: &str, eps: f64) {
    let (m, g) = (model(), golden());
    let (x, y) = data(&g);
    let (x, y) = (x.narrow(0, 0, 32), y.narrow(0, 0, 32));
    let a = spec(kind).build().unwrap();
    let (adv, _) = a.perturb(&m, &x, &y, eps, &mut SeededRng::seed_from_u64(0)).unwrap();
    let d = max_diff(&adv, &g[key]);
    assert!(d <= 1e-6, "{key}: max |gfa - torchattacks| = {d}");
}

#[test]
fn fgsm_matches_torchattacks() {
    exact(json!({"kind": "fgsm", "preset": "torchattacks"}), "fgsm_linf", 8.0 / 255.0);
}

#[test]
fn pgd_linf_matches_torchattacks() {
    let s = json!({"kind": "pgd", "preset": "torchattacks", "random_start": false});
    exact(s, "pgd_linf", 8.0 / 255.0);
}

#[test]
fn pgd_l2_matches_torchattacks() {
    let s = json!({"kind": "pgd", "norm": "l2", "preset": "torchattacks", "random_start": false,
                   "step_size": 0.1});
    exact(s, "pgd_l2", 0.5);
}

fn robust_count(a: &dyn Attack, eps: f64) -> i64 {
    let (m, g) = (model(), golden());
    let (x, y) = data(&g);
    let out = attack::run(a, &m, &x, &y, eps, &mut SeededRng::seed_from_u64(0)).unwrap();
    out.success.logical_not().sum(Kind::Int64).int64_value(&[])
}

/// The fixture's budget `eps_linf` or `eps_l2`.
pub fn eps(key: &str) -> f64 {
    golden()[key].double_value(&[0])
}

fn within_seed_range(s: serde_json::Value, key: &str, eps: f64) {
    let g = golden();
    let counts: Vec<i64> = Vec::try_from(&g[key]).unwrap();
    let (lo, hi) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
    let got = robust_count(spec(s).build().unwrap().as_ref(), eps);
    assert!(
        got >= lo - 1 && got <= hi + 1,
        "{key}: gfa leaves {got}/128 robust, auto-attack {counts:?}"
    );
}

fn linf() -> f64 {
    eps("eps_linf")
}

fn l2() -> f64 {
    eps("eps_l2")
}

#[test]
fn apgd_ce_linf_matches_auto_attack() {
    within_seed_range(json!({"kind": "apgd-ce"}), "apgd_ce_linf_robust", linf());
}

#[test]
fn apgd_dlr_linf_matches_auto_attack() {
    within_seed_range(json!({"kind": "apgd-dlr"}), "apgd_dlr_linf_robust", linf());
}

#[test]
fn apgd_ce_l2_matches_auto_attack() {
    within_seed_range(json!({"kind": "apgd-ce", "norm": "l2"}), "apgd_ce_l2_robust", l2());
}

#[test]
fn apgd_dlr_l2_matches_auto_attack() {
    within_seed_range(json!({"kind": "apgd-dlr", "norm": "l2"}), "apgd_dlr_l2_robust", l2());
}

#[test]
fn apgd_t_linf_matches_auto_attack() {
    within_seed_range(json!({"kind": "apgd-t"}), "apgd_t_linf_robust", linf());
}

#[test]
fn square_linf_matches_auto_attack() {
    within_seed_range(json!({"kind": "square", "n_queries": 300}), "square_linf_robust", linf());
}

#[test]
fn square_l2_matches_auto_attack() {
    let s = json!({"kind": "square", "norm": "l2", "n_queries": 300});
    within_seed_range(s, "square_l2_robust", l2());
}

#[test]
fn autoattack_custom_matches_auto_attack() {
    let s = json!({"kind": "autoattack", "version": "custom", "attacks": [
        {"kind": "apgd-ce"}, {"kind": "apgd-t"}, {"kind": "square", "n_queries": 300}
    ]});
    within_seed_range(s, "aa_custom_linf_robust", linf());
}

/// The fixture model and its points, for other test modules.
pub fn model_and_data() -> (Classifier, Tensor, Tensor) {
    let g = golden();
    let (x, y) = data(&g);
    (model(), x, y)
}

/// APGD drops a point from the batch at its first fooling iterate: fooled points cost fewer
/// queries than the full run, robust ones the full `n_iter + 1`, and the early exit does not
/// change how many points survive (checked against auto-attack above).
#[test]
fn apgd_stops_attacking_fooled_points() {
    let (m, g) = (model(), golden());
    let (x, y) = data(&g);
    let a = spec(json!({"kind": "apgd-ce"})).build().unwrap();
    let out =
        attack::run(a.as_ref(), &m, &x, &y, linf(), &mut SeededRng::seed_from_u64(0)).unwrap();
    let clean_ok = tch::no_grad(|| m.logits(&x, false)).argmax(1, false).eq_tensor(&y);
    let q: Vec<i64> = Vec::try_from(&out.queries).unwrap();
    let won: Vec<bool> = Vec::try_from(&out.success).unwrap();
    let attacked: Vec<bool> = Vec::try_from(&clean_ok).unwrap();
    let full = 101;
    let mut early = 0;
    for i in 0..q.len() {
        if !attacked[i] {
            assert_eq!(q[i], 0, "point {i} is misclassified clean and must not be attacked");
        } else if won[i] {
            assert!((1..=full).contains(&q[i]), "point {i}: {} queries", q[i]);
            early += (q[i] < full) as usize;
        } else {
            assert_eq!(q[i], full, "robust point {i} must run all iterations");
        }
    }
    assert!(early > 0, "no fooled point left the batch early: {q:?}");
}
