//! The analyses the thesis left as future work, for one trained run.
//!
//! - **Ranking** (future work 1): per layer, the L1 norm of each filter's kernel (Li et al.
//!   2017, "Pruning Filters for Efficient ConvNets", the thesis's reference \[23\]), its mean
//!   activation, and its first-order Taylor importance (Molchanov et al. 2017), each compared
//!   with the greedy pruning order by Spearman's rho and Kendall's tau-b.
//! - **Similarity** (future work 2): pairwise cosine similarity of kernels (and its absolute
//!   value: a kernel and its negative find the same edge with opposite sign) and of
//!   activation maps over the validation set, as percentages; clusters of redundant filters;
//!   and the thesis's claim tested: removing a filter whose twin stays costs little.
//! - **Interaction** (future work 3): accuracy with every pair of filters removed against
//!   each removed alone, `interaction = drop(i, j) - drop(i) - drop(j)` (positive: redundant,
//!   they stand in for each other; negative: removing both costs less than the sum); and the
//!   events along the pruning path where a removal raised accuracy or sharply changed another
//!   filter's importance.
//! - **Failures by latent factor** (the thesis's Table 12): the misclassified images with their
//!   factors and prediction, and accuracy per factor bin.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use shapes::Split as Part;
use tinycnn::prune::Pruning;
use tinycnn::{Model, Scaling};

use crate::analyses::pruning::FilterRef;
use crate::data::dataset::Dataset;
use crate::models::training::engine_data;

/// Average ranks (1-based, ties share their mean rank).
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation: Pearson's correlation of the average ranks. `None` when a
/// side is constant or fewer than two values.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    pearson(&ranks(a), &ranks(b))
}

fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len() as f64;
    if a.len() < 2 {
        return None;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let (va, vb): (f64, f64) = (
        a.iter().map(|x| (x - ma).powi(2)).sum(),
        b.iter().map(|y| (y - mb).powi(2)).sum(),
    );
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

/// Kendall's tau-b (ties in either ranking accounted for). `None` when undefined.
pub fn kendall(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len();
    let (mut concordant, mut discordant, mut ties_a, mut ties_b) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..n {
        for j in i + 1..n {
            let (da, db) = (a[i] - a[j], b[i] - b[j]);
            if da == 0.0 && db == 0.0 {
                continue;
            } else if da == 0.0 {
                ties_a += 1;
            } else if db == 0.0 {
                ties_b += 1;
            } else if (da > 0.0) == (db > 0.0) {
                concordant += 1;
            } else {
                discordant += 1;
            }
        }
    }
    let denom =
        (((concordant + discordant + ties_a) * (concordant + discordant + ties_b)) as f64).sqrt();
    (denom > 0.0).then(|| (concordant - discordant) as f64 / denom)
}

/// One filter's importance by each criterion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Importance {
    pub filter: FilterRef,
    pub l1_norm: f64,
    pub mean_activation: f64,
    pub taylor: f64,
    /// The step at which greedy pruning removed it (`None`: it survived, the most important).
    pub pruned_at: Option<usize>,
}

/// Agreement of one criterion with the pruning order within one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    pub layer: usize,
    pub criterion: String,
    pub spearman: Option<f64>,
    pub kendall: Option<f64>,
}

/// Ranking of filters and its agreement with greedy pruning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ranking {
    pub filters: Vec<Importance>,
    pub agreement: Vec<Agreement>,
}

