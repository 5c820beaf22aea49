//! T2: clean and robust accuracy per attack and eps, the worst case over the suite per eps, and
//! the GFA − ADV claim block ([`super::claims::gains`]), one section per protocol.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::base::{
    Acc, Budget, CellKey, Ctx, Group, Results, WorstKey, acc_cell, clean_by_group, eval_cells,
    md_table, n_cell, protocol, protocols, worst_cases,
};
use super::claims;

/// What every protocol section of T2 reads, computed once per report.
struct Data {
    cells: BTreeMap<(Group, CellKey), Vec<Acc>>,
    clean: BTreeMap<(Group, String), Vec<Acc>>,
    worst: BTreeMap<WorstKey, f64>,
    /// Each run's table row.
    run_group: BTreeMap<String, Group>,
    /// Each run's number of points per protocol.
    run_n: BTreeMap<(String, String), usize>,
    /// Each budget's eps, to order the columns by size.
    eps_value: BTreeMap<Budget, f64>,
}

impl Data {
    fn of(res: &Results, ctx: &Ctx) -> Data {
        Data {
            cells: eval_cells(res, ctx),
            clean: clean_by_group(res, ctx),
            worst: worst_cases(&res.eval),
            run_group: res.eval.iter().map(|r| (r.run_id.clone(), ctx.group_of(r))).collect(),
            run_n: res
                .eval
                .iter()
                .map(|r| ((r.run_id.clone(), protocol(&r.preset, &r.subset)), r.n))
                .collect(),
            eps_value: res.eval.iter().filter_map(|r| Some((Budget::of(r), r.eps?))).collect(),
        }
    }

    fn eps(&self, b: &Budget) -> f64 {
        self.eps_value.get(b).copied().unwrap_or(0.0)
    }

    /// The per-attack columns of protocol `p`, by attack, norm and growing eps.
    fn columns(&self, p: &str) -> Vec<CellKey> {
        let mut cols: Vec<CellKey> = self
            .cells
            .keys()
            .filter(|(_, k)| k.protocol == p)
            .map(|(_, k)| k.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        cols.sort_by(|a, b| {
            (&a.attack, &a.budget.norm)
                .cmp(&(&b.attack, &b.budget.norm))
                .then(self.eps(&a.budget).total_cmp(&self.eps(&b.budget)))
        });
        cols
    }

    /// The worst-case columns of protocol `p`, by norm and growing eps.
    fn worst_columns(&self, p: &str) -> Vec<Budget> {
        let mut cols: Vec<Budget> = self
            .worst
            .keys()
            .filter(|k| k.protocol == p)
            .map(|k| k.budget.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        cols.sort_by(|a, b| a.norm.cmp(&b.norm).then(self.eps(a).total_cmp(&self.eps(b))));
        cols
    }

    /// The worst cases of group `g`'s runs at budget `b` of protocol `p`.
    fn worst_of(&self, g: &Group, p: &str, b: &Budget) -> Vec<Acc> {
        self.worst
            .iter()
            .filter(|(k, _)| {
                k.protocol == p && &k.budget == b && self.run_group.get(&k.run_id) == Some(g)
            })
            .map(|(k, v)| {
                (*v, self.run_n.get(&(k.run_id.clone(), k.protocol.clone())).copied().unwrap_or(0))
            })
            .collect()
    }
}

pub(super) fn table(res: &Results, ctx: &Ctx) -> String {
    let mut s = String::from("## T2: clean and robust accuracy per attack and eps\n\n");
    if res.eval.is_empty() {
        s.push_str("No `eval.csv` rows in this results folder.\n");
        return s;
    }
    let data = Data::of(res, ctx);
    for p in protocols(res) {
        let _ = writeln!(s, "### Protocol: {p}\n");
        s.push_str(&accuracies(&data, &p));
        s.push('\n');
        s.push_str(&claims::gains(res, ctx, &p));
    }
    s
}

/// The accuracy table of protocol `p`: one row per group, one column per attack and budget,
/// then the worst cases.
fn accuracies(data: &Data, p: &str) -> String {
    let cols = data.columns(p);
    let wc_cols = data.worst_columns(p);
    let groups: BTreeSet<&Group> =
        data.clean.keys().filter(|(_, pp)| pp == p).map(|(g, _)| g).collect();
    let mut header = vec!["model".to_string(), "method".into(), "n".into(), "clean".into()];
    header.extend(cols.iter().map(|k| format!("{} {}", k.attack, k.budget)));
    header.extend(wc_cols.iter().map(|b| format!("worst case {b}")));
    let mut rows = Vec::new();
    for g in groups {
        let clean = &data.clean[&(g.clone(), p.to_string())];
        let mut row = g.cells();
        row.push(n_cell(clean.iter().map(|a| a.1)));
        row.push(acc_cell(clean));
        for c in &cols {
            row.push(acc_cell(data.cells.get(&(g.clone(), c.clone())).map_or(&[], Vec::as_slice)));
        }
        for b in &wc_cols {
            row.push(acc_cell(&data.worst_of(g, p, b)));
        }
        rows.push(row);
    }
    md_table(&header, &rows)
}
