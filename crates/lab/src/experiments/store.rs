//! The results store: one SQLite database per sweep (or several sweeps).
//!
//! **Architecture invariant:** this is the only module that knows SQL. Everything else sees
//! [`RunRow`], [`DatasetRow`] and [`ContinuationRow`].
//!
//! The database runs in WAL mode with a busy timeout, so two sweeps (or a sweep and a reader)
//! can share it; every run is committed in one transaction after its files are in place, and
//! a run key is inserted at most once. The schema is versioned with `PRAGMA user_version`
//! and migrated forward on open; a database from a newer shapelab is refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tinycnn::EpochStats;

use crate::error::{Error, Result};
use crate::experiments::outcome::Outcome;

/// A text column holding JSON, read back typed: a value that does not parse is an error
/// naming the column, never a default.
fn json_column<T: serde::de::DeserializeOwned>(r: &rusqlite::Row, i: usize) -> rusqlite::Result<T> {
    serde_json::from_str(&r.get::<_, String>(i)?).map_err(|e| damaged(r, i, e))
}

/// A column that does not read back, named in the message (rusqlite's own conversion error
/// names only the column index; this variant displays just the message).
fn damaged(r: &rusqlite::Row, i: usize, e: impl std::fmt::Display) -> rusqlite::Error {
    let name = r.as_ref().column_name(i).unwrap_or("?");
    rusqlite::Error::ToSqlConversionFailure(
        format!("column {name} does not read back ({e}); the store is damaged").into(),
    )
}

/// A text column holding a number (seeds are u64, beyond SQLite's integers), read back typed.
fn parsed<T: std::str::FromStr>(r: &rusqlite::Row, i: usize) -> rusqlite::Result<T>
where
    T::Err: std::fmt::Display,
{
    r.get::<_, String>(i)?
        .parse()
        .map_err(|e: T::Err| damaged(r, i, e))
}

/// What an analysis row of a run holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnalysisKind {
    /// `shapelab prune --store`: the pruning table (`PruneJson`).
    Prune,
    /// `shapelab analyze --store`: the future-work analyses (`AnalysisReport`).
    Analysis,
    /// A study's case analysis as stores before the one-pipeline change kept it, keyed by
    /// the case: read as an `Analysis` (see `recorded`), never written.
    StudyCase,
    /// The first updates of a run, replayed (`FirstSteps`), keyed by steps and probe.
    FirstSteps,
    /// `shapelab dissect`: each filter against the concept masks (`Dissection`), keyed by
    /// data, split and quantile.
    Dissection,
}

impl AnalysisKind {
    const ALL: [AnalysisKind; 5] = [
        AnalysisKind::Prune,
        AnalysisKind::Analysis,
        AnalysisKind::StudyCase,
        AnalysisKind::FirstSteps,
        AnalysisKind::Dissection,
    ];

    /// The name stored in the `kind` column.
    pub fn name(self) -> &'static str {
        match self {
            AnalysisKind::Prune => "prune",
            AnalysisKind::Analysis => "analysis",
            AnalysisKind::StudyCase => "study-case",
            AnalysisKind::FirstSteps => "first-steps",
            AnalysisKind::Dissection => "dissection",
        }
    }
}

/// Enums stored by name: written with `name()`, read back through `ALL`; a name this
/// shapelab does not know is an error, never a default.
macro_rules! stored_by_name {
    ($t:ty, $what:literal) => {
        impl rusqlite::types::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.name().into())
            }
        }

        impl rusqlite::types::FromSql for $t {
            fn column_result(
                v: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                let name = v.as_str()?;
                <$t>::ALL
                    .into_iter()
                    .find(|x| x.name() == name)
                    .ok_or_else(|| {
                        rusqlite::types::FromSqlError::Other(
                            format!(concat!("unknown ", $what, " {:?}"), name).into(),
                        )
                    })
            }
        }
    };
}

stored_by_name!(AnalysisKind, "analysis kind");
stored_by_name!(Outcome, "run outcome");

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 2;