/// Computes [`Ranking`]: importances on the validation split and agreement with `pruning`
/// (pruning importance: the step a filter was removed at, survivors last).
pub fn ranking(
    model: &Model,
    d: &Dataset,
    scaling: Scaling,
    pruning: &Pruning,
    stats: &crate::inside::filterstats::FilterReport,
) -> Ranking {
    let val = d.split(Part::Val);
    let taylor = tinycnn::train::taylor_importance(model, &val.images, &val.labels, scaling);
    let steps = pruning.steps.len();
    let mut filters = Vec::new();
    for (l, s) in model.arch.layers().iter().enumerate() {
        let k2 = model.arch.kernel * model.arch.kernel;
        let w = model.conv_weight(l);
        for f in 0..s.cout {
            let l1 = w[f * s.cin * k2..(f + 1) * s.cin * k2]
                .iter()
                .map(|v| v.abs() as f64)
                .sum();
            let pruned_at = pruning
                .steps
                .iter()
                .position(|st| st.removed.contains(&(l, f)))
                .map(|i| i + 1);
            filters.push(Importance {
                filter: FilterRef::of((l, f)),
                l1_norm: l1,
                mean_activation: stats
                    .filters
                    .iter()
                    .find(|x| x.layer == l + 1 && x.filter == f + 1)
                    .map_or(0.0, |x| x.mean),
                taylor: taylor[l][f],
                pruned_at,
            });
        }
    }
    let mut agreement = Vec::new();
    for l in 1..=model.arch.filters.len() {
        let fs: Vec<&Importance> = filters.iter().filter(|x| x.filter.layer == l).collect();
        let order: Vec<f64> = fs
            .iter()
            .map(|x| x.pruned_at.unwrap_or(steps + 1) as f64)
            .collect();
        for (name, v) in [
            ("l1-norm", fs.iter().map(|x| x.l1_norm).collect::<Vec<_>>()),
            (
                "mean-activation",
                fs.iter().map(|x| x.mean_activation).collect(),
            ),
            ("taylor", fs.iter().map(|x| x.taylor).collect()),
        ] {
            agreement.push(Agreement {
                layer: l,
                criterion: name.into(),
                spearman: spearman(&v, &order),
                kendall: kendall(&v, &order),
            });
        }
    }
    Ranking { filters, agreement }
}

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

/// A notable event along the pruning path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub step: usize,
    /// `raised` (a removal raised accuracy) or `importance` (a removal changed how much
    /// another filter matters by more than 0.1 of accuracy).
    pub kind: String,
    pub removed: Vec<FilterRef>,
    pub other: Option<FilterRef>,
    pub before: f64,
    pub after: f64,
    pub text: String,
}

/// Pairwise interaction of filters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    pub filters: Vec<FilterRef>,
    pub base_accuracy: f64,
    /// Accuracy with filter i removed alone (diagonal) or with i and j removed; `None` when
    /// that would empty a layer.
    pub accuracy: Vec<Vec<Option<f64>>>,
    /// `drop(i, j) - drop(i) - drop(j)`.
    pub interaction: Vec<Vec<Option<f64>>>,
    /// The most redundant and most antagonistic pairs.
    pub most_redundant: Vec<(FilterRef, FilterRef, f64)>,
    pub most_antagonistic: Vec<(FilterRef, FilterRef, f64)>,
    pub events: Vec<Event>,
}

