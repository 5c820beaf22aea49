//! `[train] init` resolved: which weights each run of an expansion starts from
//! (`gfa_core::train::init` describes the table).
//!
//! A source is a run of the same expansion — by its id (a unique prefix) or by the values of some
//! of its keys, of the run's seed unless `seed` says otherwise — a checkpoint folder, or a
//! weights file. Everything is checked when the grid expands, before anything trains: a source
//! that does not exist, one that is not trained (a checkpoint folder without the weights asked
//! for, a source run that writes no `best.safetensors`), one of another architecture or data
//! set, a choice of keys that matches several runs, and a cycle of runs starting from each other
//! are errors at the run's `train.init`.
//!
//! The source's identity — a source run's training key (`RunSpec::train_key`, itself
//! including its own source), or the BLAKE3 hash of a weights file — is written into the run's
//! `train.init.fingerprint`, so it is part of the run's config, id, training key and checkpoint
//! hash. Runs are resolved sources first, so a chain of fine-tunings has stable ids.

use std::path::{Path, PathBuf};

use gfa_core::train::InitWeights;
use gfa_core::{ModelSpec, checkpoint};
use toml::Value;

use crate::config::keys::{FieldError, split_dotted, to_table};
use crate::config::spec::{RUN_SECTIONS, RunConfig};

/// Where a run's first weights come from, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitSource {
    /// A run of the same expansion (trained first) and which of its weights.
    Run { id: String, weights: InitWeights },
    /// A weights file outside the grid (a checkpoint folder's file, or a file).
    File(PathBuf),
}

impl InitSource {
    /// In words, for logs: `run 2e9743275f87 (final.safetensors)`, or the file.
    pub fn describe(&self) -> String {
        match self {
            InitSource::Run { id, weights } => format!("run {id} ({})", weights.file()),
            InitSource::File(p) => p.display().to_string(),
        }
    }

    /// The source run's id, when the source is a run of the expansion.
    pub fn run_id(&self) -> Option<&str> {
        match self {
            InitSource::Run { id, .. } => Some(id),
            InitSource::File(_) => None,
        }
    }
}

/// What resolving needs of a run of the expansion (`config::grid::RunSpec`), and what it sets.
pub trait InitRun {
    fn run_id(&self) -> &str;
    fn seed(&self) -> u64;
    fn config(&self) -> &RunConfig;
    /// The run's grid keys in words, for errors.
    fn label(&self) -> String;
    /// What its training depends on (its source's fingerprint included).
    fn train_key(&self) -> String;
    /// Record the resolved source: `fingerprint` into `train.init`, the source, and the run id
    /// that follows.
    fn set_init(&mut self, fingerprint: String, source: InitSource);
}

/// An error at `train.init.<key>` of a run.
fn at(key: &str, message: String) -> FieldError {
    FieldError {
        path: ["train", "init", key].into_iter().map(String::from).collect(),
        message,
        suggestion: None,
    }
}

/// How a run names its source run, before the ids are final.
#[derive(Debug, Clone)]
enum Link {
    /// The run at this index (chosen by key values).
    Index(usize),
    /// The run whose final id starts with this.
    Prefix(String),
}

