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
