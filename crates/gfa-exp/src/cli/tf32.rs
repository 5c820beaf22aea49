//! How far TF32 moves the logits of `gfa cuda-check`'s `cnn` from its float32 forward, and
//! the bound its TF32 comparison holds the GPU to (docs/numerics.md, "The bounds of `gfa
//! cuda-check`").
//!
//! TF32 (cuBLAS matrix products and cuDNN convolutions on Ampere and later GPUs) is defined as:
//! the operands of every product rounded to 10 explicit mantissa bits, the products summed in
//! float32. The rounding is to nearest or, in some kernels, by truncation. Both are emulated
//! here on the CPU ([`emulated_logits`]), layer by layer through the `cnn`
//! (`crates/gfa-core/src/models/cnn.rs`; ReLU, max-pooling and the normalization are float32 on
//! both devices): the change of each logit under either rounding is what TF32 does to it. The
//! bound per logit ([`logit_bound`]) is twice the larger of the two changes (a kernel may round
//! other values of the same size, such as Winograd-transformed tiles, instead of the operands
//! themselves) plus the fp32 allowance of the comparisons (the two sides sum in float32 in
//! other orders).
//!
//! A worst-case bound (every rounding error of the same sign, propagated through the absolute
//! weights) is not used: it grows with the product of the layers' sums of absolute weights and,
//! for this `cnn`, comes out larger than the logits themselves.
use anyhow::{Context, Result, bail};
use gfa_core::models::Arch;
use gfa_core::{Classifier, checkpoint};
use tch::{Device, Kind, Tensor};

/// How an operand becomes TF32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// The 13 low mantissa bits cleared (toward zero).
    Truncate,
    /// To the nearest TF32 value, ties to even.
    Nearest,
}

