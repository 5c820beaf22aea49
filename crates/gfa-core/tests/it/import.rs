//! `gfa import`'s reader against checkpoints written by PyTorch (`scripts/gen_import_fixtures.py`):
//! each imports, loads into the gfa model and gives the PyTorch model's logits on a fixed batch;
//! each bad input is refused with an error that names what the file is and the fix.
use std::collections::BTreeMap;

use gfa_core::checkpoint::{load_weights, write_tensors};
use gfa_core::import::{Normalization, import_state_dict};
use gfa_core::models::ModelSpec;
use gfa_core::{Classifier, CoreError, pt};
use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use super::fixture;

#[derive(Debug, Deserialize)]
struct Case {
    arch: String,
    width: f64,
    normalize: String,
    found_under: Option<String>,
    stripped: Vec<String>,
    dropped: usize,
}

fn cases() -> BTreeMap<String, Case> {
    let text = std::fs::read_to_string(fixture("import_meta.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn spec(case: &Case) -> ModelSpec {
    let t: toml::Table =
        toml::from_str(&format!("arch = \"{}\"\nwidth = {}\n", case.arch, case.width)).unwrap();
    t.try_into().unwrap()
}

/// Bound of `max |a − b|` relative to the largest logit, both sides in float64 (the fixture's
/// logits come from the PyTorch model converted with `.double()`; gfa's model is converted with
/// `vs.double()`, both exact). A logit is a chain of at most ~70 reductions (WRN-34's
/// convolutions and BatchNorms, the head) of at most 9 · 32 = 288 terms each, which round by at
/// most 288 · 1.1e-16 of their terms' magnitudes in any summation order, i.e. on any CPU code
/// path: 70 · 288 · 1.1e-16 ≈ 2.2e-12 of the activations' scale (kept O(1) by the BatchNorms).
/// 1e-9 leaves a factor 400 for the layers' gains, and is far below any real difference: a
/// wrong weight or a missing normalization moves logits by 1e-2 or more, a normalization with
/// the float32 mean/std rounded differently by ~1e-7.
pub(super) const REL_TOL: f64 = 1e-9;

/// `max |a − b| ≤ REL_TOL · max |b|`, shapes equal, both float64.
pub(super) fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.size(), b.size(), "{what}: shape");
    assert_eq!((a.kind(), b.kind()), (Kind::Double, Kind::Double), "{what}: dtype");
    let scale = b.abs().max().double_value(&[]).max(1e-12);
    let err = (a - b).abs().max().double_value(&[]);
    println!("{what}: max |a - b| = {:e} of the scale {scale:e}", err / scale);
    assert!(err <= REL_TOL * scale, "{what}: max abs diff {err:e} vs scale {scale:e}");
}

#[test]
fn pytorch_checkpoints_import_and_give_the_pytorch_logits() {
    let io: BTreeMap<String, Tensor> =
        Tensor::read_safetensors(fixture("import_io.safetensors")).unwrap().into_iter().collect();
    let cases = cases();
    assert_eq!(cases.len(), 4);
    let dir = tempfile::tempdir().unwrap();
    for (name, case) in &cases {
        let norm: Normalization = case.normalize.parse().unwrap();
        let spec = spec(case);
        let path = fixture(&format!("import_{name}.pt"));
        let imported =
            import_state_dict(&path, &spec, &norm).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(imported.found_under, case.found_under, "{name}: where the state dict was");
        assert_eq!(imported.stripped, case.stripped, "{name}: stripped prefixes");
        assert_eq!(imported.dropped.len(), case.dropped, "{name}: dropped tensors");
        assert!(imported.dropped.iter().all(|d| d.starts_with("sub_block1.")), "{name}");

        let out = dir.path().join(format!("{name}.safetensors"));
        write_tensors(&out, &imported.tensors).unwrap();
        // The file says how the model normalizes: it loads into a model built with the
        // default spec's normalization, which the file's buffers then replace.
        let mut model = Classifier::new(&spec, Device::Cpu).unwrap();
        load_weights(&mut model, &out).unwrap();
        model.vs.double();
        let x = io["x"].to_kind(Kind::Double);
        let logits = tch::no_grad(|| model.logits(&x, false));
        assert_close(&logits, &io[&format!("{name}.logits")], name);
    }
}

