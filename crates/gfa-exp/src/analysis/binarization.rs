//! The binarization test's numbers (docs/method.md §7): a run's pass rate per tested attack and
//! budget with its Wilson interval (the `summary` row of `binarization.csv`), and what it adds to
//! the run's masking checks: a check row `binarization` and the `attack_failure_suspected`
//! verdict.

use crate::analysis::masking::Verdict;
use crate::analysis::stats::{percent_sign, wilson};
use crate::results::records::{BinarizationRow, CheckRow};

/// The test flags a run when more than this share of its valid points fail: the attack missed
/// an adversarial example known to exist on more than one point in ten.
pub const MAX_FAIL_SHARE: f64 = 0.1;

/// The number of the `binarization` row in `checks.csv` (after the nine masking checks).
pub const CHECK_NUMBER: u32 = 10;

/// The `summary` row of the point rows `points` (one attack at one budget): points passed, valid
/// points, the pass rate and its Wilson 95 % interval (empty when no point is valid).
pub fn summary_row(points: &[BinarizationRow]) -> Option<BinarizationRow> {
    let first = points.first()?;
    let passed = points.iter().filter(|r| r.result == "pass").count();
    let invalid = points.iter().filter(|r| r.result == "invalid").count();
    let valid = points.len() - invalid;
    let w = wilson(passed as u64, valid as u64);
    Some(BinarizationRow {
        index: None,
        label: None,
        result: "summary".into(),
        train_acc: None,
        val_inner_acc: None,
        val_boundary_acc: None,
        adv_norm: None,
        passed: Some(passed),
        valid: Some(valid),
        pass_rate: w.map(|w| w.estimate),
        pass_low: w.map(|w| w.low),
        pass_high: w.map(|w| w.high),
        detail: format!(
            "{passed} of {valid} valid points passed; {invalid} of {} invalid",
            points.len()
        ),
        seconds: points.iter().map(|r| r.seconds).sum(),
        ..first.clone()
    })
}

/// `attack norm eps: k/n = p% [lo, hi]` of a summary row.
pub fn summary_text(r: &BinarizationRow) -> String {
    let rate = match (r.pass_rate, r.pass_low, r.pass_high) {
        (Some(p), Some(l), Some(h)) => {
            format!("{} [{}, {}]", percent_sign(p, 1), percent_sign(l, 1), percent_sign(h, 1))
        }
        _ => "no valid point".into(),
    };
    let (k, n) = (r.passed.unwrap_or(0), r.valid.unwrap_or(0));
    format!("{} {} {}: {k}/{n} = {rate}", r.attack, r.norm, r.eps_text)
}

/// `checks` (a run's masking checks, verdict last) with the binarization test of `rows` (the
/// run's `binarization.csv`): a `binarization` row before the verdict, flagging when more than
/// [`MAX_FAIL_SHARE`] of some tested attack's valid points failed, and then the verdict
/// `attack_failure_suspected` unless the model collapsed. Without summary rows, `checks` as it
/// is.
pub fn with_binarization(mut checks: Vec<CheckRow>, rows: &[BinarizationRow]) -> Vec<CheckRow> {
    let summaries: Vec<&BinarizationRow> = rows.iter().filter(|r| r.result == "summary").collect();
    let Some(verdict) = checks.pop() else { return checks };
    if summaries.is_empty() {
        checks.push(verdict);
        return checks;
    }
    let mut row = CheckRow { number: Some(CHECK_NUMBER), ..verdict.clone() };
    row.check = "binarization".into();
    let rates: Vec<f64> = summaries.iter().filter_map(|r| r.pass_rate).collect();
    let detail = summaries.iter().map(|r| summary_text(r)).collect::<Vec<_>>().join("; ");
    let flagged = match rates.iter().copied().reduce(f64::min) {
        None => {
            row.result = "skip".into();
            row.detail = format!("no valid point: {detail}");
            false
        }
        Some(low) => {
            // Counted, not from the rate: a share of exactly 10 % does not flag.
            let fails = |r: &&BinarizationRow| {
                let (k, n) = (r.passed.unwrap_or(0), r.valid.unwrap_or(0));
                (n - k) as f64 > MAX_FAIL_SHARE * n as f64
            };
            let flag = summaries.iter().any(fails);
            row.result = if flag { "flag" } else { "pass" }.into();
            (row.value, row.threshold) = (Some(low), Some(1.0 - MAX_FAIL_SHARE));
            row.detail = format!("pass rate {detail}");
            flag
        }
    };
    let mut verdict = verdict;
    if flagged && verdict.result != Verdict::Collapsed.name() {
        let before = match verdict.result.as_str() {
            r if r == Verdict::MaskingSuspected.name() => format!("; {}", verdict.detail),
            _ => String::new(),
        };
        verdict.result = Verdict::AttackFailureSuspected.name().into();
        verdict.detail = format!("binarization test failed: {detail}{before}");
    }
    checks.push(row);
    checks.push(verdict);
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::masking::masking_checks;
    use crate::results::records::RunKey;

    fn points(results: &[&str]) -> Vec<BinarizationRow> {
        results
            .iter()
            .enumerate()
            .map(|(i, r)| BinarizationRow {
                attack: "pgd".into(),
                norm: "linf".into(),
                eps_text: "8/255".into(),
                index: Some(i),
                result: (*r).into(),
                seconds: 1.0,
                ..BinarizationRow::keyed(&RunKey::default())
            })
            .collect()
    }

    #[test]
    fn summary_counts_valid_points_and_gives_wilson() {
        let s = summary_row(&points(&["pass", "pass", "fail", "invalid"])).unwrap();
        assert_eq!((s.passed, s.valid, s.index), (Some(2), Some(3), None));
        let w = wilson(2, 3).unwrap();
        assert_eq!(
            (s.pass_rate, s.pass_low, s.pass_high),
            (Some(w.estimate), Some(w.low), Some(w.high))
        );
        assert_eq!(s.seconds, 4.0);
        let none = summary_row(&points(&["invalid"])).unwrap();
        assert_eq!((none.valid, none.pass_rate), (Some(0), None));
    }

    /// A failed test turns a clean verdict into `attack_failure_suspected`; a passed one leaves
    /// it; a collapsed model stays collapsed.
    #[test]
    fn a_failed_test_changes_the_verdict() {
        let clean = masking_checks(&RunKey::default(), &[], None, 10, &[]);
        let mut rows = points(&["pass"; 9]);
        rows.extend(points(&["fail"]));
        rows.push(summary_row(&rows).unwrap());
        let c = with_binarization(clean.clone(), &rows);
        assert_eq!(c.len(), clean.len() + 1);
        let b = &c[c.len() - 2];
        assert_eq!((b.check.as_str(), b.result.as_str()), ("binarization", "pass"));
        assert_eq!(c.last().unwrap().result, clean.last().unwrap().result);
        // Two failures in ten: 20 % > 10 %.
        let mut rows = points(&["pass"; 8]);
        rows.extend(points(&["fail", "fail"]));
        rows.push(summary_row(&rows).unwrap());
        let c = with_binarization(clean.clone(), &rows);
        assert_eq!(c[c.len() - 2].result, "flag");
        assert_eq!(c[c.len() - 2].value, Some(0.8));
        assert_eq!(c.last().unwrap().result, "attack_failure_suspected");
        let mut collapsed = clean.clone();
        collapsed.last_mut().unwrap().result = "collapsed".into();
        assert_eq!(with_binarization(collapsed, &rows).last().unwrap().result, "collapsed");
        assert_eq!(with_binarization(clean.clone(), &[]), clean);
    }
}
