//! A sweep's worker (`shapelab sweep EXP --worker`): instead of a fixed share of the runs, it
//! claims one unfinished run at a time from the store, renews the claim while it trains, and
//! commits the result and the model's hash in one transaction keyed by the run's key. Any
//! number of workers on any number of nodes share a sweep this way; a killed one's run is
//! claimed again when its lease runs out, and a late duplicate commit is discarded (the store
//! keeps each key once), so every run is stored exactly once with the bits one process would
//! have given it.
//!
//! A worker whose store connection drops keeps what it trained (the model directory is saved
//! first, the commit is retried: it is idempotent by key) and reconnects for a while before it
//! stops with a message. It must not decide what a run is or how it trains (`sweep` does).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::experiments::experiment::Plan;
use crate::experiments::store::{ClaimState, Store};
use crate::experiments::sweep::{
    execute, Artifacts, Job, Loaded, SweepObserver, SweepOptions, WorkerOptions,
};

/// What every worker thread of this process shares.
struct Shared<'a> {
    jobs: HashMap<&'a str, &'a Job<'a>>,
    loaded: &'a HashMap<usize, Loaded>,
    plan: &'a Plan,
    art: &'a Artifacts,
    opts: &'a SweepOptions<'a>,
    worker: &'a WorkerOptions,
    obs: &'a dyn SweepObserver,
    stored: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

/// This machine's name, for the claims table (who holds what).
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}

/// Trains claimed runs on `opts.jobs` threads, each a worker with its own connections, until
/// every run of the experiment is stored (by these or other workers) or the sweep is
/// cancelled. Returns how many runs this process stored and the runs that failed.
pub(super) fn train_claimed(
    (jobs, loaded): (&[Job], &HashMap<usize, Loaded>),
    plan: &Plan,
    art: &Artifacts,
    store: &Store,
    opts: &SweepOptions,
    worker: &WorkerOptions,
    obs: &dyn SweepObserver,
) -> Result<(usize, Vec<String>)> {
    let shared = Shared {
        jobs: jobs.iter().map(|j| (j.plan.key.as_str(), j)).collect(),
        loaded,
        plan,
        art,
        opts,
        worker,
        obs,
        stored: AtomicUsize::new(0),
        failures: Mutex::new(Vec::new()),
    };
    // Two connections per thread, opened here: one claims and commits, one renews the lease
    // while the run trains.
    let threads = opts.jobs.max(1);
    let conns = (0..threads)
        .map(|_| Ok((store.reopen()?, store.reopen()?)))
        .collect::<Result<Vec<(Store, Store)>>>()?;
    let prefix = format!("{}@{}:{}", worker.name, host(), std::process::id());
    let shared_ref = &shared;
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(i, (main, beat))| {
                let id = format!("{prefix}:{i}");
                s.spawn(move || one_worker(shared_ref, main, beat, id))
            })
            .collect();
        for h in handles {
            h.join().expect("a worker panicked")?;
        }
        Ok(())
    })?;
    Ok((
        shared.stored.load(Ordering::SeqCst),
        shared.failures.into_inner().expect("no panics hold it"),
    ))
}

/// One worker thread and its heartbeat.
fn one_worker(shared: &Shared, store: Store, beat: Store, id: String) -> Result<()> {
    let held: Mutex<Option<String>> = Mutex::new(None);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| heartbeat(beat, &held, &stop, &id, shared.worker.lease));
        let r = claim_loop(shared, store, &held, &id);
        stop.store(true, Ordering::SeqCst);
        r
    })
}

/// Renews the lease on the run this worker holds every third of the lease. A failed renewal
/// is tried again at the next beat (on a fresh connection); if the lease runs out meanwhile,
/// another worker may train the run too, and the first commit wins.
fn heartbeat(
    mut store: Store,
    held: &Mutex<Option<String>>,
    stop: &AtomicBool,
    id: &str,
    lease: Duration,
) {
    let every = lease / 3;
    let mut last = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20).min(every));
        if last.elapsed() < every {
            continue;
        }
        last = Instant::now();
        let key = held.lock().expect("no panics hold it").clone();
        if let Some(key) = key {
            if store.renew(&key, id, lease).is_err() {
                if let Ok(fresh) = store.reopen() {
                    store = fresh;
                }
            }
        }
    }
}

