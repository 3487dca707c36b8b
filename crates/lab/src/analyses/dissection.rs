//! What each filter detects: Network Dissection (Bau et al. 2017, "Network Dissection:
//! Quantifying Interpretability of Deep Visual Representations") against the generator's exact
//! concept masks ([`shapes::concepts`]) instead of a hand-labelled corpus, with the chance
//! level measured on the same architecture at its Glorot initialisation rather than assumed,
//! and each label checked causally by removing the filter.
//!
//! For every filter `k` of every conv layer, over the images of one split:
//! 1. its map after the activation is upsampled to the image by bilinear interpolation, each
//!    unit anchored at the centre of its receptive field (what the paper does; for a map half
//!    the image's side, unit `i` sits at image coordinate `2 i + 1`);
//! 2. it is thresholded at its top `quantile` over all pixels of all images (the paper's
//!    0.005 by default): `T_k` is the value ranked `ceil(quantile * N * H * W)` from the top,
//!    and the filter's mask `M_k` holds the pixels with `a >= T_k` when `T_k > 0`, else those
//!    with `a > 0` (a silent pixel never counts, so a dead filter has an empty mask);
//! 3. `IoU(k, c) = sum |M_k & L_c| / sum |M_k | L_c|` over the images, for every concept `c`,
//!    over all images and per class.
//!
//! The chance level is measured, per layer and per concept: the same IoU for every filter of
//! the same architecture at Glorot initialisation, over `null_seeds` seeds. A concept counts
//! for a filter only when its IoU exceeds the 95th percentile of those initial filters' IoUs
//! with it by at least `margin` (0.02 by default; the margin found is reported); the filter's
//! label is the counted concept with the highest IoU. On noise-free figures a random 3x3 kernel is often an edge detector of some
//! direction, and one with only positive weights marks the interior as well as a blur does,
//! so the chance level of an edge bin is far above Network Dissection's fixed 0.04.
//!
//! A pure function of a model, data and masks, plus the files it writes ([`Dissection::write`]);
//! must not know stores or studies.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use shapes::Split as Part;
use tinycnn::{Model, Scaling};

use crate::analyses::failures::{failures, Failures};
use crate::analyses::pruning::FilterRef;
use crate::data::dataset::Dataset;
use crate::error::{Error, Result};

/// How to dissect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The top quantile each filter is thresholded at, in (0, 0.5).
    pub quantile: f64,
    /// Further quantiles at which each filter's best IoU is also reported.
    pub also_at: Vec<f64>,
    /// Glorot initialisations (seeds 0..) that give the chance level.
    pub null_seeds: u64,
    /// Bins per latent factor for the removal check.
    pub bins: usize,
    /// How far above its chance level a concept's IoU must be to count.
    pub margin: f64,
}

impl Default for Settings {
    /// The paper's quantile 0.005, also at 0.01, 0.02 and 0.05; five null seeds; five bins;
    /// a margin of 0.02 over the chance level.
    fn default() -> Settings {
        Settings {
            quantile: 0.005,
            also_at: vec![0.01, 0.02, 0.05],
            null_seeds: 5,
            bins: 5,
            margin: 0.02,
        }
    }
}

impl Settings {
    /// Refuses a quantile outside (0, 0.5), naming it.
    pub fn check(&self) -> Result<()> {
        for &q in std::iter::once(&self.quantile).chain(&self.also_at) {
            if !(q > 0.0 && q < 0.5) {
                return Err(Error::Usage(format!(
                    "--quantile {q}: use a fraction in (0, 0.5), e.g. 0.005 (Network Dissection's)"
                )));
            }
        }
        Ok(())
    }
}

/// What removing one filter does to accuracy on the dissected split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Removal {
    /// Accuracy without the filter minus with it.
    pub overall: f64,
    /// Per class, the same difference.
    pub per_class: Vec<(String, f64)>,
    /// Per varying factor, per bin `(low edge, difference)`.
    pub per_factor: Vec<(String, Vec<(f32, f64)>)>,
}

/// One filter dissected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilterDissection {
    pub filter: FilterRef,
    /// The threshold `T_k` at the quantile.
    pub threshold: f32,
    /// Pixels in the filter's mask, of all pixels of all images.
    pub coverage: f64,
    /// IoU with each concept, in the dissection's concept order.
    pub iou: Vec<f64>,
    /// The best concept, its IoU, and the margin over the second best.
    pub best: String,
    pub best_iou: f64,
    pub margin: f64,
    /// The concept with the highest IoU among those that clear their chance level, and its
    /// margin over that level; `None` when no concept clears it.
    pub label: Option<String>,
    pub label_margin: Option<f64>,
    /// Per class, the best concept's IoU on that class's images alone.
    pub per_class: Vec<(String, f64)>,
    /// The best IoU (any concept) at each further quantile.
    pub at_quantiles: Vec<(f64, f64)>,
    /// Removing the filter; `None` for the last filter of a layer.
    pub removal: Option<Removal>,
}

