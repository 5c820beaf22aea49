//! One training-step case timed for a profile (`scripts/profile_step.sh`): `cnn` width 0.25,
//! batch 128, Adam, one intra-op thread, the trainer's own step ([`gfa_core::bench`]). After
//! 3 untimed steps it writes `enable` to the `perf` control FIFO named by `PERF_CTL` (when set),
//! makes the steps, writes `disable`, and prints the CPU time per step and the peak RSS.
//! `GFA_DEFAULT_MALLOC=1` leaves glibc's malloc at its defaults (the `gfa` binary and the
//! benches keep freed memory, [`gfa_core::host_memory`]).
//!
//! ```text
//! cargo run --release -p gfa-core --example profile_step -- [case] [steps]
//! ```
use std::io::Write;

use gfa_core::bench::{StepBench, cpu_seconds};
use gfa_core::models::{Arch, ModelSpec};

fn perf_control(cmd: &str) {
    if let Some(p) = std::env::var_os("PERF_CTL") {
        let mut f = std::fs::OpenOptions::new().write(true).open(&p).expect("PERF_CTL FIFO");
        f.write_all(format!("{cmd}\n").as_bytes()).expect("write to PERF_CTL");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let case = args.first().map_or("plain", String::as_str);
    let n: usize = args.get(1).map_or(Ok(20), |s| s.parse())?;
    tch::set_num_threads(1);
    let kept = std::env::var_os("GFA_DEFAULT_MALLOC").is_none()
        && gfa_core::host_memory::keep_freed_memory();
    let spec = ModelSpec { arch: Arch::Cnn, width: 0.25, ..ModelSpec::default() };
    let mut bench = StepBench::new(case, &spec, 128, tch::Device::Cpu)?;
    for _ in 0..3 {
        bench.step()?;
    }
    perf_control("enable");
    let c0 = cpu_seconds();
    for _ in 0..n {
        bench.step()?;
    }
    let c1 = cpu_seconds();
    perf_control("disable");
    let status = std::fs::read_to_string("/proc/self/status")?;
    let hwm = status.lines().find(|l| l.starts_with("VmHWM")).unwrap_or("VmHWM: ?");
    println!(
        "gfa {case}: {:.2} ms CPU/step over {n} steps, freed memory kept: {kept}, {}",
        (c1 - c0) * 1e3 / n as f64,
        hwm.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
    );
    Ok(())
}
