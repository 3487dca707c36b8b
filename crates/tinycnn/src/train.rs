//! Training, evaluation and activation capture over whole datasets.
//!
//! Every batch is cut into fixed chunks of [`CHUNK`] images; each chunk's gradient is computed
//! on its own (in parallel, by rayon) and the chunk gradients are added in chunk order. The
//! order of every floating-point sum is therefore fixed by the data and the batch size alone,
//! and the same seed gives bitwise-identical weights and history at any thread count.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::arch::Arch;
use crate::error::{Error, Result};
use crate::frozen::{Frozen, Watch};
use crate::model::{Init, Model};
use crate::net::{Scaling, Workspace, CHUNK};
use crate::optim::{Optimizer, OptimizerState};

/// Images and labels, borrowed. `images` is `[n, height, width]` row-major.
#[derive(Clone, Copy, Debug)]
pub struct Data<'a> {
    pub images: &'a [u8],
    pub labels: &'a [u8],
    pub height: usize,
    pub width: usize,
}

impl<'a> Data<'a> {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn image(&self, i: usize) -> &'a [u8] {
        let px = self.height * self.width;
        &self.images[i * px..(i + 1) * px]
    }

    /// Checks that the data fits `arch`: image size, array lengths, label range.
    pub fn check(&self, arch: &Arch, what: &str) -> Result<()> {
        if (self.height, self.width) != (arch.height, arch.width) {
            return Err(Error::Data(format!(
                "{what} images are {}x{} but the network takes {}x{}",
                self.height, self.width, arch.height, arch.width
            )));
        }
        if self.images.len() != self.len() * self.height * self.width {
            return Err(Error::Data(format!(
                "{what}: {} image bytes for {} labels",
                self.images.len(),
                self.len()
            )));
        }
        if let Some(&l) = self.labels.iter().find(|&&l| l as usize >= arch.classes) {
            return Err(Error::Data(format!(
                "{what} holds label {l} but the network has {} classes",
                arch.classes
            )));
        }
        Ok(())
    }
}

/// Everything that decides a training run besides the architecture and the data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: Optimizer,
    pub init: Init,
    pub scaling: Scaling,
    /// Seed of the initial weights and of every epoch's shuffle.
    pub seed: u64,
    /// Stop once validation accuracy reaches 1.0.
    pub early_stop: bool,
}

impl Default for TrainConfig {
    /// Keras's defaults (Adam 1e-3, batch 32, Glorot) with inputs in [0, 1], 40 epochs.
    fn default() -> Self {
        TrainConfig {
            epochs: 40,
            batch_size: 32,
            optimizer: Optimizer::adam(1e-3),
            init: Init::Glorot,
            scaling: Scaling::Unit,
            seed: 0,
            early_stop: false,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 || self.epochs > 100_000 {
            return Err(Error::Config(format!(
                "{} epochs: use 1 to 100000",
                self.epochs
            )));
        }
        if self.batch_size == 0 || self.batch_size > 65_536 {
            return Err(Error::Config(format!(
                "batch size {}: use 1 to 65536",
                self.batch_size
            )));
        }
        self.optimizer.validate()
    }
}

/// What one epoch measured. Deterministic: no timings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// 1-based.
    pub epoch: usize,
    /// Mean loss and accuracy over the epoch's batches, each measured before its update
    /// (what Keras reports).
    pub train_loss: f64,
    pub train_acc: f64,
    /// After the epoch, on the validation data.
    pub val_loss: f64,
    pub val_acc: f64,
    /// Per conv layer, filters whose activation output was zero on every training image of
    /// the epoch.
    pub dead: Vec<usize>,
    /// Per weight tensor (each conv layer, then the dense layer; biases excluded), the root
    /// mean square over the epoch's updates of the L2 norm of the batch gradient. A layer whose
    /// filters are all dead gets exactly zero here, whatever the bias gradients do. `None` in
    /// histories recorded before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norms: Option<Vec<f64>>,
}

/// How a training run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ending {
    /// All epochs ran.
    Completed,
    /// Validation accuracy reached 1.0 with early stop on.
    EarlyStopped,
    /// The loss became NaN or infinite; the weights are those before the bad batch.
    Diverged,
    /// The observer asked to stop.
    Cancelled,
}