/// Resolve `[train] init` for every run of the expansion `runs`: each run's `init` and its
/// `train.init.fingerprint` are set and its id recomputed. An error gives the run's index.
pub fn resolve<R: InitRun>(runs: &mut [R]) -> Result<(), (usize, FieldError)> {
    let mut links: Vec<Option<Link>> = vec![None; runs.len()];
    for k in 0..runs.len() {
        let Some(init) = runs[k].config().train.init.clone() else { continue };
        let link = match (&init.run, &init.checkpoint, &init.file) {
            (Some(serde_json::Value::Object(keys)), _, _) => {
                let seed = init.seed.unwrap_or(runs[k].seed());
                Link::Index(by_keys(runs, k, keys, seed).map_err(|e| (k, e))?)
            }
            (Some(serde_json::Value::String(prefix)), _, _) => Link::Prefix(prefix.clone()),
            (_, Some(dir), _) => {
                let (path, fp) = checkpoint_source(Path::new(dir), init.weights, runs[k].config())
                    .map_err(|e| (k, e))?;
                set(&mut runs[k], fp, InitSource::File(path)).map_err(|e| (k, e))?;
                continue;
            }
            (_, _, Some(file)) => {
                let fp = file_source(Path::new(file), runs[k].config()).map_err(|e| (k, e))?;
                set(&mut runs[k], fp, InitSource::File(file.into())).map_err(|e| (k, e))?;
                continue;
            }
            _ => return Err((k, at("run", "names no source".into()))),
        };
        links[k] = Some(link);
    }
    // Sources first: a run is resolved once its source run's id and training key are final.
    loop {
        let mut progress = false;
        for k in 0..runs.len() {
            let Some(link) = &links[k] else { continue };
            let j = match link {
                Link::Index(j) => Some(*j),
                Link::Prefix(p) => by_prefix(runs, &links, k, p).map_err(|e| (k, e))?,
            };
            let Some(j) = j.filter(|j| links[*j].is_none()) else { continue };
            let weights =
                runs[k].config().train.init.as_ref().map(|i| i.weights).unwrap_or_default();
            compatible(&runs[j], &runs[k], weights).map_err(|e| (k, e))?;
            let source = InitSource::Run { id: runs[j].run_id().to_string(), weights };
            let fp = runs[j].train_key();
            set(&mut runs[k], fp, source).map_err(|e| (k, e))?;
            links[k] = None;
            progress = true;
        }
        if !progress {
            break;
        }
    }
    match links.iter().position(Option::is_some) {
        None => Ok(()),
        Some(k) => Err((k, unresolved(runs, &links, k))),
    }
}

/// Why run `k`'s source could not be resolved: a cycle, or a prefix that names no run.
fn unresolved(runs: &[impl InitRun], links: &[Option<Link>], k: usize) -> FieldError {
    let mut chain = vec![k];
    while let Some(Some(Link::Index(j))) = links.get(*chain.last().expect("non-empty")) {
        if chain.contains(j) {
            chain.push(*j);
            let ids: Vec<&str> = chain.iter().map(|i| runs[*i].run_id()).collect();
            return at(
                "run",
                format!(
                    "the sources form a cycle ({}): a run cannot start from weights that start \
                     from its own; pick the sources by keys that only the intended runs have",
                    ids.join(" → starts from → ")
                ),
            );
        }
        chain.push(*j);
    }
    match links[k].as_ref() {
        Some(Link::Prefix(p)) => at(
            "run",
            format!(
                "no run of this expansion has an id starting with \"{p}\" (`gfa plan` lists \
                 them; ids of runs that start from other runs change with their source), or its \
                 source cannot be resolved"
            ),
        ),
        _ => at("run", "its source run's own source cannot be resolved".into()),
    }
}

/// Record the resolved source of `run`: its fingerprint (checked against one already written)
/// and the id that follows from it.
fn set(run: &mut impl InitRun, fingerprint: String, source: InitSource) -> Result<(), FieldError> {
    if let Some(old) = run.config().train.init.as_ref().and_then(|i| i.fingerprint.as_ref())
        && *old != fingerprint
    {
        return Err(at(
            "fingerprint",
            format!(
                "the source ({}) is not the one this configuration was written for: its \
                 fingerprint is {fingerprint}, the configuration says {old}. Leave \
                 `fingerprint` out (gfa writes it) or start from the weights it names",
                source.describe()
            ),
        ));
    }
    run.set_init(fingerprint, source);
    Ok(())
}

