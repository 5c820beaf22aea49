//! Training-step timings and peak memory for `make bench` (scripts/bench.sh).
//!
//! Timing (default): plain cross-entropy, GFA on the `input` tap ("first") and GFA on all taps
//! ("deep"), each with the exact double-backprop gradient and with the finite-difference one
//! (`first_fd`, `deep_fd`), on `cnn` at a given width with a fixed batch, Adam, the trainer's
//! own step (exact: one double-backprop call over the taps, one backward of the total; finite
//! difference: two ordinary forward/backward passes), then one optimizer update. Prints one JSON
//! object per case, like `scripts/bench_pytorch.py`, so the two can be compared in one run: the
//! median wall time of a step and the median CPU time of the process over a step (on a machine
//! that others share, the CPU time of a one-thread run is the step's own work).
//!
//! Memory (`--memory ARCH CASE [batch] [steps]`): a few steps of one case on one model, then
//! the process's peak resident set (`VmHWM`); one process per configuration, so each peak is
//! its own.
//!
//! ```text
//! cargo run --release -p gfa-core --example bench_train_step -- [width] [batch] [steps] [threads]
//! cargo run --release -p gfa-core --example bench_train_step -- --memory preact_resnet18 deep_fd 128 2
//! ```
use std::time::Instant;

use gfa_core::Classifier;
use gfa_core::models::{Arch, ModelSpec};
use gfa_core::regularizer::{Layers, PenaltyGradient, Regularizer, RegularizerConfig};
use gfa_core::seed::seed_all;
use gfa_core::train::{Optimizer, OptimizerConfig};
use tch::{Device, Kind, Tensor};

const CASES: [&str; 5] = ["plain", "first", "deep", "first_fd", "deep_fd"];
const LAMBDA: f64 = 0.3;

/// The regularizer of a case.
fn config(case: &str) -> Result<RegularizerConfig, String> {
    let gfa = |layers, gradient| RegularizerConfig {
        layers: Some(layers),
        gradient,
        ..RegularizerConfig::gfa(LAMBDA)
    };
    let (exact, fd) = (PenaltyGradient::Exact, PenaltyGradient::FiniteDifference);
    Ok(match case {
        "plain" => RegularizerConfig::default(),
        "first" => gfa(Layers::First, exact),
        "deep" => gfa(Layers::Deep, exact),
        "first_fd" => gfa(Layers::First, fd),
        "deep_fd" => gfa(Layers::Deep, fd),
        _ => return Err(format!("unknown case `{case}`; cases: {}", CASES.join(", "))),
    })
}

/// A fresh model, its regularizer and Adam, all seeded alike for every case.
fn setup(
    spec: &ModelSpec,
    case: &str,
) -> Result<(Classifier, Regularizer, Optimizer), Box<dyn std::error::Error>> {
    seed_all(0);
    let model = Classifier::new(spec, Device::Cpu)?;
    let reg = Regularizer::new(&config(case)?, &model.tap_names())?;
    let opt_cfg =
        OptimizerConfig::Adam { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.0 };
    let opt = Optimizer::new(&opt_cfg, &model)?;
    Ok((model, reg, opt))
}

/// One training step as the trainer takes it.
fn step(model: &Classifier, reg: &Regularizer, opt: &mut Optimizer, x: &Tensor, y: &Tensor) {
    let lambda = reg.cfg.lambda;
    opt.zero_grad();
    if reg.uses_finite_difference(lambda) {
        reg.accumulate_finite_difference(model, x, y, lambda, true);
    } else {
        let fwd = reg.forward(model, x, y, true, lambda > 0.0);
        (&fwd.loss + &fwd.reg * lambda).backward();
    }
    opt.step(1e-3);
}

fn batch(n: i64) -> (Tensor, Tensor) {
    seed_all(0);
    let x = Tensor::rand([n, 3, 32, 32], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(10, [n], (Kind::Int64, Device::Cpu));
    (x, y)
}

/// CPU time of this process so far, in seconds: the sum over its threads of
/// `/proc/self/task/*/schedstat` (nanoseconds on the CPU), as precise as Python's
/// `time.process_time()`; NaN where it cannot be read.
fn cpu_seconds() -> f64 {
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

/// The machine's 1-minute load average (NaN where /proc/loadavg cannot be read).
fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak and current resident set of this process, in MiB.
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn memory(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let arch: Arch = args.first().ok_or("--memory needs ARCH CASE")?.parse()?;
    let case = args.get(1).ok_or("--memory needs ARCH CASE")?.as_str();
    let n: i64 = args.get(2).map_or(Ok(128), |s| s.parse())?;
    let steps: usize = args.get(3).map_or(Ok(2), |s| s.parse())?;
    let (x, y) = batch(n);
    let (model, reg, mut opt) = setup(&ModelSpec::of(arch), case)?;
    let (_, before) = rss_mib();
    let t0 = Instant::now();
    for _ in 0..steps {
        step(&model, &reg, &mut opt, &x, &y);
    }
    let (peak, _) = rss_mib();
    println!(
        "{{\"impl\": \"gfa\", \"kind\": \"memory\", \"arch\": \"{arch}\", \"case\": \"{case}\", \
         \"batch\": {n}, \"steps\": {steps}, \"threads\": {}, \"rss_before_mib\": {before:.1}, \
         \"peak_rss_mib\": {peak:.1}, \"seconds_per_step\": {}}}",
        tch::get_num_threads(),
        t0.elapsed().as_secs_f64() / steps as f64
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--memory") {
        return memory(&args[1..]);
    }
    let arg = |i: usize, d: f64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (width, n, steps, threads) =
        (arg(0, 0.25), arg(1, 128.0) as i64, arg(2, 20.0), arg(3, 0.0));
    if threads > 0.0 {
        tch::set_num_threads(threads as i32);
    }
    let warmup = 3;
    let (x, y) = batch(n);
    let spec = ModelSpec { arch: Arch::Cnn, width, ..ModelSpec::default() };
    for case in CASES {
        let (model, reg, mut opt) = setup(&spec, case)?;
        let (mut wall, mut cpu) = (Vec::new(), Vec::new());
        for i in 0..(warmup + steps as usize) {
            let (t0, c0) = (Instant::now(), cpu_seconds());
            step(&model, &reg, &mut opt, &x, &y);
            if i >= warmup {
                wall.push(t0.elapsed().as_secs_f64());
                cpu.push(cpu_seconds() - c0);
            }
        }
        let (wall, cpu) = (median(wall), median(cpu));
        println!(
            "{{\"impl\": \"gfa\", \"case\": \"{case}\", \"width\": {width}, \"batch\": {n}, \
             \"threads\": {}, \"median_s\": {wall}, \"cpu_median_s\": {cpu}, \
             \"images_per_s\": {}, \"steps\": {steps}, \"load1\": {}}}",
            tch::get_num_threads(),
            n as f64 / wall,
            load1()
        );
    }
    Ok(())
}