/// Hooks for progress display and cancellation.
pub trait Observer {
    /// After each batch, with the number of images in it.
    fn batch(&mut self, _images: usize) {}
    /// After each epoch; return `false` to stop.
    fn epoch(&mut self, _stats: &EpochStats) -> bool {
        true
    }
    /// After each update, for diagnostics (what the first updates do): the weights before it,
    /// the model after it and the batch gradient it applied, both laid out like the
    /// parameters. Called on the training thread; the default does nothing.
    fn step(&mut self, _before: &[f32], _model: &Model, _grad: &[f32]) {}
}

/// An observer that does nothing.
pub struct Silent;
impl Observer for Silent {}

/// A run's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Trained {
    pub model: Model,
    pub history: Vec<EpochStats>,
    pub ending: Ending,
    /// [`evaluate`] of `model` on the validation data, as its last epoch measured it; `None`
    /// when the model is not the one last evaluated (a diverged run keeps the weights from
    /// before the failed update) or no epoch ran.
    pub val: Option<Evaluation>,
}

/// Log-softmax cross-entropy of one row of logits; writes `softmax - onehot` times `scale`
/// into `dlogits` and returns `(loss, predicted class)`.
fn softmax_xent(logits: &[f32], label: usize, scale: f32, dlogits: &mut [f32]) -> (f64, usize) {
    let best = prediction(logits);
    let max = logits[best];
    let mut sum = 0.0f32;
    for (d, &v) in dlogits.iter_mut().zip(logits) {
        *d = (v - max).exp();
        sum += *d;
    }
    for d in dlogits.iter_mut() {
        *d = *d / sum * scale;
    }
    dlogits[label] -= scale;
    let loss = (sum.ln() - (logits[label] - max)) as f64;
    (loss, best)
}

/// The predicted class of one image's logits: the first of the largest (as every evaluation
/// decides it).
pub fn prediction(logits: &[f32]) -> usize {
    let (mut best, mut max) = (0, f32::NEG_INFINITY);
    for (i, &v) in logits.iter().enumerate() {
        if v > max {
            (best, max) = (i, v);
        }
    }
    best
}

/// The per-image loss and prediction without gradients.
fn loss_and_prediction(logits: &[f32], label: usize) -> (f64, usize) {
    let mut scratch = [0.0f32; 256];
    softmax_xent(logits, label, 1.0, &mut scratch[..logits.len()])
}

/// Trains a model in place, epoch by epoch. Keeps the optimiser state, so training can be
/// resumed or continued.
pub struct Trainer {
    pub model: Model,
    pub config: TrainConfig,
    state: OptimizerState,
    /// Epochs done.
    pub epoch: usize,
    /// Workspaces, one per thread at most: a chunk's forward and backward run back to back,
    /// so a workspace is free again once its chunk's gradient is out.
    pool: WorkspacePool,
    /// Per chunk of a batch: its gradient (summed in chunk order afterwards).
    chunk_grads: Vec<Vec<f32>>,
    /// Per layer and filter: non-zero activation output seen this epoch.
    alive: Vec<Vec<bool>>,
    grad: Vec<f32>,
    /// The weights before the last update, to fall back on if it overflowed.
    backup: Vec<f32>,
    /// Set once an epoch proved the run frozen: later epochs compute the dense layer alone
    /// ([`crate::frozen`]).
    frozen: Option<Frozen>,
    /// Whether an epoch may prove the run frozen (tests turn it off to compare).
    pub(crate) may_freeze: bool,
    /// The validation evaluation of the last epoch, when it completed: of the weights now.
    pub(crate) last_val: Option<Evaluation>,
}

impl Trainer {
    /// A fresh model initialised from the config's seed.
    pub fn new(arch: &Arch, config: TrainConfig) -> Result<Trainer> {
        config.validate()?;
        let model = Model::init(arch, config.init, config.seed)?;
        Trainer::from_model(model, config)
    }

