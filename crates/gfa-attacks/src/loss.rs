//! Per-sample attack losses on logits.
//!
//! - CE: cross-entropy, the loss of FGSM/PGD/APGD-CE.
//! - DLR: the Difference of Logits Ratio of Croce & Hein, "Reliable evaluation of adversarial
//!   robustness with an ensemble of diverse parameter-free attacks" (ICML 2020, arXiv 2003.01690),
//!   untargeted and targeted, as in auto-attack `autopgd_base.py`.
//! - CW margin: `z_y - max_{j != y} z_j`, the loss Square minimizes (Carlini & Wagner 2017).
//!
//! All take logits `[N, C]` and labels `[N]` (int64) and return `[N]` float; the batch is never
//! reduced, so gradients of the sum are per-sample gradients.
use tch::Tensor;

/// A per-sample loss of logits and labels (`[N, C]`, `[N]` → `[N]`): [`ce`], [`dlr`], ….
pub type PerSample = fn(&Tensor, &Tensor) -> Tensor;

/// Stabilizer in the DLR denominators (auto-attack's `1e-12`).
const DLR_EPS: f64 = 1e-12;

fn pick(logits: &Tensor, idx: &Tensor) -> Tensor {
    logits.gather(1, &idx.unsqueeze(1), false).squeeze_dim(1)
}

/// Per-sample cross-entropy.
///
/// # Shapes
/// `logits`: `[N, C]`, `y`: `[N]` → `[N]`.
pub fn ce(logits: &Tensor, y: &Tensor) -> Tensor {
    -pick(&logits.log_softmax(1, logits.kind()), y)
}

/// Per-sample `KL(p ‖ softmax(logits))` to fixed probabilities `p` (TRADES' inner loss, with `p`
/// the clean prediction).
///
/// # Shapes
/// `logits`, `p`: `[N, C]` → `[N]`.
pub fn kl_from(logits: &Tensor, p: &Tensor) -> Tensor {
    let logq = logits.log_softmax(1, logits.kind());
    (p * (p.clamp_min(1e-30).log() - logq)).sum_dim_intlist(1, false, logits.kind())
}

/// Untargeted DLR: `-(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3 + 1e-12)`, `pi` sorting the logits
/// in descending order. Invariant to shifting and positive scaling of the logits. Needs C ≥ 3.
///
/// # Shapes
/// `logits`: `[N, C]`, `y`: `[N]` → `[N]`.
pub fn dlr(logits: &Tensor, y: &Tensor) -> Tensor {
    let (sorted, ind) = logits.sort(1, true);
    let top = |k: i64| sorted.select(1, k);
    let y_is_top = ind.select(1, 0).eq_tensor(y).to_kind(logits.kind());
    let other: Tensor = top(1) * &y_is_top + top(0) * (1.0 - &y_is_top);
    let num: Tensor = pick(logits, y) - other;
    let den: Tensor = top(0) - top(2) + DLR_EPS;
    -(num / den)
}

/// Targeted DLR: `-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)`. Needs C ≥ 4.
///
/// # Shapes
/// `logits`: `[N, C]`, `y`, `target`: `[N]` → `[N]`.
pub fn dlr_targeted(logits: &Tensor, y: &Tensor, target: &Tensor) -> Tensor {
    let (sorted, _) = logits.sort(1, true);
    let top = |k: i64| sorted.select(1, k);
    let num: Tensor = pick(logits, y) - pick(logits, target);
    let den: Tensor = top(0) - (top(2) + top(3)) * 0.5 + DLR_EPS;
    -(num / den)
}

/// CW margin `z_y - max_{j != y} z_j`: positive iff the sample is classified as `y`.
///
/// # Shapes
/// `logits`: `[N, C]`, `y`: `[N]` → `[N]`.
pub fn cw_margin(logits: &Tensor, y: &Tensor) -> Tensor {
    let zy = pick(logits, y);
    let mask = logits.zeros_like().scatter_value(1, &y.unsqueeze(1), f64::NEG_INFINITY);
    let others = (logits + mask).amax(1, false);
    zy - others
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closed forms in float64 (a handful of operations on values ≤ 25: rounding ≤ 1e-14, the
    /// same on every CPU code path), to 1e-12.
    fn row(v: &[f64]) -> Tensor {
        Tensor::from_slice(v).view([1, -1])
    }
    fn val(t: &Tensor) -> f64 {
        t.double_value(&[0])
    }

    #[test]
    fn losses_match_hand_computations() {
        let z = row(&[3.0, 1.0, 0.0, -1.0]);
        let y = Tensor::from_slice(&[0i64]);
        // CE: -log softmax_0 = log(e^3 + e^1 + e^0 + e^-1) - 3.
        let want = ((3f64).exp() + 1f64.exp() + 1.0 + (-1f64).exp()).ln() - 3.0;
        assert!((val(&ce(&z, &y)) - want).abs() < 1e-12);
        // y is the argmax: DLR = -(3 - 1) / (3 - 0) (the 1e-12 stabilizer moves it by 2e-13).
        assert!((val(&dlr(&z, &y)) + 2.0 / 3.0).abs() < 1e-12);
        // y = 2 is not the argmax: DLR = -(0 - 3) / (3 - 0).
        let y2 = Tensor::from_slice(&[2i64]);
        assert!((val(&dlr(&z, &y2)) - 1.0).abs() < 1e-12);
        // targeted, y = 0, t = 3: -(3 - (-1)) / (3 - (0 + -1) / 2).
        let t = Tensor::from_slice(&[3i64]);
        assert!((val(&dlr_targeted(&z, &y, &t)) + 4.0 / 3.5).abs() < 1e-12);
        assert!((val(&cw_margin(&z, &y)) - 2.0).abs() < 1e-12);
        assert!((val(&cw_margin(&z, &y2)) + 3.0).abs() < 1e-12);
    }

    #[test]
    fn dlr_is_shift_and_scale_invariant() {
        let z = row(&[0.3, -1.2, 2.0, 0.7, 0.1]);
        let y = Tensor::from_slice(&[3i64]);
        let a = val(&dlr(&z, &y));
        let b = val(&dlr(&(&z * 7.0 + 3.0), &y));
        // Up to the 1e-12 stabilizer, which is not scaled: |DLR| · 1e-12 / (z_π1 − z_π3) ≈ 5e-13.
        assert!((a - b).abs() < 1e-11, "{a} vs {b}");
    }
}
