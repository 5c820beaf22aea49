//! CSV records: one serde struct per CSV kind, all long-format, all carrying `schema_version`.
//!
//! Every row repeats the identifying columns of its run ([`RunKey`]: experiment, run id, seed,
//! model, method, λ and the method's options) so that any CSV can be filtered and grouped on
//! its own, and ends with the numerics it was computed with (`precision`, `deterministic`,
//! docs/numerics.md) and the build that wrote it (`git_rev`, `git_dirty`, `libtorch`; fixed
//! into the binary, see [`crate::results::build_info`]). Missing values are empty cells
//! (`Option::None`), never sentinels such as −1.
//! Accuracies are fractions in `[0, 1]`; perturbation norms are in `[0, 1]`-pixel units.
//! `docs/csv-schema.md` documents every column; bump [`SCHEMA_VERSION`] when a column changes.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use gfa_data::atomic::write_atomic;

use gfa_core::device::{Numerics, Precision};

use crate::config::grid::RunSpec;
use crate::results::build_info;

/// Version of every CSV layout written by this crate (5: every per-run row and summary.csv's
/// carry the numerics, `precision` and `deterministic`; 4: train.csv's collapse diagnostics and
/// validation columns, `train_steps.csv`; 3: `method_params` holds the method value, train.csv's
/// named `terms` replace `train_reg`, `kl` and `align`, every row ends with `git_rev`,
/// `git_dirty`, `libtorch`).
pub const SCHEMA_VERSION: u32 = 5;

/// The older versions this gfa reads, their rows upgraded on read ([`read_rows`]).
pub const OLDER_VERSIONS: [u32; 3] = [2, 3, 4];

/// The identifying columns every row repeats.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunKey {
    pub experiment: String,
    pub run_id: String,
    pub seed: u64,
    /// Model architecture name (`cnn`, `mlp`, …).
    pub model: String,
    /// Training method (`standard`, `gfa`, `pgd_at`, …).
    pub method: String,
    /// Regularization weight λ of the method, empty when it has none.
    pub lambda: Option<f64>,
    /// The method value (`kind` and every option) as compact JSON (sorted keys).
    pub method_params: String,
}

impl RunKey {
    /// The identifying columns of a run of `method` on `model`.
    pub fn of(
        experiment: &str,
        run_id: &str,
        seed: u64,
        model: &gfa_core::ModelSpec,
        method: &gfa_core::Method,
    ) -> RunKey {
        use gfa_core::TrainMethod;
        RunKey {
            experiment: experiment.into(),
            run_id: run_id.into(),
            seed,
            model: model.arch.name().into(),
            method: method.name().into(),
            lambda: method.lambda(),
            method_params: crate::config::keys::canonical(&toml::Value::Table(
                crate::config::keys::to_table(method),
            )),
        }
    }
}

/// Defines a row struct whose first columns are `schema_version` and the [`RunKey`] columns and
/// whose last are the numerics' (`precision`, `deterministic`) and the build's (`git_rev`,
/// `git_dirty`, `libtorch`). (The `csv` crate cannot serialize `#[serde(flatten)]`, so the
/// columns are spelled out.)
macro_rules! keyed_row {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        pub struct $name {
            pub schema_version: u32,
            pub experiment: String,
            pub run_id: String,
            pub seed: u64,
            pub model: String,
            pub method: String,
            pub lambda: Option<f64>,
            pub method_params: String,
            $($(#[$fm])* pub $f: $t,)*
            /// The precision the row was computed at (`fp32` or `tf32`, docs/numerics.md).
            pub precision: Precision,
            /// Whether libtorch's deterministic switches (`--deterministic`) were on.
            pub deterministic: bool,
            /// Git revision of the gfa build that wrote the row.
            pub git_rev: String,
            /// That build's sources differed from `git_rev` (empty: unknown, rows of schema 2).
            pub git_dirty: Option<bool>,
            /// The libtorch version of that build (empty: unknown).
            pub libtorch: String,
        }

        impl $name {
            /// A row with the identifying columns of `key`, the numerics this process computes
            /// with ([`Numerics::current`]), this build's columns and every other column
            /// empty/zero.
            pub fn keyed(key: &RunKey) -> Self {
                let numerics = Numerics::current();
                Self {
                    schema_version: SCHEMA_VERSION,
                    experiment: key.experiment.clone(),
                    run_id: key.run_id.clone(),
                    seed: key.seed,
                    model: key.model.clone(),
                    method: key.method.clone(),
                    lambda: key.lambda,
                    method_params: key.method_params.clone(),
                    precision: numerics.precision,
                    deterministic: numerics.deterministic,
                    git_rev: build_info::GIT_REV.into(),
                    git_dirty: Some(build_info::GIT_DIRTY == "true"),
                    libtorch: build_info::LIBTORCH.into(),
                    ..Default::default()
                }
            }

            /// The numerics columns of this row.
            pub fn numerics(&self) -> Numerics {
                Numerics { precision: self.precision, deterministic: self.deterministic }
            }

            /// The identifying columns of this row.
            pub fn key(&self) -> RunKey {
                RunKey {
                    experiment: self.experiment.clone(),
                    run_id: self.run_id.clone(),
                    seed: self.seed,
                    model: self.model.clone(),
                    method: self.method.clone(),
                    lambda: self.lambda,
                    method_params: self.method_params.clone(),
                }
            }
        }
    };
}

/// `manifest.csv`: one row per run of the expansion.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ManifestRow {
    pub schema_version: u32,
    pub experiment: String,
    /// 1-based position in the expansion (the number `gfa plan` prints).
    pub index: usize,
    pub run_id: String,
    pub seed: u64,
    pub model: String,
    pub method: String,
    pub lambda: Option<f64>,
    /// The varying axis values, `key=value` joined by `; ` (seed excluded).
    pub axes: String,
    /// Rough cost estimate in millions of image-gradient evaluations (see `cost::estimate_cost`).
    pub est_cost_mgrad: f64,
    /// Git revision of the gfa build that wrote the row.
    pub git_rev: String,
    /// That build's sources differed from `git_rev` (empty: unknown, rows of schema 2).
    pub git_dirty: Option<bool>,
    /// The libtorch version of that build (empty: unknown).
    pub libtorch: String,
}

