//! The runs this process has marked "running", and the lock their `status` is written under:
//! a stop on SIGTERM or SIGINT (`run::signals`) takes it, marks those runs interrupted and
//! keeps it until the process exits, so that no status written later replaces "interrupted".
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

static RUNNING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Held while a run's status is written (see the module documentation).
pub struct StatusGuard(MutexGuard<'static, Vec<PathBuf>>);

impl StatusGuard {
    /// Record that the run in `dir` is now running or not.
    pub fn note(&mut self, dir: &Path, running: bool) {
        self.0.retain(|p| p != dir);
        if running {
            self.0.push(dir.to_path_buf());
        }
    }

    /// The folders of the runs marked running by this process.
    pub fn running(&self) -> &[PathBuf] {
        &self.0
    }
}

/// The lock a run's status is written under.
pub fn status_guard() -> StatusGuard {
    StatusGuard(RUNNING.lock().unwrap_or_else(|p| p.into_inner()))
}
