//! Two runs compared layer by layer, and one permuted onto the other.
//!
//! Per conv layer: the correlation of every filter of run A with every filter of run B
//! ([`correlation`](super::correlation)), the one-to-one matching that maximises it
//! ([`assignment`](super::assignment); the smaller layer matched into the larger), the
//! matched correlations, and debiased linear CKA ([`cka`](super::cka)). Then, when the runs
//! have the same architecture: B permuted onto A by that matching (Git Re-Basin's activation
//! matching, Ainsworth et al. 2022), and the loss and accuracy along the straight line from A
//! to B before and after, with their barriers (the largest rise above the line between the
//! ends; Frankle et al. 2020).
//!
//! Choices and measurements are kept apart: the matching is chosen on one split (validation),
//! everything reported is measured on another (the held-out test split when the data has
//! one). The control is the same comparison of A with Glorot initialisations of B's
//! architecture: what "alike" reads for filters that learned nothing.
//!
//! A pure function of two models and a dataset, plus the files it writes; must not know
//! stores.

use serde::{Deserialize, Serialize};
use shapes::Split as Part;
use tinycnn::{Model, Scaling};

use super::correlation::Captured;
use super::{assignment, cka, correlation};
use crate::data::dataset::Dataset;
use crate::error::{Error, Result};
use crate::models::training::engine_data;

/// How a comparison is made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Glorot initialisations of B's architecture compared with A, as the control (seeds
    /// from [`NULL_SEEDS`]).
    pub null_seeds: u64,
    /// Points on the straight line from A to B, ends included.
    pub points: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            null_seeds: 3,
            points: 21,
        }
    }
}

impl Settings {
    pub fn check(&self) -> Result<()> {
        if !(1..=100).contains(&self.null_seeds) {
            return Err(Error::Usage(format!(
                "--null-seeds {}: give 1 to 100 initialisations",
                self.null_seeds
            )));
        }
        if !(3..=201).contains(&self.points) {
            return Err(Error::Usage(format!(
                "--points {}: give 3 to 201 points on the path",
                self.points
            )));
        }
        Ok(())
    }
}

/// One run, as a comparison sees it.
pub struct Side<'a> {
    pub name: &'a str,
    pub model: &'a Model,
    pub scaling: Scaling,
}

/// A matched pair of filters (0-based) and their correlation on the measured split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    pub a: usize,
    pub b: usize,
    pub correlation: f64,
}

/// The control: A against initialisations of B's architecture, per seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Null {
    /// Mean matched correlation of each initialisation with A.
    pub mean_matched: Vec<f64>,
    /// CKA of each initialisation with A.
    pub cka: Vec<f64>,
}

/// One conv layer of the two runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerComparison {
    /// 1-based.
    pub layer: usize,
    pub filters_a: usize,
    pub filters_b: usize,
    /// Correlation of A's filter `i` with B's filter `j`, `[filters_a][filters_b]`, on the
    /// measured split.
    pub correlation: Vec<Vec<f64>>,
    /// The matching (chosen on the choosing split), by A's filter.
    pub pairs: Vec<Pair>,
    pub mean_matched: f64,
    /// Debiased linear CKA of the layer's maps on the measured split.
    pub cka: f64,
    pub null: Null,
}

/// A point of the straight line `(1 - t) A + t B`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathPoint {
    pub t: f64,
    pub loss: f64,
    pub accuracy: f64,
}

/// The line from A to B: raw, and with B permuted onto A.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Path {
    pub before: Vec<PathPoint>,
    pub after: Vec<PathPoint>,
    /// The largest rise of the loss above the chord between the ends, before and after.
    pub loss_barrier_before: f64,
    pub loss_barrier_after: f64,
    /// The largest fall of accuracy below the chord between the ends.
    pub accuracy_barrier_before: f64,
    pub accuracy_barrier_after: f64,
}

