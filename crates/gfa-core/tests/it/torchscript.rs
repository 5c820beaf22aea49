//! TorchScript modules as classifiers (`scripts/gen_torchscript_fixtures.py`): logits and input
//! gradients equal PyTorch's, the traced twins equal gfa's own models on the same weights, and
//! every module gfa cannot evaluate is refused with an error naming what it is.
use std::collections::BTreeMap;

use gfa_core::checkpoint::{load_weights, write_tensors};
use gfa_core::import::{Normalization, import_state_dict};
use gfa_core::models::{Arch, ModelSpec};
use gfa_core::torchscript::load;
use gfa_core::{Classifier, CoreError};
use tch::{Device, Kind, Tensor};

use super::fixture;

/// Bound of `max |a − b|` relative to `max |b|` for the float32 comparisons below (the traced
/// modules are float32, and gfa evaluates a module in its own dtype): each logit of the traced
/// ResNet-18 / cnn (width 0.0625) is a chain of at most 21 reductions (convolutions, the head) of
/// at most 512 terms (the cnn's first linear layer; convolutions sum ≤ 9 · 32), plus a few
/// elementwise roundings per layer (BatchNorm, ReLU, the residual sums). A sum of k float32 terms
/// rounds by at most k · 6e-8 of their magnitudes in any order, i.e. on any CPU code path and in
/// either graph: 21 · (512 + 4) · 6e-8 ≈ 6.5e-4 of the activations' scale (kept O(1) by the
/// BatchNorms). A wrong weight or a missing normalization moves logits by 1e-2 of their scale or
/// more.
const F32_REL_TOL: f64 = 1e-3;

/// `max |a − b| ≤ F32_REL_TOL · max |b|`, shapes equal, both float32.
fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.size(), b.size(), "{what}: shape");
    assert_eq!((a.kind(), b.kind()), (Kind::Float, Kind::Float), "{what}: dtype");
    let scale = b.abs().max().double_value(&[]).max(1e-12);
    let err = (a - b).abs().max().double_value(&[]);
    println!("{what}: max |a - b| = {:e} of the scale {scale:e}", err / scale);
    assert!(err <= F32_REL_TOL * scale, "{what}: max abs diff {err:e} vs scale {scale:e}");
}

const CIFAR: [i64; 3] = [3, 32, 32];

fn io() -> BTreeMap<String, Tensor> {
    Tensor::read_safetensors(fixture("ts_io.safetensors")).unwrap().into_iter().collect()
}

#[test]
fn scripted_logits_and_input_gradients_equal_pytorchs_in_float64() {
    let io = io();
    let (model, info) = load(
        &fixture("ts_tiny_scripted_f64.pt"),
        &Normalization::None,
        CIFAR,
        Kind::Double,
        Device::Cpu,
    )
    .unwrap();
    assert_eq!((info.num_classes, info.kind), (10, Kind::Double));
    assert_eq!(info.parameters, 4 * 3 * 9 + 4 + 64 * 10 + 10);
    assert_eq!(model.spec.arch, Arch::TorchScript);
    let x = io["x"].detach().set_requires_grad(true);
    let logits = model.logits(&x, false);
    assert_eq!(logits.kind(), Kind::Double);
    let loss = logits.cross_entropy_loss::<Tensor>(&io["y"], None, tch::Reduction::Sum, -100, 0.0);
    let grad = Tensor::run_backward(&[loss], &[&x], false, false).pop().unwrap();
    // float64 on both sides: the same few hundred operations per value, each rounding at 1e-16
    // relative; 1e-12 of the scale leaves a factor 10⁴ of room and is 10⁷ below a float32
    // computation's error.
    for (got, want, what) in
        [(&logits, &io["tiny.logits"], "logits"), (&grad, &io["tiny.grad"], "grad")]
    {
        let scale = want.abs().max().double_value(&[]);
        let err = (got - want).abs().max().double_value(&[]);
        assert!(err <= 1e-12 * scale, "{what}: max abs diff {err:e} vs scale {scale:e}");
    }
    // The weights stay frozen: no gradient accumulates in the module.
    assert_eq!(model.num_parameters(), 0);
}

