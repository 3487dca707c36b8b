//! The HTTP handlers: the page and its assets, and a JSON API. Typed requests and responses;
//! every error is a status with a one-line message naming the value and the fix.
//!
//! - `GET /api/source`: what is served (a store, or one model directory and its key);
//! - `GET /api/grid`: the success rate of every (experiment, dataset, condition, architecture)
//!   cell, with its Wilson interval ([`grid`]);
//! - `GET /api/runs?experiment=E&dataset=D&condition=C&arch=A`: a cell's runs, with outcome,
//!   accuracies and validation learning curve ([`grid`]);
//! - `GET /api/run?run=KEY`: the run view: shape, panel, kernels, filter statistics, recorded
//!   dissection labels and families ([`run`]);
//! - `GET /api/analysis?run=KEY`: its greedy pruning table and filter similarity ([`run`]);
//! - `POST /api/eval` `{run, off, split}`: the run with filters switched off, evaluated
//!   exactly, overall, per class, per factor bin and as a confusion matrix ([`switch`]);
//! - `POST /api/maps` `{run, off, image}`: every map and the prediction on one panel image or
//!   given pixels ([`switch`]);
//! - `POST /api/filter` `{run, off, layer, filter}`: one filter's maps over the panel
//!   ([`switch`]);
//! - `POST /api/image` (a PNG body): its pixels, for the network to read ([`image`]);
//! - `GET /api/compare?a=KEY&b=KEY`: B's filters matched to A's ([`compare`]).

pub mod compare;
pub mod grid;
pub mod image;
pub mod run;
pub mod switch;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

static INDEX: &str = include_str!("../../assets/index.html");
static SCRIPT: &str = include_str!("../../assets/app.js");
static STYLE: &str = include_str!("../../assets/style.css");

/// An error as the API answers it: a status and a one-line message.
#[derive(Debug)]
pub struct Failure(pub StatusCode, pub String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<crate::Error> for Failure {
    fn from(e: crate::Error) -> Failure {
        let status = match &e {
            crate::Error::Usage(_) => StatusCode::BAD_REQUEST,
            crate::Error::NotFound(_) => StatusCode::NOT_FOUND,
            crate::Error::Lab(lab::Error::Usage(_)) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(status, e.to_string())
    }
}

impl From<lab::Error> for Failure {
    fn from(e: lab::Error) -> Failure {
        crate::Error::Lab(e).into()
    }
}

/// A 400 with `message`.
pub fn bad(message: String) -> Failure {
    Failure(StatusCode::BAD_REQUEST, message)
}

/// Runs blocking work (the store, a model, an evaluation) off the async threads.
pub async fn blocking<T: Send + 'static>(
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

/// What is served.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct SourceInfo {
    /// `store` or `run`.
    pub kind: String,
    /// The served directory's or database's name, for the page's title.
    pub name: String,
    /// The key of the run served alone.
    pub run: Option<String>,
}

pub async fn source(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<crate::State>>,
) -> Json<SourceInfo> {
    let name = state.name().to_string();
    Json(SourceInfo {
        kind: if state.alone().is_some() {
            "run"
        } else {
            "store"
        }
        .into(),
        name,
        run: state.alone().map(str::to_string),
    })
}