/// Two runs compared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub schema: crate::files::schema::Schema<1>,
    pub a: String,
    pub b: String,
    pub data: String,
    /// The split the matching was chosen on, and the one everything is measured on.
    pub chosen_on: Part,
    pub split: Part,
    pub images: usize,
    pub settings: Settings,
    pub accuracy_a: f64,
    pub accuracy_b: f64,
    /// B permuted onto A, on the measured split (equal to B's: a permutation changes
    /// nothing); absent when the runs' architectures differ.
    pub accuracy_aligned: Option<f64>,
    pub layers: Vec<LayerComparison>,
    /// Absent when the runs' architectures or input scalings differ, with the reason in
    /// `note`.
    pub path: Option<Path>,
    pub note: Option<String>,
}

impl Comparison {
    /// What a reader needs, in sentences: per layer the matched correlation and CKA against
    /// the control's, then the barriers.
    pub fn to_text(&self) -> String {
        let mut t = format!(
            "{} vs {} on {} ({} images of the {} split; matching chosen on {}). Accuracy: A {:.4}, B {:.4}",
            self.a,
            self.b,
            self.data,
            self.images,
            self.split.name(),
            self.chosen_on.name(),
            self.accuracy_a,
            self.accuracy_b
        );
        match self.accuracy_aligned {
            Some(x) => t += &format!(", B permuted onto A {x:.4}.\n"),
            None => t += ".\n",
        }
        for l in &self.layers {
            let strong = l.pairs.iter().filter(|p| p.correlation >= 0.8).count();
            t += &format!(
                "Layer {} ({} vs {} filters): matched correlation {:.3} on average ({strong} of {} pairs at 0.8 or above), against {} for A and {} Glorot initialisations of B's architecture; CKA {:.4}, against {}.\n",
                l.layer,
                l.filters_a,
                l.filters_b,
                l.mean_matched,
                l.pairs.len(),
                span(&l.null.mean_matched, 2),
                l.null.mean_matched.len(),
                l.cka,
                span(&l.null.cka, 4),
            );
        }
        if let Some(p) = &self.path {
            t += &format!(
                "On the straight line from A to B ({} points): loss barrier {:.4} as trained, {:.4} with B permuted onto A; accuracy barrier {:.4} and {:.4}.\n",
                p.before.len(),
                p.loss_barrier_before,
                p.loss_barrier_after,
                p.accuracy_barrier_before,
                p.accuracy_barrier_after
            );
        }
        if let Some(n) = &self.note {
            t += &format!("Note: {n}.\n");
        }
        t
    }

    /// One row per matched pair: layer, filters (1-based) and their correlation.
    pub fn to_csv(&self) -> Vec<u8> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(["layer", "filter_a", "filter_b", "correlation"])
            .expect("in-memory csv");
        for l in &self.layers {
            for p in &l.pairs {
                w.write_record([
                    l.layer.to_string(),
                    (p.a + 1).to_string(),
                    (p.b + 1).to_string(),
                    format!("{:.6}", p.correlation),
                ])
                .expect("in-memory csv");
            }
        }
        w.into_inner().expect("in-memory csv")
    }

    /// Writes `compare.json`, `compare.csv`, a correlation matrix per layer and the barrier
    /// plot into `out`; returns the files written.
    pub fn write(&self, out: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
        let mut written =
            crate::files::fsio::write_json_and_csv(out, "compare", self, self.to_csv())?;
        for l in &self.layers {
            let p = out.join(format!("correlation-layer-{}.png", l.layer));
            super::figures::correlation(self, l).save_png(&p)?;
            written.push(p);
        }
        if let Some(canvas) = super::figures::barrier(self) {
            let p = out.join("barrier.png");
            canvas.save_png(&p)?;
            written.push(p);
        }
        Ok(written)
    }
}

/// `lo-hi` of `v`, with `decimals` decimals.
fn span(v: &[f64], decimals: usize) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.decimals$}-{hi:.decimals$}")
}

