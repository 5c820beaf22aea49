//! Resumable evaluations: the finished batches of an evaluation, kept on disk until its results
//! are committed.
//!
//! The attack suite runs in batches (see `gfa_attacks::eval`), each with its own seeded
//! generator, so a batch computed again gives the same result. [`FileBatches`] keeps every
//! finished batch in an append-only log, `eval_batches.jsonl` in the run folder (for `gfa eval
//! --csv FILE`, `FILE.batches.jsonl` beside it): one JSON line per batch, written with a single
//! `write` and flushed to disk (`fdatasync`) before the next batch starts. An evaluation killed
//! at any point and started again redoes only the batches missing from the log and returns the
//! same records, so its `eval.csv`, `points.csv` and `norms.csv` equal those of an uninterrupted
//! evaluation (`seconds` sums the batches' recorded times either way).
//!
//! The log's first line names what it belongs to: the log format and version, and a BLAKE3
//! fingerprint of the run id, the run seed, the `[eval]` settings, the model's weights, the
//! evaluated points and the all-correct mask. A log of another run, another checkpoint, other
//! points or another format is never reused: it is reported on stderr and replaced. Each record
//! also carries a fingerprint of its attack's full configuration and its points, and is used
//! only when both match (a changed attack recomputes its own batches only). A line cut short by
//! a crash in the middle of its write is dropped. `gfa run` removes the log once the run's
//! evaluation stage is committed (its CSVs and the `evaluated` marker written); a run's log
//! holds about 3 kB per batch of 250 points.
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use gfa_attacks::eval::{BatchKey, BatchResult, BatchStore, Stage};
use gfa_core::Classifier;
use gfa_data::atomic::{sync_dir, write_atomic};
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::config::spec::{AttackEntry, EvalConfig};
use crate::results::records::{RunKey, SCHEMA_VERSION};

/// What an evaluation runs: the attack suite, the `[eval]` settings and the seed of the attacks'
/// generators.
#[derive(Clone, Copy)]
pub struct Suite<'a> {
    pub attacks: &'a [AttackEntry],
    pub eval: &'a EvalConfig,
    pub seed: u64,
    /// Loads the surrogates of transfer attacks.
    pub surrogates: &'a dyn gfa_attacks::transfer::Surrogates,
}

/// The log's name in a run folder.
pub const FILE: &str = "eval_batches.jsonl";
/// The first field of the log's header line.
const FORMAT: &str = "gfa-eval-batches";
/// The log's layout version; a log of another version is not reused.
pub const VERSION: u32 = 1;

/// The first line of a log.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Header {
    format: String,
    version: u32,
    /// Fingerprint of what the evaluation's results depend on besides the attacks.
    context: String,
}

/// One finished batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    attack: String,
    preset: String,
    norm: Option<gfa_attacks::Norm>,
    eps_text: String,
    /// The budget's `f64` bits (exact; infinite for a minimum-norm run without budget).
    eps_bits: u64,
    stage: Stage,
    batch: usize,
    /// Fingerprint of the attack's kind, norm and full configuration (empty for the clean pass).
    attack_config: String,
    /// The batch's points (positions among the evaluation points).
    index: Vec<i64>,
    /// `0`/`1` per point.
    fooled: String,
    /// The norms' `f32` bits (exact, NaN and infinities included).
    norm_bits: Vec<u32>,
    queries: Vec<i64>,
    seconds: f64,
}

/// Where a record is found: everything of its key but the points.
fn slot(
    attack: &str,
    preset: &str,
    eps_text: &str,
    eps_bits: u64,
    stage: Stage,
    batch: usize,
) -> String {
    format!(
        "{attack}\u{1f}{preset}\u{1f}{eps_text}\u{1f}{eps_bits:x}\u{1f}{}\u{1f}{batch}",
        stage.name()
    )
}

impl Record {
    fn slot(&self) -> String {
        slot(&self.attack, &self.preset, &self.eps_text, self.eps_bits, self.stage, self.batch)
    }

    fn result(&self) -> Option<BatchResult> {
        let fooled = self
            .fooled
            .chars()
            .map(|c| match c {
                '0' => Some(false),
                '1' => Some(true),
                _ => None,
            })
            .collect::<Option<Vec<bool>>>()?;
        Some(BatchResult {
            fooled,
            norm: self.norm_bits.iter().map(|&b| f32::from_bits(b)).collect(),
            queries: self.queries.clone(),
            seconds: self.seconds,
        })
    }
}

