//! The one place that talks to a database driver: SQLite through rusqlite, PostgreSQL through
//! the `postgres` client, behind one small interface of statements, values and rows, so that
//! every query of the store is written once.
//!
//! Statements are written in the dialect both share, with `$1, $2, ...` placeholders and two
//! tokens for what they do not share: `{now_ms}` (the database's clock in milliseconds since
//! the Unix epoch, so that leases on a cluster read one clock), `{skip_locked}`
//! (`FOR UPDATE SKIP LOCKED` in PostgreSQL; nothing in SQLite, whose writers are serialised by
//! `BEGIN IMMEDIATE`) and `{binary}` after an `ORDER BY` text column (PostgreSQL sorts text by
//! the database's locale; SQLite, and shapelab, by bytes). It must not know the schema or any table.

use std::fmt;

use postgres::types::{IsNull, ToSql, Type};

/// One value bound or read: the types the store's columns hold.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl From<&str> for Val {
    fn from(s: &str) -> Val {
        Val::Text(s.to_string())
    }
}
impl From<&String> for Val {
    fn from(s: &String) -> Val {
        Val::Text(s.clone())
    }
}
impl From<String> for Val {
    fn from(s: String) -> Val {
        Val::Text(s)
    }
}
impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::Int(v)
    }
}
impl From<usize> for Val {
    fn from(v: usize) -> Val {
        Val::Int(v as i64)
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Val {
        Val::Int(v as i64)
    }
}
impl From<f64> for Val {
    fn from(v: f64) -> Val {
        Val::Real(v)
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Val {
        v.map_or(Val::Null, Into::into)
    }
}

/// Binds a list of values: `&vals![a, b, c]` (an array of [`Val`]).
macro_rules! vals {
    ($($v:expr),* $(,)?) => { [$($crate::experiments::store::db::Val::from($v)),*] };
}
pub(crate) use vals;

/// Why a statement failed.
#[derive(Debug)]
pub enum DbError {
    /// SQLite's lock was held by another process for longer than the busy timeout.
    Busy,
    /// The connection to the server is gone (it stopped, the network failed).
    Lost(String),
    /// Any other refusal, as the driver words it.
    Other(String),
    /// A value read back is not what its column should hold.
    Damaged(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Busy => f.write_str("the database is locked by another process"),
            DbError::Lost(m) => write!(f, "lost the connection to the database ({m})"),
            DbError::Other(m) | DbError::Damaged(m) => f.write_str(m),
        }
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> DbError {
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                DbError::Busy
            }
            _ => DbError::Other(e.to_string()),
        }
    }
}

/// What the server said, without the client's prefix; the client's words when the server
/// said nothing (a socket error).
pub fn server_message(e: &postgres::Error) -> String {
    e.as_db_error()
        .map_or(e.to_string(), |d| d.message().to_string())
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> DbError {
        let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
        // An IO error came from the socket, not from the server; class 08 is a
        // connection exception, 57P the server shutting down or restarting.
        let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
        if e.is_closed() || io || code.starts_with("08") || code.starts_with("57P") {
            DbError::Lost(server_message(&e))
        } else if code == "42501" {
            // insufficient_privilege: the role may connect but not use shapelab's tables.
            DbError::Other(format!(
                "{}; connect as the role that created the store, or have it GRANT ALL ON ALL TABLES IN SCHEMA public to this one",
                server_message(&e)
            ))
        } else {
            DbError::Other(server_message(&e))
        }
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// A row read back, its values in the statement's column order, with the columns' names for
/// messages.
pub struct Row {
    pub vals: Vec<Val>,
    names: std::rc::Rc<Vec<String>>,
}

impl Row {
    fn name(&self, i: usize) -> &str {
        self.names.get(i).map_or("?", String::as_str)
    }

    fn at(&self, i: usize) -> DbResult<&Val> {
        self.vals
            .get(i)
            .ok_or_else(|| DbError::Damaged(format!("column {} missing", self.name(i))))
    }

    fn wrong(&self, i: usize, want: &str) -> DbError {
        DbError::Damaged(format!(
            "column {} holds {:?} where {want} belongs; the store is damaged",
            self.name(i),
            self.vals.get(i)
        ))
    }

    pub fn opt_text(&self, i: usize) -> DbResult<Option<String>> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Text(s) => Ok(Some(s.clone())),
            _ => Err(self.wrong(i, "text")),
        }
    }

    pub fn text(&self, i: usize) -> DbResult<String> {
        self.opt_text(i)?.ok_or_else(|| self.wrong(i, "text"))
    }

    pub fn opt_int(&self, i: usize) -> DbResult<Option<i64>> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Int(v) => Ok(Some(*v)),
            _ => Err(self.wrong(i, "an integer")),
        }
    }

    pub fn int(&self, i: usize) -> DbResult<i64> {
        self.opt_int(i)?.ok_or_else(|| self.wrong(i, "an integer"))
    }

    /// A count or index: an integer that is not negative.
    pub fn count(&self, i: usize) -> DbResult<usize> {
        usize::try_from(self.int(i)?).map_err(|_| self.wrong(i, "a count"))
    }

    pub fn opt_count(&self, i: usize) -> DbResult<Option<usize>> {
        match self.opt_int(i)? {
            None => Ok(None),
            Some(v) => usize::try_from(v)
                .map(Some)
                .map_err(|_| self.wrong(i, "a count")),
        }
    }

    /// A real column; SQLite may hand back an integer for a whole number.
    pub fn opt_real(&self, i: usize) -> DbResult<Option<f64>> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Real(v) => Ok(Some(*v)),
            Val::Int(v) => Ok(Some(*v as f64)),
            _ => Err(self.wrong(i, "a number")),
        }
    }

    pub fn real(&self, i: usize) -> DbResult<f64> {
        self.opt_real(i)?.ok_or_else(|| self.wrong(i, "a number"))
    }

    /// A text column holding JSON, read back typed: a value that does not parse is an error
    /// naming the column, never a default.
    pub fn json<T: serde::de::DeserializeOwned>(&self, i: usize) -> DbResult<T> {
        serde_json::from_str(&self.text(i)?).map_err(|e| {
            DbError::Damaged(format!(
                "column {} does not read back ({e}); the store is damaged",
                self.name(i)
            ))
        })
    }

    /// A text column holding a value with a textual form (seeds are u64, beyond SQL's
    /// integers; architectures; outcomes), read back typed.
    pub fn parsed<T: std::str::FromStr>(&self, i: usize) -> DbResult<T>
    where
        T::Err: fmt::Display,
    {
        self.text(i)?.parse().map_err(|e: T::Err| {
            DbError::Damaged(format!(
                "column {} does not read back ({e}); the store is damaged",
                self.name(i)
            ))
        })
    }
}

