//! The error type of gfa-data.
use std::path::PathBuf;

/// Everything that can go wrong while reading or fetching data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tch(#[from] tch::TchError),
}

pub type Result<T> = std::result::Result<T, DataError>;
