//! Gradient-masking checks (docs/method.md §7), as a pure function from one run's eval records to
//! `checks.csv` rows.
//!
//! A defense whose gains come from gradient masking (Athalye, Carlini & Wagner 2018, "Obfuscated
//! Gradients Give a False Sense of Security", arXiv 1802.00420) shows tell-tale inconsistencies
//! between attacks: single-step beating iterative, black-box beating white-box, accuracy that
//! does not reach zero at huge eps, and so on. Each check compares robust accuracies at the same
//! (norm, eps) and gives `pass`, `flag` or `skip` (the suite lacks the attacks it needs), with
//! the numbers behind it. Accuracies are fractions; "1 pt" is 0.01.

use gfa_attacks::{Access, Algorithm, AttackSpec, Facts, Loss};

use crate::analysis::stats::percent_sign;
use crate::results::records::{CheckRow, EvalRow, IndicatorRow, RunKey};

/// Input-gradient statistics of a model on the evaluated points (check 8).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradHealth {
    /// Fraction of points whose input gradient is exactly zero.
    pub zero_frac: f64,
    /// Fraction of points whose input gradient has a NaN or infinite entry.
    pub nonfinite_frac: f64,
    pub n: usize,
}

/// Overall reading of a run's checks (the `result` of its `verdict` row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Clean accuracy near chance: robust numbers are meaningless (check 9).
    Collapsed,
    /// At least one of checks 1–8 flagged.
    MaskingSuspected,
    /// The binarization test failed on more than its share of points
    /// ([`crate::analysis::binarization`]: the attack misses adversarial examples known to exist
    /// on this model), or no masking check flagged but an Indicator of Attack Failure flags more
    /// than [`crate::analysis::indicators::ATTACK_FAILURE_SHARE`] of its points (docs/method.md
    /// §10).
    AttackFailureSuspected,
    /// Every check that could run passed.
    NoMaskingDetected,
    /// None of checks 1–8 could run.
    InsufficientEvidence,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Collapsed => "collapsed",
            Verdict::MaskingSuspected => "masking_suspected",
            Verdict::AttackFailureSuspected => "attack_failure_suspected",
            Verdict::NoMaskingDetected => "no_masking_detected",
            Verdict::InsufficientEvidence => "insufficient_evidence",
        }
    }
}

/// Tolerances of the checks (docs/method.md §7), in accuracy fractions.
pub const ITERATIVE_TOL: f64 = 0.01;
pub const LARGE_EPS_MAX_ACC: f64 = 0.01;
pub const LARGE_EPS_MIN: f64 = 64.0 / 255.0;
/// Checks 3 and 4: how far (0.5 pt) an attack that does not use the model's own gradients
/// (black-box queries, a surrogate's gradients) may go below the white-box worst case before it
/// flags; one tolerance for both, as both compare one accuracy against the same minimum.
pub const NOT_BETTER_TOL: f64 = 0.005;
pub const MORE_STEPS_TOL: f64 = 0.02;
pub const LOSS_AGREE_TOL: f64 = 0.02;
pub const ZERO_GRAD_MAX: f64 = 0.01;
/// Clean accuracy at most this far above chance counts as collapsed.
pub const COLLAPSE_MARGIN: f64 = 0.05;

const EPS_TOL: f64 = 1e-6;

/// The registry's facts of the row's attack (`None`: a kind this build does not know, e.g. a row
/// of an older results folder; such rows count for no check).
fn facts(r: &EvalRow) -> Option<Facts> {
    gfa_attacks::registry::facts(&r.kind)
}

/// A white-box attack (input gradients of the evaluated model).
fn white_box(r: &EvalRow) -> bool {
    facts(r).is_some_and(|f| f.white_box())
}

/// The attack's work per point, from its settings and the registry's cost model.
fn effort(r: &EvalRow) -> Option<f64> {
    let spec = AttackSpec::from_config_json(&r.kind, &r.attack_config).ok()?;
    Some(spec.cost_per_point())
}

