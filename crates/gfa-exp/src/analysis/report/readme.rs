//! The accuracies a results README quotes next to a run id, checked against that run's rows.
//!
//! A README names a run by its id in backticks; two forms tie an accuracy to it:
//! `` `8d6045971e35`: 39.6 % `` and `` 11.0 % (`0268bc9ee3f1`, … ``. Each such accuracy must be
//! one of the run's accuracies (`clean_acc` and `robust_acc` of `eval.csv`, `test_acc` and
//! `train_acc` of `train.csv`) rounded to the decimals printed — rounded, not cut — of a run
//! of the folder.
use std::collections::{BTreeMap, BTreeSet};

use super::base::Results;

/// A run id: 12 lowercase hex digits.
fn is_run_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The number (digits and one `.`) that ends `s`, if `s` ends with one.
fn trailing_number(s: &str) -> Option<&str> {
    let start = s
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_digit() || *c == '.')
        .last()
        .map(|(i, _)| i)?;
    let n = &s[start..];
    n.parse::<f64>().ok().map(|_| n)
}

/// The number that starts `s`, if `s` starts with one.
fn leading_number(s: &str) -> Option<&str> {
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let n = s[..end].trim_end_matches('.');
    n.parse::<f64>().ok().map(|_| n)
}

/// Each run's accuracies in percent.
fn accuracies(res: &Results) -> BTreeMap<&str, Vec<f64>> {
    let mut out: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in &res.eval {
        let e = out.entry(r.run_id.as_str()).or_default();
        e.push(100.0 * r.clean_acc);
        e.extend(r.robust_acc.map(|a| 100.0 * a));
    }
    for r in &res.train {
        let e = out.entry(r.run_id.as_str()).or_default();
        e.push(100.0 * r.train_acc);
        e.extend(r.test_acc.map(|a| 100.0 * a));
    }
    out
}

/// Whether `printed` is one of `values` rounded to its decimals.
fn matches(printed: &str, values: &[f64]) -> bool {
    let d = printed.split_once('.').map_or(0, |(_, f)| f.len());
    values.iter().any(|v| format!("{v:.d$}") == printed)
}

/// The problems of a README's run-tagged accuracies (none: it matches its rows).
pub fn check(readme: &str, res: &Results) -> Vec<String> {
    let acc = accuracies(res);
    let runs: BTreeSet<&str> =
        res.axes.keys().map(String::as_str).chain(acc.keys().copied()).collect();
    let mut problems = Vec::new();
    for (i, piece) in readme.split('`').enumerate() {
        if i % 2 == 0 || !is_run_id(piece) {
            continue;
        }
        let at = readme.match_indices(&format!("`{piece}`")).map(|(k, _)| k).collect::<Vec<_>>();
        for k in at {
            let after = &readme[k + piece.len() + 2..];
            let before = &readme[..k];
            let mut quoted = Vec::new();
            if let Some(rest) = after.strip_prefix(": ")
                && let Some(n) = leading_number(rest)
                && rest[n.len()..].trim_start().starts_with('%')
            {
                quoted.push(n);
            }
            if let Some(head) = before.strip_suffix(" (")
                && let Some(head) = head.trim_end().strip_suffix('%')
            {
                quoted.extend(trailing_number(head.trim_end()));
            }
            for n in quoted {
                if !runs.contains(piece) {
                    problems
                        .push(format!("`{piece}`: {n} %: `{piece}` is not a run of this folder"));
                    continue;
                }
                if !matches(n, acc.get(piece).map_or(&[][..], Vec::as_slice)) {
                    problems.push(format!(
                        "`{piece}`: {n} % is none of the run's accuracies rounded to {} \
                         decimal(s)",
                        n.split_once('.').map_or(0, |(_, f)| f.len())
                    ));
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::records::{EvalRow, TrainRow};

    fn res() -> Results {
        let mut res = Results::default();
        res.eval.push(EvalRow {
            run_id: "0123456789ab".into(),
            clean_acc: 0.396,
            robust_acc: Some(0.11),
            ..Default::default()
        });
        res.train.push(TrainRow {
            run_id: "0123456789ab".into(),
            train_acc: 0.2,
            test_acc: Some(0.3475),
            ..Default::default()
        });
        res
    }

    #[test]
    fn quoted_accuracies_are_the_runs_rounded() {
        let ok = "seed 0 trains (`0123456789ab`: 39.6 %), 11.0 % (`0123456789ab`, warm-up), \
                  and 34.8 % (`0123456789ab`)";
        assert_eq!(check(ok, &res()), Vec::<String>::new());
        // 34.75 cut to 34.7 is not the row rounded; a wrong number and an unknown id are named.
        let bad = "34.7 % (`0123456789ab`) and (`0123456789ab`: 39.5 %), `ffffffffffff`: 1.0 %";
        let p = check(bad, &res());
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p.iter().any(|m| m.contains("34.7 %")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("39.5 %")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("`ffffffffffff` is not a run")), "{p:?}");
    }
}
