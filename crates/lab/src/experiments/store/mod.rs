//! The results store: the runs of one sweep or several, in an SQLite file (the embedded
//! default) or a PostgreSQL database (`--store postgres://...`), with one schema and one set of
//! queries for both.
//!
//! **Architecture invariant:** this folder is the only code that knows SQL (`db.rs` the only
//! code that knows a driver). Everything else sees [`RunRow`], [`DatasetRow`] and
//! [`ContinuationRow`].
//!
//! Every run is committed in one transaction after its files are in place, and a run key is
//! inserted at most once, so concurrent sweeps and workers never store a run twice (a late
//! duplicate is discarded). SQLite runs in WAL mode with a busy timeout, so two sweeps (or a
//! sweep and a reader) can share a file; PostgreSQL serves any number of nodes. The schema is
//! versioned and migrated forward on open (`schema.rs`); a database from a newer shapelab is
//! refused. Model directories live under the store's artifacts root: beside an SQLite file by
//! default, or `--artifacts DIR`, which a PostgreSQL store needs; the store records them
//! relative to it.

mod claims;
mod copy;
pub(crate) mod db;
mod location;
#[cfg(test)]
pub(crate) mod pg_tests;
mod schema;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tinycnn::EpochStats;

pub use claims::{Claim, ClaimState};
pub use copy::{copy, CopyReport};
pub use location::{redact, StoreUrl};
pub use schema::{READABLE_FROM, SCHEMA_VERSION};

use crate::error::{Error, Result};
use crate::experiments::outcome::Outcome;
use db::{vals, Db, DbError, DbResult, Row, Val};

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
        impl From<$t> for Val {
            fn from(v: $t) -> Val {
                Val::Text(v.name().to_string())
            }
        }

        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(name: &str) -> std::result::Result<$t, String> {
                <$t>::ALL
                    .into_iter()
                    .find(|x| x.name() == name)
                    .ok_or_else(|| format!(concat!("unknown ", $what, " {:?}"), name))
            }
        }
    };
}

stored_by_name!(AnalysisKind, "analysis kind");
stored_by_name!(Outcome, "run outcome");

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

/// An open store.
pub struct Store {
    db: RefCell<Db>,
    url: StoreUrl,
    /// Where model directories are written and resolved from.
    artifacts: Option<PathBuf>,
    /// Nanoseconds spent waiting on the database, shared with every connection
    /// [`Store::reopen`] made from this one: what `bench sweep` reports as the store's cost.
    busy: Arc<AtomicU64>,
}

/// How a store is opened.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Create if needed and migrate (`sweep`, `study`).
    Create,
    /// Must exist already; migrated (`prune --store`, `stuck --continue`).
    Existing,
    /// Must exist; never created, migrated or changed (`runs`, `summary`, `report`).
    Read,
    /// A second connection to a store this process opened and checked already.
    Again,
}

/// Where model directories are found unless `--artifacts` says: beside an SQLite file;
/// nowhere for a database.
fn default_artifacts(url: &StoreUrl) -> Option<PathBuf> {
    url.as_path()
        .map(|p| p.parent().unwrap_or(Path::new("")).to_path_buf())
}

/// The user-facing error for a failed statement on `url`.
pub(super) fn fault(url: &StoreUrl, e: DbError) -> Error {
    if let DbError::Lost(m) = &e {
        return Error::StoreLost {
            store: url.to_string(),
            reason: format!("lost the connection to the database ({m})"),
        };
    }
    let reason = match &e {
        DbError::Busy => {
            "is locked by another process for too long; wait for it or use another --store".into()
        }
        DbError::Lost(_) => unreachable!("returned above"),
        DbError::Other(m) if m.contains("not a database") => {
            "is not a shapelab store (not an SQLite database); choose another --store".into()
        }
        DbError::Other(m) => format!("store error: {m}"),
        DbError::Damaged(m) => m.clone(),
    };
    Error::store(url, reason)
}

