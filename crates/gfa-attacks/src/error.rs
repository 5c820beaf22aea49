//! The error type of gfa-attacks.

#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    #[error("input out of range: {0}")]
    InputOutOfRange(String),
    #[error("shape mismatch for {what}: expected {expected}, got {got}")]
    ShapeMismatch { what: String, expected: String, got: String },
    #[error("attack {attack} does not support the {norm} threat model")]
    UnsupportedNorm { attack: String, norm: String },
    #[error("invalid eps '{text}': {reason}")]
    BadEps { text: String, reason: String },
    #[error("invalid attack configuration: {0}")]
    Config(String),
    /// A trace was asked of an attack that records none ([`crate::Facts::traced`]).
    #[error(
        "attack {attack} records no trace; the attacks that do: {traced} \
         (docs/method.md §10)"
    )]
    NoTrace { attack: String, traced: String },
    #[error("attack output failed validation: {0}")]
    Invalid(String),
    /// The model's logits on clean points hold a NaN or an infinity: no accuracy measured on
    /// it means anything, so none is reported.
    #[error(
        "the model outputs NaN or infinite logits on {points} of {of} clean points (batch \
         {batch}): its accuracy would mean nothing, so none is reported; check its weights (a \
         run that diverged, a NaN in the file) and its normalization (mean and std)"
    )]
    NonFiniteLogits { points: i64, of: i64, batch: usize },
    /// A finished batch could not be recorded (`eval::BatchStore`).
    #[error("recording evaluation results: {0}")]
    Store(String),
    #[error(transparent)]
    Tch(#[from] tch::TchError),
}

pub type Result<T> = std::result::Result<T, AttackError>;
