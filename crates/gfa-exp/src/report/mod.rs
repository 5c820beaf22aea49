//! `gfa report DIR`: aggregate a results folder over seeds into `summary.csv` and the Markdown
//! tables of docs/method.md §9 (`tables/T1.md` … `T6.md`, all of them in `report.md`).
//!
//! One module per table (`t1` … `t6`, each a `table(res, ctx)` listed in [`build`]; the paper's
//! claims in [`claims`]); this module loads the CSVs, labels the runs, writes `summary.csv` and
//! holds what the tables share: the typed keys and the accuracy cell (`acc_cell`).
//!
//! Reads only CSVs. Per-run numbers are computed first, then each cell is the mean ± sample
//! standard deviation over the runs that differ only by seed. Accuracies are shown in percent.
//! Two protocols are kept apart in every table:
//! - **paper**: attack preset `torchattacks`, subset `all_correct` (the paper's likely setup);
//! - **standard**: preset `reference`, every test point, with AutoAttack.
//!
//! The paper's claims are printed next to the measured numbers: GFA − ADV of up to +15.2 points
//! under APGD and +24.7 under FGSM, and DeepFool/EAD perturbations 20–30× those of standard
//! training (Lin et al., "DeepDefense: Layer-Wise Gradient-Feature Alignment", arXiv 2511.13749).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::records::{
    CheckRow, EvalRow, GfaValueRow, RunKey, SCHEMA_VERSION, TrainRow, read_rows, write_rows,
};
use crate::stats::wilson;
use crate::store::ExperimentDir;
use gfa_data::atomic::write_atomic;

pub mod claims;
mod t1;
mod t2;
mod t3;
mod t4;
mod t5;
mod t6;

/// The paper's headline gains of GFA over PGD adversarial training, in accuracy points.
pub const PAPER_GAIN_APGD: f64 = 15.2;
pub const PAPER_GAIN_FGSM: f64 = 24.7;
/// The paper's perturbation-size ratio to standard training (DeepFool, EAD).
pub const PAPER_RATIO: &str = "20–30×";

/// `summary.csv`: one row per (group of runs differing only by seed, measurement).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    pub schema_version: u32,
    pub experiment: String,
    pub model: String,
    pub method: String,
    pub lambda: Option<f64>,
    pub method_params: String,
    /// Short name of the method configuration used in the tables.
    pub label: String,
    /// `eval`, `worst_case`, `train` or `gfa_value`.
    pub source: String,
    pub attack: String,
    pub preset: String,
    pub norm: String,
    pub eps_text: String,
    pub eps: Option<f64>,
    pub mode: String,
    pub subset: String,
    /// `gfa_value` rows: split and tap.
    pub split: String,
    pub tap: String,
    pub metric: String,
    pub mean: f64,
    /// Sample standard deviation over seeds (empty with one seed).
    pub std: Option<f64>,
    pub n_seeds: usize,
    /// Evaluated points per run (eval rows).
    pub n: Option<usize>,
    /// Each run's value, `seed:value` pairs joined by `;` in seed order (`0:0.512;1:0.498`);
    /// values in the shortest form that reads back to the same `f64` ([`SummaryRow::seeds`]).
    #[serde(default)]
    pub per_seed: String,
}

impl SummaryRow {
    /// The per-seed values of `per_seed`, or an error naming the pair that does not parse.
    pub fn seeds(&self) -> Result<Vec<(u64, f64)>> {
        self.per_seed
            .split(';')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let parsed =
                    p.split_once(':').and_then(|(s, v)| Some((s.parse().ok()?, v.parse().ok()?)));
                parsed.ok_or_else(|| anyhow::anyhow!("per_seed: {p:?} is not seed:value"))
            })
            .collect()
    }
}

/// One run's value of a measurement and the run's seed.
type SeedValue = (u64, f64);

