//! T6: a λ sweep run by run — for every run of a penalty method (a method with λ), its clean
//! accuracy, when it fell to chance for good (`phase::collapse_of`), its input-tap cosine, its worst case
//! over the suite at L∞ 2/255 and 8/255 (standard protocol), its worst case at 8/255 minus that
//! of the standard model and of PGD-AT of the same model and seed (paired over the same points,
//! Newcombe's 95 % interval), and its masking verdict. The same numbers as the phase diagram
//! (`phase::run_points`), with run ids, so that a sentence about the sweep can name its rows.
//!
//! Left out when the folder has no run with λ.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::base::{Results, md_table, worst_rows};
use crate::analysis::phase::{self, BUDGETS, RunPoint};
use crate::analysis::points;
use crate::analysis::stats::{Interval, Paired, percent_or_dash};
use crate::results::records::EvalRow;

/// The budget the differences are taken at (the last of [`BUDGETS`]).
const AT: &str = BUDGETS[1];

/// The references a run is compared with, by method kind.
const REFERENCES: [(&str, &str); 2] = [("standard", "standard"), ("pgd_at", "PGD-AT")];

/// Each run's worst-case row at L∞ [`AT`] under the standard protocol.
fn worst_at(res: &Results) -> BTreeMap<&str, &EvalRow> {
    worst_rows(&res.eval)
        .into_iter()
        .filter(|(k, _)| k.protocol == "standard")
        .filter(|(k, _)| k.budget.norm == "linf" && k.budget.eps_text == AT)
        .map(|(_, r)| (r.run_id.as_str(), r))
        .collect()
}

/// The worst-case row of the first run (by id) of method `kind` with `run`'s model and seed.
fn reference<'a>(
    worst: &BTreeMap<&str, &'a EvalRow>,
    run: &EvalRow,
    kind: &str,
) -> Option<&'a EvalRow> {
    worst.values().copied().find(|r| r.method == kind && r.model == run.model && r.seed == run.seed)
}

/// `run`'s worst case at [`AT`] minus `other`'s on the same points, with its 95 % interval.
fn difference(res: &Results, run: &EvalRow, other: &EvalRow) -> Option<Interval> {
    let (a, b) = (points::of(&res.points, run)?, points::of(&res.points, other)?);
    Paired::of(&points::paired(a, b)?).difference()
}

/// One row of the table, and whether the run beats each reference beyond its interval.
struct Row {
    point: RunPoint,
    seed: u64,
    verdict: String,
    diffs: Vec<Option<Interval>>,
}

fn rows(res: &Results) -> Vec<Row> {
    let verdicts: BTreeMap<&str, &str> = res
        .checks
        .iter()
        .filter(|c| c.check == "verdict")
        .map(|c| (c.run_id.as_str(), c.result.as_str()))
        .collect();
    let worst = worst_at(res);
    let mut out: Vec<Row> = phase::run_points(res, &res.groups())
        .into_iter()
        .filter(|p| p.lambda.is_some())
        .map(|point| {
            let own = worst.get(point.run_id.as_str()).copied();
            let diffs = REFERENCES
                .iter()
                .map(|(kind, _)| {
                    let w = own?;
                    difference(res, w, reference(&worst, w, kind)?)
                })
                .collect();
            let seed = res.eval.iter().find(|r| r.run_id == point.run_id).map_or(0, |r| r.seed);
            let verdict = verdicts.get(point.run_id.as_str()).map_or("—", |v| v).to_string();
            Row { point, seed, verdict, diffs }
        })
        .collect();
    out.sort_by(|a, b| {
        (&a.point.model, &a.point.series)
            .cmp(&(&b.point.model, &b.point.series))
            .then(a.point.lambda.unwrap_or(0.0).total_cmp(&b.point.lambda.unwrap_or(0.0)))
            .then(a.seed.cmp(&b.seed))
    });
    out
}

