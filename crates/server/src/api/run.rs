//! The run view and its analysis: computed once per run and kept.

use std::sync::Arc;

use axum::extract::{Query, State as Extract};
use axum::Json;
use serde::Deserialize;

use super::{blocking, Failure};
use crate::state::not_served;
use crate::view::{AnalysisView, RunView};
use crate::State;

/// Which run.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    pub run: String,
}

/// The view of run `key`, built the first time it is asked for.
pub fn view(state: &State, key: &str) -> Result<Arc<RunView>, Failure> {
    Ok(state.views.get(&key.to_string(), || {
        let entry = state.entry(key)?.ok_or_else(|| not_served(key))?;
        let run = state.run(key)?;
        let d = state.dataset(key)?;
        let dissections = state
            .with_store(|s| s.dissections(key))?
            .unwrap_or_default();
        crate::view::run_view(entry, &run, &d, dissections, state.root())
    })?)
}

pub async fn run(
    Extract(state): Extract<Arc<State>>,
    Query(q): Query<RunQuery>,
) -> Result<Json<Arc<RunView>>, Failure> {
    blocking(move || Ok(Json(view(&state, &q.run)?))).await
}

pub async fn analysis(
    Extract(state): Extract<Arc<State>>,
    Query(q): Query<RunQuery>,
) -> Result<Json<Arc<AnalysisView>>, Failure> {
    blocking(move || {
        let key = q.run;
        Ok(Json(state.analyses.get(&key, || {
            let entry = state.entry(&key)?.ok_or_else(|| not_served(&key))?;
            let run = state.run(&key)?;
            let d = state.dataset(&key)?;
            let recorded = state
                .with_store(|s| s.run_analysis(&key, &entry.dataset))?
                .flatten();
            let _one_at_a_time = state.heavy.lock().expect("heavy lock");
            crate::view::analysis_view(&run, &d, recorded)
        })?))
    })
    .await
}
