//! Turning a plan's work into hours on a device: short measured calibration steps per model
//! and training recipe of the plan.
//!
//! [`crate::config::cost`] counts a run's work: the training images its steps process and, for
//! the evaluation, image-gradients (forward + backward of one image). [`calibrate`] times, on the
//! chosen device, one training step as the trainer takes it (the run's method, task loss and
//! optimizer; adversarial methods with their inner maximization) for each distinct recipe of
//! the plan, and an attack's gradient (an eval-mode input gradient of the cross-entropy) for
//! each distinct model, at the run's training batch size (at most [`CPU_BATCH`] on a CPU, where
//! the time per image hardly depends on the batch); [`Calibration::seconds`] multiplies. On a
//! CPU a pass counts the smaller of its wall time and the process's CPU time: with one libtorch
//! thread (each worker of `gfa run --jobs N` on N cores) that is its CPU time, what it takes on
//! a core of its own however loaded the machine is while `gfa plan` runs; with T threads, its
//! wall time on an idle machine and at most T times that on a loaded one. Data loading, augmentation, diagnostics and checkpoints are
//! not timed: the estimate is the order of magnitude to plan with, not a promise.
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::time::Instant;

use anyhow::Result;
use gfa_core::bench::{StepBench, StepRecipe};
use gfa_core::{Classifier, ModelSpec};
use tch::{Device, Kind, Tensor};

use crate::config::cost::{self, estimate_eval_cost};
use crate::config::grid::RunSpec;

/// Largest calibration batch on a CPU.
pub const CPU_BATCH: i64 = 32;
/// Each pass is timed until this many seconds have passed (after one untimed pass), and at
/// least [`MIN_REPS`] times; the median pass counts (other jobs on the machine slow some).
const BUDGET_S: f64 = 0.3;
const MIN_REPS: usize = 3;
/// [`Calibration::summary`] lists each recipe's time up to this many recipes, else their range.
const MAX_LISTED: usize = 6;

/// Measured seconds per image of each model and training recipe of a plan on one device.
#[derive(Debug, Clone)]
pub struct Calibration {
    pub device: Device,
    /// Per model (its canonical JSON): seconds per attack gradient of one image, the batch it
    /// was timed at, and a short label.
    pub per_model: BTreeMap<String, (f64, i64, String)>,
    /// Per training recipe ([`recipe_key`]): seconds per training image of one step, and a
    /// short label (the model, the method and the plan's number of the first run taking it).
    pub per_step: BTreeMap<String, (f64, String)>,
    /// Whether the passes counted CPU time ([`counts_cpu_time`]) rather than wall time.
    pub cpu_time: bool,
    /// libtorch's threads during the passes.
    pub threads: i32,
}

/// The model `run` trains, with the input shape of its data.
fn model_of(run: &RunSpec) -> ModelSpec {
    ModelSpec { input: run.config.data.source.image_shape(), ..run.config.model.clone() }
}

fn key(spec: &ModelSpec) -> String {
    serde_json::to_string(spec).expect("model specs serialize")
}

/// What a training step's time depends on: the model, the method, the task loss and the
/// optimizer, less their real-valued settings (λ, learning rate, momentum, …), which change the
/// numbers a step computes but not its work, so that a sweep over λ is timed once.
pub fn recipe_key(run: &RunSpec) -> String {
    let t = &run.config.train;
    let recipe = (model_of(run), &run.config.method, t.task_loss, &t.optimizer);
    let mut v = serde_json::to_value(recipe).expect("run configs serialize");
    drop_reals(&mut v);
    v.to_string()
}

/// `v` without its non-integer numbers (in objects and arrays, recursively).
fn drop_reals(v: &mut serde_json::Value) {
    use serde_json::Value;
    let real = |v: &Value| matches!(v, Value::Number(n) if n.is_f64());
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !real(x));
            m.values_mut().for_each(drop_reals);
        }
        Value::Array(a) => {
            a.retain(|x| !real(x));
            a.iter_mut().for_each(drop_reals);
        }
        _ => {}
    }
}

fn label(spec: &ModelSpec) -> String {
    if (spec.width - 1.0).abs() < 1e-12 {
        spec.arch.name().to_string()
    } else {
        format!("{} ×{}", spec.arch.name(), spec.width)
    }
}

/// Seconds per image of `pass` (over a batch of `batch` images) on `device`: the median pass
/// after an untimed one, in CPU time where [`counts_cpu_time`].
fn per_image(batch: i64, device: Device, mut pass: impl FnMut() -> Result<()>) -> Result<f64> {
    pass()?;
    let clock = || match counts_cpu_time(device) {
        true => gfa_core::bench::cpu_seconds(),
        false => f64::NAN,
    };
    let t0 = Instant::now();
    let mut times = Vec::new();
    while times.len() < MIN_REPS || t0.elapsed().as_secs_f64() < BUDGET_S {
        let (t, c) = (Instant::now(), clock());
        pass()?;
        gfa_core::bench::sync(device);
        times.push(pass_seconds(t.elapsed().as_secs_f64(), clock() - c));
    }
    Ok(gfa_core::bench::median(&times) / batch as f64)
}

