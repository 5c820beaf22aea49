//! Which build of gfa wrote a result: the git revision of its source (and whether that source
//! had uncommitted changes) and the libtorch it was linked with.
//!
//! The `gfa` binary fixes these at build time (`crates/gfa-exp/build.rs`) and hands them to
//! every checkpoint ([`crate::train::TrainOptions::provenance`]) and CSV row it writes, so a
//! result names the binary that made it, wherever that binary runs.
use serde::{Deserialize, Serialize};

/// The build that wrote a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// gfa's version (`0.1.0`).
    pub version: String,
    /// Full git revision of the source the binary was built from; `unknown` when it was not
    /// built from a git checkout.
    pub git_rev: String,
    /// The sources (`crates/`, `Cargo.toml`, `Cargo.lock`) differed from `git_rev`.
    pub git_dirty: bool,
    /// The libtorch version the binary links (`2.11.0+cu130`), `unknown` when not known.
    pub libtorch: String,
}

impl Provenance {
    /// For results written by code that was not built as the `gfa` binary (library use,
    /// tests): every field `unknown`.
    pub fn unknown() -> Self {
        Provenance {
            version: env!("CARGO_PKG_VERSION").into(),
            git_rev: "unknown".into(),
            git_dirty: false,
            libtorch: "unknown".into(),
        }
    }
}

impl Default for Provenance {
    fn default() -> Self {
        Self::unknown()
    }
}
