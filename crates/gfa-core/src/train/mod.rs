//! The trainer: one loop for every training method ([`crate::method`]).
//!
//! One step draws a batch (seeded permutation), augments it, asks the method for the step's
//! loss ([`TrainMethod::loss`]), backpropagates it ([`TrainMethod::backward`]) and makes one
//! optimizer update; [`Trainer::step`] is that seam. After each epoch the trainer measures
//! test accuracy, the collapse diagnostics on a fixed batch ([`diagnostics`]; also every few
//! dozen steps of the first epochs) and, with `[train] validation`, clean and robust accuracy on
//! held-out training images ([`validation`]: the robust checkpoint `best.safetensors`); then it
//! writes a checkpoint (when a directory is given) and hands an [`EpochRecord`] to the caller.
//!
//! Determinism and resume: at the start of epoch e libtorch is reseeded from `(seed, e)` and
//! the shuffle, augmentation and perturbation generators are `rng_for(seed, "<purpose>/e")`;
//! the optimizer state is plain tensors saved with the weights. A run resumed from the
//! checkpoint after epoch e therefore continues exactly as the uninterrupted run.
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use gfa_data::augment::apply_packed;
use gfa_data::{Dataset, Splits};
use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::checkpoint::{self, CheckpointMeta};
use crate::classifier::Classifier;
use crate::losses::TaskLoss;
use crate::method::{Step, StepLoss, TrainMethod};
use crate::models::ModelSpec;
use crate::provenance::Provenance;
use crate::regularizer::Regularizer;
use crate::seed::{SeededRng, rng_for, seed_all};
use crate::{CoreError, Result, metrics, transfer};

pub mod diagnostics;
pub mod init;
pub mod optim;
pub mod perturb;
pub mod schedule;
pub mod validation;

pub use diagnostics::{DiagnosticsConfig, Probe, TapProbe};
pub use gfa_data::AugmentConfig;
pub use init::{InitConfig, InitWeights};
pub use optim::{Optimizer, OptimizerConfig};
pub use perturb::{InnerLoss, InnerMax, Start, TrainPerturbation};
pub use schedule::Schedule;
pub use validation::{ValidationAttack, ValidationConfig, ValidationRecord};

use diagnostics::{FixedBatches, ProbeContext};

/// The `[train]` table: the recipe every method shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerConfig,
    pub schedule: Schedule,
    /// Random crop and flip (`gfa_data::AugmentConfig`).
    pub augment: AugmentConfig,
    /// The task loss ℓ every method trains on (and GFA/GNR differentiate at the taps).
    pub task_loss: TaskLoss,
    /// Batch size of the per-epoch test accuracy (and of the validation measurement).
    pub eval_batch_size: usize,
    /// Hold out training images and keep the robust checkpoint `best.safetensors`
    /// ([`validation`]); none by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationConfig>,
    /// Collapse diagnostics on a fixed batch ([`diagnostics`]); left out of the canonical spec
    /// when it is the default, so run ids of files without it stay what they were (probes do
    /// not change the trained weights).
    #[serde(skip_serializing_if = "DiagnosticsConfig::is_default")]
    pub diagnostics: DiagnosticsConfig,
    /// Start from another model's weights ([`init`]); none by default (a fresh initialization).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<InitConfig>,
    /// Stop after this many optimizer steps in all (early stopping by step count): the epoch in
    /// which the count is reached ends there and is the last. `epochs` still sets the length of
    /// the learning-rate schedule and of the λ warm-up. None by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_after_steps: Option<usize>,
}

impl Default for TrainConfig {
    /// The CIFAR-10 reference of docs/method.md §3: 100 epochs, batch 128, SGD (lr 0.1,
    /// momentum 0.9, weight decay 5e-4), cosine schedule, crop + flip, cross-entropy.
    fn default() -> Self {
        Self {
            epochs: 100,
            batch_size: 128,
            optimizer: OptimizerConfig::default(),
            schedule: Schedule::Cosine,
            augment: AugmentConfig::default(),
            task_loss: TaskLoss::Ce,
            eval_batch_size: 500,
            validation: None,
            diagnostics: DiagnosticsConfig::default(),
            init: None,
            stop_after_steps: None,
        }
    }
}

