//! Attack-level sanity checks, as data (auto-attack `checks.py`, ATTACKS.md §7.1, STYLE.md §1.11).
//!
//! Every finding is a [`Check`] row `{ code, attack, detail }`; gfa-exp writes them to
//! `checks.csv` and prints one stderr line each. Codes:
//! - `probability_output`: the model's outputs look like probabilities (rows in [0, 1] summing to
//!   1); CE and DLR need logits, and CE on probabilities saturates (masking by accident).
//! - `nonfinite_logits`: NaN or Inf logits.
//! - `zero_gradient`: some samples have an all-zero input gradient of CE or DLR at the clean point.
//! - `nonfinite_gradient`: NaN or Inf in an input gradient.
//! - `budget_violation`, `box_violation`, `nan_output`: an adversarial batch leaves the budget,
//!   leaves `[0, 1]` or contains NaN.
//! - `blackbox_beats_whitebox`: Square lowers the cumulative robust accuracy after the white-box
//!   attacks by more than 0.2 points (auto-attack `check_square_sr`).
//! - `fgsm_beats_iterative`: FGSM's robust accuracy is more than 0.5 points below PGD's or
//!   APGD-CE's at the same budget.
use gfa_core::Classifier;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::attack::BUDGET_TOL;
use crate::eval::{EvalRecord, Mode};
use crate::threat::per_sample_norm;
use crate::{Norm, grad, loss};

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub code: String,
    /// The attack concerned (empty for model-level findings).
    pub attack: String,
    pub detail: String,
}

fn check(code: &str, attack: &str, detail: String) -> Check {
    Check { code: code.into(), attack: attack.into(), detail }
}

/// Logit sanity on a batch: probabilities instead of logits, NaN/Inf.
pub fn check_logits(model: &Classifier, x: &Tensor) -> Vec<Check> {
    let z = tch::no_grad(|| model.logits(x, false));
    let mut out = Vec::new();
    let bad = z.isfinite().logical_not().sum(Kind::Int64).int64_value(&[]);
    if bad > 0 {
        out.push(check("nonfinite_logits", "", format!("{bad} non-finite logits")));
        return out;
    }
    let in_unit = z.min().double_value(&[]) >= 0.0 && z.max().double_value(&[]) <= 1.0;
    let sums = z.sum_dim_intlist(1, false, Kind::Float);
    let simplex = (sums - 1.0).abs().max().double_value(&[]) < 1e-4;
    if in_unit && simplex {
        out.push(check(
            "probability_output",
            "",
            "outputs are in [0, 1] and sum to 1 per row: attacks need logits".into(),
        ));
    }
    out
}

/// Counts of samples whose input gradient of the per-sample `loss` at `x` is all zero (and finite),
/// and whose gradient has a NaN or Inf entry.
pub fn gradient_health(
    model: &Classifier,
    x: &Tensor,
    y: &Tensor,
    loss: fn(&Tensor, &Tensor) -> Tensor,
) -> (i64, i64) {
    let (_, g, _) = grad::input_grad(model, x, |z| loss(z, y));
    let flat = g.flatten(1, -1);
    let bad = flat.isfinite().logical_not().any_dim(1, false);
    let zero = flat.abs().amax(1, false).eq(0.0).logical_and(&bad.logical_not());
    (zero.sum(Kind::Int64).int64_value(&[]), bad.sum(Kind::Int64).int64_value(&[]))
}

/// Input-gradient health of CE and DLR at `x`: samples with an all-zero or non-finite gradient.
pub fn check_gradients(model: &Classifier, x: &Tensor, y: &Tensor) -> Vec<Check> {
    let mut out = Vec::new();
    let n = x.size()[0];
    let losses: [(&str, loss::PerSample); 2] = [("ce", loss::ce), ("dlr", loss::dlr)];
    for (name, f) in losses {
        if name == "dlr" && model.num_classes() < 3 {
            continue;
        }
        let (zero, nonfinite) = gradient_health(model, x, y, f);
        if nonfinite > 0 {
            out.push(check(
                "nonfinite_gradient",
                "",
                format!("{nonfinite}/{n} samples have NaN/Inf {name} input gradients"),
            ));
        }
        if zero > 0 {
            out.push(check(
                "zero_gradient",
                "",
                format!("{zero}/{n} samples have an all-zero {name} input gradient"),
            ));
        }
    }
    out
}

