//! `gfa report DIR`: aggregate a results folder over seeds into `summary.csv` and the Markdown
//! tables of docs/method.md §9 (`tables/T1.md` … `T4.md`, all of them in `report.md`).
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
use crate::store::ExperimentDir;
use gfa_data::atomic::write_atomic;

pub mod claims;

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

/// Per-run worst case over the suite at each (protocol, norm, eps): the lowest cumulative
/// robust accuracy (the per-sample worst case, never an average of attacks).
fn worst_cases(eval: &[EvalRow]) -> BTreeMap<(String, String, String, String), f64> {
    let mut out: BTreeMap<(String, String, String, String), f64> = BTreeMap::new();
    for r in eval.iter().filter(|r| r.mode == "cumulative") {
        let (Some(acc), false) = (r.robust_acc, r.eps_text.is_empty()) else { continue };
        let k =
            (r.run_id.clone(), protocol(&r.preset, &r.subset), r.norm.clone(), r.eps_text.clone());
        let e = out.entry(k).or_insert(acc);
        *e = e.min(acc);
    }
    out
}

/// Group key of a run for the tables: (model, label).
type Group = (String, String);

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
    fn group_of(&self, r: &EvalRow) -> Group {
        (r.model.clone(), self.label(&r.method, &r.method_params))
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
    let tables = vec![
        ("T1".to_string(), table_t1(res, &ctx)),
        ("T2".to_string(), table_t2(res, &ctx)),
        ("T3".to_string(), table_t3(res, &ctx)),
        ("T4".to_string(), table_t4(res, &ctx)),
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

// Long: one of the report's tables, to be split with the report into one module per table.
fn summarize(res: &Results, ctx: &Ctx) -> Vec<SummaryRow> {
    // key: everything but the seed/run id and the metric value.
    let mut groups: BTreeMap<Vec<String>, (SummaryRow, Vec<f64>, Option<usize>)> = BTreeMap::new();
    let mut add = |proto: SummaryRow, v: Option<f64>| {
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
        let n = proto.n;
        let e = groups.entry(k).or_insert_with(|| (proto, vec![], n));
        e.1.push(v);
    };
    let base = |k: &RunKey, label: String, source: &str| SummaryRow {
        schema_version: SCHEMA_VERSION,
        experiment: k.experiment.clone(),
        model: k.model.clone(),
        method: k.method.clone(),
        lambda: k.lambda,
        method_params: k.method_params.clone(),
        label,
        source: source.into(),
        ..Default::default()
    };
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
            let mut s = base(&r.key(), label.clone(), "eval");
            s.attack = r.attack.clone();
            s.preset = r.preset.clone();
            s.norm = r.norm.clone();
            s.eps_text = r.eps_text.clone();
            s.eps = r.eps;
            s.mode = r.mode.clone();
            s.subset = r.subset.clone();
            s.metric = metric.into();
            s.n = Some(r.n);
            add(s, v);
        }
    }
    let wc = worst_cases(&res.eval);
    for ((run, proto, norm, eps_text), acc) in &wc {
        let Some(r) = res.eval.iter().find(|r| &r.run_id == run) else { continue };
        let mut s = base(&r.key(), ctx.label(&r.method, &r.method_params), "worst_case");
        s.attack = "suite".into();
        s.preset = proto.clone();
        s.norm = norm.clone();
        s.eps_text = eps_text.clone();
        s.metric = "robust_acc".into();
        add(s, Some(*acc));
    }
    // Training: the last epoch of each run.
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
            let mut s = base(&r.key(), label.clone(), "train");
            s.metric = metric.into();
            add(s, v);
        }
    }
    for r in &res.gfa_value {
        let mut s = base(&r.key(), ctx.label(&r.method, &r.method_params), "gfa_value");
        s.split = r.split.clone();
        s.tap = r.tap.clone();
        s.metric = "gfa_value".into();
        s.n = Some(r.n);
        add(s, Some(r.value));
    }
    groups
        .into_values()
        .map(|(mut s, xs, _)| {
            let st = Stat::of(&xs).expect("non-empty group");
            s.mean = st.mean;
            s.std = st.std;
            s.n_seeds = st.n;
            s
        })
        .collect()
}

/// Rows of a Markdown table.
fn md_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n|{}\n", header.join(" | "), " --- |".repeat(header.len()));
    for r in rows {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    s
}

fn pct(xs: &[f64]) -> String {
    Stat::of(xs).map(|s| s.fmt(100.0, 1)).unwrap_or_else(|| "—".into())
}