/// Seconds per attack gradient of one image (eval mode, the input gradient of the
/// cross-entropy, as the attacks take it) of `spec` on `device` at batch `batch`.
pub fn seconds_per_gradient(spec: &ModelSpec, batch: i64, device: Device) -> Result<f64> {
    gfa_core::seed::seed_all(0);
    let model = Classifier::new(spec, device)?;
    let [c, h, w] = spec.input;
    let x = Tensor::rand([batch, c, h, w], (Kind::Float, device));
    let y = Tensor::randint(spec.num_classes, [batch], (Kind::Int64, device));
    per_image(batch, device, || {
        let _ = gfa_attacks::grad::input_grad(&model, &x, |z| gfa_attacks::loss::ce(z, &y));
        Ok(())
    })
}

/// Seconds per training image of one training step of `run`'s recipe on `device` at batch
/// `batch`.
pub fn seconds_per_train_image(run: &RunSpec, batch: i64, device: Device) -> Result<f64> {
    let t = &run.config.train;
    let recipe = StepRecipe {
        method: run.config.method.clone(),
        task: t.task_loss,
        optimizer: t.optimizer.clone(),
        perturbation: Some(&gfa_attacks::InnerPgd),
    };
    let mut bench = StepBench::with_recipe(recipe, &model_of(run), batch, device)?;
    per_image(batch, device, || Ok(bench.step()?))
}

/// Whether a calibration pass on `device` counts CPU time: on a CPU, where the process's CPU
/// time can be read.
pub fn counts_cpu_time(device: Device) -> bool {
    !device.is_cuda() && gfa_core::bench::cpu_seconds().is_finite()
}

/// The time a pass counts: the smaller of its wall time and its CPU time where that was read
/// (one thread: its CPU time; several: its wall time unless the machine was busy), else its
/// wall time.
fn pass_seconds(wall: f64, cpu: f64) -> f64 {
    if cpu.is_finite() && cpu > 0.0 { cpu.min(wall) } else { wall }
}

/// The calibration batch of `run` on `device`: its training batch, at most [`CPU_BATCH`] on a
/// CPU.
fn batch_of(run: &RunSpec, device: Device) -> i64 {
    let batch = run.config.train.batch_size.max(1) as i64;
    if device.is_cuda() { batch } else { batch.min(CPU_BATCH) }
}

/// Time every distinct model and training recipe of `runs` on `device`.
pub fn calibrate(runs: &[RunSpec], device: Device) -> Result<Calibration> {
    let mut per_model = BTreeMap::new();
    let mut per_step = BTreeMap::new();
    for r in runs {
        let (spec, batch) = (model_of(r), batch_of(r, device));
        if let Entry::Vacant(e) = per_model.entry(key(&spec)) {
            let s = seconds_per_gradient(&spec, batch, device)?;
            e.insert((s, batch, label(&spec)));
        }
        if let (true, Entry::Vacant(e)) = (r.config.train.epochs > 0, per_step.entry(recipe_key(r)))
        {
            let s = seconds_per_train_image(r, batch, device)?;
            e.insert((s, format!("{} {} (#{})", label(&spec), r.config.method.name(), r.index)));
        }
    }
    let (cpu_time, threads) = (counts_cpu_time(device), tch::get_num_threads());
    Ok(Calibration { device, per_model, per_step, cpu_time, threads })
}

impl Calibration {
    /// Estimated hours of `run` on the calibrated device.
    pub fn hours(&self, run: &RunSpec) -> f64 {
        let (train, eval) = self.seconds(run);
        (train + eval) / 3600.0
    }

    /// Estimated seconds of `run`'s training (its steps over every epoch, and each epoch's
    /// test pass) and of its evaluation on the calibrated device (NaN for a model or recipe
    /// that was not timed).
    pub fn seconds(&self, run: &RunSpec) -> (f64, f64) {
        let grad = self.per_model.get(&key(&model_of(run))).map_or(f64::NAN, |m| m.0);
        let step = match run.config.train.epochs {
            0 => 0.0,
            _ => self.per_step.get(&recipe_key(run)).map_or(f64::NAN, |s| s.0),
        };
        let test = cost::test_forwards(run) * gfa_attacks::facts::FORWARD_COST * grad;
        (cost::train_images(run) * step + test, estimate_eval_cost(run) * 1e6 * grad)
    }

