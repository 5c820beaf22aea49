//! The "GFA value" of a model: mean_i c_{k,i} per tap over a data split, the quantity of
//! Table 1 of "DeepDefense: Layer-Wise Gradient-Feature Alignment for Building Robust Neural
//! Networks" (arXiv 2511.13749); docs/method.md §2 and §9 (T1). Defined for every model, also models
//! not trained with GFA. Measured in eval mode, in batches; the per-sample cosine does not
//! depend on the batching because the loss is summed before differentiating (docs/method.md §2).
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::Result;
use crate::classifier::{Classifier, TapPoint};
use crate::losses::TaskLoss;
use crate::regularizer::cosine;

/// Mean cosine between the loss gradient and the feature at one tap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GfaValue {
    pub tap: String,
    pub mean_cos: f64,
    /// Mean of |c| (large |c| with mean_cos ≈ 0 means the alignment has both signs).
    pub mean_abs_cos: f64,
    /// Number of samples averaged.
    pub n: usize,
}

/// Options of [`gfa_value`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GfaValueConfig {
    pub batch_size: usize,
    pub task_loss: TaskLoss,
    pub tap: TapPoint,
    pub eps: f64,
}

impl Default for GfaValueConfig {
    /// Batch 256, cross-entropy, post-activation taps, ε = 1e-8 (as the regularizer).
    fn default() -> Self {
        Self { batch_size: 256, task_loss: TaskLoss::Ce, tap: TapPoint::PostActivation, eps: 1e-8 }
    }
}

/// GFA value of every tap of `model` on `data` (eval mode; the weights are not changed and no
/// parameter gradient is accumulated).
pub fn gfa_value(
    model: &Classifier,
    data: &gfa_data::Dataset,
    cfg: &GfaValueConfig,
) -> Result<Vec<GfaValue>> {
    if cfg.batch_size == 0 {
        return Err(crate::CoreError::Config("gfa_value.batch_size must be at least 1".into()));
    }
    let names = model.tap_names();
    let device = model.device();
    let n = data.len();
    let mut sum = Tensor::zeros([names.len() as i64], (Kind::Double, device));
    let mut sum_abs = sum.zeros_like();
    let mut start = 0;
    while start < n {
        let len = cfg.batch_size.min(n - start);
        let index = Tensor::arange_start(
            start as i64,
            (start + len) as i64,
            (Kind::Int64, tch::Device::Cpu),
        );
        let (x, y) = data.batch(&index, device);
        let fwd = model.forward_taps(&x, false, cfg.tap);
        let loss = cfg.task_loss.sum(&fwd.logits, &y);
        // `run_backward` only returns the tap gradients: parameter `.grad`s stay untouched.
        let grads = Tensor::run_backward(&[loss], &fwd.taps, false, false);
        let c: Vec<Tensor> = fwd
            .taps
            .iter()
            .zip(&grads)
            .map(|(h, g)| cosine(g, h, cfg.eps).to_kind(Kind::Double))
            .collect();
        let c = Tensor::stack(&c, 0); // [taps, len]
        sum += c.sum_dim_intlist(1, false, Kind::Double);
        sum_abs += c.abs().sum_dim_intlist(1, false, Kind::Double);
        start += len;
    }
    let mean = Vec::<f64>::try_from(sum / n.max(1) as f64)?;
    let mean_abs = Vec::<f64>::try_from(sum_abs / n.max(1) as f64)?;
    Ok(names
        .into_iter()
        .zip(mean.into_iter().zip(mean_abs))
        .map(|(tap, (mean_cos, mean_abs_cos))| GfaValue { tap, mean_cos, mean_abs_cos, n })
        .collect())
}