/// A [`BatchStore`] backed by an append-only log file (see the module documentation).
pub struct FileBatches {
    path: PathBuf,
    context: String,
    /// Per (suite entry name, preset), the fingerprint of its configuration.
    configs: HashMap<(String, String), String>,
    records: HashMap<String, Record>,
    /// The log, open for appending once its header is on disk.
    file: Option<File>,
    /// Batches taken from the log and batches computed by this process.
    pub reused: usize,
    pub computed: usize,
}

impl FileBatches {
    /// The log at `path` for an evaluation fingerprinted `context` whose attacks are
    /// `configs`. A log of another evaluation or format is reported on stderr and replaced;
    /// records cut short by a crash are dropped.
    pub fn open(
        path: &Path,
        context: String,
        configs: HashMap<(String, String), String>,
    ) -> Result<Self> {
        let mut store = FileBatches {
            path: path.to_path_buf(),
            context,
            configs,
            records: HashMap::new(),
            file: None,
            reused: 0,
            computed: 0,
        };
        if path.exists() {
            store.load().with_context(|| format!("reading {}", path.display()))?;
        }
        Ok(store)
    }

    /// Read the log's records, or discard a log that is not this evaluation's.
    fn load(&mut self) -> Result<()> {
        let bytes = fs::read(&self.path)?;
        // Only complete lines count: a line without its newline was cut by a crash.
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let text = String::from_utf8_lossy(&bytes[..complete]);
        let mut lines = text.lines();
        let header: Option<Header> = lines.next().and_then(|l| serde_json::from_str(l).ok());
        let why = match &header {
            None => Some("it is not a gfa batch log".to_string()),
            Some(h) if h.format != FORMAT => Some("it is not a gfa batch log".to_string()),
            Some(h) if h.version != VERSION => Some(format!(
                "it has layout version {} and this gfa writes version {VERSION}",
                h.version
            )),
            Some(h) if h.context != self.context => Some(
                "it belongs to another evaluation (another run, checkpoint, seed, [eval] \
                 settings or points)"
                    .to_string(),
            ),
            Some(_) => None,
        };
        if let Some(why) = why {
            eprintln!(
                "{}: not reused, {why}; the evaluation starts over and replaces it",
                self.path.display()
            );
            fs::remove_file(&self.path)?;
            return Ok(());
        }
        let mut bad = 0;
        for line in lines {
            match serde_json::from_str::<Record>(line) {
                Ok(r) => {
                    self.records.insert(r.slot(), r);
                }
                Err(_) => bad += 1,
            }
        }
        if bad > 0 {
            eprintln!("{}: {bad} unreadable batch records ignored", self.path.display());
        }
        if complete < bytes.len() {
            // Drop the cut line so that the next record starts on a line of its own.
            let f = OpenOptions::new().write(true).open(&self.path)?;
            f.set_len(complete as u64)?;
            f.sync_all()?;
        }
        Ok(())
    }

    /// The fingerprint of the configuration of `key`'s attack (empty for the clean pass).
    fn config_of(&self, key: &BatchKey) -> Option<String> {
        if key.stage == Stage::Clean {
            return Some(String::new());
        }
        self.configs.get(&(key.attack.clone(), key.preset.clone())).cloned()
    }

