//! Experiment TOML as written ("low-level" form) and the typed run sections.
//!
//! An experiment file has these top-level keys (GUIDE.md has worked examples):
//!
//! | key | what |
//! | --- | --- |
//! | `experiment` | name of the results folder (default: the file stem) |
//! | `description` | free text |
//! | `seeds` | list of run seeds, always its own axis (default `[0]`) |
//! | `[base]` | a complete run: `data`, `model`, `method`, `train`, `eval` |
//! | `[grid]` | dotted run key → list of values; the expansion is the cartesian product |
//! | `[[zip]]` | keys whose lists vary together (one axis per table) |
//! | `[[attacks]]` | the evaluation suite: `kind`, `preset`, `eps = ["8/255", …]`, config keys |
//! | `[binarize]` | the binarization test of one attack on each run's model ([`crate::config::binarize`]) |
//! | `[indicators]` | the Indicators of Attack Failure ([`IndicatorsConfig`]), off when absent |
//!
//! Each run's sections are checked by deserializing them into [`RunConfig`], whose fields are
//! `#[serde(default, deny_unknown_fields)]` types: a typo is an error, a missing key its default.
//! Errors name the file, the line and the TOML path, and suggest the closest valid key
//! ([`ConfigError`]). Typing happens on the `toml::Value` tree after `--set` overrides and grid
//! substitution, and every error is traced back to where the offending value was written.

use gfa_attacks::{AttackSpec, Eps};
use gfa_core::{Method, ModelSpec, TrainConfig, TrainMethod};
use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use crate::config::keys::{FieldError, closest, expected_names, typed, unknown_name};

/// Default sizes of the synthetic set when `data.n_train` / `data.n_test` are absent.
pub const SYNTHETIC_TRAIN: usize = 1000;
pub const SYNTHETIC_TEST: usize = 500;

/// The method kind of standard training: the reference of the claims, of `[escalate]` and of
/// the figures.
pub const STANDARD: &str = "standard";

/// `subset` of the evaluation protocol (docs/method.md §6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subset {
    /// Every test point (the standard protocol).
    #[default]
    All,
    /// Only test points every compared model classifies correctly (the paper's protocol).
    AllCorrect,
}

impl Subset {
    pub fn name(self) -> &'static str {
        match self {
            Subset::All => "all",
            Subset::AllCorrect => "all_correct",
        }
    }
}

/// `checkpoint` of `[eval]`: which weights of a trained run are evaluated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointChoice {
    /// The weights after the last epoch.
    #[default]
    Final,
    /// The robust checkpoint: the epoch with the best robust accuracy on the held-out training
    /// images (`[train] validation`); never chosen on test-set numbers.
    Best,
}

impl CheckpointChoice {
    fn is_final(&self) -> bool {
        *self == CheckpointChoice::Final
    }
}

/// The `[eval]` section: which points the attack suite runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Number of test points (the first `n` of the test split).
    pub n: usize,
    pub subset: Subset,
    pub batch_size: usize,
    /// Also run each attack on its own (`individual` rows), not only cumulatively.
    pub individual: bool,
    /// The weights evaluated (`final` when absent, which keeps the run ids of files without it).
    #[serde(skip_serializing_if = "CheckpointChoice::is_final")]
    pub checkpoint: CheckpointChoice,
}

impl EvalConfig {
    /// Checks `batch_size` and `n`.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.batch_size == 0 {
            return Err(FieldError::at("eval.batch_size", "must be at least 1, got 0".into()));
        }
        if self.n == 0 {
            return Err(FieldError::at("eval.n", "must be at least 1, got 0".into()));
        }
        Ok(())
    }

    /// Checks a written `n` against the test split of `data` (an experiment file's `eval.n`;
    /// the default, 1000, is cut to a smaller split).
    pub fn check_n(&self, data: &DataConfig) -> Result<(), FieldError> {
        let available = data.test_len();
        if self.n > available {
            return Err(FieldError::at(
                "eval.n",
                format!(
                    "{} points asked, but the test split{} has {available}: the valid range \
                     is 1..={available}",
                    self.n,
                    match data.n_test {
                        Some(_) => " cut by data.n_test",
                        None => "",
                    },
                ),
            ));
        }
        Ok(())
    }
}

impl Default for EvalConfig {
    /// 1000 points as in RobustBench's quick evaluations; both modes; the final weights.
    fn default() -> Self {
        Self {
            n: 1000,
            subset: Subset::All,
            batch_size: 250,
            individual: true,
            checkpoint: CheckpointChoice::Final,
        }
    }
}

