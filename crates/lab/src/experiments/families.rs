//! The runs of one store cell (dataset, architecture, condition) gathered for
//! [`crate::analyses::seeds::families`]: their dataset drawn once, their models loaded, and
//! their recorded dissections read back as labels.
//!
//! Glue between the store and the analysis; must not summarise or print.

use crate::analyses::dissection::Dissection;
use crate::data::dataset::Dataset;
use crate::error::{Error, Result};
use crate::experiments::outcome::Outcome;
use crate::experiments::store::{RunRow, Store};
use crate::models::run::Run;

/// A cell's runs, loaded.
pub struct Cell {
    pub dataset: Dataset,
    pub condition: String,
    pub rows: Vec<RunRow>,
    pub runs: Vec<Run>,
    /// Per run, its dissection's labels `[layer][filter]` when it has one (on `split`).
    pub labels: Vec<Option<Vec<Vec<Option<String>>>>>,
}

/// Loads the runs `rows` of one cell; refuses rows that mix datasets or conditions (never
/// pooled), naming what differs. `split` picks which recorded dissection gives the labels.
pub fn load_cell(store: &Store, rows: Vec<RunRow>, split: shapes::Split) -> Result<Cell> {
    let first = rows
        .first()
        .ok_or_else(|| Error::Usage("the cell has no runs".into()))?
        .clone();
    let mut conditions: Vec<&str> = rows.iter().map(|r| r.condition.as_str()).collect();
    conditions.sort_unstable();
    conditions.dedup();
    if conditions.len() > 1 {
        return Err(Error::Usage(format!(
            "the runs span the conditions {}; families are never pooled across conditions: give --condition",
            conditions.join(", ")
        )));
    }
    if let Some(r) = rows.iter().find(|r| r.dataset_hash != first.dataset_hash) {
        return Err(Error::Usage(format!(
            "runs {} and {} were trained on different datasets ({} and {}); give --dataset",
            first.key, r.key, first.dataset, r.dataset
        )));
    }
    if let Some(r) = rows.iter().find(|r| r.arch != first.arch) {
        return Err(Error::Usage(format!(
            "runs {} and {} have different architectures ({} and {}); give --arch",
            first.key, r.key, first.arch, r.arch
        )));
    }
    let dataset = crate::experiments::stuck::dataset_of(store, &first)?;
    let runs: Vec<Run> = rows
        .iter()
        .map(|r| {
            store
                .resolve_model_dir(&r.model_dir)
                .and_then(|d| Run::load(&d))
        })
        .collect::<Result<_>>()?;
    let labels = rows
        .iter()
        .map(|r| {
            let ds = store.dissections(&r.key)?;
            Ok(ds
                .iter()
                .find(|d| d.split == split)
                .or(ds.first())
                .map(labels_of))
        })
        .collect::<Result<_>>()?;
    Ok(Cell {
        dataset,
        condition: first.condition.clone(),
        rows,
        runs,
        labels,
    })
}

fn labels_of(d: &Dissection) -> Vec<Vec<Option<String>>> {
    d.layers
        .iter()
        .map(|l| l.filters.iter().map(|f| f.label.clone()).collect())
        .collect()
}

impl Cell {
    /// The members as the analysis takes them.
    pub fn members(&self) -> Vec<crate::analyses::seeds::families::Member<'_>> {
        self.rows
            .iter()
            .zip(&self.runs)
            .zip(&self.labels)
            .map(
                |((r, run), labels)| crate::analyses::seeds::families::Member {
                    key: &r.key,
                    seed: r.seed_index,
                    learned: r.outcome == Outcome::Learned,
                    model: &run.model,
                    scaling: run.meta.train.scaling,
                    labels: labels.clone(),
                },
            )
            .collect()
    }
}
