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

/// The two models' APGD-CE results agree: the same clean and robust accuracy, and adversarial
/// batches within `2·step` of each other (a sign step can flip where an input gradient
/// component is within float32 round-off of zero; none does on these points, see the bound).
fn assert_same_attack(a: &Classifier, b: &Classifier, x: &Tensor, y: &Tensor, what: &str) {
    let (clean_a, robust_a, adv_a) = apgd(a, x, y);
    let (clean_b, robust_b, adv_b) = apgd(b, x, y);
    assert_eq!((clean_a, robust_a), (clean_b, robust_b), "{what}: clean, robust accuracy");
    assert!(clean_a > robust_a && robust_a > 0.0, "{what}: {clean_a} → {robust_a}");
    let d = max_diff(&adv_a, &adv_b);
    assert!(d <= 1e-5, "{what}: adversarial batches differ by {d:e}");
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
    let grad = |m: &Classifier| {
        let x = x.detach().set_requires_grad(true);
        let loss = m.logits(&x, false).cross_entropy_for_logits(&y);
        Tensor::run_backward(&[loss], &[&x], false, false).pop().unwrap()
    };
    let (a, b) = (grad(&ts), grad(&gfa));
    // float32 on both sides, the same kernels: 1e-5 of the scale is far above round-off and
    // far below a missing layer or normalization.
    let scale = b.abs().max().double_value(&[]);
    assert!(scale > 0.0);
    assert!(max_diff(&a, &b) <= 1e-5 * scale, "{} vs {scale:e}", max_diff(&a, &b));
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
    assert_same_attack(&ts, &gfa, &x, &y, "resnet18");
}
