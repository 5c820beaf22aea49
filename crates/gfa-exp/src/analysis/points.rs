//! Per-point outcomes (`points.csv`): for every `eval.csv` row, which evaluated points were
//! robust, so that two methods evaluated on the same points can be compared point by point
//! (paired difference, McNemar's test; see [`crate::analysis::stats`]).
//!
//! A row stores its outcomes as two strings of `0`/`1` characters: `points`, one character per
//! evaluation point of the run (the first `eval.n` test points; `1` where the point was
//! evaluated), and `robust`, one character per evaluated point in order. A thousand points take
//! two kilobytes per row. The reader refuses a file of another schema version, a row whose
//! strings do not fit together, and outcomes that disagree with the `eval.csv` row they belong
//! to (a `points.csv` copied from another run).
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};
use gfa_attacks::eval::{EvalRecord, Mode};

use crate::config::spec::{AttackEntry, EvalConfig};
use crate::results::records::{EvalRow, PointRow, RunKey, SCHEMA_VERSION, read_rows};

/// The `points.csv` rows of one evaluation's records; `total` is the number of evaluation points
/// (the positions `EvalRecord::index` refers to).
pub fn point_rows(
    records: &[EvalRecord],
    attacks: &[AttackEntry],
    eval: &EvalConfig,
    key: &RunKey,
    total: usize,
) -> Vec<PointRow> {
    let mut rows = Vec::new();
    for rec in records {
        let entry = attacks.iter().find(|a| a.name == rec.name && a.preset == rec.preset);
        let mut points = vec![b'0'; total];
        for &i in &rec.index {
            if let Some(c) = points.get_mut(i as usize) {
                *c = b'1';
            }
        }
        rows.push(PointRow {
            attack: entry.map_or(rec.name.clone(), |e| e.name.clone()),
            kind: entry.map_or(String::new(), |e| e.kind.clone()),
            preset: rec.preset.clone(),
            norm: entry.map_or(String::new(), |e| e.norm.clone()),
            eps_text: rec.eps_text.clone(),
            mode: mode_name(rec.mode).into(),
            subset: eval.subset.name().into(),
            n: rec.robust.len(),
            points: String::from_utf8(points).expect("ASCII"),
            robust: rec.robust.iter().map(|&r| if r { '1' } else { '0' }).collect(),
            ..PointRow::keyed(key)
        });
    }
    rows
}

/// The outcomes of one row: per evaluated point, its position among the evaluation points and
/// whether it was robust.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcomes {
    pub index: Vec<usize>,
    pub robust: Vec<bool>,
}

impl Outcomes {
    /// The fraction of robust points.
    pub fn accuracy(&self) -> f64 {
        let k = self.robust.iter().filter(|&&r| r).count();
        if self.robust.is_empty() { 0.0 } else { k as f64 / self.robust.len() as f64 }
    }
}

fn bits(s: &str, what: &str) -> Result<Vec<bool>> {
    s.chars()
        .map(|c| match c {
            '0' => Ok(false),
            '1' => Ok(true),
            _ => bail!("`{what}` holds {c:?}; only 0 and 1 are allowed"),
        })
        .collect()
}

impl PointRow {
    /// The row's outcomes, or an error saying which column does not fit.
    pub fn outcomes(&self) -> Result<Outcomes> {
        let points = bits(&self.points, "points")?;
        let robust = bits(&self.robust, "robust")?;
        let index: Vec<usize> = (0..points.len()).filter(|&i| points[i]).collect();
        if index.len() != robust.len() || robust.len() != self.n {
            bail!(
                "`points` marks {} evaluated points, `robust` has {}, `n` is {}",
                index.len(),
                robust.len(),
                self.n
            );
        }
        Ok(Outcomes { index, robust })
    }

    /// What identifies the `eval.csv` row this row belongs to.
    fn row_key(&self) -> RowKey {
        (
            self.run_id.clone(),
            self.attack.clone(),
            self.preset.clone(),
            self.eps_text.clone(),
            self.mode.clone(),
        )
    }
}

/// (run id, attack, preset, eps, mode): one `eval.csv` row.
pub type RowKey = (String, String, String, String, String);