/// `per_seed` text of `(seed, value)` pairs, sorted by seed.
fn per_seed_text(values: &[SeedValue]) -> String {
    let mut v = values.to_vec();
    v.sort_by_key(|&(s, _)| s);
    v.iter().map(|(s, x)| format!("{s}:{x}")).collect::<Vec<_>>().join(";")
}

/// Mean and sample standard deviation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub std: Option<f64>,
    pub n: usize,
}

impl Stat {
    pub fn of(xs: &[f64]) -> Option<Stat> {
        if xs.is_empty() {
            return None;
        }
        let n = xs.len();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let std = (n > 1).then(|| {
            (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0)).sqrt()
        });
        Some(Stat { mean, std, n })
    }

    /// `mean ± std` scaled by `scale` with `digits` decimals.
    pub fn fmt(&self, scale: f64, digits: usize) -> String {
        match self.std {
            Some(s) => format!("{:.d$} ± {:.d$}", self.mean * scale, s * scale, d = digits),
            None => format!("{:.d$}", self.mean * scale, d = digits),
        }
    }
}

/// Which protocol a (preset, subset) pair is.
pub fn protocol(preset: &str, subset: &str) -> String {
    match (preset, subset) {
        ("torchattacks", "all_correct") => "paper".into(),
        ("reference", "all") => "standard".into(),
        (p, s) => format!("{p}/{s}"),
    }
}

/// Table labels for method configurations: `method`, `method λ=x`, and, when several
/// configurations share both, the parameters that tell them apart (`gfa λ=0.3 layers=first`),
/// else `#k`.
pub fn labels(keys: &[RunKey]) -> BTreeMap<(String, String), String> {
    let mut configs: BTreeSet<(String, Option<String>, String)> = BTreeSet::new();
    for k in keys {
        configs.insert((
            k.method.clone(),
            k.lambda.map(|l| format!("{l}")),
            k.method_params.clone(),
        ));
    }
    let mut groups: BTreeMap<(String, Option<String>), Vec<String>> = BTreeMap::new();
    for (m, l, p) in &configs {
        groups.entry((m.clone(), l.clone())).or_default().push(p.clone());
    }
    let mut out = BTreeMap::new();
    for ((m, l), params) in groups {
        let base = match &l {
            Some(l) => format!("{m} λ={l}"),
            None => m.clone(),
        };
        if params.len() == 1 {
            out.insert((m.clone(), params[0].clone()), base);
            continue;
        }
        let flat: Vec<BTreeMap<String, String>> = params.iter().map(|p| flatten_json(p)).collect();
        let keys: BTreeSet<&String> = flat.iter().flat_map(|f| f.keys()).collect();
        let differing: Vec<&String> = keys
            .into_iter()
            .filter(|k| flat.iter().any(|f| f.get(*k) != flat[0].get(*k)))
            .collect();
        let suffixes: Vec<String> = flat
            .iter()
            .map(|f| {
                differing
                    .iter()
                    .map(|k| {
                        let leaf = k.rsplit('.').next().unwrap_or(k);
                        format!("{leaf}={}", f.get(*k).map_or("-", String::as_str))
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let distinct: BTreeSet<&String> = suffixes.iter().collect();
        for (i, (p, suffix)) in params.iter().zip(&suffixes).enumerate() {
            let label = if distinct.len() == params.len() && !suffix.is_empty() {
                format!("{base} {suffix}")
            } else {
                format!("{base} #{}", i + 1)
            };
            out.insert((m.clone(), p.clone()), label);
        }
    }
    out
}

/// `method_params` JSON without the method's `lambda` (unchanged if it is not JSON).
fn without_lambda(params: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(params) {
        Ok(mut v) => {
            if let Some(m) = v.as_object_mut() {
                m.remove("lambda");
            }
            v.to_string()
        }
        Err(_) => params.to_string(),
    }
}

/// A JSON object's leaves as `dotted.path → text` (strings unquoted); not JSON: empty.
fn flatten_json(text: &str) -> BTreeMap<String, String> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&path, v, out);
                }
            }
            serde_json::Value::String(s) => {
                out.insert(prefix.to_string(), s.clone());
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        walk("", &v, &mut out);
    }
    out
}