/// The (norm, eps) points present in the rows, sorted by norm then eps.
fn eps_points(rows: &[EvalRow]) -> Vec<(String, f64, String)> {
    let mut pts: Vec<(String, f64, String)> = Vec::new();
    for r in rows {
        if let (Some(e), Some(_)) = (r.eps, r.robust_acc)
            && !pts.iter().any(|(n, v, _)| *n == r.norm && (v - e).abs() < EPS_TOL)
        {
            pts.push((r.norm.clone(), e, r.eps_text.clone()));
        }
    }
    pts.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    pts
}

/// Lowest robust accuracy among rows at (norm, eps) that satisfy `pred`.
fn min_acc(rows: &[EvalRow], norm: &str, eps: f64, pred: impl Fn(&EvalRow) -> bool) -> Option<f64> {
    rows.iter()
        .filter(|r| r.norm == norm && r.eps.is_some_and(|e| (e - eps).abs() < EPS_TOL))
        .filter(|r| pred(r))
        .filter_map(|r| r.robust_acc)
        .min_by(f64::total_cmp)
}

fn indiv(r: &EvalRow) -> bool {
    r.mode == "individual"
}

struct Builder {
    key: RunKey,
    rows: Vec<CheckRow>,
}

impl Builder {
    fn push(&mut self, number: u32, check: &str, outcome: Outcome) {
        let mut row = CheckRow::keyed(&self.key);
        row.number = Some(number);
        row.check = check.into();
        match outcome {
            None => {
                row.result = "skip".into();
                row.detail = "the suite has no attacks this check needs".into();
            }
            Some((flag, value, threshold, detail)) => {
                row.result = if flag { "flag" } else { "pass" }.into();
                row.value = Some(value);
                row.threshold = Some(threshold);
                row.detail = detail;
            }
        }
        self.rows.push(row);
    }
}

/// Pick, over eps points, the comparison with the largest violation `lhs - rhs`.
fn worst<F>(pts: &[(String, f64, String)], f: F) -> Option<(f64, f64, String)>
where
    F: Fn(&str, f64) -> Option<(f64, f64)>,
{
    pts.iter()
        .filter_map(|(n, e, t)| f(n, *e).map(|(l, r)| (l, r, format!("{n} eps={t}"))))
        .max_by(|a, b| (a.0 - a.1).total_cmp(&(b.0 - b.1)))
}

/// The outcome of one check: (flagged, measured value, threshold, detail), or `None` (skip).
type Outcome = Option<(bool, f64, f64, String)>;

/// Individual rows of `algorithm`.
fn algorithm(a: Algorithm) -> impl Fn(&EvalRow) -> bool {
    move |r: &EvalRow| indiv(r) && facts(r).is_some_and(|f| f.algorithm == a)
}

/// Individual rows of attacks with `access`.
fn access(a: Access) -> impl Fn(&EvalRow) -> bool {
    move |r: &EvalRow| indiv(r) && facts(r).is_some_and(|f| f.access == a)
}

/// Individual rows of iterative white-box fixed-budget attacks (PGD, APGD, AutoAttack).
fn iterative(r: &EvalRow) -> bool {
    indiv(r) && facts(r).is_some_and(|f| f.white_box() && f.iterative() && !f.minimum_norm())
}

/// Iterative white-box rows whose attack maximizes `loss`.
fn with_loss(loss: Loss) -> impl Fn(&EvalRow) -> bool {
    move |r: &EvalRow| iterative(r) && facts(r).is_some_and(|f| f.loss == Some(loss))
}

/// All nine masking checks for one run, plus a verdict row. `rows` are that run's eval rows;
/// `indicators` its `indicators.csv` rows (none without `[indicators]`), which the verdict reads.
pub fn masking_checks(
    key: &RunKey,
    rows: &[EvalRow],
    grad: Option<GradHealth>,
    num_classes: usize,
    indicators: &[IndicatorRow],
) -> Vec<CheckRow> {
    let pts = eps_points(rows);
    let mut b = Builder { key: key.clone(), rows: Vec::new() };
    b.push(1, "iterative_beats_single_step", iterative_beats_single_step(rows, &pts));
    b.push(2, "large_eps_breaks_model", large_eps_breaks_model(rows, &pts));
    b.push(3, "black_box_not_better", not_better_than_white_box(rows, &pts, Access::BlackBox));
    let transfer = not_better_than_white_box(rows, &pts, Access::Surrogate);
    b.push(4, "transfer_not_better", transfer);
    b.push(5, "more_steps_no_gain", more_steps_no_gain(rows, &pts));
    b.push(6, "ce_margin_agree", ce_margin_agree(rows, &pts));
    b.push(7, "noise_not_better", noise_not_better(rows, &pts));
    b.push(8, "gradient_health", gradient_health(grad));
    b.push(9, "collapse", collapse(rows, num_classes));
    let (failures, beside) = crate::analysis::indicators::verdict_rows(indicators, rows);
    verdict(key, b.rows, &failures, &beside)
}

