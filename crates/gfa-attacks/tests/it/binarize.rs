//! The binarization test (`gfa_attacks::binarize`): a full-strength attack on a trained standard
//! model passes it, the same attack weakened to one tiny step fails it, the model comes back
//! untouched, a seed gives the same outcomes, and every input it cannot run on is refused before
//! any work.
use gfa_attacks::binarize::{
    BinarizeOptions, Outcome, PointOutcome, binarization_test, check, pass_count,
};
use gfa_attacks::{AttackSpec, Norm, Preset, attack};
use gfa_core::Classifier;
use gfa_core::seed::SeededRng;
use rand::SeedableRng;
use serde_json::json;
use tch::{Kind, Tensor};

use super::common::{linear, spec};

/// Points of the golden fixture tested (its trained `cnn`, width 0.125: 32 features).
const POINTS: i64 = 12;

/// The default samples (inner: 31, as many as the 32 features separate, with the one boundary
/// sample) and 20 validation samples per class, to keep the test to seconds.
fn options() -> BinarizeOptions {
    BinarizeOptions { validation: 20, ..BinarizeOptions::default() }
}

/// The test of `attack` on the fixture's first `points` points; the model is handed back.
fn run(
    model: Classifier,
    attack: serde_json::Value,
    seed: u64,
    points: i64,
) -> (Vec<PointOutcome>, Classifier) {
    let (_, x, y) = super::golden_data();
    let (x, y) = (x.narrow(0, 0, points), y.narrow(0, 0, points));
    binarization_test(model, &x, &y, &spec(attack), &options(), seed, &mut |_, _| {}).unwrap()
}

fn rate(out: &[PointOutcome]) -> f64 {
    let (passed, valid) = pass_count(out);
    passed as f64 / valid.max(1) as f64
}

/// The fixture model is a standard (undefended) network on which PGD works, so PGD-20 must find
/// the known adversarial example at (nearly) every point: a fail share of at most 10 %, the
/// threshold of gfa-exp's verdict. One step of 1e-4 from the clean point, without a random
/// start, cannot cross a boundary that the known example barely crosses at ε = 8/255: its pass
/// rate drops below that threshold and below PGD's. The outcome-level bounds hold on every CPU
/// path: a point flips only if an attack lands within float32 rounding of the threshold.
#[test]
fn full_pgd_passes_and_a_one_tiny_step_attack_fails() {
    let (model, _, _) = super::golden_data();
    let before: Vec<(String, Tensor)> =
        model.vs.variables().into_iter().map(|(k, v)| (k, v.copy())).collect();
    let (strong, model) = run(model, json!({"kind": "pgd"}), 0, POINTS);
    let weak_attack = json!({"kind": "pgd", "steps": 1, "step_size": 1e-4, "random_start": false});
    let (weak, model) = run(model, weak_attack, 0, POINTS);
    let (passed, valid) = pass_count(&strong);
    assert!(valid as i64 >= POINTS - 2, "most heads separate their samples: {strong:?}");
    assert!(10 * (valid - passed) <= valid, "PGD-20 passes: {passed}/{valid}; {strong:?}");
    let (w_passed, w_valid) = pass_count(&weak);
    assert!(10 * (w_valid - w_passed) > w_valid, "weakened: {w_passed}/{w_valid}; {weak:?}");
    assert!(rate(&weak) < rate(&strong));
    println!("passed/valid: PGD-20 {passed}/{valid}, one step of 1e-4 {w_passed}/{w_valid}");
    for o in strong.iter().filter(|o| o.outcome != Outcome::Fail) {
        if let Outcome::Invalid(why) = &o.outcome {
            assert!(!why.is_empty());
            continue;
        }
        let norm = o.adv_norm.unwrap();
        assert!(norm <= 8.0 / 255.0 + 1e-5, "within the budget: {o:?}");
        assert!(o.train_acc == 1.0 && o.val_inner_acc.is_some() && o.inner == 31, "{o:?}");
    }
    // The model comes back as it went in, bit for bit (the same tensors, never written).
    for (k, v) in model.vs.variables() {
        let old = &before.iter().find(|(n, _)| *n == k).unwrap().1;
        assert!(v.equal(old), "{k} changed");
    }
}

/// The L2 threat model: PGD-L2 at 0.5 (its reference preset) passes at the valid points too.
#[test]
fn pgd_l2_passes_on_the_l2_sphere() {
    let (model, _, _) = super::golden_data();
    let (_, x, y) = super::golden_data();
    let (x, y) = (x.narrow(0, 0, 4), y.narrow(0, 0, 4));
    let attack = spec(json!({"kind": "pgd", "norm": "l2"}));
    let opts = BinarizeOptions { eps: 0.5, ..options() };
    let (out, _) = binarization_test(model, &x, &y, &attack, &opts, 0, &mut |_, _| {}).unwrap();
    let (passed, valid) = pass_count(&out);
    assert!(valid >= 3 && passed == valid, "{out:?}");
    assert!(out.iter().filter_map(|o| o.adv_norm).all(|n| n <= 0.5 + 1e-5), "{out:?}");
}