/// What `report` wrote.
#[derive(Debug, Clone)]
pub struct ReportOutput {
    pub markdown: String,
    pub written: Vec<PathBuf>,
    pub summary: Vec<SummaryRow>,
}

fn read_opt<T: serde::de::DeserializeOwned + Serialize + Default>(p: &Path) -> Result<Vec<T>> {
    if p.is_file() { read_rows(p) } else { Ok(vec![]) }
}

/// All CSVs of a results folder (experiment-level files are regenerated from run folders).
#[derive(Debug, Clone, Default)]
pub struct Results {
    pub eval: Vec<EvalRow>,
    pub train: Vec<TrainRow>,
    pub checks: Vec<CheckRow>,
    pub gfa_value: Vec<GfaValueRow>,
    /// Per `eval.csv` row, its per-point outcomes (`points.csv`; empty for older folders).
    pub points: BTreeMap<crate::points::RowKey, crate::points::Outcomes>,
    /// Run id → the grid keys it varies (`manifest.csv`'s `axes`; empty without one).
    pub axes: BTreeMap<String, String>,
}

impl Results {
    pub fn load(dir: &Path) -> Result<Results> {
        if !dir.is_dir() {
            bail!("{}: no such results folder (expected results/<experiment>)", dir.display());
        }
        let exp = ExperimentDir { root: dir.to_path_buf() };
        if !exp.runs()?.is_empty() {
            crate::runner::collect_all(&exp)?;
        }
        let mut r = Results {
            eval: read_opt(&dir.join("eval.csv"))?,
            train: read_opt(&dir.join("train.csv"))?,
            checks: read_opt(&dir.join("checks.csv"))?,
            gfa_value: read_opt(&dir.join("gfa_value.csv"))?,
            points: BTreeMap::new(),
            axes: crate::phase::manifest_axes(dir)?,
        };
        let points = dir.join("points.csv");
        if points.is_file() {
            r.points = crate::points::read_points(&points, &r.eval)?;
        }
        if r.eval.is_empty() && r.train.is_empty() && r.gfa_value.is_empty() {
            bail!(
                "{}: no results yet (no eval.csv, train.csv or gfa_value.csv rows)",
                dir.display()
            );
        }
        Ok(r)
    }

    fn keys(&self) -> Vec<RunKey> {
        let mut keys: Vec<RunKey> = self.eval.iter().map(EvalRow::key).collect();
        keys.extend(self.train.iter().map(TrainRow::key));
        keys.extend(self.gfa_value.iter().map(GfaValueRow::key));
        keys
    }
}

/// A budget of a threat model: the norm and the eps as the grid writes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Budget {
    pub norm: String,
    pub eps_text: String,
}

impl Budget {
    pub(crate) fn of(r: &EvalRow) -> Budget {
        Budget { norm: r.norm.clone(), eps_text: r.eps_text.clone() }
    }
}

impl std::fmt::Display for Budget {
    /// `norm eps`, as the tables' headers write it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.norm, self.eps_text)
    }
}

/// A run's worst case over the suite at one budget of one protocol.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct WorstKey {
    pub run_id: String,
    pub protocol: String,
    pub budget: Budget,
}

/// Per-run worst case over the suite at each (protocol, norm, eps): the lowest cumulative
/// robust accuracy (the per-sample worst case, never an average of attacks).
pub(crate) fn worst_cases(eval: &[EvalRow]) -> BTreeMap<WorstKey, f64> {
    worst_rows(eval).into_iter().filter_map(|(k, r)| Some((k, r.robust_acc?))).collect()
}