keyed_row! {
    /// `train.csv`: one row per epoch.
    pub struct TrainRow {
        pub epoch: usize,
        pub lr: f64,
        pub train_loss: f64,
        pub train_acc: f64,
        pub test_acc: Option<f64>,
        /// λ in force this epoch (below the configured λ during `lambda_warmup_epochs`).
        pub lambda_now: Option<f64>,
        /// The method's loss terms by name, epoch means, `name=value` joined by `;` in name
        /// order, full precision (`gfa=0.73`, `kl=0.12`; empty for a method without terms).
        pub terms: String,
        /// Mean cosine per tap, `tap=value` joined by `;` (empty without a regularizer).
        pub tap_cos: String,
        /// Mean regularizer term per tap, `tap=value` joined by `;`.
        pub tap_reg: String,
        /// Training accuracy still below 1.5× chance after the second epoch.
        pub collapse: bool,
        pub seconds: f64,
        pub device: String,
        /// Optimizer steps made since the start of training, at the end of the epoch.
        pub steps: Option<usize>,
        /// Diagnostics at the end of the epoch, on the fixed batch (`train_steps.csv` has the
        /// same measurements during the first epochs): mean ‖∂ℓ/∂x‖₂.
        pub grad_norm: Option<f64>,
        /// Fraction of dead units per tap, `tap=value` joined by `;`.
        pub dead_frac: String,
        /// Entropy of the predicted-class histogram / ln(classes).
        pub pred_entropy: Option<f64>,
        /// While the fixed batch is at chance: the step at which that began (0: never left it).
        pub collapse_step: Option<usize>,
        /// Clean and robust accuracy on the held-out training images (`[train] validation`).
        pub val_clean_acc: Option<f64>,
        pub val_robust_acc: Option<f64>,
        /// The epoch whose weights `best.safetensors` holds after this one.
        pub best_epoch: Option<usize>,
    }
}

keyed_row! {
    /// `train_steps.csv`: the collapse diagnostics of one probe (fixed batch, eval mode), every
    /// few dozen steps of the first epochs and at the end of each epoch.
    pub struct StepRow {
        /// 1-based epoch in which the probe was taken.
        pub epoch: usize,
        /// Optimizer steps made since the start of training (0: the initial weights).
        pub step: usize,
        pub train_acc: f64,
        pub test_acc: Option<f64>,
        pub loss: f64,
        /// The method's penalty R on the fixed batch (methods with λ).
        pub penalty: Option<f64>,
        pub lambda_now: Option<f64>,
        /// Mean cosine per tap (every tap of the model), `tap=value` joined by `;`.
        pub tap_cos: String,
        pub grad_norm: f64,
        /// Fraction of dead units per tap after `input`, `tap=value` joined by `;`.
        pub dead_frac: String,
        pub pred_entropy: f64,
        /// Fixed-batch accuracy below 1.5× chance.
        pub collapse: bool,
    }
}

impl TrainRow {
    /// The `terms` column as a map (a malformed pair is an error naming it).
    pub fn terms(&self) -> Result<std::collections::BTreeMap<String, f64>> {
        parse_pairs(&self.terms)
    }
}

/// `name=value` pairs joined by `;` (values as Rust prints them: shortest round-trip).
pub fn join_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, f64)>) -> String {
    pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";")
}

/// The inverse of [`join_pairs`].
pub fn parse_pairs(text: &str) -> Result<std::collections::BTreeMap<String, f64>> {
    text.split(';')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').with_context(|| format!("`{p}` is not name=value"))?;
            let v: f64 = v.parse().with_context(|| format!("`{p}`: not a number"))?;
            Ok((k.to_string(), v))
        })
        .collect()
}

