//! Experiments: a TOML file that expands into a list of runs.
//!
//! ```toml
//! name = "quick"            # default: the file's stem; part of every run key
//! seed = 1                  # experiment seed; each run's seed derives from it and the run key
//! seeds = 3                 # runs per cell
//! epochs = 5
//! learned = 0.99            # validation accuracy that counts as learned
//!
//! [train]                   # settings of every run (see `TrainSettings`)
//! optimizer = "adam"
//! early_stop = true
//!
//! [[dataset]]               # one or more: preset, spec (a dataset spec file) or file
//! preset = "thesis-1.3"
//! train = 1200              # overrides of the preset or spec
//! val = 600
//! test = 600                # the held-out split (default: the validation size; 0 for none)
//!
//! [grid]                    # filters per layer, all combinations for `layers` layers...
//! layers = 2
//! filters = [2, 4]
//! # archs = ["2-2", "16-4", "8"]   # ...or an explicit list (one-layer nets included)
//!
//! [condition.adam-unit]     # optional named conditions (settings over [train]), crossed
//! optimizer = "adam"        # with the sweep's axes; the name leads the run key's condition
//! [condition.sgd-raw]
//! optimizer = "sgd"
//! scaling = "raw"
//!
//! [sweep]                   # training fields swept: the cartesian product of the lists
//! optimizer = ["adam", "sgd"]
//! scaling = ["unit", "raw"]
//! [sweep.data]              # dataset fields swept: counts, seed, or any factor's distribution
//! size = [{ min = 0.3, max = 0.9 }, { min = 0.1, max = 0.9 }]
//! ```
//!
//! Expansion order (and so `--shard` slices and the progress order) is datasets, data
//! conditions, architectures, training conditions, seeds. A run's key names all of them:
//! `quick/thesis-1.3/2-4/optimizer=sgd,scaling=raw/seed2`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shapes::{DatasetSpec, Dist, SpecFile};
use tinycnn::{Activation, Arch, Init, Optimizer, Scaling, TrainConfig};

use crate::error::{Error, Result};

/// Optimiser names in settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adam,
    Sgd,
}

fn default_batch() -> usize {
    32
}
fn default_kernel() -> usize {
    3
}
fn default_epochs() -> usize {
    40
}
fn default_optimizer() -> OptimizerKind {
    OptimizerKind::Adam
}
fn default_scaling() -> Scaling {
    Scaling::Unit
}
fn default_init() -> Init {
    Init::Glorot
}
fn default_activation() -> Activation {
    Activation::Relu
}

/// Every training setting of a run, as written in an experiment's `[train]` table or swept in
/// `[sweep]`; also what `shapelab train`'s flags fill in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSettings {
    #[serde(default = "default_optimizer")]
    pub optimizer: OptimizerKind,
    /// Learning rate; default 1e-3 for Adam, 0.01 for SGD.
    #[serde(default)]
    pub lr: Option<f64>,
    /// SGD momentum (SGD only), default 0.
    #[serde(default)]
    pub momentum: Option<f64>,
    #[serde(default = "default_batch")]
    pub batch: usize,
    #[serde(default = "default_scaling")]
    pub scaling: Scaling,
    #[serde(default = "default_init")]
    pub init: Init,
    #[serde(default)]
    pub early_stop: bool,
    #[serde(default = "default_activation")]
    pub activation: Activation,
    #[serde(default = "default_kernel")]
    pub kernel: usize,
    /// Max-pool after each conv layer (default: all).
    #[serde(default)]
    pub pool: Option<Vec<bool>>,
    #[serde(default = "default_epochs")]
    pub epochs: usize,
}

impl Default for TrainSettings {
    fn default() -> Self {
        toml::from_str("").expect("all fields have defaults")
    }
}

