//! The command line: clap's arguments ([`args`]) and one file per command or command family,
//! each turning its arguments into the lower layers' own types (no clap type is seen below
//! `cli/`). May import every other layer.

pub mod args;
pub mod binarize;
pub mod calibrate;
pub mod commands;
pub mod cuda_check;
pub mod data;
pub mod doctor;
pub mod export;
pub mod import;
pub mod list;
pub mod plan;
pub mod report;
pub mod run;
pub mod slurm;

pub use args::Cli;

use anyhow::Result;

/// `, precision tf32, deterministic` as the process's numerics resolve for `device` (empty
/// before any were set).
pub fn numerics_text(device: tch::Device) -> String {
    match gfa_core::device::Numerics::applied() {
        Some((asked, n)) => format!(
            ", precision {}{}",
            asked.resolve(device),
            if n.deterministic { ", deterministic" } else { "" }
        ),
        None => String::new(),
    }
}

/// Resolve the device and say on stdout where the work runs (the first line of `gfa run`,
/// `train` and `eval`); `--device auto` falling back to the CPU on a machine with an NVIDIA
/// driver also warns on stderr.
pub fn announce(choice: gfa_core::DeviceChoice) -> Result<tch::Device> {
    let device = choice.resolve()?;
    println!("device: {}{}", gfa_core::device::describe(device), numerics_text(device));
    if let Some(w) = gfa_core::device::auto_fallback_warning(choice, device) {
        eprintln!("{w}");
    }
    Ok(device)
}