/// SQLite has no NaN (it would store NULL): non-finite metrics, as of a diverged run, are
/// stored as NULL and read back as NaN (in PostgreSQL too, so both hold the same rows).
fn real(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn unreal(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

/// The run columns, in [`read_run`]'s order.
pub(super) const RUN_COLUMNS: &str = "key, experiment, dataset_hash, dataset, arch, condition, seed_index, seed, config, outcome, plateau,
    never_predicted, epochs_run, epochs_to_learn, train_loss, train_acc, val_loss, val_acc, confusion,
    diagnosis, seconds, images_per_s, model_dir, weights_sha256, finished, test_loss, test_acc";

fn read_run(r: &Row) -> DbResult<RunRow> {
    Ok(RunRow {
        key: r.text(0)?,
        experiment: r.text(1)?,
        dataset_hash: r.text(2)?,
        dataset: r.text(3)?,
        arch: r.parsed(4)?,
        condition: r.text(5)?,
        seed_index: r.count(6)?,
        seed: r.parsed(7)?,
        config: r.text(8)?,
        outcome: r.parsed(9)?,
        plateau: r.opt_real(10)?,
        never_predicted: r.json(11)?,
        epochs_run: r.count(12)?,
        epochs_to_learn: r.opt_count(13)?,
        train_loss: unreal(r.opt_real(14)?),
        train_acc: unreal(r.opt_real(15)?),
        val_loss: unreal(r.opt_real(16)?),
        val_acc: unreal(r.opt_real(17)?),
        confusion: r.json(18)?,
        diagnosis: r.opt_text(19)?,
        seconds: r.real(20)?,
        images_per_s: r.real(21)?,
        model_dir: r.text(22)?,
        weights_sha256: r.text(23)?,
        finished: r.text(24)?,
        test_loss: r.opt_real(25)?,
        test_acc: r.opt_real(26)?,
    })
}

/// The values of [`RUN_COLUMNS`] for `r`.
fn run_values(r: &RunRow) -> [Val; 27] {
    vals![
        &r.key,
        &r.experiment,
        &r.dataset_hash,
        &r.dataset,
        r.arch.to_string(),
        &r.condition,
        r.seed_index,
        r.seed.to_string(),
        &r.config,
        r.outcome,
        r.plateau,
        serde_json::to_string(&r.never_predicted).expect("json"),
        r.epochs_run,
        r.epochs_to_learn,
        real(r.train_loss),
        real(r.train_acc),
        real(r.val_loss),
        real(r.val_acc),
        serde_json::to_string(&r.confusion).expect("json"),
        r.diagnosis.clone(),
        r.seconds,
        r.images_per_s,
        &r.model_dir,
        &r.weights_sha256,
        &r.finished,
        r.test_loss.and_then(real),
        r.test_acc.and_then(real),
    ]
}

/// `$1, $2, ..., $n`.
pub(super) fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Opens (creating if needed) the store and brings its schema up to date.
    pub fn open(url: impl Into<StoreUrl>) -> Result<Store> {
        Store::open_mode(url.into(), Mode::Create)
    }

    /// Opens an existing store to add to it (`prune --store`, `stuck --continue`): a missing
    /// file, or a database that is not a shapelab store yet, is an error; an older schema is
    /// migrated.
    pub fn open_existing(url: impl Into<StoreUrl>) -> Result<Store> {
        Store::open_mode(url.into(), Mode::Existing)
    }

    /// Opens an existing store for reading only (`runs`, `summary`, `report`): it never
    /// creates, migrates or changes it.
    pub fn open_read(url: impl Into<StoreUrl>) -> Result<Store> {
        Store::open_mode(url.into(), Mode::Read)
    }

    /// Model directories are written under, and resolved from, `dir` (`--artifacts`): a path
    /// every node of a cluster sees.
    pub fn with_artifacts(mut self, dir: Option<PathBuf>) -> Store {
        if dir.is_some() {
            self.artifacts = dir;
        }
        self
    }

    /// A second connection to the same store, with the same artifacts root (one per worker
    /// thread).
    pub fn reopen(&self) -> Result<Store> {
        let mut again =
            Store::open_mode(self.url.clone(), Mode::Again)?.with_artifacts(self.artifacts.clone());
        again.busy = Arc::clone(&self.busy);
        Ok(again)
    }

    /// Time spent in the database's statements by this store and the connections reopened
    /// from it (opening excluded).
    pub fn busy(&self) -> Duration {
        Duration::from_nanos(self.busy.load(Ordering::Relaxed))
    }

    /// Runs `f`, adding its time to [`Store::busy`].
    fn timed<T>(&self, f: impl FnOnce() -> T) -> T {
        let start = std::time::Instant::now();
        let out = f();
        let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.busy.fetch_add(ns, Ordering::Relaxed);
        out
    }

    fn open_mode(url: StoreUrl, mode: Mode) -> Result<Store> {
        let db = match &url {
            StoreUrl::Sqlite(path) => open_sqlite(path, &url, mode)?,
            StoreUrl::Postgres(u) => {
                Db::Postgres(Box::new(db::Pg::new(connect_postgres(u, &url)?)))
            }
        };
        let mut db = db;
        if mode == Mode::Again {
            if !db.is_postgres() {
                retry_busy(|| db.batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"))
                    .map_err(|e| fault(&url, e))?;
            }
            return Ok(Store {
                db: RefCell::new(db),
                artifacts: default_artifacts(&url),
                url,
                busy: Arc::default(),
            });
        }
        let found = if mode == Mode::Read {
            schema::found(&mut db)
        } else {
            retry_busy(|| schema::migrate(&mut db, mode == Mode::Create))
        }
        .map_err(|e| fault(&url, e))?;
        check_version(&url, &found, mode)?;
        if !db.is_postgres() && mode != Mode::Read {
            // Only once the file is known to be a store: a refused file is left as it was. WAL
            // needs the write lock once; a concurrent opener may hold it for a moment.
            retry_busy(|| {
                db.batch(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                )
            })
            .map_err(|e| fault(&url, e))?;
        }
        if mode == Mode::Read && db.is_postgres() {
            db.batch("SET default_transaction_read_only = on")
                .map_err(|e| fault(&url, e))?;
        }
        Ok(Store {
            db: RefCell::new(db),
            artifacts: default_artifacts(&url),
            url,
            busy: Arc::default(),
        })
    }

    /// Where this store lives, as the user named it (a URL without its password).
    pub fn url(&self) -> &StoreUrl {
        &self.url
    }

    /// An error about this store, naming it.
    pub fn fault(&self, reason: impl Into<String>) -> Error {
        Error::store(&self.url, reason)
    }

    /// The directory model directories are recorded relative to.
    pub fn artifacts(&self) -> Result<&Path> {
        self.artifacts.as_deref().ok_or_else(|| {
            Error::Usage(format!(
                "{} keeps its model directories on shared storage: give --artifacts DIR (or set SHAPELAB_ARTIFACTS), the directory every node sees",
                self.url
            ))
        })
    }

    /// Where a sweep puts run directories: `<store dir>/<store stem>-runs` beside an SQLite
    /// file, `runs` under `--artifacts`; as recorded (relative to [`Store::artifacts`]).
    pub fn runs_prefix(&self) -> PathBuf {
        match (&self.url, &self.artifacts) {
            (StoreUrl::Sqlite(p), Some(a)) if Some(a.as_path()) == p.parent() => {
                let stem = p
                    .file_stem()
                    .map_or("shapelab".into(), |s| s.to_string_lossy().into_owned());
                PathBuf::from(format!("{stem}-runs"))
            }
            _ => PathBuf::from("runs"),
        }
    }

    /// A model directory path as stored (relative to the artifacts root) made usable.
    pub fn resolve_model_dir(&self, stored: &str) -> Result<PathBuf> {
        Ok(self.artifacts()?.join(stored))
    }

    fn run<T>(&self, f: impl FnOnce(&mut Db) -> DbResult<T>) -> Result<T> {
        self.timed(|| f(&mut self.db.borrow_mut()))
            .map_err(|e| fault(&self.url, e))
    }

    /// Records (or updates) an experiment's definition.
    pub fn put_experiment(&self, name: &str, path: &str, seed: u64, text: &str) -> Result<()> {
        self.run(|db| {
            db.execute(
                "INSERT INTO experiments (name, path, seed, text, updated) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT(name) DO UPDATE SET path = excluded.path, seed = excluded.seed, text = excluded.text, updated = excluded.updated",
                &vals![name, path, seed as i64, text, timestamp()],
            )
            .map(|_| ())
        })
    }

    /// Every experiment recorded: `(name, path, text)`.
    pub fn experiments(&self) -> Result<Vec<(String, String, String)>> {
        self.run(|db| {
            db.query(
                "SELECT name, path, text FROM experiments ORDER BY name{binary}",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?, r.text(2)?)))
            .collect()
        })
    }

    /// Records a dataset (once per hash).
    pub fn put_dataset(&self, d: &DatasetRow) -> Result<()> {
        self.run(|db| {
            db.execute(
                "INSERT INTO datasets (hash, label, source, spec, train, val, height, width, class_names, test)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT(hash) DO NOTHING",
                &vals![
                    &d.hash,
                    &d.label,
                    &d.source,
                    d.spec.clone(),
                    d.train,
                    d.val,
                    d.height,
                    d.width,
                    serde_json::to_string(&d.class_names).expect("json"),
                    d.test
                ],
            )
            .map(|_| ())
        })
    }

    /// A dataset by hash.
    pub fn dataset(&self, hash: &str) -> Result<Option<DatasetRow>> {
        self.run(|db| {
            db.query(
                "SELECT hash, label, source, spec, train, val, height, width, class_names, test FROM datasets WHERE hash = $1",
                &vals![hash],
            )?
            .first()
            .map(|r| {
                Ok(DatasetRow {
                    hash: r.text(0)?,
                    label: r.text(1)?,
                    source: r.text(2)?,
                    spec: r.opt_text(3)?,
                    train: r.count(4)?,
                    val: r.count(5)?,
                    height: r.count(6)?,
                    width: r.count(7)?,
                    class_names: r.json(8)?,
                    test: r.opt_count(9)?,
                })
            })
            .transpose()
        })
    }

    /// Keys and configs of the finished runs of an experiment.
    pub fn finished(&self, experiment: &str) -> Result<std::collections::HashMap<String, String>> {
        self.run(|db| {
            db.query(
                "SELECT key, config FROM runs WHERE experiment = $1",
                &vals![experiment],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?)))
            .collect()
        })
    }

    /// Commits a finished run and its history in one transaction, and lets go of its claim if
    /// a worker held one. Returns false (and changes nothing) if the key is already stored,
    /// by a concurrent sweep or a worker whose lease this one's outlived.
    pub fn insert_run(&mut self, r: &RunRow, history: &[EpochStats]) -> Result<bool> {
        self.timed(|| {
            let mut db = self.db.borrow_mut();
            retry_busy(|| db.transaction(|db| insert_run_in(db, r, history)))
        })
        .map_err(|e| fault(&self.url, e))
    }

    /// Runs matching `f`, ordered by key.
    pub fn runs(&self, f: &RunFilter) -> Result<Vec<RunRow>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs
             WHERE ($1 = '' OR experiment = $1) AND ($2 = '' OR dataset = $2)
               AND ($3 = '' OR arch = $3) AND ($4 = '' OR outcome = $4)
             ORDER BY key{{binary}}"
        );
        let params = vals![
            f.experiment.clone().unwrap_or_default(),
            f.dataset.clone().unwrap_or_default(),
            f.arch.as_ref().map_or(String::new(), |a| a.to_string()),
            f.outcome.map_or("", |o| o.name()),
        ];
        self.run(|db| db.query(&sql, &params)?.iter().map(read_run).collect())
    }

    /// A run's per-epoch history.
    pub fn history(&self, key: &str) -> Result<Vec<EpochStats>> {
        self.run(|db| {
            db.query(
                "SELECT epoch, train_loss, train_acc, val_loss, val_acc, dead, grad_norms FROM epochs WHERE run_key = $1 ORDER BY epoch",
                &vals![key],
            )?
            .iter()
            .map(|r| {
                Ok(EpochStats {
                    epoch: r.count(0)?,
                    train_loss: unreal(r.opt_real(1)?),
                    train_acc: unreal(r.opt_real(2)?),
                    val_loss: unreal(r.opt_real(3)?),
                    val_acc: unreal(r.opt_real(4)?),
                    dead: r.json(5)?,
                    grad_norms: match r.opt_text(6)? {
                        Some(_) => Some(r.json(6)?),
                        None => None,
                    },
                })
            })
            .collect()
        })
    }

    /// Records a continuation of a stuck run (replacing one with the same settings).
    pub fn put_continuation(&self, c: &ContinuationRow) -> Result<()> {
        self.run(|db| {
            db.execute(
                "INSERT INTO continuations (run_key, extra_epochs, lr, val_acc, outcome, escaped, escape_epoch, finished)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT(run_key, extra_epochs, lr) DO UPDATE SET val_acc = excluded.val_acc, outcome = excluded.outcome,
                    escaped = excluded.escaped, escape_epoch = excluded.escape_epoch, finished = excluded.finished",
                &vals![
                    &c.run_key,
                    c.extra_epochs,
                    &c.lr,
                    c.val_acc,
                    c.outcome,
                    c.escaped,
                    c.escape_epoch,
                    &c.finished
                ],
            )
            .map(|_| ())
        })
    }

    /// All continuations, ordered by run key.
    pub fn continuations(&self) -> Result<Vec<ContinuationRow>> {
        self.run(|db| {
            db.query(
                "SELECT run_key, extra_epochs, lr, val_acc, outcome, escaped, escape_epoch, finished FROM continuations ORDER BY run_key{binary}, extra_epochs, lr{binary}",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(ContinuationRow {
                    run_key: r.text(0)?,
                    extra_epochs: r.count(1)?,
                    lr: r.text(2)?,
                    val_acc: r.real(3)?,
                    outcome: r.parsed(4)?,
                    escaped: r.int(5)? != 0,
                    escape_epoch: r.opt_count(6)?,
                    finished: r.text(7)?,
                })
            })
            .collect()
        })
    }

    /// The run whose model directory is `dir` (compared after resolving both paths).
    pub fn run_for_dir(&self, dir: &Path) -> Result<Option<RunRow>> {
        let want = std::fs::canonicalize(dir).ok();
        if want.is_none() {
            return Ok(None);
        }
        for r in self.runs(&RunFilter::default())? {
            let have = self
                .resolve_model_dir(&r.model_dir)
                .ok()
                .and_then(|p| std::fs::canonicalize(p).ok());
            if have == want {
                return Ok(Some(r));
            }
        }
        Ok(None)
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
        self.run(|db| {
            db.execute(
                "INSERT INTO analyses (run_key, kind, params, result, created) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT(run_key, kind, params) DO UPDATE SET result = excluded.result, created = excluded.created",
                &vals![run_key, kind, params, result, timestamp()],
            )
            .map(|_| ())
        })
    }

    /// The analyses of a run: `(kind, params, result)`.
    pub(crate) fn analyses(&self, run_key: &str) -> Result<Vec<(AnalysisKind, String, String)>> {
        self.run(|db| {
            db.query(
                "SELECT kind, params, result FROM analyses WHERE run_key = $1 ORDER BY kind{binary}, params{binary}",
                &vals![run_key],
            )?
            .iter()
            .map(|r| Ok((r.parsed(0)?, r.text(1)?, r.text(2)?)))
            .collect()
        })
    }

    /// Everything that is the same for the same experiment whatever the interruptions, thread
    /// counts, timing, store name or kind of store: runs (without timings) and epochs, as
    /// text, ordered.
    pub fn canonical_dump(&self) -> Result<String> {
        let mut out = String::new();
        for r in self.runs(&RunFilter::default())? {
            out += &format!(
                "{} {} {} {} {} {} {} {:?} {:?} {} {:?} {} {} {} {} {:?} {:?} {:?} {:?} {}\n",
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
                r.weights_sha256
            );
            for h in self.history(&r.key)? {
                out += &format!("  {:?}\n", h);
            }
        }
        Ok(out)
    }
}

