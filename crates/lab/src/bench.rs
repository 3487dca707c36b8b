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