    /// Continues from an existing model (with a fresh optimiser state).
    pub fn from_model(model: Model, config: TrainConfig) -> Result<Trainer> {
        config.validate()?;
        let chunks = config.batch_size.div_ceil(CHUNK);
        Ok(Trainer {
            state: OptimizerState::new(config.optimizer.clone(), model.params.len()),
            pool: WorkspacePool::default(),
            chunk_grads: vec![vec![0.0; model.params.len()]; chunks],
            alive: model.arch.filters.iter().map(|&f| vec![false; f]).collect(),
            grad: vec![0.0; model.params.len()],
            backup: vec![0.0; model.params.len()],
            frozen: None,
            may_freeze: true,
            last_val: None,
            epoch: 0,
            model,
            config,
        })
    }

    /// The permutation of epoch `epoch` (0-based): Fisher-Yates from the seed's shuffle stream.
    fn permutation(&self, n: usize, epoch: usize) -> Vec<usize> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed);
        rng.set_stream(crate::STREAM_SHUFFLE_BASE + epoch as u64);
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            p.swap(i, j);
        }
        p
    }

    /// One epoch over `train` (reshuffled from the seed), then evaluation on `val`.
    /// Returns `None` if the loss diverged (the model keeps its last finite weights).
    pub fn epoch(
        &mut self,
        train: &Data,
        val: &Data,
        obs: &mut dyn Observer,
    ) -> Result<Option<EpochStats>> {
        train.check(&self.model.arch, "training")?;
        val.check(&self.model.arch, "validation")?;
        self.last_val = None;
        if train.is_empty() {
            return Err(Error::Data("the training split is empty".into()));
        }
        let scaling = self.config.scaling;
        let settings = (&self.config.optimizer, scaling, self.config.batch_size);
        // A run proved frozen computes the dense layer alone; any other may prove it.
        let frozen = self
            .frozen
            .take()
            .filter(|f| f.holds((&self.model, &self.state), settings, train, val));
        let mut watch = match frozen {
            Some(_) => None,
            None if self.may_freeze => Watch::begin(&self.model, &self.state),
            None => None,
        };
        let perm = self.permutation(train.len(), self.epoch);
        let kk = self.model.arch.classes;
        for a in &mut self.alive {
            a.fill(false);
        }
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        let weight_tensors = self.model.layout().weight_tensors();
        let mut grad_square_sums = vec![0.0f64; weight_tensors.len()];
        let mut updates = 0usize;
        for batch in perm.chunks(self.config.batch_size) {
            let watching = watch.as_ref().is_some_and(Watch::watching);
            let stats = self.chunk_gradients(train, batch, frozen.is_some(), watching);
            let batch_loss: f64 = stats.iter().map(|s| s.loss).sum();
            if !batch_loss.is_finite() {
                return Ok(None);
            }
            loss_sum += batch_loss;
            correct += stats.iter().map(|s| s.correct).sum::<usize>();
            for s in &stats {
                for (a, seen) in self.alive.iter_mut().zip(&s.alive) {
                    for (x, y) in a.iter_mut().zip(seen) {
                        *x |= *y;
                    }
                }
            }
            // One thread takes the serial path: no rayon task per span for nothing.
            let parallel = rayon::current_num_threads() > 1;
            sum_chunks(&mut self.grad, &self.chunk_grads[..stats.len()], parallel);
            updates += 1;
            // The squared norms (each a sequential f64 sum, in parameter order) beside the
            // update: both only read the gradient.
            let (grad, params, state) = (&self.grad, &mut self.model.params, &mut self.state);
            let backup = &mut self.backup;
            let square = |r: &std::ops::Range<usize>| -> f64 {
                grad[r.clone()]
                    .iter()
                    .map(|&g| (g as f64) * (g as f64))
                    .sum()
            };
            let mut update = || {
                backup.copy_from_slice(params);
                state.update(params, grad);
            };
            let squares: Vec<f64> = if parallel {
                let squares = || weight_tensors.par_iter().map(square).collect();
                rayon::join(squares, update).0
            } else {
                update();
                weight_tensors.iter().map(square).collect()
            };
            for (sum, s) in grad_square_sums.iter_mut().zip(squares) {
                *sum += s;
            }
            if self.model.params.iter().any(|p| !p.is_finite()) {
                // Keep the last finite weights: a diverged run is a result to inspect.
                self.model.params.copy_from_slice(&self.backup);
                return Ok(None);
            }
            if let Some(w) = &mut watch {
                let silent = stats.iter().all(|s| s.silent);
                w.step(silent, &self.grad, &self.model, &self.state);
            }
            obs.batch(batch.len());
            obs.step(&self.backup, &self.model, &self.grad);
        }
        if let Some(f) = &frozen {
            // The proving epoch's: the same weights on the same images.
            self.alive.clone_from(&f.alive);
        }
        let dead = self
            .alive
            .iter()
            .map(|a| a.iter().filter(|&&x| !x).count())
            .collect();
        self.epoch += 1;
        let (v, val_silent) = match &frozen {
            _ if val.is_empty() => (Evaluation::empty(kk), true),
            Some(f) if f.val_silent => (self.silent_evaluation(val), true),
            _ => {
                let watching = watch.as_ref().is_some_and(Watch::watching);
                let (logits, silent) = logits_watched(&self.model, val, scaling, watching);
                (Evaluation::of_logits(&logits, val.labels, kk), silent)
            }
        };
        self.frozen = frozen.or_else(|| {
            let settings = (&self.config.optimizer, scaling, self.config.batch_size);
            watch?.finish((&self.alive, val_silent), settings, train, val)
        });
        let stats = EpochStats {
            epoch: self.epoch,
            train_loss: loss_sum / train.len() as f64,
            train_acc: correct as f64 / train.len() as f64,
            val_loss: v.loss,
            val_acc: v.accuracy,
            dead,
            // sqrt(mean over updates of ||g||^2): the RMS of the per-update norms.
            grad_norms: Some(
                grad_square_sums
                    .iter()
                    .map(|s| (s / updates.max(1) as f64).sqrt())
                    .collect(),
            ),
        };
        if !stats.val_loss.is_finite() {
            return Ok(None);
        }
        self.last_val = Some(v);
        Ok(Some(stats))
    }

    /// Whether the run is proved frozen ([`crate::frozen`]).
    #[cfg(test)]
    pub(crate) fn is_frozen(&self) -> bool {
        self.frozen.is_some()
    }

    /// Each chunk of `batch` (indices into `train`) forward and backward, its gradient into
    /// `chunk_grads`, in parallel. `frozen`: the run is proved frozen, so only the dense layer
    /// runs; `watching`: report whether each chunk's last conv layer was silent.
    fn chunk_gradients(
        &mut self,
        train: &Data,
        batch: &[usize],
        frozen: bool,
        watching: bool,
    ) -> Vec<ChunkOut> {
        let scale = 1.0 / batch.len() as f32;
        let kk = self.model.arch.classes;
        let chunks: Vec<&[usize]> = batch.chunks(CHUNK).collect();
        let (model, pool, alive) = (&self.model, &self.pool, &self.alive);
        let scaling = self.config.scaling;
        self.chunk_grads[..chunks.len()]
            .par_iter_mut()
            .zip(chunks.par_iter())
            .map(|(grad, idx)| {
                let mut ws = pool.take(&model.arch);
                if frozen {
                    ws.forward_silent(model, idx.len());
                } else {
                    ws.load_images(idx.iter().map(|&i| train.image(i)), scaling);
                    for (a, seen) in ws.alive.iter_mut().zip(alive) {
                        a.copy_from_slice(seen);
                    }
                    ws.forward(model, true);
                }
                let silent = watching && ws.last_silent();
                let (mut loss, mut correct) = (0.0, 0);
                for (k, &i) in idx.iter().enumerate() {
                    let label = train.labels[i] as usize;
                    let (l, pred) = softmax_xent(
                        &ws.logits[k * kk..(k + 1) * kk],
                        label,
                        scale,
                        &mut ws.dlogits[k * kk..(k + 1) * kk],
                    );
                    loss += l;
                    correct += (pred == label) as usize;
                }
                let alive = if frozen {
                    ws.backward_silent(model, grad);
                    Vec::new()
                } else {
                    ws.backward(model, grad);
                    ws.alive.clone()
                };
                pool.give(ws);
                ChunkOut {
                    loss,
                    correct,
                    alive,
                    silent,
                }
            })
            .collect()
    }

    /// [`evaluate`] of a frozen run whose last conv layer is silent on every image of `val`:
    /// the dense layer on features of `+0`, chunk by chunk as [`logits`] cuts them.
    fn silent_evaluation(&self, val: &Data) -> Evaluation {
        let kk = self.model.arch.classes;
        let mut ws = self.pool.take(&self.model.arch);
        let mut logits = vec![0.0f32; val.len() * kk];
        for dst in logits.chunks_mut(CHUNK * kk) {
            ws.forward_silent(&self.model, dst.len() / kk);
            dst.copy_from_slice(&ws.logits[..dst.len()]);
        }
        self.pool.give(ws);
        Evaluation::of_logits(&logits, val.labels, kk)
    }
}

