//! The server's state: the store, opened read-only, and the datasets and models it has
//! loaded, each once. Every lookup goes through the store: a run the store does not list is
//! not found, and a model directory that resolves outside the store's directory (`..`, an
//! absolute path, a symlink out) is refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use lab::experiments::store::{RunFilter, RunRow, Store};
use lab::models::run::Run;
use lab::Dataset;

use crate::{Error, Result, Source};

/// What the handlers share.
pub struct State {
    store: Mutex<Store>,
    /// The store's directory, canonical: every model directory served lies inside it.
    root: PathBuf,
    datasets: Mutex<HashMap<String, Arc<Dataset>>>,
    runs: Mutex<HashMap<String, Arc<Run>>>,
    /// The store's rows by key, read again only when a key is missing (a run committed since).
    rows: Mutex<HashMap<String, RunRow>>,
}

impl State {
    /// Opens `source`'s store read-only.
    pub fn open(source: &Source) -> Result<State> {
        let store = Store::open_read(&source.store)?;
        let dir = source.store.parent().unwrap_or(Path::new("."));
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let root = dir.canonicalize().map_err(|e| lab::Error::io(dir, e))?;
        Ok(State {
            store: Mutex::new(store),
            root,
            datasets: Mutex::new(HashMap::new()),
            runs: Mutex::new(HashMap::new()),
            rows: Mutex::new(HashMap::new()),
        })
    }

    /// Every run of the store (or of one cell).
    pub fn rows(&self, filter: &RunFilter) -> Result<Vec<RunRow>> {
        Ok(self.store.lock().expect("store lock").runs(filter)?)
    }

    /// A run's per-epoch history.
    pub fn history(&self, key: &str) -> Result<Vec<tinycnn::EpochStats>> {
        Ok(self.store.lock().expect("store lock").history(key)?)
    }

    /// The run `key` as the store lists it; `None` when it does not. Every toggle asks, so
    /// the rows are read once and again only for a key not seen.
    pub fn row(&self, key: &str) -> Result<Option<RunRow>> {
        let mut known = self.rows.lock().expect("rows lock");
        if !known.contains_key(key) {
            *known = self
                .rows(&RunFilter::default())?
                .into_iter()
                .map(|r| (r.key.clone(), r))
                .collect();
        }
        Ok(known.get(key).cloned())
    }

    /// The run `row`'s model, loaded once; its directory must lie inside the store's.
    pub fn run(&self, row: &RunRow) -> Result<Arc<Run>> {
        if let Some(r) = self.runs.lock().expect("runs lock").get(&row.key) {
            return Ok(r.clone());
        }
        let dir = self
            .store
            .lock()
            .expect("store lock")
            .resolve_model_dir(&row.model_dir);
        let real = dir.canonicalize().map_err(|e| lab::Error::io(&dir, e))?;
        if !real.starts_with(&self.root) {
            return Err(Error::Usage(format!(
                "run {}'s model directory resolves outside the store's directory; it is not served",
                row.key
            )));
        }
        let run = Arc::new(Run::load(&real)?);
        self.runs
            .lock()
            .expect("runs lock")
            .insert(row.key.clone(), run.clone());
        Ok(run)
    }

    /// The dataset `row` was trained on, made once.
    pub fn dataset(&self, row: &RunRow) -> Result<Arc<Dataset>> {
        if let Some(d) = self
            .datasets
            .lock()
            .expect("datasets lock")
            .get(&row.dataset_hash)
        {
            return Ok(d.clone());
        }
        let d = {
            let store = self.store.lock().expect("store lock");
            Arc::new(lab::experiments::stuck::dataset_of(&store, row)?)
        };
        self.datasets
            .lock()
            .expect("datasets lock")
            .insert(row.dataset_hash.clone(), d.clone());
        Ok(d)
    }
}
