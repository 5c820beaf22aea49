//! `gfa escalate FILE`: after a grid, a stronger evaluation for the runs that look robust.
//!
//! A cheap suite evaluates every run of a grid; a strong attack such as AutoAttack is only worth
//! its cost on the models that survive it. The experiment file says which, in `[escalate]`:
//!
//! ```toml
//! [escalate]
//! reference = "standard"       # the method kind of the reference runs (their mean over seeds)
//! margin = 0.05                # qualify: worst case more than 5 points above the reference's
//! norm = "linf"                # where the worst cases are compared
//! eps = "8/255"
//! skip_collapsed = false       # true: leave out the runs the masking checks call collapsed
//! attacks = [{ kind = "autoattack", eps = ["8/255"] }]   # entries as in [[attacks]]
//! ```
//!
//! A run's worst case is its lowest cumulative robust accuracy at (norm, eps), the per-point
//! worst case over the suite (standard protocol). For each qualifying run, `gfa escalate`
//! evaluates its trained model again with the grid's suite plus these attacks, on the same points
//! with the same seed (the suite's rows come out as before; the cumulative rows now include the
//! added attacks), replaces the run's `eval.csv`, `norms.csv`, `points.csv` and `gfa_value.csv`,
//! computes its Indicators of Attack Failure (`indicators.csv`, with the grid's `[indicators]`
//! settings or their defaults), and reruns its masking checks. The run keeps its id and
//! `config.toml`; its `escalated` file records what was added and why. With `binarize = { … }`
//! (a `[binarize]` table) the qualifying runs also get that binarization test, in place of the
//! grid's. A run that already has rows of every added attack (and of the added test) is left
//! alone, so the command can be rerun; runs not evaluated yet are reported and skipped.
use std::fmt::Write as _;

use crate::analysis::stats::Stat;
use crate::config::escalate::Escalate;
use crate::config::grid::RunSpec;
use crate::config::spec::{IndicatorsConfig, Subset};
use crate::results::records::{BinarizationRow, CheckRow, EvalRow, read_rows};
use crate::results::store::{ExperimentDir, Stage};
use crate::run::runner::{self, RunOptions, Stages};
use anyhow::{Context, Result, bail};

/// The file in a run folder recording its escalation.
pub const ESCALATED: &str = "escalated";

/// What the `[escalate]` table asks of a run's records.
impl Escalate {
    /// The lowest cumulative robust accuracy of `rows` at this table's norm and eps (standard
    /// protocol: all points).
    pub fn worst_case(&self, rows: &[EvalRow]) -> Option<f64> {
        let norm = self.norm.to_string();
        rows.iter()
            .filter(|r| r.mode == "cumulative" && r.norm == norm && r.subset == Subset::All.name())
            .filter(|r| r.eps.is_some_and(|e| (e - self.eps.value).abs() <= 1e-12))
            .filter_map(|r| r.robust_acc)
            .reduce(f64::min)
    }

    /// Whether `rows` (a run's `binarization.csv`) hold the added binarization test, if any.
    pub fn binarized(&self, rows: &[BinarizationRow]) -> bool {
        self.binarize.as_ref().is_none_or(|b| {
            rows.iter().any(|r| {
                r.result == "summary"
                    && r.attack == b.attack.name
                    && r.preset == b.attack.preset
                    && r.eps_text == b.eps.text
            })
        })
    }

    /// Whether `rows` already hold every added attack at each of its budgets.
    pub fn done(&self, rows: &[EvalRow]) -> bool {
        self.attacks.iter().all(|a| {
            a.eps.iter().all(|e| {
                rows.iter()
                    .any(|r| r.attack == a.name && r.preset == a.preset && r.eps_text == e.text)
            })
        })
    }
}

/// What an evaluated run looks like to the selection.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    pub run_id: String,
    pub method: String,
    pub worst: Option<f64>,
    pub collapsed: bool,
}

