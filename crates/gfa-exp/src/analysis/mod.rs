//! Pure functions over the records of a results folder: statistics, masking checks, per-point
//! outcomes, the report's tables and the figures. Imports [`crate::config`] and
//! [`crate::results`] only.

pub mod binarization;
pub mod frontier;
pub mod indicators;
pub mod masking;
pub mod phase;
pub mod plot;
pub mod points;
pub mod report;
pub mod stats;
pub mod style;