impl TrainConfig {
    /// Checks the values; an error names the key (`train.epochs`) and the valid range.
    pub fn validate(&self) -> Result<()> {
        for (key, v) in [
            ("epochs", self.epochs),
            ("batch_size", self.batch_size),
            ("eval_batch_size", self.eval_batch_size),
        ] {
            if v == 0 {
                return Err(CoreError::invalid(
                    format!("train.{key}"),
                    "must be at least 1, got 0",
                ));
            }
        }
        if let Some(v) = &self.validation {
            v.validate()?;
        }
        if let Some(init) = &self.init {
            init.validate()?;
        }
        if self.stop_after_steps == Some(0) {
            return Err(CoreError::invalid(
                "train.stop_after_steps",
                "must be at least 1 (the optimizer steps to make before stopping), got 0",
            ));
        }
        self.optimizer.validate()?;
        self.schedule.validate()
    }
}

/// Checks a method's options that do not depend on the model: its own checks and a finite,
/// non-negative inner budget.
pub fn check_method(method: &dyn TrainMethod) -> Result<()> {
    method.check()?;
    if let Some(inner) = method.inner() {
        for (key, v) in [("eps", inner.eps), ("step", inner.step)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(CoreError::invalid(
                    format!("method.{key}"),
                    format!("must be a finite number ≥ 0 (e.g. \"8/255\"), got {v}"),
                ));
            }
        }
        if inner.eps > 1.0 {
            return Err(CoreError::invalid(
                "method.eps",
                format!(
                    "the training budget is an L∞ radius on [0, 1] pixels, so it lies in [0, 1] \
                     (e.g. \"8/255\"); got {}",
                    inner.eps
                ),
            ));
        }
    }
    Ok(())
}

/// Mean cosine and mean penalty term at one tap over an epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TapRecord {
    pub tap: String,
    pub cos: f64,
    pub term: f64,
}

/// What one epoch did; one row of `train.csv`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    /// mean ℓ on the inputs trained on (adversarial ones for AT methods).
    pub train_loss: f64,
    /// The method's named loss terms, epoch means (`gfa`/`gnr`: R; `kl`: TRADES; `align`:
    /// GradAlign).
    pub terms: BTreeMap<String, f64>,
    /// Per tap of the regularizer's tap set S.
    pub taps: Vec<TapRecord>,
    /// Accuracy on the inputs trained on.
    pub train_acc: f64,
    /// Clean test accuracy (eval mode), when a test split is given.
    pub test_acc: Option<f64>,
    pub lr: f64,
    /// λ in force this epoch (after warm-up), for methods with a regularizer.
    pub lambda: Option<f64>,
    pub seconds: f64,
    /// Training accuracy below 1.5× chance after the second epoch.
    pub collapse: bool,
    /// Optimizer steps made since the start of training, at the end of the epoch.
    #[serde(default)]
    pub steps: usize,
    /// The diagnostics probes taken during the epoch, the last one at its end (empty when the
    /// diagnostics are off).
    #[serde(default)]
    pub probes: Vec<Probe>,
    /// When the last probe is flagged: the step at which the flag rose for this collapse
    /// ([`diagnostics::collapse_step`]; 0: the model never left chance).
    #[serde(default)]
    pub collapse_step: Option<usize>,
    /// Clean and robust accuracy on the held-out images, when measured this epoch.
    #[serde(default)]
    pub validation: Option<ValidationRecord>,
    /// The epoch whose weights `best.safetensors` holds after this epoch (with validation).
    #[serde(default)]
    pub best_epoch: Option<usize>,
    /// The precision and determinism this epoch trained with (docs/numerics.md): a run resumed
    /// by another process keeps each epoch's own.
    pub numerics: crate::device::Numerics,
}

impl EpochRecord {
    /// The probe taken at the end of the epoch.
    pub fn end_probe(&self) -> Option<&Probe> {
        self.probes.last().filter(|p| p.step == self.steps)
    }
}

/// Everything about a run that is not in the configs.
#[derive(Debug, Default)]
pub struct TrainOptions<'a> {
    /// The run seed (weights are initialized by the caller after `seed_all(seed)`).
    pub seed: u64,
    pub run_id: String,
    /// Where checkpoints go; none are written without it.
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from the checkpoint in `checkpoint_dir` when there is one.
    pub resume: bool,
    /// Show a progress bar (it is hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// The inner maximization of adversarial methods (`gfa_attacks::InnerPgd`); training an
    /// adversarial method without one is an error.
    pub perturbation: Option<&'a dyn TrainPerturbation>,
    /// The attack of `[train] validation` (`gfa_attacks::ValidationPgd`); needed with it.
    pub validation: Option<&'a dyn ValidationAttack>,
    /// Cut every epoch after this many optimizer steps (tests, profiling).
    pub max_steps: Option<usize>,
    /// The weights file `[train] init` names, resolved by the caller: copied into the model
    /// before the first step (not when the run resumes from its own checkpoint). Needed exactly
    /// when the config has `init`.
    pub init: Option<PathBuf>,
    /// The build recorded in the checkpoints.
    pub provenance: Provenance,
}

