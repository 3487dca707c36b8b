//! Two runs side by side: B's filters matched to A's by the correlation of their maps
//! ([`lab::analyses::seeds::compare::matching`]), chosen on validation, measured on the
//! held-out split.

use std::sync::Arc;

use axum::extract::{Query, State as Extract};
use axum::Json;
use lab::analyses::seeds::compare::{matching, Side};
use serde::Deserialize;
use shapes::Split as Part;

use super::{blocking, Failure};
use crate::view::Matching;
use crate::State;

/// Which two runs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareQuery {
    pub a: String,
    pub b: String,
}

pub async fn compare(
    Extract(state): Extract<Arc<State>>,
    Query(q): Query<CompareQuery>,
) -> Result<Json<Arc<Matching>>, Failure> {
    blocking(move || {
        let key = (q.a.clone(), q.b.clone());
        Ok(Json(state.matchings.get(&key, || {
            let (a, b) = (state.run(&q.a)?, state.run(&q.b)?);
            let (da, db) = (state.dataset(&q.a)?, state.dataset(&q.b)?);
            if !Arc::ptr_eq(&da, &db) {
                return Err(crate::Error::Usage(format!(
                    "{} and {} were trained on different data; compare runs of one dataset",
                    q.a, q.b
                )));
            }
            let split = da.held_out();
            fn side<'a>(name: &'a str, r: &'a lab::models::run::Run) -> Side<'a> {
                Side {
                    name,
                    model: &r.model,
                    scaling: r.meta.train.scaling,
                }
            }
            let layers = matching(&side(&q.a, &a), &side(&q.b, &b), &da, (Part::Val, split))?;
            Ok(Matching {
                a: q.a.clone(),
                b: q.b.clone(),
                chosen_on: Part::Val,
                split,
                layers,
            })
        })?))
    })
    .await
}
