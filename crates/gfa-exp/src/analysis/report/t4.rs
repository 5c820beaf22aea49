//! T4: AutoAttack and transfer attacks, the gradient-masking checks and the Indicators of
//! Attack Failure beside them, and the clean–robust trade-off over λ. Each section is left out
//! when the results have no rows for it.

use std::collections::{BTreeMap, BTreeSet};

use gfa_attacks::{Access, Algorithm};

use crate::analysis::stats::percent_sign;

use super::base::{
    Acc, CellKey, Ctx, Group, Results, WorstKey, acc_cell, clean_by_group, eval_cells, md_table,
    pct, protocol, worst_cases,
};

pub(super) fn table(res: &Results, ctx: &Ctx) -> String {
    let mut s = String::from(
        "## T4: AutoAttack, transfer, gradient-masking checks, clean–robust trade-off\n\n",
    );
    let sections = [
        autoattack_and_transfer(res, ctx),
        masking_checks(res, ctx),
        indicators(res, ctx),
        trade_off(res, ctx),
    ];
    if sections.iter().all(Option::is_none) {
        s.push_str("No AutoAttack, transfer, checks or λ-sweep rows in this results folder.\n");
    }
    for section in sections.into_iter().flatten() {
        s.push_str(&section);
        s.push('\n');
    }
    s
}

/// Robust accuracy under AutoAttack and the transfer attack, per group and column.
fn autoattack_and_transfer(res: &Results, ctx: &Ctx) -> Option<String> {
    let cells = eval_cells(res, ctx);
    let kind_of: BTreeMap<&str, &str> =
        res.eval.iter().map(|r| (r.attack.as_str(), r.kind.as_str())).collect();
    let cols: BTreeSet<&CellKey> = cells
        .keys()
        .map(|(_, k)| k)
        .filter(|k| {
            let f =
                kind_of.get(k.attack.as_str()).and_then(|kind| gfa_attacks::registry::facts(kind));
            f.is_some_and(|f| f.algorithm == Algorithm::AutoAttack || f.access == Access::Surrogate)
        })
        .collect();
    if cols.is_empty() {
        return None;
    }
    let groups: BTreeSet<Group> = clean_by_group(res, ctx).into_keys().map(|(g, _)| g).collect();
    let mut header = vec!["model".to_string(), "method".into()];
    header.extend(cols.iter().map(|k| format!("{} {} ({})", k.attack, k.budget, k.protocol)));
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let mut row = g.cells();
            for &c in &cols {
                row.push(acc_cell(cells.get(&(g.clone(), c.clone())).map_or(&[], Vec::as_slice)));
            }
            row
        })
        .collect();
    Some(format!(
        "### AutoAttack and transfer attack (robust accuracy)\n\n{}",
        md_table(&header, &rows)
    ))
}

/// A group's masking checks over its runs.
#[derive(Debug, Default)]
struct Checks {
    /// One verdict per run.
    verdicts: Vec<String>,
    /// Per check, the number of runs it flagged.
    flags: BTreeMap<String, usize>,
    runs: BTreeSet<String>,
    /// Per tested attack and budget, each run's binarization pass rate and valid points.
    binarization: BTreeMap<String, Vec<Acc>>,
    /// Per tested attack and budget, the runs tested without a valid point (no pass rate).
    no_valid: BTreeMap<String, usize>,
}

