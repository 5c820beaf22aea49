//! The counted transfers between the host and a device.
//!
//! On a GPU a device→host read (a scalar's value, a `nonzero`, a vector copied back) waits for
//! every kernel queued before it, and a host→device copy from ordinary (pageable) memory waits
//! too; a training step of a small model runs in well under a millisecond of GPU time, so such
//! syncs, not the arithmetic, would set the speed. The hot loops (the training step, PGD and
//! APGD iterations) make theirs through the functions here, which count them per thread, and
//! tests hold the counts to a stated budget (`gfa-core`'s `tests/it/transfers.rs`,
//! `gfa-attacks`' `tests/it/transfers.rs`). On the CPU the same calls are plain copies; the
//! counts are the same, so the budgets are checked there.
use std::cell::Cell;

use tch::{Device, Kind, Tensor};

thread_local! {
    static READS: Cell<u64> = const { Cell::new(0) };
    static UPLOADS: Cell<u64> = const { Cell::new(0) };
}

/// Device→host reads this thread made through this module so far.
pub fn reads() -> u64 {
    READS.with(Cell::get)
}

/// Host→device copies this thread made through this module so far.
pub fn uploads() -> u64 {
    UPLOADS.with(Cell::get)
}

/// Count a device→host read made by other means (a shape that depends on values).
pub fn note_read() {
    READS.with(|c| c.set(c.get() + 1));
}

/// The value of a one-element tensor, as `f64` (one read).
pub fn read_f64(t: &Tensor) -> f64 {
    note_read();
    t.double_value(&[])
}

/// The value of a one-element integer or boolean tensor, as `i64` (one read).
pub fn read_i64(t: &Tensor) -> i64 {
    note_read();
    t.int64_value(&[])
}

/// All values of a tensor, flattened, as `f64` (one read).
pub fn read_f64s(t: &Tensor) -> Vec<f64> {
    note_read();
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1))
        .expect("a double tensor converts to Vec<f64>")
}

/// Positions of the `true` entries of a boolean vector (`nonzero`: one read, for its length).
pub fn positions(mask: &Tensor) -> Tensor {
    note_read();
    mask.nonzero().view([-1])
}

/// `t` (built on the host) on `device`: one host→device copy.
pub fn upload(t: &Tensor, device: Device) -> Tensor {
    UPLOADS.with(|c| c.set(c.get() + 1));
    t.to_device(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_reads_and_uploads_per_call() {
        let (r0, u0) = (reads(), uploads());
        let t = upload(&Tensor::from_slice(&[1.5f32, 0.0, 2.0]), Device::Cpu);
        assert_eq!(read_f64(&t.sum(Kind::Double)), 3.5);
        assert_eq!(read_f64s(&t), [1.5, 0.0, 2.0]);
        assert_eq!(Vec::<i64>::try_from(positions(&t.gt(0.5))).unwrap(), [0, 2]);
        assert_eq!(read_i64(&t.gt(0.5).sum(Kind::Int64)), 2);
        assert_eq!((reads() - r0, uploads() - u0), (4, 1));
    }
}