fn table_t1(res: &Results, ctx: &Ctx) -> String {
    let mut s =
        String::from("## T1: GFA value per tap (mean cosine between tap and loss gradient)\n\n");
    if res.gfa_value.is_empty() {
        s.push_str("No `gfa_value.csv` rows in this results folder.\n");
        return s;
    }
    let cols: BTreeSet<(String, String)> =
        res.gfa_value.iter().map(|r| (r.split.clone(), r.tap.clone())).collect();
    let mut cells: BTreeMap<(Group, (String, String)), Vec<f64>> = BTreeMap::new();
    for r in &res.gfa_value {
        let g = (r.model.clone(), ctx.label(&r.method, &r.method_params));
        cells.entry((g, (r.split.clone(), r.tap.clone()))).or_default().push(r.value);
    }
    let groups: BTreeSet<Group> = cells.keys().map(|(g, _)| g.clone()).collect();
    let mut header = vec!["model".to_string(), "method".into()];
    header.extend(cols.iter().map(|(sp, t)| format!("{t} ({sp})")));
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let mut row = vec![g.0.clone(), g.1.clone()];
            for c in &cols {
                let xs = cells.get(&(g.clone(), c.clone())).cloned().unwrap_or_default();
                row.push(Stat::of(&xs).map(|s| s.fmt(1.0, 3)).unwrap_or_else(|| "—".into()));
            }
            row
        })
        .collect();
    s.push_str(&md_table(&header, &rows));
    s
}

/// Per-run robust accuracy of individual rows, by (protocol, attack, norm, eps_text).
type CellKey = (String, String, String, String);

fn eval_cells(res: &Results, ctx: &Ctx) -> BTreeMap<(Group, CellKey), Vec<(f64, usize)>> {
    let mut cells: BTreeMap<(Group, CellKey), Vec<(f64, usize)>> = BTreeMap::new();
    for r in res.eval.iter().filter(|r| r.mode == "individual" && !r.eps_text.is_empty()) {
        let Some(acc) = r.robust_acc else { continue };
        let k =
            (protocol(&r.preset, &r.subset), r.attack.clone(), r.norm.clone(), r.eps_text.clone());
        cells.entry((ctx.group_of(r), k)).or_default().push((acc, r.n));
    }
    cells
}

/// An accuracy cell: with one run, the accuracy and its Wilson 95 % interval; with several,
/// mean ± std over seeds.
fn acc_pct(xs: &[(f64, usize)]) -> String {
    claims::acc_cell(xs)
}

