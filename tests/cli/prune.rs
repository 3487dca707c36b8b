//! `shapelab prune` and `shapelab analyze`.

use std::fs;

use crate::{fails, ok, workdir};

#[test]
fn prune_prints_the_thesis_table_and_saves_a_minimal_network() {
    let dir = workdir();
    crate::trained_run(dir.path(), 600, "4-3", 3);
    let j: serde_json::Value = serde_json::from_str(&ok(
        dir.path(),
        &[
            "prune", "run", "--data", "d.npz", "--on", "val", "--ties", "one", "--json",
        ],
    ))
    .unwrap();
    // The same table, bit for bit, at any thread count (all but the timing).
    let untimed = |mut v: serde_json::Value| {
        v.as_object_mut().unwrap().remove("seconds");
        v
    };
    for threads in ["1", "3"] {
        let again: serde_json::Value = serde_json::from_str(&ok(
            dir.path(),
            &[
                "prune",
                "run",
                "--data",
                "d.npz",
                "--on",
                "val",
                "--ties",
                "one",
                "--json",
                "--threads",
                threads,
            ],
        ))
        .unwrap();
        assert_eq!(untimed(again), untimed(j.clone()), "--threads {threads}");
    }
    let filters = j["filters"].as_array().unwrap();
    assert_eq!(filters.len(), 7);
    assert_eq!(filters[0], serde_json::json!({"layer": 1, "filter": 1}));
    let steps = j["steps"].as_array().unwrap();
    assert_eq!(
        steps.len(),
        5,
        "4-3 prunes down to 1-1 in 5 one-by-one steps"
    );
    for s in steps {
        assert_eq!(s["accuracies"].as_array().unwrap().len(), 7);
        assert_eq!(s["removed"].as_array().unwrap().len(), 1);
        assert!(s["accuracy_after"].is_number());
    }
    // A removed filter is no candidate afterwards.
    let r = &steps[0]["removed"][0];
    let idx = filters.iter().position(|f| f == r).unwrap();
    assert!(steps[1]["accuracies"][idx].is_null());
    // The minimal network evaluates to the last step's accuracy.
    let out = dir.path().join("run/prune-val-one");
    for f in ["prune.json", "prune.csv", "prune.xlsx", "accuracy.png"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let e: serde_json::Value = serde_json::from_str(&ok(
        dir.path(),
        &[
            "eval",
            "run/prune-val-one/minimal",
            "--data",
            "d.npz",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(e["accuracy"], steps[4]["accuracy_after"]);
    let text = ok(dir.path(), &["prune", "run", "--data", "d.npz"]);
    assert!(
        text.contains("L1 F1") && text.contains("minimal network (*)"),
        "{text}"
    );
    let csv = fs::read_to_string(dir.path().join("run/prune-val-batch/prune.csv")).unwrap();
    assert!(csv.starts_with("filter,step 1"), "{csv}");
    // below:X stops after the first step under X.
    let first = steps[0]["accuracy_after"].as_f64().unwrap();
    let x = format!("below:{}", (first + 1e-9).min(1.0));
    let j: serde_json::Value = serde_json::from_str(&ok(
        dir.path(),
        &["prune", "run", "--stop", &x, "--ties", "one", "--json"],
    ))
    .unwrap();
    assert_eq!(
        j["steps"].as_array().unwrap().len(),
        if first < 1.0 { 1 } else { 5 }
    );
}

#[test]
fn prune_bad_input() {
    let dir = workdir();
    let e = fails(dir.path(), &["prune", "nope"], 1);
    assert!(e.contains("nope does not exist"), "{e}");
    ok(
        dir.path(),
        &[
            "train", "--data", "size", "--arch", "1-1", "--epochs", "1", "--out", "tiny",
        ],
    );
    let e = fails(dir.path(), &["prune", "tiny"], 2);
    assert!(e.contains("already minimal"), "{e}");
    ok(
        dir.path(),
        &[
            "train", "--data", "size", "--arch", "2-2", "--epochs", "1", "--out", "run",
        ],
    );
    let e = fails(dir.path(), &["prune", "run", "--stop", "below:2"], 2);
    assert!(e.contains("--stop below:2"), "{e}");
    // An evaluation set with other classes.
    ok(
        dir.path(),
        &[
            "generate",
            "--preset",
            "size",
            "--train",
            "6",
            "--val",
            "3",
            "--format",
            "imagefolder",
            "--out",
            "tree",
        ],
    );
    fs::remove_file(dir.path().join("tree/factors.csv")).unwrap();
    fs::rename(
        dir.path().join("tree/val/triangle"),
        dir.path().join("tree/val/zebra"),
    )
    .unwrap();
    fs::rename(
        dir.path().join("tree/train/triangle"),
        dir.path().join("tree/train/zebra"),
    )
    .unwrap();
    fs::create_dir(dir.path().join("tree/train/yak")).unwrap();
    fs::copy(
        dir.path()
            .join("tree/train/zebra")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
        dir.path().join("tree/train/yak/a.png"),
    )
    .unwrap();
    let e = fails(dir.path(), &["prune", "run", "--data", "tree"], 2);
    assert!(e.contains("4 classes") && e.contains("3"), "{e}");
    // A model file that does not match its config.
    let meta = fs::read_to_string(dir.path().join("run/model.json"))
        .unwrap()
        .replace(
            "\"filters\": [\n      2,\n      2\n    ]",
            "\"filters\": [\n      2,\n      3\n    ]",
        );
    fs::write(dir.path().join("run/model.json"), meta).unwrap();
    let e = fails(dir.path(), &["prune", "run"], 1);
    assert!(
        e.contains("model.safetensors") && e.contains("conv2"),
        "{e}"
    );
}

#[test]
fn analyze_writes_every_analysis() {
    let dir = workdir();
    crate::trained_run(dir.path(), 450, "4-3", 2);
    let text = ok(dir.path(), &["analyze", "run", "--out", "an"]);
    for want in [
        "Spearman",
        "Similar filters",
        "Interaction",
        "Events along the pruning path",
        "Failures",
    ] {
        assert!(text.contains(want), "{want} missing: {text}");
    }
    for f in [
        "analysis.json",
        "ranking.csv",
        "failures.csv",
        "failures.png",
        "interaction.png",
        "similarity-layer-1-activations.png",
        "similarity-layer-2-kernels.png",
        "accuracy-by-size.png",
        "prune/prune.json",
    ] {
        assert!(dir.path().join("an").join(f).is_file(), "{f}");
    }
    let j: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("an/analysis.json")).unwrap())
            .unwrap();
    assert_eq!(j["ranking"]["filters"].as_array().unwrap().len(), 7);
    assert_eq!(j["ranking"]["agreement"].as_array().unwrap().len(), 6);
    let m = j["interaction"]["accuracy"].as_array().unwrap();
    assert_eq!(m.len(), 7);
    // Symmetric, and a pair that would empty layer 2 (3 filters) is not possible only when... every pair here is legal.
    assert_eq!(m[1][4], m[4][1]);
    let sim = &j["similarity"]["layers"][0]["kernel_cosine"];
    assert!(
        (sim[2][2].as_f64().unwrap() - 100.0).abs() < 1e-9,
        "a kernel is 100% like itself"
    );
    let fails_n = j["failures"]["failures"].as_array().unwrap().len();
    let acc = j["failures"]["accuracy"].as_f64().unwrap();
    let n = j["failures"]["images"].as_u64().unwrap() as f64;
    assert!(((1.0 - acc) * n - fails_n as f64).abs() < 1e-6);
}