keyed_row! {
    /// `eval.csv`: one row per (run, attack, preset, eps, mode).
    pub struct EvalRow {
        /// Attack label (the `[[attacks]]` entry's `name`, else its `kind`).
        pub attack: String,
        /// Registry kind of the attack (`fgsm`, `pgd`, `apgd`, `square`, `deepfool`, …).
        pub kind: String,
        /// `reference` or `torchattacks` (defaults of the original code vs. of torchattacks).
        pub preset: String,
        /// Full attack configuration as compact JSON.
        pub attack_config: String,
        /// `linf`, `l2` or `l1`.
        pub norm: String,
        /// eps as written in the TOML (`8/255`); empty for a min-norm summary row.
        pub eps_text: String,
        pub eps: Option<f64>,
        /// `individual` (this attack alone) or `cumulative` (worst case over the suite so far).
        pub mode: String,
        /// `all` or `all_correct` (only points every compared model classifies correctly).
        pub subset: String,
        /// Number of evaluated points.
        pub n: usize,
        pub clean_acc: f64,
        pub robust_acc: Option<f64>,
        /// Fraction of clean-correct points the attack fooled (min-norm: at any norm).
        pub success_rate: Option<f64>,
        pub median_l0: Option<f64>,
        pub median_l1: Option<f64>,
        pub median_l2: Option<f64>,
        pub median_linf: Option<f64>,
        pub mean_l0: Option<f64>,
        pub mean_l1: Option<f64>,
        pub mean_l2: Option<f64>,
        pub mean_linf: Option<f64>,
        pub queries: Option<f64>,
        pub seconds: f64,
        pub device: String,
    }
}

keyed_row! {
    /// `checks.csv`: one row per gradient-masking check (docs/method.md §7) plus one `verdict` row.
    pub struct CheckRow {
        /// Check number (1–9, docs/method.md §7); empty for the verdict row.
        pub number: Option<u32>,
        /// Check code (`iterative_beats_single_step`, …, `verdict`).
        pub check: String,
        /// `pass`, `flag` or `skip` (inputs missing); for `verdict` see `masking::Verdict`.
        pub result: String,
        /// The measured quantity (e.g. PGD robust accuracy).
        pub value: Option<f64>,
        /// What it is compared with (e.g. FGSM robust accuracy + 0.01).
        pub threshold: Option<f64>,
        /// Human-readable numbers behind the result.
        pub detail: String,
    }
}

keyed_row! {
    /// `points.csv`: per `eval.csv` row, the outcome at each evaluated point (see
    /// [`crate::analysis::points`]), for paired comparisons of methods on the same points.
    pub struct PointRow {
        pub attack: String,
        pub kind: String,
        pub preset: String,
        pub norm: String,
        pub eps_text: String,
        /// `clean`, `individual` or `cumulative`.
        pub mode: String,
        pub subset: String,
        /// Number of evaluated points (the length of `robust`).
        pub n: usize,
        /// One character per evaluation point (the first `eval.n` test points): `1` where the
        /// point was evaluated (every point, or those of the `all_correct` subset), else `0`.
        pub points: String,
        /// One character per evaluated point, in order: `1` robust at this row, `0` not.
        pub robust: String,
    }
}

keyed_row! {
    /// `gfa_value.csv`: mean cosine between tap and loss gradient (the paper's Table 1).
    pub struct GfaValueRow {
        /// `train` or `test`.
        pub split: String,
        pub tap: String,
        pub value: f64,
        pub n: usize,
    }
}

keyed_row! {
    /// `norms.csv`: per-sample perturbation norms of minimum-norm attacks (distributions).
    pub struct NormRow {
        pub attack: String,
        pub preset: String,
        /// Position of the point among the run's evaluation points (the first `eval.n` test
        /// points), the same position `points.csv` uses.
        pub index: usize,
        pub success: bool,
        pub l0: Option<f64>,
        pub l1: Option<f64>,
        pub l2: Option<f64>,
        pub linf: Option<f64>,
    }
}

keyed_row! {
    /// `binarization.csv`: the binarization test of one attack (docs/method.md §7), one row per
    /// tested point and one `summary` row per attack and budget with the pass rate.
    pub struct BinarizationRow {
        /// The attack tested: its name, kind, preset and full settings (as eval.csv's).
        pub attack: String,
        pub kind: String,
        pub preset: String,
        pub attack_config: String,
        pub norm: String,
        pub eps_text: String,
        pub eps: f64,
        /// The test point's position in the test split (empty on the summary row).
        pub index: Option<usize>,
        /// Its true class (not used by the test).
        pub label: Option<i64>,
        /// `pass`, `fail`, `invalid` (no adversarial example known: not counted) or `summary`.
        pub result: String,
        /// The head's accuracy on its training samples, before its threshold moves.
        pub train_acc: Option<f64>,
        /// The head's accuracy on fresh inner / boundary samples.
        pub val_inner_acc: Option<f64>,
        pub val_boundary_acc: Option<f64>,
        /// The norm of the perturbation the attack returned, in its threat model.
        pub adv_norm: Option<f64>,
        /// Summary row: points passed, valid points, the pass rate and its Wilson 95 % interval.
        pub passed: Option<usize>,
        pub valid: Option<usize>,
        pub pass_rate: Option<f64>,
        pub pass_low: Option<f64>,
        pub pass_high: Option<f64>,
        /// Why a point is invalid; the summary's counts.
        pub detail: String,
        /// The test's settings (inner, boundary, validation, steps, lr) as compact JSON.
        pub settings: String,
        pub seconds: f64,
        pub device: String,
    }
}

keyed_row! {
    /// `landscape.csv`: loss on the grid `x + α·u_radial + β·u_tangential` (figure F2).
    pub struct LandscapeRow {
        pub alpha: f64,
        pub beta: f64,
        pub loss: f64,
    }
}