impl TrainSettings {
    /// The settings in words, for a reader who has not seen the experiment file: optimiser and
    /// learning rate, input scale, batch, initialisation, epochs and stopping rule.
    pub fn describe(&self) -> String {
        let opt = match self.optimizer {
            OptimizerKind::Adam => format!("Adam at learning rate {}", self.lr.unwrap_or(1e-3)),
            OptimizerKind::Sgd => {
                let m = self.momentum.unwrap_or(0.0);
                let momentum = if m == 0.0 {
                    "plain SGD".to_string()
                } else {
                    format!("SGD with momentum {m}")
                };
                format!("{momentum} at learning rate {}", self.lr.unwrap_or(0.01))
            }
        };
        let inputs = match self.scaling {
            Scaling::Unit => "pixels scaled to [0, 1]",
            Scaling::Raw => "raw pixels (0 to 255)",
        };
        let init = match self.init {
            Init::Glorot => "Glorot-uniform",
            Init::He => "He-uniform",
        };
        let stop = if self.early_stop {
            ", stopping at the first epoch that learns"
        } else {
            ""
        };
        format!(
            "{opt} on {inputs}, batches of {}, {init} initialisation, up to {} epochs{stop}",
            self.batch, self.epochs
        )
    }

    /// The architecture and engine config for `arch` (`16-4`) on `h x w` images of `classes`
    /// classes, with `seed`. Every value is checked.
    pub fn build(
        &self,
        arch: &tinycnn::ArchLabel,
        h: usize,
        w: usize,
        classes: usize,
        seed: u64,
    ) -> Result<(Arch, TrainConfig)> {
        let mut a = Arch::from_label(arch, h, w, classes)
            .map_err(|e| Error::Usage(format!("architecture {e}")))?;
        a.kernel = self.kernel;
        a.activation = self.activation;
        if let Some(p) = &self.pool {
            a.pool = p.clone();
        }
        a.validate()?;
        let optimizer = match self.optimizer {
            OptimizerKind::Adam => {
                if self.momentum.is_some() {
                    return Err(Error::Usage(
                        "momentum applies to the sgd optimizer; Adam has its own moments".into(),
                    ));
                }
                Optimizer::adam(self.lr.unwrap_or(1e-3))
            }
            OptimizerKind::Sgd => {
                Optimizer::sgd(self.lr.unwrap_or(0.01), self.momentum.unwrap_or(0.0))
            }
        };
        let config = TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch,
            optimizer,
            init: self.init,
            scaling: self.scaling,
            seed,
            early_stop: self.early_stop,
        };
        config.validate()?;
        Ok((a, config))
    }
}

/// Where a dataset of an experiment comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum DataSource {
    /// Generated from a spec (preset or spec file, with overrides and the data condition).
    Spec {
        spec: Box<DatasetSpec>,
        name: String,
    },
    /// Read from a file or ImageFolder directory.
    File(PathBuf),
}

/// One dataset of the expanded experiment.
#[derive(Clone, Debug, PartialEq)]
pub struct DataPlan {
    /// Label used in run keys: the dataset's name plus its data condition.
    pub label: String,
    pub source: DataSource,
}

/// One run of the expanded experiment.
#[derive(Clone, Debug, PartialEq)]
pub struct RunPlan {
    /// `experiment/dataset/arch[/condition]/seedN`, unique within a store.
    pub key: String,
    /// Index into [`Plan::datasets`].
    pub dataset: usize,
    pub arch: tinycnn::ArchLabel,
    /// The swept training fields, `name=value` joined by commas (empty without sweep axes).
    pub condition: String,
    /// 1-based index among the cell's seeds.
    pub seed_index: usize,
    /// The seed derived from the experiment seed and the key.
    pub seed: u64,
    pub settings: TrainSettings,
}

