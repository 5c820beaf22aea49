//! Golden fixtures from torchattacks 3.5.1 and auto-attack (a392200), made by
//! `tests/fixtures/gen_attack_fixtures.py` on a tiny trained `cnn` (see the script's docstring):
//!
//! ```python
//! torchattacks.FGSM(model, eps=EPS_LINF)(x[:32], y[:32])                      # EPS_LINF = 32/255
//! torchattacks.PGD(model, eps=EPS_LINF, alpha=EPS_LINF/4, steps=10, random_start=False)(x[:32], y[:32])
//! torchattacks.PGDL2(model, eps=EPS_L2, alpha=EPS_L2/5, steps=10, random_start=False)(x[:32], y[:32])
//! APGDAttack(model, norm="Linf", eps=EPS_LINF, n_iter=100, loss="ce", seed=s).perturb(x, y)  # s=0..2
//! AutoAttack(model, "Linf", eps=EPS_LINF, version="custom", attacks_to_run=["apgd-ce", "apgd-t", "square"])
//! ```
//!
//! Every attack runs in float64 on both sides: the script converts the float32 model with
//! `.double()` and attacks `x_u8 / 255` in double (auto-attack too, its own float32 tensors
//! made double while it runs), and so do these tests (`vs.double()`). libtorch runs a different
//! vector code path on each CPU generation (`default`, `avx2`, `avx512`; `ATEN_CPU_CAPABILITY`
//! picks one), and the paths round differently, but in double precision by ~1e-16 relative per
//! operation: gfa agrees with torchattacks element-wise to [`EXACT_TOL`] on every path (see there
//! why). The randomized attacks must leave a robust count within one point (of 128) of the range
//! over auto-attack's three seeds (gfa draws its random numbers from its own generator, so only
//! the outcome can be compared).
use std::collections::HashMap;
use std::path::PathBuf;

use gfa_attacks::{Attack, attack};
use gfa_core::models::Arch;
use gfa_core::seed::SeededRng;
use gfa_core::{Classifier, ModelSpec};
use rand::SeedableRng;
use serde_json::json;
use tch::{Device, Kind, Tensor};

use super::common::spec;

/// Points of the deterministic fixtures (the first 32 of the 128).
const N_EXACT: i64 = 32;

/// Element-wise bound of gfa's deterministic attacks against torchattacks, both in float64.
/// Each pixel of the output is `x0` plus at most 10 steps, clipped to the eps-ball and the box;
/// a step is `alpha · sign(g)` (Linf) or `alpha · g/‖g‖` (L2). In double precision the input
/// gradient carries a relative rounding error of about (reduction length ≤ 1024, the `fc1`
/// input) × 1.1e-16 ≈ 1e-13 on any code path, provided the loss's own gradient is not rounding:
/// the cross-entropy's gradient in the true logit, `p_y − 1`, is computed from
/// `exp(log_softmax)` with an absolute error of ~2e-16, i.e. a relative one of 2e-16 / (1 − p_y),
/// which [`assert_conditioned`] keeps ≤ 2e-16 / [`MIN_MARGIN`] = 2e-13 on every fixture point (a
/// model classifying at 1 − p_y ~ 1e-12 made gradients of pure rounding that differed between
/// code paths: PGD-L2 outputs then differed by 4e-7 between `avx2` and `avx512`). So:
/// - a sign differs only where |g| is within ~1e-13 of zero relative to the gradient's scale
///   (none on these points; one such element would fail this test, by about `alpha`);
/// - an L2 step differs by ≤ 1e-13 · alpha (alpha ≤ 1.2) per step, ≤ 2e-12 after 10 steps
///   (an iterate moved by δ moves the next gradient's direction by ~δ · ‖H‖/‖g‖, which the
///   conditioned loss keeps O(1));
/// - `x ± alpha`, the clamps and `x_u8 / 255` round the same way (correctly rounded IEEE).
///
/// So agreement to 1e-12 is expected and 1e-9 leaves a factor 1000, while a wrong attack moves
/// elements by a step's fraction (step × 0.9: 0.1 · alpha ≥ 3e-3) or more.
const EXACT_TOL: f64 = 1e-9;

