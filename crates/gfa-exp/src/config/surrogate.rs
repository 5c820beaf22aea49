//! The surrogate models of transfer attacks (`[[attacks]] kind = "transfer"`, masking check 4).
//!
//! An entry's `surrogate` names the model whose gradients craft the examples:
//!
//! - `"standard"` (the default): the expansion's standard-training run of the same data, model
//!   and seed (one with the same `[train]` recipe when there is one);
//! - a run id of the expansion, or a unique prefix of one (`gfa plan` lists them);
//! - a checkpoint folder (`checkpoints/` of a run, or `gfa train`'s output).
//!
//! Names are resolved when the grid is expanded, so a surrogate that does not exist is an error
//! at the entry's `surrogate` key before anything trains; `gfa run` trains the surrogate runs
//! before it evaluates any run that attacks through them.

use std::path::{Path, PathBuf};

use gfa_attacks::transfer::STANDARD_SURROGATE;
use gfa_core::checkpoint;

use crate::config::keys::FieldError;
use crate::config::spec::{AttackEntry, RunConfig};

/// Where a transfer attack's surrogate comes from, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SurrogateRef {
    /// A run of the same expansion (its final weights).
    Run(String),
    /// A checkpoint folder.
    Checkpoint(PathBuf),
}

/// What resolving a surrogate name needs of a run of the expansion.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub run_id: &'a str,
    pub seed: u64,
    pub config: &'a RunConfig,
    pub attacks: &'a [AttackEntry],
}

/// Resolve the surrogate of every transfer entry of every run against the expansion `runs`:
/// per run, each surrogate name with what it resolves to. An error gives the run's index, the
/// entry's index in its attacks and the error at the entry's `surrogate` key.
#[allow(clippy::type_complexity)]
pub fn resolve(
    runs: &[Candidate<'_>],
) -> Result<Vec<Vec<(String, SurrogateRef)>>, (usize, (usize, FieldError))> {
    let mut out = Vec::with_capacity(runs.len());
    for (k, run) in runs.iter().enumerate() {
        let mut found = Vec::new();
        for (i, a) in run.attacks.iter().enumerate() {
            let Some(name) = a.spec.surrogate() else { continue };
            if found.iter().any(|(n, _): &(String, SurrogateRef)| n == name) {
                continue;
            }
            let r = resolve_one(run, name, runs).map_err(|m| {
                let e = FieldError { path: vec!["surrogate".into()], message: m, suggestion: None };
                (k, (i, e))
            })?;
            found.push((name.to_string(), r));
        }
        out.push(found);
    }
    Ok(out)
}

fn resolve_one(
    run: &Candidate<'_>,
    name: &str,
    all: &[Candidate<'_>],
) -> Result<SurrogateRef, String> {
    if name == STANDARD_SURROGATE {
        let c = &run.config;
        let mut same: Vec<&Candidate<'_>> = all
            .iter()
            .filter(|r| r.config.method.name() == "standard" && r.seed == run.seed)
            .filter(|r| r.config.data == c.data && r.config.model == c.model)
            .collect();
        // One with the same recipe first, then the expansion's order.
        same.sort_by_key(|r| r.config.train != c.train);
        return same.first().map(|r| SurrogateRef::Run(r.run_id.to_string())).ok_or_else(|| {
            format!(
                "surrogate \"standard\" is the expansion's standard-training run of the same \
                 data, model and seed ({}, seed {}), and there is none: add {{ kind = \
                 \"standard\" }} to the grid's methods, or name a run id or a checkpoint folder",
                c.model.arch.name(),
                run.seed
            )
        });
    }
    let ids: Vec<&Candidate<'_>> = all.iter().filter(|r| r.run_id.starts_with(name)).collect();
    let mut distinct: Vec<&str> = ids.iter().map(|r| r.run_id).collect();
    distinct.dedup();
    match distinct.as_slice() {
        [id] if !name.is_empty() => return Ok(SurrogateRef::Run(id.to_string())),
        [_, _, ..] => {
            return Err(format!(
                "surrogate \"{name}\" is the prefix of several run ids ({}): give more digits",
                distinct.join(", ")
            ));
        }
        _ => {}
    }
    let path = Path::new(name);
    if path.join(checkpoint::FINAL).is_file() || path.join(checkpoint::LAST).is_file() {
        return Ok(SurrogateRef::Checkpoint(path.to_path_buf()));
    }
    Err(format!(
        "surrogate \"{name}\" is neither \"standard\", a run id of this expansion (`gfa plan` \
         lists them), nor a checkpoint folder holding {} or {}",
        checkpoint::FINAL,
        checkpoint::LAST
    ))
}