/// Computes [`Interaction`] exactly (every pair evaluated on the smaller network).
#[allow(clippy::needless_range_loop)]
pub fn interaction(
    model: &Model,
    data: &tinycnn::Data,
    scaling: Scaling,
    pruning: &Pruning,
) -> Interaction {
    let filters = pruning.filters.clone();
    let n = filters.len();
    let base = pruning.initial_accuracy;
    let full: Vec<Vec<bool>> = model.arch.filters.iter().map(|&f| vec![true; f]).collect();
    let pairs: Vec<(usize, usize)> = (0..n).flat_map(|i| (i..n).map(move |j| (i, j))).collect();
    let accs: Vec<Option<f64>> = pairs
        .par_iter()
        .map(|&(i, j)| {
            let mut k = full.clone();
            k[filters[i].0][filters[i].1] = false;
            k[filters[j].0][filters[j].1] = false;
            model
                .pruned(&k)
                .ok()
                .map(|m| tinycnn::train::evaluate(&m, data, scaling).accuracy)
        })
        .collect();
    let mut accuracy = vec![vec![None; n]; n];
    for (&(i, j), a) in pairs.iter().zip(&accs) {
        accuracy[i][j] = *a;
        accuracy[j][i] = *a;
    }
    let mut inter = vec![vec![None; n]; n];
    let mut scored = Vec::new();
    for i in 0..n {
        for j in 0..n {
            if i == j {
                continue;
            }
            if let (Some(ij), Some(ii), Some(jj)) = (accuracy[i][j], accuracy[i][i], accuracy[j][j])
            {
                let v = (base - ij) - (base - ii) - (base - jj);
                inter[i][j] = Some(v);
                if i < j {
                    scored.push((FilterRef::of(filters[i]), FilterRef::of(filters[j]), v));
                }
            }
        }
    }
    scored.sort_by(|a, b| b.2.total_cmp(&a.2));
    let most_redundant: Vec<_> = scored
        .iter()
        .filter(|s| s.2 > 0.0)
        .take(5)
        .cloned()
        .collect();
    let most_antagonistic: Vec<_> = scored
        .iter()
        .rev()
        .filter(|s| s.2 < 0.0)
        .take(5)
        .cloned()
        .collect();
    // Events along the path.
    let mut events = Vec::new();
    let mut prev = base;
    for (t, step) in pruning.steps.iter().enumerate() {
        let removed: Vec<FilterRef> = step.removed.iter().map(|&f| FilterRef::of(f)).collect();
        let names: Vec<String> = removed.iter().map(|f| f.label()).collect();
        if step.accuracy_after > prev {
            events.push(Event {
                step: t + 1,
                kind: "raised".into(),
                removed: removed.clone(),
                other: None,
                before: prev,
                after: step.accuracy_after,
                text: format!(
                    "step {}: removing {} raised accuracy from {:.4} to {:.4}",
                    t + 1,
                    names.join(", "),
                    prev,
                    step.accuracy_after
                ),
            });
        }
        if let Some(next) = pruning.steps.get(t + 1) {
            for (i, (a, b)) in step.accuracies.iter().zip(&next.accuracies).enumerate() {
                if let (Some(a), Some(b)) = (a, b) {
                    // Importance of filter i: the drop its removal causes at that point.
                    let (da, db) = (prev - a, step.accuracy_after - b);
                    if (db - da).abs() > 0.1 {
                        let other = FilterRef::of(filters[i]);
                        events.push(Event {
                            step: t + 1,
                            kind: "importance".into(),
                            removed: removed.clone(),
                            other: Some(other),
                            before: da,
                            after: db,
                            text: format!(
                                "step {}: removing {} changed what {} costs from {:.4} to {:.4} of accuracy",
                                t + 1,
                                names.join(", "),
                                other.label(),
                                da,
                                db
                            ),
                        });
                    }
                }
            }
        }
        prev = step.accuracy_after;
    }
    Interaction {
        filters: filters.iter().map(|&f| FilterRef::of(f)).collect(),
        base_accuracy: base,
        accuracy,
        interaction: inter,
        most_redundant,
        most_antagonistic,
        events,
    }
}

/// A misclassified image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// Index in the validation split.
    pub index: usize,
    pub true_class: String,
    pub predicted: String,
    /// `(factor, value)` for every factor of the dataset.
    pub factors: Vec<(String, f32)>,
}

/// Accuracy in one bin of one factor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FactorBin {
    pub low: f32,
    pub high: f32,
    pub images: usize,
    pub accuracy: f64,
}

/// Failures by latent factor (the thesis's Table 12).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failures {
    pub images: usize,
    pub accuracy: f64,
    pub failures: Vec<Failure>,
    /// Per varying factor, accuracy in equal-width bins.
    pub by_factor: Vec<(String, Vec<FactorBin>)>,
    /// Per class, accuracy.
    pub by_class: Vec<(String, f64)>,
}