/// [`Store::insert_run`]'s transaction.
fn insert_run_in(db: &mut Db, r: &RunRow, history: &[EpochStats]) -> DbResult<bool> {
    let sql = format!(
        "INSERT INTO runs ({RUN_COLUMNS}) VALUES ({}) ON CONFLICT(key) DO NOTHING",
        placeholders(27)
    );
    let inserted = db.execute(&sql, &run_values(r))? == 1;
    if inserted {
        for h in history {
            db.execute(
                "INSERT INTO epochs (run_key, epoch, train_loss, train_acc, val_loss, val_acc, dead, grad_norms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &vals![
                    &r.key,
                    h.epoch,
                    real(h.train_loss),
                    real(h.train_acc),
                    real(h.val_loss),
                    real(h.val_acc),
                    serde_json::to_string(&h.dead).expect("json"),
                    h.grad_norms
                        .as_ref()
                        .map(|g| serde_json::to_string(g).expect("json"))
                ],
            )?;
        }
    }
    db.execute(
        "UPDATE claims SET worker = NULL, lease_until = NULL WHERE key = $1",
        &vals![&r.key],
    )?;
    Ok(inserted)
}

/// Retries `f` while SQLite reports a lock it will not wait for (two openers that both need
/// the write lock get `SQLITE_BUSY` at once rather than deadlock, whatever the busy timeout),
/// for up to 30 seconds.
pub(super) fn retry_busy<T>(mut f: impl FnMut() -> DbResult<T>) -> DbResult<T> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut pause = Duration::from_millis(2);
    loop {
        match f() {
            Err(DbError::Busy) if std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            r => return r,
        }
    }
}

