//! The model zoo against its PyTorch twins and its own invariants.
//!
//! Golden fixtures come from `scripts/gen_model_fixtures.py` (PyTorch twins in
//! `scripts/pytorch_models.py`). For each small twin it saves the state dict, a fixed input batch,
//! eval-mode logits and the taps; in short:
//!
//! ```python
//! model = pm.build(spec); randomize_batch_norm(model, gen); model.eval()
//! save_file(model.state_dict(), f"models_{name}_state.safetensors")
//! taps = []; logits = model(x, taps, "post_activation")      # + pre-activation taps
//! model.train(); train_logits = model(x)                     # BN models: + one BN's buffers
//! ```
//!
//! The state dicts and `x` are float32 (gfa's dtype); the logits, taps and buffers were computed
//! by the model converted with `.double()` on `x` in double. Here each state dict must name
//! exactly the tensors of the gfa model (dtypes too), load with `VarStore::load`, and, converted
//! with `vs.double()` (exact), reproduce the float64 logits, taps and buffers to [`REL_TOL`].
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use gfa_core::models::{Arch, ModelSpec, catalog};
use gfa_core::seed::seed_all;
use gfa_core::{Classifier, TapPoint};
use serde::Deserialize;
use tch::{Device, Kind, Tensor};

/// Bound of `max |gfa − PyTorch|` relative to `max |PyTorch|`, both in float64. Each output is a
/// chain of at most ~70 reductions (WRN-34's 34 convolutions and their BatchNorms, the heads),
/// each a sum of at most k = 3072 terms (the MLP's first layer; convolutions sum ≤ 9 · 32,
/// train-mode BatchNorm 2 · 32 · 32 = 2048), which rounds by at most k · 1.1e-16 of its terms'
/// magnitudes in any order, so on any code path: 70 · 3072 · 1.1e-16 ≈ 2.4e-11 of the
/// activations' scale, which the normalized layers keep O(1). 1e-9 leaves a factor 40 for the
/// layers' gains, and is far below what a wrong layer changes (a BatchNorm epsilon 1e-5 vs 1e-6
/// alone moves the logits by ~1e-6 of their scale; a wrong weight, a missing activation or a
/// swapped tap by O(1)).
const REL_TOL: f64 = 1e-9;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures").join(name)
}

