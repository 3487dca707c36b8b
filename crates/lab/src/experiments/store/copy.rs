//! `shapelab store copy SRC DST`: a store's rows moved between SQLite and PostgreSQL (either
//! way), then verified: every row of every source table must read back the same from the
//! destination (which may hold other experiments too), and the report gives the row counts and a
//! SHA-256 over the source's rows in byte order of their text.
//!
//! Claims are not copied (they are leases of live workers), nor model directories (the store
//! records them relative to its artifacts root, which the copy keeps: read the copy with
//! `--artifacts` naming that root). It must not change the source.

use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::experiments::store::db::{Db, DbResult, Row, Val};
use crate::experiments::store::{fault, retry_busy, Store, StoreUrl, RUN_COLUMNS};

/// Every table a copy moves, with its columns, parents before children (foreign keys).
fn tables() -> [(&'static str, String); 6] {
    [
        ("experiments", "name, path, seed, text, updated".into()),
        (
            "datasets",
            "hash, label, source, spec, train, val, height, width, class_names, test".into(),
        ),
        ("runs", RUN_COLUMNS.replace('\n', " ")),
        (
            "epochs",
            "run_key, epoch, train_loss, train_acc, val_loss, val_acc, dead, grad_norms".into(),
        ),
        (
            "continuations",
            "run_key, extra_epochs, lr, val_acc, outcome, escaped, escape_epoch, finished".into(),
        ),
        ("analyses", "run_key, kind, params, result, created".into()),
    ]
}

/// What a copy moved and checked, per table: `(table, rows in the source, rows added to the
/// destination)`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CopyReport {
    pub tables: Vec<(String, usize, usize)>,
    /// SHA-256 over all the source's rows, each found equal in the destination.
    pub sha256: String,
}

fn rows(db: &mut Db, table: &str, columns: &str) -> DbResult<Vec<Row>> {
    db.query(&format!("SELECT {columns} FROM {table}"), &[])
}

/// A table's rows as sorted text lines: the same rows give the same lines whichever database
/// holds them (text is compared as bytes, not by a locale's collation).
fn lines(rows: &[Row]) -> Vec<String> {
    let mut out: Vec<String> = rows
        .iter()
        .map(|r| {
            r.vals
                .iter()
                .map(|v| match v {
                    Val::Null => "NULL".to_string(),
                    Val::Int(i) => i.to_string(),
                    Val::Real(x) => format!("{x:?}"),
                    Val::Text(s) => format!("{s:?}"),
                })
                .collect::<Vec<_>>()
                .join("\t")
        })
        .collect();
    out.sort();
    out
}

/// Copies every row of `src` into `dst` (created and migrated if needed; rows it holds
/// already are kept), then verifies that `dst` holds each of `src`'s rows unchanged.
pub fn copy(src: &StoreUrl, dst: &StoreUrl) -> Result<CopyReport> {
    if src == dst {
        return Err(crate::error::Error::Usage(format!(
            "store copy: the source and the destination are both {src}; name another destination"
        )));
    }
    let from = Store::open_read(src)?;
    let to = Store::open(dst)?;
    let mut report = Vec::new();
    let mut all = Sha256::new();
    for (table, columns) in tables() {
        let source = from.run(|db| rows(db, table, &columns))?;
        let n = columns.split(',').count();
        let insert = format!(
            "INSERT INTO {table} ({columns}) VALUES ({}) ON CONFLICT DO NOTHING",
            super::placeholders(n)
        );
        let added = {
            let mut db = to.db.borrow_mut();
            retry_busy(|| {
                db.transaction(|db| {
                    let mut added = 0;
                    for r in &source {
                        added += db.execute(&insert, &r.vals)? as usize;
                    }
                    Ok(added)
                })
            })
            .map_err(|e| fault(dst, e))?
        };
        let want = lines(&source);
        let have: std::collections::HashSet<String> =
            lines(&to.run(|db| rows(db, table, &columns))?)
                .into_iter()
                .collect();
        let missing = want.iter().filter(|l| !have.contains(*l)).count();
        if missing > 0 {
            return Err(to.fault(format!(
                "after the copy, {missing} of the {} rows of table {table} in {src} differ in the destination, which held other rows under the same keys; copy into an empty store",
                want.len()
            )));
        }
        for l in &want {
            all.update(l.as_bytes());
            all.update(b"\n");
        }
        report.push((table.to_string(), want.len(), added));
    }
    Ok(CopyReport {
        tables: report,
        sha256: all.finalize().iter().map(|b| format!("{b:02x}")).collect(),
    })
}
