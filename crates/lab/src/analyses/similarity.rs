//! Similarity of filters (thesis future work 2): pairwise cosine similarity of kernels (and
//! its absolute value: a kernel and its negative find the same edge with opposite sign) and of
//! activation maps over the validation set, as percentages; clusters of redundant filters;
//! and the thesis's claim tested: removing a filter whose twin stays costs little.
//!
//! Twins are judged by the Pearson correlation of the maps (centred over images and
//! positions), not their cosine: ReLU maps are never negative, so the cosine of almost any two
//! is high and says little. The null level is the same statistic for the same architecture at
//! its Glorot initialisation (seed 0): what "alike" reads for filters that learned nothing.
//!
//! A pure function of a model and a dataset; must not write files.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shapes::Split as Part;
use tinycnn::{Model, Scaling};

use crate::analyses::pruning::FilterRef;
use crate::data::dataset::Dataset;

/// Pairwise similarities of one layer's filters, in percent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSimilarity {
    pub layer: usize,
    /// Cosine similarity of kernels, `[F, F]`, percent (-100..100).
    pub kernel_cosine: Vec<Vec<f64>>,
    /// Its absolute value (a kernel and its negative count as alike).
    pub kernel_abs_cosine: Vec<Vec<f64>>,
    /// Cosine similarity of activation maps over the validation set, percent (0..100 for ReLU).
    pub activation_cosine: Vec<Vec<f64>>,
    /// Pearson correlation of activation maps over the validation set (centred over images and
    /// positions), percent (-100..100); 0 for a silent filter. Absent in analyses written
    /// before schema 2, which judged twins by the cosine.
    #[serde(default)]
    pub activation_correlation: Option<Vec<Vec<f64>>>,
    /// Groups of filters whose activation similarity chains at or above the threshold.
    pub clusters: Vec<Vec<FilterRef>>,
}

impl LayerSimilarity {
    /// The matrix twins are judged by: the correlation, or the cosine for analyses written
    /// before the correlation existed.
    pub fn twin_measure(&self) -> &Vec<Vec<f64>> {
        self.activation_correlation
            .as_ref()
            .unwrap_or(&self.activation_cosine)
    }
}

/// Similarity of filters, and the twin test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Similarity {
    /// Activation similarity (percent) at which two filters count as twins.
    pub threshold: f64,
    pub layers: Vec<LayerSimilarity>,
    /// Mean accuracy drop of removing (alone, from the full network) a filter that has a twin,
    /// and one that has none, with their counts: the thesis's claim is that the first is small.
    pub drop_with_twin: Option<f64>,
    pub drop_without_twin: Option<f64>,
    pub with_twin: usize,
    pub without_twin: usize,
    /// The null level at Glorot initialisation (absent before schema 2): filters with a twin,
    /// of all, and per layer the median absolute correlation between two filters' maps,
    /// `(trained, initial)`, in percent.
    #[serde(default)]
    pub null: Option<NullLevel>,
}

/// What the similarity statistics read for the same architecture before training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NullLevel {
    /// Filters with a twin at initialisation, and all filters.
    pub twins: (usize, usize),
    /// Per layer, `(trained, initial)` median absolute pairwise correlation, percent.
    pub median_correlation: Vec<(f64, f64)>,
}

/// Streamed second moments of each layer's activation maps over a split: the Gram matrix
/// `[F, F]`, the sums `[F]` and the number of values per filter.
struct Moments {
    gram: Vec<f64>,
    sums: Vec<f64>,
    count: f64,
}