/// The matching of `corr [a][b]`: `(filter of A, filter of B)` pairs by A's filter, the
/// smaller side matched into the larger.
pub fn match_filters(corr: &[Vec<f64>]) -> Vec<(usize, usize)> {
    let (a, b) = (corr.len(), corr.first().map_or(0, Vec::len));
    let mut pairs: Vec<(usize, usize)> = if a <= b {
        assignment::maximise(corr).into_iter().enumerate().collect()
    } else {
        let t: Vec<Vec<f64>> = (0..b)
            .map(|j| (0..a).map(|i| corr[i][j]).collect())
            .collect();
        assignment::maximise(&t)
            .into_iter()
            .enumerate()
            .map(|(j, i)| (i, j))
            .collect()
    };
    pairs.sort_unstable();
    pairs
}

/// The permutations that put B's filters in the order of the A filters they match (the
/// runs have equal widths): `perms[l][i]` is B's filter matched to A's filter `i`.
pub fn permutations(layers: &[Vec<(usize, usize)>]) -> Vec<Vec<usize>> {
    layers
        .iter()
        .map(|pairs| pairs.iter().map(|&(_, b)| b).collect())
        .collect()
}

/// A run matched to a reference whose maps are captured over the choosing and the measuring
/// images: the matching per layer (chosen on the first), each pair's correlation (measured on
/// the second), and, when asked for, every correlation `[C_ref][C_run]` per layer there.
pub(super) struct Alignment {
    pub picks: Vec<Vec<(usize, usize)>>,
    /// Per layer, the correlation of each pick.
    pub matched: Vec<Vec<f64>>,
    pub corr: Option<Vec<Vec<Vec<f64>>>>,
}

/// `member` matched to the reference; `full` also measures the pairs not matched.
pub(super) fn align(
    reference: (&Captured, &Captured),
    member: (&Model, Scaling),
    (choose, measure): (&[u8], &[u8]),
    full: bool,
) -> Alignment {
    let picks: Vec<Vec<(usize, usize)>> = correlation::against(reference.0, member, choose, None)
        .iter()
        .map(|m| match_filters(&m.correlation()))
        .collect();
    let only = (!full).then_some(&picks[..]);
    let measured = correlation::against(reference.1, member, measure, only);
    Alignment {
        matched: picks
            .iter()
            .zip(&measured)
            .map(|(p, m)| p.iter().map(|&(i, j)| m.of(i, j)).collect())
            .collect(),
        corr: full.then(|| {
            measured
                .iter()
                .map(correlation::Moments::correlation)
                .collect()
        }),
        picks,
    }
}

/// Each layer's maps after the activation, flattened per image, as CKA Grams `[n, n]`.
pub(super) fn grams(model: &Model, images: &[u8], scaling: Scaling) -> Vec<Vec<f64>> {
    let layers = model.arch.layers();
    let n = images.len() / (model.arch.height * model.arch.width);
    let mut maps: Vec<Vec<f32>> = vec![Vec::new(); layers.len()];
    tinycnn::train::capture_post_into(model, images, scaling, &mut maps);
    // Each layer's maps dropped once its Gram is made.
    layers
        .iter()
        .zip(maps)
        .map(|(s, m)| cka::gram(&m, n, s.cout * s.hw(), s.hw()))
        .collect()
}

/// The largest rise of `v(t)` above (`sign` 1) or fall below (`sign` -1) the chord between
/// its ends.
fn barrier(points: &[PathPoint], value: impl Fn(&PathPoint) -> f64, sign: f64) -> f64 {
    let (first, last) = (value(&points[0]), value(&points[points.len() - 1]));
    points
        .iter()
        .map(|p| sign * (value(p) - ((1.0 - p.t) * first + p.t * last)))
        .fold(0.0, f64::max)
}

/// The models at `points` evenly spaced points of the line from `a` to `b`.
fn line(a: &Model, b: &Model, points: usize) -> Result<Vec<(f64, Model)>> {
    (0..points)
        .map(|i| {
            let t = i as f64 / (points - 1) as f64;
            Ok((t, Model::lerp(a, b, t as f32)?))
        })
        .collect()
}

