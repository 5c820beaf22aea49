//! T5: where the time went — per run, the wall time of its training and of each attack of the
//! suite, from the `seconds` columns of `train.csv` and `eval.csv`.
//!
//! Training time is the sum of the epochs' times. An attack's time is the sum over its
//! `individual` rows (one per budget), except for a minimum-norm attack, which runs once per
//! run and repeats that run's time on each of its rows (counted once). `cumulative` rows are
//! built from the individual runs and cost nothing of their own.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::base::{Ctx, Group, Results};
use super::groups::Config;
use crate::results::timing::clock;

/// One run's costs in seconds: training, and per attack name.
#[derive(Debug, Default)]
struct Cost {
    group: Option<Group>,
    seed: u64,
    train: f64,
    /// The training is another run's of this table (same configuration, seed and epoch times):
    /// a run differing only in `[eval]` took its twin's checkpoint.
    shared: bool,
    attacks: BTreeMap<String, f64>,
}

/// Per run id, its costs.
fn costs(res: &Results, ctx: &Ctx) -> BTreeMap<String, Cost> {
    let mut out: BTreeMap<String, Cost> = BTreeMap::new();
    for r in &res.train {
        let c = out.entry(r.run_id.clone()).or_default();
        c.group.get_or_insert_with(|| ctx.group(&r.run_id));
        c.seed = r.seed;
        c.train += r.seconds;
    }
    // Minimum-norm attacks: the (run, attack, subset) whose time was already counted.
    let mut counted: BTreeSet<(String, String, String)> = BTreeSet::new();
    for r in res.eval.iter().filter(|r| r.mode == "individual") {
        let c = out.entry(r.run_id.clone()).or_default();
        c.group.get_or_insert_with(|| ctx.group_of(r));
        c.seed = r.seed;
        let once = gfa_attacks::registry::facts(&r.kind).is_some_and(|f| f.minimum_norm());
        if once && !counted.insert((r.run_id.clone(), r.attack.clone(), r.subset.clone())) {
            continue;
        }
        *c.attacks.entry(r.attack.clone()).or_default() += r.seconds;
    }
    // Twins share one training: count it in the first (by run id) only.
    let mut seen: BTreeSet<(Option<Config>, u64, u64)> = BTreeSet::new();
    for (id, c) in out.iter_mut() {
        let training = ctx.groups.config(id).map(Config::training);
        if c.train > 0.0 && !seen.insert((training, c.seed, c.train.to_bits())) {
            c.shared = true;
        }
    }
    out
}

