//! `shapelab compare`: two runs matched filter by filter, B permuted onto A, the barrier;
//! from the README's command to the files and the refusals.

use std::fs;

use crate::{fails, ok, workdir};

#[test]
fn compare_matches_runs_and_writes_the_aligned_model() {
    let dir = workdir();
    crate::trained_run(dir.path(), 300, "5-3", 2);
    let d = dir.path();
    ok(
        d,
        &[
            "train", "--data", "d.npz", "--arch", "5-3", "--epochs", "2", "--seed", "2", "--out",
            "run2",
        ],
    );
    let text = ok(
        d,
        &[
            "compare",
            "run",
            "run2",
            "--null-seeds",
            "2",
            "--points",
            "5",
            "--out",
            "cmp",
        ],
    );
    for want in ["Layer 1 (5 vs 5 filters)", "Layer 2", "loss barrier", "CKA"] {
        assert!(text.contains(want), "{want} missing: {text}");
    }
    // Into a log (stderr not a terminal), each stage as a line as it begins; none with -q.
    let stages = |quiet: bool| {
        let mut args = vec![
            "compare",
            "run",
            "run2",
            "--null-seeds",
            "2",
            "--points",
            "5",
        ];
        args.extend(["--out", "cmp-log"]);
        if quiet {
            args.push("-q");
        }
        let out = crate::shapelab()
            .current_dir(d)
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    assert_eq!(
        stages(false).lines().collect::<Vec<_>>(),
        [
            "compare: matching the filters",
            "compare: CKA of A and B",
            "compare: the control: initialisation 1 of 2",
            "compare: the control: initialisation 2 of 2",
            "compare: the straight line from A to B",
        ]
    );
    assert_eq!(stages(true), "");
    let j: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(d.join("cmp/compare.json")).unwrap()).unwrap();
    assert_eq!(j["chosen_on"], "val");
    assert_eq!(j["layers"][0]["pairs"].as_array().unwrap().len(), 5);
    assert_eq!(j["path"]["before"].as_array().unwrap().len(), 5);
    // B permuted onto A computes what B computes.
    assert_eq!(j["accuracy_aligned"], j["accuracy_b"]);
    let eval = |run: &str| -> serde_json::Value {
        serde_json::from_str(&ok(d, &["eval", run, "--json"])).unwrap()
    };
    assert_eq!(eval("cmp/b-aligned")["accuracy"], eval("run2")["accuracy"]);
    for f in [
        "compare.csv",
        "correlation-layer-1.png",
        "correlation-layer-2.png",
        "barrier.png",
    ] {
        assert!(d.join("cmp").join(f).is_file(), "{f}");
    }
    // A run against its own copy: every pair is itself, and the barrier after alignment 0.
    ok(
        d,
        &[
            "compare",
            "run",
            "run",
            "--null-seeds",
            "1",
            "--points",
            "3",
            "--out",
            "self",
            "--json",
        ],
    );
    let s: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(d.join("self/compare.json")).unwrap()).unwrap();
    for p in s["layers"][1]["pairs"].as_array().unwrap() {
        assert_eq!(p["a"], p["b"]);
    }
    assert_eq!(s["path"]["loss_barrier_after"], 0.0);
}

#[test]
fn compare_refuses_runs_that_cannot_be_compared() {
    let dir = workdir();
    crate::trained_run(dir.path(), 150, "3-2", 1);
    let d = dir.path();
    ok(
        d,
        &[
            "train", "--data", "d.npz", "--arch", "3", "--epochs", "1", "--out", "one",
        ],
    );
    let e = fails(d, &["compare", "run", "one"], 2);
    assert!(e.contains("same number of layers"), "{e}");
    ok(
        d,
        &[
            "generate", "--preset", "rotation", "--train", "150", "--out", "r.npz",
        ],
    );
    ok(
        d,
        &[
            "train", "--data", "r.npz", "--arch", "3-2", "--epochs", "1", "--out", "rot",
        ],
    );
    let e = fails(d, &["compare", "run", "rot"], 2);
    assert!(
        e.contains("different datasets") && e.contains("--data"),
        "{e}"
    );
    let e = fails(d, &["compare", "run", "nowhere"], 1);
    assert!(e.contains("nowhere"), "{e}");
    // Out of range: clap's message, which names the flag and the range.
    let out = crate::shapelab()
        .current_dir(d)
        .args(["compare", "run", "run", "--points", "2"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(e.contains("--points") && e.contains("3..=201"), "{e}");
}

/// `families`: the runs of a store cell aligned to a reference, with the files and the
/// refusals (a cell with fewer than two learned runs; conditions never pooled).
#[test]
fn families_reads_a_cell_of_a_sweep() {
    let dir = workdir();
    let d = dir.path();
    fs::write(
        d.join("exp.toml"),
        "name = \"e\"\nseeds = 3\nepochs = 15\n[[dataset]]\npreset = \"thesis-1.3\"\nname = \"size\"\ntrain = 900\nval = 150\ntest = 150\n[grid]\narchs = [\"8-4\"]\n",
    )
    .unwrap();
    ok(d, &["sweep", "exp.toml", "--store", "s.db", "-q"]);
    let learned: Vec<serde_json::Value> = serde_json::from_str(&ok(
        d,
        &["runs", "--store", "s.db", "--outcome", "learned", "--json"],
    ))
    .unwrap();
    assert_eq!(learned.len(), 3, "every run of this sweep learns");
    let args = [
        "families",
        "--store",
        "s.db",
        "--dataset",
        "size",
        "--arch",
        "8-4",
        "--null-seeds",
        "4",
        "--cka-images",
        "40",
        "-q",
    ];
    let text = ok(d, &args);
    assert!(
        text.contains("Layer 1:") && text.contains("Seed-own filters"),
        "{text}"
    );
    let out = d.join("families-size-8-4");
    let j: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("families.json")).unwrap()).unwrap();
    assert_eq!(j["split"], "test");
    assert_eq!(j["runs"].as_array().unwrap().len(), 3);
    let l1 = &j["layers"][0];
    assert_eq!(l1["families"].as_array().unwrap().len(), 8);
    assert_eq!(l1["cka"].as_array().unwrap().len(), 3);
    for f in l1["families"].as_array().unwrap() {
        let (k, n) = (
            f["learned_with"].as_u64().unwrap(),
            f["learned_runs"].as_u64().unwrap(),
        );
        assert_eq!(n as usize, learned.len() - 1);
        assert!(k <= n);
        assert_eq!(f["null"].as_array().unwrap().len(), 4);
    }
    for sheet in ["families-layer-1.png", "families-layer-2.png"] {
        assert!(out.join(sheet).is_file(), "{sheet}");
    }
    assert_eq!(
        j["shown"].as_array().unwrap().len(),
        3,
        "an image of each class"
    );
    let csv = fs::read_to_string(out.join("families.csv")).unwrap();
    assert!(csv.starts_with("layer,family,run,filter,correlation,member"));
    let e = fails(
        d,
        &[
            "families",
            "--store",
            "s.db",
            "--dataset",
            "size",
            "--arch",
            "9-9",
        ],
        2,
    );
    assert!(
        e.contains("no run of dataset size and architecture 9-9"),
        "{e}"
    );
}