/// The reference's worst case (mean over its runs) and the ids of the qualifying runs.
pub fn select(esc: &Escalate, runs: &[Evaluated]) -> Result<(f64, Vec<String>)> {
    let reference: Vec<f64> =
        runs.iter().filter(|r| r.method == esc.reference).filter_map(|r| r.worst).collect();
    let Some(stat) = Stat::of(&reference) else {
        bail!(
            "no evaluated `{}` run has a cumulative {} {} row to compare with: run the grid first \
             (gfa run), with the reference method in it and an attack at that budget",
            esc.reference,
            esc.norm,
            esc.eps.text
        );
    };
    let qualifies = |r: &&Evaluated| {
        r.method != esc.reference
            && !(esc.skip_collapsed && r.collapsed)
            && r.worst.is_some_and(|w| w > stat.mean + esc.margin)
    };
    Ok((stat.mean, runs.iter().filter(qualifies).map(|r| r.run_id.clone()).collect()))
}

/// `gfa escalate`: evaluate the qualifying runs of `runs` (those `opts` selects; the reference
/// is the mean over every evaluated run of its method, selected or not) again with the suite
/// plus the added attacks, then rerun their masking checks (and those of runs an interrupted
/// call escalated before their checks ran). Returns the ids escalated by this call.
pub fn escalate(
    exp: &ExperimentDir,
    runs: &[RunSpec],
    esc: &Escalate,
    stages: &mut dyn Stages,
    opts: &RunOptions,
) -> Result<Vec<String>> {
    // The reference is the grid's, whichever runs `--only`/`--shard` pick to escalate: every
    // evaluated run is read, the picked ones alone are escalated.
    let picked: Vec<&str> = runner::select(runs, opts).iter().map(|r| r.run_id.as_str()).collect();
    let mut seen = Vec::new();
    for run in runs {
        let dir = exp.run(&run.run_id);
        if !dir.has(Stage::Evaluated) {
            if picked.contains(&run.run_id.as_str()) {
                eprintln!("run {}: not evaluated yet (gfa run first); skipped", run.run_id);
            }
            continue;
        }
        let eval: Vec<EvalRow> = read_rows(&dir.file("eval.csv"))?;
        let checks: Vec<CheckRow> = read_rows(&dir.file("checks.csv")).unwrap_or_default();
        let collapsed = checks.iter().any(|c| c.check == "verdict" && c.result == "collapsed");
        let worst = esc.worst_case(&eval);
        let method = run.key().method;
        let e = Evaluated { run_id: run.run_id.clone(), method, worst, collapsed };
        seen.push((run, eval, e));
    }
    let all: Vec<Evaluated> = seen.iter().map(|(_, _, e)| e.clone()).collect();
    let (reference, mut chosen) = select(esc, &all)?;
    chosen.retain(|id| picked.contains(&id.as_str()));
    println!(
        "reference `{}`: worst case {:.1}% at {} {}; a run qualifies above {:.1}%",
        esc.reference,
        100.0 * reference,
        esc.norm,
        esc.eps.text,
        100.0 * (reference + esc.margin)
    );
    if let Some(b) = &esc.binarize {
        // Every chosen run's model must carry the test, before any run is escalated.
        for (run, _, _) in seen.iter().filter(|(r, _, _)| chosen.contains(&r.run_id)) {
            b.check_run(run.config.model.arch, run.config.image_shape()).map_err(|e| {
                anyhow::anyhow!("[escalate] binarize: run {}: {}", run.run_id, e.message)
            })?;
        }
    }
    let mut escalated = Vec::new();
    // Runs escalated by an interrupted call, whose masking checks have not run on the new rows.
    let mut unchecked = Vec::new();
    for (run, eval, e) in seen.iter().filter(|(r, _, _)| chosen.contains(&r.run_id)) {
        let dir = exp.run(&run.run_id);
        let worst = 100.0 * e.worst.unwrap_or(f64::NAN);
        let tested: Vec<BinarizationRow> =
            crate::analysis::report::base::read_opt(&dir.file(runner::BINARIZATION))?;
        if esc.done(eval) && esc.binarized(&tested) {
            println!("run {} ({worst:.1}%): already escalated", run.run_id);
            if !dir.has(Stage::Checked) {
                unchecked.push(run.run_id.clone());
            }
            continue;
        }
        if run.config.eval.subset != Subset::All {
            eprintln!(
                "run {}: escalation evaluates subset = \"all\" runs only; skipped",
                run.run_id
            );
            continue;
        }
        let Some(_lock) = dir.try_lock()? else {
            eprintln!("run {}: another process is working it; skipped", run.run_id);
            continue;
        };
        println!("run {} ({worst:.1}%): evaluating with the added attacks", run.run_id);
        let mut wider = (*run).clone();
        wider.attacks.extend(esc.attacks.iter().cloned());
        if let Some(b) = &esc.binarize {
            wider.binarize = Some(b.clone());
        }
        // An escalated run is one that looks robust: its Indicators of Attack Failure say
        // whether the attacks or the model make it so (the grid's settings, or the defaults).
        wider.indicators.get_or_insert_with(IndicatorsConfig::default);
        let out = stages
            .evaluate(&wider, &dir, None)
            .with_context(|| format!("escalating run {}", run.run_id))?;
        runner::write_evaluation(&dir, &out)?;
        let mut note = format!(
            "worst case {worst:.2}% at {} {} > reference `{}` {:.2}% + {:.2} points; added:\n",
            esc.norm,
            esc.eps.text,
            esc.reference,
            100.0 * reference,
            100.0 * esc.margin
        );
        for a in &esc.attacks {
            let _ = writeln!(
                note,
                "{}",
                crate::config::keys::canonical(&toml::Value::Table(a.to_table()))
            );
        }
        if let Some(b) = &esc.binarize {
            let table = crate::config::keys::canonical(&toml::Value::Table(b.to_table()));
            let _ = writeln!(note, "binarize {table}");
        }
        gfa_data::atomic::write_atomic(&dir.file(ESCALATED), note.as_bytes())?;
        dir.unmark_from(Stage::Checked)?;
        escalated.push(run.run_id.clone());
    }
    if !escalated.is_empty() || !unchecked.is_empty() {
        // `gfa run`'s check stage reads the new eval.csv.
        let only = escalated.iter().chain(&unchecked).cloned().collect();
        let again = RunOptions { only, shard: None, ..opts.clone() };
        let summary = runner::run_grid(exp, runs, stages, &again)?;
        for (id, e) in &summary.failed {
            eprintln!("run {id}: masking checks failed: {e}");
        }
    }
    crate::results::store::collect_all(exp)?;
    Ok(escalated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc() -> Escalate {
        crate::config::escalate::example()
    }

    fn row(mode: &str, eps: &str, acc: f64) -> EvalRow {
        EvalRow {
            attack: "pgd".into(),
            mode: mode.into(),
            norm: "linf".into(),
            eps_text: eps.into(),
            eps: Some(gfa_core::rational::parse_rational(eps).unwrap()),
            subset: "all".into(),
            robust_acc: Some(acc),
            ..Default::default()
        }
    }

    #[test]
    fn worst_case_is_the_lowest_cumulative_row_at_the_budget() {
        let rows = [
            row("individual", "8/255", 0.10),
            row("cumulative", "8/255", 0.30),
            row("cumulative", "8/255", 0.25),
            row("cumulative", "2/255", 0.05),
        ];
        assert_eq!(esc().worst_case(&rows), Some(0.25));
        assert_eq!(esc().worst_case(&rows[..1]), None);
        let mut aa = row("individual", "8/255", 0.2);
        aa.attack = "autoattack".into();
        aa.preset = esc().attacks[0].preset.clone();
        assert!(!esc().done(&rows) && esc().done(&[aa]));
    }

    #[test]
    fn a_run_qualifies_above_the_reference_mean_plus_the_margin() {
        let run = |id: &str, method: &str, worst: Option<f64>, collapsed: bool| Evaluated {
            run_id: id.into(),
            method: method.into(),
            worst,
            collapsed,
        };
        let runs = [
            run("s0", "standard", Some(0.01), false),
            run("s1", "standard", Some(0.03), false),
            run("adv", "pgd_at", Some(0.21), false),
            run("edge", "gfa", Some(0.0699), false),
            run("above", "gfa", Some(0.0701), false),
            run("dead", "gfa", Some(0.09), true),
            run("unknown", "gfa", None, false),
        ];
        let (reference, chosen) = select(&esc(), &runs).unwrap();
        assert!((reference - 0.02).abs() < 1e-12);
        assert_eq!(chosen, vec!["adv".to_string(), "above".into(), "dead".into()]);
        let skip = Escalate { skip_collapsed: true, ..esc() };
        assert!(!select(&skip, &runs).unwrap().1.contains(&"dead".to_string()));
        let e = select(&esc(), &runs[2..]).unwrap_err().to_string();
        assert!(e.contains("`standard`"), "{e}");
    }
}