/// The `eval.csv` row behind each of [`worst_cases`]: the cumulative row with the lowest robust
/// accuracy (its per-point outcomes are the run's per-sample worst case).
pub(crate) fn worst_rows(eval: &[EvalRow]) -> BTreeMap<WorstKey, &EvalRow> {
    let mut out: BTreeMap<WorstKey, &EvalRow> = BTreeMap::new();
    for r in eval.iter().filter(|r| r.mode == "cumulative") {
        let (Some(acc), false) = (r.robust_acc, r.eps_text.is_empty()) else { continue };
        let k = WorstKey {
            run_id: r.run_id.clone(),
            protocol: protocol(&r.preset, &r.subset),
            budget: Budget::of(r),
        };
        let e = out.entry(k).or_insert(r);
        if acc < e.robust_acc.unwrap_or(f64::INFINITY) {
            *e = r;
        }
    }
    out
}

/// A row of the tables: the runs of one model and method configuration, over seeds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Group {
    model: String,
    /// The configuration's label ([`labels`]).
    label: String,
}

impl Group {
    /// The row's first two cells: model and method.
    fn cells(&self) -> Vec<String> {
        vec![self.model.clone(), self.label.clone()]
    }
}

struct Ctx {
    labels: BTreeMap<(String, String), String>,
}

impl Ctx {
    fn label(&self, method: &str, params: &str) -> String {
        self.labels
            .get(&(method.to_string(), params.to_string()))
            .cloned()
            .unwrap_or_else(|| method.into())
    }
    fn group(&self, model: &str, method: &str, params: &str) -> Group {
        Group { model: model.to_string(), label: self.label(method, params) }
    }
    fn group_of(&self, r: &EvalRow) -> Group {
        self.group(&r.model, &r.method, &r.method_params)
    }
}

/// Build the summary and tables of a results folder and write them.
pub fn report(dir: &Path) -> Result<ReportOutput> {
    let res = Results::load(dir)?;
    let out = build(&res);
    let mut written = Vec::new();
    let summary_path = dir.join("summary.csv");
    write_rows(&summary_path, &out.summary)?;
    written.push(summary_path);
    for (name, text) in &out.tables {
        let p = dir.join("tables").join(format!("{name}.md"));
        write_atomic(&p, text.as_bytes())?;
        written.push(p);
    }
    let p = dir.join("report.md");
    write_atomic(&p, out.markdown.as_bytes())?;
    written.push(p);
    Ok(ReportOutput { markdown: out.markdown, written, summary: out.summary })
}

/// Tables and summary of loaded results (no I/O).
pub struct Built {
    pub summary: Vec<SummaryRow>,
    pub tables: Vec<(String, String)>,
    pub markdown: String,
}

pub fn build(res: &Results) -> Built {
    let ctx = Ctx { labels: labels(&res.keys()) };
    let summary = summarize(res, &ctx);
    // One line per table: its name and its module's `table`.
    let tables = vec![
        ("T1".to_string(), t1::table(res, &ctx)),
        ("T2".to_string(), t2::table(res, &ctx)),
        ("T3".to_string(), t3::table(res, &ctx)),
        ("T4".to_string(), t4::table(res, &ctx)),
        ("T5".to_string(), t5::table(res, &ctx)),
        ("T6".to_string(), t6::table(res)),
    ];
    let experiment = res
        .eval
        .first()
        .map(|r| r.experiment.clone())
        .or_else(|| res.train.first().map(|r| r.experiment.clone()))
        .unwrap_or_default();
    let mut md = format!("# Results of experiment `{experiment}`\n\n");
    md.push_str(
        "Accuracies in %. With one seed, an accuracy is followed by its Wilson 95 % score \
         interval [low, high]: the true accuracies on the population the n points were drawn \
         from that these n points do not rule out. With several seeds, mean ± sample std over \
         seeds (each run's value is in eval.csv). GFA − ADV compares the two \
         methods on the same points: with one seed, the paired difference with Newcombe's 95 % \
         interval, and the exact McNemar p-value, the chance of points this lopsided between \
         the two methods were both equally robust; with several seeds, one p-value per seed. \
         Protocols: **paper** = torchattacks presets on the points every model classifies \
         correctly; **standard** = reference presets on all points.\n\n",
    );
    for (_, t) in &tables {
        md.push_str(t);
        md.push('\n');
    }
    Built { summary, tables, markdown: md }
}

