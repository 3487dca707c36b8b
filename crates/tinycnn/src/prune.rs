//! Greedy filter pruning without retraining, as the thesis did it (its Figure 3 and Tables 4,
//! 6, 7, 9-11), fast and exact.
//!
//! At each step every remaining filter of every conv layer is removed in turn (a layer keeps
//! at least one), the accuracy of the network without it is measured, and the filter whose
//! removal leaves the highest accuracy is removed for good; ties go to the lowest layer, then
//! the lowest filter number ([`Ties::One`], the thesis's own rule) or, with [`Ties::Loss`], to
//! the removal that leaves the lowest loss on the same data (then the lowest number), so that
//! while accuracy stays at 1.0 the order is decided by the network and not by filter numbers.
//! With [`Ties::Batch`] (the thesis's practice), when the best accuracy is 1.0 every removal
//! that keeps 1.0 is made in the same step. Removing a filter
//! means what KerasSurgeon did: its output channel and the next layer's weights that read it
//! disappear ([`Model::pruned`]).
//!
//! # Speed
//! A removed filter changes only what lies downstream of it. The evaluator keeps, for every
//! image, each layer's output after pooling and each deeper layer's pre-activation, and the
//! dense layer's partial sums per channel. Removing a filter of the last conv layer then drops
//! one partial sum; removing one of an earlier layer subtracts that channel's contribution
//! from the next layer's pre-activation and recomputes only what follows.
//!
//! For the usual two-stage case (candidates in the last two conv layers, the last one ReLU
//! and pooled, maps at most 16 wide), the last layer's pre-activation is kept in
//! [`crate::fused`]'s even/odd layout and a step runs image by image over every candidate
//! while the image's maps are in cache: a last-layer candidate subtracts its partial sums from
//! the logits, and a layer-(L-1) candidate goes through [`crate::fused`], which subtracts its
//! contribution, pools and applies the dense layer in registers, eight channels at a time (a
//! candidate silent on the image changes nothing and is skipped). What each layer-(L-1)
//! candidate's channels add to the logits is cached across steps until a layer-(L-1) filter
//! is removed, so a step after a last-layer removal only re-sums it. Removing a layer-(L-1)
//! filter for good is the same kernel keeping its updated maps, deferred to the next step's
//! pass over the images ([`State::pending`]) so the maps are read from memory once per step.
//!
//! # Exactness
//! The incremental sums round differently from a fresh forward pass of the smaller network,
//! by about 1e-7 relative. Accuracy depends only on which class has the largest logit, so
//! every image whose top two logits are closer than a margin far above that error (1e-4 of the
//! logit scale) is re-evaluated with the engine on the physically smaller network, chunk for
//! chunk as a full evaluation would. Every accuracy reported therefore equals that of
//! evaluating the smaller network (the tests check every cell of every table).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::arch::Activation;
use crate::error::{Error, Result};
use crate::fused::{HALF, ROW};
use crate::model::Model;
use crate::net::{Scaling, CHUNK};
use crate::train::Data;

mod pairs;
mod removals;
mod ties;
pub use pairs::{pair_removals, PairRemovals};
pub use removals::{single_removals, Removals};

/// What to do when several removals tie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ties {
    /// When the best accuracy is 1.0, remove every filter that keeps 1.0 (the thesis).
    Batch,
    /// Remove one filter per step; ties go to the lowest layer, then filter number.
    One,
    /// Remove one filter per step; ties go to the lowest loss of the smaller network on the
    /// same data (cross-entropy, exact: measured on the physically smaller network), then to
    /// the lowest number.
    Loss,
}

/// When to stop.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stop {
    /// When every layer has one filter left (the thesis).
    OnePerLayer,
    /// After the first step whose accuracy falls below this.
    Below(f64),
}

/// A filter, 0-based: `(layer, filter)` in the original network.
pub type FilterId = (usize, usize);

/// One step of the greedy search.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// Accuracy after removing each filter (aligned with [`Pruning::filters`]); `None` for a
    /// filter that is not a candidate (already removed, or the last of its layer).
    pub accuracies: Vec<Option<f64>>,
    /// The filters removed at this step.
    pub removed: Vec<FilterId>,
    /// Accuracy of the network after this step's removals.
    pub accuracy_after: f64,
}

/// The whole search.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pruning {
    /// Every filter of the original network, layer by layer.
    pub filters: Vec<FilterId>,
    /// Accuracy of the unpruned network.
    pub initial_accuracy: f64,
    pub steps: Vec<Step>,
    /// The filters left at the end, per layer.
    pub keep: Vec<Vec<bool>>,
    /// Candidate evaluations made, and images re-checked exactly because of a near tie.
    pub evaluations: usize,
    pub rechecked_images: usize,
}

/// Lanes of the register-blocked stencil in [`stencil`].
const LANES: usize = 32;

/// One input channel's contribution to one output channel, on the padded grid: `out[j] =
/// sum over taps t of taps[t] * xp[j + offset(t)]` for `j < h * pw` (the last `k - 1`
/// columns of each row are padding and ignored by callers). Blocks of [`LANES`] outputs stay
/// in registers across the taps.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn stencil(xp: &[f32], taps: &[f32], k: usize, pw: usize, plane: usize, out: &mut [f32]) {
    let mut start = 0;
    while start < plane {
        let len = LANES.min(plane - start);
        let mut a = [0.0f32; LANES];
        for dy in 0..k {
            for dx in 0..k {
                let t = taps[dy * k + dx];
                let off = start + dy * pw + dx;
                if len == LANES {
                    let x: &[f32; LANES] = xp[off..off + LANES].try_into().expect("lanes");
                    for i in 0..LANES {
                        a[i] += t * x[i];
                    }
                } else {
                    for (ai, &v) in a.iter_mut().zip(&xp[off..off + len]) {
                        *ai += t * v;
                    }
                }
            }
        }
        out[start..start + len].copy_from_slice(&a[..len]);
        start += len;
    }
}

/// ReLU then 2x2 max-pool of one channel, `z [H, W]` to `out [H/2, W/2]`, vectorised over
/// rows (the pool of ReLUs is the ReLU of the pool).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn relu_pool(z: &[f32], h: usize, w: usize, out: &mut [f32], row: &mut [f32]) {
    let (oh, ow) = (h / 2, w / 2);
    for oy in 0..oh {
        let (r0, r1) = (
            &z[2 * oy * w..2 * oy * w + 2 * ow],
            &z[(2 * oy + 1) * w..(2 * oy + 1) * w + 2 * ow],
        );
        for ((v, a), b) in row.iter_mut().zip(r0).zip(r1) {
            *v = a.max(*b);
        }
        for (o, pair) in out[oy * ow..(oy + 1) * ow]
            .iter_mut()
            .zip(row[..2 * ow].chunks_exact(2))
        {
            *o = pair[0].max(pair[1]).max(0.0);
        }
    }
}

