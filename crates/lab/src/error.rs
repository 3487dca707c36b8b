//! The error type of the application library.
//!
//! Every message is one line that names the offending value (a path, a key, a number) and,
//! where there is one, the fix. [`Error::exit_code`] tells the binary whether the user asked for
//! something impossible (exit code 2), something failed on the way (exit code 1), or the user
//! stopped it (130).

use std::path::{Path, PathBuf};

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A spec or a requested value is invalid.
    #[error(transparent)]
    Spec(#[from] shapes::SpecError),

    /// A command-line request that cannot be honoured (unknown name, conflicting options).
    #[error("{0}")]
    Usage(String),

    /// The engine refused a request: an impossible architecture, data that does not fit the
    /// network, a setting out of range (usage), or weights that do not match (a failure).
    #[error(transparent)]
    Engine(#[from] tinycnn::Error),

    /// The user stopped the command (Ctrl-C); what was finished is saved.
    #[error("interrupted: {0}")]
    Interrupted(String),

    /// Some runs of a sweep failed for a reason outside the run (a write error); the others
    /// are stored.
    #[error("{count} runs failed and were not stored (run the same command again to retry); first: {first}")]
    RunsFailed { count: usize, first: String },

    /// The output exists and `--force` was not given.
    #[error("{} already exists; pass --force to replace it or choose another --out", .0.display())]
    Exists(PathBuf),

    /// An output would be, contain or replace something the command reads.
    #[error("{flag} {} {how} {what} ({}); choose a {flag} outside what the command reads", out.display(), input.display())]
    Overlap {
        out: PathBuf,
        flag: String,
        how: &'static str,
        input: PathBuf,
        what: &'static str,
    },

    /// An existing directory that shapelab did not write, which `--force` must not replace.
    #[error("{} exists and was not written by shapelab (it has no .shapelab marker); shapelab replaces only its own outputs, even with --force: choose another --out or remove it yourself", .0.display())]
    NotOurs(PathBuf),

    /// An input path does not exist.
    #[error("{} does not exist; check the path", .0.display())]
    NotFound(PathBuf),

    /// A file named somewhere else (in an experiment, in a model's record, in `--data`) is
    /// missing; the message says where it was named and what to do.
    #[error("{0}")]
    Missing(String),

    /// Reading or writing a file failed.
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },

    /// The results store refused or failed: named as the user gave it (a file, or a URL without
    /// its password).
    #[error("{store}: {reason}")]
    Store { store: String, reason: String },

    /// The connection to the results store's server was lost (it stopped, the network
    /// failed); what was committed before is kept.
    #[error("{store}: {reason}; check the server and run the same command again (finished runs are kept)")]
    StoreLost { store: String, reason: String },

    /// A file exists but is not what it should be.
    #[error("{}: {reason}", path.display())]
    BadFile { path: PathBuf, reason: String },
}

impl Error {
    /// True for mistakes in what was asked (exit 2), false for failures (exit 1).
    pub fn is_usage(&self) -> bool {
        match self {
            Error::Engine(e) => e.is_usage(),
            e => matches!(
                e,
                Error::Spec(_)
                    | Error::Usage(_)
                    | Error::Exists(_)
                    | Error::Overlap { .. }
                    | Error::NotOurs(_)
            ),
        }
    }

    /// The process exit code for this error: 130 for an interruption (as a shell reports
    /// Ctrl-C), 2 for a usage error, 1 for a failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Interrupted(_) => 130,
            e if e.is_usage() => 2,
            _ => 1,
        }
    }

    /// An IO error on `path`.
    pub fn io(path: &Path, err: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            err,
        }
    }

    /// The results store `store` (a path, or a URL shown without its password) refused or
    /// failed.
    pub fn store(store: impl std::fmt::Display, reason: impl Into<String>) -> Error {
        Error::Store {
            store: store.to_string(),
            reason: reason.into(),
        }
    }

    /// A malformed or foreign file.
    pub fn bad(path: &Path, reason: impl Into<String>) -> Error {
        Error::BadFile {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(Error::Interrupted("x".into()).exit_code(), 130);
        let failed = Error::RunsFailed {
            count: 2,
            first: "k: disk full".into(),
        };
        assert_eq!(failed.exit_code(), 1);
        assert_eq!(
            Error::Engine(tinycnn::Error::Arch("0-2".into())).exit_code(),
            2
        );
        assert_eq!(
            Error::Engine(tinycnn::Error::Params("short".into())).exit_code(),
            1
        );
        assert_eq!(Error::NotFound("x".into()).exit_code(), 1);
        assert_eq!(Error::Missing("x".into()).exit_code(), 1);
        assert_eq!(Error::Exists("x".into()).exit_code(), 2);
    }
}
