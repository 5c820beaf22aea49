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

/// Collects the activations at a network's taps during one forward pass.
#[derive(Debug)]
pub struct Taps {
    pub point: TapPoint,
    pub out: Vec<Tensor>,
}

impl Taps {
    /// Record one block, given its pre- and post-activation tensors.
    pub fn record(&mut self, pre: &Tensor, post: &Tensor) {
        self.out.push(match self.point {
            TapPoint::PostActivation => post.shallow_clone(),
            TapPoint::PreActivation => pre.shallow_clone(),
        });
    }
}

/// Record a block when taps are being collected.
pub fn record_tap(taps: &mut Option<&mut Taps>, pre: &Tensor, post: &Tensor) {
    if let Some(t) = taps.as_deref_mut() {
        t.record(pre, post);
    }
}

/// A network after its normalization layer.
pub trait Network: std::fmt::Debug + Send {
    /// Logits of the normalized input `x`; pushes one tensor per tap onto `taps` when given,
    /// in the order of [`Network::tap_names`].
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
    /// Build a freshly initialized model on `device` (parameters drawn from libtorch's generator,
    /// so call `seed::seed_all` first for reproducible weights).
    pub fn new(spec: &ModelSpec, device: Device) -> Result<Self> {
        spec.validate()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let normalize = match spec.normalize {
            true => {
                let (mean, std) = spec.per_channel_mean_std()?;
                Some(Normalize::new(&root / "normalize", &mean, &std))
            }
            false => None,
        };
        let net = spec.build(&root)?;
        Ok(Self { vs, spec: spec.clone(), normalize, net })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    pub fn num_classes(&self) -> i64 {
        self.spec.num_classes
    }

    fn normalized(&self, x: &Tensor) -> Tensor {
        match &self.normalize {
            Some(n) => n.forward(x),
            None => x.shallow_clone(),
        }
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
        let mut h0 = self.normalized(x);
        if !h0.requires_grad() {
            h0 = h0.detach().set_requires_grad(true);
        }
        let mut taps = Taps { point, out: vec![h0.shallow_clone()] };
        let logits = self.net.forward(&h0, train, Some(&mut taps));
        TapForward { logits, taps: taps.out }
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