/// Per-image cached state of the current (pruned) network, NCHW with original channel
/// indices (removed channels are ignored).
#[derive(Clone)]
struct State {
    /// Per layer below the last: output after the activation and pooling, `[n, F_l, h, w]`
    /// (the last layer's is summarised by `dp`, and not kept).
    out: Vec<Vec<f32>>,
    /// Per layer: pre-activation, `[n, F_l, H, W]` (layer 0's is not kept: nothing upstream
    /// of it is ever removed). With `eo`, the last layer's is `[n, F_L, H, ROW]` in
    /// [`crate::fused`]'s even/odd layout, the layout its kernel reads and updates.
    z: Vec<Vec<f32>>,
    /// Dense partial sums per last-layer channel, `[n, F_L, K]`.
    dp: Vec<f32>,
    /// Whether the network is the two-stage case [`crate::fused`] handles (see [`Fused`]).
    eo: bool,
    /// With `eo`: filters of layer L-1 removed (and out of `keep`) whose contributions are
    /// not yet subtracted from `z[L]` and `dp`. The next search step subtracts them in its
    /// own pass over the images, while each image's maps are in cache, instead of a pass of
    /// their own; anything else reading `z[L]` or `dp` first calls [`flush`].
    pending: Vec<usize>,
}

impl State {
    /// Floats per image of layer `l`'s cached pre-activation.
    fn z_len(&self, net: &Net, l: usize) -> usize {
        let s = net.shapes[l];
        if l == 0 {
            0
        } else if self.eo && l + 1 == net.shapes.len() {
            s.cout * s.h * crate::fused::ROW
        } else {
            s.cout * s.hw()
        }
    }
}

struct Net<'a> {
    model: &'a Model,
    /// Per layer: (cin, cout, H, W, h, w, pool).
    shapes: Vec<crate::arch::LayerShape>,
    k: usize,
    classes: usize,
    act: Activation,
}

#[inline]
fn activate(act: Activation, z: f32) -> f32 {
    match act {
        Activation::Relu => z.max(0.0),
        Activation::LeakyRelu => {
            if z > 0.0 {
                z
            } else {
                Activation::LEAKY_SLOPE * z
            }
        }
        Activation::Tanh => z.tanh(),
    }
}

impl<'a> Net<'a> {
    fn of(model: &'a Model) -> Net<'a> {
        Net {
            model,
            shapes: model.arch.layers(),
            k: model.arch.kernel,
            classes: model.arch.classes,
            act: model.arch.activation,
        }
    }

    /// Activation and pooling of one channel: `z [H, W]` to `out [h, w]` (max-pool 2x2
    /// floor, the maximum after the activation, as the engine's output).
    fn act_pool(&self, l: usize, z: &[f32], out: &mut [f32]) {
        let s = self.shapes[l];
        if s.pool && self.act == Activation::Relu {
            // A row buffer on the stack (not zeroed at this size per call: it is overwritten).
            if s.w <= 64 {
                let mut row = [0.0f32; 64];
                relu_pool(z, s.h, s.w, out, &mut row);
                return;
            }
            let mut row = vec![0.0f32; s.w];
            relu_pool(z, s.h, s.w, out, &mut row);
            return;
        }
        if !s.pool {
            for (o, &v) in out.iter_mut().zip(z) {
                *o = activate(self.act, v);
            }
            return;
        }
        for oy in 0..s.out_h {
            for ox in 0..s.out_w {
                let at =
                    |dy: usize, dx: usize| activate(self.act, z[(2 * oy + dy) * s.w + 2 * ox + dx]);
                out[oy * s.out_w + ox] = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
            }
        }
    }

    /// Adds `sign` times the contribution of input channel `ci` of layer `l` (values `x
    /// [H, W]`) to the pre-activations `z [F_l, H, W]` of the kept output channels.
    #[allow(clippy::too_many_arguments)]
    fn add_contribution(
        &self,
        l: usize,
        ci: usize,
        x: &[f32],
        keep_out: &[bool],
        sign: f32,
        z: &mut [f32],
        pad: &mut Vec<f32>,
    ) {
        let s = self.shapes[l];
        let k = self.k;
        let p = k / 2;
        let (pw, ph) = (s.w + 2 * p, s.h + 2 * p);
        let plane = s.h * pw;
        // pad: the padded input, then one channel's contribution on the padded grid.
        pad.clear();
        pad.resize(ph * pw + k + plane, 0.0);
        let (xp, cp) = pad.split_at_mut(ph * pw + k);
        for y in 0..s.h {
            xp[(y + p) * pw + p..(y + p) * pw + p + s.w]
                .copy_from_slice(&x[y * s.w..(y + 1) * s.w]);
        }
        let w = self.model.conv_weight(l);
        let hw = s.h * s.w;
        for co in (0..s.cout).filter(|&co| keep_out[co]) {
            stencil(
                xp,
                &w[(co * s.cin + ci) * k * k..][..k * k],
                k,
                pw,
                plane,
                cp,
            );
            let zc = &mut z[co * hw..(co + 1) * hw];
            for (row, full) in zc.chunks_exact_mut(s.w).zip(cp.chunks_exact(pw)) {
                for (o, &v) in row.iter_mut().zip(&full[..s.w]) {
                    *o += sign * v;
                }
            }
        }
    }

    /// The pre-activation of layer `l` (kept outputs) from its input `x [F_{l-1}, H, W]`
    /// (kept inputs), summing input channels in order.
    fn conv(
        &self,
        l: usize,
        x: &[f32],
        keep_in: &[bool],
        keep_out: &[bool],
        z: &mut [f32],
        pad: &mut Vec<f32>,
    ) {
        let s = self.shapes[l];
        let hw = s.h * s.w;
        let b = self.model.conv_bias(l);
        for co in 0..s.cout {
            z[co * hw..(co + 1) * hw].fill(if keep_out[co] { b[co] } else { 0.0 });
        }
        for ci in (0..s.cin).filter(|&ci| keep_in[ci]) {
            self.add_contribution(l, ci, &x[ci * hw..(ci + 1) * hw], keep_out, 1.0, z, pad);
        }
    }

    /// Dense partial sums of the kept last-layer channels: `out [F_L, h, w]` to `dp [F_L, K]`.
    fn dense_partials(&self, out: &[f32], keep: &[bool], dp: &mut [f32]) {
        let s = *self.shapes.last().expect("a layer");
        let hw = s.out_hw();
        let d = s.cout * hw;
        let fc = self.model.fc_weight();
        for ch in (0..s.cout).filter(|&c| keep[c]) {
            let x = &out[ch * hw..(ch + 1) * hw];
            for c in 0..self.classes {
                let w = &fc[c * d + ch * hw..][..hw];
                dp[ch * self.classes + c] = w.iter().zip(x).map(|(a, b)| a * b).sum();
            }
        }
    }

    /// Logits from partial sums, adding kept channels in order.
    fn logits(&self, dp: &[f32], keep: &[bool], out: &mut [f32]) {
        out.copy_from_slice(self.model.fc_bias());
        for (ch, _) in keep.iter().enumerate().filter(|(_, &k)| k) {
            for c in 0..self.classes {
                out[c] += dp[ch * self.classes + c];
            }
        }
    }
}

/// Scratch buffers of one thread.
#[derive(Default)]
struct Scratch {
    pad: Vec<f32>,
    z: Vec<Vec<f32>>,
    out: Vec<Vec<f32>>,
    dp: Vec<f32>,
    logits: Vec<f32>,
}

/// The prediction for one image and whether the top two logits are close enough that
/// rounding could swap them.
fn decide(logits: &[f32]) -> (usize, bool) {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    let scale = logits.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let second = logits
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != best)
        .fold(f32::NEG_INFINITY, |m, (_, &v)| m.max(v));
    (best, logits[best] - second <= 1e-4 * scale)
}

