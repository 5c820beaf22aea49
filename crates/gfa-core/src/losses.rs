//! Per-sample task losses ℓ_i (docs/method.md §2, option `task_loss`).
//!
//! The regularizer differentiates the *sum* Σ_i ℓ_i with respect to the taps, so that the
//! gradient of sample i does not depend on the batch size; the loss that is optimized and
//! reported is the *mean*. `mse_softmax` and `mse_logits` compare against one-hot targets and
//! average over the classes, so their batch mean equals PyTorch's
//! `F.mse_loss(softmax(logits), one_hot(y))` (resp. `F.mse_loss(logits, one_hot(y))`), the
//! MSE training loss the DeepDefense paper (arXiv 2511.13749) reports using.
use serde::{Deserialize, Serialize};
use tch::{Reduction, Tensor};

/// The task loss ℓ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskLoss {
    /// Cross-entropy of the logits.
    #[default]
    Ce,
    /// Mean squared error between `softmax(logits)` and the one-hot target.
    MseSoftmax,
    /// Mean squared error between the logits and the one-hot target.
    MseLogits,
}

impl TaskLoss {
    pub fn name(self) -> &'static str {
        match self {
            TaskLoss::Ce => "ce",
            TaskLoss::MseSoftmax => "mse_softmax",
            TaskLoss::MseLogits => "mse_logits",
        }
    }

    /// ℓ_i for every sample.
    ///
    /// # Shapes
    /// `logits`: `[N, C]` float, `y`: `[N]` int64 → `[N]`.
    pub fn per_sample(self, logits: &Tensor, y: &Tensor) -> Tensor {
        match self {
            TaskLoss::Ce => {
                logits.cross_entropy_loss::<Tensor>(y, None, Reduction::None, -100, 0.0)
            }
            TaskLoss::MseSoftmax => {
                let p = logits.softmax(-1, logits.kind());
                mse_to_one_hot(&p, y)
            }
            TaskLoss::MseLogits => mse_to_one_hot(logits, y),
        }
    }

    /// Σ_i ℓ_i (the quantity whose tap gradients the regularizer uses).
    ///
    /// # Shapes
    /// `logits`: `[N, C]`, `y`: `[N]` → scalar.
    pub fn sum(self, logits: &Tensor, y: &Tensor) -> Tensor {
        let l = self.per_sample(logits, y);
        l.sum(l.kind())
    }

    /// mean_i ℓ_i (the quantity that is optimized and reported).
    ///
    /// # Shapes
    /// `logits`: `[N, C]`, `y`: `[N]` → scalar.
    pub fn mean(self, logits: &Tensor, y: &Tensor) -> Tensor {
        let l = self.per_sample(logits, y);
        l.mean(l.kind())
    }
}

/// mean_c (z_c − onehot(y)_c)² per row.
fn mse_to_one_hot(z: &Tensor, y: &Tensor) -> Tensor {
    let target = y.one_hot(z.size()[1]).to_kind(z.kind());
    (z - target).square().mean_dim(-1, false, z.kind())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closed forms in float64 (a handful of operations on values ≤ 8: rounding ≤ 1e-14 on every
    /// CPU code path), to 1e-12.
    fn batch() -> (Tensor, Tensor) {
        let logits = Tensor::from_slice(&[1.0f64, -0.5, 2.0, 0.3, 0.0, -1.0]).view([2, 3]);
        let y = Tensor::from_slice(&[2i64, 0]);
        (logits, y)
    }

    #[test]
    fn ce_matches_closed_form() {
        let (logits, y) = batch();
        let l = TaskLoss::Ce.per_sample(&logits, &y);
        let row = |v: [f64; 3], k: usize| {
            let lse = v.iter().map(|a| a.exp()).sum::<f64>().ln();
            lse - v[k]
        };
        let want = [row([1.0, -0.5, 2.0], 2), row([0.3, 0.0, -1.0], 0)];
        for (i, w) in want.iter().enumerate() {
            assert!((l.double_value(&[i as i64]) - w).abs() < 1e-12);
        }
        let mean = TaskLoss::Ce.mean(&logits, &y).double_value(&[]);
        assert!((mean - (want[0] + want[1]) / 2.0).abs() < 1e-12);
        let sum = TaskLoss::Ce.sum(&logits, &y).double_value(&[]);
        assert!((sum - (want[0] + want[1])).abs() < 1e-12);
    }

    #[test]
    fn mse_matches_closed_form() {
        let (logits, y) = batch();
        let l = TaskLoss::MseLogits.per_sample(&logits, &y);
        let want0 = (1.0f64.powi(2) + 0.5f64.powi(2) + 1.0f64.powi(2)) / 3.0;
        let want1 = (0.7f64.powi(2) + 0.0 + 1.0) / 3.0;
        assert!((l.double_value(&[0]) - want0).abs() < 1e-12);
        assert!((l.double_value(&[1]) - want1).abs() < 1e-12);

        let l = TaskLoss::MseSoftmax.per_sample(&logits, &y);
        let v = [1.0f64, -0.5, 2.0];
        let z: f64 = v.iter().map(|a| a.exp()).sum();
        let p: Vec<f64> = v.iter().map(|a| a.exp() / z).collect();
        let want = (p[0].powi(2) + p[1].powi(2) + (p[2] - 1.0).powi(2)) / 3.0;
        assert!((l.double_value(&[0]) - want).abs() < 1e-12);
    }
}
