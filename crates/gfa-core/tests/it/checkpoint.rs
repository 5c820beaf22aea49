//! Checkpoints: save → load gives identical logits; files are complete and named; bad files
//! are reported with their path.
use gfa_core::checkpoint::{self, CheckpointMeta};
use gfa_core::device::{Numerics, Precision};
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
        numerics: Numerics { precision: Precision::Tf32, deterministic: true },
    };
    checkpoint::write_meta(dir.path(), &meta).unwrap();
    assert_eq!(checkpoint::read_meta(dir.path()).unwrap(), meta);
    let text = std::fs::read_to_string(dir.path().join(checkpoint::SIDECAR)).unwrap();
    assert!(
        text.contains(r#""numerics": {"#) && text.contains(r#""precision": "tf32""#),
        "the sidecar names the numerics: {text}"
    );
}

/// A training run records the numerics it ran with in the sidecar and in each epoch record:
/// on the CPU strict fp32 (the CPU has no TF32), with the process's deterministic switch.
#[test]
fn training_records_its_numerics_in_the_sidecar_and_every_epoch() {
    let data = splits(16, 8);
    let dir = tempfile::tempdir().unwrap();
    let mut model = tiny_cnn(3);
    let opts =
        TrainOptions { seed: 3, checkpoint_dir: Some(dir.path().into()), ..Default::default() };
    train(&mut model, &data, &quick(2), &gfa(0.2), &opts, &mut |_| Ok(())).unwrap();
    let meta = checkpoint::read_meta(dir.path()).unwrap();
    let want = Numerics::in_force(Device::Cpu);
    assert_eq!(want.precision, Precision::Fp32);
    assert_eq!(meta.numerics, want);
    assert_eq!(meta.metrics.iter().map(|r| r.numerics).collect::<Vec<_>>(), vec![want; 2]);
}