/// `summary.csv`'s groups while they fill: per key (everything but the run and the value), the
/// first row's fields and the values of every run.
#[derive(Default)]
struct Summary {
    groups: BTreeMap<Vec<String>, (SummaryRow, Vec<SeedValue>)>,
}

impl Summary {
    /// A row with the run's key and `source`, the measurement left to the caller.
    fn base(k: &RunKey, label: String, source: &str) -> SummaryRow {
        SummaryRow {
            schema_version: SCHEMA_VERSION,
            experiment: k.experiment.clone(),
            model: k.model.clone(),
            method: k.method.clone(),
            lambda: k.lambda,
            method_params: k.method_params.clone(),
            label,
            source: source.into(),
            ..Default::default()
        }
    }

    /// The value `v` of the run with `seed` of the measurement `proto` describes (none:
    /// nothing).
    fn add(&mut self, proto: SummaryRow, seed: u64, v: Option<f64>) {
        let Some(v) = v else { return };
        let k = vec![
            proto.model.clone(),
            proto.label.clone(),
            proto.source.clone(),
            proto.attack.clone(),
            proto.preset.clone(),
            proto.norm.clone(),
            proto.eps_text.clone(),
            proto.mode.clone(),
            proto.subset.clone(),
            proto.split.clone(),
            proto.tap.clone(),
            proto.metric.clone(),
        ];
        self.groups.entry(k).or_insert_with(|| (proto, vec![])).1.push((seed, v));
    }

    fn eval(&mut self, res: &Results, ctx: &Ctx) {
        for r in &res.eval {
            let label = ctx.label(&r.method, &r.method_params);
            for (metric, v) in [
                ("clean_acc", Some(r.clean_acc)),
                ("robust_acc", r.robust_acc),
                ("success_rate", r.success_rate),
                ("median_l1", r.median_l1),
                ("median_l2", r.median_l2),
                ("median_linf", r.median_linf),
            ] {
                let s = SummaryRow {
                    attack: r.attack.clone(),
                    preset: r.preset.clone(),
                    norm: r.norm.clone(),
                    eps_text: r.eps_text.clone(),
                    eps: r.eps,
                    mode: r.mode.clone(),
                    subset: r.subset.clone(),
                    metric: metric.into(),
                    n: Some(r.n),
                    ..Self::base(&r.key(), label.clone(), "eval")
                };
                self.add(s, r.seed, v);
            }
        }
    }

    fn worst_cases(&mut self, res: &Results, ctx: &Ctx) {
        for (k, acc) in &worst_cases(&res.eval) {
            let Some(r) = res.eval.iter().find(|r| r.run_id == k.run_id) else { continue };
            let s = SummaryRow {
                attack: "suite".into(),
                preset: k.protocol.clone(),
                norm: k.budget.norm.clone(),
                eps_text: k.budget.eps_text.clone(),
                metric: "robust_acc".into(),
                ..Self::base(&r.key(), ctx.label(&r.method, &r.method_params), "worst_case")
            };
            self.add(s, r.seed, Some(*acc));
        }
    }

    /// Training: the last epoch of each run.
    fn train(&mut self, res: &Results, ctx: &Ctx) {
        let mut last: BTreeMap<String, &TrainRow> = BTreeMap::new();
        for r in &res.train {
            let e = last.entry(r.run_id.clone()).or_insert(r);
            if r.epoch > e.epoch {
                *e = r;
            }
        }
        for r in last.values() {
            let label = ctx.label(&r.method, &r.method_params);
            for (metric, v) in [
                ("final_train_loss", Some(r.train_loss)),
                ("final_train_acc", Some(r.train_acc)),
                ("final_test_acc", r.test_acc),
            ] {
                let s = SummaryRow {
                    metric: metric.into(),
                    ..Self::base(&r.key(), label.clone(), "train")
                };
                self.add(s, r.seed, v);
            }
        }
    }

