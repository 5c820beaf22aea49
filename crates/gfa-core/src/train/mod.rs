//! The trainer: every method of SPEC §4 in one loop.
//!
//! One step draws a batch (seeded permutation), augments it, builds the method's loss (task
//! loss, GFA/GNR penalty, adversarial terms), runs one backward and one optimizer update. After
//! each epoch it measures test accuracy, writes a checkpoint (when a directory is given) and
//! hands an [`EpochRecord`] to the caller.
//!
//! Determinism and resume: at the start of epoch e libtorch is reseeded from `(seed, e)` and
//! the shuffle, augmentation and perturbation generators are `rng_for(seed, "<purpose>/e")`;
//! the optimizer state is plain tensors saved with the weights. A run resumed from the
//! checkpoint after epoch e therefore continues exactly as the uninterrupted run.
//!
//! Method references: PGD-AT (Madry et al. 2018, arXiv 1706.06083); fast AT (Wong, Rice,
//! Kolter 2020, arXiv 2001.03994: FGSM, uniform random init, step 10/255 for ε = 8/255); TRADES
//! (Zhang et al. 2019, arXiv 1901.08573: β = 6, KL inner maximization, 10 steps of 2/255 from
//! x + 0.001·N(0, 1)); GradAlign (Andriushchenko & Flammarion 2020, arXiv 2007.02617: FGSM-AT
//! with α = ε from x plus λ·(1 − cos(∇ₓℓ(x), ∇ₓℓ(x + η))), η uniform in the ε-ball, λ = 0.2);
//! GFA and GNR as in [`crate::regularizer`].
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Deserializer, Serialize};
use tch::{Kind, Tensor};

use crate::checkpoint::{self, CheckpointMeta};
use crate::classifier::Classifier;
use crate::regularizer::{RegKind, Regularizer, RegularizerConfig};
use crate::seed::{rng_for, seed_all};
use crate::{CoreError, Result, metrics};

pub mod optim;
pub mod perturb;
pub mod schedule;
pub mod terms;

pub use gfa_data::AugmentConfig;
pub use optim::{Optimizer, OptimizerConfig};
pub use perturb::{InnerLoss, InnerMax, LinfPgd, Start, TrainPerturbation};
pub use schedule::Schedule;

/// Accept a number or a rational string such as `"8/255"` (parsed, never evaluated).
fn frac<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrText {
        Num(f64),
        Text(String),
    }
    match NumOrText::deserialize(d)? {
        NumOrText::Num(v) => Ok(v),
        NumOrText::Text(s) => crate::rational::parse_rational(&s).map_err(|why| {
            serde::de::Error::custom(format!("expected a number or \"a/b\", got \"{s}\": {why}"))
        }),
    }
}

fn eps_8() -> f64 {
    8.0 / 255.0
}
fn step_2() -> f64 {
    2.0 / 255.0
}
fn step_10() -> f64 {
    10.0 / 255.0
}
fn ten() -> usize {
    10
}
fn yes() -> bool {
    true
}
fn beta_6() -> f64 {
    6.0
}
fn align_02() -> f64 {
    0.2
}

