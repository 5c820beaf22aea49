//! Expansion of an experiment into runs: `[base]` × `[grid]` axes × `[[zip]]` groups × seeds.
//!
//! The order is fixed: grid axes in sorted key order (outermost first), then zip groups in file
//! order, then seeds (innermost), so run numbers are stable. A file may instead hold several
//! `[[grid]]` blocks: each is expanded as a `[grid]` (with the `[[zip]]` groups and its own
//! `seeds`, else the file's), one after the other, and the experiment is their union, for
//! designs that are not one product (a sweep, variants at a few of its points, seeds at
//! others); two blocks giving the same run are an error. Each run's sections are type-checked
//! ([`RunConfig::from_table`]), and its `run_id` is the first 12 hex digits of the BLAKE3 hash of
//! the canonical run spec (sorted keys, defaults filled, the attack suite included): the same
//! run gets the same id whatever the file's key order or the grid it came from.

use std::fs;
use std::path::Path;

use serde::Deserialize;
use toml::{Table, Value};

use crate::config::binarize::Binarize;
use crate::config::keys::{
    ConfigError, FieldError, SourceMap, canonical, closest, dotted, split_dotted, to_table,
    value_text,
};
use crate::config::overrides::Override;
use crate::config::spec::{AttackEntry, IndicatorsConfig, LandscapeConfig, RunConfig};
use crate::config::surrogate::Candidate;

/// The top level of an experiment file, typed: an unknown key is an error naming the closest
/// valid one; values are checked further by [`ExperimentSpec::parse`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentFile {
    /// Name of the results folder (default: the file stem).
    pub experiment: Option<String>,
    #[serde(default)]
    pub description: String,
    /// Run seeds, always their own axis (default `[0]`).
    pub seeds: Option<Vec<u64>>,
    /// A complete run: the sections of [`RunConfig`].
    #[serde(default)]
    pub base: Table,
    /// Dotted run key → list of values; the expansion is the cartesian product. Or a list of
    /// such blocks (`[[grid]]`), each with optional `seeds`, whose expansions are concatenated.
    #[serde(default)]
    pub grid: GridTables,
    /// Groups of keys whose lists vary together.
    #[serde(default)]
    pub zip: Vec<Table>,
    /// The evaluation suite.
    #[serde(default)]
    pub attacks: Vec<Table>,
    /// Attacks added after the grid for the runs that beat a reference (`gfa escalate`).
    pub escalate: Option<Table>,
    /// Each run's loss landscape (F2), off when absent.
    pub landscape: Option<Table>,
    /// The binarization test of one attack on each run's model, off when absent.
    pub binarize: Option<Table>,
    /// Each run's Indicators of Attack Failure (`indicators.csv`), off when absent.
    pub indicators: Option<Table>,
    /// How `gfa run` works the grid (not part of any run: changes no run id).
    #[serde(default)]
    pub run: RunSection,
    /// The resources of `gfa plan --emit slurm`'s array tasks (changes no run id).
    pub slurm: Option<crate::config::slurm::SlurmSection>,
}

/// `[run]`: how `gfa run` works the grid.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Runs worked at once (`gfa run --jobs`, which wins); capped at the runs selected.
    pub jobs: Option<usize>,
    /// `auto`, `fp32` or `tf32` (`--precision`, which wins; docs/numerics.md).
    pub precision: Option<gfa_core::device::Precision>,
    /// libtorch's deterministic switches (`--deterministic` also turns them on).
    pub deterministic: Option<bool>,
}

/// `[run] precision` and `deterministic`: the numerics of `gfa run` and `gfa escalate` where
/// their flags do not say (not part of any run: they change no run id; every CSV row records
/// the numerics it was computed with).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunNumerics {
    pub precision: Option<gfa_core::device::Precision>,
    pub deterministic: Option<bool>,
}

/// `[grid]` (one product) or `[[grid]]` (a union of products).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum GridTables {
    One(Table),
    Blocks(Vec<Table>),
}

impl Default for GridTables {
    fn default() -> Self {
        GridTables::One(Table::new())
    }
}

impl GridTables {
    /// No axis and no block.
    pub fn is_empty(&self) -> bool {
        match self {
            GridTables::One(t) => t.is_empty(),
            GridTables::Blocks(b) => b.is_empty(),
        }
    }
}

