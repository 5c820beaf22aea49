//! The model registry: [`ModelSpec`] names an architecture and its options; [`ModelSpec::build`]
//! makes the network. Adding a model is one file here plus one [`Arch`] variant.
//!
//! Tensor names follow PyTorch `state_dict` naming of the twins in `scripts/pytorch_models.py`
//! (see `docs/models.md`), so weights move between gfa and PyTorch as safetensors.
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor, nn};

use crate::classifier::{Classifier, Network};
use crate::{CoreError, Result};

mod cnn;
pub mod layers;
mod linear;
mod mlp;
mod normalize;
mod preact_resnet18;
mod resnet18;
mod wide_resnet;

pub use cnn::Cnn;
pub use layers::BatchNorm2d;
pub use linear::Linear;
pub use mlp::Mlp;
pub use normalize::Normalize;
pub use preact_resnet18::PreActResNet18;
pub use resnet18::ResNet18;
pub use wide_resnet::WideResNet;

/// Architectures gfa can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// Flatten → one affine map (closed-form tests).
    Linear,
    /// Flatten → hidden `widths` with ReLU → classes (docs/method.md §4).
    Mlp,
    /// The classic robustness CNN: conv64 ×2 → pool → conv128 ×2 → pool → fc256 → fc256 → fc.
    Cnn,
    /// PreAct ResNet-18 of the adversarial-training literature (BatchNorm).
    #[serde(rename = "preact_resnet18")]
    PreActResNet18,
    /// WideResNet-28-10 as in the TRADES / RobustBench code (BatchNorm).
    #[serde(rename = "wrn_28_10")]
    Wrn28x10,
    /// WideResNet-34-10 of TRADES, MART and AWP (BatchNorm), the same tensor names.
    #[serde(rename = "wrn_34_10")]
    Wrn34x10,
    /// The CIFAR ResNet-18 of kuangliu/pytorch-cifar, with its PyTorch tensor names.
    #[serde(rename = "resnet18")]
    ResNet18,
    /// A TorchScript module loaded from a file ([`crate::torchscript`]): not built by gfa, not
    /// in [`Arch::ALL`], not a `--model` name.
    #[serde(rename = "torchscript")]
    TorchScript,
}

impl Arch {
    pub const ALL: &[Arch] = &[
        Arch::Linear,
        Arch::Mlp,
        Arch::Cnn,
        Arch::PreActResNet18,
        Arch::Wrn28x10,
        Arch::Wrn34x10,
        Arch::ResNet18,
    ];

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Linear => "linear",
            Arch::Mlp => "mlp",
            Arch::Cnn => "cnn",
            Arch::PreActResNet18 => "preact_resnet18",
            Arch::Wrn28x10 => "wrn_28_10",
            Arch::Wrn34x10 => "wrn_34_10",
            Arch::ResNet18 => "resnet18",
            Arch::TorchScript => "torchscript",
        }
    }

    /// One line for `gfa list models`.
    pub fn description(self) -> &'static str {
        match self {
            Arch::Linear => "one affine map on the flattened image (closed-form tests)",
            Arch::Mlp => "flatten -> hidden `widths` with ReLU -> classes (paper MLP)",
            Arch::Cnn => {
                "conv64 x2 -> pool -> conv128 x2 -> pool -> fc256 x2 -> fc, no BatchNorm \
                          (paper-style CNN)"
            }
            Arch::PreActResNet18 => {
                "PreAct ResNet-18 for 32x32 (Wong et al. 2020, Rice et al. 2020), BatchNorm"
            }
            Arch::Wrn28x10 => "WideResNet-28-10 as in TRADES / RobustBench, BatchNorm",
            Arch::Wrn34x10 => "WideResNet-34-10 as in TRADES / MART / AWP, BatchNorm",
            Arch::ResNet18 => {
                "CIFAR ResNet-18 of kuangliu/pytorch-cifar with its PyTorch tensor names, BatchNorm"
            }
            Arch::TorchScript => "a TorchScript module loaded from a file (gfa eval --torchscript)",
        }
    }

    /// Whether the network records taps after `input`: features of hidden layers, which the
    /// binarization test reads (not the `linear` model, nor an opaque TorchScript module).
    pub fn has_feature_taps(self) -> bool {
        !matches!(self, Arch::Linear | Arch::TorchScript)
    }

    /// Whether the network has BatchNorm layers (train mode then mixes the samples of a batch).
    pub fn has_batch_norm(self) -> bool {
        matches!(self, Arch::PreActResNet18 | Arch::Wrn28x10 | Arch::Wrn34x10 | Arch::ResNet18)
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Arch {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self> {
        Arch::ALL.iter().copied().find(|a| a.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Arch::ALL.iter().map(|a| a.name()).collect();
            CoreError::Config(format!("unknown model `{s}`; known models: {}", names.join(", ")))
        })
    }
}

