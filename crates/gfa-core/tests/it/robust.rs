//! The trainer's collapse diagnostics (probes on a fixed batch) and its validation split (the
//! robust checkpoint `best.safetensors`).
use gfa_core::checkpoint::{self, named_weights};
use gfa_core::seed::SeededRng;
use gfa_core::train::{
    DiagnosticsConfig, TrainOptions, ValidationAttack, ValidationConfig, diagnostics, train,
};
use gfa_core::{Classifier, CoreError, EpochRecord, Method, TaskLoss, TrainConfig};
use rand::Rng;
use tch::{Device, Kind, Tensor};

use super::train::{gfa, quick, splits, synthetic, tiny_cnn, weights};

fn with_diagnostics(epochs: usize, d: DiagnosticsConfig) -> TrainConfig {
    TrainConfig { diagnostics: d, ..quick(epochs) }
}

/// The probes only look: a run trains bit for bit the same with the diagnostics on or off.
#[test]
fn diagnostics_do_not_change_training() {
    let data = splits(48, 16);
    let opts = TrainOptions { seed: 4, max_steps: Some(5), ..Default::default() };
    let on = with_diagnostics(2, DiagnosticsConfig { batch: 16, every: 2, epochs: 1 });
    let off = with_diagnostics(2, DiagnosticsConfig { batch: 0, ..Default::default() });
    let mut a = tiny_cnn(3);
    let out = train(&mut a, &data, &on, &gfa(0.5), &opts, &mut |_| Ok(())).unwrap();
    let mut b = tiny_cnn(3);
    let plain = train(&mut b, &data, &off, &gfa(0.5), &opts, &mut |_| Ok(())).unwrap();
    for ((n, x), (_, y)) in weights(&a).iter().zip(weights(&b)) {
        assert!(x.equal(&y), "{n} differs");
    }
    assert!(plain.records.iter().all(|r| r.probes.is_empty() && r.end_probe().is_none()));
    // Probes at steps 0, 2, 4 of epoch 1 and at each epoch's end (5 and 10 steps).
    let at: Vec<(usize, usize)> =
        out.records.iter().flat_map(|r| &r.probes).map(|p| (p.epoch, p.step)).collect();
    assert_eq!(at, vec![(1, 0), (1, 2), (1, 4), (1, 5), (2, 10)]);
    assert_eq!(out.records.iter().map(|r| r.steps).collect::<Vec<_>>(), vec![5, 10]);
    let end = out.records[1].end_probe().unwrap();
    assert_eq!(end.taps.len(), a.tap_names().len());
    assert!(end.taps[0].dead.is_none() && end.taps[1..].iter().all(|t| t.dead.is_some()));
    assert!(end.penalty.is_some_and(|r| r.is_finite()) && end.lambda == Some(0.5));
    assert!((0.0..=1.0).contains(&end.pred_entropy) && end.test_acc.is_some());
    assert_eq!(end.collapse, end.train_acc < 1.5 * 0.25);
    let step_probes: Vec<_> = out.records.iter().flat_map(|r| &r.probes).collect();
    assert_eq!(out.records[1].collapse_step, diagnostics::collapse_step(step_probes.into_iter()));
}

/// A probe's input-gradient norm and input-tap cosine are those of the batch's own gradient.
#[test]
fn probe_measures_the_fixed_batch() {
    let model = tiny_cnn(5);
    let data = synthetic(12, 3);
    let fixed = diagnostics::FixedBatches::new(&data, &data.head(0), 12, Device::Cpu);
    let ctx = diagnostics::ProbeContext { task: TaskLoss::Ce, reg: None, lambda: None, at: (1, 0) };
    let p = diagnostics::probe(&model, &fixed, ctx).unwrap();
    let (x, y) = data.batch(&Tensor::arange(12, (Kind::Int64, Device::Cpu)), Device::Cpu);
    let xg = x.set_requires_grad(true);
    let loss = TaskLoss::Ce.sum(&model.logits(&xg, false), &y);
    let g = Tensor::run_backward(&[loss], &[&xg], false, false).remove(0);
    let norm = g.flatten(1, -1).norm_scalaropt_dim(2, 1, false).mean(Kind::Double);
    // Bit for bit: the probe runs the same model code on the same 12 points in this process
    // (its loss is summed per sample, whose gradient with respect to each loss is 1 either way),
    // so both take the same kernels on any CPU code path.
    assert_eq!(p.grad_norm, norm.double_value(&[]));
    let value = gfa_core::gfa_value(&model, &data, &Default::default()).unwrap();
    for (t, v) in p.taps.iter().zip(&value) {
        assert_eq!(t.tap, v.tap);
        // `gfa_value` takes the 12 points as one batch (256 by default), as the probe does.
        assert_eq!(t.cos, v.mean_cos, "{}", t.tap);
    }
    assert!(p.test_acc.is_none() && p.penalty.is_none());
    // No parameter gradient was accumulated.
    assert!(model.vs.trainable_variables().iter().all(|v| !v.grad().defined()));
}

