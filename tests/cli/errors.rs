//! Every documented error path, as one table: (command line, exit code, words the one-line
//! error must hold). Exit codes are the README's: 1 for a failure (a missing, unreadable,
//! truncated or foreign file), 2 for a usage error (a bad value, an existing or overlapping
//! output). After every case the whole working directory is compared with its state before
//! the table: a refused command never creates, changes or deletes anything.
//!
//! Adding a case is one line in `CASES`; the inputs it may name are made by `setup`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{ok, shapelab, workdir};

/// (arguments, exit code, words in the error).
type Case = (&'static [&'static str], i32, &'static [&'static str]);

#[rustfmt::skip]
const CASES: &[Case] = &[
    // --- missing paths: exit 1 ---
    (&["inspect", "nope.npz"], 1, &["nope.npz does not exist"]),
    (&["train", "--data", "nope.npz", "--arch", "2-2", "--out", "x"], 1, &["nope.npz", "no such file"]),
    (&["train", "--data", "no/such/dir", "--arch", "2-2", "--out", "x"], 1, &["no/such/dir"]),
    (&["eval", "nope"], 1, &["nope does not exist"]),
    (&["eval", "m-gone"], 1, &["which is gone", "--data"]),
    (&["predict", "m", "nope.png"], 1, &["nope.png does not exist"]),
    (&["sweep", "nope.toml"], 1, &["nope.toml does not exist"]),
    (&["sweep", "exp-nodata.toml", "--store", "x.db"], 1, &["gone.npz does not exist", "exp-nodata.toml"]),
    (&["sweep", "exp-nospec.toml", "--store", "x.db"], 1, &["gone.toml does not exist"]),
    (&["runs", "--store", "nope.db"], 1, &["nope.db does not exist"]),
    (&["runs", "--store", "empty.db"], 1, &["empty.db", "not a shapelab store"]),
    (&["summary", "--store", "empty.db"], 1, &["not a shapelab store"]),
    (&["stuck", "--store", "empty.db"], 1, &["not a shapelab store"]),
    (&["runs", "--store", "d.npz"], 1, &["not a shapelab store"]),
    (&["prune", "m", "--store", "empty.db"], 1, &["not a shapelab store"]),
    (&["generate", "nope.toml", "--out", "x.npz"], 1, &["nope.toml does not exist"]),
    (&["study", "--config", "nope.toml", "--out", "st"], 1, &["nope.toml does not exist", "--print-config"]),
    (&["report", "nodir"], 1, &["nodir does not exist"]),
    (&["activations", "m", "--panel", "nope.npz", "--out", "a"], 1, &["nope.npz", "no such file"]),
    (&["analyze", "nope", "--out", "a"], 1, &["nope does not exist"]),
    // --- malformed or out-of-range files: exit 1 ---
    (&["inspect", "text.npz"], 1, &["text.npz", "not an .npz archive"]),
    (&["inspect", "cut.npz"], 1, &["cut.npz"]),
    (&["train", "--data", "noval.npz", "--arch", "2-2", "--out", "x"], 1, &["noval.npz", "val split holds no images"]),
    (&["train", "--data", "tree-noval", "--arch", "2-2", "--out", "x"], 1, &["tree-noval", "val split holds no images"]),
    (&["inspect", "tiny.npz"], 1, &["4x4", "8 to 256"]),
    (&["train", "--data", "big.npz", "--arch", "2-2", "--out", "x"], 1, &["300x300", "8 to 256"]),
    (&["inspect", "tree-empty"], 1, &["zebra", "holds no .png images"]),
    (&["predict", "m-short", "img.png"], 1, &["class_names", "3 classes"]),
    (&["runs", "--store", "bad.db"], 1, &["bad.db", "column confusion does not read back"]),
    (&["summary", "--store", "bad.db"], 1, &["bad.db", "column confusion does not read back"]),
    (&["eval", "m-badjson"], 1, &["model.json", "not shapelab model metadata"]),
    // --- usage errors: exit 2 ---
    (&["generate", "--preset", "thesis-9", "--out", "x.npz"], 2, &["`thesis-9`"]),
    (&["train", "--data", "thesis-9", "--arch", "2-2", "--out", "x"], 2, &["thesis-9", "not a preset"]),
    (&["train", "--data", "d.npz", "--arch", "0-2", "--out", "x"], 2, &["0"]),
    (&["prune", "m", "--stop", "below:2"], 2, &["below:X"]),
    (&["predict", "m", "img.png", "--out", "x.npz"], 2, &["--out x.npz", "--json"]),
    (&["generate", "--preset", "size", "--out", "foreign", "--force"], 2, &["foreign is a directory"]),
    (&["kernels", "m", "--out", "k0"], 2, &["k0 already exists", "--force"]),
    (&["inspect", "d.npz", "--sheet", "mine.png"], 2, &["mine.png already exists", "--force"]),
    (&["summary", "--store", "s.db", "--out", "mine.png"], 2, &["mine.png already exists"]),
    (&["summary", "--store", "s.db", "--thesis-table", "mine"], 2, &["mine.csv already exists"]),
    // --- outputs that overlap an input: exit 2, every command that writes ---
    (&["generate", "spec.toml", "--out", "spec.toml", "--force"], 2, &["--out spec.toml is a file it reads (spec.toml)"]),
    (&["inspect", "d.npz", "--sheet", "d.npz"], 2, &["--sheet d.npz is"]),
    (&["inspect", "tree", "--sheet", "tree/train/sheet.png"], 2, &["lies inside the dataset it reads (tree)"]),
    (&["train", "--data", "d.npz", "--arch", "2-2", "--out", "d.npz", "--force"], 2, &["--out d.npz is"]),
    (&["train", "--data", "tree", "--arch", "2-2", "--out", "tree", "--force"], 2, &["--out tree is the dataset it reads (tree)"]),
    (&["train", "--data", "tree", "--arch", "2-2", "--out", "tree/train/new"], 2, &["lies inside the dataset it reads"]),
    (&["predict", "m", "--data", "d.npz", "--out", "d.npz", "--force"], 2, &["--out d.npz is"]),
    (&["predict", "m", "--data", "d.npz", "--out", "m/model.json", "--force"], 2, &["would replace a file of the model it reads (m)"]),
    (&["activations", "m", "--out", "m", "--force"], 2, &["--out m is the model it reads (m)"]),
    (&["activations", "m", "--panel", "panel.npz", "--out", "panel.npz", "--force"], 2, &["--out panel.npz is a file it reads"]),
    (&["kernels", "m", "--out", ".", "--force"], 2, &["contains the model it reads (m)"]),
    (&["filters", "m", "--npz", "d.npz", "--force"], 2, &["--npz d.npz is"]),
    (&["prune", "m", "--out", "m"], 2, &["--out m is the model it reads"]),
    (&["prune", "m", "--store", "s.db", "--out", "s.db"], 2, &["--out s.db is the store it reads"]),
    (&["analyze", "m", "--out", "."], 2, &["--out . contains the model it reads"]),
    (&["summary", "--store", "s.db", "--out", "s.db"], 2, &["--out s.db is the store it reads"]),
    (&["summary", "--store", "s.db", "--out", "s.db-wal"], 2, &["would replace a file of the store"]),
    (&["summary", "--store", "t.csv", "--thesis-table", "t"], 2, &["--thesis-table t.csv is the store it reads (t.csv)"]),
    (&["generate", "--panel", "thesis-size", "--out", "foreign", "--force"], 2, &["foreign is a directory"]),
    (&["sweep", "exp.toml", "--store", "exp.toml"], 2, &["--store exp.toml is a file it reads"]),
    (&["sweep", "exp-file.toml", "--store", "d.npz"], 2, &["--store d.npz is"]),
    (&["study", "--config", "sd/mine.toml", "--out", "sd"], 2, &["--out sd contains a file it reads (sd/mine.toml)"]),
    // --- --force replaces only what shapelab wrote: exit 2 ---
    (&["kernels", "m", "--out", "foreign", "--force"], 2, &["foreign exists and was not written by shapelab", ".shapelab"]),
    (&["activations", "m", "--out", "foreign", "--force"], 2, &["not written by shapelab"]),
    (&["train", "--data", "d.npz", "--arch", "2-2", "--out", "foreign", "--force"], 2, &["not written by shapelab"]),
    (&["generate", "spec.toml", "--format", "imagefolder", "--out", "foreign", "--force"], 2, &["not written by shapelab"]),
    (&["prune", "m", "--out", "foreign"], 2, &["not written by shapelab"]),
    (&["analyze", "m", "--out", "foreign"], 2, &["not written by shapelab"]),
    (&["study", "--out", "d.npz"], 2, &["d.npz is a file", "directory"]),
    (&["study", "--out", "foreign"], 2, &["foreign is not empty and was not written by shapelab"]),
];

