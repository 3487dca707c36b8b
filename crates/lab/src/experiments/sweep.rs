//! Running an experiment: every run of a plan, in parallel, into a store, resumably.
//!
//! Each run trains on one thread (runs are independent; two cores run two at once), writes
//! its model directory under a temporary name and renames it into place, then commits its row
//! and history in one transaction. A run's result depends only on its dataset, settings and
//! seed, so the store after any number of interruptions and resumptions equals the store of
//! an uninterrupted sweep, and a run can be recomputed alone.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};
use shapes::Split as Part;
use tinycnn::{Arch, TrainConfig};

use crate::data::dataset::Dataset;
use crate::error::{Error, Result};
use crate::experiments::experiment::{key_to_dir, DataSource, Plan, RunPlan};
use crate::experiments::outcome::{classify, diagnose, Outcome};
use crate::experiments::store::{timestamp, DatasetRow, RunRow, Store, StoreUrl};
use crate::models::run::{safetensors_bytes, DataRef};
use crate::models::training::engine_data;

/// How to run a sweep.
pub struct SweepOptions<'a> {
    /// 0-based shard and shard count.
    pub shard: Option<(usize, usize)>,
    /// Claim runs one at a time from the store instead of taking a fixed share (`--worker`).
    pub worker: Option<WorkerOptions>,
    /// Runs trained at once.
    pub jobs: usize,
    /// Set to stop: runs in flight are abandoned (not stored), nothing else starts.
    pub cancel: &'a AtomicBool,
}

/// How a worker holds the runs it claims.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// How long a claim lasts unless renewed; a worker renews every third of it while it
    /// trains, so a killed worker's run is claimed again this long after its last renewal.
    pub lease: Duration,
    /// How long a worker keeps trying to reach a store whose connection it lost before it
    /// stops (finished runs are stored either way).
    pub reconnect: Duration,
    /// Names the worker in the claims table: host, process and thread are added.
    pub name: String,
}

/// Progress hooks, called from worker threads.
pub trait SweepObserver: Sync {
    /// Before the first run: runs in this sweep (or shard), of which already stored.
    fn start(&self, _total: usize, _already: usize) {}
    /// After a run is stored.
    fn stored(&self, _row: &RunRow) {}
    /// After each epoch of any run.
    fn epoch(&self) {}
    /// A line the user should read before the runs start: a grown or shrunk experiment,
    /// files a dataset read skipped.
    fn note(&self, _line: &str) {}
    /// A worker lost its store and is trying again (`--worker`).
    fn reconnecting(&self, _why: &str) {}
}

/// Says how an experiment changed since its last sweep into this store, when its set of
/// runs changed: growing `seeds` from 4 to 5 keeps the 4 stored seeds of every cell and adds
/// the fifth, which is an extension, not a conflict (a changed setting of a stored run is
/// refused instead). `None` when the text or the set of runs is the same.
fn change_note(
    plan: &Plan,
    previous_text: &str,
    done: &HashMap<String, String>,
    store: &StoreUrl,
) -> Option<String> {
    if previous_text == plan.text || done.is_empty() {
        return None;
    }
    let planned: std::collections::HashSet<&str> =
        plan.runs.iter().map(|r| r.key.as_str()).collect();
    let kept = done.keys().filter(|k| planned.contains(k.as_str())).count();
    let added = planned.len() - kept;
    let dropped = done.len() - kept;
    if added == 0 && dropped == 0 {
        return None;
    }
    let mut line = format!(
        "experiment `{}` changed since its last sweep into {}: {kept} of its {} runs are stored already",
        plan.name,
        store,
        planned.len()
    );
    if added > 0 {
        line += &format!(", {added} new runs will be added to its results");
    }
    if dropped > 0 {
        line += &format!(
            ", {dropped} stored runs are no longer in it but stay in the store and in its `runs` and `summary` (give the experiment a new name to keep the two apart)"
        );
    }
    Some(line)
}

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SweepReport {
    /// Runs in the sweep (or shard).
    pub total: usize,
    /// Runs found already stored.
    pub already: usize,
    /// Runs trained and stored now.
    pub stored: usize,
    /// Outcome counts over every stored run of the sweep (or shard).
    pub outcomes: Vec<(String, usize)>,
    pub cancelled: bool,
    /// Runs that failed for a reason outside the run (e.g. a write error), with the reason.
    pub failures: Vec<String>,
}

