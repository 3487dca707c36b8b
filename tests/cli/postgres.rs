//! Sweeps into PostgreSQL: workers that claim runs, killed and restarted, lost connections,
//! `store copy` both ways, and the errors of a wrong URL. Against the throwaway server
//! `scripts/test.sh` starts (`SHAPELAB_TEST_PG`); without one these tests say so and pass,
//! unless `SHAPELAB_REQUIRE_POSTGRES` is set (the test script sets it).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::{fails, ok, workdir};

/// 16 runs: two architectures, Adam against SGD on raw pixels, four seeds.
const EXPERIMENT: &str = r#"
name = "pg"
seed = 5
seeds = 4
epochs = 3
[[dataset]]
preset = "thesis-1.3"
train = 1500
val = 300
test = 300
[grid]
archs = ["2-2", "4-4"]
[sweep]
optimizer = ["adam", "sgd"]
scaling = ["raw"]
"#;

/// The admin URL of the test server, or `None` (skipped) when there is none.
fn server() -> Option<String> {
    match std::env::var("SHAPELAB_TEST_PG") {
        Ok(u) => Some(u),
        Err(_) => {
            assert!(
                std::env::var_os("SHAPELAB_REQUIRE_POSTGRES").is_none(),
                "SHAPELAB_REQUIRE_POSTGRES is set but SHAPELAB_TEST_PG is not (run scripts/test.sh)"
            );
            eprintln!("no PostgreSQL server: test skipped (scripts/test.sh starts one)");
            None
        }
    }
}

fn admin(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).expect("the test server")
}

/// A fresh database on the test server; its URL.
fn database(tag: &str) -> Option<String> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let url = server()?;
    let name = format!(
        "cli_{tag}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    admin(&url)
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    Some(url.replacen("/postgres?", &format!("/{name}?"), 1))
}

/// The database a test URL names.
fn db_name(url: &str) -> &str {
    url.split('?').next().unwrap().rsplit('/').next().unwrap()
}

/// Makes the database at `url` an empty shapelab store (the schema, no runs).
fn make_store(url: &str) {
    let url: lab::experiments::store::StoreUrl = url.parse().unwrap();
    drop(lab::experiments::store::Store::open(url).unwrap());
}

/// `shapelab ARGS` in `dir` with `PGPASSWORD` set to the test role's password; its output.
fn with_password(dir: &Path, args: &[&str]) -> std::process::Output {
    crate::shapelab()
        .current_dir(dir)
        .env(
            "PGPASSWORD",
            std::env::var("SHAPELAB_TEST_PG_PASSWORD").unwrap(),
        )
        .args(args)
        .output()
        .unwrap()
}

