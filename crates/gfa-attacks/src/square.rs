//! Square Attack: Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient
//! black-box adversarial attack via random search" (ECCV 2020, arXiv 1912.00049).
//!
//! Score-based: only `model.logits` is called, never a gradient. Semantics follow auto-attack
//! `autoattack/square.py` (docs/attacks.md §3.6): margin loss `z_y - max_{j != y} z_j`; Linf starts
//! from vertical stripes of ±eps and changes one square window per iteration (the same window
//! and channel signs for the whole batch, the last window position never drawn); L2 starts from
//! a grid of "eta" ring patterns and moves mass between two windows; a candidate is accepted when
//! its loss is lower or it is misclassified; points stop querying once fooled and each point's
//! queries are counted. Randomness comes from the passed `SeededRng`.
//!
//! Defaults: `reference` = Square inside AutoAttack standard (`n_queries=5000`, `p_init=0.8`,
//! `n_restarts=1`, `resc_schedule=False`); `torchattacks` 3.5.1 `Square` keeps
//! `resc_schedule=True` (the p schedule runs over 10000 virtual iterations scaled to n_queries).
use gfa_core::Classifier;
use gfa_core::seed::SeededRng;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::attack::{Attack, describe, perturb_via_run};
use crate::preset::{Configured, Preset};
use crate::repeated::{indices, run_restarts};
use crate::threat::{per_sample, per_sample_norm, uniform};
use crate::trace::Trace;
use crate::{AttackError, Norm, Result, loss};

/// Square settings. `Default` is the reference Linf preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SquareConfig {
    pub norm: Norm,
    pub preset: Preset,
    /// Queries per restart (the initial point costs one).
    pub n_queries: usize,
    /// Initial fraction of pixels in the square window.
    pub p_init: f64,
    pub n_restarts: usize,
    /// Stretch the p schedule (written for 10000 iterations) to `n_queries`.
    pub resc_schedule: bool,
}

impl Default for SquareConfig {
    /// auto-attack standard's Square: n_queries=5000, p_init=0.8, n_restarts=1,
    /// resc_schedule=False (`autoattack.py`).
    fn default() -> Self {
        Self::preset_for(Preset::Reference, Norm::Linf)
    }
}

impl Configured for SquareConfig {
    fn preset_for(preset: Preset, norm: Norm) -> Self {
        Self {
            norm,
            preset,
            n_queries: 5000,
            p_init: 0.8,
            n_restarts: 1,
            resc_schedule: preset == Preset::Torchattacks,
        }
    }
    fn norms() -> &'static [Norm] {
        &[Norm::Linf, Norm::L2]
    }
}

#[derive(Debug, Clone)]
pub struct Square {
    pub config: SquareConfig,
}

impl Square {
    pub fn new(config: SquareConfig) -> Result<Self> {
        if !SquareConfig::norms().contains(&config.norm) {
            return Err(AttackError::UnsupportedNorm {
                attack: "square".into(),
                norm: config.norm.to_string(),
            });
        }
        if config.n_restarts == 0 || !(config.p_init > 0.0 && config.p_init <= 1.0) {
            return Err(AttackError::Config(
                "square: n_restarts must be >= 1 and p_init in (0, 1]".into(),
            ));
        }
        Ok(Self { config })
    }

    /// Fraction of pixels changed at iteration `it` (auto-attack `p_selection`).
    pub fn p_selection(&self, it: usize) -> f64 {
        let it = if self.config.resc_schedule {
            (it as f64 / self.config.n_queries as f64 * 10000.0) as usize
        } else {
            it
        };
        let div = match it {
            0..=10 => 1.0,
            11..=50 => 2.0,
            51..=200 => 4.0,
            201..=500 => 8.0,
            501..=1000 => 16.0,
            1001..=2000 => 32.0,
            2001..=4000 => 64.0,
            4001..=6000 => 128.0,
            6001..=8000 => 256.0,
            _ => 512.0,
        };
        self.config.p_init / div
    }

    fn single(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        eps: f64,
        rng: &mut SeededRng,
        trace: Option<&mut Trace>,
    ) -> Result<(Tensor, Tensor)> {
        tch::no_grad(|| match self.config.norm {
            Norm::L2 => self.single_l2(model, x, y, eps, rng, trace),
            _ => self.single_linf(model, x, y, eps, rng, trace),
        })
    }