/// The search's starting state and the full network's logits `[n, K]`: one engine forward
/// pass per chunk of CHUNK images, as a full evaluation computes it (the same chunks, so the
/// same sums), each thread over a contiguous run of chunks, writing in place what the search
/// reads: the pooled outputs below the last layer, the deeper pre-activations (in the fused
/// kernel's even-odd layout when `eo`), the dense partial sums and the logits.
// A numeric kernel: one pass that scatters each chunk's buffers into the state's layouts;
// split further, the per-layer loops would pass a dozen slices around.
fn initial_state(net: &Net, data: &Data, scaling: Scaling, eo: bool) -> (State, Vec<f32>) {
    let model = net.model;
    let layers = net.shapes.len();
    let n = data.len();
    let kk = net.classes;
    let px = data.height * data.width;
    let mut st = State {
        out: Vec::new(),
        z: Vec::new(),
        dp: vec![0.0; n * net.shapes[layers - 1].cout * kk],
        eo,
        pending: Vec::new(),
    };
    let out_len: Vec<usize> = (0..layers)
        .map(|l| {
            if l + 1 < layers {
                net.shapes[l].cout * net.shapes[l].out_hw()
            } else {
                0
            }
        })
        .collect();
    let z_len: Vec<usize> = (0..layers).map(|l| st.z_len(net, l)).collect();
    st.out = out_len.iter().map(|&u| vec![0.0; n * u]).collect();
    st.z = z_len.iter().map(|&u| vec![0.0; n * u]).collect();
    let mut initial_logits = vec![0.0f32; n * kk];
    let chunks = n.div_ceil(CHUNK);
    let per = chunks.div_ceil(rayon::current_num_threads().max(1)).max(1) * CHUNK;
    let runs = n.div_ceil(per);
    /// One thread's run of images and the parts of the state it fills.
    struct Run<'a> {
        images: &'a [u8],
        out: Vec<&'a mut [f32]>,
        z: Vec<&'a mut [f32]>,
        dp: &'a mut [f32],
        logits: &'a mut [f32],
    }
    /// `v` in runs of `per` images of `unit` floats (empty parts where there is nothing).
    fn split(
        v: &mut [f32],
        unit: usize,
        per: usize,
        runs: usize,
    ) -> std::vec::IntoIter<&mut [f32]> {
        let mut parts: Vec<&mut [f32]> = if unit == 0 {
            Vec::new()
        } else {
            v.chunks_mut(per * unit).collect()
        };
        parts.resize_with(runs, Default::default);
        parts.into_iter()
    }
    let mut out_parts: Vec<_> = (st.out.iter_mut().zip(&out_len))
        .map(|(v, &u)| split(v, u, per, runs))
        .collect();
    let mut z_parts: Vec<_> = (st.z.iter_mut().zip(&z_len))
        .map(|(v, &u)| split(v, u, per, runs))
        .collect();
    let work: Vec<Run> = data
        .images
        .chunks(per * px)
        .zip(st.dp.chunks_mut(per * net.shapes[layers - 1].cout * kk))
        .zip(initial_logits.chunks_mut(per * kk))
        .map(|((images, dp), logits)| Run {
            images,
            out: out_parts
                .iter_mut()
                .map(|p| p.next().expect("a part"))
                .collect(),
            z: z_parts
                .iter_mut()
                .map(|p| p.next().expect("a part"))
                .collect(),
            dp,
            logits,
        })
        .collect();
    let keep_all = vec![true; net.shapes[layers - 1].cout];
    work.into_par_iter().for_each(|mut run| {
        let mut ws = crate::net::Workspace::inference(&model.arch, CHUNK);
        let s_last = net.shapes[layers - 1];
        let mut pooled = vec![0.0f32; s_last.cout * s_last.out_hw()];
        let dpn = s_last.cout * kk;
        for (c, im) in run.images.chunks(CHUNK * px).enumerate() {
            ws.load(im, scaling);
            ws.forward(model, false);
            let (b, base) = (ws.b, c * CHUNK);
            // CNHW chunk buffers to the state's layouts.
            for (l, s) in net.shapes.iter().enumerate() {
                let (hw, ohw) = (s.hw(), s.out_hw());
                let out = ws.layer_out(l);
                for img in 0..b {
                    let at = base + img;
                    if l + 1 < layers {
                        let dst = &mut run.out[l][at * out_len[l]..(at + 1) * out_len[l]];
                        for (ch, d) in dst.chunks_exact_mut(ohw).enumerate() {
                            d.copy_from_slice(&out[(ch * b + img) * ohw..][..ohw]);
                        }
                    }
                    // Layer 0's pre-activation is never needed (nothing lies before it);
                    // its dense partial sums are, when it is the last layer.
                    if l > 0 {
                        let dst = &mut run.z[l][at * z_len[l]..(at + 1) * z_len[l]];
                        if eo && l + 1 == layers {
                            let row = crate::fused::ROW;
                            for (ch, d) in dst.chunks_exact_mut(s.h * row).enumerate() {
                                let src = &ws.pre[l][(ch * b + img) * hw..][..hw];
                                for (dr, sr) in d.chunks_exact_mut(row).zip(src.chunks_exact(s.w)) {
                                    dr.copy_from_slice(&crate::fused::even_odd(sr));
                                }
                            }
                        } else {
                            for (ch, d) in dst.chunks_exact_mut(hw).enumerate() {
                                d.copy_from_slice(&ws.pre[l][(ch * b + img) * hw..][..hw]);
                            }
                        }
                    }
                    if l + 1 == layers {
                        for (ch, d) in pooled.chunks_exact_mut(ohw).enumerate() {
                            d.copy_from_slice(&out[(ch * b + img) * ohw..][..ohw]);
                        }
                        net.dense_partials(
                            &pooled,
                            &keep_all,
                            &mut run.dp[at * dpn..(at + 1) * dpn],
                        );
                    }
                }
            }
            run.logits[base * kk..(base + b) * kk].copy_from_slice(&ws.logits[..b * kk]);
        }
    });
    (st, initial_logits)
}