/// Schema 2: the held-out test split (its size per dataset, each run's test loss and accuracy,
/// NULL when the data had none) and each epoch's weight-gradient norms per layer (NULL for
/// epochs recorded before).
const MIGRATE_V2: &str = "
ALTER TABLE datasets ADD COLUMN test INTEGER;
ALTER TABLE runs ADD COLUMN test_loss REAL;
ALTER TABLE runs ADD COLUMN test_acc REAL;
ALTER TABLE epochs ADD COLUMN grad_norms TEXT;
";

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS experiments (
    name TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    seed INTEGER NOT NULL,
    text TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS datasets (
    hash TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    source TEXT NOT NULL,
    spec TEXT,
    train INTEGER NOT NULL,
    val INTEGER NOT NULL,
    height INTEGER NOT NULL,
    width INTEGER NOT NULL,
    class_names TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    dataset_hash TEXT NOT NULL REFERENCES datasets(hash),
    dataset TEXT NOT NULL,
    arch TEXT NOT NULL,
    condition TEXT NOT NULL,
    seed_index INTEGER NOT NULL,
    seed TEXT NOT NULL,
    config TEXT NOT NULL,
    outcome TEXT NOT NULL,
    plateau REAL,
    never_predicted TEXT NOT NULL,
    epochs_run INTEGER NOT NULL,
    epochs_to_learn INTEGER,
    train_loss REAL,
    train_acc REAL,
    val_loss REAL,
    val_acc REAL,
    confusion TEXT NOT NULL,
    diagnosis TEXT,
    seconds REAL NOT NULL,
    images_per_s REAL NOT NULL,
    model_dir TEXT NOT NULL,
    weights_sha256 TEXT NOT NULL,
    finished TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs(experiment);
CREATE TABLE IF NOT EXISTS epochs (
    run_key TEXT NOT NULL REFERENCES runs(key),
    epoch INTEGER NOT NULL,
    train_loss REAL,
    train_acc REAL,
    val_loss REAL,
    val_acc REAL,
    dead TEXT NOT NULL,
    PRIMARY KEY (run_key, epoch)
);
CREATE TABLE IF NOT EXISTS continuations (
    run_key TEXT NOT NULL REFERENCES runs(key),
    extra_epochs INTEGER NOT NULL,
    lr TEXT NOT NULL,
    val_acc REAL NOT NULL,
    outcome TEXT NOT NULL,
    escaped INTEGER NOT NULL,
    escape_epoch INTEGER,
    finished TEXT NOT NULL,
    PRIMARY KEY (run_key, extra_epochs, lr)
);
CREATE TABLE IF NOT EXISTS analyses (
    run_key TEXT NOT NULL REFERENCES runs(key),
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    result TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (run_key, kind, params)
);
";

/// A dataset used by some run.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetRow {
    pub hash: String,
    pub label: String,
    pub source: String,
    pub spec: Option<String>,
    pub train: usize,
    pub val: usize,
    /// Held-out test images; `None` when the data had none.
    pub test: Option<usize>,
    pub height: usize,
    pub width: usize,
    pub class_names: Vec<String>,
}

/// One finished run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunRow {
    pub key: String,
    pub experiment: String,
    pub dataset_hash: String,
    pub dataset: String,
    pub arch: tinycnn::ArchLabel,
    pub condition: String,
    pub seed_index: usize,
    pub seed: u64,
    /// The full training config (JSON).
    pub config: String,
    pub outcome: Outcome,
    pub plateau: Option<f64>,
    pub never_predicted: Vec<String>,
    pub epochs_run: usize,
    pub epochs_to_learn: Option<usize>,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    /// The final model on the held-out test split; `None` when the data had none (or the run
    /// was stored before test splits existed).
    pub test_loss: Option<f64>,
    pub test_acc: Option<f64>,
    /// The validation confusion matrix `[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    /// Stuck-run diagnosis (JSON), if any.
    pub diagnosis: Option<String>,
    pub seconds: f64,
    pub images_per_s: f64,
    /// The model directory, relative to the store's directory.
    pub model_dir: String,
    pub weights_sha256: String,
    /// UTC, `YYYYMMDDTHHMMSS`.
    pub finished: String,
}

