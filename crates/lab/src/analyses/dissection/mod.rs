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

pub mod kept;
pub mod population;
#[cfg(target_arch = "x86_64")]
mod scan512;
pub mod sheet;
pub mod upsample;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use shapes::Split as Part;
use tinycnn::{Model, Scaling};

use crate::analyses::failures::{of_predictions, Failures};
use crate::analyses::pruning::FilterRef;
use crate::data::dataset::Dataset;
use crate::error::{Error, Result};
use crate::models::training::engine_data;
use kept::{keep_top, Keep, Kept};

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
    /// The images (indices in the split) whose upsampled maps peak highest, highest first,
    /// ties to the lower index: the sheet's.
    pub top_images: Vec<usize>,
}

/// One conv layer dissected, with its chance level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerDissection {
    /// 1-based.
    pub layer: usize,
    pub filters: Vec<FilterDissection>,
    /// Filters of this layer at Glorot initialisation, over the null seeds, and how many of
    /// them the labelling rule labels: the control for the labelled share.
    pub null_filters: usize,
    pub null_labelled: usize,
    /// Per concept, the chance level a label must exceed: the 95th percentile of the IoUs
    /// the initial filters reach with it.
    pub chance: Vec<f64>,
}

/// A whole dissection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dissection {
    /// Version of this document's format ([`Schema`](crate::files::schema::Schema)).
    #[serde(default)]
    pub schema: crate::files::schema::Schema<2>,
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