fn worker(dir: &Path, url: &str, extra: &[&str]) -> Child {
    Command::new(assert_cmd::cargo::cargo_bin("shapelab"))
        .current_dir(dir)
        .args(["--quiet", "sweep", "exp.toml", "--worker", "--store", url])
        .args(["--artifacts", "art", "--jobs", "1"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Per key: what must be equal between two stores of one sweep.
fn results(dir: &Path, store: &str, artifacts: Option<&str>) -> BTreeMap<String, String> {
    results_env(dir, store, artifacts, &[])
}

/// [`results`], read by `shapelab runs` with these environment variables.
fn results_env(
    dir: &Path,
    store: &str,
    artifacts: Option<&str>,
    env: &[(&str, &str)],
) -> BTreeMap<String, String> {
    let mut args = vec!["runs", "--store", store, "--json"];
    if let Some(a) = artifacts {
        args.extend(["--artifacts", a]);
    }
    let out = crate::shapelab()
        .current_dir(dir)
        .envs(env.iter().copied())
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8(out.stdout).unwrap();
    let runs: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let mut m = BTreeMap::new();
    for r in runs {
        // The weights on disk are the ones the store names.
        let bytes = fs::read(
            dir.join(r["model_dir"].as_str().unwrap())
                .join("model.safetensors"),
        )
        .unwrap();
        let sha: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sha, r["weights_sha256"].as_str().unwrap(), "{}", r["key"]);
        let v = format!(
            "{} {} {} {} {} {} {}",
            r["outcome"],
            r["epochs_run"],
            r["val_acc"],
            r["val_loss"],
            r["test_acc"],
            r["confusion"],
            r["weights_sha256"]
        );
        assert!(
            m.insert(r["key"].as_str().unwrap().to_string(), v)
                .is_none(),
            "a key listed twice"
        );
    }
    m
}

#[test]
fn four_workers_two_killed_store_every_run_once() {
    let Some(url) = database("workers") else {
        return;
    };
    let dir = workdir();
    fs::write(dir.path().join("exp.toml"), EXPERIMENT).unwrap();
    ok(dir.path(), &["sweep", "exp.toml", "--store", "one.db"]);
    let want = results(dir.path(), "one.db", None);
    assert_eq!(want.len(), 16);

    let lease = ["--lease", "2"];
    let mut workers: Vec<Child> = (0..4).map(|_| worker(dir.path(), &url, &lease)).collect();
    // Kill two of them with SIGKILL at pseudo-random moments, and start them again.
    let mut state = 0x9E3779B97F4A7C15u64;
    let mut kills = 0;
    for victim in [0, 1, 0] {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        std::thread::sleep(Duration::from_millis(200 + state % 700));
        if workers[victim].try_wait().unwrap().is_none() {
            workers[victim].kill().unwrap();
            workers[victim].wait().unwrap();
            kills += 1;
        }
        workers[victim] = worker(dir.path(), &url, &lease);
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    for w in &mut workers {
        while w.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "a worker never finished");
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = w.wait_with_output_ref();
        assert!(out.0.success(), "a worker failed: {}", out.1);
    }
    assert!(kills > 0, "no worker was killed while it ran");
    let got = results(dir.path(), &url, Some("art"));
    assert_eq!(got, want, "after {kills} kills");
    let mut c = admin(&url);
    let row = c
        .query_one("SELECT count(*), count(DISTINCT key) FROM runs", &[])
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (16, 16));
    let held = c
        .query_one("SELECT count(*) FROM claims WHERE worker IS NOT NULL", &[])
        .unwrap();
    assert_eq!(held.get::<_, i64>(0), 0, "every claim let go");
    // What the killed workers staged was removed by the workers that wrote those runs again.
    let leftovers = crate::leftovers(&dir.path().join("art"));
    assert!(leftovers.is_empty(), "after {kills} kills: {leftovers:?}");
}

/// `wait_with_output` for a child already waited on: its status and what it wrote to stderr.
trait Finished {
    fn wait_with_output_ref(&mut self) -> (std::process::ExitStatus, String);
}

impl Finished for Child {
    fn wait_with_output_ref(&mut self) -> (std::process::ExitStatus, String) {
        let status = self.wait().unwrap();
        let mut err = String::new();
        if let Some(mut e) = self.stderr.take() {
            use std::io::Read;
            e.read_to_string(&mut err).unwrap();
        }
        (status, err)
    }
}

/// Ends every connection shapelab has to `url`'s database, as a restarting server would.
fn cut(url: &str) -> u64 {
    let db = db_name(url);
    let admin_url = std::env::var("SHAPELAB_TEST_PG").unwrap();
    admin(&admin_url)
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'shapelab'",
            &[&db],
        )
        .unwrap()
        .len() as u64
}