/// What identifies a run's result besides its key: compared on resume so that a changed
/// experiment is never silently mixed with old results.
#[derive(serde::Serialize)]
struct RunIdentity<'a> {
    arch: &'a Arch,
    train: &'a TrainConfig,
    dataset: &'a str,
    learned: f64,
    engine: &'a str,
}

/// A dataset ready for training, with its store row.
pub(super) struct Loaded {
    pub(super) data: Dataset,
    row: DatasetRow,
    data_ref: DataRef,
}

fn load_dataset(label: &str, source: &DataSource) -> Result<Loaded> {
    let (data, source_text, spec_json) = match source {
        DataSource::Spec { spec, name } => {
            let d = Dataset::generate(spec, Some(name.clone()), &|_| {});
            (d, name.clone(), Some(spec.canonical_json()))
        }
        DataSource::File(p) => {
            let (d, _) = crate::models::training::resolve_data(&p.to_string_lossy(), &|_| {})?;
            (d, p.display().to_string(), None)
        }
    };
    let hash = match &data.meta {
        Some(m) => m.hash.clone(),
        None => {
            // A foreign dataset: its identity is the hash of its contents.
            let mut h = Sha256::new();
            // The test split joins the hash only when present, so a file without one keeps
            // the identity it had before test splits existed.
            for (_, s) in data.parts() {
                h.update(&s.images);
                h.update(&s.labels);
            }
            h.finalize().iter().map(|b| format!("{b:02x}")).collect()
        }
    };
    let row = DatasetRow {
        hash: hash.clone(),
        label: label.to_string(),
        source: source_text.clone(),
        spec: spec_json.clone(),
        train: data.train.len(),
        val: data.val.len(),
        test: data.test.as_ref().map(|t| t.len()),
        height: data.height,
        width: data.width,
        class_names: data.class_names.clone(),
    };
    let data_ref = DataRef::of(&data, source_text, Some(hash));
    Ok(Loaded {
        data,
        row,
        data_ref,
    })
}

/// A run ready to train.
pub(super) struct Job<'a> {
    pub(super) plan: &'a RunPlan,
    arch: Arch,
    config: TrainConfig,
    identity: String,
}

/// Stops a run between epochs when the sweep is cancelled.
struct RunObserver<'a> {
    cancel: &'a AtomicBool,
    sweep: &'a dyn SweepObserver,
}

impl tinycnn::train::Observer for RunObserver<'_> {
    fn epoch(&mut self, _: &tinycnn::EpochStats) -> bool {
        self.sweep.epoch();
        !self.cancel.load(Ordering::SeqCst)
    }
}

/// Where a sweep saves model directories: the store's artifacts root, and the path under it
/// that the store records.
pub(super) struct Artifacts {
    root: std::path::PathBuf,
    prefix: std::path::PathBuf,
}

impl Artifacts {
    /// Fails before any training when the store has no artifacts root (PostgreSQL without
    /// `--artifacts`).
    pub(super) fn of(store: &Store) -> Result<Artifacts> {
        Ok(Artifacts {
            root: store.artifacts()?.to_path_buf(),
            prefix: store.runs_prefix(),
        })
    }
}

/// A run trained and saved, not yet stored: its row and history.
pub(super) type Trained = (RunRow, Vec<tinycnn::EpochStats>);

