//! The store against a real PostgreSQL server: the throwaway one `scripts/test.sh` starts
//! (`scripts/throwaway-postgres.sh`), named by `SHAPELAB_TEST_PG`. Without it these tests say
//! so and pass, unless `SHAPELAB_REQUIRE_POSTGRES` is set (the test script sets it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::db::Db;
use super::schema::{self, SCHEMA_V1};
use super::tests::{dataset, row};
use super::*;

/// A fresh, empty database on the test server, as a store URL; `None` when there is no server.
pub(crate) fn fresh_database(tag: &str) -> Option<StoreUrl> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let Ok(admin) = std::env::var("SHAPELAB_TEST_PG") else {
        assert!(
            std::env::var_os("SHAPELAB_REQUIRE_POSTGRES").is_none(),
            "SHAPELAB_REQUIRE_POSTGRES is set but SHAPELAB_TEST_PG is not (run scripts/test.sh)"
        );
        eprintln!("no PostgreSQL server: {tag} skipped (scripts/test.sh starts one)");
        return None;
    };
    let name = format!(
        "lab_{tag}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("the test server");
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    Some(StoreUrl::Postgres(admin.replacen(
        "/postgres?",
        &format!("/{name}?"),
        1,
    )))
}

fn raw(url: &StoreUrl) -> Db {
    let StoreUrl::Postgres(u) = url else {
        unreachable!()
    };
    Db::Postgres(Box::new(super::db::Pg::new(
        postgres::Client::connect(u, postgres::NoTls).unwrap(),
    )))
}

#[test]
fn runs_round_trip_in_postgres_as_in_sqlite() {
    let Some(url) = fresh_database("roundtrip") else {
        return;
    };
    let mut s = Store::open(&url).unwrap();
    dataset(&s);
    let r = row("e/d/2-2/seed1");
    let h = vec![EpochStats {
        epoch: 1,
        train_loss: f64::NAN,
        train_acc: 0.5,
        val_loss: 1.0,
        val_acc: 0.5,
        dead: vec![0, 1],
        grad_norms: Some(vec![0.5, 0.0, 0.25]),
    }];
    assert!(s.insert_run(&r, &h).unwrap());
    assert!(!s.insert_run(&r, &h).unwrap(), "a key is stored once");
    assert_eq!(s.runs(&RunFilter::default()).unwrap(), vec![r.clone()]);
    let got = s.history(&r.key).unwrap();
    assert!(got[0].train_loss.is_nan());
    assert_eq!(got[0].dead, h[0].dead);
    assert_eq!(got[0].grad_norms, h[0].grad_norms);
    assert_eq!(s.dataset("h").unwrap().unwrap().class_names, vec!["a", "b"]);
    // Ordered by bytes, as SQLite orders: upper case before lower case.
    let mut lower = row("a-lower");
    lower.experiment = "e".into();
    s.insert_run(&lower, &[]).unwrap();
    let mut upper = row("Z-upper");
    upper.experiment = "e".into();
    s.insert_run(&upper, &[]).unwrap();
    let keys: Vec<String> = s
        .runs(&RunFilter::default())
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(keys, ["Z-upper", "a-lower", "e/d/2-2/seed1"]);
    let f = RunFilter {
        outcome: Some(Outcome::Learned),
        ..RunFilter::default()
    };
    assert!(s.runs(&f).unwrap().is_empty());
    // A model directory needs the artifacts root of a database store.
    assert!(s.resolve_model_dir("runs/x").is_err());
    let s = s.with_artifacts(Some("/shared".into()));
    assert_eq!(
        s.resolve_model_dir("runs/x").unwrap(),
        Path::new("/shared/runs/x")
    );
}

#[test]
fn a_lease_that_expires_mid_run_gives_one_result_in_postgres() {
    let Some(url) = fresh_database("lease") else {
        return;
    };
    let mut a = Store::open(&url).unwrap();
    let mut b = Store::open(&url).unwrap();
    dataset(&a);
    a.register_claims("e", &["k1", "k2"]).unwrap();
    let got = |s: ClaimState| match s {
        ClaimState::Claimed(c) => c,
        s => panic!("{s:?}"),
    };
    assert_eq!(
        got(a.claim("e", "A", Duration::from_millis(50)).unwrap()).key,
        "k1"
    );
    assert_eq!(
        got(b.claim("e", "B", Duration::from_secs(60)).unwrap()).key,
        "k2"
    );
    std::thread::sleep(Duration::from_millis(120));
    // A's lease ran out mid-run: B claims k1 again, and both finish it.
    let c = got(b.claim("e", "B", Duration::from_secs(60)).unwrap());
    assert_eq!((c.key.as_str(), c.attempts), ("k1", 2));
    assert!(!a.renew("k1", "A", Duration::from_secs(60)).unwrap());
    let mut r = row("k1");
    r.experiment = "e".into();
    assert!(b.insert_run(&r, &[]).unwrap());
    assert!(
        !a.insert_run(&r, &[]).unwrap(),
        "the late duplicate is discarded"
    );
    assert_eq!(a.runs(&RunFilter::default()).unwrap().len(), 1);
}

