//! `[train] init` (fine-tuning from another model's weights), early stopping by step count
//! (`train.stop_after_steps`) and the λ ramp over steps, in the trainer.
use gfa_core::checkpoint::{self, named_weights};
use gfa_core::regularizer::RegularizerConfig;
use gfa_core::train::{InitConfig, InitWeights, TrainOptions, train};
use gfa_core::{Classifier, CoreError, Method, TrainConfig};
use std::path::{Path, PathBuf};

use super::train::{gfa, quick, splits, tiny_cnn, weights};

/// Every variable of `a` equals `b`'s bit for bit (`Tensor::equal`: same shape, same values;
/// no arithmetic happens between a copy and the comparison).
fn same_weights(a: &[(String, tch::Tensor)], b: &[(String, tch::Tensor)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((na, ta), (nb, tb))| na == nb && ta.equal(tb))
}

fn init_from(file: &Path) -> InitConfig {
    InitConfig {
        run: None,
        checkpoint: None,
        file: Some(file.display().to_string()),
        seed: None,
        weights: InitWeights::Final,
        fingerprint: None,
    }
}

/// A source model: `tiny_cnn(1)` trained one epoch into `dir`; its final weights file.
fn source(dir: &Path) -> PathBuf {
    let data = splits(32, 0);
    let opts = TrainOptions {
        seed: 1,
        checkpoint_dir: Some(dir.to_path_buf()),
        max_steps: Some(3),
        ..Default::default()
    };
    let mut model = tiny_cnn(1);
    train(&mut model, &data, &quick(1), &Method::default(), &opts, &mut |_| Ok(())).unwrap();
    dir.join(checkpoint::FINAL)
}

/// The source's weights as a file holds them.
fn file_weights(file: &Path) -> Vec<(String, tch::Tensor)> {
    let mut model = tiny_cnn(0);
    checkpoint::load_weights(&mut model, file).unwrap();
    named_weights(&model)
}

/// A run with `[train] init` begins its first epoch with the source's weights, bit for bit: with
/// no step taken (every epoch cut after 0 steps) its final weights are the file's, where the
/// same run without init keeps its own fresh initialization.
#[test]
fn the_first_epoch_starts_from_the_source_weights_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let file = source(dir.path());
    let want = file_weights(&file);
    let data = splits(32, 8);
    let cfg = TrainConfig { init: Some(init_from(&file)), ..quick(1) };
    let opts = TrainOptions {
        seed: 7,
        max_steps: Some(0),
        init: Some(file.clone()),
        ..Default::default()
    };
    let mut model = tiny_cnn(7);
    assert!(!same_weights(&weights(&model), &want), "a fresh model differs from the source");
    train(&mut model, &data, &cfg, &gfa(0.3), &opts, &mut |_| Ok(())).unwrap();
    assert!(same_weights(&weights(&model), &want), "the first epoch did not start at the source");
    // Without init the same call starts from the model's own initialization.
    let mut fresh = tiny_cnn(7);
    let before = weights(&fresh).iter().map(|(n, t)| (n.clone(), t.copy())).collect::<Vec<_>>();
    let plain = TrainOptions { init: None, ..opts };
    train(&mut fresh, &data, &quick(1), &gfa(0.3), &plain, &mut |_| Ok(())).unwrap();
    assert!(same_weights(&weights(&fresh), &before));
}

