//! The [`Classifier`]: a normalization layer, a network, and the `VarStore` that owns both.
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor, nn};

use crate::Result;
use crate::models::{ModelSpec, Normalize};

/// Where a tap reads a block: after its activation (default) or before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TapPoint {
    #[default]
    PostActivation,
    PreActivation,
}

/// The activation of a tapped block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Relu,
    /// No activation (pre-activation ResNet blocks, stems without one).
    Identity,
}

/// What a forward does with the network's switches: its ReLU masks and max-pool indices.
#[derive(Debug, Default)]
pub enum Gates {
    /// Computed from the forward's own values (the network as it is).
    #[default]
    Free,
    /// Computed as usual and kept, in the order the forward meets them.
    Record(Vec<Tensor>),
    /// Taken from a recorded forward of the same network on the same batch: the forward is then
    /// the network with its switches frozen, which is smooth in the offsets (see
    /// [`crate::regularizer::Regularizer::finite_difference`]).
    Replay(std::vec::IntoIter<Tensor>),
}

impl Gates {
    /// A replay of the recorded switches (of none, when nothing was recorded: a forward that
    /// then meets a switch panics).
    pub fn replay(&self) -> Gates {
        let kept = match self {
            Gates::Record(kept) => kept.iter().map(Tensor::shallow_clone).collect(),
            _ => Vec::new(),
        };
        Gates::Replay(kept.into_iter())
    }
}

/// Collects the activations at a network's taps during one forward pass; on request it adds an
/// offset o_k where tap k is read and records or replays the network's switches ([`Gates`]).
/// The finite-difference GFA gradient differentiates the loss along such offsets.
#[derive(Debug)]
pub struct Taps {
    pub point: TapPoint,
    pub out: Vec<Tensor>,
    /// o_k by the tap's position in [`Classifier::tap_names`] (`input` is 0); `None`, or a list
    /// shorter than the taps, where nothing is added.
    pub offsets: Vec<Option<Tensor>>,
    pub gates: Gates,
}

impl Taps {
    /// Record a block whose output is `act(pre)` and return the tensor the network continues
    /// with: `act(pre)` when this tap has no offset; with offset o, `act(pre) + o` for a
    /// post-activation tap and `act(pre + o)` for a pre-activation one. Either way the recorded
    /// tap is the tensor the offset is added to, so the loss gradient at the tap equals its
    /// gradient with respect to the offset.
    pub fn record(&mut self, pre: &Tensor, act: Act) -> Tensor {
        let offset =
            self.offsets.get(self.out.len()).and_then(Option::as_ref).map(Tensor::shallow_clone);
        let (tap, post) = match (self.point, offset) {
            (TapPoint::PostActivation, offset) => {
                let post = self.activate(pre, act);
                let tap = post.shallow_clone();
                match offset {
                    Some(o) => (tap, post + o),
                    None => (tap, post),
                }
            }
            (TapPoint::PreActivation, Some(o)) => {
                (pre.shallow_clone(), self.activate(&(pre + o), act))
            }
            (TapPoint::PreActivation, None) => (pre.shallow_clone(), self.activate(pre, act)),
        };
        self.out.push(tap);
        post
    }

    fn activate(&mut self, z: &Tensor, act: Act) -> Tensor {
        match act {
            Act::Relu => self.relu(z),
            Act::Identity => z.shallow_clone(),
        }
    }

    /// ReLU under [`Self::gates`]: `relu(z)`, or `z` where the replayed mask is set and 0
    /// elsewhere.
    pub fn relu(&mut self, z: &Tensor) -> Tensor {
        match &mut self.gates {
            Gates::Free => z.relu(),
            Gates::Record(kept) => {
                kept.push(z.gt(0.0));
                z.relu()
            }
            Gates::Replay(kept) => z.where_scalarother(&next_gate(kept), 0.0),
        }
    }

