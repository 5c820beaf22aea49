//! Training augmentation (SPEC §4): random crop 32 with 4-pixel zero padding and horizontal
//! flip (torchvision `RandomCrop(32, padding=4)` + `RandomHorizontalFlip()`), seeded, batched on
//! the tensor with `gather`, no per-image tensor op.
//!
//! Kept in gfa-core until `gfa_data::AugmentConfig` replaces it: same TOML keys, same
//! `apply(&x, &mut rng) -> Result<Tensor>` signature, so the swap is the `use` in `train/mod.rs`.
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::{CoreError, Result};

/// The `[train.augment]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Zero padding before the random crop back to the input size; 0 disables cropping.
    pub crop_padding: i64,
    /// Random horizontal flip with probability 1/2.
    pub flip: bool,
}

impl Default for AugmentConfig {
    /// Padding 4 and flips: the CIFAR-10 standard (He et al. 2016) used by SPEC §4.
    fn default() -> Self {
        Self { crop_padding: 4, flip: true }
    }
}

impl AugmentConfig {
    /// No augmentation.
    pub fn none() -> Self {
        Self { crop_padding: 0, flip: false }
    }

    /// Augment a batch.
    ///
    /// # Shapes
    /// `x`: `[N, C, H, W]` → `[N, C, H, W]`.
    pub fn apply(&self, x: &Tensor, rng: &mut StdRng) -> Result<Tensor> {
        let (n, c, h, w) = x.size4()?;
        if self.crop_padding < 0 {
            return Err(CoreError::Config(format!(
                "train.augment.crop_padding must be ≥ 0, got {}",
                self.crop_padding
            )));
        }
        let device = x.device();
        let mut out = x.shallow_clone();
        let p = self.crop_padding;
        if p > 0 {
            let oy: Vec<i64> = (0..n).map(|_| rng.gen_range(0..=2 * p)).collect();
            let ox: Vec<i64> = (0..n).map(|_| rng.gen_range(0..=2 * p)).collect();
            let padded = out.constant_pad_nd([p, p, p, p]);
            let ar = |len| Tensor::arange(len, (Kind::Int64, device));
            let rows = Tensor::from_slice(&oy).to_device(device).view([n, 1]) + ar(h).view([1, h]);
            let rows = rows.view([n, 1, h, 1]).expand([n, c, h, w + 2 * p], false);
            let cropped = padded.gather(2, &rows, false);
            let cols = Tensor::from_slice(&ox).to_device(device).view([n, 1]) + ar(w).view([1, w]);
            let cols = cols.view([n, 1, 1, w]).expand([n, c, h, w], false);
            out = cropped.gather(3, &cols, false);
        }
        if self.flip {
            let flips: Vec<bool> = (0..n).map(|_| rng.gen_bool(0.5)).collect();
            let mask = Tensor::from_slice(&flips).to_device(device).view([n, 1, 1, 1]);
            out = out.flip([3]).where_self(&mask, &out);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn crop_is_a_shift_and_flip_mirrors() {
        let x = Tensor::arange(2 * 3 * 8 * 8, (Kind::Float, Device::Cpu)).view([2, 3, 8, 8]) + 1.0;
        let mut rng = crate::seed::rng_for(1, "augment");
        let cfg = AugmentConfig { crop_padding: 2, flip: false };
        let y = cfg.apply(&x, &mut rng).unwrap();
        assert_eq!(y.size(), x.size());
        // Every output pixel is either padding (0) or an input pixel of the same image.
        for i in 0..2 {
            let yi = y.get(i);
            let nz = yi.masked_select(&yi.ne(0.0));
            let xi = x.get(i);
            let found =
                nz.unsqueeze(1).eq_tensor(&xi.flatten(0, -1).unsqueeze(0)).any_dim(1, false);
            assert!(bool::try_from(found.all()).unwrap());
        }
        let flip = AugmentConfig { crop_padding: 0, flip: true };
        let z = flip.apply(&x, &mut crate::seed::rng_for(3, "augment")).unwrap();
        for i in 0..2 {
            let same = z.get(i).equal(&x.get(i));
            let mirrored = z.get(i).equal(&x.get(i).flip([2]));
            assert!(same || mirrored);
        }
        let a = cfg.apply(&x, &mut crate::seed::rng_for(5, "augment")).unwrap();
        let b = cfg.apply(&x, &mut crate::seed::rng_for(5, "augment")).unwrap();
        assert!(a.equal(&b), "same seed, same augmentation");
    }
}
