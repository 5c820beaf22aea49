//! What the report's tables share: the loaded CSVs ([`Results`]), the method labels ([`Ctx`]),
//! the typed keys of rows and columns ([`Group`], [`CellKey`], [`Budget`], [`WorstKey`]), the
//! per-run worst cases, and the cells ([`md_table`], [`acc_cell`], [`n_cell`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Result, bail};
use serde::Serialize;

use super::groups::Groups;
use crate::analysis::stats::{Stat, wilson};
use crate::results::records::{
    BinarizationRow, CheckRow, EvalRow, GfaValueRow, IndicatorRow, RunKey, TrainRow, read_rows,
};
use crate::results::store::ExperimentDir;

/// The paper's headline gains of GFA over PGD adversarial training, in accuracy points.
pub const PAPER_GAIN_APGD: f64 = 15.2;
pub const PAPER_GAIN_FGSM: f64 = 24.7;
/// The paper's perturbation-size ratio to standard training (DeepFool, EAD).
pub const PAPER_RATIO: &str = "20–30×";

/// Which protocol a (preset, subset) pair is.
pub fn protocol(preset: &str, subset: &str) -> String {
    match (preset, subset) {
        ("torchattacks", "all_correct") => "paper".into(),
        ("reference", "all") => "standard".into(),
        (p, s) => format!("{p}/{s}"),
    }
}

pub(crate) fn read_opt<T: serde::de::DeserializeOwned + Serialize + Default>(
    p: &Path,
) -> Result<Vec<T>> {
    if p.is_file() { read_rows(p) } else { Ok(vec![]) }
}

/// All CSVs of a results folder (experiment-level files are regenerated from run folders).
#[derive(Debug, Clone, Default)]
pub struct Results {
    pub eval: Vec<EvalRow>,
    pub train: Vec<TrainRow>,
    pub checks: Vec<CheckRow>,
    /// The Indicators of Attack Failure (`indicators.csv`; empty without `[indicators]`).
    pub indicators: Vec<IndicatorRow>,
    pub gfa_value: Vec<GfaValueRow>,
    /// The binarization tests (`binarization.csv`; empty without a `[binarize]` table).
    pub binarization: Vec<BinarizationRow>,
    /// Per `eval.csv` row, its per-point outcomes (`points.csv`; empty for older folders).
    pub points: BTreeMap<crate::analysis::points::RowKey, crate::analysis::points::Outcomes>,
    /// Run id → the grid keys it varies (`manifest.csv`'s `axes`; empty without one).
    pub axes: BTreeMap<String, String>,
    /// The last `gfa run`'s wall time beside its prediction (`timing.json`), for T5.
    pub timing: Option<crate::results::timing::GridTiming>,
}

impl Results {
    pub fn load(dir: &Path) -> Result<Results> {
        if !dir.is_dir() {
            bail!("{}: no such results folder (expected results/<experiment>)", dir.display());
        }
        let exp = ExperimentDir { root: dir.to_path_buf() };
        if !exp.runs()?.is_empty() {
            crate::results::store::collect_all(&exp)?;
        }
        let mut r = Results {
            eval: read_opt(&dir.join("eval.csv"))?,
            train: read_opt(&dir.join("train.csv"))?,
            checks: read_opt(&dir.join("checks.csv"))?,
            indicators: read_opt(&dir.join("indicators.csv"))?,
            gfa_value: read_opt(&dir.join("gfa_value.csv"))?,
            binarization: read_opt(&dir.join("binarization.csv"))?,
            points: BTreeMap::new(),
            axes: crate::results::plan::manifest_axes(dir)?,
            timing: crate::results::timing::GridTiming::read(dir)?,
        };
        let points = dir.join("points.csv");
        if points.is_file() {
            r.points = crate::analysis::points::read_points(&points, &r.eval)?;
        }
        if r.eval.is_empty() && r.train.is_empty() && r.gfa_value.is_empty() {
            bail!(
                "{}: no results yet (no eval.csv, train.csv or gfa_value.csv rows)",
                dir.display()
            );
        }
        Ok(r)
    }

    pub(crate) fn keys(&self) -> Vec<RunKey> {
        let mut keys: Vec<RunKey> = self.eval.iter().map(EvalRow::key).collect();
        keys.extend(self.train.iter().map(TrainRow::key));
        keys.extend(self.gfa_value.iter().map(GfaValueRow::key));
        keys.extend(self.checks.iter().map(CheckRow::key));
        keys.extend(self.binarization.iter().map(BinarizationRow::key));
        keys
    }

    /// Every run's group: the one grouping rule of the tables, `summary.csv` and the figures
    /// (all grid keys equal but the seed, [`super::groups`]).
    pub fn groups(&self) -> Groups {
        Groups::of(self.keys(), &self.axes)
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
pub(crate) struct Group {
    pub(crate) model: String,
    /// The configuration's label ([`Groups`]).
    pub(crate) label: String,
}

impl Group {
    /// The row's first two cells: model and method.
    pub(crate) fn cells(&self) -> Vec<String> {
        vec![self.model.clone(), self.label.clone()]
    }
}

/// The tables' view of the runs: each run's group ([`Groups`]).
pub(crate) struct Ctx {
    pub(crate) groups: Groups,
}

impl Ctx {
    pub(crate) fn of(res: &Results) -> Ctx {
        Ctx { groups: res.groups() }
    }
    /// The label of run `run_id`'s configuration.
    pub(crate) fn label(&self, run_id: &str) -> String {
        self.groups.label(run_id)
    }
    /// The table row of run `run_id`: its model and its configuration's label.
    pub(crate) fn group(&self, run_id: &str) -> Group {
        let model = self.groups.config(run_id).map_or_else(String::new, |c| c.model.clone());
        Group { model, label: self.label(run_id) }
    }
    pub(crate) fn group_of(&self, r: &EvalRow) -> Group {
        self.group(&r.run_id)
    }
}

/// Rows of a Markdown table.
pub(crate) fn md_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n|{}\n", header.join(" | "), " --- |".repeat(header.len()));
    for r in rows {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    s
}

/// Fractions in percent: mean ± std over runs.
pub(crate) fn pct(xs: &[f64]) -> String {
    Stat::of(xs).map(|s| s.fmt(100.0, 1)).unwrap_or_else(|| "—".into())
}

/// One measured accuracy per run: the fraction and the number of points it is over.
pub(crate) type Acc = (f64, usize);

/// The tables' accuracy cell: with one run, the accuracy and its Wilson 95 % interval; with
/// several, mean ± std over seeds.
pub(crate) fn acc_cell(xs: &[Acc]) -> String {
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
pub(crate) fn n_cell(ns: impl IntoIterator<Item = usize>) -> String {
    let ns: BTreeSet<usize> = ns.into_iter().collect();
    ns.iter().map(usize::to_string).collect::<Vec<_>>().join("/")
}

/// A column of per-attack accuracies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct CellKey {
    pub(crate) protocol: String,
    pub(crate) attack: String,
    pub(crate) budget: Budget,
}

/// Per group and column, the robust accuracy of each run's individual rows.
pub(crate) fn eval_cells(res: &Results, ctx: &Ctx) -> BTreeMap<(Group, CellKey), Vec<Acc>> {
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
pub(crate) fn clean_by_group(res: &Results, ctx: &Ctx) -> BTreeMap<(Group, String), Vec<Acc>> {
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

pub(crate) fn protocols(res: &Results) -> Vec<String> {
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
    use crate::analysis::stats::Stat;

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
}
