//! What `shapelab serve` was given, resolved to a store: a study directory (its
//! `shapelab.db`) or a store file. A single run directory is not served yet.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The store a server reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub store: PathBuf,
}

impl Source {
    /// Resolves `path`: a directory holding `shapelab.db`, or a store file.
    pub fn resolve(path: &Path) -> Result<Source> {
        if path.is_dir() {
            let store = path.join("shapelab.db");
            if store.is_file() {
                return Ok(Source { store });
            }
            if path.join("model.json").is_file() {
                return Err(Error::Usage(format!(
                    "{} is a model directory; serving a single run is not built yet: give the study directory or the store it belongs to",
                    path.display()
                )));
            }
            return Err(Error::Usage(format!(
                "{} holds no shapelab.db; give a study directory (after `shapelab study`) or a store file",
                path.display()
            )));
        }
        if path.is_file() {
            return Ok(Source {
                store: path.to_path_buf(),
            });
        }
        Err(Error::Usage(format!(
            "{} does not exist; give a study directory or a store, e.g. `shapelab serve study`",
            path.display()
        )))
    }
}