/// The run of `runs` (other than `k`) with seed `seed` whose config has the values `keys`
/// (dotted run keys); runs that differ only in `[eval]` share one training and count once.
fn by_keys(
    runs: &[impl InitRun],
    k: usize,
    keys: &serde_json::Map<String, serde_json::Value>,
    seed: u64,
) -> Result<usize, FieldError> {
    let mut want = Vec::new();
    for (key, v) in keys {
        let path = split_dotted(key).map_err(|m| at("run", format!("`{key}`: {m}")))?;
        if !RUN_SECTIONS.contains(&path[0].as_str()) {
            return Err(at(
                "run",
                format!("`{key}` is not a run key: it must start with {}", RUN_SECTIONS.join(", ")),
            ));
        }
        let v = Value::try_from(v).map_err(|e| at("run", format!("`{key}`: {e}")))?;
        want.push((path, v));
    }
    let tables: Vec<toml::Table> = runs.iter().map(|r| to_table(r.config())).collect();
    let matched: Vec<usize> = (0..runs.len())
        .filter(|&j| runs[j].seed() == seed)
        .filter(|&j| want.iter().all(|(p, v)| lookup(&tables[j], p).is_some_and(|h| same(h, v))))
        .collect();
    if matched.contains(&k) {
        return Err(at(
            "run",
            format!(
                "the keys {} match run {} itself: a run cannot start from its own weights; add \
                 a key that only the source has",
                keys_text(keys),
                runs[k].run_id()
            ),
        ));
    }
    let mut distinct: Vec<usize> = Vec::new();
    for &j in &matched {
        if !distinct.iter().any(|&d| same_training(runs[d].config(), runs[j].config())) {
            distinct.push(j);
        }
    }
    match distinct.as_slice() {
        [j] => Ok(*j),
        [] => Err(at(
            "run",
            format!(
                "no run of this expansion with seed {seed} has {}: check the keys and values \
                 (`gfa plan` lists the runs; a key at its default is written in config.toml)",
                keys_text(keys)
            ),
        )),
        several => {
            let list: Vec<String> = several
                .iter()
                .take(5)
                .map(|&j| format!("{} ({})", runs[j].run_id(), runs[j].label()))
                .collect();
            Err(at(
                "run",
                format!(
                    "{} runs with seed {seed} have {}: {}{}; add keys that tell the source apart",
                    several.len(),
                    keys_text(keys),
                    list.join(", "),
                    if several.len() > 5 { ", …" } else { "" }
                ),
            ))
        }
    }
}

fn keys_text(keys: &serde_json::Map<String, serde_json::Value>) -> String {
    let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    format!("{{ {} }}", parts.join(", "))
}

/// The value at `path` of a config table.
fn lookup<'a>(t: &'a toml::Table, path: &[String]) -> Option<&'a Value> {
    let (head, rest) = path.split_first()?;
    let v = t.get(head)?;
    match rest {
        [] => Some(v),
        _ => lookup(v.as_table()?, rest),
    }
}

/// Whether `have` has `want`: a table has every key of `want`'s with its value, numbers compare
/// as numbers (15 = 15.0), anything else is equal.
fn same(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Table(h), Value::Table(w)) => {
            w.iter().all(|(k, v)| h.get(k).is_some_and(|hv| same(hv, v)))
        }
        (Value::Integer(a), Value::Float(b)) | (Value::Float(b), Value::Integer(a)) => {
            *a as f64 == *b
        }
        (Value::Array(h), Value::Array(w)) => {
            h.len() == w.len() && h.iter().zip(w).all(|(a, b)| same(a, b))
        }
        _ => have == want,
    }
}

/// Whether two configs train the same model (they may differ in `[eval]`).
fn same_training(a: &RunConfig, b: &RunConfig) -> bool {
    (&a.data, &a.model, &a.method, &a.train) == (&b.data, &b.model, &b.method, &b.train)
}

/// The run (other than `k`) whose id starts with `prefix`, once that id is final (its own
/// source resolved: `links` of it empty); `None` while it is not.
fn by_prefix(
    runs: &[impl InitRun],
    links: &[Option<Link>],
    k: usize,
    prefix: &str,
) -> Result<Option<usize>, FieldError> {
    let matched: Vec<usize> = (0..runs.len())
        .filter(|&j| j != k && links[j].is_none() && runs[j].run_id().starts_with(prefix))
        .collect();
    let mut distinct: Vec<usize> = Vec::new();
    for &j in &matched {
        if !distinct.iter().any(|&d| runs[d].train_key() == runs[j].train_key()) {
            distinct.push(j);
        }
    }
    match distinct.as_slice() {
        [] => Ok(None),
        [j] => Ok(Some(*j)),
        several => {
            let ids: Vec<&str> = several.iter().map(|&j| runs[j].run_id()).collect();
            Err(at(
                "run",
                format!(
                    "\"{prefix}\" is the prefix of several run ids ({}): give more digits",
                    ids.join(", ")
                ),
            ))
        }
    }
}