/// Trains, classifies and saves one run, for the caller to store. `Ok(None)` when cancelled.
pub(super) fn execute(
    job: &Job,
    d: &Loaded,
    plan: &Plan,
    art: &Artifacts,
    opts: &SweepOptions,
    obs: &dyn SweepObserver,
) -> Result<Option<Trained>> {
    let mut o = RunObserver {
        cancel: opts.cancel,
        sweep: obs,
    };
    let (run, last_val) = crate::models::training::train_evaluated(
        &d.data,
        d.data_ref.clone(),
        &job.arch,
        &job.config,
        &mut o,
    )?;
    if run.meta.ending == tinycnn::Ending::Cancelled || opts.cancel.load(Ordering::SeqCst) {
        return Ok(None);
    }
    // The last epoch's evaluation where it was of these weights; else measured again.
    let eval = last_val.unwrap_or_else(|| {
        let val = engine_data(&d.data, Part::Val);
        tinycnn::train::evaluate(&run.model, &val, job.config.scaling)
    });
    // The held-out split made no choice: training stopped on validation, outcomes read the
    // validation curve, and this is what the run's accuracy is reported as.
    let test = d.data.test.is_some().then(|| {
        tinycnn::train::evaluate(
            &run.model,
            &engine_data(&d.data, Part::Test),
            job.config.scaling,
        )
    });
    let c = classify(
        run.meta.ending,
        &run.history,
        &eval,
        &d.data.class_names,
        plan.learned,
    );
    let diagnosis = matches!(c.outcome, Outcome::Stuck | Outcome::Collapsed).then(|| {
        let t = &d.data.train;
        serde_json::to_string(&diagnose(
            &run.model,
            &run.history,
            &t.images,
            &t.labels,
            job.config.scaling,
            &c,
        ))
        .expect("json")
    });
    let weights = safetensors_bytes(&run.model, &job.arch.label());
    let sha256: String = Sha256::digest(&weights)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut rel = art.prefix.join(key_to_dir(&job.plan.key));
    if opts.worker.is_some() {
        // Named by content: a duplicate of this run (a worker whose lease ran out) finds the
        // same directory finished and leaves it.
        rel = rel.join(&sha256[..16]);
        run.save_once(&art.root.join(&rel))?;
    } else {
        run.save(&art.root.join(&rel), true)?;
    }
    let last = run.history.last();
    let row = RunRow {
        key: job.plan.key.clone(),
        experiment: plan.name.clone(),
        dataset_hash: d.row.hash.clone(),
        dataset: plan.datasets[job.plan.dataset].label.clone(),
        arch: job.plan.arch.clone(),
        condition: job.plan.condition.clone(),
        seed_index: job.plan.seed_index,
        seed: job.plan.seed,
        config: job.identity.clone(),
        outcome: c.outcome,
        plateau: c.plateau,
        never_predicted: c.never_predicted.clone(),
        epochs_run: run.history.len(),
        epochs_to_learn: c.epochs_to_learn,
        train_loss: last.map_or(f64::NAN, |e| e.train_loss),
        train_acc: last.map_or(0.0, |e| e.train_acc),
        val_loss: eval.loss,
        val_acc: eval.accuracy,
        test_loss: test.as_ref().map(|t| t.loss),
        test_acc: test.as_ref().map(|t| t.accuracy),
        confusion: eval.confusion.clone(),
        diagnosis,
        seconds: run.meta.seconds,
        images_per_s: run.meta.images_per_s,
        model_dir: rel.to_string_lossy().into_owned(),
        weights_sha256: sha256,
        finished: timestamp(),
    };
    Ok(Some((row, run.history)))
}

/// Runs every run of `plan` (or of one shard) that `store` does not hold yet: on `opts.jobs`
/// threads, or, as a worker (`opts.worker`), claiming one run at a time until every run of the
/// experiment is stored, by this worker or by others.
pub fn run(
    plan: &Plan,
    plan_path: &Path,
    store: &Store,
    opts: &SweepOptions,
    obs: &dyn SweepObserver,
) -> Result<SweepReport> {
    let Some(w) = &opts.worker else {
        return run_once(plan, plan_path, store, opts, obs);
    };
    // A worker that loses its store while setting up (or for longer than its threads wait)
    // reconnects and starts again: every step of a sweep is idempotent.
    let mut fresh: Option<Store> = None;
    loop {
        match run_once(plan, plan_path, fresh.as_ref().unwrap_or(store), opts, obs) {
            Err(Error::StoreLost { store: url, reason }) if !opts.cancel.load(Ordering::SeqCst) => {
                fresh = Some(crate::experiments::worker::reconnect(
                    store,
                    (url, reason),
                    w,
                    opts.cancel,
                    obs,
                )?);
            }
            r => return r,
        }
    }
}