/// A format-2 sidecar (before numerics were required) reads as format 3: with its `numerics`
/// where it has them, in every epoch record too; without them, as strict fp32 with the
/// deterministic switches off (`Numerics::BEFORE_RECORDING`, docs/numerics.md). Every other
/// value reads back unchanged, floats bit for bit.
#[test]
fn format_2_sidecars_read_as_format_3() {
    let dir = tempfile::tempdir().unwrap();
    let meta = CheckpointMeta {
        format: checkpoint::FORMAT,
        model: tiny_cnn(1).spec.clone(),
        epoch: 2,
        config_hash: "0123456789abcdef".into(),
        build: Provenance::unknown(),
        run_id: "run".into(),
        clean_acc: Some(0.09049479166666667),
        metrics: (1..=2)
            .map(|epoch| gfa_core::EpochRecord {
                epoch,
                train_loss: 1.390711545944214 / epoch as f64,
                numerics: Numerics { precision: Precision::Tf32, deterministic: true },
                ..Default::default()
            })
            .collect(),
        numerics: Numerics { precision: Precision::Tf32, deterministic: true },
    };
    checkpoint::write_meta(dir.path(), &meta).unwrap();
    let path = dir.path().join(checkpoint::SIDECAR);
    let v3: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    // Format 2 as gfa wrote it: no numerics in the epoch records, optional in the sidecar.
    let mut v2 = v3.clone();
    v2["format"] = 2.into();
    for r in v2["metrics"].as_array_mut().unwrap() {
        r.as_object_mut().unwrap().remove("numerics");
    }
    std::fs::write(&path, v2.to_string()).unwrap();
    assert_eq!(checkpoint::read_meta(dir.path()).unwrap(), meta, "format 2 with numerics");

    v2.as_object_mut().unwrap().remove("numerics");
    std::fs::write(&path, v2.to_string()).unwrap();
    let old = Numerics::BEFORE_RECORDING;
    assert_eq!(old, Numerics { precision: Precision::Fp32, deterministic: false });
    let want = CheckpointMeta {
        numerics: old,
        metrics: meta
            .metrics
            .iter()
            .map(|r| gfa_core::EpochRecord { numerics: old, ..r.clone() })
            .collect(),
        ..meta.clone()
    };
    assert_eq!(checkpoint::read_meta(dir.path()).unwrap(), want, "format 2 without numerics");

    // Format 3 without numerics is damaged, and an unknown format is named.
    let mut bad = v3.clone();
    bad.as_object_mut().unwrap().remove("numerics");
    std::fs::write(&path, bad.to_string()).unwrap();
    let e = checkpoint::read_meta(dir.path()).unwrap_err().to_string();
    assert!(e.contains("numerics") && e.contains(checkpoint::SIDECAR), "{e}");
    bad = v3;
    bad["format"] = 9.into();
    std::fs::write(&path, bad.to_string()).unwrap();
    let e = checkpoint::read_meta(dir.path()).unwrap_err().to_string();
    assert!(e.contains("format 9") && e.contains("(3, and 2)"), "{e}");
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
        numerics: Numerics::BEFORE_RECORDING,
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
        numerics: Numerics::BEFORE_RECORDING,
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

/// The memory layout is a speed choice, not part of the model: a checkpoint trained in one
/// layout holds the default layout, loads into a model of the other one, and gives the same
/// logits and weight gradients there; the sidecar does not mention the layout.
#[test]
fn a_checkpoint_trained_in_one_layout_loads_in_the_other() {
    use gfa_core::models::Layout;
    // A conv weight or feature map in channels-last memory has stride 1 along its channels.
    let channels_last = |t: &Tensor| t.dim() == 4 && t.size()[1] > 1 && t.stride()[1] == 1;
    let built = |layout: Layout, seed: u64| {
        gfa_core::seed::seed_all(seed);
        let spec = gfa_core::ModelSpec { layout, ..tiny_cnn(seed).spec.clone() };
        gfa_core::seed::seed_all(seed);
        Classifier::new(&spec, Device::Cpu).unwrap()
    };
    for (trained, other) in
        [(Layout::Contiguous, Layout::ChannelsLast), (Layout::ChannelsLast, Layout::Contiguous)]
    {
        let data = splits(16, 8);
        let dir = tempfile::tempdir().unwrap();
        let mut model = built(trained, 3);
        let opts = TrainOptions {
            seed: 3,
            run_id: "abc".into(),
            checkpoint_dir: Some(dir.path().into()),
            ..Default::default()
        };
        train(&mut model, &data, &quick(1), &gfa(0.2), &opts, &mut |_| Ok(())).unwrap();
        let convs: Vec<Tensor> =
            weights(&model).into_iter().filter(|(_, t)| t.dim() == 4).map(|(_, t)| t).collect();
        assert_eq!(convs.len(), 4, "the tiny cnn has four conv weights");
        let in_layout = |m: &Classifier| {
            let x = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
            let input = m.forward_taps(&x, false, gfa_core::TapPoint::PostActivation).taps[0]
                .shallow_clone();
            weights(m).iter().filter(|(_, t)| t.dim() == 4).all(|(_, t)| channels_last(t))
                && channels_last(&input)
        };
        assert_eq!(
            in_layout(&model),
            trained == Layout::ChannelsLast,
            "{trained:?} after training"
        );

        // The file holds the default layout, whatever the model's.
        let path = dir.path().join(checkpoint::LAST);
        for (name, t) in checkpoint::read_tensors(&path).unwrap() {
            assert!(t.is_contiguous() && !channels_last(&t), "{name}: strides {:?}", t.stride());
        }
        let sidecar = std::fs::read_to_string(dir.path().join(checkpoint::SIDECAR)).unwrap();
        assert!(!sidecar.contains("\"layout\""), "the sidecar names no layout: {sidecar}");

        // Loaded into a model of the other layout: the same weights, in that layout.
        let mut loaded = built(other, 9);
        checkpoint::load_weights(&mut loaded, &path).unwrap();
        assert_eq!(in_layout(&loaded), other == Layout::ChannelsLast, "{other:?} after loading");
        assert_eq!(loaded.spec, model.spec, "specs that differ only in layout are equal");
        for ((na, ta), (nb, tb)) in weights(&model).iter().zip(weights(&loaded)) {
            assert_eq!(na, &nb);
            assert!(ta.equal(&tb), "{na}: the loaded weight differs from the trained one");
        }

        // The same logits and weight gradients, compared in float64: both layouts compute the
        // same sums in another order, so they differ by a few rounding errors of float64 per
        // accumulation (≈ n·2⁻⁵³ relative for n ≤ 600 terms of a conv or fc output: < 1e-13),
        // far below the 1e-10 allowed; a weight read in the wrong order differs at order 1.
        model.vs.double();
        loaded.vs.double();
        gfa_core::seed::seed_all(5);
        let x = Tensor::rand([4, 3, 32, 32], (Kind::Double, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2, 3]);
        let close = |what: &str, a: &Tensor, b: &Tensor| {
            let scale = a.abs().max().double_value(&[]).max(1e-300);
            let err = (a - b).abs().max().double_value(&[]);
            assert!(
                err <= 1e-10 * scale,
                "{trained:?} → {other:?}: {what} differ by {err:e} (scale {scale:e})"
            );
        };
        let (la, lb) = (model.logits(&x, false), loaded.logits(&x, false));
        close("logits", &la, &lb);
        let grads = |m: &Classifier, logits: &Tensor| {
            let vars: Vec<Tensor> =
                weights(m).into_iter().map(|(_, t)| t).filter(Tensor::requires_grad).collect();
            Tensor::run_backward(&[logits.cross_entropy_for_logits(&y)], &vars, false, false)
        };
        for (i, (a, b)) in grads(&model, &la).iter().zip(grads(&loaded, &lb)).enumerate() {
            close(&format!("gradients of trainable weight {i}"), a, &b);
        }
    }
}
