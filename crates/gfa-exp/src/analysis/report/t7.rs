//! T7: GFA against the frontier the controls trace ([`crate::analysis::frontier`]). First the
//! controls and which of them form the frontier; then, per GFA configuration, its clean and
//! robust accuracy, its input-tap cosine, the frontier's robust accuracy interpolated at its
//! clean accuracy, and, per seed, the paired difference to the frontier control nearest in
//! clean accuracy (Newcombe's 95 % interval, McNemar's exact p); below, the configurations
//! above that control in every seed. Omitted, with the reason, when the results have no GFA
//! run or no control to compare.

use std::fmt::Write as _;

use super::base::{Acc, Ctx, Results, acc_cell, md_table, n_cell};
use crate::analysis::frontier::{self, Comparison, Config, Metric, ModelFrontier, SeedPair};
use crate::analysis::stats::{Stat, percent_or_dash};

pub(super) fn table(res: &Results, ctx: &Ctx) -> String {
    let mut s = String::from("## T7: GFA against the frontier the controls trace\n\n");
    let cmp = match frontier::compare(res, &ctx.groups) {
        Ok(c) => c,
        Err(why) => {
            let _ = writeln!(s, "T7 is omitted: {why}.");
            return s;
        }
    };
    intro(&mut s, &cmp);
    s.push_str("### Controls\n\n");
    s.push_str(&controls(&cmp));
    s.push_str("\n### GFA configurations\n\n");
    let mut rows = Vec::new();
    let mut sides = Vec::new();
    for view in &cmp.models {
        for c in &view.gfa {
            let control = view.nearest(c.clean());
            let pairs = frontier::pairs(res, c, control);
            rows.push(gfa_row(view, c, control, &pairs));
            let name = match cmp.models.len() {
                1 => c.label.clone(),
                _ => format!("{} ({})", c.label, view.model),
            };
            sides.push((name, side(&pairs)));
        }
    }
    let header = [
        "model",
        "configuration",
        "seeds",
        "n",
        "clean",
        "robust",
        "input cos",
        "frontier at its clean",
        "− frontier (pts)",
        "nearest frontier control",
        "its clean",
        "its robust",
        "paired difference (pts, 95 %)",
        "McNemar p",
    ]
    .map(String::from);
    s.push_str(&md_table(&header, &rows));
    s.push('\n');
    summary(&mut s, &sides);
    s
}

/// What the table compares and how.
fn intro(s: &mut String, cmp: &Comparison) {
    let why = match cmp.metric {
        Metric::AutoAttack => "every compared run has it",
        Metric::WorstCase => "not every compared run has AutoAttack there",
    };
    let _ = writeln!(
        s,
        "Standard protocol (reference presets, every point). Robust accuracy: **{}** ({why}). \
         Controls: every run whose method does not train with the GFA penalty (GFA runs: `{}`). \
         The frontier of a model: its control configurations (means over seeds) that no other \
         control configuration matches or beats in both clean and robust accuracy, joined by \
         straight lines in order of clean accuracy (`figures/frontier_<model>`). `frontier at \
         its clean`: the frontier's robust accuracy at the configuration's mean clean accuracy \
         (left of the frontier, its most robust point's; right of it none: no control is that \
         accurate). Each GFA configuration is paired with the frontier configuration nearest in \
         clean accuracy: per seed, that configuration's run of the same seed (`s1↔0`: of the \
         lowest seed, where it has no run of seed 1), on the same points: the difference of \
         robust accuracy with Newcombe's 95 % interval and McNemar's exact p (docs/method.md \
         §8–9). With one seed an accuracy carries its Wilson interval; with several, mean ± std.\n",
        cmp.metric.name(),
        frontier::gfa_methods().join("`, `"),
    );
    if cmp.not_compared > 0 {
        let _ = writeln!(
            s,
            "{} run(s) without a standard-protocol worst case at L∞ {} are not compared.\n",
            cmp.not_compared,
            frontier::AT
        );
    }
    for m in &cmp.without_controls {
        let _ =
            writeln!(s, "Model {m}: no control run; its GFA configurations are not compared.\n");
    }
}