/// One conv layer dissected, with its chance level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerDissection {
    /// 1-based.
    pub layer: usize,
    pub filters: Vec<FilterDissection>,
    /// Filters of this layer at Glorot initialisation, over the null seeds.
    pub null_filters: usize,
    /// Per concept, the chance level a label must exceed: the 95th percentile of the IoUs
    /// the initial filters reach with it.
    pub chance: Vec<f64>,
}

/// A whole dissection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dissection {
    /// Version of this document's format ([`Schema`](crate::files::schema::Schema)).
    #[serde(default)]
    pub schema: crate::files::schema::Schema<1>,
    pub model: String,
    pub arch: String,
    pub data: String,
    pub split: Part,
    pub images: usize,
    pub settings: Settings,
    pub concepts: Vec<String>,
    pub accuracy: f64,
    pub layers: Vec<LayerDissection>,
}

/// Bilinear upsampling of one `[h, w]` map to `[side, side]`, each unit anchored at the centre
/// of its receptive field (the image coordinate `(i + 0.5) * side / h`).
pub fn upsample(map: &[f32], h: usize, w: usize, side: usize, out: &mut [f32]) {
    if h == side && w == side {
        out.copy_from_slice(map);
        return;
    }
    let (rows, cols) = (Interp::table(side, h), Interp::table(side, w));
    for (r, y) in rows.iter().enumerate() {
        for (c, x) in cols.iter().enumerate() {
            let top = map[y.lo * w + x.lo] * (1.0 - x.t) + map[y.lo * w + x.hi] * x.t;
            let bottom = map[y.hi * w + x.lo] * (1.0 - x.t) + map[y.hi * w + x.hi] * x.t;
            out[r * side + c] = top * (1.0 - y.t) + bottom * y.t;
        }
    }
}

/// Where an image pixel falls between two map units.
#[derive(Clone, Copy)]
struct Interp {
    lo: usize,
    hi: usize,
    t: f32,
}

impl Interp {
    /// For each of `side` image pixels, its two map units (of `n`) and the weight of the
    /// second: `u = (p + 0.5) * n / side - 0.5`, clamped to the map.
    fn table(side: usize, n: usize) -> Vec<Interp> {
        let s = side as f64 / n as f64;
        (0..side)
            .map(|p| {
                let u = ((p as f64 + 0.5) / s - 0.5).clamp(0.0, (n - 1) as f64);
                let lo = u.floor() as usize;
                Interp {
                    lo,
                    hi: (lo + 1).min(n - 1),
                    t: (u - lo as f64) as f32,
                }
            })
            .collect()
    }
}

/// Per conv layer, every filter's map after the activation upsampled to the image:
/// `[layer][n, F, side * side]`.
pub fn upsampled_maps(model: &Model, images: &[u8], scaling: Scaling) -> Vec<Vec<f32>> {
    let mut up = Vec::new();
    upsampled_maps_into(model, images, scaling, &mut up);
    up
}

/// [`upsampled_maps`] into `up`, whose buffers are resized and reused (the null networks of a
/// dissection share one set). Chunks of images run in parallel, each writing its own slice of
/// every layer's output.
pub fn upsampled_maps_into(model: &Model, images: &[u8], scaling: Scaling, up: &mut Vec<Vec<f32>>) {
    const CHUNK: usize = 64;
    let arch = &model.arch;
    let side = arch.height;
    let px = arch.height * arch.width;
    let n = images.len() / px;
    let shapes = arch.layers();
    up.resize_with(shapes.len(), Vec::new);
    for (u, s) in up.iter_mut().zip(&shapes) {
        u.resize(n * s.cout * px, 0.0);
    }
    let mut per_chunk: Vec<Vec<&mut [f32]>> = (0..n.div_ceil(CHUNK)).map(|_| Vec::new()).collect();
    for (u, s) in up.iter_mut().zip(&shapes) {
        for (c, slice) in u.chunks_mut(CHUNK * s.cout * px).enumerate() {
            per_chunk[c].push(slice);
        }
    }
    per_chunk
        .into_par_iter()
        .zip(images.par_chunks(CHUNK * px))
        .for_each_init(
            || vec![Vec::new(); shapes.len()],
            |post, (outs, chunk)| {
                tinycnn::train::capture_post_into(model, chunk, scaling, post);
                for ((out, p), s) in outs.into_iter().zip(post.iter()).zip(&shapes) {
                    for (src, dst) in p.chunks(s.hw()).zip(out.chunks_mut(px)) {
                        upsample(src, s.h, s.w, side, dst);
                    }
                }
            },
        );
}

