//! The standard CIFAR-10 training augmentation: random crop with zero padding, then random
//! horizontal flip, batched on the tensor.
//!
//! Semantics are those of torchvision's `RandomCrop(32, padding=4)` (constant zero fill, offset
//! drawn uniformly from `0..=2·padding` on each axis) followed by `RandomHorizontalFlip(p=0.5)`,
//! the recipe of He et al., "Deep Residual Learning for Image Recognition" (arXiv 1512.03385)
//! used by Madry et al. (arXiv 1706.06083) and most robustness work on CIFAR-10.
//!
//! The per-sample offsets and flips are drawn on the Rust side from a [`crate::SeededRng`], so
//! the result depends only on the seed, not on the device. The batch is padded once; the crop and the flip
//! are then one row gather and one column gather with per-sample index tensors (a flip is the
//! column index read backwards), so the output is an exact copy of input pixels or zeros.
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{DataError, Result};
use crate::rng::SeededRng;

/// Training augmentation settings (`[train.augment]` in an experiment TOML).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Zero padding on each side before the random crop back to the input size; 0 disables
    /// the crop.
    pub crop_padding: i64,
    /// Random horizontal flip with probability 0.5.
    pub flip: bool,
}

impl Default for AugmentConfig {
    /// `crop_padding = 4`, `flip = true`: torchvision `RandomCrop(32, padding=4)` +
    /// `RandomHorizontalFlip()`, the CIFAR-10 recipe of He et al. 2016 (arXiv 1512.03385).
    fn default() -> Self {
        AugmentConfig { crop_padding: 4, flip: true }
    }
}

/// The random choices for one batch: crop offsets into the padded image and flips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AugmentDraw {
    /// Row offset of each sample's crop, in `0..=2·crop_padding`.
    pub dy: Vec<i64>,
    /// Column offset of each sample's crop, in `0..=2·crop_padding`.
    pub dx: Vec<i64>,
    /// Whether each sample is flipped left–right.
    pub flip: Vec<bool>,
}

impl AugmentConfig {
    /// No augmentation at all.
    pub fn none() -> Self {
        AugmentConfig { crop_padding: 0, flip: false }
    }

    /// Checks `crop_padding >= 0`.
    pub fn validate(&self) -> Result<()> {
        if self.crop_padding < 0 {
            return Err(DataError::BadConfig {
                key: "augment.crop_padding",
                value: self.crop_padding.to_string(),
                reason: "padding is a pixel count, 0 or more (0 disables the crop)".into(),
            });
        }
        Ok(())
    }

    /// Whether [`apply`](Self::apply) returns its input unchanged.
    pub fn is_identity(&self) -> bool {
        self.crop_padding == 0 && !self.flip
    }

    /// Draws the choices for `n` samples: for each sample in turn its row offset, column offset
    /// (when cropping) and flip (when flipping).
    pub fn draw(&self, n: usize, rng: &mut SeededRng) -> AugmentDraw {
        let p = self.crop_padding.max(0);
        let mut d = AugmentDraw {
            dy: Vec::with_capacity(n),
            dx: Vec::with_capacity(n),
            flip: Vec::with_capacity(n),
        };
        for _ in 0..n {
            let (dy, dx) =
                if p > 0 { (rng.gen_range(0..=2 * p), rng.gen_range(0..=2 * p)) } else { (0, 0) };
            d.dy.push(dy);
            d.dx.push(dx);
            d.flip.push(self.flip && rng.gen_bool(0.5));
        }
        d
    }

    /// Augments a batch with choices drawn from `rng`.
    ///
    /// # Shapes
    /// `x`: `[N, C, H, W]` (any kind, any device) → same shape, kind and device.
    pub fn apply(&self, x: &Tensor, rng: &mut SeededRng) -> Result<Tensor> {
        self.validate()?;
        let n = batch_size(x)?;
        if self.is_identity() {
            return Ok(x.shallow_clone());
        }
        let draw = self.draw(n, rng);
        apply_draw(x, self.crop_padding, &draw)
    }
}

fn batch_size(x: &Tensor) -> Result<usize> {
    match x.size().as_slice() {
        [n, _, _, _] => Ok(*n as usize),
        s => Err(DataError::BadShape {
            what: "augmentation input",
            expected: "[N, C, H, W]".into(),
            got: format!("{s:?}"),
        }),
    }
}