/// One product of the expansion: its axes and, when it says so, its own seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub axes: Vec<Axis>,
    pub seeds: Option<Vec<u64>>,
}
/// One varying key and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// Key inside a run (`regularizer.lambda`).
    pub key: Vec<String>,
    pub values: Vec<Value>,
    /// Where the list is written in the file (`grid."regularizer.lambda"`).
    pub origin: Vec<String>,
}

/// An experiment file after overrides, before expansion.
#[derive(Debug)]
pub struct ExperimentSpec {
    pub name: String,
    pub description: String,
    pub source: SourceMap,
    pub seeds: Vec<u64>,
    pub base: Table,
    /// The `[grid]` (one block) or the `[[grid]]` blocks.
    pub blocks: Vec<Block>,
    /// Each group's axes vary together (equal-length lists); every block is crossed with them.
    pub zips: Vec<Vec<Axis>>,
    pub attacks: Vec<AttackEntry>,
    /// The `[escalate]` table (`gfa escalate`).
    pub escalate: Option<crate::config::escalate::Escalate>,
    pub overrides: Vec<Override>,
    /// `[landscape]`, when the file has one.
    pub landscape: Option<LandscapeConfig>,
    /// `[binarize]`, when the file has one.
    pub binarize: Option<Binarize>,
    /// `[indicators]`, when the file has one.
    pub indicators: Option<IndicatorsConfig>,
    /// `[run] jobs`: how many runs `gfa run` works at once.
    pub jobs: Option<usize>,
    /// `[run] precision` and `deterministic`.
    pub numerics: RunNumerics,
    /// `[slurm]`: the resources of the Slurm script's tasks.
    pub slurm: crate::config::slurm::SlurmSection,
}

/// One run of the expansion ("high-level" form).
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    pub experiment: String,
    /// 1-based position in the expansion.
    pub index: usize,
    pub run_id: String,
    pub seed: u64,
    pub config: RunConfig,
    pub attacks: Vec<AttackEntry>,
    /// The varying axis values (`key`, value as text), seed excluded.
    pub axes: Vec<(String, String)>,
    /// The `--set` overrides in effect.
    pub overrides: Vec<String>,
    /// The surrogate each transfer attack names, resolved ([`crate::run::surrogate`]).
    pub surrogates: Vec<(String, crate::config::surrogate::SurrogateRef)>,
    /// Where `[train] init` takes the first weights from, resolved ([`crate::config::init`]).
    pub init: Option<crate::config::init::InitSource>,
    /// The loss landscape to compute after the evaluation (`[landscape]`).
    pub landscape: Option<LandscapeConfig>,
    /// The binarization test to run after the evaluation (`[binarize]`, when it applies to this
    /// run's subset).
    pub binarize: Option<Binarize>,
    /// The Indicators of Attack Failure to compute after the evaluation (`[indicators]`).
    pub indicators: Option<IndicatorsConfig>,
}