/// The training method (SPEC §4), `[train.method]` with `kind = "…"`; adversarial budgets are
/// L∞ in `[0, 1]` pixel units and accept `"8/255"`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Method {
    /// Task loss only.
    #[default]
    Standard,
    /// Task loss + λ·R_GFA (needs `regularizer.kind = "gfa"`).
    Gfa,
    /// Task loss + λ·R_GNR (needs `regularizer.kind = "gnr"`).
    Gnr,
    /// Madry PGD adversarial training: L∞ 8/255, step 2/255, 10 steps, random start. The inner
    /// PGD runs the model in training mode (BatchNorm on batch statistics), as Madry et al.'s
    /// code (one train-mode graph) and Rice et al.'s PyTorch code do.
    PgdAt {
        #[serde(default = "eps_8", deserialize_with = "frac")]
        eps: f64,
        #[serde(default = "step_2", deserialize_with = "frac")]
        step: f64,
        #[serde(default = "ten")]
        steps: usize,
        #[serde(default = "yes")]
        random_start: bool,
    },
    /// FGSM with uniform random init (Wong et al. 2020): 8/255, step 10/255. The FGSM step runs
    /// the model in training mode, as the authors' code does.
    FastAt {
        #[serde(default = "eps_8", deserialize_with = "frac")]
        eps: f64,
        #[serde(default = "step_10", deserialize_with = "frac")]
        step: f64,
    },
    /// TRADES: CE(x) + β·KL(p(x) ‖ p(x')), inner KL maximization of 10 × 2/255, β = 6. The inner
    /// maximization runs the model in eval mode (`model.eval()` in the authors' `trades_loss`);
    /// the loss itself is computed in training mode.
    Trades {
        #[serde(default = "eps_8", deserialize_with = "frac")]
        eps: f64,
        #[serde(default = "step_2", deserialize_with = "frac")]
        step: f64,
        #[serde(default = "ten")]
        steps: usize,
        #[serde(default = "beta_6")]
        beta: f64,
    },
    /// FGSM-AT (α = ε, from x) + λ_align·(1 − cos) gradient alignment, λ_align = 0.2. The FGSM
    /// step and the alignment term run the model in training mode, as the authors' code (built on
    /// Wong et al.'s) does.
    #[serde(rename = "gradalign")]
    GradAlign {
        #[serde(default = "eps_8", deserialize_with = "frac")]
        eps: f64,
        #[serde(default = "eps_8", deserialize_with = "frac")]
        step: f64,
        #[serde(default = "align_02")]
        align_lambda: f64,
    },
    /// PGD-AT whose loss on x' also carries λ·R_GFA(x') (needs `regularizer.kind = "gfa"`); the
    /// inner PGD in training mode, as for `pgd_at`.
    #[serde(alias = "gfa+pgd_at")]
    GfaPgdAt {
        #[serde(default = "eps_8", deserialize_with = "frac")]
        eps: f64,
        #[serde(default = "step_2", deserialize_with = "frac")]
        step: f64,
        #[serde(default = "ten")]
        steps: usize,
        #[serde(default = "yes")]
        random_start: bool,
    },
}

impl Method {
    pub fn name(&self) -> &'static str {
        match self {
            Method::Standard => "standard",
            Method::Gfa => "gfa",
            Method::Gnr => "gnr",
            Method::PgdAt { .. } => "pgd_at",
            Method::FastAt { .. } => "fast_at",
            Method::Trades { .. } => "trades",
            Method::GradAlign { .. } => "gradalign",
            Method::GfaPgdAt { .. } => "gfa_pgd_at",
        }
    }

    /// The regularizer kind the method trains with.
    pub fn regularizer_kind(&self) -> RegKind {
        match self {
            Method::Gfa | Method::GfaPgdAt { .. } => RegKind::Gfa,
            Method::Gnr => RegKind::Gnr,
            _ => RegKind::None,
        }
    }

    /// The inner maximization of adversarial methods.
    pub fn inner(&self) -> Option<InnerMax> {
        let ce = InnerLoss::Ce;
        match *self {
            Method::PgdAt { eps, step, steps, random_start }
            | Method::GfaPgdAt { eps, step, steps, random_start } => Some(InnerMax {
                eps,
                step,
                steps,
                start: if random_start { Start::Uniform } else { Start::Zero },
                loss: ce,
                train_mode: true,
            }),
            Method::FastAt { eps, step } => Some(InnerMax {
                eps,
                step,
                steps: 1,
                start: Start::Uniform,
                loss: ce,
                train_mode: true,
            }),
            Method::Trades { eps, step, steps, .. } => Some(InnerMax {
                eps,
                step,
                steps,
                start: Start::Normal(0.001),
                loss: InnerLoss::KlToClean,
                train_mode: false,
            }),
            Method::GradAlign { eps, step, .. } => Some(InnerMax {
                eps,
                step,
                steps: 1,
                start: Start::Zero,
                loss: ce,
                train_mode: true,
            }),
            Method::Standard | Method::Gfa | Method::Gnr => None,
        }
    }
}