pub(super) fn table(res: &Results) -> String {
    let mut s = String::from("## T6: the λ sweep, run by run\n\n");
    let rows = rows(res);
    if rows.is_empty() {
        s.push_str("No run with λ in this results folder.\n");
        return s;
    }
    let _ = writeln!(
        s,
        "Standard protocol. Collapse: epochs of training after which the fixed diagnostics batch \
         fell to chance for good; `e (train acc.)`: the fixed batch was off chance at its last \
         probe, but the training accuracy was at chance in every epoch from epoch e to the last \
         (train.csv's `collapse` flag); — : neither. Input cos: the input tap's mean cosine on the test \
         points. The last columns: the run's worst case at L∞ {AT} minus that of the reference \
         of the same model and seed, paired over the same points, with Newcombe's 95 % \
         interval.\n"
    );
    let mut header: Vec<String> =
        ["run", "model", "variant", "λ", "seed", "clean", "collapse (epoch)", "input cos"]
            .map(String::from)
            .to_vec();
    header.extend(BUDGETS.iter().map(|e| format!("worst L∞ {e}")));
    header.extend(REFERENCES.iter().map(|(_, name)| format!("− {name} at {AT}")));
    header.push("masking verdict".into());
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let p = &r.point;
            let mut row = vec![
                p.run_id.clone(),
                p.model.clone(),
                p.series.clone(),
                p.lambda.map_or("—".into(), |l| format!("{l}")),
                r.seed.to_string(),
                percent_or_dash(p.clean, 1),
                match p.collapse {
                    None => "—".into(),
                    Some(c) if c.fixed_batch => format!("{:.2}", c.epoch),
                    Some(c) => format!("{} (train acc.)", c.epoch),
                },
                p.input_cos.map_or("—".into(), |c| format!("{c:.3}")),
            ];
            row.extend(p.worst.iter().map(|w| percent_or_dash(*w, 1)));
            row.extend(r.diffs.iter().map(|d| d.map_or("—".into(), |d| d.pct_signed(1))));
            row.push(r.verdict.clone());
            row
        })
        .collect();
    s.push_str(&md_table(&header, &cells));
    s.push('\n');
    for (k, (_, name)) in REFERENCES.iter().enumerate() {
        let above: Vec<String> = rows
            .iter()
            .filter(|r| r.verdict != "collapsed")
            .filter_map(|r| {
                let d = r.diffs[k]?;
                (d.low > 0.0).then(|| format!("{} ({})", r.point.run_id, d.pct_signed(1)))
            })
            .collect();
        let list = if above.is_empty() { "none".to_string() } else { above.join(", ") };
        let _ = writeln!(
            s,
            "Runs not collapsed whose worst case at L∞ {AT} is above {name}'s beyond the 95 % \
             interval: {list}.\n"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::points::Outcomes;
    use crate::results::records::CheckRow;

    /// Adds a run with a cumulative worst-case row at L∞ 8/255 robust on the first `k` of
    /// `n` points, and its verdict.
    fn run(res: &mut Results, id: &str, method: &str, lambda: Option<f64>, k: usize, v: &str) {
        let n = 100;
        let row = EvalRow {
            run_id: id.into(),
            model: "cnn".into(),
            method: method.into(),
            lambda,
            attack: "pgd".into(),
            kind: "pgd".into(),
            preset: "reference".into(),
            norm: "linf".into(),
            eps_text: AT.into(),
            mode: "cumulative".into(),
            subset: "all".into(),
            n,
            clean_acc: 0.6,
            robust_acc: Some(k as f64 / n as f64),
            ..Default::default()
        };
        let key = (id.into(), "pgd".into(), "reference".into(), AT.into(), "cumulative".into());
        let robust = (0..n).map(|i| i < k).collect();
        res.points.insert(key, Outcomes { index: (0..n).collect(), robust });
        res.eval.push(row);
        res.checks.push(CheckRow {
            run_id: id.into(),
            check: "verdict".into(),
            result: v.into(),
            ..Default::default()
        });
    }

    #[test]
    fn lists_each_swept_run_against_both_references_and_names_the_ones_above() {
        let mut res = Results::default();
        run(&mut res, "std", "standard", None, 10, "no evidence of masking");
        run(&mut res, "adv", "pgd_at", None, 50, "no evidence of masking");
        run(&mut res, "above", "gfa", Some(0.1), 40, "no evidence of masking");
        run(&mut res, "level", "gfa", Some(0.15), 11, "no evidence of masking");
        run(&mut res, "dead", "gfa", Some(0.5), 90, "collapsed");
        let t = table(&res);
        // One row per run with λ, in λ order; the references are columns, not rows.
        let at = |id: &str| t.find(&format!("| {id} |")).unwrap_or_else(|| panic!("{id}: {t}"));
        assert!(at("above") < at("level") && at("level") < at("dead"));
        assert!(!t.contains("| std |") && !t.contains("| adv |"));
        // 40 % vs 10 % on the same 100 points: +30 points; vs PGD-AT's 50 %: −10.
        let line = t.lines().find(|l| l.starts_with("| above |")).unwrap();
        assert!(line.contains("| 40.0 |") && line.contains("+30.0 [") && line.contains("-10.0 ["));
        let expected = Paired::of(&(0..100).map(|i| (i < 40, i < 10)).collect::<Vec<_>>());
        assert!(line.contains(&expected.difference().unwrap().pct_signed(1)), "{line}");
        // Above standard beyond the interval: `above` only (`level` is within it, `dead` has
        // collapsed); above PGD-AT: none.
        let standard = t.lines().find(|l| l.contains("above standard's")).unwrap();
        assert!(standard.contains(": above (+30.0 ["), "{standard}");
        assert!(!standard.contains("level") && !standard.contains("dead ("), "{standard}");
        assert!(t.lines().any(|l| l.contains("above PGD-AT's") && l.ends_with(": none.")), "{t}");
    }

    #[test]
    fn says_so_without_a_sweep() {
        let mut res = Results::default();
        run(&mut res, "std", "standard", None, 10, "no evidence of masking");
        assert!(table(&res).contains("No run with λ"));
    }
}