impl ExperimentSpec {
    /// Read and check an experiment file, applying `--set` overrides first.
    pub fn load(path: &Path, overrides: &[String]) -> Result<ExperimentSpec, ConfigError> {
        let text = fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.into(),
            line: None,
            from_override: None,
            path: String::new(),
            message: format!("cannot read the experiment file: {e}"),
            suggestion: None,
        })?;
        Self::parse(path, &text, overrides)
    }

    /// As [`ExperimentSpec::load`], from the file's text.
    pub fn parse(path: &Path, text: &str, overrides: &[String]) -> Result<Self, ConfigError> {
        let source = SourceMap::new(path, text);
        let mut root: Table = toml::from_str(text).map_err(|e| ConfigError {
            line: e.span().map(|s| source.line_of_offset(s.start)),
            ..source.error(&[], format!("invalid TOML: {}", e.message().trim()))
        })?;
        let mut ovs = Vec::new();
        for o in overrides {
            let ov = Override::parse(o).map_err(|m| source.error(&[], m))?;
            ov.apply(&mut root).map_err(|m| source.error(&[], m))?;
            ovs.push(ov);
        }
        let mut spec = ExperimentSpec {
            name: String::new(),
            description: String::new(),
            source,
            seeds: vec![0],
            base: Table::new(),
            blocks: vec![],
            zips: vec![],
            attacks: vec![],
            escalate: None,
            overrides: ovs,
            landscape: None,
            binarize: None,
            indicators: None,
            jobs: None,
            numerics: RunNumerics::default(),
            slurm: Default::default(),
        };
        spec.read_root(path, root)?;
        Ok(spec)
    }

    /// An error at file path `path`, attributed to an override when one wrote that path.
    fn error_at(
        &self,
        path: &[String],
        message: String,
        suggestion: Option<String>,
    ) -> ConfigError {
        let over = self.overrides.iter().rev().find(|o| {
            let n = o.path.len().min(path.len());
            o.path[..n] == path[..n]
        });
        let mut e = self.source.error(path, message);
        e.suggestion = suggestion;
        if let Some(o) = over {
            e.from_override = Some(o.text.clone());
        }
        e
    }

    /// Type the file's top level ([`ExperimentFile`]) and check what serde cannot: names, seeds,
    /// axes, attacks; an old-form file is an error showing its method keys in the new form.
    fn read_root(&mut self, path: &Path, root: Table) -> Result<(), ConfigError> {
        if let Some(message) = crate::config::legacy::experiment_error(&root) {
            return Err(self.error_at(&self.first_old_key(&root), message, None));
        }
        let file: ExperimentFile =
            crate::config::keys::typed(&root).map_err(|e| self.field_error(&[], e))?;
        self.name = match file.experiment {
            None => path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
            Some(s) if valid_name(&s) => s,
            Some(s) => {
                return Err(self.error_at(
                    &["experiment".into()],
                    format!(
                        "expected a folder name of letters, digits, '-', '_' or '.', got {s:?}"
                    ),
                    None,
                ));
            }
        };
        if file.base.is_empty() && file.grid.is_empty() && file.zip.is_empty() {
            return Err(self.error_at(
                &[],
                "the file describes no run (no [base], [grid] or [[zip]]), so every setting \
                 would be a default: add a [base] section naming at least the data, model and \
                 method, e.g. [base.data] source = \"cifar10\", [base.model] arch = \"cnn\", \
                 [base.method] kind = \"standard\" (see experiments/README.md)"
                    .into(),
                None,
            ));
        }
        self.description = file.description;
        if file.run.jobs == Some(0) {
            let message = "expected the number of runs `gfa run` works at once, at least 1";
            return Err(self.error_at(&["run".into(), "jobs".into()], message.into(), None));
        }
        self.jobs = file.run.jobs;
        self.numerics =
            RunNumerics { precision: file.run.precision, deterministic: file.run.deterministic };
        if let Some(slurm) = file.slurm {
            slurm.check().map_err(|(key, message)| {
                self.error_at(&["slurm".into(), key.into()], message, None)
            })?;
            self.slurm = slurm;
        }
        if let Some(seeds) = file.seeds {
            self.seeds = self.checked_seeds(seeds)?;
        }
        self.base = file.base;
        self.blocks = match &file.grid {
            GridTables::One(t) => {
                vec![Block { axes: self.flatten_axes(t, &["grid".into()])?, seeds: None }]
            }
            GridTables::Blocks(blocks) => blocks
                .iter()
                .enumerate()
                .map(|(i, t)| self.block(i, t))
                .collect::<Result<_, _>>()?,
        };
        for (i, t) in file.zip.iter().enumerate() {
            let axes = self.flatten_axes(t, &["zip".into(), i.to_string()])?;
            self.check_zip_lengths(&axes)?;
            self.zips.push(axes);
        }
        for b in &self.blocks {
            self.check_axes_disjoint(&b.axes)?;
        }
        self.apply_pins()?;
        self.zips.retain(|z| !z.is_empty());
        for (i, t) in file.attacks.iter().enumerate() {
            self.add_attack(i, t)?;
        }
        if let Some(t) = &file.escalate {
            let origin = ["escalate".to_string()];
            let e = crate::config::escalate::Escalate::from_table(t, &self.attacks)
                .map_err(|e| self.field_error(&origin, e))?;
            self.escalate = Some(e);
        }
        if let Some(t) = &file.landscape {
            let origin = ["landscape".to_string()];
            let l: LandscapeConfig =
                crate::config::keys::typed(t).map_err(|e| self.field_error(&origin, e))?;
            l.validate().map_err(|e| self.field_error(&origin, e))?;
            self.landscape = Some(l);
        }
        if let Some(t) = &file.binarize {
            let b = Binarize::from_table(t)
                .map_err(|e| self.field_error(&["binarize".to_string()], e))?;
            self.binarize = Some(b);
        }
        if let Some(t) = &file.indicators {
            let origin = ["indicators".to_string()];
            let c: IndicatorsConfig =
                crate::config::keys::typed(t).map_err(|e| self.field_error(&origin, e))?;
            c.validate(&self.attacks).map_err(|e| self.field_error(&origin, e))?;
            self.indicators = Some(c);
        }
        Ok(())
    }

    /// `--set section.key=…` pins the key: drop the axes that would vary it. A pin inside the
    /// values of an axis (`method.lambda` while `method` varies) has no one meaning: an error.
    fn apply_pins(&mut self) -> Result<(), ConfigError> {
        for o in &self.overrides {
            if let Some(pin) = &o.pins {
                let blocks = self.blocks.iter().flat_map(|b| &b.axes);
                let all = blocks.chain(self.zips.iter().flatten());
                if let Some(a) =
                    all.into_iter().find(|a| a.key.len() < pin.len() && overlaps(&a.key, pin))
                {
                    return Err(self.error_at(
                        &a.origin,
                        format!(
                            "--set {} sets a key inside the values of this axis, which vary \
                             `{}` as a whole: change the axis's values, or pin the whole value \
                             (--set '{}=…')",
                            o.text,
                            dotted(&a.key),
                            dotted(&a.key)
                        ),
                        None,
                    ));
                }
                for b in &mut self.blocks {
                    b.axes.retain(|a| !overlaps(&a.key, pin));
                }
                for z in &mut self.zips {
                    z.retain(|a| !overlaps(&a.key, pin));
                }
            }
        }
        Ok(())
    }

    /// Block `i` of `[[grid]]`: its `seeds`, and its other keys as axes.
    fn block(&self, i: usize, t: &Table) -> Result<Block, ConfigError> {
        let origin = vec!["grid".to_string(), i.to_string()];
        let mut t = t.clone();
        let seeds = match t.remove("seeds") {
            None => None,
            Some(v) => {
                let at = [origin.clone(), vec!["seeds".into()]].concat();
                let seeds = Value::try_into::<Vec<u64>>(v).map_err(|e| {
                    self.error_at(&at, format!("expected a list of seeds: {}", e.message()), None)
                })?;
                Some(self.checked_seeds_at(seeds, &at)?)
            }
        };
        Ok(Block { axes: self.flatten_axes(&t, &origin)?, seeds })
    }

    /// Where an old-form file first says so: `base.regularizer`, `base.train.method`, or the
    /// first `[grid]`/`[[zip]]` key of the old form.
    fn first_old_key(&self, root: &Table) -> Vec<String> {
        let base = root.get("base").and_then(Value::as_table);
        if base.is_some_and(|b| b.contains_key("regularizer")) {
            return vec!["base".into(), "regularizer".into()];
        }
        if base.and_then(|b| b.get("train")).and_then(|t| t.get("method")).is_some() {
            return vec!["base".into(), "train".into(), "method".into()];
        }
        let mut tables: Vec<(Vec<String>, &Table)> = Vec::new();
        if let Some(Value::Table(g)) = root.get("grid") {
            tables.push((vec!["grid".into()], g));
        }
        if let Some(Value::Array(zips)) = root.get("zip") {
            for (i, z) in zips.iter().enumerate() {
                if let Value::Table(z) = z {
                    tables.push((vec!["zip".into(), i.to_string()], z));
                }
            }
        }
        for (origin, t) in tables {
            for k in t.keys() {
                let key = split_dotted(k).unwrap_or_else(|_| vec![k.clone()]);
                if crate::config::legacy::is_old_key(&key) || (key.len() == 1 && t[k].is_table()) {
                    let mut p = origin.clone();
                    p.push(k.clone());
                    return p;
                }
            }
        }
        vec![]
    }

    fn checked_seeds(&self, seeds: Vec<u64>) -> Result<Vec<u64>, ConfigError> {
        self.checked_seeds_at(seeds, &["seeds".into()])
    }

    fn checked_seeds_at(&self, seeds: Vec<u64>, at: &[String]) -> Result<Vec<u64>, ConfigError> {
        let bad = |m: &str| self.error_at(at, m.to_string(), None);
        if seeds.is_empty() {
            return Err(bad("empty seed list"));
        }
        let mut sorted = seeds.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != seeds.len() {
            return Err(bad("a seed appears twice"));
        }
        Ok(seeds)
    }

    fn check_zip_lengths(&self, axes: &[Axis]) -> Result<(), ConfigError> {
        let Some(a0) = axes.first() else { return Ok(()) };
        match axes.iter().find(|a| a.values.len() != a0.values.len()) {
            None => Ok(()),
            Some(a) => Err(self.error_at(
                &a.origin,
                format!(
                    "zipped lists must have equal lengths: `{}` has {} values, `{}` has {}",
                    dotted(&a.key),
                    a.values.len(),
                    dotted(&a0.key),
                    a0.values.len()
                ),
                None,
            )),
        }
    }

    /// A key may vary in one place only (within a block and the zip groups).
    fn check_axes_disjoint(&self, axes: &[Axis]) -> Result<(), ConfigError> {
        let mut seen: Vec<&Axis> = Vec::new();
        for a in axes.iter().chain(self.zips.iter().flatten()) {
            if let Some(b) = seen.iter().find(|b| overlaps(&a.key, &b.key)) {
                return Err(self.error_at(
                    &a.origin,
                    format!("`{}` already varies at `{}`", dotted(&a.key), dotted(&b.origin)),
                    None,
                ));
            }
            seen.push(a);
        }
        Ok(())
    }

    /// Check entry `i` of `[[attacks]]` and add it; (name, preset) must be unique.
    fn add_attack(&mut self, i: usize, t: &Table) -> Result<(), ConfigError> {
        let origin = vec!["attacks".to_string(), i.to_string()];
        let entry = AttackEntry::from_table(t).map_err(|e| self.field_error(&origin, e))?;
        if let Some(j) =
            self.attacks.iter().position(|b| b.name == entry.name && b.preset == entry.preset)
        {
            return Err(self.error_at(
                &origin,
                format!(
                    "attack name '{}' ({}) is also used by attacks.{j}; give one a distinct `name`",
                    entry.name, entry.preset
                ),
                None,
            ));
        }
        self.attacks.push(entry);
        Ok(())
    }

    fn field_error(&self, origin: &[String], e: FieldError) -> ConfigError {
        let mut path = origin.to_vec();
        path.extend(e.path);
        self.error_at(&path, e.message, e.suggestion)
    }

    /// Leaves of a `[grid]`/`[[zip]]` table: each a list of values under a (dotted) run key.
    fn flatten_axes(&self, t: &Table, origin: &[String]) -> Result<Vec<Axis>, ConfigError> {
        let mut out = Vec::new();
        let mut stack: Vec<(Vec<String>, Vec<String>, &Table)> = vec![(vec![], origin.to_vec(), t)];
        while let Some((key, org, table)) = stack.pop() {
            for (k, v) in table {
                let mut org = org.clone();
                org.push(k.clone());
                let mut key = key.clone();
                key.extend(split_dotted(k).map_err(|m| self.error_at(&org, m, None))?);
                match v {
                    Value::Table(sub) => stack.push((key, org, sub)),
                    Value::Array(values) if !values.is_empty() => {
                        let section = key[0].as_str();
                        if !crate::config::spec::RUN_SECTIONS.contains(&section) {
                            return Err(self.error_at(
                                &org,
                                format!(
                                    "`{}` is not a run key: it must start with one of {}",
                                    dotted(&key),
                                    crate::config::spec::RUN_SECTIONS.join(", ")
                                ),
                                closest(section, crate::config::spec::RUN_SECTIONS.iter().copied()),
                            ));
                        }
                        out.push(Axis { key, values: values.clone(), origin: org });
                    }
                    _ => {
                        return Err(self.error_at(
                            &org,
                            format!("expected a non-empty list of values, got {v}"),
                            None,
                        ));
                    }
                }
            }
        }
        out.sort_by(|a, b| a.origin.cmp(&b.origin));
        Ok(out)
    }

    /// Number of runs the expansion gives (`usize::MAX` when it is more than that), counted
    /// without expanding.
    pub fn len(&self) -> usize {
        let product = |it: &mut dyn Iterator<Item = usize>| it.fold(1usize, usize::saturating_mul);
        let z = product(&mut self.zips.iter().map(|z| z[0].values.len()));
        let block = |b: &Block| {
            let g = product(&mut b.axes.iter().map(|a| a.values.len()));
            g.saturating_mul(b.seeds.as_ref().unwrap_or(&self.seeds).len())
        };
        self.blocks.iter().map(block).fold(0usize, usize::saturating_add).saturating_mul(z)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Expand into runs, type-checking each. The first bad run is reported with the place
    /// (file line, `--set`) its offending value came from.
    pub fn expand(&self) -> Result<Vec<RunSpec>, ConfigError> {
        let mut runs = Vec::new();
        // Which `[[attacks]]` entries attack at least one run (an entry's `subset` may match none).
        let mut used = vec![false; self.attacks.len()];
        for block in &self.blocks {
            self.expand_block(block, &mut runs, &mut used)?;
        }
        if let Some(i) = used.iter().position(|u| !u)
            && let Some(subset) = self.attacks[i].subset
            && !runs.is_empty()
        {
            return Err(self.error_at(
                &["attacks".into(), i.to_string(), "subset".into()],
                format!(
                    "no run of the expansion is evaluated on subset \"{}\", so this entry \
                     attacks nothing: set eval.subset = \"{}\" in [base.eval] or as a [grid] \
                     axis (\"eval.subset\" = [\"all\", \"all_correct\"]), or remove `subset`",
                    subset.name(),
                    subset.name()
                ),
                None,
            ));
        }
        if let Some(subset) = self.binarize.as_ref().and_then(|b| b.subset)
            && !runs.is_empty()
            && runs.iter().all(|r| r.binarize.is_none())
        {
            return Err(self.error_at(
                &["binarize".into(), "subset".into()],
                format!(
                    "no run of the expansion is evaluated on subset \"{}\", so the binarization \
                     test would test nothing: set eval.subset = \"{}\" for some runs, or remove \
                     `subset`",
                    subset.name(),
                    subset.name()
                ),
                None,
            ));
        }
        crate::config::init::resolve(&mut runs).map_err(|(k, e)| {
            let mut path = self.origin_of(&["train".into(), "init".into()]);
            path.extend(e.path.iter().skip(2).cloned());
            let mut err = self.error_at(&path, e.message, e.suggestion);
            err.path = format!("{} (run {}, seed {})", dotted(&path), runs[k].index, runs[k].seed);
            err
        })?;
        let candidates: Vec<Candidate<'_>> = runs
            .iter()
            .map(|r| Candidate {
                run_id: &r.run_id,
                seed: r.seed,
                config: &r.config,
                attacks: &r.attacks,
            })
            .collect();
        let resolved =
            crate::config::surrogate::resolve(&candidates).map_err(|(run, (i, e))| {
                let entry = &runs[run].attacks[i];
                let j = self
                    .attacks
                    .iter()
                    .position(|a| a.name == entry.name && a.preset == entry.preset)
                    .unwrap_or(i);
                self.field_error(&["attacks".into(), j.to_string()], e)
            })?;
        for (r, s) in runs.iter_mut().zip(resolved) {
            r.surrogates = s;
        }
        let mut ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
        ids.sort();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(self.source.error(
                &[],
                format!(
                    "two runs of the expansion are identical (run id {}): a grid value repeats, \
                     sets a key to its default twice, or two [[grid]] blocks share a run",
                    w[0]
                ),
            ));
        }
        Ok(runs)
    }

    /// Append the runs of one block to `runs`.
    fn expand_block(
        &self,
        block: &Block,
        runs: &mut Vec<RunSpec>,
        used: &mut [bool],
    ) -> Result<(), ConfigError> {
        // Each dimension is a list of choices; a choice sets one or more (axis, value index).
        let mut dims: Vec<Vec<Vec<(&Axis, usize)>>> = Vec::new();
        for a in &block.axes {
            dims.push((0..a.values.len()).map(|i| vec![(a, i)]).collect());
        }
        for z in &self.zips {
            dims.push((0..z[0].values.len()).map(|i| z.iter().map(|a| (a, i)).collect()).collect());
        }
        let mut combos: Vec<Vec<(&Axis, usize)>> = vec![vec![]];
        for d in &dims {
            let mut next = Vec::with_capacity(combos.len() * d.len());
            for c in &combos {
                for choice in d {
                    let mut c2 = c.clone();
                    c2.extend(choice.iter().copied());
                    next.push(c2);
                }
            }
            combos = next;
        }
        for combo in &combos {
            let mut table = self.base.clone();
            let mut axes = Vec::new();
            for (axis, i) in combo {
                let v = axis.values[*i].clone();
                set_key(&mut table, &axis.key, v.clone())
                    .map_err(|m| self.error_at(&axis.origin, m, None))?;
                axes.push((dotted(&axis.key), value_text(&v)));
            }
            let config = RunConfig::from_table(&table).map_err(|e| self.locate(combo, e))?;
            if table.get("eval").and_then(Value::as_table).is_some_and(|e| e.contains_key("n")) {
                config.eval.check_n(&config.data).map_err(|e| self.locate(combo, e))?;
            }
            // An entry with `subset` attacks only the runs evaluated on that subset.
            let mut own = Vec::new();
            for (i, a) in self.attacks.iter().enumerate() {
                if !a.applies_to(config.eval.subset) {
                    continue;
                }
                used[i] = true;
                a.check_eps(config.image_shape())
                    .map_err(|e| self.field_error(&["attacks".into(), i.to_string()], e))?;
                own.push(a.clone());
            }
            let binarize = self.binarize.clone().filter(|b| b.applies_to(config.eval.subset));
            if let Some(b) = &binarize {
                b.check_run(config.model.arch, config.image_shape())
                    .map_err(|e| self.field_error(&["binarize".into()], e))?;
            }
            for &seed in block.seeds.as_ref().unwrap_or(&self.seeds) {
                let mut run = RunSpec {
                    experiment: self.name.clone(),
                    index: runs.len() + 1,
                    run_id: String::new(),
                    seed,
                    config: config.clone(),
                    attacks: own.clone(),
                    axes: axes.clone(),
                    overrides: self.overrides.iter().map(|o| o.text.clone()).collect(),
                    surrogates: vec![],
                    init: None,
                    landscape: self.landscape.clone(),
                    binarize: binarize.clone(),
                    indicators: self.indicators.clone(),
                };
                run.run_id = run.identity();
                runs.push(run);
            }
        }
        Ok(())
    }

    /// Where the run key `key` is written: the first `[grid]`/`[[zip]]` axis varying it (or a
    /// key around it), else `[base]`.
    fn origin_of(&self, key: &[String]) -> Vec<String> {
        let blocks = self.blocks.iter().flat_map(|b| &b.axes);
        match blocks.chain(self.zips.iter().flatten()).find(|a| overlaps(&a.key, key)) {
            Some(a) => a.origin.clone(),
            None => [vec!["base".to_string()], key.to_vec()].concat(),
        }
    }

    /// Map a run-level typing error to the file path its value came from.
    fn locate(&self, combo: &[(&Axis, usize)], e: FieldError) -> ConfigError {
        let from_axis = combo.iter().find(|(a, _)| e.path.starts_with(&a.key));
        let path = match from_axis {
            Some((a, i)) => {
                let mut p = a.origin.clone();
                // Inside the grid list the value sits at index `i`.
                p.push(i.to_string());
                p.extend(e.path[a.key.len()..].iter().cloned());
                p
            }
            None => {
                let mut p = vec!["base".to_string()];
                p.extend(e.path.iter().cloned());
                p
            }
        };
        let mut err = self.error_at(&path, e.message, e.suggestion);
        // Report the path as the user thinks of it: the run key inside `[base]`/`[grid]`.
        if from_axis.is_some() {
            err.path = format!("{} (run key {})", dotted(&path), dotted(&e.path));
        }
        err
    }
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn set_key(t: &mut Table, key: &[String], v: Value) -> Result<(), String> {
    let (head, rest) = key.split_first().expect("non-empty key");
    if rest.is_empty() {
        t.insert(head.clone(), v);
        return Ok(());
    }
    match t.entry(head.clone()).or_insert_with(|| Value::Table(Table::new())) {
        Value::Table(sub) => set_key(sub, rest, v),
        other => {
            Err(format!("`{head}` is {}, so `{}` cannot be set", other.type_str(), dotted(key)))
        }
    }
}

