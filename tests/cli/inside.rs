//! `shapelab activations`, `kernels` and `filters`: looking inside a trained network.

use std::fs;

use crate::{fails, ok, workdir};

fn png_size(path: &std::path::Path) -> (u32, u32) {
    let d = png::Decoder::new(std::io::BufReader::new(fs::File::open(path).unwrap()))
        .read_info()
        .unwrap();
    (d.info().width, d.info().height)
}

#[test]
fn sheets_for_a_size_run_and_a_rotation_panel() {
    let dir = workdir();
    ok(
        dir.path(),
        &[
            "train", "--data", "size", "--arch", "16-4", "--epochs", "2", "--out", "run",
        ],
    );
    let out = ok(dir.path(), &["activations", "run", "--out", "act"]);
    assert!(
        out.contains("wrote 29 sheets") && out.contains("panel thesis-size (27 images)"),
        "{out}"
    );
    let sheet = dir.path().join("act/layer-1.png");
    let (w, h) = png_size(&sheet);
    // 16 filters on 27 images fit a 1920x1080 screen.
    assert!(w <= 1920 && h <= 1080, "{w}x{h}");
    assert_eq!(
        fs::read_dir(dir.path().join("act/images")).unwrap().count(),
        27
    );
    assert!(dir
        .path()
        .join("act/images/01-ellipse-large-0.90.png")
        .is_file());
    let out = ok(
        dir.path(),
        &[
            "activations",
            "run",
            "--panel",
            "thesis-rotation",
            "--stage",
            "pre",
            "--norm",
            "layer",
            "--colormap",
            "diverging",
            "--cell",
            "40",
            "--out",
            "rot",
        ],
    );
    assert!(out.contains("21 per-image sheets"), "{out}");
    let e = fails(dir.path(), &["activations", "run", "--out", "act"], 2);
    assert!(e.contains("--force"), "{e}");
    let e = fails(
        dir.path(),
        &["activations", "run", "--panel", "faces", "--out", "x"],
        2,
    );
    assert!(e.contains("faces") && e.contains("thesis-size"), "{e}");
    ok(
        dir.path(),
        &[
            "generate",
            "--panel",
            "thesis-size",
            "--image-size",
            "32",
            "--out",
            "p32.npz",
        ],
    );
    let e = fails(
        dir.path(),
        &["activations", "run", "--panel", "p32.npz", "--out", "x"],
        2,
    );
    assert!(e.contains("32x32") && e.contains("28x28"), "{e}");
    let out = ok(dir.path(), &["kernels", "run", "--out", "k"]);
    assert!(out.contains("2 kernel sheets"), "{out}");
    assert!(dir.path().join("k/layer-2.png").is_file());
}

#[test]
fn rotation_runs_default_to_the_rotation_panel_and_own_data_to_its_classes() {
    let dir = workdir();
    ok(
        dir.path(),
        &[
            "train", "--data", "rotation", "--arch", "2-2", "--epochs", "1", "--out", "rot",
        ],
    );
    let out = ok(dir.path(), &["activations", "rot", "--out", "a"]);
    assert!(out.contains("panel thesis-rotation"), "{out}");
    // A user's own ImageFolder data: the first images of each class.
    ok(
        dir.path(),
        &[
            "generate",
            "--preset",
            "size",
            "--train",
            "30",
            "--format",
            "imagefolder",
            "--out",
            "tree",
        ],
    );
    fs::remove_file(dir.path().join("tree/spec.json")).unwrap();
    fs::remove_file(dir.path().join("tree/factors.csv")).unwrap();
    ok(
        dir.path(),
        &[
            "train", "--data", "tree", "--arch", "2-2", "--epochs", "1", "--out", "own",
        ],
    );
    let out = ok(dir.path(), &["activations", "own", "--out", "b"]);
    assert!(out.contains("first 3 of each class (9 images)"), "{out}");
}

#[test]
fn filter_statistics() {
    let dir = workdir();
    crate::trained_run(dir.path(), 300, "4-2", 2);
    let j: serde_json::Value = serde_json::from_str(&ok(
        dir.path(),
        &["filters", "run", "--json", "--bins", "4"],
    ))
    .unwrap();
    assert_eq!(j["images"], 150);
    let f = j["filters"].as_array().unwrap();
    assert_eq!(f.len(), 6);
    assert_eq!(
        (f[4]["layer"].as_u64(), f[4]["filter"].as_u64()),
        (Some(2), Some(1))
    );
    let bins = f[0]["by_factor"][0]["bins"].as_array().unwrap();
    assert_eq!(f[0]["by_factor"][0]["factor"], "size");
    assert_eq!(bins.len(), 4);
    assert_eq!(
        bins.iter()
            .map(|b| b["images"].as_u64().unwrap())
            .sum::<u64>(),
        150
    );
    assert!(dir.path().join("run/filters-val.json").is_file());
    let csv = ok(dir.path(), &["filters", "run", "--csv", "--split", "train"]);
    assert_eq!(csv.lines().count(), 7);
    ok(dir.path(), &["filters", "run", "--npz", "acts.npz"]);
    let z = lab::files::npz::NpzFile::open(&dir.path().join("acts.npz")).unwrap();
    let (shape, _) = z.floats("l1_post").unwrap();
    assert_eq!(shape, vec![150, 4, 28, 28]);
    let (shape, _) = z.floats("l2_pooled").unwrap();
    assert_eq!(shape, vec![150, 2, 7, 7]);
    let e = fails(dir.path(), &["filters", "nope"], 1);
    assert!(e.contains("nope does not exist"), "{e}");
}