#[test]
fn a_lost_connection_is_retried_or_stops_with_a_message() {
    let Some(url) = database("lost") else {
        return;
    };
    let dir = workdir();
    fs::write(dir.path().join("exp.toml"), EXPERIMENT).unwrap();
    ok(dir.path(), &["sweep", "exp.toml", "--store", "one.db"]);
    let want = results(dir.path(), "one.db", None);

    // With no time to reconnect, the worker stops at once with one line, keeping its runs.
    let mut w = worker(dir.path(), &url, &["--reconnect", "0"]);
    std::thread::sleep(Duration::from_millis(700));
    let mut cuts = 0;
    while w.try_wait().unwrap().is_none() {
        cuts += cut(&url);
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, err) = w.wait_with_output_ref();
    if !status.success() {
        assert_eq!(status.code(), Some(1), "{err}");
        assert!(
            err.contains("lost the connection") && err.contains("run the same command"),
            "{err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(!err.contains(&std::env::var("SHAPELAB_TEST_PG_PASSWORD").unwrap_or("-".repeat(9))));
    }
    assert!(cuts > 0);
    let kept = results(dir.path(), &url, Some("art"));
    for (k, v) in &kept {
        assert_eq!(Some(v), want.get(k), "{k}");
    }

    // Given time, a worker whose connections are cut again and again reconnects and finishes.
    let mut w = worker(dir.path(), &url, &["--reconnect", "60"]);
    let mut cuts = 0;
    while w.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(1500));
        cuts += cut(&url);
    }
    let (status, err) = w.wait_with_output_ref();
    assert!(status.success(), "after {cuts} cuts: {err}");
    assert_eq!(
        results(dir.path(), &url, Some("art")),
        want,
        "after {cuts} cuts"
    );
}

#[test]
fn store_copy_goes_both_ways_and_checks_every_row() {
    let Some(url) = database("copy") else {
        return;
    };
    let dir = workdir();
    fs::write(
        dir.path().join("exp.toml"),
        EXPERIMENT.replace("seeds = 4", "seeds = 1"),
    )
    .unwrap();
    ok(dir.path(), &["sweep", "exp.toml", "--store", "one.db"]);
    let out = ok(dir.path(), &["store", "copy", "one.db", &url]);
    assert!(
        out.contains("runs                  4 rows,        4 added"),
        "{out}"
    );
    assert!(out.contains("read the copy with --artifacts"), "{out}");
    ok(dir.path(), &["store", "copy", &url, "back.db"]);
    let dump = |p: &str| {
        lab::experiments::store::Store::open_read(dir.path().join(p))
            .unwrap()
            .canonical_dump()
            .unwrap()
    };
    assert_eq!(dump("back.db"), dump("one.db"));
    // The copy reads as the original, its model directories under the original's directory.
    assert_eq!(
        results(dir.path(), &url, Some(".")),
        results(dir.path(), "one.db", None)
    );
    // Copying again adds nothing; a destination holding other rows under the same keys fails.
    let again = ok(dir.path(), &["store", "copy", "one.db", &url]);
    assert!(again.contains("4 rows,        0 added"), "{again}");
    admin(&url)
        .batch_execute("UPDATE runs SET val_acc = 0.5")
        .unwrap();
    let e = fails(dir.path(), &["store", "copy", "one.db", &url], 1);
    assert!(e.contains("differ in the destination"), "{e}");
}

