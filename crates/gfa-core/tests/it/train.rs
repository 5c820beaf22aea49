//! The trainer: λ = 0 is plain training bit for bit, training lowers the loss, resume is exact,
//! a diverging run stops with an error naming where.
use gfa_core::models::{Arch, ModelSpec};
use gfa_core::regularizer::{PenaltyGradient, RegKind, RegularizerConfig};
use gfa_core::train::{AugmentConfig, Method, OptimizerConfig, Schedule, TrainOptions, train};
use gfa_core::{Classifier, CoreError, TaskLoss, TrainConfig};
use gfa_data::{Dataset, Splits};
use tch::{Device, Kind, Tensor};

/// A learnable synthetic set: class k brightens channel k % 3 and, for k ≥ 3, the left half.
pub fn synthetic(n: i64, seed: i64) -> Dataset {
    tch::manual_seed(seed);
    let labels = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(4);
    let noise = Tensor::rand([n, 3, 32, 32], (Kind::Float, Device::Cpu)) * 100.0;
    let chan = labels.remainder(3).one_hot(3).to_kind(Kind::Float).view([n, 3, 1, 1]);
    let left = Tensor::cat(
        &[
            Tensor::ones([16], (Kind::Float, Device::Cpu)),
            Tensor::zeros([16], (Kind::Float, Device::Cpu)),
        ],
        0,
    );
    let half = labels.ge(3).to_kind(Kind::Float).view([n, 1, 1, 1]) * left.view([1, 1, 1, 32]);
    let images = (noise + chan * 120.0 + half * 30.0).clamp(0.0, 255.0).to_kind(Kind::Uint8);
    Dataset { images, labels, classes: (0..4).map(|k| format!("c{k}")).collect() }
}

pub fn splits(n_train: i64, n_test: i64) -> Splits {
    Splits { train: synthetic(n_train, 1), test: synthetic(n_test, 2) }
}

pub fn tiny_cnn(seed: u64) -> Classifier {
    gfa_core::seed::seed_all(seed);
    let spec = ModelSpec { width: 0.0625, num_classes: 4, ..ModelSpec::of(Arch::Cnn) };
    Classifier::new(&spec, Device::Cpu).unwrap()
}

pub fn weights(model: &Classifier) -> Vec<(String, Tensor)> {
    gfa_core::checkpoint::named_weights(model)
}

fn assert_same_weights(a: &Classifier, b: &Classifier) {
    for ((na, ta), (nb, tb)) in weights(a).iter().zip(weights(b)) {
        assert_eq!(na, &nb);
        assert!(ta.equal(&tb), "{na} differs");
    }
}

pub fn quick(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 8,
        optimizer: OptimizerConfig::Sgd {
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 5e-4,
            nesterov: false,
        },
        schedule: Schedule::Cosine,
        augment: AugmentConfig::default(),
        method: Method::Standard,
        eval_batch_size: 64,
    }
}

fn mean_loss(model: &Classifier, data: &Dataset) -> f64 {
    let (x, y) =
        data.batch(&Tensor::arange(data.len() as i64, (Kind::Int64, Device::Cpu)), Device::Cpu);
    tch::no_grad(|| TaskLoss::Ce.mean(&model.logits(&x, false), &y).double_value(&[]))
}