/// The training workspaces of one trainer, each handed back to the thread that used it last
/// where it can be: its buffers (a few MB for a 32-32) are then still in that core's cache.
/// Which workspace a chunk gets changes no result (each chunk loads all it reads).
#[derive(Default)]
struct WorkspacePool(std::sync::Mutex<Vec<(Option<usize>, Workspace)>>);

impl WorkspacePool {
    /// The workspace this thread used last, else any, else a new one.
    fn take(&self, arch: &Arch) -> Workspace {
        let me = rayon::current_thread_index();
        let found = {
            let mut pool = self.0.lock().expect("no panics hold the pool");
            let at = pool.iter().position(|(t, _)| *t == me);
            at.or(pool.len().checked_sub(1))
                .map(|i| pool.swap_remove(i).1)
        };
        found.unwrap_or_else(|| Workspace::new(arch, CHUNK))
    }

    /// Hands `ws` back, marked as this thread's.
    fn give(&self, ws: Workspace) {
        let me = rayon::current_thread_index();
        self.0
            .lock()
            .expect("no panics hold the pool")
            .push((me, ws));
    }
}

/// What one chunk of a batch measured.
struct ChunkOut {
    loss: f64,
    correct: usize,
    /// Per conv layer and filter, whether it output anything (empty in a frozen epoch).
    alive: Vec<Vec<bool>>,
    /// The last conv layer output `+0` everywhere (only looked at while watched).
    silent: bool,
}