    fn gfa_value(&mut self, res: &Results, ctx: &Ctx) {
        for r in &res.gfa_value {
            let s = SummaryRow {
                split: r.split.clone(),
                tap: r.tap.clone(),
                metric: "gfa_value".into(),
                n: Some(r.n),
                ..Self::base(&r.key(), ctx.label(&r.method, &r.method_params), "gfa_value")
            };
            self.add(s, r.seed, Some(r.value));
        }
    }

    /// Each group's row with the mean and sample std over its runs.
    fn rows(self) -> Vec<SummaryRow> {
        self.groups
            .into_values()
            .map(|(mut s, values)| {
                let xs: Vec<f64> = values.iter().map(|&(_, v)| v).collect();
                let st = Stat::of(&xs).expect("non-empty group");
                s.per_seed = per_seed_text(&values);
                s.mean = st.mean;
                s.std = st.std;
                s.n_seeds = st.n;
                s
            })
            .collect()
    }
}

/// `summary.csv`: every measurement of every run, aggregated over seeds.
fn summarize(res: &Results, ctx: &Ctx) -> Vec<SummaryRow> {
    let mut s = Summary::default();
    s.eval(res, ctx);
    s.worst_cases(res, ctx);
    s.train(res, ctx);
    s.gfa_value(res, ctx);
    s.rows()
}

/// Rows of a Markdown table.
fn md_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n|{}\n", header.join(" | "), " --- |".repeat(header.len()));
    for r in rows {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    s
}

/// Fractions in percent: mean ± std over runs.
fn pct(xs: &[f64]) -> String {
    Stat::of(xs).map(|s| s.fmt(100.0, 1)).unwrap_or_else(|| "—".into())
}

/// One measured accuracy per run: the fraction and the number of points it is over.
type Acc = (f64, usize);

/// The tables' accuracy cell: with one run, the accuracy and its Wilson 95 % interval; with
/// several, mean ± std over seeds.
fn acc_cell(xs: &[Acc]) -> String {
    match xs {
        [] => "—".into(),
        [(value, n)] => {
            let k = (value * *n as f64).round() as u64;
            wilson(k, *n as u64).map_or("—".into(), |w| w.pct(1))
        }
        _ => {
            let v: Vec<f64> = xs.iter().map(|a| a.0).collect();
            pct(&v)
        }
    }
}

/// The `n` cell: the distinct point counts of the runs, `a/b`.
fn n_cell(ns: impl IntoIterator<Item = usize>) -> String {
    let ns: BTreeSet<usize> = ns.into_iter().collect();
    ns.iter().map(usize::to_string).collect::<Vec<_>>().join("/")
}

/// A column of per-attack accuracies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct CellKey {
    protocol: String,
    attack: String,
    budget: Budget,
}

/// Per group and column, the robust accuracy of each run's individual rows.
fn eval_cells(res: &Results, ctx: &Ctx) -> BTreeMap<(Group, CellKey), Vec<Acc>> {
    let mut cells: BTreeMap<(Group, CellKey), Vec<Acc>> = BTreeMap::new();
    for r in res.eval.iter().filter(|r| r.mode == "individual" && !r.eps_text.is_empty()) {
        let Some(acc) = r.robust_acc else { continue };
        let k = CellKey {
            protocol: protocol(&r.preset, &r.subset),
            attack: r.attack.clone(),
            budget: Budget::of(r),
        };
        cells.entry((ctx.group_of(r), k)).or_default().push((acc, r.n));
    }
    cells
}