/// Where the images come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    /// CIFAR-10 in the official binary layout, from `dir` (else `$GFA_DATA_DIR`, else `data/`).
    #[default]
    Cifar10,
    /// `gfa-data`'s deterministic CIFAR-shaped toy set (tests, smoke grids).
    Synthetic,
    /// Fashion-MNIST's IDX files (1×28×28), from `dir` (else `$GFA_FASHION_MNIST_DIR`, else
    /// `data/fashion-mnist`).
    #[serde(alias = "fashion-mnist")]
    FashionMnist,
}

impl DataSource {
    /// Sizes of the training and test splits, for the sets of fixed size.
    pub fn split_sizes(self) -> Option<(usize, usize)> {
        match self {
            DataSource::Cifar10 => Some((50_000, 10_000)),
            DataSource::FashionMnist => Some((60_000, 10_000)),
            DataSource::Synthetic => None,
        }
    }

    /// The shape (C, H, W) of the images.
    pub fn image_shape(self) -> [i64; 3] {
        match self {
            DataSource::Cifar10 | DataSource::Synthetic => gfa_core::models::CIFAR_INPUT,
            DataSource::FashionMnist => [1, 28, 28],
        }
    }

    /// The name in configs and result files.
    pub fn name(self) -> &'static str {
        match self {
            DataSource::Cifar10 => "cifar10",
            DataSource::Synthetic => "synthetic",
            DataSource::FashionMnist => "fashion_mnist",
        }
    }

    /// Images in the full training split.
    pub fn train_len(self) -> usize {
        match self {
            DataSource::Cifar10 => 50_000,
            DataSource::Synthetic => SYNTHETIC_TRAIN,
            DataSource::FashionMnist => 60_000,
        }
    }
}

/// The `[data]` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    pub source: DataSource,
    /// Folder holding `cifar-10-batches-bin` or the Fashion-MNIST files (part of the run's
    /// identity when given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Train on the first `n_train` training points only (all when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_train: Option<usize>,
    /// Measure test accuracy on the first `n_test` test points only (all when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_test: Option<usize>,
}