/// The cells of a configuration's runs: seeds, n, clean, robust.
fn run_cells(c: &Config) -> [String; 4] {
    let acc = |f: fn(&frontier::Run) -> f64| -> Vec<Acc> {
        c.runs.iter().map(|r| (f(r), r.row.n)).collect()
    };
    let seeds: Vec<String> = c.runs.iter().map(|r| r.seed.to_string()).collect();
    [
        seeds.join(","),
        n_cell(c.runs.iter().map(|r| r.row.n)),
        acc_cell(&acc(|r| r.clean)),
        acc_cell(&acc(|r| r.robust)),
    ]
}

/// Every control configuration, and whether it is on its model's frontier.
fn controls(cmp: &Comparison) -> String {
    let header =
        ["model", "control", "seeds", "n", "clean", "robust", "on the frontier"].map(String::from);
    let mut rows = Vec::new();
    for view in &cmp.models {
        for (i, c) in view.controls.iter().enumerate() {
            let mut row = vec![view.model.clone(), c.label.clone()];
            row.extend(run_cells(c));
            row.push(if view.frontier.contains(&i) { "yes" } else { "no" }.into());
            rows.push(row);
        }
    }
    md_table(&header, &rows)
}

/// A GFA configuration's row against the frontier of `view` and its nearest control.
fn gfa_row(view: &ModelFrontier, c: &Config, control: &Config, pairs: &[SeedPair]) -> Vec<String> {
    let mut row = vec![view.model.clone(), c.label.clone()];
    row.extend(run_cells(c));
    let cos: Vec<f64> = c.runs.iter().filter_map(|r| r.input_cos).collect();
    row.push(Stat::of(&cos).map_or("—".into(), |s| s.fmt(1.0, 3)));
    let at = view.value_at(c.clean());
    row.push(percent_or_dash(at, 1));
    row.push(at.map_or("—".into(), |v| format!("{:+.1}", 100.0 * (c.robust() - v))));
    let [_, _, clean, robust] = run_cells(control);
    row.extend([control.label.clone(), clean, robust]);
    row.extend(pair_cells(pairs));
    row
}

/// The paired difference and McNemar's p of each seed's pair, `; `-joined, each named by its
/// seeds where there are several or they differ (`s0`, `s1↔0`).
fn pair_cells(pairs: &[SeedPair]) -> [String; 2] {
    let tag = |p: &SeedPair| match (pairs.len(), p.seed == p.control_seed) {
        (1, true) => String::new(),
        (_, true) => format!("s{} ", p.seed),
        (_, false) => format!("s{}↔{} ", p.seed, p.control_seed),
    };
    let cell = |f: &dyn Fn(&SeedPair) -> Option<String>| {
        let parts: Vec<String> =
            pairs.iter().map(|p| format!("{}{}", tag(p), f(p).unwrap_or("—".into()))).collect();
        parts.join("; ")
    };
    [
        cell(&|p| Some(p.table?.difference()?.pct_signed(1))),
        cell(&|p| Some(format!("{:.3}", p.table?.mcnemar_p()))),
    ]
}

/// Where a GFA configuration is against its nearest frontier control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Above beyond the 95 % interval in every seed.
    Above,
    /// Below beyond it in every seed.
    Below,
    /// Neither.
    Within,
    /// Some seed has no per-point outcomes to pair.
    Unpaired,
}

fn side(pairs: &[SeedPair]) -> Side {
    let Some(diffs) = pairs.iter().map(|p| p.table?.difference()).collect::<Option<Vec<_>>>()
    else {
        return Side::Unpaired;
    };
    if diffs.iter().all(|d| d.low > 0.0) {
        Side::Above
    } else if diffs.iter().all(|d| d.high < 0.0) {
        Side::Below
    } else {
        Side::Within
    }
}

/// The configurations above their nearest frontier control, and how many are where.
fn summary(s: &mut String, sides: &[(String, Side)]) {
    let above: Vec<&str> =
        sides.iter().filter(|x| x.1 == Side::Above).map(|x| x.0.as_str()).collect();
    let count = |k: Side| sides.iter().filter(|x| x.1 == k).count();
    let list = if above.is_empty() { "none".to_string() } else { above.join(", ") };
    let _ = writeln!(
        s,
        "GFA configurations above their nearest frontier control beyond the 95 % interval in \
         every seed: {list}.\n\nOf {} GFA configurations: {} above, {} below beyond the interval \
         in every seed, {} neither, {} without per-point outcomes (points.csv) to pair.\n",
        sides.len(),
        above.len(),
        count(Side::Below),
        count(Side::Within),
        count(Side::Unpaired)
    );
}
