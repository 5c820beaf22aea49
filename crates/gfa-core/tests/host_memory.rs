//! `gfa_core::host_memory::keep_freed_memory`: a freed tensor's pages are reused, not faulted in
//! again. A test without libtest's harness, so that it runs on the process's main thread, as
//! the `gfa` binary's work does (a harness thread has its own malloc arena, with other rules).
use gfa_core::host_memory::{keep_freed_memory, minor_faults};
use tch::{Device, Kind, Tensor};

/// Page faults while a 64 MiB tensor is made again after the first one was freed.
fn refaults() -> i64 {
    let make = || Tensor::ones([16 << 20], (Kind::Float, Device::Cpu));
    drop(make());
    let f0 = minor_faults();
    let t = make();
    let faults = minor_faults() - f0;
    assert_eq!(t.numel(), 16 << 20);
    faults
}

fn main() {
    // glibc's defaults: the block is its own mapping, unmapped when freed; its 16,384 pages
    // fault again.
    let before = refaults();
    assert!(before > 10_000, "{before} page faults with glibc's defaults (expected ~16,384)");
    assert!(keep_freed_memory(), "mallopt refused the settings");
    let after = refaults();
    assert!(after < 1_000, "{after} page faults for a reused 64 MiB block (before: {before})");
    println!(
        "host_memory: {before} page faults with glibc's defaults, {after} with freed memory kept"
    );
}
