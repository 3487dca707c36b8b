//! What `shapelab serve` was given, resolved: a study directory (its `shapelab.db` or the
//! database it records), a store file, or a single model directory (served alone, without a
//! store).

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// What a server reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A store, and the directory its model paths and a study's files are relative to.
    Store(PathBuf),
    /// One model directory written by `shapelab train` or a sweep.
    Run(PathBuf),
    /// A PostgreSQL store, and the artifacts directory its model paths are relative to.
    Database {
        url: lab::experiments::store::StoreUrl,
        artifacts: PathBuf,
    },
}

impl Source {
    /// Resolves what `serve` was given: a `postgres://` URL (with the `--artifacts` directory
    /// it needs), else a path as [`Source::resolve`] reads it.
    pub fn resolve_arg(arg: &str, artifacts: Option<&Path>) -> Result<Source> {
        match arg.parse::<lab::experiments::store::StoreUrl>() {
            Ok(url @ lab::experiments::store::StoreUrl::Postgres(_)) => match artifacts {
                Some(a) => Ok(Source::Database {
                    url,
                    artifacts: a.to_path_buf(),
                }),
                None => Err(Error::Usage(format!(
                    "{url} keeps its model directories elsewhere: give --artifacts DIR (or set SHAPELAB_ARTIFACTS)"
                ))),
            },
            Ok(_) => Source::resolve(Path::new(arg)),
            Err(e) => Err(Error::Usage(e)),
        }
    }

    /// Resolves `path`: a study directory (its `shapelab.db`, or the database its `store.json`
    /// names), a store file, or a model directory.
    pub fn resolve(path: &Path) -> Result<Source> {
        if path.is_dir() {
            if let Some(url) = lab::study::location::recorded(path)? {
                return Ok(Source::Database {
                    url,
                    artifacts: path.to_path_buf(),
                });
            }
            let store = path.join("shapelab.db");
            if store.is_file() {
                return Ok(Source::Store(store));
            }
            if path.join("model.json").is_file() {
                return Ok(Source::Run(path.to_path_buf()));
            }
            return Err(Error::Usage(format!(
                "{} holds neither shapelab.db nor model.json; give a study directory (after `shapelab study`), a store file or a model directory",
                path.display()
            )));
        }
        if path.is_file() {
            return Ok(Source::Store(path.to_path_buf()));
        }
        Err(Error::Usage(format!(
            "{} does not exist; give a study directory, a store or a model directory, e.g. `shapelab serve study`",
            path.display()
        )))
    }

    /// What is served, for messages (a URL without its password).
    pub fn name(&self) -> String {
        match self {
            Source::Store(p) | Source::Run(p) => p.display().to_string(),
            Source::Database { url, .. } => url.to_string(),
        }
    }
}