/// The `[train]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerConfig,
    pub schedule: Schedule,
    /// Random crop and flip (`gfa_data::AugmentConfig`).
    pub augment: AugmentConfig,
    pub method: Method,
    /// Batch size of the per-epoch test accuracy.
    pub eval_batch_size: usize,
}

impl Default for TrainConfig {
    /// SPEC §4's CIFAR-10 reference: 100 epochs, batch 128, SGD (lr 0.1, momentum 0.9,
    /// weight decay 5e-4), cosine schedule, crop + flip, standard training.
    fn default() -> Self {
        Self {
            epochs: 100,
            batch_size: 128,
            optimizer: OptimizerConfig::default(),
            schedule: Schedule::Cosine,
            augment: AugmentConfig::default(),
            method: Method::Standard,
            eval_batch_size: 500,
        }
    }
}

impl TrainConfig {
    /// Checks the values and that `reg` fits the method.
    pub fn validate(&self, reg: &RegularizerConfig) -> Result<()> {
        let bad = |m: String| Err(CoreError::Config(m));
        if self.epochs == 0 {
            return bad("train.epochs must be at least 1".into());
        }
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return bad("train.batch_size and train.eval_batch_size must be at least 1".into());
        }
        self.optimizer.validate()?;
        self.schedule.validate()?;
        reg.validate()?;
        let want = self.method.regularizer_kind();
        if reg.kind != want {
            return bad(format!(
                "train.method \"{}\" needs regularizer.kind = \"{}\", got \"{}\"",
                self.method.name(),
                serde_json::to_value(want).unwrap().as_str().unwrap_or("?"),
                serde_json::to_value(reg.kind).unwrap().as_str().unwrap_or("?"),
            ));
        }
        if let Some(inner) = self.method.inner()
            && !(inner.eps >= 0.0 && inner.step >= 0.0 && inner.eps.is_finite())
        {
            return bad(format!(
                "train.method: eps and step must be finite and ≥ 0, got {} and {}",
                inner.eps, inner.step
            ));
        }
        Ok(())
    }
}

/// Mean cosine and mean penalty term at one tap over an epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TapRecord {
    pub tap: String,
    pub cos: f64,
    pub term: f64,
}

/// What one epoch did; one row of `train.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    /// mean ℓ on the inputs trained on (adversarial ones for AT methods).
    pub train_loss: f64,
    /// R (GFA/GNR), 0 without a regularizer.
    pub train_reg: f64,
    /// Per tap of S.
    pub taps: Vec<TapRecord>,
    /// Method terms (`kl` for TRADES, `align` for GradAlign).
    pub terms: BTreeMap<String, f64>,
    /// Accuracy on the inputs trained on.
    pub train_acc: f64,
    /// Clean test accuracy (eval mode), when a test split is given.
    pub test_acc: Option<f64>,
    pub lr: f64,
    pub lambda: f64,
    pub seconds: f64,
    /// Training accuracy below 1.5× chance after the second epoch.
    pub collapse: bool,
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
    /// Inner maximization of the adversarial methods; [`LinfPgd`] when absent.
    pub perturbation: Option<&'a dyn TrainPerturbation>,
    /// Cut every epoch after this many optimizer steps (tests, profiling).
    pub max_steps: Option<usize>,
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

/// The hash that ties a checkpoint to its run.
pub fn run_hash(
    model: &Classifier,
    cfg: &TrainConfig,
    reg: &RegularizerConfig,
    seed: u64,
) -> String {
    checkpoint::config_hash(&(&model.spec, cfg, reg.resolved(), seed))
}