impl DataConfig {
    /// Checks `n_train` / `n_test` against the source's split sizes.
    pub fn validate(&self) -> Result<(), FieldError> {
        let sizes = self.source.split_sizes();
        let limits = [
            ("n_train", self.n_train, sizes.map(|s| s.0)),
            ("n_test", self.n_test, sizes.map(|s| s.1)),
        ];
        for (key, n, max) in limits {
            let Some(n) = n else { continue };
            let range = max.map_or("≥ 1".to_string(), |m| format!("1..={m}"));
            if n == 0 || max.is_some_and(|m| n > m) {
                return Err(FieldError::at(
                    &format!("data.{key}"),
                    format!(
                        "{n} is outside the valid range {range} ({} {} split{})",
                        self.source.name(),
                        if key == "n_train" { "training" } else { "test" },
                        max.map_or(String::new(), |m| format!(" has {m} points")),
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The number of test points a run of this data evaluates on at most.
    pub fn test_len(&self) -> usize {
        let whole = self.source.split_sizes().map_or(SYNTHETIC_TEST, |s| s.1);
        match (self.source, self.n_test) {
            (DataSource::Synthetic, Some(n)) => n,
            (_, Some(n)) => n.min(whole),
            (_, None) => whole,
        }
    }
}

/// One run's sections, typed by the crates that own them: `model` is `gfa_core::ModelSpec`,
/// `method` is `gfa_core::Method` (its kind and all its options), `train` is
/// `gfa_core::TrainConfig` (the recipe every method shares); `data` and `eval` are this
/// crate's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    #[serde(default)]
    pub data: DataConfig,
    #[serde(default)]
    pub model: ModelSpec,
    #[serde(default)]
    pub method: Method,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub eval: EvalConfig,
}

/// Names of the sections of a run (the keys allowed in `[base]`), in [`RunConfig`]'s order.
pub const RUN_SECTIONS: &[&str] = &["data", "model", "method", "train", "eval"];

/// The file `gfa train` writes next to its checkpoint (its run's sections and seed).
pub const RUN_TOML: &str = "run.toml";

/// The keys a run file gfa writes holds beside the run's sections ([`RUN_SECTIONS`]):
/// `config.toml` (`gfa plan`) adds the run's id, seed, attack suite, `[landscape]`,
/// `[binarize]` and `[indicators]`; `run.toml` (`gfa train --out`) its seed. Every reader of a
/// run file takes them out, so that a key gfa writes is one every reader knows.
pub const RUN_FILE_KEYS: &[&str] =
    &["run_id", "seed", "attacks", "landscape", "binarize", "indicators"];

impl RunConfig {
    /// Type-check a run's sections and fill in defaults. A run of the old form (a
    /// `regularizer` section or `train.method`) is an error that shows the new form.
    pub fn from_table(t: &Table) -> Result<RunConfig, FieldError> {
        if let Some(message) = crate::config::legacy::run_error(t) {
            let old = if t.contains_key("regularizer") { "regularizer" } else { "train" };
            return Err(FieldError { path: vec![old.into()], message, suggestion: None });
        }
        let cfg: RunConfig = typed(t)?;
        // A value outside its domain is reported at its own key (`train.epochs`), so the
        // experiment file's line is the line of that key.
        let at = |section: &str, e: gfa_core::CoreError| match e {
            gfa_core::CoreError::Invalid { key, message } => FieldError::at(&key, message),
            e => FieldError::at(section, e.to_string()),
        };
        cfg.model.validate().map_err(|e| at("model", e))?;
        if let Some(v) = &cfg.train.validation {
            let at_key = |key: &str, message: String| FieldError {
                path: vec!["train".into(), "validation".into(), key.into()],
                message,
                suggestion: None,
            };
            v.validate().map_err(|e| {
                let key = ["n", "every", "steps", "eps"]
                    .into_iter()
                    .find(|k| e.to_string().contains(&format!("train.validation.{k}")))
                    .unwrap_or("n");
                at_key(key, e.to_string())
            })?;
            let full = cfg.data.source.train_len();
            let len = cfg.data.n_train.map_or(full, |n| n.min(full));
            if v.n >= len {
                return Err(at_key(
                    "n",
                    format!(
                        "train.validation.n = {} holds out every training image (the training \
                         split has {len}): lower train.validation.n or train on more images \
                         (data.n_train)",
                        v.n
                    ),
                ));
            }
        }
        cfg.train.validate().map_err(|e| at("train", e))?;
        cfg.check_stop()?;
        if cfg.eval.checkpoint == CheckpointChoice::Best && cfg.train.validation.is_none() {
            return Err(FieldError {
                path: vec!["eval".into(), "checkpoint".into()],
                message: "\"best\" is the epoch with the best robust accuracy on held-out \
                          training images, and this run holds none out: add [train] validation \
                          = { n = 1000 } or evaluate checkpoint = \"final\""
                    .into(),
                suggestion: None,
            });
        }
        gfa_core::train::check_method(&cfg.method).map_err(|e| at("method", e))?;
        cfg.data.validate()?;
        cfg.eval.validate()?;
        Ok(cfg)
    }

    /// An error unless `train.stop_after_steps` stops before the end of training (the epochs'
    /// steps over the training images left after the validation hold-out).
    fn check_stop(&self) -> Result<(), FieldError> {
        let Some(stop) = self.train.stop_after_steps else { return Ok(()) };
        let full = self.data.source.train_len();
        let images = match (self.data.source, self.data.n_train) {
            (DataSource::Synthetic, Some(n)) => n,
            (_, n) => n.map_or(full, |n| n.min(full)),
        }
        .saturating_sub(self.train.validation.as_ref().map_or(0, |v| v.n));
        let per_epoch = images.div_ceil(self.train.batch_size.max(1));
        let total = self.train.epochs * per_epoch;
        if stop >= total {
            return Err(FieldError::at(
                "train.stop_after_steps",
                format!(
                    "{stop} steps is not before the end of training ({} epochs of {per_epoch} \
                     steps = {total}): lower it, or remove it to train every epoch",
                    self.train.epochs
                ),
            ));
        }
        Ok(())
    }

    /// The shape (C, H, W) of the run's images.
    pub fn image_shape(&self) -> [i64; 3] {
        self.data.source.image_shape()
    }

    /// The method label of result rows (`standard`, `gfa`, `pgd_at`, …).
    pub fn method(&self) -> &'static str {
        self.method.name()
    }

    /// The method's weight λ, when it has one.
    pub fn lambda(&self) -> Option<f64> {
        self.method.lambda()
    }
}

/// The `[landscape]` section of an experiment file: each run's loss landscape (figure F2,
/// `landscape.csv`), computed after its evaluation as `gfa landscape` does. Off when absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LandscapeConfig {
    /// Test points the loss is averaged over (the first `n` of the test split).
    pub n: usize,
    /// Grid points per axis (odd, so that 0 is on the grid).
    pub steps: usize,
    /// α and β range over [-radius, radius] (L∞ pixel units, "8/255" accepted).
    pub radius: String,
    pub batch_size: usize,
}

impl Default for LandscapeConfig {
    /// `gfa landscape`'s defaults: 256 points, 21 × 21 over ±8/255.
    fn default() -> Self {
        Self { n: 256, steps: 21, radius: "8/255".into(), batch_size: 256 }
    }
}

impl LandscapeConfig {
    /// Checks the values; an error names its key inside `[landscape]`.
    pub fn validate(&self) -> Result<Eps, FieldError> {
        let at = |key: &str, message: String| FieldError {
            path: vec![key.into()],
            message,
            suggestion: None,
        };
        if self.n == 0 {
            return Err(at("n", "must be at least 1, got 0".into()));
        }
        if self.steps < 2 {
            return Err(at(
                "steps",
                format!("must be at least 2 (3 or more, odd), got {}", self.steps),
            ));
        }
        if self.batch_size == 0 {
            return Err(at("batch_size", "must be at least 1, got 0".into()));
        }
        let r: Eps = self
            .radius
            .parse()
            .map_err(|e| at("radius", format!("{e}: expected a budget like \"8/255\"")))?;
        if !(r.value > 0.0 && r.value <= 1.0) {
            return Err(at("radius", format!("{} is outside (0, 1], the pixel range", r.text)));
        }
        Ok(r)
    }
}

/// The `[indicators]` section of an experiment file: the Indicators of Attack Failure of each
/// run (docs/method.md §10, `indicators.csv`), computed after its evaluation. Off when absent;
/// `gfa escalate` computes them (with these settings, or the defaults) for the runs it escalates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndicatorsConfig {
    /// The suite's attacks (by `name`) whose traces are read; empty: every attack of the suite
    /// whose kind records a trace (`gfa list attacks`, the `traced` fact).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attacks: Vec<String>,
    /// How many points: the first `n` evaluated points the model classifies correctly.
    pub n: usize,
    /// Random points per point for unstable predictions (the reference's 100).
    pub samples: usize,
}

impl Default for IndicatorsConfig {
    /// Every traced attack of the suite, on 100 points, with 100 random points each.
    fn default() -> Self {
        Self { attacks: vec![], n: 100, samples: gfa_attacks::indicators::UNSTABLE_SAMPLES }
    }
}

impl IndicatorsConfig {
    /// Checks the values against the grid's suite; an error names its key inside
    /// `[indicators]`. Every named attack must be in the suite, and its kind must record a trace.
    pub fn validate(&self, suite: &[AttackEntry]) -> Result<(), FieldError> {
        for (key, v) in [("n", self.n), ("samples", self.samples)] {
            if v == 0 {
                return Err(FieldError::at(key, "must be at least 1, got 0".into()));
            }
        }
        let traced: Vec<&str> = AttackSpec::KINDS
            .iter()
            .copied()
            .filter(|k| gfa_attacks::registry::facts(k).is_some_and(|f| f.traced))
            .collect();
        for (i, name) in self.attacks.iter().enumerate() {
            let at = |message: String, suggestion: Option<String>| FieldError {
                path: vec!["attacks".into(), i.to_string()],
                message,
                suggestion,
            };
            let entries: Vec<&AttackEntry> = suite.iter().filter(|a| &a.name == name).collect();
            if entries.is_empty() {
                let names = suite.iter().map(|a| a.name.as_str());
                return Err(at(
                    format!(
                        "no [[attacks]] entry is named \"{name}\"; name one of the suite's \
                         attacks (an entry's `name`, by default its `kind`)"
                    ),
                    closest(name, names),
                ));
            }
            if let Some(a) = entries.iter().find(|a| !a.spec.facts().traced) {
                return Err(at(
                    format!(
                        "attack \"{name}\" is of kind \"{}\", which records no trace, so no \
                         indicator can be read from it; name attacks of the kinds that do ({}), \
                         or leave `attacks` out to take every such attack of the suite",
                        a.kind,
                        traced.join(", ")
                    ),
                    None,
                ));
            }
        }
        Ok(())
    }

    /// The attack of unconstrained attack failure: the suite's white-box fixed-budget attack
    /// with the most work per point (the registry's cost model; the first on a tie).
    pub fn unconstrained_attack(attacks: &[AttackEntry]) -> Option<&AttackEntry> {
        attacks
            .iter()
            .filter(|a| {
                let f = a.spec.facts();
                f.white_box() && !f.minimum_norm()
            })
            .fold(None, |best: Option<&AttackEntry>, a| match best {
                Some(b) if b.spec.cost_per_point() >= a.spec.cost_per_point() => Some(b),
                _ => Some(a),
            })
    }

    /// Image-gradient evaluations per indicator point for `attacks` (the run's suite): each
    /// traced attack's cost at each of its budgets (once for a minimum-norm attack), the
    /// unconstrained run, and the forward passes of unstable predictions.
    pub fn cost_per_point(&self, attacks: &[AttackEntry]) -> f64 {
        let mut total =
            Self::unconstrained_attack(attacks).map_or(0.0, |a| a.spec.cost_per_point());
        for a in attacks.iter().filter(|a| self.traces(a)) {
            let runs = if a.spec.facts().minimum_norm() { 1 } else { a.eps.len().max(1) };
            let probe = self.samples as f64 * gfa_attacks::facts::FORWARD_COST;
            total += (a.spec.cost_per_point() + probe) * runs as f64;
        }
        total
    }

    /// Whether the indicators read `entry`'s trace: it is named, or none are named and its kind
    /// records one.
    pub fn traces(&self, entry: &AttackEntry) -> bool {
        if self.attacks.is_empty() {
            entry.spec.facts().traced
        } else {
            self.attacks.contains(&entry.name)
        }
    }
}

/// Attack kinds of the evaluation suite: the `gfa_attacks` registry's kinds.
pub const ATTACK_KINDS: &[&str] = AttackSpec::KINDS;

/// Attack presets: the original authors' defaults, or torchattacks 3.5.1's.
pub const PRESETS: &[&str] = &["reference", "torchattacks"];

/// The `eps` list of an `[[attacks]]` entry (`["8/255", 0.5]`); errors name the entry's key.
fn eps_list(v: Option<&Value>) -> Result<Vec<Eps>, FieldError> {
    let at = |path: Vec<String>, message: String| FieldError { path, message, suggestion: None };
    match v {
        None => Ok(vec![]),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let parsed = match v {
                    Value::String(s) => s.parse::<Eps>().map_err(|e| e.to_string()),
                    Value::Float(f) => Ok(Eps::new(*f)),
                    Value::Integer(i) => Ok(Eps::new(*i as f64)),
                    other => Err(format!("expected a string like \"8/255\", got {other}")),
                };
                parsed.map_err(|m| at(vec!["eps".into(), i.to_string()], m))
            })
            .collect(),
        Some(v) => {
            Err(at(vec!["eps".into()], format!("expected a list like [\"8/255\"], got {v}")))
        }
    }
}

