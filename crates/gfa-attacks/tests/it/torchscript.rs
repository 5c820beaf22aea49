//! Attacks on TorchScript modules (`gfa eval --torchscript`) against the same attacks on the
//! same weights in gfa's own architectures (gfa-core's fixtures from
//! `scripts/gen_torchscript_fixtures.py`): the scripted graph passes input gradients as gfa's
//! models do, so APGD-CE finds the same adversarial points and the same robust accuracy.
use std::path::PathBuf;

use gfa_attacks::attack;
use gfa_core::checkpoint::load_weights;
use gfa_core::import::{Normalization, import_state_dict};
use gfa_core::models::{Arch, ModelSpec};
use gfa_core::seed::SeededRng;
use gfa_core::{Classifier, torchscript};
use rand::SeedableRng;
use serde_json::json;
use tch::{Device, Kind, Tensor};

use super::common::{batch, max_diff, spec};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../gfa-core/tests/fixtures").join(name)
}

/// A budget at which APGD-CE fools some of the fixture ResNet-18's points and not all.
const EPS: f64 = 16.0 / 255.0;

fn traced(file: &str) -> Classifier {
    let (m, _) = torchscript::load(
        &fixture(file),
        &Normalization::None,
        [3, 32, 32],
        Kind::Float,
        Device::Cpu,
    )
    .unwrap();
    m
}

/// Clean accuracy, robust accuracy and the adversarial batch of APGD-CE (L∞, [`EPS`], 20
/// iterations, seed 0) on `model`.
fn apgd(model: &Classifier, x: &Tensor, y: &Tensor) -> (f64, f64, Tensor) {
    let a = spec(json!({"kind": "apgd-ce", "n_iter": 20})).build().unwrap();
    let out = attack::run(a.as_ref(), model, x, y, EPS, &mut SeededRng::seed_from_u64(0)).unwrap();
    let clean = tch::no_grad(|| model.logits(x, false)).argmax(1, false).eq_tensor(y);
    let robust = clean.logical_and(&out.success.logical_not());
    let mean = |t: &Tensor| t.to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
    (mean(&clean), mean(&robust), out.x_adv)
}

/// Bound of `max |a − b|` relative to `max |b|` between the traced graph and gfa's model, both
/// float32 (a traced module is evaluated in its own dtype). The graphs need not call the same
/// kernels (the traced ResNet-18 pools with `avg_pool2d`, gfa with a mean), so each value may
/// round differently: an input gradient or logit of these `cnn`/ResNet-18 (width 0.0625) is a
/// chain of ≤ 21 reductions of ≤ 512 terms plus a few elementwise roundings per layer, ≤ 21 ·
/// 516 · 6e-8 ≈ 6.5e-4 of the activations' scale on any CPU code path. A missing layer or
/// normalization, or a gradient that does not reach the input, moves them by O(1).
const F32_REL_TOL: f64 = 1e-3;

/// Input gradients of the summed cross-entropy of both models at `x`, within [`F32_REL_TOL`].
fn assert_same_gradients(a: &Classifier, b: &Classifier, x: &Tensor, y: &Tensor, what: &str) {
    let grad = |m: &Classifier| {
        let x = x.detach().set_requires_grad(true);
        let loss = m.logits(&x, false).cross_entropy_for_logits(y);
        Tensor::run_backward(&[loss], &[&x], false, false).pop().unwrap()
    };
    let (ga, gb) = (grad(a), grad(b));
    let scale = gb.abs().max().double_value(&[]);
    let d = max_diff(&ga, &gb);
    println!("{what}: input gradients differ by {:e} of their scale", d / scale);
    assert!(scale > 0.0 && d <= F32_REL_TOL * scale, "{what}: {d:e} vs scale {scale:e}");
}

/// The two models' APGD-CE outcomes agree. Clean accuracy exactly: the logits differ by at most
/// [`F32_REL_TOL`] of their scale, and every point's two largest logits are further apart than
/// twice that (asserted), so the predictions are the same on any code path. Robust accuracy
/// within one point of the 16: L∞ APGD reads gradients through their signs and its losses
/// through comparisons, so the two runs part only where a gradient element or a loss difference
/// lies within rounding of zero, and then only on that point; a module whose gradient does not
/// pass leaves every clean point robust (checked against gfa's count).
fn assert_same_attack(a: &Classifier, b: &Classifier, x: &Tensor, y: &Tensor, what: &str) {
    let z = tch::no_grad(|| b.logits(x, false));
    let top2 = z.topk(2, 1, true, true).0;
    let gap = (top2.select(1, 0) - top2.select(1, 1)).min().double_value(&[]);
    let scale = z.abs().max().double_value(&[]);
    assert!(gap > 2.0 * F32_REL_TOL * scale, "{what}: a top-2 logit gap of {gap:e}");
    let (clean_a, robust_a, _) = apgd(a, x, y);
    let (clean_b, robust_b, _) = apgd(b, x, y);
    assert_eq!(clean_a, clean_b, "{what}: clean accuracy");
    assert!((robust_a - robust_b).abs() <= 1.0 / 16.0 + 1e-12, "{what}: {robust_a} vs {robust_b}");
    assert!(clean_b > robust_b && robust_b > 0.0, "{what}: {clean_b} → {robust_b}");
    assert!(clean_a > robust_a, "{what}: the module's gradients fooled no point");
}

/// The cnn fixture is untrained: its prediction hardly depends on the image, so no attack
/// changes it; its input gradients (what every attack reads) are compared instead.
#[test]
fn a_traced_cnn_passes_the_input_gradients_of_the_same_weights_in_gfa() {
    let ts = traced("ts_cnn_traced.pt");
    let mut gfa =
        Classifier::new(&ModelSpec { width: 0.0625, ..ModelSpec::of(Arch::Cnn) }, Device::Cpu)
            .unwrap();
    load_weights(&mut gfa, &fixture("ts_cnn_state.safetensors")).unwrap();
    gfa.freeze();
    let (x, y) = batch(8, 26, 0.0, 1.0);
    assert_same_gradients(&ts, &gfa, &x, &y, "cnn");
}

#[test]
fn a_traced_resnet18_and_its_gfa_import_give_the_same_clean_and_robust_accuracy() {
    let ts = traced("ts_resnet18_traced.pt");
    let spec = ModelSpec { width: 0.0625, ..ModelSpec::of(Arch::ResNet18) };
    let imported =
        import_state_dict(&fixture("import_resnet18.pt"), &spec, &Normalization::None).unwrap();
    let mut gfa = Classifier::new(&spec, Device::Cpu).unwrap();
    let mut vars = gfa.vs.variables();
    tch::no_grad(|| {
        for (name, t) in &imported.tensors {
            vars.get_mut(name).unwrap_or_else(|| panic!("{name}")).copy_(t);
        }
    });
    gfa.freeze();
    let (x, _) = batch(16, 27, 0.0, 1.0);
    let y = tch::no_grad(|| gfa.logits(&x, false)).argmax(1, false);
    // Every fourth label wrong: clean accuracy below 1 as well.
    let y = y.where_self(
        &Tensor::arange(16, (Kind::Int64, Device::Cpu)).remainder(4).ne(0),
        &((&y + 1).remainder(10)),
    );
    assert_same_gradients(&ts, &gfa, &x, &y, "resnet18");
    assert_same_attack(&ts, &gfa, &x, &y, "resnet18");
}