/// A stage of [`compare`], reported as it begins so that a caller can show progress (two
/// 32-32 runs on 6,000 images: the matching 2 s, CKA 15 s, 3 initialisations of the control
/// 26 s, the line 5 s, on a 2-core Intel Xeon).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// A's and B's maps, their correlations and the matching.
    Matching,
    /// The CKA Gram matrices of A and B.
    Cka,
    /// Initialisation `i` (from 0) of the control, of `of`.
    Control { i: u64, of: u64 },
    /// The loss and accuracy along the straight lines from A to B.
    Line,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stage::Matching => write!(f, "matching the filters"),
            Stage::Cka => write!(f, "CKA of A and B"),
            Stage::Control { i, of } => write!(f, "the control: initialisation {} of {of}", i + 1),
            Stage::Line => write!(f, "the straight line from A to B"),
        }
    }
}

/// A and B compared on dataset `d`: matching chosen on `choose`, everything measured on
/// `split`. Returns the comparison and, when the architectures agree, B permuted onto A.
/// `stage` is told of each [`Stage`] as it begins.
///
/// # Shapes
/// Maps per layer `[n, C, H, W]` for the `n` images of a split; correlations `[C_A, C_B]`;
/// Grams `[n, n]`.
pub fn compare(
    a: &Side,
    b: &Side,
    d: &Dataset,
    (choose, split): (Part, Part),
    settings: &Settings,
    data_name: &str,
    stage: &dyn Fn(Stage),
) -> Result<(Comparison, Option<Model>)> {
    settings.check()?;
    check_comparable(a, b)?;
    let (chosen, measured) = splits(d, (choose, split), data_name)?;
    let n = measured.len();
    if n < 4 {
        return Err(Error::Usage(format!(
            "the {} split of {data_name} has {n} images; CKA needs at least 4",
            split.name()
        )));
    }
    let images = (&chosen.images[..], &measured.images[..]);
    // A's maps once, for B and for every initialisation of the control.
    stage(Stage::Matching);
    let (on_chosen, on_measured) = Captured::both(a.model, a.scaling, images);
    let captured = (&on_chosen, &on_measured);
    let Alignment { picks, corr, .. } = align(captured, (b.model, b.scaling), images, true);
    let corr = corr.expect("asked for");
    // One after the other: each Gram is computed in parallel already, and two at once held
    // both runs' maps (4.4 GB at the peak for two 32-32 runs on 6,000 images).
    stage(Stage::Cka);
    let ga = grams(a.model, &measured.images, a.scaling);
    let ga: Vec<cka::Gram> = ga.iter().map(|k| cka::Gram::new(k, n)).collect();
    let cka_ab: Vec<f64> = {
        let gb = grams(b.model, &measured.images, b.scaling);
        ga.iter()
            .zip(&gb)
            .map(|(ka, kb)| ka.cka(&cka::Gram::new(kb, n)))
            .collect()
    };
    let null = null_level(
        captured,
        (b.model, b.scaling),
        images,
        &ga,
        (settings, stage),
    )?;
    let layers: Vec<LayerComparison> = (0..picks.len())
        .map(|l| {
            let pairs: Vec<Pair> = picks[l]
                .iter()
                .map(|&(i, j)| Pair {
                    a: i,
                    b: j,
                    correlation: corr[l][i][j],
                })
                .collect();
            LayerComparison {
                layer: l + 1,
                filters_a: corr[l].len(),
                filters_b: corr[l].first().map_or(0, Vec::len),
                mean_matched: mean(pairs.iter().map(|p| p.correlation)),
                pairs,
                correlation: corr[l].clone(),
                cka: cka_ab[l],
                null: Null {
                    mean_matched: null.iter().map(|s| s.0[l]).collect(),
                    cka: null.iter().map(|s| s.1[l]).collect(),
                },
            }
        })
        .collect();
    let data = engine_data(d, split);
    let eval = |m: &Model, s: Scaling| tinycnn::train::evaluate(m, &data, s).accuracy;
    let mut c = Comparison {
        schema: crate::files::schema::Schema::CURRENT,
        a: a.name.into(),
        b: b.name.into(),
        data: data_name.into(),
        chosen_on: choose,
        split,
        images: n,
        settings: settings.clone(),
        accuracy_a: eval(a.model, a.scaling),
        accuracy_b: eval(b.model, b.scaling),
        accuracy_aligned: None,
        layers,
        path: None,
        note: None,
    };
    if a.model.arch != b.model.arch {
        c.note = Some(format!(
            "{} and {} differ in architecture, so B is not permuted onto A and there is no straight line between them; each layer's smaller side is matched into the larger",
            a.model.arch.label(),
            b.model.arch.label()
        ));
        return Ok((c, None));
    }
    let aligned = b.model.permuted(&permutations(&picks))?;
    c.accuracy_aligned = Some(eval(&aligned, b.scaling));
    if a.scaling != b.scaling {
        c.note = Some(format!(
            "A scales its input {} and B {}, so there is no single network on the line between them",
            format!("{:?}", a.scaling).to_lowercase(),
            format!("{:?}", b.scaling).to_lowercase()
        ));
        return Ok((c, Some(aligned)));
    }
    stage(Stage::Line);
    c.path = Some(paths(
        (a.model, b.model, &aligned),
        &data,
        a.scaling,
        settings.points,
    )?);
    Ok((c, Some(aligned)))
}