/// The result of [`train`].
#[derive(Debug)]
pub struct TrainOutcome {
    /// One record per epoch, including those restored from a checkpoint.
    pub records: Vec<EpochRecord>,
    /// Epochs that were already done when the run resumed.
    pub resumed_epochs: usize,
}

/// What the caller's `on_epoch` receives.
pub type OnEpoch<'a> = dyn FnMut(&EpochRecord) -> Result<()> + 'a;

/// libtorch's seed for epoch `epoch` of run `seed`.
fn epoch_torch_seed(seed: u64, epoch: usize) -> u64 {
    rng_for(seed, &format!("torch/{epoch}")).r#gen::<u64>() >> 1
}

/// The hash that ties a checkpoint to its run: model spec, training config, method, seed.
pub fn run_hash(
    spec: &ModelSpec,
    cfg: &TrainConfig,
    method: &(impl Serialize + ?Sized),
    seed: u64,
) -> String {
    checkpoint::config_hash(&(spec, cfg, method, seed))
}

/// Train `model` with `method` on `splits.train` (test accuracy on `splits.test` after each
/// epoch). `method` is usually a [`crate::Method`]; any [`TrainMethod`] works.
pub fn train<M: TrainMethod + Serialize>(
    model: &mut Classifier,
    splits: &Splits,
    cfg: &TrainConfig,
    method: &M,
    opts: &TrainOptions<'_>,
    on_epoch: &mut OnEpoch<'_>,
) -> Result<TrainOutcome> {
    let hash = run_hash(&model.spec, cfg, method, opts.seed);
    let mut trainer = Trainer::new(model, splits, cfg, method, opts, hash)?;
    trainer.resume()?;
    if trainer.records.is_empty() {
        trainer.load_init()?;
    }
    for epoch in trainer.records.len()..cfg.epochs {
        if trainer.stopped() {
            break;
        }
        let record = trainer.epoch(epoch)?;
        trainer.checkpoint(&record)?;
        on_epoch(&record)?;
    }
    trainer.finish()
}

/// Everything [`train`] would refuse before its first step, checked without changing
/// anything: the configs, the method against `model`'s taps, the data, and, with
/// `opts.resume`, that a checkpoint in `opts.checkpoint_dir` belongs to this run. A command
/// calls it before it writes its first file, so a refused command writes nothing.
pub fn preflight<M: TrainMethod + Serialize>(
    model: &Classifier,
    splits: &Splits,
    cfg: &TrainConfig,
    method: &M,
    opts: &TrainOptions<'_>,
) -> Result<()> {
    checks(model, splits, cfg, method, opts)?;
    match opts.checkpoint_dir.as_deref().filter(|d| opts.resume && checkpoint::exists(d)) {
        Some(dir) => {
            check_resumable(dir, &model.spec, &run_hash(&model.spec, cfg, method, opts.seed))
        }
        None => Ok(()),
    }
}

/// The checks of [`preflight`] that need no checkpoint; the method's regularizer bound to the
/// model's taps.
fn checks(
    model: &Classifier,
    splits: &Splits,
    cfg: &TrainConfig,
    method: &dyn TrainMethod,
    opts: &TrainOptions<'_>,
) -> Result<Option<Regularizer>> {
    cfg.validate()?;
    check_method(method)?;
    let reg = match method.regularizer() {
        Some((kind, rc)) => Some(Regularizer::new(kind, rc, cfg.task_loss, &model.tap_names())?),
        None => None,
    };
    if method.inner().is_some() && opts.perturbation.is_none() {
        return Err(CoreError::Config(
            "this method trains on adversarial inputs: give TrainOptions::perturbation \
             (gfa_attacks::InnerPgd)"
                .into(),
        ));
    }
    if splits.train.is_empty() {
        return Err(CoreError::Config("the training split is empty".into()));
    }
    let mut n_train = splits.train.len();
    if let Some(v) = &cfg.validation {
        // The held-out set must fit in the training split.
        validation::holdout(splits.train.len(), v.n, opts.seed)?;
        n_train -= v.n;
    }
    check_stop(cfg, n_train)?;
    match (&cfg.init, &opts.init) {
        (Some(_), None) => Err(CoreError::Config(
            "train.init names the weights to start from: give TrainOptions::init (the weights \
             file the caller resolved)"
                .into(),
        )),
        (None, Some(p)) => Err(CoreError::Config(format!(
            "TrainOptions::init gives {} but the config has no train.init",
            p.display()
        ))),
        (Some(_), Some(p)) => checkpoint::check_weights_fit(model, p).map(|()| reg),
        (None, None) => Ok(reg),
    }
}