    fn single_linf(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        eps: f64,
        rng: &mut SeededRng,
        mut trace: Option<&mut Trace>,
    ) -> Result<(Tensor, Tensor)> {
        let size = x.size();
        let (n, c, h, w) = dims(&size)?;
        let dev = x.device();
        let init = (x + random_sign(&[n, c, 1, w], rng, x) * eps).clamp(0.0, 1.0);
        let mut best = Best::start(model, init, y);
        best.record(trace.as_deref_mut(), None, None);
        let mut queries = Tensor::ones([n], (Kind::Int64, dev));
        for i in 0..self.config.n_queries {
            let idx = indices(&best.margin.gt(0.0));
            if idx.numel() == 0 {
                break;
            }
            let (xc, xbc, yc) =
                (x.index_select(0, &idx), best.x.index_select(0, &idx), y.index_select(0, &idx));
            let p = self.p_selection(i);
            let s = (((p * (h * w) as f64).sqrt().round() as i64).max(1)).min(h.min(w));
            let (vh, vw) = (rand_below(h - s, rng), rand_below(w - s, rng));
            let window = window_mask(h, w, vh, vw, s, x);
            let signs = random_sign(&[1, c, 1, 1], rng, x) * (2.0 * eps);
            let x_new =
                (&xbc + window * signs).maximum(&(&xc - eps)).minimum(&(&xc + eps)).clamp(0.0, 1.0);
            let margin = loss::cw_margin(&model.logits(&x_new, false), &yc);
            best.accept(&idx, &x_new, &xbc, &margin);
            best.record(trace.as_deref_mut(), Some(&idx), Some(&margin));
            queries =
                queries.index_add(0, &idx, &Tensor::ones([idx.numel() as i64], (Kind::Int64, dev)));
        }
        Ok((best.x, queries))
    }

    fn single_l2(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        eps: f64,
        rng: &mut SeededRng,
        mut trace: Option<&mut Trace>,
    ) -> Result<(Tensor, Tensor)> {
        let size = x.size();
        let (n, c, h, w) = dims(&size)?;
        let dev = x.device();
        if h < 5 || w < 5 {
            return Err(AttackError::Config("square (L2) needs images of at least 5x5".into()));
        }
        let delta_init = x.zeros_like();
        let s0 = h / 5;
        let sp_init = (h - s0 * 5) / 2;
        let mut vh = sp_init;
        for _ in 0..h / s0 {
            let mut vw = sp_init;
            for _ in 0..w / s0 {
                if vh + s0 <= h && vw + s0 <= w {
                    let e = eta(s0, rng, x.kind()).to_device(dev).view([1, 1, s0, s0]);
                    let add = e * random_sign(&[n, c, 1, 1], rng, x);
                    let mut win = delta_init.narrow(2, vh, s0).narrow(3, vw, s0);
                    win += add;
                }
                vw += s0;
            }
            vh += s0;
        }
        let init = (x + unit_l2(&delta_init) * eps).clamp(0.0, 1.0);
        let mut best = Best::start(model, init, y);
        best.record(trace.as_deref_mut(), None, None);
        let mut queries = Tensor::ones([n], (Kind::Int64, dev));
        for i in 0..self.config.n_queries {
            let idx = indices(&best.margin.gt(0.0));
            if idx.numel() == 0 {
                break;
            }
            let m = idx.numel() as i64;
            let (xc, xbc, yc) =
                (x.index_select(0, &idx), best.x.index_select(0, &idx), y.index_select(0, &idx));
            let delta = &xbc - &xc;
            let p = self.p_selection(i);
            let mut s = ((p * (h * w) as f64).sqrt().round() as i64).max(3);
            if s % 2 == 0 {
                s += 1;
            }
            let s = s.min(h.min(w));
            let (vh, vw) = (rand_below(h - s, rng), rand_below(w - s, rng));
            let (vh2, vw2) = (rand_below(h - s, rng), rand_below(w - s, rng));
            let mask1 = window_mask(h, w, vh, vw, s, x);
            let mask2 = window_mask(h, w, vh2, vw2, s, x);
            let win1 = delta.narrow(2, vh, s).narrow(3, vw, s);
            let norm_win1 =
                win1.square().sum_dim_intlist(&[-2i64, -1][..], true, win1.kind()).sqrt();
            let norm_image = per_sample(&per_sample_norm(&delta, Norm::L2), &delta);
            // Per channel, as auto-attack's `norms_windows` (`[m, c, 1, 1]`): each channel's new
            // window gets that channel's share of the two windows' energy.
            let in_windows = &delta * mask1.maximum(&mask2);
            let norm_windows =
                in_windows.square().sum_dim_intlist(&[-2i64, -1][..], true, delta.kind()).sqrt();
            let e = eta(s, rng, x.kind()).to_device(dev).view([1, 1, s, s]);
            let mut new = e * random_sign(&[m, c, 1, 1], rng, x);
            new += &win1 / (norm_win1 + 1e-12);
            let new_norm = new.square().sum_dim_intlist(&[-2i64, -1][..], true, new.kind()).sqrt();
            let budget = ((eps * eps - norm_image.square()).clamp_min(0.0) / c as f64
                + norm_windows.square())
            .sqrt();
            let new = new / (new_norm + 1e-12) * budget;
            let _ = delta.narrow(2, vh2, s).narrow(3, vw2, s).fill_(0.0);
            delta.narrow(2, vh, s).narrow(3, vw, s).copy_(&new);
            let x_new = (&xc + unit_l2(&delta) * eps).clamp(0.0, 1.0);
            let margin = loss::cw_margin(&model.logits(&x_new, false), &yc);
            best.accept(&idx, &x_new, &xbc, &margin);
            best.record(trace.as_deref_mut(), Some(&idx), Some(&margin));
            queries = queries.index_add(0, &idx, &Tensor::ones([m], (Kind::Int64, dev)));
        }
        Ok((best.x, queries))
    }
}

