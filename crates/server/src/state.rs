//! The server's state: what it serves (a store opened read-only, or one model directory) and
//! what it has loaded or computed from it, each once: datasets, models, run views and their
//! analyses.
//!
//! Every lookup goes through [`State::entry`]: a run the store does not list (or, for a model
//! directory served alone, any other key) is not found, and a model directory that resolves
//! outside the served directory (`..`, an absolute path, a symlink out) is refused.

use std::collections::HashMap;
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use lab::experiments::store::{RunFilter, RunRow, Store};
use lab::models::run::Run;
use lab::Dataset;
use serde::{Deserialize, Serialize};

use crate::{Error, Result, Source};

/// Validation accuracy that counts as learned for a model directory served alone (the
/// experiments' default).
const LEARNED: f64 = 0.99;

/// A run as the page lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    pub experiment: String,
    pub dataset: String,
    pub condition: String,
    pub arch: String,
    pub seed: usize,
    pub outcome: String,
    pub val_acc: f64,
    pub test_acc: Option<f64>,
}

/// Where the runs come from.
enum Backend {
    Store {
        store: Mutex<Store>,
        /// The store's rows by key, read again only when a key is missing (a run committed
        /// since).
        rows: Mutex<HashMap<String, RunRow>>,
    },
    Alone {
        entry: Entry,
        run: Arc<Run>,
    },
}

/// A cache of values computed once per key.
pub(crate) struct Cache<K, V>(Mutex<HashMap<K, Arc<V>>>);

impl<K: Eq + Hash + Clone, V> Cache<K, V> {
    fn new() -> Self {
        Cache(Mutex::new(HashMap::new()))
    }

    /// The value of `key`, made by `make` the first time. Two requests for a new key may both
    /// make it; the first stored wins, and both are equal.
    pub(crate) fn get(&self, key: &K, make: impl FnOnce() -> Result<V>) -> Result<Arc<V>> {
        if let Some(v) = self.0.lock().expect("cache lock").get(key) {
            return Ok(v.clone());
        }
        let v = Arc::new(make()?);
        Ok(self
            .0
            .lock()
            .expect("cache lock")
            .entry(key.clone())
            .or_insert(v)
            .clone())
    }
}

/// What the handlers share.
pub struct State {
    backend: Backend,
    /// The served directory, canonical: every model directory and study file read lies
    /// inside it.
    root: PathBuf,
    /// What the page's title names: the served directory, or a database's name.
    name: String,
    datasets: Cache<String, Dataset>,
    runs: Cache<String, Run>,
    pub(crate) views: Cache<String, crate::view::RunView>,
    pub(crate) analyses: Cache<String, crate::view::AnalysisView>,
    pub(crate) matchings: Cache<(String, String), crate::view::Matching>,
    /// Held while a pruning table is computed: one at a time bounds the memory (tens of MB
    /// each for a 16-16) and leaves a core for the toggles.
    pub(crate) heavy: Mutex<()>,
}

fn canonical(dir: &Path) -> Result<PathBuf> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    Ok(dir.canonicalize().map_err(|e| lab::Error::io(dir, e))?)
}

