//! WideResNet-28-10 and WideResNet-34-10 for 32×32 inputs ("Wide Residual Networks", Zagoruyko &
//! Komodakis, arXiv 1605.07146), in the form of the TRADES code (Zhang et al. 2019, arXiv
//! 1901.08573, `models/wideresnet.py`, also used by MART and AWP for WRN-34-10) and RobustBench's
//! `WideResNet`: depth 28 or 34 ((depth − 4) / 6 = four or five pre-activation `BasicBlock`s per
//! group), widen factor 10, no dropout. `conv1` (3×3, 16 channels) →
//! `block1` (160, stride 1) → `block2` (320, stride 2) → `block3` (640, stride 2) → `bn1` → ReLU
//! → global average pooling → `fc`. Channel counts scale with `width`.
//!
//! A block is BN → ReLU → conv3×3 → BN → ReLU → conv3×3 plus the shortcut. Where the channel
//! count changes (`equalInOut` false in the reference) the shortcut is a 1×1 `convShortcut` of
//! the first BN+ReLU output; otherwise it is the block input itself. Tensor names are the
//! reference's (`block1.layer.0.convShortcut.weight`). The reference's unused `sub_block1` is not
//! built; `VarStore::load` ignores its tensors when a checkpoint has them. Init follows the
//! reference: conv weights `normal(0, √(2 / (k²·c_out)))`, BN weight 1 and bias 0, `fc` bias 0.
//!
//! Taps: `conv1` (stem output), `block1` … `block3` (each group's residual sum) and `bn1` (the
//! final BN after its ReLU). As in PreAct ResNet, both [`TapPoint`](crate::TapPoint)s read the
//! same tensor at `conv1` and the groups; at `bn1` the pre-activation tap is the BN output.
use tch::Tensor;
use tch::nn;

use super::ModelSpec;
use super::layers::{BatchNorm2d, ConvInit, conv, global_avg_pool, linear};
use crate::classifier::{Act, Network, Taps, record_tap, relu};

/// Blocks per group of a WideResNet of `depth` (6 · n + 4): 4 for depth 28, 5 for depth 34.
pub const fn blocks_per_group(depth: i64) -> i64 {
    (depth - 4) / 6
}
/// Widen factor 10.
pub const WIDEN: i64 = 10;
/// Stem and group channels at `width = 1`: `[16, 16k, 32k, 64k]` with k = 10.
pub const CHANNELS: [i64; 4] = [16, 16 * WIDEN, 32 * WIDEN, 64 * WIDEN];

#[derive(Debug)]
struct BasicBlock {
    bn1: BatchNorm2d,
    conv1: nn::Conv2D,
    bn2: BatchNorm2d,
    conv2: nn::Conv2D,
    conv_shortcut: Option<nn::Conv2D>,
}

impl BasicBlock {
    fn new(p: nn::Path, c_in: i64, c_out: i64, stride: i64) -> Self {
        let init = ConvInit::KaimingFanOut;
        // The reference decides by channel count only (`equalInOut`), not by stride.
        let conv_shortcut =
            (c_in != c_out).then(|| conv(&p / "convShortcut", c_in, c_out, 1, stride, init));
        Self {
            bn1: BatchNorm2d::new(&p / "bn1", c_in),
            conv1: conv(&p / "conv1", c_in, c_out, 3, stride, init),
            bn2: BatchNorm2d::new(&p / "bn2", c_out),
            conv2: conv(&p / "conv2", c_out, c_out, 3, 1, init),
            conv_shortcut,
        }
    }

    /// # Shapes
    /// `[N, c_in, H, W]` → `[N, c_out, H / stride, W / stride]`.
    fn forward(&self, x: &Tensor, train: bool, taps: &mut Option<&mut Taps>) -> Tensor {
        let a = relu(taps, &x.apply_t(&self.bn1, train));
        let out = relu(taps, &a.apply(&self.conv1).apply_t(&self.bn2, train)).apply(&self.conv2);
        match &self.conv_shortcut {
            Some(c) => out + a.apply(c),
            None => out + x,
        }
    }
}

/// WideResNet-`depth`-10 (`wrn_28_10`, `wrn_34_10`).
#[derive(Debug)]
pub struct WideResNet {
    conv1: nn::Conv2D,
    groups: Vec<Vec<BasicBlock>>,
    bn1: BatchNorm2d,
    fc: nn::Linear,
}

impl WideResNet {
    /// `depth` is 28 or 34 (any 6 · n + 4 builds).
    pub fn new(p: &nn::Path, spec: &ModelSpec, depth: i64) -> Self {
        let ch = CHANNELS.map(|c| spec.scaled(c));
        let mut c_in = ch[0];
        let mut groups = Vec::new();
        for g in 0..3 {
            let c_out = ch[g + 1];
            // NetworkBlock wraps its blocks in a Sequential called `layer`.
            let layer = p / format!("block{}", g + 1) / "layer";
            let first_stride = if g == 0 { 1 } else { 2 };
            let blocks = (0..blocks_per_group(depth))
                .map(|b| {
                    let stride = if b == 0 { first_stride } else { 1 };
                    let blk = BasicBlock::new(&layer / b, c_in, c_out, stride);
                    c_in = c_out;
                    blk
                })
                .collect();
            groups.push(blocks);
        }
        Self {
            conv1: conv(p / "conv1", spec.channels(), ch[0], 3, 1, ConvInit::KaimingFanOut),
            groups,
            bn1: BatchNorm2d::new(p / "bn1", c_in),
            fc: linear(p / "fc", c_in, spec.num_classes, true),
        }
    }
}

impl Network for WideResNet {
    fn forward(&self, x: &Tensor, train: bool, mut taps: Option<&mut Taps>) -> Tensor {
        let mut h = record_tap(&mut taps, &x.apply(&self.conv1), Act::Identity);
        for group in &self.groups {
            for block in group {
                h = block.forward(&h, train, &mut taps);
            }
            h = record_tap(&mut taps, &h, Act::Identity);
        }
        let post = record_tap(&mut taps, &h.apply_t(&self.bn1, train), Act::Relu);
        global_avg_pool(&post).apply(&self.fc)
    }

    fn tap_names(&self) -> Vec<String> {
        ["conv1", "block1", "block2", "block3", "bn1"].map(String::from).to_vec()
    }
}
