//! Doing the work: the stages (train, evaluate, landscape, indicators, binarization test), the
//! runner that works a grid's pending runs, the batch log, the monitor, fault points, surrogate loading, the escalation
//! driver and the worker pool. Imports [`crate::config`], [`crate::results`] and
//! [`crate::analysis`].

pub mod batches;
pub mod binarize;
pub mod escalate;
pub mod fault;
pub mod indicators;
pub mod jobs;
pub mod landscape;
pub mod monitor;
pub mod runner;
pub mod schedule;
pub mod signals;
pub mod stages;
pub mod surrogate;
