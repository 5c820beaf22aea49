//! The memory layout of the conv models, timed for `make bench` (scripts/bench_layout.sh):
//! a training step (plain cross-entropy, Adam, the trainer's own step) and an APGD-CE batch
//! (L∞ 8/255, reference settings but `iters` iterations, labels = the model's predictions so
//! that every point is attacked) of `cnn`, `resnet18`,
//! `preact_resnet18` and `wrn_28_10`, each in the default (contiguous) layout and channels last,
//! on one seeded model and one seeded random batch per architecture.
//!
//! One round: every architecture, both layouts back to back (the order alternating with the
//! round, so drift hits both alike), one JSON object per (task, arch, layout) with the median
//! CPU time of the process over a step or an attack batch (one thread: the task's own work,
//! which other processes on a shared machine inflate far less than its wall time) and the
//! median wall time.
//!
//! ```text
//! cargo run --release -p gfa-attacks --example bench_layout -- ROUND [STEPS] [ITERS] [device] [SIZES]
//! ```
//! `SIZES` is a list of `arch:width:batch` (default: [`SIZES`]); `device` is `cpu` (default) or
//! `cuda` (then the wall time is the figure: CUDA's work is not this process's CPU time).
use std::time::Instant;

use gfa_attacks::apgd::{Apgd, ApgdConfig, ApgdLoss};
use gfa_attacks::{Attack, Configured, Norm, Preset};
use gfa_core::Classifier;
use gfa_core::bench::{StepBench, cpu_seconds, median, sync};
use gfa_core::models::{Arch, Layout, ModelSpec};
use gfa_core::seed::{rng_for, seed_all};
use tch::{Device, Kind, Tensor};

/// The default sizes on a 2-core CPU: `cnn` as `make quick` trains it; the residual networks
/// at reduced width and batch (a full-size step takes tens of seconds on one thread).
const SIZES: &str = "cnn:0.25:128,resnet18:0.25:32,preact_resnet18:0.25:32,wrn_28_10:0.1:16";

/// Median CPU and wall seconds of `f` over `n` calls, after one untimed call.
fn timed(
    device: Device,
    n: usize,
    mut f: impl FnMut() -> Result<(), Box<dyn std::error::Error>>,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    f()?;
    let (mut cpu, mut wall) = (Vec::new(), Vec::new());
    for _ in 0..n {
        sync(device);
        let (t0, c0) = (Instant::now(), cpu_seconds());
        f()?;
        sync(device);
        wall.push(t0.elapsed().as_secs_f64());
        cpu.push(cpu_seconds() - c0);
    }
    Ok((median(&cpu), median(&wall)))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let round: usize = args.first().map_or(Ok(1), |s| s.parse())?;
    let steps: usize = args.get(1).map_or(Ok(5), |s| s.parse())?;
    let iters: usize = args.get(2).map_or(Ok(10), |s| s.parse())?;
    let device = match args.get(3).map_or("cpu", String::as_str) {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        other => return Err(format!("device `{other}`: use cpu or cuda").into()),
    };
    if device == Device::Cpu {
        tch::set_num_threads(1);
    }
    let sizes = args.get(4).map_or(SIZES, String::as_str);
    let layouts = match round % 2 {
        1 => [Layout::Contiguous, Layout::ChannelsLast],
        _ => [Layout::ChannelsLast, Layout::Contiguous],
    };
    for size in sizes.split(',') {
        let parts: Vec<&str> = size.split(':').collect();
        let [arch, width, batch] = parts[..] else {
            return Err(format!("size `{size}`: write arch:width:batch").into());
        };
        let arch: Arch = arch.parse()?;
        let (width, batch): (f64, i64) = (width.parse()?, batch.parse()?);
        for layout in layouts {
            let spec = ModelSpec { arch, width, layout, ..ModelSpec::default() };
            let mut bench = StepBench::new("plain", &spec, batch, device)?;
            let train = timed(device, steps, || Ok(bench.step()?))?;

            seed_all(0);
            let mut model = Classifier::new(&spec, device)?;
            model.freeze();
            let x = Tensor::rand([batch, 3, 32, 32], (Kind::Float, Device::Cpu)).to_device(device);
            // The model's own predictions as labels: APGD-CE attacks only the points the model
            // classifies correctly, so every point of the batch is attacked.
            let y = model.logits(&x, false).argmax(1, false);
            let config = ApgdConfig {
                n_iter: iters,
                ..ApgdConfig::preset_for(Preset::Reference, Norm::Linf)
            };
            let apgd = Apgd::new(config, ApgdLoss::Ce)?;
            let mut rng = rng_for(0, "bench-layout");
            let attack = timed(device, steps.div_ceil(2), || {
                let _adversarial = apgd.perturb(&model, &x, &y, 8.0 / 255.0, &mut rng)?;
                Ok(())
            })?;
            for (task, (cpu, wall)) in [("train_step", train), ("apgd_ce", attack)] {
                println!(
                    "{{\"round\": {round}, \"task\": \"{task}\", \"arch\": \"{arch}\", \
                     \"width\": {width}, \"batch\": {batch}, \"layout\": \"{}\", \
                     \"device\": \"{}\", \"threads\": {}, \"iters\": {}, \"cpu_median_s\": {cpu}, \
                     \"wall_median_s\": {wall}}}",
                    serde_json::to_value(layout)?.as_str().unwrap_or("?"),
                    if device == Device::Cpu { "cpu" } else { "cuda" },
                    tch::get_num_threads(),
                    if task == "apgd_ce" { iters } else { 0 },
                );
            }
        }
    }
    Ok(())
}