/// Computes [`Failures`] on the validation split with `bins` bins per factor.
pub fn failures(model: &Model, d: &Dataset, scaling: Scaling, bins: usize) -> Failures {
    let val = d.split(Part::Val);
    let data = engine_data(d, Part::Val);
    let logits = tinycnn::train::logits(model, &data, scaling);
    let kk = d.class_names.len();
    let k = d.factor_names.len();
    let preds: Vec<usize> = logits
        .chunks(kk)
        .map(|l| (0..kk).fold(0, |b, i| if l[i] > l[b] { i } else { b }))
        .collect();
    let ok: Vec<bool> = preds
        .iter()
        .zip(&val.labels)
        .map(|(&p, &y)| p == y as usize)
        .collect();
    let failures = (0..val.len())
        .filter(|&i| !ok[i])
        .map(|i| Failure {
            index: i,
            true_class: d.class_names[val.labels[i] as usize].clone(),
            predicted: d.class_names[preds[i]].clone(),
            factors: (0..k)
                .map(|j| (d.factor_names[j].clone(), val.factors[i * k + j]))
                .collect(),
        })
        .collect();
    let mut by_factor = Vec::new();
    for j in (0..k).filter(|&j| d.factor_names[j] != "class") {
        let col: Vec<f32> = (0..val.len()).map(|i| val.factors[i * k + j]).collect();
        let Some(edges) = crate::data::bins::Bins::over(col.iter().copied(), bins) else {
            continue;
        };
        let mut count = vec![0usize; bins];
        let mut right = vec![0usize; bins];
        for (i, &v) in col.iter().enumerate() {
            let b = edges.of(v);
            count[b] += 1;
            right[b] += ok[i] as usize;
        }
        by_factor.push((
            d.factor_names[j].clone(),
            (0..bins)
                .map(|b| FactorBin {
                    low: edges.edges(b).0,
                    high: edges.edges(b).1,
                    images: count[b],
                    accuracy: if count[b] == 0 {
                        0.0
                    } else {
                        right[b] as f64 / count[b] as f64
                    },
                })
                .collect(),
        ));
    }
    let by_class = (0..kk)
        .map(|c| {
            let idx: Vec<usize> = (0..val.len())
                .filter(|&i| val.labels[i] as usize == c)
                .collect();
            let acc = if idx.is_empty() {
                0.0
            } else {
                idx.iter().filter(|&&i| ok[i]).count() as f64 / idx.len() as f64
            };
            (d.class_names[c].clone(), acc)
        })
        .collect();
    Failures {
        images: val.len(),
        accuracy: ok.iter().filter(|&&x| x).count() as f64 / val.len().max(1) as f64,
        failures,
        by_factor,
        by_class,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_correlations_match_known_values() {
        // Perfect agreement, perfect disagreement.
        assert_eq!(
            spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]),
            Some(1.0)
        );
        assert_eq!(
            kendall(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]),
            Some(-1.0)
        );
        // Average ranks for ties.
        assert_eq!(ranks(&[10.0, 20.0, 20.0, 5.0]), vec![2.0, 3.5, 3.5, 1.0]);
        // scipy.stats.spearmanr([1,2,3,4,5],[2,1,4,3,5]) = 0.8, kendalltau = 0.6
        let (a, b) = ([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 1.0, 4.0, 3.0, 5.0]);
        assert!((spearman(&a, &b).unwrap() - 0.8).abs() < 1e-12);
        assert!((kendall(&a, &b).unwrap() - 0.6).abs() < 1e-12);
        // tau-b with ties: scipy.stats.kendalltau([1,1,2,3],[1,2,2,3]) = 0.8
        assert!(
            (kendall(&[1.0, 1.0, 2.0, 3.0], &[1.0, 2.0, 2.0, 3.0]).unwrap() - 0.8).abs() < 1e-12
        );
        assert_eq!(spearman(&[1.0, 1.0], &[1.0, 2.0]), None);
    }

    #[test]
    fn cosine_of_opposites() {
        assert!((cosine(&[1.0, 2.0], &[-1.0, -2.0]) + 1.0).abs() < 1e-12);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 2.0]), 0.0);
    }
}

