//! The Indicators of Attack Failure of a run (`indicators.csv`, docs/method.md §10) as the
//! verdict and the report read them: which rows flag, and how a row's result follows from its
//! counts.

use gfa_attacks::Access;

use crate::analysis::stats::percent_sign;
use crate::results::records::{EvalRow, IndicatorRow};

/// An indicator row flags when it flags more than this share of the points it was measured on;
/// a run with a flagged row gets the `attack_failure_suspected` verdict (unless a masking check
/// flagged, or the model collapsed).
pub const ATTACK_FAILURE_SHARE: f64 = 0.05;

/// A row's `fraction` and `result` for `flagged` of `n` points: `flag` above
/// [`ATTACK_FAILURE_SHARE`], `pass`, or `skip` without points.
pub fn outcome(flagged: usize, n: usize) -> (Option<f64>, &'static str) {
    if n == 0 {
        return (None, "skip");
    }
    let f = flagged as f64 / n as f64;
    (Some(f), if f > ATTACK_FAILURE_SHARE { "flag" } else { "pass" })
}

/// Where a row was measured: `attack norm eps` (`unavailable_gradients`: the model).
pub fn place(r: &IndicatorRow) -> String {
    if r.attack.is_empty() {
        return "model".into();
    }
    format!("{} {} {}", r.attack, r.norm, r.eps_text)
}

/// The flagged rows, each as `indicator (attack norm eps: 12.0% of n)`, in row order.
pub fn flagged(rows: &[IndicatorRow]) -> Vec<String> {
    rows.iter()
        .filter(|r| r.result == "flag")
        .map(|r| {
            let share = percent_sign(r.fraction.unwrap_or(0.0), 1);
            format!("{} ({}: {share} of {})", r.indicator, place(r), r.n)
        })
        .collect()
}

/// Whether a flagged row speaks for the verdict, given the run's `eval` rows: every row but a
/// transfer attack's `transfer_failure` where the suite also ran a white-box attack at the same
/// norm and budget. There the worst case does not rest on the transfer attack, and its examples
/// failing to transfer (as they should to a robust model) says nothing about the white-box
/// attacks; the row still flags and the verdict's detail still lists it.
pub fn decisive(r: &IndicatorRow, eval: &[EvalRow]) -> bool {
    let access = |kind: &str| gfa_attacks::registry::facts(kind).map(|f| f.access);
    if r.indicator != "transfer_failure" {
        return true;
    }
    !eval.iter().any(|e| {
        access(&e.kind) == Some(Access::WhiteBox) && e.norm == r.norm && e.eps_text == r.eps_text
    })
}

/// The flagged rows that speak for the verdict ([`decisive`]) and those that do not, each as
/// [`flagged`] writes them.
pub fn verdict_rows(rows: &[IndicatorRow], eval: &[EvalRow]) -> (Vec<String>, Vec<String>) {
    let (yes, no): (Vec<IndicatorRow>, Vec<IndicatorRow>) =
        rows.iter().cloned().partition(|r| decisive(r, eval));
    (flagged(&yes), flagged(&no))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_follow_the_share() {
        assert_eq!(outcome(0, 0), (None, "skip"));
        assert_eq!(outcome(5, 100), (Some(0.05), "pass"));
        assert_eq!(outcome(6, 100), (Some(0.06), "flag"));
        let row = IndicatorRow {
            attack: "pgd".into(),
            norm: "linf".into(),
            eps_text: "8/255".into(),
            indicator: "incomplete_optimization".into(),
            n: 50,
            flagged: 10,
            fraction: Some(0.2),
            result: "flag".into(),
            ..Default::default()
        };
        assert_eq!(flagged(&[row]), vec!["incomplete_optimization (pgd linf 8/255: 20.0% of 50)"]);
    }
}
