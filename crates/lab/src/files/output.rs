//! Outputs that never destroy what the user has.
//!
//! Two rules, checked before a command touches anything:
//! 1. **An output is disjoint from the command's inputs** ([`check_disjoint`]): it may not be,
//!    contain, or replace a file the command reads (a model, a dataset, a store, a panel, a
//!    config), nor lie inside a dataset tree (a new folder there would become a class). A
//!    model directory is the one input an output may lie inside, as a new subfolder (prune's
//!    and analyze's results go there by default); its own files stay out of reach.
//! 2. **`--force` replaces only what shapelab wrote** ([`check_ours`]): every directory
//!    shapelab writes carries a [`MARKER`] file; an existing directory without it (and without
//!    the files shapelab 0.1 wrote before the marker existed) is refused even with `--force`.
//!
//! Paths are compared after resolving symlinks and `..` in their longest existing prefix, so
//! `runs/../runs/m`, `./runs/m` and a symlink to it are one path. This module decides; it
//! must not write anything except the marker.

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// The file that marks a directory as written by shapelab.
pub const MARKER: &str = ".shapelab";

/// What the marker says, for a person who opens it.
const MARKER_TEXT: &str =
    "written by shapelab: `--force` may replace this directory; delete this file to protect it\n";

/// Files whose presence shows a directory was written by shapelab 0.1, before the marker:
/// a model directory, an ImageFolder dataset, activation or kernel sheets, a pruning result,
/// an analysis, a study, a study's case.
const LEGACY_SIGNS: [&str; 7] = [
    "model.json",
    "factors.csv",
    "layer-1.png",
    "prune.json",
    "analysis.json",
    "study.toml",
    "filters.json",
];

/// The files of a model directory that commands read.
const MODEL_FILES: [&str; 3] = ["model.json", "model.safetensors", "history.csv"];

/// Something a command reads, for [`check_disjoint`].
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// A file read whole: a dataset or panel `.npz`, a spec, an experiment, a study config.
    File(&'a Path),
    /// A directory read whole: an ImageFolder dataset. Nothing may be written inside it.
    Tree(&'a Path),
    /// A model directory: its files are read; new subfolders may be written inside it.
    Model(&'a Path),
    /// An SQLite store, with its `-wal` and `-shm` companions.
    Store(&'a Path),
}

impl Input<'_> {
    /// A `--data` argument: the path it names if it exists (a preset reads no file).
    pub fn data(arg: &str) -> Option<Input<'_>> {
        Input::at(Path::new(arg))
    }

    /// An existing dataset path: a tree if it is a directory, else a file.
    pub fn at(p: &Path) -> Option<Input<'_>> {
        if p.is_dir() {
            Some(Input::Tree(p))
        } else if p.exists() {
            Some(Input::File(p))
        } else {
            None
        }
    }

    fn path(&self) -> &Path {
        match self {
            Input::File(p) | Input::Tree(p) | Input::Model(p) | Input::Store(p) => p,
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Input::File(_) => "a file it reads",
            Input::Tree(_) => "the dataset it reads",
            Input::Model(_) => "the model it reads",
            Input::Store(_) => "the store it reads",
        }
    }

    /// The paths that must stay out of an output's reach, and whether the output may lie
    /// inside the first of them.
    fn protected(&self) -> (Vec<PathBuf>, bool) {
        let p = resolve(self.path());
        match self {
            Input::File(_) | Input::Tree(_) => (vec![p], false),
            Input::Model(_) => {
                let mut v = vec![p.clone()];
                v.extend(MODEL_FILES.iter().map(|f| p.join(f)));
                (v, true)
            }
            Input::Store(_) => {
                let mut v = vec![p.clone()];
                for s in ["-wal", "-shm", "-journal"] {
                    let mut name = p.as_os_str().to_owned();
                    name.push(s);
                    v.push(PathBuf::from(name));
                }
                (v, false)
            }
        }
    }
}

/// `path` made absolute with symlinks and `..` resolved in its longest existing prefix; the
/// rest (which does not exist yet) is appended with `.` and `..` applied lexically.
pub fn resolve(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = fs::canonicalize(existing) {
            let mut out = real;
            for c in rest.iter().rev() {
                match c {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::CurDir => {}
                    c => out.push(c.as_os_str()),
                }
            }
            return out;
        }
        match (existing.parent(), existing.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                existing = parent;
            }
            _ => return abs,
        }
    }
}

