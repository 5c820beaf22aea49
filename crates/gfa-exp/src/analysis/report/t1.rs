//! T1: the GFA value per tap, mean ± std over seeds of the cosine between each tap's features
//! and the loss gradient.

use std::collections::{BTreeMap, BTreeSet};

use super::base::{Ctx, Group, Results, md_table};
use crate::analysis::stats::Stat;

/// A T1 column: the split the value is measured on and the tap.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Column {
    split: String,
    tap: String,
}

pub(super) fn table(res: &Results, ctx: &Ctx) -> String {
    let mut s =
        String::from("## T1: GFA value per tap (mean cosine between tap and loss gradient)\n\n");
    if res.gfa_value.is_empty() {
        s.push_str("No `gfa_value.csv` rows in this results folder.\n");
        return s;
    }
    let column = |r: &crate::results::records::GfaValueRow| Column {
        split: r.split.clone(),
        tap: r.tap.clone(),
    };
    let cols: BTreeSet<Column> = res.gfa_value.iter().map(column).collect();
    let mut cells: BTreeMap<(Group, Column), Vec<f64>> = BTreeMap::new();
    for r in &res.gfa_value {
        let g = ctx.group(&r.run_id);
        cells.entry((g, column(r))).or_default().push(r.value);
    }
    let groups: BTreeSet<Group> = cells.keys().map(|(g, _)| g.clone()).collect();
    let mut header = vec!["model".to_string(), "method".into()];
    header.extend(cols.iter().map(|c| format!("{} ({})", c.tap, c.split)));
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let mut row = g.cells();
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