#[test]
fn lambda_zero_is_plain_training_bit_for_bit() {
    let data = splits(40, 0);
    let opts = TrainOptions { seed: 3, max_steps: Some(4), ..Default::default() };
    let mut plain = tiny_cnn(9);
    train(&mut plain, &data, &quick(1), &RegularizerConfig::default(), &opts, &mut |_| Ok(()))
        .unwrap();
    let mut gfa0 = tiny_cnn(9);
    let cfg = TrainConfig { method: Method::Gfa, ..quick(1) };
    let out = train(&mut gfa0, &data, &cfg, &RegularizerConfig::gfa(0.0), &opts, &mut |_| Ok(()))
        .unwrap();
    assert_same_weights(&plain, &gfa0);
    // So does λ = 0 with the finite-difference penalty gradient.
    let mut fd0 = tiny_cnn(9);
    let fd =
        RegularizerConfig { gradient: PenaltyGradient::FiniteDifference, ..Default::default() };
    train(
        &mut fd0,
        &data,
        &cfg,
        &RegularizerConfig { kind: RegKind::Gfa, ..fd },
        &opts,
        &mut |_| Ok(()),
    )
    .unwrap();
    assert_same_weights(&plain, &fd0);
    // The cosines were still measured and logged.
    assert_eq!(out.records[0].taps.len(), gfa0.tap_names().len());
    assert!(out.records[0].taps.iter().all(|t| t.cos.is_finite() && t.cos != 0.0));
    // and a positive λ does change the weights.
    let mut gfa = tiny_cnn(9);
    train(&mut gfa, &data, &cfg, &RegularizerConfig::gfa(1.0), &opts, &mut |_| Ok(())).unwrap();
    let differs = weights(&plain).iter().zip(weights(&gfa)).any(|((_, a), (_, b))| !a.equal(&b));
    assert!(differs);
}

#[test]
fn one_epoch_lowers_the_loss() {
    let data = splits(64, 32);
    for (method, reg) in [
        (Method::Standard, RegularizerConfig::default()),
        (Method::Gfa, RegularizerConfig::gfa(0.1)),
        (Method::Gnr, RegularizerConfig::gnr(0.1)),
    ] {
        let mut model = tiny_cnn(4);
        let before = mean_loss(&model, &data.train);
        let cfg = TrainConfig { method: method.clone(), ..quick(1) };
        let mut seen = Vec::new();
        let out = train(
            &mut model,
            &data,
            &cfg,
            &reg,
            &TrainOptions { seed: 1, ..Default::default() },
            &mut |r| {
                seen.push(r.clone());
                Ok(())
            },
        )
        .unwrap();
        let after = mean_loss(&model, &data.train);
        assert!(after < before, "{}: {before} -> {after}", method.name());
        assert_eq!(seen, out.records);
        let r = &out.records[0];
        assert_eq!(r.epoch, 1);
        assert!(r.test_acc.is_some() && r.train_loss.is_finite() && r.seconds > 0.0);
        assert!(!r.collapse, "the collapse flag needs at least two epochs");
        if method != Method::Standard {
            assert!(r.train_reg > 0.0, "{}", method.name());
        }
    }
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let data = splits(24, 8);
    for (optimizer, method, reg) in [
        (
            OptimizerConfig::Sgd { lr: 0.05, momentum: 0.9, weight_decay: 5e-4, nesterov: true },
            Method::Gfa,
            RegularizerConfig::gfa(0.5),
        ),
        (
            OptimizerConfig::Adam { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 1e-4 },
            Method::Standard,
            RegularizerConfig::default(),
        ),
    ] {
        let cfg = TrainConfig { optimizer, method, ..quick(3) };
        let dir_a = tempfile::tempdir().unwrap();
        let dir_b = tempfile::tempdir().unwrap();
        let opts = |dir: &std::path::Path, resume| TrainOptions {
            seed: 5,
            run_id: "r".into(),
            checkpoint_dir: Some(dir.to_path_buf()),
            resume,
            ..Default::default()
        };
        let mut full = tiny_cnn(1);
        let out_a =
            train(&mut full, &data, &cfg, &reg, &opts(dir_a.path(), false), &mut |_| Ok(()))
                .unwrap();

        // Interrupted after the first epoch (the checkpoint is written before the callback).
        let mut part = tiny_cnn(1);
        let err = train(&mut part, &data, &cfg, &reg, &opts(dir_b.path(), true), &mut |r| {
            if r.epoch == 1 { Err(CoreError::Config("interrupted".into())) } else { Ok(()) }
        });
        assert!(err.is_err());
        // A fresh process: different initial weights, restored from the checkpoint.
        let mut resumed = tiny_cnn(77);
        let out_b =
            train(&mut resumed, &data, &cfg, &reg, &opts(dir_b.path(), true), &mut |_| Ok(()))
                .unwrap();
        assert_eq!(out_b.resumed_epochs, 1);
        assert_same_weights(&full, &resumed);
        let strip = |v: &[gfa_core::EpochRecord]| {
            v.iter()
                .map(|r| (r.epoch, r.train_loss, r.train_acc, r.test_acc, r.lr, r.lambda))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&out_a.records), strip(&out_b.records));
        // Resuming with another configuration is refused.
        let other = TrainConfig { batch_size: 4, ..cfg.clone() };
        let mut m = tiny_cnn(1);
        let e = train(&mut m, &data, &other, &reg, &opts(dir_b.path(), true), &mut |_| Ok(()))
            .unwrap_err();
        assert!(e.to_string().contains("different configuration"), "{e}");
    }
}

