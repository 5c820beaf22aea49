//! `[train] init`: start training from another model's weights instead of a fresh
//! initialization (fine-tuning).
//!
//! The source is one of
//!
//! - `run`: a run of the same experiment grid, by its id (or a unique prefix) or by the values
//!   of some of its keys (`{ "method.kind" = "standard", "train.epochs" = 15 }`), of the same
//!   seed unless `seed` says otherwise; gfa-exp resolves it when it expands the grid and trains
//!   the source first;
//! - `checkpoint`: a checkpoint folder (`gfa train --out`, a run's `checkpoints/`);
//! - `file`: a safetensors weights file with gfa's tensor names (`gfa import`'s output).
//!
//! `weights = "final"` (the default) takes the weights after the source's last epoch, `"best"`
//! its robust checkpoint (`best.safetensors`, `[train] validation`). `fingerprint` is written by
//! gfa when it resolves the source — the source run's training key, or the BLAKE3 hash of the
//! weights file — so the source's identity is part of the run's configuration, its id and its
//! checkpoint's hash: another source is another run, and a checkpoint trained from one source is
//! never resumed from another.
//!
//! The trainer copies the weights (every variable, normalization included) into the model
//! before the first step; the optimizer starts fresh (no moments, no momentum), the schedule
//! and any λ warm-up start at epoch 1. A resumed run continues from its own checkpoint and does
//! not read the source again. The caller resolves the source and passes the weights file as
//! [`super::TrainOptions::init`].
use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::{CoreError, Result};

/// Which weights of the source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitWeights {
    /// After the source's last epoch (`final.safetensors`).
    #[default]
    Final,
    /// The source's robust checkpoint (`best.safetensors`; it needs `[train] validation`).
    Best,
}

impl InitWeights {
    /// The file of a checkpoint folder holding these weights.
    pub fn file(self) -> &'static str {
        match self {
            InitWeights::Final => checkpoint::FINAL,
            InitWeights::Best => checkpoint::BEST,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            InitWeights::Final => "final",
            InitWeights::Best => "best",
        }
    }
}

/// `[train] init`: where the first epoch's weights come from (see the module documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitConfig {
    /// A run of the grid: its id (or a unique prefix) as a string, or a table of run keys and
    /// the values the source has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<serde_json::Value>,
    /// A checkpoint folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// A safetensors weights file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The source run's seed (`run` only; default: the run's own seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default)]
    pub weights: InitWeights,
    /// The source's identity, written by gfa when it resolves the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

impl InitConfig {
    /// Checks what does not need the grid or the files: one source, `seed` only with `run`, a
    /// `run` that is a string or a table, `best` not with a weights file.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, m: String| Err(CoreError::invalid(format!("train.init.{key}"), m));
        let sources = [
            ("run", self.run.is_some()),
            ("checkpoint", self.checkpoint.is_some()),
            ("file", self.file.is_some()),
        ];
        let given: Vec<&str> = sources.into_iter().filter_map(|(k, g)| g.then_some(k)).collect();
        match given.as_slice() {
            [_] => {}
            [] => {
                return bad(
                    "run",
                    "names no source: give one of run = \"<run id>\" or run = { \"method.kind\" \
                     = \"standard\" } (a run of this grid), checkpoint = \"<folder>\" or file = \
                     \"<weights.safetensors>\""
                        .into(),
                );
            }
            [_, second, ..] => {
                return bad(
                    second,
                    format!("names {} sources ({}): keep one", given.len(), given.join(", ")),
                );
            }
        }
        match &self.run {
            Some(serde_json::Value::String(s)) if s.is_empty() => {
                return bad("run", "is empty: give a run id (or a unique prefix of one)".into());
            }
            Some(serde_json::Value::Object(keys)) if keys.is_empty() => {
                return bad(
                    "run",
                    "is an empty table: give the run keys that pick the source, e.g. { \
                     \"method.kind\" = \"standard\" }"
                        .into(),
                );
            }
            Some(serde_json::Value::String(_) | serde_json::Value::Object(_)) | None => {}
            Some(v) => {
                return bad(
                    "run",
                    format!(
                        "expected a run id (a string) or a table of run keys and values, e.g. \
                         {{ \"method.kind\" = \"standard\" }}; got {v}"
                    ),
                );
            }
        }
        if self.seed.is_some() && self.run.is_none() {
            return bad("seed", "picks the seed of a source run; it needs `run`".into());
        }
        if self.file.is_some() && self.weights == InitWeights::Best {
            return bad(
                "weights",
                "\"best\" picks a checkpoint folder's best.safetensors; a weights file is one \
                 set of weights: leave weights out, or name the folder as checkpoint = \"…\""
                    .into(),
            );
        }
        Ok(())
    }
}