/// Everything `shapelab analyze` computes for one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub model: String,
    pub arch: String,
    pub data: String,
    pub pruning: crate::analyses::pruning::PruneJson,
    pub ranking: Ranking,
    pub similarity: Similarity,
    pub interaction: Interaction,
    pub failures: Failures,
}

/// Runs every analysis of a run on `d`'s validation split.
pub fn analyze(
    model: &Model,
    d: &Dataset,
    scaling: Scaling,
    name: &str,
    data_name: &str,
) -> tinycnn::Result<Report> {
    let val = engine_data(d, Part::Val);
    let stats = crate::inside::filterstats::filter_stats(model, d, Part::Val, scaling, 5);
    let start = std::time::Instant::now();
    let p = tinycnn::prune::greedy(
        model,
        &val,
        scaling,
        tinycnn::prune::Ties::One,
        tinycnn::prune::Stop::OnePerLayer,
    )?;
    let seconds = start.elapsed().as_secs_f64();
    let single_drop: Vec<Vec<Option<f64>>> = model
        .arch
        .filters
        .iter()
        .enumerate()
        .map(|(l, &nf)| {
            (0..nf)
                .map(|f| {
                    let i = p.filters.iter().position(|&x| x == (l, f))?;
                    p.steps.first()?.accuracies[i].map(|a| p.initial_accuracy - a)
                })
                .collect()
        })
        .collect();
    Ok(Report {
        model: name.into(),
        arch: model.arch.label(),
        data: data_name.into(),
        ranking: ranking(model, d, scaling, &p, &stats),
        similarity: similarity(model, d, scaling, 90.0, &single_drop),
        interaction: interaction(model, &val, scaling, &p),
        failures: failures(model, d, scaling, 5),
        pruning: crate::analyses::pruning::PruneJson::new(&p, "val", val.len(), "one", seconds),
    })
}

impl Report {
    /// The findings in words, each with its number.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{} ({}) on {}: validation accuracy {:.4}\n\n",
            self.model, self.arch, self.data, self.failures.accuracy
        );
        out +=
            "Ranking criteria against the greedy pruning order (Spearman rho / Kendall tau-b):\n";
        for a in &self.ranking.agreement {
            let f = |v: Option<f64>| v.map_or("  n/a".into(), |x| format!("{x:+.2}"));
            out += &format!(
                "  layer {} {:>16}: {} / {}\n",
                a.layer,
                a.criterion,
                f(a.spearman),
                f(a.kendall)
            );
        }
        out += &format!(
            "\nSimilar filters (activation maps at least {:.0}% alike):\n",
            self.similarity.threshold
        );
        for l in &self.similarity.layers {
            let groups: Vec<String> = l
                .clusters
                .iter()
                .map(|g| g.iter().map(|f| f.label()).collect::<Vec<_>>().join("+"))
                .collect();
            out += &format!(
                "  layer {}: {}\n",
                l.layer,
                if groups.is_empty() {
                    "none".into()
                } else {
                    groups.join(", ")
                }
            );
        }
        let show = |v: Option<f64>| v.map_or("n/a".into(), |x| format!("{x:.4}"));
        out += &format!(
            "  removing a filter alone costs {} of accuracy on average when it has a twin ({} filters), {} when it has none ({})\n",
            show(self.similarity.drop_with_twin),
            self.similarity.with_twin,
            show(self.similarity.drop_without_twin),
            self.similarity.without_twin
        );
        out += "\nInteraction (drop of the pair minus the two single drops):\n";
        for (a, b, v) in &self.interaction.most_redundant {
            out += &format!("  redundant  {} + {}: {:+.4}\n", a.label(), b.label(), v);
        }
        for (a, b, v) in &self.interaction.most_antagonistic {
            out += &format!("  antagonist {} + {}: {:+.4}\n", a.label(), b.label(), v);
        }
        out += &format!(
            "\nEvents along the pruning path ({}):\n",
            self.interaction.events.len()
        );
        for e in self.interaction.events.iter().take(12) {
            out += &format!("  {}\n", e.text);
        }
        out += &format!(
            "\nFailures: {} of {} validation images\n",
            self.failures.failures.len(),
            self.failures.images
        );
        for (factor, bins) in &self.failures.by_factor {
            let parts: Vec<String> = bins
                .iter()
                .map(|b| format!("{:.2}-{:.2}: {:.3}", b.low, b.high, b.accuracy))
                .collect();
            out += &format!("  accuracy by {factor}: {}\n", parts.join(", "));
        }
        out
    }
}

