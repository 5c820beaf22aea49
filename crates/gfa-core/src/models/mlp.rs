//! Multi-layer perceptron: flatten → `fc1` … `fcK` with ReLU → `head`. Taps `fc1` … `fcK`.
use tch::{Tensor, nn};

use super::{ModelSpec, layers};
use crate::classifier::{Act, Network, Taps, record_tap};

#[derive(Debug)]
pub struct Mlp {
    hidden: Vec<nn::Linear>,
    head: nn::Linear,
}

impl Mlp {
    pub fn new(p: &nn::Path, spec: &ModelSpec) -> Self {
        let mut hidden = Vec::new();
        let mut d_in = spec.input_numel();
        for (i, w) in spec.widths.iter().enumerate() {
            let d = spec.scaled(*w);
            hidden.push(layers::linear(p / format!("fc{}", i + 1), d_in, d, false));
            d_in = d;
        }
        let head = layers::linear(p / "head", d_in, spec.num_classes, false);
        Self { hidden, head }
    }
}

impl Network for Mlp {
    fn forward(&self, x: &Tensor, _train: bool, mut taps: Option<&mut Taps>) -> Tensor {
        let mut h = x.flatten(1, -1);
        for fc in &self.hidden {
            h = record_tap(&mut taps, &h.apply(fc), Act::Relu);
        }
        h.apply(&self.head)
    }

    fn tap_names(&self) -> Vec<String> {
        (1..=self.hidden.len()).map(|i| format!("fc{i}")).collect()
    }
}
