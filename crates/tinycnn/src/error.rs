//! Errors of the engine: every message names the value and the fix.

/// What went wrong.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// An impossible architecture.
    #[error("{0}")]
    Arch(String),
    /// Data that does not fit the network (sizes, labels).
    #[error("{0}")]
    Data(String),
    /// A training setting out of range.
    #[error("{0}")]
    Config(String),
    /// Parameters that do not match the architecture.
    #[error("{0}")]
    Params(String),
}

impl Error {
    /// True when the caller asked for something impossible (an architecture, data or setting
    /// the engine refuses), false for parameters that do not match (a damaged file).
    pub fn is_usage(&self) -> bool {
        !matches!(self, Error::Params(_))
    }
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
