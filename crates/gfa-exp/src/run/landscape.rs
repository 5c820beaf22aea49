//! The loss landscape of a trained model (`gfa landscape`, and `gfa run` with a `[landscape]`
//! section): the loss over a plane of input perturbations around each point.

use gfa_core::Classifier;
use tch::{Device, Tensor};

use crate::results::records::{LandscapeRow, RunKey};

/// The grid of a loss landscape: α, β over [-radius, radius] in `steps` points each; `seed`
/// draws the tangential direction.
#[derive(Debug, Clone, Copy)]
pub struct Landscape {
    pub radius: f64,
    pub steps: usize,
    pub batch_size: usize,
    pub seed: u64,
}

/// The `landscape.csv` rows of `model` on `(x, y)` (`gfa landscape`, and `gfa run` with a
/// `[landscape]` section): the mean loss at each grid point, α outer, β inner.
pub fn landscape_rows(
    model: &Classifier,
    (x, y): (&Tensor, &Tensor),
    grid: &Landscape,
    key: &RunKey,
    device: Device,
) -> Vec<LandscapeRow> {
    let n = x.size()[0] as usize;
    let (x, y) = (x.to_device(device), y.to_device(device));
    // Radial: the sign of the input gradient of the summed loss.
    let xg = x.detach().set_requires_grad(true);
    let loss = model.logits(&xg, false).cross_entropy_loss::<Tensor>(
        &y,
        None,
        tch::Reduction::Sum,
        -100,
        0.0,
    );
    let g = Tensor::run_backward(&[loss], &[&xg], false, false).remove(0);
    let u_r = g.sign();
    // Tangential: seeded Rademacher, orthogonalized against u_r per point.
    let mut rng = gfa_core::seed::rng_for(grid.seed, "landscape/tangential");
    let numel = x.numel();
    let signs: Vec<f32> =
        (0..numel).map(|_| if rand::Rng::r#gen::<bool>(&mut rng) { 1.0 } else { -1.0 }).collect();
    let r = Tensor::from_slice(&signs).reshape(x.size()).to_device(device);
    let flat = |t: &Tensor| t.reshape([n as i64, -1]);
    let dims: &[i64] = &[1];
    let rr = flat(&u_r).square().sum_dim_intlist(dims, true, tch::Kind::Float).clamp_min(1e-12);
    let proj = (flat(&r) * flat(&u_r)).sum_dim_intlist(dims, true, tch::Kind::Float) / &rr;
    let t = flat(&r) - &proj * flat(&u_r);
    let tn = t.square().sum_dim_intlist(dims, true, tch::Kind::Float).sqrt().clamp_min(1e-12);
    let u_t = (t / tn * rr.sqrt()).reshape(x.size());

    let k = grid.steps as f64 - 1.0;
    let r = grid.radius;
    let coords: Vec<f64> = (0..grid.steps).map(|i| -r + 2.0 * r * i as f64 / k).collect();
    let mut rows = Vec::with_capacity(grid.steps * grid.steps);
    for &alpha in &coords {
        for &beta in &coords {
            let xp = (&x + &u_r * alpha + &u_t * beta).clamp(0.0, 1.0);
            let loss = mean_loss(model, &xp, &y, grid.batch_size.max(1) as i64);
            rows.push(LandscapeRow { alpha, beta, loss, ..LandscapeRow::keyed(key) });
        }
    }
    rows
}

/// Mean cross-entropy of `model` on `x` (eval mode, no gradient), in batches.
fn mean_loss(model: &Classifier, x: &Tensor, y: &Tensor, batch: i64) -> f64 {
    tch::no_grad(|| {
        let n = x.size()[0];
        let mut sum = 0.0;
        let mut i = 0;
        while i < n {
            let len = batch.min(n - i);
            let logits = model.logits(&x.narrow(0, i, len), false);
            let l = logits.cross_entropy_for_logits(&y.narrow(0, i, len));
            sum += l.double_value(&[]) * len as f64;
            i += len;
        }
        sum / n.max(1) as f64
    })
}