    /// 2×2 max pooling with stride 2 under [`Self::gates`] (replayed: the recorded argmax of each
    /// window).
    ///
    /// # Shapes
    /// `[N, C, H, W]` → `[N, C, H / 2, W / 2]`.
    pub fn max_pool2(&mut self, h: &Tensor) -> Tensor {
        match &mut self.gates {
            Gates::Free => h.max_pool2d_default(2),
            Gates::Record(kept) => {
                let (out, index) = h.max_pool2d_with_indices([2, 2], [2, 2], [0, 0], [1, 1], false);
                kept.push(index);
                out
            }
            Gates::Replay(kept) => {
                let index = next_gate(kept);
                h.flatten(2, -1).gather(2, &index.flatten(2, -1), false).view_as(&index)
            }
        }
    }
}

fn next_gate(kept: &mut std::vec::IntoIter<Tensor>) -> Tensor {
    kept.next().expect("a replayed forward meets the switches of the recorded one, in order")
}

/// A block's output `act(pre)`, recorded (and shifted by its offset) at its tap when taps are
/// being collected.
pub fn record_tap(taps: &mut Option<&mut Taps>, pre: &Tensor, act: Act) -> Tensor {
    match (taps.as_deref_mut(), act) {
        (Some(t), _) => t.record(pre, act),
        (None, Act::Relu) => pre.relu(),
        (None, Act::Identity) => pre.shallow_clone(),
    }
}

/// A ReLU that is not at a tap (under the taps' [`Gates`] when taps are being collected).
pub fn relu(taps: &mut Option<&mut Taps>, z: &Tensor) -> Tensor {
    match taps.as_deref_mut() {
        Some(t) => t.relu(z),
        None => z.relu(),
    }
}

/// 2×2 max pooling with stride 2 (under the taps' [`Gates`] when taps are being collected).
pub fn max_pool2(taps: &mut Option<&mut Taps>, h: &Tensor) -> Tensor {
    match taps.as_deref_mut() {
        Some(t) => t.max_pool2(h),
        None => h.max_pool2d_default(2),
    }
}

/// A network after its normalization layer.
pub trait Network: std::fmt::Debug + Send {
    /// Logits of the normalized input `x`; pushes one tensor per tap onto `taps` when given,
    /// in the order of [`Network::tap_names`]. Every ReLU and max pool goes through
    /// [`record_tap`], [`relu`] or [`max_pool2`], so that the taps' offsets and [`Gates`] reach
    /// them (the finite-difference GFA gradient relies on it; `tests/it/models.rs` checks each
    /// architecture).
    ///
    /// # Shapes
    /// `x`: `[N, C, H, W]` (the spec's `input`) → `[N, num_classes]`.
    fn forward(&self, x: &Tensor, train: bool, taps: Option<&mut Taps>) -> Tensor;

    /// Names of the taps after `input`, e.g. `conv1`, …, `fc2`.
    fn tap_names(&self) -> Vec<String>;
}

/// Logits plus the activation at every tap (`taps[0]` is the normalized input `h_0`).
#[derive(Debug)]
pub struct TapForward {
    pub logits: Tensor,
    pub taps: Vec<Tensor>,
    /// The switches as the forward left them (recorded ones when asked to record).
    pub gates: Gates,
}

/// A model ready to train or attack. Inputs are `[0, 1]` pixels; the first layer normalizes.
#[derive(Debug)]
pub struct Classifier {
    pub vs: nn::VarStore,
    pub spec: ModelSpec,
    normalize: Option<Normalize>,
    net: Box<dyn Network>,
}

impl Classifier {
    /// Build a freshly initialized model on `device`. The parameters are drawn on the CPU from
    /// libtorch's CPU generator (call `seed::seed_all` first for reproducible weights) and then
    /// moved, so a seed gives the same initial weights on every device.
    pub fn new(spec: &ModelSpec, device: Device) -> Result<Self> {
        spec.validate()?;
        let mut model = Self::new_on_cpu(spec)?;
        if device != Device::Cpu {
            model.vs.set_device(device);
        }
        Ok(model)
    }