/// A test-only validation attack: a random corner of the L∞ ball, drawn from the given
/// generator (the real one is gfa-attacks' PGD).
#[derive(Debug)]
struct Corner;

impl ValidationAttack for Corner {
    fn name(&self) -> &str {
        "corner"
    }
    fn perturb(
        &self,
        _model: &Classifier,
        x: &Tensor,
        _y: &Tensor,
        cfg: &ValidationConfig,
        rng: &mut SeededRng,
    ) -> gfa_core::Result<Tensor> {
        let signs: Vec<f32> =
            (0..x.numel()).map(|_| if rng.r#gen::<bool>() { 1.0 } else { -1.0 }).collect();
        let delta = Tensor::from_slice(&signs).view(x.size().as_slice()) * cfg.eps;
        Ok((x.detach() + delta).clamp(0.0, 1.0))
    }
}

fn validated(epochs: usize, every: usize) -> TrainConfig {
    let v = ValidationConfig { n: 8, steps: 1, every, eps: 0.1, ..Default::default() };
    TrainConfig { validation: Some(v), ..quick(epochs) }
}

/// The records of a validated run of standard training whose test split is drawn with
/// `test_seed`.
fn run(cfg: &TrainConfig, test_seed: i64) -> Vec<EpochRecord> {
    let data = gfa_data::Splits { train: synthetic(40, 1), test: synthetic(16, test_seed) };
    let opts = TrainOptions { seed: 9, validation: Some(&Corner), ..Default::default() };
    let mut model = tiny_cnn(2);
    train(&mut model, &data, cfg, &Method::default(), &opts, &mut |_| Ok(())).unwrap().records
}

/// Validation every 2 epochs and after the last, on 8 held-out images; `best.safetensors` holds
/// the weights of the epoch with the best robust validation accuracy.
#[test]
fn validation_keeps_the_robust_checkpoint() {
    let cfg = validated(3, 2);
    let dir = tempfile::tempdir().unwrap();
    let data = gfa_data::Splits { train: synthetic(40, 1), test: synthetic(16, 2) };
    let opts = TrainOptions {
        seed: 9,
        validation: Some(&Corner),
        checkpoint_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let mut model = tiny_cnn(2);
    let mut snapshots: Vec<Vec<(String, Tensor)>> = Vec::new();
    let mut seen = Vec::new();
    let records = train(&mut model, &data, &cfg, &Method::default(), &opts, &mut |r| {
        seen.push(r.epoch);
        // The checkpoint of the epoch is written before this callback.
        let last = checkpoint::load(dir.path(), checkpoint::LAST, Device::Cpu)?;
        snapshots.push(named_weights(&last).into_iter().map(|(n, t)| (n, t.copy())).collect());
        Ok(())
    })
    .unwrap()
    .records;
    assert_eq!(seen, vec![1, 2, 3]);
    // 40 − 8 held out = 32 training images: 4 steps of 8 per epoch.
    assert_eq!(records.iter().map(|r| r.steps).collect::<Vec<_>>(), vec![4, 8, 12]);
    let measured: Vec<usize> =
        records.iter().filter(|r| r.validation.is_some()).map(|r| r.epoch).collect();
    assert_eq!(measured, vec![2, 3]);
    let v = |e: usize| records[e - 1].validation.unwrap();
    assert!((0.0..=1.0).contains(&v(2).robust_acc) && (0.0..=1.0).contains(&v(3).clean_acc));
    let want = if v(3).robust_acc > v(2).robust_acc { 3 } else { 2 };
    assert_eq!(records[0].best_epoch, None);
    assert_eq!(records[1].best_epoch, Some(2));
    assert_eq!(records[2].best_epoch, Some(want));
    let best = checkpoint::load(dir.path(), checkpoint::BEST, Device::Cpu).unwrap();
    for ((n, a), (_, b)) in named_weights(&best).iter().zip(&snapshots[want - 1]) {
        assert!(a.equal(b), "{n}: best.safetensors is not epoch {want}");
    }
    // The choice never looks at the test split: another test set, the same records.
    let other = run(&cfg, 7);
    let strip = |r: &[EpochRecord]| -> Vec<_> {
        r.iter().map(|r| (r.validation, r.best_epoch, r.train_loss)).collect()
    };
    assert_eq!(strip(&other), strip(&records));
}

#[test]
fn validation_needs_an_attack_and_images_to_spare() {
    let data = gfa_data::Splits { train: synthetic(40, 1), test: synthetic(8, 2) };
    let mut model = tiny_cnn(2);
    let no_attack = TrainOptions { seed: 1, ..Default::default() };
    let e =
        train(&mut model, &data, &validated(1, 1), &Method::default(), &no_attack, &mut |_| Ok(()))
            .unwrap_err();
    assert!(e.to_string().contains("TrainOptions::validation"), "{e}");
    let all = TrainConfig {
        validation: Some(ValidationConfig { n: 40, ..Default::default() }),
        ..quick(1)
    };
    let opts = TrainOptions { seed: 1, validation: Some(&Corner), ..Default::default() };
    let e = train(&mut model, &data, &all, &Method::default(), &opts, &mut |_| Ok(())).unwrap_err();
    assert!(matches!(e, CoreError::Config(_)) && e.to_string().contains("data.n_train"), "{e}");
}

/// Interrupted after epoch 2 and resumed in a fresh process: the same validation
/// measurements, the same choice and the same `best.safetensors` as the uninterrupted run (and
/// the same diagnostics probes).
#[test]
fn robust_checkpoint_survives_resume() {
    let cfg = validated(4, 1);
    let data = gfa_data::Splits { train: synthetic(40, 1), test: synthetic(16, 2) };
    let opts = |dir: &std::path::Path, resume| TrainOptions {
        seed: 9,
        run_id: "r".into(),
        validation: Some(&Corner),
        checkpoint_dir: Some(dir.to_path_buf()),
        resume,
        ..Default::default()
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let method = Method::default();
    let mut full = tiny_cnn(2);
    let a = train(&mut full, &data, &cfg, &method, &opts(dir_a.path(), false), &mut |_| Ok(()))
        .unwrap();
    let mut part = tiny_cnn(2);
    let stop = train(&mut part, &data, &cfg, &method, &opts(dir_b.path(), true), &mut |r| {
        if r.epoch == 2 { Err(CoreError::Config("interrupted".into())) } else { Ok(()) }
    });
    assert!(stop.is_err());
    let mut resumed = tiny_cnn(77);
    let b = train(&mut resumed, &data, &cfg, &method, &opts(dir_b.path(), true), &mut |_| Ok(()))
        .unwrap();
    assert_eq!(b.resumed_epochs, 2);
    let choice = |r: &[EpochRecord]| -> Vec<_> {
        r.iter()
            .map(|r| {
                (r.epoch, r.steps, r.validation, r.best_epoch, r.probes.clone(), r.collapse_step)
            })
            .collect()
    };
    assert_eq!(choice(&b.records), choice(&a.records));
    assert!(a.records.iter().all(|r| r.validation.is_some() && r.best_epoch.is_some()));
    let best = |d: &std::path::Path| checkpoint::load(d, checkpoint::BEST, Device::Cpu).unwrap();
    let (best_a, best_b) = (best(dir_a.path()), best(dir_b.path()));
    for ((n, x), (_, y)) in named_weights(&best_a).iter().zip(&named_weights(&best_b)) {
        assert!(x.equal(y), "{n}: best.safetensors differs after the resume");
    }
    // Without validation no best.safetensors is written.
    let dir_c = tempfile::tempdir().unwrap();
    let mut plain = tiny_cnn(2);
    train(&mut plain, &data, &quick(1), &method, &opts(dir_c.path(), false), &mut |_| Ok(()))
        .unwrap();
    assert!(!dir_c.path().join(checkpoint::BEST).exists());
    assert!(dir_c.path().join(checkpoint::LAST).exists());
}
