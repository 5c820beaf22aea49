//! Layers shared by every model, built so that their tensor names and initial values follow
//! PyTorch's `nn.Conv2d`, `nn.Linear` and `nn.BatchNorm2d` (tch's own defaults draw weights from
//! a bound √6 times wider and start conv biases at zero, so a PyTorch recipe would not carry over).
//!
//! tch's own `nn::batch_norm2d` stores `weight`, `bias`, `running_mean` and `running_var` but not
//! PyTorch's `num_batches_tracked` buffer, and initializes `weight` uniformly in `[0, 1)` where
//! PyTorch uses ones. [`BatchNorm2d`] keeps all five names (so a PyTorch `state_dict` loads with
//! `VarStore::load` and a gfa checkpoint loads with `load_state_dict(strict=True)`) and PyTorch's
//! initial values.
use tch::nn::{self, Init, ModuleT};
use tch::{Kind, Tensor};

/// `nn.BatchNorm2d(c)` with PyTorch's defaults (`eps = 1e-5`, `momentum = 0.1`, affine, tracked
/// running statistics).
#[derive(Debug)]
pub struct BatchNorm2d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    /// `Int64` scalar, as in PyTorch; counts train-mode forwards.
    pub num_batches_tracked: Tensor,
}

impl BatchNorm2d {
    const EPS: f64 = 1e-5;
    const MOMENTUM: f64 = 0.1;

    pub fn new(p: nn::Path, c: i64) -> Self {
        let nbt = Tensor::zeros([], (Kind::Int64, p.device()));
        Self {
            weight: p.var("weight", &[c], Init::Const(1.0)),
            bias: p.var("bias", &[c], Init::Const(0.0)),
            running_mean: p.zeros_no_train("running_mean", &[c]),
            running_var: p.ones_no_train("running_var", &[c]),
            num_batches_tracked: p.add("num_batches_tracked", nbt, false),
        }
    }
}

impl ModuleT for BatchNorm2d {
    /// Batch statistics (and a running-statistics update) when `train`, running statistics
    /// otherwise.
    ///
    /// # Shapes
    /// `[N, C, H, W]` → `[N, C, H, W]`.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        if train {
            tch::no_grad(|| {
                let _ = self.num_batches_tracked.shallow_clone().g_add_scalar_(1);
            });
        }
        Tensor::batch_norm(
            x,
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            Self::MOMENTUM,
            Self::EPS,
            true,
        )
    }
}

/// PyTorch's default init for conv and linear weights, `kaiming_uniform_(a = √5)`, which is
/// `U(-1/√fan_in, 1/√fan_in)`.
fn torch_default_init(fan_in: i64) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

/// How a bias-free convolution's weights are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvInit {
    /// PyTorch's `nn.Conv2d` default.
    Torch,
    /// `normal(0, √(2 / (k² · c_out)))`, the WideResNet/TRADES init.
    KaimingFanOut,
}

/// `nn.Conv2d(c_in, c_out, k, stride, padding = k / 2, bias = False)`.
pub fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, init: ConvInit) -> nn::Conv2D {
    let ws_init = match init {
        ConvInit::Torch => torch_default_init(c_in * k * k),
        ConvInit::KaimingFanOut => {
            Init::Randn { mean: 0.0, stdev: (2.0 / (k * k * c_out) as f64).sqrt() }
        }
    };
    let cfg = nn::ConvConfig { stride, padding: k / 2, bias: false, ws_init, ..Default::default() };
    nn::conv2d(p, c_in, c_out, k, cfg)
}

/// `nn.Conv2d(c_in, c_out, k, padding = k / 2)` (stride 1, with bias), PyTorch's default init for
/// weight and bias.
pub fn conv_biased(p: nn::Path, c_in: i64, c_out: i64, k: i64) -> nn::Conv2D {
    let init = torch_default_init(c_in * k * k);
    let cfg = nn::ConvConfig { padding: k / 2, ws_init: init, bs_init: init, ..Default::default() };
    nn::conv2d(p, c_in, c_out, k, cfg)
}

/// `nn.Linear(d_in, d_out)` with PyTorch's default init, or a zero bias (`zero_bias`, the
/// WideResNet/TRADES init).
pub fn linear(p: nn::Path, d_in: i64, d_out: i64, zero_bias: bool) -> nn::Linear {
    let init = torch_default_init(d_in);
    let bs_init = if zero_bias { Init::Const(0.0) } else { init };
    nn::linear(
        p,
        d_in,
        d_out,
        nn::LinearConfig { ws_init: init, bs_init: Some(bs_init), bias: true },
    )
}

/// Global average pooling; equals PyTorch's `F.avg_pool2d(out, 4)` (ResNets) and
/// `F.avg_pool2d(out, 8)` (WideResNet) on 32×32 inputs, where the last map is that size.
///
/// # Shapes
/// `[N, C, H, W]` → `[N, C]`.
pub fn global_avg_pool(x: &Tensor) -> Tensor {
    x.mean_dim(&[2i64, 3][..], false, x.kind())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn batch_norm_has_pytorch_names_and_counts_train_batches() {
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = BatchNorm2d::new(vs.root() / "bn", 3);
        let mut names: Vec<String> = vs.variables().into_keys().collect();
        names.sort();
        assert_eq!(
            names,
            ["bn.bias", "bn.num_batches_tracked", "bn.running_mean", "bn.running_var", "bn.weight"]
        );
        assert_eq!(vs.trainable_variables().len(), 2);
        let x = Tensor::randn([4, 3, 2, 2], (Kind::Float, Device::Cpu));
        let _ = bn.forward_t(&x, false);
        assert_eq!(bn.num_batches_tracked.int64_value(&[]), 0);
        let _ = bn.forward_t(&x, true);
        let _ = bn.forward_t(&x, true);
        assert_eq!(bn.num_batches_tracked.int64_value(&[]), 2);
        assert_eq!(bn.num_batches_tracked.kind(), Kind::Int64);
    }

    /// Every weight and bias of `cnn` and `mlp` lies in PyTorch's `U(-1/√fan_in, 1/√fan_in)` and
    /// fills most of it (tch's default bound is √6 times wider, its conv biases start at zero).
    #[test]
    fn cnn_and_mlp_start_from_pytorch_default_init() {
        use crate::models::{Arch, ModelSpec};
        for arch in [Arch::Cnn, Arch::Mlp] {
            tch::manual_seed(0);
            let spec = ModelSpec { width: 0.25, ..ModelSpec::of(arch) };
            let vs = nn::VarStore::new(Device::Cpu);
            let _model = spec.build(&vs.root()).unwrap();
            for (name, t) in vs.variables() {
                let fan_in = if t.dim() == 1 {
                    let w = vs.variables()[&name.replace(".bias", ".weight")].size();
                    w[1..].iter().product::<i64>()
                } else {
                    t.size()[1..].iter().product::<i64>()
                };
                let bound = 1.0 / (fan_in as f64).sqrt();
                let max = t.abs().max().double_value(&[]);
                assert!(max <= bound + 1e-7, "{arch:?} {name}: max |v| {max} > {bound}");
                assert!(max > 0.5 * bound, "{arch:?} {name}: max |v| {max} far below {bound}");
            }
        }
    }
}