/// Labels of `filters`, most common first (ties by name).
pub fn label_counts<'a>(
    filters: impl IntoIterator<Item = &'a FilterDissection>,
) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for l in filters.into_iter().filter_map(|f| f.label.as_ref()) {
        match counts.iter_mut().find(|(c, _)| c == l) {
            Some((_, n)) => *n += 1,
            None => counts.push((l.clone(), 1)),
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    counts
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

/// The number of pixels, of `total`, in a filter's top quantile `q`.
fn k_of(q: f64, total: usize) -> usize {
    ((q * total as f64).ceil() as usize).clamp(1, total)
}

/// The chance level of an architecture on one split: per conv layer, what the same layer's
/// filters reach at Glorot initialisation. It depends on the architecture, the images, their
/// masks, the input scaling and the settings, not on a trained model, so a population of runs
/// of one architecture on one dataset shares it.
#[derive(Clone, Debug, PartialEq)]
pub struct Chance {
    pub layers: Vec<NullLayer>,
}

/// One layer's chance level.
#[derive(Clone, Debug, PartialEq)]
pub struct NullLayer {
    /// Per concept, the 95th percentile of the IoUs the initial filters reach with it.
    pub levels: Vec<f64>,
    /// Initial filters measured, and how many of them the labelling rule labels (the control
    /// for a trained layer's labelled share).
    pub filters: usize,
    pub labelled: usize,
}

/// The [`Chance`] of `arch` over `images [n, px]` with concept words `masks [n, px]`: every
/// filter at Glorot initialisation (seeds `0..settings.null_seeds`) thresholded at
/// `settings.quantile`.
pub fn chance(
    arch: &tinycnn::Arch,
    data: (&[u8], &[u16]),
    scaling: Scaling,
    settings: &Settings,
    concepts: usize,
) -> Result<Chance> {
    Ok(Chance {
        layers: null_layers(arch, data, scaling, settings, concepts, 0)?,
    })
}

/// `arch`'s first layer alone, as a one-layer network. Glorot draws the first layer's
/// weights first, with a limit set by that layer's own shape (one input channel, its filters),
/// and its biases start at zero, so at every seed this network's first layer *is* `arch`'s,
/// and so is its chance level: one measurement serves every architecture with that first
/// layer ([`Chance::with_first`]).
pub fn first_layer(arch: &tinycnn::Arch) -> tinycnn::Arch {
    tinycnn::Arch {
        filters: arch.filters[..1].to_vec(),
        pool: arch.pool[..1].to_vec(),
        ..arch.clone()
    }
}

impl Chance {
    /// The [`Chance`] of `arch` given its first layer's (`first`, measured on
    /// [`first_layer`]`(arch)` with the same data, scaling and settings): the later layers
    /// measured on `arch` itself.
    ///
    /// # Shapes
    /// As [`chance`].
    pub fn with_first(
        first: &NullLayer,
        arch: &tinycnn::Arch,
        data: (&[u8], &[u16]),
        scaling: Scaling,
        (settings, concepts): (&Settings, usize),
    ) -> Result<Chance> {
        let mut layers = vec![first.clone()];
        if arch.filters.len() > 1 {
            layers.extend(null_layers(arch, data, scaling, settings, concepts, 1)?);
        }
        Ok(Chance { layers })
    }
}

/// The chance level of each of `arch`'s layers from `from` on (0-based), as [`chance`]
/// measures it.
///
/// # Shapes
/// `images [n, px]`, `masks [n, px]` to one [`NullLayer`] per layer from `from`, each with
/// `concepts` levels.
fn null_layers(
    arch: &tinycnn::Arch,
    (images, masks): (&[u8], &[u16]),
    scaling: Scaling,
    settings: &Settings,
    concepts: usize,
    from: usize,
) -> Result<Vec<NullLayer>> {
    let px = arch.height * arch.width;
    let k = k_of(settings.quantile, images.len());
    let all = concept_pixels(masks, px, concepts, |_| true);
    // Per seed, per layer: every initial filter's IoU with each concept. The seeds run
    // concurrently (each pass is parallel too), which keeps both cores busy between a pass's
    // blocks.
    let per_seed: Vec<Vec<Vec<Vec<f64>>>> = (0..settings.null_seeds)
        .into_par_iter()
        .map(|seed| {
            let init = Model::init(arch, tinycnn::Init::Glorot, seed)?;
            let keep = Keep { kmax: k, shown: 0 };
            let kept = kept::keep_top_from(&init, images, (masks, &[]), scaling, keep, from);
            Ok(kept
                .into_iter()
                .skip(from)
                .map(|filters| {
                    filters
                        .par_iter()
                        .map(|f| {
                            let o = f.overlaps(&f.thresholds(&[k]), concepts, 0);
                            iou_of(&o.inter[0], o.mask_px[0], &all)
                        })
                        .collect()
                })
                .collect())
        })
        .collect::<Result<_>>()?;
    // Per layer: the seeds' filters in seed order.
    let mut null: Vec<Vec<Vec<f64>>> = vec![Vec::new(); arch.layers().len() - from];
    for seed in per_seed {
        for (layer, filters) in null.iter_mut().zip(seed) {
            layer.extend(filters);
        }
    }
    Ok(null
        .iter()
        .map(|filters| {
            let levels: Vec<f64> = (0..concepts)
                .map(|c| {
                    let mut v: Vec<f64> = filters.iter().map(|f| f[c]).collect();
                    v.sort_by(f64::total_cmp);
                    chance_level(&v)
                })
                .collect();
            let labelled = filters
                .iter()
                .filter(|f| (0..concepts).any(|c| f[c] > levels[c] + settings.margin))
                .count();
            NullLayer {
                levels,
                filters: filters.len(),
                labelled,
            }
        })
        .collect())
}

/// The chance level of one concept from the sorted IoUs of the initial filters: their 95th
/// percentile (nearest rank).
fn chance_level(sorted: &[f64]) -> f64 {
    crate::analyses::stats::nearest_rank(sorted, 0.95)
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
/// `chance_given`: the [`Chance`] of the model's architecture on the same split, masks,
/// scaling and settings, when the caller has it (a population shares one); measured here
/// when `None`.
///
/// Cost: one forward pass over the split for the model and for each null seed, keeping only
/// the pixels that can lie in a mask ([`kept`]), and the single removals measured by pruning's
/// incremental evaluator ([`tinycnn::prune::single_removals`]).
#[allow(clippy::too_many_arguments)]
pub fn dissect(
    model: &Model,
    d: &Dataset,
    part: Part,
    (masks, concepts): (&[u16], &[String]),
    scaling: Scaling,
    settings: &Settings,
    names: (&str, &str),
    chance_given: Option<&Chance>,
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
    let total = split.len() * px;
    let qs: Vec<f64> = std::iter::once(settings.quantile)
        .chain(settings.also_at.iter().copied())
        .collect();
    let keep = Keep {
        kmax: qs.iter().map(|&q| k_of(q, total)).max().unwrap_or(1),
        shown: sheet::SHOWN,
    };
    if let Some(c) = chance_given {
        let fits = c.layers.len() == model.arch.filters.len()
            && c.layers.iter().all(|l| l.levels.len() == k);
        if !fits {
            return Err(Error::Usage(format!(
                "the chance level given was measured for another architecture or concept set than {}",
                model.arch.label()
            )));
        }
    }
    // The three passes are independent: run together, each fills the others' idle moments.
    let engine = engine_data(d, part);
    let ((kept, chance), removals) = rayon::join(
        || {
            rayon::join(
                || keep_top(model, &split.images, (masks, &split.labels), scaling, keep),
                || match chance_given {
                    Some(c) => Ok(c.clone()),
                    None => chance(&model.arch, (&split.images, masks), scaling, settings, k),
                },
            )
        },
        // The causal check: every single filter's removal, as pruning's first step
        // measures it.
        || tinycnn::prune::single_removals(model, &engine, scaling),
    );
    let (chance, removals) = (chance?, removals?);
    let base = of_predictions(d, part, &removals.full, settings.bins);
    let without: Vec<(tinycnn::prune::FilterId, Removal)> = removals
        .without
        .par_iter()
        .map(|(id, preds)| {
            let w = of_predictions(d, part, preds, settings.bins);
            (*id, removal(&base, &w))
        })
        .collect();
    let all = concept_pixels(masks, px, k, |_| true);
    let by_class: Vec<Vec<u64>> = (0..d.class_names.len())
        .map(|c| concept_pixels(masks, px, k, |i| split.labels[i] as usize == c))
        .collect();
    let context = Context {
        concepts,
        classes: &d.class_names,
        settings,
        all: &all,
        by_class: &by_class,
        total,
    };
    let layers = kept
        .into_iter()
        .enumerate()
        .map(|(l, filters)| LayerDissection {
            layer: l + 1,
            null_filters: chance.layers[l].filters,
            null_labelled: chance.layers[l].labelled,
            filters: filters
                .into_par_iter()
                .enumerate()
                .map(|(f, kept)| {
                    let removal = without.iter().find(|(id, _)| *id == (l, f));
                    let levels = &chance.layers[l].levels;
                    context.filter((l, f), kept, levels, removal.map(|r| r.1.clone()))
                })
                .collect(),
            chance: chance.layers[l].levels.clone(),
        })
        .collect();
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

/// What every filter of a dissection shares.
struct Context<'a> {
    concepts: &'a [String],
    classes: &'a [String],
    settings: &'a Settings,
    /// `|L_c|` over all images, and per class.
    all: &'a [u64],
    by_class: &'a [Vec<u64>],
    /// Pixels of all images.
    total: usize,
}

impl Context<'_> {
    /// One filter dissected from what it kept of its maps, against its layer's chance level.
    fn filter(
        &self,
        id: (usize, usize),
        kept: Kept,
        chance: &[f64],
        removal: Option<Removal>,
    ) -> FilterDissection {
        let (s, k) = (self.settings, self.concepts.len());
        let ks: Vec<usize> = std::iter::once(s.quantile)
            .chain(s.also_at.iter().copied())
            .map(|q| k_of(q, self.total))
            .collect();
        let ts = kept.thresholds(&ks);
        let o = kept.overlaps(&ts, k, self.classes.len());
        let iou = iou_of(&o.inter[0], o.mask_px[0], self.all);
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &b| iou[b].total_cmp(&iou[a]).then(a.cmp(&b)));
        let (best, second) = (order[0], order.get(1).copied());
        let label = order
            .iter()
            .copied()
            .find(|&c| iou[c] > chance[c] + s.margin);
        let per_class = (0..self.classes.len())
            .map(|c| {
                let v = iou_of(&o.class_inter[c], o.class_mask_px[c], &self.by_class[c]);
                (self.classes[c].clone(), v[best])
            })
            .collect();
        let at_quantiles = s
            .also_at
            .iter()
            .enumerate()
            .map(|(j, &q)| {
                let v = iou_of(&o.inter[j + 1], o.mask_px[j + 1], self.all);
                (q, v.into_iter().fold(0.0, f64::max))
            })
            .collect();
        FilterDissection {
            filter: FilterRef::of(id),
            threshold: ts[0],
            coverage: o.mask_px[0] as f64 / self.total as f64,
            best: self.concepts[best].clone(),
            best_iou: iou[best],
            margin: iou[best] - second.map_or(0.0, |s| iou[s]),
            label: label.map(|c| self.concepts[c].clone()),
            label_margin: label.map(|c| iou[c] - chance[c]),
            iou,
            per_class,
            at_quantiles,
            removal,
            top_images: kept.peaks.iter().map(|p| p.1).collect(),
        }
    }
}

impl Dissection {
    /// Labelled filters of a layer, by concept, most common first.
    pub fn label_counts(&self, layer: &LayerDissection) -> Vec<(String, usize)> {
        label_counts(&layer.filters)
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
        crate::files::fsio::write_json_and_csv(out, "dissection", self, self.to_csv())
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
            None,
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
                    upsample::upsample(src, s.h, s.w, 16, &mut up[i * px..(i + 1) * px]);
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

    /// The chance level with the first layer's measured on the one-layer network is the chance
    /// level measured on the whole architecture, layer for layer; a different first layer
    /// measures differently (so the comparison can fail).
    #[test]
    fn a_first_layers_chance_level_is_shared() {
        let (d, masks, names) = data(28, 40);
        let settings = Settings::default();
        let at = |arch: &str| {
            let a = tinycnn::Arch::parse(arch, 28, 28, 3).unwrap();
            let full = chance(
                &a,
                (&d.val.images, &masks),
                Scaling::Raw,
                &settings,
                names.len(),
            );
            (a, full.unwrap())
        };
        let (_, four) = at("4");
        for arch in ["4-2", "4-16", "4-3-5"] {
            let (a, full) = at(arch);
            assert_eq!(
                first_layer(&a),
                tinycnn::Arch::parse("4", 28, 28, 3).unwrap()
            );
            let shared = Chance::with_first(
                &four.layers[0],
                &a,
                (&d.val.images, &masks),
                Scaling::Raw,
                (&settings, names.len()),
            )
            .unwrap();
            assert_eq!(shared, full, "{arch}");
        }
        assert!(four.layers[0].levels.iter().any(|&l| l > 0.0));
        let (_, five) = at("5-2");
        assert_ne!(five.layers[0], four.layers[0]);
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
            None,
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
