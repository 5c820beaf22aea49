//! One PGD-10 attack batch timed for `make bench` (scripts/bench.sh), against torchattacks'
//! `PGD` in `scripts/bench_pytorch.py`: torchattacks' preset (Linf 8/255, 10 steps of 2/255,
//! random start, the last iterate), on a seeded `cnn` of the given width in eval mode and a
//! seeded random batch with the model's own predictions as labels. Prints one JSON object like
//! `bench_train_step`'s: the median wall and CPU time of an attack batch.
//!
//! ```text
//! cargo run --release -p gfa-attacks --example bench_pgd_step -- [width] [batch] [reps] [threads]
//! ```
use std::time::Instant;

use gfa_attacks::pgd::{Pgd, PgdConfig};
use gfa_attacks::{Attack, Configured, Norm, Preset};
use gfa_core::Classifier;
use gfa_core::bench::{cpu_seconds, median};
use gfa_core::models::{Arch, ModelSpec};
use gfa_core::seed::{rng_for, seed_all};
use tch::{Device, Kind, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: f64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (width, n, reps, threads) = (arg(0, 0.25), arg(1, 128.0) as i64, arg(2, 10.0), arg(3, 0.0));
    if threads > 0.0 {
        tch::set_num_threads(threads as i32);
    }
    // As the `gfa` binary does (gfa_core::host_memory).
    gfa_core::host_memory::keep_freed_memory();
    seed_all(0);
    let x = Tensor::rand([n, 3, 32, 32], (Kind::Float, Device::Cpu));
    seed_all(0);
    let spec = ModelSpec { arch: Arch::Cnn, width, ..ModelSpec::default() };
    let model = Classifier::new(&spec, Device::Cpu)?;
    let y = tch::no_grad(|| model.logits(&x, false)).argmax(1, false);
    let pgd = Pgd::new(PgdConfig::preset_for(Preset::Torchattacks, Norm::Linf))?;
    let mut rng = rng_for(0, "bench/pgd");
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for i in 0..(2 + reps as usize) {
        let (t0, c0) = (Instant::now(), cpu_seconds());
        let _ = pgd.perturb(&model, &x, &y, 8.0 / 255.0, &mut rng)?;
        if i >= 2 {
            wall.push(t0.elapsed().as_secs_f64());
            cpu.push(cpu_seconds() - c0);
        }
    }
    println!(
        "{{\"impl\": \"gfa\", \"case\": \"pgd10\", \"width\": {width}, \"batch\": {n}, \
         \"threads\": {}, \"median_s\": {}, \"cpu_median_s\": {}, \"steps\": {reps}, \
         \"code_path\": \"{}\"}}",
        tch::get_num_threads(),
        median(&wall),
        median(&cpu),
        gfa_core::libtorch::cpu_capability().unwrap_or_default()
    );
    Ok(())
}