/// Per group and protocol: clean accuracies (one per run) and n.
fn clean_by_group(
    res: &Results,
    ctx: &Ctx,
) -> BTreeMap<(Group, String), (Vec<f64>, BTreeSet<usize>)> {
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let mut out: BTreeMap<(Group, String), (Vec<f64>, BTreeSet<usize>)> = BTreeMap::new();
    for r in &res.eval {
        let p = protocol(&r.preset, &r.subset);
        if seen.insert((r.run_id.clone(), p.clone())) {
            let e = out.entry((ctx.group_of(r), p)).or_default();
            e.0.push(r.clean_acc);
            e.1.insert(r.n);
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

// Long: one of the report's tables, to be split with the report into one module per table.
fn table_t2(res: &Results, ctx: &Ctx) -> String {
    let mut s = String::from("## T2: clean and robust accuracy per attack and eps\n\n");
    if res.eval.is_empty() {
        s.push_str("No `eval.csv` rows in this results folder.\n");
        return s;
    }
    let cells = eval_cells(res, ctx);
    let clean = clean_by_group(res, ctx);
    let wc = worst_cases(&res.eval);
    let run_group: BTreeMap<String, Group> =
        res.eval.iter().map(|r| (r.run_id.clone(), ctx.group_of(r))).collect();
    let run_n: BTreeMap<(String, String), usize> = res
        .eval
        .iter()
        .map(|r| ((r.run_id.clone(), protocol(&r.preset, &r.subset)), r.n))
        .collect();
    let eps_value: BTreeMap<(String, String), f64> = res
        .eval
        .iter()
        .filter_map(|r| Some(((r.norm.clone(), r.eps_text.clone()), r.eps?)))
        .collect();
    for p in protocols(res) {
        let _ = writeln!(s, "### Protocol: {p}\n");
        let mut cols: Vec<CellKey> = cells
            .keys()
            .filter(|(_, k)| k.0 == p)
            .map(|(_, k)| k.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        cols.sort_by(|a, b| {
            let ev =
                |k: &CellKey| eps_value.get(&(k.2.clone(), k.3.clone())).copied().unwrap_or(0.0);
            (a.1.clone(), a.2.clone())
                .cmp(&(b.1.clone(), b.2.clone()))
                .then(ev(a).total_cmp(&ev(b)))
        });
        let mut wc_cols: Vec<(String, String)> = wc
            .keys()
            .filter(|k| k.1 == p)
            .map(|k| (k.2.clone(), k.3.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        wc_cols.sort_by(|a, b| {
            let ev = |k: &(String, String)| eps_value.get(k).copied().unwrap_or(0.0);
            a.0.cmp(&b.0).then(ev(a).total_cmp(&ev(b)))
        });
        let groups: BTreeSet<Group> =
            clean.keys().filter(|(_, pp)| *pp == p).map(|(g, _)| g.clone()).collect();
        let mut header = vec!["model".to_string(), "method".into(), "n".into(), "clean".into()];
        header.extend(cols.iter().map(|k| format!("{} {} {}", k.1, k.2, k.3)));
        header.extend(wc_cols.iter().map(|(n, e)| format!("worst case {n} {e}")));
        let mut rows = Vec::new();
        for g in &groups {
            let (accs, ns) = &clean[&(g.clone(), p.clone())];
            let mut row = vec![
                g.0.clone(),
                g.1.clone(),
                ns.iter().map(|n| n.to_string()).collect::<Vec<_>>().join("/"),
                match (&accs[..], ns.iter().next()) {
                    ([one], Some(&n)) => acc_pct(&[(*one, n)]),
                    _ => pct(accs),
                },
            ];
            for c in &cols {
                row.push(acc_pct(cells.get(&(g.clone(), c.clone())).map_or(&[], Vec::as_slice)));
            }
            for (n, e) in &wc_cols {
                let xs: Vec<(f64, usize)> = wc
                    .iter()
                    .filter(|(k, _)| {
                        k.1 == p && &k.2 == n && &k.3 == e && run_group.get(&k.0) == Some(g)
                    })
                    .map(|(k, v)| {
                        (*v, run_n.get(&(k.0.clone(), k.1.clone())).copied().unwrap_or(0))
                    })
                    .collect();
                row.push(acc_pct(&xs));
            }
            rows.push(row);
        }
        s.push_str(&md_table(&header, &rows));
        s.push('\n');
        s.push_str(&claims::gains(res, ctx, &p));
    }
    s
}

fn table_t3(res: &Results, ctx: &Ctx) -> String {
    let mut s = String::from(
        "## T3: median perturbation of minimum-norm attacks and ratio to standard training\n\n",
    );
    let _ = writeln!(
        s,
        "The paper claims DeepFool and EAD need {PAPER_RATIO} the perturbation of standard \
         training. Read the ratios next to the clean accuracy: a collapsed model also needs \
         large perturbations (masking check 9, docs/method.md §7). Each minimum-norm attack \
         runs once per model; the median is over the points it fooled.\n"
    );
    let mut any = false;
    for p in protocols(res) {
        if let Some(t) = claims::ratios(res, ctx, &p) {
            let _ = writeln!(s, "### Protocol: {p}\n");
            s.push_str(&t);
            s.push('\n');
            any = true;
        }
    }
    if !any {
        s.push_str(&claims::no_ratio_reason());
    }
    s
}

// Long: one of the report's tables, to be split with the report into one module per table.
// The nested maps stay until the report/plot rewrite gives them typed keys (one per table).
#[allow(clippy::type_complexity)]
fn table_t4(res: &Results, ctx: &Ctx) -> String {
    let mut s = String::from(
        "## T4: AutoAttack, transfer, gradient-masking checks, clean–robust trade-off\n\n",
    );
    let cells = eval_cells(res, ctx);
    let clean = clean_by_group(res, ctx);
    // AutoAttack and transfer, standard protocol first.
    let kind_of: BTreeMap<&str, &str> =
        res.eval.iter().map(|r| (r.attack.as_str(), r.kind.as_str())).collect();
    let cols: Vec<CellKey> = cells
        .keys()
        .map(|(_, k)| k.clone())
        .filter(|k| {
            let f = kind_of.get(k.1.as_str()).and_then(|kind| gfa_attacks::registry::facts(kind));
            f.is_some_and(|f| {
                f.algorithm == gfa_attacks::Algorithm::AutoAttack
                    || f.access == gfa_attacks::Access::Surrogate
            })
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let groups: BTreeSet<Group> = clean.keys().map(|(g, _)| g.clone()).collect();
    if !cols.is_empty() {
        let mut header = vec!["model".to_string(), "method".into()];
        header.extend(cols.iter().map(|k| format!("{} {} {} ({})", k.1, k.2, k.3, k.0)));
        let rows: Vec<Vec<String>> = groups
            .iter()
            .map(|g| {
                let mut row = vec![g.0.clone(), g.1.clone()];
                for c in &cols {
                    row.push(acc_pct(
                        cells.get(&(g.clone(), c.clone())).map_or(&[], Vec::as_slice),
                    ));
                }
                row
            })
            .collect();
        s.push_str("### AutoAttack and transfer attack (robust accuracy)\n\n");
        s.push_str(&md_table(&header, &rows));
        s.push('\n');
    }
    // Masking checks: verdicts over seeds and flagged checks.
    if !res.checks.is_empty() {
        let mut by: BTreeMap<Group, (Vec<String>, BTreeMap<String, usize>, BTreeSet<String>)> =
            BTreeMap::new();
        for r in &res.checks {
            let g = (r.model.clone(), ctx.label(&r.method, &r.method_params));
            let e = by.entry(g).or_default();
            e.2.insert(r.run_id.clone());
            if r.check == "verdict" {
                e.0.push(r.result.clone());
            } else if r.result == "flag" {
                *e.1.entry(r.check.clone()).or_default() += 1;
            }
        }
        let header: Vec<String> = ["model", "method", "verdict (runs)", "flagged checks (runs)"]
            .iter()
            .map(|x| x.to_string())
            .collect();
        let rows: Vec<Vec<String>> = by
            .iter()
            .map(|(g, (verdicts, flags, runs))| {
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for v in verdicts {
                    *counts.entry(v.as_str()).or_default() += 1;
                }
                let v = counts
                    .iter()
                    .map(|(k, c)| format!("{k} ({c}/{})", runs.len()))
                    .collect::<Vec<_>>()
                    .join(", ");
                let f = if flags.is_empty() {
                    "none".to_string()
                } else {
                    flags.iter().map(|(k, c)| format!("{k} ({c})")).collect::<Vec<_>>().join(", ")
                };
                vec![g.0.clone(), g.1.clone(), v, f]
            })
            .collect();
        s.push_str("### Gradient-masking checks (docs/method.md §7)\n\n");
        s.push_str(&md_table(&header, &rows));
        s.push('\n');
    }
    // Trade-off over λ: clean vs worst-case robust accuracy per method with a λ, standard first.
    let wc = worst_cases(&res.eval);
    // One series per configuration up to λ: the method label names what else differs.
    let sweep_keys: Vec<RunKey> = res
        .eval
        .iter()
        .map(|r| RunKey {
            lambda: None,
            method_params: without_lambda(&r.method_params),
            ..r.key()
        })
        .collect();
    let sweep_labels = labels(&sweep_keys);
    let run_info: BTreeMap<String, (String, String, Option<f64>)> = res
        .eval
        .iter()
        .map(|r| {
            let label = sweep_labels
                .get(&(r.method.clone(), without_lambda(&r.method_params)))
                .cloned()
                .unwrap_or_else(|| r.method.clone());
            (r.run_id.clone(), (r.model.clone(), label, r.lambda))
        })
        .collect();
    let mut trade: BTreeMap<(String, String, String, String, String), (Vec<f64>, Vec<f64>)> =
        BTreeMap::new();
    for ((run, p, norm, eps), acc) in &wc {
        let Some((model, method, Some(l))) = run_info.get(run) else { continue };
        let clean_acc = res
            .eval
            .iter()
            .find(|r| &r.run_id == run && protocol(&r.preset, &r.subset) == *p)
            .map(|r| r.clean_acc);
        let e = trade
            .entry((
                model.clone(),
                method.clone(),
                p.clone(),
                format!("{norm} {eps}"),
                format!("{l}"),
            ))
            .or_default();
        e.0.extend(clean_acc);
        e.1.push(*acc);
    }
    if !trade.is_empty() {
        let header: Vec<String> =
            ["model", "method", "protocol", "eps", "λ", "clean", "worst-case robust"]
                .iter()
                .map(|x| x.to_string())
                .collect();
        let mut rows: Vec<(f64, Vec<String>)> = trade
            .iter()
            .map(|((m, me, p, e, l), (c, r))| {
                (
                    l.parse().unwrap_or(0.0),
                    vec![m.clone(), me.clone(), p.clone(), e.clone(), l.clone(), pct(c), pct(r)],
                )
            })
            .collect();
        rows.sort_by(|a, b| a.1[..4].cmp(&b.1[..4]).then(a.0.total_cmp(&b.0)));
        s.push_str("### Clean versus robust accuracy over λ\n\n");
        s.push_str(&md_table(&header, &rows.into_iter().map(|(_, r)| r).collect::<Vec<_>>()));
        s.push('\n');
    }
    if cols.is_empty() && res.checks.is_empty() && trade.is_empty() {
        s.push_str("No AutoAttack, transfer, checks or λ-sweep rows in this results folder.\n");
    }
    s
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