/// A fine-tuning run interrupted after its first epoch and resumed (a fresh process: other
/// initial weights) ends with the uninterrupted run's weights; the resumed run continues from
/// its own checkpoint, not from the source again.
#[test]
fn a_fine_tuning_run_is_resumed_exactly() {
    let src = tempfile::tempdir().unwrap();
    let file = source(src.path());
    let data = splits(24, 8);
    let cfg = TrainConfig { init: Some(init_from(&file)), ..quick(2) };
    let opts = |dir: &Path| TrainOptions {
        seed: 5,
        checkpoint_dir: Some(dir.to_path_buf()),
        resume: true,
        init: Some(file.clone()),
        ..Default::default()
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut full = tiny_cnn(3);
    train(&mut full, &data, &cfg, &gfa(0.2), &opts(a.path()), &mut |_| Ok(())).unwrap();
    let mut part = tiny_cnn(3);
    let stop = |r: &gfa_core::EpochRecord| match r.epoch {
        1 => Err(CoreError::Config("interrupted".into())),
        _ => Ok(()),
    };
    assert!(train(&mut part, &data, &cfg, &gfa(0.2), &opts(b.path()), &mut |r| stop(r)).is_err());
    let mut resumed = tiny_cnn(99);
    let out =
        train(&mut resumed, &data, &cfg, &gfa(0.2), &opts(b.path()), &mut |_| Ok(())).unwrap();
    assert_eq!(out.resumed_epochs, 1);
    assert!(same_weights(&weights(&full), &weights(&resumed)));
    // Starting from the source, or from scratch, ends elsewhere.
    let mut scratch = tiny_cnn(3);
    let plain = TrainOptions { init: None, checkpoint_dir: None, ..opts(a.path()) };
    train(&mut scratch, &data, &quick(2), &gfa(0.2), &plain, &mut |_| Ok(())).unwrap();
    assert!(!same_weights(&weights(&full), &weights(&scratch)));
}

/// `init` in the config and the weights file in the options go together, and the file must fit
/// the model; each is refused before the first step.
#[test]
fn init_without_weights_or_with_weights_of_another_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = source(dir.path());
    let data = splits(16, 0);
    let cfg = TrainConfig { init: Some(init_from(&file)), ..quick(1) };
    let run = |cfg: &TrainConfig, init: Option<PathBuf>, model: &mut Classifier| {
        let opts = TrainOptions { seed: 1, init, ..Default::default() };
        train(model, &data, cfg, &Method::default(), &opts, &mut |_| Ok(())).unwrap_err()
    };
    let e = run(&cfg, None, &mut tiny_cnn(1)).to_string();
    assert!(e.contains("TrainOptions::init"), "{e}");
    let e = run(&quick(1), Some(file.clone()), &mut tiny_cnn(1)).to_string();
    assert!(e.contains("no train.init"), "{e}");
    // A wider cnn: the weights do not fit.
    gfa_core::seed::seed_all(1);
    let wide = gfa_core::ModelSpec { width: 0.125, ..tiny_cnn(1).spec.clone() };
    let mut model = Classifier::new(&wide, tch::Device::Cpu).unwrap();
    let e = run(&cfg, Some(file), &mut model).to_string();
    assert!(e.contains("has shape") && e.contains("the model expects"), "{e}");
    // Two sources, or `best` from a weights file, are config errors naming the key.
    let two = InitConfig { checkpoint: Some("x".into()), ..init_from(Path::new("y")) };
    let e = TrainConfig { init: Some(two), ..quick(1) }.validate().unwrap_err().to_string();
    assert!(e.contains("train.init.file") && e.contains("2 sources"), "{e}");
    let best = InitConfig { weights: InitWeights::Best, ..init_from(Path::new("y")) };
    let e = TrainConfig { init: Some(best), ..quick(1) }.validate().unwrap_err().to_string();
    assert!(e.contains("train.init.weights"), "{e}");
}

/// `stop_after_steps` ends training after that many steps in all: the epoch it falls in is the
/// last, its first epoch is the full run's bit for bit (same kernels, same process), and a
/// resumed stopped run does nothing more.
#[test]
fn stop_after_steps_cuts_the_full_run_bit_for_bit() {
    let data = splits(32, 8); // 4 steps of 8 per epoch
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig { stop_after_steps: Some(6), ..quick(3) };
    let opts = TrainOptions {
        seed: 2,
        checkpoint_dir: Some(dir.path().to_path_buf()),
        resume: true,
        ..Default::default()
    };
    let mut model = tiny_cnn(2);
    let out = train(&mut model, &data, &cfg, &Method::default(), &opts, &mut |_| Ok(())).unwrap();
    let steps: Vec<usize> = out.records.iter().map(|r| r.steps).collect();
    assert_eq!(steps, [4, 6]);
    let mut full = tiny_cnn(2);
    let plain = TrainOptions { seed: 2, ..Default::default() };
    let all = train(&mut full, &data, &quick(3), &Method::default(), &plain, &mut |_| Ok(()));
    let all = all.unwrap();
    assert_eq!(all.records.len(), 3);
    assert_eq!(all.records[0].train_loss, out.records[0].train_loss);
    assert_eq!(all.records[0].lr, out.records[0].lr, "the schedule still spans 3 epochs");
    let again =
        train(&mut tiny_cnn(9), &data, &cfg, &Method::default(), &opts, &mut |_| Ok(())).unwrap();
    assert_eq!((again.resumed_epochs, again.records.len()), (2, 2));
    // Stopping at or after the end, or at 0, is refused.
    for (stop, needle) in [(12, "not before the end of training"), (0, "at least 1")] {
        let cfg = TrainConfig { stop_after_steps: Some(stop), ..quick(3) };
        let e = train(&mut tiny_cnn(2), &data, &cfg, &Method::default(), &plain, &mut |_| Ok(()));
        let e = e.unwrap_err().to_string();
        assert!(e.contains("train.stop_after_steps") && e.contains(needle), "{e}");
    }
}

/// `lambda_warmup_steps` ramps λ over the first steps of training: an epoch's record carries the
/// λ of its last step.
#[test]
fn lambda_ramps_over_steps() {
    let data = splits(32, 0); // 4 steps per epoch
    let reg = RegularizerConfig { lambda_warmup_steps: 6, ..RegularizerConfig::with_lambda(0.6) };
    let method = Method::Gfa(gfa_core::method::gfa::Gfa(reg));
    let opts = TrainOptions { seed: 2, ..Default::default() };
    let out = train(&mut tiny_cnn(2), &data, &quick(2), &method, &opts, &mut |_| Ok(())).unwrap();
    let lambdas: Vec<Option<f64>> = out.records.iter().map(|r| r.lambda).collect();
    // Step 3 (the first epoch's last) uses 0.6 · 4/6; step 7 is past the ramp.
    assert_eq!(lambdas, [Some(0.6 * (4.0 / 6.0)), Some(0.6)]);
}
