//! Model-level sanity check: masking check 8 of gfa-exp (`gradient_health` in `checks.csv`)
//! runs [`gradient_health`] on the evaluated points: how many have an all-zero or a non-finite
//! input gradient (a model whose outputs are NaN has non-finite gradients everywhere).
//!
//! Attack outputs are checked by [`crate::attack::validate`] (box, budget, NaN: an error, never a
//! finding), and the comparisons between attacks are gfa-exp's masking checks.
use gfa_core::Classifier;
use tch::{Kind, Tensor};

use crate::grad;

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

    #[test]
    fn a_linear_model_has_healthy_gradients() {
        seed::seed_all(0);
        let spec = ModelSpec { arch: Arch::Linear, ..ModelSpec::default() };
        let m = Classifier::new(&spec, Device::Cpu).unwrap();
        let x = Tensor::full([3, 3, 32, 32], 0.5, (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2]);
        assert_eq!(gradient_health(&m, &x, &y, crate::loss::ce), (0, 0));
    }

    #[test]
    fn nan_weights_give_nonfinite_gradients() {
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
        assert_eq!(gradient_health(&m, &x, &y, crate::loss::ce), (0, 2));
    }
}