/// An error unless `train.stop_after_steps` stops before the end of training: the epochs'
/// steps on `n_train` images.
fn check_stop(cfg: &TrainConfig, n_train: usize) -> Result<()> {
    let Some(stop) = cfg.stop_after_steps else { return Ok(()) };
    let total = cfg.epochs * n_train.div_ceil(cfg.batch_size.max(1));
    if stop >= total {
        return Err(CoreError::invalid(
            "train.stop_after_steps",
            format!(
                "{stop} steps is not before the end of training ({} epochs of {} steps = \
                 {total}): lower it, or remove it to train every epoch",
                cfg.epochs,
                n_train.div_ceil(cfg.batch_size.max(1))
            ),
        ));
    }
    Ok(())
}

/// An error, saying how to go on, unless the checkpoint in `dir` was written by the run of
/// `spec` and `hash`.
fn check_resumable(dir: &std::path::Path, spec: &ModelSpec, hash: &str) -> Result<()> {
    let meta = checkpoint::read_meta(dir)?;
    let refuse = |what: String| CoreError::Checkpoint {
        path: dir.join(checkpoint::SIDECAR),
        reason: format!(
            "written by {what}; resume it with the configuration it was trained with, or drop \
             --resume and use a new output folder"
        ),
    };
    if meta.config_hash != hash {
        return Err(refuse(format!(
            "a different configuration (hash {} vs {hash})",
            meta.config_hash
        )));
    }
    if &meta.model != spec {
        return Err(refuse("a different model spec".into()));
    }
    Ok(())
}

/// One training run in progress.
struct Trainer<'a> {
    model: &'a mut Classifier,
    splits: &'a Splits,
    /// The training images (without the held-out ones).
    train: Dataset,
    /// The held-out images of `[train] validation`.
    val: Option<Dataset>,
    /// The diagnostics' fixed batches, when they are on.
    fixed: Option<FixedBatches>,
    /// Optimizer steps made since the start of training.
    steps_done: usize,
    cfg: &'a TrainConfig,
    method: &'a dyn TrainMethod,
    /// The method's regularizer bound to the model's taps.
    reg: Option<Regularizer>,
    optimizer: Optimizer,
    opts: &'a TrainOptions<'a>,
    hash: String,
    records: Vec<EpochRecord>,
    resumed_epochs: usize,
}

impl<'a> Trainer<'a> {
    /// Check everything that can fail before the first step: configs, the method against the
    /// model's taps, the inner maximization, the data.
    fn new(
        model: &'a mut Classifier,
        splits: &'a Splits,
        cfg: &'a TrainConfig,
        method: &'a dyn TrainMethod,
        opts: &'a TrainOptions<'a>,
        hash: String,
    ) -> Result<Self> {
        let reg = checks(model, splits, cfg, method, opts)?;
        let (train, val) = match &cfg.validation {
            None => (splits.train.head(splits.train.len()), None),
            Some(v) => {
                if opts.validation.is_none() {
                    return Err(CoreError::Config(
                        "train.validation measures robust accuracy: give \
                         TrainOptions::validation (gfa_attacks::ValidationPgd)"
                            .into(),
                    ));
                }
                let (held, kept) = validation::holdout(splits.train.len(), v.n, opts.seed)?;
                let pick = |i: &[i64]| splits.train.select(&Tensor::from_slice(i));
                (pick(&kept), Some(pick(&held)))
            }
        };
        // The training images live on the model's device for the run (u8; converted per batch).
        let train = train.to_device(model.device());
        let fixed = cfg.diagnostics.enabled().then(|| {
            FixedBatches::new(&train, &splits.test, cfg.diagnostics.batch, model.device())
        });
        let optimizer = Optimizer::new(&cfg.optimizer, model)?;
        Ok(Self {
            model,
            splits,
            train,
            val,
            fixed,
            steps_done: 0,
            cfg,
            method,
            reg,
            optimizer,
            opts,
            hash,
            records: vec![],
            resumed_epochs: 0,
        })
    }