#[test]
fn non_finite_loss_names_epoch_and_step() {
    let data = splits(32, 0);
    let cfg = TrainConfig {
        optimizer: OptimizerConfig::Sgd {
            lr: 1e30,
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        },
        schedule: Schedule::Constant,
        ..quick(2)
    };
    let mut model = tiny_cnn(2);
    let reg = RegularizerConfig { task_loss: TaskLoss::MseLogits, ..Default::default() };
    let e = train(&mut model, &data, &cfg, &reg, &TrainOptions::default(), &mut |_| Ok(()))
        .unwrap_err();
    match &e {
        CoreError::NonFinite { epoch, step, .. } => {
            assert_eq!(*epoch, 1);
            assert!(*step >= 2);
            assert!(e.to_string().contains(&format!("epoch 1, step {step}")), "{e}");
        }
        other => panic!("expected NonFinite, got {other}"),
    }
}

#[test]
fn adversarial_methods_train_lower_their_loss_and_log_their_terms() {
    let data = splits(64, 8);
    for (method, reg, term) in [
        (
            Method::PgdAt { eps: 8.0 / 255.0, step: 2.0 / 255.0, steps: 2, random_start: true },
            RegularizerConfig::default(),
            None,
        ),
        (
            Method::FastAt { eps: 8.0 / 255.0, step: 10.0 / 255.0 },
            RegularizerConfig::default(),
            None,
        ),
        (
            Method::Trades { eps: 8.0 / 255.0, step: 2.0 / 255.0, steps: 2, beta: 6.0 },
            RegularizerConfig::default(),
            Some("kl"),
        ),
        (
            Method::GradAlign { eps: 8.0 / 255.0, step: 8.0 / 255.0, align_lambda: 0.2 },
            RegularizerConfig::default(),
            Some("align"),
        ),
        (
            Method::GfaPgdAt { eps: 8.0 / 255.0, step: 2.0 / 255.0, steps: 2, random_start: true },
            RegularizerConfig::gfa(0.5),
            None,
        ),
    ] {
        let mut model = tiny_cnn(6);
        let before: Vec<Tensor> = weights(&model).iter().map(|(_, t)| t.copy()).collect();
        let cfg = TrainConfig { method: method.clone(), ..quick(3) };
        let out = train(
            &mut model,
            &data,
            &cfg,
            &reg,
            &TrainOptions { seed: 2, ..Default::default() },
            &mut |_| Ok(()),
        )
        .unwrap();
        let r = &out.records[0];
        assert!(r.train_loss.is_finite(), "{}", method.name());
        if let Some(t) = term {
            assert!(
                r.terms[t].is_finite() && r.terms[t] >= 0.0,
                "{}: {:?}",
                method.name(),
                r.terms
            );
        }
        if reg.kind != gfa_core::RegKind::None {
            assert!(r.train_reg > 0.0);
        }
        let moved = before.iter().zip(weights(&model)).any(|(a, (_, b))| !a.equal(&b));
        assert!(moved, "{}", method.name());
        // The method's own loss (on the inputs it trains on) falls from the first epoch to the last.
        let losses: Vec<f64> = out.records.iter().map(|r| r.train_loss).collect();
        assert!(losses[2] < losses[0], "{}: {losses:?}", method.name());
    }
}

