//! Integration tests: the real `shapelab` binary driven in temporary directories.

mod bad_input;
mod compare;
mod dissect;
mod errors;
mod explorer;
mod foreign;
mod generate;
mod inside;
mod inspect;
mod postgres;
mod prune;
mod serve;
mod study;
mod sweep;
mod train;
mod unicode;

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// The binary under test.
pub fn shapelab() -> Command {
    Command::cargo_bin("shapelab").expect("binary built")
}

/// Debian's Chromium, when installed. When it is not, a browser test is skipped with a note,
/// unless `SHAPELAB_REQUIRE_BROWSER` is set (scripts/test.sh sets it), which fails it.
pub fn chromium() -> Option<&'static str> {
    browser_tool(&["chromium", "chromium-browser"])
}

/// The first of `names` that runs (`NAME --version`), under the rule of [`chromium`].
pub fn browser_tool(names: &[&'static str]) -> Option<&'static str> {
    let found = names.iter().copied().find(|b| {
        std::process::Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("SHAPELAB_REQUIRE_BROWSER").is_none(),
            "SHAPELAB_REQUIRE_BROWSER is set but {} is not installed (run scripts/test.sh)",
            names[0]
        );
        eprintln!(
            "{} not installed: browser check skipped (scripts/test.sh installs it)",
            names[0]
        );
    }
    found
}

/// A temporary working directory.
pub fn workdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Runs `shapelab ARGS` in `dir`, expecting success, and returns stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = shapelab()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "shapelab {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs `shapelab ARGS` in `dir`, expecting exit `code`, and returns stderr, which must be
/// exactly one line starting with `error: `.
pub fn fails(dir: &Path, args: &[&str], code: i32) -> String {
    let out = shapelab()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("runs");
    let err = String::from_utf8(out.stderr).expect("utf-8 output");
    assert_eq!(out.status.code(), Some(code), "shapelab {args:?}: {err}");
    assert!(err.starts_with("error: "), "shapelab {args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

/// Generates `d.npz` (the size preset with `train` training images) in `dir` and trains
/// `arch` on it for `epochs` into `run`: the set-up most model tests share.
pub fn trained_run(dir: &Path, train: usize, arch: &str, epochs: usize) {
    let (train, epochs) = (train.to_string(), epochs.to_string());
    ok(
        dir,
        &[
            "generate", "--preset", "size", "--train", &train, "--out", "d.npz",
        ],
    );
    ok(
        dir,
        &[
            "train", "--data", "d.npz", "--arch", arch, "--epochs", &epochs, "--out", "run",
        ],
    );
}

/// `inspect --json` of a path, parsed.
pub fn inspect_json(dir: &Path, path: &str) -> serde_json::Value {
    serde_json::from_str(&ok(dir, &["inspect", path, "--json", "--no-sheet"])).expect("JSON")
}

/// The committed fixtures.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Every `.shapelab-*` staging name left anywhere under `dir` (a killed writer's).
pub fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("readable") {
            let e = e.expect("entry");
            if e.file_name().to_string_lossy().starts_with(".shapelab-") {
                found.push(e.path());
            } else if e.file_type().expect("type").is_dir() {
                stack.push(e.path());
            }
        }
    }
    found
}
