//! Class names are the user's text: any Unicode goes through every command that prints or
//! draws them, without a panic. (Captions once cut names at byte 3, which panicked on `naïve`
//! as soon as an image was misclassified; see issue 11.)

use std::fs;
use std::path::Path;

use proptest::prelude::*;

use crate::{ok, workdir};

/// An ImageFolder tree of the size preset whose three class folders are renamed to `names`.
fn tree_with_classes(base: &Path, dir: &Path, names: &[String]) {
    let old = ["ellipse", "rectangle", "triangle"];
    for split in ["train", "val"] {
        fs::create_dir_all(dir.join(split)).unwrap();
        for (o, n) in old.iter().zip(names) {
            let to = dir.join(split).join(n);
            fs::create_dir_all(&to).unwrap();
            for e in fs::read_dir(base.join(split).join(o)).unwrap() {
                let e = e.unwrap();
                fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
}

/// Every command that prints or draws class names, on data with these names. One epoch on
/// a few images leaves many images misclassified, so failure captions are drawn too.
fn every_command(dir: &Path) {
    ok(dir, &["inspect", "tree"]);
    ok(dir, &["inspect", "tree", "--json", "--no-sheet"]);
    ok(
        dir,
        &[
            "train", "--data", "tree", "--arch", "2-2", "--epochs", "1", "--out", "m",
        ],
    );
    ok(dir, &["eval", "m"]);
    ok(dir, &["eval", "m", "--json"]);
    let img = fs::read_dir(dir.join("tree/val"))
        .unwrap()
        .flat_map(|c| fs::read_dir(c.unwrap().path()).unwrap())
        .next()
        .unwrap()
        .unwrap()
        .path();
    let img = img.to_str().unwrap();
    ok(dir, &["predict", "m", img]);
    ok(dir, &["predict", "m", img, "--json"]);
    ok(dir, &["filters", "m"]);
    ok(dir, &["filters", "m", "--csv"]);
    ok(dir, &["activations", "m", "--out", "act"]);
    ok(dir, &["analyze", "m", "--out", "an"]);
    ok(dir, &["prune", "m"]);
}

fn base_tree() -> tempfile::TempDir {
    let base = workdir();
    ok(
        base.path(),
        &[
            "generate",
            "--preset",
            "size",
            "--train",
            "45",
            "--val",
            "24",
            "--format",
            "imagefolder",
            "--out",
            "t",
        ],
    );
    base
}

#[test]
fn named_unicode_classes() {
    let base = base_tree();
    let dir = workdir();
    let names: Vec<String> = ["naïve", "猫 cat", "e\u{301}😀"].map(String::from).to_vec();
    tree_with_classes(&base.path().join("t"), &dir.path().join("tree"), &names);
    every_command(dir.path());
    let e = ok(dir.path(), &["eval", "m"]);
    assert!(names.iter().all(|n| e.contains(n.as_str())), "{e}");
    let failures = fs::read_to_string(dir.path().join("an/failures.csv")).unwrap();
    assert!(
        failures.lines().count() > 1,
        "some image is misclassified: {failures}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Arbitrary printable Unicode (a file name: no `/`, not hidden).
    #[test]
    fn arbitrary_unicode_classes(
        names in prop::collection::btree_set("[^./\\pC][^/\\pC]{0,7}", 3)
    ) {
        static BASE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
        let base = BASE.get_or_init(base_tree);
        let dir = workdir();
        let names: Vec<String> = names.into_iter().collect();
        tree_with_classes(&base.path().join("t"), &dir.path().join("tree"), &names);
        every_command(dir.path());
    }
}

/// The study's case analysis draws failure captions too; resuming it redraws nothing but
/// must not fail either.
#[test]
fn study_on_unicode_classes() {
    let base = base_tree();
    let dir = workdir();
    let names: Vec<String> = ["naïve", "猫 cat", "e\u{301}😀"].map(String::from).to_vec();
    tree_with_classes(&base.path().join("t"), &dir.path().join("tree"), &names);
    fs::write(
        dir.path().join("u.toml"),
        r#"name = "u"
seed = 1
seeds = 1
epochs = 1
[[dataset]]
file = "tree"
name = "uni"
[grid]
archs = ["2-2"]
[condition.modern]
optimizer = "adam"
[study]
case_condition = "modern"
cases = [{ dataset = "uni", arch = "2-2" }]
continue_epochs = 1
"#,
    )
    .unwrap();
    for _ in 0..2 {
        ok(
            dir.path(),
            &["-q", "study", "--config", "u.toml", "--out", "st"],
        );
    }
    let failures =
        fs::read_to_string(dir.path().join("st/cases/uni-2-2/analysis/failures.csv")).unwrap();
    assert!(
        failures.lines().count() > 1,
        "failure captions were drawn: {failures}"
    );
    let html = fs::read_to_string(dir.path().join("st/report.html")).unwrap();
    assert!(html.contains("naïve"), "the report names the classes");
}
