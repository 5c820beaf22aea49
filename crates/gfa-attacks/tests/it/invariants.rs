//! Contract invariants for every fixed-budget attack: budget and box, eps = 0, determinism by
//! seed, and an untouched model and input.
use gfa_attacks::Norm;
use gfa_attacks::attack::{self, BUDGET_TOL};
use gfa_attacks::threat::per_sample_norm;
use gfa_core::seed::SeededRng;
use rand::SeedableRng;
use tch::Tensor;

use super::common::{batch, cheap_specs, max_diff, predicted, tiny_cnn};

fn eps_for(norm: Norm) -> f64 {
    if norm == Norm::L2 { 0.5 } else { 8.0 / 255.0 }
}

#[test]
fn budget_and_box_hold_and_output_validates() {
    let model = tiny_cnn(0);
    // Pixels touching 0 and 1 so that box clipping matters.
    let (x, _) = batch(6, 1, -0.2, 1.2);
    let x = x.clamp(0.0, 1.0);
    let y = predicted(&model, &x);
    for norm in [Norm::Linf, Norm::L2] {
        let eps = eps_for(norm);
        for spec in cheap_specs(norm) {
            let a = spec.build().unwrap();
            let mut rng = SeededRng::seed_from_u64(0);
            let out = attack::run(a.as_ref(), &model, &x, &y, eps, &mut rng)
                .unwrap_or_else(|e| panic!("{spec:?}: {e}"));
            let n = per_sample_norm(&(&out.x_adv - &x), norm).max().double_value(&[]);
            assert!(n <= eps + BUDGET_TOL, "{spec:?}: norm {n} > {eps}");
            assert!(out.x_adv.min().double_value(&[]) >= 0.0, "{spec:?}");
            assert!(out.x_adv.max().double_value(&[]) <= 1.0, "{spec:?}");
            assert_eq!(out.queries.size(), vec![6], "{spec:?}");
            // Success is a re-prediction: misclassified at x_adv.
            let fooled = predicted(&model, &out.x_adv).ne_tensor(&y);
            assert!(fooled.equal(&out.success), "{spec:?}");
        }
    }
}

#[test]
fn zero_budget_returns_the_input() {
    let model = tiny_cnn(1);
    let (x, y) = batch(4, 2, 0.0, 1.0);
    for norm in [Norm::Linf, Norm::L2] {
        for spec in cheap_specs(norm) {
            let a = spec.build().unwrap();
            let mut rng = SeededRng::seed_from_u64(0);
            let (x_adv, _) = a.perturb(&model, &x, &y, 0.0, &mut rng).unwrap();
            assert_eq!(max_diff(&x_adv, &x), 0.0, "{spec:?}");
        }
    }
}

#[test]
fn same_seed_same_output() {
    let model = tiny_cnn(2);
    let (x, y) = batch(4, 3, 0.0, 1.0);
    for norm in [Norm::Linf, Norm::L2] {
        for spec in cheap_specs(norm) {
            let a = spec.build().unwrap();
            let run = |seed| {
                let mut rng = SeededRng::seed_from_u64(seed);
                a.perturb(&model, &x, &y, eps_for(norm), &mut rng).unwrap()
            };
            let (a1, q1) = run(7);
            let (a2, q2) = run(7);
            assert!(a1.equal(&a2) && q1.equal(&q2), "{spec:?}");
        }
    }
}

#[test]
fn model_and_input_are_untouched() {
    let model = tiny_cnn(3);
    let (x, _) = batch(4, 4, 0.0, 1.0);
    let y = predicted(&model, &x);
    let x_before = x.copy();
    let params: Vec<(String, Tensor, bool)> =
        model.vs.variables().into_iter().map(|(k, v)| (k, v.copy(), v.requires_grad())).collect();
    let logits_before = tch::no_grad(|| model.logits(&x, false));
    for norm in [Norm::Linf, Norm::L2] {
        for spec in cheap_specs(norm) {
            let a = spec.build().unwrap();
            let mut rng = SeededRng::seed_from_u64(0);
            let _ = a.perturb(&model, &x, &y, eps_for(norm), &mut rng).unwrap();
            let vars = model.vs.variables();
            for (k, before, rg) in &params {
                let now = &vars[k];
                assert!(now.equal(before), "{spec:?} changed {k}");
                assert_eq!(now.requires_grad(), *rg, "{spec:?} changed requires_grad of {k}");
                assert!(!now.grad().defined(), "{spec:?} wrote a .grad into {k}");
            }
            assert!(x.equal(&x_before), "{spec:?} mutated the input");
            let logits = tch::no_grad(|| model.logits(&x, false));
            assert!(logits.equal(&logits_before), "{spec:?} changed the model's outputs");
        }
    }
}
