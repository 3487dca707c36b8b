//! Interaction of filters (thesis future work 3): accuracy with every pair of filters removed
//! against each removed alone, `interaction = drop(i, j) - drop(i) - drop(j)` (positive:
//! redundant, they stand in for each other; negative: removing both costs less than the sum);
//! and the events along the pruning path where a removal raised accuracy or sharply changed
//! another filter's importance.
//!
//! A pure function of a model, data and a pruning; must not write files.

use serde::{Deserialize, Serialize};
use tinycnn::prune::Pruning;
use tinycnn::{Model, Scaling};

use crate::analyses::pruning::FilterRef;

/// A notable event along the pruning path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub step: usize,
    pub kind: EventKind,
    pub removed: Vec<FilterRef>,
    pub other: Option<FilterRef>,
    pub before: f64,
    pub after: f64,
    pub text: String,
    /// For a raise: images the removal turned right, and turned wrong (absent in analyses
    /// written before schema 2).
    #[serde(default)]
    pub flips: Option<(usize, usize)>,
    /// For a raise: the exact two-sided McNemar p-value of those flips (absent before schema 2).
    #[serde(default)]
    pub p_value: Option<f64>,
}

/// The exact two-sided McNemar test (McNemar 1947; the exact binomial form): the chance, if a
/// removal changed nothing but noise, of a split of `b + c` discordant images at least as
/// lopsided as `b` against `c`. `1` when nothing flipped.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // P(X <= k) for X ~ Binomial(n, 1/2), each term in logs to stay finite for large n.
    let ln_choose = |n: usize, k: usize| -> f64 {
        (1..=k)
            .map(|i| ((n - k + i) as f64).ln() - (i as f64).ln())
            .sum()
    };
    let tail: f64 = (0..=k)
        .map(|i| (ln_choose(n, i) - n as f64 * std::f64::consts::LN_2).exp())
        .sum();
    (2.0 * tail).min(1.0)
}

/// Images the network without `removed` (on top of `gone`) gets right that the network
/// without `gone` got wrong, and the reverse.
fn flips(
    model: &Model,
    data: &tinycnn::Data,
    scaling: Scaling,
    gone: &[(usize, usize)],
    removed: &[(usize, usize)],
) -> Option<(usize, usize)> {
    let keep = |extra: &[(usize, usize)]| {
        let mut k = model.arch.keep_all();
        for &(l, f) in gone.iter().chain(extra) {
            k[l][f] = false;
        }
        k
    };
    let right = |k: Vec<Vec<bool>>| -> Option<Vec<bool>> {
        let m = model.pruned(&k).ok()?;
        let kk = m.arch.classes;
        let logits = tinycnn::train::logits(&m, data, scaling);
        Some(
            logits
                .chunks(kk)
                .zip(data.labels)
                .map(|(row, &y)| tinycnn::train::Evaluation::of_logits(row, &[y], kk).correct == 1)
                .collect(),
        )
    };
    let (before, after) = (right(keep(&[]))?, right(keep(removed))?);
    let b = before
        .iter()
        .zip(&after)
        .filter(|(x, y)| !**x && **y)
        .count();
    let c = before
        .iter()
        .zip(&after)
        .filter(|(x, y)| **x && !**y)
        .count();
    Some((b, c))
}

/// What happened at an [`Event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A removal raised accuracy.
    Raised,
    /// A removal changed how much another filter matters by more than 0.1 of accuracy.
    Importance,
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

/// Computes [`Interaction`] exactly: every pair's accuracy is that of the smaller network,
/// measured incrementally ([`tinycnn::prune::pair_removals`]).
///
/// `data`: the images to measure on, `[N, 1, H, W]`: the held-out split, not the one
/// `pruning` (the greedy pruning of `model`) chose its steps on. The events are found along
/// that path as it was chosen, and each raise is then tested on `data`. Cost: one cached forward
/// pass, then `F` incremental steps of up to `F` candidates.
pub fn interaction(
    model: &Model,
    data: &tinycnn::Data,
    scaling: Scaling,
    pruning: &Pruning,
) -> tinycnn::Result<Interaction> {
    let filters = &pruning.filters;
    let base = tinycnn::train::evaluate(model, data, scaling).accuracy;
    let pairs = tinycnn::prune::pair_removals(model, data, scaling)?;
    debug_assert_eq!(&pairs.filters, filters);
    let accuracy = pairs.accuracy;
    let (inter, mut scored) = interactions(&accuracy, base, filters);
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
    Ok(Interaction {
        filters: filters.iter().map(|&f| FilterRef::of(f)).collect(),
        base_accuracy: base,
        accuracy,
        interaction: inter,
        most_redundant,
        most_antagonistic,
        events: tested(events(pruning), model, data, scaling, pruning),
    })
}

/// A scored pair of filters.
type Pair = (FilterRef, FilterRef, f64);

/// `drop(i, j) - drop(i) - drop(j)` as a `[F, F]` matrix (`None` on the diagonal and where a
/// pair is undefined), and the defined pairs with `i < j`.
// Index loops over a square matrix read more plainly than iterator chains here.
#[allow(clippy::needless_range_loop)]
fn interactions(
    accuracy: &[Vec<Option<f64>>],
    base: f64,
    filters: &[(usize, usize)],
) -> (Vec<Vec<Option<f64>>>, Vec<Pair>) {
    let n = filters.len();
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
    (inter, scored)
}

/// Adds to every raise its flipped images and their exact McNemar p-value.
fn tested(
    mut events: Vec<Event>,
    model: &Model,
    data: &tinycnn::Data,
    scaling: Scaling,
    pruning: &Pruning,
) -> Vec<Event> {
    for e in events.iter_mut().filter(|e| e.kind == EventKind::Raised) {
        let gone: Vec<(usize, usize)> = pruning.steps[..e.step - 1]
            .iter()
            .flat_map(|s| s.removed.iter().copied())
            .collect();
        let removed = &pruning.steps[e.step - 1].removed;
        e.flips = flips(model, data, scaling, &gone, removed);
        e.p_value = e.flips.map(|(b, c)| mcnemar_exact(b, c));
    }
    events
}

/// The events along the pruning path: removals that raised accuracy, and removals that changed
/// another filter's single-removal drop by more than 0.1.
fn events(pruning: &Pruning) -> Vec<Event> {
    let filters = &pruning.filters;
    let mut events = Vec::new();
    let mut prev = pruning.initial_accuracy;
    for (t, step) in pruning.steps.iter().enumerate() {
        let removed: Vec<FilterRef> = step.removed.iter().map(|&f| FilterRef::of(f)).collect();
        let names: Vec<String> = removed.iter().map(|f| f.label()).collect();
        if step.accuracy_after > prev {
            events.push(Event {
                step: t + 1,
                kind: EventKind::Raised,
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
                flips: None,
                p_value: None,
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
                            kind: EventKind::Importance,
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
                            flips: None,
                            p_value: None,
                        });
                    }
                }
            }
        }
        prev = step.accuracy_after;
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcnemar_matches_the_binomial_tail() {
        // 0 against 5: 2 x (1/2)^5 = 0.0625; 1 against 9: 2 x 11/1024 = 0.021484375.
        assert!((mcnemar_exact(0, 5) - 0.0625).abs() < 1e-12);
        assert!((mcnemar_exact(9, 1) - 22.0 / 1024.0).abs() < 1e-12);
        assert_eq!(mcnemar_exact(3, 3), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // Large counts stay finite: 700 against 800 of 1,500.
        let p = mcnemar_exact(700, 800);
        assert!(p > 0.0 && p < 0.02, "{p}");
    }
}