/// Predictions `(class, near tie)` of every image by the network `keep` without `cand`, by
/// the incremental path.
fn predictions(
    net: &Net,
    st: &State,
    keep: &[Vec<bool>],
    cand: &[FilterId],
    n: usize,
) -> Vec<(usize, bool)> {
    let mut k2 = keep.to_vec();
    for &(l, f) in cand {
        k2[l][f] = false;
    }
    let first = cand.iter().map(|c| c.0).min().expect("a candidate");
    (0..n)
        .into_par_iter()
        .map_init(Scratch::default, |sc, i| {
            predict_one(net, st, &k2, first, cand, i, sc);
            decide(&sc.logits)
        })
        .collect()
}

/// Accuracy from predictions, re-checking the near ties with the engine on the physically
/// smaller network (`keep` without `cand`), chunk for chunk as a full evaluation computes
/// them; counts the images re-checked in `rechecked`.
fn certify(
    model: &Model,
    data: &Data,
    scaling: Scaling,
    keep: &[Vec<bool>],
    cand: &[FilterId],
    preds: &[(usize, bool)],
    rechecked: &std::sync::atomic::AtomicUsize,
) -> Result<f64> {
    let classes = certified(model, data, scaling, (keep, cand), preds, rechecked)?;
    let correct = classes
        .iter()
        .zip(data.labels)
        .filter(|&(&p, &y)| p == y as usize)
        .count();
    Ok(correct as f64 / data.len() as f64)
}

/// The predicted class of every image of `data` by the network `keep` without `cand`, from
/// the incremental predictions `preds`, the near ties re-checked as [`certify`] does.
fn certified(
    model: &Model,
    data: &Data,
    scaling: Scaling,
    (keep, cand): (&[Vec<bool>], &[FilterId]),
    preds: &[(usize, bool)],
    rechecked: &std::sync::atomic::AtomicUsize,
) -> Result<Vec<usize>> {
    let (n, kk, px) = (data.len(), model.arch.classes, data.height * data.width);
    let mut classes: Vec<usize> = preds.iter().map(|p| p.0).collect();
    let uncertain: Vec<usize> = (0..n).filter(|&i| preds[i].1).collect();
    if !uncertain.is_empty() {
        rechecked.fetch_add(uncertain.len(), std::sync::atomic::Ordering::Relaxed);
        let mut k2 = keep.to_vec();
        for &(l, f) in cand {
            k2[l][f] = false;
        }
        let small = model.pruned(&k2)?;
        let mut chunks: Vec<usize> = uncertain.iter().map(|&i| i / CHUNK).collect();
        chunks.dedup();
        for c in chunks {
            // The whole chunk, as a full evaluation computes it.
            let (a, b) = (c * CHUNK, ((c + 1) * CHUNK).min(n));
            let sub = Data {
                images: &data.images[a * px..b * px],
                labels: &data.labels[a..b],
                height: data.height,
                width: data.width,
            };
            let l = crate::train::logits(&small, &sub, scaling);
            for (j, row) in l.chunks(kk).enumerate() {
                classes[a + j] = crate::train::prediction(row);
            }
        }
    }
    Ok(classes)
}

/// Of the candidates `tied` (in `(layer, filter)` order), the one whose removal from the
/// network `keep` leaves the lowest loss on `data`; the first of equal losses. Each loss is
/// the engine's evaluation of the smaller network ([`ties`]).
fn lowest_loss(
    model: &Model,
    data: &Data,
    scaling: Scaling,
    keep: &[Vec<bool>],
    tied: &[FilterId],
) -> Result<FilterId> {
    // The network `keep` is, with the tied filters numbered within it.
    let current = model.pruned(keep)?;
    let within: Vec<FilterId> = tied
        .iter()
        .map(|&(l, f)| (l, keep[l][..f].iter().filter(|&&k| k).count()))
        .collect();
    let losses = ties::losses_without(&current, &within, data, scaling)?;
    let mut best = 0;
    for (i, &v) in losses.iter().enumerate() {
        if v < losses[best] {
            best = i;
        }
    }
    Ok(tied[best])
}

/// Greedy pruning of `model` on `data`.
pub fn greedy(
    model: &Model,
    data: &Data,
    scaling: Scaling,
    ties: Ties,
    stop: Stop,
) -> Result<Pruning> {
    greedy_observed(model, data, scaling, (ties, stop), &|_| {})
}