keyed_row! {
    /// `indicators.csv`: per attack, budget and Indicator of Attack Failure (docs/method.md §10),
    /// how many of the points it was measured on it flags.
    pub struct IndicatorRow {
        /// The suite entry's name (empty for `unavailable_gradients`, a fact of the model).
        pub attack: String,
        pub kind: String,
        pub preset: String,
        pub norm: String,
        /// The budget as the grid writes it (a minimum-norm attack: the largest it lists, the
        /// radius it was run with; `unconstrained_attack_failure`: `unbounded`).
        pub eps_text: String,
        pub eps: Option<f64>,
        /// `silent_success`, `incomplete_optimization`, `unstable_predictions`,
        /// `transfer_failure`, `unconstrained_attack_failure` or `unavailable_gradients`.
        pub indicator: String,
        /// Points it was measured on.
        pub n: usize,
        /// Points it flags.
        pub flagged: usize,
        /// `flagged / n` (empty when `n` is 0).
        pub fraction: Option<f64>,
        /// The share of points above which it counts towards the `attack_failure_suspected`
        /// verdict.
        pub threshold: f64,
        /// `flag` (fraction above the threshold), `pass`, or `skip` (no points).
        pub result: String,
    }
}

/// CSV bytes of `rows` with a header line (also when `rows` is empty).
pub fn to_csv_bytes<T: Serialize + Default>(rows: &[T]) -> Result<Vec<u8>> {
    if rows.is_empty() {
        let mut h = header_for::<T>().join(",");
        h.push('\n');
        return Ok(h.into_bytes());
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    w.flush()?;
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    // A NaN or an infinity is never written: it would read back as a number that means nothing.
    let mut r = csv::Reader::from_reader(bytes.as_slice());
    let headers = r.headers()?.clone();
    for (k, rec) in r.records().enumerate() {
        if let Some((column, value)) = non_finite_cell(&headers, &rec?) {
            bail!(
                "row {} of {} would have {column} = {value}: gfa writes finite numbers only \
                 (the measurement that produced it failed; this is a bug to report)",
                k + 1,
                rows.len()
            );
        }
    }
    Ok(bytes)
}

/// The first cell of `rec` that is a NaN or an infinity, with its column.
pub fn non_finite_cell(
    headers: &csv::StringRecord,
    rec: &csv::StringRecord,
) -> Option<(String, String)> {
    // By its text, not by parsing: a run id such as `8815e5339997` parses as a float too large
    // to be finite. Rust writes a non-finite f64 as `NaN`, `inf` or `-inf`.
    headers.iter().zip(rec.iter()).find_map(|(h, v)| {
        let t = v.trim().trim_start_matches(['+', '-']).to_ascii_lowercase();
        matches!(t.as_str(), "nan" | "inf" | "infinity").then(|| (h.to_string(), v.to_string()))
    })
}

/// The `schema_version` values this gfa reads: its own, and [`OLDER_VERSIONS`] (upgraded on
/// read).
pub fn readable_version(v: &str) -> bool {
    v == SCHEMA_VERSION.to_string() || OLDER_VERSIONS.iter().any(|o| v == o.to_string())
}

/// `5 (and 2, 3, 4, upgraded on read)`: the versions this gfa reads, for error messages.
fn readable_versions() -> String {
    let older: Vec<String> = OLDER_VERSIONS.iter().map(u32::to_string).collect();
    format!("{SCHEMA_VERSION} (and {}, upgraded on read)", older.join(", "))
}

/// Checks a CSV file gfa wrote without knowing its row type: a `schema_version` column, every
/// row as many fields as the header, a version this gfa reads, no NaN or infinite number, and a
/// line break at the end (every file gfa writes ends with one; a file cut while it was written
/// does not). The error names the file, the row (counting the header as row 1) and what is
/// wrong.
pub fn check_csv_file(path: &Path) -> Result<()> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let at = |row: usize| format!("{}: row {row}", path.display());
    if bytes.is_empty() {
        bail!("{}: empty file (gfa writes at least the header line)", path.display());
    }
    let mut r = csv::ReaderBuilder::new().flexible(true).from_reader(bytes.as_slice());
    let headers = r.headers().with_context(|| at(1))?.clone();
    let Some(sv) = headers.iter().position(|h| h == "schema_version") else {
        bail!("{}: no `schema_version` column; not a gfa CSV", path.display());
    };
    let mut last = 1;
    for (k, rec) in r.records().enumerate() {
        let row = k + 2;
        let rec = rec.with_context(|| at(row))?;
        if rec.len() != headers.len() {
            bail!(
                "{}: {} fields where the header has {}: the row is cut or was edited",
                at(row),
                rec.len(),
                headers.len()
            );
        }
        let v = rec.get(sv).unwrap_or_default();
        if !readable_version(v) {
            bail!(
                "{}: schema_version {v:?}, but this gfa reads version {}",
                at(row),
                readable_versions()
            );
        }
        if let Some((column, value)) = non_finite_cell(&headers, &rec) {
            bail!("{}: {column} is {value}; gfa never writes a NaN or an infinity", at(row));
        }
        last = row;
    }
    if !bytes.ends_with(b"\n") {
        bail!(
            "{}: the row is cut: the file does not end with a line break, as every file gfa \
             writes does (it was cut while being written, or edited)",
            at(last)
        );
    }
    Ok(())
}