/// An open connection.
pub enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(Box<Pg>),
}

/// A PostgreSQL connection and its prepared statements: each statement is parsed by the
/// server once per connection, then only bound and run (one round trip instead of two), as
/// rusqlite's `prepare_cached` does for SQLite.
pub struct Pg {
    client: postgres::Client,
    prepared: std::collections::HashMap<String, postgres::Statement>,
}

impl Pg {
    pub fn new(client: postgres::Client) -> Pg {
        Pg {
            client,
            prepared: std::collections::HashMap::new(),
        }
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, postgres::Error> {
        if let Some(st) = self.prepared.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare(sql)?;
        self.prepared.insert(sql.to_string(), st.clone());
        Ok(st)
    }
}

/// The statement as this connection's dialect writes it.
fn dialect(sql: &str, postgres: bool) -> String {
    if postgres {
        sql.replace(
            "{now_ms}",
            "CAST(extract(epoch from clock_timestamp()) * 1000 AS BIGINT)",
        )
        .replace("{skip_locked}", "FOR UPDATE SKIP LOCKED")
        .replace("{binary}", " COLLATE \"C\"")
    } else {
        sql.replace(
            "{now_ms}",
            "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
        )
        .replace("{skip_locked}", "")
        .replace("{binary}", "")
        .replace('$', "?")
    }
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Val::Real(v) => ToSqlOutput::Borrowed(ValueRef::Real(*v)),
            Val::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

impl ToSql for Val {
    /// Written as the type the server inferred for the parameter, so the same value binds to
    /// a BIGINT, a DOUBLE PRECISION or a TEXT column alike.
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match (self, ty) {
            (Val::Null, _) => Ok(IsNull::Yes),
            (Val::Int(v), &Type::INT4) => i32::try_from(*v)?.to_sql(ty, out),
            (Val::Int(v), &Type::FLOAT8) => (*v as f64).to_sql(ty, out),
            (Val::Int(v), &Type::INT8) => v.to_sql(ty, out),
            (Val::Real(v), &Type::FLOAT8) => v.to_sql(ty, out),
            (Val::Text(s), _) => s.as_str().to_sql(ty, out),
            (v, ty) => Err(format!("cannot bind {v:?} to a {ty} parameter").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// A PostgreSQL value read back as a [`Val`], by its column's type.
fn pg_val(row: &postgres::Row, i: usize) -> DbResult<Val> {
    let ty = row.columns()[i].type_().clone();
    let got = |e: postgres::Error| DbError::Damaged(format!("column {i}: {e}"));
    Ok(match ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(got)?.into(),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)
            .map_err(got)?
            .map(i64::from)
            .into(),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i).map_err(got)?.into(),
        Type::BOOL => row.try_get::<_, Option<bool>>(i).map_err(got)?.into(),
        Type::TEXT | Type::VARCHAR | Type::NAME => {
            row.try_get::<_, Option<String>>(i).map_err(got)?.into()
        }
        other => {
            return Err(DbError::Damaged(format!(
                "column {i} has type {other}, which no shapelab column has"
            )))
        }
    })
}

/// An SQLite value read back as a [`Val`].
fn sqlite_val(v: rusqlite::types::ValueRef) -> DbResult<Val> {
    use rusqlite::types::ValueRef;
    Ok(match v {
        ValueRef::Null => Val::Null,
        ValueRef::Integer(i) => Val::Int(i),
        ValueRef::Real(r) => Val::Real(r),
        ValueRef::Text(t) => Val::Text(
            std::str::from_utf8(t)
                .map_err(|e| DbError::Damaged(format!("text that is not UTF-8 ({e})")))?
                .to_string(),
        ),
        ValueRef::Blob(_) => return Err(DbError::Damaged("a blob where none belongs".into())),
    })
}

fn pg_params(params: &[Val]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

impl Db {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// Runs a statement that returns rows.
    pub fn query(&mut self, sql: &str, params: &[Val]) -> DbResult<Vec<Row>> {
        let sql = dialect(sql, self.is_postgres());
        match self {
            Db::Sqlite(c) => {
                let mut st = c.prepare_cached(&sql)?;
                let n = st.column_count();
                let names: std::rc::Rc<Vec<String>> =
                    std::rc::Rc::new(st.column_names().map(str::to_string).collect());
                let mut rows = st.query(rusqlite::params_from_iter(params))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let vals = (0..n)
                        .map(|i| sqlite_val(r.get_ref(i)?))
                        .collect::<DbResult<Vec<Val>>>()?;
                    out.push(Row {
                        vals,
                        names: names.clone(),
                    });
                }
                Ok(out)
            }
            Db::Postgres(c) => {
                let st = c.statement(&sql)?;
                let rows = c.client.query(&st, &pg_params(params))?;
                let names: std::rc::Rc<Vec<String>> =
                    std::rc::Rc::new(st.columns().iter().map(|c| c.name().to_string()).collect());
                rows.iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| pg_val(r, i))
                            .collect::<DbResult<Vec<Val>>>()
                            .map(|vals| Row {
                                vals,
                                names: names.clone(),
                            })
                    })
                    .collect()
            }
        }
    }

    /// Runs a statement; returns the rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[Val]) -> DbResult<u64> {
        let sql = dialect(sql, self.is_postgres());
        match self {
            Db::Sqlite(c) => {
                let mut st = c.prepare_cached(&sql)?;
                Ok(st.execute(rusqlite::params_from_iter(params))? as u64)
            }
            Db::Postgres(c) => {
                let st = c.statement(&sql)?;
                Ok(c.client.execute(&st, &pg_params(params))?)
            }
        }
    }

    /// Runs statements without parameters, one after the other.
    pub fn batch(&mut self, sql: &str) -> DbResult<()> {
        let sql = dialect(sql, self.is_postgres());
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch(&sql)?),
            Db::Postgres(c) => Ok(c.client.batch_execute(&sql)?),
        }
    }

    /// Runs `f` in one transaction: committed when it returns `Ok`, rolled back otherwise.
    /// SQLite takes the write lock at once (`BEGIN IMMEDIATE`), so a read-then-write inside
    /// cannot race another writer.
    pub fn transaction<T>(&mut self, f: impl FnOnce(&mut Db) -> DbResult<T>) -> DbResult<T> {
        self.batch(if self.is_postgres() {
            "BEGIN"
        } else {
            "BEGIN IMMEDIATE"
        })?;
        match f(self) {
            Ok(v) => {
                self.batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialects_differ_only_in_placeholders_and_tokens() {
        let s = "SELECT key FROM claims WHERE a = $1 AND b < {now_ms} LIMIT 1 {skip_locked}";
        let lite = dialect(s, false);
        assert!(lite.contains("a = ?1") && lite.contains("julianday") && !lite.contains("SKIP"));
        let pg = dialect(s, true);
        assert!(
            pg.contains("a = $1") && pg.contains("clock_timestamp") && pg.contains("SKIP LOCKED")
        );
    }

    #[test]
    fn sqlite_rows_read_back_typed() {
        let mut db = Db::Sqlite(rusqlite::Connection::open_in_memory().unwrap());
        db.batch("CREATE TABLE t (a INTEGER, b REAL, c TEXT)")
            .unwrap();
        let n = db
            .execute("INSERT INTO t VALUES ($1, $2, $3)", &vals![3i64, 0.5, "x"])
            .unwrap();
        assert_eq!(n, 1);
        db.execute(
            "INSERT INTO t VALUES ($1, $2, $3)",
            &vals![None::<i64>, None::<f64>, None::<String>],
        )
        .unwrap();
        let rows = db
            .query("SELECT a, b, c FROM t ORDER BY a NULLS LAST", &[])
            .unwrap();
        assert_eq!(
            (rows[0].int(0).unwrap(), rows[0].real(1).unwrap()),
            (3, 0.5)
        );
        assert_eq!(rows[0].text(2).unwrap(), "x");
        assert_eq!(rows[1].opt_int(0).unwrap(), None);
        assert!(rows[1].text(2).is_err(), "NULL is not text");
        assert!(rows[0].text(0).is_err(), "an integer is not text");
        assert!(rows[0].count(0).is_ok());
        let r = db.transaction(|db| {
            db.execute("INSERT INTO t VALUES (1, 1, 'y')", &[])?;
            Err::<(), _>(DbError::Other("no".into()))
        });
        assert!(r.is_err());
        assert_eq!(
            db.query("SELECT count(*) FROM t", &[]).unwrap()[0]
                .int(0)
                .unwrap(),
            2
        );
    }
}