/// [`greedy`], telling `on_step` after each step how many filters are gone so far (at most
/// the sum over layers of `filters - 1`), for a progress display: with loss ties, a 32-32 at
/// 100% accuracy takes about a minute.
pub fn greedy_observed(
    model: &Model,
    data: &Data,
    scaling: Scaling,
    (ties, stop): (Ties, Stop),
    on_step: &dyn Fn(usize),
) -> Result<Pruning> {
    data.check(&model.arch, "pruning")?;
    if data.is_empty() {
        return Err(Error::Data("no images to measure accuracy on".into()));
    }
    if model.arch.filters.iter().all(|&f| f == 1) {
        return Err(Error::Arch(format!(
            "{} is already minimal: every layer has one filter",
            model.arch.label()
        )));
    }
    let net = Net::of(model);
    let layers = net.shapes.len();
    let n = data.len();
    let kk = net.classes;
    let mut keep = model.arch.keep_all();

    let fused = Fused::new(&net);
    let (mut st, initial_logits) = initial_state(&net, data, scaling, fused.is_some());

    let filters: Vec<FilterId> = (0..layers)
        .flat_map(|l| (0..net.shapes[l].cout).map(move |f| (l, f)))
        .collect();
    // These are the engine's evaluation logits (same forward, same chunks).
    let initial_accuracy =
        crate::train::Evaluation::of_logits(&initial_logits, data.labels, kk).accuracy;
    let mut terms = TermCache::new(&net, n);
    let mut steps = Vec::new();
    let mut evaluations = 0;
    let rechecked = std::sync::atomic::AtomicUsize::new(0);

    let predictions =
        |st: &State, keep: &[Vec<bool>], cand: &[FilterId]| predictions(&net, st, keep, cand, n);
    let certify = |keep: &[Vec<bool>], cand: &[FilterId], preds: &[(usize, bool)]| {
        certify(model, data, scaling, keep, cand, preds, &rechecked)
    };
    let accuracy_without = |st: &State, keep: &[Vec<bool>], cand: &[FilterId]| -> Result<f64> {
        certify(keep, cand, &predictions(st, keep, cand))
    };

    while keep.iter().any(|k| k.iter().filter(|&&x| x).count() > 1) {
        let candidates: Vec<FilterId> = filters
            .iter()
            .copied()
            .filter(|&(l, f)| keep[l][f] && keep[l].iter().filter(|&&x| x).count() > 1)
            .collect();
        let mut accuracies = vec![None; filters.len()];
        let mut best: Option<(f64, FilterId)> = None;
        let all = step_predictions(
            &net,
            &mut st,
            fused.as_ref(),
            &keep,
            &candidates,
            &mut terms,
        );
        for (&c, preds) in candidates.iter().zip(&all) {
            let acc = certify(&keep, &[c], preds)?;
            evaluations += 1;
            let idx = filters.iter().position(|&x| x == c).expect("a filter");
            accuracies[idx] = Some(acc);
            if best.is_none_or(|(b, _)| acc > b) {
                best = Some((acc, c));
            }
        }
        let (best_acc, mut best_id) = best.expect("at least one candidate");
        if ties == Ties::Loss {
            let tied: Vec<FilterId> = candidates
                .iter()
                .copied()
                .filter(|c| {
                    accuracies[filters.iter().position(|x| x == c).expect("a filter")]
                        == Some(best_acc)
                })
                .collect();
            if tied.len() > 1 {
                best_id = lowest_loss(model, data, scaling, &keep, &tied)?;
            }
        }
        let mut removed = vec![best_id];
        let mut accuracy_after = best_acc;
        if ties == Ties::Batch && best_acc >= 1.0 {
            // Every removal that keeps 1.0, in (layer, filter) order, never emptying a layer.
            removed.clear();
            let mut k2 = keep.clone();
            for (i, &c) in filters.iter().enumerate() {
                if accuracies[i] == Some(1.0) && k2[c.0].iter().filter(|&&x| x).count() > 1 {
                    k2[c.0][c.1] = false;
                    removed.push(c);
                }
            }
            if removed.len() > 1 {
                flush(&net, &mut st, fused.as_ref(), &keep);
                accuracy_after = accuracy_without(&st, &keep, &removed)?;
            }
        }
        for &(l, f) in &removed {
            apply_removal(&net, &mut st, fused.as_ref(), &mut keep, l, f);
            if l + 1 < layers {
                terms.valid = false; // the last layer's pre-activations changed
            }
        }
        steps.push(Step {
            accuracies,
            removed,
            accuracy_after,
        });
        on_step(steps.iter().map(|s| s.removed.len()).sum());
        if let Stop::Below(x) = stop {
            if accuracy_after < x {
                break;
            }
        }
    }
    Ok(Pruning {
        filters,
        initial_accuracy,
        steps,
        keep,
        evaluations,
        rechecked_images: rechecked.into_inner(),
    })
}

/// Per image, per candidate filter `f` of layer L-1 and per channel `co` of the last conv
/// layer: what channel `co` adds to the logits once `f` is removed, `[n, F_{L-1}, F_L, K]`.
/// It depends on the last layer's pre-activation (changed by removing a layer L-1 filter)
/// and on `f`, not on which last-layer channels remain, so after a last-layer removal the
/// candidates' logits are re-summed from the cache instead of recomputed, in the same channel
/// order and so bit for bit the same. Only kept when it fits [`TermCache::BUDGET`].
struct TermCache {
    terms: Vec<f32>,
    valid: bool,
}

impl TermCache {
    /// Largest cache kept, in floats (64 MiB).
    const BUDGET: usize = 16 << 20;

    fn new(net: &Net, n: usize) -> TermCache {
        let layers = net.shapes.len();
        let size = if layers >= 2 {
            n * net.shapes[layers - 2].cout * net.shapes[layers - 1].cout * net.classes
        } else {
            0
        };
        TermCache {
            terms: if size <= Self::BUDGET {
                vec![0.0; size]
            } else {
                Vec::new()
            },
            valid: false,
        }
    }
}

/// The two-stage case [`crate::fused`] handles: the last conv layer ReLU and pooled, at most
/// [`ROW`] wide and high, an odd kernel, at most 16 classes, and a layer before it. Holds the
/// dense weights in the kernel's layout.
struct Fused {
    /// `[F_L, K, h/2, HALF]`: per last-layer channel, class and pooled row, zero-padded.
    fc: Vec<f32>,
    fc_len: usize,
    /// Zeros standing in for an unused slot's pre-activation.
    zero_z: Vec<f32>,
}

impl Fused {
    fn new(net: &Net) -> Option<Fused> {
        let layers = net.shapes.len();
        let s = *net.shapes.last()?;
        if layers < 2
            || net.classes > 16
            || net.act != Activation::Relu
            || !s.pool
            || s.w > ROW
            || s.h > ROW
            || net.k.is_multiple_of(2)
            || net.k > 15
        {
            return None;
        }
        let kk = net.classes;
        let d = s.cout * s.out_hw();
        let fcw = net.model.fc_weight();
        let fc_len = kk * s.out_h * HALF;
        let mut fc = vec![0.0f32; s.cout * fc_len];
        for co in 0..s.cout {
            for c in 0..kk {
                for oy in 0..s.out_h {
                    let src = &fcw[c * d + co * s.out_hw() + oy * s.out_w..][..s.out_w];
                    fc[co * fc_len + (c * s.out_h + oy) * HALF..][..s.out_w].copy_from_slice(src);
                }
            }
        }
        Some(Fused {
            fc,
            fc_len,
            zero_z: vec![0.0; s.h * ROW],
        })
    }

    /// The kernel on channel group `g` with filter `f` of layer L-1 removed, for one image:
    /// `z [F_L, H, ROW]` its last-layer pre-activation (even/odd), `xr` the removed channel
    /// from [`crate::fused::input_rows`]. Writes each slot's class sums to `out`; with `znew`
    /// (empty, or `[8, H, ROW]`) the updated pre-activations too.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        net: &Net,
        groups: &Groups,
        g: usize,
        f: usize,
        z: &[f32],
        xr: &[f32],
        znew: &mut [f32],
        out: &mut [[f32; 16]; 8],
    ) {
        let chans = &groups.chans[g];
        let taps =
            &groups.taps[f * groups.per_f + groups.offsets[g]..][..net.k * net.k * chans.len()];
        let fc = &groups.fc[g];
        if chans.len() == 8 {
            self.run_group::<8>(net, chans, z, xr, taps, fc, znew, out);
        } else {
            self.run_group::<4>(net, chans, z, xr, taps, fc, znew, out);
        }
    }

    /// [`Fused::run`] for a group of `B` channels, writing `out[..B]`.
    #[allow(clippy::too_many_arguments)]
    fn run_group<const B: usize>(
        &self,
        net: &Net,
        chans: &[Option<usize>],
        z: &[f32],
        xr: &[f32],
        taps: &[f32],
        fc: &[f32],
        znew: &mut [f32],
        out: &mut [[f32; 16]; 8],
    ) {
        let s = *net.shapes.last().expect("a layer");
        let zlen = s.h * ROW;
        let zn = if znew.is_empty() {
            znew
        } else {
            &mut znew[..B * zlen]
        };
        let slots: &mut [[f32; 16]; B] = (&mut out[..B]).try_into().expect("B <= 8");
        crate::fused::block::<B>(
            std::array::from_fn(|b| {
                chans[b].map_or(self.zero_z.as_slice(), |co| &z[co * zlen..(co + 1) * zlen])
            }),
            xr,
            taps,
            net.k,
            s.h,
            fc,
            net.classes,
            slots,
            zn,
        );
    }
}