#[test]
fn wrong_urls_say_which_and_what_to_do() {
    let Some(admin_url) = server() else {
        return;
    };
    let dir = workdir();
    fs::write(dir.path().join("exp.toml"), EXPERIMENT).unwrap();
    let host = admin_url.split_once('?').unwrap().1.to_string();
    // Unreachable: no server on that socket.
    let e = fails(
        dir.path(),
        &[
            "runs",
            "--store",
            "postgresql://postgres@localhost/x?host=/nonexistent&port=1",
        ],
        1,
    );
    assert!(
        e.contains("postgresql://postgres@localhost/x") && e.contains("cannot connect"),
        "{e}"
    );
    // Wrong credentials, given in the URL: refused, and the password never shown.
    let bad = format!("postgresql://shapelab_pw:not-the-password@localhost/postgres?{host}");
    let e = fails(dir.path(), &["runs", "--store", &bad], 1);
    assert!(e.contains("refused user shapelab_pw's credentials"), "{e}");
    assert!(
        e.contains("shapelab_pw:***@") && !e.contains("not-the-password"),
        "{e}"
    );
    // The right one through PGPASSWORD, never written anywhere: an empty database is no store.
    let good = format!("postgresql://shapelab_pw@localhost/postgres?{host}");
    let out = with_password(dir.path(), &["runs", "--store", &good]);
    let e = String::from_utf8(out.stderr).unwrap();
    assert!(e.contains("not a shapelab store"), "{e}");
    // A database that does not exist.
    let missing = format!("postgresql://postgres@localhost/no_such_db?{host}");
    let e = fails(dir.path(), &["sweep", "exp.toml", "--store", &missing], 1);
    assert!(e.contains("no_such_db") && e.contains("createdb"), "{e}");
    // A store needs a shared directory for its model directories.
    let url = database("newer").unwrap();
    let e = fails(dir.path(), &["sweep", "exp.toml", "--store", &url], 2);
    assert!(e.contains("--artifacts DIR"), "{e}");
    // A newer schema.
    make_store(&url);
    admin(&url)
        .batch_execute("UPDATE shapelab_schema SET version = 99")
        .unwrap();
    let e = fails(
        dir.path(),
        &["sweep", "exp.toml", "--store", &url, "--artifacts", "a"],
        1,
    );
    assert!(
        e.contains("newer shapelab (schema 99") && e.contains("upgrade shapelab"),
        "{e}"
    );
    // A role that may connect but not read the store's tables is told what to grant.
    let other = database("grant").unwrap();
    make_store(&other);
    let name = db_name(&other);
    let role = format!("postgresql://shapelab_pw@localhost/{name}?{host}");
    let out = with_password(dir.path(), &["runs", "--store", &role]);
    let e = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(
        e.contains("permission denied") && e.contains("GRANT ALL ON ALL TABLES"),
        "{e}"
    );
}

#[test]
fn cluster_recipes_are_emitted_not_hand_written() {
    let dir = workdir();
    fs::write(dir.path().join("exp.toml"), EXPERIMENT).unwrap();
    let s = ok(
        dir.path(),
        &[
            "sweep",
            "exp.toml",
            "--emit",
            "slurm",
            "--array",
            "6",
            "--at-once",
            "3",
            "--jobs",
            "2",
        ],
    );
    assert!(
        s.starts_with("#!/bin/bash") && s.contains("#SBATCH --array=0-5%3"),
        "{s}"
    );
    assert!(s.contains("--worker --store \"$SHAPELAB_STORE\""), "{s}");
    assert!(
        s.contains("exp.toml'") && s.contains("#SBATCH --cpus-per-task=2"),
        "{s}"
    );
    assert!(
        !dir.path().join("shapelab.db").exists(),
        "emitting trains nothing"
    );
    let k = ok(
        dir.path(),
        &[
            "sweep",
            "exp.toml",
            "--emit",
            "k8s",
            "--image",
            "reg/shapelab:1",
            "--array",
            "6",
        ],
    );
    assert!(
        k.contains("completionMode: Indexed") && k.contains("name = \"pg\""),
        "{k}"
    );
    let e = fails(dir.path(), &["sweep", "exp.toml", "--emit", "k8s"], 2);
    assert!(e.contains("--image"), "{e}");
}

