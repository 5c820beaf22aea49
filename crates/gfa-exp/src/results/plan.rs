//! The plan's files in a results folder: `manifest.csv` and each run's `config.toml` and
//! `overrides.toml`, written by `gfa plan` and again by `gfa run`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;

use crate::config::grid::{ExperimentSpec, RunSpec};
use crate::results::records::{self, ManifestRow, read_rows};
use crate::results::store::{ExperimentDir, write_if_changed};

/// Write the manifest and each run's config snapshot; refuses a run folder whose config differs.
pub fn write_plan(
    spec: &ExperimentSpec,
    runs: &[RunSpec],
    results: &Path,
) -> Result<ExperimentDir> {
    let exp = ExperimentDir::new(results, &spec.name);
    // Only what is missing or different is written: processes sharing the folder (two
    // `gfa run`, `--jobs` workers) agree on these files and rewrite nothing.
    for r in runs {
        let dir = exp.run(&r.run_id);
        dir.write_config(&r.config_toml())?;
        write_if_changed(&dir.file("overrides.toml"), r.overrides_toml().as_bytes())?;
    }
    let rows: Vec<ManifestRow> = runs.iter().map(RunSpec::manifest_row).collect();
    write_if_changed(&exp.manifest(), &records::to_csv_bytes(&rows)?)?;
    Ok(exp)
}

/// Run id → the `axes` column of the results folder's `manifest.csv` (empty without one).
pub fn manifest_axes(dir: &Path) -> Result<BTreeMap<String, String>> {
    let manifest = dir.join("manifest.csv");
    if !manifest.is_file() {
        return Ok(BTreeMap::new());
    }
    Ok(read_rows::<ManifestRow>(&manifest)?.into_iter().map(|m| (m.run_id, m.axes)).collect())
}