#[cfg(test)]
impl RunRow {
    /// A run of dataset `size` for tests: `arch`, `condition`, seed, outcome by name, accuracy.
    pub(crate) fn example(
        arch: &str,
        condition: &str,
        seed_index: usize,
        outcome: &str,
        val_acc: f64,
    ) -> RunRow {
        RunRow {
            key: format!("s/size/{arch}/{condition}/seed{seed_index}"),
            experiment: "s".into(),
            dataset_hash: "h".into(),
            dataset: "size".into(),
            arch: arch.parse().unwrap(),
            condition: condition.into(),
            seed_index,
            seed: 0,
            config: String::new(),
            outcome: crate::experiments::outcome::Outcome::from_name(outcome)
                .expect("a known outcome"),
            plateau: None,
            never_predicted: vec![],
            epochs_run: 1,
            epochs_to_learn: None,
            train_loss: 0.0,
            train_acc: val_acc,
            val_loss: 0.0,
            val_acc,
            test_loss: None,
            test_acc: None,
            confusion: vec![],
            diagnosis: None,
            seconds: 0.0,
            images_per_s: 0.0,
            model_dir: String::new(),
            weights_sha256: String::new(),
            finished: String::new(),
        }
    }
}

/// A stuck run trained further.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ContinuationRow {
    pub run_key: String,
    pub extra_epochs: usize,
    /// The learning rate used, or "same".
    pub lr: String,
    pub val_acc: f64,
    pub outcome: Outcome,
    pub escaped: bool,
    /// The extra epoch at which validation accuracy first reached the threshold.
    pub escape_epoch: Option<usize>,
    pub finished: String,
}

/// Which runs to list.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub experiment: Option<String>,
    pub dataset: Option<String>,
    pub arch: Option<tinycnn::ArchLabel>,
    pub outcome: Option<Outcome>,
}

/// The current UTC time as the thesis named its runs: `20190708T015217`.
pub fn timestamp() -> String {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]");
    time::OffsetDateTime::now_utc()
        .format(&f)
        .expect("formattable")
}

/// SQLite has no NaN (it would store NULL): non-finite metrics, as of a diverged run, are
/// stored as NULL and read back as NaN.
fn real(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn unreal(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

/// An open store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// Whether SQLite refused for a lock held elsewhere.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| {
        let msg = e.to_string();
        if msg.contains("locked") || msg.contains("busy") {
            Error::bad(
                path,
                "is locked by another process for too long; wait for it or use another --store",
            )
        } else if msg.contains("not a database") {
            Error::bad(
                path,
                "is not a shapelab store (not an SQLite database); choose another --store",
            )
        } else {
            Error::bad(path, format!("store error: {msg}"))
        }
    }
}