/// [`run`], once.
fn run_once(
    plan: &Plan,
    plan_path: &Path,
    store: &Store,
    opts: &SweepOptions,
    obs: &dyn SweepObserver,
) -> Result<SweepReport> {
    let art = Artifacts::of(store)?;
    let previous = store
        .experiments()?
        .into_iter()
        .find(|(name, _, _)| *name == plan.name)
        .map(|(_, _, text)| text);
    let selected: Vec<&RunPlan> = match opts.shard {
        Some((i, n)) => plan.shard(i, n),
        None => plan.runs.iter().collect(),
    };
    let loaded = load_selected(plan, &selected, obs)?;
    // Build and check every run before training any.
    let done = store.finished(&plan.name)?;
    let changed = previous
        .as_deref()
        .and_then(|t| change_note(plan, t, &done, store.url()));
    let (jobs, already) = build_jobs(plan, &selected, &loaded, &done, store.url())?;
    if let Some(n) = changed {
        obs.note(&n);
    }
    // Recorded only once the experiment is known not to conflict with what is stored.
    store.put_experiment(
        &plan.name,
        &plan_path.display().to_string(),
        plan.seed,
        &plan.text,
    )?;
    for d in loaded.values() {
        store.put_dataset(&d.row)?;
    }
    obs.start(selected.len(), already);
    let (stored, failures) = match &opts.worker {
        Some(w) => {
            let keys: Vec<&str> = selected.iter().map(|r| r.key.as_str()).collect();
            store.register_claims(&plan.name, &keys)?;
            crate::experiments::worker::train_claimed(
                (&jobs, &loaded),
                plan,
                &art,
                store,
                opts,
                w,
                obs,
            )?
        }
        None => train_jobs(&jobs, &loaded, plan, &art, store, opts, obs)?,
    };
    Ok(SweepReport {
        total: selected.len(),
        already,
        stored,
        outcomes: outcome_counts(store, plan, &selected)?,
        cancelled: opts.cancel.load(Ordering::SeqCst),
        failures,
    })
}

/// Loads every dataset the selected runs need (small; generation is parallel and exact), and
/// tells the observer which files a dataset read skipped.
fn load_selected(
    plan: &Plan,
    selected: &[&RunPlan],
    obs: &dyn SweepObserver,
) -> Result<HashMap<usize, Loaded>> {
    let mut loaded: HashMap<usize, Loaded> = HashMap::new();
    for r in selected {
        if let std::collections::hash_map::Entry::Vacant(e) = loaded.entry(r.dataset) {
            let d = &plan.datasets[r.dataset];
            e.insert(load_dataset(&d.label, &d.source)?);
        }
    }
    let mut indices: Vec<&usize> = loaded.keys().collect();
    indices.sort();
    for i in indices {
        if let Some(n) = loaded[i].data.skipped_note(&plan.datasets[*i].label) {
            obs.note(&n);
        }
    }
    Ok(loaded)
}

/// The runs still to train, each built and checked, and how many are stored already; a
/// stored run whose settings differ is an error (the experiment changed).
fn build_jobs<'a>(
    plan: &Plan,
    selected: &[&'a RunPlan],
    loaded: &HashMap<usize, Loaded>,
    done: &HashMap<String, String>,
    store: &StoreUrl,
) -> Result<(Vec<Job<'a>>, usize)> {
    let mut jobs = Vec::new();
    let mut already = 0;
    for r in selected {
        let d = &loaded[&r.dataset];
        let (arch, config) = r
            .settings
            .build(
                &r.arch,
                d.data.height,
                d.data.width,
                d.data.class_names.len(),
                r.seed,
            )
            .map_err(|e| Error::Usage(format!("run {}: {e}", r.key)))?;
        let identity = serde_json::to_string(&RunIdentity {
            arch: &arch,
            train: &config,
            dataset: &d.row.hash,
            learned: plan.learned,
            engine: tinycnn::ENGINE_VERSION,
        })
        .expect("json");
        match done.get(&r.key) {
            Some(stored) if *stored == identity => already += 1,
            Some(_) => {
                return Err(Error::Usage(format!(
                    "run {} is in {} with other settings; the experiment changed since: give it a new name or use another --store",
                    r.key, store
                )))
            }
            None => jobs.push(Job {
                plan: r,
                arch,
                config,
                identity,
            }),
        }
    }
    Ok((jobs, already))
}

/// The order a local sweep trains `jobs` in: the costliest first (training images x epochs x
/// work per image, an upper bound where early stopping may end a run sooner), ties in plan
/// order. Longest-first keeps the last worker from training a big net alone while the others
/// idle: the thesis-scale sweep in plan order ended on 32-32 runs of 17 s each. The order
/// changes nothing a run computes (each run's seed comes from its key) nor what is stored.
fn longest_first(jobs: &[Job], loaded: &HashMap<usize, Loaded>) -> Vec<usize> {
    let cost = |j: &Job| {
        let images = loaded[&j.plan.dataset].data.train.labels.len() as f64;
        j.arch.train_flops_per_image() * images * j.config.epochs as f64
    };
    let costs: Vec<f64> = jobs.iter().map(cost).collect();
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by(|&a, &b| costs[b].total_cmp(&costs[a]).then(a.cmp(&b)));
    order
}

