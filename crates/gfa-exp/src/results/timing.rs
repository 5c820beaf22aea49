//! How long the last `gfa run` of an experiment took beside its prediction: `timing.json` in
//! the experiment folder, written by `gfa run` and read by T5.

use std::path::Path;

use anyhow::{Result, anyhow};
use serde::{Deserialize, Serialize};

use crate::results::store::ExperimentDir;

/// How long the last `gfa run` of an experiment took, beside its prediction: `timing.json` in
/// the experiment folder, read by T5.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridTiming {
    /// Workers (`--jobs`).
    pub workers: usize,
    /// `lpt` or `arrival`.
    pub order: String,
    /// The predicted wall time in seconds (`None` when the runs were not calibrated: `--order
    /// arrival`, or nothing left to do).
    pub predicted_s: Option<f64>,
    /// The measured wall time of the call, from its start to its end, in seconds.
    pub measured_s: f64,
    /// Runs finished by the call.
    pub runs_done: usize,
}

/// The file of [`GridTiming`] in an experiment folder.
pub const TIMING: &str = "timing.json";

impl GridTiming {
    /// Write it to `exp`'s folder (atomically).
    pub fn write(&self, exp: &ExperimentDir) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        gfa_data::atomic::write_atomic(&exp.root.join(TIMING), text.as_bytes())?;
        Ok(())
    }

    /// The timing of the last `gfa run` in the experiment folder `root`, if it wrote one.
    pub fn read(root: &Path) -> Result<Option<Self>> {
        let path = root.join(TIMING);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                anyhow!("{}: {e}; delete the file (the next `gfa run` rewrites it)", path.display())
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow!("reading {}: {e}", path.display())),
        }
    }

    /// "wall time 23:20 with 2 workers (predicted 21:52, order lpt; 4 runs worked)".
    pub fn line(&self) -> String {
        let predicted = match self.predicted_s {
            Some(p) => format!("predicted {}", clock(p)),
            None => "not predicted".into(),
        };
        format!(
            "wall time {} with {} worker{} ({predicted}, order {}; {} run{} worked)",
            clock(self.measured_s),
            self.workers,
            if self.workers == 1 { "" } else { "s" },
            self.order,
            self.runs_done,
            if self.runs_done == 1 { "" } else { "s" }
        )
    }
}

/// A duration in seconds as `h:mm:ss` (or `m:ss` under an hour).
pub fn clock(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "?".into();
    }
    let t = seconds.round().max(0.0) as u64;
    match t >= 3600 {
        true => format!("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60),
        false => format!("{}:{:02}", t / 60, t % 60),
    }
}