/// [`Moments`] of every layer of `model` over split `part` of `d`.
fn moments(model: &Model, d: &Dataset, part: Part, scaling: Scaling) -> Vec<Moments> {
    let val = d.split(part);
    let layers = model.arch.layers();
    let mut out: Vec<Moments> = layers
        .iter()
        .map(|s| Moments {
            gram: vec![0.0; s.cout * s.cout],
            sums: vec![0.0; s.cout],
            count: 0.0,
        })
        .collect();
    let px = d.pixels();
    // 64 images at a time bound the maps' memory; the sums run image by image, so the batch
    // changes no result.
    for start in (0..val.len()).step_by(64) {
        let end = (start + 64).min(val.len());
        let (maps, _) = tinycnn::train::capture(model, &val.images[start * px..end * px], scaling);
        for (l, s) in layers.iter().enumerate() {
            let hw = s.hw();
            let o = &mut out[l];
            for img in 0..end - start {
                let m = &maps[l].post[img * s.cout * hw..(img + 1) * s.cout * hw];
                for i in 0..s.cout {
                    let mi = &m[i * hw..(i + 1) * hw];
                    o.sums[i] += mi.iter().map(|&v| v as f64).sum::<f64>();
                    for j in i..s.cout {
                        let dot: f64 = mi
                            .iter()
                            .zip(&m[j * hw..(j + 1) * hw])
                            .map(|(a, b)| (*a as f64) * (*b as f64))
                            .sum();
                        o.gram[i * s.cout + j] += dot;
                    }
                }
                o.count += hw as f64;
            }
        }
    }
    out
}

