//! `shapelab inspect`: text, JSON and the contact sheet.

use std::fs;

use crate::{ok, workdir};

#[test]
fn text_report_and_contact_sheet() {
    let dir = workdir();
    ok(
        dir.path(),
        &[
            "generate",
            "--preset",
            "thesis-1.3",
            "--train",
            "60",
            "--out",
            "data/s.npz",
        ],
    );
    let text = ok(dir.path(), &["inspect", "data/s.npz"]);
    assert!(
        text.contains("data/s.npz: dataset, 28x28 px, 3 classes"),
        "{text}"
    );
    assert!(
        text.contains("train") && text.contains("20") && text.contains("size"),
        "{text}"
    );
    assert!(text.contains("contact sheet: data/s.contact.png"), "{text}");
    let png = fs::read(dir.path().join("data/s.contact.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    ok(
        dir.path(),
        &[
            "inspect",
            "data/s.npz",
            "--sheet",
            "elsewhere/sheet.png",
            "--per-class",
            "3",
        ],
    );
    assert!(dir.path().join("elsewhere/sheet.png").is_file());
}

#[test]
fn json_is_machine_readable() {
    let dir = workdir();
    ok(
        dir.path(),
        &[
            "generate", "--preset", "position", "--train", "30", "--out", "p.npz",
        ],
    );
    let out = ok(dir.path(), &["inspect", "p.npz", "--json"]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["contact_sheet"], "p.contact.png");
    assert_eq!(
        j["class_names"],
        serde_json::json!(["ellipse", "rectangle", "triangle"])
    );
    let ox = j["factors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "offset_x")
        .unwrap();
    assert!(
        ox["train"]["min"].as_f64().unwrap() < 0.0 && ox["train"]["max"].as_f64().unwrap() > 0.0
    );
}