/// Write rows atomically to `path` (all rows or none appear).
pub fn write_rows<T: Serialize + Default>(path: &Path, rows: &[T]) -> Result<()> {
    Ok(write_atomic(path, &to_csv_bytes(rows)?)?)
}

/// Read all rows of a CSV file, checking its `schema_version`.
pub fn read_rows<T: DeserializeOwned + Serialize + Default>(path: &Path) -> Result<Vec<T>> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let headers = r.headers()?.clone();
    let Some(i) = headers.iter().position(|h| h == "schema_version") else {
        bail!("{}: no `schema_version` column; not a gfa CSV", path.display());
    };
    let mut records = Vec::new();
    for (k, rec) in r.records().enumerate() {
        let at = || format!("{}: row {}", path.display(), k + 2);
        let rec = rec.with_context(at)?;
        if let Some((column, value)) = non_finite_cell(&headers, &rec) {
            bail!("{}: {column} is {value}; gfa never writes a NaN or an infinity", at());
        }
        records.push(rec);
    }
    let versions: std::collections::BTreeSet<&str> =
        records.iter().map(|r| r.get(i).unwrap_or("")).collect();
    let current = SCHEMA_VERSION.to_string();
    if let Some(v) = versions.iter().find(|v| !readable_version(v)) {
        bail!(
            "{}: schema_version {v:?} but this gfa reads version {}; regenerate the file with \
             this version of gfa",
            path.display(),
            readable_versions()
        );
    }
    let mut out = Vec::with_capacity(records.len());
    let older = versions.iter().any(|v| *v != current);
    let upgraded = if older { header_for::<T>() } else { vec![] };
    for (k, rec) in records.iter().enumerate() {
        let row = if rec.get(i) != Some(current.as_str()) {
            let fields = match rec.get(i) {
                Some("2") => upgrade_v2(&headers, rec),
                _ => upgrade_v4(&headers, rec),
            };
            let values: Vec<&str> =
                upgraded.iter().map(|h| fields.get(h).map_or("", String::as_str)).collect();
            csv::StringRecord::from(values)
                .deserialize(Some(&csv::StringRecord::from(upgraded.clone())))
        } else {
            rec.deserialize(Some(&headers))
        };
        out.push(row.with_context(|| format!("{}: row {}", path.display(), k + 2))?);
    }
    Ok(out)
}

/// A row of schema version 2 as the columns of the current version, so results written before stay
/// readable: `method_params` `{"method": …, "regularizer": …}` becomes the method value (see
/// [`crate::config::legacy`]), train.csv's `train_reg`/`kl`/`align` become `terms`, and the build columns
/// version 2 did not have stay empty (`git_dirty` unknown).
fn upgrade_v2(
    headers: &csv::StringRecord,
    rec: &csv::StringRecord,
) -> std::collections::BTreeMap<String, String> {
    let mut f = upgrade_v4(headers, rec);
    if let Some(params) =
        f.get("method_params").and_then(|p| serde_json::from_str::<toml::Value>(p).ok())
        && let Some(run) = params.as_table()
    {
        let mut old = toml::Table::new();
        if let Some(m) = run.get("method") {
            old.insert(
                "train".into(),
                toml::Value::Table(toml::Table::from_iter([("method".to_string(), m.clone())])),
            );
        }
        if let Some(r) = run.get("regularizer") {
            old.insert("regularizer".into(), r.clone());
        }
        if let Some((method, _)) = crate::config::legacy::method_of(&old) {
            f.insert(
                "method_params".into(),
                crate::config::keys::canonical(&toml::Value::Table(method)),
            );
        }
    }
    let penalty = if f.get("method").is_some_and(|m| m == "gnr") { "gnr" } else { "gfa" };
    let terms: Vec<String> = [(penalty, "train_reg"), ("kl", "kl"), ("align", "align")]
        .iter()
        .filter_map(|(name, col)| {
            f.get(*col).filter(|v| !v.is_empty()).map(|v| format!("{name}={v}"))
        })
        .collect();
    let mut terms = terms;
    terms.sort();
    f.insert("terms".into(), terms.join(";"));
    f.entry("git_rev".into()).or_default();
    f
}

/// A row of schema version 3 or 4 as the columns of the current version. The numerics columns
/// version 4 did not have read as [`Numerics::BEFORE_RECORDING`] (`fp32`, `false`: gfa had
/// not run on a GPU then, and `--deterministic` did not exist; docs/csv-schema.md, "Older
/// versions"); the other columns version 3 did not have (train.csv's diagnostics and
/// validation) stay empty.
fn upgrade_v4(
    headers: &csv::StringRecord,
    rec: &csv::StringRecord,
) -> std::collections::BTreeMap<String, String> {
    let mut f: std::collections::BTreeMap<String, String> =
        headers.iter().zip(rec.iter()).map(|(h, v)| (h.to_string(), v.to_string())).collect();
    f.insert("schema_version".into(), SCHEMA_VERSION.to_string());
    let old = Numerics::BEFORE_RECORDING;
    f.insert("precision".into(), old.precision.to_string());
    f.insert("deterministic".into(), old.deterministic.to_string());
    f
}