    /// "cnn ×0.25: attack gradient 400.0 µs (batch 32); training step cnn ×0.25 standard (#1)
    /// 550.0 µs, … per image, wall time".
    pub fn summary(&self) -> String {
        let grads: Vec<String> = self
            .per_model
            .values()
            .map(|(s, b, l)| format!("{l}: attack gradient {} (batch {b})", fmt_seconds(*s)))
            .collect();
        let clock = match (self.cpu_time, self.threads) {
            (true, 1) => "the CPU time of one-thread passes".to_string(),
            (true, t) => format!("per pass the smaller of its wall and CPU time ({t} threads)"),
            (false, _) => "wall time".to_string(),
        };
        let times: Vec<f64> = self.per_step.values().map(|s| s.0).collect();
        let (lo, hi) =
            times.iter().fold((f64::INFINITY, 0.0_f64), |(l, h), &t| (l.min(t), h.max(t)));
        let steps = match times.len() {
            0 => String::new(),
            1..=MAX_LISTED => {
                let each = self.per_step.values().map(|(s, l)| format!("{l} {}", fmt_seconds(*s)));
                format!("; training step {}", each.collect::<Vec<_>>().join(", "))
            }
            n => {
                format!("; training step {}–{} over {n} recipes", fmt_seconds(lo), fmt_seconds(hi))
            }
        };
        format!("{}{steps} per image, {clock}", grads.join(", "))
    }
}

/// A duration with a unit that keeps about two significant digits.
pub fn fmt_seconds(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

/// Hours with a sensible precision ("0.02 h", "3.4 h", "1,234 h").
pub fn fmt_hours(h: f64) -> String {
    if !h.is_finite() {
        "?".into()
    } else if h >= 100.0 {
        let whole = format!("{:.0}", h);
        let mut out = String::new();
        for (i, c) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{out} h")
    } else if h >= 1.0 {
        format!("{h:.1} h")
    } else {
        format!("{h:.2} h")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_are_readable() {
        assert_eq!(fmt_hours(12345.6), "12,346 h");
        assert_eq!(fmt_hours(123.4), "123 h");
        assert_eq!(fmt_hours(3.45), "3.5 h");
        assert_eq!(fmt_hours(0.0123), "0.01 h");
        assert_eq!(fmt_seconds(0.0012), "1.20 ms");
        assert_eq!(fmt_seconds(2e-5), "20.0 µs");
    }

    /// Recipes that differ only in real-valued settings (λ, learning rate) share one timing;
    /// another integer setting (PGD steps), another kind or another model does not.
    #[test]
    fn recipes_ignore_real_valued_settings() {
        let text = "experiment = \"k\"\n[base]\ndata = { source = \"synthetic\" }\neval = { n = \
                    20 }\ntrain = { optimizer = { kind = \"adam\", lr = 0.001 } }\n[grid]\nmethod = [{ kind = \"gfa\", lambda = 0.1 }, { kind = \"gfa\", \
                    lambda = 0.3 }, { kind = \"pgd_at\", steps = 3 }, { kind = \"pgd_at\", steps = \
                    5 }]\n\"train.optimizer.lr\" = [0.001, 0.01]\n";
        let runs =
            crate::config::grid::ExperimentSpec::parse(std::path::Path::new("k.toml"), text, &[])
                .unwrap()
                .expand()
                .unwrap();
        let keys: std::collections::BTreeSet<String> = runs.iter().map(recipe_key).collect();
        assert_eq!((runs.len(), keys.len()), (8, 3), "{keys:?}");
    }

    /// A pass counts the smaller of its wall time and its CPU time when that was read and is
    /// positive, its wall time otherwise.
    #[test]
    fn a_pass_counts_its_cpu_time_when_read() {
        assert_eq!(pass_seconds(2.0, 0.5), 0.5);
        assert_eq!(pass_seconds(0.5, 0.75), 0.5);
        assert_eq!(pass_seconds(2.0, f64::NAN), 2.0);
        assert_eq!(pass_seconds(2.0, 0.0), 2.0);
    }

    /// The calibration passes give positive, finite times, a PGD-AT step with its inner
    /// maximization included (timings are never compared in a test: on a shared machine any
    /// ratio can invert; `make bench` holds speed comparisons).
    #[test]
    fn calibration_measures_a_positive_finite_time() {
        let small = ModelSpec { width: 0.125, ..ModelSpec::of(gfa_core::models::Arch::Cnn) };
        let s = seconds_per_gradient(&small, 16, Device::Cpu).unwrap();
        assert!(s.is_finite() && s > 0.0, "{s}");
        let text = "experiment = \"cal\"\n[base]\ndata = { source = \"synthetic\" }\nmodel = \
                    { arch = \"cnn\", width = 0.125 }\nmethod = { kind = \"pgd_at\", steps = 2 }\neval = { n = 20 }\n";
        let runs =
            crate::config::grid::ExperimentSpec::parse(std::path::Path::new("c.toml"), text, &[])
                .unwrap()
                .expand()
                .unwrap();
        let cal = calibrate(&runs, Device::Cpu).unwrap();
        let (train, eval) = cal.seconds(&runs[0]);
        assert!(
            train.is_finite() && train > 0.0 && eval.is_finite() && eval > 0.0,
            "{train} {eval}"
        );
    }
}