impl Store {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        if path.is_dir() {
            return Err(Error::bad(
                path,
                "is a directory; --store takes a database file path",
            ));
        }
        crate::files::fsio::prepare_file(path, true)?;
        Store::open_with(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            true,
        )
    }

    /// Opens an existing store to add to it (`prune --store`, `stuck --continue`): a missing
    /// file, or a file that is not a shapelab store yet, is an error; an older schema is
    /// migrated.
    pub fn open_existing(path: &Path) -> Result<Store> {
        Store::check_file(path)?;
        Store::open_with(path, OpenFlags::SQLITE_OPEN_READ_WRITE, false)
    }

    /// Opens an existing store for reading only (`runs`, `summary`, `report`): it never
    /// creates, migrates or changes the file.
    pub fn open_read(path: &Path) -> Result<Store> {
        Store::check_file(path)?;
        let e = sql(path);
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(&e)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(&e)?;
        let version = Store::version(&conn, path)?;
        if version < SCHEMA_VERSION {
            return Err(Error::bad(
                path,
                format!("has schema {version}, older than this shapelab's {SCHEMA_VERSION}; run `shapelab sweep` with it once to migrate it"),
            ));
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn check_file(path: &Path) -> Result<()> {
        if !path.exists() {
            return Err(Error::NotFound(path.to_path_buf()));
        }
        if path.is_dir() {
            return Err(Error::bad(
                path,
                "is a directory; --store takes a database file path",
            ));
        }
        Ok(())
    }

    /// The schema version; 0 (an empty file, another database) is refused: not a store.
    fn version(conn: &Connection, path: &Path) -> Result<i64> {
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql(path))?;
        if version > SCHEMA_VERSION {
            return Err(Error::bad(
                path,
                format!(
                    "was written by a newer shapelab (schema {version}; this one knows up to {SCHEMA_VERSION}); upgrade shapelab or use another --store"
                ),
            ));
        }
        if version == 0 {
            return Err(Error::bad(
                path,
                "is not a shapelab store (an empty file or another database); give the --store a sweep wrote",
            ));
        }
        Ok(version)
    }

    /// Opens the store, retrying while another process holds a lock SQLite will not wait for
    /// (two openers that both need the write lock get `SQLITE_BUSY` at once rather than
    /// deadlock, whatever the busy timeout), for up to 30 seconds.
    fn open_with(path: &Path, flags: OpenFlags, create: bool) -> Result<Store> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut pause = Duration::from_millis(2);
        loop {
            match Store::try_open(path, flags, create) {
                Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(e) => return Err(sql(path)(e)),
                Ok(Ok(store)) => return Ok(store),
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// One attempt of [`Store::open_with`]: SQLite's own errors come back raw so a busy one can
    /// be retried; the store's own refusals come back as `Ok(Err(...))`.
    fn try_open(path: &Path, flags: OpenFlags, create: bool) -> rusqlite::Result<Result<Store>> {
        let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        if create {
            if let Err(e) = Store::create_schema(&conn, path)? {
                return Ok(Err(e));
            }
        }
        match Store::version(&conn, path) {
            Err(e) => return Ok(Err(e)),
            Ok(v) if v < SCHEMA_VERSION => {
                if let Err(e) = Store::create_schema(&conn, path)? {
                    return Ok(Err(e));
                }
            }
            Ok(_) => {}
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(Ok(Store {
            conn,
            path: path.to_path_buf(),
        }))
    }

    /// Gives a blank database the schema, or migrates an older one forward, under the write
    /// lock: two sweeps creating one store at once must not see each other's file half-made
    /// (the second waits, then finds the schema), and a migration is all or nothing. A file
    /// with tables but no version is left alone; `version` refuses it.
    fn create_schema(conn: &Connection, path: &Path) -> rusqlite::Result<Result<()>> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let made = (|| -> rusqlite::Result<()> {
            let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            let tables: i64 =
                conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
            if version == 0 && tables == 0 {
                conn.execute_batch(SCHEMA_V1)?;
                conn.execute_batch(MIGRATE_V2)?;
                conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            } else if version == 1 {
                conn.execute_batch(MIGRATE_V2)?;
                conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            }
            Ok(())
        })();
        match made {
            Ok(()) => conn.execute_batch("COMMIT").map(|_| Ok(())),
            Err(err) => {
                let _ = conn.execute_batch("ROLLBACK");
                if is_busy(&err) {
                    Err(err)
                } else {
                    Ok(Err(sql(path)(err)))
                }
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where run directories live: `<store dir>/<store stem>-runs`.
    pub fn runs_dir(&self) -> PathBuf {
        let stem = self
            .path
            .file_stem()
            .map_or("shapelab".into(), |s| s.to_string_lossy().into_owned());
        self.path
            .parent()
            .unwrap_or(Path::new(""))
            .join(format!("{stem}-runs"))
    }

    /// A model directory path as stored (relative to the store's directory) made usable.
    pub fn resolve_model_dir(&self, stored: &str) -> PathBuf {
        self.path.parent().unwrap_or(Path::new("")).join(stored)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        sql(&self.path)
    }

    /// Records (or updates) an experiment's definition.
    pub fn put_experiment(&self, name: &str, path: &str, seed: u64, text: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO experiments (name, path, seed, text, updated) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(name) DO UPDATE SET path = excluded.path, seed = excluded.seed, text = excluded.text, updated = excluded.updated",
                params![name, path, seed as i64, text, timestamp()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Every experiment recorded: `(name, path, text)`.
    pub fn experiments(&self) -> Result<Vec<(String, String, String)>> {
        let mut st = self
            .conn
            .prepare("SELECT name, path, text FROM experiments ORDER BY name")
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// Records a dataset (once per hash).
    pub fn put_dataset(&self, d: &DatasetRow) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO datasets (hash, label, source, spec, train, val, height, width, class_names, test)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    d.hash,
                    d.label,
                    d.source,
                    d.spec,
                    d.train as i64,
                    d.val as i64,
                    d.height as i64,
                    d.width as i64,
                    serde_json::to_string(&d.class_names).expect("json"),
                    d.test.map(|t| t as i64)
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// A dataset by hash.
    pub fn dataset(&self, hash: &str) -> Result<Option<DatasetRow>> {
        self.conn
            .query_row(
                "SELECT hash, label, source, spec, train, val, height, width, class_names, test FROM datasets WHERE hash = ?1",
                [hash],
                |r| {
                    Ok(DatasetRow {
                        hash: r.get(0)?,
                        label: r.get(1)?,
                        source: r.get(2)?,
                        spec: r.get(3)?,
                        train: r.get::<_, i64>(4)? as usize,
                        val: r.get::<_, i64>(5)? as usize,
                        height: r.get::<_, i64>(6)? as usize,
                        width: r.get::<_, i64>(7)? as usize,
                        class_names: json_column(r, 8)?,
                        test: r.get::<_, Option<i64>>(9)?.map(|t| t as usize),
                    })
                },
            )
            .optional()
            .map_err(self.err())
    }

    /// Keys and configs of the finished runs of an experiment.
    pub fn finished(&self, experiment: &str) -> Result<std::collections::HashMap<String, String>> {
        let mut st = self
            .conn
            .prepare("SELECT key, config FROM runs WHERE experiment = ?1")
            .map_err(self.err())?;
        let rows = st
            .query_map([experiment], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// Commits a finished run and its history in one transaction. Returns false (and changes
    /// nothing) if the key is already stored, e.g. by a concurrent sweep.
    pub fn insert_run(&mut self, r: &RunRow, history: &[EpochStats]) -> Result<bool> {
        let path = self.path.clone();
        let e = sql(&path);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&e)?;
        let inserted = tx
            .execute(
                "INSERT INTO runs (key, experiment, dataset_hash, dataset, arch, condition, seed_index, seed, config,
                    outcome, plateau, never_predicted, epochs_run, epochs_to_learn, train_loss, train_acc, val_loss, val_acc,
                    confusion, diagnosis, seconds, images_per_s, model_dir, weights_sha256, finished, test_loss, test_acc)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)
                 ON CONFLICT(key) DO NOTHING",
                params![
                    r.key,
                    r.experiment,
                    r.dataset_hash,
                    r.dataset,
                    r.arch.to_string(),
                    r.condition,
                    r.seed_index as i64,
                    r.seed.to_string(),
                    r.config,
                    r.outcome,
                    r.plateau,
                    serde_json::to_string(&r.never_predicted).expect("json"),
                    r.epochs_run as i64,
                    r.epochs_to_learn.map(|v| v as i64),
                    real(r.train_loss),
                    real(r.train_acc),
                    real(r.val_loss),
                    real(r.val_acc),
                    serde_json::to_string(&r.confusion).expect("json"),
                    r.diagnosis,
                    r.seconds,
                    r.images_per_s,
                    r.model_dir,
                    r.weights_sha256,
                    r.finished,
                    r.test_loss.and_then(real),
                    r.test_acc.and_then(real)
                ],
            )
            .map_err(&e)?
            == 1;
        if inserted {
            let mut st = tx
                .prepare("INSERT INTO epochs (run_key, epoch, train_loss, train_acc, val_loss, val_acc, dead, grad_norms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
                .map_err(&e)?;
            for h in history {
                st.execute(params![
                    r.key,
                    h.epoch as i64,
                    real(h.train_loss),
                    real(h.train_acc),
                    real(h.val_loss),
                    real(h.val_acc),
                    serde_json::to_string(&h.dead).expect("json"),
                    h.grad_norms
                        .as_ref()
                        .map(|g| serde_json::to_string(g).expect("json"))
                ])
                .map_err(&e)?;
            }
        }
        tx.commit().map_err(&e)?;
        Ok(inserted)
    }

    /// Runs matching `f`, ordered by key.
    pub fn runs(&self, f: &RunFilter) -> Result<Vec<RunRow>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT key, experiment, dataset_hash, dataset, arch, condition, seed_index, seed, config, outcome, plateau,
                        never_predicted, epochs_run, epochs_to_learn, train_loss, train_acc, val_loss, val_acc, confusion,
                        diagnosis, seconds, images_per_s, model_dir, weights_sha256, finished, test_loss, test_acc
                 FROM runs
                 WHERE (?1 IS NULL OR experiment = ?1) AND (?2 IS NULL OR dataset = ?2)
                   AND (?3 IS NULL OR arch = ?3) AND (?4 IS NULL OR outcome = ?4)
                 ORDER BY key",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map(
                params![
                    f.experiment,
                    f.dataset,
                    f.arch.as_ref().map(|a| a.to_string()),
                    f.outcome
                ],
                |r| {
                    Ok(RunRow {
                        key: r.get(0)?,
                        experiment: r.get(1)?,
                        dataset_hash: r.get(2)?,
                        dataset: r.get(3)?,
                        arch: parsed(r, 4)?,
                        condition: r.get(5)?,
                        seed_index: r.get::<_, i64>(6)? as usize,
                        seed: parsed(r, 7)?,
                        config: r.get(8)?,
                        outcome: r.get(9)?,
                        plateau: r.get(10)?,
                        never_predicted: json_column(r, 11)?,
                        epochs_run: r.get::<_, i64>(12)? as usize,
                        epochs_to_learn: r.get::<_, Option<i64>>(13)?.map(|v| v as usize),
                        train_loss: unreal(r.get(14)?),
                        train_acc: unreal(r.get(15)?),
                        val_loss: unreal(r.get(16)?),
                        val_acc: unreal(r.get(17)?),
                        confusion: json_column(r, 18)?,
                        diagnosis: r.get(19)?,
                        seconds: r.get(20)?,
                        images_per_s: r.get(21)?,
                        model_dir: r.get(22)?,
                        weights_sha256: r.get(23)?,
                        finished: r.get(24)?,
                        test_loss: r.get(25)?,
                        test_acc: r.get(26)?,
                    })
                },
            )
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// A run's per-epoch history.
    pub fn history(&self, key: &str) -> Result<Vec<EpochStats>> {
        let mut st = self
            .conn
            .prepare("SELECT epoch, train_loss, train_acc, val_loss, val_acc, dead, grad_norms FROM epochs WHERE run_key = ?1 ORDER BY epoch")
            .map_err(self.err())?;
        let rows = st
            .query_map([key], |r| {
                Ok(EpochStats {
                    epoch: r.get::<_, i64>(0)? as usize,
                    train_loss: unreal(r.get(1)?),
                    train_acc: unreal(r.get(2)?),
                    val_loss: unreal(r.get(3)?),
                    val_acc: unreal(r.get(4)?),
                    dead: json_column(r, 5)?,
                    grad_norms: match r.get::<_, Option<String>>(6)? {
                        Some(_) => Some(json_column(r, 6)?),
                        None => None,
                    },
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// Records a continuation of a stuck run (replacing one with the same settings).
    pub fn put_continuation(&self, c: &ContinuationRow) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO continuations (run_key, extra_epochs, lr, val_acc, outcome, escaped, escape_epoch, finished)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    c.run_key,
                    c.extra_epochs as i64,
                    c.lr,
                    c.val_acc,
                    c.outcome,
                    c.escaped as i64,
                    c.escape_epoch.map(|v| v as i64),
                    c.finished
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// All continuations, ordered by run key.
    pub fn continuations(&self) -> Result<Vec<ContinuationRow>> {
        let mut st = self
            .conn
            .prepare("SELECT run_key, extra_epochs, lr, val_acc, outcome, escaped, escape_epoch, finished FROM continuations ORDER BY run_key, extra_epochs, lr")
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| {
                Ok(ContinuationRow {
                    run_key: r.get(0)?,
                    extra_epochs: r.get::<_, i64>(1)? as usize,
                    lr: r.get(2)?,
                    val_acc: r.get(3)?,
                    outcome: r.get(4)?,
                    escaped: r.get::<_, i64>(5)? != 0,
                    escape_epoch: r.get::<_, Option<i64>>(6)?.map(|v| v as usize),
                    finished: r.get(7)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// The run whose model directory is `dir` (compared after resolving both paths).
    pub fn run_for_dir(&self, dir: &Path) -> Result<Option<RunRow>> {
        let want = std::fs::canonicalize(dir).ok();
        Ok(self.runs(&RunFilter::default())?.into_iter().find(|r| {
            want.is_some()
                && std::fs::canonicalize(self.resolve_model_dir(&r.model_dir)).ok() == want
        }))
    }

    /// Records an analysis of a run (replacing one of the same kind and parameters); the
    /// typed front is `recorded`.
    pub(crate) fn put_analysis(
        &self,
        run_key: &str,
        kind: AnalysisKind,
        params: &str,
        result: &str,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO analyses (run_key, kind, params, result, created) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run_key, kind, params, result, timestamp()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The analyses of a run: `(kind, params, result)`.
    pub(crate) fn analyses(&self, run_key: &str) -> Result<Vec<(AnalysisKind, String, String)>> {
        let mut st = self
            .conn
            .prepare("SELECT kind, params, result FROM analyses WHERE run_key = ?1 ORDER BY kind, params")
            .map_err(self.err())?;
        let rows = st
            .query_map([run_key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// Everything that is the same for the same experiment whatever the interruptions, thread
    /// counts, timing or store name: runs (without timings) and epochs, as text, ordered.
    pub fn canonical_dump(&self) -> Result<String> {
        let mut out = String::new();
        for r in self.runs(&RunFilter::default())? {
            out += &format!(
                "{} {} {} {} {} {} {} {:?} {:?} {} {:?} {} {} {} {} {:?} {:?} {:?} {:?} {} {}\n",
                r.key,
                r.dataset_hash,
                r.arch,
                r.condition,
                r.seed,
                r.config,
                r.outcome,
                r.plateau,
                r.never_predicted,
                r.epochs_run,
                r.epochs_to_learn,
                r.train_loss,
                r.train_acc,
                r.val_loss,
                r.val_acc,
                r.test_loss,
                r.test_acc,
                r.confusion,
                r.diagnosis,
                // Relative to the runs directory, whose name follows the store's.
                r.model_dir
                    .split_once('/')
                    .map_or(r.model_dir.as_str(), |x| x.1),
                r.weights_sha256
            );
            for h in self.history(&r.key)? {
                out += &format!("  {:?}\n", h);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn row(key: &str) -> RunRow {
        RunRow {
            key: key.into(),
            experiment: "e".into(),
            dataset_hash: "h".into(),
            dataset: "d".into(),
            arch: "2-2".parse().unwrap(),
            condition: String::new(),
            seed_index: 1,
            seed: u64::MAX,
            config: "{}".into(),
            outcome: Outcome::Stuck,
            plateau: Some(1.0 / 3.0),
            never_predicted: vec!["ellipse".into()],
            epochs_run: 2,
            epochs_to_learn: None,
            train_loss: 1.1,
            train_acc: 0.33,
            val_loss: 1.09,
            val_acc: 1.0 / 3.0,
            test_loss: Some(1.1),
            test_acc: Some(0.34),
            confusion: vec![vec![0, 1], vec![0, 1]],
            diagnosis: Some("{}".into()),
            seconds: 0.1,
            images_per_s: 10.0,
            model_dir: "x/y".into(),
            weights_sha256: "abc".into(),
            finished: timestamp(),
        }
    }

    pub(crate) fn dataset(s: &Store) {
        s.put_dataset(&DatasetRow {
            hash: "h".into(),
            label: "d".into(),
            source: "size".into(),
            spec: None,
            train: 1,
            val: 1,
            test: Some(1),
            height: 28,
            width: 28,
            class_names: vec!["a".into(), "b".into()],
        })
        .unwrap();
    }

    #[test]
    fn stores_created_at_once_both_open() {
        // The race a CI run once hit: one process sees the other's file between its creation
        // and its schema.
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("s.db");
            let barrier = std::sync::Barrier::new(3);
            std::thread::scope(|s| {
                let opened: Vec<_> = (0..3)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            Store::open(&p).map(|_| ())
                        })
                    })
                    .collect();
                for h in opened {
                    h.join().unwrap().unwrap();
                }
            });
        }
    }

    #[test]
    fn runs_round_trip_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db")).unwrap();
        dataset(&s);
        let r = row("e/d/2-2/seed1");
        let h = vec![EpochStats {
            epoch: 1,
            train_loss: 1.0,
            train_acc: 0.5,
            val_loss: 1.0,
            val_acc: 0.5,
            dead: vec![0, 1],
            grad_norms: Some(vec![0.5, 0.0, 0.25]),
        }];
        assert!(s.insert_run(&r, &h).unwrap());
        assert!(!s.insert_run(&r, &h).unwrap(), "a key is stored once");
        assert_eq!(s.runs(&RunFilter::default()).unwrap(), vec![r.clone()]);
        assert_eq!(s.history(&r.key).unwrap(), h);
        assert_eq!(s.finished("e").unwrap().len(), 1);
        let f = RunFilter {
            outcome: Some(Outcome::Learned),
            ..RunFilter::default()
        };
        assert!(s.runs(&f).unwrap().is_empty());
        assert_eq!(s.dataset("h").unwrap().unwrap().class_names, vec!["a", "b"]);
        assert_eq!(s.runs_dir(), dir.path().join("s-runs"));
    }

    #[test]
    fn a_schema_1_store_is_migrated_and_keeps_its_runs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        let c = Connection::open(&p).unwrap();
        c.execute_batch(SCHEMA_V1).unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        c.execute_batch(
            "INSERT INTO datasets VALUES ('h', 'd', 'size', NULL, 1, 1, 28, 28, '[\"a\"]');
             INSERT INTO runs (key, experiment, dataset_hash, dataset, arch, condition, seed_index, seed,
                config, outcome, never_predicted, epochs_run, confusion, seconds, images_per_s,
                model_dir, weights_sha256, finished)
             VALUES ('k', 'e', 'h', 'd', '2-2', 'c', 0, '1', '{}', 'learned', '[]', 1, '[]', 0, 0, 'x', 'y', 't');
             INSERT INTO epochs VALUES ('k', 1, 1.0, 0.5, 1.0, 0.5, '[0,0]');",
        )
        .unwrap();
        drop(c);
        let e = Store::open_read(&p).err().unwrap().to_string();
        assert!(e.contains("schema 1") && e.contains("migrate"), "{e}");
        let s = Store::open(&p).unwrap();
        let runs = s.runs(&RunFilter::default()).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!((runs[0].test_acc, runs[0].test_loss), (None, None));
        assert_eq!(s.history("k").unwrap()[0].grad_norms, None);
        assert_eq!(s.dataset("h").unwrap().unwrap().test, None);
        drop(s);
        let version: i64 = Connection::open(&p)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert!(Store::open_read(&p).is_ok());
    }

    #[test]
    fn newer_and_foreign_databases_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        drop(Store::open(&p).unwrap());
        let c = Connection::open(&p).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        let e = Store::open(&p).err().unwrap().to_string();
        assert!(e.contains("newer shapelab") && e.contains("99"), "{e}");
        let q = dir.path().join("text.db");
        std::fs::write(
            &q,
            "this is not sqlite, just text that is long enough to have a header..........",
        )
        .unwrap();
        let e = Store::open(&q).err().unwrap().to_string();
        assert!(e.contains("not a shapelab store"), "{e}");
        assert!(matches!(
            Store::open_existing(&dir.path().join("none.db")),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn two_connections_share_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        let mut a = Store::open(&p).unwrap();
        let mut b = Store::open(&p).unwrap();
        dataset(&a);
        let ta = std::thread::spawn(move || {
            for i in 0..50 {
                a.insert_run(&row(&format!("a{i}")), &[]).unwrap();
            }
        });
        for i in 0..50 {
            b.insert_run(&row(&format!("b{i}")), &[]).unwrap();
            b.insert_run(&row(&format!("a{i}")), &[]).unwrap();
        }
        ta.join().unwrap();
        assert_eq!(b.runs(&RunFilter::default()).unwrap().len(), 100);
    }
}