/// The canonical run spec that `run_id` hashes.
pub fn canonical_spec(config: &RunConfig, seed: u64, attacks: &[Value]) -> String {
    let mut t = Table::new();
    t.insert("config".into(), Value::Table(to_table(config)));
    t.insert("seed".into(), Value::Integer(seed as i64));
    t.insert("attacks".into(), Value::Array(attacks.to_vec()));
    canonical(&Value::Table(t))
}

/// First 12 hex digits of the BLAKE3 hash.
pub fn run_id_of(canonical: &str) -> String {
    blake3::hash(canonical.as_bytes()).to_hex()[..12].to_string()
}

impl crate::config::init::InitRun for RunSpec {
    fn run_id(&self) -> &str {
        &self.run_id
    }

    fn seed(&self) -> u64 {
        self.seed
    }

    fn config(&self) -> &RunConfig {
        &self.config
    }

    fn label(&self) -> String {
        self.axes_text()
    }

    fn train_key(&self) -> String {
        RunSpec::train_key(self)
    }

    fn set_init(&mut self, fingerprint: String, source: crate::config::init::InitSource) {
        if let Some(init) = self.config.train.init.as_mut() {
            init.fingerprint = Some(fingerprint);
        }
        self.init = Some(source);
        self.run_id = self.identity();
    }
}

