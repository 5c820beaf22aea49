//! Timing of the trainer's step, shared by `make bench` (the `bench_train_step` example, CPU)
//! and the GPU check (`gfa cuda-check`): plain cross-entropy, GFA on the `input` tap ("first")
//! and GFA on all taps ("deep"), each with the exact double-backprop gradient and with the
//! finite-difference one (`first_fd`, `deep_fd`), on a seeded model and one fixed batch, Adam;
//! each step is the trainer's own (the method's loss: one double-backprop call over the taps,
//! or the finite difference's two ordinary passes; the method's backward; one optimizer
//! update), timed after the device has finished it. [`StepBench::with_recipe`] takes any
//! method, task loss, optimizer and inner maximization: `gfa plan` times a grid's steps with it.
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::method::gfa::Gfa;
use crate::method::{Step, TrainMethod};
use crate::models::{Arch, ModelSpec};
use crate::regularizer::{Layers, PenaltyGradient, Regularizer, RegularizerConfig};
use crate::seed::{SeededRng, rng_for, seed_all};
use crate::train::{Optimizer, OptimizerConfig, TrainPerturbation};
use crate::{Classifier, Method, TaskLoss};

/// The cases timed, in order.
pub const CASES: [&str; 5] = ["plain", "first", "deep", "first_fd", "deep_fd"];

/// λ of the GFA cases.
const LAMBDA: f64 = 0.3;

/// Wait until `device` has finished the work queued so far (a no-op on the CPU).
pub fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// The training method of `case`.
pub fn case_method(case: &str) -> crate::Result<Method> {
    let gfa = |layers, gradient| {
        Method::Gfa(Gfa(RegularizerConfig {
            layers: Some(layers),
            gradient,
            ..RegularizerConfig::with_lambda(LAMBDA)
        }))
    };
    let (exact, fd) = (PenaltyGradient::Exact, PenaltyGradient::FiniteDifference);
    Ok(match case {
        "plain" => Method::default(),
        "first" => gfa(Layers::First, exact),
        "deep" => gfa(Layers::Deep, exact),
        "first_fd" => gfa(Layers::First, fd),
        "deep_fd" => gfa(Layers::Deep, fd),
        other => {
            return Err(crate::CoreError::Config(format!(
                "unknown training-step case `{other}` ({})",
                CASES.join(", ")
            )));
        }
    })
}

/// What a [`StepBench`] trains with besides its model and batch.
pub struct StepRecipe<'a> {
    pub method: Method,
    pub task: TaskLoss,
    pub optimizer: OptimizerConfig,
    /// The inner maximization of adversarial methods (`gfa_attacks::InnerPgd` in gfa); a method
    /// that needs one fails its step without it.
    pub perturbation: Option<&'a dyn TrainPerturbation>,
}

impl StepRecipe<'_> {
    /// A step of `case` ([`CASES`]): cross-entropy, Adam 1e-3, no inner maximization.
    pub fn case(case: &str) -> crate::Result<Self> {
        Ok(StepRecipe {
            method: case_method(case)?,
            task: TaskLoss::Ce,
            optimizer: OptimizerConfig::adam(1e-3),
            perturbation: None,
        })
    }
}

/// A model, its training recipe and a batch, all seeded alike for every case (`gfa plan`'s
/// calibration times a grid's recipes with it).
pub struct StepBench<'a> {
    model: Classifier,
    recipe: StepRecipe<'a>,
    reg: Option<Regularizer>,
    /// λ of the method's regularizer (0 without one).
    lambda: f64,
    opt: Optimizer,
    rng: SeededRng,
    x: Tensor,
    y: Tensor,
}

impl StepBench<'static> {
    /// A seeded `spec` model and a seeded random batch of `batch` images, on `device`.
    pub fn new(case: &str, spec: &ModelSpec, batch: i64, device: Device) -> crate::Result<Self> {
        StepBench::with_recipe(StepRecipe::case(case)?, spec, batch, device)
    }
}

impl<'a> StepBench<'a> {
    /// A seeded `spec` model trained by `recipe` on a seeded random batch of `batch` images of
    /// the model's input shape, on `device`.
    pub fn with_recipe(
        recipe: StepRecipe<'a>,
        spec: &ModelSpec,
        batch: i64,
        device: Device,
    ) -> crate::Result<Self> {
        seed_all(0);
        let [c, h, w] = spec.input;
        let x = Tensor::rand([batch, c, h, w], (Kind::Float, Device::Cpu)).to_device(device);
        let y = Tensor::randint(spec.num_classes, [batch], (Kind::Int64, Device::Cpu))
            .to_device(device);
        seed_all(0);
        let model = Classifier::new(spec, device)?;
        let (reg, lambda) = match recipe.method.regularizer() {
            Some((kind, c)) => {
                (Some(Regularizer::new(kind, c, recipe.task, &model.tap_names())?), c.lambda)
            }
            None => (None, 0.0),
        };
        let opt = Optimizer::new(&recipe.optimizer, &model)?;
        Ok(Self { model, recipe, reg, lambda, opt, rng: rng_for(0, "bench"), x, y })
    }

    /// One training step as the trainer takes it.
    pub fn step(&mut self) -> crate::Result<()> {
        let mut step = Step {
            model: &self.model,
            x: &self.x,
            y: &self.y,
            task: self.recipe.task,
            reg: self.reg.as_ref(),
            lambda: self.lambda,
            perturbation: self.recipe.perturbation,
            rng: &mut self.rng,
        };
        let out = self.recipe.method.loss(&mut step)?;
        self.opt.zero_grad();
        self.recipe.method.backward(&out)?;
        self.opt.step(self.recipe.optimizer.lr());
        Ok(())
    }
}

/// Wall and CPU seconds of one step.
#[derive(Debug, Clone, Copy)]
pub struct StepTime {
    pub wall: f64,
    /// The process's CPU time over the step ([`cpu_seconds`]; NaN where it cannot be read).
    pub cpu: f64,
}

/// Wall and CPU time of each of `steps` training steps of `case` (after `warmup` untimed
/// ones), on a seeded `cnn` of `width` and a seeded random batch of `batch` images, on
/// `device`.
pub fn train_step_times(
    case: &str,
    width: f64,
    batch: i64,
    device: Device,
    warmup: usize,
    steps: usize,
) -> crate::Result<Vec<StepTime>> {
    let spec = ModelSpec { arch: Arch::Cnn, width, ..ModelSpec::default() };
    let mut bench = StepBench::new(case, &spec, batch, device)?;
    let mut times = Vec::with_capacity(steps);
    for i in 0..(warmup + steps) {
        sync(device);
        let (t0, c0) = (Instant::now(), cpu_seconds());
        bench.step()?;
        sync(device);
        if i >= warmup {
            times.push(StepTime { wall: t0.elapsed().as_secs_f64(), cpu: cpu_seconds() - c0 });
        }
    }
    Ok(times)
}

/// CPU time of this process so far, in seconds: the sum over its threads of
/// `/proc/self/task/*/schedstat` (nanoseconds on the CPU), as precise as Python's
/// `time.process_time()`; NaN where it cannot be read (not Linux).
pub fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return f64::NAN };
    let mut ns = 0u64;
    for t in tasks.flatten() {
        let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        match stat.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()) {
            Some(v) => ns += v,
            None => return f64::NAN,
        }
    }
    ns as f64 * 1e-9
}

/// The median of `v` (the upper one for an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}