/// The kept channels of the last layer in ascending order, in groups for the kernel: eights,
/// and a four when at most four remain (`None`: an unused slot); with every layer-(L-1)
/// filter's weights into them, and their dense weights in pairs ([`crate::fused::pair_dense`]).
struct Groups {
    chans: Vec<Vec<Option<usize>>>,
    fc: Vec<Vec<f32>>,
    /// `[F_{L-1}, per_f]`: per filter, group by group, `[k * k, group size]`.
    taps: Vec<f32>,
    offsets: Vec<usize>,
    per_f: usize,
}

impl Groups {
    fn new(net: &Net, fused: &Fused, keep_last: &[bool]) -> Groups {
        let last = net.shapes.len() - 1;
        let (s, prev) = (net.shapes[last], net.shapes[last - 1]);
        let kt = net.k * net.k;
        let kept: Vec<usize> = (0..s.cout).filter(|&co| keep_last[co]).collect();
        let mut chans = Vec::new();
        let mut rest = kept.as_slice();
        while !rest.is_empty() {
            let size = if rest.len() > 4 { 8 } else { 4 };
            let take = rest.len().min(size);
            chans.push(
                (0..size)
                    .map(|j| rest[..take].get(j).copied())
                    .collect::<Vec<_>>(),
            );
            rest = &rest[take..];
        }
        let offsets: Vec<usize> = chans
            .iter()
            .scan(0, |at, c: &Vec<Option<usize>>| {
                let here = *at;
                *at += kt * c.len();
                Some(here)
            })
            .collect();
        let per_f = chans.iter().map(|c| kt * c.len()).sum();
        let w2 = net.model.conv_weight(last);
        let mut taps = vec![0.0f32; prev.cout * per_f];
        for f in 0..prev.cout {
            for (c, &off) in chans.iter().zip(&offsets) {
                let tb = &mut taps[f * per_f + off..][..kt * c.len()];
                for t in 0..kt {
                    for (b, co) in c.iter().enumerate() {
                        tb[t * c.len() + b] = co.map_or(0.0, |co| w2[(co * s.cin + f) * kt + t]);
                    }
                }
            }
        }
        let fc = chans
            .iter()
            .map(|c| {
                let w = |b: usize| {
                    c[b].map_or(&[][..], |co| {
                        &fused.fc[co * fused.fc_len..(co + 1) * fused.fc_len]
                    })
                };
                if c.len() == 8 {
                    crate::fused::pair_dense::<8>(std::array::from_fn(w), net.classes, s.h)
                } else {
                    crate::fused::pair_dense::<4>(std::array::from_fn(w), net.classes, s.h)
                }
            })
            .collect();
        Groups {
            chans,
            fc,
            taps,
            offsets,
            per_f,
        }
    }
}

/// Every candidate's predictions `[candidates][n]` from the state `st` of the network
/// `keep`: image by image in one pass where the network allows ([`fast_step`]), else
/// candidate by candidate after applying what is pending.
fn step_predictions(
    net: &Net,
    st: &mut State,
    fused: Option<&Fused>,
    keep: &[Vec<bool>],
    candidates: &[FilterId],
    terms: &mut TermCache,
) -> Vec<Vec<(usize, bool)>> {
    if let Some(all) = fast_step(net, st, fused, keep, candidates, terms) {
        return all;
    }
    flush(net, st, fused, keep);
    let n = st.dp.len() / (net.shapes[net.shapes.len() - 1].cout * net.classes);
    candidates
        .iter()
        .map(|&c| predictions(net, st, keep, &[c], n))
        .collect()
}

/// Predictions of every single-filter candidate, image by image (the image's cached state and
/// the layer's inputs stay in cache across its candidates). `None` when the network is not
/// the two-stage case [`Fused`] or a candidate lies below layer L-1.
fn fast_step(
    net: &Net,
    st: &mut State,
    fused: Option<&Fused>,
    keep: &[Vec<bool>],
    candidates: &[FilterId],
    cache: &mut TermCache,
) -> Option<Vec<Vec<(usize, bool)>>> {
    let fused = fused?;
    let layers = net.shapes.len();
    let last = layers - 1;
    if candidates.iter().any(|c| c.0 + 1 < last) {
        return None;
    }
    let m = last;
    let s = net.shapes[m];
    let prev = net.shapes[m - 1];
    let k = net.k;
    let kk = net.classes;
    let n = st.dp.len() / (s.cout * kk);
    let (zz, o_in, hw_in) = (st.z_len(net, m), prev.cout * prev.out_hw(), prev.out_hw());
    debug_assert!(st.eo);
    let groups = Groups::new(net, fused, &keep[m]);
    let kept: Vec<usize> = (0..s.cout).filter(|&co| keep[m][co]).collect();
    let per_f = s.cout * kk;
    let per_img = prev.cout * per_f;
    let (use_cache, reuse) = (!cache.terms.is_empty(), cache.valid);
    // Without a cache, one unused float per image keeps the iteration the same.
    let mut unused = vec![0.0f32; if use_cache { 0 } else { n }];
    let (terms, chunk): (&mut [f32], usize) = if use_cache {
        (&mut cache.terms, per_img)
    } else {
        (&mut unused, 1)
    };
    let zlen = s.h * ROW;
    let pending = std::mem::take(&mut st.pending);
    let mut bias = [0.0f32; 16];
    bias[..kk].copy_from_slice(net.model.fc_bias());
    let per_image: Vec<Vec<(usize, bool)>> = terms
        .par_chunks_mut(chunk)
        .zip(st.z[m].par_chunks_mut(zz))
        .zip(st.dp.par_chunks_mut(s.cout * kk))
        .zip(st.out[m - 1].par_chunks(o_in))
        .map_init(
            || {
                let znew = vec![0.0f32; if pending.is_empty() { 0 } else { 8 * zlen }];
                (Vec::new(), znew, [[0.0f32; 16]; 8])
            },
            |(xr, znew, out), (((term, z), dp), x)| {
                if !pending.is_empty() {
                    apply_pending(net, fused, &groups, &pending, z, dp, x, xr, znew, out);
                }
                let (z, dp) = (&*z, &*dp);
                // Logits of the current network; a last-layer candidate only takes its partial
                // sums away (rounding differs from re-summing: certified like the rest).
                // (Logits in fixed-size arrays, K <= 16: their copies are a few vector moves,
                // not library calls, in a loop run for every image and candidate.)
                let mut total = [0.0f32; 16];
                net.logits(dp, &keep[last], &mut total[..kk]);
                candidates
                    .iter()
                    .map(|&(l, f)| {
                        let mut logits = bias;
                        if l == last {
                            for c in 0..kk {
                                logits[c] = total[c] - dp[f * kk + c];
                            }
                        } else if reuse {
                            let t = &term[f * per_f..(f + 1) * per_f];
                            for &co in &kept {
                                for c in 0..kk {
                                    logits[c] += t[co * kk + c];
                                }
                            }
                        } else if x[f * hw_in..(f + 1) * hw_in].iter().all(|&v| v == 0.0) {
                            // The filter is silent on this image: removing it changes nothing,
                            // and every channel adds what it adds now.
                            logits = total;
                            if use_cache {
                                for &co in &kept {
                                    term[f * per_f + co * kk..][..kk]
                                        .copy_from_slice(&dp[co * kk..(co + 1) * kk]);
                                }
                            }
                        } else {
                            let xf = &x[f * hw_in..(f + 1) * hw_in];
                            crate::fused::input_rows(xf, prev.out_h, prev.out_w, k, xr);
                            // Channels in ascending order, as the cached path sums them.
                            for (g, chans) in groups.chans.iter().enumerate() {
                                fused.run(net, &groups, g, f, z, xr, &mut [], out);
                                for (b, co) in chans.iter().enumerate() {
                                    let Some(co) = *co else { continue };
                                    if use_cache {
                                        let t = &mut term[f * per_f + co * kk..][..kk];
                                        for (c, t) in t.iter_mut().enumerate() {
                                            logits[c] += out[b][c];
                                            *t = out[b][c];
                                        }
                                    } else {
                                        for c in 0..kk {
                                            logits[c] += out[b][c];
                                        }
                                    }
                                }
                            }
                        }
                        decide(&logits[..kk])
                    })
                    .collect()
            },
        )
        .collect();
    cache.valid = use_cache;
    // Transpose to per candidate.
    Some(
        (0..candidates.len())
            .map(|j| per_image.iter().map(|v| v[j]).collect())
            .collect(),
    )
}

