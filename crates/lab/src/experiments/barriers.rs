//! A store's runs, cell by cell, measured by [`crate::analyses::seeds::barriers`]: each cell's
//! learned runs in seed order, their disjoint pairs' models loaded and joined by straight
//! lines, as trained and aligned.
//!
//! Glue between the store and the analysis; must not summarise or print.

use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::analyses::seeds::barriers::{disjoint_pairs, pair, Barriers, CellBarriers, Settings};
use crate::analyses::seeds::compare::Side;
use crate::data::dataset::Dataset;
use crate::error::{Error, Result};
use crate::experiments::outcome::Outcome;
use crate::experiments::store::{RunRow, Store};
use crate::models::run::Run;

/// The barriers of every cell of `runs` (one experiment's runs; cells are never pooled across
/// datasets or conditions). `dataset` loads the dataset a run was trained on (called once per
/// dataset); `progress(done, total)` counts pairs; once `cancel` is set, no further pair
/// starts and the call returns [`Error::Interrupted`]. The same runs give the same bytes at
/// any thread count: the pairs are measured independently and gathered in order.
pub fn grid(
    store: &Store,
    runs: &[RunRow],
    settings: &Settings,
    dataset: &dyn Fn(&RunRow) -> Result<Dataset>,
    (progress, cancel): (
        &(dyn Fn(usize, usize) + Sync),
        &std::sync::atomic::AtomicBool,
    ),
) -> Result<Barriers> {
    let mut cells: BTreeMap<(String, String, String), Vec<&RunRow>> = BTreeMap::new();
    for r in runs {
        let key = (r.dataset.clone(), r.condition.clone(), r.arch.to_string());
        cells.entry(key).or_default().push(r);
    }
    let mut datasets: BTreeMap<String, Dataset> = BTreeMap::new();
    let mut out = Vec::new();
    let mut jobs: Vec<(usize, &RunRow, &RunRow)> = Vec::new();
    let dir = |r: &RunRow| store.resolve_model_dir(&r.model_dir);
    for ((data, condition, arch), rows) in &cells {
        let mut learned: Vec<&RunRow> = rows
            .iter()
            .copied()
            .filter(|r| r.outcome == Outcome::Learned)
            .collect();
        learned.sort_by_key(|r| r.seed_index);
        for (i, j) in disjoint_pairs(learned.len(), settings.pairs) {
            jobs.push((out.len(), learned[i], learned[j]));
        }
        if let Some(first) = learned.first() {
            if !datasets.contains_key(&first.dataset_hash) {
                datasets.insert(first.dataset_hash.clone(), dataset(first)?);
            }
        }
        out.push(CellBarriers {
            dataset: data.clone(),
            condition: condition.clone(),
            arch: arch.clone(),
            filters: rows[0].arch.filters().to_vec(),
            learned: learned.len(),
            pairs: Vec::new(),
        });
    }
    // The store stays on this thread (its connection is not shared); the workers get paths.
    let jobs: Vec<_> = jobs
        .into_iter()
        .map(|(cell, a, b)| Ok((cell, (a, dir(a)?), (b, dir(b)?))))
        .collect::<Result<_>>()?;
    let total = jobs.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let measured: Vec<Result<_>> = jobs
        .par_iter()
        .map(|(cell, (a, dir_a), (b, dir_b))| {
            if cancel.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(Error::Interrupted(
                    "run the same command again to resume".into(),
                ));
            }
            let d = &datasets[&a.dataset_hash];
            let (ra, rb) = (Run::load(dir_a)?, Run::load(dir_b)?);
            let p = pair(
                &side(a, &ra),
                &side(b, &rb),
                (a.seed_index, b.seed_index),
                d,
                (shapes::Split::Val, d.held_out()),
                settings.points,
            )?;
            progress(
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1,
                total,
            );
            Ok((*cell, p))
        })
        .collect();
    for m in measured {
        let (cell, p) = m?;
        out[cell].pairs.push(p);
    }
    Ok(Barriers {
        schema: crate::files::schema::Schema::CURRENT,
        chosen_on: shapes::Split::Val,
        split: datasets
            .values()
            .next()
            .map_or(shapes::Split::Test, Dataset::held_out),
        settings: settings.clone(),
        cells: out,
    })
}

fn side<'a>(r: &'a RunRow, run: &'a Run) -> Side<'a> {
    Side {
        name: &r.key,
        model: &run.model,
        scaling: run.meta.train.scaling,
    }
}