/// Per group and protocol: the clean accuracy of each run and its n.
fn clean_by_group(res: &Results, ctx: &Ctx) -> BTreeMap<(Group, String), Vec<Acc>> {
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let mut out: BTreeMap<(Group, String), Vec<Acc>> = BTreeMap::new();
    for r in &res.eval {
        let p = protocol(&r.preset, &r.subset);
        if seen.insert((r.run_id.clone(), p.clone())) {
            out.entry((ctx.group_of(r), p)).or_default().push((r.clean_acc, r.n));
        }
    }
    out
}

fn protocols(res: &Results) -> Vec<String> {
    let mut ps: Vec<String> = res
        .eval
        .iter()
        .map(|r| protocol(&r.preset, &r.subset))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // paper first, then standard, then the rest.
    ps.sort_by_key(|p| match p.as_str() {
        "paper" => (0, p.clone()),
        "standard" => (1, p.clone()),
        _ => (2, p.clone()),
    });
    ps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_mean_and_sample_std() {
        let s = Stat::of(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(s.mean, 2.5);
        // sum of squares 5.0 over n-1 = 3
        assert!((s.std.unwrap() - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(Stat::of(&[0.5]).unwrap().std, None);
        assert_eq!(Stat::of(&[0.5, 0.5]).unwrap().fmt(100.0, 1), "50.0 ± 0.0");
    }

    #[test]
    fn protocols_are_named() {
        assert_eq!(protocol("torchattacks", "all_correct"), "paper");
        assert_eq!(protocol("reference", "all"), "standard");
        assert_eq!(protocol("reference", "all_correct"), "reference/all_correct");
    }

    /// The λ trade-off groups runs by everything but λ: two λ of one configuration share a
    /// label, first and deep taps do not.
    #[test]
    fn trade_off_groups_ignore_only_lambda() {
        let p =
            |layers: &str, l: f64| format!(r#"{{"kind":"gfa","lambda":{l},"layers":"{layers}"}}"#);
        assert_eq!(without_lambda(&p("deep", 0.1)), without_lambda(&p("deep", 1.0)));
        assert_ne!(without_lambda(&p("deep", 0.1)), without_lambda(&p("first", 0.1)));
        let k = |layers: &str, l: f64| RunKey {
            method: "gfa".into(),
            method_params: without_lambda(&p(layers, l)),
            ..Default::default()
        };
        let keys = [k("deep", 0.1), k("deep", 1.0), k("first", 0.1)];
        let l = labels(&keys);
        assert_eq!(l.len(), 2);
        assert_eq!(l[&("gfa".into(), keys[0].method_params.clone())], "gfa layers=deep");
        assert_eq!(l[&("gfa".into(), keys[2].method_params.clone())], "gfa layers=first");
    }

    #[test]
    fn labels_disambiguate() {
        let k = |m: &str, l: Option<f64>, p: &str| RunKey {
            method: m.into(),
            lambda: l,
            method_params: p.into(),
            ..Default::default()
        };
        let l =
            labels(&[k("standard", None, "a"), k("gfa", Some(0.1), "b"), k("gfa", Some(0.1), "c")]);
        assert_eq!(l[&("standard".into(), "a".into())], "standard");
        assert_eq!(l[&("gfa".into(), "b".into())], "gfa λ=0.1 #1");
        assert_eq!(l[&("gfa".into(), "c".into())], "gfa λ=0.1 #2");
        // With JSON parameters the label names what differs.
        let first = r#"{"kind":"gfa","layers":"first","lambda":0.3}"#;
        let deep = r#"{"kind":"gfa","layers":"deep","lambda":0.3}"#;
        let l = labels(&[k("gfa", Some(0.3), first), k("gfa", Some(0.3), deep)]);
        assert_eq!(l[&("gfa".into(), first.into())], "gfa λ=0.3 layers=first");
        assert_eq!(l[&("gfa".into(), deep.into())], "gfa λ=0.3 layers=deep");
    }
}
