//! The loss tie-break of greedy pruning ([`super::Ties::Loss`]): the loss of the network
//! without each of the tied filters, exactly as evaluating each physically smaller network
//! ([`Model::pruned`]) with the engine gives it, but with the work the smaller networks share
//! with the network they come from done once per chunk of images.
//!
//! Why that is exact. The engine evaluates chunk by chunk ([`CHUNK`] images) and sums each
//! output of a layer's product over its own inputs in an order fixed by the product's shape
//! ([`crate::direct`]). Removing filter `f` of layer `l` leaves every layer below `l` as it
//! was, so the smaller network's input to layer `l` is the larger one's. Layer `l`'s other
//! outputs are sums over the same inputs with the same weights; where the direct product
//! computes layer `l` for both row counts with the same block depth
//! ([`direct::block_depth`]), each output is summed in the same order whatever the number of
//! rows, so they are the larger network's outputs bit for bit, without channel `f`
//! (activation and pooling are per channel). Then only what lies above layer `l` is
//! computed again: for a last-layer filter, the dense layer alone. Where the depths differ
//! (a layer of 8 filters deeper than [`direct::KC`] becoming 7), layer `l` itself is computed
//! again from the shared input. Each candidate's logits then go through the same
//! [`Evaluation::of_logits`] as an evaluation's. The tests compare every logit with
//! [`crate::train::logits`] of the smaller network.
//!
//! Must not choose among the candidates (the caller does) nor change a bit of any loss.

use rayon::prelude::*;

use super::FilterId;
use crate::direct;
use crate::error::Result;
use crate::model::Model;
use crate::net::{Scaling, Workspace, CHUNK};
use crate::train::{Data, Evaluation};

/// The loss on `data` of `model` without each filter of `cands` (one at a time, `(layer,
/// filter)` of `model`; a layer must keep one): `evaluate(&model.pruned(..)).loss` of each.
pub(super) fn losses_without(
    model: &Model,
    cands: &[FilterId],
    data: &Data,
    scaling: Scaling,
) -> Result<Vec<f64>> {
    let kk = model.arch.classes;
    Ok(logits_without(model, cands, data, scaling)?
        .iter()
        .map(|l| Evaluation::of_logits(l, data.labels, kk).loss)
        .collect())
}

/// The smaller networks' logits, `[cands][n, K]`, each as [`crate::train::logits`] computes
/// it for the network without that filter.
///
/// # Shapes
/// `data.images [n, H, W]`.
fn logits_without(
    model: &Model,
    cands: &[FilterId],
    data: &Data,
    scaling: Scaling,
) -> Result<Vec<Vec<f32>>> {
    let smaller: Vec<Model> = cands
        .iter()
        .map(|&(l, f)| {
            let mut keep = model.arch.keep_all();
            keep[l][f] = false;
            model.pruned(&keep)
        })
        .collect::<Result<_>>()?;
    let (px, kk, n) = (data.height * data.width, model.arch.classes, data.len());
    // As `train::logits`: one workspace set per thread over a contiguous run of chunks.
    let chunks = n.div_ceil(CHUNK);
    let per = chunks.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let runs: Vec<Vec<Vec<f32>>> = data
        .images
        .par_chunks(per * CHUNK * px)
        .map(|imgs| {
            let mut base = Workspace::inference(&model.arch, CHUNK);
            // One workspace per layer a candidate is in: those smaller networks share a shape.
            let mut spaces: Vec<Option<Workspace>> = (0..model.arch.filters.len())
                .map(|l| {
                    let i = cands.iter().position(|c| c.0 == l)?;
                    Some(Workspace::inference(&smaller[i].arch, CHUNK))
                })
                .collect();
            let mut out = vec![Vec::with_capacity(imgs.len() / px * kk); cands.len()];
            for im in imgs.chunks(CHUNK * px) {
                base.load(im, scaling);
                base.forward(model, false);
                for (i, &cand) in cands.iter().enumerate() {
                    let ws = spaces[cand.0].as_mut().expect("a workspace for the layer");
                    without_one(&base, cand, (&smaller[i], ws), im, scaling);
                    out[i].extend_from_slice(&ws.logits[..base.b * kk]);
                }
            }
            out
        })
        .collect();
    let mut all = vec![Vec::with_capacity(n * kk); cands.len()];
    for run in runs {
        for (a, r) in all.iter_mut().zip(run) {
            a.extend_from_slice(&r);
        }
    }
    Ok(all)
}

