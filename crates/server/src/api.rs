//! The HTTP handlers: the page and its assets, and a JSON API. Typed requests and responses;
//! every error is a status with a one-line message naming the value and the fix.
//!
//! - `GET /api/grid`: the success rate of every (dataset, condition, architecture) cell, with
//!   its Wilson interval;
//! - `GET /api/runs?experiment=E&dataset=D&condition=C&arch=A`: a cell's runs, with outcome, accuracies
//!   and validation learning curve;
//! - `POST /api/eval` `{run, off: [[layer, filter], ...], split}`: the run with those filters
//!   switched off, evaluated exactly (equal to `shapelab eval` of the pruned network).

use std::sync::Arc;

use axum::extract::{Query, State as Extract};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::State;

static INDEX: &str = include_str!("../assets/index.html");
static SCRIPT: &str = include_str!("../assets/app.js");
static STYLE: &str = include_str!("../assets/style.css");

/// An error as the API answers it: a status and a one-line message.
pub struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<crate::Error> for Failure {
    fn from(e: crate::Error) -> Failure {
        let status = match &e {
            crate::Error::Usage(_) => StatusCode::BAD_REQUEST,
            crate::Error::Lab(lab::Error::Usage(_)) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(status, e.to_string())
    }
}

fn bad(message: String) -> Failure {
    Failure(StatusCode::BAD_REQUEST, message)
}

/// Runs blocking work (the store, a model, an evaluation) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

pub async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX)
}

pub async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

pub async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

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

/// A run with some filters switched off.
#[derive(Debug, Deserialize)]
pub struct EvalRequest {
    pub run: String,
    /// `[layer, filter]`, both 1-based.
    #[serde(default)]
    pub off: Vec<(usize, usize)>,
    pub split: shapes::Split,
}

/// Its evaluation.
#[derive(Debug, Serialize, Deserialize)]
pub struct EvalResponse {
    pub accuracy: f64,
    pub loss: f64,
    pub images: usize,
    /// Per class: its name and the share of its images predicted right.
    pub per_class: Vec<(String, f64)>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

pub async fn eval(
    Extract(state): Extract<Arc<State>>,
    Json(req): Json<EvalRequest>,
) -> Result<Json<EvalResponse>, Failure> {
    blocking(move || {
        let row = state.row(&req.run)?.ok_or_else(|| {
            Failure(
                StatusCode::NOT_FOUND,
                format!(
                    "run {:?} is not in the store; list runs with GET /api/runs",
                    req.run
                ),
            )
        })?;
        let run = state.run(&row)?;
        let d = state.dataset(&row)?;
        let keep = run
            .model
            .arch
            .keep_without(&req.off)
            .map_err(|e| bad(e.to_string()))?;
        if d.try_split(req.split).is_none() {
            return Err(bad(format!(
                "the run's data has no {} split; ask for val",
                req.split.name()
            )));
        }
        let data = lab::models::training::engine_data(&d, req.split);
        let e = tinycnn::train::evaluate_masked(&run.model, &keep, &data, run.meta.train.scaling)
            .map_err(|e| bad(format!("{e}")))?;
        let per_class = e
            .confusion
            .iter()
            .enumerate()
            .map(|(c, row)| {
                let n: usize = row.iter().sum();
                let name = d
                    .class_names
                    .get(c)
                    .cloned()
                    .unwrap_or_else(|| c.to_string());
                (
                    name,
                    if n == 0 {
                        0.0
                    } else {
                        row[c] as f64 / n as f64
                    },
                )
            })
            .collect();
        Ok(Json(EvalResponse {
            accuracy: e.accuracy,
            loss: e.loss,
            images: e.total,
            per_class,
            confusion: e.confusion,
        }))
    })
    .await
}