/// Writes a dataset `.npz` with `val` validation images of `side` x `side` pixels.
fn write_npz(path: &Path, side: usize, train: usize, val: usize) {
    let split = |n: usize| lab::data::dataset::Split {
        images: vec![128; n * side * side],
        labels: (0..n).map(|i| (i % 3) as u8).collect(),
        factors: Vec::new(),
    };
    let d = lab::Dataset {
        height: side,
        width: side,
        class_names: vec!["ellipse".into(), "rectangle".into(), "triangle".into()],
        factor_names: Vec::new(),
        train: split(train),
        val: split(val),
        test: None,
        meta: None,
        skipped: Vec::new(),
    };
    d.write_npz(path, false).expect("writes");
}

/// The inputs the cases name.
fn setup(dir: &Path) {
    let w = |name: &str, text: &str| fs::write(dir.join(name), text).unwrap();
    ok(
        dir,
        &[
            "generate", "--preset", "size", "--train", "60", "--val", "30", "--out", "d.npz",
        ],
    );
    ok(
        dir,
        &[
            "train", "--data", "d.npz", "--arch", "2-2", "--epochs", "1", "--out", "m",
        ],
    );
    ok(dir, &["kernels", "m", "--out", "k0"]);
    ok(
        dir,
        &["generate", "--panel", "thesis-size", "--out", "panel.npz"],
    );
    // A model trained on a foreign file (no spec to regenerate it from), then deleted.
    fs::copy(crate::fixture("numpy_savez.npz"), dir.join("f.npz")).unwrap();
    ok(
        dir,
        &[
            "train", "--data", "f.npz", "--arch", "2-2", "--epochs", "1", "--out", "m-gone",
        ],
    );
    fs::remove_file(dir.join("f.npz")).unwrap();
    // ImageFolder trees: a good one, one with an empty class folder, one with an empty val/.
    ok(
        dir,
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
            "tree",
        ],
    );
    for t in ["tree-empty", "tree-noval"] {
        copy_tree(&dir.join("tree"), &dir.join(t));
    }
    fs::create_dir_all(dir.join("tree-empty/train/zebra")).unwrap();
    fs::remove_dir_all(dir.join("tree-noval/val")).unwrap();
    fs::create_dir_all(dir.join("tree-noval/val")).unwrap();
    let img = fs::read_dir(dir.join("tree/val/ellipse"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    fs::copy(img, dir.join("img.png")).unwrap();
    // Damaged model directories.
    copy_tree(&dir.join("m"), &dir.join("m-short"));
    let mut meta: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("m/model.json")).unwrap()).unwrap();
    meta["class_names"] = serde_json::json!(["a"]);
    w("m-short/model.json", &serde_json::to_string(&meta).unwrap());
    copy_tree(&dir.join("m"), &dir.join("m-badjson"));
    w("m-badjson/model.json", "{\"format\": \"shapelab-model\"");
    // Files that are not what they claim.
    write_npz(&dir.join("noval.npz"), 28, 30, 0);
    write_npz(&dir.join("tiny.npz"), 4, 6, 3);
    write_npz(&dir.join("big.npz"), 300, 3, 3);
    w("text.npz", "not a zip");
    let bytes = fs::read(dir.join("d.npz")).unwrap();
    fs::write(dir.join("cut.npz"), &bytes[..bytes.len() * 2 / 3]).unwrap();
    w("empty.db", "");
    w("mine.png", "the user's picture");
    w("mine.csv", "the user's table");
    // Experiments and a store.
    let exp = "name = \"e\"\nseeds = 1\nepochs = 1\n[[dataset]]\npreset = \"thesis-1.3\"\ntrain = 30\nval = 15\n[grid]\narchs = [\"2-2\"]\n";
    w("exp.toml", exp);
    ok(dir, &["sweep", "exp.toml", "--store", "s.db"]);
    fs::copy(dir.join("s.db"), dir.join("t.csv")).unwrap();
    // A store whose stored JSON no longer reads back.
    fs::copy(dir.join("s.db"), dir.join("bad.db")).unwrap();
    rusqlite::Connection::open(dir.join("bad.db"))
        .unwrap()
        .execute("UPDATE runs SET confusion = 'not json'", [])
        .unwrap();
    w(
        "exp-nodata.toml",
        "seeds = 1\n[[dataset]]\nfile = \"gone.npz\"\n[grid]\narchs = [\"2\"]\n",
    );
    w(
        "exp-nospec.toml",
        "seeds = 1\n[[dataset]]\nspec = \"gone.toml\"\n[grid]\narchs = [\"2\"]\n",
    );
    w(
        "exp-file.toml",
        "seeds = 1\n[[dataset]]\nfile = \"d.npz\"\n[grid]\narchs = [\"2\"]\n",
    );
    w(
        "spec.toml",
        "train = 30\n[factors]\nsize = { min = 0.3, max = 0.9 }\n",
    );
    fs::create_dir_all(dir.join("sd")).unwrap();
    w("sd/mine.toml", exp);
    // A directory of the user's that shapelab did not write.
    fs::create_dir_all(dir.join("foreign")).unwrap();
    w("foreign/holiday.jpg", "a photo");
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Every file and directory under `dir` with a hash of its contents, leaving out SQLite's
/// transient `-wal` and `-shm` companions.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            let name = rel.to_string_lossy().into_owned();
            if name.ends_with("-wal") || name.ends_with("-shm") {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                out.insert(rel, "dir".into());
                stack.push(p);
            } else {
                let h = Sha256::digest(fs::read(&p).unwrap());
                out.insert(rel, format!("{h:x}"));
            }
        }
    }
    out
}

