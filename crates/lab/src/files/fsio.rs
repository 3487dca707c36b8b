//! Writing outputs so that an interrupted run never leaves a half file under the final name.
//!
//! Files are written to a temporary name in the destination directory, flushed and synced,
//! then renamed over the final name (atomic on POSIX filesystems). Directory trees are built
//! under a temporary name beside the destination and renamed into place the same way. An
//! existing output is only replaced when the caller passes `force`, and an existing directory
//! only if shapelab wrote it (`output`). Temporary names say which process made them, so the
//! next write in the same directory removes what a killed writer left (`leftovers`).

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// What an output path should hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
}

/// Checks an output path before any work: not empty, of the right kind if it exists,
/// replaced only with `force` and (for a directory) only if shapelab wrote it; then creates
/// its parent directories and clears stale leftovers of killed writers there.
fn prepare(path: &Path, force: bool, kind: Kind) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(Error::Usage(
            "the output path is empty; pass --out PATH".into(),
        ));
    }
    // One look at the path: another process may be replacing the same tree right now.
    let is_dir = fs::metadata(path).ok().map(|m| m.is_dir());
    match (kind, is_dir) {
        (Kind::File, Some(true)) => {
            return Err(Error::Usage(format!(
                "{} is a directory; give a file path to --out",
                path.display()
            )))
        }
        (Kind::Dir, Some(false)) => {
            return Err(Error::Usage(format!(
                "{} is a file; give a directory path to --out",
                path.display()
            )))
        }
        (Kind::Dir, Some(true)) => crate::files::output::check_ours(path)?,
        _ => {}
    }
    if is_dir.is_some() && !force {
        return Err(Error::Exists(path.to_path_buf()));
    }
    let parent = parent_dir(path);
    if let Some(file) = parent.ancestors().find(|a| a.is_file()) {
        return Err(Error::bad(
            file,
            "is a file, so it cannot hold the output; choose another --out",
        ));
    }
    fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    crate::files::leftovers::sweep(&parent);
    Ok(())
}

/// [`prepare`] for a file.
pub fn prepare_file(path: &Path, force: bool) -> Result<()> {
    prepare(path, force, Kind::File)
}

/// [`prepare`] for a directory tree.
pub fn prepare_dir(path: &Path, force: bool) -> Result<()> {
    prepare(path, force, Kind::Dir)
}

/// A directory of derived files that a command refreshes on every run (prune's and analyze's
/// results): created if needed and marked as shapelab's; an existing directory that shapelab
/// did not write is refused.
pub fn derived_dir(path: &Path) -> Result<()> {
    prepare_dir(path, true)?;
    fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
    crate::files::output::mark(path)
}

/// Writes `STEM.json` (`value`, pretty, with a final newline) and `STEM.csv` (`csv`) into the
/// derived directory `out`, each atomically; returns their paths.
pub fn write_json_and_csv(
    out: &Path,
    stem: &str,
    value: &impl serde::Serialize,
    csv: Vec<u8>,
) -> Result<Vec<PathBuf>> {
    derived_dir(out)?;
    let json = serde_json::to_string_pretty(value).expect("our types serialise") + "\n";
    let mut written = Vec::new();
    for (ext, bytes) in [("json", json.into_bytes()), ("csv", csv)] {
        let p = out.join(format!("{stem}.{ext}"));
        write_file_atomic(&p, true, |w| w.write_all(&bytes))?;
        written.push(p);
    }
    Ok(written)
}

/// tempfile's errors repeat the path; name the directory once with the reason.
fn cannot_create_in(dir: &Path, e: std::io::Error) -> Error {
    use std::io::ErrorKind::*;
    let reason = match e.kind() {
        NotFound => {
            "cannot create files here (no such directory, or a special filesystem)".to_string()
        }
        PermissionDenied => {
            "cannot create files here (permission denied); choose a writable --out".to_string()
        }
        ReadOnlyFilesystem => "cannot create files here (read-only file system)".to_string(),
        other => format!("cannot create files here ({other})"),
    };
    Error::io(dir, std::io::Error::new(e.kind(), reason))
}

