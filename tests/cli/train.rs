//! `shapelab train`, `eval` and `predict` driven as a user would.

use std::fs;

use crate::{fails, ok, workdir};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).expect("JSON")
}

#[test]
fn train_writes_weights_config_and_history() {
    let dir = workdir();
    let out = ok(
        dir.path(),
        &[
            "train", "--data", "size", "--arch", "4-4", "--epochs", "3", "--seed", "7", "--out",
            "runs/a",
        ],
    );
    assert!(
        out.contains("trained 4-4 (779 parameters) on thesis-1.3 for 3 epochs"),
        "{out}"
    );
    let run = dir.path().join("runs/a");
    let meta = json(&fs::read_to_string(run.join("model.json")).unwrap());
    assert_eq!(meta["format"], "shapelab-model");
    assert_eq!(meta["param_count"], 779);
    assert_eq!(meta["arch"]["filters"], serde_json::json!([4, 4]));
    assert_eq!(meta["train"]["seed"], 7);
    assert_eq!(meta["train"]["batch_size"], 32);
    assert_eq!(
        meta["train"]["optimizer"],
        serde_json::json!({"kind": "adam", "lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7})
    );
    assert_eq!(meta["data"]["name"], "thesis-1.3");
    assert_eq!(meta["data"]["hash"].as_str().unwrap().len(), 64);
    assert_eq!(meta["metrics"]["epochs_run"], 3);
    assert!(meta["shapelab_version"].is_string());
    let history = fs::read_to_string(run.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 4);
    assert!(history.starts_with("epoch,train_loss,train_acc,val_loss,val_acc,dead_l1,dead_l2"));
    let st = fs::read(run.join("model.safetensors")).unwrap();
    assert!(st.len() > 779 * 4);
    // Adam with Keras's defaults learns the size dataset quickly.
    assert!(meta["metrics"]["val_acc"].as_f64().unwrap() > 0.9, "{meta}");
}

#[test]
fn same_seed_same_bytes_at_one_and_two_threads() {
    let dir = workdir();
    ok(
        dir.path(),
        &[
            "generate", "--preset", "rotation", "--train", "600", "--out", "d.npz",
        ],
    );
    for (t, out) in [("1", "one"), ("2", "two")] {
        ok(
            dir.path(),
            &[
                "--threads",
                t,
                "train",
                "--data",
                "d.npz",
                "--arch",
                "3-4",
                "--epochs",
                "2",
                "--seed",
                "3",
                "--out",
                out,
            ],
        );
    }
    for f in ["model.safetensors", "history.csv"] {
        let a = fs::read(dir.path().join("one").join(f)).unwrap();
        assert_eq!(
            a,
            fs::read(dir.path().join("two").join(f)).unwrap(),
            "{f} differs between 1 and 2 threads"
        );
    }
    ok(
        dir.path(),
        &[
            "train", "--data", "d.npz", "--arch", "3-4", "--epochs", "2", "--seed", "4", "--out",
            "other",
        ],
    );
    assert_ne!(
        fs::read(dir.path().join("one/model.safetensors")).unwrap(),
        fs::read(dir.path().join("other/model.safetensors")).unwrap()
    );
}

#[test]
fn eval_and_predict() {
    let dir = workdir();
    crate::trained_run(dir.path(), 300, "4-4", 4);
    // The model's own data by default, read again from its path.
    let text = ok(dir.path(), &["eval", "run"]);
    assert!(
        text.contains("(val, 150 images): accuracy") && text.contains("confusion matrix"),
        "{text}"
    );
    let e = json(&ok(
        dir.path(),
        &[
            "eval", "run", "--data", "d.npz", "--split", "train", "--json",
        ],
    ));
    assert_eq!(e["total"], 300);
    assert_eq!(e["split"], "train");
    let confusion: u64 = e["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(confusion, 300);
    let diag: u64 = (0..3).map(|i| e["confusion"][i][i].as_u64().unwrap()).sum();
    assert_eq!(diag, e["correct"].as_u64().unwrap());
    assert!((e["accuracy"].as_f64().unwrap() - diag as f64 / 300.0).abs() < 1e-12);

    ok(
        dir.path(),
        &[
            "predict",
            "run",
            "--data",
            "d.npz",
            "--split",
            "train",
            "--out",
            "logits.npz",
        ],
    );
    let f = lab::files::npz::NpzFile::open(&dir.path().join("logits.npz")).unwrap();
    let (shape, logits) = f.floats("logits").unwrap();
    assert_eq!(shape, vec![300, 3]);
    let (_, y) = f.u8("y").unwrap();
    let right = logits
        .chunks(3)
        .zip(&y)
        .filter(|(l, &y)| {
            (0..3)
                .max_by(|&a, &b| l[a].total_cmp(&l[b]).then(b.cmp(&a)))
                .unwrap()
                == y as usize
        })
        .count();
    assert_eq!(
        right as u64,
        e["correct"].as_u64().unwrap(),
        "predict agrees with eval"
    );

    ok(
        dir.path(),
        &[
            "generate",
            "--preset",
            "size",
            "--train",
            "3",
            "--val",
            "3",
            "--format",
            "imagefolder",
            "--out",
            "pngs",
        ],
    );
    let first = |class: &str| {
        let p = fs::read_dir(dir.path().join("pngs/val").join(class))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        p.strip_prefix(dir.path())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    };
    let (e1, r1, t1) = (first("ellipse"), first("rectangle"), first("triangle"));
    let p = json(&ok(dir.path(), &["predict", "run", &e1, &r1, "--json"]));
    let p = p.as_array().unwrap();
    assert_eq!(p.len(), 2);
    let probs: f64 = p[0]["probabilities"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!((probs - 1.0).abs() < 1e-9);
    assert_eq!(p[0]["logits"].as_array().unwrap().len(), 3);
    let text = ok(dir.path(), &["predict", "run", &t1]);
    assert!(text.starts_with(&format!("{t1}: ")), "{text}");
}

#[test]
fn early_stop_and_sgd_options() {
    let dir = workdir();
    ok(
        dir.path(),
        &[
            "generate", "--preset", "size", "--train", "600", "--out", "d.npz",
        ],
    );
    let out = ok(
        dir.path(),
        &[
            "train",
            "--data",
            "d.npz",
            "--arch",
            "8-4",
            "--epochs",
            "30",
            "--early-stop",
            "--out",
            "a",
        ],
    );
    assert!(out.contains("stopped early"), "{out}");
    let meta = json(&fs::read_to_string(dir.path().join("a/model.json")).unwrap());
    assert_eq!(meta["ending"], "early-stopped");
    assert!(meta["metrics"]["epochs_run"].as_u64().unwrap() < 30);
    ok(
        dir.path(),
        &[
            "train",
            "--data",
            "d.npz",
            "--arch",
            "2-2",
            "--epochs",
            "1",
            "--optimizer",
            "sgd",
            "--lr",
            "0.01",
            "--momentum",
            "0.9",
            "--scaling",
            "raw",
            "--init",
            "he",
            "--activation",
            "tanh",
            "--pool",
            "on,off",
            "--kernel",
            "5",
            "--out",
            "b",
        ],
    );
    let meta = json(&fs::read_to_string(dir.path().join("b/model.json")).unwrap());
    assert_eq!(
        meta["train"]["optimizer"],
        serde_json::json!({"kind": "sgd", "lr": 0.01, "momentum": 0.9})
    );
    assert_eq!(meta["arch"]["pool"], serde_json::json!([true, false]));
    assert_eq!(meta["arch"]["kernel"], 5);
    assert_eq!(meta["train"]["scaling"], "raw");
    ok(dir.path(), &["eval", "b"]);
}

#[test]
fn bad_training_input() {
    let dir = workdir();
    ok(
        dir.path(),
        &[
            "generate", "--preset", "size", "--train", "30", "--out", "d.npz",
        ],
    );
    let cases: &[(&[&str], i32, &str)] = &[
        (&["--arch", "16-x"], 2, "`16-x`"),
        (&["--arch", "4-4", "--lr", "0"], 2, "learning rate 0"),
        (&["--arch", "4-4", "--epochs", "0"], 2, "0 epochs"),
        (&["--arch", "4-4", "--batch", "0"], 2, "batch size 0"),
        (&["--arch", "4-4", "--momentum", "0.9"], 2, "--momentum"),
        (
            &["--arch", "4-4", "--pool", "on"],
            2,
            "1 pool flags for 2 conv layers",
        ),
        (&["--arch", "4-4", "--pool", "on,maybe"], 2, "--pool maybe"),
        (&["--arch", "4-4", "--kernel", "4"], 2, "kernel 4"),
        (&["--arch", "4-4-4-4-4"], 2, "to nothing"),
    ];
    for (extra, code, want) in cases {
        let mut args = vec!["train", "--data", "d.npz", "--out", "r"];
        args.extend_from_slice(extra);
        let e = fails(dir.path(), &args, *code);
        assert!(e.contains(want), "{extra:?}: {e}");
        assert!(!dir.path().join("r").exists());
    }
    let e = fails(
        dir.path(),
        &[
            "train",
            "--data",
            "nothing.npz",
            "--arch",
            "4-4",
            "--out",
            "r",
        ],
        1,
    );
    assert!(e.contains("nothing.npz") && e.contains("preset"), "{e}");
    ok(
        dir.path(),
        &[
            "train", "--data", "d.npz", "--arch", "2-2", "--epochs", "1", "--out", "r",
        ],
    );
    let before = fs::read(dir.path().join("r/model.safetensors")).unwrap();
    let e = fails(
        dir.path(),
        &[
            "train", "--data", "d.npz", "--arch", "4-4", "--epochs", "1", "--out", "r",
        ],
        2,
    );
    assert!(e.contains("--force"), "{e}");
    assert_eq!(
        fs::read(dir.path().join("r/model.safetensors")).unwrap(),
        before
    );
}

#[test]
fn bad_model_input() {
    let dir = workdir();
    ok(
        dir.path(),
        &[
            "generate", "--preset", "size", "--train", "30", "--out", "d.npz",
        ],
    );
    ok(
        dir.path(),
        &[
            "train", "--data", "d.npz", "--arch", "2-2", "--epochs", "1", "--out", "r",
        ],
    );
    let e = fails(dir.path(), &["eval", "nope"], 1);
    assert!(e.contains("nope does not exist"), "{e}");
    fs::create_dir(dir.path().join("empty")).unwrap();
    let e = fails(dir.path(), &["eval", "empty"], 1);
    assert!(e.contains("no model.json"), "{e}");
    // A panel's images are 28x28 too, but a panel is not a dataset.
    ok(
        dir.path(),
        &["generate", "--panel", "thesis-size", "--out", "p.npz"],
    );
    let e = fails(dir.path(), &["eval", "r", "--data", "p.npz"], 2);
    assert!(e.contains("panel"), "{e}");
    // Images of the wrong size.
    ok(
        dir.path(),
        &[
            "generate",
            "--preset",
            "size",
            "--train",
            "3",
            "--val",
            "3",
            "--image-size",
            "32",
            "--out",
            "big.npz",
        ],
    );
    let e = fails(dir.path(), &["eval", "r", "--data", "big.npz"], 2);
    assert!(e.contains("32x32") && e.contains("28x28"), "{e}");
    ok(
        dir.path(),
        &[
            "generate",
            "--preset",
            "size",
            "--train",
            "3",
            "--val",
            "3",
            "--image-size",
            "32",
            "--format",
            "imagefolder",
            "--out",
            "bigpng",
        ],
    );
    let png = fs::read_dir(dir.path().join("bigpng/val/ellipse"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let e = fails(dir.path(), &["predict", "r", png.to_str().unwrap()], 2);
    assert!(e.contains("32x32"), "{e}");
    // Damaged weights.
    let st = dir.path().join("r/model.safetensors");
    let bytes = fs::read(&st).unwrap();
    fs::write(&st, &bytes[..bytes.len() - 10]).unwrap();
    let e = fails(dir.path(), &["eval", "r"], 1);
    assert!(e.contains("model.safetensors"), "{e}");
}

/// Every kernel version this CPU runs (`TINYCNN_ISA`) trains the same bytes, on a network
/// whose convolutions go through the direct product, the transpose and the unfolded input
/// gradient (16-16) and one through the GEMM crates (2-4); a name the engine does not know,
/// or one the CPU cannot run, is refused in one line.
#[test]
fn every_kernel_version_trains_the_same_bytes() {
    let dir = workdir();
    ok(
        dir.path(),
        &[
            "generate", "--preset", "rotation", "--train", "200", "--out", "d.npz",
        ],
    );
    let train = |isa: &str, arch: &str, out: &str| {
        let o = crate::shapelab()
            .current_dir(dir.path())
            .env("TINYCNN_ISA", isa)
            .args([
                "train", "--data", "d.npz", "--arch", arch, "--epochs", "2", "--seed", "5",
                "--out", out,
            ])
            .output()
            .expect("runs");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let cpu = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpu.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let mut isas = vec!["baseline"];
    if has("avx2") && has("fma") {
        isas.push("avx2");
    }
    if ["avx512f", "avx512bw", "avx512vl", "fma"]
        .iter()
        .all(|f| has(f))
    {
        isas.push("avx512");
    }
    for arch in ["16-16", "2-4"] {
        let mut first: Option<Vec<u8>> = None;
        for isa in &isas {
            let out = format!("{arch}-{isa}");
            let (code, err) = train(isa, arch, &out);
            assert_eq!(code, Some(0), "{isa}: {err}");
            let bytes = fs::read(dir.path().join(&out).join("model.safetensors")).unwrap();
            match &first {
                None => first = Some(bytes),
                Some(f) => assert!(f == &bytes, "{arch}: {isa} differs from {}", isas[0]),
            }
        }
    }
    let (code, err) = train("sse9", "2-4", "x");
    assert_eq!(code, Some(2));
    assert_eq!(
        err.trim_end(),
        "error: TINYCNN_ISA=sse9 is not a kernel version; use avx512, avx2 or baseline, or unset it"
    );
    if !isas.contains(&"avx512") {
        let (code, err) = train("avx512", "2-4", "x");
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("cannot run the avx512 kernels"), "{err}");
    }
}