    /// The log, its header written first when it does not exist yet.
    fn file(&mut self) -> Result<&mut File> {
        if self.file.is_none() {
            if !self.path.exists() {
                let header = Header {
                    format: FORMAT.into(),
                    version: VERSION,
                    context: self.context.clone(),
                };
                let line = format!("{}\n", serde_json::to_string(&header)?);
                write_atomic(&self.path, line.as_bytes())?;
            }
            let f = OpenOptions::new()
                .append(true)
                .open(&self.path)
                .with_context(|| format!("opening {}", self.path.display()))?;
            self.file = Some(f);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    /// One line saying how many batches came from the log (when any did).
    pub fn resumed(&self) -> Option<String> {
        (self.reused > 0).then(|| {
            format!(
                "resumed the evaluation: {} finished batches taken from {}, {} computed",
                self.reused,
                self.path.display(),
                self.computed
            )
        })
    }
}

impl BatchStore for FileBatches {
    fn get(&mut self, key: &BatchKey) -> Option<BatchResult> {
        let config = self.config_of(key)?;
        let r = self.records.get(&slot(
            &key.attack,
            &key.preset,
            &key.eps.text,
            key.eps.value.to_bits(),
            key.stage,
            key.batch,
        ))?;
        if r.attack_config != config || r.index != key.index || r.norm != key.norm {
            return None;
        }
        let out = r.result()?;
        self.reused += 1;
        Some(out)
    }

    fn put(&mut self, key: &BatchKey, result: &BatchResult) -> gfa_attacks::Result<()> {
        let io = |e: anyhow::Error| gfa_attacks::AttackError::Config(format!("{e:#}"));
        let record = Record {
            attack: key.attack.clone(),
            preset: key.preset.clone(),
            norm: key.norm,
            eps_text: key.eps.text.clone(),
            eps_bits: key.eps.value.to_bits(),
            stage: key.stage,
            batch: key.batch,
            attack_config: self.config_of(key).unwrap_or_default(),
            index: key.index.clone(),
            fooled: result.fooled.iter().map(|&f| if f { '1' } else { '0' }).collect(),
            norm_bits: result.norm.iter().map(|v| v.to_bits()).collect(),
            queries: result.queries.clone(),
            seconds: result.seconds,
        };
        let line = serde_json::to_string(&record).map_err(|e| io(e.into()))? + "\n";
        let path = self.path.clone();
        let f = self.file().map_err(io)?;
        f.write_all(line.as_bytes())
            .and_then(|()| f.sync_data())
            .map_err(|e| io(anyhow::anyhow!("appending to {}: {e}", path.display())))?;
        self.records.insert(record.slot(), record);
        self.computed += 1;
        crate::run::fault::point("eval-batch");
        Ok(())
    }
}

/// Remove the log at `path`, if any (its evaluation's results are committed).
pub fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                sync_dir(dir)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// Feed a tensor's shape, kind and bytes (on the CPU, contiguous) to `h`.
fn hash_tensor(h: &mut blake3::Hasher, t: &Tensor) {
    let t = t.to_device(Device::Cpu).contiguous();
    let numel = t.numel();
    let mut bytes = vec![0u8; numel * t.kind().elt_size_in_bytes()];
    t.copy_data_u8(&mut bytes, numel);
    h.update(format!("{:?}{:?}", t.kind(), t.size()).as_bytes());
    h.update(&bytes);
}

/// The fingerprint of an evaluation of `model` on `(x, y)` (with the all-correct mask `keep`)
/// under `eval`, for run `key` with attack seed `seed`: 32 hex digits of BLAKE3.
pub fn context(
    model: &Classifier,
    (x, y): (&Tensor, &Tensor),
    keep: Option<&[bool]>,
    eval: &EvalConfig,
    seed: u64,
    key: &RunKey,
) -> Result<String> {
    let mut h = blake3::Hasher::new();
    let head = serde_json::json!({
        "format": FORMAT,
        "version": VERSION,
        "schema_version": SCHEMA_VERSION,
        // Batches computed at other numerics are not reused: an eval.csv row names one.
        "numerics": gfa_core::device::Numerics::in_force(model.device()),
        "run_id": key.run_id,
        "seed": seed,
        "eval": eval,
        "keep": keep.map(|k| k.iter().map(|&b| if b { '1' } else { '0' }).collect::<String>()),
    });
    h.update(head.to_string().as_bytes());
    let mut vars: Vec<(String, Tensor)> = model.vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, t) in &vars {
        h.update(name.as_bytes());
        hash_tensor(&mut h, t);
    }
    hash_tensor(&mut h, x);
    hash_tensor(&mut h, y);
    Ok(h.finalize().to_hex()[..32].to_string())
}

/// Per suite entry (name, preset), the fingerprint of its kind, norm and full configuration
/// (presets resolved).
pub fn attack_configs(suite: &Suite<'_>) -> Result<HashMap<(String, String), String>> {
    suite
        .attacks
        .iter()
        .map(|a| {
            // A transfer attack's configuration names its loaded surrogate.
            let built = a.spec.build_with(suite.surrogates)?;
            let text = format!("{}\u{1f}{}\u{1f}{}", a.kind, a.norm, built.config_json());
            let fp = blake3::hash(text.as_bytes()).to_hex()[..16].to_string();
            Ok(((a.name.clone(), a.preset.clone()), fp))
        })
        .collect()
}

/// The log at `path` for the evaluation `evaluate_run` would make with these arguments.
pub fn for_evaluation(
    path: &Path,
    model: &Classifier,
    points: (&Tensor, &Tensor),
    keep: Option<&[bool]>,
    suite: Suite<'_>,
    key: &RunKey,
) -> Result<FileBatches> {
    let ctx = context(model, points, keep, suite.eval, suite.seed, key)?;
    FileBatches::open(path, ctx, attack_configs(&suite)?)
}

#[cfg(test)]
mod tests {
    use gfa_attacks::Eps;

