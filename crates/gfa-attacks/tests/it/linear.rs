//! Closed-form checks on the `linear` model: `z = W (x - 0.5) / 0.5 + b`, so the input gradient of
//! CE is `2 (softmax(z) - e_y) W` and the distance to the boundary between classes y and k is
//! `(z_y - z_k) / ‖2 (w_y - w_k)‖` in the dual norm (docs/attacks.md §5.2).
use gfa_attacks::{Attack, Norm, attack};
use gfa_core::Classifier;
use gfa_core::seed::SeededRng;
use rand::SeedableRng;
use serde_json::json;
use tch::{Kind, Tensor};

use super::common::{batch, linear, max_diff, predicted, spec};

fn weight(model: &Classifier) -> Tensor {
    model.vs.variables()["fc.weight"].detach()
}

/// The CE input gradient, computed by hand from the logits.
fn analytic_grad(model: &Classifier, x: &Tensor, y: &Tensor) -> Tensor {
    let z = tch::no_grad(|| model.logits(x, false));
    let p = z.softmax(1, z.kind());
    let onehot = p.zeros_like().scatter_value(1, &y.unsqueeze(1), 1.0);
    ((p - onehot).matmul(&weight(model)) * 2.0).view([-1, 3, 32, 32])
}

/// In float64 (model and points converted exactly): autograd's gradient and the hand-made one
/// are sums of 10 products in another order, so they differ by at most ~10 · 1.1e-16 of the
/// largest term; a coordinate whose |g| is within 1e-12 of the largest may take either sign
/// (at most 1 % may be so excluded, checked below); every other one must give the same
/// `clamp(x ± eps)`, which both sides round alike, so 1e-12 is ample.
#[test]
fn fgsm_is_exact_on_a_linear_model() {
    let mut model = linear(0, 10);
    model.vs.double();
    let (x, y) = batch(8, 0, 0.2, 0.8);
    let x = x.to_kind(Kind::Double);
    let eps = 8.0 / 255.0;
    let g = analytic_grad(&model, &x, &y);
    let want = (&x + g.sign() * eps).clamp(0.0, 1.0);
    let a = spec(json!({"kind": "fgsm"})).build().unwrap();
    let (got, _) = a.perturb(&model, &x, &y, eps, &mut SeededRng::seed_from_u64(0)).unwrap();
    let clear = g.abs().gt(1e-12 * g.abs().max().double_value(&[]));
    let diff = (&got - &want).abs().masked_select(&clear).max().double_value(&[]);
    assert!(diff < 1e-12, "FGSM differs from x + eps sign(g): {diff}");
    assert!(clear.to_kind(Kind::Double).mean(Kind::Double).double_value(&[]) > 0.99);
}

/// In float64: the step `eps · g/‖g‖` (eps = 0.3) rounds by ~3072 · 1.1e-16 relative (the
/// norm's sum) on either side, far below 1e-12; a step along another direction misses by O(eps).
#[test]
fn pgd_l2_steps_along_the_analytic_gradient() {
    let mut model = linear(1, 10);
    model.vs.double();
    let (x, y) = batch(8, 1, 0.3, 0.7);
    let x = x.to_kind(Kind::Double);
    let eps = 0.3;
    let g = analytic_grad(&model, &x, &y);
    let gn = g.flatten(1, -1).norm_scalaropt_dim(2, [1], false).view([-1, 1, 1, 1]);
    let want = &x + &g / gn * eps;
    let a = spec(json!({"kind": "pgd", "norm": "l2", "steps": 1, "step_size": eps,
                        "random_start": false, "keep": "last"}))
    .build()
    .unwrap();
    let (got, _) = a.perturb(&model, &x, &y, eps, &mut SeededRng::seed_from_u64(0)).unwrap();
    let d = max_diff(&got, &want);
    assert!(d < 1e-12, "PGD-L2 step is off the analytic direction by {d}");
}

/// Per-sample distance to the decision boundary of a 2-class linear model, in `norm`.
fn boundary_distance(model: &Classifier, x: &Tensor, y: &Tensor, norm: Norm) -> Tensor {
    let z = tch::no_grad(|| model.logits(x, false));
    let margin = (z.select(1, 0) - z.select(1, 1)).abs();
    let w = weight(model);
    let dw = (w.get(0) - w.get(1)) * 2.0;
    let dual = match norm {
        Norm::Linf => dw.abs().sum(Kind::Float),
        _ => dw.norm(),
    };
    let _ = y;
    margin / dual
}

#[test]
fn attacks_cross_the_boundary_just_beyond_its_distance_and_never_before() {
    let model = linear(2, 2);
    let (x, _) = batch(6, 2, 0.4, 0.6);
    let y = predicted(&model, &x);
    let cases = [
        (Norm::Linf, json!({"kind": "fgsm"})),
        (Norm::Linf, json!({"kind": "pgd", "steps": 10})),
        (Norm::Linf, json!({"kind": "apgd-ce", "n_iter": 20})),
        (Norm::L2, json!({"kind": "pgd", "norm": "l2", "steps": 40})),
        (Norm::L2, json!({"kind": "apgd-ce", "norm": "l2", "n_iter": 50})),
    ];
    for (norm, s) in cases {
        let a: Box<dyn Attack> = spec(s.clone()).build().unwrap();
        let d = boundary_distance(&model, &x, &y, norm);
        for i in 0..x.size()[0] {
            let (xi, yi) = (x.narrow(0, i, 1), y.narrow(0, i, 1));
            let di = d.double_value(&[i]);
            for (factor, expect) in [(1.01, true), (0.99, false)] {
                let mut rng = SeededRng::seed_from_u64(0);
                let out = attack::run(a.as_ref(), &model, &xi, &yi, di * factor, &mut rng).unwrap();
                let ok = out.success.int64_value(&[0]) != 0;
                assert_eq!(ok, expect, "{s} at {factor} x d* = {}", di * factor);
            }
        }
    }
}
