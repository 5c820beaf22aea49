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
pub mod tf32;

pub use args::Cli;

use anyhow::Result;

/// `--precision` and `--deterministic` as given on the command line (`None`, `false`: not
/// given).
#[derive(Debug, Clone, Copy, Default)]
pub struct NumericsFlags {
    pub precision: Option<gfa_core::device::Precision>,
    pub deterministic: bool,
}

impl NumericsFlags {
    /// The precision and determinism asked for: the flags where given, else the grid's `[run]
    /// precision` / `deterministic` (`grid`), else `auto` and off (docs/numerics.md).
    pub fn resolve(
        self,
        grid: crate::config::grid::RunNumerics,
    ) -> (gfa_core::device::Precision, bool) {
        let precision = self.precision.or(grid.precision).unwrap_or_default();
        (precision, self.deterministic || grid.deterministic == Some(true))
    }

    /// Set the process's numerics, [`NumericsFlags::resolve`]d, for work on `device` (before
    /// its first tensor).
    pub fn apply(
        self,
        grid: crate::config::grid::RunNumerics,
        device: tch::Device,
    ) -> Result<gfa_core::device::Numerics> {
        let (precision, deterministic) = self.resolve(grid);
        Ok(gfa_core::device::Numerics::apply(precision, deterministic, device)?)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::grid::RunNumerics;
    use gfa_core::device::Precision::{Auto, Fp32, Tf32};

    /// The flags win over the grid's `[run]` keys, which win over the defaults; either side's
    /// `deterministic` turns the switches on.
    #[test]
    fn flags_win_over_the_grid_which_wins_over_the_defaults() {
        let grid = |precision, deterministic| RunNumerics { precision, deterministic };
        let flags = |precision, deterministic| NumericsFlags { precision, deterministic };
        assert_eq!(flags(None, false).resolve(RunNumerics::default()), (Auto, false));
        assert_eq!(flags(None, false).resolve(grid(Some(Fp32), Some(true))), (Fp32, true));
        assert_eq!(flags(Some(Tf32), false).resolve(grid(Some(Fp32), None)), (Tf32, false));
        assert_eq!(flags(None, true).resolve(grid(None, Some(false))), (Auto, true));
    }
}
