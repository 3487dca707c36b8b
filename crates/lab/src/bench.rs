//! Measurements behind `shapelab bench`: speed is measured here, never asserted in tests.
//!
//! Each measurement runs the real code path in a rayon pool of a given size and reports the
//! best of several repetitions (the least disturbed by the rest of the machine).

use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use shapes::{DatasetSpec, Split};

use crate::data::dataset::Dataset;
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
    /// The products' floating-point operations per second while training
    /// ([`tinycnn::Arch::train_flops_per_image`] times the images per second), in GFLOP/s:
    /// the dense products' count, so an effective rate where the engine skips zeros.
    pub train_gflops: f64,
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
    let arch = tinycnn::Arch::parse(label, d.height, d.width, d.class_names.len())?;
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
        train_gflops: d.train.len() as f64 / secs * arch.train_flops_per_image() / 1e9,
        infer_images_per_s: n as f64 / best,
        infer_batch: n,
    })
}

/// The machine's fp32 fused multiply-add peak at `threads` threads, in GFLOP/s: each thread
/// runs twelve independent multiply-add chains as wide as its widest vectors (enough to hide
/// the instruction's latency on current x86 and Arm cores) for a fixed number of rounds; the
/// best of three. What training's GFLOP/s is a fraction of.
pub fn fma_peak_gflops(threads: usize) -> f64 {
    use rayon::prelude::*;
    const ROUNDS: usize = 4_000_000;
    let pool = pool(threads);
    let mut best = 0.0f64;
    for _ in 0..3 {
        let start = Instant::now();
        let flops: usize = pool.install(|| {
            (0..threads)
                .into_par_iter()
                .map(|t| {
                    let (sum, lanes) = fma_chains(ROUNDS, t as f32);
                    std::hint::black_box(sum);
                    2 * ROUNDS * lanes
                })
                .sum()
        });
        best = best.max(flops as f64 / start.elapsed().as_secs_f64() / 1e9);
    }
    best
}

/// `rounds` rounds of 12 multiply-add chains of the widest vectors the CPU has; returns a sum
/// of the results (so nothing is optimised away) and the lanes updated per round.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn fma_chains(rounds: usize, seed: f32) -> (f32, usize) {
    use multiversion::target::selected_target;
    // A macro rather than a generic function: its loop must be compiled inside each target's
    // clone to use that target's multiply-add instruction.
    macro_rules! chains {
        ($lanes:literal) => {{
            let (x, y) = (
                std::hint::black_box(0.999_f32),
                std::hint::black_box(1e-3_f32),
            );
            // Twelve separate arrays, each one vector wide, updated lane by lane: the shape
            // the compiler turns into one vector multiply-add per chain and round.
            let mut acc = [[seed; $lanes]; 12];
            let [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11] = &mut acc;
            for _ in 0..rounds {
                for a in [&mut *a0, &mut *a1, &mut *a2, &mut *a3, &mut *a4, &mut *a5] {
                    for i in 0..$lanes {
                        a[i] = a[i].mul_add(x, y);
                    }
                }
                for a in [&mut *a6, &mut *a7, &mut *a8, &mut *a9, &mut *a10, &mut *a11] {
                    for i in 0..$lanes {
                        a[i] = a[i].mul_add(x, y);
                    }
                }
            }
            (acc.iter().flatten().sum::<f32>(), 12 * $lanes)
        }};
    }
    if selected_target!().supports_feature_str("avx512f") {
        chains!(16)
    } else if selected_target!().supports_feature_str("avx2") {
        chains!(8)
    } else {
        chains!(4)
    }
}

