//! A single affine map on the flattened image. Its input gradient is known in closed form, which
//! makes it the reference model for attack and regularizer tests. Taps: `input` only.
use tch::{Tensor, nn};

use super::ModelSpec;
use crate::classifier::{Network, Taps};

#[derive(Debug)]
pub struct Linear {
    fc: nn::Linear,
}

impl Linear {
    pub fn new(p: &nn::Path, spec: &ModelSpec) -> Self {
        let cfg = nn::LinearConfig { bias: spec.bias, ..Default::default() };
        Self { fc: nn::linear(p / "fc", spec.input_numel(), spec.num_classes, cfg) }
    }
}

impl Network for Linear {
    fn forward(&self, x: &Tensor, _train: bool, _taps: Option<&mut Taps>) -> Tensor {
        x.flatten(1, -1).apply(&self.fc)
    }

    fn tap_names(&self) -> Vec<String> {
        Vec::new()
    }
}
