//! Integration tests of gfa-attacks (CPU, tiny models, seconds).
mod binarize;
mod common;
mod eval;
pub mod golden;
mod invariants;
mod linear;
mod ordering;
mod torchscript;
mod traces;
mod training;
mod transfers;

/// The golden fixture's trained model and its 128 points.
pub fn golden_data() -> (gfa_core::Classifier, tch::Tensor, tch::Tensor) {
    golden::model_and_data()
}
mod minnorm;
mod minnorm_golden;
