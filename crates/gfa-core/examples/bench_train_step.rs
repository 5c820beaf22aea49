//! Training-step timings for `make bench` (scripts/bench.sh): plain cross-entropy, GFA on the
//! `input` tap ("first") and GFA on all taps ("deep"), on `cnn` at a given width with a fixed
//! batch, Adam, the trainer's own step (one double-backprop call over the taps, one backward of
//! the total, one optimizer update; [`gfa_core::bench`]). Prints one JSON object per case, like
//! `scripts/bench_pytorch.py`, so the two can be compared in one run.
//!
//! `cargo run --release -p gfa-core --example bench_train_step -- [width] [batch] [steps] [threads]`
use gfa_core::bench::{CASES, median, train_step_seconds};
use tch::Device;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: f64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (width, batch, steps, threads) =
        (arg(0, 0.25), arg(1, 128.0) as i64, arg(2, 20.0), arg(3, 0.0));
    if threads > 0.0 {
        tch::set_num_threads(threads as i32);
    }
    for case in CASES {
        let times = train_step_seconds(case, width, batch, Device::Cpu, 3, steps as usize)?;
        let median = median(&times);
        println!(
            "{{\"impl\": \"gfa\", \"case\": \"{case}\", \"width\": {width}, \"batch\": {batch}, \
             \"threads\": {}, \"median_s\": {median}, \"images_per_s\": {}, \"steps\": {steps}}}",
            tch::get_num_threads(),
            batch as f64 / median
        );
    }
    Ok(())
}