/// 1. PGD <= FGSM + 1 pt.
fn iterative_beats_single_step(rows: &[EvalRow], pts: &[(String, f64, String)]) -> Outcome {
    let c1 = worst(pts, |n, e| {
        Some((
            min_acc(rows, n, e, algorithm(Algorithm::Pgd))?,
            min_acc(rows, n, e, algorithm(Algorithm::Fgsm))? + ITERATIVE_TOL,
        ))
    });
    c1.map(|(pgd, thr, at)| {
        let d = format!(
            "{at}: PGD {} vs FGSM {} (+1 pt allowed)",
            percent_sign(pgd, 1),
            percent_sign(thr - ITERATIVE_TOL, 1)
        );
        (pgd > thr, pgd, thr, d)
    })
}

/// 2. Robust accuracy <= 1% at Linf eps >= 64/255 (the largest such eps present).
fn large_eps_breaks_model(rows: &[EvalRow], pts: &[(String, f64, String)]) -> Outcome {
    let large = pts.iter().rev().find(|(n, e, _)| n == "linf" && *e >= LARGE_EPS_MIN - EPS_TOL);
    large.and_then(|(n, e, t)| {
        let acc = min_acc(rows, n, *e, |_| true)?;
        let d = format!("{n} eps={t}: worst-case robust accuracy {}", percent_sign(acc, 1));
        Some((acc > LARGE_EPS_MAX_ACC, acc, LARGE_EPS_MAX_ACC, d))
    })
}

/// Checks 3 and 4: a black-box attack (Square) or a transfer attack (a surrogate's gradients) must
/// not beat the white-box suite by more than [`NOT_BETTER_TOL`].
fn not_better_than_white_box(
    rows: &[EvalRow],
    pts: &[(String, f64, String)],
    other: Access,
) -> Outcome {
    let tol = NOT_BETTER_TOL;
    let c = worst(pts, |n, e| {
        let wb = min_acc(rows, n, e, white_box)?;
        Some((wb - tol, min_acc(rows, n, e, access(other))?))
    });
    let label = match other {
        Access::BlackBox => "black-box attack",
        Access::Surrogate => "transfer attack",
        Access::Random => "random noise",
        Access::WhiteBox => "white-box attack",
    };
    c.map(|(lhs, other, at)| {
        let wb = lhs + tol;
        let d = format!(
            "{at}: {label} {} vs white-box worst case {}",
            percent_sign(other, 1),
            percent_sign(wb, 1)
        );
        (other < lhs, other, lhs, d)
    })
}

/// Check 5: PGD with more work (steps × restarts, the registry's cost model) must not be weaker
/// (higher accuracy) by > 2 pts than the PGD with the least.
fn more_steps_no_gain(rows: &[EvalRow], pts: &[(String, f64, String)]) -> Outcome {
    let pgd = algorithm(Algorithm::Pgd);
    let c5 = worst(pts, |n, e| {
        let pgd: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| pgd(r) && r.norm == n)
            .filter(|r| r.eps.is_some_and(|x| (x - e).abs() < EPS_TOL))
            .filter_map(|r| Some((effort(r)?, r.robust_acc?)))
            .collect();
        let weak = pgd.iter().min_by(|a, b| a.0.total_cmp(&b.0))?;
        let strong = pgd.iter().max_by(|a, b| a.0.total_cmp(&b.0))?;
        (strong.0 > weak.0).then_some((weak.1 - MORE_STEPS_TOL, strong.1))
    });
    c5.map(|(thr, strong, at)| {
        let d = format!(
            "{at}: strongest PGD {} vs weakest PGD {} (2 pts allowed)",
            percent_sign(strong, 1),
            percent_sign(thr + MORE_STEPS_TOL, 1)
        );
        (strong < thr, strong, thr, d)
    })
}

