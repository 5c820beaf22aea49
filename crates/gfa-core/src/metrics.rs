//! Evaluation helpers shared by the trainer and the experiments: batched clean accuracy and
//! predictions in eval mode.
use tch::{Kind, Tensor};

use crate::classifier::Classifier;
use crate::{CoreError, Result};

/// Predicted classes of every record of `data`, in order, eval mode, no gradients.
///
/// # Shapes
/// → `[N]` int64 on the model's device.
pub fn predictions(
    model: &Classifier,
    data: &gfa_data::Dataset,
    batch_size: usize,
) -> Result<Tensor> {
    if batch_size == 0 {
        return Err(CoreError::Config("evaluation batch_size must be at least 1".into()));
    }
    let device = model.device();
    let n = data.len();
    let mut out = Vec::new();
    let mut start = 0;
    tch::no_grad(|| {
        while start < n {
            let len = batch_size.min(n - start);
            let index = Tensor::arange_start(
                start as i64,
                (start + len) as i64,
                (Kind::Int64, tch::Device::Cpu),
            );
            let (x, _) = data.batch(&index, device);
            out.push(model.logits(&x, false).argmax(-1, false));
            start += len;
        }
    });
    Ok(if out.is_empty() {
        Tensor::zeros([0], (Kind::Int64, device))
    } else {
        Tensor::cat(&out, 0)
    })
}

/// Fraction of `data` classified correctly (eval mode). `NaN` for an empty set.
pub fn accuracy(model: &Classifier, data: &gfa_data::Dataset, batch_size: usize) -> Result<f64> {
    if data.is_empty() {
        return Ok(f64::NAN);
    }
    let pred = predictions(model, data, batch_size)?;
    let labels = data.labels.to_device(pred.device());
    Ok(pred.eq_tensor(&labels).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]))
}

/// Chance accuracy of a `classes`-way problem.
pub fn chance(classes: i64) -> f64 {
    1.0 / classes.max(1) as f64
}