/// Train `model` on `splits.train` (test accuracy on `splits.test` after each epoch).
pub fn train(
    model: &mut Classifier,
    splits: &gfa_data::Splits,
    cfg: &TrainConfig,
    reg_cfg: &RegularizerConfig,
    opts: &TrainOptions<'_>,
    on_epoch: &mut OnEpoch<'_>,
) -> Result<TrainOutcome> {
    cfg.validate(reg_cfg)?;
    let reg = Regularizer::new(reg_cfg, &model.tap_names())?;
    let mut optimizer = Optimizer::new(&cfg.optimizer, model)?;
    let hash = run_hash(model, cfg, reg_cfg, opts.seed);
    let git = checkpoint::git_revision();

    let mut records = Vec::new();
    let mut start = 0;
    if let (true, Some(dir)) = (opts.resume, &opts.checkpoint_dir)
        && checkpoint::exists(dir)
    {
        let meta = checkpoint::read_meta(dir)?;
        if meta.config_hash != hash {
            return Err(CoreError::Checkpoint {
                path: dir.join(checkpoint::SIDECAR),
                reason: format!(
                    "written by a different configuration (hash {} vs {hash}); \
                     use a new directory or drop --resume",
                    meta.config_hash
                ),
            });
        }
        let meta = checkpoint::restore(dir, model, &mut optimizer)?;
        start = meta.epoch;
        records = meta.metrics;
    }
    let resumed_epochs = start;
    let perturbation: &dyn TrainPerturbation = opts.perturbation.unwrap_or(&LinfPgd);
    let data = &splits.train;
    let n = data.len();
    if n == 0 {
        return Err(CoreError::Config("the training split is empty".into()));
    }
    let device = model.device();
    let show = opts.progress && std::io::stderr().is_terminal();
    let chance = metrics::chance(model.num_classes());

    for epoch in start..cfg.epochs {
        let t0 = Instant::now();
        seed_all(epoch_torch_seed(opts.seed, epoch));
        let mut shuffle_rng = rng_for(opts.seed, &format!("shuffle/{epoch}"));
        let mut augment_rng = rng_for(opts.seed, &format!("augment/{epoch}"));
        let mut perturb_rng = rng_for(opts.seed, &format!("perturb/{epoch}"));
        let mut perm: Vec<i64> = (0..n as i64).collect();
        perm.shuffle(&mut shuffle_rng);
        let lr = cfg.schedule.lr_at(cfg.optimizer.lr(), epoch, cfg.epochs);
        let lambda = reg_cfg.lambda_at(epoch);
        let steps = n.div_ceil(cfg.batch_size);
        let bar = progress_bar(show, steps as u64, epoch, cfg.epochs);

        let mut sums = Sums::new(reg.tap_names().len(), device);
        for (step, chunk) in perm.chunks(cfg.batch_size).enumerate() {
            if opts.max_steps.is_some_and(|m| step >= m) {
                break;
            }
            let index = Tensor::from_slice(chunk);
            let (x, y) = data.batch(&index, device);
            let x = cfg.augment.apply(&x, &mut augment_rng)?;
            // Before the step's loss: the finite-difference GFA gradient accumulates into the
            // parameters' `.grad` while the loss is built (nothing else touches them there).
            optimizer.zero_grad();
            let out = step_loss(
                &cfg.method,
                &reg,
                model,
                &x,
                &y,
                lambda,
                perturbation,
                &mut perturb_rng,
            )?;
            let total = out.total.double_value(&[]);
            if !total.is_finite() {
                return Err(CoreError::NonFinite {
                    what: "loss".into(),
                    epoch: epoch + 1,
                    step: step + 1,
                });
            }
            // Hook of the penalty's gradient mode: steps on the finite-difference path arrive
            // with their gradients accumulated (`backward` false); all others backpropagate
            // `total` here.
            if out.backward {
                out.total.backward();
            }
            optimizer.step(lr);
            sums.add(&out, &y);
            if show {
                let s = sums.snapshot();
                bar.set_position(step as u64 + 1);
                bar.set_message(format!(
                    "loss {:.4} reg {:.4} acc {:.1}% {:.0} img/s",
                    s.0,
                    s.1,
                    100.0 * s.2,
                    sums.count as f64 / t0.elapsed().as_secs_f64().max(1e-9)
                ));
            }
        }
        let test_acc = if splits.test.is_empty() {
            None
        } else {
            Some(metrics::accuracy(model, &splits.test, cfg.eval_batch_size)?)
        };
        let (train_loss, train_reg, train_acc) = sums.snapshot();
        let collapse = epoch + 1 >= 2 && train_acc < 1.5 * chance;
        let cos = sums.per_tap(&sums.cos)?;
        let terms_tap = sums.per_tap(&sums.terms)?;
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss,
            train_reg,
            taps: reg
                .tap_names()
                .iter()
                .zip(cos.iter().zip(&terms_tap))
                .map(|(t, (c, p))| TapRecord { tap: t.clone(), cos: *c, term: *p })
                .collect(),
            terms: sums.extra_means()?,
            train_acc,
            test_acc,
            lr,
            lambda,
            seconds: t0.elapsed().as_secs_f64(),
            collapse,
        };
        if show {
            bar.finish_and_clear();
            eprintln!("{}", summary_line(&record, cfg.epochs, chance));
        }
        records.push(record.clone());
        if let Some(dir) = &opts.checkpoint_dir {
            let meta = CheckpointMeta {
                format: checkpoint::FORMAT,
                model: model.spec.clone(),
                epoch: epoch + 1,
                config_hash: hash.clone(),
                git_revision: git.clone(),
                run_id: opts.run_id.clone(),
                clean_acc: test_acc,
                metrics: records.clone(),
            };
            checkpoint::save(dir, model, Some(&optimizer), &meta)?;
        }
        on_epoch(&record)?;
    }
    if let Some(dir) = &opts.checkpoint_dir {
        checkpoint::save_weights(model, &dir.join(checkpoint::FINAL))?;
    }
    Ok(TrainOutcome { records, resumed_epochs })
}