fn read_tensors(name: &str) -> BTreeMap<String, Tensor> {
    let path = fixture(name);
    Tensor::read_safetensors(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .collect()
}

#[derive(Debug, Deserialize)]
struct Case {
    spec: ModelSpec,
    bn_checked_in_train: Option<String>,
    parameters: i64,
}

#[derive(Debug, Deserialize)]
struct Meta {
    cases: BTreeMap<String, Case>,
    full_size_parameters: BTreeMap<String, i64>,
}

fn meta() -> Meta {
    let path = fixture("models_meta.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fixture batch (float32 in the file), in float64.
fn input() -> Tensor {
    read_tensors("models_input.safetensors").remove("x").unwrap().to_kind(Kind::Double)
}

/// `max |a − b| ≤ REL_TOL · max |b|`, with shapes equal, both float64.
fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.size(), b.size(), "{what}: shape");
    assert_eq!((a.kind(), b.kind()), (Kind::Double, Kind::Double), "{what}: dtype");
    let scale = b.abs().max().double_value(&[]).max(1e-12);
    let err = (a - b).abs().max().double_value(&[]);
    println!("{what}: max |gfa - pytorch| = {:e} of the scale", err / scale);
    assert!(err <= REL_TOL * scale, "{what}: max abs diff {err:e} vs scale {scale:e}");
}

/// A tiny spec of every arch, for the tests that do not need fixtures.
fn tiny(arch: Arch) -> ModelSpec {
    let width = match arch {
        Arch::Wrn28x10 | Arch::Wrn34x10 => 0.03125,
        Arch::ResNet18 | Arch::PreActResNet18 | Arch::Cnn => 0.0625,
        Arch::Mlp | Arch::Linear => 0.125,
        Arch::TorchScript => unreachable!("not in Arch::ALL"),
    };
    ModelSpec { width, widths: vec![32, 16], ..ModelSpec::of(arch) }
}

fn names(model: &Classifier) -> BTreeSet<String> {
    model.vs.variables().into_keys().collect()
}

#[test]
fn golden_state_dicts_load_and_reproduce_pytorch_logits_and_taps() {
    let meta = meta();
    assert_eq!(meta.cases.len(), 6, "fixture cases");
    let x = input();
    for (name, case) in &meta.cases {
        seed_all(0);
        let mut model = Classifier::new(&case.spec, Device::Cpu).unwrap();
        let file = format!("models_{name}_state.safetensors");
        let state = read_tensors(&file);

        // The gfa model names exactly the tensors of the PyTorch state dict, shapes and dtypes too.
        let ours = model.vs.variables();
        assert_eq!(
            ours.keys().cloned().collect::<BTreeSet<_>>(),
            state.keys().cloned().collect::<BTreeSet<_>>(),
            "{name}: tensor names"
        );
        for (k, v) in &ours {
            assert_eq!(v.size(), state[k].size(), "{name}: shape of {k}");
            assert_eq!(v.kind(), state[k].kind(), "{name}: dtype of {k}");
        }
        if case.spec.normalize {
            assert_eq!(ours["normalize.mean"].size(), [3]);
            assert_eq!(ours["normalize.std"].size(), [3]);
        } else {
            assert!(ours.keys().all(|k| !k.starts_with("normalize.")), "{name}");
        }
        assert_eq!(model.num_parameters(), case.parameters, "{name}: parameter count");

        model.vs.load(fixture(&file)).unwrap();
        model.vs.double();
        model.freeze();
        let io = read_tensors(&format!("models_{name}_io.safetensors"));
        assert_close(&model.logits(&x, false), &io["logits"], &format!("{name}: logits"));

        let tap_names = model.tap_names();
        assert_eq!(tap_names[0], "input");
        for point in [TapPoint::PostActivation, TapPoint::PreActivation] {
            let out = model.forward_taps(&x, false, point);
            assert_close(&out.logits, &io["logits"], &format!("{name}: logits with taps"));
            assert_eq!(out.taps.len(), tap_names.len(), "{name}: tap count");
            for (tap, t) in tap_names.iter().zip(&out.taps).skip(1) {
                let key = match point {
                    TapPoint::PreActivation if io.contains_key(&format!("pre_tap.{tap}")) => {
                        format!("pre_tap.{tap}")
                    }
                    _ => format!("tap.{tap}"),
                };
                let expected = io.get(&key).unwrap_or_else(|| panic!("{name}: no {key}"));
                assert_close(t, expected, &format!("{name}: {key} ({point:?})"));
            }
        }
    }
}

#[test]
fn batch_norm_train_forward_matches_pytorch_including_running_stats() {
    let meta = meta();
    let x = input();
    let mut checked = 0;
    for (name, case) in &meta.cases {
        let Some(bn) = &case.bn_checked_in_train else { continue };
        let mut model = Classifier::new(&case.spec, Device::Cpu).unwrap();
        model.vs.load(fixture(&format!("models_{name}_state.safetensors"))).unwrap();
        model.vs.double();
        let io = read_tensors(&format!("models_{name}_io.safetensors"));
        let logits = tch::no_grad(|| model.logits(&x, true));
        assert_close(&logits, &io["train.logits"], &format!("{name}: train-mode logits"));
        let vars = model.vs.variables();
        for buf in ["running_mean", "running_var"] {
            let key = format!("{bn}.{buf}");
            assert_close(&vars[&key], &io[&format!("train.{key}")], &format!("{name}: {key}"));
        }
        let key = format!("{bn}.num_batches_tracked");
        assert_eq!(
            vars[&key].int64_value(&[]),
            io[&format!("train.{key}")].int64_value(&[]),
            "{name}: {key}"
        );
        checked += 1;
    }
    assert_eq!(checked, 4, "every BatchNorm fixture is checked");
}

#[test]
fn every_arch_exposes_named_taps_with_the_expected_shapes() {
    let n = 2;
    for &arch in Arch::ALL {
        let spec = tiny(arch);
        let s = |c: i64| spec.scaled(c);
        // (name, shape of one sample), derived from the architecture's definition.
        let expected: Vec<(&str, Vec<i64>)> = match arch {
            Arch::Linear => vec![],
            Arch::Mlp => vec![("fc1", vec![s(32)]), ("fc2", vec![s(16)])],
            Arch::Cnn => vec![
                ("conv1", vec![s(64), 32, 32]),
                ("conv2", vec![s(64), 32, 32]),
                ("conv3", vec![s(128), 16, 16]),
                ("conv4", vec![s(128), 16, 16]),
                ("fc1", vec![s(256)]),
                ("fc2", vec![s(256)]),
            ],
            Arch::ResNet18 | Arch::PreActResNet18 => {
                let mut v = vec![
                    ("conv1", vec![s(64), 32, 32]),
                    ("layer1", vec![s(64), 32, 32]),
                    ("layer2", vec![s(128), 16, 16]),
                    ("layer3", vec![s(256), 8, 8]),
                    ("layer4", vec![s(512), 4, 4]),
                ];
                if arch == Arch::PreActResNet18 {
                    v.push(("bn", vec![s(512), 4, 4]));
                }
                v
            }
            Arch::Wrn28x10 | Arch::Wrn34x10 => vec![
                ("conv1", vec![s(16), 32, 32]),
                ("block1", vec![s(160), 32, 32]),
                ("block2", vec![s(320), 16, 16]),
                ("block3", vec![s(640), 8, 8]),
                ("bn1", vec![s(640), 8, 8]),
            ],
            Arch::TorchScript => unreachable!("not in Arch::ALL"),
        };
        seed_all(0);
        let model = Classifier::new(&spec, Device::Cpu).unwrap();
        let want: Vec<&str> =
            std::iter::once("input").chain(expected.iter().map(|(t, _)| *t)).collect();
        assert_eq!(model.tap_names(), want, "{arch}: tap names");
        let x = Tensor::rand([n, 3, 32, 32], (Kind::Float, Device::Cpu));
        for point in [TapPoint::PostActivation, TapPoint::PreActivation] {
            let out = model.forward_taps(&x, false, point);
            assert_eq!(out.logits.size(), [n, 10], "{arch}: logits");
            assert_eq!(out.taps.len(), want.len(), "{arch}: tap count");
            assert_eq!(out.taps[0].size(), [n, 3, 32, 32]);
            for ((tap, shape), t) in expected.iter().zip(&out.taps[1..]) {
                let mut full = vec![n];
                full.extend(shape);
                assert_eq!(t.size(), full, "{arch}: {tap} ({point:?})");
            }
            // Every tap lies on the path to the logits: the loss has a gradient there.
            let loss = out.logits.sum(Kind::Float);
            let grads = Tensor::run_backward(&[&loss], &out.taps, false, false);
            for (tap, g) in want.iter().zip(&grads) {
                assert!(g.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{arch}: {tap} grad");
            }
        }
    }
}

/// All non-trainable variables (BatchNorm buffers, normalization), cloned.
fn buffers(model: &Classifier) -> BTreeMap<String, Tensor> {
    let trainable: Vec<Tensor> = model.vs.trainable_variables();
    model
        .vs
        .variables()
        .into_iter()
        .filter(|(_, v)| !trainable.iter().any(|t| t.data_ptr() == v.data_ptr()))
        .map(|(k, v)| (k, v.copy()))
        .collect()
}

#[test]
fn eval_mode_leaves_batch_norm_statistics_untouched() {
    let x = Tensor::rand([4, 3, 32, 32], (Kind::Float, Device::Cpu));
    for &arch in Arch::ALL.iter().filter(|a| a.has_batch_norm()) {
        seed_all(1);
        let model = Classifier::new(&tiny(arch), Device::Cpu).unwrap();
        let _ = tch::no_grad(|| model.logits(&x, true)); // non-trivial running statistics
        let before = buffers(&model);
        assert!(before.keys().any(|k| k.ends_with("running_var")), "{arch}: has BN buffers");

        // Eval forward, tapped forward and an input gradient, as attacks do.
        let _ = model.logits(&x, false);
        let out = model.forward_taps(&x, false, TapPoint::PostActivation);
        let loss = out.logits.sum(Kind::Float);
        let _ = Tensor::run_backward(&[&loss], &out.taps[..1], false, false);
        let after = buffers(&model);
        for (k, v) in &before {
            assert!(v.equal(&after[k]), "{arch}: eval changed {k}");
        }

        // A train-mode forward does update them, so the check above can fail.
        let _ = tch::no_grad(|| model.logits(&x, true));
        let trained = buffers(&model);
        let changed = before
            .iter()
            .filter(|(k, v)| k.ends_with("running_mean") && !v.equal(&trained[*k]))
            .count();
        let total = before.keys().filter(|k| k.ends_with("running_mean")).count();
        assert_eq!(changed, total, "{arch}: train mode updates every running_mean");
        for (k, v) in before.iter().filter(|(k, _)| k.ends_with("num_batches_tracked")) {
            assert_eq!(v.int64_value(&[]), 1, "{arch}: {k}");
            assert_eq!(trained[k].int64_value(&[]), 2, "{arch}: {k}");
        }
    }
}

#[test]
fn save_then_load_gives_identical_logits() {
    let dir = tempfile::tempdir().unwrap();
    let x = Tensor::rand([3, 3, 32, 32], (Kind::Float, Device::Cpu));
    for &arch in Arch::ALL {
        let spec = tiny(arch);
        seed_all(2);
        let a = Classifier::new(&spec, Device::Cpu).unwrap();
        let _ = tch::no_grad(|| a.logits(&x, true)); // BN statistics away from their initial values
        let path = dir.path().join(format!("{arch}.safetensors"));
        a.vs.save(&path).unwrap();

        seed_all(3);
        let mut b = Classifier::new(&spec, Device::Cpu).unwrap();
        let (la, lb) = (a.logits(&x, false), b.logits(&x, false));
        assert!(!la.equal(&lb), "{arch}: differently seeded models differ before loading");
        b.vs.load(&path).unwrap();
        assert!(la.equal(&b.logits(&x, false)), "{arch}: logits after save → load");
        assert_eq!(names(&a), names(&b));
    }
}

/// Trainable scalars of each full-size architecture, from the layer formulas.
fn parameters_by_formula(arch: Arch) -> i64 {
    let conv = |k: i64, c_in: i64, c_out: i64| k * k * c_in * c_out; // bias-free
    let bn = |c: i64| 2 * c;
    let fc = |d_in: i64, d_out: i64| d_in * d_out + d_out;
    let classes = 10;
    match arch {
        Arch::Linear => fc(3 * 32 * 32, classes),
        Arch::Mlp => fc(3072, 1024) + fc(1024, 512) + fc(512, 256) + fc(256, classes),
        Arch::Cnn => {
            let cb = |c_in, c_out| conv(3, c_in, c_out) + c_out;
            cb(3, 64)
                + cb(64, 64)
                + cb(64, 128)
                + cb(128, 128)
                + fc(128 * 8 * 8, 256)
                + fc(256, 256)
                + fc(256, classes)
        }
        Arch::ResNet18 => {
            // BasicBlock: two conv3×3 + BN each; a 1×1 conv + BN shortcut when the shape changes.
            let block = |c_in: i64, c_out: i64| {
                let sc = if c_in != c_out { conv(1, c_in, c_out) + bn(c_out) } else { 0 };
                conv(3, c_in, c_out) + bn(c_out) + conv(3, c_out, c_out) + bn(c_out) + sc
            };
            let stages: i64 = [(64, 64), (64, 128), (128, 256), (256, 512)]
                .iter()
                .map(|&(i, o)| block(i, o) + block(o, o))
                .sum();
            conv(3, 3, 64) + bn(64) + stages + fc(512, classes)
        }
        Arch::PreActResNet18 => {
            // PreActBlock: BN(c_in) + conv3×3, BN(c_out) + conv3×3; a 1×1 conv shortcut.
            let block = |c_in: i64, c_out: i64| {
                let sc = if c_in != c_out { conv(1, c_in, c_out) } else { 0 };
                bn(c_in) + conv(3, c_in, c_out) + bn(c_out) + conv(3, c_out, c_out) + sc
            };
            let stages: i64 = [(64, 64), (64, 128), (128, 256), (256, 512)]
                .iter()
                .map(|&(i, o)| block(i, o) + block(o, o))
                .sum();
            conv(3, 3, 64) + stages + bn(512) + fc(512, classes)
        }
        Arch::Wrn28x10 | Arch::Wrn34x10 => {
            // Depth 28 → (28 − 4) / 6 = 4 blocks per group, depth 34 → 5; widths 16, 160, 320,
            // 640.
            let n = if arch == Arch::Wrn28x10 { 4 } else { 5 };
            let block = |c_in: i64, c_out: i64| {
                let sc = if c_in != c_out { conv(1, c_in, c_out) } else { 0 };
                bn(c_in) + conv(3, c_in, c_out) + bn(c_out) + conv(3, c_out, c_out) + sc
            };
            let group = |c_in: i64, c_out: i64| block(c_in, c_out) + (n - 1) * block(c_out, c_out);
            conv(3, 3, 16)
                + group(16, 160)
                + group(160, 320)
                + group(320, 640)
                + bn(640)
                + fc(640, classes)
        }
        Arch::TorchScript => unreachable!("not in Arch::ALL"),
    }
}

#[test]
fn catalog_lists_every_arch_with_full_size_parameter_counts() {
    let meta = meta();
    let rows = catalog();
    assert_eq!(
        rows.iter().map(|r| r.name).collect::<Vec<_>>(),
        Arch::ALL.iter().map(|a| a.name()).collect::<Vec<_>>()
    );
    for (row, &arch) in rows.iter().zip(Arch::ALL) {
        let by_formula = parameters_by_formula(arch);
        assert_eq!(row.parameters, by_formula, "{arch}: built model vs layer formula");
        assert_eq!(
            row.parameters,
            meta.full_size_parameters[arch.name()],
            "{arch}: gfa vs PyTorch twin"
        );
        let spec = ModelSpec { width: tiny(arch).width, ..ModelSpec::of(arch) };
        let model = Classifier::new(&spec, Device::Cpu).unwrap();
        assert_eq!(row.taps, model.tap_names(), "{arch}: taps do not depend on width");
        assert!(!row.description.is_empty());
    }
}

#[test]
fn linear_model_is_the_closed_form_affine_map() {
    seed_all(4);
    let spec = ModelSpec {
        mean: vec![0.4, 0.5, 0.6],
        std: vec![0.2, 0.3, 0.25],
        ..ModelSpec::of(Arch::Linear)
    };
    // In float64 (the model converted exactly, the normalization's float32 mean and std too):
    // the closed form and the model sum 3072 terms in other orders, ≤ 3.4e-13 of the scale.
    let mut model = Classifier::new(&spec, Device::Cpu).unwrap();
    model.vs.double();
    let vars = model.vs.variables();
    let x = Tensor::rand([3, 3, 32, 32], (Kind::Double, Device::Cpu));
    let mean = Tensor::from_slice(&[0.4f32, 0.5, 0.6]).to_kind(Kind::Double).view([1, 3, 1, 1]);
    let std = Tensor::from_slice(&[0.2f32, 0.3, 0.25]).to_kind(Kind::Double).view([1, 3, 1, 1]);
    let h = ((&x - mean) / std).flatten(1, -1);
    let expected = h.matmul(&vars["fc.weight"].tr()) + &vars["fc.bias"];
    assert_close(&model.logits(&x, false), &expected, "linear logits");
}

/// Offsets at the taps (the finite-difference GFA gradient's probe) enter exactly where each tap
/// is read: the directional derivative of the loss along an offset at tap k is <∂loss/∂h_k, o>.
/// And with the switches (ReLU masks, max-pool indices) of a recorded forward replayed, an
/// eval-mode network is affine in the offsets, however large; without the replay it is not.
/// Double precision: the central difference's rounding error (≈ 1e-16·|loss|/1e-7) is far below
/// the 1e-6·‖g‖‖o‖ bound, while an offset added at another tensor misses by O(‖g‖‖o‖).
#[test]
fn tap_offsets_enter_where_taps_are_read_and_replayed_switches_make_the_network_affine() {
    use gfa_core::classifier::Gates;
    for &arch in Arch::ALL {
        seed_all(3);
        let mut model = Classifier::new(&tiny(arch), Device::Cpu).unwrap();
        model.vs.double();
        let x = Tensor::rand([1, 3, 32, 32], (Kind::Double, Device::Cpu));
        let r = Tensor::randn([1, 10], (Kind::Double, Device::Cpu));
        let loss = |logits: &Tensor| (logits * &r).sum(Kind::Double);
        let names = model.tap_names();
        for point in [TapPoint::PostActivation, TapPoint::PreActivation] {
            let base = model.forward_taps(&x, false, point);
            let grads = Tensor::run_backward(&[loss(&base.logits)], &base.taps, false, false);
            for (k, (h, g)) in base.taps.iter().zip(&grads).enumerate() {
                // Not at exact zeros: a max pool over ReLU zeros has ties, where the loss has
                // no directional derivative.
                let o = h.randn_like() * h.ne(0.0);
                let at = |s: f64| {
                    let mut offsets: Vec<Option<Tensor>> = (0..names.len()).map(|_| None).collect();
                    offsets[k] = Some(&o * s);
                    let f = model.forward_taps_with(&x, false, point, offsets, Gates::Free);
                    loss(&f.logits).double_value(&[])
                };
                let e = 1e-7;
                let numeric = (at(e) - at(-e)) / (2.0 * e);
                let analytic = (g * &o).sum(Kind::Double).double_value(&[]);
                // The scale of a directional derivative: |<g, o>| ≤ ‖g‖‖o‖.
                let scale = g.norm().double_value(&[]) * o.norm().double_value(&[]);
                assert!(
                    (numeric - analytic).abs() <= 1e-6 * scale,
                    "{arch} {point:?} {}: {numeric} vs {analytic}",
                    names[k]
                );
            }

            // Large offsets at every tap: affine under the replayed switches only.
            let rec = model.forward_taps_with(&x, false, point, Vec::new(), Gates::Record(vec![]));
            let big: Vec<Tensor> =
                rec.taps.iter().map(|h| h.randn_like() * h.abs().mean(Kind::Double)).collect();
            let logits = |s: f64, gates: Gates| {
                let offsets = big.iter().map(|o| Some(o * s)).collect();
                model.forward_taps_with(&x, false, point, offsets, gates).logits
            };
            let l0 = logits(0.0, rec.gates.replay());
            assert!(l0.equal(&rec.logits), "{arch} {point:?}: a replay without offsets");
            let curvature = |gates: &dyn Fn() -> Gates| {
                let (l1, l2) = (logits(1.0, gates()), logits(2.0, gates()));
                let bend = (&l2 - &l0 - (&l1 - &l0) * 2.0).abs().max().double_value(&[]);
                bend / (&l2 - &l0).abs().max().double_value(&[])
            };
            let replayed = curvature(&|| rec.gates.replay());
            assert!(replayed <= 1e-9, "{arch} {point:?}: replayed forward bends by {replayed:e}");
            if arch != Arch::Linear {
                let free = curvature(&|| Gates::Free);
                assert!(free > 1e-3, "{arch} {point:?}: free forward bends only {free:e}");
            }
        }
    }
}
