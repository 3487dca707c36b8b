//! `shapelab study` and `shapelab report` end to end on a small study, and the report checked
//! in headless Chromium (Debian's `chromium`; `scripts/test.sh` installs it and sets
//! SHAPELAB_REQUIRE_BROWSER=1 so that a missing browser fails instead of skipping).

use std::path::Path;
use std::process::Command as Std;

use crate::{fails, ok, workdir};

const SMALL: &str = include_str!("small-study.toml");
const SECTIONS: [&str; 8] = [
    "datasets",
    "sweep",
    "stuck",
    "cases",
    "filters",
    "seeds",
    "findings",
    "reproduce",
];

fn run_study(dir: &Path, jobs: &str) -> String {
    std::fs::write(dir.join("small.toml"), SMALL).unwrap();
    ok(
        dir,
        &[
            "--quiet",
            "study",
            "--config",
            "small.toml",
            "--out",
            "s",
            "--jobs",
            jobs,
        ],
    )
}

#[test]
fn small_study_end_to_end() {
    let a = workdir();
    let out = run_study(a.path(), "2");
    assert!(out.contains("s/report.html"), "{out}");
    // How long each of the seven stages took.
    let times = out
        .lines()
        .find(|l| l.starts_with("stage times: "))
        .expect(&out);
    let parts: Vec<&str> = times["stage times: ".len()..].split(", ").collect();
    assert_eq!(parts.len(), 7, "{times}");
    assert!(parts.iter().all(|p| p.ends_with(" s")), "{times}");
    for name in ["datasets", "the sweep", "the stuck runs", "the report"] {
        assert!(times.contains(name), "{times}");
    }
    let report = std::fs::read_to_string(a.path().join("s/report.html")).unwrap();
    for id in SECTIONS {
        assert!(
            report.contains(&format!("<section id=\"{id}\">")),
            "section {id} missing"
        );
    }
    for slug in ["size-4-2", "rotation-2-2"] {
        assert!(
            report.contains(&format!("id=\"case-{slug}\"")),
            "case {slug} missing"
        );
        assert!(a
            .path()
            .join(format!("s/cases/{slug}/analysis/prune/prune.xlsx"))
            .exists());
    }
    // Stage 5 dissected the learned runs and summarised them per cell.
    let p: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(a.path().join("s/dissection/sweep/population.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(p["split"], "test");
    assert!(report.contains("What the filters detect"));
    if p["runs"].as_u64().unwrap() > 0 {
        assert!(
            report.contains("the labelled share's interval lies above")
                || report.contains("no cell has 3 learned runs"),
            "tallies"
        );
    }
    // Everything embedded: no missing picture, no link to a file or the network.
    assert!(
        !report.contains("class=\"missing\""),
        "a picture is missing"
    );
    let imgs = report.matches("<img ").count();
    assert!(imgs > 20, "{imgs} images");
    assert_eq!(report.matches("src=\"data:image/png;base64,").count(), imgs);
    assert!(!report.contains("http://") && !report.contains("https://"));

    // Rerunning reuses everything; `report` rebuilds the same bytes without recomputing.
    let stamp = |p: &str| {
        std::fs::metadata(a.path().join(p))
            .unwrap()
            .modified()
            .unwrap()
    };
    let count = |table: &str| -> i64 {
        let db = rusqlite::Connection::open(a.path().join("s/shapelab.db")).unwrap();
        db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    let analysis = "s/cases/size-4-2/analysis/analysis.json";
    let before = (
        stamp(analysis),
        stamp("s/data/size.npz"),
        count("runs"),
        count("analyses"),
    );
    // 12 sweep runs and the 2 case nets, trained the full 3 epochs without early stopping.
    assert_eq!(before.2, 12 + 2);
    let db = rusqlite::Connection::open(a.path().join("s/shapelab.db")).unwrap();
    let case_epochs: Vec<i64> = db
        .prepare("SELECT epochs_run FROM runs WHERE experiment = 'small-cases' ORDER BY key")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(case_epochs, vec![3, 3]);
    // Every run was measured on the held-out test split.
    let untested: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM runs WHERE test_acc IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(untested, 0);
    drop(db);
    assert!(report.contains("<b>Splits.</b>") && report.contains("held-out test split"));
    run_study(a.path(), "2");
    ok(a.path(), &["report", "s"]);
    assert_eq!(
        std::fs::read_to_string(a.path().join("s/report.html")).unwrap(),
        report
    );
    let after = (
        stamp(analysis),
        stamp("s/data/size.npz"),
        count("runs"),
        count("analyses"),
    );
    assert_eq!(before, after, "a rerun must reuse what is done");

    // The same study with one job writes the same report, byte for byte.
    let b = workdir();
    run_study(b.path(), "1");
    assert_eq!(
        std::fs::read_to_string(b.path().join("s/report.html")).unwrap(),
        report
    );

    // Another configuration into the same directory is refused, and nothing is touched.
    std::fs::write(
        a.path().join("other.toml"),
        SMALL.replace("epochs = 3", "epochs = 4"),
    )
    .unwrap();
    let e = fails(
        a.path(),
        &["--quiet", "study", "--config", "other.toml", "--out", "s"],
        2,
    );
    assert!(e.contains("another configuration"), "{e}");
    assert_eq!(
        std::fs::read_to_string(a.path().join("s/study.toml")).unwrap(),
        SMALL
    );

    browser_check(&a.path().join("s/report.html"), a.path());
}

/// Stage 6 on a study whose runs learn: each case's families and the grid's barriers are
/// written, read back into the report's section, identical at any job count, rewritten the
/// same when deleted, and a damaged file is named rather than skipped.
#[test]
fn the_seeds_stage_compares_learned_seeds() {
    let study = |dir: &Path, jobs: &str| {
        std::fs::write(dir.join("seeds.toml"), include_str!("seeds-study.toml")).unwrap();
        ok(
            dir,
            &[
                "--quiet",
                "study",
                "--config",
                "seeds.toml",
                "--out",
                "s",
                "--jobs",
                jobs,
            ],
        )
    };
    let a = workdir();
    study(a.path(), "2");
    let read = |dir: &Path, p: &str| std::fs::read_to_string(dir.join("s").join(p)).unwrap();
    let families: serde_json::Value =
        serde_json::from_str(&read(a.path(), "seeds/cases/size-6-4/families.json")).unwrap();
    assert_eq!(families["runs"].as_array().unwrap().len(), 4);
    assert_eq!(families["split"], "test");
    assert_eq!(families["layers"].as_array().unwrap().len(), 2);
    let barriers: serde_json::Value =
        serde_json::from_str(&read(a.path(), "seeds/grid/barriers.json")).unwrap();
    let cells = barriers["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    for c in cells {
        // Disjoint pairs of the learned seeds: one pair of 2 or 3, two of 4.
        let learned = c["learned"].as_u64().unwrap();
        assert_eq!(
            c["pairs"].as_array().unwrap().len() as u64,
            (learned / 2).min(2)
        );
    }
    let report = read(a.path(), "report.html");
    assert!(report.contains("Do seeds agree?"));
    assert!(report.contains("belong to no family"), "families sentence");
    assert!(
        report.contains("Alignment lowered the loss barrier in"),
        "barrier sentence"
    );
    assert!(
        !report.contains("class=\"missing\""),
        "a picture is missing"
    );
    // One job writes the same bytes.
    let b = workdir();
    study(b.path(), "1");
    for p in [
        "seeds/cases/size-6-4/families.json",
        "seeds/grid/barriers.json",
        "report.html",
    ] {
        assert_eq!(read(b.path(), p), read(a.path(), p), "{p}");
    }
    // A deleted file is measured again, the same; a damaged one is named.
    std::fs::remove_file(b.path().join("s/seeds/grid/barriers.json")).unwrap();
    study(b.path(), "2");
    assert_eq!(
        read(b.path(), "seeds/grid/barriers.json"),
        read(a.path(), "seeds/grid/barriers.json")
    );
    std::fs::write(
        b.path().join("s/seeds/grid/barriers.json"),
        "{\"schema\": 1",
    )
    .unwrap();
    let e = fails(b.path(), &["report", "s"], 1);
    assert!(
        e.contains("barriers.json") && e.contains("does not read back"),
        "{e}"
    );
}

/// Renders the report in headless Chromium: every image must load and every section exist.
fn browser_check(report: &Path, tmp: &Path) {
    let Some(chromium) = crate::chromium() else {
        return;
    };
    let url = format!("file://{}", report.canonicalize().unwrap().display());
    let browse = |extra: &[&str]| {
        let out = Std::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ])
            .arg(format!(
                "--user-data-dir={}",
                tmp.join("chromium-profile").display()
            ))
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium runs");
        assert!(
            out.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dom = browse(&["--dump-dom", "--virtual-time-budget=10000"]);
    // The report's script writes "loaded/total" on <body> once the page has loaded.
    let start = dom.find("data-images=\"").expect("body attribute") + "data-images=\"".len();
    let value = &dom[start..start + dom[start..].find('"').unwrap()];
    let (loaded, total) = value
        .split_once('/')
        .unwrap_or_else(|| panic!("data-images={value}: the page's script did not run"));
    assert_eq!(loaded, total, "only {loaded} of {total} images loaded");
    assert!(total.parse::<usize>().unwrap() > 20);
    for id in SECTIONS {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "section {id} not in the rendered page"
        );
    }
    // A screenshot renders (kept beside the report for a look when debugging).
    let shot = tmp.join("report.png");
    browse(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1280,2000",
    ]);
    let mut d = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    d.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = d.read_info().expect("screenshot is a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("decodes");
    assert_eq!(info.width, 1280);
    let px = info.color_type.samples();
    let distinct: std::collections::HashSet<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    assert!(
        distinct.len() > 50,
        "the screenshot looks blank ({} colours)",
        distinct.len()
    );
}

/// A study that is not the thesis's: a three-layer net, custom case studies, 16x16 images
/// from a spec file beside the study file. The report counts layers, names the cases the
/// study has, and computes parameters for its images (issue 12: it once counted `2-2-2` as a
/// two-layer net, named the thesis's four cases and assumed 28x28).
#[test]
fn a_custom_study_is_reported_as_it_is() {
    let dir = workdir();
    std::fs::create_dir_all(dir.path().join("cfg")).unwrap();
    std::fs::write(
        dir.path().join("cfg/small16.toml"),
        "image_size = 16\ntrain = 150\nval = 60\n[factors]\nsize = { min = 0.5, max = 0.9 }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("cfg/study.toml"),
        r#"name = "custom"
seed = 3
seeds = 1
epochs = 2
[[dataset]]
spec = "small16.toml"
name = "tiny"
[grid]
archs = ["2", "2-2", "2-2-2"]
[condition.modern]
optimizer = "adam"
[study]
case_condition = "modern"
cases = [{ dataset = "tiny", arch = "2-2-2" }]
continue_epochs = 1
"#,
    )
    .unwrap();
    ok(
        dir.path(),
        &["-q", "study", "--config", "cfg/study.toml", "--out", "st"],
    );
    let html = std::fs::read_to_string(dir.path().join("st/report.html")).unwrap();
    let runs: serde_json::Value = serde_json::from_str(&ok(
        dir.path(),
        &["runs", "--store", "st/shapelab.db", "--json"],
    ))
    .unwrap();
    let learned = |arch: &str| {
        runs.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["arch"] == arch && r["outcome"] == "learned")
            .count()
    };
    for want in [
        format!("Two conv layers: {}/1 (", learned("2-2")),
        format!("one layer: {}/1 (", learned("2")),
        format!("three or more: {}/1 (", learned("2-2-2")),
    ] {
        assert!(html.contains(&want), "wants {want:?}");
    }
    assert!(
        html.contains("The study&#39;s case studies: 2-2-2 on the tiny dataset")
            || html.contains("The study's case studies: 2-2-2 on the tiny dataset"),
        "the cases the study has"
    );
    assert!(!html.contains("As in the thesis (its Chapter 3)"));
    // 2-2-2 on 16x16, 3 classes: 20 + 38 + 38 conv parameters, 2*2*2 inputs to 3 outputs.
    assert!(
        html.contains("(123 parameters on 16x16)"),
        "parameter count"
    );
    // The report rebuilds from another working directory (the spec path is the study file's).
    ok(&dir.path().join("st"), &["report", "."]);
}