/// Concatenate per-run CSV files (all with the same header) into `out`, atomically.
/// Files that do not exist are skipped; a header mismatch is an error.
pub fn concat_csv(inputs: &[std::path::PathBuf], out: &Path) -> Result<usize> {
    let mut header: Option<(String, std::path::PathBuf)> = None;
    let mut body = Vec::new();
    let mut rows = 0;
    for p in inputs {
        if !p.exists() {
            continue;
        }
        let text = fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let mut lines = text.split_inclusive('\n');
        let Some(h) = lines.next() else { continue };
        match &header {
            None => header = Some((h.to_string(), p.clone())),
            Some((h0, p0)) if h0 != h => {
                // Name the file of another version (the other one may be healthy).
                let other = |path: &Path| -> Option<String> {
                    let mut r = csv::Reader::from_path(path).ok()?;
                    let i = r.headers().ok()?.iter().position(|c| c == "schema_version")?;
                    let v = r.records().next()?.ok()?.get(i)?.to_string();
                    (v != SCHEMA_VERSION.to_string()).then_some(v)
                };
                let (odd, version, healthy) = match (other(p), other(p0)) {
                    (None, Some(v)) => (p0.as_path(), v, p.as_path()),
                    (Some(v), _) => (p.as_path(), v, p0.as_path()),
                    (None, None) => (p.as_path(), "?".to_string(), p0.as_path()),
                };
                bail!(
                    "{}: schema_version {version} and a header that differs from {}'s (version \
                     {SCHEMA_VERSION}): it was written by another gfa version; rerun that run \
                     with this gfa (remove its folder and `gfa run` again) or keep it in a \
                     results folder of its own",
                    odd.display(),
                    healthy.display()
                )
            }
            _ => {}
        }
        for l in lines {
            if l.trim().is_empty() {
                continue;
            }
            body.write_all(l.as_bytes())?;
            if !l.ends_with('\n') {
                body.push(b'\n');
            }
            rows += 1;
        }
    }
    let Some((h, _)) = header else {
        if out.exists() {
            fs::remove_file(out)?;
        }
        return Ok(0);
    };
    let mut all = h.into_bytes();
    all.extend_from_slice(&body);
    write_atomic(out, &all)?;
    Ok(rows)
}

/// Header of an empty file of each kind (serde cannot derive it without a row).
pub fn header_for<T: Serialize + Default>() -> Vec<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(T::default()).expect("a default row serializes");
    let bytes = w.into_inner().expect("writing to a Vec cannot fail");
    let text = String::from_utf8_lossy(&bytes);
    text.lines().next().unwrap_or("").split(',').map(str::to_string).collect()
}

/// A run's rows in the results files: the key of its CSV rows and its `manifest.csv` row.
impl RunSpec {
    /// The identifying columns of this run's CSV rows.
    pub fn key(&self) -> RunKey {
        RunKey::of(
            &self.experiment,
            &self.run_id,
            self.seed,
            &self.config.model,
            &self.config.method,
        )
    }