    /// Restore weights, optimizer state and records from the checkpoint directory when asked
    /// and a checkpoint is there; a checkpoint of another configuration is an error.
    fn resume(&mut self) -> Result<()> {
        let Some(dir) = self.opts.checkpoint_dir.as_ref().filter(|_| self.opts.resume) else {
            return Ok(());
        };
        if !checkpoint::exists(dir) {
            return Ok(());
        }
        check_resumable(dir, &self.model.spec, &self.hash)?;
        let meta = checkpoint::restore(dir, self.model, &mut self.optimizer)?;
        self.resumed_epochs = meta.epoch;
        self.records = meta.metrics;
        self.steps_done = self.records.last().map_or(0, |r| r.steps);
        Ok(())
    }

    /// Copy the source's weights of `[train] init` into the model (a run that did not resume).
    fn load_init(&mut self) -> Result<()> {
        match &self.opts.init {
            Some(path) => checkpoint::load_weights(self.model, path),
            None => Ok(()),
        }
    }

    /// λ of the method's regularizer at the optimizer step `step` of the 0-based `epoch`.
    fn lambda_at(&self, epoch: usize, step: usize) -> Option<f64> {
        self.reg.as_ref().map(|r| r.cfg.lambda_at(epoch, step))
    }

    /// Whether `train.stop_after_steps` optimizer steps are made.
    fn stopped(&self) -> bool {
        self.cfg.stop_after_steps.is_some_and(|s| self.steps_done >= s)
    }

    /// One epoch (0-based `epoch`): reseed, one pass over the shuffled training set (with the
    /// diagnostics' probes), test accuracy, the epoch-end probe and validation; the epoch's
    /// record is kept and returned.
    fn epoch(&mut self, epoch: usize) -> Result<EpochRecord> {
        let t0 = Instant::now();
        let (cfg, seed) = (self.cfg, self.opts.seed);
        seed_all(epoch_torch_seed(seed, epoch));
        let mut shuffle_rng = rng_for(seed, &format!("shuffle/{epoch}"));
        let mut augment_rng = rng_for(seed, &format!("augment/{epoch}"));
        let mut perturb_rng = rng_for(seed, &format!("perturb/{epoch}"));
        let n_train = self.train.len();
        let mut perm: Vec<i64> = (0..n_train as i64).collect();
        perm.shuffle(&mut shuffle_rng);
        let device = self.model.device();
        // The epoch's order and augmentation draws go to the device in one copy each; a step
        // slices them there. The draws are made for the whole epoch in batch order, which is
        // the order of one draw per batch, so the images are the same.
        let perm = transfer::upload(&Tensor::from_slice(&perm), device);
        cfg.augment.validate()?;
        let drawn = (!cfg.augment.is_identity()).then(|| {
            transfer::upload(&cfg.augment.draw(n_train, &mut augment_rng).packed(), device)
        });
        let lr = cfg.schedule.lr_at(cfg.optimizer.lr(), epoch, cfg.epochs);
        let show = self.opts.progress && std::io::stderr().is_terminal();
        let bar = progress_bar(show, n_train.div_ceil(cfg.batch_size) as u64, epoch, cfg.epochs);

        let taps = self.reg.as_ref().map_or(0, |r| r.tap_names().len());
        let mut sums = Sums::new(taps, device);
        let mut probes = Vec::new();
        let steps = n_train.div_ceil(cfg.batch_size);
        for step in 0..steps {
            if self.opts.max_steps.is_some_and(|m| step >= m) || self.stopped() {
                break;
            }
            let lambda = self.lambda_at(epoch, self.steps_done);
            if cfg.diagnostics.due(epoch, step, self.steps_done) {
                sums.check_finite(epoch)?;
                probes.extend(self.probe(epoch, lambda)?);
            }
            let start = (step * cfg.batch_size) as i64;
            let len = cfg.batch_size.min(n_train - step * cfg.batch_size) as i64;
            let (x, y) = self.train.batch(&perm.narrow(0, start, len), device);
            let x = match &drawn {
                Some(d) => apply_packed(&x, cfg.augment.crop_padding, &d.narrow(1, start, len))?,
                None => x,
            };
            let out = self.step(&x, &y, lambda.unwrap_or(0.0), lr, &mut perturb_rng)?;
            self.steps_done += 1;
            sums.add(&out, &y, step);
            if show && (step % PROGRESS_EVERY == 0 || step + 1 == steps) {
                bar.set_position(step as u64 + 1);
                bar.set_message(sums.progress(t0.elapsed().as_secs_f64()));
            }
        }
        sums.check_finite(epoch)?;
        // The λ of the epoch's last step (its record's `lambda`, the end probe's).
        let lambda = self.lambda_at(epoch, self.steps_done.saturating_sub(1));
        let test_acc = if self.splits.test.is_empty() {
            None
        } else {
            Some(metrics::accuracy(self.model, &self.splits.test, cfg.eval_batch_size)?)
        };
        probes.extend(self.probe(epoch, lambda)?);
        let validation = match (&cfg.validation, &self.val, self.opts.validation) {
            (Some(v), Some(data), Some(attack)) if v.due(epoch, cfg.epochs) || self.stopped() => {
                let batch = cfg.eval_batch_size;
                Some(validation::measure(self.model, data, v, attack, batch, seed)?)
            }
            _ => None,
        };
        let measured = Measured { test_acc, lr, lambda, probes, validation };
        let record = self.record(epoch, &sums, measured, t0)?;
        if show {
            bar.finish_and_clear();
            eprintln!("{}", summary_line(&record, cfg.epochs, self.chance()));
        }
        self.records.push(record.clone());
        Ok(record)
    }