/// The straight lines from `a` to `b` as trained and to `b` aligned onto `a`, at `points`
/// points each, measured on `data`, with their barriers.
pub(super) fn paths(
    (a, b, aligned): (&Model, &Model, &Model),
    data: &tinycnn::Data,
    scaling: Scaling,
    points: usize,
) -> Result<Path> {
    use rayon::prelude::*;
    let (before, after) = (line(a, b, points)?, line(a, aligned, points)?);
    // A point of the aligned line with the same weights as the raw line's, bit for bit (at
    // t = 0 both are A), is measured once.
    let same = |x: &Model, y: &Model| {
        x.params
            .iter()
            .map(|v| v.to_bits())
            .eq(y.params.iter().map(|v| v.to_bits()))
    };
    let eval = |m: &Model| tinycnn::train::evaluate(m, data, scaling);
    let raw: Vec<_> = before.par_iter().map(|p| eval(&p.1)).collect();
    let aligned: Vec<_> = after
        .par_iter()
        .zip(before.par_iter().zip(&raw))
        .map(|(p, (q, e))| {
            if same(&p.1, &q.1) {
                e.clone()
            } else {
                eval(&p.1)
            }
        })
        .collect();
    let path_points = |line: &[(f64, Model)], evals: Vec<tinycnn::train::Evaluation>| -> Vec<_> {
        line.iter()
            .zip(evals)
            .map(|(p, e)| PathPoint {
                t: p.0,
                loss: e.loss,
                accuracy: e.accuracy,
            })
            .collect()
    };
    let (before, after) = (path_points(&before, raw), path_points(&after, aligned));
    Ok(Path {
        loss_barrier_before: barrier(&before, |p| p.loss, 1.0),
        loss_barrier_after: barrier(&after, |p| p.loss, 1.0),
        accuracy_barrier_before: barrier(&before, |p| p.accuracy, -1.0),
        accuracy_barrier_after: barrier(&after, |p| p.accuracy, -1.0),
        before,
        after,
    })
}

/// The first seed of the control's initialisations: far from the seeds runs are trained
/// from, so that the control is never a run's own starting point.
pub const NULL_SEEDS: u64 = 0x5EED_0000;

/// Per initialisation of B's architecture: its mean matched correlation with A (matched on
/// the choosing images, measured on the others) and its CKA with A, per layer.
fn null_level(
    a: (&Captured, &Captured),
    (arch_of, scaling): (&Model, Scaling),
    images: (&[u8], &[u8]),
    grams_a: &[cka::Gram],
    (settings, stage): (&Settings, &dyn Fn(Stage)),
) -> Result<Vec<(Vec<f64>, Vec<f64>)>> {
    let n = images.1.len() / (arch_of.arch.height * arch_of.arch.width);
    (0..settings.null_seeds)
        .map(|seed| {
            stage(Stage::Control {
                i: seed,
                of: settings.null_seeds,
            });
            let init = Model::init(&arch_of.arch, tinycnn::Init::Glorot, NULL_SEEDS + seed)?;
            let Alignment { matched, .. } = align(a, (&init, scaling), images, false);
            let g = grams(&init, images.1, scaling);
            Ok((
                matched.iter().map(|m| mean(m.iter().copied())).collect(),
                (0..matched.len())
                    .map(|l| grams_a[l].cka(&cka::Gram::new(&g[l], n)))
                    .collect(),
            ))
        })
        .collect()
}