/// Total training images per second of `runs` independent trainings at one thread each,
/// run at the same time (how a sweep uses the cores).
pub fn parallel_runs(label: &str, d: &Dataset, runs: usize, epochs: usize) -> Result<f64> {
    let arch = tinycnn::Arch::parse(label, d.height, d.width, d.class_names.len())?;
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

/// Sweep throughput against the engine alone.
#[derive(Clone, Debug, Serialize)]
pub struct SweepSpeed {
    /// The store swept into: a temporary SQLite file, or the store given (redacted).
    pub store: String,
    /// Whether the sweeps ran as `--worker`s claiming runs (with a store given).
    pub worker: bool,
    pub arch: String,
    pub runs: usize,
    pub epochs: usize,
    pub train_images: usize,
    /// Rounds, each timing the engine, the sweep with one job and with `jobs` jobs, in turn,
    /// so that a noisy host slows both sides of a ratio alike.
    pub rounds: usize,
    /// Image-epochs per second training the same runs one after another in-process, no store
    /// (median over rounds).
    pub engine_image_epochs_per_s: f64,
    /// The sweep with one job, and with `jobs` jobs (medians).
    pub sweep_1_job_image_epochs_per_s: f64,
    pub jobs: usize,
    pub sweep_image_epochs_per_s: f64,
    /// `1 - sweep(1 job) / engine` of each round: what the store, files and scheduling cost.
    pub overheads: Vec<f64>,
    /// Their median.
    pub overhead: f64,
    /// `sweep(jobs) / sweep(1 job)`, median over rounds.
    pub scaling: f64,
    /// Of each round's one-job sweep, the share of its time spent waiting on the store's
    /// statements (claims, commits, set-up queries): the store's own cost, measured inside
    /// the sweep, so that a noisy host moves it far less than `overheads`.
    pub store_shares: Vec<f64>,
    /// Their median.
    pub store_share: f64,
    /// Milliseconds in the store per run of the one-job sweep (median over rounds).
    pub store_ms_per_run: f64,
}

struct Quiet;
impl crate::experiments::sweep::SweepObserver for Quiet {}

/// The median of `v` (rounds: never empty).
fn median(mut v: Vec<f64>) -> f64 {
    crate::experiments::summary::median(&mut v).unwrap_or(f64::NAN)
}

/// Times a sweep of `runs` seeds of `arch` for `epochs` epochs on `train` thesis-1.3 images
/// (500 validation), against the engine training the same runs alone, `rounds` times in turn.
/// Into a temporary SQLite store, or into `store` as workers claiming runs, under experiment
/// names of their own (`bench-...`), model directories in a temporary directory.
pub fn sweep_speed(
    arch: &str,
    (runs, epochs, train): (usize, usize, usize),
    (jobs, rounds): (usize, usize),
    store: Option<&crate::experiments::store::StoreUrl>,
) -> Result<SweepSpeed> {
    let text = format!(
        "name = \"bench\"\nseeds = {runs}\nepochs = {epochs}\n[[dataset]]\npreset = \"thesis-1.3\"\ntrain = {train}\nval = 500\n[grid]\narchs = [\"{arch}\"]\n"
    );
    let dir = tempfile::tempdir().map_err(|e| crate::Error::io(&std::env::temp_dir(), e))?;
    let plan = crate::experiments::experiment::Plan::parse(&text, &dir.path().join("bench.toml"))?;
    let image_epochs = (runs * epochs * train) as f64;
    let crate::experiments::experiment::DataSource::Spec { spec, .. } = &plan.datasets[0].source
    else {
        unreachable!("a preset")
    };
    let data = Dataset::generate(spec, None, &|_| {});
    let stamp = format!(
        "{}-{}",
        crate::experiments::store::timestamp(),
        std::process::id()
    );
    let (mut engine, mut one, mut many) = (Vec::new(), Vec::new(), Vec::new());
    let (mut store_shares, mut store_ms) = (Vec::new(), Vec::new());
    for round in 0..rounds.max(1) {
        engine.push(image_epochs / engine_seconds(&plan, &data)?);
        for (i, j) in [1, jobs].into_iter().enumerate() {
            let name = format!("bench-{stamp}-{round}-{i}");
            let (seconds, busy) = sweep_seconds(&text, &name, dir.path(), j, store)?;
            [&mut one, &mut many][i].push(image_epochs / seconds);
            if i == 0 {
                store_shares.push(busy / seconds);
                store_ms.push(1e3 * busy / runs as f64);
            }
        }
    }
    let overheads: Vec<f64> = one.iter().zip(&engine).map(|(s, e)| 1.0 - s / e).collect();
    let scalings: Vec<f64> = many.iter().zip(&one).map(|(m, o)| m / o).collect();
    Ok(SweepSpeed {
        store: store.map_or("a temporary SQLite file".into(), |u| u.to_string()),
        worker: store.is_some(),
        arch: arch.to_string(),
        runs,
        epochs,
        train_images: train,
        rounds: engine.len(),
        engine_image_epochs_per_s: median(engine),
        sweep_1_job_image_epochs_per_s: median(one),
        jobs,
        sweep_image_epochs_per_s: median(many),
        overhead: median(overheads.clone()),
        overheads,
        scaling: median(scalings),
        store_share: median(store_shares.clone()),
        store_shares,
        store_ms_per_run: median(store_ms),
    })
}

/// Seconds the engine takes to train `plan`'s runs on `data` one after another, one thread,
/// with no store and no files.
fn engine_seconds(plan: &crate::experiments::experiment::Plan, data: &Dataset) -> Result<f64> {
    let (tr, va) = (
        crate::models::training::engine_data(data, Split::Train),
        crate::models::training::engine_data(data, Split::Val),
    );
    let start = Instant::now();
    pool(1).install(|| -> Result<()> {
        for r in &plan.runs {
            let (a, c) = r
                .settings
                .build(&r.arch, data.height, data.width, 3, r.seed)?;
            tinycnn::train::train(&a, &c, &tr, &va, &mut tinycnn::train::Silent)?;
        }
        Ok(())
    })?;
    Ok(start.elapsed().as_secs_f64())
}

/// Seconds a sweep of the experiment `text`, renamed `name`, takes with `jobs` jobs: into a new
/// SQLite file in `dir`, or into `store` as workers; and the seconds of it spent in the store's
/// statements. Generating its data is part of the time, as it is of every sweep.
fn sweep_seconds(
    text: &str,
    name: &str,
    dir: &Path,
    jobs: usize,
    store: Option<&crate::experiments::store::StoreUrl>,
) -> Result<(f64, f64)> {
    let named = text.replacen("\"bench\"", &format!("\"{name}\""), 1);
    let plan = crate::experiments::experiment::Plan::parse(&named, &dir.join("bench.toml"))?;
    let url = store
        .cloned()
        .unwrap_or_else(|| dir.join(format!("{name}.db")).into());
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let opts = crate::experiments::sweep::SweepOptions {
        shard: None,
        worker: store.map(|_| crate::experiments::sweep::WorkerOptions {
            lease: std::time::Duration::from_secs(60),
            reconnect: std::time::Duration::from_secs(0),
            name: "bench".into(),
        }),
        jobs,
        cancel: &cancel,
    };
    let opened =
        crate::experiments::store::Store::open(&url)?.with_artifacts(Some(dir.join("artifacts")));
    let (start, before) = (Instant::now(), opened.busy());
    crate::experiments::sweep::run(&plan, &dir.join("bench.toml"), &opened, &opts, &Quiet)?;
    let seconds = start.elapsed().as_secs_f64();
    Ok((seconds, (opened.busy() - before).as_secs_f64()))
}

/// Time to compute and write every activation sheet of a run on a panel.
#[derive(Clone, Debug, Serialize)]
pub struct SheetSpeed {
    pub arch: String,
    pub panel: String,
    pub images: usize,
    pub sheets: usize,
    pub threads: usize,
    /// Best of the repetitions, seconds: capture, draw, encode and write.
    pub seconds: f64,
}

/// Trains `arch` briefly on thesis-1.3 (not timed), then times `shapelab activations` on the
/// `thesis-size` panel `repeats` times.
pub fn sheets_speed(arch: &str, repeats: usize) -> Result<SheetSpeed> {
    let d = bench_data(2000)?;
    let a = tinycnn::Arch::parse(arch, 28, 28, 3)?;
    let cfg = tinycnn::TrainConfig {
        epochs: 2,
        ..tinycnn::TrainConfig::default()
    };
    let trained = tinycnn::train::train(
        &a,
        &cfg,
        &train_data(&d),
        &train_data(&d),
        &mut tinycnn::train::Silent,
    )?;
    let panel =
        crate::PanelData::from_panel(&shapes::panel::find("thesis-size").expect("built in"), 28);
    let dir = tempfile::tempdir().map_err(|e| crate::Error::io(&std::env::temp_dir(), e))?;
    let mut best = f64::INFINITY;
    let mut sheets = 0;
    for i in 0..repeats.max(1) {
        let out = dir.path().join(format!("sheets{i}"));
        let start = Instant::now();
        let files = crate::inside::maps::write_sheets(
            &trained.model,
            &panel,
            tinycnn::Scaling::Unit,
            arch,
            &crate::inside::maps::SheetOptions::default(),
            &out,
            false,
        )?;
        best = best.min(start.elapsed().as_secs_f64());
        sheets = files.len();
    }
    Ok(SheetSpeed {
        arch: arch.into(),
        panel: "thesis-size".into(),
        images: panel.len(),
        sheets,
        threads: rayon::current_num_threads(),
        seconds: best,
    })
}

/// Time of a full greedy pruning.
#[derive(Clone, Debug, Serialize)]
pub struct PruneSpeed {
    pub arch: String,
    pub images: usize,
    pub steps: usize,
    pub evaluations: usize,
    pub rechecked_images: usize,
    pub threads: usize,
    /// Best of the repetitions, seconds.
    pub seconds: f64,
    pub initial_accuracy: f64,
}

/// Time of switching filters off in `shapelab serve`: the network evaluated with a set of
/// filters removed (the pruned network's numbers: accuracy, per class, per factor bin and the
/// confusion matrix, as the page shows them), once per toggle.
#[derive(Clone, Debug, Serialize)]
pub struct ToggleSpeed {
    pub arch: String,
    pub images: usize,
    pub toggles: usize,
    pub threads: usize,
    /// Per toggle, in milliseconds: the median and the slowest.
    pub median_ms: f64,
    pub max_ms: f64,
}

/// Trains `arch` on thesis-1.3 (not timed), then switches its filters off one at a time,
/// every other layer in turn and never a layer's last, and back on, evaluating the network on
/// `images` validation images after each toggle, `repeats` times over.
pub fn toggle_speed(
    arch: &str,
    epochs: usize,
    images: usize,
    repeats: usize,
) -> Result<ToggleSpeed> {
    let mut f = shapes::presets::find("thesis-1.3")
        .expect("preset exists")
        .spec_file();
    (f.train, f.val) = (Some(6000), Some(images));
    let d = Dataset::generate(&f.resolve()?, None, &|_| {});
    let a = tinycnn::Arch::parse(arch, 28, 28, 3)?;
    let cfg = tinycnn::TrainConfig {
        epochs,
        seed: 1,
        ..tinycnn::TrainConfig::default()
    };
    let val = crate::models::training::engine_data(&d, Split::Val);
    let model =
        tinycnn::train::train(&a, &cfg, &train_data(&d), &val, &mut tinycnn::train::Silent)?.model;
    let mut keep = a.keep_all();
    let order: Vec<(usize, usize)> = (0..*a.filters.iter().max().unwrap_or(&1) - 1)
        .flat_map(|f| (0..a.filters.len()).map(move |l| (l, f)))
        .filter(|&(l, f)| f + 1 < a.filters[l])
        .collect();
    let mut times = Vec::new();
    for _ in 0..repeats.max(1) {
        for on in [false, true] {
            for &(l, f) in &order {
                keep[l][f] = on;
                let start = Instant::now();
                crate::inside::switched::evaluate(
                    &model,
                    &keep,
                    &d,
                    Split::Val,
                    tinycnn::Scaling::Unit,
                    5,
                )?;
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(ToggleSpeed {
        arch: arch.into(),
        images,
        toggles: times.len(),
        threads: rayon::current_num_threads(),
        median_ms: times[times.len() / 2],
        max_ms: times[times.len() - 1],
    })
}

/// Time of a full dissection.
#[derive(Clone, Debug, Serialize)]
pub struct DissectSpeed {
    pub arch: String,
    pub images: usize,
    pub null_seeds: u64,
    pub threads: usize,
    /// Best of the repetitions, seconds: masks drawn from the spec, then the dissection.
    pub seconds: f64,
    /// Filters labelled, of all.
    pub labelled: (usize, usize),
}

/// Trains `arch` on thesis-1.3 (6,000 images, `epochs` epochs, not timed), then times drawing
/// the validation split's concept masks and dissecting every filter on `images` images.
pub fn dissect_speed(
    arch: &str,
    epochs: usize,
    images: usize,
    repeats: usize,
) -> Result<DissectSpeed> {
    let mut f = shapes::presets::find("thesis-1.3")
        .expect("preset exists")
        .spec_file();
    (f.train, f.val, f.test) = (Some(6000), Some(images), Some(0));
    let spec = f.resolve()?;
    let d = Dataset::generate(&spec, None, &|_| {});
    let a = tinycnn::Arch::parse(arch, 28, 28, 3)?;
    let cfg = tinycnn::TrainConfig {
        epochs,
        seed: 1,
        ..tinycnn::TrainConfig::default()
    };
    let val = crate::models::training::engine_data(&d, Split::Val);
    let model =
        tinycnn::train::train(&a, &cfg, &train_data(&d), &val, &mut tinycnn::train::Silent)?.model;
    let settings = crate::analyses::dissection::Settings::default();
    let (mut best, mut labelled) = (f64::INFINITY, (0, 0));
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        let m = crate::data::masks::ConceptMasks::of_spec_part(&spec, Split::Val);
        let r = crate::analyses::dissection::dissect(
            &model,
            &d,
            Split::Val,
            (m.part("val").expect("drawn"), &m.concept_names),
            tinycnn::Scaling::Unit,
            &settings,
            ("bench", "thesis-1.3"),
            None,
        )?;
        best = best.min(start.elapsed().as_secs_f64());
        let all = r.layers.iter().flat_map(|l| &l.filters);
        labelled = (
            all.clone().filter(|f| f.label.is_some()).count(),
            all.count(),
        );
    }
    Ok(DissectSpeed {
        arch: arch.into(),
        images,
        null_seeds: settings.null_seeds,
        threads: rayon::current_num_threads(),
        seconds: best,
        labelled,
    })
}

/// Trains `arch` on thesis-1.3 (6,000 images, `epochs` epochs, not timed), then times full
/// greedy pruning (`--ties one`) on `images` validation images.
pub fn prune_speed(arch: &str, epochs: usize, images: usize, repeats: usize) -> Result<PruneSpeed> {
    let mut f = shapes::presets::find("thesis-1.3")
        .expect("preset exists")
        .spec_file();
    (f.train, f.val) = (Some(6000), Some(images));
    let d = Dataset::generate(&f.resolve()?, None, &|_| {});
    let a = tinycnn::Arch::parse(arch, 28, 28, 3)?;
    let cfg = tinycnn::TrainConfig {
        epochs,
        seed: 1,
        ..tinycnn::TrainConfig::default()
    };
    let val = crate::models::training::engine_data(&d, Split::Val);
    let model =
        tinycnn::train::train(&a, &cfg, &train_data(&d), &val, &mut tinycnn::train::Silent)?.model;
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        let p = tinycnn::prune::greedy(
            &model,
            &val,
            tinycnn::Scaling::Unit,
            tinycnn::prune::Ties::One,
            tinycnn::prune::Stop::OnePerLayer,
        )?;
        best = best.min(start.elapsed().as_secs_f64());
        last = Some(p);
    }
    let p = last.expect("one repetition");
    Ok(PruneSpeed {
        arch: arch.into(),
        images,
        steps: p.steps.len(),
        evaluations: p.evaluations,
        rechecked_images: p.rechecked_images,
        threads: rayon::current_num_threads(),
        seconds: best,
        initial_accuracy: p.initial_accuracy,
    })
}

/// The result of [`families_speed`].
#[derive(Clone, Debug, Serialize)]
pub struct FamiliesSpeed {
    pub arch: String,
    pub runs: usize,
    pub images: usize,
    pub null_seeds: u64,
    pub threads: usize,
    /// Best of the repetitions, seconds: every run aligned to the reference (matched on the
    /// validation images, measured on the test images), the null, and the families read.
    pub align_seconds: f64,
    /// Best of the repetitions, seconds: the same with the CKA matrix between all runs.
    pub with_cka_seconds: f64,
    pub cka_images: usize,
}

/// Trains `runs` networks `arch` on thesis-1.3 (3,000 images, `epochs` epochs each, seeds 1
/// to `runs`, not timed), then times their families with `images` validation and test
/// images: once without the CKA matrix (`cka_images` 4, its least), once with the default.
pub fn families_speed(
    arch: &str,
    runs: usize,
    epochs: usize,
    images: usize,
    repeats: usize,
) -> Result<FamiliesSpeed> {
    use crate::analyses::seeds::families::{families, Member, Settings};
    let mut f = shapes::presets::find("thesis-1.3")
        .expect("preset exists")
        .spec_file();
    (f.train, f.val, f.test) = (Some(3000), Some(images), Some(images));
    let d = Dataset::generate(&f.resolve()?, None, &|_| {});
    let a = tinycnn::Arch::parse(arch, 28, 28, 3)?;
    let val = crate::models::training::engine_data(&d, Split::Val);
    let train = train_data(&d);
    use rayon::prelude::*;
    let models: Vec<tinycnn::Model> = (1..=runs as u64)
        .into_par_iter()
        .map(|seed| {
            let cfg = tinycnn::TrainConfig {
                epochs,
                seed,
                ..tinycnn::TrainConfig::default()
            };
            Ok(tinycnn::train::train(&a, &cfg, &train, &val, &mut tinycnn::train::Silent)?.model)
        })
        .collect::<Result<_>>()?;
    let keys: Vec<String> = (1..=runs).map(|s| format!("seed{s}")).collect();
    let members: Vec<Member> = models
        .iter()
        .zip(&keys)
        .enumerate()
        .map(|(i, (model, key))| Member {
            key,
            seed: i,
            learned: true,
            model,
            scaling: tinycnn::Scaling::Unit,
            labels: None,
        })
        .collect();
    let time = |settings: &Settings| -> Result<f64> {
        let mut best = f64::INFINITY;
        for _ in 0..repeats.max(1) {
            let start = Instant::now();
            families(
                &members,
                &d,
                (Split::Val, Split::Test),
                settings,
                ("thesis-1.3", ""),
            )?;
            best = best.min(start.elapsed().as_secs_f64());
        }
        Ok(best)
    };
    let with = Settings::default();
    let without = Settings {
        cka_images: 4,
        ..with.clone()
    };
    Ok(FamiliesSpeed {
        arch: arch.into(),
        runs,
        images,
        null_seeds: with.null_seeds,
        threads: rayon::current_num_threads(),
        align_seconds: time(&without)?,
        with_cka_seconds: time(&with)?,
        cka_images: with.cka_images,
    })
}