impl RunSpec {
    /// The run's id: [`run_id_of`] its canonical spec (config, seed, attacks) and its
    /// `[landscape]` (a run with a landscape is another run: its evaluation stage computes it).
    pub fn identity(&self) -> String {
        let attacks: Vec<Value> = self.attacks.iter().map(|a| Value::Table(a.to_table())).collect();
        let mut text = canonical_spec(&self.config, self.seed, &attacks);
        // A run with a landscape, a binarization test or indicators is another run (its
        // evaluation stage computes them).
        if let Some(l) = &self.landscape {
            text.push_str(&canonical(&Value::Table(to_table(l))));
        }
        if let Some(b) = &self.binarize {
            text.push_str(&canonical(&Value::Table(b.to_table())));
        }
        if let Some(i) = &self.indicators {
            text.push_str(&canonical(&Value::Table(to_table(i))));
        }
        run_id_of(&text)
    }

    /// Hash of what determines the trained weights (data, model, regularizer, train, seed):
    /// runs that differ only in `[eval]` or `[[attacks]]` share one training.
    pub fn train_key(&self) -> String {
        let mut t = to_table(&self.config);
        t.remove("eval");
        t.insert("seed".into(), Value::Integer(self.seed as i64));
        run_id_of(&canonical(&Value::Table(t)))
    }

