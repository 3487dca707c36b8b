//! Files made by numpy and Pillow (tests/fixtures/make_fixtures.py) read back correctly.

use crate::{fails, fixture, inspect_json, workdir};

#[test]
fn numpy_savez_dataset() {
    let dir = workdir();
    let j = inspect_json(dir.path(), fixture("numpy_savez.npz").to_str().unwrap());
    assert_eq!(j["splits"][0]["per_class"], serde_json::json!([2, 2, 2]));
    assert_eq!(j["splits"][1]["per_class"], serde_json::json!([1, 1, 1]));
    assert_eq!(j["meta"], serde_json::Value::Null);
    assert_eq!(j["factors"][0]["name"], "size");
    // factors_train = arange(12).reshape(6, 2) / 4: column 0 is 0, 0.5, ..., 2.5
    assert_eq!(j["factors"][0]["train"]["max"], 2.5);
    assert_eq!(j["factors"][1]["val"]["min"], -5.0);
    // pixels (i*7 + r*3 + c) % 256 over 6 images of 8x8
    let mut sum = 0u64;
    for i in 0..6 {
        for r in 0..8 {
            for c in 0..8 {
                sum += ((i * 7 + r * 3 + c) % 256) as u64;
            }
        }
    }
    let mean = j["splits"][0]["mean_pixel"].as_f64().unwrap();
    assert!((mean - sum as f64 / 384.0).abs() < 1e-9);
}

#[test]
fn numpy_savez_compressed_with_class_names() {
    let dir = workdir();
    let j = inspect_json(
        dir.path(),
        fixture("numpy_savez_compressed.npz").to_str().unwrap(),
    );
    assert_eq!(j["class_names"], serde_json::json!(["cat", "dog"]));
    assert_eq!(
        (j["height"].as_u64(), j["width"].as_u64()),
        (Some(10), Some(12))
    );
    assert_eq!(j["splits"][0]["per_class"], serde_json::json!([2, 2]));
}

#[test]
fn pillow_imagefolder() {
    let dir = workdir();
    let j = inspect_json(dir.path(), fixture("pil_imagefolder").to_str().unwrap());
    assert_eq!(j["class_names"], serde_json::json!(["ant", "bird"]));
    assert_eq!(j["splits"][0]["per_class"], serde_json::json!([2, 2]));
    assert_eq!(j["splits"][1]["total"], 2);
    let err = fails(
        dir.path(),
        &["inspect", fixture("rgb_imagefolder").to_str().unwrap()],
        1,
    );
    assert!(err.contains("8-bit grayscale"), "{err}");
}

/// Opt-in (SHAPELAB_PYTHON_TESTS=1, needs python3 with numpy and Pillow): Python opens what
/// shapelab writes, without extra code.
#[test]
fn python_users_open_the_files() {
    if std::env::var_os("SHAPELAB_PYTHON_TESTS").is_none() {
        eprintln!("skipped: set SHAPELAB_PYTHON_TESTS=1 to run");
        return;
    }
    let dir = workdir();
    crate::ok(
        dir.path(),
        &[
            "generate",
            "--preset",
            "size-rotation",
            "--train",
            "60",
            "--format",
            "both",
            "--out",
            "d.npz",
        ],
    );
    crate::ok(
        dir.path(),
        &["generate", "--panel", "thesis-rotation", "--out", "p.npz"],
    );
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/check_files.py");
    let out = std::process::Command::new("python3")
        .current_dir(dir.path())
        .args([script.to_str().unwrap(), "d.npz", "d", "p.npz"])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Opt-in (SHAPELAB_PYTHON_TESTS=1, needs python3 with numpy, torch and safetensors): the
/// README's PyTorch module loads `model.safetensors` and gives shapelab's logits.
#[test]
fn pytorch_loads_the_model_and_gets_the_same_logits() {
    if std::env::var_os("SHAPELAB_PYTHON_TESTS").is_none() {
        eprintln!("skipped: set SHAPELAB_PYTHON_TESTS=1 to run");
        return;
    }
    let dir = workdir();
    crate::trained_run(dir.path(), 300, "4-3", 2);
    crate::ok(
        dir.path(),
        &["predict", "run", "--data", "d.npz", "--out", "logits.npz"],
    );
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/check_model.py");
    let out = std::process::Command::new("python3")
        .current_dir(dir.path())
        .args([script.to_str().unwrap(), "run", "d.npz", "logits.npz"])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Hidden folders are not classes, other files are named in one warning line, and an empty
/// class folder is refused (issue 11).
#[test]
fn imagefolder_hidden_folders_and_skipped_files() {
    let dir = crate::workdir();
    crate::ok(
        dir.path(),
        &[
            "generate",
            "--preset",
            "size",
            "--train",
            "30",
            "--val",
            "15",
            "--format",
            "imagefolder",
            "--out",
            "t",
        ],
    );
    std::fs::create_dir_all(dir.path().join("t/train/.ipynb_checkpoints")).unwrap();
    std::fs::create_dir_all(dir.path().join("t/val/.ipynb_checkpoints")).unwrap();
    std::fs::write(dir.path().join("t/train/ellipse/photo.jpg"), "jpeg").unwrap();
    std::fs::write(dir.path().join("t/val/triangle/notes.txt"), "notes").unwrap();
    std::fs::write(dir.path().join("t/val/triangle/.DS_Store"), "x").unwrap();
    let out = crate::shapelab()
        .current_dir(dir.path())
        .args(["inspect", "t", "--json", "--no-sheet"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["class_names"].as_array().unwrap().len(), 3, "{v}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("warning: t: skipped 2 files that are not .png images")
            && err.contains("train/ellipse/photo.jpg"),
        "{err}"
    );
}