/// An expanded experiment.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub name: String,
    pub seed: u64,
    pub learned: f64,
    pub datasets: Vec<DataPlan>,
    pub runs: Vec<RunPlan>,
    /// The experiment file's text, kept in the store.
    pub text: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentFile {
    name: Option<String>,
    seed: Option<u64>,
    seeds: Option<usize>,
    epochs: Option<usize>,
    learned: Option<f64>,
    #[serde(default)]
    train: toml::Table,
    #[serde(default)]
    dataset: Vec<DatasetEntry>,
    grid: Option<GridSpec>,
    #[serde(default)]
    sweep: toml::Table,
    /// Named training conditions, each a table of settings over `[train]`.
    #[serde(default)]
    condition: BTreeMap<String, toml::Table>,
    /// Read by `shapelab study`, ignored here.
    #[serde(default, rename = "study")]
    _study: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatasetEntry {
    preset: Option<String>,
    spec: Option<String>,
    file: Option<String>,
    name: Option<String>,
    train: Option<usize>,
    val: Option<usize>,
    test: Option<usize>,
    seed: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GridSpec {
    layers: Option<usize>,
    filters: Option<Vec<usize>>,
    archs: Option<Vec<String>>,
}

/// One line for a TOML error, with line and column.
fn toml_error(path: &Path, src: &str, e: &toml::de::Error) -> Error {
    let msg = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            // A byte offset from the parser: `get` never panics inside a character.
            let before = src.get(..span.start).unwrap_or(src);
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            Error::Usage(format!("{}:{line}:{col}: {msg}", path.display()))
        }
        None => Error::Usage(format!("{}: {msg}", path.display())),
    }
}

/// A value as written in keys: `0.01`, `sgd`, `0.3..0.9`.
fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) => format!("{f}"),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Table(t) => match (t.get("min"), t.get("max")) {
            (Some(a), Some(b)) => format!("{}..{}", show(a), show(b)),
            _ => t
                .iter()
                .map(|(k, v)| format!("{k}:{}", show(v)))
                .collect::<Vec<_>>()
                .join(";"),
        },
        toml::Value::Array(a) => format!("[{}]", a.iter().map(show).collect::<Vec<_>>().join(";")),
        toml::Value::Datetime(d) => d.to_string(),
    }
}

