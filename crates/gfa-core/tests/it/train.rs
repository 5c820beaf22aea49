//! The trainer: λ = 0 is plain training bit for bit, training lowers the loss, resume is exact,
//! a diverging run stops with an error naming where, adversarial methods need and use an inner
//! maximization and log their terms by name.
use gfa_core::method::gfa::{Gfa, Gnr};
use gfa_core::method::gfa_pgd_at::GfaPgdAt;
use gfa_core::method::pgd_at::PgdAt;
use gfa_core::models::{Arch, ModelSpec};
use gfa_core::regularizer::{PenaltyGradient, RegularizerConfig};
use gfa_core::seed::SeededRng;
use gfa_core::train::{
    AugmentConfig, InnerMax, OptimizerConfig, Schedule, TrainOptions, TrainPerturbation, train,
};
use gfa_core::{Classifier, CoreError, Method, TaskLoss, TrainConfig, TrainMethod};
use gfa_data::{Dataset, Splits};
use rand::Rng;
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
        task_loss: TaskLoss::Ce,
        eval_batch_size: 64,
        ..TrainConfig::default()
    }
}

pub fn gfa(lambda: f64) -> Method {
    Method::Gfa(Gfa(RegularizerConfig::with_lambda(lambda)))
}

fn gnr(lambda: f64) -> Method {
    Method::Gnr(Gnr(RegularizerConfig::with_lambda(lambda)))
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
    train(&mut plain, &data, &quick(1), &Method::default(), &opts, &mut |_| Ok(())).unwrap();
    let mut gfa0 = tiny_cnn(9);
    let out = train(&mut gfa0, &data, &quick(1), &gfa(0.0), &opts, &mut |_| Ok(())).unwrap();
    assert_same_weights(&plain, &gfa0);
    // So does λ = 0 with the finite-difference penalty gradient.
    let mut fd0 = tiny_cnn(9);
    let fd = RegularizerConfig {
        gradient: PenaltyGradient::FiniteDifference,
        ..RegularizerConfig::with_lambda(0.0)
    };
    train(&mut fd0, &data, &quick(1), &Method::Gfa(Gfa(fd)), &opts, &mut |_| Ok(())).unwrap();
    assert_same_weights(&plain, &fd0);
    // The cosines and R were still measured and logged.
    assert_eq!(out.records[0].taps.len(), gfa0.tap_names().len());
    assert!(out.records[0].taps.iter().all(|t| t.cos.is_finite() && t.cos != 0.0));
    assert!(out.records[0].terms["gfa"] > 0.0);
    assert_eq!(out.records[0].lambda, Some(0.0));
    // and a positive λ does change the weights.
    let mut with_gfa = tiny_cnn(9);
    train(&mut with_gfa, &data, &quick(1), &gfa(1.0), &opts, &mut |_| Ok(())).unwrap();
    let differs =
        weights(&plain).iter().zip(weights(&with_gfa)).any(|((_, a), (_, b))| !a.equal(&b));
    assert!(differs);
}