/// Refuses `out` when it overlaps one of `inputs` (rule 1 of the module docs). `flag` names
/// the option that chose `out`, for the message.
pub fn check_disjoint(out: &Path, flag: &str, inputs: &[Input]) -> Result<()> {
    let o = resolve(out);
    for input in inputs {
        let (protected, inside_ok) = input.protected();
        let root = &protected[0];
        let hit = protected.iter().any(|p| p.starts_with(&o))
            || (!inside_ok && o.starts_with(root) && o != *root);
        if hit {
            let how = if o == *root {
                "is"
            } else if root.starts_with(&o) {
                "contains"
            } else if o.starts_with(root) && !inside_ok {
                "lies inside"
            } else {
                "would replace a file of"
            };
            return Err(Error::Overlap {
                out: out.to_path_buf(),
                flag: flag.to_string(),
                how,
                input: input.path().to_path_buf(),
                what: input.what(),
            });
        }
    }
    Ok(())
}

/// True when `dir` is empty, carries the [`MARKER`], or holds a file that shapelab 0.1 wrote
/// before the marker existed.
///
/// Another process may be replacing the same tree at this moment (two sweeps sharing a store
/// write the same run directory): a directory that vanishes holds nothing to lose, and one
/// seen without its marker is looked at again, since the look may have fallen between the
/// old tree moving aside and the new one arriving.
pub fn is_ours(dir: &Path) -> Result<bool> {
    for _ in 0..3 {
        let empty = match fs::read_dir(dir) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(Error::io(dir, e)),
        };
        if empty {
            return Ok(true);
        }
        if dir.join(MARKER).is_file() || LEGACY_SIGNS.iter().any(|f| dir.join(f).is_file()) {
            return Ok(true);
        }
        if !dir.exists() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Refuses to replace an existing directory that shapelab did not write (rule 2).
pub fn check_ours(dir: &Path) -> Result<()> {
    if !is_ours(dir)? {
        return Err(Error::NotOurs(dir.to_path_buf()));
    }
    Ok(())
}

/// Writes the [`MARKER`] into `dir`.
pub fn mark(dir: &Path) -> Result<()> {
    let p = dir.join(MARKER);
    fs::write(&p, MARKER_TEXT).map_err(|e| Error::io(&p, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("runs/m")).unwrap();
        fs::write(t.path().join("runs/m/model.json"), "{}").unwrap();
        fs::create_dir_all(t.path().join("tree/train/a")).unwrap();
        fs::write(t.path().join("d.npz"), "x").unwrap();
        t
    }

    fn refused(out: &Path, inputs: &[Input]) -> Option<&'static str> {
        match check_disjoint(out, "--out", inputs) {
            Ok(()) => None,
            Err(Error::Overlap { how, .. }) => Some(how),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn overlaps_are_named() {
        let t = setup();
        let p = |s: &str| t.path().join(s);
        let model = p("runs/m");
        let m = [Input::Model(&model)];
        assert_eq!(refused(&p("runs/m"), &m), Some("is"));
        assert_eq!(refused(&p("runs"), &m), Some("contains"));
        assert_eq!(refused(&p("runs/./x/../m"), &m), Some("is"));
        assert_eq!(
            refused(&p("runs/m/model.json"), &m),
            Some("would replace a file of")
        );
        assert_eq!(refused(&p("runs/m/prune-val-batch"), &m), None);
        assert_eq!(refused(&p("runs/m2"), &m), None);
        let tree = p("tree");
        assert_eq!(
            refused(&p("tree/train/new"), &[Input::Tree(&tree)]),
            Some("lies inside")
        );
        assert_eq!(refused(&p("tree"), &[Input::Tree(&tree)]), Some("is"));
        let npz = p("d.npz");
        assert_eq!(refused(&p("d.npz"), &[Input::File(&npz)]), Some("is"));
        assert_eq!(refused(&p("e.npz"), &[Input::File(&npz)]), None);
        let db = p("s.db");
        assert_eq!(
            refused(&p("s.db-wal"), &[Input::Store(&db)]),
            Some("would replace a file of")
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_resolve() {
        let t = setup();
        std::os::unix::fs::symlink(t.path().join("runs"), t.path().join("link")).unwrap();
        let model = t.path().join("runs/m");
        assert_eq!(
            refused(&t.path().join("link/m"), &[Input::Model(&model)]),
            Some("is")
        );
    }

    #[test]
    fn ownership() {
        let t = setup();
        assert!(
            is_ours(&t.path().join("runs/m")).unwrap(),
            "legacy model dir"
        );
        fs::create_dir_all(t.path().join("empty")).unwrap();
        assert!(is_ours(&t.path().join("empty")).unwrap());
        fs::create_dir_all(t.path().join("photos")).unwrap();
        fs::write(t.path().join("photos/cat.jpg"), "x").unwrap();
        assert!(matches!(
            check_ours(&t.path().join("photos")),
            Err(Error::NotOurs(_))
        ));
        let e = check_ours(&t.path().join("photos"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(MARKER), "the message names the marker: {e}");
        mark(&t.path().join("photos")).unwrap();
        assert!(check_ours(&t.path().join("photos")).is_ok());
    }
}
