//! Similarity of filters (thesis future work 2): pairwise cosine similarity of kernels (and
//! its absolute value: a kernel and its negative find the same edge with opposite sign) and of
//! activation maps over the validation set, as percentages; clusters of redundant filters;
//! and the thesis's claim tested: removing a filter whose twin stays costs little.
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
    /// Groups of filters whose activation similarity chains at or above the threshold.
    pub clusters: Vec<Vec<FilterRef>>,
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

/// Computes [`Similarity`]; `single_drop[l][f]` is the accuracy drop of removing filter `f`
/// of layer `l` alone (from pruning's first step).
// Index loops over square matrices read more plainly than iterator chains here.
#[allow(clippy::needless_range_loop)]
pub fn similarity(
    model: &Model,
    d: &Dataset,
    scaling: Scaling,
    threshold: f64,
    single_drop: &[Vec<Option<f64>>],
) -> Similarity {
    let val = d.split(Part::Val);
    let layers = model.arch.layers();
    let k2 = model.arch.kernel * model.arch.kernel;
    // Gram matrices of activation maps, streamed over the validation set.
    let mut gram: Vec<Vec<f64>> = layers.iter().map(|s| vec![0.0; s.cout * s.cout]).collect();
    let px = d.pixels();
    for start in (0..val.len()).step_by(256) {
        let end = (start + 256).min(val.len());
        let (maps, _) = tinycnn::train::capture(model, &val.images[start * px..end * px], scaling);
        for (l, s) in layers.iter().enumerate() {
            let hw = s.hw();
            let g = &mut gram[l];
            for img in 0..end - start {
                let m = &maps[l].post[img * s.cout * hw..(img + 1) * s.cout * hw];
                for i in 0..s.cout {
                    for j in i..s.cout {
                        let dot: f64 = m[i * hw..(i + 1) * hw]
                            .iter()
                            .zip(&m[j * hw..(j + 1) * hw])
                            .map(|(a, b)| (*a as f64) * (*b as f64))
                            .sum();
                        g[i * s.cout + j] += dot;
                    }
                }
            }
        }
    }
    let mut out_layers = Vec::new();
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
        let mut ac = vec![vec![0.0; n]; n];
        let g = &gram[l];
        for i in 0..n {
            for j in 0..n {
                let c = 100.0 * cosine(&kern(i), &kern(j));
                kc[i][j] = c;
                ka[i][j] = c.abs();
                let (a, b) = (i.min(j), i.max(j));
                let denom = (g[i * n + i] * g[j * n + j]).sqrt();
                ac[i][j] = if denom > 0.0 {
                    100.0 * g[a * n + b] / denom
                } else {
                    0.0
                };
            }
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
                if ac[i][j] >= threshold {
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
        for (i, row) in ac.iter().enumerate() {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_opposites() {
        assert!((cosine(&[1.0, 2.0], &[-1.0, -2.0]) + 1.0).abs() < 1e-12);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 2.0]), 0.0);
    }
}