/// `.shapelab-<pid>@<host>-`: staged names say who wrote them (see `leftovers`).
static STAGED_PREFIX: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{}{}-",
        crate::files::leftovers::PREFIX,
        crate::files::leftovers::tag()
    )
});

/// A temporary-name builder. Temporary files are private (0600) by default; outputs get the
/// usual mode, which the process umask then narrows (0644 and 0755 with the common umask 022).
fn staging(mode: u32) -> tempfile::Builder<'static, 'static> {
    let mut b = tempfile::Builder::new();
    b.prefix(STAGED_PREFIX.as_str())
        .suffix(crate::files::leftovers::SUFFIX);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    b
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes a file atomically through `write`, replacing an existing one only if `force`.
pub fn write_file_atomic(
    path: &Path,
    force: bool,
    write: impl FnOnce(&mut BufWriter<&fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    prepare_file(path, force)?;
    let dir = parent_dir(path);
    let tmp = staging(0o666)
        .tempfile_in(&dir)
        .map_err(|e| cannot_create_in(&dir, e))?;
    {
        let mut w = BufWriter::new(tmp.as_file());
        write(&mut w)
            .and_then(|_| w.flush())
            .map_err(|e| Error::io(path, e))?;
    }
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Builds a directory tree atomically: `fill` writes into a fresh temporary directory, which
/// then takes the place of `path` (an existing tree is replaced only if `force`).
pub fn write_dir_atomic(
    path: &Path,
    force: bool,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    prepare_dir(path, force)?;
    let dir = parent_dir(path);
    let tmp = staging(0o777)
        .tempdir_in(&dir)
        .map_err(|e| cannot_create_in(&dir, e))?;
    fill(tmp.path())?;
    crate::files::output::mark(tmp.path())?;
    let staged = tmp.keep();
    let placed = place_tree(&staged, path, &dir);
    if placed.is_err() {
        let _ = fs::remove_dir_all(&staged);
    }
    placed
}

/// Builds a directory tree that is named by its content (a model directory of a `--worker`
/// sweep): `fill` writes into a fresh temporary directory, which is renamed to `path` only if
/// nothing is there; a tree already at `path` (the same content, finished by another worker)
/// is never replaced. Returns whether this call placed it.
pub fn write_dir_once(path: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    let dir = parent_dir(path);
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    // What a killed worker staged for this run on this host goes (see `leftovers`).
    crate::files::leftovers::sweep(&dir);
    let tmp = staging(0o777)
        .tempdir_in(&dir)
        .map_err(|e| cannot_create_in(&dir, e))?;
    fill(tmp.path())?;
    crate::files::output::mark(tmp.path())?;
    match fs::rename(tmp.path(), path) {
        Ok(()) => {
            // Renamed away: nothing left for the guard to remove.
            let _ = tmp.keep();
            Ok(true)
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::DirectoryNotEmpty | std::io::ErrorKind::AlreadyExists
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Renames the staged tree to `path`, moving an existing tree aside first so the new one
/// appears in one rename. Another process may be replacing the same tree at the same moment
/// (two sweeps sharing a store write the same run, byte for byte): when the destination
/// reappears or vanishes between the two renames, the move is tried again.
fn place_tree(staged: &Path, path: &Path, dir: &Path) -> Result<()> {
    use std::io::ErrorKind;
    const ATTEMPTS: usize = 20;
    let raced = |e: &std::io::Error| {
        matches!(
            e.kind(),
            ErrorKind::DirectoryNotEmpty | ErrorKind::AlreadyExists | ErrorKind::NotFound
        )
    };
    for attempt in 1..=ATTEMPTS {
        let old = if path.exists() {
            let old = tempfile::Builder::new()
                .prefix(&format!(
                    "{}{}-",
                    crate::files::leftovers::OLD_PREFIX,
                    crate::files::leftovers::tag()
                ))
                .tempdir_in(dir)
                .map_err(|e| Error::io(dir, e))?
                .keep();
            if let Err(e) = fs::rename(path, old.join("tree")) {
                let _ = fs::remove_dir_all(&old);
                if raced(&e) && attempt < ATTEMPTS {
                    continue;
                }
                return Err(Error::io(path, e));
            }
            Some(old)
        } else {
            None
        };
        let r = fs::rename(staged, path);
        if let Some(old) = old {
            fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        match r {
            Ok(()) => return Ok(()),
            Err(e) if raced(&e) && attempt < ATTEMPTS => continue,
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    unreachable!("the last attempt returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_named_by_content_is_placed_once_and_clears_dead_staging() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("runs").join("k").join("abc");
        // What a killed worker staged beside it, on this host.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let host = crate::files::leftovers::tag().split_once('@').unwrap().1;
        let stale = dir
            .path()
            .join("runs/k")
            .join(format!(".shapelab-{dead}@{host}-zzzz.partial"));
        fs::create_dir_all(&stale).unwrap();
        let write = |text: &'static str| {
            move |d: &Path| fs::write(d.join("a"), text).map_err(|e| Error::io(d, e))
        };
        assert!(write_dir_once(&p, write("first")).unwrap());
        assert!(!stale.exists(), "the dead writer's staging is gone");
        // A duplicate never replaces the finished tree, and leaves nothing behind.
        assert!(!write_dir_once(&p, write("second")).unwrap());
        assert_eq!(fs::read_to_string(p.join("a")).unwrap(), "first");
        let names: Vec<_> = fs::read_dir(dir.path().join("runs/k"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["abc"]);
    }

    #[test]
    fn concurrent_replacements_of_one_tree_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run");
        std::thread::scope(|s| {
            for t in 0..4 {
                let p = &p;
                s.spawn(move || {
                    for _ in 0..25 {
                        write_dir_atomic(p, true, |d| {
                            fs::write(d.join("model.json"), b"same bytes")
                                .map_err(|e| Error::io(d, e))
                        })
                        .unwrap_or_else(|e| panic!("writer {t}: {e}"));
                    }
                });
            }
        });
        assert_eq!(fs::read(p.join("model.json")).unwrap(), b"same bytes");
        // Nothing left behind: no staged or set-aside trees.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("run")]);
    }

    #[test]
    fn refuses_existing_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_file_atomic(&p, false, |w| w.write_all(b"one")).unwrap();
        let e = write_file_atomic(&p, false, |w| w.write_all(b"two")).unwrap_err();
        assert!(matches!(e, Error::Exists(_)));
        assert_eq!(fs::read(&p).unwrap(), b"one");
        write_file_atomic(&p, true, |w| w.write_all(b"two")).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
    }

    #[test]
    fn failed_write_keeps_the_old_file_and_leaves_no_partial() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_file_atomic(&p, false, |w| w.write_all(b"good")).unwrap();
        let e = write_file_atomic(&p, true, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("interrupted"))
        });
        assert!(e.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"good");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[cfg(unix)]
    #[test]
    fn outputs_are_not_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_file_atomic(&p, false, |w| w.write_all(b"x")).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_ne!(
            mode & 0o044,
            0,
            "readable by others unless the umask forbids: {mode:o}"
        );
        let t = dir.path().join("tree");
        write_dir_atomic(&t, false, |_| Ok(())).unwrap();
        let mode = fs::metadata(&t).unwrap().permissions().mode() & 0o777;
        assert_ne!(mode & 0o055, 0, "{mode:o}");
    }

    #[test]
    fn creates_parents_and_replaces_trees() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("deep/er/tree");
        write_dir_atomic(&p, false, |d| {
            fs::write(d.join("x"), "1").map_err(|e| Error::io(d, e))
        })
        .unwrap();
        assert!(write_dir_atomic(&p, false, |_| Ok(())).is_err());
        write_dir_atomic(&p, true, |d| {
            fs::write(d.join("y"), "2").map_err(|e| Error::io(d, e))
        })
        .unwrap();
        assert!(!p.join("x").exists() && p.join("y").exists());
        let leftovers = fs::read_dir(dir.path().join("deep/er")).unwrap().count();
        assert_eq!(leftovers, 1);
    }
}
