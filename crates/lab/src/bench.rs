//! Measurements behind `shapelab bench`: speed is measured here, never asserted in tests.
//!
//! Each measurement runs the real code path in a rayon pool of a given size and reports the
//! best of several repetitions (the least disturbed by the rest of the machine).

use std::time::Instant;

use serde::Serialize;
use shapes::{DatasetSpec, Split};

use crate::dataset::Dataset;
use crate::error::Result;

/// Generation throughput at one thread count.
#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    pub threads: usize,
    pub images: usize,
    /// Best wall time over the repetitions, seconds.
    pub seconds: f64,
    pub images_per_second: f64,
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool")
}

/// Times drawing `spec.train` images (the train split only) at `threads` threads.
pub fn generation(spec: &DatasetSpec, threads: usize, repeats: usize) -> Throughput {
    let pool = pool(threads);
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        let d = pool.install(|| shapes::generate_split(spec, Split::Train, &|_| {}));
        best = best.min(t.elapsed().as_secs_f64());
        assert_eq!(d.labels.len(), spec.train);
    }
    Throughput {
        threads,
        images: spec.train,
        seconds: best,
        images_per_second: spec.train as f64 / best,
    }
}

/// Generating a whole dataset and writing its `.npz`, timed separately.
#[derive(Clone, Debug, Serialize)]
pub struct EndToEnd {
    pub threads: usize,
    pub images: usize,
    pub generate_seconds: f64,
    pub write_seconds: f64,
    pub file_bytes: u64,
}

/// Times generating both splits of `spec` and writing them to a temporary `.npz`.
pub fn generate_and_write(spec: &DatasetSpec, threads: usize) -> Result<EndToEnd> {
    let pool = pool(threads);
    let t = Instant::now();
    let d = pool.install(|| Dataset::generate(spec, None, &|_| {}));
    let generate_seconds = t.elapsed().as_secs_f64();
    let dir = tempfile::tempdir().map_err(|e| crate::Error::io(&std::env::temp_dir(), e))?;
    let path = dir.path().join("bench.npz");
    let t = Instant::now();
    d.write_npz(&path, false)?;
    let write_seconds = t.elapsed().as_secs_f64();
    let file_bytes = std::fs::metadata(&path)
        .map_err(|e| crate::Error::io(&path, e))?
        .len();
    Ok(EndToEnd {
        threads,
        images: spec.train + spec.val,
        generate_seconds,
        write_seconds,
        file_bytes,
    })
}

/// Training and inference speed of one architecture at one thread count.
#[derive(Clone, Debug, Serialize)]
pub struct TrainSpeed {
    pub arch: String,
    pub threads: usize,
    /// Training images per second (Adam, batch 32), best epoch.
    pub train_images_per_s: f64,
    /// Inference images per second at batch `infer_batch`, best repetition.
    pub infer_images_per_s: f64,
    pub infer_batch: usize,
}

/// The dataset the training benchmark uses: thesis-1.3 images, `n` training and 1,000
/// inference images.
pub fn bench_data(n: usize) -> Result<Dataset> {
    let mut f = shapes::presets::find("thesis-1.3")
        .expect("preset exists")
        .spec_file();
    (f.train, f.val) = (Some(n), Some(1000));
    let spec = f.resolve()?;
    Ok(Dataset::generate(&spec, None, &|_| {}))
}

fn train_data(d: &Dataset) -> tinycnn::Data<'_> {
    tinycnn::Data {
        images: &d.train.images,
        labels: &d.train.labels,
        height: d.height,
        width: d.width,
    }
}

/// Seconds per epoch (best of `epochs`) training `arch` on `d`'s training split.
fn epoch_seconds(arch: &tinycnn::Arch, d: &Dataset, epochs: usize) -> f64 {
    let cfg = tinycnn::TrainConfig::default();
    let mut t = tinycnn::train::Trainer::new(arch, cfg).expect("valid config");
    let empty = tinycnn::Data {
        images: &[],
        labels: &[],
        height: d.height,
        width: d.width,
    };
    let mut best = f64::INFINITY;
    for _ in 0..epochs {
        let start = Instant::now();
        t.epoch(&train_data(d), &empty, &mut tinycnn::train::Silent)
            .expect("bench data fits");
        best = best.min(start.elapsed().as_secs_f64());
    }
    best
}

/// Measures training and inference speed of `arch` (e.g. `16-16`) at `threads` threads.
pub fn train_speed(
    label: &str,
    d: &Dataset,
    threads: usize,
    epochs: usize,
    infer_batch: usize,
) -> Result<TrainSpeed> {
    let arch = tinycnn::Arch::parse(label, d.height, d.width, d.class_names.len())
        .map_err(|e| crate::Error::Usage(e.to_string()))?;
    let pool = pool(threads);
    let secs = pool.install(|| epoch_seconds(&arch, d, epochs));
    let model = tinycnn::Model::init(&arch, tinycnn::Init::Glorot, 0).expect("valid arch");
    let n = infer_batch.min(d.val.len());
    let batch = tinycnn::Data {
        images: &d.val.images[..n * d.pixels()],
        labels: &d.val.labels[..n],
        height: d.height,
        width: d.width,
    };
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        let out = pool.install(|| tinycnn::train::logits(&model, &batch, tinycnn::Scaling::Unit));
        best = best.min(start.elapsed().as_secs_f64());
        assert_eq!(out.len(), n * arch.classes);
    }
    Ok(TrainSpeed {
        arch: label.to_string(),
        threads,
        train_images_per_s: d.train.len() as f64 / secs,
        infer_images_per_s: n as f64 / best,
        infer_batch: n,
    })
}

/// Total training images per second of `runs` independent trainings at one thread each,
/// run at the same time (how a sweep uses the cores).
pub fn parallel_runs(label: &str, d: &Dataset, runs: usize, epochs: usize) -> Result<f64> {
    let arch = tinycnn::Arch::parse(label, d.height, d.width, d.class_names.len())
        .map_err(|e| crate::Error::Usage(e.to_string()))?;
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..runs {
            let arch = &arch;
            s.spawn(move || {
                pool(1).install(|| {
                    let cfg = tinycnn::TrainConfig::default();
                    let mut t = tinycnn::train::Trainer::new(arch, cfg).expect("valid config");
                    let empty = tinycnn::Data {
                        images: &[],
                        labels: &[],
                        height: d.height,
                        width: d.width,
                    };
                    for _ in 0..epochs {
                        t.epoch(&train_data(d), &empty, &mut tinycnn::train::Silent)
                            .expect("bench data fits");
                    }
                })
            });
        }
    });
    Ok((runs * epochs * d.train.len()) as f64 / start.elapsed().as_secs_f64())
}

/// Peak resident memory of this process so far, in MB (Linux; `None` elsewhere).
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
