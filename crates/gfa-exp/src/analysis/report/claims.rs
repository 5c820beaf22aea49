//! The paper's claims next to the measured numbers, per protocol:
//! - T2's "GFA − ADV": GFA's robust accuracy minus PGD adversarial training's, under every APGD
//!   variant and FGSM of the suite at each eps (paper: up to +15.2 and +24.7 points);
//! - T3's ratios: the median minimum perturbation of every minimum-norm attack of the suite,
//!   divided by standard training's (paper: 20–30×).
//!
//! Every row carries the clean accuracies and `n`; with one seed, accuracies carry Wilson 95 %
//! intervals and GFA − ADV the paired (Newcombe) interval and the exact McNemar p-value from
//! `points.csv`; with several seeds, mean ± std over seeds and one p-value per seed. Which
//! attack counts for which claim is the registry's fact ([`Facts::algorithm`],
//! [`Facts::minimum_norm`]), never its name. A claim that cannot be computed is listed with
//! the reason.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use gfa_attacks::{Algorithm, AttackSpec, Facts};

use super::base::{Acc, Ctx, Results, acc_cell, md_table, n_cell, protocol};
use crate::analysis::points::{self, Outcomes};
use crate::analysis::stats::Paired;
use crate::analysis::stats::Stat;
use crate::config::spec::STANDARD;
use crate::results::records::EvalRow;

/// The method kinds the claims compare.
pub const GFA: &str = "gfa";
pub const ADV: &str = "pgd_at";

/// The paper's gains of GFA over ADV, per attack algorithm, in accuracy points.
pub const GAINS: [(Algorithm, f64); 2] = [
    (Algorithm::Apgd, super::base::PAPER_GAIN_APGD),
    (Algorithm::Fgsm, super::base::PAPER_GAIN_FGSM),
];

fn facts(r: &EvalRow) -> Option<Facts> {
    gfa_attacks::registry::facts(&r.kind)
}

/// The registry kinds of `algorithm`, for "the suite has no … attack (kinds)".
fn kinds_of(pred: impl Fn(Facts) -> bool) -> String {
    AttackSpec::KINDS
        .iter()
        .filter(|k| gfa_attacks::registry::facts(k).is_some_and(&pred))
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

/// What identifies a GFA − ADV comparison: model, GFA label, ADV label, attack, norm, eps.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GainKey {
    model: String,
    gfa: String,
    adv: String,
    attack: String,
    norm: String,
    eps_text: String,
}

/// A GFA run's row and the ADV run's row of the same model, seed, attack and eps.
struct Pair<'a> {
    gfa: &'a EvalRow,
    adv: &'a EvalRow,
}

fn pair_cells(pairs: &[Pair], pts: &BTreeMap<points::RowKey, Outcomes>) -> [String; 7] {
    let acc = |f: &dyn Fn(&Pair) -> (f64, usize)| -> Vec<Acc> { pairs.iter().map(f).collect() };
    let n = n_cell(pairs.iter().map(|p| p.gfa.n));
    let clean_g = acc_cell(&acc(&|p| (p.gfa.clean_acc, p.gfa.n)));
    let clean_a = acc_cell(&acc(&|p| (p.adv.clean_acc, p.adv.n)));
    let rob_g = acc_cell(&acc(&|p| (p.gfa.robust_acc.unwrap_or(f64::NAN), p.gfa.n)));
    let rob_a = acc_cell(&acc(&|p| (p.adv.robust_acc.unwrap_or(f64::NAN), p.adv.n)));
    let tables: Vec<Option<Paired>> = pairs
        .iter()
        .map(|p| {
            let (g, a) = (points::of(pts, p.gfa)?, points::of(pts, p.adv)?);
            Some(Paired::of(&points::paired(g, a)?))
        })
        .collect();
    let diffs: Vec<f64> =
        pairs.iter().filter_map(|p| Some(p.gfa.robust_acc? - p.adv.robust_acc?)).collect();
    let diff = match (&tables[..], Stat::of(&diffs)) {
        ([Some(t)], _) => t.difference().map_or("—".into(), |d| d.pct_signed(1)),
        (_, Some(s)) if s.n > 1 => {
            format!("{:+.1} ± {:.1}", 100.0 * s.mean, 100.0 * s.std.unwrap_or(0.0))
        }
        (_, Some(s)) => format!("{:+.1} (no paired points)", 100.0 * s.mean),
        (_, None) => "—".into(),
    };
    let p = tables
        .iter()
        .map(|t| t.map_or("—".into(), |t| format!("{:.3}", t.mcnemar_p())))
        .collect::<Vec<_>>()
        .join("; ");
    [n, clean_g, clean_a, rob_g, rob_a, diff, p]
}

