//! Training-step timings for `make bench` (scripts/bench.sh): plain cross-entropy, GFA on the
//! `input` tap ("first") and GFA on all taps ("deep"), on `cnn` at a given width with a fixed
//! batch, Adam, the trainer's own step (the method's loss: one double-backprop call over the
//! taps; the method's backward of the total; one optimizer update). Prints one JSON object per case, like
//! `scripts/bench_pytorch.py`, so the two can be compared in one run.
//!
//! `cargo run --release -p gfa-core --example bench_train_step -- [width] [batch] [steps] [threads]`
use std::time::Instant;

use gfa_core::method::gfa::Gfa;
use gfa_core::method::{Step, TrainMethod};
use gfa_core::models::{Arch, ModelSpec};
use gfa_core::regularizer::{Layers, Regularizer, RegularizerConfig};
use gfa_core::seed::{rng_for, seed_all};
use gfa_core::train::{Optimizer, OptimizerConfig};
use gfa_core::{Classifier, Method, TaskLoss};
use tch::{Device, Kind, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: f64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (width, batch, steps, threads) =
        (arg(0, 0.25), arg(1, 128.0) as i64, arg(2, 20.0), arg(3, 0.0));
    if threads > 0.0 {
        tch::set_num_threads(threads as i32);
    }
    let warmup = 3;
    seed_all(0);
    let x = Tensor::rand([batch, 3, 32, 32], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(10, [batch], (Kind::Int64, Device::Cpu));
    for case in ["plain", "first", "deep"] {
        seed_all(0);
        let spec = ModelSpec { arch: Arch::Cnn, width, ..ModelSpec::default() };
        let model = Classifier::new(&spec, Device::Cpu)?;
        let gfa = |layers| {
            Method::Gfa(Gfa(RegularizerConfig {
                layers: Some(layers),
                ..RegularizerConfig::with_lambda(0.3)
            }))
        };
        let method = match case {
            "plain" => Method::default(),
            "first" => gfa(Layers::First),
            _ => gfa(Layers::Deep),
        };
        let reg = match method.regularizer() {
            Some((kind, c)) => Some(Regularizer::new(kind, c, TaskLoss::Ce, &model.tap_names())?),
            None => None,
        };
        let mut rng = rng_for(0, "bench");
        let opt_cfg =
            OptimizerConfig::Adam { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.0 };
        let mut opt = Optimizer::new(&opt_cfg, &model)?;
        let mut times = Vec::new();
        for i in 0..(warmup + steps as usize) {
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
            if i >= warmup {
                times.push(t0.elapsed().as_secs_f64());
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{{\"impl\": \"gfa\", \"case\": \"{case}\", \"width\": {width}, \"batch\": {batch}, \
             \"threads\": {}, \"median_s\": {median}, \"images_per_s\": {}, \"steps\": {steps}}}",
            tch::get_num_threads(),
            batch as f64 / median
        );
    }
    Ok(())
}
