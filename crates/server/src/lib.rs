//! `shapelab serve`: a local web explorer of a store's runs. The sweep's success-rate grid,
//! each cell's runs with their learning curves, and a run's filters switched off with the
//! accuracy overall, per class and as a confusion matrix recomputed exactly (the masked
//! evaluation equals evaluating the physically pruned network).
//!
//! An axum server on tokio. The page (HTML, CSS, JS in `assets/`) is built into the binary:
//! no CDN and no network at run time. The server is read-only on the store (SQLite opened
//! read-only), serves only the runs the store lists, refuses a model directory that resolves
//! outside the store's directory, and caps request bodies.
//!
//! Must not write anything: not the store, not a model directory, not a file.

pub mod api;
pub mod source;
pub mod state;
pub mod view;

use std::net::SocketAddr;

pub use source::Source;
pub use state::State;

/// What can go wrong serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Lab(#[from] lab::Error),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    NotFound(String),
    #[error(
        "cannot listen on {addr}: {reason}; give another --port, or --port 0 for any free one"
    )]
    Bind {
        addr: SocketAddr,
        reason: std::io::Error,
    },
    #[error("the server stopped: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 256 * 1024;

/// The router of `state`: the page, its assets and the API.
pub fn app(state: std::sync::Arc<State>) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/", get(api::index))
        .route("/app.js", get(api::script))
        .route("/style.css", get(api::style))
        .route("/api/source", get(api::source))
        .route("/api/grid", get(api::grid::grid))
        .route("/api/runs", get(api::grid::runs))
        .route("/api/run", get(api::run::run))
        .route("/api/analysis", get(api::run::analysis))
        .route("/api/eval", post(api::switch::eval))
        .route("/api/maps", post(api::switch::maps))
        .route("/api/filter", post(api::switch::filter))
        .route("/api/image", post(api::image::upload))
        .route("/api/compare", get(api::compare::compare))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// How long requests still running at Ctrl-C (a pruning table being computed) may take
/// before the server stops anyway.
const GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves `state` on `addr` until Ctrl-C; `ready` gets the bound address (the port chosen
/// when `addr` asks for port 0) before the first request is accepted. At Ctrl-C the server
/// stops accepting, lets running requests finish for [`GRACE`], and returns.
pub fn serve(state: State, addr: SocketAddr, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|reason| Error::Bind { addr, reason })?;
        ready(listener.local_addr()?);
        let signal = stop.clone();
        let server = axum::serve(listener, app(std::sync::Arc::new(state))).with_graceful_shutdown(
            async move {
                let _ = tokio::signal::ctrl_c().await;
                signal.notify_one();
            },
        );
        tokio::select! {
            done = server => done?,
            _ = async {
                stop.notified().await;
                tokio::time::sleep(GRACE).await;
            } => {}
        }
        Ok(())
    });
    // Blocking work still running (a pruning table) is abandoned: it writes nothing.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    result
}