    /// The run's row of `manifest.csv`.
    pub fn manifest_row(&self) -> ManifestRow {
        let k = self.key();
        ManifestRow {
            schema_version: SCHEMA_VERSION,
            experiment: self.experiment.clone(),
            index: self.index,
            run_id: self.run_id.clone(),
            seed: self.seed,
            model: k.model,
            method: k.method,
            lambda: k.lambda,
            axes: self.axes_text(),
            est_cost_mgrad: crate::config::cost::estimate_cost(self),
            git_rev: build_info::GIT_REV.into(),
            git_dirty: Some(build_info::GIT_DIRTY == "true"),
            libtorch: build_info::LIBTORCH.into(),
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn run_ids_that_parse_as_huge_floats_are_not_non_finite() {
        let headers = csv::StringRecord::from(vec!["run_id", "clean_acc"]);
        // `8815e5339997` is 8815 × 10^5339997 to a float parser: infinite, but a run id.
        let ok = csv::StringRecord::from(vec!["8815e5339997", "0.5"]);
        assert_eq!(non_finite_cell(&headers, &ok), None);
        for bad in ["NaN", "inf", "-inf", "+Infinity"] {
            let rec = csv::StringRecord::from(vec!["8815e5339997", bad]);
            assert_eq!(non_finite_cell(&headers, &rec), Some(("clean_acc".into(), bad.into())));
        }
    }
    use super::*;

    fn key() -> RunKey {
        RunKey {
            experiment: "e".into(),
            run_id: "abc".into(),
            seed: 3,
            model: "cnn".into(),
            method: "gfa".into(),
            lambda: Some(0.5),
            method_params: "{\"lambda\":0.5}".into(),
        }
    }

    #[test]
    fn round_trip_with_empty_cells() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train.csv");
        let rows = vec![TrainRow {
            epoch: 1,
            lr: 0.1,
            train_loss: 2.0,
            train_acc: 0.3,
            test_acc: Some(0.25),
            terms: join_pairs([("gfa", 0.1 + 0.2), ("kl", 1.0 / 3.0)]),
            seconds: 1.5,
            device: "cpu".into(),
            ..TrainRow::keyed(&key())
        }];
        write_rows(&p, &rows).unwrap();
        let text = fs::read_to_string(&p).unwrap();
        assert!(text.contains(",,"), "None must be an empty cell: {text}");
        let back: Vec<TrainRow> = read_rows(&p).unwrap();
        assert_eq!(back, rows);
        // Named terms read back bit for bit.
        let terms = back[0].terms().unwrap();
        assert_eq!((terms["gfa"], terms["kl"]), (0.1 + 0.2, 1.0 / 3.0));
        assert!(parse_pairs("gfa=x").is_err() && parse_pairs("gfa").is_err());
    }

    /// CSV cells hold the shortest decimal that reads back to the same f64, so a report built
    /// from the CSVs sees the values the run computed, bit for bit.
    #[test]
    fn floats_read_back_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train.csv");
        let values = [0.09049479166666667, 1.390711545944214, 0.0002500000000000001, 1e-300];
        let rows: Vec<TrainRow> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| TrainRow {
                epoch: i + 1,
                lr: v * 0.3,
                train_loss: v,
                lambda_now: Some(v / 3.0),
                train_acc: v,
                test_acc: Some(1.0 - v),
                seconds: v * 11.0,
                ..TrainRow::keyed(&key())
            })
            .collect();
        write_rows(&p, &rows).unwrap();
        let back: Vec<TrainRow> = read_rows(&p).unwrap();
        let bits = |r: &TrainRow| {
            [r.lr, r.train_loss, r.lambda_now.unwrap(), r.train_acc, r.test_acc.unwrap(), r.seconds]
                .map(f64::to_bits)
        };
        assert_eq!(
            back.iter().map(bits).collect::<Vec<_>>(),
            rows.iter().map(bits).collect::<Vec<_>>()
        );
    }

    #[test]
    fn empty_file_has_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("checks.csv");
        write_rows::<CheckRow>(&p, &[]).unwrap();
        let text = fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("schema_version,experiment,run_id,seed,"), "{text}");
        assert!(read_rows::<CheckRow>(&p).unwrap().is_empty());
    }

    #[test]
    fn wrong_schema_version_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        fs::write(&p, "schema_version,a\n999,1\n").unwrap();
        let e = read_rows::<CheckRow>(&p).unwrap_err();
        assert!(format!("{e:#}").contains("schema_version"));
    }

    /// Results written with schema 2 (e.g. the committed `results/methods`) read as the current
    /// version, computed at fp32 with the deterministic switches off.
    #[test]
    fn schema_2_rows_are_upgraded_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train.csv");
        let v2 = concat!(
            "schema_version,experiment,run_id,seed,model,method,lambda,method_params,epoch,lr,",
            "train_loss,train_reg,train_acc,test_acc,lambda_now,tap_cos,tap_reg,kl,align,collapse,",
            "seconds,device,git_rev\n",
            "2,quick,58fc509420f9,0,cnn,gfa,0.3,\"{\"\"method\"\":{\"\"kind\"\":\"\"gfa\"\"},",
            "\"\"regularizer\"\":{\"\"kind\"\":\"\"gfa\"\",\"\"lambda\"\":0.3,\"\"layers\"\":\"\"deep\"\",",
            "\"\"task_loss\"\":\"\"ce\"\"}}\",1,0.001,2.3,0.4723698399448395,0.1,0.1075,0.3,",
            "input=0.6,input=0.4,,,false,12.5,cpu,70f138e1a2b3\n",
        );
        fs::write(&p, v2).unwrap();
        let rows: Vec<TrainRow> = read_rows(&p).unwrap();
        let r = &rows[0];
        assert_eq!(r.schema_version, SCHEMA_VERSION);
        assert_eq!(r.method_params, r#"{"kind":"gfa","lambda":0.3,"layers":"deep"}"#);
        assert_eq!(r.terms().unwrap()["gfa"], 0.4723698399448395);
        assert_eq!(
            (r.git_rev.as_str(), r.git_dirty, r.libtorch.as_str()),
            ("70f138e1a2b3", None, "")
        );
        assert_eq!((r.lambda, r.train_loss, r.tap_cos.as_str()), (Some(0.3), 2.3, "input=0.6"));
        assert_eq!(r.numerics(), Numerics::BEFORE_RECORDING);
    }

    /// A train.csv of schema 3 (no diagnostics or validation columns) reads as version 4 with
    /// those columns empty and every other value unchanged.
    #[test]
    fn schema_3_rows_are_upgraded_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train.csv");
        let row = TrainRow {
            epoch: 2,
            train_loss: 0.09049479166666667,
            test_acc: Some(0.5),
            tap_cos: "input=0.1".into(),
            seconds: 3.5,
            device: "cpu".into(),
            steps: Some(40),
            grad_norm: Some(1.5),
            dead_frac: "conv1=0.25".into(),
            val_robust_acc: Some(0.25),
            best_epoch: Some(1),
            ..TrainRow::keyed(&RunKey { run_id: "abc".into(), ..RunKey::default() })
        };
        write_rows(&p, std::slice::from_ref(&row)).unwrap();
        let text = fs::read_to_string(&p).unwrap();
        let new = ["steps", "grad_norm", "dead_frac", "pred_entropy", "collapse_step"];
        let new = [&new[..], &["val_clean_acc", "val_robust_acc", "best_epoch"]].concat();
        let new = [&new[..], &["precision", "deterministic"]].concat();
        let table: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
        let keep: Vec<usize> =
            (0..table[0].len()).filter(|&i| !new.contains(&table[0][i])).collect();
        assert_eq!(keep.len() + new.len(), table[0].len(), "every new column is in the file");
        let v3: String = table
            .iter()
            .enumerate()
            .map(|(k, cells)| {
                let mut c: Vec<&str> = keep.iter().map(|&i| cells[i]).collect();
                if k > 0 {
                    c[0] = "3";
                }
                c.join(",") + "\n"
            })
            .collect();
        fs::write(&p, v3).unwrap();
        let back: Vec<TrainRow> = read_rows(&p).unwrap();
        let want = TrainRow {
            steps: None,
            grad_norm: None,
            dead_frac: String::new(),
            val_robust_acc: None,
            best_epoch: None,
            precision: Precision::Fp32,
            deterministic: false,
            ..row
        };
        assert_eq!(back, vec![want]);
    }

    /// The numerics columns come after a row's own and before the build's, and read back as
    /// written; a row made with `keyed` holds the numerics this process computes with.
    #[test]
    fn numerics_columns_round_trip_before_the_build_columns() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("eval.csv");
        let keyed = EvalRow::keyed(&key());
        assert_eq!(keyed.numerics(), Numerics::current());
        let rows: Vec<EvalRow> = [(Precision::Tf32, true), (Precision::Fp32, false)]
            .into_iter()
            .map(|(precision, deterministic)| EvalRow {
                attack: "pgd".into(),
                robust_acc: Some(0.09049479166666667),
                precision,
                deterministic,
                ..keyed.clone()
            })
            .collect();
        write_rows(&p, &rows).unwrap();
        let text = fs::read_to_string(&p).unwrap();
        let header = text.lines().next().unwrap();
        assert!(
            header.ends_with(",device,precision,deterministic,git_rev,git_dirty,libtorch"),
            "{header}"
        );
        assert!(text.lines().nth(1).unwrap().contains(",tf32,true,"), "{text}");
        assert_eq!(read_rows::<EvalRow>(&p).unwrap(), rows);
    }

    /// A version-4 file (no numerics columns) reads as fp32 with the deterministic switches
    /// off, every other value unchanged; a version-5 file without them is refused, naming the
    /// column, not given a default.
    #[test]
    fn schema_4_rows_read_as_fp32_and_a_schema_5_file_needs_the_columns() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("eval.csv");
        let row = EvalRow {
            attack: "pgd".into(),
            eps: Some(8.0 / 255.0),
            robust_acc: Some(0.09049479166666667),
            precision: Precision::Tf32,
            deterministic: true,
            ..EvalRow::keyed(&key())
        };
        write_rows(&p, std::slice::from_ref(&row)).unwrap();
        let text = fs::read_to_string(&p).unwrap();
        let table: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
        let keep: Vec<usize> = (0..table[0].len())
            .filter(|&i| !["precision", "deterministic"].contains(&table[0][i]))
            .collect();
        assert_eq!(keep.len() + 2, table[0].len());
        let without = |version: &str| -> String {
            table
                .iter()
                .enumerate()
                .map(|(k, cells)| {
                    let mut c: Vec<&str> = keep.iter().map(|&i| cells[i]).collect();
                    if k > 0 {
                        c[0] = version;
                    }
                    c.join(",") + "\n"
                })
                .collect()
        };
        fs::write(&p, without("4")).unwrap();
        check_csv_file(&p).unwrap();
        let back: Vec<EvalRow> = read_rows(&p).unwrap();
        let old = Numerics::BEFORE_RECORDING;
        let want = EvalRow { precision: old.precision, deterministic: old.deterministic, ..row };
        assert_eq!(back, vec![want]);
        assert_eq!((old.precision, old.deterministic), (Precision::Fp32, false));

        fs::write(&p, without("5")).unwrap();
        let e = format!("{:#}", read_rows::<EvalRow>(&p).unwrap_err());
        assert!(e.contains("eval.csv") && e.contains("precision"), "{e}");
        fs::write(&p, without("6")).unwrap();
        let e = format!("{:#}", check_csv_file(&p).unwrap_err());
        assert!(e.contains("schema_version \"6\"") && e.contains("5 (and 2, 3, 4"), "{e}");
    }

    #[test]
    fn concat_keeps_one_header_and_all_rows() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.csv");
        let b = dir.path().join("b.csv");
        fs::write(&a, "h1,h2\n1,2\n3,4\n").unwrap();
        fs::write(&b, "h1,h2\n5,6").unwrap();
        let out = dir.path().join("all.csv");
        let n = concat_csv(&[a, dir.path().join("missing.csv"), b.clone()], &out).unwrap();
        assert_eq!(n, 3);
        assert_eq!(fs::read_to_string(&out).unwrap(), "h1,h2\n1,2\n3,4\n5,6\n");
        fs::write(&b, "h1,h3\n5,6\n").unwrap();
        assert!(concat_csv(&[dir.path().join("a.csv"), b], &out).is_err());
    }
}