/// Runs the network without `(l, f)` (`small`, in `ws`) on the chunk `base` holds
/// (its images `im`), from the first layer whose output differs from `base`'s.
fn without_one(
    base: &Workspace,
    (l, f): FilterId,
    (small, ws): (&Model, &mut Workspace),
    im: &[u8],
    scaling: Scaling,
) {
    let b = base.b;
    if same_rows(base, l) {
        ws.set_layer_out(l, b, base.layer_out(l), Some(f));
        ws.forward_from(small, l + 1, false);
    } else if l > 0 {
        ws.set_layer_out(l - 1, b, base.layer_out(l - 1), None);
        ws.forward_from(small, l, false);
    } else {
        ws.load(im, scaling);
        ws.forward(small, false);
    }
}

/// Whether layer `l` of the network in `base` and of that network without one of its
/// filters sum each output in the same order: both by the direct product, in blocks of the
/// same depth (for the loaded chunk).
fn same_rows(base: &Workspace, l: usize) -> bool {
    let s = base.arch.layers()[l];
    let (q, n) = (
        s.cin * base.arch.kernel * base.arch.kernel + 1,
        base.b * s.hw(),
    );
    let depth = |m| direct::block_depth(m, q, n);
    s.cout > 1 && depth(s.cout).is_some() && depth(s.cout) == depth(s.cout - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;
    use crate::model::Init;
    use crate::testkit::{bits, labelled_images};

    /// Every filter of `arch` (Glorot, `seed`) removed in turn, on `n` images: each logit
    /// equals the smaller network's evaluation's; and so does each loss.
    fn check(arch: &str, seed: u64, n: usize, keep_some: bool) {
        let a = Arch::parse(arch, 28, 28, 3).unwrap();
        let mut model = Model::init(&a, Init::Glorot, seed).unwrap();
        if keep_some {
            // Kill filter 0 of the first layer: a silent input channel below.
            let r = model.layout().conv_b[0].start;
            model.params[r] = -1e6;
        }
        let (images, labels) = labelled_images(n, seed);
        let data = Data {
            images: &images,
            labels: &labels,
            height: 28,
            width: 28,
        };
        let cands: Vec<FilterId> = (0..a.filters.len())
            .filter(|&l| a.filters[l] > 1)
            .flat_map(|l| (0..a.filters[l]).map(move |f| (l, f)))
            .collect();
        let got = logits_without(&model, &cands, &data, Scaling::Unit).unwrap();
        let losses = losses_without(&model, &cands, &data, Scaling::Unit).unwrap();
        for (i, &(l, f)) in cands.iter().enumerate() {
            let mut keep = a.keep_all();
            keep[l][f] = false;
            let small = model.pruned(&keep).unwrap();
            let want = crate::train::logits(&small, &data, Scaling::Unit);
            assert_eq!(bits(&got[i]), bits(&want), "{arch} without ({l}, {f})");
            let loss = crate::train::evaluate(&small, &data, Scaling::Unit).loss;
            assert_eq!(losses[i].to_bits(), loss.to_bits(), "{arch} ({l}, {f})");
        }
    }

    #[test]
    fn each_removal_gives_the_smaller_networks_logits() {
        for (arch, n) in [
            ("16-16", 37),
            ("8-4", 9),
            ("4-3-5", 13),
            ("2-2", 4),
            ("6", 7),
            // Layer 2 deeper than a block: 8 filters and 7 are summed in other blocks,
            // 2 and 1 by other products, so layer 2 is computed again.
            ("32-8", 10),
            ("32-2", 6),
            ("29-9", 5),
        ] {
            check(arch, 7, n, false);
            check(arch, 8, n, true);
        }
    }

    #[test]
    fn the_same_at_any_thread_count() {
        let a = Arch::parse("8-8", 28, 28, 3).unwrap();
        let model = Model::init(&a, Init::Glorot, 2).unwrap();
        let (images, labels) = labelled_images(41, 5);
        let data = Data {
            images: &images,
            labels: &labels,
            height: 28,
            width: 28,
        };
        let cands = [(0, 3), (1, 0), (1, 7)];
        let with = |t: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap();
            pool.install(|| logits_without(&model, &cands, &data, Scaling::Raw).unwrap())
        };
        let one = with(1);
        for t in [2, 3, 5] {
            let other = with(t);
            for (a, b) in one.iter().zip(&other) {
                assert_eq!(bits(a), bits(b), "{t} threads");
            }
        }
    }
}