#[test]
fn one_epoch_lowers_the_loss() {
    let data = splits(64, 32);
    for method in [Method::default(), gfa(0.1), gnr(0.1)] {
        let mut model = tiny_cnn(4);
        let before = mean_loss(&model, &data.train);
        let mut seen = Vec::new();
        let out = train(
            &mut model,
            &data,
            &quick(1),
            &method,
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
        match method.name() {
            "standard" => assert!(r.terms.is_empty() && r.lambda.is_none()),
            name => assert!(r.terms[name] > 0.0 && r.lambda == Some(0.1), "{name}: {r:?}"),
        }
    }
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let data = splits(24, 8);
    for (optimizer, method) in [
        (
            OptimizerConfig::Sgd { lr: 0.05, momentum: 0.9, weight_decay: 5e-4, nesterov: true },
            gfa(0.5),
        ),
        (
            OptimizerConfig::Adam { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 1e-4 },
            Method::default(),
        ),
    ] {
        let cfg = TrainConfig { optimizer, ..quick(3) };
        let reg = &method;
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
        let out_a = train(&mut full, &data, &cfg, reg, &opts(dir_a.path(), false), &mut |_| Ok(()))
            .unwrap();

        // Interrupted after the first epoch (the checkpoint is written before the callback).
        let mut part = tiny_cnn(1);
        let err = train(&mut part, &data, &cfg, reg, &opts(dir_b.path(), true), &mut |r| {
            if r.epoch == 1 { Err(CoreError::Config("interrupted".into())) } else { Ok(()) }
        });
        assert!(err.is_err());
        // A fresh process: different initial weights, restored from the checkpoint.
        let mut resumed = tiny_cnn(77);
        let out_b =
            train(&mut resumed, &data, &cfg, reg, &opts(dir_b.path(), true), &mut |_| Ok(()))
                .unwrap();
        assert_eq!(out_b.resumed_epochs, 1);
        assert_same_weights(&full, &resumed);
        let strip = |v: &[gfa_core::EpochRecord]| {
            v.iter()
                .map(|r| {
                    (
                        r.epoch,
                        r.train_loss,
                        r.train_acc,
                        r.test_acc,
                        r.lr,
                        r.lambda,
                        r.terms.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&out_a.records), strip(&out_b.records));
        // Resuming with another configuration is refused.
        let other = TrainConfig { batch_size: 4, ..cfg.clone() };
        let mut m = tiny_cnn(1);
        let e = train(&mut m, &data, &other, reg, &opts(dir_b.path(), true), &mut |_| Ok(()))
            .unwrap_err();
        assert!(e.to_string().contains("different configuration"), "{e}");
        // and so is resuming with another method.
        let e = train(&mut m, &data, &cfg, &gfa(0.25), &opts(dir_b.path(), true), &mut |_| Ok(()))
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
        task_loss: TaskLoss::MseLogits,
        ..quick(2)
    };
    let mut model = tiny_cnn(2);
    let e =
        train(&mut model, &data, &cfg, &Method::default(), &TrainOptions::default(), &mut |_| {
            Ok(())
        })
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

/// A test-only inner maximization: a random corner of the L∞ ball (no gradient), drawn from
/// the trainer's generator. Enough to exercise the trainer's adversarial path; the real one is
/// gfa-attacks' PGD (its tests train every adversarial method with it).
#[derive(Debug)]
pub struct RandomCorner;

impl TrainPerturbation for RandomCorner {
    fn name(&self) -> &str {
        "random-corner"
    }
    fn perturb(
        &self,
        _model: &Classifier,
        x: &Tensor,
        _y: &Tensor,
        spec: &InnerMax,
        rng: &mut SeededRng,
    ) -> gfa_core::Result<Tensor> {
        let signs: Vec<f32> =
            (0..x.numel()).map(|_| if rng.r#gen::<bool>() { 1.0 } else { -1.0 }).collect();
        let delta = Tensor::from_slice(&signs).view(x.size().as_slice()) * spec.eps;
        Ok((x.detach() + delta.to_device(x.device())).clamp(0.0, 1.0))
    }
}

/// Every registered method with an inner maximization, from its registry example, with PGD-type
/// loops cut to 2 steps.
pub fn adversarial_methods() -> Vec<Method> {
    let methods: Vec<Method> = Method::list()
        .into_iter()
        .map(|m| {
            let mut example = m.example;
            if example.get("steps").is_some() {
                example["steps"] = 2.into();
            }
            serde_json::from_value(example).unwrap()
        })
        .filter(|m: &Method| m.inner().is_some())
        .collect();
    assert_eq!(methods.len(), 5, "pgd_at, fast_at, trades, gradalign, gfa_pgd_at");
    methods
}

#[test]
fn adversarial_methods_need_a_perturbation_and_log_their_terms() {
    let data = splits(32, 8);
    for method in adversarial_methods() {
        let mut model = tiny_cnn(6);
        let e = train(&mut model, &data, &quick(1), &method, &Default::default(), &mut |_| Ok(()))
            .unwrap_err();
        assert!(e.to_string().contains("perturbation"), "{}: {e}", method.name());

        let before: Vec<Tensor> = weights(&model).iter().map(|(_, t)| t.copy()).collect();
        let opts =
            TrainOptions { seed: 2, perturbation: Some(&RandomCorner), ..Default::default() };
        let out = train(&mut model, &data, &quick(1), &method, &opts, &mut |_| Ok(())).unwrap();
        let r = &out.records[0];
        assert!(r.train_loss.is_finite(), "{}", method.name());
        // The terms are non-negative (a KL, 1 − cos, R) up to float32 rounding: a cosine's three
        // sums of ≤ 4096 products (this `cnn`'s widest tap) round by ≤ 3 · 4096 · 6e-8 ≈ 7.4e-4
        // of |g||h| on any code path, a 4-class KL by far less; a term of the wrong sign is O(0.1).
        assert!(r.terms.values().all(|v| v.is_finite() && *v >= -1e-3), "{:?}", r.terms);
        let moved = before.iter().zip(weights(&model)).any(|(a, (_, b))| !a.equal(&b));
        assert!(moved, "{}", method.name());
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
    let out =
        train(&mut model, &data, &cfg, &Method::default(), &TrainOptions::default(), &mut |_| {
            Ok(())
        })
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
    let opts = TrainOptions {
        seed: 5,
        max_steps: Some(3),
        perturbation: Some(&RandomCorner),
        ..Default::default()
    };
    let flat = |m: &Classifier| {
        Tensor::cat(&weights(m).iter().map(|(_, t)| t.flatten(0, -1)).collect::<Vec<_>>(), 0)
    };
    let start = flat(&tiny_cnn(9));
    let methods: [fn(RegularizerConfig) -> Method; 3] = [
        |c| Method::Gfa(Gfa(c)),
        |c| Method::GfaPgdAt(GfaPgdAt { pgd: PgdAt { steps: 2, ..PgdAt::default() }, gfa: c }),
        |c| Method::Gnr(Gnr(c)),
    ];
    for (method, lambda) in methods.into_iter().zip([1.0, 1.0, 0.3]) {
        let reg = RegularizerConfig::with_lambda(lambda);
        let name = method(reg.clone()).name();
        let run = |reg: RegularizerConfig| {
            let mut m = tiny_cnn(9);
            let out =
                train(&mut m, &data, &quick(1), &method(reg), &opts, &mut |_| Ok(())).unwrap();
            (flat(&m) - &start, out.records[0].clone())
        };
        let (exact, r_exact) = run(reg.clone());
        let (fd, r_fd) =
            run(RegularizerConfig { gradient: PenaltyGradient::FiniteDifference, ..reg.clone() });
        let (plain, _) = run(RegularizerConfig { lambda: 0.0, ..reg.clone() });
        let norm = |t: &Tensor| t.norm().double_value(&[]);
        let err = norm(&(&fd - &exact)) / norm(&exact);
        let penalty_part = norm(&(&exact - &plain)) / norm(&exact);
        assert!(err <= 1e-2, "{name}: ‖Δw_fd − Δw_exact‖/‖Δw_exact‖ = {err:e}");
        assert!(
            penalty_part > 20.0 * err,
            "{name}: the penalty moves the weights by {penalty_part:e}"
        );
        let term = if name == "gnr" { "gnr" } else { "gfa" };
        let (fd_r, exact_r) = (r_fd.terms[term], r_exact.terms[term]);
        assert!((fd_r - exact_r).abs() <= 1e-2 * exact_r, "{name}: R {fd_r} vs {exact_r}");
        assert_eq!(r_fd.taps.len(), r_exact.taps.len());
    }
}