#[test]
fn serve_explores_a_postgres_store_as_it_does_the_file() {
    let Some(url) = database("serve") else {
        return;
    };
    let dir = workdir();
    let d = dir.path();
    crate::serve::sweep(d);
    ok(d, &["store", "copy", "s.db", &url]);
    let e = fails(d, &["serve", &url], 2);
    assert!(e.contains("--artifacts") && !e.contains("password"), "{e}");
    let file = crate::serve::start(d, "s.db");
    let db = crate::serve::start_with(d, &[&url, "--artifacts", "."]);
    let get = |s: &crate::serve::Server, path: &str| {
        let (status, body) = crate::serve::request(s, "GET", path, b"");
        assert_eq!(status, 200, "{path}: {body}");
        crate::serve::json(&body)
    };
    let cell = "/api/runs?experiment=e&dataset=size&condition=&arch=4-3";
    assert_eq!(get(&db, "/api/grid"), get(&file, "/api/grid"));
    // The page is titled by the database's name, never by the URL with its password.
    let name = db_name(&url);
    assert_eq!(get(&db, "/api/source")["name"], name);
    assert_eq!(get(&db, cell), get(&file, cell));
    // A run's filters switched off: the same numbers from either store.
    let key = get(&db, cell)[0]["key"].as_str().unwrap().to_string();
    let ask = serde_json::json!({ "run": key, "off": [[1, 2]], "split": "val" }).to_string();
    let (status, a) = crate::serve::request(&db, "POST", "/api/eval", ask.as_bytes());
    assert_eq!(status, 200, "{a}");
    let (_, b) = crate::serve::request(&file, "POST", "/api/eval", ask.as_bytes());
    assert_eq!(
        crate::serve::json(&a)["accuracy"],
        crate::serve::json(&b)["accuracy"]
    );
}