/// 6. CE and margin-loss attacks agree within 2 pts.
fn ce_margin_agree(rows: &[EvalRow], pts: &[(String, f64, String)]) -> Outcome {
    let c6 = pts
        .iter()
        .filter_map(|(n, e, t)| {
            let ce = min_acc(rows, n, *e, with_loss(Loss::Ce))?;
            let mg = min_acc(rows, n, *e, with_loss(Loss::Margin))?;
            Some((ce, mg, format!("{n} eps={t}")))
        })
        .max_by(|a, b| (a.0 - a.1).abs().total_cmp(&(b.0 - b.1).abs()));
    c6.map(|(ce, mg, at)| {
        let d =
            format!("{at}: CE-loss {} vs margin-loss {}", percent_sign(ce, 1), percent_sign(mg, 1));
        ((ce - mg).abs() > LOSS_AGREE_TOL, (ce - mg).abs(), LOSS_AGREE_TOL, d)
    })
}

/// 7. Noise must not beat PGD (iterative white-box).
fn noise_not_better(rows: &[EvalRow], pts: &[(String, f64, String)]) -> Outcome {
    let c7 = worst(pts, |n, e| {
        Some((min_acc(rows, n, e, iterative)?, min_acc(rows, n, e, access(Access::Random))?))
    });
    c7.map(|(pgd, noise, at)| {
        let d = format!("{at}: noise {} vs PGD {}", percent_sign(noise, 1), percent_sign(pgd, 1));
        (noise < pgd, noise, pgd, d)
    })
}

/// 8. Input-gradient health.
fn gradient_health(grad: Option<GradHealth>) -> Outcome {
    grad.map(|g| {
        let d = format!(
            "{} of {} points have a zero input gradient, {} a non-finite one",
            percent_sign(g.zero_frac, 1),
            g.n,
            percent_sign(g.nonfinite_frac, 1)
        );
        (g.zero_frac > ZERO_GRAD_MAX || g.nonfinite_frac > 0.0, g.zero_frac, ZERO_GRAD_MAX, d)
    })
}

/// 9. Collapse: clean accuracy within a few points of chance.
fn collapse(rows: &[EvalRow], num_classes: usize) -> Outcome {
    let clean = rows.first().map(|r| (r.clean_acc, r.n));
    let chance = 1.0 / num_classes.max(1) as f64;
    clean.map(|(acc, n)| {
        let d = format!(
            "clean accuracy {} on n={n}, chance {}",
            percent_sign(acc, 1),
            percent_sign(chance, 1)
        );
        (acc <= chance + COLLAPSE_MARGIN, acc, chance + COLLAPSE_MARGIN, d)
    })
}

