//! Trained models on disk: the directory `shapelab train` writes (README, Training tiny CNNs).
//!
//! ```text
//! DIR/model.safetensors   the weights, PyTorch names and layouts (conv1.weight [F1,1,k,k], ...)
//! DIR/model.json          architecture, data, full training config, seed, outcome, metrics
//! DIR/history.csv         one row per epoch: losses, accuracies, dead filters per layer,
//!                          weight-gradient norms per layer (absent in older histories)
//! ```
//!
//! The directory is written under a temporary name and renamed into place, so an interrupted
//! run leaves nothing half-written. Reading checks the format tag, the tensor names, shapes and
//! dtypes against the recorded architecture, and that every weight is finite.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use tinycnn::{Arch, Ending, EpochStats, Model, TrainConfig};

use crate::error::{Error, Result};
use crate::files::fsio::write_dir_atomic;

pub const MODEL_FORMAT: &str = "shapelab-model";

/// Where a model's training data came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataRef {
    /// The `--data` argument: a path or a preset name.
    pub source: String,
    /// The dataset's name (preset or spec name), if it has one.
    pub name: Option<String>,
    /// The dataset's content hash, for shapelab datasets.
    pub hash: Option<String>,
    /// The canonical spec, for shapelab datasets: enough to regenerate the data exactly.
    pub spec: Option<serde_json::Value>,
    pub train: usize,
    pub val: usize,
    /// Held-out test images; absent when the data had none (and in models written before the
    /// test split existed, whose data had none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<usize>,
}

impl DataRef {
    /// The reference to dataset `d` given as `source`, with `hash` (a shapelab dataset's own
    /// when `None`).
    pub fn of(d: &crate::data::dataset::Dataset, source: String, hash: Option<String>) -> DataRef {
        DataRef {
            source,
            name: d.meta.as_ref().and_then(|m| m.name.clone()),
            hash: hash.or_else(|| d.meta.as_ref().map(|m| m.hash.clone())),
            spec: d.meta.as_ref().map(|m| m.spec.clone()),
            train: d.train.len(),
            val: d.val.len(),
            test: d.test.as_ref().map(|t| t.len()),
        }
    }
}

/// Final metrics of a run (the last epoch's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub epochs_run: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
}

/// `model.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Version of this document's format ([`Schema`](crate::files::schema::Schema)).
    #[serde(default)]
    pub schema: crate::files::schema::Schema<1>,
    pub format: String,
    pub shapelab_version: String,
    pub engine: String,
    pub arch: Arch,
    pub param_count: usize,
    pub class_names: Vec<String>,
    pub data: DataRef,
    pub train: TrainConfig,
    pub ending: Ending,
    pub metrics: Option<Metrics>,
    /// Wall time of the training and its speed (not part of the reproducible result).
    pub seconds: f64,
    pub images_per_s: f64,
    pub threads: usize,
}

impl ModelMeta {
    /// Final metrics from a history.
    pub fn metrics_of(history: &[EpochStats]) -> Option<Metrics> {
        history.last().map(|e| Metrics {
            epochs_run: history.len(),
            train_loss: e.train_loss,
            train_acc: e.train_acc,
            val_loss: e.val_loss,
            val_acc: e.val_acc,
        })
    }
}

/// A model directory in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub model: Model,
    pub meta: ModelMeta,
    pub history: Vec<EpochStats>,
}

/// The weights as safetensors bytes (little-endian f32, PyTorch names).
pub fn safetensors_bytes(model: &Model, arch_label: &str) -> Vec<u8> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = model
        .tensors()
        .into_iter()
        .map(|(name, shape, range)| {
            (
                name,
                shape,
                model.params[range]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            )
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).expect("shape matches data"),
            )
        })
        .collect();
    // One metadata entry only: safetensors writes a HashMap in its (random) iteration
    // order, and the file must be the same bytes for the same weights.
    let _ = arch_label;
    let info = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(info)).expect("in-memory serialisation")
}

/// The history as CSV: `epoch,train_loss,train_acc,val_loss,val_acc,dead_l1,dead_l2,...`,
/// then `grad_l1,...,grad_dense` when every epoch recorded its weight-gradient norms.
pub fn history_csv(history: &[EpochStats], layers: usize) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    header.extend((1..=layers).map(|l| format!("dead_l{l}")));
    let grads = !history.is_empty() && history.iter().all(|e| e.grad_norms.is_some());
    if grads {
        header.extend(grad_columns(layers));
    }
    w.write_record(&header).expect("in-memory csv");
    for e in history {
        let mut row = vec![
            e.epoch.to_string(),
            e.train_loss.to_string(),
            e.train_acc.to_string(),
            e.val_loss.to_string(),
            e.val_acc.to_string(),
        ];
        row.extend(e.dead.iter().map(|d| d.to_string()));
        if grads {
            row.extend(e.grad_norms.iter().flatten().map(|g| g.to_string()));
        }
        w.write_record(&row).expect("in-memory csv");
    }
    w.into_inner().expect("in-memory csv")
}