#[test]
fn normalization_parses_presets_and_values() {
    let p = |s: &str| s.parse::<Normalization>();
    assert_eq!(p("none").unwrap(), Normalization::None);
    let Normalization::MeanStd { mean, std } = p("cifar10").unwrap() else { panic!() };
    assert_eq!((mean[0], std[2]), (0.4914, 0.2616));
    assert_eq!(p("0.5,0.25").unwrap(), Normalization::MeanStd { mean: vec![0.5], std: vec![0.25] });
    assert_eq!(
        p("0.1,0.2,0.3,1,2,3").unwrap(),
        Normalization::MeanStd { mean: vec![0.1, 0.2, 0.3], std: vec![1.0, 2.0, 3.0] }
    );
    for bad in ["", "0.5", "0.5,0", "a,b", "1,2,3", "imagenett"] {
        assert!(p(bad).is_err(), "{bad:?} parsed");
    }
    // `none` is the identity normalization; equal values are one value for every channel.
    let identity = Normalization::MeanStd { mean: vec![0.0; 3], std: vec![1.0] };
    assert!(Normalization::None.same_as(&identity, 3));
    assert!(!Normalization::None.same_as(&p("cifar10").unwrap(), 3));
    assert!(p("0.5,0.5").unwrap().same_as(&p("0.5,0.5,0.5,0.5,0.5,0.5").unwrap(), 3));
}

/// The message of the import error for `file` imported as `arch`.
fn import_error(file: &str, arch: &str) -> String {
    let case = Case {
        arch: arch.into(),
        width: 0.0625,
        normalize: "none".into(),
        found_under: None,
        stripped: vec![],
        dropped: 0,
    };
    let err = import_state_dict(&fixture(file), &spec(&case), &Normalization::None)
        .expect_err(&format!("{file} as {arch} imported"));
    assert!(matches!(err, CoreError::Pt(_) | CoreError::Checkpoint { .. }), "{err:?}");
    err.to_string()
}

#[test]
fn bad_inputs_are_named_with_the_fix() {
    let e = import_error("import_bad_torchscript.pt", "resnet18");
    assert!(e.contains("TorchScript") && e.contains("state_dict()"), "{e}");
    let e = import_error("import_bad_optimizer.pt", "resnet18");
    assert!(e.contains("optimizer") && e.contains("model.state_dict()"), "{e}");
    let e = import_error("import_bad_module.pt", "resnet18");
    assert!(e.contains("torch.nn.modules.linear.Linear") && e.contains("state_dict()"), "{e}");
    // Another architecture's state dict: every wrong name is counted and the fitting
    // architecture is named.
    let e = import_error("import_resnet18.pt", "wrn_28_10");
    assert!(e.contains("names are those of `resnet18`"), "{e}");
    assert!(e.contains("missing") && e.contains("unexpected"), "{e}");
    // Right architecture, wrong width: every mis-shaped tensor is listed.
    let e = import_error("import_wrn_28_10.pt", "wrn_28_10");
    assert!(e.contains("wrong shape") && e.contains("conv1.weight"), "{e}");
    assert!(!e.contains("missing") && !e.contains("names are those of"), "{e}");
    // Not a PyTorch file at all.
    let e = import_error("import_meta.json", "resnet18");
    assert!(e.contains("not a torch.save file"), "{e}");
}

#[test]
fn reader_keeps_dtypes_and_reads_other_objects_inertly() {
    let root = pt::read(&fixture("import_preact_resnet18.pt")).unwrap();
    assert_eq!(root.keys(), ["epoch", "best_acc", "args", "state_dict", "optimizer"]);
    assert!(matches!(root.get("epoch"), Some(pt::Value::Int(7))));
    assert!(matches!(root.get("args"), Some(pt::Value::Object(c)) if c == "argparse.Namespace"));
    let sd = root.get("state_dict").unwrap();
    let Some(pt::Value::Tensor(n)) = sd.get("module.layer1.0.bn1.num_batches_tracked") else {
        panic!("{}", sd.describe())
    };
    assert_eq!((n.kind(), n.size()), (Kind::Int64, vec![]));
    let Some(pt::Value::Tensor(w)) = sd.get("module.conv1.weight") else { panic!() };
    assert_eq!((w.kind(), w.size()), (Kind::Float, vec![4, 3, 3, 3]));
    // The optimizer's momentum buffers are tensors too, under integer keys.
    let state = root.get("optimizer").and_then(|o| o.get("state")).unwrap();
    assert!(matches!(state, pt::Value::Dict(items) if !items.is_empty()), "{}", state.describe());
}
