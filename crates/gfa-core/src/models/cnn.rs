//! The paper-style small CNN (docs/method.md §4). The paper does not give its exact layers, so this is the
//! classic robustness CNN (Carlini & Wagner 2017; Zhang et al. 2019, TRADES' `SmallCNN` without
//! dropout): conv3×3(64) ×2 → maxpool → conv3×3(128) ×2 → maxpool → fc256 → fc256 → fc10, ReLU,
//! no BatchNorm. Channel and unit counts scale with `width`.
//!
//! Initial values are PyTorch's defaults (`U(±1/√fan_in)` for weights and biases), as in its
//! PyTorch twin. tch's own default (Kaiming-uniform with the ReLU gain, zero conv biases) trains
//! standard models faster, but Madry PGD-AT from it stays at chance accuracy: the twin, CIFAR-10,
//! width 0.25, Adam 1e-3, 3 steps of 3/255 at 8/255, 5,000 images, 2 epochs: 10.2% train accuracy
//! from Kaiming, 16.9% (and 24.7% test) from PyTorch's init (`scripts/train_pytorch_twin.py`).
//!
//! Taps: `conv1` … `conv4` (before pooling), `fc1`, `fc2`.
use tch::{Tensor, nn};

use super::{ModelSpec, layers};
use crate::classifier::{Act, Network, Taps, max_pool2, record_tap};

#[derive(Debug)]
pub struct Cnn {
    convs: Vec<nn::Conv2D>,
    fcs: Vec<nn::Linear>,
    head: nn::Linear,
}

impl Cnn {
    pub fn new(p: &nn::Path, spec: &ModelSpec) -> Self {
        let c1 = spec.scaled(64);
        let c2 = spec.scaled(128);
        let f = spec.scaled(256);
        let convs = vec![
            layers::conv_biased(p / "conv1", spec.channels(), c1, 3),
            layers::conv_biased(p / "conv2", c1, c1, 3),
            layers::conv_biased(p / "conv3", c1, c2, 3),
            layers::conv_biased(p / "conv4", c2, c2, 3),
        ];
        // Two 2×2 max-pools (floor division, as PyTorch's): 8×8 maps from CIFAR-10's 32×32,
        // 7×7 from Fashion-MNIST's 28×28.
        let [_, h, w] = spec.input;
        let fcs = vec![
            layers::linear(p / "fc1", c2 * (h / 4) * (w / 4), f, false),
            layers::linear(p / "fc2", f, f, false),
        ];
        let head = layers::linear(p / "fc3", f, spec.num_classes, false);
        Self { convs, fcs, head }
    }
}

impl Network for Cnn {
    fn forward(&self, x: &Tensor, _train: bool, mut taps: Option<&mut Taps>) -> Tensor {
        let mut h = x.shallow_clone();
        for (i, conv) in self.convs.iter().enumerate() {
            h = record_tap(&mut taps, &h.apply(conv), Act::Relu);
            if i % 2 == 1 {
                h = max_pool2(&mut taps, &h);
            }
        }
        h = h.flatten(1, -1);
        for fc in &self.fcs {
            h = record_tap(&mut taps, &h.apply(fc), Act::Relu);
        }
        h.apply(&self.head)
    }

    fn tap_names(&self) -> Vec<String> {
        ["conv1", "conv2", "conv3", "conv4", "fc1", "fc2"].map(String::from).to_vec()
    }
}