    /// One optimizer step: the method builds the loss, the gradients are zeroed, the method
    /// backpropagates, the optimizer updates the weights. Nothing is read back to the host:
    /// the loss's finiteness is kept on the device ([`Sums::add`]) and checked before the next
    /// probe and at the end of the epoch.
    fn step(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        lambda: f64,
        lr: f64,
        rng: &mut SeededRng,
    ) -> Result<StepLoss> {
        let mut step = Step {
            model: &*self.model,
            x,
            y,
            task: self.cfg.task_loss,
            reg: self.reg.as_ref(),
            lambda,
            perturbation: self.opts.perturbation,
            rng,
        };
        let out = self.method.loss(&mut step)?;
        self.optimizer.zero_grad();
        self.method.backward(&out)?;
        self.optimizer.step(lr);
        Ok(out)
    }

    fn chance(&self) -> f64 {
        metrics::chance(self.model.num_classes())
    }

    /// A diagnostics probe now (during the 0-based `epoch`), when they are on.
    fn probe(&self, epoch: usize, lambda: Option<f64>) -> Result<Option<Probe>> {
        let Some(fixed) = &self.fixed else { return Ok(None) };
        let ctx = ProbeContext {
            task: self.cfg.task_loss,
            reg: self.reg.as_ref(),
            lambda,
            at: (epoch + 1, self.steps_done),
        };
        diagnostics::probe(self.model, fixed, ctx).map(Some)
    }

    /// The record of epoch `epoch` from its running sums and what was measured after it.
    fn record(&self, epoch: usize, sums: &Sums, m: Measured, t0: Instant) -> Result<EpochRecord> {
        let Measured { test_acc, lr, lambda, probes, validation } = m;
        let (train_loss, train_acc) = sums.snapshot();
        let names = self.reg.as_ref().map(|r| r.tap_names()).unwrap_or_default();
        let cos = sums.per_tap(&sums.cos)?;
        let term = sums.per_tap(&sums.tap_terms)?;
        let earlier = self.records.iter().flat_map(|r| &r.probes);
        let collapse_step = diagnostics::collapse_step(earlier.chain(&probes));
        Ok(EpochRecord {
            epoch: epoch + 1,
            train_loss,
            terms: sums.term_means(),
            taps: names
                .iter()
                .zip(cos.iter().zip(&term))
                .map(|(t, (c, p))| TapRecord { tap: t.clone(), cos: *c, term: *p })
                .collect(),
            train_acc,
            test_acc,
            lr,
            lambda,
            seconds: t0.elapsed().as_secs_f64(),
            collapse: epoch + 1 >= 2 && train_acc < 1.5 * self.chance(),
            steps: self.steps_done,
            probes,
            collapse_step,
            best_epoch: validation::best_epoch(&self.records, epoch + 1, validation.as_ref()),
            validation,
            numerics: crate::device::Numerics::in_force(self.model.device()),
        })
    }

