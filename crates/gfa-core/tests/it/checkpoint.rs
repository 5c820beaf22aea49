//! Checkpoints: save → load gives identical logits; files are complete and named; bad files
//! are reported with their path.
use gfa_core::checkpoint::{self, CheckpointMeta};
use gfa_core::train::{TrainOptions, train};
use gfa_core::{Classifier, Provenance};
use tch::{Device, Kind, Tensor};

use super::train::{gfa, quick, splits, tiny_cnn, weights};

#[test]
fn save_then_load_gives_identical_logits() {
    let data = splits(16, 8);
    let dir = tempfile::tempdir().unwrap();
    let mut model = tiny_cnn(3);
    let build = Provenance { git_rev: "0123abcd".into(), git_dirty: true, ..Provenance::unknown() };
    let opts = TrainOptions {
        seed: 3,
        run_id: "abc".into(),
        checkpoint_dir: Some(dir.path().into()),
        provenance: build.clone(),
        ..Default::default()
    };
    train(&mut model, &data, &quick(1), &gfa(0.2), &opts, &mut |_| Ok(())).unwrap();
    for f in [checkpoint::LAST, checkpoint::FINAL, checkpoint::OPTIMIZER, checkpoint::SIDECAR] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");

    let loaded = checkpoint::load(dir.path(), checkpoint::LAST, Device::Cpu).unwrap();
    let meta = checkpoint::read_meta(dir.path()).unwrap();
    assert_eq!(meta.epoch, 1);
    assert_eq!(meta.run_id, "abc");
    assert_eq!(meta.model, model.spec);
    assert_eq!(meta.metrics.len(), 1);
    assert_eq!(meta.build, build, "the checkpoint records the build that wrote it");
    assert_eq!(meta.config_hash.len(), 16);
    let names: Vec<String> = weights(&loaded).into_iter().map(|(n, _)| n).collect();
    assert!(
        names.contains(&"normalize.mean".to_string())
            && names.contains(&"normalize.std".to_string())
    );
    let x = Tensor::rand([5, 3, 32, 32], (Kind::Float, Device::Cpu));
    let a = model.logits(&x, false);
    let b = loaded.logits(&x, false);
    assert!(a.equal(&b), "logits differ after save/load");
}

#[test]
fn normalization_is_saved_with_the_weights() {
    let mut spec = tiny_cnn(1).spec.clone();
    spec.mean = vec![0.1, 0.2, 0.3];
    spec.std = vec![0.9, 0.8, 0.7];
    let model = Classifier::new(&spec, Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    checkpoint::save_weights(&model, &path).unwrap();
    // Loading into a model built with the default normalization restores the saved one.
    let mut other = tiny_cnn(2);
    checkpoint::load_weights(&mut other, &path).unwrap();
    let x = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    assert!(model.logits(&x, false).equal(&other.logits(&x, false)));
}

#[test]
fn mismatched_or_corrupt_files_are_reported_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    checkpoint::save_weights(&tiny_cnn(1), &path).unwrap();
    let mut wider = {
        let spec = gfa_core::ModelSpec { width: 0.125, ..tiny_cnn(1).spec.clone() };
        Classifier::new(&spec, Device::Cpu).unwrap()
    };
    let e = checkpoint::load_weights(&mut wider, &path).unwrap_err().to_string();
    assert!(e.contains("w.safetensors") && e.contains("shape"), "{e}");

    std::fs::write(dir.path().join(checkpoint::SIDECAR), "{ not json").unwrap();
    let e = checkpoint::read_meta(dir.path()).unwrap_err().to_string();
    assert!(e.contains(checkpoint::SIDECAR), "{e}");
}

#[test]
fn sidecar_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let meta = CheckpointMeta {
        format: checkpoint::FORMAT,
        model: tiny_cnn(1).spec.clone(),
        epoch: 7,
        config_hash: "0123456789abcdef".into(),
        build: Provenance::unknown(),
        run_id: "run".into(),
        clean_acc: Some(0.5),
        metrics: vec![],
        numerics: None,
    };
    checkpoint::write_meta(dir.path(), &meta).unwrap();
    assert_eq!(checkpoint::read_meta(dir.path()).unwrap(), meta);
}

/// Floats in `checkpoint.json` read back bit for bit: a resumed run continues from exactly the
/// recorded metrics. 0.09049479166666667 is a training accuracy a run produced; serde_json
/// without its `float_roundtrip` feature reads it back as 0.09049479166666669.
#[test]
fn sidecar_floats_read_back_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let values = [0.09049479166666667, 1.390711545944214, 0.0002500000000000001, 1e-300, 0.1];
    let record = |i: usize, v: f64| gfa_core::EpochRecord {
        epoch: i + 1,
        train_loss: v,
        taps: vec![gfa_core::train::TapRecord { tap: "input".into(), cos: -v, term: v * 7.0 }],
        terms: [("gfa".to_string(), v / 3.0), ("kl".to_string(), v * 1.1)].into_iter().collect(),
        train_acc: v,
        test_acc: Some(1.0 - v),
        lr: v * 0.3,
        lambda: Some(v),
        seconds: v * 11.0,
        collapse: false,
        steps: i * 10,
        probes: vec![],
        collapse_step: None,
        validation: Some(gfa_core::train::ValidationRecord { clean_acc: v, robust_acc: v / 7.0 }),
        best_epoch: Some(1),
    };
    let meta = CheckpointMeta {
        format: checkpoint::FORMAT,
        model: tiny_cnn(1).spec.clone(),
        epoch: values.len(),
        config_hash: "0123456789abcdef".into(),
        build: Provenance::unknown(),
        run_id: "run".into(),
        clean_acc: Some(values[0]),
        metrics: values.iter().enumerate().map(|(i, &v)| record(i, v)).collect(),
        numerics: None,
    };
    checkpoint::write_meta(dir.path(), &meta).unwrap();
    let back = checkpoint::read_meta(dir.path()).unwrap();
    let bits = |m: &CheckpointMeta| {
        m.metrics
            .iter()
            .flat_map(|r| {
                let mut v = vec![r.train_loss, r.train_acc, r.lr, r.seconds];
                v.extend(r.lambda);
                v.extend(r.test_acc);
                v.extend(r.taps.iter().flat_map(|t| [t.cos, t.term]));
                v.extend(r.terms.values());
                v.extend(r.validation.iter().flat_map(|m| [m.clean_acc, m.robust_acc]));
                v
            })
            .map(f64::to_bits)
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&back), bits(&meta));
    assert_eq!(back, meta);
}