/// Opens an SQLite file as `mode` asks: a missing file is an error unless creating.
fn open_sqlite(path: &Path, url: &StoreUrl, mode: Mode) -> Result<Db> {
    use rusqlite::{Connection, OpenFlags};
    if path.is_dir() {
        return Err(Error::bad(
            path,
            "is a directory; --store takes a database file path or a postgres:// URL",
        ));
    }
    let flags = match mode {
        Mode::Create => {
            crate::files::fsio::prepare_file(path, true)?;
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
        }
        Mode::Existing | Mode::Read | Mode::Again if !path.exists() => {
            return Err(Error::NotFound(path.to_path_buf()))
        }
        Mode::Existing | Mode::Again => OpenFlags::SQLITE_OPEN_READ_WRITE,
        Mode::Read => OpenFlags::SQLITE_OPEN_READ_ONLY,
    };
    let e = |e: rusqlite::Error| fault(url, e.into());
    let conn =
        Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(e)?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(e)?;
    Ok(Db::Sqlite(conn))
}

/// Refuses a database that is not a shapelab store, or one this build cannot read.
fn check_version(url: &StoreUrl, found: &schema::Found, mode: Mode) -> Result<()> {
    let bad = |reason: String| Error::store(url, reason);
    let v = found.version;
    if v > SCHEMA_VERSION {
        return Err(bad(format!(
            "was written by a newer shapelab (schema {v}; this one knows up to {SCHEMA_VERSION}); upgrade shapelab or use another --store"
        )));
    }
    if v == 0 && (found.tables || mode != Mode::Create) {
        return Err(bad(if url.is_postgres() {
            "is not a shapelab store (the database has other tables, or none); give an empty database or one a sweep wrote".into()
        } else {
            "is not a shapelab store (an empty file or another database); give the --store a sweep wrote".into()
        }));
    }
    if mode == Mode::Read && v < READABLE_FROM {
        return Err(bad(format!(
            "has schema {v}, older than this shapelab's {SCHEMA_VERSION}; run `shapelab sweep` with it once to migrate it"
        )));
    }
    Ok(())
}

