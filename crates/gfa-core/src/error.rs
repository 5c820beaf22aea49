//! The error type of gfa-core.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A configuration value outside its domain, at its dotted key in a run's sections
    /// (`train.epochs`, `method.lambda`); the message says what the valid values are.
    #[error("`{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error("device: {0}")]
    Device(String),
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    /// A TorchScript module gfa cannot evaluate (`gfa eval --torchscript`).
    #[error("TorchScript module {path}: {reason}")]
    TorchScript { path: PathBuf, reason: String },
    #[error("training diverged: non-finite {what} at epoch {epoch}, step {step}")]
    NonFinite { what: String, epoch: usize, step: usize },
    #[error(transparent)]
    Data(#[from] gfa_data::DataError),
    /// A PyTorch file gfa cannot read (`gfa import`).
    #[error(transparent)]
    Pt(#[from] crate::pt::PtError),
    #[error(transparent)]
    Tch(#[from] tch::TchError),
}

impl CoreError {
    /// [`CoreError::Invalid`] at `key`.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        CoreError::Invalid { key: key.into(), message: message.into() }
    }
}

pub type Result<T> = std::result::Result<T, CoreError>;