/// Writes the report's files into `out`: `analysis.json`, `ranking.csv`, `failures.csv`,
/// `similarity-layer-N.png`, `interaction.png`, `accuracy-by-FACTOR.png`, `failures.png`, and
/// the pruning table and curve in `prune/`.
pub fn write(
    report: &Report,
    d: &Dataset,
    out: &std::path::Path,
) -> crate::Result<Vec<std::path::PathBuf>> {
    let png = |c: crate::draw::Canvas| c.to_png().map_err(|e| crate::error::Error::io(out, e));
    let mut files = tables(report, d);
    files.extend(similarity_pictures(report, &png)?);
    files.extend(interaction_pictures(report, &png)?);
    files.push(failures_sheet(report, d, &png)?);
    crate::files::fsio::derived_dir(out)?;
    let mut written = Vec::new();
    for (name, bytes) in files {
        let p = out.join(&name);
        crate::files::fsio::write_file_atomic(&p, true, |w| std::io::Write::write_all(w, &bytes))?;
        written.push(p);
    }
    written.extend(crate::analyses::pruning::write(
        &report.pruning,
        &format!("{} {} greedy pruning", report.model, report.arch),
        &out.join("prune"),
    )?);
    Ok(written)
}

/// A named file's bytes.
type File = (String, Vec<u8>);

/// Encodes a drawn picture as PNG (an error names the output directory).
type Png<'a> = dyn Fn(crate::draw::Canvas) -> crate::Result<Vec<u8>> + 'a;

/// `analysis.json`, `ranking.csv` and `failures.csv`.
fn tables(report: &Report, d: &Dataset) -> Vec<File> {
    let mut files: Vec<File> = Vec::new();
    files.push((
        "analysis.json".into(),
        (serde_json::to_string_pretty(report).expect("json") + "\n").into_bytes(),
    ));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "filter",
        "l1_norm",
        "mean_activation",
        "taylor",
        "pruned_at_step",
    ])
    .expect("csv");
    for f in &report.ranking.filters {
        w.write_record([
            f.filter.label(),
            f.l1_norm.to_string(),
            f.mean_activation.to_string(),
            f.taylor.to_string(),
            f.pruned_at.map_or("survived".into(), |s| s.to_string()),
        ])
        .expect("csv");
    }
    files.push(("ranking.csv".into(), w.into_inner().expect("csv")));
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["index".to_string(), "true".into(), "predicted".into()];
    header.extend(d.factor_names.iter().cloned());
    w.write_record(&header).expect("csv");
    for f in &report.failures.failures {
        let mut row = vec![
            f.index.to_string(),
            f.true_class.clone(),
            f.predicted.clone(),
        ];
        row.extend(f.factors.iter().map(|x| x.1.to_string()));
        w.write_record(&row).expect("csv");
    }
    files.push(("failures.csv".into(), w.into_inner().expect("csv")));
    files
}