/// Connects to PostgreSQL: the password from the URL, else from `PGPASSWORD` (as libpq reads
/// it), so that none need be written into a file. Each refusal is one line naming the URL
/// without its password and the fix.
fn connect_postgres(raw: &str, url: &StoreUrl) -> Result<postgres::Client> {
    use postgres::error::SqlState;
    let mut cfg: postgres::Config = raw
        .parse()
        .map_err(|e| Error::store(url, format!("is not a valid PostgreSQL URL ({e})")))?;
    if cfg.get_password().is_none() {
        if let Ok(p) = std::env::var("PGPASSWORD") {
            cfg.password(p);
        }
    }
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(10));
    }
    if cfg.get_application_name().is_none() {
        cfg.application_name("shapelab");
    }
    let user = cfg.get_user().unwrap_or("(the login name)").to_string();
    cfg.connect(postgres::NoTls).map_err(|e| {
        let code = e.code().cloned();
        let reason = match code {
            Some(c) if c == SqlState::INVALID_PASSWORD || c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => format!(
                "the server refused user {user}'s credentials ({}); check the user and the password in the URL or in PGPASSWORD",
                db::server_message(&e)
            ),
            Some(c) if c == SqlState::INVALID_CATALOG_NAME => format!(
                "{}; create it first (createdb NAME) or name another database in the URL",
                db::server_message(&e)
            ),
            // The client's own refusal, before any server error: it has no password to send.
            None if std::error::Error::source(&e).is_some_and(|s| s.to_string().contains("password missing")) => format!(
                "the server asks user {user} for a password; set PGPASSWORD (or put it in the URL given to --store)"
            ),
            _ => format!(
                "cannot connect ({e}); check that the server is running and the host, port and socket directory in the URL"
            ),
        };
        Error::store(url, reason)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::schema::SCHEMA_V1;
    use super::*;
    use rusqlite::Connection;

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
        assert_eq!(s.runs_prefix(), Path::new("s-runs"));
        assert_eq!(
            s.resolve_model_dir("s-runs/k").unwrap(),
            dir.path().join("s-runs/k")
        );
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