impl Checks {
    /// `verdict (k/runs), …`.
    fn verdict_cell(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for v in &self.verdicts {
            *counts.entry(v.as_str()).or_default() += 1;
        }
        counts
            .iter()
            .map(|(k, c)| format!("{k} ({c}/{})", self.runs.len()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `attack norm eps: rate [interval]` per tested attack (mean ± std over runs), then the
    /// tests with runs that had no valid point (`no valid point (k runs)`), or `—` (not tested).
    fn binarization_cell(&self) -> String {
        let rates = self.binarization.iter().map(|(k, v)| format!("{k}: {}", acc_cell(v)));
        let plural = |n: usize| if n == 1 { "run" } else { "runs" };
        let none =
            self.no_valid.iter().map(|(k, n)| format!("{k}: no valid point ({n} {})", plural(*n)));
        let cells: Vec<String> = rates.chain(none).collect();
        if cells.is_empty() { "—".to_string() } else { cells.join("; ") }
    }

    /// `check (runs), …`, or `none`.
    fn flag_cell(&self) -> String {
        if self.flags.is_empty() {
            return "none".to_string();
        }
        self.flags.iter().map(|(k, c)| format!("{k} ({c})")).collect::<Vec<_>>().join(", ")
    }
}

/// The masking checks' verdicts over seeds and the flagged checks, per group.
fn masking_checks(res: &Results, ctx: &Ctx) -> Option<String> {
    if res.checks.is_empty() {
        return None;
    }
    let mut by: BTreeMap<Group, Checks> = BTreeMap::new();
    for r in &res.checks {
        let e = by.entry(ctx.group(&r.run_id)).or_default();
        e.runs.insert(r.run_id.clone());
        if r.check == "verdict" {
            e.verdicts.push(r.result.clone());
        } else if r.result == "flag" {
            *e.flags.entry(r.check.clone()).or_default() += 1;
        }
    }
    for r in res.binarization.iter().filter(|r| r.result == "summary") {
        let e = by.entry(ctx.group(&r.run_id)).or_default();
        let test = format!("{} {} {}", r.attack, r.norm, r.eps_text);
        match (r.pass_rate, r.valid) {
            (Some(rate), Some(valid)) => {
                e.binarization.entry(test).or_default().push((rate, valid))
            }
            _ => *e.no_valid.entry(test).or_default() += 1,
        }
    }
    let mut header: Vec<String> =
        ["model", "method", "verdict (runs)", "flagged checks (runs)"].map(String::from).to_vec();
    // The binarization column only where some run was tested.
    let bin = by.values().any(|c| !c.binarization.is_empty() || !c.no_valid.is_empty());
    if bin {
        header.push("binarization pass rate (§7)".into());
    }
    let rows: Vec<Vec<String>> = by
        .iter()
        .map(|(g, c)| {
            let mut row = g.cells();
            row.extend([c.verdict_cell(), c.flag_cell()]);
            if bin {
                row.push(c.binarization_cell());
            }
            row
        })
        .collect();
    Some(format!("### Gradient-masking checks (docs/method.md §7)\n\n{}", md_table(&header, &rows)))
}

/// The indicators in the order of their columns (docs/method.md §10).
const INDICATORS: [&str; 6] = [
    "silent_success",
    "incomplete_optimization",
    "unstable_predictions",
    "transfer_failure",
    "unconstrained_attack_failure",
    "unavailable_gradients",
];

/// Per group, each indicator's largest share of flagged points over its runs, attacks and
/// budgets (with where), and the indicator rows that flag, counted in runs.
fn indicators(res: &Results, ctx: &Ctx) -> Option<String> {
    use crate::analysis::indicators::place;
    if res.indicators.is_empty() {
        return None;
    }
    let mut by: BTreeMap<Group, Vec<&crate::results::records::IndicatorRow>> = BTreeMap::new();
    for r in &res.indicators {
        by.entry(ctx.group(&r.run_id)).or_default().push(r);
    }
    let mut header = vec!["model".to_string(), "method".into()];
    header.extend(INDICATORS.iter().map(|i| i.to_string()));
    header.push("flagged (runs)".into());
    let rows: Vec<Vec<String>> = by
        .iter()
        .map(|(g, rows)| {
            let mut row = g.cells();
            for name in INDICATORS {
                let worst = rows
                    .iter()
                    .filter(|r| r.indicator == name)
                    .filter_map(|r| Some((r.fraction?, r)))
                    .max_by(|a, b| a.0.total_cmp(&b.0));
                row.push(worst.map_or("—".into(), |(f, r)| {
                    format!("{} {} (n={})", percent_sign(f, 1), place(r), r.n)
                }));
            }
            let mut flags: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
            for r in rows.iter().filter(|r| r.result == "flag") {
                flags.entry(r.indicator.as_str()).or_default().insert(r.run_id.as_str());
            }
            let cell: Vec<String> =
                flags.iter().map(|(k, v)| format!("{k} ({})", v.len())).collect();
            row.push(if cell.is_empty() { "none".into() } else { cell.join(", ") });
            row
        })
        .collect();
    Some(format!(
        "### Indicators of Attack Failure (docs/method.md §10)\n\nThe largest share of points \
         each indicator flags, over the group's runs, attacks and budgets; a share above {} \
         flags the run (`attack_failure_suspected` unless a masking check flagged).\n\n{}",
        percent_sign(crate::analysis::indicators::ATTACK_FAILURE_SHARE, 0),
        md_table(&header, &rows)
    ))
}

/// A row of the trade-off: one configuration up to λ, at one λ, protocol and budget.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct TradeKey {
    model: String,
    /// The configuration's label without λ.
    method: String,
    protocol: String,
    /// `norm eps`.
    budget: String,
    lambda: String,
}

/// Per run with a λ: its model, label without λ, and λ.
struct SweepRun {
    model: String,
    method: String,
    lambda: Option<f64>,
}

/// Each run's place in a λ sweep: its sweep series (its configuration with λ left out,
/// [`super::groups`]).
fn sweep_runs(res: &Results, ctx: &Ctx) -> BTreeMap<String, SweepRun> {
    res.eval
        .iter()
        .map(|r| {
            let method = ctx.groups.series(&r.run_id);
            let run = SweepRun { model: r.model.clone(), method, lambda: r.lambda };
            (r.run_id.clone(), run)
        })
        .collect()
}

/// Clean versus worst-case robust accuracy per method with a λ, standard protocol first.
fn trade_off(res: &Results, ctx: &Ctx) -> Option<String> {
    let runs = sweep_runs(res, ctx);
    // Per row: the clean and the worst-case robust accuracies of its runs.
    let mut trade: BTreeMap<TradeKey, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for (WorstKey { run_id, protocol: p, budget }, acc) in &worst_cases(&res.eval) {
        let Some(SweepRun { model, method, lambda: Some(l) }) = runs.get(run_id) else { continue };
        let clean_acc = res
            .eval
            .iter()
            .find(|r| &r.run_id == run_id && protocol(&r.preset, &r.subset) == *p)
            .map(|r| r.clean_acc);
        let key = TradeKey {
            model: model.clone(),
            method: method.clone(),
            protocol: p.clone(),
            budget: budget.to_string(),
            lambda: format!("{l}"),
        };
        let e = trade.entry(key).or_default();
        e.0.extend(clean_acc);
        e.1.push(*acc);
    }
    if trade.is_empty() {
        return None;
    }
    let header =
        ["model", "method", "protocol", "eps", "λ", "clean", "worst-case robust"].map(String::from);
    let mut rows: Vec<(f64, Vec<String>)> = trade
        .into_iter()
        .map(|(k, (c, r))| {
            let l = k.lambda.parse().unwrap_or(0.0);
            (l, vec![k.model, k.method, k.protocol, k.budget, k.lambda, pct(&c), pct(&r)])
        })
        .collect();
    rows.sort_by(|a, b| a.1[..4].cmp(&b.1[..4]).then(a.0.total_cmp(&b.0)));
    let rows: Vec<Vec<String>> = rows.into_iter().map(|(_, r)| r).collect();
    Some(format!("### Clean versus robust accuracy over λ\n\n{}", md_table(&header, &rows)))
}
