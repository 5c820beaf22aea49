//! TRADES' loss and GradAlign's penalty against PyTorch.
//!
//! Fixtures from `tests/fixtures/gen_method_fixtures.py` (PyTorch 2.11): the `cnn` twin of
//! width 0.0625 (weights doubled), a batch x, y, an adversarial batch x′ and a noise η, and
//!
//! ```python
//! kl = F.kl_div(F.log_softmax(f(x_adv), 1), F.softmax(f(x), 1), reduction="sum") / N
//! total = F.cross_entropy(f(x), y) + 6 * kl                        # TRADES, total.backward()
//! g1 = grad(CE(f(x)), x).detach(); g2 = grad(CE(f(x + eta)), x + eta, create_graph=True)
//! penalty = 1 - cos(g1, g2)[both non-zero].mean()                  # GradAlign, penalty.backward()
//! ```
//!
//! Both sides compute in float64 (float32 weights and batches converted exactly), so the values
//! agree to [`GOLDEN_TOL`] on every libtorch CPU code path.

use gfa_core::method::gradalign::penalty as gradalign_penalty;
use gfa_core::method::trades::kl as trades_kl;
use gfa_core::{Classifier, TaskLoss};
use tch::{Kind, Tensor};

/// Relative bound of each value (to itself) and each parameter gradient (to its largest element)
/// against PyTorch, both in float64: another summation order rounds a sum of k terms by at most
/// k · 1.1e-16 of their magnitudes, k ≤ 1024 (this `cnn`'s widest reduction), a forward and two
/// backward passes deep (GradAlign differentiates an input gradient), ≤ 4e-13 before the
/// cosine's and the KL's divisions, which can lift it where the cosine or the KL is small (KL is
/// 1.3e-2 here). 1e-9 leaves a factor above 1000; a wrong β or a missing term moves them by 1e-2.
const GOLDEN_TOL: f64 = 1e-9;

/// The twin in float64 (the float32 weights converted exactly).
fn twin() -> Classifier {
    let mut model = super::cnn_twin("method_model.safetensors");
    model.vs.double();
    model
}

struct Cases(Vec<(String, Tensor)>);

impl Cases {
    fn load() -> Self {
        Self(Tensor::read_safetensors(super::fixture("method_cases.safetensors")).unwrap())
    }
    /// The fixture's tensor `k`, floats in float64.
    fn get(&self, k: &str) -> Tensor {
        let t = &self.0.iter().find(|(n, _)| n == k).unwrap_or_else(|| panic!("{k}")).1;
        if t.is_floating_point() { t.to_kind(Kind::Double) } else { t.shallow_clone() }
    }
    fn scalar(&self, k: &str) -> f64 {
        self.get(k).double_value(&[0])
    }
}

fn assert_rel(got: f64, want: f64, tol: f64, what: &str) {
    println!("{what}: relative difference {:e}", (got - want).abs() / want.abs());
    assert!((got - want).abs() <= tol * want.abs(), "{what}: {got} vs {want}");
}

/// Every parameter's `.grad` equals the fixture's `{prefix}/grad/{name}` within [`GOLDEN_TOL`] of
/// its scale.
fn assert_param_grads(model: &Classifier, cases: &Cases, prefix: &str) {
    let mut checked = 0;
    for (name, p) in model.vs.variables().into_iter().filter(|(_, t)| t.requires_grad()) {
        let want = cases.get(&format!("{prefix}/grad/{name}"));
        let scale = want.abs().max().double_value(&[]);
        let err = (p.grad() - &want).abs().max().double_value(&[]);
        assert!(scale > 0.0, "{prefix}/{name}: the fixture gradient must not vanish");
        println!("{prefix}/{name}: max |Δ| / max |g| = {:e}", err / scale);
        assert!(err <= GOLDEN_TOL * scale, "{prefix}/{name}: max |Δ| {err:e} vs max |g| {scale:e}");
        checked += 1;
    }
    assert_eq!(checked, 14);
}

#[test]
fn trades_loss_and_its_gradients_match_pytorch() {
    let model = twin();
    let c = Cases::load();
    let (x, y, x_adv) = (c.get("x"), c.get("y"), c.get("x_adv"));
    let logits = model.logits(&x, true);
    let natural = TaskLoss::Ce.mean(&logits, &y);
    let kl = trades_kl(&logits, &model.logits(&x_adv, true));
    let total = &natural + &kl * 6.0;
    total.backward();
    assert_rel(kl.double_value(&[]), c.scalar("trades/kl"), GOLDEN_TOL, "KL");
    assert_rel(total.double_value(&[]), c.scalar("trades/total"), GOLDEN_TOL, "total");
    assert_param_grads(&model, &c, "trades");
}

#[test]
fn gradalign_penalty_and_its_gradients_match_pytorch() {
    let model = twin();
    let c = Cases::load();
    let (x, y, eta) = (c.get("x"), c.get("y"), c.get("eta"));
    let penalty = gradalign_penalty(&model, &x, &y, &eta, TaskLoss::Ce, true);
    penalty.backward();
    assert_rel(penalty.double_value(&[]), c.scalar("gradalign/penalty"), GOLDEN_TOL, "penalty");
    assert_param_grads(&model, &c, "gradalign");
}

/// A model whose input gradients all vanish has no penalty (the reference drops such points
/// from the mean instead of counting them as cos = 0).
#[test]
fn gradalign_penalty_is_zero_without_input_gradients() {
    let dead = twin();
    tch::no_grad(|| {
        for mut v in dead.vs.trainable_variables() {
            let _ = v.zero_();
        }
    });
    let c = Cases::load();
    let (x, y, eta) = (c.get("x"), c.get("y"), c.get("eta"));
    let none = gradalign_penalty(&dead, &x, &y, &eta, TaskLoss::Ce, true);
    assert_eq!(none.double_value(&[]), 0.0);
}