/// Everything random comes from the seed: the same seed gives the same outcomes and heads (bit
/// for bit: the same kernels in the same process), another seed other samples.
#[test]
fn a_seed_gives_the_same_outcomes() {
    let (model, _, _) = super::golden_data();
    let attack = json!({"kind": "pgd", "steps": 5});
    let (a, model) = run(model, attack.clone(), 3, 4);
    let (b, model) = run(model, attack.clone(), 3, 4);
    let (c, _) = run(model, attack, 4, 4);
    let strip = |v: &[PointOutcome]| -> Vec<(Outcome, f64, Option<f64>)> {
        v.iter().map(|o| (o.outcome.clone(), o.train_acc, o.val_boundary_acc)).collect()
    };
    assert_eq!(strip(&a), strip(&b));
    assert_ne!(strip(&a), strip(&c), "another seed draws other samples");
}

/// What cannot be tested is refused by `check` (and so by the test) before any work: a model
/// without a feature tap, ε = 0, attacks that need more than two classes or a surrogate, L1.
#[test]
fn bad_inputs_are_refused_before_any_work() {
    let (model, _, _) = super::golden_data();
    let pgd = spec(json!({"kind": "pgd"}));
    let opts = BinarizeOptions::default();
    let err = |m: &Classifier, s: &AttackSpec, o: &BinarizeOptions| {
        check(m, s, o).unwrap_err().to_string()
    };
    let e = err(&linear(0, 10), &pgd, &opts);
    assert!(e.contains("no tap after `input`") && e.contains("linear"), "{e}");
    let e = err(&model, &pgd, &BinarizeOptions { eps: 0.0, ..opts.clone() });
    assert!(e.contains("eps > 0"), "{e}");
    for (kind, need) in [("apgd-dlr", "3"), ("apgd-t", "4"), ("autoattack", "4")] {
        let e = err(&model, &spec(json!({ "kind": kind })), &opts);
        assert!(e.contains(&format!("at least {need} classes")), "{kind}: {e}");
    }
    let e = err(&model, &spec(json!({"kind": "transfer"})), &opts);
    assert!(e.contains("surrogate"), "{e}");
    let e = err(&model, &spec(json!({"kind": "noise", "norm": "l1"})), &opts);
    assert!(e.contains("L∞ and L2"), "{e}");
    let e = err(&model, &pgd, &BinarizeOptions { steps: 0, ..opts.clone() });
    assert!(e.contains("steps"), "{e}");
    // The test itself refuses the same way, with the model given back by nobody: it never ran.
    let (x, y) = (
        Tensor::zeros([1, 3, 32, 32], (Kind::Float, tch::Device::Cpu)),
        Tensor::zeros([1], (Kind::Int64, tch::Device::Cpu)),
    );
    let r = binarization_test(linear(0, 10), &x, &y, &pgd, &opts, 0, &mut |_, _| panic!("work"));
    assert!(r.is_err());
}

/// `min_classes` says which attacks run on a two-class model: each registered kind (transfer
/// aside: it needs a surrogate) either runs on one point of a two-class linear model, at a
/// budget too small to fool it, or fails, as `min_classes` predicts.
#[test]
fn min_classes_says_which_attacks_run_on_two_classes() {
    let model = linear(1, 2);
    let mut rng = SeededRng::seed_from_u64(0);
    let x = gfa_attacks::threat::uniform(&[1, 3, 32, 32], &mut rng, tch::Device::Cpu);
    let y = super::common::predicted(&model, &x);
    for info in gfa_attacks::registry::list().into_iter().filter(|i| i.kind != "transfer") {
        let norm = *info.norms.iter().find(|n| **n != Norm::L1).unwrap_or(&info.norms[0]);
        let mut v =
            serde_json::to_value(AttackSpec::preset(info.kind, Preset::Reference, norm).unwrap())
                .unwrap();
        if let Some(key) = info.facts.cost_key {
            v[key] = json!(2); // a cheap run: two iterations, queries or samples
        }
        let s = AttackSpec::from_value(v).unwrap();
        // A budget too small to fool the model: every component of AutoAttack must run.
        let eps = 1e-6;
        let ran = attack::run(s.build().unwrap().as_ref(), &model, &x, &y, eps, &mut rng);
        assert_eq!(ran.is_ok(), s.min_classes() <= 2, "{}: {:?}", info.kind, ran.err());
    }
}