/// Computes image `i`'s logits into `sc.logits` for the network `keep` (the current network
/// without `cand`), recomputing from layer `first`.
fn predict_one(
    net: &Net,
    st: &State,
    keep: &[Vec<bool>],
    first: usize,
    cand: &[FilterId],
    i: usize,
    sc: &mut Scratch,
) {
    let layers = net.shapes.len();
    let kk = net.classes;
    sc.logits.resize(kk, 0.0);
    let last = layers - 1;
    let s_last = net.shapes[last];
    let dpn = s_last.cout * kk;
    if first == last {
        // Only last-layer filters go: drop their partial sums.
        net.logits(&st.dp[i * dpn..(i + 1) * dpn], &keep[last], &mut sc.logits);
        return;
    }
    if sc.z.len() != layers {
        sc.z = net
            .shapes
            .iter()
            .map(|s| vec![0.0; s.cout * s.hw()])
            .collect();
        sc.out = net
            .shapes
            .iter()
            .map(|s| vec![0.0; s.cout * s.out_hw()])
            .collect();
    }
    sc.dp.resize(dpn, 0.0);
    // Layer first+1: the cached pre-activation minus the removed channels' contributions.
    let m = first + 1;
    let s = net.shapes[m];
    let zz = st.z_len(net, m);
    let cached = &st.z[m][i * zz..(i + 1) * zz];
    if st.eo && m == last {
        for (row, eo) in sc.z[m].chunks_exact_mut(s.w).zip(cached.chunks_exact(ROW)) {
            crate::fused::from_even_odd(eo, row);
        }
    } else {
        sc.z[m].copy_from_slice(cached);
    }
    let sp = net.shapes[first];
    let o = sp.cout * sp.out_hw();
    let prev = &st.out[first][i * o..(i + 1) * o];
    let hw_in = sp.out_hw();
    for &(_, f) in cand.iter().filter(|c| c.0 == first) {
        let (z, pad) = (&mut sc.z[m], &mut sc.pad);
        net.add_contribution(
            m,
            f,
            &prev[f * hw_in..(f + 1) * hw_in],
            &keep[m],
            -1.0,
            z,
            pad,
        );
    }
    let hw = s.hw();
    let ohw = s.out_hw();
    for co in (0..s.cout).filter(|&co| keep[m][co]) {
        let (zc, oc) = (
            &sc.z[m][co * hw..(co + 1) * hw],
            &mut sc.out[m][co * ohw..(co + 1) * ohw],
        );
        net.act_pool(m, zc, oc);
    }
    // Deeper layers, in full.
    for l in m + 1..layers {
        let s = net.shapes[l];
        let (before, after) = sc.out.split_at_mut(l);
        let (z, pad) = (&mut sc.z[l], &mut sc.pad);
        net.conv(l, &before[l - 1], &keep[l - 1], &keep[l], z, pad);
        let (hw, ohw) = (s.hw(), s.out_hw());
        for co in (0..s.cout).filter(|&co| keep[l][co]) {
            net.act_pool(
                l,
                &sc.z[l][co * hw..(co + 1) * hw],
                &mut after[0][co * ohw..(co + 1) * ohw],
            );
        }
    }
    net.dense_partials(&sc.out[last], &keep[last], &mut sc.dp);
    net.logits(&sc.dp, &keep[last], &mut sc.logits);
}