/// The least `1 − p_y` (probability of the true class) the fixture model leaves on a fixture
/// point, clean or attacked (the script trains it with label smoothing 0.1, which keeps it near
/// 0.05 at least, and checks the same bound).
const MIN_MARGIN: f64 = 1e-3;

/// Every point of `x` is classified with `1 − p_y ≥ MIN_MARGIN`, so that the float64 gradients
/// of the cross-entropy are not rounding (see [`EXACT_TOL`]).
fn assert_conditioned(m: &Classifier, x: &Tensor, y: &Tensor, what: &str) {
    let p = tch::no_grad(|| m.logits(x, false)).softmax(1, Kind::Double);
    let one_minus_p_y = p.gather(1, &y.unsqueeze(1), false).neg() + 1.0;
    let margin = one_minus_p_y.min().double_value(&[]);
    assert!(margin >= MIN_MARGIN, "{what}: a point has 1 - p_y = {margin:e} < {MIN_MARGIN:e}");
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The fixture model in float32 (its weights as trained), or converted to float64 (exactly).
fn model_of(kind: Kind) -> Classifier {
    let spec = ModelSpec { arch: Arch::Cnn, width: 0.125, ..ModelSpec::default() };
    let mut m = Classifier::new(&spec, Device::Cpu).unwrap();
    m.vs.load(fixture("attack_model.safetensors")).unwrap();
    if kind == Kind::Double {
        m.vs.double();
    }
    m.freeze();
    m
}

/// The model the golden tests compare: float64, as the fixtures were made.
fn model() -> Classifier {
    model_of(Kind::Double)
}

fn golden() -> HashMap<String, Tensor> {
    Tensor::read_safetensors(fixture("attack_golden.safetensors")).unwrap().into_iter().collect()
}

/// The 128 points `x_u8 / 255` in `kind` and their labels.
fn data_of(g: &HashMap<String, Tensor>, kind: Kind) -> (Tensor, Tensor) {
    (g["x_u8"].to_kind(kind) / 255.0, g["y"].shallow_clone())
}

fn data(g: &HashMap<String, Tensor>) -> (Tensor, Tensor) {
    data_of(g, Kind::Double)
}

/// gfa's output of a deterministic attack on the 32 fixture points, with the model, the points
/// and the fixture.
fn exact_run(
    kind: serde_json::Value,
    eps: f64,
) -> (Tensor, Classifier, Tensor, Tensor, HashMap<String, Tensor>) {
    let (m, g) = (model(), golden());
    let (x, y) = data(&g);
    let (x, y) = (x.narrow(0, 0, N_EXACT), y.narrow(0, 0, N_EXACT));
    let a = spec(kind).build().unwrap();
    let (adv, _) = a.perturb(&m, &x, &y, eps, &mut SeededRng::seed_from_u64(0)).unwrap();
    (adv, m, x, y, g)
}

/// gfa's deterministic attack against torchattacks' output `key`: within [`EXACT_TOL`] at every
/// element, the points clean and attacked classified away from certainty (the bound's premise),
/// and the fixture fools some points but not all (else it would check little).
fn exact(kind: serde_json::Value, key: &str, eps: f64) {
    let (adv, m, x, y, g) = exact_run(kind, eps);
    let reference = &g[key];
    assert_eq!((adv.kind(), reference.kind()), (Kind::Double, Kind::Double));
    assert_conditioned(&m, &x, &y, "clean points");
    assert_conditioned(&m, reference, &y, key);
    let max = (&adv - reference).abs().max().double_value(&[]);
    println!("{key}: max |gfa - torchattacks| = {max:e}");
    assert!(max <= EXACT_TOL, "{key}: max |gfa - torchattacks| = {max:e} > {EXACT_TOL:e}");
    let fooled = tch::no_grad(|| m.logits(reference, false)).argmax(1, false).ne_tensor(&y);
    let n = fooled.sum(Kind::Int64).int64_value(&[]);
    assert!(0 < n && n < N_EXACT, "{key}: the fixture fools {n} of {N_EXACT} points");
}

#[test]
fn fgsm_matches_torchattacks() {
    exact(json!({"kind": "fgsm", "preset": "torchattacks"}), "fgsm_linf", linf());
}

#[test]
fn pgd_linf_matches_torchattacks() {
    let eps = linf();
    let s = json!({"kind": "pgd", "preset": "torchattacks", "random_start": false,
                   "step_size": eps / 4.0});
    exact(s, "pgd_linf", eps);
}

#[test]
fn pgd_l2_matches_torchattacks() {
    let eps = l2();
    let s = json!({"kind": "pgd", "norm": "l2", "preset": "torchattacks", "random_start": false,
                   "step_size": eps / 5.0});
    exact(s, "pgd_l2", eps);
}

/// gfa's robust count over the 128 points, in float64 as auto-attack's counts were made.
fn robust_count(a: &dyn Attack, eps: f64) -> i64 {
    let (m, x, y) = model_and_data_of(Kind::Double);
    let out = attack::run(a, &m, &x, &y, eps, &mut SeededRng::seed_from_u64(0)).unwrap();
    out.success.logical_not().sum(Kind::Int64).int64_value(&[])
}

/// A budget of the fixture: `eps_linf`, `eps_l2`, `eps_square_linf` or `eps_square_l2`.
pub fn eps(key: &str) -> f64 {
    golden()[key].double_value(&[0])
}

fn within_seed_range(s: serde_json::Value, key: &str, eps: f64) {
    let g = golden();
    let counts: Vec<i64> = Vec::try_from(&g[key]).unwrap();
    let (lo, hi) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
    // An attack that fools nothing (128) or everything clean must fall outside the range.
    assert!(hi + 1 < 128 && lo > 1, "{key}: auto-attack's counts {counts:?} check little");
    let got = robust_count(spec(s).build().unwrap().as_ref(), eps);
    println!("{key}: gfa leaves {got}/128 robust, auto-attack {counts:?}");
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

/// Square runs at budgets of its own (`eps_square_*`): with 300 queries it fools few points at
/// PGD's budgets, and a count of 128 there would not tell a working Square from none.
#[test]
fn square_linf_matches_auto_attack() {
    let s = json!({"kind": "square", "n_queries": 300});
    within_seed_range(s, "square_linf_robust", eps("eps_square_linf"));
}

#[test]
fn square_l2_matches_auto_attack() {
    let s = json!({"kind": "square", "norm": "l2", "n_queries": 300});
    within_seed_range(s, "square_l2_robust", eps("eps_square_l2"));
}

#[test]
fn autoattack_custom_matches_auto_attack() {
    let s = json!({"kind": "autoattack", "version": "custom", "attacks": [
        {"kind": "apgd-ce"}, {"kind": "apgd-t"}, {"kind": "square", "n_queries": 300}
    ]});
    within_seed_range(s, "aa_custom_linf_robust", linf());
}

/// The fixture model and its points in float32 (gfa's default dtype), for other test modules.
pub fn model_and_data() -> (Classifier, Tensor, Tensor) {
    model_and_data_of(Kind::Float)
}

/// The fixture model and its 128 points in `kind`.
fn model_and_data_of(kind: Kind) -> (Classifier, Tensor, Tensor) {
    let g = golden();
    let (x, y) = data_of(&g, kind);
    (model_of(kind), x, y)
}

/// APGD drops a point from the batch at its first fooling iterate: fooled points cost fewer
/// queries than the full run, robust ones the full `n_iter + 1`, and the early exit does not
/// change how many points survive (checked against auto-attack above).
#[test]
fn apgd_stops_attacking_fooled_points() {
    let (m, x, y) = model_and_data();
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
