//! Cleaning up what a killed writer left behind.
//!
//! `fsio` stages every output under a temporary name that says who made it:
//! `.shapelab-<pid>@<host>-<random>.partial` for a file or a tree being built, and
//! `.shapelab-old-<pid>@<host>-<random>` for a tree set aside while it is replaced. A SIGKILL
//! (or a power cut) leaves such a name behind, and nothing else would ever remove it.
//!
//! The first time a process stages an output in a directory, [`sweep`] removes the leftovers
//! there whose writer is certainly gone:
//! - a tagged name from this host whose process no longer exists;
//! - an untagged name (written by shapelab 0.1 before names were tagged) last modified before
//!   this process started.
//!
//! It must never remove a name whose writer may still be running: a live process on this
//! host (another sweep sharing the store), or any process on another host (a cluster's
//! shared filesystem), whose liveness cannot be seen from here. Cleaning is best effort: a
//! leftover that cannot be removed (permissions, a race with another cleaner) is left for
//! the next run rather than failing the command that only wanted to write its own output.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::SystemTime;

/// Every staged name starts with this.
pub const PREFIX: &str = ".shapelab-";
/// Staged files and trees end with this.
pub const SUFFIX: &str = ".partial";
/// Trees set aside during a replacement start with this.
pub const OLD_PREFIX: &str = ".shapelab-old-";

/// When this process began staging outputs (set at the first staged write).
static STARTED: LazyLock<SystemTime> = LazyLock::new(SystemTime::now);

/// Directories already swept by this process.
static SWEPT: LazyLock<Mutex<HashSet<PathBuf>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// `<pid>@<host>`: who stages an output, written into its temporary name.
pub fn tag() -> &'static str {
    static TAG: LazyLock<String> = LazyLock::new(|| {
        LazyLock::force(&STARTED);
        format!("{}@{}", std::process::id(), host())
    });
    &TAG
}

/// This machine's host name, reduced to characters safe in a file name (no `-`, which
/// separates the tag from tempfile's random part).
fn host() -> String {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if clean.is_empty() {
        "localhost".into()
    } else {
        clean
    }
}

/// Who made a staged name, if it is one of ours.
#[derive(Debug, PartialEq, Eq)]
enum Writer {
    /// A tagged name: process and host.
    Tagged { pid: u32, host: String },
    /// A name from before tags.
    Untagged,
}

/// Parses a directory entry's name: `None` when it is not a staged name.
fn writer_of(name: &str) -> Option<Writer> {
    let rest = if let Some(r) = name.strip_prefix(OLD_PREFIX) {
        r
    } else {
        name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?
    };
    let Some((pid, after)) = rest.split_once('@') else {
        return Some(Writer::Untagged);
    };
    let (host, _random) = after.rsplit_once('-')?;
    match pid.parse() {
        Ok(pid) => Some(Writer::Tagged {
            pid,
            host: host.to_string(),
        }),
        Err(_) => Some(Writer::Untagged),
    }
}

/// True when process `pid` exists on this host.
fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the process exists; nothing is sent.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// True when the leftover `path` (named for `writer`) can no longer be written to.
fn stale(path: &Path, writer: &Writer) -> bool {
    match writer {
        Writer::Tagged { pid, host: h } => *h == host() && !alive(*pid),
        Writer::Untagged => fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < *STARTED),
    }
}

/// Removes the stale leftovers in `dir` (once per directory per process); returns how many.
pub fn sweep(dir: &Path) -> usize {
    let key = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if !SWEPT.lock().expect("sweep lock").insert(key) {
        return 0;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(writer) = name.to_str().and_then(writer_of) else {
            continue;
        };
        let path = entry.path();
        if !stale(&path, &writer) {
            continue;
        }
        let gone = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        // Best effort (see the module docs): a leftover that resists stays for the next run.
        if gone.is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(
            writer_of(".shapelab-123@box.lan-AbC9.partial"),
            Some(Writer::Tagged {
                pid: 123,
                host: "box.lan".into()
            })
        );
        assert_eq!(
            writer_of(".shapelab-old-7@h-x1"),
            Some(Writer::Tagged {
                pid: 7,
                host: "h".into()
            })
        );
        assert_eq!(writer_of(".shapelab-AbC9.partial"), Some(Writer::Untagged));
        assert_eq!(writer_of(".shapelab-old-AbC9"), Some(Writer::Untagged));
        assert_eq!(writer_of("model.json"), None);
        assert_eq!(writer_of(".shapelab"), None);
        assert_eq!(writer_of(".shapelab-x.npz"), None);
    }

    #[test]
    fn removes_dead_writers_only() {
        let dir = tempfile::tempdir().unwrap();
        // A process that has exited: its pid is free (or reused, which only keeps the file).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let h = host();
        let dead_file = dir
            .path()
            .join(format!(".shapelab-{dead}@{h}-aaaa.partial"));
        let dead_tree = dir.path().join(format!(".shapelab-old-{dead}@{h}-bbbb"));
        let mine = dir
            .path()
            .join(format!(".shapelab-{}@{h}-cccc.partial", std::process::id()));
        let other_host = dir
            .path()
            .join(format!(".shapelab-{dead}@elsewhere-dddd.partial"));
        fs::write(&dead_file, "x").unwrap();
        fs::create_dir_all(dead_tree.join("tree")).unwrap();
        fs::write(&mine, "x").unwrap();
        fs::write(&other_host, "x").unwrap();
        fs::write(dir.path().join("keep.npz"), "x").unwrap();
        let removed = sweep(dir.path());
        assert!(!dead_file.exists() && !dead_tree.exists());
        assert!(mine.exists() && other_host.exists());
        assert!(dir.path().join("keep.npz").exists());
        assert_eq!(removed, 2);
        // Once per directory per process.
        fs::write(&dead_file, "x").unwrap();
        assert_eq!(sweep(dir.path()), 0);
    }
}
