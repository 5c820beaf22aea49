//! Training-step timings and peak memory for `make bench` (scripts/bench.sh).
//!
//! Timing (default): the cases of [`gfa_core::bench`] (plain cross-entropy; GFA on the `input`
//! tap, "first", and on all taps, "deep", each with the exact double-backprop gradient and
//! with the finite-difference one, `first_fd` and `deep_fd`), on `cnn` at a given width with a
//! fixed batch, Adam, the trainer's own step. Prints one JSON object per case, like
//! `scripts/bench_pytorch.py`, so the two can be compared in one run: the median wall time of a
//! step and the median CPU time of the process over a step (on a machine that others share, the
//! CPU time of a one-thread run is the step's own work).
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

use gfa_core::bench::{CASES, StepBench, median, train_step_times};
use gfa_core::models::{Arch, ModelSpec};
use tch::Device;

/// The machine's 1-minute load average (NaN where /proc/loadavg cannot be read).
fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
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
    let mut bench = StepBench::new(case, &ModelSpec::of(arch), n, Device::Cpu)?;
    let (_, before) = rss_mib();
    let t0 = Instant::now();
    for _ in 0..steps {
        bench.step()?;
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
    // As the `gfa` binary does (gfa_core::host_memory).
    gfa_core::host_memory::keep_freed_memory();
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
    for case in CASES {
        let times = train_step_times(case, width, n, Device::Cpu, 3, steps as usize)?;
        let wall = median(&times.iter().map(|t| t.wall).collect::<Vec<_>>());
        let cpu = median(&times.iter().map(|t| t.cpu).collect::<Vec<_>>());
        println!(
            "{{\"impl\": \"gfa\", \"case\": \"{case}\", \"width\": {width}, \"batch\": {n}, \
             \"threads\": {}, \"median_s\": {wall}, \"cpu_median_s\": {cpu}, \
             \"images_per_s\": {}, \"steps\": {steps}, \"load1\": {}, \"code_path\": \"{}\"}}",
            tch::get_num_threads(),
            n as f64 / wall,
            load1(),
            gfa_core::libtorch::cpu_capability().unwrap_or_default()
        );
    }
    Ok(())
}
