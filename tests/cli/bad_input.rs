//! Bad input: one clear line naming the value and the fix, exit 2 for usage and 1 for
//! failures, and nothing already saved is lost.

use std::fs;
use std::time::Duration;

use crate::{fails, ok, shapelab, workdir};

#[test]
fn unknown_names() {
    let dir = workdir();
    let e = fails(
        dir.path(),
        &["generate", "--preset", "thesis-9", "--out", "x.npz"],
        2,
    );
    assert!(e.contains("`thesis-9`") && e.contains("thesis-1.3"), "{e}");
    let e = fails(
        dir.path(),
        &["generate", "--panel", "faces", "--out", "x.npz"],
        2,
    );
    assert!(e.contains("`faces`") && e.contains("thesis-size"), "{e}");
    assert!(!dir.path().join("x.npz").exists());
}

#[test]
fn bad_specs() {
    let dir = workdir();
    let cases = [
        ("[factors]\nsise = 0.5\n", "sise"),
        ("[factors]\nsize = { min = 0.9, max = 0.3 }\n", "swap them"),
        ("[factors]\nsize = 0.95\noffset_x = 0.3\n", "does not fit"),
        ("image_size = 4\n", "image size 4"),
        ("train = 0\n", "train count 0"),
        ("[factors]\nnoise = -1\n", "noise"),
        ("[factors\n", "line 1"),
    ];
    for (i, (src, want)) in cases.iter().enumerate() {
        let name = format!("s{i}.toml");
        fs::write(dir.path().join(&name), src).unwrap();
        let e = fails(dir.path(), &["generate", &name, "--out", "x.npz"], 2);
        assert!(e.contains(want) && e.contains(&name), "{src:?}: {e}");
    }
    let e = fails(
        dir.path(),
        &[
            "generate", "--preset", "size", "--train", "0", "--out", "x.npz",
        ],
        2,
    );
    assert!(e.contains("train count 0"), "{e}");
    let e = fails(
        dir.path(),
        &[
            "generate",
            "--preset",
            "size",
            "--image-size",
            "300",
            "--out",
            "x.npz",
        ],
        2,
    );
    assert!(
        e.contains("image size 300") && e.contains("8 to 256"),
        "{e}"
    );
    let e = fails(
        dir.path(),
        &["generate", "missing.toml", "--out", "x.npz"],
        1,
    );
    assert!(e.contains("missing.toml does not exist"), "{e}");
    // clap's own usage errors also exit 2
    let out = shapelab()
        .current_dir(dir.path())
        .args(["generate", "--preset", "size"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn existing_output_is_kept_without_force() {
    let dir = workdir();
    ok(
        dir.path(),
        &[
            "generate", "--preset", "size", "--train", "30", "--out", "d.npz",
        ],
    );
    let before = fs::read(dir.path().join("d.npz")).unwrap();
    let e = fails(
        dir.path(),
        &[
            "generate", "--preset", "rotation", "--train", "30", "--out", "d.npz",
        ],
        2,
    );
    assert!(
        e.contains("d.npz already exists") && e.contains("--force"),
        "{e}"
    );
    assert_eq!(fs::read(dir.path().join("d.npz")).unwrap(), before);
    ok(
        dir.path(),
        &[
            "generate", "--preset", "rotation", "--train", "30", "--out", "d.npz", "--force",
        ],
    );
    assert_ne!(fs::read(dir.path().join("d.npz")).unwrap(), before);
}

#[test]
fn unwritable_and_unreadable_paths() {
    let dir = workdir();
    fs::write(dir.path().join("afile"), "x").unwrap();
    let e = fails(
        dir.path(),
        &[
            "generate",
            "--preset",
            "size",
            "--train",
            "3",
            "--out",
            "afile/x.npz",
        ],
        1,
    );
    assert!(e.contains("afile"), "{e}");
    let e = fails(dir.path(), &["inspect", "nope.npz"], 1);
    assert!(e.contains("nope.npz does not exist"), "{e}");
    fs::write(dir.path().join("text.npz"), "not a zip").unwrap();
    let e = fails(dir.path(), &["inspect", "text.npz"], 1);
    assert!(e.contains("not an .npz archive"), "{e}");
    ok(
        dir.path(),
        &[
            "generate", "--preset", "size", "--train", "300", "--out", "good.npz",
        ],
    );
    let bytes = fs::read(dir.path().join("good.npz")).unwrap();
    fs::write(dir.path().join("cut.npz"), &bytes[..bytes.len() * 2 / 3]).unwrap();
    let e = fails(dir.path(), &["inspect", "cut.npz"], 1);
    assert!(e.contains("cut.npz"), "{e}");
    // A foreign npz without the dataset arrays.
    fs::copy(crate::fixture("numpy_savez.npz"), dir.path().join("f.npz")).unwrap();
    ok(dir.path(), &["inspect", "f.npz", "--no-sheet"]);
}

#[test]
fn killed_generation_never_leaves_a_half_file() {
    let dir = workdir();
    ok(
        dir.path(),
        &[
            "generate", "--preset", "size", "--train", "30", "--out", "d.npz",
        ],
    );
    let before = fs::read(dir.path().join("d.npz")).unwrap();
    // Killed while drawing (no file open yet), then killed mid-write: the moment its staged
    // file appears.
    for mid_write in [false, true] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("shapelab"))
            .current_dir(dir.path())
            .args([
                "--quiet",
                "generate",
                "--preset",
                "size-rotation",
                "--train",
                "400000",
                "--out",
                "d.npz",
                "--force",
            ])
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while mid_write && crate::leftovers(dir.path()).is_empty() {
            assert!(started.elapsed() < Duration::from_secs(120), "never wrote");
            assert!(
                child.try_wait().unwrap().is_none(),
                "finished before a kill"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        if !mid_write {
            std::thread::sleep(Duration::from_millis(200));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(fs::read(dir.path().join("d.npz")).unwrap(), before);
    }
    assert!(
        !crate::leftovers(dir.path()).is_empty(),
        "the killed writer left its staged file"
    );
    // The next write in the same place removes what the killed writer left (issue 11).
    ok(
        dir.path(),
        &[
            "generate", "--preset", "size", "--train", "30", "--out", "d.npz", "--force",
        ],
    );
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["d.npz".to_string()]);
}

#[test]
fn a_split_the_data_does_not_have_is_refused_with_the_fix() {
    // A dataset written without a test split, as files from before it existed are.
    let dir = workdir();
    ok(
        dir.path(),
        &[
            "generate", "--preset", "size", "--train", "60", "--test", "0", "--out", "old.npz",
        ],
    );
    ok(
        dir.path(),
        &[
            "train", "--data", "old.npz", "--arch", "2-2", "--epochs", "1", "--out", "run",
        ],
    );
    for (cmd, flag) in [
        (vec!["eval", "run", "--split", "test"], "--split test"),
        (vec!["filters", "run", "--split", "test"], "--split test"),
        (vec!["prune", "run", "--on", "test"], "--on test"),
        (vec!["dissect", "run", "--split", "test"], "--split test"),
    ] {
        let e = fails(dir.path(), &cmd, 2);
        assert!(
            e.contains(flag) && e.contains("no test split") && e.contains("use val"),
            "{cmd:?}: {e}"
        );
        assert_eq!(e.trim().lines().count(), 1, "{e}");
    }
    // The validation split still works, and nothing was written for the refused commands.
    ok(dir.path(), &["eval", "run"]);
    assert!(!dir.path().join("run/dissection-test").exists());
    assert!(!dir.path().join("run/prune-test-batch").exists());
}