/// Removes filter `f` of layer `l` for good, updating every image's cached state.
// A numeric kernel, long on purpose: the subtraction of the filter's contribution from each
// cached layout (plain, even-odd, dense partials) in one pass per image.
fn apply_removal(
    net: &Net,
    st: &mut State,
    fused: Option<&Fused>,
    keep: &mut [Vec<bool>],
    l: usize,
    f: usize,
) {
    keep[l][f] = false;
    let layers = net.shapes.len();
    let last = layers - 1;
    if l == last {
        return; // its partial sums are simply no longer added
    }
    let kk = net.classes;
    let s_last = net.shapes[last];
    let dpn = s_last.cout * kk;
    let m = l + 1;
    let sp = net.shapes[l];
    let (o, hw_in) = (sp.cout * sp.out_hw(), sp.out_hw());
    let keep_ref: &[Vec<bool>] = keep;
    if m == last && fused.is_some() {
        // Subtracted by the next step's pass over the images, or by [`flush`].
        st.pending.push(f);
        return;
    }
    // Every other path recomputes or updates the last layer in full, reading `keep`: a
    // pending removal is then included (it is out of `keep`) and must not be applied again.
    debug_assert!(st.pending.is_empty() || m < last);
    st.pending.clear();
    // The last layer's pre-activation `z [F_L, H, W]` (NCHW) to its dense partial sums.
    let finish = |z: &[f32], pooled: &mut Vec<f32>, dp: &mut [f32]| {
        let (hw, ohw) = (s_last.hw(), s_last.out_hw());
        pooled.resize(s_last.cout * ohw, 0.0);
        for co in (0..s_last.cout).filter(|&co| keep_ref[last][co]) {
            net.act_pool(
                last,
                &z[co * hw..(co + 1) * hw],
                &mut pooled[co * ohw..(co + 1) * ohw],
            );
        }
        net.dense_partials(pooled, &keep_ref[last], dp);
    };
    if m == last {
        // Subtract the removed channel's contribution, then re-sum.
        let zz = st.z_len(net, last);
        st.z[last]
            .par_chunks_mut(zz)
            .zip(st.out[l].par_chunks(o))
            .zip(st.dp.par_chunks_mut(dpn))
            .for_each_init(
                || (Vec::new(), Vec::new()),
                |(pad, pooled), ((z, prev), dp)| {
                    let xf = &prev[f * hw_in..(f + 1) * hw_in];
                    net.add_contribution(m, f, xf, &keep_ref[m], -1.0, z, pad);
                    finish(z, pooled, dp);
                },
            );
        return;
    }
    let s = net.shapes[m];
    let (zz, ohw, hw) = (s.cout * s.hw(), s.out_hw(), s.hw());
    let (zz_last, eo) = (st.z_len(net, last), st.eo);
    let (outs_before, outs_after) = st.out.split_at_mut(m);
    let prev_all = &outs_before[l];
    // Layer m, per image in one pass while its maps are in cache: subtract the removed
    // channel's contribution, then recompute this layer's output.
    st.z[m]
        .par_chunks_mut(zz)
        .zip(prev_all.par_chunks(o))
        .zip(outs_after[0].par_chunks_mut(s.cout * ohw))
        .for_each_init(Vec::new, |pad, ((z, prev), out)| {
            net.add_contribution(
                m,
                f,
                &prev[f * hw_in..(f + 1) * hw_in],
                &keep_ref[m],
                -1.0,
                z,
                pad,
            );
            for co in (0..s.cout).filter(|&co| keep_ref[m][co]) {
                net.act_pool(
                    m,
                    &z[co * hw..(co + 1) * hw],
                    &mut out[co * ohw..(co + 1) * ohw],
                );
            }
        });
    // Deeper layers in full; the last one to its cached pre-activation and partial sums.
    for ll in m + 1..layers {
        let s = net.shapes[ll];
        let sp = net.shapes[ll - 1];
        let o_in = sp.cout * sp.out_hw();
        let (ins, outs) = outs_after.split_at_mut(ll - m);
        let input = &ins[ll - m - 1];
        if ll == last {
            st.z[last]
                .par_chunks_mut(zz_last)
                .zip(input.par_chunks(o_in))
                .zip(st.dp.par_chunks_mut(dpn))
                .for_each_init(
                    || (Vec::new(), Vec::new(), vec![0.0f32; s.cout * s.hw()]),
                    |(pad, pooled, zs), ((z, x), dp)| {
                        net.conv(ll, x, &keep_ref[ll - 1], &keep_ref[ll], zs, pad);
                        if eo {
                            for (d, src) in z.chunks_exact_mut(ROW).zip(zs.chunks_exact(s.w)) {
                                d.copy_from_slice(&crate::fused::even_odd(src));
                            }
                        } else {
                            z.copy_from_slice(zs);
                        }
                        finish(zs, pooled, dp);
                    },
                );
            break;
        }
        let (zz, ohw, hw) = (s.cout * s.hw(), s.out_hw(), s.hw());
        st.z[ll]
            .par_chunks_mut(zz)
            .zip(input.par_chunks(o_in))
            .zip(outs[0].par_chunks_mut(s.cout * ohw))
            .for_each_init(Vec::new, |pad, ((z, x), out)| {
                net.conv(ll, x, &keep_ref[ll - 1], &keep_ref[ll], z, pad);
                for co in (0..s.cout).filter(|&co| keep_ref[ll][co]) {
                    net.act_pool(
                        ll,
                        &z[co * hw..(co + 1) * hw],
                        &mut out[co * ohw..(co + 1) * ohw],
                    );
                }
            });
    }
}

/// Subtracts the pending removals' contributions from one image's last-layer
/// pre-activation `z [F_L, H, ROW]` (even/odd) and re-sums its dense partials `dp [F_L, K]`:
/// the kernel the search ran for each of those candidates, now keeping the updated maps.
/// `x [F_{L-1}, h, w]` is the image's input to the last layer; `znew [8, H, ROW]` scratch.
#[allow(clippy::too_many_arguments)]
fn apply_pending(
    net: &Net,
    fu: &Fused,
    groups: &Groups,
    pending: &[usize],
    z: &mut [f32],
    dp: &mut [f32],
    x: &[f32],
    xr: &mut Vec<f32>,
    znew: &mut [f32],
    out: &mut [[f32; 16]; 8],
) {
    let last = net.shapes.len() - 1;
    let (s, sp) = (net.shapes[last], net.shapes[last - 1]);
    let (zlen, hw_in, kk) = (s.h * ROW, sp.out_hw(), net.classes);
    for &f in pending {
        crate::fused::input_rows(
            &x[f * hw_in..(f + 1) * hw_in],
            sp.out_h,
            sp.out_w,
            net.k,
            xr,
        );
        for (g, chans) in groups.chans.iter().enumerate() {
            fu.run(net, groups, g, f, z, xr, znew, out);
            for (b, co) in chans.iter().enumerate() {
                let Some(co) = *co else { continue };
                z[co * zlen..(co + 1) * zlen].copy_from_slice(&znew[b * zlen..(b + 1) * zlen]);
                dp[co * kk..(co + 1) * kk].copy_from_slice(&out[b][..kk]);
            }
        }
    }
}

/// Applies the pending removals (see [`State::pending`]) in a pass of their own, for the
/// paths that read the state other than [`fast_step`].
fn flush(net: &Net, st: &mut State, fused: Option<&Fused>, keep: &[Vec<bool>]) {
    let Some(fu) = fused else { return };
    if st.pending.is_empty() {
        return;
    }
    let pending = std::mem::take(&mut st.pending);
    let last = net.shapes.len() - 1;
    let (s, sp) = (net.shapes[last], net.shapes[last - 1]);
    let groups = Groups::new(net, fu, &keep[last]);
    let zz = st.z_len(net, last);
    st.z[last]
        .par_chunks_mut(zz)
        .zip(st.dp.par_chunks_mut(s.cout * net.classes))
        .zip(st.out[last - 1].par_chunks(sp.cout * sp.out_hw()))
        .for_each_init(
            || (Vec::new(), vec![0.0f32; 8 * s.h * ROW], [[0.0f32; 16]; 8]),
            |(xr, znew, out), ((z, dp), x)| {
                apply_pending(net, fu, &groups, &pending, z, dp, x, xr, znew, out);
            },
        );
}