/// Per layer, the activation-map and kernel similarity matrices.
fn similarity_pictures(report: &Report, png: &Png) -> crate::Result<Vec<File>> {
    use crate::draw::Colormap;
    let mut files: Vec<File> = Vec::new();
    for l in &report.similarity.layers {
        let labels: Vec<String> = (1..=l.activation_cosine.len())
            .map(|f| format!("L{} F{f}", l.layer))
            .collect();
        let opt = |m: &Vec<Vec<f64>>| {
            m.iter()
                .map(|r| r.iter().map(|&v| Some(v)).collect())
                .collect::<Vec<Vec<Option<f64>>>>()
        };
        files.push((
            format!("similarity-layer-{}-activations.png", l.layer),
            png(crate::analyses::plots::matrix(
                &format!("layer {}: activation-map similarity (cosine, %)", l.layer),
                &labels,
                &opt(&l.activation_cosine),
                0.0,
                100.0,
                Colormap::Viridis,
                "%",
            ))?,
        ));
        files.push((
            format!("similarity-layer-{}-kernels.png", l.layer),
            png(crate::analyses::plots::matrix(
                &format!("layer {}: kernel similarity (cosine, %)", l.layer),
                &labels,
                &opt(&l.kernel_cosine),
                -100.0,
                100.0,
                Colormap::Diverging,
                "%",
            ))?,
        ));
    }
    Ok(files)
}

/// The interaction matrix and accuracy by factor bin.
fn interaction_pictures(report: &Report, png: &Png) -> crate::Result<Vec<File>> {
    use crate::draw::Colormap;
    let mut files: Vec<File> = Vec::new();
    let labels: Vec<String> = report
        .interaction
        .filters
        .iter()
        .map(|f| f.label())
        .collect();
    let extent = report
        .interaction
        .interaction
        .iter()
        .flatten()
        .flatten()
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(1e-6);
    files.push((
        "interaction.png".into(),
        png(crate::analyses::plots::matrix(
            "interaction: drop(i, j) - drop(i) - drop(j) (red: redundant pair)",
            &labels,
            &report.interaction.interaction,
            -extent,
            extent,
            Colormap::Diverging,
            "",
        ))?,
    ));
    for (factor, bins) in &report.failures.by_factor {
        let b: Vec<(String, f64, usize)> = bins
            .iter()
            .map(|x| (format!("{:.2}", x.low), x.accuracy, x.images))
            .collect();
        files.push((
            format!("accuracy-by-{factor}.png"),
            png(crate::analyses::plots::bars(
                &format!("accuracy by {factor} (bins from)"),
                &b,
            ))?,
        ));
    }
    Ok(files)
}

/// The sheet of misclassified validation images (the first 60), captioned true>predicted.
fn failures_sheet(report: &Report, d: &Dataset, png: &Png) -> crate::Result<File> {
    let px = d.pixels();
    let val = d.split(Part::Val);
    let shown: Vec<(&[u8], Vec<String>)> = report
        .failures
        .failures
        .iter()
        .take(60)
        .map(|f| {
            let vary: Vec<String> = report
                .failures
                .by_factor
                .iter()
                .take(1)
                .map(|(name, _)| {
                    let v = f.factors.iter().find(|x| &x.0 == name).map_or(0.0, |x| x.1);
                    format!("{name} {}", crate::data::contact::format_value(v))
                })
                .collect();
            let mut cap = vec![format!(
                "{}>{}",
                crate::text::prefix(&f.true_class, 3),
                crate::text::prefix(&f.predicted, 3)
            )];
            cap.extend(vary);
            (&val.images[f.index * px..(f.index + 1) * px], cap)
        })
        .collect();
    Ok((
        "failures.png".into(),
        png(crate::analyses::plots::image_grid(
            &format!(
                "{} misclassified of {} (true>predicted; first 60)",
                report.failures.failures.len(),
                report.failures.images
            ),
            &shown,
            d.width,
            d.height,
            10,
        ))?,
    ))
}