pub(super) fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (mut s, mut k) = (0.0, 0usize);
    for x in v {
        s += x;
        k += 1;
    }
    if k == 0 {
        0.0
    } else {
        s / k as f64
    }
}

/// B's filters matched to A's, layer by layer (the matching of [`compare`], without its CKA,
/// control or path): chosen on split `choose` of `d`, each pair's correlation measured on
/// `split`. What the explorer draws side by side.
///
/// # Shapes
/// Per layer, one [`Pair`] per filter of the narrower run, by A's filter.
pub fn matching(
    a: &Side,
    b: &Side,
    d: &Dataset,
    (choose, split): (Part, Part),
) -> Result<Vec<Vec<Pair>>> {
    check_comparable(a, b)?;
    let (chosen, measured) = splits(d, (choose, split), "the data")?;
    let images = (&chosen.images[..], &measured.images[..]);
    let (on_chosen, on_measured) = Captured::both(a.model, a.scaling, images);
    let Alignment { picks, matched, .. } = align(
        (&on_chosen, &on_measured),
        (b.model, b.scaling),
        images,
        false,
    );
    Ok(picks
        .iter()
        .zip(&matched)
        .map(|(p, r)| {
            p.iter()
                .zip(r)
                .map(|(&(a, b), &correlation)| Pair { a, b, correlation })
                .collect()
        })
        .collect())
}

/// The choosing and the measuring splits of `d` (named `data_name` in the error).
fn splits<'a>(
    d: &'a Dataset,
    (choose, split): (Part, Part),
    data_name: &str,
) -> Result<(
    &'a crate::data::dataset::Split,
    &'a crate::data::dataset::Split,
)> {
    let part = |p: Part| {
        d.try_split(p).ok_or_else(|| {
            Error::Usage(format!(
                "{data_name} has no {} split to compare on",
                p.name()
            ))
        })
    };
    Ok((part(choose)?, part(split)?))
}