    /// The `config.toml` snapshot: everything needed to redo the run.
    pub fn config_toml(&self) -> String {
        let mut t = to_table(&self.config);
        t.insert("run_id".into(), Value::String(self.run_id.clone()));
        t.insert("seed".into(), Value::Integer(self.seed as i64));
        t.insert(
            "attacks".into(),
            Value::Array(self.attacks.iter().map(|a| Value::Table(a.to_table())).collect()),
        );
        if let Some(l) = &self.landscape {
            t.insert("landscape".into(), Value::Table(to_table(l)));
        }
        if let Some(b) = &self.binarize {
            t.insert("binarize".into(), Value::Table(b.to_table()));
        }
        if let Some(i) = &self.indicators {
            t.insert("indicators".into(), Value::Table(to_table(i)));
        }
        format!(
            "# gfa run {} of experiment `{}` (written by `gfa plan`; do not edit)\n{}",
            self.run_id,
            self.experiment,
            toml::to_string(&t).expect("a TOML table prints")
        )
    }

    /// The `overrides.toml` record.
    pub fn overrides_toml(&self) -> String {
        let mut t = Table::new();
        t.insert(
            "set".into(),
            Value::Array(self.overrides.iter().map(|o| Value::String(o.clone())).collect()),
        );
        toml::to_string(&t).expect("a TOML table prints")
    }