/// Trains `arch` from scratch for `config.epochs` epochs (fewer with early stop, divergence or
/// cancellation).
pub fn train(
    arch: &Arch,
    config: &TrainConfig,
    train: &Data,
    val: &Data,
    obs: &mut dyn Observer,
) -> Result<Trained> {
    let mut t = Trainer::new(arch, config.clone())?;
    let mut history = Vec::new();
    let mut ending = Ending::Completed;
    while t.epoch < config.epochs {
        match t.epoch(train, val, obs)? {
            None => {
                ending = Ending::Diverged;
                break;
            }
            Some(stats) => {
                let go_on = obs.epoch(&stats);
                let perfect = stats.val_acc >= 1.0;
                history.push(stats);
                if config.early_stop && perfect {
                    ending = Ending::EarlyStopped;
                    break;
                }
                if !go_on {
                    ending = Ending::Cancelled;
                    break;
                }
            }
        }
    }
    Ok(Trained {
        val: t.last_val.take(),
        model: t.model,
        history,
        ending,
    })
}

/// `grad = chunks[0] + chunks[1] + ...`, each parameter summed in chunk order, spans of
/// parameters on all threads if `parallel` (a parameter's sum is the same whichever thread
/// makes it). Done on one thread, the sums, the norms and the update left the other core idle
/// between batches: `alternate_builds.py 4 32-32,2-4` at 2 threads, 32-32 +2.2%, 2-4 +33%.
fn sum_chunks(grad: &mut [f32], chunks: &[Vec<f32>], parallel: bool) {
    const SPAN: usize = 4096;
    let span = |(i, g): (usize, &mut [f32])| {
        let at = i * SPAN;
        g.copy_from_slice(&chunks[0][at..at + g.len()]);
        for c in &chunks[1..] {
            for (acc, v) in g.iter_mut().zip(&c[at..]) {
                *acc += v;
            }
        }
    };
    if parallel {
        grad.par_chunks_mut(SPAN).enumerate().for_each(span);
    } else {
        grad.chunks_mut(SPAN).enumerate().for_each(span);
    }
}

/// Accuracy, loss and confusion matrix.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
    pub correct: usize,
    pub total: usize,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

impl Evaluation {
    fn empty(classes: usize) -> Evaluation {
        Evaluation {
            loss: 0.0,
            accuracy: 0.0,
            correct: 0,
            total: 0,
            confusion: vec![vec![0; classes]; classes],
        }
    }

