//! The order in which `gfa run` works a grid's pending runs, and the wall time it predicts.
//!
//! Runs are handed out longest first (the LPT rule: Graham's "longest processing time"): the
//! queue is sorted by descending calibrated cost (`gfa plan`'s calibration,
//! [`crate::cli::calibrate`]), ties by run id, and each worker that frees takes the first run of the
//! queue it may start. With N workers the makespan is then at most 4/3 − 1/(3N) of the best
//! possible, where the grid's own order can leave one worker with the two longest runs.
//! The order changes no result: each run's numbers come from its own seed (the CSVs are
//! collected in the grid's order).
//!
//! [`Dispatch`] is the hand-out the worker pool uses; [`simulate`] drives the same
//! [`Dispatch`] with a clock over the calibrated costs, which is the predicted wall time that
//! `gfa plan --jobs N` and `gfa run` print.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::config::grid::RunSpec;
pub use crate::results::timing::clock;

/// Calibrated seconds still to spend on each run, by run id: (training, evaluation); 0 for a
/// part already done.
pub type Costs = BTreeMap<String, (f64, f64)>;

/// Which part of a run's cost orders a phase of the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Training only (the first phase of a grid whose runs train first).
    Train,
    /// Evaluation only (its second phase).
    Eval,
    /// Training and evaluation (a grid worked run by run).
    Whole,
}

/// `part` of `id`'s cost (NaN when the run has no cost).
pub fn cost_of(costs: &Costs, id: &str, part: Part) -> f64 {
    costs.get(id).map_or(f64::NAN, |&(t, e)| match part {
        Part::Train => t,
        Part::Eval => e,
        Part::Whole => t + e,
    })
}

/// `runs` in the order to take them: longest first by `part` of their costs ([`lpt`]), or as
/// they are when there are no costs (`gfa run --order arrival`).
pub fn order<'a>(runs: Vec<&'a RunSpec>, costs: Option<&Costs>, part: Part) -> Vec<&'a RunSpec> {
    match costs {
        Some(c) => lpt(runs, |r| cost_of(c, &r.run_id, part), |r| r.run_id.as_str()),
        None => runs,
    }
}

/// The predicted wall time, in seconds, of `runs` on `workers` workers taking them longest
/// first (in the given order when not `longest_first`): when `two_phases`, every run trains
/// before any is evaluated (an all-correct grid, a transfer attack), so the phases add; runs
/// sharing one training (`train_key`) pay it once.
pub fn predict(
    runs: &[&RunSpec],
    costs: &Costs,
    workers: usize,
    two_phases: bool,
    longest_first: bool,
) -> f64 {
    let mut trained: BTreeSet<String> = BTreeSet::new();
    let mut train = Vec::new();
    let mut eval = Vec::new();
    for r in runs {
        let t = match trained.insert(r.train_key()) {
            true => cost_of(costs, &r.run_id, Part::Train),
            false => 0.0,
        };
        let e = cost_of(costs, &r.run_id, Part::Eval);
        train.push((r.run_id.clone(), t));
        eval.push((r.run_id.clone(), e));
    }
    let wall = |runs: &[(String, f64)]| match longest_first {
        true => predicted(runs, workers),
        false => simulate(runs, workers).1,
    };
    match two_phases {
        true => wall(&train) + wall(&eval),
        false => {
            let whole: Vec<(String, f64)> =
                train.into_iter().zip(eval).map(|((id, t), (_, e))| (id, t + e)).collect();
            wall(&whole)
        }
    }
}

/// `order` with, before each run, the source runs of its `[train] init` that are not trained yet
/// (`trained` says which are), a source's own source before it; each run once. A source outside
/// `order` is added: a selection (`--only`, a `--jobs` worker) trains its runs' sources first.
pub fn sources_first<'a>(
    order: Vec<&'a RunSpec>,
    runs: &'a [RunSpec],
    trained: &dyn Fn(&str) -> bool,
) -> Vec<&'a RunSpec> {
    let mut out: Vec<&RunSpec> = Vec::new();
    for run in order {
        // The chain of untrained sources, nearest first (plan time refuses cycles).
        let mut chain = vec![run];
        while let Some(id) = chain.last().and_then(|r| r.init.as_ref()).and_then(|i| i.run_id()) {
            match runs.iter().find(|r| r.run_id == id) {
                Some(s) if !trained(id) && chain.len() <= runs.len() => chain.push(s),
                _ => break,
            }
        }
        for r in chain.into_iter().rev() {
            if !out.iter().any(|o| o.run_id == r.run_id) {
                out.push(r);
            }
        }
    }
    out
}

/// Sort `items` longest first: descending `cost`, ties by ascending `id`; a cost that is not a
/// number (a model the calibration did not time) counts as 0 and goes last.
pub fn lpt<T>(mut items: Vec<T>, cost: impl Fn(&T) -> f64, id: impl Fn(&T) -> &str) -> Vec<T> {
    let key = |c: f64| if c.is_nan() { 0.0 } else { c };
    items.sort_by(|a, b| key(cost(b)).total_cmp(&key(cost(a))).then_with(|| id(a).cmp(id(b))));
    items
}

/// The hand-out of queued runs to `workers` slots: a freed slot is reused first (the slot that
/// frees first takes the next run), slot 0 first at the start.
#[derive(Debug)]
pub struct Dispatch<T> {
    queue: VecDeque<T>,
    /// Free slots, the next one last.
    free: Vec<usize>,
}

