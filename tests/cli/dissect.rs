//! `shapelab dissect`: every filter against the generator's concept masks, from the README's
//! command to the files, the store and the refusals.

use std::fs;

use crate::{fails, ok, workdir};

#[test]
fn dissect_labels_filters_and_writes_its_files() {
    let dir = workdir();
    crate::trained_run(dir.path(), 300, "4-2", 2);
    let text = ok(dir.path(), &["dissect", "run", "--null-seeds", "2"]);
    for want in [
        "layer 1:",
        "layer 2:",
        "95th percentile",
        "removal",
        "L1 F4",
    ] {
        assert!(text.contains(want), "{want} missing: {text}");
    }
    let out = dir.path().join("run/dissection-val");
    let j: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("dissection.json")).unwrap()).unwrap();
    assert_eq!(j["split"], "val");
    assert_eq!(j["images"], 150);
    assert_eq!(j["concepts"].as_array().unwrap().len(), 12);
    let l1 = &j["layers"][0];
    assert_eq!(l1["filters"].as_array().unwrap().len(), 4);
    assert_eq!(l1["null_filters"], 8);
    // Every label clears its concept's chance level by the stated margin.
    for f in l1["filters"].as_array().unwrap() {
        if let Some(label) = f["label"].as_str() {
            let c = j["concepts"]
                .as_array()
                .unwrap()
                .iter()
                .position(|x| x == label)
                .unwrap();
            let (iou, chance) = (
                f["iou"][c].as_f64().unwrap(),
                l1["chance"][c].as_f64().unwrap(),
            );
            assert!(iou > chance + 0.02, "{label}: {iou} against {chance}");
        }
    }
    for sheet in ["sheet-layer-1.png", "sheet-layer-2.png"] {
        assert!(out.join(sheet).is_file(), "{sheet}");
    }
    let csv = fs::read_to_string(out.join("dissection.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4 + 2);
    assert!(csv.starts_with("layer,filter,label,label_margin,best,best_iou"));
    // The same bytes at one thread as at two.
    ok(
        dir.path(),
        &[
            "dissect",
            "run",
            "--null-seeds",
            "2",
            "--threads",
            "1",
            "--out",
            "one",
        ],
    );
    for f in ["dissection.json", "dissection.csv", "sheet-layer-2.png"] {
        assert_eq!(
            fs::read(out.join(f)).unwrap(),
            fs::read(dir.path().join("one").join(f)).unwrap(),
            "{f}"
        );
    }
    // The same result on the test split, and as JSON.
    let j: serde_json::Value = serde_json::from_str(&ok(
        dir.path(),
        &[
            "dissect",
            "run",
            "--split",
            "test",
            "--null-seeds",
            "2",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(j["split"], "test");
    assert!(dir
        .path()
        .join("run/dissection-test/dissection.json")
        .is_file());
}

#[test]
fn dissect_refuses_what_it_cannot_measure() {
    let dir = workdir();
    crate::trained_run(dir.path(), 150, "2-2", 1);
    let e = fails(dir.path(), &["dissect", "run", "--quantile", "0.7"], 2);
    assert!(
        e.contains("--quantile 0.7") && e.contains("(0, 0.5)"),
        "{e}"
    );
    let e = fails(dir.path(), &["dissect", "run", "--layer", "3"], 2);
    assert!(e.contains("--layer 3") && e.contains("1 to 2"), "{e}");
    let e = fails(dir.path(), &["dissect", "run", "--masks", "nope.npz"], 1);
    assert!(e.contains("nope.npz"), "{e}");
    // Data from elsewhere has no generator spec: its masks are unknown.
    let foreign = lab::Dataset::read_npz(&dir.path().join("d.npz")).unwrap();
    let mut foreign = foreign;
    foreign.meta = None;
    foreign.write_npz(&dir.path().join("f.npz"), false).unwrap();
    let e = fails(dir.path(), &["dissect", "run", "--data", "f.npz"], 2);
    assert!(
        e.contains("no generator spec") && e.contains("--masks"),
        "{e}"
    );
    // Masks brought for it are used: the same words the generator would draw.
    let spec_masks = {
        let d = lab::Dataset::read_npz(&dir.path().join("d.npz")).unwrap();
        let spec =
            shapes::DatasetSpec::from_canonical_json(&d.meta.unwrap().spec.to_string()).unwrap();
        lab::data::masks::ConceptMasks::of_spec(&spec)
    };
    lab::data::masks::write_npz(&spec_masks, &dir.path().join("m.npz")).unwrap();
    ok(
        dir.path(),
        &[
            "dissect",
            "run",
            "--data",
            "f.npz",
            "--masks",
            "m.npz",
            "--null-seeds",
            "1",
        ],
    );
}

/// `dissect --store`: every learned run of a sweep dissected once, recorded, and summarised
/// per cell against the initial filters; a second call reads the records back.
#[test]
fn dissect_store_summarises_the_learned_runs_per_cell() {
    let dir = workdir();
    fs::write(
        dir.path().join("exp.toml"),
        "name = \"e\"\nseeds = 2\nepochs = 10\n[[dataset]]\npreset = \"thesis-1.3\"\nname = \"size\"\ntrain = 900\nval = 150\n[grid]\narchs = [\"8\", \"8-4\"]\n",
    )
    .unwrap();
    ok(dir.path(), &["sweep", "exp.toml", "--store", "s.db", "-q"]);
    let learned: Vec<serde_json::Value> = serde_json::from_str(&ok(
        dir.path(),
        &["runs", "--store", "s.db", "--outcome", "learned", "--json"],
    ))
    .unwrap();
    assert!(!learned.is_empty(), "some run learned");
    let text = ok(
        dir.path(),
        &["dissect", "--store", "s.db", "--null-seeds", "2", "-q"],
    );
    assert!(
        text.contains("learned runs dissected on their test split"),
        "{text}"
    );
    assert!(
        text.contains("of the same layer's initial filters"),
        "{text}"
    );
    let out = dir.path().join("dissections-test");
    let p: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("population.json")).unwrap()).unwrap();
    assert_eq!(p["runs"].as_u64().unwrap() as usize, learned.len());
    assert_eq!(p["split"], "test");
    for cell in p["cells"].as_array().unwrap() {
        let seeds = cell["seeds"].as_array().unwrap().len();
        for l in cell["layers"].as_array().unwrap() {
            let width = l["width"].as_u64().unwrap() as usize;
            assert_eq!(l["labelled"]["n"].as_u64().unwrap() as usize, seeds * width);
            assert_eq!(
                l["null_labelled"]["n"].as_u64().unwrap() as usize,
                2 * width
            );
            let (k, lo, hi) = (
                l["labelled"]["k"].as_f64().unwrap(),
                l["labelled"]["low"].as_f64().unwrap(),
                l["labelled"]["high"].as_f64().unwrap(),
            );
            let rate = k / (seeds * width) as f64;
            assert!(lo <= rate && rate <= hi, "{lo} {rate} {hi}");
        }
    }
    let csv = fs::read_to_string(out.join("population.csv")).unwrap();
    assert!(csv.starts_with("dataset,condition,arch,runs,layer,width,filters,labelled"));
    // Recorded per run: the second call reads them back and says the same.
    let again = ok(
        dir.path(),
        &["dissect", "--store", "s.db", "--null-seeds", "2", "-q"],
    );
    assert_eq!(again, text);
    // Narrowed to one architecture.
    let one = ok(
        dir.path(),
        &[
            "dissect",
            "--store",
            "s.db",
            "--null-seeds",
            "2",
            "--arch",
            "8-4",
            "-q",
            "--out",
            "o84",
        ],
    );
    assert!(
        !one.contains("In 8 on") && one.contains("In 8-4 on"),
        "{one}"
    );
    // Refusals.
    let e = fails(
        dir.path(),
        &["dissect", "--store", "s.db", "--arch", "8-8"],
        2,
    );
    assert!(e.contains("no learned run matching"), "{e}");
    let e = fails(
        dir.path(),
        &["dissect", "--store", "s.db", "--layer", "1"],
        2,
    );
    assert!(e.contains("--layer applies to one run"), "{e}");
    let e = fails(dir.path(), &["dissect"], 2);
    assert!(e.contains("--store"), "{e}");
    let e = fails(dir.path(), &["dissect", "--store", "gone.db"], 1);
    assert!(e.contains("gone.db"), "{e}");
    assert!(
        !dir.path().join("gone.db").exists(),
        "a wrong path creates nothing"
    );
}

/// Ctrl-C during `dissect --store` stops it between dissections (exit 130, one line saying how
/// to resume), keeps the dissections it recorded, and the same command then finishes.
#[test]
fn an_interrupted_dissection_stops_and_resumes() {
    let dir = workdir();
    let d = dir.path();
    fs::write(
        d.join("exp.toml"),
        "name = \"e\"\nseeds = 3\nepochs = 10\n[[dataset]]\npreset = \"thesis-1.3\"\nname = \"size\"\ntrain = 900\nval = 150\n[grid]\narchs = [\"8\", \"8-4\"]\n",
    )
    .unwrap();
    ok(d, &["sweep", "exp.toml", "--store", "s.db", "-q"]);
    // Many initialisations for the chance level: long enough to be interrupted.
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("shapelab"))
        .current_dir(d)
        .args(["dissect", "--store", "s.db", "--null-seeds", "40", "-q"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    // SAFETY: sends SIGINT to the child we spawned.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: interrupted: ") && last.contains("run the same command"),
        "{err}"
    );
    // What was recorded is intact: the same command finishes from it.
    let text = ok(
        d,
        &["dissect", "--store", "s.db", "--null-seeds", "40", "-q"],
    );
    assert!(text.contains("learned runs dissected"), "{text}");
}