#[test]
fn a_study_runs_into_postgres_as_into_its_file() {
    let Some(url) = database("study") else {
        return;
    };
    // The database belongs to the role that needs a password, given in the URL once.
    let name = db_name(&url);
    admin(&url)
        .batch_execute(&format!("ALTER DATABASE {name} OWNER TO shapelab_pw"))
        .unwrap();
    let password = std::env::var("SHAPELAB_TEST_PG_PASSWORD").unwrap();
    let host = url.split_once('?').unwrap().1;
    let plain = format!("postgresql://shapelab_pw@localhost/{name}?{host}");
    let secret = plain.replacen("shapelab_pw@", &format!("shapelab_pw:{password}@"), 1);
    let (file, db) = (workdir(), workdir());
    let study = |d: &Path, extra: &[&str]| {
        fs::write(d.join("small.toml"), include_str!("small-study.toml")).unwrap();
        let mut args = vec!["-q", "study", "--config", "small.toml", "--out", "s"];
        args.extend(extra);
        ok(d, &args)
    };
    study(file.path(), &[]);
    study(db.path(), &["--store", &secret]);

    // The directory holds no store file, and its record of the database no password.
    let (f, d) = (file.path(), db.path());
    assert!(!d.join("s/shapelab.db").exists());
    let recorded = fs::read_to_string(d.join("s/store.json")).unwrap();
    assert!(
        recorded.contains(&plain) && !recorded.contains(&password),
        "{recorded}"
    );
    // Every number and picture of the report is the file study's; only its source differs.
    let report = |dir: &Path| {
        let html = fs::read_to_string(dir.join("s/report.html")).unwrap();
        let at = html.find("from <code>").unwrap();
        let end = at + html[at..].find("</code>").unwrap();
        (
            html[..at].to_string() + &html[end..],
            html[at..end].to_string(),
        )
    };
    let (body, source) = report(d);
    assert_eq!(body, report(f).0);
    assert!(
        source.contains(name) && !source.contains(&password),
        "{source}"
    );
    assert_eq!(
        results(d, &secret, Some("s")),
        results(f, "s/shapelab.db", None)
    );

    // `report` reads the database the directory names: without the password it says how to
    // give it; with PGPASSWORD it rebuilds the same bytes.
    let e = fails(d, &["report", "s"], 1);
    assert!(e.contains("PGPASSWORD") && e.contains(name), "{e}");
    let before = fs::read_to_string(d.join("s/report.html")).unwrap();
    assert!(with_password(d, &["report", "s"]).status.success());
    assert_eq!(fs::read_to_string(d.join("s/report.html")).unwrap(), before);
    // Resumed without --store, it finds everything done in the database.
    let out = with_password(d, &["study", "--config", "small.toml", "--out", "s"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("12 of 12 runs already in the store"),
        "{err}"
    );
    // Another database for this directory, the file study moved to a database, and a second
    // directory into this database are refused; the refused directory is not created.
    let other = plain.replacen(&format!("/{name}?"), "/postgres?", 1);
    let e = fails(
        d,
        &[
            "-q",
            "study",
            "--config",
            "small.toml",
            "--out",
            "s",
            "--store",
            &other,
        ],
        2,
    );
    assert!(
        e.contains("resume it with --store") && e.contains(name),
        "{e}"
    );
    let e = fails(
        f,
        &[
            "-q",
            "study",
            "--config",
            "small.toml",
            "--out",
            "s",
            "--store",
            &plain,
        ],
        2,
    );
    assert!(e.contains("store copy"), "{e}");
    let e = fails(
        d,
        &[
            "-q",
            "study",
            "--config",
            "small.toml",
            "--out",
            "t",
            "--store",
            &secret,
        ],
        2,
    );
    assert!(
        e.contains("14 of this study's runs") && !e.contains(&password),
        "{e}"
    );
    assert!(!d.join("t").exists());

    // `serve s` explores the database study as the file one.
    let pw = [("PGPASSWORD", password.as_str())];
    let a = crate::serve::start_env(d, &["s"], &pw);
    let b = crate::serve::start(f, "s");
    let get = |s: &crate::serve::Server, path: &str| {
        let (status, body) = crate::serve::request(s, "GET", path, b"");
        assert_eq!(status, 200, "{path}: {body}");
        crate::serve::json(&body)
    };
    assert_eq!(get(&a, "/api/grid"), get(&b, "/api/grid"));
    let cell = "/api/runs?experiment=small&dataset=size&condition=sgd-raw&arch=2";
    assert_eq!(get(&a, cell), get(&b, cell));
}

#[test]
fn bench_sweep_measures_the_store_inside_the_sweep() {
    let Some(url) = database("bench") else {
        return;
    };
    let dir = workdir();
    for store in [None, Some(url.as_str())] {
        let mut args = vec!["-q", "bench", "sweep", "--json", "--runs", "2"];
        args.extend(["--epochs", "1", "--images", "60", "--rounds", "2"]);
        args.extend(store.map(|s| ["--store", s]).into_iter().flatten());
        let r: serde_json::Value = serde_json::from_str(&ok(dir.path(), &args)).unwrap();
        assert_eq!(r["worker"], store.is_some());
        assert_eq!(r["rounds"], 2);
        let shares = r["store_shares"].as_array().unwrap();
        assert_eq!(shares.len(), 2);
        assert_eq!(r["overheads"].as_array().unwrap().len(), 2);
        for s in shares {
            let s = s.as_f64().unwrap();
            assert!(s > 0.0 && s < 1.0, "{r}");
        }
        assert!(r["store_ms_per_run"].as_f64().unwrap() > 0.0, "{r}");
    }
    // Each round swept into the database under its own experiment names, every run once.
    let mut db = admin(&url);
    let row = db
        .query_one("SELECT count(*), count(DISTINCT experiment) FROM runs", &[])
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (8, 4));
}

/// The volumes of an emitted Job made local, once for every pod: each mount path with the
/// directory standing for it (a ConfigMap's keys written there as files; a claim, shared).
fn volumes(manifest: &[yaml_rust2::Yaml], dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    let (config, spec) = (&manifest[0], &manifest[1]["spec"]["template"]["spec"]);
    let mut mounts = Vec::new();
    for m in spec["containers"][0]["volumeMounts"].as_vec().unwrap() {
        let name = m["name"].as_str().unwrap();
        let volume = spec["volumes"]
            .as_vec()
            .unwrap()
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap();
        let local = dir.join(name);
        fs::create_dir_all(&local).unwrap();
        if let Some(map) = volume["configMap"]["name"].as_str() {
            assert_eq!(config["metadata"]["name"].as_str(), Some(map));
            for (k, v) in config["data"].as_hash().unwrap() {
                fs::write(local.join(k.as_str().unwrap()), v.as_str().unwrap()).unwrap();
            }
        } else {
            assert!(volume["persistentVolumeClaim"]["claimName"]
                .as_str()
                .is_some());
        }
        mounts.push((m["mountPath"].as_str().unwrap().to_string(), local));
    }
    mounts
}

