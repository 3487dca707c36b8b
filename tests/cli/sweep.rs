//! `shapelab sweep`, `runs`, `summary` and `stuck`: results that survive anything.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use lab::experiments::store::Store;
use sha2::{Digest, Sha256};

use crate::{fails, ok, workdir};

/// 8 runs: two architectures, Adam against SGD on raw pixels, two seeds.
const EXPERIMENT: &str = r#"
name = "t"
seed = 3
seeds = 2
epochs = 3
[[dataset]]
preset = "thesis-1.3"
train = 900
val = 300
[grid]
archs = ["2-2", "4-4"]
[sweep]
optimizer = ["adam", "sgd"]
scaling = ["raw"]
"#;

fn write(dir: &Path, name: &str, text: &str) {
    fs::write(dir.join(name), text).unwrap();
}

fn dump(store: &Path) -> String {
    Store::open_existing(store)
        .unwrap()
        .canonical_dump()
        .unwrap()
}

fn runs_json(dir: &Path, store: &str) -> Vec<serde_json::Value> {
    let out = ok(dir, &["runs", "--store", store, "--json"]);
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn sweep_stores_every_run_and_resumes() {
    let dir = workdir();
    write(dir.path(), "exp.toml", EXPERIMENT);
    let out = ok(dir.path(), &["sweep", "exp.toml"]);
    assert!(
        out.contains("t: 8 runs, 8 stored now, 0 already there"),
        "{out}"
    );
    let runs = runs_json(dir.path(), "shapelab.db");
    assert_eq!(runs.len(), 8);
    for r in &runs {
        for field in [
            "key",
            "dataset",
            "arch",
            "seed",
            "outcome",
            "val_acc",
            "model_dir",
            "condition",
            "epochs_run",
        ] {
            assert!(!r[field].is_null(), "{field} missing in {r}");
        }
        assert!(["learned", "stuck", "collapsed", "partial", "diverged"]
            .contains(&r["outcome"].as_str().unwrap()));
    }
    assert_eq!(
        runs[0]["key"],
        "t/thesis-1.3/2-2/optimizer=adam,scaling=raw/seed1"
    );
    assert_eq!(runs[0]["dataset"], "thesis-1.3");
    assert_eq!(runs[0]["arch"], "2-2");
    // A run's model directory is one `shapelab eval` accepts, with the same accuracy.
    let model = runs[0]["model_dir"].as_str().unwrap();
    let e: serde_json::Value =
        serde_json::from_str(&ok(dir.path(), &["eval", model, "--json"])).unwrap();
    assert_eq!(e["accuracy"], runs[0]["val_acc"]);
    // Again: nothing to do.
    let out = ok(dir.path(), &["sweep", "exp.toml"]);
    assert!(out.contains("0 stored now, 8 already there"), "{out}");
    // Shards of a fresh store add up to the same results.
    for s in ["1/3", "2/3", "3/3"] {
        ok(
            dir.path(),
            &["sweep", "exp.toml", "--store", "sharded.db", "--shard", s],
        );
    }
    assert_eq!(
        dump(&dir.path().join("shapelab.db")),
        dump(&dir.path().join("sharded.db"))
    );
    // One job gives the same store as two.
    ok(
        dir.path(),
        &["sweep", "exp.toml", "--store", "one.db", "--jobs", "1"],
    );
    assert_eq!(
        dump(&dir.path().join("shapelab.db")),
        dump(&dir.path().join("one.db"))
    );
}

#[test]
fn killed_sweeps_resume_to_the_same_store() {
    let dir = workdir();
    write(
        dir.path(),
        "exp.toml",
        &EXPERIMENT
            .replace("train = 900", "train = 3000")
            .replace("epochs = 3", "epochs = 4"),
    );
    ok(
        dir.path(),
        &["sweep", "exp.toml", "--store", "reference.db"],
    );
    let want = dump(&dir.path().join("reference.db"));
    // Kill at pseudo-random moments until a sweep completes on its own.
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut kills = 0;
    for _ in 0..40 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let delay = 30 + state % 400;
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("shapelab"))
            .current_dir(dir.path())
            .args(["--quiet", "sweep", "exp.toml", "--store", "killed.db"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
    }
    assert!(kills > 0, "the sweep was never interrupted");
    ok(dir.path(), &["sweep", "exp.toml", "--store", "killed.db"]);
    assert_eq!(
        dump(&dir.path().join("killed.db")),
        want,
        "after {kills} kills"
    );
    // The resumed sweep removed what the killed ones left staged (issue 11).
    let leftovers = crate::leftovers(dir.path());
    assert!(leftovers.is_empty(), "after {kills} kills: {leftovers:?}");
    // Every stored run's weights are intact on disk.
    for r in runs_json(dir.path(), "killed.db") {
        let bytes = fs::read(
            dir.path()
                .join(r["model_dir"].as_str().unwrap())
                .join("model.safetensors"),
        )
        .unwrap();
        let sha: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sha, r["weights_sha256"].as_str().unwrap(), "{}", r["key"]);
    }
}

