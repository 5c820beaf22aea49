//! Mini-batches over a [`Dataset`]: seeded shuffled epochs for training, sequential order for
//! evaluation.
//!
//! The permutation is drawn on the Rust side from a [`SeededRng`] (Fisher–Yates via
//! `SliceRandom::shuffle`), so the order depends only on the seed, never on the device or on
//! libtorch's global generator.
use rand::SeedableRng;
use rand::seq::SliceRandom;
use tch::{Device, Tensor};

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::rng::SeededRng;

/// Batch size, tail handling and target device for iterating a dataset.
#[derive(Debug)]
pub struct Batcher<'a> {
    data: &'a Dataset,
    batch_size: usize,
    drop_last: bool,
    device: Device,
}

impl<'a> Batcher<'a> {
    /// Batches of `batch_size` on the CPU, keeping the last partial batch.
    pub fn new(data: &'a Dataset, batch_size: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(DataError::BadConfig {
                key: "batch_size",
                value: "0".into(),
                reason: "a batch holds at least one record".into(),
            });
        }
        Ok(Batcher { data, batch_size, drop_last: false, device: Device::Cpu })
    }

    /// Whether to skip the last batch when it holds fewer than `batch_size` records.
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// The device the batches are moved to.
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Number of batches in one epoch.
    pub fn num_batches(&self) -> usize {
        let n = self.data.len();
        if self.drop_last { n / self.batch_size } else { n.div_ceil(self.batch_size) }
    }

    /// One epoch in dataset order (evaluation).
    pub fn sequential(&self) -> Epoch<'a> {
        self.epoch((0..self.data.len() as i64).collect())
    }

    /// One epoch in an order drawn from `rng` (training). Successive calls with the same
    /// generator give successive epochs.
    pub fn shuffled(&self, rng: &mut SeededRng) -> Epoch<'a> {
        let mut order: Vec<i64> = (0..self.data.len() as i64).collect();
        order.shuffle(rng);
        self.epoch(order)
    }

    /// One epoch in the order drawn from a fresh generator seeded with `seed`.
    pub fn shuffled_seed(&self, seed: u64) -> Epoch<'a> {
        self.shuffled(&mut SeededRng::seed_from_u64(seed))
    }

    fn epoch(&self, order: Vec<i64>) -> Epoch<'a> {
        let end =
            if self.drop_last { order.len() - order.len() % self.batch_size } else { order.len() };
        Epoch {
            data: self.data,
            order,
            pos: 0,
            end,
            batch_size: self.batch_size,
            device: self.device,
        }
    }
}

/// The batches of one epoch: `(x, y)` with `x` `f32` in `[0, 1]` on the device and `y` `i64`.
///
/// # Shapes
/// `x`: `[B, C, H, W]`, `y`: `[B]`, `B = batch_size` except possibly the last batch.
#[derive(Debug)]
pub struct Epoch<'a> {
    data: &'a Dataset,
    order: Vec<i64>,
    pos: usize,
    end: usize,
    batch_size: usize,
    device: Device,
}

impl Epoch<'_> {
    /// The record indices of the whole epoch, in visiting order (before `drop_last`).
    pub fn order(&self) -> &[i64] {
        &self.order
    }
}

impl Iterator for Epoch<'_> {
    type Item = (Tensor, Tensor);

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end {
            return None;
        }
        let stop = (self.pos + self.batch_size).min(self.end);
        let index = Tensor::from_slice(&self.order[self.pos..stop]);
        self.pos = stop;
        Some(self.data.batch(&index, self.device))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.end - self.pos).div_ceil(self.batch_size);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Epoch<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn numbered(n: i64) -> Dataset {
        let x =
            Tensor::arange(n, (Kind::Int64, Device::Cpu)).to_kind(Kind::Uint8).view([n, 1, 1, 1]);
        Dataset::new(x, Tensor::arange(n, (Kind::Int64, Device::Cpu)), vec![]).unwrap()
    }

    #[test]
    fn batch_counts_follow_drop_last() {
        let d = numbered(10);
        let b = Batcher::new(&d, 4).unwrap();
        assert_eq!(b.num_batches(), 3);
        assert_eq!(b.sequential().len(), 3);
        let sizes: Vec<i64> = b.sequential().map(|(_, y)| y.size()[0]).collect();
        assert_eq!(sizes, [4, 4, 2]);
        let b = b.drop_last(true);
        assert_eq!(b.num_batches(), 2);
        let sizes: Vec<i64> = b.shuffled_seed(1).map(|(_, y)| y.size()[0]).collect();
        assert_eq!(sizes, [4, 4]);
        assert!(matches!(Batcher::new(&d, 0), Err(DataError::BadConfig { .. })));
    }
}