fn eval_key(r: &EvalRow) -> RowKey {
    (r.run_id.clone(), r.attack.clone(), r.preset.clone(), r.eps_text.clone(), r.mode.clone())
}

/// Per `eval.csv` row, the outcomes of `points.csv` at `path`, checked against the rows: each
/// outcome's robust fraction must be the row's `robust_acc` (within one point in `n`'s
/// rounding), else the file comes from another run and is refused. `eval` rows without
/// outcomes (a results folder written before `points.csv` existed) are left out.
pub fn read_points(path: &Path, eval: &[EvalRow]) -> Result<BTreeMap<RowKey, Outcomes>> {
    check_schema(path)?;
    let rows: Vec<PointRow> = read_rows(path)?;
    let by_key: BTreeMap<RowKey, &EvalRow> = eval.iter().map(|r| (eval_key(r), r)).collect();
    let mut out = BTreeMap::new();
    for (k, row) in rows.iter().enumerate() {
        let at = || format!("{}: row {}", path.display(), k + 2);
        let o = row.outcomes().map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
        if row.mode == "clean" {
            continue;
        }
        let Some(ev) = by_key.get(&row.row_key()) else {
            bail!(
                "{}: run {} has no eval.csv row for {} {} {} {}; the file comes from another \
                 run or results folder: rerun the evaluation or remove it",
                at(),
                row.run_id,
                row.attack,
                row.preset,
                row.eps_text,
                row.mode
            );
        };
        let want = ev.robust_acc.unwrap_or(f64::NAN);
        if ev.n != row.n || (o.accuracy() - want).abs() > 0.5 / row.n.max(1) as f64 {
            bail!(
                "{}: {} robust of n = {} here, eval.csv says {want} of n = {}; the file comes from \
                 another run: rerun the evaluation or remove it",
                at(),
                o.accuracy(),
                row.n,
                ev.n
            );
        }
        out.insert(row.row_key(), o);
    }
    Ok(out)
}

/// The oldest `schema_version` of a per-point file this gfa reads: version 4's rows have every
/// column of today's but the numerics, which the general reader fills in as it does for every
/// file of version 4 (docs/csv-schema.md, "Older versions"); older per-point layouts are not
/// upgraded.
const OLDEST_POINTS: u32 = 4;

/// An error unless every row of the file at `path` has a `schema_version` from
/// [`OLDEST_POINTS`] to this build's.
fn check_schema(path: &Path) -> Result<()> {
    let mut r = csv::Reader::from_path(path)?;
    let Some(i) = r.headers()?.iter().position(|h| h == "schema_version") else {
        bail!("{}: no `schema_version` column; not a gfa per-point file", path.display());
    };
    for (k, rec) in r.records().enumerate() {
        let rec = rec?;
        let v = rec.get(i).unwrap_or("");
        if !v.parse().is_ok_and(|v: u32| (OLDEST_POINTS..=SCHEMA_VERSION).contains(&v)) {
            bail!(
                "{}: row {}: schema_version {v} but this gfa reads per-point files of versions \
                 {OLDEST_POINTS} to {SCHEMA_VERSION}; rerun the evaluation (`gfa run`) to \
                 rewrite it",
                path.display(),
                k + 2
            );
        }
    }
    Ok(())
}

/// The outcomes of `row` in `points`, if recorded.
pub fn of<'a>(points: &'a BTreeMap<RowKey, Outcomes>, row: &EvalRow) -> Option<&'a Outcomes> {
    points.get(&eval_key(row))
}

/// Two rows' outcomes on their common points, in one order: `(a robust, b robust)` per point.
/// `None` when they were not evaluated on the same points (then no paired comparison exists).
pub fn paired(a: &Outcomes, b: &Outcomes) -> Option<Vec<(bool, bool)>> {
    (a.index == b.index).then(|| a.robust.iter().copied().zip(b.robust.iter().copied()).collect())
}

/// The `mode` column of a record.
pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Clean => "clean",
        Mode::Individual => "individual",
        Mode::Cumulative => "cumulative",
    }
}