/// How a model's 4-D tensors (convolution weights, images, feature maps) lie in memory.
///
/// A speed choice, not part of the model: the values are the same either way (up to the
/// summation order of the convolutions), so the layout is never written — not in configs'
/// canonical form, run ids, config hashes or checkpoints — and two specs that differ only in
/// layout are equal. Checkpoints always hold the default (contiguous) layout; a model of
/// either layout loads them. Measured in `results/bench/channels_last.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// libtorch's default, `[N, C, H, W]` contiguous.
    #[default]
    Contiguous,
    /// Channels last (`[N, H, W, C]` in memory, shapes unchanged): the weights of the
    /// convolutions and the images entering the network.
    ChannelsLast,
}

impl Layout {
    /// `t` in this layout: a 4-D tensor channels last (the same values and shape, a
    /// differentiable copy), anything else as it is.
    pub fn apply(self, t: &Tensor) -> Tensor {
        match self {
            Layout::ChannelsLast if t.dim() == 4 => {
                t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
            }
            _ => t.shallow_clone(),
        }
    }

    /// Put every 4-D variable of `vs` (the convolution weights) in this layout, in place: the
    /// variables stay the same tensors (an optimizer made before keeps them), only their
    /// strides change. Saving makes them contiguous again ([`crate::checkpoint::write_tensors`]).
    pub fn apply_to_weights(self, vs: &nn::VarStore) {
        if self == Layout::Contiguous {
            return;
        }
        for (_, mut v) in vs.variables() {
            if v.dim() == 4 {
                let laid = self.apply(&v.detach());
                v.set_data(&laid);
            }
        }
    }
}

/// A model as written in a run config (`[model]` table).
///
/// `mean = std = [0.5; 3]` (the default) maps `[0, 1]` pixels to the paper's `[-1, 1]` inputs.
/// `mean` and `std` hold one value per input channel, or one value for every channel; a list of
/// equal values (such as the default) fits any channel count, so the default also serves
/// single-channel images.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSpec {
    pub arch: Arch,
    /// Channel/unit multiplier of every architecture except `linear` (each count is rounded,
    /// never below 1); 0.25 is the CPU-quick `cnn`.
    pub width: f64,
    /// Hidden widths of `mlp` (before `width` scaling).
    pub widths: Vec<i64>,
    /// Whether the first layer normalizes (switch off for checkpoints trained without it).
    pub normalize: bool,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    pub num_classes: i64,
    /// Bias of the `linear` model.
    pub bias: bool,
    /// Input images as `[channels, height, width]`. Runs and commands set it from the data
    /// ([`ModelSpec::with_input_of`]); it is written only when it differs from CIFAR-10's
    /// `[3, 32, 32]`, so configs and run identities from before it existed are unchanged.
    #[serde(skip_serializing_if = "is_cifar_input")]
    pub input: [i64; 3],
    /// The memory layout ([`Layout`]): read from a config, never written, not compared.
    #[serde(skip_serializing)]
    pub layout: Layout,
}

/// Every key but [`ModelSpec::layout`] (the exhaustive pattern makes a new key a compile error
/// here until it is compared too).
impl PartialEq for ModelSpec {
    fn eq(&self, o: &Self) -> bool {
        let ModelSpec {
            arch,
            width,
            widths,
            normalize,
            mean,
            std,
            num_classes,
            bias,
            input,
            layout: _,
        } = self;
        (arch, width, widths, normalize, mean, std, num_classes, bias, input)
            == (
                &o.arch,
                &o.width,
                &o.widths,
                &o.normalize,
                &o.mean,
                &o.std,
                &o.num_classes,
                &o.bias,
                &o.input,
            )
    }
}