/// Claims, trains and commits runs until none is left.
fn claim_loop(
    shared: &Shared,
    mut store: Store,
    held: &Mutex<Option<String>>,
    id: &str,
) -> Result<()> {
    let (plan, opts, w) = (shared.plan, shared.opts, shared.worker);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    let mut waiting: Option<Instant> = None;
    loop {
        if opts.cancel.load(Ordering::SeqCst) {
            return Ok(());
        }
        let claim = match reconnecting(&mut store, shared, |s| s.claim(&plan.name, id, w.lease))? {
            ClaimState::Done => return Ok(()),
            ClaimState::Waiting { .. } => {
                // Every unfinished run is held by a live worker; one may die.
                let since = *waiting.get_or_insert_with(Instant::now);
                std::thread::sleep(poll_interval(since.elapsed(), w.lease));
                continue;
            }
            ClaimState::Claimed(c) => c,
        };
        waiting = None;
        let Some(job) = shared.jobs.get(claim.key.as_str()) else {
            let _ = store.release(&claim.key, id);
            return Err(Error::Usage(format!(
                "run {} is planned in {} but is not a run this experiment file still has to train; give every worker the same experiment file",
                claim.key,
                store.url()
            )));
        };
        *held.lock().expect("no panics hold it") = Some(claim.key.clone());
        let d = &shared.loaded[&job.plan.dataset];
        let trained = pool.install(|| execute(job, d, plan, shared.art, opts, shared.obs));
        let result = match trained {
            Ok(Some((row, history))) => {
                reconnecting(&mut store, shared, |s| s.insert_run(&row, &history))
                    .map(|inserted| inserted.then_some(row))
            }
            Ok(None) => {
                // Cancelled: let another worker take it at once.
                let _ = store.release(&claim.key, id);
                Ok(None)
            }
            Err(e) => {
                let _ = store.release(&claim.key, id);
                Err(e)
            }
        };
        *held.lock().expect("no panics hold it") = None;
        match result {
            Ok(Some(row)) => {
                shared.stored.fetch_add(1, Ordering::SeqCst);
                shared.obs.stored(&row);
            }
            // Another worker committed it first (its lease had run out): discarded.
            Ok(None) => {}
            Err(e @ (Error::StoreLost { .. } | Error::Store { .. })) => return Err(e),
            Err(e) => shared
                .failures
                .lock()
                .expect("no panics hold it")
                .push(format!("{}: {e}", job.plan.key)),
        }
    }
}

/// How long a worker that has waited `waited` for the runs others hold sleeps before asking
/// again: an eighth of its wait so far (at least 10 ms, at most a quarter of the lease and a
/// second). The last runs of a sweep usually finish within moments, so the first questions
/// come quickly and a waiting worker is late by about an eighth of its wait; a long wait (a
/// dead holder's lease running out) costs a few questions a second.
fn poll_interval(waited: Duration, lease: Duration) -> Duration {
    (waited / 8)
        .max(Duration::from_millis(10))
        .min((lease / 4).min(Duration::from_secs(1)))
}

/// The error of a worker that could not reach its store again.
fn gave_up(store: String, reason: &str, waited: Duration) -> Error {
    Error::store(
        store,
        format!(
            "{reason}, and no connection again within {} s (--reconnect), so this worker stops; finished runs are kept: run the same command to resume",
            waited.as_secs()
        ),
    )
}

/// Runs `f`; while the store's connection is lost, reconnects ([`reconnect`]) and runs it
/// again. Every statement a worker retries this way is idempotent.
fn reconnecting<T>(
    store: &mut Store,
    shared: &Shared,
    mut f: impl FnMut(&mut Store) -> Result<T>,
) -> Result<T> {
    loop {
        match f(store) {
            Err(Error::StoreLost { store: url, reason }) => {
                *store = reconnect(
                    store,
                    (url, reason),
                    shared.worker,
                    shared.opts.cancel,
                    shared.obs,
                )?;
            }
            r => return r,
        }
    }
}

/// After losing `store` (`lost`: its name and the reason), tells the observer and opens it
/// again every second for up to `w.reconnect`: the new connection, or the error of a worker
/// that gives up (not [`Error::StoreLost`], so that nobody tries again).
pub(super) fn reconnect(
    store: &Store,
    (url, reason): (String, String),
    w: &WorkerOptions,
    cancel: &AtomicBool,
    obs: &dyn SweepObserver,
) -> Result<Store> {
    if !w.reconnect.is_zero() {
        obs.reconnecting(&reason);
    }
    let until = Instant::now() + w.reconnect;
    loop {
        if Instant::now() >= until || cancel.load(Ordering::SeqCst) {
            return Err(gave_up(url, &reason, w.reconnect));
        }
        std::thread::sleep(Duration::from_secs(1));
        if let Ok(fresh) = store.reopen() {
            return Ok(fresh);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_worker_asks_soon_then_less_often() {
        let ms = Duration::from_millis;
        let lease = Duration::from_secs(60);
        assert_eq!(poll_interval(ms(0), lease), ms(10));
        assert_eq!(poll_interval(ms(400), lease), ms(50));
        assert_eq!(poll_interval(Duration::from_secs(30), lease), ms(1000));
        // A short lease bounds it: the worker asks again before a dead holder's lease ends.
        assert_eq!(
            poll_interval(Duration::from_secs(30), Duration::from_secs(2)),
            ms(500)
        );
        // Over a 300 ms tail the worker is late by at most about 50 ms, asking about 20 times.
        let (mut t, mut asks) = (ms(0), 0);
        while t < ms(300) {
            t += poll_interval(t, lease);
            asks += 1;
        }
        assert!(t - ms(300) <= ms(50) && asks <= 24, "{t:?} {asks}");
    }
}