/// The search state per point: the best iterate, its margin and its loss (untargeted Square
/// minimizes the CW margin, so the loss is the margin; auto-attack keeps both).
struct Best {
    x: Tensor,
    margin: Tensor,
    loss: Tensor,
}

impl Best {
    fn start(model: &Classifier, x: Tensor, y: &Tensor) -> Self {
        let margin = loss::cw_margin(&model.logits(&x, false), y);
        Best { loss: margin.copy(), margin, x }
    }

    /// Keep the candidates `x_new` of the points `idx` (current best `x_cur`) where their loss
    /// is lower or they are misclassified.
    fn accept(&mut self, idx: &Tensor, x_new: &Tensor, x_cur: &Tensor, margin: &Tensor) {
        let lc = self.loss.index_select(0, idx);
        let mc = self.margin.index_select(0, idx);
        let improved = margin.lt_tensor(&lc);
        self.loss = self.loss.index_copy(0, idx, &margin.where_self(&improved, &lc));
        let improved = improved.logical_or(&margin.le(0.0));
        self.margin = self.margin.index_copy(0, idx, &margin.where_self(&improved, &mc));
        let keep = x_new.where_self(&per_sample(&improved, x_new), x_cur);
        self.x = self.x.index_copy(0, idx, &keep);
    }

    /// Trace one query of the points `idx` (all at the start): the negated best loss (Square
    /// lowers it) and whether the query's candidate (`margin`; the start's own) fooled the model.
    fn record(&self, trace: Option<&mut Trace>, idx: Option<&Tensor>, margin: Option<&Tensor>) {
        let Some(t) = trace else { return };
        match (idx, margin) {
            (Some(idx), Some(m)) => t.record_at(idx, &-self.loss.index_select(0, idx), &m.le(0.0)),
            _ => t.record(&-&self.loss, &self.margin.le(0.0)),
        }
    }
}

fn dims(size: &[i64]) -> Result<(i64, i64, i64, i64)> {
    match size {
        [n, c, h, w] => Ok((*n, *c, *h, *w)),
        _ => Err(AttackError::ShapeMismatch {
            what: "x (square)".into(),
            expected: "[N, C, H, W]".into(),
            got: format!("{size:?}"),
        }),
    }
}

/// ±1 with equal probability (auto-attack `random_choice`).
fn random_sign(shape: &[i64], rng: &mut SeededRng, like: &Tensor) -> Tensor {
    (uniform(shape, rng, like.device()) * 2.0 - 1.0).sign()
}

