//! Leases that let any number of workers share one sweep without a static split: each planned
//! run is a row a worker claims for a while, renews while it trains, and lets go when its result
//! is committed (or it is stopped). A worker that dies stops renewing; once its lease expires,
//! another claims the run again.
//!
//! Exactly once is not this module's doing: the run's key is the `runs` table's primary key, so
//! of two workers that trained the same run (a lease that expired mid-run, a requeued task),
//! the first commit wins and the late duplicate is discarded. Leases only keep that rare.
//! Time is the database's clock (`{now_ms}`), one clock for every node. It must not train or
//! know what a run is beyond its key.

use std::time::Duration;

use crate::error::Result;
use crate::experiments::store::db::{vals, Db, DbResult};
use crate::experiments::store::{retry_busy, Store};

/// A run a worker holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub key: String,
    /// How many times it has been claimed, this time included (more than 1: a worker before
    /// this one lost it).
    pub attempts: usize,
}

/// What a worker asking for a run gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimState {
    Claimed(Claim),
    /// Every unfinished run is held by another worker whose lease is alive: wait and ask
    /// again (that worker may die).
    Waiting {
        held: usize,
    },
    /// Every planned run is stored.
    Done,
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

fn claim_in(db: &mut Db, experiment: &str, worker: &str, lease: Duration) -> DbResult<ClaimState> {
    let free = db.query(
        "SELECT key, attempts FROM claims c
         WHERE experiment = $1 AND (lease_until IS NULL OR lease_until < {now_ms})
           AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.key = c.key)
         ORDER BY ord LIMIT 1 {skip_locked}",
        &vals![experiment],
    )?;
    if let Some(r) = free.first() {
        let key = r.text(0)?;
        db.execute(
            "UPDATE claims SET worker = $2, lease_until = {now_ms} + $3, attempts = attempts + 1 WHERE key = $1",
            &vals![&key, worker, ms(lease)],
        )?;
        return Ok(ClaimState::Claimed(Claim {
            key,
            attempts: r.count(1)? + 1,
        }));
    }
    let held = db.query(
        "SELECT count(*) FROM claims c WHERE experiment = $1
           AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.key = c.key)",
        &vals![experiment],
    )?[0]
        .count(0)?;
    Ok(if held == 0 {
        ClaimState::Done
    } else {
        ClaimState::Waiting { held }
    })
}

impl Store {
    /// Makes every key of `keys` (in plan order) claimable under `experiment`, once; claims of
    /// keys the experiment no longer plans are dropped. Idempotent: every worker calls it.
    pub fn register_claims(&self, experiment: &str, keys: &[&str]) -> Result<()> {
        let url = self.url().clone();
        let mut db = self.db.borrow_mut();
        self.timed(|| retry_busy(|| {
            db.transaction(|db| {
                let have: std::collections::HashSet<String> = db
                    .query(
                        "SELECT key FROM claims WHERE experiment = $1",
                        &vals![experiment],
                    )?
                    .iter()
                    .map(|r| r.text(0))
                    .collect::<DbResult<_>>()?;
                for (i, k) in keys.iter().enumerate() {
                    if !have.contains(*k) {
                        db.execute(
                            "INSERT INTO claims (key, experiment, ord, worker, lease_until, attempts)
                             VALUES ($1, $2, $3, NULL, NULL, 0) ON CONFLICT(key) DO NOTHING",
                            &vals![*k, experiment, i],
                        )?;
                    }
                }
                let planned: std::collections::HashSet<&str> = keys.iter().copied().collect();
                for k in have.iter().filter(|k| !planned.contains(k.as_str())) {
                    db.execute("DELETE FROM claims WHERE key = $1", &vals![k])?;
                }
                Ok(())
            })
        }))
        .map_err(|e| super::fault(&url, e))
    }

    /// Claims the first unfinished run of `experiment` that nobody holds (or whose holder's
    /// lease expired) for `lease`.
    pub fn claim(&self, experiment: &str, worker: &str, lease: Duration) -> Result<ClaimState> {
        let url = self.url().clone();
        let mut db = self.db.borrow_mut();
        self.timed(|| retry_busy(|| db.transaction(|db| claim_in(db, experiment, worker, lease))))
            .map_err(|e| super::fault(&url, e))
    }

    /// Extends `worker`'s lease on `key` by `lease` from now; false when the worker no longer
    /// holds it (it expired and another worker claimed it: this one may still finish, and the
    /// first commit wins).
    pub fn renew(&self, key: &str, worker: &str, lease: Duration) -> Result<bool> {
        self.run(|db| {
            db.execute(
                "UPDATE claims SET lease_until = {now_ms} + $3 WHERE key = $1 AND worker = $2",
                &vals![key, worker, ms(lease)],
            )
            .map(|n| n == 1)
        })
    }

    /// Lets go of `key` at once (a stopped worker), so another can claim it without waiting
    /// for the lease to run out.
    pub fn release(&self, key: &str, worker: &str) -> Result<()> {
        self.run(|db| {
            db.execute(
                "UPDATE claims SET worker = NULL, lease_until = NULL WHERE key = $1 AND worker = $2",
                &vals![key, worker],
            )
            .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::experiments::store::tests::{dataset, row};
    use crate::experiments::store::*;

    #[test]
    fn claims_go_in_plan_order_once_and_expired_leases_are_taken_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        let mut a = Store::open(&p).unwrap();
        let b = Store::open(&p).unwrap();
        dataset(&a);
        a.register_claims("e", &["k1", "k2"]).unwrap();
        b.register_claims("e", &["k1", "k2"]).unwrap();
        let long = Duration::from_secs(60);
        let got = |s: ClaimState| match s {
            ClaimState::Claimed(c) => c,
            s => panic!("{s:?}"),
        };
        assert_eq!(got(a.claim("e", "A", long).unwrap()).key, "k1");
        assert_eq!(got(b.claim("e", "B", long).unwrap()).key, "k2");
        assert_eq!(
            a.claim("e", "A", long).unwrap(),
            ClaimState::Waiting { held: 2 }
        );
        // B's lease on k2 runs out; A takes it over, and B no longer holds it.
        assert!(b.renew("k2", "B", Duration::from_millis(1)).unwrap());
        std::thread::sleep(Duration::from_millis(30));
        let c = got(a.claim("e", "A", long).unwrap());
        assert_eq!((c.key.as_str(), c.attempts), ("k2", 2));
        assert!(!b.renew("k2", "B", long).unwrap(), "B lost its lease");
        // Both finish k2: one result, not two.
        let mut b = b;
        let mut r = row("k2");
        r.experiment = "e".into();
        assert!(a.insert_run(&r, &[]).unwrap());
        assert!(
            !b.insert_run(&r, &[]).unwrap(),
            "the late duplicate is discarded"
        );
        assert_eq!(a.runs(&RunFilter::default()).unwrap().len(), 1);
        // A stopped worker lets go at once.
        a.release("k1", "A").unwrap();
        assert_eq!(got(b.claim("e", "B", long).unwrap()).key, "k1");
        let mut r1 = row("k1");
        r1.experiment = "e".into();
        b.insert_run(&r1, &[]).unwrap();
        assert_eq!(a.claim("e", "A", long).unwrap(), ClaimState::Done);
        // A shrunk plan drops the claims it no longer has.
        a.register_claims("e", &["k1"]).unwrap();
        a.register_claims("e", &["k1", "k3"]).unwrap();
        assert_eq!(got(a.claim("e", "A", long).unwrap()).key, "k3");
    }
}