/// The gradient-norm columns of a history with `layers` conv layers.
fn grad_columns(layers: usize) -> impl Iterator<Item = String> {
    (1..=layers)
        .map(|l| format!("grad_l{l}"))
        .chain(std::iter::once("grad_dense".to_string()))
}

impl Run {
    /// Writes the model directory atomically.
    pub fn save(&self, dir: &Path, force: bool) -> Result<()> {
        write_dir_atomic(dir, force, |d| self.fill(d))
    }

    /// Saves into a directory named by the weights' hash, unless one is there already (the
    /// same weights, saved by another worker): never replaced. Returns whether it wrote.
    pub fn save_once(&self, dir: &Path) -> Result<bool> {
        crate::files::fsio::write_dir_once(dir, |d| self.fill(d))
    }

    /// Writes the model directory's files into `d`.
    fn fill(&self, d: &Path) -> Result<()> {
        let weights = safetensors_bytes(&self.model, &self.model.arch.label());
        let json = serde_json::to_string_pretty(&self.meta).expect("meta serialises") + "\n";
        let csv = history_csv(&self.history, self.model.arch.filters.len());
        for (name, bytes) in [
            ("model.safetensors", &weights[..]),
            ("model.json", json.as_bytes()),
            ("history.csv", &csv[..]),
        ] {
            let p = d.join(name);
            std::fs::write(&p, bytes).map_err(|e| Error::io(&p, e))?;
        }
        Ok(())
    }

    /// Reads a model directory written by [`Run::save`].
    pub fn load(dir: &Path) -> Result<Run> {
        if !dir.exists() {
            return Err(Error::NotFound(dir.to_path_buf()));
        }
        if !dir.is_dir() {
            return Err(Error::bad(
                dir,
                "is not a model directory; pass the --out directory of `shapelab train`",
            ));
        }
        let json_path = dir.join("model.json");
        let json = std::fs::read_to_string(&json_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::bad(
                dir,
                "has no model.json; pass the --out directory of `shapelab train`",
            ),
            _ => Error::io(&json_path, e),
        })?;
        let meta: ModelMeta = serde_json::from_str(&json)
            .map_err(|e| Error::bad(&json_path, format!("is not shapelab model metadata: {e}")))?;
        if meta.format != MODEL_FORMAT {
            return Err(Error::bad(
                &json_path,
                format!("says format {:?}, expected {MODEL_FORMAT:?}", meta.format),
            ));
        }
        if meta.class_names.len() != meta.arch.classes {
            return Err(Error::bad(
                &json_path,
                format!(
                    "lists {} class_names but the architecture has {} classes; the file is damaged (retrain, or restore class_names)",
                    meta.class_names.len(),
                    meta.arch.classes
                ),
            ));
        }
        crate::data::dataset::check_side(&json_path, meta.arch.width, meta.arch.height)?;
        let st_path = dir.join("model.safetensors");
        let bytes = std::fs::read(&st_path).map_err(|e| Error::io(&st_path, e))?;
        let model =
            weights_from(&bytes, &meta.arch).map_err(|reason| Error::bad(&st_path, reason))?;
        let history = read_history(&dir.join("history.csv"), meta.arch.filters.len())?;
        Ok(Run {
            model,
            meta,
            history,
        })
    }
}

/// Reads safetensors weights for `arch`, checking names, dtypes and shapes.
pub fn weights_from(bytes: &[u8], arch: &Arch) -> std::result::Result<Model, String> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| format!("is not a readable safetensors file ({e}); is it truncated?"))?;
    let probe = Model::init(arch, tinycnn::Init::Glorot, 0).map_err(|e| e.to_string())?;
    let mut params = vec![0.0f32; probe.params.len()];
    for (name, shape, range) in probe.tensors() {
        let t = st.tensor(&name).map_err(|_| {
            format!(
                "has no tensor {name}, which architecture {} needs",
                arch.label()
            )
        })?;
        if t.dtype() != Dtype::F32 || t.shape() != shape.as_slice() {
            return Err(format!(
                "tensor {name} is {:?} {:?}; architecture {} needs F32 {shape:?}",
                t.dtype(),
                t.shape(),
                arch.label()
            ));
        }
        for (p, b) in params[range].iter_mut().zip(t.data().chunks_exact(4)) {
            *p = f32::from_le_bytes(b.try_into().expect("4 bytes"));
        }
    }
    Model::from_params(arch, params).map_err(|e| e.to_string())
}