    /// Scores logits `[n, K]` against labels.
    pub fn of_logits(logits: &[f32], labels: &[u8], classes: usize) -> Evaluation {
        let mut e = Evaluation::empty(classes);
        let mut loss = 0.0;
        for (row, &label) in logits.chunks(classes).zip(labels) {
            let (l, pred) = loss_and_prediction(row, label as usize);
            loss += l;
            e.correct += (pred == label as usize) as usize;
            e.confusion[label as usize][pred] += 1;
        }
        e.total = labels.len();
        if e.total > 0 {
            e.loss = loss / e.total as f64;
            e.accuracy = e.correct as f64 / e.total as f64;
        }
        e
    }
}

/// The logits of every image, in data order.
///
/// # Shapes
/// `data.images [n, H, W]` to `[n, K]`.
pub fn logits(model: &Model, data: &Data, scaling: Scaling) -> Vec<f32> {
    logits_watched(model, data, scaling, false).0
}

/// [`logits`], and with `watch` whether the last conv layer output `+0` on every image
/// ([`crate::net::Workspace::last_silent`]; `false` without `watch`).
fn logits_watched(model: &Model, data: &Data, scaling: Scaling, watch: bool) -> (Vec<f32>, bool) {
    let px = data.height * data.width;
    let kk = model.arch.classes;
    let mut out = vec![0.0f32; data.len() * kk];
    // One workspace per thread, each over a contiguous run of chunks: chunk boundaries (and so
    // every sum) stay fixed, and memory stays at one workspace per thread.
    let chunks = data.len().div_ceil(CHUNK);
    let per = chunks.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let silent = std::sync::atomic::AtomicBool::new(true);
    out.par_chunks_mut(per * CHUNK * kk)
        .zip(data.images.par_chunks(per * CHUNK * px))
        .for_each(|(dst, imgs)| {
            let mut ws = Workspace::inference(&model.arch, CHUNK);
            for (d, im) in dst.chunks_mut(CHUNK * kk).zip(imgs.chunks(CHUNK * px)) {
                ws.load(im, scaling);
                ws.forward(model, false);
                d.copy_from_slice(&ws.logits[..d.len()]);
                if watch && !ws.last_silent() {
                    silent.store(false, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    (out, watch && silent.into_inner())
}

/// Evaluates a model on labelled data.
pub fn evaluate(model: &Model, data: &Data, scaling: Scaling) -> Evaluation {
    Evaluation::of_logits(
        &logits(model, data, scaling),
        data.labels,
        model.arch.classes,
    )
}

/// Evaluates the network with some conv filters removed (see [`Model::pruned`]): the same as
/// evaluating the physically smaller network, because it is one.
pub fn evaluate_masked(
    model: &Model,
    keep: &[Vec<bool>],
    data: &Data,
    scaling: Scaling,
) -> Result<Evaluation> {
    Ok(evaluate(&model.pruned(keep)?, data, scaling))
}

/// Every layer's maps for a batch of images, `NCHW`.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerMaps {
    /// Conv output plus bias, `[n, C, H, W]`.
    pub pre: Vec<f32>,
    /// After the activation, `[n, C, H, W]`.
    pub post: Vec<f32>,
    /// After the pool, `[n, C, H/2, W/2]`; equal to `post` when the layer does not pool.
    pub pooled: Vec<f32>,
}

/// One forward that keeps every layer's pre-activation, post-activation and pooled maps,
/// plus the logits `[n, K]`.
pub fn capture(model: &Model, images: &[u8], scaling: Scaling) -> (Vec<LayerMaps>, Vec<f32>) {
    let arch = &model.arch;
    let px = arch.height * arch.width;
    let n = images.len() / px;
    let layers = arch.layers();
    let mut maps: Vec<LayerMaps> = layers
        .iter()
        .map(|s| LayerMaps {
            pre: vec![0.0; n * s.cout * s.hw()],
            post: vec![0.0; n * s.cout * s.hw()],
            pooled: vec![0.0; n * s.cout * s.out_hw()],
        })
        .collect();
    let mut logits = vec![0.0; n * arch.classes];
    let mut ws = Workspace::inference(arch, CHUNK);
    ws.keep_post = true;
    for (c, imgs) in images.chunks(CHUNK * px).enumerate() {
        ws.load(imgs, scaling);
        ws.forward(model, false);
        let b = ws.b;
        let first = c * CHUNK;
        // CNHW chunk buffers to NCHW output.
        for (l, s) in layers.iter().enumerate() {
            let (hw, ohw) = (s.hw(), s.out_hw());
            let out = ws.layer_out(l);
            for ch in 0..s.cout {
                for img in 0..b {
                    let dst = ((first + img) * s.cout + ch) * hw;
                    let src = (ch * b + img) * hw;
                    maps[l].pre[dst..dst + hw].copy_from_slice(&ws.pre[l][src..src + hw]);
                    maps[l].post[dst..dst + hw].copy_from_slice(&ws.post[l][src..src + hw]);
                    let (dst, src) = (((first + img) * s.cout + ch) * ohw, (ch * b + img) * ohw);
                    maps[l].pooled[dst..dst + ohw].copy_from_slice(&out[src..src + ohw]);
                }
            }
        }
        let kk = arch.classes;
        logits[first * kk..(first + b) * kk].copy_from_slice(&ws.logits[..b * kk]);
    }
    (maps, logits)
}

/// Every conv layer's maps after the activation, `[layer][n, C, H, W]`, into `out` (resized
/// as needed, so buffers can be reused): what [`capture`] returns as `post`, without the
/// other stages.
pub fn capture_post_into(model: &Model, images: &[u8], scaling: Scaling, out: &mut [Vec<f32>]) {
    let arch = &model.arch;
    let px = arch.height * arch.width;
    let n = images.len() / px;
    let layers = arch.layers();
    assert_eq!(out.len(), layers.len(), "one buffer per conv layer");
    for (o, s) in out.iter_mut().zip(&layers) {
        o.resize(n * s.cout * s.hw(), 0.0);
    }
    let mut maps = PostMaps::new(arch);
    for (c, imgs) in images.chunks(CHUNK * px).enumerate() {
        let post = maps.run(model, imgs, scaling);
        let b = imgs.len() / px;
        let first = c * CHUNK;
        // CNHW chunk buffers to NCHW output.
        for (l, s) in layers.iter().enumerate() {
            let hw = s.hw();
            for ch in 0..s.cout {
                for img in 0..b {
                    let dst = ((first + img) * s.cout + ch) * hw;
                    let src = (ch * b + img) * hw;
                    out[l][dst..dst + hw].copy_from_slice(&post[l][src..src + hw]);
                }
            }
        }
    }
}

/// Maps after the activation a chunk at a time, from one workspace reused across chunks: for
/// passes over many images that read each chunk's maps once and keep none of them.
pub struct PostMaps {
    ws: Workspace,
}

impl PostMaps {
    /// Images per chunk at most.
    pub const CHUNK: usize = CHUNK;

    pub fn new(arch: &crate::arch::Arch) -> PostMaps {
        let mut ws = Workspace::inference(arch, CHUNK);
        ws.keep_post = true;
        ws.maps_only = true;
        PostMaps { ws }
    }

    /// Runs `images [b, H, W]`, `b <= CHUNK`, through `model` and returns every conv layer's
    /// maps after the activation, `[layer][C, b, H', W']` (channel-major, as the engine keeps
    /// them).
    pub fn run(&mut self, model: &Model, images: &[u8], scaling: Scaling) -> &[Vec<f32>] {
        self.ws.load(images, scaling);
        self.ws.forward(model, false);
        &self.ws.post
    }

    /// The maps of the last [`PostMaps::run`], as it returned them.
    pub fn last(&self) -> &[Vec<f32>] {
        &self.ws.post
    }
}

/// The gradient of the mean loss over a batch, and the loss (for tests and diagnostics:
/// the gradient-norm at a plateau).
///
/// # Shapes
/// `images [n, H, W]`, `labels [n]`; the gradient is laid out like `model.params`.
pub fn loss_and_gradient(
    model: &Model,
    images: &[u8],
    labels: &[u8],
    scaling: Scaling,
) -> (f64, Vec<f32>) {
    let px = model.arch.height * model.arch.width;
    let kk = model.arch.classes;
    let scale = 1.0 / labels.len() as f32;
    let mut grad = vec![0.0f32; model.params.len()];
    let mut loss = 0.0;
    let mut ws = Workspace::new(&model.arch, CHUNK);
    let mut chunk = vec![0.0f32; model.params.len()];
    for (imgs, labs) in images.chunks(CHUNK * px).zip(labels.chunks(CHUNK)) {
        ws.load(imgs, scaling);
        ws.forward(model, false);
        for (k, &label) in labs.iter().enumerate() {
            loss += softmax_xent(
                &ws.logits[k * kk..(k + 1) * kk],
                label as usize,
                scale,
                &mut ws.dlogits[k * kk..(k + 1) * kk],
            )
            .0;
        }
        ws.backward(model, &mut chunk);
        for (g, w) in grad.iter_mut().zip(&chunk) {
            *g += w;
        }
    }
    (loss / labels.len() as f64, grad)
}

/// First-order Taylor importance of every conv filter (Molchanov et al. 2017, "Pruning
/// Convolutional Neural Networks for Resource Efficient Inference"): per image, the absolute
/// value of the sum over positions of the filter's activation times the gradient of the loss
/// with respect to it, averaged over images. It estimates how much the loss would change if
/// the filter's output were zeroed.
///
/// # Shapes
/// `images [n, H, W]`, `labels [n]`; returns `[layer][filter]`.
pub fn taylor_importance(
    model: &Model,
    images: &[u8],
    labels: &[u8],
    scaling: Scaling,
) -> Vec<Vec<f64>> {
    let px = model.arch.height * model.arch.width;
    let kk = model.arch.classes;
    let mut ws = Workspace::new(&model.arch, CHUNK);
    let mut grad = vec![0.0f32; model.params.len()];
    let mut sums: Vec<Vec<f64>> = model.arch.filters.iter().map(|&f| vec![0.0; f]).collect();
    let mut terms = vec![0.0f64; model.arch.filters.iter().max().copied().unwrap_or(1) * CHUNK];
    for (imgs, labs) in images.chunks(CHUNK * px).zip(labels.chunks(CHUNK)) {
        ws.load(imgs, scaling);
        ws.forward(model, false);
        for (k, &label) in labs.iter().enumerate() {
            softmax_xent(
                &ws.logits[k * kk..(k + 1) * kk],
                label as usize,
                1.0,
                &mut ws.dlogits[k * kk..(k + 1) * kk],
            );
        }
        ws.backward(model, &mut grad);
        for (l, s) in sums.iter_mut().enumerate() {
            ws.taylor_terms(l, &mut terms);
            for (f, acc) in s.iter_mut().enumerate() {
                for img in 0..labs.len() {
                    *acc += terms[f * labs.len() + img].abs();
                }
            }
        }
    }
    for s in &mut sums {
        for v in s.iter_mut() {
            *v /= labels.len().max(1) as f64;
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::labelled_images;

    /// An epoch's validation evaluation is handed on only while the weights are the ones it
    /// measured: a diverged epoch (the weights from before its failed update kept) leaves none.
    #[test]
    fn a_diverged_epoch_hands_on_no_evaluation() {
        let a = Arch::parse("4-4", 28, 28, 3).unwrap();
        let model = Model::init(&a, crate::model::Init::Glorot, 1).unwrap();
        let config = TrainConfig {
            epochs: 2,
            optimizer: crate::optim::Optimizer::sgd(0.01, 0.0),
            ..TrainConfig::default()
        };
        let ((ti, tl), (vi, vl)) = (labelled_images(64, 1), labelled_images(9, 2));
        let (train, val) = (
            Data {
                images: &ti,
                labels: &tl,
                height: 28,
                width: 28,
            },
            Data {
                images: &vi,
                labels: &vl,
                height: 28,
                width: 28,
            },
        );
        let mut t = Trainer::from_model(model, config).unwrap();
        assert!(t.epoch(&train, &val, &mut Silent).unwrap().is_some());
        assert_eq!(t.last_val, Some(evaluate(&t.model, &val, Scaling::Unit)));
        let fc = t.model.layout().fc_w.clone();
        t.model.params[fc].fill(1e38);
        assert!(
            t.epoch(&train, &val, &mut Silent).unwrap().is_none(),
            "diverged"
        );
        assert_eq!(t.last_val, None);
    }
}