/// One progress line per epoch; says so plainly when training has collapsed.
pub fn summary_line(r: &EpochRecord, epochs: usize, chance: f64) -> String {
    let test = r.test_acc.map(|a| format!(" test {:.1}%", 100.0 * a)).unwrap_or_default();
    let mut line = format!(
        "epoch {}/{} loss {:.4} reg {:.4} acc {:.1}%{test} lr {:.4} λ {} ({:.1} s)",
        r.epoch,
        epochs,
        r.train_loss,
        r.train_reg,
        100.0 * r.train_acc,
        r.lr,
        r.lambda,
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

/// One step's loss and what it logs.
struct StepOut {
    /// The loss that is backpropagated (its value only, when `backward` is false).
    total: Tensor,
    /// False when the parameter gradients of `total` are already in `.grad` (the
    /// finite-difference GFA gradient).
    backward: bool,
    /// mean ℓ on the trained inputs (detached).
    loss: Tensor,
    /// R (detached).
    reg: Tensor,
    /// Logits of the trained inputs (detached).
    logits: Tensor,
    cos: Tensor,
    terms: Tensor,
    extra: Vec<(&'static str, Tensor)>,
}

/// Build one step's loss for `method`.
fn step_loss(
    method: &Method,
    reg: &Regularizer,
    model: &Classifier,
    x: &Tensor,
    y: &Tensor,
    lambda: f64,
    perturbation: &dyn TrainPerturbation,
    rng: &mut rand::rngs::StdRng,
) -> Result<StepOut> {
    let task = reg.cfg.task_loss;
    let train_on_reg = lambda > 0.0 && reg.cfg.kind != RegKind::None;
    let with_reg = |x_in: &Tensor, extra: Vec<(&'static str, Tensor)>| {
        // Hook of the penalty's gradient mode: the finite difference accumulates the gradients
        // of mean ℓ + λ·R itself and hands back what is logged.
        if reg.uses_finite_difference(lambda) {
            let f = reg.accumulate_finite_difference(model, x_in, y, lambda, true);
            return StepOut {
                total: &f.loss + &f.reg * lambda,
                backward: false,
                loss: f.loss,
                reg: f.reg,
                logits: f.logits,
                cos: f.cos,
                terms: f.terms,
                extra,
            };
        }
        let f = reg.forward(model, x_in, y, true, train_on_reg);
        // λ = 0 keeps the graph of plain training exactly (bit-for-bit equal parameters).
        let total = if train_on_reg { &f.loss + &f.reg * lambda } else { f.loss.shallow_clone() };
        StepOut {
            total,
            backward: true,
            loss: f.loss.detach(),
            reg: f.reg.detach(),
            logits: f.logits.detach(),
            cos: f.cos,
            terms: f.terms,
            extra,
        }
    };
    match method {
        Method::Standard | Method::Gfa | Method::Gnr => Ok(with_reg(x, Vec::new())),
        Method::PgdAt { .. } | Method::FastAt { .. } | Method::GfaPgdAt { .. } => {
            let inner = method.inner().expect("adversarial method");
            let x_adv = perturbation.perturb(model, x, y, &inner, rng)?;
            Ok(with_reg(&x_adv, Vec::new()))
        }
        Method::Trades { beta, .. } => {
            let inner = method.inner().expect("adversarial method");
            let x_adv = perturbation.perturb(model, x, y, &inner, rng)?;
            let logits = model.logits(x, true);
            let logits_adv = model.logits(&x_adv, true);
            let natural = task.mean(&logits, y);
            let kl = terms::trades_kl(&logits, &logits_adv);
            let total = &natural + &kl * *beta;
            let empty = Tensor::zeros([0], (Kind::Float, x.device()));
            Ok(StepOut {
                total,
                backward: true,
                loss: natural.detach(),
                reg: Tensor::zeros([], (Kind::Float, x.device())),
                logits: logits.detach(),
                cos: empty.shallow_clone(),
                terms: empty,
                extra: vec![("kl", kl.detach())],
            })
        }
        Method::GradAlign { eps, align_lambda, .. } => {
            let inner = method.inner().expect("adversarial method");
            let x_adv = perturbation.perturb(model, x, y, &inner, rng)?;
            let logits_adv = model.logits(&x_adv, true);
            let loss = task.mean(&logits_adv, y);
            let eta = (x.rand_like() * 2.0 - 1.0) * *eps;
            let align = terms::gradalign_penalty(model, x, y, &eta, task, true);
            let total = &loss + &align * *align_lambda;
            let empty = Tensor::zeros([0], (Kind::Float, x.device()));
            Ok(StepOut {
                total,
                backward: true,
                loss: loss.detach(),
                reg: Tensor::zeros([], (Kind::Float, x.device())),
                logits: logits_adv.detach(),
                cos: empty.shallow_clone(),
                terms: empty,
                extra: vec![("align", align.detach())],
            })
        }
    }
}

/// Running sums over an epoch, kept on the device until read.
struct Sums {
    count: usize,
    loss: Tensor,
    reg: Tensor,
    correct: Tensor,
    cos: Tensor,
    terms: Tensor,
    extra: BTreeMap<&'static str, Tensor>,
}

impl Sums {
    fn new(taps: usize, device: tch::Device) -> Self {
        let z = |s: &[i64]| Tensor::zeros(s, (Kind::Double, device));
        Self {
            count: 0,
            loss: z(&[]),
            reg: z(&[]),
            correct: z(&[]),
            cos: z(&[taps as i64]),
            terms: z(&[taps as i64]),
            extra: BTreeMap::new(),
        }
    }

    fn add(&mut self, out: &StepOut, y: &Tensor) {
        let b = y.size()[0] as f64;
        self.count += y.size()[0] as usize;
        self.loss += out.loss.to_kind(Kind::Double) * b;
        self.reg += out.reg.to_kind(Kind::Double) * b;
        self.correct +=
            out.logits.argmax(-1, false).eq_tensor(y).to_kind(Kind::Double).sum(Kind::Double);
        if out.cos.numel() > 0 {
            self.cos += out.cos.to_kind(Kind::Double) * b;
            self.terms += out.terms.to_kind(Kind::Double) * b;
        }
        for (k, v) in &out.extra {
            let e = self.extra.entry(*k).or_insert_with(|| v.zeros_like().to_kind(Kind::Double));
            *e += v.to_kind(Kind::Double) * b;
        }
    }

    /// (mean loss, mean R, accuracy).
    fn snapshot(&self) -> (f64, f64, f64) {
        let c = self.count.max(1) as f64;
        (
            self.loss.double_value(&[]) / c,
            self.reg.double_value(&[]) / c,
            self.correct.double_value(&[]) / c,
        )
    }

    fn per_tap(&self, t: &Tensor) -> Result<Vec<f64>> {
        Ok(Vec::<f64>::try_from(t / self.count.max(1) as f64)?)
    }

    fn extra_means(&self) -> Result<BTreeMap<String, f64>> {
        let c = self.count.max(1) as f64;
        Ok(self.extra.iter().map(|(k, v)| (k.to_string(), v.double_value(&[]) / c)).collect())
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
    fn methods_parse_with_rational_eps_and_reject_typos() {
        let d: Doc = toml::from_str(
            "[train]\nepochs = 3\n[train.method]\nkind = \"pgd_at\"\neps = \"4/255\"\nsteps = 7\n",
        )
        .unwrap();
        match d.train.method {
            Method::PgdAt { eps, step, steps, random_start } => {
                assert!((eps - 4.0 / 255.0).abs() < 1e-12);
                assert!((step - 2.0 / 255.0).abs() < 1e-12);
                assert_eq!((steps, random_start), (7, true));
            }
            m => panic!("{m:?}"),
        }
        let d: Doc = toml::from_str("[train.method]\nkind = \"gfa+pgd_at\"\n").unwrap();
        assert_eq!(d.train.method.name(), "gfa_pgd_at");
        let e = toml::from_str::<Doc>("[train.method]\nkind = \"pgd_at\"\nstpes = 3\n").err();
        assert!(e.unwrap().to_string().contains("stpes"));
        let e = toml::from_str::<Doc>("[train]\nepoch = 3\n").err();
        assert!(e.unwrap().to_string().contains("epoch"));
        let d: Doc = toml::from_str(
            "[train.optimizer]\nkind = \"adam\"\nlr = 0.001\n[train.schedule]\nkind = \"step\"\nmilestones = [5]\ngamma = 0.1\n",
        )
        .unwrap();
        assert_eq!(
            d.train.optimizer,
            OptimizerConfig::Adam { lr: 0.001, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.0 }
        );
    }

    #[test]
    fn method_and_regularizer_must_agree() {
        let cfg = TrainConfig { method: Method::Gfa, ..TrainConfig::default() };
        let e = cfg.validate(&RegularizerConfig::default()).unwrap_err().to_string();
        assert!(e.contains("\"gfa\"") && e.contains("\"none\""), "{e}");
        cfg.validate(&RegularizerConfig::gfa(0.1)).unwrap();
    }

    #[test]
    fn collapse_is_said_in_the_line() {
        let r = EpochRecord {
            epoch: 2,
            train_loss: 2.3,
            train_reg: 0.0,
            taps: vec![],
            terms: BTreeMap::new(),
            train_acc: 0.11,
            test_acc: Some(0.1),
            lr: 0.1,
            lambda: 1.0,
            seconds: 1.0,
            collapse: true,
        };
        assert!(summary_line(&r, 10, 0.1).contains("COLLAPSE"));
    }
}
