//! Model-level sanity checks, as data: masking check 8 of gfa-exp (`gradient_health` in
//! `checks.csv`) runs them on the evaluated points.
//!
//! - [`check_logits`]: the model's outputs look like probabilities (rows in [0, 1] summing to 1:
//!   CE and DLR need logits, and CE on probabilities saturates, masking by accident), or are NaN
//!   or infinite;
//! - [`gradient_health`]: how many points have an all-zero or a non-finite input gradient.
//!
//! Attack outputs are checked by [`crate::attack::validate`] (box, budget, NaN: an error, never a
//! finding), and the comparisons between attacks are gfa-exp's masking checks.
use gfa_core::Classifier;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::grad;

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
    fn a_linear_model_has_healthy_gradients_and_logits() {
        seed::seed_all(0);
        let spec = ModelSpec { arch: Arch::Linear, ..ModelSpec::default() };
        let m = Classifier::new(&spec, Device::Cpu).unwrap();
        let x = Tensor::full([3, 3, 32, 32], 0.5, (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2]);
        assert!(check_logits(&m, &x).is_empty());
        assert_eq!(gradient_health(&m, &x, &y, crate::loss::ce), (0, 0));
    }

    #[test]
    fn nan_weights_give_nonfinite_logits_and_gradients() {
        seed::seed_all(0);
        let spec = ModelSpec { arch: Arch::Linear, ..ModelSpec::default() };
        let m = Classifier::new(&spec, Device::Cpu).unwrap();
        tch::no_grad(|| {
            for (_, mut v) in m.vs.variables() {
                let _ = v.fill_(f64::NAN);
            }
        });
        let x = Tensor::full([2, 3, 32, 32], 0.5, (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1]);
        assert_eq!(codes(&check_logits(&m, &x)), ["nonfinite_logits"]);
        assert_eq!(gradient_health(&m, &x, &y, crate::loss::ce), (0, 2));
    }
}
