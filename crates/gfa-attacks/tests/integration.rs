//! Integration tests.
#[path = "it/minnorm.rs"]
mod minnorm;
#[path = "it/minnorm_golden.rs"]
mod minnorm_golden;