/// CIFAR-10's image shape, the default input.
pub const CIFAR_INPUT: [i64; 3] = [3, 32, 32];

fn is_cifar_input(input: &[i64; 3]) -> bool {
    *input == CIFAR_INPUT
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            arch: Arch::Cnn,
            width: 1.0,
            widths: vec![1024, 512, 256],
            normalize: true,
            mean: vec![0.5; 3],
            std: vec![0.5; 3],
            num_classes: 10,
            bias: true,
            input: CIFAR_INPUT,
            layout: Layout::Contiguous,
        }
    }
}

impl ModelSpec {
    /// A spec with defaults for `arch`.
    pub fn of(arch: Arch) -> Self {
        Self { arch, ..Self::default() }
    }

    /// Checks the values; an error names the key (`model.width`) and the valid values.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, msg: String| Err(CoreError::invalid(format!("model.{key}"), msg));
        if !(self.width > 0.0 && self.width.is_finite()) {
            return bad("width", format!("must be a positive number, got {}", self.width));
        }
        if self.num_classes < 2 {
            return bad("num_classes", format!("must be at least 2, got {}", self.num_classes));
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return bad("std", format!("must be positive and finite, got {:?}", self.std));
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return bad("mean", format!("must be finite numbers, got {:?}", self.mean));
        }
        if self.input.iter().any(|d| *d < 1) {
            return bad("input", format!("must be positive [C, H, W], got {:?}", self.input));
        }
        for (key, v) in [("mean", &self.mean), ("std", &self.std)] {
            if per_channel(v, self.input[0]).is_none() {
                return bad(
                    key,
                    format!(
                        "has {} values {v:?} but the images have {} channel(s): give one value \
                         per channel, or a single value",
                        v.len(),
                        self.input[0]
                    ),
                );
            }
        }
        if self.arch == Arch::Mlp && (self.widths.is_empty() || self.widths.iter().any(|w| *w < 1))
        {
            return bad("widths", format!("must be positive integers, got {:?}", self.widths));
        }
        Ok(())
    }

    /// This spec for images shaped like `data`'s (`[C, H, W]` of its image tensor).
    pub fn with_input_of(&self, data: &gfa_data::Dataset) -> Self {
        let s = data.images.size();
        Self { input: [s[1], s[2], s[3]], ..self.clone() }
    }

    /// Number of input channels.
    pub fn channels(&self) -> i64 {
        self.input[0]
    }

    /// Values per input pixel (`C·H·W`), the input width of `linear` and `mlp`.
    pub fn input_numel(&self) -> i64 {
        self.input.iter().product()
    }

    /// `mean` and `std` with one value per input channel (see [`ModelSpec`]).
    pub fn per_channel_mean_std(&self) -> Result<(Vec<f64>, Vec<f64>)> {
        let c = self.channels();
        match (per_channel(&self.mean, c), per_channel(&self.std, c)) {
            (Some(m), Some(s)) => Ok((m, s)),
            _ => Err(CoreError::Config(format!(
                "model.mean {:?} / model.std {:?} do not fit {c} input channel(s)",
                self.mean, self.std
            ))),
        }
    }

    /// Scale a channel count by `width`, never below 1.
    pub fn scaled(&self, c: i64) -> i64 {
        ((c as f64 * self.width).round() as i64).max(1)
    }

    /// Build the network under `root` (normalization is added by the `Classifier`).
    pub fn build(&self, root: &nn::Path) -> Result<Box<dyn Network>> {
        self.validate()?;
        Ok(match self.arch {
            Arch::Linear => Box::new(Linear::new(root, self)),
            Arch::Mlp => Box::new(Mlp::new(root, self)),
            Arch::Cnn => Box::new(Cnn::new(root, self)),
            Arch::PreActResNet18 => Box::new(PreActResNet18::new(root, self)),
            Arch::Wrn28x10 => Box::new(WideResNet::new(root, self, 28)),
            Arch::Wrn34x10 => Box::new(WideResNet::new(root, self, 34)),
            Arch::ResNet18 => Box::new(ResNet18::new(root, self)),
            Arch::TorchScript => {
                return Err(CoreError::Config(
                    "a TorchScript model is loaded from its file (gfa_core::torchscript::load), \
                     not built from a spec"
                        .into(),
                ));
            }
        })
    }
}