/// Pads `x` by `padding` zeros on every side, then crops each sample at its `(dy, dx)` back to
/// `H × W`, reading columns backwards for flipped samples. The draw goes to `x`'s device in one
/// copy ([`AugmentDraw::packed`], then [`apply_packed`]).
///
/// # Shapes
/// `x`: `[N, C, H, W]` → `[N, C, H, W]`; `draw` holds `N` entries in each field.
pub fn apply_draw(x: &Tensor, padding: i64, draw: &AugmentDraw) -> Result<Tensor> {
    let n = batch_size(x)?;
    if draw.dy.len() != n || draw.dx.len() != n || draw.flip.len() != n {
        return Err(DataError::BadShape {
            what: "augmentation draw",
            expected: format!("{n} offsets and flips"),
            got: format!("{} / {} / {}", draw.dy.len(), draw.dx.len(), draw.flip.len()),
        });
    }
    apply_packed(x, padding, &crate::transfer::upload(&draw.packed(), x.device()))
}

impl AugmentDraw {
    /// The draw as one `i64` tensor on the host, rows `dy`, `dx`, `flip` (0 or 1): what
    /// [`apply_packed`] reads, sent to the device in one copy.
    ///
    /// # Shapes
    /// → `[3, N]`.
    pub fn packed(&self) -> Tensor {
        let flip = self.flip.iter().map(|&f| f as i64);
        let all: Vec<i64> = self.dy.iter().chain(&self.dx).copied().chain(flip).collect();
        Tensor::from_slice(&all).view([3, self.dy.len() as i64])
    }
}

/// [`apply_draw`] with the draw already packed ([`AugmentDraw::packed`]) on `x`'s device: no
/// transfer.
///
/// # Shapes
/// `x`: `[N, C, H, W]`, `packed`: `[3, N]` `i64` → `[N, C, H, W]`.
pub fn apply_packed(x: &Tensor, padding: i64, packed: &Tensor) -> Result<Tensor> {
    let n = batch_size(x)? as i64;
    if packed.size() != [3, n] || packed.kind() != Kind::Int64 {
        return Err(DataError::BadShape {
            what: "packed augmentation draw",
            expected: format!("i64 [3, {n}]"),
            got: format!("{:?} {:?}", packed.kind(), packed.size()),
        });
    }
    let size = x.size();
    let (c, h, w) = (size[1], size[2], size[3]);
    let opts = (Kind::Int64, x.device());
    let padded = x.f_constant_pad_nd([padding, padding, padding, padding])?;
    // rows[s, i] = dy[s] + i.
    let dy = packed.get(0).view([n, 1]);
    let rows = dy + Tensor::arange(h, opts).view([1, h]);
    // cols[s, j] = dx[s] + j, or dx[s] + (w - 1 - j) for a flipped sample.
    let dx = packed.get(1).view([n, 1]);
    let j = Tensor::arange(w, opts).view([1, w]);
    let flip = packed.get(2).view([n, 1]);
    let cols = dx + &j + &flip * (j.g_mul_scalar(-2) + (w - 1));
    let wp = w + 2 * padding;
    let rows = rows.view([n, 1, h, 1]).expand([n, c, h, wp], false);
    let cropped_rows = padded.f_gather(2, &rows, false)?;
    let cols = cols.view([n, 1, 1, w]).expand([n, c, h, w], false);
    Ok(cropped_rows.f_gather(3, &cols, false)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn serde_defaults_and_unknown_keys() {
        let c: AugmentConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, AugmentConfig { crop_padding: 4, flip: true });
        let c: AugmentConfig = serde_json::from_str(r#"{"flip": false}"#).unwrap();
        assert_eq!(c, AugmentConfig { crop_padding: 4, flip: false });
        assert!(serde_json::from_str::<AugmentConfig>(r#"{"crop_pading": 2}"#).is_err());
    }

    #[test]
    fn draw_ranges_and_determinism() {
        let cfg = AugmentConfig::default();
        let a = cfg.draw(500, &mut SeededRng::seed_from_u64(3));
        let b = cfg.draw(500, &mut SeededRng::seed_from_u64(3));
        assert_eq!(a, b);
        assert!(a.dy.iter().chain(&a.dx).all(|&o| (0..=8).contains(&o)));
        // Every offset value shows up, and both flip outcomes do.
        for o in 0..=8 {
            assert!(a.dy.contains(&o) && a.dx.contains(&o));
        }
        let flips = a.flip.iter().filter(|&&f| f).count();
        assert!((150..350).contains(&flips), "{flips} flips out of 500");
        let none = AugmentConfig { crop_padding: 0, flip: false }
            .draw(10, &mut SeededRng::seed_from_u64(3));
        assert!(none.dy.iter().chain(&none.dx).all(|&o| o == 0) && none.flip.iter().all(|f| !f));
    }

    #[test]
    fn negative_padding_is_rejected() {
        let x = Tensor::zeros([1, 1, 4, 4], (Kind::Float, tch::Device::Cpu));
        let cfg = AugmentConfig { crop_padding: -1, flip: false };
        assert!(matches!(
            cfg.apply(&x, &mut SeededRng::seed_from_u64(0)),
            Err(DataError::BadConfig { key: "augment.crop_padding", .. })
        ));
    }
}