fn read_history(path: &Path, layers: usize) -> Result<Vec<EpochStats>> {
    let bad = |r: String| Error::bad(path, r);
    let mut rdr = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
    let header = rdr.headers().map_err(|e| bad(e.to_string()))?.clone();
    let grads = header.len() == 5 + layers + layers + 1
        && header.iter().skip(5 + layers).eq(grad_columns(layers));
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let num = |j: usize| -> Result<f64> {
            rec.get(j)
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| bad(format!("row {} column {} is not a number", i + 2, j + 1)))
        };
        out.push(EpochStats {
            epoch: num(0)? as usize,
            train_loss: num(1)?,
            train_acc: num(2)?,
            val_loss: num(3)?,
            val_acc: num(4)?,
            dead: (0..layers)
                .map(|l| num(5 + l).map(|v| v as usize))
                .collect::<Result<_>>()?,
            grad_norms: if grads {
                Some(
                    (0..=layers)
                        .map(|l| num(5 + layers + l))
                        .collect::<Result<_>>()?,
                )
            } else {
                None
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Run {
        let arch = Arch::parse("3-2", 12, 12, 3).unwrap();
        let model = Model::init(&arch, tinycnn::Init::Glorot, 4).unwrap();
        let history = vec![EpochStats {
            epoch: 1,
            train_loss: 1.0986,
            train_acc: 0.3333333333333333,
            val_loss: 1.05,
            val_acc: 0.5,
            dead: vec![0, 1],
            grad_norms: Some(vec![0.25, 0.0, 1.5]),
        }];
        Run {
            meta: ModelMeta {
                schema: crate::files::schema::Schema::CURRENT,
                format: MODEL_FORMAT.into(),
                shapelab_version: crate::VERSION.into(),
                engine: tinycnn::ENGINE_VERSION.into(),
                param_count: arch.param_count(),
                arch,
                class_names: vec!["ellipse".into(), "rectangle".into(), "triangle".into()],
                data: DataRef {
                    source: "size".into(),
                    name: Some("thesis-1.3".into()),
                    hash: None,
                    spec: None,
                    train: 10,
                    val: 5,
                    test: Some(5),
                },
                train: TrainConfig::default(),
                ending: Ending::Completed,
                metrics: ModelMeta::metrics_of(&history),
                seconds: 0.5,
                images_per_s: 20.0,
                threads: 1,
            },
            model,
            history,
        }
    }

    #[test]
    fn run_round_trip() {
        let r = sample();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run");
        r.save(&p, false).unwrap();
        assert_eq!(Run::load(&p).unwrap(), r);
        assert!(r.save(&p, false).is_err(), "refuses to overwrite");
    }

    #[test]
    fn model_json_without_a_schema_is_version_1_and_a_newer_one_is_refused() {
        let r = sample();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run");
        r.save(&p, false).unwrap();
        let path = p.join("model.json");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"schema\": 1"), "{text}");
        // As shapelab wrote it before versioning.
        std::fs::write(&path, text.replace("\"schema\": 1,", "")).unwrap();
        assert_eq!(Run::load(&p).unwrap().meta.schema.version(), 1);
        std::fs::write(&path, text.replace("\"schema\": 1,", "\"schema\": 7,")).unwrap();
        let e = Run::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("model.json") && e.contains("newer shapelab"),
            "{e}"
        );
    }

    #[test]
    fn damaged_weights_are_reported() {
        let r = sample();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run");
        r.save(&p, false).unwrap();
        let st = p.join("model.safetensors");
        let bytes = std::fs::read(&st).unwrap();
        std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
        let e = Run::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("model.safetensors") && e.contains("truncated"),
            "{e}"
        );
        // Weights of another architecture.
        let other = Model::init(
            &Arch::parse("4-2", 12, 12, 3).unwrap(),
            tinycnn::Init::Glorot,
            0,
        )
        .unwrap();
        std::fs::write(&st, safetensors_bytes(&other, "4-2")).unwrap();
        let e = Run::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("conv1.weight") && e.contains("[3, 1, 3, 3]"),
            "{e}"
        );
    }
}