/// Trains `jobs` on `opts.jobs` workers, one thread each, the costliest first
/// ([`longest_first`]), each committing its runs to its own store connection; returns how
/// many were stored and the failures (a run that could not be stored, with the reason), which
/// do not stop the others.
fn train_jobs(
    jobs: &[Job],
    loaded: &HashMap<usize, Loaded>,
    plan: &Plan,
    art: &Artifacts,
    store: &Store,
    opts: &SweepOptions,
    obs: &dyn SweepObserver,
) -> Result<(usize, Vec<String>)> {
    let order = longest_first(jobs, loaded);
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let stored = AtomicUsize::new(0);
    // One connection per thread, opened here: a connection is not shared between threads.
    let stores = (0..opts.jobs.max(1).min(jobs.len().max(1)))
        .map(|_| store.reopen())
        .collect::<Result<Vec<Store>>>()?;
    let (next, failures_ref, stored_ref, order) = (&next, &failures, &stored, &order);
    std::thread::scope(|s| {
        for mut store in stores {
            s.spawn(move || {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .expect("a one-thread pool");
                loop {
                    if opts.cancel.load(Ordering::SeqCst) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(job) = order.get(i).map(|&i| &jobs[i]) else {
                        return;
                    };
                    let d = &loaded[&job.plan.dataset];
                    // False when a concurrent sweep stored the same run first: same bytes,
                    // counted there.
                    let result = pool
                        .install(|| execute(job, d, plan, art, opts, obs))
                        .and_then(|t| match t {
                            Some((row, history)) => {
                                Ok(store.insert_run(&row, &history)?.then_some(row))
                            }
                            None => Ok(None),
                        });
                    match result {
                        Ok(Some(row)) => {
                            stored_ref.fetch_add(1, Ordering::SeqCst);
                            obs.stored(&row);
                        }
                        Ok(None) => {}
                        Err(e) => failures_ref
                            .lock()
                            .expect("no panics hold it")
                            .push(format!("{}: {e}", job.plan.key)),
                    }
                }
            });
        }
    });
    Ok((
        stored.load(Ordering::SeqCst),
        failures.into_inner().expect("no panics hold it"),
    ))
}

/// Outcome counts over every stored run of the selection (stored now or before).
fn outcome_counts(
    store: &Store,
    plan: &Plan,
    selected: &[&RunPlan],
) -> Result<Vec<(String, usize)>> {
    let keys: std::collections::HashSet<&str> = selected.iter().map(|r| r.key.as_str()).collect();
    let rows: Vec<RunRow> = store
        .runs(&crate::experiments::store::RunFilter {
            experiment: Some(plan.name.clone()),
            ..Default::default()
        })?
        .into_iter()
        .filter(|r| keys.contains(r.key.as_str()))
        .collect();
    Ok(Outcome::ALL
        .iter()
        .map(|o| {
            (
                o.name().to_string(),
                rows.iter().filter(|r| r.outcome == *o).count(),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Quiet;
    impl SweepObserver for Quiet {}

    /// The costliest runs train first: by work per image, then by training images (a dataset
    /// twice the size costs twice), ties in plan order.
    #[test]
    fn the_costliest_runs_train_first_ties_in_plan_order() {
        let text = "name = \"order\"\nseeds = 2\nepochs = 3\n\
            [[dataset]]\npreset = \"size\"\ntrain = 30\nname = \"small\"\n\
            [[dataset]]\npreset = \"size\"\ntrain = 60\nname = \"large\"\n\
            [grid]\narchs = [\"2\", \"8-8\", \"4-4\"]\n";
        let plan = Plan::parse(text, Path::new("order.toml")).unwrap();
        let selected: Vec<&RunPlan> = plan.runs.iter().collect();
        let loaded = load_selected(&plan, &selected, &Quiet).unwrap();
        let url = StoreUrl::from(Path::new("unused.db"));
        let (jobs, _) = build_jobs(&plan, &selected, &loaded, &HashMap::new(), &url).unwrap();
        let order = longest_first(&jobs, &loaded);
        let got: Vec<String> = order
            .iter()
            .map(|&i| {
                let r = jobs[i].plan;
                format!(
                    "{} {} {}",
                    plan.datasets[r.dataset].label, r.arch, r.seed_index
                )
            })
            .collect();
        let want = [
            "large 8-8 1",
            "large 8-8 2",
            "small 8-8 1",
            "small 8-8 2",
            "large 4-4 1",
            "large 4-4 2",
            "small 4-4 1",
            "small 4-4 2",
            "large 2 1",
            "large 2 2",
            "small 2 1",
            "small 2 2",
        ];
        assert_eq!(got, want);
    }
}