impl State {
    /// Opens `source`: its store read-only, or its model directory.
    pub fn open(source: &Source) -> Result<State> {
        let (backend, root) = match source {
            Source::Store(path) => {
                let store = Store::open_read(path)?;
                let root = canonical(path.parent().unwrap_or(Path::new(".")))?;
                let backend = Backend::Store {
                    store: Mutex::new(store),
                    rows: Mutex::new(HashMap::new()),
                };
                (backend, root)
            }
            Source::Database { url, artifacts } => {
                let store = Store::open_read(url)?.with_artifacts(Some(artifacts.clone()));
                let root = canonical(artifacts)?;
                let backend = Backend::Store {
                    store: Mutex::new(store),
                    rows: Mutex::new(HashMap::new()),
                };
                (backend, root)
            }
            Source::Run(dir) => {
                let root = canonical(dir)?;
                let run = Run::load(&root)?;
                (alone(&root, run)?, root)
            }
        };
        let name = match source {
            Source::Database { url, .. } => url.database().unwrap_or_else(|| url.to_string()),
            _ => root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        Ok(State {
            backend,
            root,
            name,
            datasets: Cache::new(),
            runs: Cache::new(),
            views: Cache::new(),
            analyses: Cache::new(),
            matchings: Cache::new(),
            heavy: Mutex::new(()),
        })
    }

    /// What the page's title names.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key of the run served alone, if that is what is served.
    pub fn alone(&self) -> Option<&str> {
        match &self.backend {
            Backend::Alone { entry, .. } => Some(&entry.key),
            Backend::Store { .. } => None,
        }
    }

    /// The served directory: a study's or a store's directory, or the model directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every row of the store (or of one cell); none for a model directory served alone.
    pub fn rows(&self, filter: &RunFilter) -> Result<Vec<RunRow>> {
        match &self.backend {
            Backend::Store { store, .. } => Ok(store.lock().expect("store lock").runs(filter)?),
            Backend::Alone { .. } => Ok(Vec::new()),
        }
    }

    /// A run's per-epoch history.
    pub fn history(&self, key: &str) -> Result<Vec<tinycnn::EpochStats>> {
        match &self.backend {
            Backend::Store { store, .. } => Ok(store.lock().expect("store lock").history(key)?),
            Backend::Alone { run, .. } => Ok(run.history.clone()),
        }
    }

    /// The run `key` as the page lists it; `None` when it is not served.
    pub fn entry(&self, key: &str) -> Result<Option<Entry>> {
        match &self.backend {
            Backend::Store { .. } => Ok(self.row(key)?.map(|r| entry_of(&r))),
            Backend::Alone { entry, .. } => Ok((entry.key == key).then(|| entry.clone())),
        }
    }

    /// The store's row of `key` (`None` for a model directory served alone). Every toggle
    /// asks, so the rows are read once and again only for a key not seen.
    pub fn row(&self, key: &str) -> Result<Option<RunRow>> {
        let Backend::Store { rows, .. } = &self.backend else {
            return Ok(None);
        };
        let mut known = rows.lock().expect("rows lock");
        if !known.contains_key(key) {
            *known = self
                .rows(&RunFilter::default())?
                .into_iter()
                .map(|r| (r.key.clone(), r))
                .collect();
        }
        Ok(known.get(key).cloned())
    }

    /// Runs `f` on the store, if one is served.
    pub fn with_store<T>(&self, f: impl FnOnce(&Store) -> lab::Result<T>) -> Result<Option<T>> {
        match &self.backend {
            Backend::Store { store, .. } => Ok(Some(f(&store.lock().expect("store lock"))?)),
            Backend::Alone { .. } => Ok(None),
        }
    }

    /// The run `key`'s model, loaded once; its directory must lie inside the served one.
    pub fn run(&self, key: &str) -> Result<Arc<Run>> {
        let row = match &self.backend {
            Backend::Alone { entry, run } if entry.key == key => return Ok(run.clone()),
            Backend::Alone { .. } => return Err(not_served(key)),
            Backend::Store { .. } => self.row(key)?.ok_or_else(|| not_served(key))?,
        };
        self.runs.get(&row.key, || {
            let dir = self
                .with_store(|s| s.resolve_model_dir(&row.model_dir))?
                .expect("a store");
            let real = dir.canonicalize().map_err(|e| lab::Error::io(&dir, e))?;
            if !real.starts_with(&self.root) {
                return Err(Error::Usage(format!(
                    "run {}'s model directory resolves outside the store's directory; it is not served",
                    row.key
                )));
            }
            Ok(Run::load(&real)?)
        })
    }

    /// The dataset run `key` was trained on, made once.
    pub fn dataset(&self, key: &str) -> Result<Arc<Dataset>> {
        match &self.backend {
            Backend::Alone { run, .. } => self.datasets.get(&String::new(), || {
                Ok(lab::models::training::training_data(&run.meta, &|_| {})?)
            }),
            Backend::Store { store, .. } => {
                let row = self.row(key)?.ok_or_else(|| not_served(key))?;
                self.datasets.get(&row.dataset_hash, || {
                    let store = store.lock().expect("store lock");
                    Ok(lab::experiments::stuck::dataset_of(&store, &row)?)
                })
            }
        }
    }
}

/// The error of a run that is not served.
pub fn not_served(key: &str) -> Error {
    Error::NotFound(format!(
        "run {key:?} is not served here; list the runs with GET /api/runs"
    ))
}

fn entry_of(r: &RunRow) -> Entry {
    Entry {
        key: r.key.clone(),
        experiment: r.experiment.clone(),
        dataset: r.dataset.clone(),
        condition: r.condition.clone(),
        arch: r.arch.to_string(),
        seed: r.seed_index,
        outcome: r.outcome.to_string(),
        val_acc: r.val_acc,
        test_acc: r.test_acc,
    }
}

/// The backend of model directory `dir` served alone: learned when its last validation
/// accuracy reaches the experiments' default threshold.
fn alone(dir: &Path, run: Run) -> Result<Backend> {
    let key = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    let val_acc = run.history.last().map_or(0.0, |e| e.val_acc);
    let t = &run.meta.train;
    let optimizer = match t.optimizer {
        tinycnn::Optimizer::Adam { lr, .. } => format!("adam lr {lr}"),
        tinycnn::Optimizer::Sgd { lr, momentum } => format!("sgd lr {lr} momentum {momentum}"),
    };
    let entry = Entry {
        key,
        experiment: "served alone".into(),
        dataset: run
            .meta
            .data
            .name
            .clone()
            .unwrap_or_else(|| run.meta.data.source.clone()),
        condition: format!("{optimizer}, {:?} scaling", t.scaling).to_lowercase(),
        arch: run.model.arch.label(),
        seed: t.seed as usize,
        outcome: if val_acc >= LEARNED {
            "learned"
        } else {
            "not learned"
        }
        .into(),
        val_acc,
        test_acc: None,
    };
    Ok(Backend::Alone {
        entry,
        run: Arc::new(run),
    })
}
