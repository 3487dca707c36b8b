//! Training and evaluating on shapelab datasets: the glue between `lab`'s datasets and
//! `tinycnn`'s engine, and where `--data` arguments are resolved.

use std::path::Path;
use std::time::Instant;

use shapes::{DatasetSpec, Split as Part};
use tinycnn::train::Observer;
use tinycnn::{Arch, Data, TrainConfig};

use crate::data::dataset::Dataset;
use crate::error::{Error, Result};
use crate::models::run::{DataRef, ModelMeta, Run, MODEL_FORMAT};

/// A split of a dataset as the engine sees it.
pub fn engine_data(d: &Dataset, part: Part) -> Data<'_> {
    let s = d.split(part);
    Data {
        images: &s.images,
        labels: &s.labels,
        height: d.height,
        width: d.width,
    }
}

/// Resolves a `--data` argument: an existing `.npz` file or ImageFolder directory, or else a
/// preset name, generated on the fly.
pub fn resolve_data(arg: &str, progress: &(dyn Fn(usize) + Sync)) -> Result<(Dataset, DataRef)> {
    let path = Path::new(arg);
    let dataset = if path.exists() {
        match crate::load(path)? {
            crate::Loaded::Dataset(d) => d,
            crate::Loaded::Panel(_) => {
                return Err(Error::Usage(format!(
                    "{arg} is an image panel, not a dataset; train on a dataset or a preset"
                )))
            }
        }
    } else if let Some(p) = shapes::presets::find(arg) {
        let spec = p.spec()?;
        Dataset::generate(&spec, Some(p.name.to_string()), progress)
    } else if looks_like_path(arg) {
        return Err(Error::Missing(format!(
            "--data {arg}: no such file or directory; check the path, or give a preset ({})",
            shapes::presets::names().join(", ")
        )));
    } else {
        return Err(Error::Usage(format!(
            "--data {arg}: no such file, and not a preset ({}); give a dataset .npz, an ImageFolder directory or a preset name",
            shapes::presets::names().join(", ")
        )));
    };
    let data_ref = DataRef::of(&dataset, arg.to_string(), None);
    Ok((dataset, data_ref))
}

/// True when a `--data` argument names a path rather than a preset: a missing path is a
/// failure (exit 1), an unknown preset a usage error (exit 2).
pub fn looks_like_path(arg: &str) -> bool {
    let ext = Path::new(arg).extension().and_then(|e| e.to_str());
    arg.contains(['/', '\\']) || ext.is_some_and(|e| e.chars().all(|c| c.is_ascii_alphabetic()))
}

/// The data a model was trained on: regenerated from its recorded spec (shapelab datasets),
/// or read again from its recorded path.
pub fn training_data(meta: &ModelMeta, progress: &(dyn Fn(usize) + Sync)) -> Result<Dataset> {
    if let Some(spec) = &meta.data.spec {
        let spec = DatasetSpec::from_canonical_json(&spec.to_string())?;
        return Ok(Dataset::generate(&spec, meta.data.name.clone(), progress));
    }
    let path = Path::new(&meta.data.source);
    if path.exists() {
        return resolve_data(&meta.data.source, progress).map(|(d, _)| d);
    }
    Err(Error::Missing(format!(
        "the model was trained on {}, which is gone; pass --data FILE",
        meta.data.source
    )))
}

/// Trains `arch` on `dataset` with `config` and packages the result with its metadata.
pub fn train(
    dataset: &Dataset,
    data_ref: DataRef,
    arch: &Arch,
    config: &TrainConfig,
    obs: &mut dyn Observer,
) -> Result<Run> {
    Ok(train_evaluated(dataset, data_ref, arch, config, obs)?.0)
}

/// [`train`], and the trained model's evaluation on the validation split when its last
/// epoch made it ([`tinycnn::train::Trained::val`]: `evaluate` of the same weights on the
/// same images, so the same bits).
pub fn train_evaluated(
    dataset: &Dataset,
    data_ref: DataRef,
    arch: &Arch,
    config: &TrainConfig,
    obs: &mut dyn Observer,
) -> Result<(Run, Option<tinycnn::train::Evaluation>)> {
    let (train, val) = (
        engine_data(dataset, Part::Train),
        engine_data(dataset, Part::Val),
    );
    let start = Instant::now();
    let trained = tinycnn::train::train(arch, config, &train, &val, obs)?;
    let seconds = start.elapsed().as_secs_f64();
    let images = trained.history.len() * dataset.train.len();
    let run = Run {
        meta: ModelMeta {
            schema: crate::files::schema::Schema::CURRENT,
            format: MODEL_FORMAT.into(),
            shapelab_version: crate::VERSION.into(),
            engine: tinycnn::ENGINE_VERSION.into(),
            arch: arch.clone(),
            param_count: arch.param_count(),
            class_names: dataset.class_names.clone(),
            data: data_ref,
            train: config.clone(),
            ending: trained.ending,
            metrics: ModelMeta::metrics_of(&trained.history),
            seconds,
            images_per_s: if seconds > 0.0 {
                images as f64 / seconds
            } else {
                0.0
            },
            threads: rayon::current_num_threads(),
        },
        model: trained.model,
        history: trained.history,
    };
    Ok((run, trained.val))
}

/// Checks that a dataset can be fed to a model: image size and class count.
pub fn check_compatible(run: &Run, d: &Dataset) -> Result<()> {
    let a = &run.model.arch;
    if (d.height, d.width) != (a.height, a.width) {
        return Err(Error::Usage(format!(
            "the dataset's images are {}x{} but the model takes {}x{}",
            d.width, d.height, a.width, a.height
        )));
    }
    if d.class_names.len() != a.classes {
        return Err(Error::Usage(format!(
            "the dataset has {} classes ({}) but the model has {}",
            d.class_names.len(),
            d.class_names.join(", "),
            a.classes
        )));
    }
    Ok(())
}
