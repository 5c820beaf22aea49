//! Robust evaluation: clean accuracy, individual vs cumulative, eps lists, subsets, and the
//! thresholding of minimum-norm attacks.
use gfa_attacks::attack::{Attack, Family};
use gfa_attacks::eval::{
    EvalOptions, Mode, NoStore, Points, Stage, Subset, SuiteEntry, evaluate, evaluate_suite,
};
use gfa_attacks::{Eps, Norm, Result};
use gfa_core::Classifier;
use gfa_core::seed::SeededRng;
use serde_json::json;
use tch::{Kind, Tensor};

use super::common::{batch, linear, predicted, spec};
use super::golden_data;

/// Half the fixture's Linf budget and the budget itself.
fn eps_list() -> Vec<Eps> {
    let e = super::golden::eps("eps_linf");
    vec![Eps::new(e / 2.0), Eps::new(e)]
}

#[test]
fn cumulative_is_the_worst_case_of_the_individual_attacks() {
    let (m, x, y) = golden_data();
    let (x, y) = (x.narrow(0, 0, 96), y.narrow(0, 0, 96));
    let suite = vec![
        spec(json!({"kind": "fgsm"})),
        spec(json!({"kind": "pgd", "steps": 5, "random_start": false})),
        spec(json!({"kind": "apgd-ce", "n_iter": 10})),
    ];
    let opts = EvalOptions { batch_size: 40, ..EvalOptions::default() };
    let (mut calls, mut cumulative_runs) = (0, 0);
    let recs = evaluate(&m, Points::all(&x, &y), &suite, &eps_list(), &opts, &mut |p| {
        calls += 1;
        cumulative_runs += usize::from(p.stage == Stage::Cumulative);
    })
    .unwrap();
    assert!(calls > 0);
    // The cumulative pass reuses the individual runs' per-point results: no attack runs twice.
    assert_eq!(cumulative_runs, 0);
    // clean + 2 eps x 3 attacks x 2 modes.
    assert_eq!(recs.len(), 1 + 2 * 3 * 2);
    let clean = tch::no_grad(|| m.logits(&x, false)).argmax(1, false).eq_tensor(&y);
    let clean = clean.to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
    assert!((recs[0].robust_acc - clean).abs() < 1e-12 && recs[0].mode == Mode::Clean);
    for e in eps_list() {
        let of = |mode| {
            recs.iter().filter(|r| r.mode == mode && r.eps_text == e.text).collect::<Vec<_>>()
        };
        let (ind, cum) = (of(Mode::Individual), of(Mode::Cumulative));
        assert_eq!(ind.len(), 3);
        for (i, c) in cum.iter().enumerate() {
            assert!(c.robust_acc <= clean);
            if i > 0 {
                assert!(c.robust_acc <= cum[i - 1].robust_acc, "cumulative must not rise");
            }
            // Built from the individual results: never above any of them.
            for r in ind.iter().take(i + 1) {
                assert!(
                    c.robust_acc <= r.robust_acc + 1e-12,
                    "{} after {}: {} > {}",
                    e.text,
                    r.attack,
                    c.robust_acc,
                    r.robust_acc
                );
            }
            assert_eq!(c.n, 96);
            assert_eq!(c.eps, Some(e.value));
        }
    }
}

#[test]
fn all_correct_subset_uses_the_mask() {
    let (m, x, y) = golden_data();
    let (x, y) = (x.narrow(0, 0, 20), y.narrow(0, 0, 20));
    let mask = Tensor::arange(20, (Kind::Int64, tch::Device::Cpu)).remainder(2).eq(0);
    let opts = EvalOptions { subset: Subset::AllCorrect, batch_size: 8, ..EvalOptions::default() };
    let suite = vec![spec(json!({"kind": "fgsm"}))];
    let recs = evaluate(
        &m,
        Points { x: &x, y: &y, all_correct: Some(&mask) },
        &suite,
        &eps_list(),
        &opts,
        &mut |_| {},
    )
    .unwrap();
    assert!(recs.iter().all(|r| r.n == 10));
    let err =
        evaluate(&m, Points::all(&x, &y), &suite, &eps_list(), &opts, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("all_correct"), "{err}");
}

/// A minimum-norm attack with a closed form on a 2-class linear model: the boundary point along
/// `sign(w_k - w_y)` at 1.001 times the Linf distance `d*`.
#[derive(Debug)]
struct ExactBoundary;

impl Attack for ExactBoundary {
    fn name(&self) -> &'static str {
        "exact-boundary"
    }
    fn family(&self) -> Family {
        Family::MinimumNorm
    }
    fn norm(&self) -> Norm {
        Norm::Linf
    }
    fn config_json(&self) -> String {
        "{}".into()
    }
    fn perturb(
        &self,
        m: &Classifier,
        x: &Tensor,
        y: &Tensor,
        _eps: f64,
        _r: &mut SeededRng,
    ) -> Result<(Tensor, Tensor)> {
        let (d, dir) = boundary(m, x, y);
        let x_adv = (x + dir * d.view([-1, 1, 1, 1]) * 1.001).clamp(0.0, 1.0);
        Ok((x_adv, Tensor::ones([x.size()[0]], (Kind::Int64, x.device()))))
    }
}