#[test]
fn traced_twins_give_the_logits_of_gfas_own_models() {
    let io = io();
    let x = io["x"].to_kind(Kind::Float);
    // ResNet-18 traced from import_resnet18.pt's weights, against `gfa import` of that file.
    let (traced, info) = load(
        &fixture("ts_resnet18_traced.pt"),
        &Normalization::None,
        CIFAR,
        Kind::Float,
        Device::Cpu,
    )
    .unwrap();
    assert_eq!(info.num_classes, 10);
    let ts_logits = tch::no_grad(|| traced.logits(&x, false));
    assert_close(&ts_logits, &io["resnet18.logits"], "traced resnet18 vs PyTorch");
    let spec = ModelSpec { width: 0.0625, ..ModelSpec::of(Arch::ResNet18) };
    let imported =
        import_state_dict(&fixture("import_resnet18.pt"), &spec, &Normalization::None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("r18.safetensors");
    write_tensors(&weights, &imported.tensors).unwrap();
    let mut gfa = Classifier::new(&spec, Device::Cpu).unwrap();
    load_weights(&mut gfa, &weights).unwrap();
    assert_close(&ts_logits, &tch::no_grad(|| gfa.logits(&x, false)), "traced vs imported");

    // The cnn twin normalizes itself (mean = std = 0.5): no gfa normalization in front.
    let (traced, _) =
        load(&fixture("ts_cnn_traced.pt"), &Normalization::None, CIFAR, Kind::Float, Device::Cpu)
            .unwrap();
    let ts_logits = tch::no_grad(|| traced.logits(&x, false));
    assert_close(&ts_logits, &io["cnn.logits"], "traced cnn vs PyTorch");
    let mut gfa =
        Classifier::new(&ModelSpec { width: 0.0625, ..ModelSpec::of(Arch::Cnn) }, Device::Cpu)
            .unwrap();
    load_weights(&mut gfa, &fixture("ts_cnn_state.safetensors")).unwrap();
    assert_close(&ts_logits, &tch::no_grad(|| gfa.logits(&x, false)), "traced vs gfa cnn");
}

#[test]
fn normalize_puts_gfas_layer_in_front_of_the_module() {
    let x = io()["x"].to_kind(Kind::Float);
    let path = fixture("ts_resnet18_traced.pt");
    let norm: Normalization = "cifar10".parse().unwrap();
    let (plain, _) = load(&path, &Normalization::None, CIFAR, Kind::Float, Device::Cpu).unwrap();
    let (normed, _) = load(&path, &norm, CIFAR, Kind::Float, Device::Cpu).unwrap();
    assert!(normed.spec.normalize && !plain.spec.normalize);
    let (mean, std) = gfa_core::import::CIFAR10_MEAN_STD;
    let shift = |v: [f64; 3]| Tensor::from_slice(&v).to_kind(Kind::Float).view([1, 3, 1, 1]);
    let by_hand = (&x - shift(mean)) / shift(std);
    let a = tch::no_grad(|| normed.logits(&x, false));
    let b = tch::no_grad(|| plain.logits(&by_hand, false));
    assert_close(&a, &b, "gfa normalization in front");
}

#[test]
fn an_opaque_module_has_no_taps_and_does_not_train() {
    let (model, _) = load(
        &fixture("ts_tiny_scripted.pt"),
        &Normalization::None,
        CIFAR,
        Kind::Float,
        Device::Cpu,
    )
    .unwrap();
    assert_eq!(model.tap_names(), ["input"]);
    let x = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.logits(&x, true)))
        .expect_err("a train-mode forward ran");
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("eval mode only"), "{msg}");
}

/// The error of loading `file` as a TorchScript module.
fn ts_error(file: &str) -> String {
    let err = load(&fixture(file), &Normalization::None, CIFAR, Kind::Float, Device::Cpu)
        .expect_err(&format!("{file} loaded"));
    assert!(matches!(err, CoreError::TorchScript { .. }), "{err:?}");
    err.to_string()
}

#[test]
fn modules_gfa_cannot_evaluate_are_refused_naming_what_they_are() {
    let e = ts_error("ts_bad_tuple.pt");
    assert!(
        e.contains("a tuple of 2 (tensor [2, 10], tensor [2, 3])") && e.contains("logits alone"),
        "{e}"
    );
    let e = ts_error("ts_bad_probs.pt");
    assert!(e.contains("probabilities") && e.contains("softmax"), "{e}");
    let e = ts_error("ts_bad_detached.pt");
    assert!(e.contains("differentiabl") && e.contains("input gradients"), "{e}");
    let e = ts_error("ts_bad_cuda.pt");
    assert!(e.contains("another device") && e.contains("Cpu"), "{e}");
    // A float64 module evaluated as float32.
    let e = ts_error("ts_tiny_scripted_f64.pt");
    assert!(e.contains("[Double]") && e.contains("model.float()"), "{e}");
    // A state dict, in either torch.save format, is no module: `gfa import` reads it.
    for file in ["import_resnet18.pt", "legacy_resnet18.pt"] {
        let e = ts_error(file);
        assert!(e.contains("not a TorchScript module") && e.contains("gfa import"), "{file}: {e}");
    }
    let e = ts_error("import_meta.json");
    assert!(e.contains("not a zip archive"), "{e}");
}

#[test]
fn a_torchscript_module_given_to_import_is_named() {
    let spec = ModelSpec { width: 0.0625, ..ModelSpec::of(Arch::Cnn) };
    let err = import_state_dict(&fixture("ts_cnn_traced.pt"), &spec, &Normalization::None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("TorchScript") && err.contains("gfa eval --torchscript"), "{err}");
}