/// The cartesian product of named axes, in name order: each combination as `(name, value)`s.
fn combinations(axes: &BTreeMap<String, Vec<toml::Value>>) -> Vec<Vec<(String, toml::Value)>> {
    let mut out: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
    for (name, values) in axes {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut c = prefix.clone();
                    c.push((name.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    out
}

fn condition_label(c: &[(String, toml::Value)]) -> String {
    c.iter()
        .map(|(k, v)| format!("{k}={}", show(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The seed of a run: the first 8 bytes of SHA-256 of the experiment seed and the run key.
pub fn run_seed(experiment_seed: u64, key: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(b"shapelab run seed\n");
    h.update(experiment_seed.to_le_bytes());
    h.update(key.as_bytes());
    u64::from_le_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

/// A key made safe as a relative directory path: path segments kept, odd characters `_`.
pub fn key_to_dir(key: &str) -> PathBuf {
    key.split('/')
        .map(|seg| {
            seg.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "._-=,".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        })
        .collect()
}

fn axes_of(
    table: &toml::Table,
    path: &Path,
    what: &str,
) -> Result<BTreeMap<String, Vec<toml::Value>>> {
    let mut axes = BTreeMap::new();
    for (k, v) in table {
        if k == "data" && what == "[sweep]" {
            continue;
        }
        let values = match v {
            toml::Value::Array(a) if !a.is_empty() => a.clone(),
            toml::Value::Array(_) => {
                return Err(Error::Usage(format!(
                    "{}: {what} axis `{k}` is empty; give at least one value",
                    path.display()
                )))
            }
            _ => {
                return Err(Error::Usage(format!(
                    "{}: {what} axis `{k}` must be a list of values, e.g. {k} = [a, b]",
                    path.display()
                )))
            }
        };
        axes.insert(k.clone(), values);
    }
    Ok(axes)
}

/// Applies a data condition to a spec file.
fn apply_data_condition(
    file: &mut SpecFile,
    cond: &[(String, toml::Value)],
    path: &Path,
) -> Result<()> {
    for (k, v) in cond {
        let bad = || {
            Error::Usage(format!(
                "{}: [sweep.data] `{k}` = {} is not a valid value",
                path.display(),
                show(v)
            ))
        };
        match k.as_str() {
            "train" => {
                file.train = Some(v.as_integer().filter(|&n| n > 0).ok_or_else(bad)? as usize)
            }
            "val" => file.val = Some(v.as_integer().filter(|&n| n > 0).ok_or_else(bad)? as usize),
            "test" => {
                file.test = Some(v.as_integer().filter(|&n| n >= 0).ok_or_else(bad)? as usize)
            }
            "seed" => file.seed = Some(v.as_integer().filter(|&n| n >= 0).ok_or_else(bad)? as u64),
            "image_size" => {
                file.image_size = Some(v.as_integer().filter(|&n| n > 0).ok_or_else(bad)? as u32)
            }
            factor => {
                let dist: Dist = v.clone().try_into().map_err(|_| bad())?;
                let t = &mut file.factors;
                let slot = match factor {
                    "size" => &mut t.size,
                    "rotation" => &mut t.rotation,
                    "aspect" => &mut t.aspect,
                    "shear" => &mut t.shear,
                    "offset_x" => &mut t.offset_x,
                    "offset_y" => &mut t.offset_y,
                    "outline" => &mut t.outline,
                    "stroke" => &mut t.stroke,
                    "intensity" => &mut t.intensity,
                    "noise" => &mut t.noise,
                    other => {
                        return Err(Error::Usage(format!(
                            "{}: [sweep.data] `{other}` is not a dataset field; use train, val, test, seed, image_size or a factor ({})",
                            path.display(),
                            shapes::FACTOR_NAMES[1..].join(", ")
                        )))
                    }
                };
                *slot = Some(dist);
            }
        }
    }
    Ok(())
}

/// A usage error about the experiment file at `path`.
fn usage_in(path: &Path, m: String) -> Error {
    Error::Usage(format!("{}: {m}", path.display()))
}

/// The architecture labels of `[grid]`: an explicit `archs` list, or every combination of
/// `filters` over `layers` conv layers.
fn archs_of(grid: Option<&GridSpec>, path: &Path) -> Result<Vec<tinycnn::ArchLabel>> {
    let usage = |m: String| usage_in(path, m);
    let grid = grid.ok_or_else(|| {
        usage("no [grid]; add e.g. [grid] layers = 2, filters = [2, 4, 8]".into())
    })?;
    let archs: Vec<String> = match (&grid.archs, &grid.filters) {
        (Some(a), None) if grid.layers.is_none() => a.clone(),
        (None, Some(filters)) => {
            let layers = grid.layers.unwrap_or(2);
            if filters.is_empty() || layers == 0 || layers > tinycnn::arch::MAX_LAYERS {
                return Err(usage(format!(
                    "[grid] filters {filters:?} over {layers} layers is empty; give filters and 1 to {} layers",
                    tinycnn::arch::MAX_LAYERS
                )));
            }
            let mut out: Vec<Vec<usize>> = vec![Vec::new()];
            for _ in 0..layers {
                out = out
                    .into_iter()
                    .flat_map(|p| filters.iter().map(move |&f| [p.clone(), vec![f]].concat()))
                    .collect();
            }
            out.iter()
                .map(|a| {
                    a.iter()
                        .map(|f| f.to_string())
                        .collect::<Vec<_>>()
                        .join("-")
                })
                .collect()
        }
        _ => {
            return Err(usage(
                "[grid] takes either layers and filters, or archs".into(),
            ))
        }
    };
    if archs.is_empty() {
        return Err(usage(
            "[grid] archs is empty; list at least one, e.g. archs = [\"16-4\"]".into(),
        ));
    }
    archs
        .iter()
        .map(|a| a.parse().map_err(|e| usage(format!("[grid] {e}"))))
        .collect()
}

/// The training conditions: each named `[condition.NAME]` (or one unnamed) over `[train]`,
/// crossed with the `[sweep]` axes, as (label, settings).
fn conditions_of(
    f: &ExperimentFile,
    base_train: &toml::Table,
    train_axes: &BTreeMap<String, Vec<toml::Value>>,
    path: &Path,
) -> Result<Vec<(String, TrainSettings)>> {
    let usage = |m: String| usage_in(path, m);
    let named: Vec<(String, toml::Table)> = if f.condition.is_empty() {
        vec![(String::new(), toml::Table::new())]
    } else {
        for n in f.condition.keys() {
            if n.is_empty() || n.contains(['/', ',', '=']) {
                return Err(usage(format!(
                    "condition name {n:?} must be non-empty, without '/', ',' or '='"
                )));
            }
        }
        f.condition
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let mut conditions: Vec<(String, TrainSettings)> = Vec::new();
    for (cname, ctable) in &named {
        for c in combinations(train_axes) {
            let mut t = base_train.clone();
            for (k, v) in ctable {
                t.insert(k.clone(), v.clone());
            }
            for (k, v) in &c {
                t.insert(k.clone(), v.clone());
            }
            let label = [cname.clone(), condition_label(&c)]
                .into_iter()
                .filter(|x| !x.is_empty())
                .collect::<Vec<_>>()
                .join(",");
            let settings: TrainSettings =
                toml::Value::Table(t)
                    .try_into()
                    .map_err(|e: toml::de::Error| {
                        let what = if label.is_empty() {
                            "[train]".to_string()
                        } else {
                            format!("[train] with {label}")
                        };
                        usage(format!("{what}: {}", e.message().trim().replace('\n', " ")))
                    })?;
            conditions.push((label, settings));
        }
    }
    Ok(conditions)
}

/// A `[[dataset]]` read from a file or ImageFolder tree (relative to the experiment file).
fn file_dataset(
    d: &DatasetEntry,
    base: &Path,
    path: &Path,
    data_axes: &BTreeMap<String, Vec<toml::Value>>,
) -> Result<DataPlan> {
    let usage = |m: String| usage_in(path, m);
    let file = d.file.as_ref().expect("a file dataset");
    if !data_axes.is_empty()
        || d.train.is_some()
        || d.val.is_some()
        || d.test.is_some()
        || d.seed.is_some()
    {
        return Err(usage(format!(
            "dataset file {file} cannot take train, val, test, seed or [sweep.data]; those need a preset or spec"
        )));
    }
    let p = base.join(file);
    if !p.exists() {
        return Err(Error::Missing(format!(
            "{}: dataset file {} does not exist; check the path (relative to the experiment file)",
            path.display(),
            p.display()
        )));
    }
    let label = d.name.clone().unwrap_or_else(|| {
        Path::new(file)
            .file_stem()
            .map_or("data".into(), |s| s.to_string_lossy().into_owned())
    });
    Ok(DataPlan {
        label,
        source: DataSource::File(p),
    })
}

/// A `[[dataset]]` generated from a preset or spec file, once per `[sweep.data]` combination.
fn spec_datasets(
    d: &DatasetEntry,
    base: &Path,
    path: &Path,
    data_axes: &BTreeMap<String, Vec<toml::Value>>,
) -> Result<Vec<DataPlan>> {
    let usage = |m: String| usage_in(path, m);
    let mut datasets = Vec::new();
    let (mut spec_file, default_label) = if let Some(p) = &d.preset {
        let preset = shapes::presets::find(p).ok_or_else(|| {
            usage(format!(
                "unknown preset `{p}`; choose one of {}",
                shapes::presets::names().join(", ")
            ))
        })?;
        (preset.spec_file(), preset.name.to_string())
    } else {
        let sp = base.join(d.spec.as_ref().expect("one source"));
        let src = std::fs::read_to_string(&sp).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Missing(format!(
                "{}: dataset spec {} does not exist; check the path (relative to the experiment file)",
                path.display(),
                sp.display()
            )),
            _ => Error::io(&sp, e),
        })?;
        let sf = SpecFile::from_toml(&src).map_err(|e| usage(format!("{}: {e}", sp.display())))?;
        let label = sf.name.clone().unwrap_or_else(|| {
            sp.file_stem()
                .map_or("spec".into(), |s| s.to_string_lossy().into_owned())
        });
        (sf, label)
    };
    spec_file.override_counts(d.train, d.val, d.test);
    if d.seed.is_some() {
        spec_file.seed = d.seed;
    }
    let label = d.name.clone().unwrap_or(default_label);
    for c in combinations(data_axes) {
        let mut sf = spec_file.clone();
        apply_data_condition(&mut sf, &c, path)?;
        let spec = sf
            .resolve()
            .map_err(|e| usage(format!("dataset {label}: {e}")))?;
        let full = if c.is_empty() {
            label.clone()
        } else {
            format!("{label}[{}]", condition_label(&c))
        };
        datasets.push(DataPlan {
            label: full,
            source: DataSource::Spec {
                spec: Box::new(spec),
                name: sf.name.clone().unwrap_or_else(|| label.clone()),
            },
        });
    }
    Ok(datasets)
}

/// Every run: dataset x architecture x condition x seed, each with its key and its seed
/// derived from the experiment seed and the key.
fn runs_of(
    name: &str,
    seed: u64,
    seeds: usize,
    datasets: &[DataPlan],
    archs: &[tinycnn::ArchLabel],
    conditions: &[(String, TrainSettings)],
) -> Vec<RunPlan> {
    let mut runs = Vec::new();
    for (di, d) in datasets.iter().enumerate() {
        for arch in archs {
            for (cond, settings) in conditions {
                for s in 1..=seeds {
                    let mut key = format!("{name}/{}/{arch}", d.label);
                    if !cond.is_empty() {
                        key += &format!("/{cond}");
                    }
                    key += &format!("/seed{s}");
                    runs.push(RunPlan {
                        seed: run_seed(seed, &key),
                        key,
                        dataset: di,
                        arch: arch.clone(),
                        condition: cond.clone(),
                        seed_index: s,
                        settings: settings.clone(),
                    });
                }
            }
        }
    }
    runs
}

impl Plan {
    /// Reads and expands an experiment file; every error names the line or value.
    pub fn from_file(path: &Path) -> Result<Plan> {
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(path.to_path_buf()),
            _ => Error::io(path, e),
        })?;
        Plan::parse(&text, path)
    }

    /// Expands experiment `text` read from `path` (relative paths in it are relative to
    /// `path`'s directory).
    pub fn parse(text: &str, path: &Path) -> Result<Plan> {
        let f: ExperimentFile = toml::from_str(text).map_err(|e| toml_error(path, text, &e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let usage = |m: String| usage_in(path, m);
        let name = f
            .name
            .clone()
            .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "experiment".into());
        if name.is_empty() || name.contains('/') {
            return Err(usage(format!(
                "name {name:?} must be non-empty and contain no '/'"
            )));
        }
        let seeds = f.seeds.unwrap_or(1);
        if seeds == 0 || seeds > 100_000 {
            return Err(usage(format!(
                "seeds = {seeds}: give 1 or more seeds per cell"
            )));
        }
        let learned = f.learned.unwrap_or(0.99);
        if !(learned > 0.0 && learned <= 1.0) {
            return Err(usage(format!(
                "learned = {learned}: give a validation accuracy in (0, 1], e.g. 0.99"
            )));
        }
        if f.dataset.is_empty() {
            return Err(usage(
                "no [[dataset]]; add one, e.g. [[dataset]] preset = \"thesis-1.3\"".into(),
            ));
        }
        let archs = archs_of(f.grid.as_ref(), path)?;
        // Training settings and their sweep.
        let mut base_train = f.train.clone();
        if let Some(e) = f.epochs {
            base_train.insert("epochs".into(), toml::Value::Integer(e as i64));
        }
        let train_axes = axes_of(&f.sweep, path, "[sweep]")?;
        let data_axes = match f.sweep.get("data") {
            Some(toml::Value::Table(t)) => axes_of(t, path, "[sweep.data]")?,
            Some(_) => return Err(usage("[sweep] data must be a table: [sweep.data]".into())),
            None => BTreeMap::new(),
        };
        // Named conditions (or one unnamed), each crossed with the sweep's axes.
        let conditions = conditions_of(&f, &base_train, &train_axes, path)?;
        // Datasets and their data conditions.
        let mut datasets = Vec::new();
        for d in &f.dataset {
            let sources = [d.preset.is_some(), d.spec.is_some(), d.file.is_some()]
                .iter()
                .filter(|&&x| x)
                .count();
            if sources != 1 {
                return Err(usage(
                    "each [[dataset]] needs exactly one of preset, spec or file".into(),
                ));
            }
            if d.file.is_some() {
                datasets.push(file_dataset(d, base, path, &data_axes)?);
            } else {
                datasets.extend(spec_datasets(d, base, path, &data_axes)?);
            }
        }
        let mut labels: Vec<&str> = datasets.iter().map(|d| d.label.as_str()).collect();
        labels.sort();
        if let Some(w) = labels.windows(2).find(|w| w[0] == w[1]) {
            return Err(usage(format!(
                "two datasets are both named {}; give them distinct `name`s",
                w[0]
            )));
        }
        let seed = f.seed.unwrap_or(0);
        let runs = runs_of(&name, seed, seeds, &datasets, &archs, &conditions);
        Ok(Plan {
            name,
            seed,
            learned,
            datasets,
            runs,
            text: text.to_string(),
        })
    }

    /// The runs of shard `i` of `n` (0-based): those whose key hashes to `i` modulo `n`, so a
    /// shard keeps its runs when the experiment grows.
    pub fn shard(&self, i: usize, n: usize) -> Vec<&RunPlan> {
        self.runs
            .iter()
            .filter(|r| run_seed(0, &r.key) % n as u64 == i as u64)
            .collect()
    }
}

/// Parses `--shard i/n` (1-based `i`, as job arrays count) into a 0-based pair.
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let bad = || {
        Error::Usage(format!(
            "--shard {s}: write i/n with 1 <= i <= n, e.g. --shard 2/8"
        ))
    };
    let (a, b) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i == 0 || i > n {
        return Err(bad());
    }
    Ok((i - 1, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_described_in_words() {
        let adam: TrainSettings = toml::from_str("early_stop = true\nepochs = 15").unwrap();
        assert_eq!(
            adam.describe(),
            "Adam at learning rate 0.001 on pixels scaled to [0, 1], batches of 32, Glorot-uniform initialisation, up to 15 epochs, stopping at the first epoch that learns"
        );
        let sgd: TrainSettings = toml::from_str("optimizer = \"sgd\"\nscaling = \"raw\"").unwrap();
        assert!(sgd
            .describe()
            .starts_with("plain SGD at learning rate 0.01 on raw pixels (0 to 255)"));
    }

    fn plan(src: &str) -> Result<Plan> {
        Plan::parse(src, Path::new("exp.toml"))
    }

    const GRID: &str = "seeds = 2\nepochs = 3\n[[dataset]]\npreset = \"size\"\ntrain = 60\n[grid]\nlayers = 2\nfilters = [2, 4]\n";

    #[test]
    fn expands_grid_conditions_and_seeds() {
        let p = plan(&format!(
            "{GRID}[sweep]\noptimizer = [\"adam\", \"sgd\"]\nlr = [0.01]\n"
        ))
        .unwrap();
        assert_eq!(p.name, "exp");
        assert_eq!(p.runs.len(), 4 * 2 * 2);
        assert_eq!(
            p.runs[0].key,
            "exp/thesis-1.3/2-2/lr=0.01,optimizer=adam/seed1"
        );
        assert_eq!(p.runs[0].settings.epochs, 3);
        assert_eq!(p.runs.last().unwrap().arch, "4-4".parse().unwrap());
        let keys: std::collections::BTreeSet<&str> =
            p.runs.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys.len(), p.runs.len(), "keys are unique");
        assert_ne!(p.runs[0].seed, p.runs[1].seed);
        assert_eq!(
            p.runs[0].seed,
            plan(GRID).map(|_| run_seed(0, &p.runs[0].key)).unwrap()
        );
        let sgd = p.runs.iter().find(|r| r.condition.contains("sgd")).unwrap();
        assert_eq!(sgd.settings.optimizer, OptimizerKind::Sgd);
    }

    #[test]
    fn named_conditions() {
        let p = plan(&format!("{GRID}[condition.modern]\noptimizer = \"adam\"\n[condition.stuck]\noptimizer = \"sgd\"\nscaling = \"raw\"\n[sweep]\nbatch = [16, 32]\n")).unwrap();
        assert_eq!(p.runs.len(), 4 * 2 * 2 * 2);
        let conds: std::collections::BTreeSet<&str> =
            p.runs.iter().map(|r| r.condition.as_str()).collect();
        assert_eq!(
            conds.into_iter().collect::<Vec<_>>(),
            vec![
                "modern,batch=16",
                "modern,batch=32",
                "stuck,batch=16",
                "stuck,batch=32"
            ]
        );
        let stuck = p
            .runs
            .iter()
            .find(|r| r.condition.starts_with("stuck"))
            .unwrap();
        assert_eq!(
            (stuck.settings.optimizer, stuck.settings.scaling),
            (OptimizerKind::Sgd, Scaling::Raw)
        );
        assert!(plan(&format!("{GRID}[condition.\"a/b\"]\noptimizer = \"sgd\"\n")).is_err());
    }

    #[test]
    fn data_axes_make_datasets() {
        let p = plan(&format!(
            "{GRID}[sweep.data]\nsize = [{{ min = 0.1, max = 0.9 }}, {{ min = 0.3, max = 0.9 }}]\n"
        ))
        .unwrap();
        assert_eq!(p.datasets.len(), 2);
        assert_eq!(p.datasets[0].label, "thesis-1.3[size=0.1..0.9]");
        match &p.datasets[0].source {
            DataSource::Spec { spec, .. } => {
                assert_eq!(spec.classes[0].size, Dist::Uniform { min: 0.1, max: 0.9 })
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn shards_partition_the_runs() {
        let p = plan(GRID).unwrap();
        let mut all: Vec<&str> = (0..3)
            .flat_map(|i| p.shard(i, 3))
            .map(|r| r.key.as_str())
            .collect();
        all.sort();
        let mut keys: Vec<&str> = p.runs.iter().map(|r| r.key.as_str()).collect();
        keys.sort();
        assert_eq!(all, keys);
        assert_eq!(parse_shard("2/8").unwrap(), (1, 8));
        for bad in ["0/8", "9/8", "a/b", "3"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_line_or_value() {
        let cases = [
            ("seeds = 2\n[grid]\nfilterz = [2]\n", "exp.toml:3:1"),
            (&format!("{GRID}[sweep]\nlrr = [0.1]\n"), "lrr"),
            (&format!("{GRID}[sweep]\nlr = []\n"), "empty"),
            (&format!("{GRID}[sweep]\nlr = 0.1\n"), "must be a list"),
            (
                "seeds = 0\n[[dataset]]\npreset = \"size\"\n[grid]\narchs = [\"2\"]\n",
                "seeds = 0",
            ),
            (
                "[[dataset]]\npreset = \"sizes\"\n[grid]\narchs = [\"2\"]\n",
                "unknown preset `sizes`",
            ),
            (
                "[[dataset]]\npreset = \"size\"\n[grid]\narchs = []\n",
                "archs is empty",
            ),
            (
                "[[dataset]]\npreset = \"size\"\n[grid]\narchs = [\"2-x\"]\n",
                "`2-x`",
            ),
            ("[grid]\narchs = [\"2\"]\n", "no [[dataset]]"),
            (
                "[[dataset]]\nfile = \"nope.npz\"\n[grid]\narchs = [\"2\"]\n",
                "nope.npz does not exist",
            ),
            (
                &format!("{GRID}[sweep.data]\nsizes = [0.5]\n"),
                "`sizes` is not a dataset field",
            ),
            (
                &format!("{GRID}[train]\nmomentum = 0.9\n[sweep]\noptimizer = [\"adam\"]\n"),
                "momentum",
            ),
        ];
        for (src, want) in cases {
            let e = match plan(src) {
                Ok(p) => p
                    .runs
                    .first()
                    .map(|r| {
                        r.settings
                            .build(&r.arch, 28, 28, 3, 0)
                            .err()
                            .map(|e| e.to_string())
                            .unwrap_or_default()
                    })
                    .unwrap_or_default(),
                Err(e) => e.to_string(),
            };
            assert!(e.contains(want), "{src:?}: {e:?} should mention {want:?}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn keys_become_safe_directories() {
        assert_eq!(
            key_to_dir("q/size[size=0.1..0.9]/2-4/lr=0.01/seed1"),
            PathBuf::from("q/size_size=0.1..0.9_/2-4/lr=0.01/seed1")
        );
    }
}