/// Runs that cannot be compared: different numbers of conv layers or input sizes.
fn check_comparable(a: &Side, b: &Side) -> Result<()> {
    let (x, y) = (&a.model.arch, &b.model.arch);
    if x.filters.len() != y.filters.len() {
        return Err(Error::Usage(format!(
            "{} has {} conv layers and {} has {}; only runs with the same number of layers can be compared",
            a.name,
            x.filters.len(),
            b.name,
            y.filters.len()
        )));
    }
    if (x.height, x.width, x.classes) != (y.height, y.width, y.classes) {
        return Err(Error::Usage(format!(
            "{} reads {}x{} images into {} classes and {} reads {}x{} into {}; they cannot see the same data",
            a.name, x.width, x.height, x.classes, b.name, y.width, y.height, y.classes
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::analyses::seeds) fn data() -> Dataset {
        let mut f = shapes::presets::find("thesis-1.3")
            .expect("preset exists")
            .spec_file();
        (f.train, f.val, f.test) = (Some(300), Some(120), Some(150));
        Dataset::generate(&f.resolve().unwrap(), None, &|_| {})
    }

    pub(in crate::analyses::seeds) fn trained(d: &Dataset, arch: &str, seed: u64) -> Model {
        let a = tinycnn::Arch::parse(arch, 28, 28, 3).unwrap();
        let cfg = tinycnn::TrainConfig {
            epochs: 3,
            seed,
            ..tinycnn::TrainConfig::default()
        };
        let train = engine_data(d, Part::Train);
        let val = engine_data(d, Part::Val);
        tinycnn::train::train(&a, &cfg, &train, &val, &mut tinycnn::train::Silent)
            .unwrap()
            .model
    }

    /// A run against a randomly permuted copy of itself: the matching recovers the
    /// permutation, CKA is 1, the aligned copy is the run itself, and the barrier after
    /// alignment is zero; before it, the line between the two is no better than its ends.
    #[test]
    fn a_permuted_copy_is_recovered() {
        let d = data();
        let m = trained(&d, "6-5", 1);
        let perms = vec![vec![4, 2, 5, 0, 1, 3], vec![3, 0, 4, 2, 1]];
        let copy = m.permuted(&perms).unwrap();
        let (a, b) = (
            Side {
                name: "a",
                model: &m,
                scaling: Scaling::Unit,
            },
            Side {
                name: "b",
                model: &copy,
                scaling: Scaling::Unit,
            },
        );
        let settings = Settings {
            null_seeds: 2,
            points: 5,
        };
        let (c, aligned) =
            compare(&a, &b, &d, (Part::Val, Part::Test), &settings, "d", &|_| {}).unwrap();
        for (l, layer) in c.layers.iter().enumerate() {
            // A's filter perms[l][j] is the copy's filter j.
            for p in &layer.pairs {
                assert_eq!(perms[l][p.b], p.a, "layer {}", l + 1);
                assert!(p.correlation > 0.999999, "{}", p.correlation);
            }
            assert!((layer.cka - 1.0).abs() < 1e-6, "CKA {}", layer.cka);
            // The control reads lower. Matched correlations of initial filters stay far
            // below 1; CKA over flattened maps does not (0.96-0.99 here: it sees the
            // images more than the filters), so it is only compared with its control.
            assert!(
                layer.null.mean_matched.iter().all(|&x| x < 0.8),
                "{layer:?}"
            );
            assert!(layer.null.cka.iter().all(|&x| x < layer.cka));
        }
        assert_eq!(aligned.unwrap().params, m.params);
        assert_eq!(c.accuracy_aligned, Some(c.accuracy_b));
        // The matching alone gives the comparison's pairs, bit for bit.
        let pairs = matching(&a, &b, &d, (Part::Val, Part::Test)).unwrap();
        let full: Vec<Vec<Pair>> = c.layers.iter().map(|l| l.pairs.clone()).collect();
        assert_eq!(pairs, full);
        let path = c.path.unwrap();
        assert_eq!(path.loss_barrier_after, 0.0);
        assert_eq!(path.accuracy_barrier_after, 0.0);
        assert_eq!(path.before.len(), 5);
        assert!(path.loss_barrier_before > 0.0);
    }

    #[test]
    fn different_widths_match_the_smaller_into_the_larger() {
        let d = data();
        let (x, y) = (trained(&d, "6-5", 1), trained(&d, "3-5", 2));
        let (a, b) = (
            Side {
                name: "a",
                model: &x,
                scaling: Scaling::Unit,
            },
            Side {
                name: "b",
                model: &y,
                scaling: Scaling::Unit,
            },
        );
        let settings = Settings {
            null_seeds: 1,
            points: 3,
        };
        let (c, aligned) =
            compare(&a, &b, &d, (Part::Val, Part::Test), &settings, "d", &|_| {}).unwrap();
        assert!(aligned.is_none() && c.path.is_none() && c.note.is_some());
        let first = &c.layers[0];
        assert_eq!(
            (first.filters_a, first.filters_b, first.pairs.len()),
            (6, 3, 3)
        );
        let mut bs: Vec<usize> = first.pairs.iter().map(|p| p.b).collect();
        bs.sort_unstable();
        assert_eq!(bs, vec![0, 1, 2]);
        // Fewer layers cannot be compared.
        let z = trained(&d, "4", 3);
        let c = Side {
            name: "c",
            model: &z,
            scaling: Scaling::Unit,
        };
        let e = compare(&a, &c, &d, (Part::Val, Part::Test), &settings, "d", &|_| {}).unwrap_err();
        assert!(e.to_string().contains("same number of layers"), "{e}");
    }
}
