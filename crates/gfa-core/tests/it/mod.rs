mod checkpoint;
mod custom_method;
mod device;
mod import;
mod init;
mod methods;
mod models;
mod pt;
mod regularizer;
mod robust;
mod torchscript;
mod train;
mod transfers;
mod untrusted;

use gfa_core::Classifier;
use gfa_core::checkpoint::load_weights;
use gfa_core::models::{Arch, ModelSpec};

/// A committed fixture file of this crate.
pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The `cnn` twin of the golden fixtures (width 0.0625, CIFAR mean/std) with `weights` loaded.
pub fn cnn_twin(weights: &str) -> Classifier {
    let spec = ModelSpec {
        width: 0.0625,
        mean: vec![0.4914, 0.4822, 0.4465],
        std: vec![0.2470, 0.2435, 0.2616],
        ..ModelSpec::of(Arch::Cnn)
    };
    let mut model = Classifier::new(&spec, tch::Device::Cpu).unwrap();
    load_weights(&mut model, &fixture(weights)).unwrap();
    model
}