/// The run's model as built for its data (the image shape from the data source).
fn model_of(cfg: &RunConfig) -> ModelSpec {
    ModelSpec { input: cfg.data.source.image_shape(), ..cfg.model.clone() }
}

/// A model spec in words, for errors.
fn model_text(m: &ModelSpec) -> String {
    format!(
        "{} width {} with {} classes on {:?} images",
        m.arch.name(),
        m.width,
        m.num_classes,
        m.input
    )
}

/// An error unless run `k` may start from source run `j`'s `weights`: the same data set and
/// architecture, and a source that writes those weights.
fn compatible(
    source: &impl InitRun,
    run: &impl InitRun,
    weights: InitWeights,
) -> Result<(), FieldError> {
    let (s, r) = (source.config(), run.config());
    if (s.data.source, &s.data.dir) != (r.data.source, &r.data.dir) {
        return Err(at(
            "run",
            format!(
                "the source run {} trains on another data set ({}{}) than this run ({}{}): start \
                 from a model of this run's data",
                source.run_id(),
                s.data.source.name(),
                s.data.dir.as_deref().map(|d| format!(" in {d}")).unwrap_or_default(),
                r.data.source.name(),
                r.data.dir.as_deref().map(|d| format!(" in {d}")).unwrap_or_default(),
            ),
        ));
    }
    let (sm, rm) = (model_of(s), model_of(r));
    if sm != rm {
        return Err(at(
            "run",
            format!(
                "the source run {} is another architecture ({}) than this run ({}): its weights \
                 do not fit; start from a run of the same model",
                source.run_id(),
                model_text(&sm),
                model_text(&rm)
            ),
        ));
    }
    if weights == InitWeights::Best && s.train.validation.is_none() {
        return Err(at(
            "weights",
            format!(
                "\"best\" is the source's robust checkpoint, and the source run {} holds no \
                 images out ([train] validation), so it writes none: add validation to the \
                 source or start from weights = \"final\"",
                source.run_id()
            ),
        ));
    }
    Ok(())
}

/// The BLAKE3 hash of a file's bytes (16 hex digits).
fn file_hash(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(blake3::hash(&bytes).to_hex()[..16].to_string())
}

/// The data source a checkpoint folder gfa wrote was trained on, when its run file says: the
/// folder's `run.toml` (`gfa train --out`) or its run's `config.toml` (a run's `checkpoints/`).
fn data_of_checkpoint(dir: &Path) -> Option<String> {
    let files = [dir.join(crate::config::spec::RUN_TOML), dir.join("..").join("config.toml")];
    let text = files.iter().find_map(|f| std::fs::read_to_string(f).ok())?;
    let t: toml::Table = toml::from_str(&text).ok()?;
    let data = t.get("data").and_then(Value::as_table);
    Some(data.and_then(|d| d.get("source")).and_then(Value::as_str).unwrap_or("cifar10").into())
}

/// A checkpoint folder as a source of `cfg`'s run: its weights file and fingerprint.
pub fn checkpoint_source(
    dir: &Path,
    weights: InitWeights,
    cfg: &RunConfig,
) -> Result<(PathBuf, String), FieldError> {
    let bad = |m: String| at("checkpoint", format!("{}: {m}", dir.display()));
    checkpoint::check_dir(dir).map_err(|e| at("checkpoint", e.to_string()))?;
    let file = dir.join(weights.file());
    if !file.is_file() {
        return Err(bad(match weights {
            InitWeights::Final => format!(
                "holds no {}: its training has not finished (resume it first), so there are no \
                 final weights to start from",
                checkpoint::FINAL
            ),
            InitWeights::Best => format!(
                "holds no {}: it was trained without [train] validation; start from weights = \
                 \"final\"",
                checkpoint::BEST
            ),
        }));
    }
    let spec = checkpoint::read_model_spec(dir).map_err(|e| at("checkpoint", e.to_string()))?;
    let want = model_of(cfg);
    if spec != want {
        return Err(bad(format!(
            "holds another architecture ({}) than this run ({}): its weights do not fit",
            model_text(&spec),
            model_text(&want)
        )));
    }
    if let Some(data) = data_of_checkpoint(dir)
        && data != cfg.data.source.name()
    {
        return Err(bad(format!(
            "was trained on another data set ({data}) than this run ({})",
            cfg.data.source.name()
        )));
    }
    let fp = file_hash(&file).map_err(bad)?;
    Ok((file, fp))
}