    /// Save weights, optimizer state and the sidecar after an epoch (with a directory); the
    /// epoch's weights also as `best.safetensors` when they are the new robust checkpoint
    /// (before the sidecar, which always describes complete weight files).
    fn checkpoint(&self, record: &EpochRecord) -> Result<()> {
        let Some(dir) = &self.opts.checkpoint_dir else { return Ok(()) };
        if record.validation.is_some() && record.best_epoch == Some(record.epoch) {
            std::fs::create_dir_all(dir)
                .map_err(|source| CoreError::Io { path: dir.clone(), source })?;
            checkpoint::save_weights(self.model, &dir.join(checkpoint::BEST))?;
        }
        let meta = CheckpointMeta {
            format: checkpoint::FORMAT,
            model: self.model.spec.clone(),
            epoch: record.epoch,
            config_hash: self.hash.clone(),
            build: self.opts.provenance.clone(),
            run_id: self.opts.run_id.clone(),
            clean_acc: record.test_acc,
            metrics: self.records.clone(),
            numerics: crate::device::Numerics::in_force(self.model.device()),
        };
        checkpoint::save(dir, self.model, Some(&self.optimizer), &meta)
    }

    /// Write the final weights (with a directory) and hand the records over.
    fn finish(self) -> Result<TrainOutcome> {
        if let Some(dir) = &self.opts.checkpoint_dir {
            checkpoint::save_weights(self.model, &dir.join(checkpoint::FINAL))?;
        }
        Ok(TrainOutcome { records: self.records, resumed_epochs: self.resumed_epochs })
    }
}

/// What an epoch measured besides its running sums.
struct Measured {
    test_acc: Option<f64>,
    lr: f64,
    lambda: Option<f64>,
    probes: Vec<Probe>,
    validation: Option<ValidationRecord>,
}

/// `name value` pairs of the named terms, for the progress lines.
fn terms_text(terms: &BTreeMap<String, f64>) -> String {
    terms.iter().map(|(k, v)| format!(" {k} {v:.4}")).collect()
}

/// One progress line per epoch; says so plainly when training has collapsed.
pub fn summary_line(r: &EpochRecord, epochs: usize, chance: f64) -> String {
    let test = r.test_acc.map(|a| format!(" test {:.1}%", 100.0 * a)).unwrap_or_default();
    let lambda = r.lambda.map(|l| format!(" λ {l}")).unwrap_or_default();
    let val = r.validation.map_or(String::new(), |v| {
        let best = if r.best_epoch == Some(r.epoch) { ", best so far" } else { "" };
        let (c, a) = (100.0 * v.clean_acc, 100.0 * v.robust_acc);
        format!(" val {c:.1}% / robust {a:.1}%{best}")
    });
    let mut line = format!(
        "epoch {}/{} loss {:.4}{} acc {:.1}%{test}{val} lr {:.4}{lambda} ({:.1} s)",
        r.epoch,
        epochs,
        r.train_loss,
        terms_text(&r.terms),
        100.0 * r.train_acc,
        r.lr,
        r.seconds
    );
    if r.collapse {
        line.push_str(&format!(
            "  COLLAPSE: training accuracy {:.1}% is near chance ({:.1}%)",
            100.0 * r.train_acc,
            100.0 * chance
        ));
    }
    line
}

