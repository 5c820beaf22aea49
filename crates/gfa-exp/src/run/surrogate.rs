//! Loading the surrogate models of transfer attacks from checkpoint folders, by the names the
//! transfer entries use; the names are resolved in [`crate::config::surrogate`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use gfa_attacks::transfer::Surrogates;
use gfa_attacks::{AttackError, AttackSpec};
use gfa_core::{Classifier, checkpoint};
use tch::Device;

use crate::config::grid::RunSpec;
use crate::config::surrogate::SurrogateRef;
use crate::results::store::RunDir;

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
                        crate::results::store::checkpoint_dir(&RunDir { path: runs.join(id) }),
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