/// One `[[attacks]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackEntry {
    /// Label in result rows (default: `kind`).
    pub name: String,
    pub kind: String,
    pub preset: String,
    pub norm: String,
    pub eps: Vec<Eps>,
    /// `subset = "all" | "all_correct"`: the entry attacks only the runs whose `eval.subset` is
    /// this one (one protocol's attacks beside the other's in one grid); every run when absent.
    pub subset: Option<Subset>,
    /// The remaining keys (the attack's own configuration).
    pub config: Table,
    /// The checked configuration: preset defaults with `config` merged over them.
    pub spec: AttackSpec,
}

impl AttackEntry {
    /// Parse entry `index` of `[[attacks]]`; errors carry the path inside the entry.
    pub fn from_table(t: &Table) -> Result<AttackEntry, FieldError> {
        let err = |key: &str, message: String, suggestion: Option<String>| FieldError {
            path: vec![key.to_string()],
            message,
            suggestion,
        };
        let string = |key: &str| -> Result<Option<String>, FieldError> {
            match t.get(key) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(v) => Err(err(key, format!("expected a string, got {v}"), None)),
            }
        };
        let kind = string("kind")?
            .ok_or_else(|| err("kind", "missing `kind` (e.g. kind = \"pgd\")".into(), None))?;
        if !ATTACK_KINDS.contains(&kind.as_str()) {
            return Err(err(
                "kind",
                format!(
                    "unknown attack kind '{kind}': expected one of {}",
                    ATTACK_KINDS.join(", ")
                ),
                closest(&kind, ATTACK_KINDS.iter().copied()),
            ));
        }
        let preset = string("preset")?.unwrap_or_else(|| "reference".into());
        if !PRESETS.contains(&preset.as_str()) {
            return Err(err(
                "preset",
                format!("unknown preset '{preset}': expected one of {}", PRESETS.join(", ")),
                closest(&preset, PRESETS.iter().copied()),
            ));
        }
        // Without `norm`, the attack's own default threat model (the registry's: L2 for CW and
        // DeepFool, L1 for EAD, L∞ for the others).
        let norm = match string("norm")? {
            Some(n) => n,
            None => AttackSpec::from_value(serde_json::json!({ "kind": kind, "preset": preset }))
                .map(|s| s.norm().to_string())
                .unwrap_or_else(|_| "linf".into()),
        };
        if !["linf", "l2", "l1"].contains(&norm.as_str()) {
            return Err(err(
                "norm",
                format!("unknown norm '{norm}': expected linf, l2 or l1"),
                closest(&norm, ["linf", "l2", "l1"]),
            ));
        }
        let name = string("name")?.unwrap_or_else(|| kind.clone());
        let subsets = [Subset::All, Subset::AllCorrect];
        let subset = match string("subset")? {
            None => None,
            Some(s) => Some(subsets.into_iter().find(|v| v.name() == s).ok_or_else(|| {
                err(
                    "subset",
                    format!(
                        "unknown subset '{s}': expected \"all\" (the runs evaluated on every \
                         point) or \"all_correct\" (the runs of the paper's protocol)"
                    ),
                    closest(&s, subsets.iter().map(|v| v.name())),
                )
            })?),
        };
        let eps = eps_list(t.get("eps"))?;
        let minimum_norm = gfa_attacks::registry::facts(&kind).is_some_and(|f| f.minimum_norm());
        if eps.is_empty() && !minimum_norm {
            return Err(err(
                "eps",
                format!("attack '{name}' ({kind}) needs an eps list, e.g. eps = [\"8/255\"]"),
                None,
            ));
        }
        let mut config = t.clone();
        for k in ["kind", "preset", "name", "eps", "norm", "subset"] {
            config.remove(k);
        }
        // The registry checks the attack's own keys (unknown key, wrong type, unsupported norm).
        let mut full = config.clone();
        full.insert("kind".into(), Value::String(kind.clone()));
        full.insert("preset".into(), Value::String(preset.clone()));
        full.insert("norm".into(), Value::String(norm.clone()));
        let json = serde_json::to_value(&full).map_err(|e| err("kind", e.to_string(), None))?;
        let spec = AttackSpec::from_value(json).map_err(|e| {
            let message = e.to_string();
            let key = unknown_name(&message);
            let suggestion = key
                .as_deref()
                .and_then(|k| closest(k, expected_names(&message).iter().map(String::as_str)));
            FieldError { path: key.into_iter().collect(), message, suggestion }
        })?;
        Ok(AttackEntry { name, kind, preset, norm, eps, subset, config, spec })
    }

    /// Checks each budget against the threat model on images of `shape` (C, H, W) with pixels
    /// in [0, 1]: L∞ in [0, 1], L2 up to the image's diameter √(C·H·W), L1 up to C·H·W; an
    /// error names the entry's `eps.<i>`.
    pub fn check_eps(&self, shape: [i64; 3]) -> Result<(), FieldError> {
        let dims = (shape[0] * shape[1] * shape[2]) as f64;
        let (max, what) = match self.norm.as_str() {
            "l2" => (
                dims.sqrt(),
                format!("√(C·H·W) = {:.2}, the diameter of {shape:?} images", dims.sqrt()),
            ),
            "l1" => (dims, format!("C·H·W = {dims}, for {shape:?} images")),
            _ => (1.0, "1, the whole pixel range".to_string()),
        };
        for (i, e) in self.eps.iter().enumerate() {
            if !(e.value >= 0.0 && e.value <= max) {
                return Err(FieldError {
                    path: vec!["eps".into(), i.to_string()],
                    message: format!(
                        "{} eps {} is outside the threat model's range: from 0 up to {what} \
                         (e.g. \"8/255\" for L∞, \"0.5\" for L2)",
                        self.norm, e.text
                    ),
                    suggestion: None,
                });
            }
        }
        Ok(())
    }

    /// The entry as a TOML table (the form stored in `config.toml` and hashed).
    pub fn to_table(&self) -> Table {
        let mut t = self.config.clone();
        t.insert("kind".into(), Value::String(self.kind.clone()));
        t.insert("name".into(), Value::String(self.name.clone()));
        t.insert("preset".into(), Value::String(self.preset.clone()));
        t.insert("norm".into(), Value::String(self.norm.clone()));
        t.insert(
            "eps".into(),
            Value::Array(self.eps.iter().map(|e| Value::String(e.text.clone())).collect()),
        );
        if let Some(s) = self.subset {
            t.insert("subset".into(), Value::String(s.name().into()));
        }
        t
    }

    /// Whether this entry attacks runs evaluated on `subset`.
    pub fn applies_to(&self, subset: Subset) -> bool {
        self.subset.is_none_or(|s| s == subset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys::{SourceMap, dotted, split_dotted, to_table};
    use std::path::Path;

    #[test]
    fn dotted_round_trip() {
        assert_eq!(split_dotted("a.b").unwrap(), vec!["a", "b"]);
        assert_eq!(split_dotted("grid.\"model.arch\"").unwrap(), vec!["grid", "model.arch"]);
        assert!(split_dotted("a..b").is_err());
        assert_eq!(dotted(&["grid".into(), "model.arch".into()]), "grid.\"model.arch\"");
    }

    #[test]
    fn typed_reports_path_and_suggestion() {
        let t: Table = toml::from_str("[model]\narch = \"cnn\"\nwidht = 0.5\n").unwrap();
        let e = RunConfig::from_table(&t).unwrap_err();
        assert_eq!(e.path, vec!["model", "widht"]);
        assert_eq!(e.suggestion.as_deref(), Some("width"));
        let t: Table = toml::from_str("[eval]\nn = \"many\"\n").unwrap();
        let e = RunConfig::from_table(&t).unwrap_err();
        assert_eq!(e.path, vec!["eval", "n"], "{e:?}");
        let t: Table = toml::from_str("[model]\narch = \"cnnn\"\n").unwrap();
        let e = RunConfig::from_table(&t).unwrap_err();
        assert_eq!(e.path, vec!["model", "arch"], "{e:?}");
        assert_eq!(e.suggestion.as_deref(), Some("cnn"));
    }

    #[test]
    fn method_typos_are_located_and_old_runs_show_the_new_form() {
        let t: Table =
            toml::from_str("[method]\nkind = \"gfa\"\nlambda = 0.1\nlayres = \"first\"\n").unwrap();
        let e = RunConfig::from_table(&t).unwrap_err();
        assert_eq!(e.path, vec!["method", "layres"], "{e:?}");
        assert_eq!(e.suggestion.as_deref(), Some("layers"));
        let t: Table = toml::from_str("[method]\nkind = \"gfa\"\nlambda = -1.0\n").unwrap();
        let e = RunConfig::from_table(&t).unwrap_err();
        // A value out of range is located at its own key, not at its section.
        assert_eq!(e.path, vec!["method", "lambda"], "{e:?}");
        let t: Table = toml::from_str(
            "[train]\nmethod = { kind = \"gnr\" }\n[regularizer]\nkind = \"gnr\"\nlambda = 1.0\n",
        )
        .unwrap();
        let e = RunConfig::from_table(&t).unwrap_err();
        assert!(e.message.contains("[method]\nkind = \"gnr\"\nlambda = 1.0"), "{}", e.message);
    }

    #[test]
    fn run_sections_are_the_fields_of_run_config() {
        let keys: Vec<String> =
            to_table(&RunConfig::from_table(&Table::new()).unwrap()).keys().cloned().collect();
        let mut sections: Vec<&str> = RUN_SECTIONS.to_vec();
        sections.sort();
        assert_eq!(keys, sections);
    }

    #[test]
    fn best_checkpoint_needs_validation() {
        let t: Table = toml::from_str("[eval]\ncheckpoint = \"best\"\n").unwrap();
        let e = RunConfig::from_table(&t).unwrap_err();
        assert_eq!(e.path, vec!["eval", "checkpoint"], "{e:?}");
        assert!(e.message.contains("[train] validation"), "{}", e.message);
        let t: Table = toml::from_str(
            "[train]\nvalidation = { n = 100, steps = 5 }\n[eval]\ncheckpoint = \"best\"\n",
        )
        .unwrap();
        let cfg = RunConfig::from_table(&t).unwrap();
        assert_eq!(cfg.eval.checkpoint, CheckpointChoice::Best);
        assert_eq!(cfg.train.validation.map(|v| (v.n, v.steps, v.every)), Some((100, 5, 1)));
        let t: Table = toml::from_str("[eval]\ncheckpoint = \"bset\"\n").unwrap();
        let e = RunConfig::from_table(&t).unwrap_err();
        assert_eq!(e.path, vec!["eval", "checkpoint"], "{e:?}");
        // Bad values name their key.
        for (text, key) in [
            ("[train.validation]\nn = 0\n", "n"),
            ("[train.validation]\nevery = 0\n", "every"),
            ("[train.validation]\nsteps = 0\n", "steps"),
            ("[data]\nn_train = 500\n[train.validation]\nn = 500\n", "n"),
            ("[data]\nsource = \"synthetic\"\n[train.validation]\nn = 1000\n", "n"),
        ] {
            let t: Table = toml::from_str(text).unwrap();
            let e = RunConfig::from_table(&t).unwrap_err();
            assert_eq!(e.path, vec!["train", "validation", key], "{text}: {e:?}");
            assert!(e.message.contains(key), "{text}: {}", e.message);
        }
        // An attack gfa does not validate with: the error lists the ones it does.
        let t: Table = toml::from_str("[train.validation]\nattack = \"fgsm\"\n").unwrap();
        let e = RunConfig::from_table(&t).unwrap_err();
        assert_eq!(e.path, vec!["train", "validation", "attack"], "{e:?}");
        assert!(e.message.contains("`pgd`"), "{}", e.message);
        let t: Table =
            toml::from_str("[data]\nn_train = 500\n[train.validation]\nn = 499\n").unwrap();
        assert!(RunConfig::from_table(&t).is_ok(), "one training image left is enough");
    }

    #[test]
    fn defaults_are_filled() {
        let cfg = RunConfig::from_table(&Table::new()).unwrap();
        assert_eq!(cfg.method(), "standard");
        assert_eq!(cfg.lambda(), None);
        assert_eq!(cfg.eval, EvalConfig::default());
        assert_eq!(cfg.model, ModelSpec::default());
    }

    #[test]
    fn attack_entry_parses_eps_text() {
        let t: Table =
            toml::from_str("kind = \"pgd\"\neps = [\"8/255\", 0.5]\nsteps = 20\n").unwrap();
        let a = AttackEntry::from_table(&t).unwrap();
        assert_eq!(a.eps[0].text, "8/255");
        assert!((a.eps[0].value - 8.0 / 255.0).abs() < 1e-15);
        assert_eq!(a.preset, "reference");
        assert_eq!(a.config.get("steps"), Some(&Value::Integer(20)));
        let t: Table = toml::from_str("kind = \"pgd\"\neps = [\"8/0\"]\n").unwrap();
        assert_eq!(AttackEntry::from_table(&t).unwrap_err().path, vec!["eps", "0"]);
        let t: Table = toml::from_str("kind = \"pdg\"\neps = [\"8/255\"]\n").unwrap();
        assert_eq!(AttackEntry::from_table(&t).unwrap_err().suggestion.as_deref(), Some("pgd"));
        // The attack's own keys are checked by the registry.
        let t: Table = toml::from_str("kind = \"pgd\"\neps = [\"8/255\"]\nstesp = 3\n").unwrap();
        let e = AttackEntry::from_table(&t).unwrap_err();
        assert!(e.message.contains("stesp"), "{e:?}");
        let AttackSpec::Pgd(c) = a.spec else { panic!("{:?}", a.spec) };
        assert_eq!(c.steps, 20);
    }

    #[test]
    fn source_map_finds_lines() {
        let text = "seeds = [0]\n[base.model]\narch = \"cnn\"\n\n[grid]\n\"regularizer.lambda\" = [0.0, 1.0]\n\n[[attacks]]\nkind = \"pgd\"\n";
        let sm = SourceMap::new(Path::new("x.toml"), text);
        assert_eq!(sm.line_of(&["base".into(), "model".into(), "arch".into()]), Some(3));
        assert_eq!(sm.line_of(&["grid".into(), "regularizer.lambda".into()]), Some(6));
        assert_eq!(sm.line_of(&["attacks".into(), "0".into(), "kind".into()]), Some(9));
        // A missing leaf falls back to its deepest existing parent.
        assert_eq!(sm.line_of(&["base".into(), "model".into(), "nope".into()]), Some(2));
    }
}
