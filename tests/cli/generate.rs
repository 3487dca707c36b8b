//! `shapelab generate`: presets, specs, panels, formats, reproducibility.

use std::fs;

use crate::{inspect_json, ok, workdir};

#[test]
fn preset_writes_a_balanced_dataset_with_its_spec() {
    let dir = workdir();
    let out = ok(
        dir.path(),
        &[
            "generate",
            "--preset",
            "thesis-1.3",
            "--train",
            "300",
            "--out",
            "data/size.npz",
        ],
    );
    assert!(
        out.contains(
            "wrote data/size.npz: 300 train + 150 val + 150 test images, 28x28 px, thesis-1.3"
        ),
        "{out}"
    );
    let j = inspect_json(dir.path(), "data/size.npz");
    assert_eq!(j["kind"], "dataset");
    assert_eq!(
        j["splits"][0]["per_class"],
        serde_json::json!([100, 100, 100])
    );
    assert_eq!(j["splits"][1]["total"], 150);
    assert_eq!(j["meta"]["name"], "thesis-1.3");
    assert_eq!(
        j["meta"]["spec"]["classes"]["triangle"]["size"],
        serde_json::json!({"min": 0.3, "max": 0.9})
    );
    let size = j["factors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "size")
        .unwrap();
    assert!(
        size["train"]["min"].as_f64().unwrap() >= 0.3
            && size["train"]["max"].as_f64().unwrap() <= 0.9
    );
}

#[test]
fn aliases_and_presets_agree() {
    let dir = workdir();
    ok(
        dir.path(),
        &[
            "generate", "--preset", "size", "--train", "30", "--out", "a.npz",
        ],
    );
    ok(
        dir.path(),
        &[
            "generate",
            "--preset",
            "thesis-1.3",
            "--train",
            "30",
            "--out",
            "b.npz",
        ],
    );
    let (a, b) = (
        inspect_json(dir.path(), "a.npz"),
        inspect_json(dir.path(), "b.npz"),
    );
    assert_eq!(a["meta"]["hash"], b["meta"]["hash"]);
    for preset in [
        "thesis-1.2",
        "thesis-2.1",
        "rotation",
        "deform",
        "position",
        "size-rotation",
        "outline",
        "noise",
    ] {
        ok(
            dir.path(),
            &[
                "generate",
                "--preset",
                preset,
                "--train",
                "6",
                "--out",
                &format!("{preset}.npz"),
            ],
        );
    }
    let rot = inspect_json(dir.path(), "rotation.npz");
    assert_eq!(
        rot["meta"]["spec"]["classes"]["ellipse"]["rotation"],
        serde_json::json!({"min": 0.0, "max": 360.0})
    );
}

#[test]
fn same_spec_same_bytes_at_any_thread_count() {
    let dir = workdir();
    let args = |threads: &str, out: &str| {
        ok(
            dir.path(),
            &[
                "--threads",
                threads,
                "generate",
                "--preset",
                "size-rotation",
                "--train",
                "2000",
                "--seed",
                "9",
                "--out",
                out,
            ],
        );
    };
    args("1", "one.npz");
    args("2", "two.npz");
    args("2", "again.npz");
    let one = fs::read(dir.path().join("one.npz")).unwrap();
    assert_eq!(one, fs::read(dir.path().join("two.npz")).unwrap());
    assert_eq!(one, fs::read(dir.path().join("again.npz")).unwrap());
    ok(
        dir.path(),
        &[
            "generate",
            "--preset",
            "size-rotation",
            "--train",
            "2000",
            "--seed",
            "10",
            "--out",
            "other.npz",
        ],
    );
    assert_ne!(one, fs::read(dir.path().join("other.npz")).unwrap());
}

#[test]
fn spec_file_controls_every_factor() {
    let dir = workdir();
    fs::write(
        dir.path().join("spec.toml"),
        r#"
name = "mixed"
image_size = 40
seed = 3
train = 90
[factors]
size = { min = 0.3, max = 0.5 }
rotation = [0, 45]
aspect = { min = 0.8, max = 1.25 }
shear = 0.2
offset_x = { min = -0.2, max = 0.2 }
outline = [false, true]
stroke = 0.12
intensity = 0.8
noise = 0.05
[class.triangle]
size = 0.6
"#,
    )
    .unwrap();
    let out = ok(dir.path(), &["generate", "spec.toml", "--out", "mixed.npz"]);
    assert!(
        out.contains("90 train + 45 val + 45 test images, 40x40 px, mixed"),
        "{out}"
    );
    let j = inspect_json(dir.path(), "mixed.npz");
    assert_eq!(j["height"], 40);
    let f = |name: &str| {
        j["factors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap()["train"]
            .clone()
    };
    assert_eq!(f("rotation")["min"], 0.0);
    assert_eq!(f("rotation")["max"], 45.0);
    assert!(
        f("aspect")["min"].as_f64().unwrap() >= 0.8 && f("aspect")["max"].as_f64().unwrap() <= 1.25
    );
    assert_eq!(f("outline")["min"], 0.0);
    assert_eq!(f("outline")["max"], 1.0);
    assert!((f("intensity")["mean"].as_f64().unwrap() - 0.8).abs() < 1e-6);
    assert!(
        (f("size")["max"].as_f64().unwrap() - 0.6).abs() < 1e-6,
        "the triangle override"
    );
}

#[test]
fn concept_masks_are_stored_beside_every_split_and_drawn_by_inspect() {
    let dir = workdir();
    let out = ok(
        dir.path(),
        &[
            "generate", "--preset", "rotation", "--train", "30", "--masks", "--out", "m.npz",
        ],
    );
    assert!(out.contains("with concept masks"), "{out}");
    let f = lab::files::npz::NpzFile::open(&dir.path().join("m.npz")).unwrap();
    for (part, n) in [("train", 30u64), ("val", 15), ("test", 15)] {
        let (shape, words) = f.ints(&format!("masks_{part}")).unwrap();
        assert_eq!(shape, vec![n, 28, 28]);
        // Every pixel is interior or background, never both.
        assert!(words.iter().all(|w| (w & 1) + (w >> 11 & 1) == 1));
    }
    assert_eq!(f.strings("concept_names").unwrap()[6], "edge-W");
    let shown = ok(dir.path(), &["inspect", "m.npz"]);
    assert!(shown.contains("concept masks: m.masks.png"), "{shown}");
    assert!(dir.path().join("m.masks.png").is_file());
    // A panel takes masks too.
    let out = ok(
        dir.path(),
        &[
            "generate",
            "--panel",
            "thesis-size",
            "--masks",
            "--out",
            "p.npz",
        ],
    );
    assert!(out.contains("27 images with concept masks"), "{out}");
    let shown = ok(dir.path(), &["inspect", "p.npz"]);
    assert!(shown.contains("concept masks: p.masks.png"), "{shown}");
}

#[test]
fn imagefolder_and_both_formats() {
    let dir = workdir();
    ok(
        dir.path(),
        &[
            "generate",
            "--preset",
            "rotation",
            "--train",
            "12",
            "--format",
            "imagefolder",
            "--out",
            "tree",
        ],
    );
    let t = dir.path().join("tree");
    for class in ["ellipse", "rectangle", "triangle"] {
        assert_eq!(
            fs::read_dir(t.join("train").join(class)).unwrap().count(),
            4,
            "{class}"
        );
        for held in ["val", "test"] {
            assert_eq!(
                fs::read_dir(t.join(held).join(class)).unwrap().count(),
                2,
                "{held} {class}"
            );
        }
    }
    let csv = fs::read_to_string(t.join("factors.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 12 + 6 + 6);
    assert!(csv.starts_with("split,file,label,class_name,class,size,rotation"));
    let first = csv.lines().nth(1).unwrap();
    let file = first.split(',').nth(1).unwrap();
    assert!(
        file.starts_with("train/") && file.ends_with("/000001.png"),
        "{first}"
    );
    assert!(t.join(file).is_file());

    ok(
        dir.path(),
        &[
            "generate", "--preset", "rotation", "--train", "12", "--format", "both", "--out",
            "both.npz",
        ],
    );
    let (a, b) = (
        inspect_json(dir.path(), "both.npz"),
        inspect_json(dir.path(), "both"),
    );
    assert_eq!(a["splits"], b["splits"]);
    assert_eq!(a["factors"], b["factors"]);
    assert_eq!(a["meta"], b["meta"]);
}

#[test]
fn panels_have_the_thesis_layout() {
    let dir = workdir();
    let out = ok(
        dir.path(),
        &["generate", "--panel", "thesis-size", "--out", "ps.npz"],
    );
    assert!(out.contains("27 images"), "{out}");
    ok(
        dir.path(),
        &["generate", "--panel", "thesis-rotation", "--out", "pr.npz"],
    );
    let j = inspect_json(dir.path(), "pr.npz");
    assert_eq!(j["kind"], "panel");
    assert_eq!(j["images"], 21);
    assert_eq!(j["groups"][0], serde_json::json!(["ellipse", 4]));
    assert_eq!(j["groups"][7], serde_json::json!(["triangle 180", 2]));
    let j = inspect_json(dir.path(), "ps.npz");
    assert_eq!(j["groups"].as_array().unwrap().len(), 9);
}

#[test]
fn list_and_help_read_well() {
    let dir = workdir();
    let list = ok(dir.path(), &["generate", "--list"]);
    for name in [
        "thesis-1.2",
        "thesis-1.3",
        "thesis-2.1",
        "deform",
        "position",
        "size-rotation",
        "thesis-size",
        "thesis-rotation",
    ] {
        assert!(list.contains(name), "{name} missing from --list");
    }
    let help = ok(dir.path(), &["generate", "--help"]);
    assert!(help.contains("Examples:") && help.contains("--preset"));
    ok(dir.path(), &["--help"]);
    ok(dir.path(), &["--version"]);
}