/// The threshold of one filter's values at the top quantile `q` (see the module docs).
pub fn threshold(values: &mut [f32], q: f64) -> f32 {
    let k = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    let at = values.len() - k;
    let (_, t, _) = values.select_nth_unstable_by(at, |a, b| a.total_cmp(b));
    *t
}

/// Whether an activation is in a filter's mask at threshold `t` (see the module docs).
#[inline]
pub fn in_mask(a: f32, t: f32) -> bool {
    if t > 0.0 {
        a >= t
    } else {
        a > 0.0
    }
}

/// Pixels of each concept over the images `which` selects: `|L_c|`, the same for every
/// filter. `masks`: `[n, px]` concept words.
fn concept_pixels(
    masks: &[u16],
    px: usize,
    concepts: usize,
    which: impl Fn(usize) -> bool,
) -> Vec<u64> {
    let mut out = vec![0u64; concepts];
    for (_, m) in masks.chunks(px).enumerate().filter(|(i, _)| which(*i)) {
        for &w in m {
            for (c, o) in out.iter_mut().enumerate() {
                *o += (w >> c & 1) as u64;
            }
        }
    }
    out
}

/// Counts of one filter's masks at several thresholds, in one pass over its pixels: per
/// threshold `|M|` and `|M & L_c|`, and for the first threshold the same per class.
struct Overlaps {
    mask_px: Vec<u64>,
    inter: Vec<Vec<u64>>,
    class_mask_px: Vec<u64>,
    class_inter: Vec<Vec<u64>>,
}

impl Overlaps {
    /// `maps`: the layer's `[n, F, px]`; `masks`: `[n, px]` words; `labels`: `[n]`; `ts`:
    /// the thresholds, the first the dissection's own.
    fn count(
        maps: &[f32],
        masks: &[u16],
        (f, filters, px): (usize, usize, usize),
        ts: &[f32],
        (labels, classes): (&[u8], usize),
        concepts: usize,
    ) -> Overlaps {
        let mut o = Overlaps {
            mask_px: vec![0; ts.len()],
            inter: vec![vec![0; concepts]; ts.len()],
            class_mask_px: vec![0; classes],
            class_inter: vec![vec![0; concepts]; classes],
        };
        for (i, m) in masks.chunks(px).enumerate() {
            let a = &maps[(i * filters + f) * px..][..px];
            // Images past the labels given count towards no class.
            let class = labels.get(i).map_or(usize::MAX, |&c| c as usize);
            for (&v, &w) in a.iter().zip(m) {
                if v <= 0.0 {
                    continue; // below every mask
                }
                for (q, &t) in ts.iter().enumerate() {
                    if !in_mask(v, t) {
                        continue;
                    }
                    o.mask_px[q] += 1;
                    let mut bits = w;
                    while bits != 0 {
                        let c = bits.trailing_zeros() as usize;
                        if c < concepts {
                            o.inter[q][c] += 1;
                            if q == 0 && class < classes {
                                o.class_inter[class][c] += 1;
                            }
                        }
                        bits &= bits - 1;
                    }
                    if q == 0 && class < classes {
                        o.class_mask_px[class] += 1;
                    }
                }
            }
        }
        o
    }
}

/// IoU from the counts: `|M & L| / (|M| + |L| - |M & L|)`, 0 when both are empty.
fn iou_of(inter: &[u64], mask_px: u64, concept_px: &[u64]) -> Vec<f64> {
    inter
        .iter()
        .zip(concept_px)
        .map(|(&i, &l)| {
            let union = mask_px + l - i;
            if union == 0 {
                0.0
            } else {
                i as f64 / union as f64
            }
        })
        .collect()
}