/// `values` spread over `channels`: as they are when there is one per channel, repeated when
/// there is one value or all values are equal; `None` otherwise.
fn per_channel(values: &[f64], channels: i64) -> Option<Vec<f64>> {
    let c = channels.max(0) as usize;
    match values {
        v if v.len() == c => Some(v.to_vec()),
        [first, rest @ ..] if rest.iter().all(|x| x == first) => Some(vec![*first; c]),
        _ => None,
    }
}

/// One row of the model catalog (`gfa list models`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    pub name: &'static str,
    /// Tap names, `input` first.
    pub taps: Vec<String>,
    /// Trainable scalars at the default spec ([`ModelSpec::of`]).
    pub parameters: i64,
    pub description: &'static str,
}

/// Every architecture with its taps and parameter count at the default spec. The numbers come
/// from building each model on the CPU (WideResNet-34-10 alone allocates ~190 MB for a moment),
/// so they cannot drift from the code.
pub fn catalog() -> Vec<ModelInfo> {
    Arch::ALL
        .iter()
        .map(|&arch| {
            let model = Classifier::new(&ModelSpec::of(arch), Device::Cpu)
                .expect("default model specs are valid");
            ModelInfo {
                name: arch.name(),
                taps: model.tap_names(),
                parameters: model.num_parameters(),
                description: arch.description(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names_are_the_config_names() {
        for &arch in Arch::ALL {
            let json = serde_json::to_string(&arch).unwrap();
            assert_eq!(json, format!("\"{}\"", arch.name()));
            assert_eq!(serde_json::from_str::<Arch>(&json).unwrap(), arch);
            assert_eq!(arch.name().parse::<Arch>().unwrap(), arch);
        }
        let err = "resnet50".parse::<Arch>().unwrap_err().to_string();
        assert!(err.contains("resnet50") && err.contains("wrn_28_10"), "{err}");
    }

    /// `has_feature_taps` says what building the model shows: taps after `input`.
    #[test]
    fn feature_taps_are_the_taps_after_input() {
        for info in catalog() {
            let arch: Arch = info.name.parse().unwrap();
            assert_eq!(arch.has_feature_taps(), info.taps.len() > 1, "{arch}");
        }
        assert!(!Arch::TorchScript.has_feature_taps());
    }

    #[test]
    fn layout_is_read_but_never_written_nor_compared() {
        let spec: ModelSpec =
            serde_json::from_str(r#"{"arch": "cnn", "layout": "channels_last"}"#).unwrap();
        assert_eq!(spec.layout, Layout::ChannelsLast);
        let json = serde_json::to_string(&spec).unwrap();
        assert!(!json.contains("layout"), "{json}");
        assert_eq!(spec, ModelSpec::of(Arch::Cnn), "a layout does not make another model");
        assert_ne!(spec, ModelSpec { width: 0.5, ..spec.clone() }, "other keys still count");
        let err = serde_json::from_str::<ModelSpec>(r#"{"layout": "nhwc"}"#).unwrap_err();
        assert!(err.to_string().contains("channels_last"), "{err}");
    }

    #[test]
    fn width_scales_every_residual_network() {
        let count = |arch, width| {
            let spec = ModelSpec { width, ..ModelSpec::of(arch) };
            Classifier::new(&spec, Device::Cpu).unwrap().num_parameters()
        };
        for arch in [Arch::ResNet18, Arch::PreActResNet18, Arch::Wrn28x10, Arch::Wrn34x10] {
            let (small, smaller) = (count(arch, 0.0625), count(arch, 0.03125));
            // Conv weights dominate and scale with width², so halving width divides by ~4.
            let ratio = small as f64 / smaller as f64;
            assert!((3.0..4.5).contains(&ratio), "{arch}: {small} / {smaller}");
        }
    }
}
