//! An unfinished grid in `gfa report`: which planned runs are not done (never started, running,
//! interrupted, failed), and which table rows average fewer seeds than the grid plans.
//!
//! The planned runs are the run folders `gfa plan` wrote (each with its `config.toml`); a run is
//! finished when its status is `done` and every stage marker is there. A table row (model and
//! method configuration) whose planned runs are not all finished gets `⚠ k/n seeds` after its
//! method: its mean is over the k finished seeds of the n planned. `gfa report --strict` turns
//! an unfinished run into an error.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::base::{Ctx, Group, Results};
use super::groups::Config;
use crate::config::spec::RunConfig;
use crate::results::records::RunKey;
use crate::results::store::{ExperimentDir, RunDir, Stage, Status};

/// A planned run that is not finished.
#[derive(Debug, Clone, PartialEq)]
pub struct Unfinished {
    pub run_id: String,
    pub seed: u64,
    /// `not started`, `running`, `interrupted`, `failed` or `partly done` (a stage missing).
    pub state: String,
}

/// The unfinished runs of a results folder, and per table row the planned and finished seeds.
#[derive(Debug, Default)]
pub struct Gaps {
    pub unfinished: Vec<Unfinished>,
    /// Per table row with a finished run: the planned and the finished seeds.
    groups: BTreeMap<Group, (BTreeSet<u64>, BTreeSet<u64>)>,
    /// How many runs the grid plans.
    planned: usize,
}

/// The model and method of a run, from its `config.toml` snapshot.
fn key_of(dir: &RunDir, experiment: &str) -> Result<RunKey> {
    let p = dir.file("config.toml");
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    let mut t: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: not valid TOML", p.display()))?;
    let seed = t.get("seed").and_then(|v| v.as_integer()).unwrap_or(0) as u64;
    for k in crate::config::spec::RUN_FILE_KEYS {
        t.remove(*k);
    }
    let cfg = RunConfig::from_table(&t).map_err(|e| {
        anyhow::anyhow!(
            "{}: {}: {}; run `gfa plan` on its experiment file again",
            p.display(),
            e.path.join("."),
            e.message
        )
    })?;
    Ok(RunKey::of(experiment, &dir.id(), seed, &cfg.model, &cfg.method))
}

fn state(dir: &RunDir) -> Option<String> {
    let all = Stage::ALL.iter().all(|s| dir.has(*s));
    match dir.status() {
        Status::Done if all => None,
        Status::Done | Status::Pending if dir.has(Stage::Trained) => Some("partly done".into()),
        Status::Pending => Some("not started".into()),
        s => Some(s.label().into()),
    }
}

impl Gaps {
    /// Read the run folders of `dir` (none: an empty result). Runs are grouped by the report's
    /// one rule ([`Config`]: every grid key equal but the seed); a configuration none of whose
    /// runs is finished has no table row, and only the list of unfinished runs names it.
    pub(super) fn load(dir: &Path, experiment: &str, res: &Results, ctx: &Ctx) -> Result<Gaps> {
        let mut gaps = Gaps::default();
        let mut seeds: BTreeMap<Config, (BTreeSet<u64>, BTreeSet<u64>)> = BTreeMap::new();
        let exp = ExperimentDir { root: dir.to_path_buf() };
        for run in exp.runs()? {
            let key = key_of(&run, experiment)?;
            let axes = res.axes.get(&run.id()).map_or("", String::as_str);
            let s = seeds.entry(Config::of(&key, axes)).or_default();
            s.0.insert(key.seed);
            gaps.planned += 1;
            match state(&run) {
                None => {
                    s.1.insert(key.seed);
                }
                Some(state) => {
                    gaps.unfinished.push(Unfinished { run_id: run.id(), seed: key.seed, state })
                }
            }
        }
        // The table row of a configuration: that of any of its runs the report knows.
        for (id, config) in ctx.groups.iter() {
            if let Some(s) = seeds.remove(config) {
                gaps.groups.insert(ctx.group(id), s);
            }
        }
        Ok(gaps)
    }

    /// Add `⚠ k/n seeds` to the method cell of every row of `table` whose group is incomplete.
    pub(super) fn mark(&self, table: &str) -> String {
        let mut out = String::with_capacity(table.len());
        for line in table.split_inclusive('\n') {
            let hit = self.groups.iter().find(|(g, (planned, done))| {
                done.len() < planned.len()
                    && line.starts_with(&format!("| {} | {} |", g.model, g.label))
            });
            match hit {
                Some((g, (planned, done))) => {
                    let head = format!("| {} | {} |", g.model, g.label);
                    let _ = write!(
                        out,
                        "| {} | {} ⚠ {}/{} seeds |{}",
                        g.model,
                        g.label,
                        done.len(),
                        planned.len(),
                        &line[head.len()..]
                    );
                }
                None => out.push_str(line),
            }
        }
        out
    }

    /// The paragraph naming the unfinished runs (empty when the grid is complete).
    pub fn note(&self) -> String {
        if self.unfinished.is_empty() {
            return String::new();
        }
        let planned = self.planned;
        let mut s = format!(
            "**Incomplete grid**: {} of {planned} planned runs are not finished, and the rows \
             marked ⚠ k/n seeds average k of their n seeds. Rerun `gfa run` on the experiment \
             file (it resumes interrupted runs) before comparing them.\n\n",
            self.unfinished.len()
        );
        for u in &self.unfinished {
            let _ = writeln!(s, "- {} (seed {}): {}", u.run_id, u.seed, u.state);
        }
        s.push('\n');
        s
    }
}