/// The IoUs of every filter of every layer of `model` with every concept, at quantile `q`:
/// `[layer][filter][concept]` (for the null).
fn all_ious(
    model: &Model,
    images: &[u8],
    masks: &[u16],
    scaling: Scaling,
    q: f64,
    concepts: usize,
    maps: &mut Vec<Vec<f32>>,
) -> Vec<Vec<Vec<f64>>> {
    let px = model.arch.height * model.arch.width;
    upsampled_maps_into(model, images, scaling, maps);
    let all = concept_pixels(masks, px, concepts, |_| true);
    model
        .arch
        .layers()
        .iter()
        .zip(maps.iter())
        .map(|(s, m)| {
            (0..s.cout)
                .into_par_iter()
                .map(|f| {
                    let t = thresholds(m, f, s.cout, px, &[q]);
                    let o = Overlaps::count(m, masks, (f, s.cout, px), &t, (&[], 0), concepts);
                    iou_of(&o.inter[0], o.mask_px[0], &all)
                })
                .collect()
        })
        .collect()
}

/// The chance level of one concept from the sorted IoUs of the initial filters: their 95th
/// percentile (nearest rank).
fn chance_level(sorted: &[f64]) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((0.95 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// One filter's values over every image, copied out of a layer's `[n, F, px]`.
#[cfg(test)]
fn filter_values(maps: &[f32], f: usize, filters: usize, px: usize) -> Vec<f32> {
    maps.chunks(filters * px)
        .flat_map(|img| img[f * px..(f + 1) * px].iter().copied())
        .collect()
}

/// [`threshold`] of one filter at each quantile of `qs`, equal to it but faster. After the
/// activation most values are usually zero, and the top `k` values overall are the top `k`
/// positive ones whenever there are at least `k` of those. Positive `f32`s order as their bit
/// patterns do, so one pass counts them by their top 16 bits, the bucket that holds the
/// `k`-th largest is found from the counts, and only that bucket's values are searched (a
/// radix select; written here because no maintained crate selects over a strided view).
fn thresholds(maps: &[f32], f: usize, filters: usize, px: usize, qs: &[f64]) -> Vec<f32> {
    let total = maps.len() / filters;
    let values = || {
        maps.chunks(filters * px)
            .flat_map(move |img| img[f * px..(f + 1) * px].iter().copied())
    };
    let mut counts = vec![0u32; 1 << 16];
    let mut positive = 0usize;
    for v in values().filter(|&v| v > 0.0) {
        counts[(v.to_bits() >> 16) as usize] += 1;
        positive += 1;
    }
    qs.iter()
        .map(|&q| {
            let k = ((q * total as f64).ceil() as usize).clamp(1, total);
            if k > positive {
                return threshold(&mut values().collect::<Vec<_>>(), q);
            }
            // The bucket of the k-th largest, and its rank within the bucket.
            let (mut above, mut bucket) = (0usize, counts.len() - 1);
            while above + (counts[bucket] as usize) < k {
                above += counts[bucket] as usize;
                bucket -= 1;
            }
            let mut inside: Vec<f32> = values()
                .filter(|&v| v > 0.0 && (v.to_bits() >> 16) as usize == bucket)
                .collect();
            let rank = k - above; // 1-based from the top of the bucket
            let at = inside.len() - rank;
            *inside.select_nth_unstable_by(at, |a, b| a.total_cmp(b)).1
        })
        .collect()
}

/// The change [`Removal`] describes, from the failures with and without the filter.
fn removal(base: &Failures, without: &Failures) -> Removal {
    Removal {
        overall: without.accuracy - base.accuracy,
        per_class: base
            .by_class
            .iter()
            .zip(&without.by_class)
            .map(|((c, a), (_, b))| (c.clone(), b - a))
            .collect(),
        per_factor: base
            .by_factor
            .iter()
            .zip(&without.by_factor)
            .map(|((name, a), (_, b))| {
                (
                    name.clone(),
                    a.iter()
                        .zip(b)
                        .map(|(x, y)| (x.low, y.accuracy - x.accuracy))
                        .collect(),
                )
            })
            .collect(),
    }
}

/// Dissects every filter of `model` over split `part` of `d`, whose concept masks are
/// `masks` (`[n, px]` words, bit `c` concept `c` of `concepts`).
///
/// Cost: one capture of the split for the model and for each null seed, one IoU pass per
/// filter and further quantile, and one evaluation per filter for the removal check.
pub fn dissect(
    model: &Model,
    d: &Dataset,
    part: Part,
    (masks, concepts): (&[u16], &[String]),
    scaling: Scaling,
    settings: &Settings,
    names: (&str, &str),
) -> Result<Dissection> {
    settings.check()?;
    let split = d.try_split(part).ok_or_else(|| {
        Error::Usage(format!(
            "{} has no {} split to dissect",
            names.1,
            part.name()
        ))
    })?;
    let px = d.pixels();
    if masks.len() != split.len() * px {
        return Err(Error::Usage(format!(
            "the concept masks cover {} pixels but the {} split has {} images of {px}; they belong to other data",
            masks.len(),
            part.name(),
            split.len()
        )));
    }
    let k = concepts.len();
    let maps = upsampled_maps(model, &split.images, scaling);
    // Per layer, per concept: every initial filter's IoU, sorted.
    let mut null = vec![vec![Vec::new(); k]; maps.len()];
    let mut buffers = Vec::new();
    for seed in 0..settings.null_seeds {
        let init = Model::init(&model.arch, tinycnn::Init::Glorot, seed)?;
        for (layer, filters) in null.iter_mut().zip(all_ious(
            &init,
            &split.images,
            masks,
            scaling,
            settings.quantile,
            k,
            &mut buffers,
        )) {
            for f in filters {
                for (c, v) in layer.iter_mut().zip(f) {
                    c.push(v);
                }
            }
        }
    }
    for c in null.iter_mut().flatten() {
        c.sort_by(f64::total_cmp);
    }
    let chance: Vec<Vec<f64>> = null
        .iter()
        .map(|l| l.iter().map(|c| chance_level(c)).collect())
        .collect();
    let base = failures(model, d, part, scaling, settings.bins);
    let all = concept_pixels(masks, px, k, |_| true);
    let by_class: Vec<Vec<u64>> = (0..d.class_names.len())
        .map(|c| concept_pixels(masks, px, k, |i| split.labels[i] as usize == c))
        .collect();
    let mut layers = Vec::new();
    for (l, s) in model.arch.layers().iter().enumerate() {
        let chance = &chance[l];
        // Filters are independent: one task each (the result is the same in any order).
        let filters = (0..s.cout)
            .into_par_iter()
            .map(|f| -> Result<FilterDissection> {
                let qs: Vec<f64> = std::iter::once(settings.quantile)
                    .chain(settings.also_at.iter().copied())
                    .collect();
                let ts = thresholds(&maps[l], f, s.cout, px, &qs);
                let t = ts[0];
                let o = Overlaps::count(
                    &maps[l],
                    masks,
                    (f, s.cout, px),
                    &ts,
                    (&split.labels, d.class_names.len()),
                    k,
                );
                let coverage = o.mask_px[0] as f64 / (maps[l].len() / s.cout) as f64;
                let iou = iou_of(&o.inter[0], o.mask_px[0], &all);
                let mut order: Vec<usize> = (0..k).collect();
                order.sort_by(|&a, &b| iou[b].total_cmp(&iou[a]).then(a.cmp(&b)));
                let (best, second) = (order[0], order.get(1).copied());
                let label = order
                    .iter()
                    .copied()
                    .find(|&c| iou[c] > chance[c] + settings.margin);
                let per_class = (0..d.class_names.len())
                    .map(|c| {
                        let v = iou_of(&o.class_inter[c], o.class_mask_px[c], &by_class[c]);
                        (d.class_names[c].clone(), v[best])
                    })
                    .collect();
                let at_quantiles = settings
                    .also_at
                    .iter()
                    .enumerate()
                    .map(|(j, &q)| {
                        let v = iou_of(&o.inter[j + 1], o.mask_px[j + 1], &all);
                        (q, v.into_iter().fold(0.0, f64::max))
                    })
                    .collect();
                let removal = if s.cout > 1 {
                    let mut keep: Vec<Vec<bool>> =
                        model.arch.filters.iter().map(|&n| vec![true; n]).collect();
                    keep[l][f] = false;
                    let small = model.pruned(&keep)?;
                    Some(removal(
                        &base,
                        &failures(&small, d, part, scaling, settings.bins),
                    ))
                } else {
                    None
                };
                Ok(FilterDissection {
                    filter: FilterRef::of((l, f)),
                    threshold: t,
                    coverage,
                    best: concepts[best].clone(),
                    best_iou: iou[best],
                    margin: iou[best] - second.map_or(0.0, |s| iou[s]),
                    label: label.map(|c| concepts[c].clone()),
                    label_margin: label.map(|c| iou[c] - chance[c]),
                    iou,
                    per_class,
                    at_quantiles,
                    removal,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        layers.push(LayerDissection {
            layer: l + 1,
            filters,
            null_filters: s.cout * settings.null_seeds as usize,
            chance: chance.clone(),
        });
    }
    Ok(Dissection {
        schema: crate::files::schema::Schema::CURRENT,
        model: names.0.into(),
        arch: model.arch.label(),
        data: names.1.into(),
        split: part,
        images: split.len(),
        settings: settings.clone(),
        concepts: concepts.to_vec(),
        accuracy: base.accuracy,
        layers,
    })
}

impl Dissection {
    /// Labelled filters of a layer, by concept, most common first.
    pub fn label_counts(&self, layer: &LayerDissection) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for f in &layer.filters {
            if let Some(l) = &f.label {
                match counts.iter_mut().find(|(c, _)| c == l) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((l.clone(), 1)),
                }
            }
        }
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        counts
    }

    /// The findings in words, a table per layer.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{} ({}) on {}: {} {} images, accuracy {:.4}; filters thresholded at their top {} of pixels\n",
            self.model,
            self.arch,
            self.data,
            self.images,
            self.split.name(),
            self.accuracy,
            self.settings.quantile
        );
        out += &format!(
            "a concept counts when its IoU exceeds by {} the 95th percentile of the IoUs of the same layer's filters at Glorot initialisation ({} seeds)\n",
            self.settings.margin, self.settings.null_seeds
        );
        for l in &self.layers {
            let counts: Vec<String> = self
                .label_counts(l)
                .iter()
                .map(|(c, n)| format!("{n} {c}"))
                .collect();
            let labelled: usize = self.label_counts(l).iter().map(|x| x.1).sum();
            out += &format!(
                "\nlayer {}: {labelled} of {} filters labelled{}\n",
                l.layer,
                l.filters.len(),
                if counts.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", counts.join(", "))
                }
            );
            out += &format!(
                "  {:<7} {:<11} {:>6} {:>7}  {:<11} {:>6} {:>7}  {:>9}\n",
                "filter", "label", "IoU", "margin", "best", "IoU", "vs 2nd", "removal"
            );
            for f in &l.filters {
                let (label, iou, margin) = match (&f.label, f.label_margin) {
                    (Some(lab), Some(m)) => {
                        let c = self.concepts.iter().position(|x| x == lab).unwrap_or(0);
                        (lab.as_str(), format!("{:.3}", f.iou[c]), format!("{m:+.3}"))
                    }
                    _ => ("-", "-".into(), "-".into()),
                };
                out += &format!(
                    "  {:<7} {:<11} {:>6} {:>7}  {:<11} {:>6.3} {:>+7.3}  {:>9}\n",
                    f.filter.label(),
                    label,
                    iou,
                    margin,
                    f.best,
                    f.best_iou,
                    f.margin,
                    f.removal
                        .as_ref()
                        .map_or("-".into(), |r| format!("{:+.4}", r.overall))
                );
            }
        }
        out
    }

    /// One row per filter: its label, best concept, IoUs with every concept, and the removal's
    /// change of accuracy overall and per class.
    pub fn to_csv(&self) -> Vec<u8> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let classes: Vec<String> = self
            .layers
            .iter()
            .flat_map(|l| &l.filters)
            .find_map(|f| f.removal.as_ref())
            .map(|r| r.per_class.iter().map(|(c, _)| c.clone()).collect())
            .unwrap_or_default();
        let mut header = vec![
            "layer".to_string(),
            "filter".into(),
            "label".into(),
            "label_margin".into(),
            "best".into(),
            "best_iou".into(),
            "margin_over_second".into(),
            "threshold".into(),
            "coverage".into(),
            "removal".into(),
        ];
        header.extend(classes.iter().map(|c| format!("removal_{c}")));
        header.extend(self.concepts.iter().map(|c| format!("iou_{c}")));
        w.write_record(&header).expect("in-memory csv");
        for l in &self.layers {
            for f in &l.filters {
                let mut row = vec![
                    f.filter.layer.to_string(),
                    f.filter.filter.to_string(),
                    f.label.clone().unwrap_or_default(),
                    f.label_margin.map_or(String::new(), |m| m.to_string()),
                    f.best.clone(),
                    f.best_iou.to_string(),
                    f.margin.to_string(),
                    f.threshold.to_string(),
                    f.coverage.to_string(),
                    f.removal
                        .as_ref()
                        .map_or(String::new(), |r| r.overall.to_string()),
                ];
                row.extend((0..classes.len()).map(|i| {
                    f.removal
                        .as_ref()
                        .and_then(|r| r.per_class.get(i))
                        .map_or(String::new(), |x| x.1.to_string())
                }));
                row.extend(f.iou.iter().map(|v| v.to_string()));
                w.write_record(&row).expect("in-memory csv");
            }
        }
        w.into_inner().expect("in-memory csv")
    }

    /// Writes `dissection.json` and `dissection.csv` into `out` (derived data, replaced).
    pub fn write(&self, out: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
        crate::files::fsio::derived_dir(out)?;
        let json = serde_json::to_string_pretty(self).expect("json") + "\n";
        let mut written = Vec::new();
        for (name, bytes) in [
            ("dissection.json", json.into_bytes()),
            ("dissection.csv", self.to_csv()),
        ] {
            let p = out.join(name);
            crate::files::fsio::write_file_atomic(&p, true, |w| {
                std::io::Write::write_all(w, &bytes)
            })?;
            written.push(p);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(side: u32, val: usize) -> (Dataset, Vec<u16>, Vec<String>) {
        let spec = shapes::SpecFile::from_toml(&format!(
            "image_size = {side}\ntrain = 3\nval = {val}\ntest = 0\nseed = 3\n[factors]\nsize = {{ min = 0.4, max = 0.9 }}\nrotation = {{ min = 0, max = 360 }}"
        ))
        .unwrap()
        .resolve()
        .unwrap();
        let d = Dataset::generate(&spec, None, &|_| {});
        let m = crate::data::masks::ConceptMasks::of_spec(&spec);
        let masks = m.part("val").unwrap().to_vec();
        (d, masks, m.concept_names)
    }

    #[test]
    fn the_radix_threshold_equals_a_full_selection() {
        use rand_core::{RngCore, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let (n, filters, px) = (37, 3, 49);
        // Mostly zeros, some negatives, many ties, a wide range of magnitudes.
        let maps: Vec<f32> = (0..n * filters * px)
            .map(|_| match rng.next_u32() % 6 {
                0 | 1 => 0.0,
                2 => -((rng.next_u32() % 100) as f32),
                3 => 0.5,
                _ => (rng.next_u32() % 100_000) as f32 * 1e-3,
            })
            .collect();
        let qs = [0.001, 0.005, 0.05, 0.2, 0.45];
        for f in 0..filters {
            let got = thresholds(&maps, f, filters, px, &qs);
            for (q, t) in qs.iter().zip(got) {
                assert_eq!(
                    t,
                    threshold(&mut filter_values(&maps, f, filters, px), *q),
                    "q {q}"
                );
            }
        }
    }

    #[test]
    fn upsampling_anchors_units_at_their_receptive_field_centres() {
        // The identity at the same size.
        let map: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let mut out = vec![0.0; 16];
        upsample(&map, 4, 4, 4, &mut out);
        assert_eq!(out, map);
        // A 2x2 map on a 4x4 image: units sit at image coordinates 1 and 3, so pixel centres
        // 0.5 and 1.5 clamp to the first unit's row and column... up to a quarter of the way.
        let map = [0.0f32, 4.0, 8.0, 12.0];
        let mut out = vec![0.0; 16];
        upsample(&map, 2, 2, 4, &mut out);
        assert_eq!(out[0], 0.0, "clamped at the border");
        assert_eq!(out[1], 1.0, "a quarter of the way to the next column");
        assert_eq!(out[2], 3.0);
        assert_eq!(out[3], 4.0);
        assert_eq!(out[4], 2.0, "a quarter of the way down");
        assert_eq!(out[15], 12.0);
    }

    #[test]
    fn ious_equal_a_naive_reference() {
        let (d, masks, names) = data(16, 9);
        let arch = tinycnn::Arch::parse("3-2", 16, 16, 3).unwrap();
        let model = Model::init(&arch, tinycnn::Init::He, 7).unwrap();
        let settings = Settings {
            quantile: 0.1,
            also_at: vec![],
            null_seeds: 1,
            bins: 2,
            margin: 0.02,
        };
        let got = dissect(
            &model,
            &d,
            Part::Val,
            (&masks, &names),
            Scaling::Unit,
            &settings,
            ("m", "d"),
        )
        .unwrap();
        // The reference: the whole split captured at once, each filter's values sorted to find
        // its threshold, and the IoU counted pixel by pixel with booleans.
        let (maps, _) = tinycnn::train::capture(&model, &d.val.images, Scaling::Unit);
        let (n, px) = (d.val.len(), 256);
        for (l, s) in arch.layers().iter().enumerate() {
            for f in 0..s.cout {
                let mut up = vec![0.0f32; n * px];
                for i in 0..n {
                    let src = &maps[l].post[(i * s.cout + f) * s.hw()..][..s.hw()];
                    upsample(src, s.h, s.w, 16, &mut up[i * px..(i + 1) * px]);
                }
                let mut sorted = up.clone();
                sorted.sort_by(|a, b| b.total_cmp(a));
                let k = (0.1 * (n * px) as f64).ceil() as usize;
                let t = sorted[k - 1];
                let on: Vec<bool> = up
                    .iter()
                    .map(|&a| if t > 0.0 { a >= t } else { a > 0.0 })
                    .collect();
                let fd = &got.layers[l].filters[f];
                assert_eq!(fd.threshold, t);
                for c in 0..names.len() {
                    let l_c: Vec<bool> = masks.iter().map(|&w| w >> c & 1 == 1).collect();
                    let inter = on.iter().zip(&l_c).filter(|(a, b)| **a && **b).count();
                    let union = on.iter().zip(&l_c).filter(|(a, b)| **a || **b).count();
                    let want = if union == 0 {
                        0.0
                    } else {
                        inter as f64 / union as f64
                    };
                    assert_eq!(
                        fd.iou[c],
                        want,
                        "layer {} filter {} {}",
                        l + 1,
                        f + 1,
                        names[c]
                    );
                }
            }
        }
    }

    /// A one-layer net whose kernels are set by hand: Sobel in x and y of both signs, a
    /// positive blur and a zero kernel.
    fn planted() -> Model {
        let arch = tinycnn::Arch::parse("6", 28, 28, 3).unwrap();
        let mut m = Model::init(&arch, tinycnn::Init::Glorot, 1).unwrap();
        let sobel_x = [-1.0, 0.0, 1.0, -2.0, 0.0, 2.0, -1.0, 0.0, 1.0];
        let sobel_y = [-1.0, -2.0, -1.0, 0.0, 0.0, 0.0, 1.0, 2.0, 1.0];
        let kernels: [[f32; 9]; 6] = [
            sobel_x,
            sobel_x.map(|v| -v),
            sobel_y,
            sobel_y.map(|v| -v),
            [1.0 / 9.0; 9],
            [0.0; 9],
        ];
        let layout = m.layout().clone();
        let w = &mut m.params[layout.conv_w[0].clone()];
        for (f, k) in kernels.iter().enumerate() {
            w[f * 9..(f + 1) * 9].copy_from_slice(k);
        }
        m.params[layout.conv_b[0].clone()].fill(0.0);
        m
    }

    #[test]
    fn planted_kernels_are_labelled_as_built() {
        // At the paper's quantile, against five Glorot initialisations: each Sobel kernel is
        // the edge direction it responds to (brightness rising to the right marks a bright
        // figure's left edge, which faces west), the blur is the interior, the zero kernel
        // nothing.
        let (d, masks, names) = data(28, 300);
        let got = dissect(
            &planted(),
            &d,
            Part::Val,
            (&masks, &names),
            Scaling::Unit,
            &Settings::default(),
            ("m", "d"),
        )
        .unwrap();
        let labels: Vec<Option<&str>> = got.layers[0]
            .filters
            .iter()
            .map(|f| f.label.as_deref())
            .collect();
        assert_eq!(
            labels,
            vec![
                Some("edge-W"),
                Some("edge-E"),
                Some("edge-N"),
                Some("edge-S"),
                Some("interior"),
                None
            ]
        );
        let zero = &got.layers[0].filters[5];
        assert_eq!((zero.coverage, zero.best_iou), (0.0, 0.0));
        // Each label clears its chance level, by the margin it reports.
        for f in &got.layers[0].filters[..5] {
            let c = got
                .concepts
                .iter()
                .position(|n| Some(n) == f.label.as_ref())
                .unwrap();
            let m = f.label_margin.unwrap();
            assert!(m > 0.02 && (f.iou[c] - got.layers[0].chance[c] - m).abs() < 1e-12);
        }
        // The removal check: without the left-edge filter, accuracy changes by what a direct
        // evaluation of the smaller network says.
        let r = got.layers[0].filters[0].removal.as_ref().unwrap();
        let mut keep = vec![vec![true; 6]];
        keep[0][0] = false;
        let small = planted().pruned(&keep).unwrap();
        let base = tinycnn::train::evaluate(
            &planted(),
            &crate::models::training::engine_data(&d, Part::Val),
            Scaling::Unit,
        )
        .accuracy;
        let without = tinycnn::train::evaluate(
            &small,
            &crate::models::training::engine_data(&d, Part::Val),
            Scaling::Unit,
        )
        .accuracy;
        assert!((r.overall - (without - base)).abs() < 1e-12);
        assert_eq!(r.per_class.len(), 3);
        assert!(Settings {
            quantile: 0.5,
            ..Settings::default()
        }
        .check()
        .is_err());
        assert!(Settings {
            quantile: 0.0,
            ..Settings::default()
        }
        .check()
        .is_err());
    }
}
