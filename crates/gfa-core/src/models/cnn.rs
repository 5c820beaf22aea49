//! The paper-style small CNN (SPEC §3). The paper does not give its exact layers, so this is the
//! classic robustness CNN (Carlini & Wagner 2017; Zhang et al. 2019, TRADES' `SmallCNN` without
//! dropout): conv3×3(64) ×2 → maxpool → conv3×3(128) ×2 → maxpool → fc256 → fc256 → fc10, ReLU,
//! no BatchNorm. Channel and unit counts scale with `width`.
//!
//! Initial values are tch's defaults: Kaiming-uniform weights (ReLU gain, fan-in; a bound √6 times
//! PyTorch's `U(±1/√fan_in)`), zero conv biases and `U(±1/√fan_in)` linear biases. On this plain
//! ReLU stack they train faster than PyTorch's defaults (CIFAR-10, width 0.25, Adam 1e-3, seed 0:
//! 57.6% vs 52.1% test accuracy after 2 epochs); the ResNets use PyTorch's ([`super::layers`]).
//!
//! Taps: `conv1` … `conv4` (before pooling), `fc1`, `fc2`.
use tch::{Tensor, nn};

use super::ModelSpec;
use crate::classifier::{Network, Taps, record_tap};

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
        let cfg = nn::ConvConfig { padding: 1, ..Default::default() };
        let convs = vec![
            nn::conv2d(p / "conv1", 3, c1, 3, cfg),
            nn::conv2d(p / "conv2", c1, c1, 3, cfg),
            nn::conv2d(p / "conv3", c1, c2, 3, cfg),
            nn::conv2d(p / "conv4", c2, c2, 3, cfg),
        ];
        let fcs = vec![
            nn::linear(p / "fc1", c2 * 8 * 8, f, Default::default()),
            nn::linear(p / "fc2", f, f, Default::default()),
        ];
        let head = nn::linear(p / "fc3", f, spec.num_classes, Default::default());
        Self { convs, fcs, head }
    }
}

impl Network for Cnn {
    fn forward(&self, x: &Tensor, _train: bool, mut taps: Option<&mut Taps>) -> Tensor {
        let mut h = x.shallow_clone();
        for (i, conv) in self.convs.iter().enumerate() {
            let pre = h.apply(conv);
            h = pre.relu();
            record_tap(&mut taps, &pre, &h);
            if i % 2 == 1 {
                h = h.max_pool2d_default(2);
            }
        }
        h = h.flatten(1, -1);
        for fc in &self.fcs {
            let pre = h.apply(fc);
            h = pre.relu();
            record_tap(&mut taps, &pre, &h);
        }
        h.apply(&self.head)
    }

    fn tap_names(&self) -> Vec<String> {
        ["conv1", "conv2", "conv3", "conv4", "fc1", "fc2"].map(String::from).to_vec()
    }
}