impl Moments {
    /// Cosine `[F, F]` in percent (0 where a filter is silent).
    fn cosine(&self, n: usize) -> Vec<Vec<f64>> {
        let g = |i: usize, j: usize| self.gram[i.min(j) * n + i.max(j)];
        (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| {
                        let denom = (g(i, i) * g(j, j)).sqrt();
                        if denom > 0.0 {
                            100.0 * g(i, j) / denom
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// Pearson correlation `[F, F]` in percent (0 where a filter is constant).
    fn correlation(&self, n: usize) -> Vec<Vec<f64>> {
        let c = self.count.max(1.0);
        let cov = |i: usize, j: usize| {
            self.gram[i.min(j) * n + i.max(j)] - self.sums[i] * self.sums[j] / c
        };
        (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| {
                        let denom = (cov(i, i) * cov(j, j)).sqrt();
                        if denom > 1e-12 * c {
                            100.0 * cov(i, j) / denom
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect()
    }
}

/// The median of `|m[i][j]|` over pairs `i < j` (0 for fewer than two filters).
fn median_pair(m: &[Vec<f64>]) -> f64 {
    let mut v: Vec<f64> = (0..m.len())
        .flat_map(|i| (i + 1..m.len()).map(move |j| (i, j)))
        .map(|(i, j)| m[i][j].abs())
        .collect();
    crate::experiments::summary::median(&mut v).unwrap_or(0.0)
}

/// Filters with a twin (another at or above `threshold`) in `m`.
fn with_twin(m: &[Vec<f64>], threshold: f64) -> usize {
    (0..m.len())
        .filter(|&i| (0..m.len()).any(|j| j != i && m[i][j] >= threshold))
        .count()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let (na, nb) = (
        a.iter().map(|x| x * x).sum::<f64>().sqrt(),
        b.iter().map(|x| x * x).sum::<f64>().sqrt(),
    );
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / (na * nb)
}

/// Computes [`Similarity`] over split `part` of `d`; `single_drop[l][f]` is the accuracy drop
/// of removing filter `f` of layer `l` alone, measured on the same split.
// Index loops over square matrices read more plainly than iterator chains here.
#[allow(clippy::needless_range_loop)]
pub fn similarity(
    model: &Model,
    d: &Dataset,
    part: Part,
    scaling: Scaling,
    threshold: f64,
    single_drop: &[Vec<Option<f64>>],
) -> Similarity {
    let layers = model.arch.layers();
    let k2 = model.arch.kernel * model.arch.kernel;
    let trained = moments(model, d, part, scaling);
    let initial = Model::init(&model.arch, tinycnn::Init::Glorot, 0)
        .map(|m| moments(&m, d, part, scaling))
        .ok();
    let mut out_layers = Vec::new();
    let mut null_twins = (0, 0);
    let mut medians = Vec::new();
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for (l, s) in layers.iter().enumerate() {
        let w = model.conv_weight(l);
        let kern = |f: usize| -> Vec<f64> {
            w[f * s.cin * k2..(f + 1) * s.cin * k2]
                .iter()
                .map(|&v| v as f64)
                .collect()
        };
        let n = s.cout;
        let mut kc = vec![vec![0.0; n]; n];
        let mut ka = vec![vec![0.0; n]; n];
        for i in 0..n {
            for j in 0..n {
                let c = 100.0 * cosine(&kern(i), &kern(j));
                kc[i][j] = c;
                ka[i][j] = c.abs();
            }
        }
        let ac = trained[l].cosine(n);
        let corr = trained[l].correlation(n);
        if let Some(init) = &initial {
            let c0 = init[l].correlation(n);
            null_twins.0 += with_twin(&c0, threshold);
            null_twins.1 += n;
            medians.push((median_pair(&corr), median_pair(&c0)));
        }
        // Clusters: connected components of the "twin" graph.
        let mut comp: Vec<usize> = (0..n).collect();
        fn root(c: &mut [usize], i: usize) -> usize {
            let mut r = i;
            while c[r] != r {
                r = c[r];
            }
            c[i] = r;
            r
        }
        for i in 0..n {
            for j in i + 1..n {
                if corr[i][j] >= threshold {
                    let (a, b) = (root(&mut comp, i), root(&mut comp, j));
                    comp[a.max(b)] = a.min(b);
                }
            }
        }
        let mut groups: BTreeMap<usize, Vec<FilterRef>> = BTreeMap::new();
        for i in 0..n {
            let r = root(&mut comp, i);
            groups.entry(r).or_default().push(FilterRef::of((l, i)));
        }
        for (i, row) in corr.iter().enumerate() {
            let twin = (0..n).any(|j| j != i && row[j] >= threshold);
            if let Some(Some(drop)) = single_drop.get(l).and_then(|v| v.get(i)) {
                if twin {
                    with.push(*drop);
                } else {
                    without.push(*drop);
                }
            }
        }
        out_layers.push(LayerSimilarity {
            layer: l + 1,
            kernel_cosine: kc,
            kernel_abs_cosine: ka,
            activation_cosine: ac,
            activation_correlation: Some(corr),
            clusters: groups.into_values().filter(|g| g.len() > 1).collect(),
        });
    }
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    Similarity {
        threshold,
        layers: out_layers,
        drop_with_twin: mean(&with),
        drop_without_twin: mean(&without),
        with_twin: with.len(),
        without_twin: without.len(),
        null: initial.is_some().then_some(NullLevel {
            twins: null_twins,
            median_correlation: medians,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Moments of two filters whose values over three positions are `x` and `y`.
    fn moments_of(x: [f64; 3], y: [f64; 3]) -> Moments {
        let dot = |a: &[f64; 3], b: &[f64; 3]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
        Moments {
            gram: vec![dot(&x, &x), dot(&x, &y), 0.0, dot(&y, &y)],
            sums: vec![x.iter().sum(), y.iter().sum()],
            count: 3.0,
        }
    }

    #[test]
    fn correlation_is_centred_where_the_cosine_is_not() {
        // Non-negative maps that move in opposite directions: the cosine calls them alike,
        // the correlation opposite.
        let m = moments_of([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]);
        assert!((m.cosine(2)[0][1] - 100.0 * 10.0 / 14.0).abs() < 1e-9);
        assert!((m.correlation(2)[0][1] + 100.0).abs() < 1e-9);
        let m = moments_of([1.0, 2.0, 3.0], [2.0, 4.0, 6.5]);
        // The naive centred formula (numpy.corrcoef) gives 0.99794872 for these.
        assert!((m.correlation(2)[0][1] - 99.794872).abs() < 1e-5);
        // A constant (or silent) filter correlates with nothing.
        let m = moments_of([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]);
        assert_eq!(m.correlation(2)[0][1], 0.0);
        assert_eq!(median_pair(&m.correlation(2)), 0.0);
        assert_eq!(with_twin(&[vec![100.0, 95.0], vec![95.0, 100.0]], 90.0), 2);
    }

    #[test]
    fn cosine_of_opposites() {
        assert!((cosine(&[1.0, 2.0], &[-1.0, -2.0]) + 1.0).abs() < 1e-12);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 2.0]), 0.0);
    }
}
