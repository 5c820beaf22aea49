//! The experiment TOML: its keys and checks, grid expansion into runs, `--set` overrides, the
//! legacy form, canonical TOML and run ids, the cost of a run, the `[escalate]` and `[binarize]`
//! tables, surrogate references and `[train] init` sources. Imports only gfa-core, gfa-attacks
//! and gfa-data: nothing else of gfa-exp.

pub mod binarize;
pub mod cost;
pub mod escalate;
pub mod grid;
pub mod init;
pub mod keys;
pub mod legacy;
pub mod overrides;
pub mod slurm;
pub mod spec;
pub mod surrogate;
