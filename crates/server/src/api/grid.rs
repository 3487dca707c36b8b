//! The runs view: the success-rate grid of every cell and a cell's runs.

use std::sync::Arc;

use axum::extract::{Query, State as Extract};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{bad, blocking, Failure};
use crate::State;

/// One cell of the grid.
#[derive(Debug, Serialize, Deserialize)]
pub struct GridCell {
    /// The experiment (a study's sweep and its case nets are two), never pooled.
    pub experiment: String,
    pub dataset: String,
    pub condition: String,
    pub arch: String,
    pub runs: usize,
    pub learned: usize,
    pub rate: f64,
    /// Wilson 95% interval of the rate.
    pub low: f64,
    pub high: f64,
}

pub async fn grid(Extract(state): Extract<Arc<State>>) -> Result<Json<Vec<GridCell>>, Failure> {
    blocking(move || {
        let rows = state.rows(&Default::default())?;
        let mut experiments: Vec<&str> = rows.iter().map(|r| r.experiment.as_str()).collect();
        experiments.sort_unstable();
        experiments.dedup();
        let mut cells = Vec::new();
        for e in experiments {
            let mine: Vec<_> = rows.iter().filter(|r| r.experiment == e).cloned().collect();
            for g in lab::experiments::summary::summarize(&mine) {
                cells.extend(g.cells.into_iter().map(|c| GridCell {
                    experiment: e.to_string(),
                    dataset: g.dataset.clone(),
                    condition: g.condition.clone(),
                    arch: c.arch.to_string(),
                    runs: c.runs,
                    learned: c.learned,
                    rate: c.rate,
                    low: c.low,
                    high: c.high,
                }));
            }
        }
        Ok(Json(cells))
    })
    .await
}

/// Which cell's runs to list.
#[derive(Debug, Deserialize)]
pub struct CellQuery {
    pub experiment: String,
    pub dataset: String,
    pub condition: String,
    pub arch: String,
}

/// A run of a cell.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunSummary {
    pub key: String,
    pub seed: usize,
    pub outcome: String,
    pub val_acc: f64,
    pub test_acc: Option<f64>,
    /// Validation accuracy after each epoch.
    pub curve: Vec<f64>,
}

pub async fn runs(
    Extract(state): Extract<Arc<State>>,
    Query(q): Query<CellQuery>,
) -> Result<Json<Vec<RunSummary>>, Failure> {
    let arch: tinycnn::ArchLabel = q
        .arch
        .parse()
        .map_err(|e| bad(format!("arch {:?}: {e}", q.arch)))?;
    blocking(move || {
        let rows = state.rows(&lab::experiments::store::RunFilter {
            experiment: Some(q.experiment.clone()),
            dataset: Some(q.dataset.clone()),
            arch: Some(arch),
            ..Default::default()
        })?;
        let mut out = Vec::new();
        for r in rows.into_iter().filter(|r| r.condition == q.condition) {
            let curve = state.history(&r.key)?.iter().map(|e| e.val_acc).collect();
            out.push(RunSummary {
                key: r.key,
                seed: r.seed_index,
                outcome: r.outcome.to_string(),
                val_acc: r.val_acc,
                test_acc: r.test_acc,
                curve,
            });
        }
        out.sort_by_key(|r| r.seed);
        Ok(Json(out))
    })
    .await
}
