//! Fault injection for the tests of `gfa run`'s resume: `GFA_FAULT=<point>[:<k>]` in the
//! environment kills the process (SIGKILL, as `kill -9` would) the k-th time (default: the
//! first) it reaches the named point. Points:
//!
//! - `epoch`: after an epoch's checkpoint and its `train.csv` rows are written;
//! - `train-csv`: while `train.csv` is rewritten after an epoch, its temporary file written and
//!   not yet renamed into place;
//! - `eval-batch`: after a finished evaluation batch is recorded in the run's batch log (see
//!   `batches`), before the next batch starts.
//!
//! Without the variable (every normal use) a point costs one environment lookup.
use std::sync::atomic::{AtomicUsize, Ordering};

/// The environment variable naming the point to fail at.
pub const VAR: &str = "GFA_FAULT";

/// Kill this process if `GFA_FAULT` names `name` and this is its k-th hit.
pub fn point(name: &str) {
    static HITS: AtomicUsize = AtomicUsize::new(0);
    let Ok(spec) = std::env::var(VAR) else { return };
    let (point, k) = match spec.split_once(':') {
        Some((p, k)) => (p, k.parse().unwrap_or(1)),
        None => (spec.as_str(), 1),
    };
    if point != name {
        return;
    }
    if HITS.fetch_add(1, Ordering::SeqCst) + 1 == k {
        // SAFETY: sends SIGKILL to this process; nothing after it runs.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        std::process::abort();
    }
}
