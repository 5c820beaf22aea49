//! Timing of the trainer's step, shared by `make bench` (the `bench_train_step` example, CPU)
//! and the GPU check (`gfa cuda-check`): plain cross-entropy, GFA on the `input` tap ("first")
//! and GFA on all taps ("deep"), on `cnn` at a given width, one fixed batch, Adam; each step is
//! the trainer's own (the method's loss: one double-backprop call over the taps; the method's
//! backward of the total; one optimizer update), timed after the device has finished it.
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::method::gfa::Gfa;
use crate::method::{Step, TrainMethod};
use crate::models::{Arch, ModelSpec};
use crate::regularizer::{Layers, Regularizer, RegularizerConfig};
use crate::seed::{rng_for, seed_all};
use crate::train::{Optimizer, OptimizerConfig};
use crate::{Classifier, Method, TaskLoss};

/// The cases timed, in order.
pub const CASES: [&str; 3] = ["plain", "first", "deep"];

/// Wait until `device` has finished the work queued so far (a no-op on the CPU).
pub fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Seconds of each of `steps` training steps of `case` (after `warmup` untimed ones), on a
/// seeded `cnn` of `width` and a seeded random batch of `batch` images, on `device`.
pub fn train_step_seconds(
    case: &str,
    width: f64,
    batch: i64,
    device: Device,
    warmup: usize,
    steps: usize,
) -> crate::Result<Vec<f64>> {
    seed_all(0);
    let x = Tensor::rand([batch, 3, 32, 32], (Kind::Float, Device::Cpu)).to_device(device);
    let y = Tensor::randint(10, [batch], (Kind::Int64, Device::Cpu)).to_device(device);
    seed_all(0);
    let spec = ModelSpec { arch: Arch::Cnn, width, ..ModelSpec::default() };
    let model = Classifier::new(&spec, device)?;
    let gfa = |layers| {
        Method::Gfa(Gfa(RegularizerConfig {
            layers: Some(layers),
            ..RegularizerConfig::with_lambda(0.3)
        }))
    };
    let method = match case {
        "plain" => Method::default(),
        "first" => gfa(Layers::First),
        "deep" => gfa(Layers::Deep),
        other => {
            return Err(crate::CoreError::Config(format!(
                "unknown training-step case `{other}` (plain, first, deep)"
            )));
        }
    };
    let reg = match method.regularizer() {
        Some((kind, c)) => Some(Regularizer::new(kind, c, TaskLoss::Ce, &model.tap_names())?),
        None => None,
    };
    let mut rng = rng_for(0, "bench");
    let opt_cfg =
        OptimizerConfig::Adam { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.0 };
    let mut opt = Optimizer::new(&opt_cfg, &model)?;
    let mut times = Vec::with_capacity(steps);
    for i in 0..(warmup + steps) {
        sync(device);
        let t0 = Instant::now();
        let mut step = Step {
            model: &model,
            x: &x,
            y: &y,
            task: TaskLoss::Ce,
            reg: reg.as_ref(),
            lambda: 0.3,
            perturbation: None,
            rng: &mut rng,
        };
        let out = method.loss(&mut step)?;
        opt.zero_grad();
        method.backward(&out)?;
        opt.step(1e-3);
        sync(device);
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    Ok(times)
}

/// The median of `v` (the upper one for an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}
