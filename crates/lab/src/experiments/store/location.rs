//! Where a store lives: an SQLite file (the embedded default) or a PostgreSQL database named by
//! a `postgres://` URL, as the user writes it after `--store`.
//!
//! It exists so that every command parses, names and redacts a store the same way: a URL is
//! shown without its password in every message. It must not open anything.

use std::path::{Path, PathBuf};

/// A store's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// An SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, as a `postgres://` or `postgresql://` URL (which may hold a
    /// password: [`StoreUrl`]'s `Display` never shows it).
    Postgres(String),
}

impl StoreUrl {
    /// The SQLite file, if this is one.
    pub fn as_path(&self) -> Option<&Path> {
        match self {
            StoreUrl::Sqlite(p) => Some(p),
            StoreUrl::Postgres(_) => None,
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, StoreUrl::Postgres(_))
    }

    /// A PostgreSQL store's database name, as its URL gives it.
    pub fn database(&self) -> Option<String> {
        match self {
            StoreUrl::Postgres(raw) => raw
                .parse::<postgres::Config>()
                .ok()
                .and_then(|c| c.get_dbname().map(str::to_string)),
            StoreUrl::Sqlite(_) => None,
        }
    }

    /// The same store without any password in its address, for writing down (its `Display`
    /// is then the whole address): the password comes from `PGPASSWORD`, or a `--store` given
    /// again, when it is opened.
    pub fn without_password(&self) -> StoreUrl {
        match self {
            StoreUrl::Postgres(url) => StoreUrl::Postgres(rewrite_password(url, None)),
            StoreUrl::Sqlite(_) => self.clone(),
        }
    }

    /// Where files derived from the store go by default: beside an SQLite file, in the
    /// working directory for a database.
    pub fn directory(&self) -> PathBuf {
        match self.as_path().and_then(Path::parent) {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

/// Whether `s` names a PostgreSQL database rather than a file.
fn is_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

impl std::str::FromStr for StoreUrl {
    type Err = String;

    /// A `postgres://` URL is checked by the client's own parser; anything else is a path.
    fn from_str(s: &str) -> Result<StoreUrl, String> {
        if is_url(s) {
            s.parse::<postgres::Config>().map_err(|e| {
                format!(
                    "{} is not a valid PostgreSQL URL ({e}); write postgres://USER@HOST:PORT/DATABASE",
                    redact(s)
                )
            })?;
            Ok(StoreUrl::Postgres(s.to_string()))
        } else if s.is_empty() {
            Err("an empty --store; give a file path or a postgres:// URL".into())
        } else {
            Ok(StoreUrl::Sqlite(PathBuf::from(s)))
        }
    }
}

/// `url` with any password replaced by `***`: in the user part (`user:secret@host`) and in a
/// `password=` parameter.
pub fn redact(url: &str) -> String {
    rewrite_password(url, Some("***"))
}

/// `url` with its password rewritten: replaced by `with`, or dropped when `with` is `None`.
fn rewrite_password(url: &str, with: Option<&str>) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest
        .find(['/', '?'])
        .map_or((rest, ""), |i| (&rest[..i], &rest[i..]));
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match (user.split_once(':'), with) {
            (Some((name, _)), Some(w)) => format!("{name}:{w}@{host}"),
            (Some((name, _)), None) => format!("{name}@{host}"),
            (None, _) => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let q: Vec<String> = query
                .split('&')
                .filter_map(|kv| match (kv.split_once('='), with) {
                    (Some(("password", _)), Some(w)) => Some(format!("password={w}")),
                    (Some(("password", _)), None) => None,
                    _ => Some(kv.to_string()),
                })
                .collect();
            match q.is_empty() {
                true => path.to_string(),
                false => format!("{path}?{}", q.join("&")),
            }
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(p) => write!(f, "{}", p.display()),
            StoreUrl::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

impl From<&Path> for StoreUrl {
    fn from(p: &Path) -> StoreUrl {
        StoreUrl::Sqlite(p.to_path_buf())
    }
}

impl From<&PathBuf> for StoreUrl {
    fn from(p: &PathBuf) -> StoreUrl {
        StoreUrl::Sqlite(p.clone())
    }
}

impl From<PathBuf> for StoreUrl {
    fn from(p: PathBuf) -> StoreUrl {
        StoreUrl::Sqlite(p)
    }
}

impl From<&StoreUrl> for StoreUrl {
    fn from(u: &StoreUrl) -> StoreUrl {
        u.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_parse_and_passwords_never_show() {
        let u: StoreUrl = "postgres://ana:s3cret@db.example:5433/lab?sslmode=disable"
            .parse()
            .unwrap();
        assert!(u.is_postgres());
        assert_eq!(
            u.to_string(),
            "postgres://ana:***@db.example:5433/lab?sslmode=disable"
        );
        let q: StoreUrl = "postgresql:///lab?host=/tmp/s&password=hunter2&user=x"
            .parse()
            .unwrap();
        assert_eq!(
            q.to_string(),
            "postgresql:///lab?host=/tmp/s&password=***&user=x"
        );
        let p: StoreUrl = "results/s.db".parse().unwrap();
        assert_eq!(p.as_path(), Some(Path::new("results/s.db")));
        let e = "postgres://ana:pw@h:notaport/db"
            .parse::<StoreUrl>()
            .unwrap_err();
        assert!(
            e.contains("not a valid PostgreSQL URL") && !e.contains("pw@"),
            "{e}"
        );
        assert!("".parse::<StoreUrl>().is_err());
    }

    #[test]
    fn a_url_written_down_keeps_everything_but_its_password() {
        let cases = [
            (
                "postgres://ana:s3cret@db.example:5433/lab?sslmode=disable",
                "postgres://ana@db.example:5433/lab?sslmode=disable",
            ),
            (
                "postgresql:///lab?host=/tmp/s&password=hunter2&user=x",
                "postgresql:///lab?host=/tmp/s&user=x",
            ),
            ("postgres://ana@h/db?password=x", "postgres://ana@h/db"),
            ("postgres://h/db", "postgres://h/db"),
        ];
        for (given, written) in cases {
            let u: StoreUrl = given.parse().unwrap();
            let w = u.without_password();
            assert_eq!(w.to_string(), written, "{given}");
            // Still a URL the client parses, naming the same database.
            assert_eq!(w.to_string().parse::<StoreUrl>().unwrap(), w);
            assert_eq!(w.database(), u.database());
        }
        let p: StoreUrl = "a/s.db".parse().unwrap();
        assert_eq!(p.without_password(), p);
    }
}
