//! Per-channel normalization, the first layer of every model. Mean and std are non-trainable
//! variables (`normalize.mean`, `normalize.std`), saved and loaded with the weights.
use tch::{Kind, Tensor, nn};

#[derive(Debug)]
pub struct Normalize {
    mean: Tensor,
    std: Tensor,
}

impl Normalize {
    pub fn new(p: nn::Path, mean: [f64; 3], std: [f64; 3]) -> Self {
        let mut m = p.zeros_no_train("mean", &[3]);
        let mut s = p.zeros_no_train("std", &[3]);
        tch::no_grad(|| {
            m.copy_(&Tensor::from_slice(&mean).to_kind(Kind::Float));
            s.copy_(&Tensor::from_slice(&std).to_kind(Kind::Float));
        });
        Self { mean: m, std: s }
    }

    /// # Shapes
    /// `[N, 3, H, W]` → `[N, 3, H, W]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        (x - self.mean.view([1, 3, 1, 1])) / self.std.view([1, 3, 1, 1])
    }
}