/// Budget, box and NaN of an adversarial batch (AA's final log line, as findings).
pub fn check_output(attack: &str, norm: Norm, eps: f64, x: &Tensor, x_adv: &Tensor) -> Vec<Check> {
    let mut out = Vec::new();
    let nan = x_adv.isnan().sum(Kind::Int64).int64_value(&[]);
    if nan > 0 {
        out.push(check("nan_output", attack, format!("{nan} NaN values in x_adv")));
        return out;
    }
    let (lo, hi) = (x_adv.min().double_value(&[]), x_adv.max().double_value(&[]));
    if lo < 0.0 || hi > 1.0 {
        out.push(check("box_violation", attack, format!("x_adv spans [{lo}, {hi}]")));
    }
    let max = per_sample_norm(&(x_adv - x), norm).max().double_value(&[]);
    if max > eps + BUDGET_TOL {
        out.push(check(
            "budget_violation",
            attack,
            format!("max {norm} perturbation {max} exceeds eps {eps}"),
        ));
    }
    out
}

/// Masking flags from evaluation records (same eps and norm compared).
pub fn check_records(records: &[EvalRecord]) -> Vec<Check> {
    let mut out = Vec::new();
    // Square after the white-box attacks in a cumulative pass.
    let cum: Vec<&EvalRecord> = records.iter().filter(|r| r.mode == Mode::Cumulative).collect();
    for w in cum.windows(2) {
        let (before, sq) = (w[0], w[1]);
        if sq.attack == "square" && before.eps_text == sq.eps_text {
            let drop = before.robust_acc - sq.robust_acc;
            if drop > 0.002 {
                out.push(check(
                    "blackbox_beats_whitebox",
                    "square",
                    format!(
                        "at eps {} Square lowered robust accuracy from {:.4} to {:.4} after the \
                         white-box attacks",
                        sq.eps_text, before.robust_acc, sq.robust_acc
                    ),
                ));
            }
        }
    }
    // FGSM stronger than an iterative attack.
    let ind = |name: &str, r0: &EvalRecord| {
        records.iter().find(|r| {
            r.mode == Mode::Individual
                && r.attack == name
                && r.eps_text == r0.eps_text
                && r.norm == r0.norm
        })
    };
    for f in records.iter().filter(|r| r.mode == Mode::Individual && r.attack == "fgsm") {
        for it in ["pgd", "apgd-ce"] {
            if let Some(r) = ind(it, f)
                && f.robust_acc < r.robust_acc - 0.005
            {
                out.push(check(
                    "fgsm_beats_iterative",
                    "fgsm",
                    format!(
                        "at eps {} FGSM robust accuracy {:.4} < {it} {:.4}",
                        f.eps_text, f.robust_acc, r.robust_acc
                    ),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gfa_core::models::Arch;
    use gfa_core::{ModelSpec, seed};
    use tch::Device;

    fn codes(v: &[Check]) -> Vec<&str> {
        v.iter().map(|c| c.code.as_str()).collect()
    }

    #[test]
    fn output_violations_are_reported() {
        let x = Tensor::full([2, 3, 4, 4], 0.5, (Kind::Float, Device::Cpu));
        assert!(check_output("pgd", Norm::Linf, 0.1, &x, &(&x + 0.05)).is_empty());
        assert_eq!(
            codes(&check_output("pgd", Norm::Linf, 0.1, &x, &(&x + 0.2))),
            ["budget_violation"]
        );
        let over = &x + 0.6;
        assert_eq!(codes(&check_output("pgd", Norm::Linf, 1.0, &x, &over)), ["box_violation"]);
        let nan = (&x * f64::NAN).shallow_clone();
        assert_eq!(codes(&check_output("pgd", Norm::Linf, 1.0, &x, &nan)), ["nan_output"]);
    }

    #[test]
    fn a_linear_model_has_healthy_gradients_and_logits() {
        seed::seed_all(0);
        let spec = ModelSpec { arch: Arch::Linear, ..ModelSpec::default() };
        let m = Classifier::new(&spec, Device::Cpu).unwrap();
        let x = Tensor::full([3, 3, 32, 32], 0.5, (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2]);
        assert!(check_logits(&m, &x).is_empty());
        assert!(check_gradients(&m, &x, &y).is_empty());
    }
}