#[test]
fn collapse_is_flagged_after_two_epochs_near_chance() {
    // lr 0 keeps the random network at chance: the flag must be raised from epoch 2 on.
    let data = splits(32, 0);
    let cfg = TrainConfig {
        optimizer: OptimizerConfig::Sgd {
            lr: 1e-12,
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        },
        schedule: Schedule::Constant,
        ..quick(2)
    };
    let mut model = tiny_cnn(8);
    let out = train(
        &mut model,
        &data,
        &cfg,
        &RegularizerConfig::default(),
        &TrainOptions::default(),
        &mut |_| Ok(()),
    )
    .unwrap();
    let chance_like = out.records[1].train_acc < 1.5 * 0.25;
    assert!(!out.records[0].collapse);
    assert_eq!(out.records[1].collapse, chance_like);
}

/// A few trainer steps with the finite-difference penalty gradient land where double backprop
/// does, for every method that trains on the penalty: the weights' change differs by ≤ 1 %
/// (each step's gradient is within a few 1e-3, see tests/it/regularizer.rs), while the change
/// the penalty itself makes is far larger than that.
#[test]
fn finite_difference_training_follows_double_backprop() {
    let data = splits(24, 0);
    let opts = TrainOptions { seed: 5, max_steps: Some(3), ..Default::default() };
    let flat = |m: &Classifier| {
        Tensor::cat(&weights(m).iter().map(|(_, t)| t.flatten(0, -1)).collect::<Vec<_>>(), 0)
    };
    let start = flat(&tiny_cnn(9));
    let pgd =
        Method::GfaPgdAt { eps: 8.0 / 255.0, step: 2.0 / 255.0, steps: 2, random_start: true };
    for (method, reg) in [
        (Method::Gfa, RegularizerConfig::gfa(1.0)),
        (pgd, RegularizerConfig::gfa(1.0)),
        (Method::Gnr, RegularizerConfig::gnr(0.3)),
    ] {
        let cfg = TrainConfig { method: method.clone(), ..quick(1) };
        let run = |reg: &RegularizerConfig| {
            let mut m = tiny_cnn(9);
            let out = train(&mut m, &data, &cfg, reg, &opts, &mut |_| Ok(())).unwrap();
            (flat(&m) - &start, out.records[0].clone())
        };
        let (exact, r_exact) = run(&reg);
        let fd_reg =
            RegularizerConfig { gradient: PenaltyGradient::FiniteDifference, ..reg.clone() };
        let (fd, r_fd) = run(&fd_reg);
        let (plain, _) = run(&RegularizerConfig { lambda: 0.0, ..reg.clone() });
        let norm = |t: &Tensor| t.norm().double_value(&[]);
        let err = norm(&(&fd - &exact)) / norm(&exact);
        let penalty_part = norm(&(&exact - &plain)) / norm(&exact);
        assert!(err <= 1e-2, "{}: ‖Δw_fd − Δw_exact‖/‖Δw_exact‖ = {err:e}", method.name());
        assert!(
            penalty_part > 20.0 * err,
            "{}: the penalty moves the weights by only {penalty_part:e}",
            method.name()
        );
        assert!(
            (r_fd.train_reg - r_exact.train_reg).abs() <= 1e-2 * r_exact.train_reg,
            "{}: R {} vs {}",
            method.name(),
            r_fd.train_reg,
            r_exact.train_reg
        );
        assert_eq!(r_fd.taps.len(), r_exact.taps.len());
    }
}