/// A pod of an emitted Job run as Kubernetes would run it, without a cluster: the container's
/// `args` with `$(VAR)` expanded from its environment (each variable from `secret`'s key), and
/// every mount path replaced by its local directory ([`volumes`]).
fn pod(
    manifest: &[yaml_rust2::Yaml],
    mounts: &[(String, std::path::PathBuf)],
    secret: &BTreeMap<&str, String>,
) -> Command {
    let container = &manifest[1]["spec"]["template"]["spec"]["containers"][0];
    let mut env = BTreeMap::new();
    for e in container["env"].as_vec().unwrap() {
        let key = e["valueFrom"]["secretKeyRef"]["key"].as_str().unwrap();
        env.insert(e["name"].as_str().unwrap().to_string(), secret[key].clone());
    }
    let args = container["args"].as_vec().unwrap().iter().map(|a| {
        let mut a = a.as_str().unwrap().to_string();
        for (k, v) in &env {
            a = a.replace(&format!("$({k})"), v);
        }
        for (path, local) in mounts {
            if let Some(rest) = a.strip_prefix(path.as_str()) {
                a = format!("{}{rest}", local.display());
            }
        }
        a
    });
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("shapelab"));
    c.envs(&env).args(args.collect::<Vec<_>>());
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

#[test]
fn k8s_pods_run_the_sweep_as_the_manifest_says() {
    let Some(url) = database("k8s") else {
        return;
    };
    let name = db_name(&url);
    admin(&url)
        .batch_execute(&format!("ALTER DATABASE {name} OWNER TO shapelab_pw"))
        .unwrap();
    let host = url.split_once('?').unwrap().1;
    let dir = workdir();
    let d = dir.path();
    let text = EXPERIMENT.replace("seeds = 4", "seeds = 2");
    fs::write(d.join("exp.toml"), &text).unwrap();
    let k = ok(
        d,
        &[
            "sweep", "exp.toml", "--emit", "k8s", "--image", "r/s:1", "--array", "3",
        ],
    );
    let manifest = yaml_rust2::YamlLoader::load_from_str(&k).unwrap();
    assert_eq!(
        manifest[0]["data"]["experiment.toml"].as_str(),
        Some(text.as_str())
    );
    let job = &manifest[1]["spec"];
    assert_eq!(job["completionMode"].as_str(), Some("Indexed"));
    assert_eq!(job["completions"].as_i64(), Some(3));
    // The Secret the manifest's comment tells the user to create.
    let secret = BTreeMap::from([
        (
            "url",
            format!("postgresql://shapelab_pw@localhost/{name}?{host}"),
        ),
        (
            "password",
            std::env::var("SHAPELAB_TEST_PG_PASSWORD").unwrap(),
        ),
    ]);
    // Three pods, and a second pod for index 0 (Kubernetes may start two for one index).
    let mounts = volumes(&manifest, d);
    let pods: Vec<Child> = (0..4)
        .map(|_| pod(&manifest, &mounts, &secret).spawn().unwrap())
        .collect();
    for p in pods {
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    ok(d, &["sweep", "exp.toml", "--store", "one.db"]);
    // Every run once, as one process stores it; the pods' model directories are on the
    // claim (here its local directory).
    let pods = results_env(
        d,
        &secret["url"],
        Some("artifacts"),
        &[("PGPASSWORD", &secret["password"])],
    );
    assert_eq!(pods, results(d, "one.db", None));
}
