//! Turning a plan's image-gradient counts into hours on a device: a short measured calibration
//! step per model of the plan.
//!
//! [`crate::config::grid::estimate_cost`] counts a run's work in image-gradients (forward + backward
//! of one image) and ignores the architecture. [`calibrate`] times forward + backward passes
//! (input and parameter gradients, cross-entropy) of each distinct model of the plan on the
//! chosen device, at the run's training batch size (at most [`CPU_BATCH`] on a CPU, where
//! the time per image hardly depends on the batch), and [`Calibration::hours`] multiplies.
//! Attacks, data loading and evaluation overheads are not measured: the estimate is the order
//! of magnitude to plan with, not a promise.
use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use gfa_core::{Classifier, ModelSpec};
use tch::{Device, Kind, Tensor};

use crate::config::grid::{RunSpec, estimate_cost, estimate_eval_cost, estimate_train_cost};

/// Largest calibration batch on a CPU.
pub const CPU_BATCH: i64 = 32;
/// Each model is timed until this many seconds have passed (after one untimed pass), and at
/// least [`MIN_REPS`] times; the median pass counts (other jobs on the machine slow some).
const BUDGET_S: f64 = 0.3;
const MIN_REPS: usize = 3;

/// Measured seconds per image-gradient of each model of a plan on one device.
#[derive(Debug, Clone)]
pub struct Calibration {
    pub device: Device,
    /// Per model (its canonical JSON): seconds per image-gradient, the batch it was timed at,
    /// and a short label.
    pub per_model: BTreeMap<String, (f64, i64, String)>,
}

fn key(spec: &ModelSpec) -> String {
    serde_json::to_string(spec).expect("model specs serialize")
}

fn label(spec: &ModelSpec) -> String {
    if (spec.width - 1.0).abs() < 1e-12 {
        spec.arch.name().to_string()
    } else {
        format!("{} ×{}", spec.arch.name(), spec.width)
    }
}

/// Seconds per image-gradient of `spec` on `device` at batch `batch`.
pub fn seconds_per_gradient(spec: &ModelSpec, batch: i64, device: Device) -> Result<f64> {
    gfa_core::seed::seed_all(0);
    let model = Classifier::new(spec, device)?;
    let x = Tensor::rand([batch, 3, 32, 32], (Kind::Float, device));
    let y = Tensor::randint(spec.num_classes, [batch], (Kind::Int64, device));
    let pass = || {
        let xg = x.detach().set_requires_grad(true);
        let loss = model.logits(&xg, true).cross_entropy_for_logits(&y);
        loss.backward();
        gfa_core::bench::sync(device);
    };
    pass();
    let t0 = Instant::now();
    let mut times = Vec::new();
    while times.len() < MIN_REPS || t0.elapsed().as_secs_f64() < BUDGET_S {
        let t = Instant::now();
        pass();
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(gfa_core::bench::median(&times) / batch as f64)
}

/// Time every distinct model of `runs` on `device`.
pub fn calibrate(runs: &[RunSpec], device: Device) -> Result<Calibration> {
    let mut per_model = BTreeMap::new();
    for r in runs {
        let spec = &r.config.model;
        let k = key(spec);
        if per_model.contains_key(&k) {
            continue;
        }
        let batch = r.config.train.batch_size.max(1) as i64;
        let batch = if device.is_cuda() { batch } else { batch.min(CPU_BATCH) };
        let s = seconds_per_gradient(spec, batch, device)?;
        per_model.insert(k, (s, batch, label(spec)));
    }
    Ok(Calibration { device, per_model })
}

impl Calibration {
    /// Estimated hours of `run` on the calibrated device.
    pub fn hours(&self, run: &RunSpec) -> f64 {
        estimate_cost(run) * 1e6 * self.per_gradient(run) / 3600.0
    }

    /// Estimated seconds of `run`'s training and of its evaluation on the calibrated device
    /// (NaN for a model that was not timed).
    pub fn seconds(&self, run: &RunSpec) -> (f64, f64) {
        let s = self.per_gradient(run) * 1e6;
        (estimate_train_cost(run) * s, estimate_eval_cost(run) * s)
    }

    fn per_gradient(&self, run: &RunSpec) -> f64 {
        self.per_model.get(&key(&run.config.model)).map(|m| m.0).unwrap_or(f64::NAN)
    }

    /// "cnn 1.2 ms, mlp 0.05 ms per image-gradient (batch 32)".
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .per_model
            .values()
            .map(|(s, b, l)| format!("{l} {} (batch {b})", fmt_seconds(*s)))
            .collect();
        format!("{} per image-gradient", parts.join(", "))
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

    /// The calibration pass gives a positive, finite time (timings are never compared in
    /// a test: on a shared machine any ratio can invert; `make bench` holds speed comparisons).
    #[test]
    fn calibration_measures_a_positive_finite_time() {
        let small = ModelSpec { width: 0.125, ..ModelSpec::of(gfa_core::models::Arch::Cnn) };
        let s = seconds_per_gradient(&small, 16, Device::Cpu).unwrap();
        assert!(s.is_finite() && s > 0.0, "{s}");
    }
}