/// One step of the `cnn`'s forward after its normalization (`models/cnn.rs`): 3×3 convolutions
/// (padding 1) with ReLU, a 2×2 max-pool after every second, then fully connected layers.
#[derive(Debug, Clone, Copy)]
enum Step {
    Conv(&'static str),
    Fc(&'static str),
    Relu,
    Pool,
    Flatten,
}

use Step::{Conv, Fc, Flatten, Pool, Relu};

const CNN: [Step; 16] = [
    Conv("conv1"),
    Relu,
    Conv("conv2"),
    Relu,
    Pool,
    Conv("conv3"),
    Relu,
    Conv("conv4"),
    Relu,
    Pool,
    Flatten,
    Fc("fc1"),
    Relu,
    Fc("fc2"),
    Relu,
    Fc("fc3"),
];

/// A layer's weight and bias, float32 on the CPU.
fn layer(model: &Classifier, name: &str) -> Result<(Tensor, Tensor)> {
    let named = checkpoint::named_weights(model);
    let get = |p: &str| {
        let full = format!("{name}.{p}");
        named
            .iter()
            .find(|(n, _)| *n == full)
            .map(|(_, t)| t.to_device(Device::Cpu).to_kind(Kind::Float))
            .with_context(|| format!("the cnn has no variable {full}"))
    };
    Ok((get("weight")?, get("bias")?))
}

/// `w` applied to `x`: a 3×3 convolution (stride 1, padding 1) or a fully connected layer.
fn apply(step: Step, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
    match step {
        Conv(_) => x.conv2d(w, b, [1, 1], [1, 1], [1, 1], 1),
        _ => x.linear(w, b),
    }
}

/// The normalized input of `model` for pixels `x` (the first tap), float32 on the CPU.
fn normalized(model: &Classifier, x: &Tensor) -> Tensor {
    let x = x.to_device(model.device());
    let taps = tch::no_grad(|| model.forward_taps(&x, false, Default::default()).taps);
    taps[0].to_device(Device::Cpu).to_kind(Kind::Float)
}

/// The bound on `|logits at TF32 − logits at fp32|` for each point of `x` (pixels in [0, 1])
/// and class, float64 `[n, classes]` on the CPU: `2 · max over the roundings of |emulated −
/// fp32| + allowance` (the module doc). Only for the `cnn`, the model `gfa cuda-check` trains.
pub fn logit_bound(model: &Classifier, x: &Tensor, allowance: f64) -> Result<Tensor> {
    let fp32 = tch::no_grad(|| model.logits(&x.to_device(model.device()), false));
    let fp32 = fp32.to_device(Device::Cpu).to_kind(Kind::Double);
    let change = |r| -> Result<Tensor> {
        Ok((emulated_logits(model, x, r)?.to_kind(Kind::Double) - &fp32).abs())
    };
    let larger = change(Rounding::Truncate)?.maximum(&change(Rounding::Nearest)?);
    Ok(larger * 2.0 + allowance)
}

/// `t` (float32) as TF32, rounded by `r`: its 13 low mantissa bits cleared, after adding half
/// of their range (less one, plus the kept last bit: ties to even) for [`Rounding::Nearest`].
pub fn to_tf32(t: &Tensor, r: Rounding) -> Tensor {
    let bits = t.to_kind(Kind::Float).contiguous().view_dtype(Kind::Int);
    let bits = match r {
        Rounding::Truncate => bits,
        Rounding::Nearest => {
            let kept_lsb = bits.bitwise_right_shift_tensor_scalar(13).bitwise_and(1);
            bits + kept_lsb + 0x0fff
        }
    };
    bits.bitwise_and(!0x1fff_i64).view_dtype(Kind::Float)
}

/// The `cnn`'s logits with every convolution and fully connected layer computed from operands
/// rounded to TF32 by `r` and summed in float32: TF32 emulated on the CPU, float32 `[n,
/// classes]`.
pub fn emulated_logits(model: &Classifier, x: &Tensor, r: Rounding) -> Result<Tensor> {
    if model.spec.arch != Arch::Cnn {
        bail!("TF32 is emulated for the cnn, not {}", model.spec.arch.name());
    }
    emulate_with(model, x, &|t| to_tf32(t, r))
}

/// The `cnn`'s forward on the CPU with `round` applied to both operands of every layer.
fn emulate_with(
    model: &Classifier,
    x: &Tensor,
    round: &dyn Fn(&Tensor) -> Tensor,
) -> Result<Tensor> {
    let mut h = normalized(model, x);
    for step in CNN {
        match step {
            Conv(name) | Fc(name) => {
                let (w, b) = layer(model, name)?;
                h = apply(step, &round(&h), &round(&w), Some(&b));
            }
            Relu => h = h.relu(),
            Pool => h = h.max_pool2d_default(2),
            Flatten => h = h.flatten(1, -1),
        }
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gfa_core::ModelSpec;

    fn model(seed: u64) -> Classifier {
        gfa_core::seed::seed_all(seed);
        let spec = ModelSpec { arch: Arch::Cnn, width: 0.25, ..ModelSpec::default() };
        Classifier::new(&spec, Device::Cpu).unwrap()
    }

    /// TF32 keeps 10 mantissa bits: truncation clears the rest, rounding to nearest goes to the
    /// closer TF32 value (ties to the even one), and both move a value by less than 2⁻¹⁰ of it.
    #[test]
    fn tf32_keeps_ten_mantissa_bits() {
        let ulp = 1.0f32 / 1024.0;
        let x = [1.0 + 3.0 * f32::EPSILON, 1.0 + 0.75 * ulp, -(1.0 + 0.5 * ulp), 1.0 + 1.5 * ulp];
        let t = Tensor::from_slice(&x);
        let trunc: Vec<f32> = Vec::try_from(&to_tf32(&t, Rounding::Truncate)).unwrap();
        let near: Vec<f32> = Vec::try_from(&to_tf32(&t, Rounding::Nearest)).unwrap();
        assert_eq!(trunc, vec![1.0, 1.0, -1.0, 1.0 + ulp]);
        assert_eq!(near, vec![1.0, 1.0 + ulp, -1.0, 1.0 + 2.0 * ulp], "ties to even");
        gfa_core::seed::seed_all(3);
        let r = Tensor::rand([1000], (Kind::Float, Device::Cpu)) * 200.0 - 100.0;
        for mode in [Rounding::Truncate, Rounding::Nearest] {
            let rel = ((to_tf32(&r, mode) - &r).abs() / r.abs()).max().double_value(&[]);
            assert!(rel < f64::from(ulp), "{mode:?}: {rel}");
        }
    }

    /// With the operands left as they are, the emulation is the model's own forward (same
    /// kernels, same process: bit for bit); the TF32 changes are not zero and stay far below
    /// the logits; the bound is twice the larger change plus the allowance.
    #[test]
    fn emulation_follows_the_model_and_the_bound_its_changes() {
        let m = model(0);
        gfa_core::seed::seed_all(10);
        let x = Tensor::rand([8, 3, 32, 32], (Kind::Float, Device::Cpu));
        let fp32 = tch::no_grad(|| m.logits(&x, false));
        let same = emulate_with(&m, &x, &|t| t.shallow_clone()).unwrap();
        assert!(same.equal(&fp32), "the emulated forward is the cnn's");
        let scale = fp32.abs().max().double_value(&[]);
        let mut larger = fp32.zeros_like().to_kind(Kind::Double);
        for r in [Rounding::Truncate, Rounding::Nearest] {
            let d = (emulated_logits(&m, &x, r).unwrap() - &fp32).abs().to_kind(Kind::Double);
            let top = d.max().double_value(&[]);
            assert!(top > 0.0 && top < 1e-2 * scale, "{r:?}: {top:e} of logits up to {scale}");
            larger = larger.maximum(&d);
        }
        let bound = logit_bound(&m, &x, 1e-4).unwrap();
        let want = larger * 2.0 + 1e-4;
        assert!(bound.allclose(&want, 0.0, 0.0, false), "the bound is 2·max + allowance");
    }

    #[test]
    fn other_architectures_are_refused() {
        let spec = ModelSpec { arch: Arch::Mlp, ..ModelSpec::default() };
        let m = Classifier::new(&spec, Device::Cpu).unwrap();
        let x = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        assert!(logit_bound(&m, &x, 1e-4).unwrap_err().to_string().contains("cnn"));
    }
}
