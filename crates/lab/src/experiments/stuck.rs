//! The stuck-run study (the thesis's future work 4): are runs that stop at 0.333 or 0.667 in a
//! local minimum, and could they go on learning?
//!
//! [`report`] gathers, for every group of runs (dataset, condition, architecture), how many got
//! stuck, at which plateaus, which classes collapsed, how many filters were dead, how large the
//! gradient was at the plateau and when the plateau began, next to the same figures for the
//! runs that learned. [`continue_runs`] trains stuck runs further (optionally at another
//! learning rate, the shuffle sequence continuing from where the run stopped) and records
//! whether they escape.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use shapes::Split as Part;

use crate::data::dataset::Dataset;
use crate::error::{Error, Result};
use crate::experiments::outcome::Diagnosis;
use crate::experiments::rescue::Rescue;
use crate::experiments::store::{timestamp, ContinuationRow, RunRow, Store};
use crate::experiments::summary::median;
use crate::models::run::Run;
use crate::models::training::engine_data;

/// The stuck runs of one group.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StuckGroup {
    pub dataset: String,
    pub condition: String,
    pub arch: tinycnn::ArchLabel,
    pub runs: usize,
    pub stuck: usize,
    /// Plateau (rounded to 3 decimals) to count.
    pub plateaus: BTreeMap<String, usize>,
    /// Class to the number of stuck runs that never predict it.
    pub collapsed: BTreeMap<String, usize>,
    /// Mean fraction of dead filters per layer, over stuck runs.
    pub dead_fraction_stuck: Vec<f64>,
    /// The same over the group's other runs (from their last epoch), for contrast.
    pub dead_fraction_other: Vec<f64>,
    /// Median gradient norm at the plateau.
    pub median_grad_norm: Option<f64>,
    /// Median first epoch of the plateau.
    pub median_plateau_start: Option<f64>,
    /// Continuations of this group's stuck runs: (extra epochs, lr, escaped, tried).
    pub continued: Vec<(usize, String, usize, usize)>,
}

/// The part of a run's stored settings a continuation needs.
#[derive(Deserialize)]
struct Identity {
    train: tinycnn::TrainConfig,
    learned: f64,
}

/// A run's dead-filter counts read back from the store: one per conv layer, or the store is
/// damaged (never a silent zero for a missing layer).
fn dead_counts(store: &Store, key: &str, dead: &[usize], filters: &[usize]) -> Result<Vec<usize>> {
    if dead.len() != filters.len() {
        return Err(store.fault(format!(
                "run {key} records dead filters for {} layers, but its architecture has {}; the store is damaged",
                dead.len(),
                filters.len()
            ),
        ));
    }
    Ok(dead.to_vec())
}

fn mean_fraction(dead: &[Vec<usize>], filters: &[usize]) -> Vec<f64> {
    (0..filters.len())
        .map(|l| {
            if dead.is_empty() {
                return 0.0;
            }
            dead.iter()
                .map(|d| d[l] as f64 / filters[l] as f64)
                .sum::<f64>()
                / dead.len() as f64
        })
        .collect()
}