/// Linf distance to the boundary and the direction `sign(2 (w_other - w_y))`.
fn boundary(m: &Classifier, x: &Tensor, y: &Tensor) -> (Tensor, Tensor) {
    let w = m.vs.variables()["fc.weight"].detach();
    let z = tch::no_grad(|| m.logits(x, false));
    let margin = (z.select(1, 0) - z.select(1, 1)).abs();
    let dw = (w.get(1) - w.get(0)) * 2.0; // gradient of z_1 - z_0
    let sign_y = (y.to_kind(Kind::Float) * 2.0 - 1.0).neg(); // y=1 → move towards class 0
    let dir = dw.sign().view([1, 3, 32, 32]) * sign_y.view([-1, 1, 1, 1]);
    (margin / dw.abs().sum(Kind::Float), dir)
}

#[test]
fn minimum_norm_attacks_are_thresholded_at_every_eps() {
    let m = linear(5, 2);
    let (x, _) = batch(30, 5, 0.4, 0.6);
    let y = predicted(&m, &x);
    let (d, _) = boundary(&m, &x, &y);
    let found = &d * 1.001;
    // Budgets spread over the distances.
    let (lo, hi) = (found.min().double_value(&[]), found.max().double_value(&[]));
    let eps: Vec<Eps> = [0.25, 0.5, 0.75].iter().map(|f| Eps::new(lo + (hi - lo) * f)).collect();
    let suite = vec![SuiteEntry {
        name: "exact".into(),
        attack: Box::new(ExactBoundary),
        preset: "reference".into(),
        eps: eps.clone(),
    }];
    let opts = EvalOptions { batch_size: 7, cumulative: false, ..EvalOptions::default() };
    let points = Points::all(&x, &y);
    let recs = evaluate_suite(&m, points, &suite, &opts, &mut NoStore, &mut |_| {}).unwrap();
    let mut sorted: Vec<f64> = Vec::try_from(&found).unwrap();
    sorted.sort_by(f64::total_cmp);
    let median = (sorted[14] + sorted[15]) / 2.0;
    for (r, e) in recs.iter().skip(1).zip(&eps) {
        // The evaluation thresholds the norm measured on the float32 adversarial point, which
        // differs from `found` by ≤ 1.2e-7 (below); no distance lies that close to a budget, so
        // both count the same points on every code path.
        let gap = (&found - e.value).abs().min().double_value(&[]);
        assert!(gap > 1e-6, "a distance lies within {gap:e} of eps {}", e.text);
        let fooled = found.le(e.value).sum(Kind::Int64).int64_value(&[]);
        assert_eq!(r.robust_acc, (30 - fooled) as f64 / 30.0, "eps {}", e.text);
        assert_eq!(r.success_rate, Some(fooled as f64 / 30.0));
        // Per point: the robust flags count the robust points, every point's found norm is kept
        // (the exact boundary attack fools each at some size), positions are the input's. The
        // kept norm is measured on the float32 adversarial point: within 1e-6 of the distance
        // (`x + d · dir` and `x_adv − x` round by ≤ 6e-8 each near 0.5, correctly rounded on
        // every code path: ≤ 1.2e-7), as for the median above.
        assert_eq!(r.robust.iter().filter(|&&b| b).count() as i64, 30 - fooled);
        assert_eq!(r.index, (0..30).collect::<Vec<i64>>());
        let kept: Vec<f64> = Vec::try_from(&found).unwrap();
        assert_eq!(r.point_norm.len(), 30);
        for (got, want) in r.point_norm.iter().zip(&kept) {
            assert!((f64::from(*got) - want).abs() < 1e-6, "{got} vs {want}");
        }
        // Norm statistics are over every successful point of the single run.
        assert!((r.median_norm.unwrap() - median).abs() < 1e-6);
        assert_eq!(r.family, Some(Family::MinimumNorm));
    }
}

/// A model whose logits are NaN (a NaN weight) gets no accuracy at all: the evaluation stops
/// at the clean pass with an error, instead of reporting clean = robust = 9.4 % and an attack
/// success of 0 %, which looked like a robust model.
#[test]
fn non_finite_logits_give_no_accuracy() {
    let (m, x, y) = golden_data();
    let (x, y) = (x.narrow(0, 0, 8), y.narrow(0, 0, 8));
    let suite = vec![spec(json!({"kind": "fgsm"}))];
    let opts = EvalOptions { batch_size: 5, ..EvalOptions::default() };
    // The same model, finite: it evaluates.
    evaluate(&m, Points::all(&x, &y), &suite, &eps_list(), &opts, &mut |_| {}).unwrap();
    let nan = m;
    for (name, var) in nan.vs.variables() {
        if name.ends_with("weight") {
            let _ = tch::no_grad(|| var.get(0).fill_(f64::NAN));
            break;
        }
    }
    let err = evaluate(&nan, Points::all(&x, &y), &suite, &eps_list(), &opts, &mut |_| {})
        .expect_err("NaN logits were evaluated");
    let msg = err.to_string();
    assert!(msg.contains("NaN or infinite logits on 5 of 5 clean points (batch 0)"), "{msg}");
    assert!(msg.contains("weights") && msg.contains("normalization"), "{msg}");
}