    /// Axis values as `key=value; …`.
    pub fn axes_text(&self) -> String {
        self.axes.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }
}

/// The most runs a grid may expand to unless `--max-runs` raises it: each run is a folder, a
/// manifest row and a model to train, and a grid past this size is most often a typo (an
/// axis of 40 values where 4 were meant).
pub const MAX_RUNS: usize = 100_000;

/// Load and expand an experiment file, refusing (before expanding) a grid of more than
/// `max_runs` runs.
pub fn load(
    file: &Path,
    set: &[String],
    max_runs: usize,
) -> anyhow::Result<(ExperimentSpec, Vec<RunSpec>)> {
    let spec = ExperimentSpec::load(file, set)?;
    let n = spec.len();
    if n > max_runs {
        let n = if n == usize::MAX { "more than 2^64".to_string() } else { n.to_string() };
        anyhow::bail!(
            "{}: the grid expands to {n} runs (the product of its axes' lengths and seeds, \
             summed over its blocks), more than the {max_runs} that --max-runs allows; nothing \
             was written: shorten its axes or seeds, or raise the cap with --max-runs N",
            file.display()
        );
    }
    let runs = spec.expand()?;
    Ok((spec, runs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_sorts_keys_and_keeps_float_type() {
        let a: Table = toml::from_str("b = 1\na = 0.1\nc = [1.0, \"x\"]").unwrap();
        assert_eq!(canonical(&Value::Table(a)), r#"{"a":0.1,"b":1,"c":[1.0,"x"]}"#);
    }

    #[test]
    fn run_id_is_12_hex_digits_of_blake3() {
        let id = run_id_of("abc");
        assert_eq!(id, blake3::hash(b"abc").to_hex()[..12].to_string());
        assert_eq!(id.len(), 12);
    }
}
