//! Shared helpers: tiny models, batches, cheap attack specs.
use gfa_attacks::threat::uniform;
use gfa_attacks::{AttackSpec, Norm};
use gfa_core::models::Arch;
use gfa_core::seed::SeededRng;
use gfa_core::{Classifier, ModelSpec, seed};
use rand::SeedableRng;
use serde_json::json;
use tch::{Device, Kind, Tensor};

/// A freshly initialized `cnn` at width 0.125 (no BatchNorm), seeded.
pub fn tiny_cnn(seed: u64) -> Classifier {
    seed::seed_all(seed);
    let spec = ModelSpec { arch: Arch::Cnn, width: 0.125, ..ModelSpec::default() };
    Classifier::new(&spec, Device::Cpu).unwrap()
}

/// The `linear` model with `classes` outputs, seeded.
pub fn linear(seed: u64, classes: i64) -> Classifier {
    seed::seed_all(seed);
    let spec = ModelSpec { arch: Arch::Linear, num_classes: classes, ..ModelSpec::default() };
    Classifier::new(&spec, Device::Cpu).unwrap()
}

/// Uniform pixels in `[lo, hi]` and random labels.
pub fn batch(n: i64, seed: u64, lo: f64, hi: f64) -> (Tensor, Tensor) {
    let mut rng = SeededRng::seed_from_u64(seed);
    let x = uniform(&[n, 3, 32, 32], &mut rng, Device::Cpu) * (hi - lo) + lo;
    let y = (uniform(&[n], &mut rng, Device::Cpu) * 10.0).floor().to_kind(Kind::Int64).clamp(0, 9);
    (x, y)
}

/// Labels = the model's own predictions (every point clean-correct).
pub fn predicted(model: &Classifier, x: &Tensor) -> Tensor {
    tch::no_grad(|| model.logits(x, false)).argmax(1, false)
}

pub fn spec(v: serde_json::Value) -> AttackSpec {
    AttackSpec::from_value(v).unwrap()
}

/// Every fixed-budget attack of the registry for `norm`, with few iterations.
pub fn cheap_specs(norm: Norm) -> Vec<AttackSpec> {
    let mut out = vec![
        spec(json!({"kind": "pgd", "norm": norm, "steps": 4})),
        spec(json!({"kind": "pgd", "norm": norm, "steps": 3, "restarts": 2})),
        spec(json!({"kind": "pgd", "norm": norm, "preset": "torchattacks", "steps": 3})),
        spec(json!({"kind": "apgd-ce", "norm": norm, "n_iter": 6})),
        spec(json!({"kind": "apgd-dlr", "norm": norm, "n_iter": 6, "n_restarts": 2})),
        spec(json!({"kind": "apgd-t", "norm": norm, "n_iter": 4, "n_target_classes": 2})),
        spec(json!({"kind": "square", "norm": norm, "n_queries": 30})),
        spec(json!({"kind": "square", "norm": norm, "preset": "torchattacks", "n_queries": 30})),
        spec(json!({"kind": "noise", "norm": norm, "samples": 3})),
        spec(json!({"kind": "autoattack", "norm": norm, "version": "custom", "attacks": [
            {"kind": "apgd-ce", "norm": norm, "n_iter": 3},
            {"kind": "apgd-t", "norm": norm, "n_iter": 3, "n_target_classes": 2},
            {"kind": "square", "norm": norm, "n_queries": 10}
        ]})),
    ];
    if norm == Norm::Linf {
        out.push(spec(json!({"kind": "fgsm"})));
    }
    out
}

/// Max |a - b|.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}
