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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use gfa_attacks::transfer::{STANDARD_SURROGATE, Surrogates};
use gfa_attacks::{AttackError, AttackSpec};
use gfa_core::{Classifier, checkpoint};
use tch::Device;

use crate::grid::RunSpec;
use crate::spec::FieldError;
use crate::store::RunDir;

/// Where a transfer attack's surrogate comes from, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SurrogateRef {
    /// A run of the same expansion (its final weights).
    Run(String),
    /// A checkpoint folder.
    Checkpoint(PathBuf),
}

/// Resolve the surrogate of every transfer entry of every run against the expansion `runs`.
/// An error gives the run's index, the entry's index in its attacks and the error at the entry's
/// `surrogate` key.
pub fn resolve(runs: &mut [RunSpec]) -> Result<(), (usize, (usize, FieldError))> {
    let all: Vec<RunSpec> = runs.to_vec();
    for (k, run) in runs.iter_mut().enumerate() {
        let mut found = Vec::new();
        for (i, a) in run.attacks.iter().enumerate() {
            let Some(name) = a.spec.surrogate() else { continue };
            if found.iter().any(|(n, _): &(String, SurrogateRef)| n == name) {
                continue;
            }
            let r = resolve_one(run, name, &all).map_err(|m| {
                let e = FieldError { path: vec!["surrogate".into()], message: m, suggestion: None };
                (k, (i, e))
            })?;
            found.push((name.to_string(), r));
        }
        run.surrogates = found;
    }
    Ok(())
}

fn resolve_one(run: &RunSpec, name: &str, all: &[RunSpec]) -> Result<SurrogateRef, String> {
    if name == STANDARD_SURROGATE {
        let c = &run.config;
        let mut same: Vec<&RunSpec> = all
            .iter()
            .filter(|r| r.config.method.name() == "standard" && r.seed == run.seed)
            .filter(|r| r.config.data == c.data && r.config.model == c.model)
            .collect();
        // One with the same recipe first, then the expansion's order.
        same.sort_by_key(|r| r.config.train != c.train);
        return same.first().map(|r| SurrogateRef::Run(r.run_id.clone())).ok_or_else(|| {
            format!(
                "surrogate \"standard\" is the expansion's standard-training run of the same \
                 data, model and seed ({}, seed {}), and there is none: add {{ kind = \
                 \"standard\" }} to the grid's methods, or name a run id or a checkpoint folder",
                c.model.arch.name(),
                run.seed
            )
        });
    }
    let ids: Vec<&RunSpec> = all.iter().filter(|r| r.run_id.starts_with(name)).collect();
    let mut distinct: Vec<&str> = ids.iter().map(|r| r.run_id.as_str()).collect();
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

/// Loads surrogates from checkpoint folders, by the names the transfer entries use.
pub struct CheckpointSurrogates {
    /// Name → (description, checkpoint folder).
    pub dirs: BTreeMap<String, (String, PathBuf)>,
    pub device: Device,
}

impl CheckpointSurrogates {
    /// The surrogates of a grid run whose folder is `dir` (sibling runs hold the surrogate runs).
    pub fn of_run(run: &RunSpec, dir: &RunDir, device: Device) -> Self {
        let runs = dir.path.parent().unwrap_or(Path::new("."));
        let dirs = run
            .surrogates
            .iter()
            .map(|(name, r)| {
                let v = match r {
                    SurrogateRef::Run(id) => (
                        format!("{name} = run {id}"),
                        crate::stages::checkpoint_dir(&RunDir { path: runs.join(id) }),
                    ),
                    SurrogateRef::Checkpoint(p) => (format!("{name} = {}", p.display()), p.clone()),
                };
                (name.clone(), v)
            })
            .collect();
        Self { dirs, device }
    }

    /// Every transfer attack of `attacks` loads the checkpoint folder `dir` (`gfa eval
    /// --surrogate DIR`).
    pub fn folder(attacks: &[&AttackSpec], dir: Option<&Path>, device: Device) -> Self {
        let dirs = match dir {
            None => BTreeMap::new(),
            Some(d) => attacks
                .iter()
                .filter_map(|a| a.surrogate())
                .map(|n| (n.to_string(), (d.display().to_string(), d.to_path_buf())))
                .collect(),
        };
        Self { dirs, device }
    }
}

/// The final weights of a checkpoint folder, else the last epoch's.
fn load_folder(dir: &Path, device: Device) -> anyhow::Result<Classifier> {
    let file =
        if dir.join(checkpoint::FINAL).is_file() { checkpoint::FINAL } else { checkpoint::LAST };
    checkpoint::load(dir, file, device)
        .with_context(|| format!("loading the surrogate model from {}", dir.join(file).display()))
}

impl Surrogates for CheckpointSurrogates {
    fn load(&self, name: &str) -> gfa_attacks::Result<(String, Classifier)> {
        let (what, dir) = self.dirs.get(name).ok_or_else(|| {
            AttackError::Config(format!(
                "transfer: no surrogate \"{name}\" was given: `gfa run` resolves the grid's \
                 surrogates, `gfa eval` takes --surrogate DIR (a checkpoint folder)"
            ))
        })?;
        let model = load_folder(dir, self.device)
            .map_err(|e| AttackError::Config(format!("transfer ({what}): {e:#}")))?;
        Ok((what.clone(), model))
    }
}
