//! ResNet-18 for 32×32 inputs, the CIFAR variant most PyTorch code uses (kuangliu/pytorch-cifar
//! `models/resnet.py`, also the example model of fra31/auto-attack). After "Deep Residual Learning
//! for Image Recognition" (He, Zhang, Ren, Sun; arXiv 1512.03385): a 3×3 stem `conv1`+`bn1`
//! (no max-pool), four stages `layer1` … `layer4` of two `BasicBlock`s with 64, 128, 256, 512
//! channels (strides 1, 2, 2, 2; a 1×1 conv + BN `shortcut` where the shape changes), global
//! average pooling and the `linear` head. Channel counts scale with `width`.
//!
//! Tensor names are those of the PyTorch `state_dict`, BatchNorm buffers included
//! (`layer2.0.shortcut.1.running_var`, `….num_batches_tracked`), so with `normalize = false` a
//! checkpoint trained with that code loads as it is. Weights start from PyTorch's default init.
//!
//! Taps: `conv1` (stem after its ReLU), `layer1` … `layer4` (each stage's output, after the last
//! block's ReLU). With [`TapPoint::PreActivation`](crate::TapPoint) they read the tensors before
//! those ReLUs (stem: the `bn1` output; stages: the residual sum).
use tch::Tensor;
use tch::nn;

use super::ModelSpec;
use super::layers::{BatchNorm2d, ConvInit, conv, global_avg_pool, linear};
use crate::classifier::{Act, Network, Taps, record_tap, relu};

/// Output channels of the four stages at `width = 1`.
pub const STAGE_CHANNELS: [i64; 4] = [64, 128, 256, 512];

/// The four stages `layer1` … `layer4` of two blocks each (strides 1, 2, 2, 2) built by
/// `block(path, c_in, c_out, stride)`, and the channel count they end with.
pub fn stages<B>(
    p: &nn::Path,
    spec: &ModelSpec,
    mut block: impl FnMut(nn::Path, i64, i64, i64) -> B,
) -> (Vec<Vec<B>>, i64) {
    let mut c_in = spec.scaled(STAGE_CHANNELS[0]);
    let mut layers = Vec::new();
    for (i, c) in STAGE_CHANNELS.iter().enumerate() {
        let c_out = spec.scaled(*c);
        let stage = p / format!("layer{}", i + 1);
        let first_stride = if i == 0 { 1 } else { 2 };
        let blocks = (0..2)
            .map(|b| {
                let stride = if b == 0 { first_stride } else { 1 };
                let blk = block(&stage / b, c_in, c_out, stride);
                c_in = c_out;
                blk
            })
            .collect();
        layers.push(blocks);
    }
    (layers, c_in)
}

/// `BasicBlock`: conv3×3 → BN → ReLU → conv3×3 → BN, plus the shortcut, then ReLU.
#[derive(Debug)]
struct BasicBlock {
    conv1: nn::Conv2D,
    bn1: BatchNorm2d,
    conv2: nn::Conv2D,
    bn2: BatchNorm2d,
    shortcut: Option<(nn::Conv2D, BatchNorm2d)>,
}

impl BasicBlock {
    fn new(p: nn::Path, c_in: i64, c_out: i64, stride: i64) -> Self {
        let shortcut = (stride != 1 || c_in != c_out).then(|| {
            let s = &p / "shortcut";
            (
                conv(&s / "0", c_in, c_out, 1, stride, ConvInit::Torch),
                BatchNorm2d::new(&s / "1", c_out),
            )
        });
        Self {
            conv1: conv(&p / "conv1", c_in, c_out, 3, stride, ConvInit::Torch),
            bn1: BatchNorm2d::new(&p / "bn1", c_out),
            conv2: conv(&p / "conv2", c_out, c_out, 3, 1, ConvInit::Torch),
            bn2: BatchNorm2d::new(&p / "bn2", c_out),
            shortcut,
        }
    }

    /// The residual sum (the block output is its ReLU).
    ///
    /// # Shapes
    /// `[N, c_in, H, W]` → `[N, c_out, H / stride, W / stride]`.
    fn forward(&self, x: &Tensor, train: bool, taps: &mut Option<&mut Taps>) -> Tensor {
        let out = relu(taps, &x.apply(&self.conv1).apply_t(&self.bn1, train));
        let out = out.apply(&self.conv2).apply_t(&self.bn2, train);
        let skip = match &self.shortcut {
            Some((c, bn)) => x.apply(c).apply_t(bn, train),
            None => x.shallow_clone(),
        };
        out + skip
    }
}

#[derive(Debug)]
pub struct ResNet18 {
    conv1: nn::Conv2D,
    bn1: BatchNorm2d,
    layers: Vec<Vec<BasicBlock>>,
    linear: nn::Linear,
}

impl ResNet18 {
    pub fn new(p: &nn::Path, spec: &ModelSpec) -> Self {
        let c0 = spec.scaled(STAGE_CHANNELS[0]);
        let (layers, c_in) = stages(p, spec, BasicBlock::new);
        Self {
            conv1: conv(p / "conv1", spec.channels(), c0, 3, 1, ConvInit::Torch),
            bn1: BatchNorm2d::new(p / "bn1", c0),
            layers,
            linear: linear(p / "linear", c_in, spec.num_classes, false),
        }
    }
}

impl Network for ResNet18 {
    fn forward(&self, x: &Tensor, train: bool, mut taps: Option<&mut Taps>) -> Tensor {
        let stem = x.apply(&self.conv1).apply_t(&self.bn1, train);
        let mut h = record_tap(&mut taps, &stem, Act::Relu);
        for stage in &self.layers {
            // Each stage is tapped at its last block: the residual sum, or the ReLU after it.
            for (i, block) in stage.iter().enumerate() {
                let sum = block.forward(&h, train, &mut taps);
                h = if i + 1 == stage.len() {
                    record_tap(&mut taps, &sum, Act::Relu)
                } else {
                    relu(&mut taps, &sum)
                };
            }
        }
        global_avg_pool(&h).apply(&self.linear)
    }

    fn tap_names(&self) -> Vec<String> {
        ["conv1", "layer1", "layer2", "layer3", "layer4"].map(String::from).to_vec()
    }
}
