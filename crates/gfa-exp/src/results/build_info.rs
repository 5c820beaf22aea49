//! The build of this `gfa` binary, fixed at compile time by `build.rs`: written into every CSV
//! row and checkpoint, and printed by `gfa --version`.
use gfa_core::Provenance;

/// The git revision of the sources (`unknown` outside a checkout).
pub const GIT_REV: &str = env!("GFA_GIT_REV");
/// `true` when the sources differed from [`GIT_REV`].
pub const GIT_DIRTY: &str = env!("GFA_GIT_DIRTY");
/// The libtorch version linked.
pub const LIBTORCH: &str = env!("GFA_LIBTORCH");

/// What `gfa --version` prints after the name.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("GFA_GIT_REV"),
    ", dirty: ",
    env!("GFA_GIT_DIRTY"),
    "; libtorch ",
    env!("GFA_LIBTORCH"),
    ")"
);

/// This binary's provenance.
pub fn provenance() -> Provenance {
    Provenance {
        version: env!("CARGO_PKG_VERSION").into(),
        git_rev: GIT_REV.into(),
        git_dirty: GIT_DIRTY == "true",
        libtorch: LIBTORCH.into(),
    }
}