/// The GFA − ADV rows of protocol `p` for the claim of `algorithm`, and why rows are missing.
fn gain_rows(
    res: &Results,
    ctx: &Ctx,
    p: &str,
    (algorithm, paper): (Algorithm, f64),
) -> (Vec<Vec<String>>, Vec<String>) {
    let rows: Vec<&EvalRow> = res
        .eval
        .iter()
        .filter(|r| r.mode == "individual" && protocol(&r.preset, &r.subset) == p)
        .filter(|r| facts(r).is_some_and(|f| f.algorithm == algorithm))
        .collect();
    let in_protocol =
        |m: &str| res.eval.iter().any(|r| r.method == m && protocol(&r.preset, &r.subset) == p);
    let mut why = Vec::new();
    if rows.is_empty() {
        why.push(format!(
            "the suite has no {} attack ({})",
            algorithm.name(),
            kinds_of(|f| f.algorithm == algorithm)
        ));
    }
    for (m, what) in [(GFA, "GFA"), (ADV, "ADV (PGD adversarial training)")] {
        if !in_protocol(m) {
            why.push(format!("no run trains with `{m}` ({what})"));
        }
    }
    let mut by: BTreeMap<GainKey, Vec<Pair>> = BTreeMap::new();
    for g in rows.iter().filter(|r| r.method == GFA) {
        for a in rows.iter().filter(|r| r.method == ADV) {
            let same = a.model == g.model
                && a.seed == g.seed
                && (&a.attack, &a.preset, &a.norm, &a.eps_text)
                    == (&g.attack, &g.preset, &g.norm, &g.eps_text);
            if !same {
                continue;
            }
            let key = GainKey {
                model: g.model.clone(),
                gfa: ctx.label(&g.run_id),
                adv: ctx.label(&a.run_id),
                attack: g.attack.clone(),
                norm: g.norm.clone(),
                eps_text: g.eps_text.clone(),
            };
            by.entry(key).or_default().push(Pair { gfa: g, adv: a });
        }
    }
    if by.is_empty() && why.is_empty() {
        why.push("no GFA and ADV runs of the same model and seed".into());
    }
    let out = by
        .iter()
        .map(|(k, pairs)| {
            let mut row = vec![
                format!("{} − {}", k.gfa, k.adv),
                k.model.clone(),
                k.attack.clone(),
                format!("{} {}", k.norm, k.eps_text),
            ];
            row.extend(pair_cells(pairs, &res.points));
            row.push(format!("up to +{paper:.1}"));
            row
        })
        .collect();
    (out, why)
}

/// T2's claim block for protocol `p`: GFA − ADV under each APGD variant and FGSM.
pub(super) fn gains(res: &Results, ctx: &Ctx, p: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "#### GFA − ADV (the paper: up to +{:.1} points under APGD, +{:.1} under FGSM)\n",
        super::base::PAPER_GAIN_APGD,
        super::base::PAPER_GAIN_FGSM
    );
    let mut rows = Vec::new();
    for claim in GAINS {
        let (r, why) = gain_rows(res, ctx, p, claim);
        if !why.is_empty() {
            let _ = writeln!(
                s,
                "- GFA − ADV under {} cannot be computed: {}.",
                claim.0.name(),
                why.join("; ")
            );
        }
        rows.extend(r);
    }
    if !rows.is_empty() {
        let header = [
            "comparison",
            "model",
            "attack",
            "eps",
            "n",
            "clean GFA",
            "clean ADV",
            "robust GFA",
            "robust ADV",
            "GFA − ADV (pts)",
            "McNemar p",
            "paper (pts)",
        ]
        .map(String::from);
        s.push('\n');
        s.push_str(&md_table(&header, &rows));
    }
    s.push('\n');
    s
}

/// What identifies a T3 row: model, method label, attack, norm.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RatioKey {
    model: String,
    method: String,
    attack: String,
    norm: String,
}

/// The median minimum norm of a row, in its own threat model.
fn median(r: &EvalRow) -> Option<f64> {
    match r.norm.as_str() {
        "l2" => r.median_l2,
        "l1" => r.median_l1,
        _ => r.median_linf,
    }
}