#[test]
fn every_error_path_has_its_code_and_words_and_changes_nothing() {
    let dir = workdir();
    setup(dir.path());
    let before = snapshot(dir.path());
    let mut wrong = Vec::new();
    for (args, code, words) in CASES {
        let out = shapelab()
            .current_dir(dir.path())
            .args(*args)
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let line = err.trim_end();
        // Shown with `--nocapture`: every message, to read them together.
        println!(
            "shapelab {} -> {} {line}",
            args.join(" "),
            out.status.code().unwrap_or(-1)
        );
        if out.status.code() != Some(*code)
            || !line.starts_with("error: ")
            || line.lines().count() != 1
            || words.iter().any(|w| !line.contains(w))
        {
            wrong.push(format!(
                "shapelab {}: exit {:?} (want {code}), stderr {line:?}, want words {words:?}",
                args.join(" "),
                out.status.code()
            ));
        }
        let now = snapshot(dir.path());
        if now != before {
            let changed: Vec<_> = now
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(v))
                .map(|(k, _)| k.display().to_string())
                .chain(
                    before
                        .keys()
                        .filter(|k| !now.contains_key(*k))
                        .map(|k| format!("deleted {}", k.display())),
                )
                .collect();
            panic!(
                "shapelab {} changed the directory: {changed:?}",
                args.join(" ")
            );
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases:\n{}",
        wrong.len(),
        CASES.len(),
        wrong.join("\n")
    );
}