    fn new_on_cpu(spec: &ModelSpec) -> Result<Self> {
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let normalize = match spec.normalize {
            true => {
                let (mean, std) = spec.per_channel_mean_std()?;
                Some(Normalize::new(&root / "normalize", &mean, &std))
            }
            false => None,
        };
        let net = spec.build(&root)?;
        spec.layout.apply_to_weights(&vs);
        Ok(Self { vs, spec: spec.clone(), normalize, net })
    }

    /// A classifier around a network built elsewhere (a TorchScript module, see
    /// [`crate::torchscript`]) whose variables, if any, live outside `vs`; `spec.normalize`
    /// adds gfa's normalization layer under `vs` in front of it.
    pub fn with_network(vs: nn::VarStore, spec: &ModelSpec, net: Box<dyn Network>) -> Result<Self> {
        let normalize = match spec.normalize {
            true => {
                let (mean, std) = spec.per_channel_mean_std()?;
                Some(Normalize::new(&vs.root() / "normalize", &mean, &std))
            }
            false => None,
        };
        Ok(Self { vs, spec: spec.clone(), normalize, net })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    pub fn num_classes(&self) -> i64 {
        self.spec.num_classes
    }

    /// The network's input: `x` normalized, in the spec's [`crate::models::Layout`].
    fn normalized(&self, x: &Tensor) -> Tensor {
        let h = match &self.normalize {
            Some(n) => n.forward(x),
            None => x.shallow_clone(),
        };
        self.spec.layout.apply(&h)
    }

    /// Logits of `[0, 1]` pixels. `train` selects dropout/BatchNorm training behaviour.
    ///
    /// # Shapes
    /// `x`: `[N, C, H, W]` (the spec's `input`) → `[N, num_classes]`.
    pub fn logits(&self, x: &Tensor, train: bool) -> Tensor {
        self.net.forward(&self.normalized(x), train, None)
    }

    /// Logits and the activation at every tap, `input` first. The `input` tap is the normalized
    /// image; when nothing upstream of it requires a gradient it is made a leaf that does, so the
    /// loss can always be differentiated with respect to it.
    pub fn forward_taps(&self, x: &Tensor, train: bool, point: TapPoint) -> TapForward {
        self.forward_taps_with(x, train, point, Vec::new(), Gates::Free)
    }

    /// [`Self::forward_taps`] with `offsets[k]` (when `Some`) added where tap k is read, `input`
    /// included (see [`Taps::record`]), and the network's switches under `gates`; the recorded
    /// taps are the tensors before their offsets.
    ///
    /// # Shapes
    /// `x`: `[N, 3, 32, 32]`; `offsets[k]`: the shape of tap k.
    pub fn forward_taps_with(
        &self,
        x: &Tensor,
        train: bool,
        point: TapPoint,
        offsets: Vec<Option<Tensor>>,
        gates: Gates,
    ) -> TapForward {
        let mut h0 = self.normalized(x);
        if !h0.requires_grad() {
            h0 = h0.detach().set_requires_grad(true);
        }
        let input = match offsets.first().and_then(Option::as_ref) {
            Some(o) => &h0 + o,
            None => h0.shallow_clone(),
        };
        let mut taps = Taps { point, out: vec![h0], offsets, gates };
        let logits = self.net.forward(&input, train, Some(&mut taps));
        TapForward { logits, taps: taps.out, gates: taps.gates }
    }

    /// `input` followed by the network's own taps.
    pub fn tap_names(&self) -> Vec<String> {
        let mut names = vec!["input".to_string()];
        names.extend(self.net.tap_names());
        names
    }

    /// Number of trainable scalars.
    pub fn num_parameters(&self) -> i64 {
        self.vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }

    /// Stop gradients to the weights (evaluation and attacks).
    pub fn freeze(&mut self) {
        self.vs.freeze();
    }
}