pub(super) fn table(res: &Results, ctx: &Ctx) -> String {
    let mut s = String::from("## T5: where the time went\n\n");
    let costs = costs(res, ctx);
    if costs.is_empty() {
        s.push_str("No timings (no train.csv or eval.csv rows).\n");
        return s;
    }
    s.push_str(
        "Wall time per run (m:ss) of training (all epochs, diagnostics and validation included) \
         and of each attack (all its budgets; a minimum-norm attack runs once), from the \
         `seconds` columns of train.csv and eval.csv. Runs that share one training (differing \
         only in `[eval]`) count the training once (`shared` in the other).\n\n",
    );
    let attacks: BTreeSet<&String> = costs.values().flat_map(|c| c.attacks.keys()).collect();
    let mut header = vec!["model", "method", "seed", "train"];
    header.extend(attacks.iter().map(|a| a.as_str()));
    header.push("total");
    let _ = writeln!(s, "| {} |", header.join(" | "));
    let _ = writeln!(s, "|{}", " --- |".repeat(header.len()));
    let mut sums = vec![0.0; attacks.len() + 2];
    let mut rows: Vec<(&Cost, &String)> = costs.iter().map(|(id, c)| (c, id)).collect();
    rows.sort_by(|a, b| (&a.0.group, a.0.seed, a.1).cmp(&(&b.0.group, b.0.seed, b.1)));
    for (c, _) in rows {
        let mut cells = c.group.as_ref().map_or_else(|| vec![String::new(); 2], Group::cells);
        cells.push(c.seed.to_string());
        let train = if c.shared { 0.0 } else { c.train };
        cells.push(if c.shared { "shared".into() } else { clock(train) });
        sums[0] += train;
        let mut total = train;
        for (i, a) in attacks.iter().enumerate() {
            let v = c.attacks.get(*a).copied();
            cells.push(v.map_or_else(|| "—".into(), clock));
            total += v.unwrap_or(0.0);
            sums[i + 1] += v.unwrap_or(0.0);
        }
        sums[attacks.len() + 1] += total;
        cells.push(clock(total));
        let _ = writeln!(s, "| {} |", cells.join(" | "));
    }
    let mut cells = vec!["**all runs**".to_string(), String::new(), String::new()];
    cells.extend(sums.iter().map(|v| format!("**{}**", clock(*v))));
    let _ = writeln!(s, "| {} |", cells.join(" | "));
    if let Some(t) = &res.timing {
        let _ = writeln!(
            s,
            "\nThe grid's last `gfa run` (`timing.json`): {}; the prediction is the \
             calibrated costs of `gfa plan` scheduled on the workers.",
            t.line()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::records::{EvalRow, TrainRow};

    fn eval(run: &str, attack: &str, kind: &str, eps: &str, mode: &str, secs: f64) -> EvalRow {
        EvalRow {
            run_id: run.into(),
            model: "cnn".into(),
            method: "standard".into(),
            attack: attack.into(),
            kind: kind.into(),
            eps_text: eps.into(),
            mode: mode.into(),
            subset: "all".into(),
            seconds: secs,
            ..Default::default()
        }
    }

    #[test]
    fn sums_epochs_and_budgets_and_counts_a_minimum_norm_attack_once() {
        let mut res = Results::default();
        for s in [10.0, 12.0] {
            res.train.push(TrainRow {
                run_id: "r1".into(),
                model: "cnn".into(),
                method: "standard".into(),
                seconds: s,
                ..Default::default()
            });
        }
        res.eval = vec![
            eval("r1", "pgd", "pgd", "2/255", "individual", 3.0),
            eval("r1", "pgd", "pgd", "8/255", "individual", 4.0),
            eval("r1", "pgd", "pgd", "8/255", "cumulative", 0.0),
            eval("r1", "deepfool", "deepfool", "0.25", "individual", 5.0),
            eval("r1", "deepfool", "deepfool", "0.5", "individual", 5.0),
        ];
        let ctx = Ctx::of(&res);
        let c = &costs(&res, &ctx)["r1"];
        assert_eq!(c.train, 22.0);
        assert_eq!(c.attacks["pgd"], 7.0);
        assert_eq!(c.attacks["deepfool"], 5.0, "a minimum-norm attack runs once per run");
        let t = table(&res, &ctx);
        assert!(t.contains("| cnn | standard | 0 | 0:22 | 0:05 | 0:07 | 0:34 |"), "{t}");
    }

    #[test]
    fn a_training_shared_by_twins_is_counted_once() {
        let mut res = Results::default();
        for run in ["a", "b"] {
            res.train.push(TrainRow {
                run_id: run.into(),
                model: "cnn".into(),
                method: "standard".into(),
                seconds: 30.0,
                ..Default::default()
            });
        }
        // Twins differ in an `[eval]` key only: two groups, one training.
        res.axes.insert("a".into(), "eval.subset=all".into());
        res.axes.insert("b".into(), "eval.subset=all_correct".into());
        let ctx = Ctx::of(&res);
        let t = table(&res, &ctx);
        assert!(t.contains("| cnn | standard subset=all | 0 | 0:30 | 0:30 |"), "{t}");
        assert!(t.contains("| cnn | standard subset=all_correct | 0 | shared | 0:00 |"), "{t}");
        assert!(t.contains("| **all runs** |  |  | **0:30** | **0:30** |"), "{t}");
    }

    #[test]
    fn the_grid_wall_time_and_its_prediction_follow_the_table() {
        let mut res = Results::default();
        res.train.push(TrainRow {
            run_id: "a".into(),
            model: "cnn".into(),
            method: "standard".into(),
            seconds: 30.0,
            ..Default::default()
        });
        res.timing = Some(crate::results::timing::GridTiming {
            workers: 2,
            order: "lpt".into(),
            predicted_s: Some(1312.0),
            measured_s: 1400.4,
            runs_done: 4,
        });
        let ctx = Ctx::of(&res);
        let t = table(&res, &ctx);
        assert!(
            t.contains(
                "wall time 23:20 with 2 workers (predicted 21:52, order lpt; 4 runs worked)"
            ),
            "{t}"
        );
    }

    #[test]
    fn clock_formats_minutes_and_hours() {
        assert_eq!(clock(59.4), "0:59");
        assert_eq!(clock(61.0), "1:01");
        assert_eq!(clock(3725.0), "1:02:05");
        assert_eq!(clock(f64::NAN), "?");
    }
}