#[test]
fn two_sweeps_on_one_store_at_once() {
    let dir = workdir();
    write(dir.path(), "exp.toml", EXPERIMENT);
    ok(
        dir.path(),
        &["sweep", "exp.toml", "--store", "reference.db"],
    );
    let spawn = || {
        Command::new(assert_cmd::cargo::cargo_bin("shapelab"))
            .current_dir(dir.path())
            .args([
                "--quiet",
                "sweep",
                "exp.toml",
                "--store",
                "shared.db",
                "--jobs",
                "1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for c in [a, b] {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        dump(&dir.path().join("shared.db")),
        dump(&dir.path().join("reference.db"))
    );
}

#[test]
fn diverged_runs_are_results() {
    let dir = workdir();
    write(
        dir.path(),
        "exp.toml",
        "name = \"d\"\nepochs = 2\n[[dataset]]\npreset = \"size\"\ntrain = 300\n[grid]\narchs = [\"2-2\"]\n[train]\noptimizer = \"sgd\"\nscaling = \"raw\"\nactivation = \"leaky-relu\"\nmomentum = 0.9\n[sweep]\nlr = [0.001, 100.0]\n",
    );
    ok(dir.path(), &["sweep", "exp.toml"]);
    let runs = runs_json(dir.path(), "shapelab.db");
    assert_eq!(runs.len(), 2);
    let bad = runs.iter().find(|r| r["condition"] == "lr=100").unwrap();
    assert_eq!(bad["outcome"], "diverged", "{bad}");
}

#[test]
fn summary_tables_and_the_stuck_study() {
    let dir = workdir();
    write(
        dir.path(),
        "exp.toml",
        "name = \"s\"\nseed = 5\nseeds = 6\nepochs = 4\n[[dataset]]\npreset = \"size\"\ntrain = 600\n[grid]\nlayers = 2\nfilters = [2]\n[train]\noptimizer = \"sgd\"\nscaling = \"raw\"\n",
    );
    ok(dir.path(), &["sweep", "exp.toml"]);
    let text = ok(dir.path(), &["summary", "--thesis-table", "table"]);
    assert!(text.contains("F1 \\ F2") && text.contains("/6 ["), "{text}");
    assert!(dir.path().join("shapelab-summary.png").is_file());
    let csv = fs::read_to_string(dir.path().join("table.csv")).unwrap();
    assert!(
        csv.starts_with("DATASET,FILTER1,FILTER2,NUM_EPOCH,TRAIN_ACC,VALID_ACC,TIMESTAMP_NAME"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 7);
    assert_eq!(
        &fs::read(dir.path().join("table.xlsx")).unwrap()[..2],
        b"PK"
    );
    // A table the user named is replaced only with --force; the default heatmap is refreshed.
    crate::fails(dir.path(), &["summary", "--thesis-table", "table"], 2);
    ok(
        dir.path(),
        &["summary", "--thesis-table", "table", "--force"],
    );
    let j: serde_json::Value =
        serde_json::from_str(&ok(dir.path(), &["summary", "--json"])).unwrap();
    let cell = &j["groups"][0]["cells"][0];
    assert_eq!(cell["runs"], 6);
    let k = cell["learned"].as_u64().unwrap() as f64;
    assert!(cell["low"].as_f64().unwrap() <= k / 6.0 && k / 6.0 <= cell["high"].as_f64().unwrap());
    // Plain SGD on raw pixels leaves some 2-2 runs stuck; the study diagnoses them.
    let runs = runs_json(dir.path(), "shapelab.db");
    let stuck = runs.iter().filter(|r| r["outcome"] == "stuck").count();
    assert!(stuck > 0, "expected stuck runs: {runs:?}");
    let d = &runs.iter().find(|r| r["outcome"] == "stuck").unwrap()["diagnosis"];
    assert!(
        d["grad_norm"].as_f64().unwrap() >= 0.0 && d["dead"].as_array().unwrap().len() == 2,
        "{d}"
    );
    let out = ok(dir.path(), &["stuck", "--continue", "2"]);
    assert!(
        out.contains(&format!("continued {stuck} stuck runs 2 more epochs")),
        "{out}"
    );
    let j: serde_json::Value = serde_json::from_str(&ok(dir.path(), &["stuck", "--json"])).unwrap();
    assert_eq!(j[0]["stuck"].as_u64().unwrap() as usize, stuck);
    assert_eq!(j[0]["continued"][0][3].as_u64().unwrap() as usize, stuck);
}

#[test]
fn bad_experiments_and_stores() {
    let dir = workdir();
    let cases: &[(&str, &str)] = &[
        ("seeds = 2\n[grid\n", "exp.toml:2:"),
        (
            "[[dataset]]\npreset = \"nope\"\n[grid]\narchs = [\"2\"]\n",
            "unknown preset `nope`",
        ),
        (
            "[[dataset]]\npreset = \"size\"\n[grid]\narchs = []\n",
            "archs is empty",
        ),
        (
            "seeds = 0\n[[dataset]]\npreset = \"size\"\n[grid]\narchs = [\"2\"]\n",
            "seeds = 0",
        ),
        (
            "[[dataset]]\npreset = \"size\"\n[grid]\narchs = [\"2\"]\n[sweep]\nlrr = [1]\n",
            "lrr",
        ),
    ];
    for (text, want) in cases {
        write(dir.path(), "exp.toml", text);
        let e = fails(dir.path(), &["sweep", "exp.toml"], 2);
        assert!(e.contains(want), "{text:?}: {e}");
    }
    assert!(
        !dir.path().join("shapelab.db").exists()
            || Store::open_existing(dir.path().join("shapelab.db"))
                .unwrap()
                .canonical_dump()
                .unwrap()
                .is_empty()
    );
    let e = fails(dir.path(), &["sweep", "missing.toml"], 1);
    assert!(e.contains("missing.toml does not exist"), "{e}");
    // A changed experiment under the same name is refused, and the stored runs stay.
    write(dir.path(), "exp.toml", EXPERIMENT);
    ok(
        dir.path(),
        &["sweep", "exp.toml", "--store", "s.db", "--shard", "1/4"],
    );
    let before = dump(&dir.path().join("s.db"));
    write(
        dir.path(),
        "exp.toml",
        &EXPERIMENT.replace("epochs = 3", "epochs = 5"),
    );
    let e = fails(dir.path(), &["sweep", "exp.toml", "--store", "s.db"], 2);
    assert!(e.contains("other settings"), "{e}");
    assert_eq!(dump(&dir.path().join("s.db")), before);
    // A newer store is refused with a hint.
    let c = rusqlite::Connection::open(dir.path().join("s.db")).unwrap();
    c.pragma_update(None, "user_version", 7).unwrap();
    drop(c);
    let e = fails(dir.path(), &["runs", "--store", "s.db"], 1);
    assert!(e.contains("newer shapelab") && e.contains("upgrade"), "{e}");
    // Stores that do not exist, or cannot be created.
    let e = fails(dir.path(), &["summary", "--store", "none.db"], 1);
    assert!(e.contains("none.db does not exist"), "{e}");
    fs::write(dir.path().join("afile"), "x").unwrap();
    write(dir.path(), "exp.toml", EXPERIMENT);
    let e = fails(
        dir.path(),
        &["sweep", "exp.toml", "--store", "afile/s.db"],
        1,
    );
    assert!(e.contains("afile"), "{e}");
    let e = fails(dir.path(), &["sweep", "exp.toml", "--shard", "5/4"], 2);
    assert!(e.contains("--shard 5/4"), "{e}");
}

/// Growing `seeds` under the same experiment name adds runs, and the sweep says so; shrinking
/// it says the old runs stay; `--quiet` prints no progress, only such warnings (issue 11).
#[test]
fn a_grown_experiment_is_announced_and_quiet_is_quiet() {
    let dir = workdir();
    let small = EXPERIMENT
        .replace("seeds = 2", "seeds = 1")
        .replace("train = 900", "train = 60")
        .replace("val = 300", "val = 30")
        .replace("epochs = 3", "epochs = 1");
    write(dir.path(), "exp.toml", &small);
    let run = |args: &[&str]| {
        let out = crate::shapelab()
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    assert_eq!(run(&["-q", "sweep", "exp.toml"]), "");
    assert_eq!(
        run(&["-q", "sweep", "exp.toml"]),
        "",
        "a resumed quiet sweep"
    );
    write(
        dir.path(),
        "exp.toml",
        &small.replace("seeds = 1", "seeds = 2"),
    );
    let e = run(&["-q", "sweep", "exp.toml"]);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.starts_with("warning: experiment `t` changed")
            && e.contains("4 of its 8 runs are stored already, 4 new runs will be added"),
        "{e}"
    );
    write(dir.path(), "exp.toml", &small);
    let e = run(&["-q", "sweep", "exp.toml"]);
    assert!(e.contains("4 stored runs are no longer in it"), "{e}");
    // The same text again: nothing to say.
    assert_eq!(run(&["-q", "sweep", "exp.toml"]), "");
}

/// Ctrl-C stops a sweep cleanly with exit code 130, one `error: interrupted` line last, and
/// the same command resumes (issue 12: interruptions used to share the usage code).
#[test]
fn interrupted_sweep_exits_130() {
    let dir = workdir();
    write(
        dir.path(),
        "exp.toml",
        &EXPERIMENT
            .replace("seeds = 2", "seeds = 40")
            .replace("train = 900", "train = 600"),
    );
    let child = Command::new(assert_cmd::cargo::cargo_bin("shapelab"))
        .current_dir(dir.path())
        .args(["sweep", "exp.toml", "--jobs", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !dir.path().join("shapelab-runs").exists() {
        assert!(started.elapsed() < Duration::from_secs(60), "no run stored");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: sends SIGINT to the child we spawned.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(130), "{err}");
    let last = err.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with("error: interrupted: ") && last.contains("run the same command"),
        "{err}"
    );
}