#[test]
fn concurrent_claims_never_hand_out_a_run_twice() {
    let Some(url) = fresh_database("skiplocked") else {
        return;
    };
    let s = Store::open(&url).unwrap();
    let keys: Vec<String> = (0..60).map(|i| format!("k{i:02}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    s.register_claims("e", &refs).unwrap();
    let stores: Vec<Store> = (0..6).map(|_| s.reopen().unwrap()).collect();
    let claimed: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = stores
            .into_iter()
            .enumerate()
            .map(|(i, st)| {
                sc.spawn(move || {
                    let mut mine = Vec::new();
                    while let ClaimState::Claimed(c) = st
                        .claim("e", &format!("w{i}"), Duration::from_secs(60))
                        .unwrap()
                    {
                        mine.push(c.key);
                    }
                    mine
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut sorted = claimed.clone();
    sorted.sort();
    assert_eq!(sorted, keys, "each run claimed once by one of six workers");
}

#[test]
fn postgres_migrates_from_an_empty_database_and_from_schema_2() {
    let Some(url) = fresh_database("migrate") else {
        return;
    };
    // Schema 2 as a shapelab before workers made it, with a run.
    let mut db = raw(&url);
    let v2 = format!("{SCHEMA_V1}\nALTER TABLE datasets ADD COLUMN test INTEGER;\nALTER TABLE runs ADD COLUMN test_loss REAL;\nALTER TABLE runs ADD COLUMN test_acc REAL;\nALTER TABLE epochs ADD COLUMN grad_norms TEXT;")
        .replace(" INTEGER", " BIGINT")
        .replace(" REAL", " DOUBLE PRECISION");
    db.batch(&v2).unwrap();
    db.batch("CREATE TABLE shapelab_schema (version BIGINT NOT NULL); INSERT INTO shapelab_schema VALUES (2);")
        .unwrap();
    drop(db);
    {
        let mut s = Store::open(&url).unwrap();
        dataset(&s);
        s.insert_run(&row("k"), &[]).unwrap();
    }
    // A reader takes schema 2 as it is; a writer migrates it to 3, keeping the run.
    let mut db = raw(&url);
    db.batch(
        "DELETE FROM shapelab_schema; INSERT INTO shapelab_schema VALUES (2); DROP TABLE claims;",
    )
    .unwrap();
    assert_eq!(
        Store::open_read(&url)
            .unwrap()
            .runs(&RunFilter::default())
            .unwrap()
            .len(),
        1
    );
    let s = Store::open(&url).unwrap();
    assert_eq!(s.runs(&RunFilter::default()).unwrap().len(), 1);
    s.register_claims("e", &["k2"]).unwrap();
    assert_eq!(schema::found(&mut db).unwrap().version, SCHEMA_VERSION);
    // An empty database gets the whole schema, twice opened at once.
    let Some(empty) = fresh_database("empty") else {
        return;
    };
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..3)
            .map(|_| sc.spawn(|| Store::open(&empty).map(|_| ())))
            .collect();
        for h in hs {
            h.join().unwrap().unwrap();
        }
    });
    assert_eq!(
        schema::found(&mut raw(&empty)).unwrap().version,
        SCHEMA_VERSION
    );
    // Newer and foreign databases are refused, naming the URL without its password.
    db.batch("DELETE FROM shapelab_schema; INSERT INTO shapelab_schema VALUES (99);")
        .unwrap();
    let e = Store::open(&url).err().unwrap().to_string();
    assert!(e.contains("newer shapelab") && e.contains("99"), "{e}");
    let Some(foreign) = fresh_database("foreign") else {
        return;
    };
    raw(&foreign).batch("CREATE TABLE t (a BIGINT)").unwrap();
    let e = Store::open(&foreign).err().unwrap().to_string();
    assert!(e.contains("not a shapelab store"), "{e}");
    let e = Store::open_read(&fresh_database("unread").unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a shapelab store"), "{e}");
}