/// A weights file as a source of `cfg`'s run: its fingerprint, after checking that it holds
/// every tensor of the run's model with its shape.
pub fn file_source(file: &Path, cfg: &RunConfig) -> Result<String, FieldError> {
    let bad = |m: String| at("file", format!("{}: {m}", file.display()));
    if !file.is_file() {
        return Err(bad(
            "no such file: give a safetensors weights file (`gfa import`'s output, or a \
             checkpoint folder's final.safetensors)"
                .into(),
        ));
    }
    let model = gfa_core::Classifier::new(&model_of(cfg), tch::Device::Cpu)
        .map_err(|e| bad(format!("building the run's model: {e}")))?;
    checkpoint::check_weights_fit(&model, file).map_err(|e| {
        bad(format!(
            "does not hold the weights of this run's model ({}): {e}",
            model_text(&model_of(cfg))
        ))
    })?;
    file_hash(file).map_err(bad)
}

/// `gfa train`'s source (`--config` with `[train] init`): the weights file of a checkpoint
/// folder or a file, its fingerprint written into `cfg`. A grid run cannot be named outside its
/// grid.
pub fn resolve_outside(cfg: &mut RunConfig) -> Result<Option<PathBuf>, FieldError> {
    let Some(init) = cfg.train.init.clone() else { return Ok(None) };
    let (path, fp) = match (&init.run, &init.checkpoint, &init.file) {
        (Some(_), _, _) => {
            return Err(at(
                "run",
                "names a run of an experiment grid, which `gfa train` does not expand: name its \
                 checkpoint folder instead (checkpoint = \
                 \"results/<experiment>/<run_id>/checkpoints\")"
                    .into(),
            ));
        }
        (_, Some(dir), _) => checkpoint_source(Path::new(dir), init.weights, cfg)?,
        (_, _, Some(file)) => (PathBuf::from(file), file_source(Path::new(file), cfg)?),
        _ => return Err(at("run", "names no source".into())),
    };
    if let Some(old) = &init.fingerprint
        && *old != fp
    {
        return Err(at(
            "fingerprint",
            format!(
                "{} is not the source this configuration was written for (fingerprint {fp}, \
                 the configuration says {old}): leave `fingerprint` out or start from the \
                 weights it names",
                path.display()
            ),
        ));
    }
    cfg.train.init.as_mut().expect("init").fingerprint = Some(fp);
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Value {
        let t: toml::Table = toml::from_str(&format!("x = {text}")).unwrap();
        t["x"].clone()
    }

    #[test]
    fn key_values_match_as_subsets_and_numbers() {
        assert!(same(&v("{ kind = \"gfa\", lambda = 0.25 }"), &v("{ kind = \"gfa\" }")));
        assert!(!same(&v("{ kind = \"gfa\" }"), &v("{ kind = \"gfa\", lambda = 0.25 }")));
        assert!(same(&v("15"), &v("15.0")) && same(&v("0.25"), &v("0.25")));
        assert!(!same(&v("15"), &v("16")) && !same(&v("\"15\""), &v("15")));
        let t: toml::Table =
            toml::from_str("[train]\nepochs = 3\n[train.optimizer]\nlr = 0.1\n").unwrap();
        let path = split_dotted("train.optimizer.lr").unwrap();
        assert_eq!(lookup(&t, &path), Some(&v("0.1")));
        assert_eq!(lookup(&t, &split_dotted("train.nope").unwrap()), None);
    }
}
