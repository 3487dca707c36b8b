//! The store's schema and its versioned migrations, for SQLite and PostgreSQL alike.
//!
//! One list of steps takes an empty database, or any older shapelab store, to
//! [`SCHEMA_VERSION`], all or nothing, under a lock two openers cannot both hold. SQLite keeps
//! the version in `PRAGMA user_version`, PostgreSQL in the one-row table `shapelab_schema`. It
//! must not read or write any run.

use crate::experiments::store::db::{Db, DbResult};

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 3;

/// The oldest schema that reads back without a migration (schema 3 only adds the claims
/// workers lease runs with, which reading never needs).
pub const READABLE_FROM: i64 = 2;

/// Schema 2: the held-out test split (its size per dataset, each run's test loss and accuracy,
/// NULL when the data had none) and each epoch's weight-gradient norms per layer (NULL for
/// epochs recorded before).
const MIGRATE_V2: &str = "
ALTER TABLE datasets ADD COLUMN test INTEGER;
ALTER TABLE runs ADD COLUMN test_loss REAL;
ALTER TABLE runs ADD COLUMN test_acc REAL;
ALTER TABLE epochs ADD COLUMN grad_norms TEXT;
";

pub(crate) const SCHEMA_V1: &str = "
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

/// Schema 3: the claims of workers (`sweep --worker`): every planned run of an experiment once,
/// in plan order, with the worker holding it and until when (milliseconds since the Unix epoch
/// by the database's clock; NULL when nobody does).
const MIGRATE_V3: &str = "
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    ord INTEGER NOT NULL,
    worker TEXT,
    lease_until INTEGER,
    attempts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS claims_by_experiment ON claims(experiment, ord);
";

/// Each step takes version `i` to `i + 1`.
const STEPS: [&str; 3] = [SCHEMA_V1, MIGRATE_V2, MIGRATE_V3];

/// A step as the dialect writes it: PostgreSQL's integers and reals are named differently
/// (its INTEGER is 32 bits; SQLite's is 64).
fn ddl(step: &str, postgres: bool) -> String {
    if postgres {
        step.replace(" INTEGER", " BIGINT")
            .replace(" REAL", " DOUBLE PRECISION")
    } else {
        step.to_string()
    }
}

/// What a database holds: its schema version (0 when none) and whether it has any table.
pub struct Found {
    pub version: i64,
    pub tables: bool,
}

/// Reads the version and whether there are tables.
pub fn found(db: &mut Db) -> DbResult<Found> {
    if db.is_postgres() {
        // pg_catalog rather than information_schema: the same answer, a fraction of the time.
        let tables = db.query(
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()",
            &[],
        )?[0]
            .int(0)?;
        let ours = db.query(
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = 'shapelab_schema'",
            &[],
        )?[0]
            .int(0)?;
        let version = if ours == 1 {
            db.query("SELECT max(version) FROM shapelab_schema", &[])?[0]
                .opt_int(0)?
                .unwrap_or(0)
        } else {
            0
        };
        Ok(Found {
            version,
            tables: tables > 0,
        })
    } else {
        let version = db.query("PRAGMA user_version", &[])?[0].int(0)?;
        let tables = db.query("SELECT count(*) FROM sqlite_master", &[])?[0].int(0)?;
        Ok(Found {
            version,
            tables: tables > 0,
        })
    }
}

fn set_version(db: &mut Db, v: i64) -> DbResult<()> {
    if db.is_postgres() {
        db.batch(&format!(
            "CREATE TABLE IF NOT EXISTS shapelab_schema (version BIGINT NOT NULL);
             DELETE FROM shapelab_schema; INSERT INTO shapelab_schema VALUES ({v});"
        ))
    } else {
        db.batch(&format!("PRAGMA user_version = {v}"))
    }
}

/// Gives a blank database the schema, or migrates an older store forward, in one transaction
/// under the write lock (SQLite's `BEGIN IMMEDIATE`, a transaction-scoped advisory lock in
/// PostgreSQL): two workers creating one store at once must not see it half-made. An empty
/// database gets the schema only if `create`; one with tables but no version is left alone.
/// The caller refuses what is not a store. Returns what was found.
pub fn migrate(db: &mut Db, create: bool) -> DbResult<Found> {
    // Looked at first without a transaction: a store that is up to date (or newer), or a
    // database that is no store when none may be made, is not written to at all. Anything
    // else is decided again inside the transaction, where the two reads agree.
    let f = found(db)?;
    if f.version >= SCHEMA_VERSION || (f.version == 0 && !create) {
        return Ok(f);
    }
    db.transaction(|db| {
        if db.is_postgres() {
            db.batch("SELECT pg_advisory_xact_lock(4242180718)")?;
        }
        let f = found(db)?;
        let from = match (f.version, f.tables) {
            (0, false) if create => 0,
            (v, _) if v > 0 && v < SCHEMA_VERSION => v,
            _ => return Ok(f),
        };
        let pg = db.is_postgres();
        for step in &STEPS[from as usize..] {
            db.batch(&ddl(step, pg))?;
        }
        set_version(db, SCHEMA_VERSION)?;
        Ok(f)
    })
}