/// The nine check rows and the verdict row after them; `failures` are the flagged indicator
/// rows that speak for the verdict, `beside` those that do not
/// ([`crate::analysis::indicators::verdict_rows`]); the detail lists both.
fn verdict(
    key: &RunKey,
    rows: Vec<CheckRow>,
    failures: &[String],
    beside: &[String],
) -> Vec<CheckRow> {
    let flagged = |r: &CheckRow| r.result == "flag";
    let masking: Vec<&str> =
        rows[..8].iter().filter(|r| flagged(r)).map(|r| r.check.as_str()).collect();
    let verdict = if flagged(&rows[8]) {
        Verdict::Collapsed
    } else if !masking.is_empty() {
        Verdict::MaskingSuspected
    } else if !failures.is_empty() {
        Verdict::AttackFailureSuspected
    } else if rows[..8].iter().all(|r| r.result == "skip") {
        Verdict::InsufficientEvidence
    } else {
        Verdict::NoMaskingDetected
    };
    let mut v = CheckRow::keyed(key);
    v.check = "verdict".into();
    v.result = verdict.name().into();
    let ran = rows[..8].iter().filter(|r| r.result != "skip").count();
    v.detail = if masking.is_empty() {
        format!("{ran} of 8 masking checks ran, none flagged")
    } else {
        format!("flagged: {}", masking.join(", "))
    };
    if !failures.is_empty() {
        v.detail.push_str(&format!("; attack-failure indicators: {}", failures.join(", ")));
    }
    if !beside.is_empty() {
        v.detail.push_str(&format!(
            "; not counted (white-box attacks ran at the budget): {}",
            beside.join(", ")
        ));
    }
    let mut out = rows;
    out.push(v);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, eps: f64, acc: f64, cfg: &str) -> EvalRow {
        EvalRow {
            attack: kind.into(),
            kind: kind.into(),
            preset: "reference".into(),
            attack_config: cfg.into(),
            norm: "linf".into(),
            eps_text: format!("{}/255", (eps * 255.0).round()),
            eps: Some(eps),
            mode: "individual".into(),
            subset: "all".into(),
            n: 100,
            clean_acc: 0.8,
            robust_acc: Some(acc),
            ..EvalRow::keyed(&RunKey::default())
        }
    }

    fn result<'a>(rows: &'a [CheckRow], check: &str) -> &'a CheckRow {
        rows.iter().find(|r| r.check == check).unwrap()
    }

    const E8: f64 = 8.0 / 255.0;

    #[test]
    fn healthy_model_passes() {
        let rows = vec![
            row("fgsm", E8, 0.50, "{}"),
            row("pgd", E8, 0.40, r#"{"steps":20}"#),
            row("pgd", E8, 0.39, r#"{"steps":100,"restarts":5}"#),
            row("apgd-dlr", E8, 0.40, "{}"),
            row("square", E8, 0.45, "{}"),
            row("transfer", E8, 0.60, "{}"),
            row("noise", E8, 0.78, "{}"),
            row("pgd", 128.0 / 255.0, 0.0, r#"{"steps":20}"#),
        ];
        let g = GradHealth { zero_frac: 0.0, nonfinite_frac: 0.0, n: 100 };
        let c = masking_checks(&RunKey::default(), &rows, Some(g), 10, &[]);
        assert_eq!(c.len(), 10);
        for r in &c[..9] {
            assert_eq!(r.result, "pass", "{r:?}");
        }
        assert_eq!(c[9].result, "no_masking_detected");
        // Check 5 compares the 100x5 PGD (0.39) with the PGD-20 (0.40) minus 2 pts.
        let c5 = result(&c, "more_steps_no_gain");
        assert_eq!(c5.value, Some(0.39));
        assert!((c5.threshold.unwrap() - 0.38).abs() < 1e-12);
    }

    #[test]
    fn masked_model_is_flagged() {
        let rows = vec![
            row("fgsm", E8, 0.20, "{}"),
            // Even the strongest PGD (0.30) is worse than FGSM + 1 pt.
            row("pgd", E8, 0.45, r#"{"steps":20}"#),
            row("pgd", E8, 0.30, r#"{"steps":100,"restarts":5}"#),
            row("apgd-dlr", E8, 0.60, "{}"),
            row("square", E8, 0.10, "{}"), // black box beats white box
            row("transfer", E8, 0.15, "{}"),
            row("noise", E8, 0.05, "{}"),
            row("pgd", 128.0 / 255.0, 0.35, r#"{"steps":20}"#), // never reaches 0
        ];
        let g = GradHealth { zero_frac: 0.3, nonfinite_frac: 0.0, n: 100 };
        let c = masking_checks(&RunKey::default(), &rows, Some(g), 10, &[]);
        for name in [
            "iterative_beats_single_step",
            "large_eps_breaks_model",
            "black_box_not_better",
            "transfer_not_better",
            "more_steps_no_gain",
            "ce_margin_agree",
            "noise_not_better",
            "gradient_health",
        ] {
            assert_eq!(result(&c, name).result, "flag", "{name}: {:?}", result(&c, name));
        }
        let c1 = result(&c, "iterative_beats_single_step");
        assert_eq!(c1.value, Some(0.30));
        assert!((c1.threshold.unwrap() - 0.21).abs() < 1e-12);
        // Square 10% vs white-box worst case 20% (min over FGSM/PGD/APGD) minus 0.5 pt.
        let c3 = result(&c, "black_box_not_better");
        assert_eq!(c3.value, Some(0.10));
        assert!((c3.threshold.unwrap() - 0.195).abs() < 1e-12);
        // The transfer attack (15%) is held to the same tolerance below the same worst case.
        let c4 = result(&c, "transfer_not_better");
        assert_eq!(c4.value, Some(0.15));
        assert!((c4.threshold.unwrap() - 0.195).abs() < 1e-12);
        assert_eq!(result(&c, "collapse").result, "pass");
        assert_eq!(c.last().unwrap().result, "masking_suspected");
    }

    /// An indicator flagging more than its share of points makes a run that no masking check
    /// flagged `attack_failure_suspected`; one at its share does not, and a masking check wins.
    #[test]
    fn flagged_indicators_suspect_attack_failure() {
        let rows = vec![row("pgd", E8, 0.40, r#"{"steps":20}"#), row("fgsm", E8, 0.5, "{}")];
        let ind = |flagged: usize| {
            let (fraction, result) = crate::analysis::indicators::outcome(flagged, 100);
            IndicatorRow {
                attack: "pgd".into(),
                norm: "linf".into(),
                eps_text: "8/255".into(),
                indicator: "incomplete_optimization".into(),
                n: 100,
                flagged,
                fraction,
                result: result.into(),
                ..Default::default()
            }
        };
        let verdict = |rows: &[EvalRow], i: &[IndicatorRow]| {
            masking_checks(&RunKey::default(), rows, None, 10, i).pop().unwrap()
        };
        let v = verdict(&rows, &[ind(6)]);
        assert_eq!(v.result, "attack_failure_suspected");
        assert!(
            v.detail.contains("incomplete_optimization (pgd linf 8/255: 6.0% of 100)"),
            "{v:?}"
        );
        assert_eq!(verdict(&rows, &[ind(5)]).result, "no_masking_detected");
        let masked = [rows[0].clone(), row("fgsm", E8, 0.2, "{}")];
        let v = verdict(&masked, &[ind(6)]);
        assert_eq!(v.result, "masking_suspected");
        assert!(v.detail.contains("attack-failure indicators"), "{v:?}");
    }

    /// A transfer attack whose examples do not fool the model (transfer failure) speaks for the
    /// verdict only where no white-box attack ran at its budget: beside PGD at 8/255 it is
    /// listed as not counted; with PGD only at 2/255 it makes the run `attack_failure_suspected`.
    #[test]
    fn transfer_failure_counts_only_without_a_white_box_attack_at_its_budget() {
        let tf = IndicatorRow {
            attack: "transfer".into(),
            kind: "transfer".into(),
            norm: "linf".into(),
            eps_text: "8/255".into(),
            indicator: "transfer_failure".into(),
            n: 100,
            flagged: 90,
            fraction: Some(0.9),
            result: "flag".into(),
            ..Default::default()
        };
        let verdict = |rows: &[EvalRow]| {
            masking_checks(&RunKey::default(), rows, None, 10, std::slice::from_ref(&tf))
                .pop()
                .unwrap()
        };
        let with_pgd = [row("pgd", E8, 0.4, r#"{"steps":20}"#), row("transfer", E8, 0.7, "{}")];
        let v = verdict(&with_pgd);
        assert_eq!(v.result, "no_masking_detected", "{v:?}");
        assert!(v.detail.contains("not counted (white-box attacks ran at the budget): "), "{v:?}");
        let elsewhere = [row("pgd", 2.0 / 255.0, 0.6, "{}"), row("transfer", E8, 0.7, "{}")];
        assert_eq!(verdict(&elsewhere).result, "attack_failure_suspected");
    }

    #[test]
    fn collapse_wins_and_missing_attacks_skip() {
        let mut r = row("deepfool", E8, 0.1, "{}");
        r.clean_acc = 0.11;
        let c = masking_checks(&RunKey::default(), &[r], None, 10, &[]);
        for x in &c[..8] {
            assert_eq!(x.result, "skip", "{x:?}");
        }
        assert_eq!(result(&c, "collapse").result, "flag");
        assert_eq!(c.last().unwrap().result, "collapsed");
        let c = masking_checks(&RunKey::default(), &[], None, 10, &[]);
        assert_eq!(c.last().unwrap().result, "insufficient_evidence");
    }
}
