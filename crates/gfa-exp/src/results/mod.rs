//! The files of a results folder: the CSV records and their schema, the store (layout, atomic
//! writes, locks, markers, the plan's files, collecting shards) and the build's provenance.
//! Imports [`crate::config`] only.

pub mod build_info;
pub mod plan;
pub mod records;
pub mod running;
pub mod store;
pub mod timing;
