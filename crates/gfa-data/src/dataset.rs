//! In-memory image datasets: `u8` NCHW storage, `f32` `[0, 1]` batches.
use tch::{Device, Kind, Tensor};

use crate::error::{DataError, Result};

/// A labelled image set held in memory.
///
/// # Shapes
/// `images`: `[N, C, H, W]` `u8` (`[N, 3, 32, 32]` for CIFAR-10); `labels`: `[N]` `i64` in
/// `0..classes.len()`.
#[derive(Debug)]
pub struct Dataset {
    pub images: Tensor,
    pub labels: Tensor,
    pub classes: Vec<String>,
}

/// The train and test splits of one dataset.
#[derive(Debug)]
pub struct Splits {
    pub train: Dataset,
    pub test: Dataset,
}

/// The value every pixel of `images` holds, when they all hold one (`None` when the images
/// differ, or there are none).
pub(crate) fn constant_pixel(images: &Tensor) -> Result<Option<u8>> {
    if images.numel() == 0 {
        return Ok(None);
    }
    let lo = images.f_min()?.f_int64_value(&[])?;
    let hi = images.f_max()?.f_int64_value(&[])?;
    Ok((lo == hi).then_some(lo as u8))
}

impl Dataset {
    /// A dataset from its parts, checking kinds and shapes (labels are not range-checked here:
    /// the readers do that where the bytes come in).
    pub fn new(images: Tensor, labels: Tensor, classes: Vec<String>) -> Result<Self> {
        let (xs, ys) = (images.size(), labels.size());
        if images.kind() != Kind::Uint8 || xs.len() != 4 {
            return Err(DataError::BadShape {
                what: "dataset images",
                expected: "u8 [N, C, H, W]".into(),
                got: format!("{:?} {xs:?}", images.kind()),
            });
        }
        if labels.kind() != Kind::Int64 || ys.len() != 1 || ys[0] != xs[0] {
            return Err(DataError::BadShape {
                what: "dataset labels",
                expected: format!("i64 [{}]", xs[0]),
                got: format!("{:?} {ys:?}", labels.kind()),
            });
        }
        Ok(Dataset { images, labels, classes })
    }

    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first `n` records (all of them when `n` exceeds the size).
    pub fn head(&self, n: usize) -> Dataset {
        let n = n.min(self.len()) as i64;
        Dataset {
            images: self.images.narrow(0, 0, n),
            labels: self.labels.narrow(0, 0, n),
            classes: self.classes.clone(),
        }
    }

    /// The records at `index` (an `i64` tensor of positions), in that order.
    pub fn select(&self, index: &Tensor) -> Dataset {
        Dataset {
            images: self.images.index_select(0, index),
            labels: self.labels.index_select(0, index),
            classes: self.classes.clone(),
        }
    }

    /// Number of records of each class, indexed by label.
    pub fn class_counts(&self) -> Vec<i64> {
        let counts = self.labels.bincount::<Tensor>(None, self.classes.len() as i64);
        Vec::<i64>::try_from(&counts).expect("bincount of i64 labels is an i64 vector")
    }

    /// Records `index` (an `i64` tensor of positions), images as `f32` in `[0, 1]` on `device`.
    ///
    /// # Shapes
    /// `index`: `[B]` → `x`: `[B, C, H, W]` `f32`, `y`: `[B]` `i64`.
    /// With the records on `device` ([`Self::to_device`]) and `index` there too, nothing is
    /// transferred.
    pub fn batch(&self, index: &Tensor, device: Device) -> (Tensor, Tensor) {
        let index = index.to_device(self.images.device());
        // Select and move as u8 (4× less traffic than f32), convert on the device.
        let x = self.images.index_select(0, &index).to_device(device).to_kind(Kind::Float) / 255.0;
        let y = self.labels.index_select(0, &index).to_device(device);
        (x, y)
    }

    /// The records on `device`, as stored (`u8` images: CIFAR-10's 50,000 training images are
    /// 154 MB), in two copies ([`crate::transfer::upload`]); the same records when they are
    /// there already.
    pub fn to_device(&self, device: Device) -> Dataset {
        let move_ = |t: &Tensor| {
            if t.device() == device {
                t.shallow_clone()
            } else {
                crate::transfer::upload(t, device)
            }
        };
        Dataset {
            images: move_(&self.images),
            labels: move_(&self.labels),
            classes: self.classes.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_rejects_wrong_kinds_and_lengths() {
        let x = Tensor::zeros([4, 3, 2, 2], (Kind::Uint8, Device::Cpu));
        let y = Tensor::zeros([4], (Kind::Int64, Device::Cpu));
        assert!(Dataset::new(x.shallow_clone(), y.shallow_clone(), vec![]).is_ok());
        let xf = x.to_kind(Kind::Float);
        assert!(matches!(
            Dataset::new(xf, y.shallow_clone(), vec![]),
            Err(DataError::BadShape { what: "dataset images", .. })
        ));
        let y3 = Tensor::zeros([3], (Kind::Int64, Device::Cpu));
        assert!(matches!(
            Dataset::new(x, y3, vec![]),
            Err(DataError::BadShape { what: "dataset labels", .. })
        ));
    }

    #[test]
    fn batch_scales_to_unit_interval_and_counts_classes() {
        let x = Tensor::from_slice(&[0u8, 255, 51, 102]).view([4, 1, 1, 1]);
        let y = Tensor::from_slice(&[1i64, 0, 1, 1]);
        let d = Dataset::new(x, y, vec!["a".into(), "b".into(), "c".into()]).unwrap();
        assert_eq!(d.class_counts(), [1, 3, 0]);
        let (xb, yb) = d.batch(&Tensor::from_slice(&[1i64, 2]), Device::Cpu);
        assert_eq!(xb.kind(), Kind::Float);
        assert_eq!(Vec::<f32>::try_from(&xb.flatten(0, -1)).unwrap(), [1.0, 0.2]);
        assert_eq!(Vec::<i64>::try_from(&yb).unwrap(), [0, 1]);
    }
}
