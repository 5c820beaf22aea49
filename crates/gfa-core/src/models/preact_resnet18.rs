//! PreAct ResNet-18 for 32×32 inputs, the standard network of the adversarial-training
//! literature ("Identity Mappings in Deep Residual Networks", He, Zhang, Ren, Sun, arXiv
//! 1603.05027; as used by Wong, Rice & Kolter, "Fast is better than free", arXiv 2001.03994, and
//! Rice, Wong & Kolter, "Overfitting in adversarially robust deep learning", arXiv 2002.11569).
//! A 3×3 stem `conv1` (no BN, no ReLU), four stages `layer1` … `layer4` of two `PreActBlock`s
//! with 64, 128, 256, 512 channels (strides 1, 2, 2, 2), then `bn` → ReLU → global average
//! pooling → `linear`. A block is BN → ReLU → conv3×3 → BN → ReLU → conv3×3 plus the shortcut,
//! which is the identity or, where the shape changes, a 1×1 conv (`shortcut.0`) of the first
//! BN+ReLU output. Channel counts scale with `width`. Tensor names and init are PyTorch's.
//!
//! Taps: `conv1` (stem output), `layer1` … `layer4` (each stage's residual sum) and `bn` (the
//! final BN after its ReLU). A pre-activation block has no activation of its own at its output,
//! so for `conv1` and the stages both [`TapPoint`](crate::TapPoint)s read the same tensor; for
//! `bn` the pre-activation tap is the BN output before the ReLU.
use tch::Tensor;
use tch::nn;

use super::ModelSpec;
use super::layers::{BatchNorm2d, ConvInit, conv, global_avg_pool, linear};
use super::resnet18::{STAGE_CHANNELS, stages};
use crate::classifier::{Act, Network, Taps, record_tap, relu};

#[derive(Debug)]
struct PreActBlock {
    bn1: BatchNorm2d,
    conv1: nn::Conv2D,
    bn2: BatchNorm2d,
    conv2: nn::Conv2D,
    shortcut: Option<nn::Conv2D>,
}

impl PreActBlock {
    fn new(p: nn::Path, c_in: i64, c_out: i64, stride: i64) -> Self {
        let shortcut = (stride != 1 || c_in != c_out)
            .then(|| conv(&p / "shortcut" / "0", c_in, c_out, 1, stride, ConvInit::Torch));
        Self {
            bn1: BatchNorm2d::new(&p / "bn1", c_in),
            conv1: conv(&p / "conv1", c_in, c_out, 3, stride, ConvInit::Torch),
            bn2: BatchNorm2d::new(&p / "bn2", c_out),
            conv2: conv(&p / "conv2", c_out, c_out, 3, 1, ConvInit::Torch),
            shortcut,
        }
    }

    /// # Shapes
    /// `[N, c_in, H, W]` → `[N, c_out, H / stride, W / stride]`.
    fn forward(&self, x: &Tensor, train: bool, taps: &mut Option<&mut Taps>) -> Tensor {
        let a = relu(taps, &x.apply_t(&self.bn1, train));
        let skip = match &self.shortcut {
            Some(c) => a.apply(c),
            None => x.shallow_clone(),
        };
        let out = relu(taps, &a.apply(&self.conv1).apply_t(&self.bn2, train)).apply(&self.conv2);
        out + skip
    }
}

#[derive(Debug)]
pub struct PreActResNet18 {
    conv1: nn::Conv2D,
    layers: Vec<Vec<PreActBlock>>,
    bn: BatchNorm2d,
    linear: nn::Linear,
}

impl PreActResNet18 {
    pub fn new(p: &nn::Path, spec: &ModelSpec) -> Self {
        let c0 = spec.scaled(STAGE_CHANNELS[0]);
        let (layers, c_in) = stages(p, spec, PreActBlock::new);
        Self {
            conv1: conv(p / "conv1", spec.channels(), c0, 3, 1, ConvInit::Torch),
            layers,
            bn: BatchNorm2d::new(p / "bn", c_in),
            linear: linear(p / "linear", c_in, spec.num_classes, false),
        }
    }
}

impl Network for PreActResNet18 {
    fn forward(&self, x: &Tensor, train: bool, mut taps: Option<&mut Taps>) -> Tensor {
        let mut h = record_tap(&mut taps, &x.apply(&self.conv1), Act::Identity);
        for stage in &self.layers {
            for block in stage {
                h = block.forward(&h, train, &mut taps);
            }
            h = record_tap(&mut taps, &h, Act::Identity);
        }
        let post = record_tap(&mut taps, &h.apply_t(&self.bn, train), Act::Relu);
        global_avg_pool(&post).apply(&self.linear)
    }

    fn tap_names(&self) -> Vec<String> {
        ["conv1", "layer1", "layer2", "layer3", "layer4", "bn"].map(String::from).to_vec()
    }
}