    use super::*;

    fn key(attack: &str, batch: usize) -> BatchKey {
        BatchKey {
            attack: attack.into(),
            preset: "reference".into(),
            norm: Some(gfa_attacks::Norm::Linf),
            eps: Eps { text: "8/255".into(), value: 8.0 / 255.0 },
            stage: Stage::Individual,
            batch,
            index: vec![3, 5, 8],
        }
    }

    /// Awkward values on purpose: they must read back bit for bit.
    fn result(k: usize) -> BatchResult {
        BatchResult {
            fooled: vec![true, false, k.is_multiple_of(2)],
            norm: vec![0.1 + 0.2, f32::NAN, f32::INFINITY],
            queries: vec![7, 0, k as i64],
            seconds: 1.0 / 3.0 + k as f64,
        }
    }

    fn configs(fp: &str) -> HashMap<(String, String), String> {
        HashMap::from([(("pgd".to_string(), "reference".to_string()), fp.to_string())])
    }

    fn same(a: &BatchResult, b: &BatchResult) -> bool {
        let bits = |r: &BatchResult| r.norm.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        a.fooled == b.fooled
            && bits(a) == bits(b)
            && a.queries == b.queries
            && a.seconds.to_bits() == b.seconds.to_bits()
    }

    #[test]
    fn records_read_back_exactly_and_a_cut_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let mut s = FileBatches::open(&path, "ctx".into(), configs("a")).unwrap();
        assert!(s.get(&key("pgd", 0)).is_none());
        s.put(&key("pgd", 0), &result(0)).unwrap();
        s.put(&key("pgd", 1), &result(1)).unwrap();
        drop(s);
        // A crash in the middle of the third record's write.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"attack\":\"pgd\",\"pre").unwrap();
        drop(f);
        let mut s = FileBatches::open(&path, "ctx".into(), configs("a")).unwrap();
        assert!(same(&s.get(&key("pgd", 0)).unwrap(), &result(0)));
        assert!(same(&s.get(&key("pgd", 1)).unwrap(), &result(1)));
        assert!(s.get(&key("pgd", 2)).is_none());
        s.put(&key("pgd", 2), &result(2)).unwrap();
        assert_eq!((s.reused, s.computed), (2, 1));
        assert!(s.resumed().unwrap().contains("2 finished batches taken from"));
        drop(s);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        let mut s = FileBatches::open(&path, "ctx".into(), configs("a")).unwrap();
        assert!(same(&s.get(&key("pgd", 2)).unwrap(), &result(2)));
        // Other points, another attack configuration or an unknown attack: not reused.
        let mut k = key("pgd", 0);
        k.index = vec![3, 5, 9];
        assert!(s.get(&k).is_none());
        let mut s = FileBatches::open(&path, "ctx".into(), configs("b")).unwrap();
        assert!(s.get(&key("pgd", 0)).is_none());
        assert!(s.get(&key("fgsm", 0)).is_none());
        remove(&path).unwrap();
        assert!(!path.exists());
        remove(&path).unwrap();
    }

    #[test]
    fn a_log_of_another_evaluation_or_version_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let mut s = FileBatches::open(&path, "ctx".into(), configs("a")).unwrap();
        s.put(&key("pgd", 0), &result(0)).unwrap();
        drop(s);
        let mut other = FileBatches::open(&path, "other".into(), configs("a")).unwrap();
        assert!(other.get(&key("pgd", 0)).is_none());
        assert!(!path.exists(), "the foreign log is removed");
        other.put(&key("pgd", 0), &result(0)).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(&format!("{{\"format\":\"{FORMAT}\",\"version\":{VERSION},")));
        fs::write(&path, text.replace(&format!("\"version\":{VERSION}"), "\"version\":99"))
            .unwrap();
        let mut s = FileBatches::open(&path, "other".into(), configs("a")).unwrap();
        assert!(s.get(&key("pgd", 0)).is_none());
        fs::write(&path, "eval.csv,not,a,log\n").unwrap();
        let mut s = FileBatches::open(&path, "other".into(), configs("a")).unwrap();
        assert!(s.get(&key("pgd", 0)).is_none());
    }
}