/// `floor(k * U[0, 1))`: an integer in `[0, k)` (0 when `k <= 0`), as auto-attack's `random_int`.
fn rand_below(k: i64, rng: &mut SeededRng) -> i64 {
    if k <= 0 { 0 } else { ((k as f64) * rng.r#gen::<f64>()) as i64 }
}

/// A `[1, 1, h, w]` mask with ones in the `s`×`s` window at `(vh, vw)`.
fn window_mask(h: i64, w: i64, vh: i64, vw: i64, s: i64, like: &Tensor) -> Tensor {
    let m = Tensor::zeros([1, 1, h, w], (like.kind(), like.device()));
    let _ = m.narrow(2, vh, s).narrow(3, vw, s).fill_(1.0);
    m
}

fn unit_l2(v: &Tensor) -> Tensor {
    v / per_sample(&(per_sample_norm(v, Norm::L2) + 1e-12), v)
}

/// Nested rectangles with weights `1/(r+1)^2`, unit L2 norm (auto-attack `eta_rectangles`).
fn eta_rectangles(x: i64, y: i64) -> Vec<f64> {
    let mut d = vec![0f64; (x * y) as usize];
    let (xc, yc) = (x / 2 + 1, y / 2 + 1);
    let (mut c0, mut c1) = (xc - 1, yc - 1);
    for r in 0..xc.max(yc) {
        let v = 1.0 / ((r + 1) as f64).powi(2);
        for i in c0.max(0)..(c0 + 2 * r + 1).min(x) {
            for j in c1.max(0)..(c1 + 2 * r + 1).min(y) {
                d[(i * y + j) as usize] += v;
            }
        }
        c0 -= 1;
        c1 -= 1;
    }
    let n = d.iter().map(|v| v * v).sum::<f64>().sqrt();
    d.iter().map(|v| v / n).collect()
}

/// The `s`×`s` L2 pattern: rectangles of opposite signs in the two halves, randomly transposed,
/// computed in float64 and given in `kind` (the attacked points' dtype).
fn eta(s: i64, rng: &mut SeededRng, kind: Kind) -> Tensor {
    let top = eta_rectangles(s / 2, s);
    let bottom: Vec<f64> = eta_rectangles(s - s / 2, s).into_iter().map(|v| -v).collect();
    let mut all = top;
    all.extend(bottom);
    let t = Tensor::from_slice(&all).view([s, s]);
    let t = &t / t.square().sum(Kind::Double).sqrt();
    let t = if rng.r#gen::<f32>() > 0.5 { t.transpose(0, 1).contiguous() } else { t };
    t.to_kind(kind)
}

impl Attack for Square {
    describe!(
        name: |_| "square",
        family: FixedBudget,
        norm: |a| a.config.norm,
    );
    perturb_via_run!();
}

impl Square {
    /// `perturb` with an optional trace.
    fn run(
        &self,
        model: &Classifier,
        x: &Tensor,
        y: &Tensor,
        eps: f64,
        rng: &mut SeededRng,
        trace: Option<&mut Trace>,
    ) -> Result<(Tensor, Tensor)> {
        run_restarts(model, x, y, self.config.n_restarts, rng, trace, |xs, ys, r, t| {
            self.single(model, xs, ys, eps, r, t)
        })
    }
}

impl crate::facts::Costed for SquareConfig {
    const COST_KEY: Option<&'static str> = Some("n_queries");
    /// One forward pass per query.
    fn cost_per_point(&self) -> f64 {
        (self.n_queries * self.n_restarts.max(1)) as f64 * crate::facts::FORWARD_COST
    }
    /// A point stops querying once fooled.
    fn point_cost(&self) -> crate::facts::PointCost {
        let one_run = self.n_queries as f64 * crate::facts::FORWARD_COST;
        crate::facts::PointCost::stopping(one_run, self.cost_per_point())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sides_follow_the_auto_attack_schedule() {
        // docs/attacks.md §3.6: Linf side s on 32x32 with p_init 0.8, resc_schedule=False.
        let sq = Square::new(SquareConfig::default()).unwrap();
        let side = |i| ((sq.p_selection(i) * 1024.0).sqrt().round() as i64).max(1);
        let want =
            [(0, 29), (11, 20), (51, 14), (201, 10), (501, 7), (1001, 5), (2001, 4), (4001, 3)];
        for (i, s) in want {
            assert_eq!(side(i), s, "iteration {i}");
        }
        // torchattacks' rescaled schedule runs twice as fast at 5000 queries.
        let tq = Square::new(SquareConfig::preset_for(Preset::Torchattacks, Norm::Linf)).unwrap();
        assert_eq!(tq.p_selection(4999), 0.8 / 512.0);
        assert_eq!(sq.p_selection(4999), 0.8 / 128.0);
    }

    #[test]
    fn eta_has_unit_norm_and_opposite_halves() {
        let mut rng = rand::SeedableRng::seed_from_u64(1);
        // In float64: a sum of 25 squares of a normalized pattern, 1 up to ~1e-15.
        let e = eta(5, &mut rng, Kind::Double);
        assert!((e.square().sum(Kind::Double).double_value(&[]) - 1.0).abs() < 1e-12);
        let total = e.sum(Kind::Double).double_value(&[]);
        assert!(total.abs() < 0.5, "halves should roughly cancel: {total}");
    }
}