impl<T> Dispatch<T> {
    /// `queue` in the order to hand out (see [`lpt`]).
    pub fn new(queue: Vec<T>, workers: usize) -> Self {
        Self { queue: queue.into(), free: (0..workers).rev().collect() }
    }

    /// The next run a free slot may start, and that slot: the first queued run that
    /// `may_start` accepts (a run that waits for another's training is passed over until it
    /// may). `None` when no slot is free or no queued run may start now.
    pub fn next(&mut self, may_start: impl Fn(&T) -> bool) -> Option<(T, usize)> {
        let slot = *self.free.last()?;
        let pos = self.queue.iter().position(may_start)?;
        self.free.pop();
        Some((self.queue.remove(pos).expect("position in queue"), slot))
    }

    /// `slot`'s run ended: the slot takes the next run.
    pub fn freed(&mut self, slot: usize) {
        self.free.push(slot);
    }

    /// Runs not handed out yet.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Take the runs not handed out (none may start any more).
    pub fn drain(&mut self) -> Vec<T> {
        self.queue.drain(..).collect()
    }
}

/// One run of a simulated schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub id: String,
    pub worker: usize,
    pub start: f64,
    pub end: f64,
}

/// The schedule of `runs` (id, cost) handed out in the given order by a [`Dispatch`] of
/// `workers` slots, each run taking its cost: the runs in hand-out order and the makespan
/// (the predicted wall time, in the costs' unit). Of two workers freeing at the same moment,
/// the one that started its run first frees first.
pub fn simulate(runs: &[(String, f64)], workers: usize) -> (Vec<Slot>, f64) {
    let mut dispatch = Dispatch::new(runs.to_vec(), workers.max(1));
    let mut now = 0.0_f64;
    // In flight: (end, hand-out index, worker).
    let mut flight: Vec<(f64, usize, usize)> = Vec::new();
    let mut out: Vec<Slot> = Vec::new();
    loop {
        while let Some(((id, cost), worker)) = dispatch.next(|_| true) {
            let cost = if cost.is_finite() { cost.max(0.0) } else { 0.0 };
            flight.push((now + cost, out.len(), worker));
            out.push(Slot { id, worker, start: now, end: now + cost });
        }
        let Some(first) = flight
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.0.total_cmp(&b.1.0).then(a.1.1.cmp(&b.1.1)))
        else {
            break;
        };
        let (end, _, worker) = flight.remove(first.0);
        now = end;
        dispatch.freed(worker);
    }
    let makespan = out.iter().map(|s| s.end).fold(0.0, f64::max);
    (out, makespan)
}

/// The predicted wall time of `runs` (id, cost) on `workers` workers, handed out longest first.
pub fn predicted(runs: &[(String, f64)], workers: usize) -> f64 {
    let ordered = lpt(runs.to_vec(), |r| r.1, |r| r.0.as_str());
    simulate(&ordered, workers).1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(costs: &[(&str, f64)]) -> Vec<(String, f64)> {
        costs.iter().map(|(i, c)| (i.to_string(), *c)).collect()
    }

    #[test]
    fn longest_first_ties_by_id_nan_last() {
        let r = runs(&[("d", 5.0), ("c", 11.0), ("x", f64::NAN), ("b", 11.0), ("a", 14.0)]);
        let ids: Vec<String> = lpt(r, |r| r.1, |r| r.0.as_str()).into_iter().map(|r| r.0).collect();
        assert_eq!(ids, ["a", "b", "c", "d", "x"]);
    }

    /// `make quick`'s four runs as measured on one thread (results/quick/README.md, seconds):
    /// in the grid's order two workers pair PGD-AT with GFA-deep (25:30), longest first pairs
    /// PGD-AT with standard and the two GFA runs (21:52).
    #[test]
    fn quick_grid_makespan_in_grid_order_and_longest_first() {
        let grid = runs(&[
            ("standard", 289.0),
            ("pgd_at", 862.0),
            ("gfa_first", 644.0),
            ("gfa_deep", 668.0),
        ]);
        let (_, arrival) = simulate(&grid, 2);
        assert_eq!(clock(arrival), "25:30");
        assert_eq!(clock(predicted(&grid, 2)), "21:52");
        assert_eq!(predicted(&grid, 1), 289.0 + 862.0 + 644.0 + 668.0);
        assert_eq!(predicted(&grid, 4), 862.0);
    }

    /// Two workers, costs {14, 11, 11, 5} queued in another order: 14 and 11 start first, the
    /// other 11 goes to the worker that frees first (at 11), then 5 (at 14).
    #[test]
    fn two_workers_hand_out_as_lpt_does() {
        let arrival = runs(&[("e", 5.0), ("b", 11.0), ("a", 14.0), ("c", 11.0)]);
        let ordered = lpt(arrival, |r| r.1, |r| r.0.as_str());
        let (slots, makespan) = simulate(&ordered, 2);
        let got: Vec<(&str, usize, f64)> =
            slots.iter().map(|s| (s.id.as_str(), s.worker, s.start)).collect();
        assert_eq!(got, [("a", 0, 0.0), ("b", 1, 0.0), ("c", 1, 11.0), ("e", 0, 14.0)]);
        assert_eq!(makespan, 22.0);
    }
}