/// The stuck-run report over `rows` (with each run's last-epoch dead filters from `store`).
pub fn report(store: &Store, rows: &[RunRow]) -> Result<Vec<StuckGroup>> {
    let continuations = store.continuations()?;
    // Keyed by the label's text, so groups keep the order `shapelab stuck` has always printed.
    let mut groups: BTreeMap<(String, String, String), Vec<&RunRow>> = BTreeMap::new();
    for r in rows {
        groups
            .entry((r.dataset.clone(), r.condition.clone(), r.arch.to_string()))
            .or_default()
            .push(r);
    }
    let mut out = Vec::new();
    for ((dataset, condition, _), runs) in groups {
        let arch = runs[0].arch.clone();
        let filters = arch.filters().to_vec();
        let stuck: Vec<&&RunRow> = runs
            .iter()
            .filter(|r| r.outcome == crate::experiments::outcome::Outcome::Stuck)
            .collect();
        let mut plateaus = BTreeMap::new();
        let mut collapsed = BTreeMap::new();
        let mut grads = Vec::new();
        let mut starts = Vec::new();
        let mut dead_stuck = Vec::new();
        for r in &stuck {
            *plateaus
                .entry(format!("{:.3}", r.plateau.unwrap_or(r.val_acc)))
                .or_insert(0) += 1;
            for c in &r.never_predicted {
                *collapsed.entry(c.clone()).or_insert(0) += 1;
            }
            let diagnosis = r
                .diagnosis
                .as_deref()
                .map(serde_json::from_str::<Diagnosis>)
                .transpose()
                .map_err(|e| {
                    store.fault(format!(
                        "run {} has a diagnosis that does not read back: {e}",
                        r.key
                    ))
                })?;
            if let Some(d) = diagnosis {
                grads.push(d.grad_norm);
                starts.push(d.plateau_start as f64);
                dead_stuck.push(dead_counts(store, &r.key, &d.dead, &filters)?);
            }
        }
        let mut dead_other = Vec::new();
        for r in runs
            .iter()
            .filter(|r| r.outcome != crate::experiments::outcome::Outcome::Stuck)
        {
            if let Some(last) = store.history(&r.key)?.last() {
                dead_other.push(dead_counts(store, &r.key, &last.dead, &filters)?);
            }
        }
        let keys: std::collections::HashSet<&str> = stuck.iter().map(|r| r.key.as_str()).collect();
        let mut continued: BTreeMap<(usize, String), (usize, usize)> = BTreeMap::new();
        for c in continuations
            .iter()
            .filter(|c| keys.contains(c.run_key.as_str()))
        {
            let e = continued
                .entry((c.extra_epochs, c.lr.clone()))
                .or_insert((0, 0));
            e.0 += c.escaped as usize;
            e.1 += 1;
        }
        out.push(StuckGroup {
            runs: runs.len(),
            stuck: stuck.len(),
            plateaus,
            collapsed,
            dead_fraction_stuck: mean_fraction(&dead_stuck, &filters),
            dead_fraction_other: mean_fraction(&dead_other, &filters),
            median_grad_norm: median(&mut grads),
            median_plateau_start: median(&mut starts),
            continued: continued
                .into_iter()
                .map(|((e, lr), (k, n))| (e, lr, k, n))
                .collect(),
            dataset,
            condition,
            arch,
        });
    }
    Ok(out)
}

/// The text view of [`report`].
pub fn to_text(groups: &[StuckGroup]) -> String {
    let mut out = String::new();
    let total: usize = groups.iter().map(|g| g.runs).sum();
    let stuck: usize = groups.iter().map(|g| g.stuck).sum();
    out += &format!("{stuck} of {total} runs stuck\n\n");
    for g in groups.iter().filter(|g| g.stuck > 0) {
        let cond = if g.condition.is_empty() {
            String::new()
        } else {
            format!(" {}", g.condition)
        };
        out += &format!(
            "{} {}{cond}: {}/{} stuck\n",
            g.dataset, g.arch, g.stuck, g.runs
        );
        let pl: Vec<String> = g
            .plateaus
            .iter()
            .map(|(p, n)| format!("{p} x{n}"))
            .collect();
        out += &format!("  plateaus: {}\n", pl.join(", "));
        let cl: Vec<String> = g
            .collapsed
            .iter()
            .map(|(c, n)| format!("{c} x{n}"))
            .collect();
        out += &format!("  never predicted: {}\n", cl.join(", "));
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{:.0}%", 100.0 * x))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        out += &format!(
            "  dead filters per layer: {} when stuck, {} otherwise\n",
            fmt(&g.dead_fraction_stuck),
            fmt(&g.dead_fraction_other)
        );
        if let Some(n) = g.median_grad_norm {
            out += &format!("  median gradient norm at the plateau: {n:.2e}\n");
        }
        if let Some(s) = g.median_plateau_start {
            out += &format!("  median epoch the plateau began: {s}\n");
        }
        for (e, lr, k, n) in &g.continued {
            out += &format!("  continued {e} more epochs (lr {lr}): {k}/{n} escaped\n");
        }
    }
    out
}

/// Loads the dataset a stored run was trained on.
pub fn dataset_of(store: &Store, r: &RunRow) -> Result<Dataset> {
    let d = store
        .dataset(&r.dataset_hash)?
        .ok_or_else(|| store.fault(format!("lacks the dataset of run {}", r.key)))?;
    match &d.spec {
        Some(spec) => Ok(Dataset::generate(
            &shapes::DatasetSpec::from_canonical_json(spec)?,
            Some(d.label.clone()),
            &|_| {},
        )),
        None => crate::models::training::resolve_data(&d.source, &|_| {}).map(|x| x.0),
    }
}