/// T3 for protocol `p`: per model, method and minimum-norm attack of the suite, the median
/// minimum norm (one per run: its one run is thresholded at every eps) and its ratio to standard
/// training of the same model; `None` when the suite has no minimum-norm attack with an
/// individual row.
pub(super) fn ratios(res: &Results, ctx: &Ctx, p: &str) -> Option<String> {
    let mut seen = BTreeSet::new();
    let mut by: BTreeMap<RatioKey, (Vec<f64>, Vec<Acc>, bool)> = BTreeMap::new();
    // A cumulative row (`eval.individual = false`) counts the attack within the pass's budget
    // after the earlier attacks, and carries no medians: it is no minimum-norm measurement.
    let rows = res.eval.iter().filter(|r| protocol(&r.preset, &r.subset) == p);
    let rows = rows.filter(|r| r.mode != "cumulative");
    for r in rows.filter(|r| facts(r).is_some_and(|f| f.minimum_norm())) {
        // A run whose attack fooled no point has no median; its row says so.
        let v = median(r);
        if !seen.insert((r.run_id.clone(), r.attack.clone(), r.preset.clone())) {
            continue;
        }
        let key = RatioKey {
            model: r.model.clone(),
            method: ctx.label(&r.run_id),
            attack: r.attack.clone(),
            norm: r.norm.clone(),
        };
        let e = by.entry(key).or_default();
        e.0.extend(v);
        e.1.push((r.clean_acc, r.n));
        e.2 |= r.method == STANDARD;
    }
    if by.is_empty() {
        return None;
    }
    let standard: BTreeMap<(String, String, String), f64> = by
        .iter()
        .filter(|(_, v)| v.2)
        .filter_map(|(k, v)| {
            Some(((k.model.clone(), k.attack.clone(), k.norm.clone()), Stat::of(&v.0)?.mean))
        })
        .collect();
    let mut s = String::new();
    if standard.is_empty() {
        let _ = writeln!(
            s,
            "- Ratios to standard training cannot be computed: no run trains with `{STANDARD}`.\n"
        );
    }
    let rows: Vec<Vec<String>> = by
        .iter()
        .map(|(k, (norms, clean, _))| {
            let st = Stat::of(norms);
            let base = standard.get(&(k.model.clone(), k.attack.clone(), k.norm.clone()));
            let ratio = match (st, base) {
                (Some(st), Some(&b)) if b > 0.0 => format!("{:.1}×", st.mean / b),
                _ => "—".into(),
            };
            vec![
                k.model.clone(),
                k.method.clone(),
                n_cell(clean.iter().map(|a| a.1)),
                acc_cell(clean),
                format!("{} ({})", k.attack, k.norm),
                st.map_or("— (fooled no point)".into(), |st| st.fmt(1.0, 4)),
                ratio,
                super::base::PAPER_RATIO.into(),
            ]
        })
        .collect();
    let header = [
        "model",
        "method",
        "n",
        "clean",
        "attack (norm)",
        "median min. norm",
        "ratio to standard",
        "paper",
    ]
    .map(String::from);
    s.push_str(&md_table(&header, &rows));
    Some(s)
}

/// Why T3 has no rows in a results folder.
pub(super) fn no_ratio_reason() -> String {
    format!(
        "T3 cannot be computed: the suite has no minimum-norm attack ({}) with a row of its \
         own (a cumulative row, `eval.individual = false`, carries no per-point norms).\n",
        kinds_of(|f| f.minimum_norm())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimum-norm attack's cumulative row (no medians: `eval.individual = false`) gives no
    /// T3 row, rather than one saying it fooled no point.
    #[test]
    fn cumulative_rows_of_minimum_norm_attacks_are_not_in_t3() {
        let row = |mode: &str, median: Option<f64>| EvalRow {
            run_id: "r".into(),
            model: "cnn".into(),
            method: STANDARD.into(),
            attack: "fab-t".into(),
            kind: "fab-t".into(),
            preset: "reference".into(),
            subset: "all".into(),
            norm: "linf".into(),
            mode: mode.into(),
            median_linf: median,
            n: 10,
            ..EvalRow::default()
        };
        let p = protocol("reference", "all");
        let ctx_of = |rows: Vec<EvalRow>| {
            let res = Results { eval: rows, ..Results::default() };
            ratios(&res, &Ctx::of(&res), &p)
        };
        assert_eq!(ctx_of(vec![row("cumulative", None)]), None);
        let t = ctx_of(vec![row("individual", Some(0.03))]).unwrap();
        assert!(t.contains("fab-t (linf)") && t.contains("0.0300"), "{t}");
    }

    #[test]
    fn compared_methods_are_registered() {
        for m in [GFA, ADV, STANDARD] {
            assert!(gfa_core::Method::KINDS.contains(&m), "{m}");
        }
    }
}
