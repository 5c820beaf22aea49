//! In-memory image datasets.
use tch::{Device, Kind, Tensor};

/// A labelled image set held in memory.
///
/// # Shapes
/// `images`: `[N, 3, 32, 32]` `u8`; `labels`: `[N]` `i64`.
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

impl Dataset {
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

    /// Records `index` (an `i64` tensor of positions), images as `f32` in `[0, 1]` on `device`.
    pub fn batch(&self, index: &Tensor, device: Device) -> (Tensor, Tensor) {
        let x = self.images.index_select(0, index).to_device(device).to_kind(Kind::Float) / 255.0;
        let y = self.labels.index_select(0, index).to_device(device);
        (x, y)
    }
}
