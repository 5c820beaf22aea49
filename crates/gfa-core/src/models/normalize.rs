//! Per-channel normalization, the first layer of every model. Mean and std are non-trainable
//! variables (`normalize.mean`, `normalize.std`, one value per input channel), saved and loaded
//! with the weights.
use tch::{Kind, Tensor, nn};

#[derive(Debug)]
pub struct Normalize {
    mean: Tensor,
    std: Tensor,
}

impl Normalize {
    /// `mean` and `std` hold one value per channel (`ModelSpec::per_channel_mean_std`).
    pub fn new(p: nn::Path, mean: &[f64], std: &[f64]) -> Self {
        let c = mean.len() as i64;
        let mut m = p.zeros_no_train("mean", &[c]);
        let mut s = p.zeros_no_train("std", &[c]);
        tch::no_grad(|| {
            m.copy_(&Tensor::from_slice(mean).to_kind(Kind::Float));
            s.copy_(&Tensor::from_slice(std).to_kind(Kind::Float));
        });
        Self { mean: m, std: s }
    }

    /// # Shapes
    /// `[N, C, H, W]` → `[N, C, H, W]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        (x - self.mean.view([1, -1, 1, 1])) / self.std.view([1, -1, 1, 1])
    }
}