/// Trains every run of `rows` (the caller picks them: stuck runs, or partial runs still
/// rising) `extra` more epochs with `rescue` on `jobs` threads, and records each result.
/// Returns the continuation rows.
pub fn continue_runs(
    store: &Store,
    rows: &[RunRow],
    extra: usize,
    rescue: Rescue,
    jobs: usize,
    progress: &(dyn Fn() + Sync),
) -> Result<Vec<ContinuationRow>> {
    if extra == 0 {
        return Err(Error::Usage(
            "--continue 0: give the number of extra epochs, e.g. --continue 20".into(),
        ));
    }
    if let Rescue::Lr(lr) = rescue {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::Usage(format!(
                "--lr {lr}: give a learning rate above 0"
            )));
        }
    }
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    let errors = Mutex::new(Vec::new());
    // One connection per thread, opened here: a connection is not shared between threads.
    let stores = (0..jobs.max(1).min(rows.len().max(1)))
        .map(|_| store.reopen())
        .collect::<Result<Vec<Store>>>()?;
    let (next, results_ref, errors_ref) = (&next, &results, &errors);
    std::thread::scope(|s| {
        for mut store in stores {
            s.spawn(move || {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .expect("a pool");
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(r) = rows.get(i) else { return };
                    match pool.install(|| continue_one(&mut store, r, extra, rescue)) {
                        Ok(c) => {
                            if let Err(e) = store.put_continuation(&c) {
                                errors_ref.lock().expect("lock").push(e.to_string());
                            }
                            results_ref.lock().expect("lock").push(c);
                        }
                        Err(e) => errors_ref
                            .lock()
                            .expect("lock")
                            .push(format!("{}: {e}", r.key)),
                    }
                    progress();
                }
            });
        }
    });
    if let Some(e) = errors.into_inner().expect("lock").into_iter().next() {
        return Err(Error::Usage(e));
    }
    let mut out = results.into_inner().expect("lock");
    out.sort_by(|a, b| a.run_key.cmp(&b.run_key));
    Ok(out)
}

fn continue_one(
    store: &mut Store,
    r: &RunRow,
    extra: usize,
    rescue: Rescue,
) -> Result<ContinuationRow> {
    let id: Identity = serde_json::from_str(&r.config)
        .map_err(|e| store.fault(format!("run {} has unreadable settings: {e}", r.key)))?;
    let run = Run::load(&store.resolve_model_dir(&r.model_dir)?)?;
    let data = dataset_of(store, r)?;
    let mut config = id.train.clone();
    config.epochs = extra;
    config.early_stop = false;
    let mut model = run.model;
    let px = data.height * data.width;
    let sample = &data.train.images[..data.train.len().min(1000) * px];
    rescue.apply(&mut model, &mut config, sample, r.seed.wrapping_add(1));
    let mut t = tinycnn::train::Trainer::from_model(model, config)?;
    t.epoch = r.epochs_run;
    let (train, val) = (
        engine_data(&data, Part::Train),
        engine_data(&data, Part::Val),
    );
    let mut escape_epoch = None;
    let mut diverged = false;
    for e in 1..=extra {
        match t.epoch(&train, &val, &mut tinycnn::train::Silent)? {
            Some(s) => {
                if escape_epoch.is_none() && s.val_acc >= id.learned {
                    escape_epoch = Some(e);
                }
            }
            None => {
                diverged = true;
                break;
            }
        }
    }
    let eval = tinycnn::train::evaluate(&t.model, &val, t.config.scaling);
    let ending = if diverged {
        tinycnn::Ending::Diverged
    } else {
        tinycnn::Ending::Completed
    };
    let c =
        crate::experiments::outcome::classify(ending, &[], &eval, &data.class_names, id.learned);
    Ok(ContinuationRow {
        run_key: r.key.clone(),
        extra_epochs: extra,
        lr: rescue.label(),
        val_acc: eval.accuracy,
        outcome: c.outcome,
        escaped: c.outcome == crate::experiments::outcome::Outcome::Learned,
        escape_epoch,
        finished: timestamp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_counts_must_cover_every_layer() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        assert_eq!(dead_counts(&s, "k", &[1, 0], &[2, 2]).unwrap(), vec![1, 0]);
        let e = dead_counts(&s, "k", &[1], &[2, 2]).unwrap_err().to_string();
        assert!(
            e.contains("run k") && e.contains("1 layers") && e.contains("damaged"),
            "{e}"
        );
    }
}