fn progress_bar(show: bool, steps: u64, epoch: usize, epochs: usize) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(steps);
    let style = indicatif::ProgressStyle::with_template(&format!(
        "epoch {}/{epochs} {{bar:30}} {{pos}}/{{len}} {{msg}}",
        epoch + 1
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Steps between two updates of the progress bar (each reads the running sums).
const PROGRESS_EVERY: usize = 10;

/// Running sums over an epoch, kept on the device until read.
struct Sums {
    count: usize,
    /// The first 0-based step of the epoch whose loss was not finite (`i64::MAX`: none yet).
    first_non_finite: Tensor,
    loss: Tensor,
    correct: Tensor,
    cos: Tensor,
    tap_terms: Tensor,
    terms: BTreeMap<&'static str, Tensor>,
}

impl Sums {
    fn new(taps: usize, device: tch::Device) -> Self {
        let z = |s: &[i64]| Tensor::zeros(s, (Kind::Double, device));
        Self {
            count: 0,
            first_non_finite: Tensor::full([], i64::MAX, (Kind::Int64, device)),
            loss: z(&[]),
            correct: z(&[]),
            cos: z(&[taps as i64]),
            tap_terms: z(&[taps as i64]),
            terms: BTreeMap::new(),
        }
    }

    /// Add step `step`'s (0-based) loss and accuracy, on the device.
    fn add(&mut self, out: &StepLoss, y: &Tensor, step: usize) {
        let bad = out.total.detach().isfinite().logical_not();
        let at = Tensor::where_scalar(&bad, step as i64, i64::MAX);
        self.first_non_finite = self.first_non_finite.minimum(&at);
        let b = y.size()[0] as f64;
        self.count += y.size()[0] as usize;
        self.loss += out.task.to_kind(Kind::Double) * b;
        self.correct +=
            out.logits.argmax(-1, false).eq_tensor(y).to_kind(Kind::Double).sum(Kind::Double);
        if let Some((cos, term)) = &out.taps {
            self.cos += cos.to_kind(Kind::Double) * b;
            self.tap_terms += term.to_kind(Kind::Double) * b;
        }
        for (k, v) in &out.terms {
            let e = self.terms.entry(*k).or_insert_with(|| v.zeros_like().to_kind(Kind::Double));
            *e += v.to_kind(Kind::Double) * b;
        }
    }

    /// An error naming the first step of the 0-based `epoch` whose loss was not finite, if
    /// there was one (one read).
    fn check_finite(&self, epoch: usize) -> Result<()> {
        let first = transfer::read_i64(&self.first_non_finite);
        if first == i64::MAX {
            return Ok(());
        }
        let (epoch, step) = (epoch + 1, first as usize + 1);
        Err(CoreError::NonFinite { what: "loss".into(), epoch, step })
    }

    /// (mean loss, accuracy).
    fn snapshot(&self) -> (f64, f64) {
        let c = self.count.max(1) as f64;
        (transfer::read_f64(&self.loss) / c, transfer::read_f64(&self.correct) / c)
    }

    fn per_tap(&self, t: &Tensor) -> Result<Vec<f64>> {
        Ok(transfer::read_f64s(&(t / self.count.max(1) as f64)))
    }

    fn term_means(&self) -> BTreeMap<String, f64> {
        let c = self.count.max(1) as f64;
        self.terms.iter().map(|(k, v)| (k.to_string(), transfer::read_f64(v) / c)).collect()
    }

    /// The progress bar's message: running means and throughput.
    fn progress(&self, seconds: f64) -> String {
        let (loss, acc) = self.snapshot();
        format!(
            "loss {loss:.4}{} acc {:.1}% {:.0} img/s",
            terms_text(&self.term_means()),
            100.0 * acc,
            self.count as f64 / seconds.max(1e-9)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        train: TrainConfig,
    }

    #[test]
    fn train_table_parses_and_rejects_typos() {
        let e = toml::from_str::<Doc>("[train]\nepoch = 3\n").err();
        assert!(e.unwrap().to_string().contains("epoch"));
        let d: Doc = toml::from_str(
            "[train]\ntask_loss = \"mse_softmax\"\n[train.optimizer]\nkind = \"adam\"\nlr = 0.001\n[train.schedule]\nkind = \"step\"\nmilestones = [5]\ngamma = 0.1\n",
        )
        .unwrap();
        assert_eq!(
            d.train.optimizer,
            OptimizerConfig::Adam { lr: 0.001, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.0 }
        );
        assert_eq!(d.train.task_loss, TaskLoss::MseSoftmax);
        let e = toml::from_str::<Doc>("[train.method]\nkind = \"gfa\"\n").err();
        assert!(e.unwrap().to_string().contains("method"));
    }

    #[test]
    fn collapse_and_terms_are_said_in_the_line() {
        let r = EpochRecord {
            epoch: 2,
            train_loss: 2.3,
            terms: BTreeMap::from([("gfa".to_string(), 0.75)]),
            taps: vec![],
            train_acc: 0.11,
            test_acc: Some(0.1),
            lr: 0.1,
            lambda: Some(1.0),
            seconds: 1.0,
            collapse: true,
            steps: 10,
            probes: vec![],
            collapse_step: Some(0),
            validation: Some(ValidationRecord { clean_acc: 0.5, robust_acc: 0.25 }),
            best_epoch: Some(2),
            numerics: crate::device::Numerics::BEFORE_RECORDING,
        };
        let line = summary_line(&r, 10, 0.1);
        assert!(line.contains("COLLAPSE") && line.contains("gfa 0.7500"), "{line}");
        assert!(line.contains("val 50.0% / robust 25.0%, best so far"), "{line}");
    }
}
