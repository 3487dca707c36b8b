//! Where a study keeps its store: `DIR/shapelab.db`, the embedded default, or a PostgreSQL
//! database given with `shapelab study --store URL`, written down in `DIR/store.json` without
//! its password so that resuming, `report` and `serve` find the same database again. A study's
//! model directories are under DIR whichever the store, so the directory and its store go
//! together.
//!
//! It exists so that the stages, the report and the server agree on a study's store. It must
//! never write a password to a file (the password comes from `PGPASSWORD`, or from a `--store`
//! given again), and opens nothing.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::experiments::store::StoreUrl;
use crate::files::schema::Schema;

/// The file a study's store is written down in, when it is not `shapelab.db`.
pub const STORE_FILE: &str = "store.json";

/// The default store of a study in `dir`.
pub fn default_store(dir: &Path) -> PathBuf {
    dir.join("shapelab.db")
}

/// `store.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    schema: Schema<1>,
    /// The database's URL, without its password.
    store: String,
}

/// The store written down in `dir`, if the study there does not use its default file.
pub fn recorded(dir: &Path) -> Result<Option<StoreUrl>> {
    let path = dir.join(STORE_FILE);
    let Some(file) = crate::study::data::read_json::<StoreFile>(&path)? else {
        return Ok(None);
    };
    match file.store.parse::<StoreUrl>() {
        Ok(url @ StoreUrl::Postgres(_)) => Ok(Some(url)),
        Ok(_) => Err(Error::bad(
            &path,
            format!(
                "names {} as the study's store, which is not a postgres:// URL; the file is damaged: delete it if the study's store is {}",
                file.store,
                default_store(dir).display()
            ),
        )),
        Err(e) => Err(Error::bad(&path, e)),
    }
}

/// The store a study in `dir` is run (or resumed) with, given `--store` or not. A resumed
/// study keeps the store it began with: another one is refused, as is an SQLite path (a study's
/// file is always `DIR/shapelab.db`).
pub fn choose(dir: &Path, given: Option<&StoreUrl>) -> Result<StoreUrl> {
    let file = default_store(dir);
    match (recorded(dir)?, given) {
        (Some(r), None) => Ok(r),
        (Some(r), Some(g)) if r == g.without_password() => Ok(g.clone()),
        (Some(r), Some(g)) => Err(Error::Usage(format!(
            "{} holds a study stored in {r}, not {g}; resume it with --store {r} (or without --store), or give a new --out",
            dir.display()
        ))),
        (None, Some(StoreUrl::Sqlite(p))) => Err(Error::Usage(format!(
            "--store {} is a file; a study keeps its SQLite store in its own directory ({}), so give --out instead, or a postgres:// URL",
            p.display(),
            file.display()
        ))),
        (None, Some(g)) if file.exists() => Err(Error::Usage(format!(
            "{} holds a study stored in {}; resume it without --store, or give a new --out for a study in {g} (`shapelab store copy` moves the finished one there)",
            dir.display(),
            file.display()
        ))),
        (None, Some(g)) => Ok(g.clone()),
        (None, None) => Ok(StoreUrl::Sqlite(file)),
    }
}

/// The store `report` and `serve` read a study in `dir` from: `--store` when given (a copy
/// elsewhere), else the one the study was run with.
pub fn for_reading(dir: &Path, given: Option<&StoreUrl>) -> Result<StoreUrl> {
    match given {
        Some(g) => Ok(g.clone()),
        None => Ok(recorded(dir)?.unwrap_or_else(|| StoreUrl::Sqlite(default_store(dir)))),
    }
}

/// Writes `store` down in `dir` (without its password) when it is not the default file.
pub fn record(dir: &Path, store: &StoreUrl) -> Result<()> {
    if !store.is_postgres() {
        return Ok(());
    }
    let file = StoreFile {
        schema: Schema::CURRENT,
        store: store.without_password().to_string(),
    };
    crate::files::fsio::write_file_atomic(&dir.join(STORE_FILE), true, |w| {
        serde_json::to_writer_pretty(&mut *w, &file)?;
        std::io::Write::write_all(w, b"\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> StoreUrl {
        s.parse().unwrap()
    }

    #[test]
    fn a_study_keeps_its_store_and_never_writes_its_password() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(
            choose(d, None).unwrap(),
            StoreUrl::Sqlite(d.join("shapelab.db"))
        );
        let given = url("postgres://ana:s3cret@db:5432/lab");
        assert_eq!(choose(d, Some(&given)).unwrap(), given);
        record(d, &given).unwrap();
        let text = std::fs::read_to_string(d.join(STORE_FILE)).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        let written = url("postgres://ana@db:5432/lab");
        assert_eq!(recorded(d).unwrap(), Some(written.clone()));
        // Resumed without --store, or with the same one, or read back.
        assert_eq!(choose(d, None).unwrap(), written);
        assert_eq!(choose(d, Some(&given)).unwrap(), given);
        assert_eq!(for_reading(d, None).unwrap(), written);
        // Another database is refused, naming both without the password.
        let e = choose(d, Some(&url("postgres://ana:pw@db:5432/other")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("postgres://ana@db:5432/lab") && e.contains("other") && !e.contains("pw@"),
            "{e}"
        );
    }

    #[test]
    fn a_file_study_is_not_resumed_into_a_database_nor_given_a_file_store() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = choose(d, Some(&url("elsewhere.db")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("elsewhere.db") && e.contains("--out"), "{e}");
        std::fs::write(d.join("shapelab.db"), b"").unwrap();
        let e = choose(d, Some(&url("postgres://h/lab")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("shapelab.db") && e.contains("store copy"), "{e}");
        // A copy is read with --store.
        assert_eq!(
            for_reading(d, Some(&url("postgres://h/lab"))).unwrap(),
            url("postgres://h/lab")
        );
    }

    #[test]
    fn a_damaged_store_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join(STORE_FILE), r#"{"schema":1,"store":"x.db"}"#).unwrap();
        let e = recorded(d).unwrap_err().to_string();
        assert!(
            e.contains("store.json") && e.contains("not a postgres"),
            "{e}"
        );
        std::fs::write(d.join(STORE_FILE), r#"{"store":"postgres://h/db"}"#).unwrap();
        let e = recorded(d).unwrap_err().to_string();
        assert!(e.contains("store.json") && e.contains("schema"), "{e}");
        std::fs::write(d.join(STORE_FILE), "{").unwrap();
        assert!(recorded(d).is_err());
    }
}
