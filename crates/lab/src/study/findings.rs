//! The report's findings as data: pure functions from the study's runs, stuck groups and case
//! analyses to typed [`Finding`]s, each carrying the numbers its sentence states.
//!
//! The thesis stated its observations in words (Chapter 4 and its conclusions a-c); here each
//! becomes a statistic computed from the store, so a test can check the number and the report
//! only renders it. Must not read files, format HTML or know the report's layout.

use std::collections::BTreeMap;

use crate::analyses::analysis::Report as Analysis;
use crate::analyses::interaction::EventKind;
use crate::analyses::pruning::PruneJson;
use crate::analyses::ranking::Criterion;
use crate::experiments::first_steps::FirstSteps;
use crate::experiments::outcome::Diagnosis;
use crate::experiments::outcome::Outcome;
use crate::experiments::store::RunRow;
use crate::experiments::stuck::StuckGroup;
use crate::experiments::summary::{median, newcombe, wilson};

/// `k` of `n` runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub k: usize,
    pub n: usize,
}

impl Tally {
    fn of<'a>(runs: impl Iterator<Item = &'a RunRow>, hit: impl Fn(&RunRow) -> bool) -> Tally {
        runs.fold(Tally::default(), |t, r| Tally {
            k: t.k + usize::from(hit(r)),
            n: t.n + 1,
        })
    }
}

/// How often the runs of one training condition learned (the thesis's Tables 2-9 in one line).
#[derive(Clone, Debug, PartialEq)]
pub struct Learning {
    /// The condition's name (empty: the default settings).
    pub condition: String,
    pub learned: Tally,
    /// Wilson 95% interval of the learned share.
    pub interval: (f64, f64),
    pub stuck: usize,
    /// Learned (or nearly), then fell to a plateau.
    pub collapsed: usize,
    pub partial: usize,
    /// Partial runs still rising at the epoch cap, trained further with their own settings:
    /// how many then learned.
    pub partial_continued: Tally,
    /// Learned among the nets with two, one, and three or more conv layers.
    pub two_layers: Tally,
    pub one_layer: Tally,
    pub deeper: Tally,
    /// Dataset-architecture cells whose seeds both learned and failed, of all cells.
    pub mixed_cells: Tally,
    /// One-layer minus two-layer learned share, with Newcombe's 95% interval, when the
    /// condition has both.
    pub one_minus_two: Option<(f64, f64, f64)>,
}

/// A condition's name, learned runs, Wilson 95% interval and median epochs to learn.
pub type ConditionRate = (String, Tally, (f64, f64), Option<f64>);

/// The study's headline: how often runs learned under each condition, and whether the
/// condition decides it.
#[derive(Clone, Debug, PartialEq)]
pub struct Headline {
    /// Per condition: learned of runs, Wilson 95% interval, median epochs to learn.
    pub conditions: Vec<ConditionRate>,
    /// The best and worst condition, when their intervals do not overlap.
    pub decided: Option<(String, String)>,
    /// Per condition, how the runs that learned (judged on validation) score on the held-out
    /// test split; absent for a condition none of whose learned runs has a test accuracy.
    pub held_out: Vec<(String, HeldOutScore)>,
}

/// Test accuracies of learned runs: the split that made no choice, so a learned label that
/// reflects only the validation images would show here.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldOutScore {
    /// Learned runs with a test accuracy.
    pub runs: usize,
    pub median: f64,
    pub lowest: f64,
    /// Learned runs whose test accuracy is below 0.99.
    pub below_99: usize,
}

/// How a thesis claim fares in this study.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The study's number agrees with the thesis's (within its interval).
    Reproduced,
    /// The study's number points the other way, beyond its interval.
    Contradicted,
    /// The interval is too wide to say either way.
    NoEvidence,
    /// The study has nothing to compare (no such runs or dataset).
    NotComparable,
}

/// What the study measured for a claim.
#[derive(Clone, Debug, PartialEq)]
pub enum Evidence {
    /// A share with its Wilson 95% interval.
    Rate(Tally, (f64, f64)),
    /// Two shares and their difference `(d, low, high)` (Newcombe 95%).
    Contrast(Tally, Tally, (f64, f64, f64)),
    /// Dataset-architecture cells whose seeds both learned and failed, of all cells.
    MixedCells(Tally),
    /// One value per analysed seed of a case study, and the decimals to show them with.
    Seeds(Vec<f64>, usize),
    /// Accuracy-raising removals significant by the exact McNemar test, of those tested.
    Significant(Tally),
    None,
}

/// One claim of the thesis set against one condition of the study.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    pub claim: &'static str,
    /// The thesis's own number, as it reports it.
    pub thesis: &'static str,
    pub condition: String,
    pub evidence: Evidence,
    pub verdict: Verdict,
}

/// Whether a stuck run is a dead end (thesis future work 4), as the continuations show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StuckVerdict {
    /// Every stuck run's last conv layer is entirely dead and they were continued with their
    /// own settings: its weight gradients are exactly zero, so none can escape. Guaranteed,
    /// not measured.
    DeadByConstruction,
    /// A change of settings revived stuck runs: they sat on dead units, not in a minimum
    /// that training cannot leave.
    Rescued,
    /// Changes of settings were tried and none revived a stuck run.
    DeadEnds,
    /// At least one in ten escaped when trained further.
    SlowStretches,
    Mixed,
    /// No stuck run was trained further.
    NotTried,
}

/// Stuck-run statistics summed over groups, each architecture weighted by its runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StuckTally {
    pub runs: usize,
    pub stuck: usize,
    /// Stuck runs per plateau accuracy.
    pub plateaus: BTreeMap<String, usize>,
    /// Sum of the last layer's dead fraction over stuck runs, and the runs counted; the same
    /// over the other runs.
    dead_stuck: (f64, usize),
    dead_other: (f64, usize),
    /// Each group's median plateau start.
    pub starts: Vec<f64>,
    /// Continued stuck runs that escaped, of those tried.
    pub escaped: usize,
    pub tried: usize,
    /// The same per rescue label (`same`, `adam`, `unit`, `reinit`, a learning rate).
    pub rescues: BTreeMap<String, Tally>,
}

impl StuckTally {
    pub fn add(&mut self, g: &StuckGroup) {
        self.runs += g.runs;
        self.stuck += g.stuck;
        for (p, n) in &g.plateaus {
            *self.plateaus.entry(p.clone()).or_default() += n;
        }
        if let Some(v) = g.dead_fraction_stuck.last() {
            self.dead_stuck.0 += v * g.stuck as f64;
            self.dead_stuck.1 += g.stuck;
        }
        if let Some(v) = g.dead_fraction_other.last() {
            let others = g.runs - g.stuck;
            self.dead_other.0 += v * others as f64;
            self.dead_other.1 += others;
        }
        if let Some(v) = g.median_plateau_start {
            self.starts.push(v);
        }
        for (_, label, k, n) in &g.continued {
            self.escaped += k;
            self.tried += n;
            let t = self.rescues.entry(label.clone()).or_default();
            t.k += k;
            t.n += n;
        }
    }

    /// Mean dead fraction of the last conv layer in stuck runs (`None`: no stuck run).
    pub fn dead_in_stuck(&self) -> Option<f64> {
        (self.dead_stuck.1 > 0).then(|| self.dead_stuck.0 / self.dead_stuck.1 as f64)
    }

    /// The same in the other runs.
    pub fn dead_in_others(&self) -> Option<f64> {
        (self.dead_other.1 > 0).then(|| self.dead_other.0 / self.dead_other.1 as f64)
    }

    /// The median over groups of the plateau's first epoch.
    pub fn median_start(&self) -> Option<f64> {
        median(&mut self.starts.clone())
    }
}

/// When runs get stuck, and whether they escape.
#[derive(Clone, Debug, PartialEq)]
pub struct Stuck {
    /// The one condition these runs share (never pooled across conditions).
    pub condition: String,
    pub tally: StuckTally,
    /// Stuck two-layer runs by the first layer's filters, with Wilson 95% intervals.
    pub by_first_layer: Vec<(usize, Tally, (f64, f64))>,
    /// Stuck runs whose last conv layer is entirely dead, of the stuck runs diagnosed.
    pub fully_dead: Tally,
    /// Whether every continuation reused the run's own settings.
    pub same_settings: bool,
    /// Per rescue: escaped of tried, with the Wilson 95% interval.
    pub rescues: Vec<(String, Tally, (f64, f64))>,
    pub verdict: StuckVerdict,
}

/// What the findings are computed from.
pub struct Inputs<'a> {
    pub runs: &'a [RunRow],
    /// Dataset label to the preset it was generated from.
    pub sources: &'a BTreeMap<String, String>,
    /// Stuck runs' diagnoses, by run key.
    pub diagnoses: &'a BTreeMap<String, Diagnosis>,
    pub stuck: &'a [StuckGroup],
    /// Case analyses by case slug.
    pub cases: &'a [(String, Analysis)],
    /// Every continuation of a run the store holds.
    pub continuations: &'a [crate::experiments::store::ContinuationRow],
    /// Replayed first updates, by run key.
    pub first_steps: &'a BTreeMap<String, FirstSteps>,
    /// Every run's per-epoch history, by run key.
    pub histories: &'a BTreeMap<String, Vec<tinycnn::EpochStats>>,
}

/// When the last conv layer dies during training and what that does to its gradient, failed
/// against learned runs of one condition, from the per-epoch records (dead filters and
/// weight-gradient norms per layer).
#[derive(Clone, Debug, PartialEq)]
pub struct Dying {
    pub condition: String,
    /// Runs whose last conv layer was entirely dead (silent on every training image) at the
    /// end of some epoch, `(failed, learned)`; over the runs with per-epoch records.
    pub all_dead: (Tally, Tally),
    /// The median epoch at which that first happened, over the failed runs where it did.
    pub all_dead_epoch: Option<f64>,
    /// Runs in which the last conv layer's weights received exactly zero gradient over a
    /// whole epoch, `(failed, learned)`; over the runs with recorded gradient norms.
    pub zero_gradient: (Tally, Tally),
    /// Of the failed runs with a zero-gradient epoch, those whose dense weights received
    /// exactly zero gradient in that epoch too (then only the output bias still moves).
    pub dense_zero_too: Tally,
}

/// When the filters of failed runs die, against learned runs of the same condition, from
/// their replayed first updates.
#[derive(Clone, Debug, PartialEq)]
pub struct Mechanism {
    pub condition: String,
    /// Runs replayed: failed (stuck or collapsed), learned.
    pub runs: (usize, usize),
    /// Updates replayed per run.
    pub steps: usize,
    /// Mean share of the last conv layer silent on the probe, `(failed, learned)`: before any
    /// update, after the first, and after the last replayed.
    pub dead_last: [(f64, f64); 3],
    /// Per conv layer, the mean relative size of the first update over the runs that have
    /// the layer, `(failed, learned)`.
    pub first_update: Vec<(f64, f64)>,
    /// Failed minus learned, with seeded bootstrap 95% intervals: the last conv layer's silent
    /// share after the last replayed update, and the last conv layer's first-update size (the
    /// last layer of each net, whatever its depth).
    pub dead_difference: Option<(f64, f64, f64)>,
    pub update_difference: Option<(f64, f64, f64)>,
}

/// [`Mechanism`] for `condition`; `None` unless both failed and learned runs were replayed.
pub fn mechanism(inp: &Inputs, condition: &str) -> Option<Mechanism> {
    let of = |failed: bool| -> Vec<&FirstSteps> {
        inp.runs
            .iter()
            .filter(|r| r.condition == condition)
            .filter(|r| {
                if failed {
                    matches!(r.outcome, Outcome::Stuck | Outcome::Collapsed)
                } else {
                    r.outcome == Outcome::Learned
                }
            })
            .filter_map(|r| inp.first_steps.get(&r.key))
            .filter(|f| !f.dead.is_empty())
            .collect()
    };
    let (bad, good) = (of(true), of(false));
    if bad.is_empty() || good.is_empty() {
        return None;
    }
    let mean = |v: &[&FirstSteps], f: &dyn Fn(&FirstSteps) -> f64| {
        v.iter().map(|x| f(x)).sum::<f64>() / v.len() as f64
    };
    let last = |v: &[f64]| v.last().copied().unwrap_or(0.0);
    let pair = |f: &dyn Fn(&FirstSteps) -> f64| (mean(&bad, f), mean(&good, f));
    let layers = bad
        .iter()
        .chain(&good)
        .map(|f| f.relative_update[0].len())
        .max()
        .unwrap_or(0);
    let each = |v: &[&FirstSteps], f: &dyn Fn(&FirstSteps) -> f64| -> Vec<f64> {
        v.iter().map(|x| f(x)).collect()
    };
    let dead_end = |f: &FirstSteps| last(f.dead.last().expect("non-empty"));
    let last_update = |f: &FirstSteps| last(&f.relative_update[0]);
    Some(Mechanism {
        dead_difference: bootstrap_difference(
            &each(&bad, &dead_end),
            &each(&good, &dead_end),
            2000,
            1,
        ),
        update_difference: bootstrap_difference(
            &each(&bad, &last_update),
            &each(&good, &last_update),
            2000,
            2,
        ),
        condition: condition.to_string(),
        runs: (bad.len(), good.len()),
        steps: bad[0].dead.len(),
        dead_last: [
            pair(&|f| last(&f.dead_at_start)),
            pair(&|f| last(&f.dead[0])),
            pair(&|f| last(f.dead.last().expect("non-empty"))),
        ],
        // Per layer over the runs that have it (one-layer nets have no layer 2).
        first_update: (0..layers)
            .map(|l| {
                let at = |v: &[&FirstSteps]| -> f64 {
                    let xs: Vec<f64> = v
                        .iter()
                        .filter_map(|f| f.relative_update[0].get(l).copied())
                        .collect();
                    xs.iter().sum::<f64>() / xs.len().max(1) as f64
                };
                (at(&bad), at(&good))
            })
            .collect(),
    })
}

/// [`Dying`] for `condition`; `None` when no failed run has per-epoch records.
pub fn dying(inp: &Inputs, condition: &str) -> Option<Dying> {
    let runs: Vec<(&RunRow, &Vec<tinycnn::EpochStats>)> = inp
        .runs
        .iter()
        .filter(|r| r.condition == condition)
        .filter_map(|r| Some((r, inp.histories.get(&r.key)?)))
        .filter(|(_, h)| !h.is_empty())
        .collect();
    let failed = |r: &RunRow| matches!(r.outcome, Outcome::Stuck | Outcome::Collapsed);
    let last_dead = |r: &RunRow, e: &tinycnn::EpochStats| {
        let l = r.arch.layers() - 1;
        e.dead.get(l).is_some_and(|&d| d == r.arch.filters()[l])
    };
    // The last conv layer's weight-gradient norm is entry L-1; the dense layer's is L.
    let zero_at = |r: &RunRow, h: &[tinycnn::EpochStats]| -> Option<Option<usize>> {
        let l = r.arch.layers() - 1;
        let g: Vec<&Vec<f64>> = h
            .iter()
            .map(|e| e.grad_norms.as_ref())
            .collect::<Option<_>>()?;
        Some(g.iter().position(|g| g.get(l) == Some(&0.0)))
    };
    let (mut all_dead, mut zero) = (
        (Tally::default(), Tally::default()),
        (Tally::default(), Tally::default()),
    );
    let (mut epochs, mut dense_zero_too) = (Vec::new(), Tally::default());
    for (r, h) in &runs {
        let bad = failed(r);
        if !bad && r.outcome != Outcome::Learned {
            continue;
        }
        let dead_at = h.iter().position(|e| last_dead(r, e));
        let t = if bad {
            &mut all_dead.0
        } else {
            &mut all_dead.1
        };
        t.n += 1;
        t.k += usize::from(dead_at.is_some());
        if let (true, Some(e)) = (bad, dead_at) {
            epochs.push(h[e].epoch as f64);
        }
        if let Some(z) = zero_at(r, h) {
            let t = if bad { &mut zero.0 } else { &mut zero.1 };
            t.n += 1;
            t.k += usize::from(z.is_some());
            if let (true, Some(e)) = (bad, z) {
                let dense = h[e].grad_norms.as_ref().and_then(|g| g.last().copied());
                dense_zero_too.n += 1;
                dense_zero_too.k += usize::from(dense == Some(0.0));
            }
        }
    }
    if all_dead.0.n == 0 {
        return None;
    }
    Some(Dying {
        condition: condition.to_string(),
        all_dead,
        all_dead_epoch: median(&mut epochs),
        zero_gradient: zero,
        dense_zero_too,
    })
}

/// One model of success within a condition: logistic regression of learned against the two
/// layers' widths (log2 filters) and the dataset, over the condition's two-layer runs.
#[derive(Clone, Debug, PartialEq)]
pub struct SuccessModel {
    pub condition: String,
    /// Two-layer runs modelled.
    pub runs: usize,
    /// Per term: its name, coefficient (log-odds) and Wald 95% interval.
    pub terms: Vec<(String, f64, (f64, f64))>,
    /// Why no model could be fitted, if so.
    pub unfit: Option<&'static str>,
}

/// Fits [`SuccessModel`] for `condition`.
pub fn success_model(runs: &[RunRow], condition: &str) -> SuccessModel {
    let rs: Vec<&RunRow> = runs
        .iter()
        .filter(|r| r.condition == condition && r.arch.layers() == 2)
        .collect();
    let mut datasets: Vec<&str> = rs.iter().map(|r| r.dataset.as_str()).collect();
    datasets.sort();
    datasets.dedup();
    let mut names = vec![
        "intercept".to_string(),
        "layer-1 filters (per doubling)".to_string(),
        "layer-2 filters (per doubling)".to_string(),
    ];
    names.extend(
        datasets
            .iter()
            .skip(1)
            .map(|d| format!("dataset {d} (vs {})", datasets[0])),
    );
    let x: Vec<Vec<f64>> = rs
        .iter()
        .map(|r| {
            let f = r.arch.filters();
            let mut row = vec![1.0, (f[0] as f64).log2(), (f[1] as f64).log2()];
            row.extend(
                datasets
                    .iter()
                    .skip(1)
                    .map(|d| f64::from(u8::from(r.dataset == *d))),
            );
            row
        })
        .collect();
    let y: Vec<bool> = rs.iter().map(|r| r.outcome == Outcome::Learned).collect();
    let mut model = SuccessModel {
        condition: condition.to_string(),
        runs: rs.len(),
        terms: Vec::new(),
        unfit: None,
    };
    model.unfit = if rs.len() < 10 {
        Some("fewer than 10 two-layer runs")
    } else if y.iter().all(|&v| v) {
        Some("every two-layer run learned: nothing to explain")
    } else if y.iter().all(|&v| !v) {
        Some("no two-layer run learned: nothing to explain")
    } else {
        match crate::experiments::logistic::fit(&x, &y) {
            Some(f) => {
                model.terms = names
                    .into_iter()
                    .enumerate()
                    .map(|(j, n)| (n, f.coef[j], f.interval(j)))
                    .collect();
                None
            }
            None => Some("a term separates the outcomes perfectly (or terms are collinear): no finite estimate"),
        }
    };
    model
}

/// The thesis's reading of a pruning table.
#[derive(Clone, Debug, PartialEq)]
pub struct PruningReading {
    pub filters: usize,
    pub initial: f64,
    /// Removals, in order, that cost at most 0.01 of accuracy.
    pub keep99: usize,
    /// Removals, in order, that keep accuracy at or above 0.90.
    pub keep90: usize,
    /// The minimal network's filters (`L1 F3`).
    pub survivors: Vec<String>,
}

/// Reads a pruning table as the thesis did: how many removals (in order) cost at most 0.01
/// of accuracy, how many keep it at or above 0.90, and which filters survive. The accuracies
/// are the held-out ones along the chosen path when the table has them.
pub fn pruning_reading(p: &PruneJson) -> PruningReading {
    let (_, initial, after) = p.reported();
    let (mut removed, mut keep99, mut keep90) = (0, 0, 0);
    for (st, &a) in p.steps.iter().zip(&after) {
        let before = removed;
        removed += st.removed.len();
        if a >= initial - 0.01 && keep99 == before {
            keep99 = removed;
        }
        if a >= 0.9 && keep90 == before {
            keep90 = removed;
        }
    }
    PruningReading {
        filters: p.filters.len(),
        initial,
        keep99,
        keep90,
        survivors: p.survivors.iter().map(|f| f.label()).collect(),
    }
}

/// Thesis conclusion a: filters are often alike, hence redundant.
#[derive(Clone, Debug, PartialEq)]
pub struct Redundancy {
    /// Case analyses counted: every analysed seed of every case.
    pub cases: usize,
    /// Filters with a twin (activation cosine at or above the threshold), of all filters.
    pub twins: Tally,
    /// The twin thresholds the cases used, in percent, each once.
    pub thresholds: Vec<f64>,
    /// Mean single-removal drop with and without a twin, and the filters counted.
    pub drop_with_twin: Option<f64>,
    pub with_twin: usize,
    pub drop_without_twin: Option<f64>,
    pub without_twin: usize,
    /// Per case: its slug and the removals costing at most 0.01, of its filters, summed over
    /// the case's seeds.
    pub removable: Vec<(String, Tally)>,
    /// Whether twins were judged by the correlation of the maps (every case measured it), or
    /// by their cosine (analyses from before the correlation existed).
    pub by_correlation: bool,
    /// The null level: filters with a twin at Glorot initialisation, of all, over the cases
    /// that measured it.
    pub null_twins: Option<Tally>,
    /// Mean over cases and layers of the median absolute pairwise correlation, `(trained,
    /// initial)`, percent.
    pub median_correlation: Option<(f64, f64)>,
    /// Mean single-removal drop with a twin minus without, over every filter of the cases
    /// (from each pruning table's first step), with a seeded bootstrap 95% interval.
    pub drop_difference: Option<(f64, f64, f64)>,
}

/// Per filter of every case: its single-removal drop (the interaction's diagonal, measured on
/// the analysis's held-out split) and whether it has a twin by the measure the redundancy
/// finding uses, as `(with twin, without)` drops.
fn twin_drops(cases: &[(String, Analysis)], by_correlation: bool) -> (Vec<f64>, Vec<f64>) {
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for (_, a) in cases {
        let (i, s) = (&a.interaction, &a.similarity);
        for (k, f) in i.filters.iter().enumerate() {
            let Some(acc) = i
                .accuracy
                .get(k)
                .and_then(|row| row.get(k))
                .copied()
                .flatten()
            else {
                continue;
            };
            let Some(layer) = s.layers.iter().find(|l| l.layer == f.layer) else {
                continue;
            };
            let m = if by_correlation {
                layer.twin_measure()
            } else {
                &layer.activation_cosine
            };
            let at = f.filter - 1;
            let Some(row) = m.get(at) else { continue };
            let twin = row
                .iter()
                .enumerate()
                .any(|(j, &v)| j != at && v >= s.threshold);
            let drop = i.base_accuracy - acc;
            if twin {
                with.push(drop);
            } else {
                without.push(drop);
            }
        }
    }
    (with, without)
}

/// The difference of the means of `a` and `b` with a percentile bootstrap 95% interval over
/// `draws` seeded resamples of each (Efron and Tibshirani 1993, ch. 13); `None` if either is
/// empty.
pub fn bootstrap_difference(
    a: &[f64],
    b: &[f64],
    draws: usize,
    seed: u64,
) -> Option<(f64, f64, f64)> {
    use rand_core::{RngCore, SeedableRng};
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut resample = |v: &[f64]| {
        (0..v.len())
            .map(|_| v[(rng.next_u64() % v.len() as u64) as usize])
            .sum::<f64>()
            / v.len() as f64
    };
    let mut d: Vec<f64> = (0..draws).map(|_| resample(a) - resample(b)).collect();
    d.sort_by(f64::total_cmp);
    let q = |f: f64| d[((f * draws as f64) as usize).min(draws - 1)];
    Some((mean(a) - mean(b), q(0.025), q(0.975)))
}

impl Redundancy {
    /// Whether a filter with a twin costs more to remove than one without: the thesis's
    /// conclusion (a) predicts less. `None` when either group is empty.
    pub fn twins_cost_more(&self) -> Option<bool> {
        Some(self.drop_with_twin? > self.drop_without_twin?)
    }

    /// The direction of the twin test, judged on the bootstrap interval of the difference:
    /// `Some(true)` twins cost more, `Some(false)` less, `None` when the interval holds 0 or
    /// there is nothing to compare.
    pub fn twin_direction(&self) -> Option<bool> {
        let (_, lo, hi) = self.drop_difference?;
        if lo > 0.0 {
            Some(true)
        } else if hi < 0.0 {
            Some(false)
        } else {
            None
        }
    }
}

/// Thesis conclusion b: filters interact.
#[derive(Clone, Debug, PartialEq)]
pub struct Interplay {
    /// Pairs whose interaction exceeds 0.05 in absolute value, of all defined pairs.
    pub strong: Tally,
    /// Removals along the pruning paths that raised accuracy.
    pub raised: usize,
    /// The largest raise: its gain and `slug, event text`.
    pub largest_raise: Option<(f64, String)>,
    /// The largest raise tested on the held-out split: images it turned right, turned wrong,
    /// of the images there.
    pub largest_raise_flips: Option<(usize, usize, usize)>,
    /// Raises significant at p < 0.05 by the exact McNemar test on the images that flipped,
    /// of the raises tested.
    pub significant: Tally,
}

/// Thesis conclusion c: do simple readings of the filters agree with pruning?
#[derive(Clone, Debug, PartialEq)]
pub struct Agreement {
    /// Per layer, each criterion's mean Spearman correlation with the pruning order over the
    /// cases where it is defined and the layer has at least 3 filters.
    pub layers: Vec<(usize, Vec<(Criterion, f64)>)>,
    /// The control, per layer: the mean Spearman correlation of the filters' index with the
    /// pruning order (what a criterion that ranked filters by number would score).
    pub index_control: Vec<(usize, f64)>,
    /// The random-order control, per layer: the 2.5% and 97.5% quantiles of the mean Spearman
    /// correlation between a random ranking and the pruning order, over 1,000 seeded draws
    /// (a criterion that knew nothing would fall inside this band 95% of the time).
    pub random_band: Vec<(usize, (f64, f64))>,
    /// `(case, layer)` left out: fewer than 3 filters, where a rank correlation is ±1 by
    /// construction.
    pub excluded: Vec<(String, usize)>,
    /// Pruning steps decided by a tie (several removals left the same best accuracy), of all
    /// steps, over the cases.
    pub tied_steps: Tally,
    /// How the cases' pruning broke those ties (`loss`, `one`: the lowest index, `batch`),
    /// each once.
    pub tie_rules: Vec<String>,
}

/// The 2.5% and 97.5% quantiles, over `draws` seeded draws, of the mean over `orders` of the
/// Spearman correlation between a random permutation of each order and the order itself.
fn random_band(orders: &[Vec<f64>], draws: usize, seed: u64) -> (f64, f64) {
    use rand_core::{RngCore, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    // Unbiased index below `n` by rejection.
    let mut below = |n: usize| loop {
        let zone = u32::MAX - u32::MAX % n as u32;
        let v = rng.next_u32();
        if v < zone {
            return (v % n as u32) as usize;
        }
    };
    let mut means: Vec<f64> = (0..draws)
        .map(|_| {
            let rhos: Vec<f64> = orders
                .iter()
                .filter_map(|o| {
                    let mut p = o.clone();
                    for i in (1..p.len()).rev() {
                        p.swap(i, below(i + 1));
                    }
                    crate::analyses::stats::spearman(&p, o)
                })
                .collect();
            rhos.iter().sum::<f64>() / rhos.len().max(1) as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let q = |f: f64| means[((f * draws as f64) as usize).min(draws - 1)];
    (q(0.025), q(0.975))
}

/// Filters per layer of a case, from its ranking.
fn layer_sizes(a: &Analysis) -> BTreeMap<usize, usize> {
    let mut sizes = BTreeMap::new();
    for f in &a.ranking.filters {
        *sizes.entry(f.filter.layer).or_default() += 1;
    }
    sizes
}

/// How well the best criterion of a layer agrees with pruning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accord {
    /// Best mean rho at least 0.5.
    Agree,
    /// At least 0.2.
    Weak,
    None,
}

impl Agreement {
    /// The verdict for one layer's criteria.
    pub fn accord(criteria: &[(Criterion, f64)]) -> Accord {
        let top = criteria
            .iter()
            .map(|x| x.1)
            .fold(f64::NEG_INFINITY, f64::max);
        if top >= 0.5 {
            Accord::Agree
        } else if top >= 0.2 {
            Accord::Weak
        } else {
            Accord::None
        }
    }
}

/// One finding of the report.
#[derive(Clone, Debug, PartialEq)]
pub enum Finding {
    Headline(Headline),
    Thesis(Vec<Claim>),
    Learning(Learning),
    Model(SuccessModel),
    Stuck(Stuck),
    Mechanism(Mechanism),
    Dying(Dying),
    Redundancy(Redundancy),
    Interplay(Interplay),
    Agreement(Agreement),
}

/// Every finding of a study, in the report's order: the headline, the thesis's claims, then
/// per condition how runs learned and when they got stuck, then the three conclusions over the
/// case analyses (when any).
pub fn findings(inp: &Inputs) -> Vec<Finding> {
    let conds = conditions(inp.runs);
    let mut out = vec![
        Finding::Headline(headline(inp.runs, &conds)),
        Finding::Thesis({
            let mut c = thesis_claims(inp.runs, inp.sources, &conds);
            c.extend(case_claims(inp.cases, inp.sources));
            c
        }),
    ];
    for c in &conds {
        out.push(Finding::Learning(learning(inp.runs, c, inp.continuations)));
        out.push(Finding::Model(success_model(inp.runs, c)));
    }
    for c in &conds {
        out.extend(stuck(inp, c).map(Finding::Stuck));
        out.extend(mechanism(inp, c).map(Finding::Mechanism));
        out.extend(dying(inp, c).map(Finding::Dying));
    }
    if !inp.cases.is_empty() {
        out.push(Finding::Redundancy(redundancy(inp.cases)));
        out.push(Finding::Interplay(interplay(inp.cases)));
        out.push(Finding::Agreement(agreement(inp.cases)));
    }
    out
}

/// The runs' conditions, sorted, each once.
fn conditions(runs: &[RunRow]) -> Vec<&str> {
    let mut conds: Vec<&str> = runs.iter().map(|r| r.condition.as_str()).collect();
    conds.sort();
    conds.dedup();
    conds
}

/// Dataset-architecture cells of `rs` whose seeds both learned and failed, of all cells.
fn mixed_cells(rs: &[&RunRow]) -> Tally {
    let mut cells: BTreeMap<(&str, &tinycnn::ArchLabel), Tally> = BTreeMap::new();
    for r in rs {
        let e = cells.entry((r.dataset.as_str(), &r.arch)).or_default();
        e.n += 1;
        e.k += usize::from(r.outcome == Outcome::Learned);
    }
    Tally {
        k: cells.values().filter(|t| t.k > 0 && t.k < t.n).count(),
        n: cells.len(),
    }
}

/// How the runs of `condition` ended, overall and by depth; `continued` are the store's
/// continuations.
pub fn learning(
    runs: &[RunRow],
    condition: &str,
    continued: &[crate::experiments::store::ContinuationRow],
) -> Learning {
    let rs: Vec<&RunRow> = runs.iter().filter(|r| r.condition == condition).collect();
    let learned = |r: &RunRow| r.outcome == Outcome::Learned;
    let depth = |keep: fn(usize) -> bool| {
        Tally::of(
            rs.iter().copied().filter(|r| keep(r.arch.layers())),
            learned,
        )
    };
    let all = Tally::of(rs.iter().copied(), learned);
    Learning {
        condition: condition.to_string(),
        interval: wilson(all.k, all.n),
        learned: all,
        stuck: rs.iter().filter(|r| r.outcome == Outcome::Stuck).count(),
        collapsed: rs
            .iter()
            .filter(|r| r.outcome == Outcome::Collapsed)
            .count(),
        partial: rs.iter().filter(|r| r.outcome == Outcome::Partial).count(),
        partial_continued: continued
            .iter()
            .filter(|c| {
                c.lr == "same"
                    && rs
                        .iter()
                        .any(|r| r.key == c.run_key && r.outcome == Outcome::Partial)
            })
            .fold(Tally::default(), |t, c| Tally {
                k: t.k + usize::from(c.escaped),
                n: t.n + 1,
            }),
        two_layers: depth(|l| l == 2),
        one_layer: depth(|l| l == 1),
        deeper: depth(|l| l > 2),
        mixed_cells: mixed_cells(&rs),
        one_minus_two: {
            let (one, two) = (depth(|l| l == 1), depth(|l| l == 2));
            (one.n > 0 && two.n > 0).then(|| newcombe(one.k, one.n, two.k, two.n))
        },
    }
}

/// Learned share per condition, and whether the condition decides it.
pub fn headline(runs: &[RunRow], conds: &[&str]) -> Headline {
    let conditions: Vec<ConditionRate> = conds
        .iter()
        .map(|c| {
            let rs = runs.iter().filter(|r| r.condition == *c);
            let t = Tally::of(rs, |r| r.outcome == Outcome::Learned);
            let mut epochs: Vec<f64> = runs
                .iter()
                .filter(|r| r.condition == *c && r.outcome == Outcome::Learned)
                .filter_map(|r| r.epochs_to_learn.map(|e| e as f64))
                .collect();
            (c.to_string(), t, wilson(t.k, t.n), median(&mut epochs))
        })
        .collect();
    let rate = |t: &Tally| t.k as f64 / t.n.max(1) as f64;
    let best = conditions
        .iter()
        .max_by(|a, b| rate(&a.1).total_cmp(&rate(&b.1)));
    let worst = conditions
        .iter()
        .min_by(|a, b| rate(&a.1).total_cmp(&rate(&b.1)));
    let decided = match (best, worst) {
        (Some(b), Some(w)) if b.2 .0 > w.2 .1 => Some((b.0.clone(), w.0.clone())),
        _ => None,
    };
    let held_out = conds
        .iter()
        .filter_map(|c| {
            let mut acc: Vec<f64> = runs
                .iter()
                .filter(|r| r.condition == *c && r.outcome == Outcome::Learned)
                .filter_map(|r| r.test_acc)
                .collect();
            let lowest = acc.iter().copied().reduce(f64::min)?;
            let below_99 = acc.iter().filter(|&&a| a < 0.99).count();
            Some((
                c.to_string(),
                HeldOutScore {
                    runs: acc.len(),
                    median: median(&mut acc)?,
                    lowest,
                    below_99,
                },
            ))
        })
        .collect();
    Headline {
        conditions,
        decided,
        held_out,
    }
}

/// The thesis's claims about learning, set against every condition of the study. `sources`
/// maps a dataset label to the preset it was generated from (`thesis-1.3`, `thesis-2.1`).
pub fn thesis_claims(
    runs: &[RunRow],
    sources: &BTreeMap<String, String>,
    conds: &[&str],
) -> Vec<Claim> {
    let label_of = |preset: &str| {
        sources
            .iter()
            .find(|(_, s)| s.as_str() == preset)
            .map(|(l, _)| l.clone())
    };
    let (size, rotation) = (label_of("thesis-1.3"), label_of("thesis-2.1"));
    let mut out = Vec::new();
    for c in conds {
        let rs: Vec<&RunRow> = runs.iter().filter(|r| r.condition == *c).collect();
        let learned = |r: &RunRow| r.outcome == Outcome::Learned;
        let claim = |claim, thesis, evidence, verdict| Claim {
            claim,
            thesis,
            condition: c.to_string(),
            evidence,
            verdict,
        };
        // One conv layer never learns.
        let one = Tally::of(rs.iter().copied().filter(|r| r.arch.layers() == 1), learned);
        out.push(claim(
            "One conv layer never learns, so two are needed.",
            "0 learned (Table 1: 2 to 32 filters, 70 epochs, dataset 1.2)",
            Evidence::Rate(one, wilson(one.k, one.n)),
            match (one.n, one.k) {
                (0, _) => Verdict::NotComparable,
                (_, 0) => Verdict::Reproduced,
                _ => Verdict::Contradicted,
            },
        ));
        // Rotation is harder than size.
        let on = |label: &Option<String>| {
            let label = label.as_deref();
            Tally::of(
                rs.iter()
                    .copied()
                    .filter(|r| r.arch.layers() == 2 && Some(r.dataset.as_str()) == label),
                learned,
            )
        };
        let (rot, siz) = (on(&rotation), on(&size));
        out.push(if rot.n == 0 || siz.n == 0 {
            claim(
                "Rotation (2.1) is harder to learn than size (1.3).",
                "8 of 69 runs learned on 2.1 (Table 8), 20 of 58 on 1.3 (Table 5)",
                Evidence::None,
                Verdict::NotComparable,
            )
        } else {
            let d = newcombe(rot.k, rot.n, siz.k, siz.n);
            claim(
                "Rotation (2.1) is harder to learn than size (1.3).",
                "8 of 69 runs learned on 2.1 (Table 8), 20 of 58 on 1.3 (Table 5)",
                Evidence::Contrast(rot, siz, d),
                direction(d, true),
            )
        });
        out.extend(cell_claims(&rs, &size, c));
    }
    out
}

/// The thesis's claims about its case studies, set against every analysed seed of the study's
/// case of the same architecture on the same thesis dataset. A claim about one run of the
/// thesis is reproduced when its number lies within the range of this study's seeds.
pub fn case_claims(cases: &[(String, Analysis)], sources: &BTreeMap<String, String>) -> Vec<Claim> {
    let seeds = |preset: &str, arch: &str| -> Vec<&Analysis> {
        cases
            .iter()
            .map(|(_, a)| a)
            .filter(|a| a.arch == arch && sources.get(&a.data).is_some_and(|s| s == preset))
            .collect()
    };
    let within = |v: &[f64], x: f64| -> Verdict {
        match (
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        ) {
            _ if v.is_empty() => Verdict::NotComparable,
            (lo, hi) if lo <= x && x <= hi => Verdict::Reproduced,
            _ if v.len() < 3 => Verdict::NoEvidence,
            _ => Verdict::Contradicted,
        }
    };
    let claim = |claim, thesis, evidence, verdict| Claim {
        claim,
        thesis,
        condition: "case studies".into(),
        evidence,
        verdict,
    };
    let keep90: Vec<f64> = seeds("thesis-1.3", "2-16")
        .iter()
        .map(|a| pruning_reading(&a.pruning).keep90 as f64)
        .collect();
    let after19: Vec<f64> = seeds("thesis-2.1", "16-16")
        .iter()
        .filter_map(|a| accuracy_after(&a.pruning, 19))
        .collect();
    let raises = interplay(cases).significant;
    vec![
        claim(
            "2-16 on 1.3 keeps accuracy at or above 0.90 for its first 15 removals (case 2).",
            "15 of 18 filters removed above 90% (one run)",
            Evidence::Seeds(keep90.clone(), 0),
            within(&keep90, 15.0),
        ),
        claim(
            "16-16 on 2.1 is at 88.6% after 19 removals (case 3).",
            "0.886 after 19 removals (one run)",
            Evidence::Seeds(after19.clone(), 4),
            within(&after19, 0.886),
        ),
        claim(
            "Removing a filter can raise accuracy sharply (case 3).",
            "66.7% to 87.1% after one removal",
            Evidence::Significant(raises),
            match (raises.n, raises.k) {
                (0, _) => Verdict::NotComparable,
                (_, 0) => Verdict::Contradicted,
                _ => Verdict::Reproduced,
            },
        ),
    ]
}

/// Accuracy once at least `removed` filters are gone along a pruning path (`None` if it never
/// removes that many), held-out when the table has it.
fn accuracy_after(p: &PruneJson, removed: usize) -> Option<f64> {
    let (_, _, after) = p.reported();
    let mut gone = 0;
    p.steps.iter().zip(after).find_map(|(st, a)| {
        gone += st.removed.len();
        (gone >= removed).then_some(a)
    })
}

/// The verdict on a claimed sign of a difference `(d, low, high)`: `negative` claims d < 0.
fn direction(d: (f64, f64, f64), negative: bool) -> Verdict {
    let (below, above) = (d.2 < 0.0, d.1 > 0.0);
    match (negative, below, above) {
        (true, true, _) | (false, _, true) => Verdict::Reproduced,
        (true, _, true) | (false, true, _) => Verdict::Contradicted,
        _ => Verdict::NoEvidence,
    }
}

/// The thesis's Table 5 cells on 1.3 that the study's grid holds: 2-2 learned 3 of 6, 2-8
/// never of 5; and its claim that the same architecture both learns and fails.
fn cell_claims(rs: &[&RunRow], size: &Option<String>, c: &str) -> Vec<Claim> {
    let learned = |r: &RunRow| r.outcome == Outcome::Learned;
    let cell = |arch: &str| {
        Tally::of(
            rs.iter().copied().filter(|r| {
                Some(r.dataset.as_str()) == size.as_deref() && r.arch.to_string() == arch
            }),
            learned,
        )
    };
    let mixed = mixed_cells(rs);
    let (c22, c28) = (cell("2-2"), cell("2-8"));
    let make = |claim, thesis, evidence, verdict| Claim {
        claim,
        thesis,
        condition: c.to_string(),
        evidence,
        verdict,
    };
    vec![
        make(
            "The same architecture learns with some seeds and fails with others.",
            "2-2 learned 3 of 6, 2-32 4 of 5, 32-2 3 of 5 on 1.3 (Table 5)",
            Evidence::MixedCells(mixed),
            if mixed.n == 0 {
                Verdict::NotComparable
            } else if mixed.k > 0 {
                Verdict::Reproduced
            } else {
                Verdict::Contradicted
            },
        ),
        if c22.n == 0 {
            make(
                "2-2 learns about half the time on 1.3.",
                "3 of 6 (Table 5)",
                Evidence::None,
                Verdict::NotComparable,
            )
        } else {
            // Contradicted when the difference's interval excludes 0; reproduced when it
            // does not and this study's own interval holds the thesis's 50%; otherwise the
            // samples are too small to say.
            let d = newcombe(c22.k, c22.n, 3, 6);
            let (lo, hi) = wilson(c22.k, c22.n);
            let v = if d.1 > 0.0 || d.2 < 0.0 {
                Verdict::Contradicted
            } else if lo <= 0.5 && 0.5 <= hi {
                Verdict::Reproduced
            } else {
                Verdict::NoEvidence
            };
            make(
                "2-2 learns about half the time on 1.3.",
                "3 of 6 (Table 5)",
                Evidence::Contrast(c22, Tally { k: 3, n: 6 }, d),
                v,
            )
        },
        make(
            "2-8 never learns on 1.3.",
            "0 of 5 (Table 5)",
            Evidence::Rate(c28, wilson(c28.k, c28.n)),
            match (c28.n, c28.k) {
                (0, _) => Verdict::NotComparable,
                (_, 0) => Verdict::Reproduced,
                _ => Verdict::Contradicted,
            },
        ),
    ]
}

/// When runs of `condition` get stuck; `None` when none did.
pub fn stuck(inp: &Inputs, condition: &str) -> Option<Stuck> {
    let mut tally = StuckTally::default();
    let mut same_settings = true;
    for g in inp.stuck.iter().filter(|g| g.condition == condition) {
        tally.add(g);
        same_settings &= g.continued.iter().all(|(_, lr, _, _)| lr == "same");
    }
    if tally.stuck == 0 {
        return None;
    }
    let rs: Vec<&RunRow> = inp
        .runs
        .iter()
        .filter(|r| r.condition == condition)
        .collect();
    let is_stuck = |r: &RunRow| r.outcome == Outcome::Stuck;
    let mut by_f1: BTreeMap<usize, Tally> = BTreeMap::new();
    for r in rs.iter().filter(|r| r.arch.layers() == 2) {
        let e = by_f1.entry(r.arch.filters()[0]).or_default();
        e.n += 1;
        e.k += usize::from(is_stuck(r));
    }
    let fully_dead = Tally::of(
        rs.iter()
            .copied()
            .filter(|r| is_stuck(r) && inp.diagnoses.contains_key(&r.key)),
        |r| {
            let d = &inp.diagnoses[&r.key];
            d.dead.last().is_some_and(|&k| Some(&k) == d.filters.last())
        },
    );
    let own = tally.rescues.get("same").copied().unwrap_or_default();
    let changed: Vec<Tally> = tally
        .rescues
        .iter()
        .filter(|(l, _)| l.as_str() != "same")
        .map(|(_, t)| *t)
        .collect();
    let verdict = match () {
        _ if tally.tried == 0 => StuckVerdict::NotTried,
        _ if changed.iter().any(|t| t.k > 0) => StuckVerdict::Rescued,
        _ if own.n > 0 && own.k * 10 >= own.n => StuckVerdict::SlowStretches,
        _ if !changed.is_empty() => StuckVerdict::DeadEnds,
        _ if fully_dead.n > 0 && fully_dead.k == fully_dead.n => StuckVerdict::DeadByConstruction,
        _ => StuckVerdict::Mixed,
    };
    let rescues = tally
        .rescues
        .iter()
        .map(|(l, t)| (l.clone(), *t, wilson(t.k, t.n)))
        .collect();
    Some(Stuck {
        condition: condition.to_string(),
        tally,
        by_first_layer: by_f1
            .into_iter()
            .map(|(f, t)| (f, t, wilson(t.k, t.n)))
            .collect(),
        fully_dead,
        same_settings,
        rescues,
        verdict,
    })
}

/// Twins and the cost of removing a filter with and without one, over the cases.
pub fn redundancy(cases: &[(String, Analysis)]) -> Redundancy {
    let (mut with, mut without) = (0.0, 0.0);
    let mut r = Redundancy {
        cases: cases.len(),
        twins: Tally::default(),
        thresholds: Vec::new(),
        drop_with_twin: None,
        with_twin: 0,
        drop_without_twin: None,
        without_twin: 0,
        removable: Vec::new(),
        by_correlation: cases.iter().all(|(_, a)| {
            a.similarity
                .layers
                .iter()
                .all(|l| l.activation_correlation.is_some())
        }),
        null_twins: None,
        median_correlation: None,
        drop_difference: None,
    };
    let mut medians = Vec::new();
    for (slug, a) in cases {
        let s = &a.similarity;
        if !r.thresholds.contains(&s.threshold) {
            r.thresholds.push(s.threshold);
        }
        if let Some(v) = s.drop_with_twin {
            with += v * s.with_twin as f64;
            r.with_twin += s.with_twin;
        }
        if let Some(v) = s.drop_without_twin {
            without += v * s.without_twin as f64;
            r.without_twin += s.without_twin;
        }
        if let Some(null) = &s.null {
            let t = r.null_twins.get_or_insert_with(Tally::default);
            t.k += null.twins.0;
            t.n += null.twins.1;
            medians.extend(null.median_correlation.iter().copied());
        }
        for l in &s.layers {
            let m = if r.by_correlation {
                l.twin_measure()
            } else {
                &l.activation_cosine
            };
            for (i, row) in m.iter().enumerate() {
                r.twins.n += 1;
                let twin = row
                    .iter()
                    .enumerate()
                    .any(|(j, &v)| j != i && v >= s.threshold);
                r.twins.k += usize::from(twin);
            }
        }
        let p = pruning_reading(&a.pruning);
        match r.removable.iter_mut().find(|(s, _)| s == slug) {
            Some((_, t)) => {
                t.k += p.keep99;
                t.n += p.filters;
            }
            None => r.removable.push((
                slug.clone(),
                Tally {
                    k: p.keep99,
                    n: p.filters,
                },
            )),
        }
    }
    if !medians.is_empty() {
        let n = medians.len() as f64;
        r.median_correlation = Some((
            medians.iter().map(|m| m.0).sum::<f64>() / n,
            medians.iter().map(|m| m.1).sum::<f64>() / n,
        ));
    }
    let (w, wo) = twin_drops(cases, r.by_correlation);
    r.drop_difference = bootstrap_difference(&w, &wo, 2000, 0);
    r.drop_with_twin = (r.with_twin > 0).then(|| with / r.with_twin as f64);
    r.drop_without_twin = (r.without_twin > 0).then(|| without / r.without_twin as f64);
    r
}

/// Pairwise interactions and accuracy-raising removals, over the cases.
pub fn interplay(cases: &[(String, Analysis)]) -> Interplay {
    let mut out = Interplay {
        strong: Tally::default(),
        raised: 0,
        largest_raise: None,
        largest_raise_flips: None,
        significant: Tally::default(),
    };
    for (slug, a) in cases {
        for e in &a.interaction.events {
            if e.kind == EventKind::Raised {
                out.raised += 1;
                if let Some(p) = e.p_value {
                    out.significant.n += 1;
                    out.significant.k += usize::from(p < 0.05);
                }
                let gain = e.after - e.before;
                if out.largest_raise.as_ref().is_none_or(|b| gain > b.0) {
                    out.largest_raise = Some((gain, format!("{slug}, {}", e.text)));
                    out.largest_raise_flips = e.flips.map(|(b, c)| (b, c, a.failures.images));
                }
            }
        }
        for (i, row) in a.interaction.interaction.iter().enumerate() {
            for v in row.iter().skip(i + 1).flatten() {
                out.strong.n += 1;
                out.strong.k += usize::from(v.abs() > 0.05);
            }
        }
    }
    out
}

/// Each criterion's mean Spearman correlation with the pruning order, per layer, against the
/// index-order control, leaving out layers too small to rank.
pub fn agreement(cases: &[(String, Analysis)]) -> Agreement {
    let mut agree: BTreeMap<(usize, Criterion), Vec<f64>> = BTreeMap::new();
    let mut control: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut excluded = Vec::new();
    let mut tied_steps = Tally::default();
    let mut orders: BTreeMap<usize, Vec<Vec<f64>>> = BTreeMap::new();
    for (slug, a) in cases {
        let sizes = layer_sizes(a);
        for (&l, &n) in &sizes {
            if n < 3 {
                if !excluded.contains(&(slug.clone(), l)) {
                    excluded.push((slug.clone(), l));
                }
                continue;
            }
            let fs: Vec<_> = a
                .ranking
                .filters
                .iter()
                .filter(|f| f.filter.layer == l)
                .collect();
            let last = a.pruning.steps.len() + 1;
            let index: Vec<f64> = fs.iter().map(|f| f.filter.filter as f64).collect();
            let order: Vec<f64> = fs
                .iter()
                .map(|f| f.pruned_at.unwrap_or(last) as f64)
                .collect();
            if let Some(v) = crate::analyses::stats::spearman(&index, &order) {
                control.entry(l).or_default().push(v);
            }
            orders.entry(l).or_default().push(order);
        }
        for ag in &a.ranking.agreement {
            let big = sizes.get(&ag.layer).is_some_and(|&n| n >= 3);
            if let (true, Some(v)) = (big, ag.spearman) {
                agree.entry((ag.layer, ag.criterion)).or_default().push(v);
            }
        }
        for st in &a.pruning.steps {
            let best = st
                .accuracies
                .iter()
                .flatten()
                .fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let at_best = st
                .accuracies
                .iter()
                .flatten()
                .filter(|&&v| v == best)
                .count();
            tied_steps.n += 1;
            tied_steps.k += usize::from(at_best > 1);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let mut layers: BTreeMap<usize, Vec<(Criterion, f64)>> = BTreeMap::new();
    for ((l, c), v) in &agree {
        layers.entry(*l).or_default().push((*c, mean(v)));
    }
    Agreement {
        layers: layers.into_iter().collect(),
        index_control: control.iter().map(|(l, v)| (*l, mean(v))).collect(),
        random_band: orders
            .iter()
            .map(|(l, o)| (*l, random_band(o, 1000, *l as u64)))
            .collect(),
        excluded,
        tied_steps,
        tie_rules: {
            let mut t: Vec<String> = cases.iter().map(|(_, a)| a.pruning.ties.clone()).collect();
            t.sort();
            t.dedup();
            t
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_tables_are_read_like_the_thesis() {
        // 5 filters; steps remove 2 (1.0), 1 (0.995), 1 (0.93) then stop at one per layer.
        let v = serde_json::json!({
            "filters": [{"layer":1,"filter":1},{"layer":1,"filter":2},{"layer":1,"filter":3},{"layer":2,"filter":1},{"layer":2,"filter":2}],
            "initial_accuracy": 1.0,
            "steps": [
                {"accuracies": [], "removed": [{"layer":1,"filter":1},{"layer":1,"filter":2}], "accuracy_after": 1.0},
                {"accuracies": [], "removed": [{"layer":2,"filter":2}], "accuracy_after": 0.995},
                {"accuracies": [], "removed": [], "accuracy_after": 0.93}
            ],
            "survivors": [{"layer":1,"filter":3},{"layer":2,"filter":1}],
            "evaluations": 9, "on": "val", "images": 10, "ties": "batch",
            "rechecked_images": 0, "seconds": 0.0
        });
        let p: PruneJson = serde_json::from_value(v).unwrap();
        let r = pruning_reading(&p);
        assert_eq!((r.filters, r.initial, r.keep99, r.keep90), (5, 1.0, 3, 3));
        assert_eq!(r.survivors, vec!["L1 F3", "L2 F1"]);
        // A dip below 0.99 ends the first count even if accuracy recovers later.
        let mut q = p.clone();
        q.steps[0].accuracy_after = 0.95;
        let r = pruning_reading(&q);
        assert_eq!((r.keep99, r.keep90), (0, 3));
        // With a held-out measurement of the path, that is what is read: here test says the
        // second step already fell below 0.99 and the third below 0.90.
        let mut h = p.clone();
        h.held_out = Some(crate::analyses::pruning::HeldOut {
            split: shapes::Split::Test,
            images: 30,
            initial_accuracy: 0.99,
            after: vec![0.99, 0.97, 0.85],
        });
        let r = pruning_reading(&h);
        assert_eq!((r.initial, r.keep99, r.keep90), (0.99, 2, 3));
        assert_eq!(accuracy_after(&h, 3), Some(0.97));
        assert_eq!(accuracy_after(&p, 3), Some(0.995));
        // A stored table missing a field does not read back as zeros.
        let mut broken = serde_json::to_value(&p).unwrap();
        broken.as_object_mut().unwrap().remove("initial_accuracy");
        assert!(serde_json::from_value::<PruneJson>(broken).is_err());
    }

    fn runs(spec: &[(&str, &str, &str, usize)]) -> Vec<RunRow> {
        let mut out = Vec::new();
        for &(arch, cond, outcome, n) in spec {
            for s in 0..n {
                out.push(RunRow::example(arch, cond, out.len() + s, outcome, 0.0));
            }
        }
        out
    }

    static NO_STEPS: BTreeMap<String, FirstSteps> = BTreeMap::new();
    static NO_HISTORIES: BTreeMap<String, Vec<tinycnn::EpochStats>> = BTreeMap::new();

    /// The fixture's p-value for a raise of `gain` x 100 images, none lost.
    fn mcnemar(gain: f64) -> f64 {
        crate::analyses::interaction::mcnemar_exact(((gain * 100.0).round()) as usize, 0)
    }

    fn inputs<'a>(
        runs: &'a [RunRow],
        sources: &'a BTreeMap<String, String>,
        diagnoses: &'a BTreeMap<String, Diagnosis>,
        stuck: &'a [StuckGroup],
    ) -> Inputs<'a> {
        Inputs {
            runs,
            sources,
            diagnoses,
            stuck,
            cases: &[],
            continuations: &[],
            first_steps: &NO_STEPS,
            histories: &NO_HISTORIES,
        }
    }

    #[test]
    fn learning_counts_each_depth_apart_and_never_pools_conditions() {
        let rs = runs(&[
            ("16-4", "adam", "learned", 3),
            ("16-4", "adam", "stuck", 1),
            ("8", "adam", "learned", 2),
            ("8-16-32", "adam", "learned", 1),
            ("8-16-32", "adam", "partial", 1),
            ("16-4", "sgd", "stuck", 5),
        ]);
        let none = BTreeMap::new();
        let f = findings(&inputs(&rs, &none, &BTreeMap::new(), &[]));
        let learning: Vec<&Learning> = f
            .iter()
            .filter_map(|f| match f {
                Finding::Learning(l) => Some(l),
                _ => None,
            })
            .collect();
        assert_eq!(learning.len(), 2, "one learning finding per condition");
        let adam = learning[0];
        assert_eq!(adam.condition, "adam");
        assert_eq!(adam.learned, Tally { k: 6, n: 8 });
        assert_eq!((adam.stuck, adam.partial), (1, 1));
        // A three-layer net is neither a two-layer nor a one-layer net.
        assert_eq!(adam.two_layers, Tally { k: 3, n: 4 });
        assert_eq!(adam.one_layer, Tally { k: 2, n: 2 });
        assert_eq!(adam.deeper, Tally { k: 1, n: 2 });
        // 16-4 and 8-16-32 both learned and failed; 8 always learned.
        assert_eq!(adam.mixed_cells, Tally { k: 2, n: 3 });
        // Wilson's interval for 6 of 8 (z = 1.959964): 0.4093 to 0.9285.
        let (lo, hi) = adam.interval;
        assert!(
            (lo - 0.4093).abs() < 1e-4 && (hi - 0.9285).abs() < 1e-4,
            "{lo} {hi}"
        );
        // One layer 2/2 against two layers 3/4: +25 points, the interval spans 0.
        let (d, lo, hi) = adam.one_minus_two.unwrap();
        assert!((d - 0.25).abs() < 1e-12 && lo < 0.0 && hi > 0.0);
        let sgd = learning[1];
        assert_eq!((sgd.learned, sgd.stuck), (Tally { k: 0, n: 5 }, 5));
        assert_eq!(sgd.one_minus_two, None);
        // The headline: 6/8 (41-93%) against 0/5 (0-43%): the intervals overlap, so the
        // condition is not said to decide; with 0/20 (0-16%) it is.
        let Finding::Headline(h) = &f[0] else {
            panic!("{f:?}")
        };
        assert_eq!(h.conditions[0].1, Tally { k: 6, n: 8 });
        assert_eq!(h.decided, None);
        let mut more = rs.clone();
        more.extend(runs(&[("16-4", "sgd", "stuck", 15)]));
        let h = headline(&more, &["adam", "sgd"]);
        assert_eq!(h.decided, Some(("adam".to_string(), "sgd".to_string())));
        // No run has a test accuracy: nothing is claimed about the held-out split.
        assert!(h.held_out.is_empty());
        // Learned runs' test accuracies, per condition: 1.0, 0.98, 0.995 under adam.
        for (r, t) in more
            .iter_mut()
            .filter(|r| r.condition == "adam" && r.outcome == Outcome::Learned)
            .zip([1.0, 0.98, 0.995])
        {
            r.test_acc = Some(t);
        }
        let h = headline(&more, &["adam", "sgd"]);
        assert_eq!(
            h.held_out,
            vec![(
                "adam".to_string(),
                HeldOutScore {
                    runs: 3,
                    median: 0.995,
                    lowest: 0.98,
                    below_99: 1
                }
            )]
        );
    }

    #[test]
    fn dying_is_read_from_each_epoch_record() {
        // 2-2 runs: two failed, one learned. Failed run 1: the last layer all dead from epoch
        // 2, zero gradient in epoch 2 (dense too). Failed run 2: all dead from epoch 1, zero
        // gradient from epoch 1, the dense layer still moving. The learned run never dies.
        let epoch = |e: usize, dead: usize, grads: [f64; 3]| tinycnn::EpochStats {
            epoch: e,
            train_loss: 1.0,
            train_acc: 0.3,
            val_loss: 1.0,
            val_acc: 0.3,
            dead: vec![0, dead],
            grad_norms: Some(grads.to_vec()),
        };
        let rs = vec![
            RunRow::example("2-2", "sgd", 1, "stuck", 0.33),
            RunRow::example("2-2", "sgd", 2, "collapsed", 0.33),
            RunRow::example("2-2", "sgd", 3, "learned", 1.0),
            RunRow::example("2-2", "adam", 4, "learned", 1.0),
        ];
        let mut h = BTreeMap::new();
        h.insert(
            rs[0].key.clone(),
            vec![
                epoch(1, 1, [0.1, 0.2, 0.3]),
                epoch(2, 2, [0.1, 0.0, 0.0]),
                epoch(3, 2, [0.1, 0.0, 0.0]),
            ],
        );
        h.insert(
            rs[1].key.clone(),
            vec![epoch(1, 2, [0.1, 0.0, 0.2]), epoch(2, 2, [0.0, 0.0, 0.1])],
        );
        h.insert(rs[2].key.clone(), vec![epoch(1, 0, [0.5, 0.4, 0.3])]);
        let (none, d, g) = (BTreeMap::new(), BTreeMap::new(), Vec::new());
        let mut inp = inputs(&rs, &none, &d, &g);
        inp.histories = &h;
        let x = dying(&inp, "sgd").unwrap();
        assert_eq!(x.all_dead, (Tally { k: 2, n: 2 }, Tally { k: 0, n: 1 }));
        assert_eq!(x.all_dead_epoch, Some(1.5));
        assert_eq!(
            x.zero_gradient,
            (Tally { k: 2, n: 2 }, Tally { k: 0, n: 1 })
        );
        assert_eq!(x.dense_zero_too, Tally { k: 1, n: 2 });
        // No failed run under adam: nothing to say.
        assert_eq!(dying(&inp, "adam"), None);
    }

    #[test]
    fn success_is_modelled_within_a_condition() {
        // Wider first layers learn more often; the second layer and the dataset do not matter.
        let mut rs = Vec::new();
        for (f1, k) in [(2, 2), (4, 4), (8, 6), (16, 8)] {
            for f2 in [2, 8] {
                for d in ["rotation", "size"] {
                    let arch = format!("{f1}-{f2}");
                    let mut cell = on(
                        d,
                        &[
                            (&arch, "sgd", "learned", k / 2),
                            (&arch, "sgd", "stuck", 5 - k / 2),
                        ],
                    );
                    rs.append(&mut cell);
                }
            }
        }
        rs.extend(runs(&[("16-4", "adam", "learned", 12)]));
        let m = success_model(&rs, "sgd");
        assert_eq!((m.runs, m.unfit), (80, None));
        let names: Vec<&str> = m.terms.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "intercept",
                "layer-1 filters (per doubling)",
                "layer-2 filters (per doubling)",
                "dataset size (vs rotation)"
            ]
        );
        let (_, b1, (lo1, _)) = m.terms[1];
        assert!(b1 > 0.0 && lo1 > 0.0, "{m:?}");
        let (_, b2, (lo2, hi2)) = m.terms[2];
        assert!(b2.abs() < 1e-9 && lo2 < 0.0 && hi2 > 0.0, "{m:?}");
        // Under adam every run learned: nothing to fit, and it says so.
        let a = success_model(&rs, "adam");
        assert!(
            a.terms.is_empty() && a.unfit.unwrap().contains("every"),
            "{a:?}"
        );
    }

    #[test]
    fn partial_runs_trained_further_are_counted_within_their_condition() {
        let rs = runs(&[
            ("16-4", "adam", "partial", 2),
            ("16-4", "adam", "collapsed", 1),
            ("16-4", "sgd", "partial", 1),
        ]);
        let cont =
            |r: &RunRow, lr: &str, escaped: bool| crate::experiments::store::ContinuationRow {
                run_key: r.key.clone(),
                extra_epochs: 10,
                lr: lr.into(),
                val_acc: 1.0,
                outcome: Outcome::Learned,
                escaped,
                escape_epoch: None,
                finished: String::new(),
            };
        let c = [
            cont(&rs[0], "same", true),
            cont(&rs[1], "same", false),
            cont(&rs[1], "adam", true),
            cont(&rs[3], "same", true),
        ];
        let l = learning(&rs, "adam", &c);
        assert_eq!(l.partial_continued, Tally { k: 1, n: 2 });
        assert_eq!((l.partial, l.collapsed), (2, 1));
        assert_eq!(
            learning(&rs, "sgd", &c).partial_continued,
            Tally { k: 1, n: 1 }
        );
    }

    #[test]
    fn the_mechanism_compares_failed_and_learned_runs_of_one_condition() {
        let rs = runs(&[
            ("2-4", "sgd", "stuck", 1),
            ("2-4", "sgd", "collapsed", 1),
            ("2-4", "sgd", "learned", 1),
            ("2-4", "adam", "learned", 1),
        ]);
        let steps = |dead_last: [f64; 3], first: [f64; 2]| FirstSteps {
            schema: crate::files::schema::Schema::CURRENT,
            probe: 200,
            dead_at_start: vec![0.0, dead_last[0]],
            relative_update: vec![first.to_vec(), vec![0.1, 0.1]],
            dead: vec![vec![0.0, dead_last[1]], vec![0.0, dead_last[2]]],
        };
        let f: BTreeMap<String, FirstSteps> = [
            (rs[0].key.clone(), steps([0.0, 1.0, 1.0], [2.0, 4.0])),
            (rs[1].key.clone(), steps([0.5, 0.5, 1.0], [1.0, 2.0])),
            (rs[2].key.clone(), steps([0.0, 0.0, 0.25], [0.1, 0.2])),
            (rs[3].key.clone(), steps([0.0, 0.0, 0.0], [0.01, 0.02])),
        ]
        .into();
        let none = BTreeMap::new();
        let diagnoses = none_diag();
        let mut inp = inputs(&rs, &none, &diagnoses, &[]);
        inp.first_steps = &f;
        let m = mechanism(&inp, "sgd").unwrap();
        assert_eq!((m.runs, m.steps), ((2, 1), 2));
        // A one-layer learned run joins layer 1's mean only.
        let mut more = rs.clone();
        more.extend(runs(&[("8", "sgd", "learned", 1)]));
        let mut f2 = f.clone();
        f2.insert(
            more[4].key.clone(),
            FirstSteps {
                schema: crate::files::schema::Schema::CURRENT,
                probe: 200,
                dead_at_start: vec![0.0],
                relative_update: vec![vec![0.5], vec![0.1]],
                dead: vec![vec![0.0], vec![0.25]],
            },
        );
        let mut inp2 = inputs(&more, &none, &diagnoses, &[]);
        inp2.first_steps = &f2;
        let m2 = mechanism(&inp2, "sgd").unwrap();
        assert_eq!(m2.first_update, vec![(1.5, 0.3), (3.0, 0.2)]);
        assert_eq!(m.dead_last, [(0.25, 0.0), (0.75, 0.0), (1.0, 0.25)]);
        assert_eq!(m.first_update, vec![(1.5, 0.1), (3.0, 0.2)]);
        // Failed 1.0 and 1.0 dead at the end against 0.25: +0.75 with every resample equal.
        assert_eq!(m.dead_difference, Some((0.75, 0.75, 0.75)));
        let (d, lo, hi) = m.update_difference.unwrap();
        assert!((d - 2.8).abs() < 1e-12 && lo >= 1.8 - 1e-12 && hi <= 3.8 + 1e-12);
        // Under adam no run failed: nothing to compare.
        assert!(mechanism(&inp, "adam").is_none());
    }

    fn none_diag() -> BTreeMap<String, Diagnosis> {
        BTreeMap::new()
    }

    #[test]
    fn the_bootstrap_brackets_a_clear_difference_and_straddles_none() {
        let a: Vec<f64> = (0..40).map(|i| 1.0 + 0.01 * i as f64).collect();
        let b: Vec<f64> = (0..40).map(|i| 0.01 * i as f64).collect();
        let (d, lo, hi) = bootstrap_difference(&a, &b, 2000, 0).unwrap();
        assert!((d - 1.0).abs() < 1e-12 && lo > 0.9 && hi < 1.1 && lo < d && d < hi);
        let (d, lo, hi) = bootstrap_difference(&b, &b, 2000, 0).unwrap();
        assert!(d == 0.0 && lo < 0.0 && hi > 0.0);
        assert_eq!(
            bootstrap_difference(&a, &b, 2000, 0),
            bootstrap_difference(&a, &b, 2000, 0)
        );
        assert_eq!(bootstrap_difference(&[], &b, 10, 0), None);
    }

    #[test]
    fn case_claims_are_judged_by_the_range_of_seeds() {
        let sources: BTreeMap<String, String> =
            [("size".to_string(), "thesis-1.3".to_string())].into();
        let seed = |keep90_steps: usize| {
            let mut a = Analysis::example();
            a.arch = "2-16".into();
            a.data = "size".into();
            // `keep90_steps` removals of one filter each at 0.95, then 0.5.
            let step = |acc: f64| crate::analyses::pruning::StepJson {
                accuracies: vec![],
                removed: vec![crate::analyses::pruning::FilterRef {
                    layer: 2,
                    filter: 1,
                }],
                accuracy_after: acc,
            };
            a.pruning.steps = (0..keep90_steps).map(|_| step(0.95)).collect();
            a.pruning.steps.push(step(0.5));
            ("size-2-16".to_string(), a)
        };
        let c = case_claims(&[seed(14), seed(16), seed(12)], &sources);
        assert_eq!(c[0].evidence, Evidence::Seeds(vec![14.0, 16.0, 12.0], 0));
        assert_eq!(c[0].verdict, Verdict::Reproduced, "15 lies within 12-16");
        let c = case_claims(&[seed(4), seed(5), seed(6)], &sources);
        assert_eq!(c[0].verdict, Verdict::Contradicted);
        let c = case_claims(&[seed(4)], &sources);
        assert_eq!(
            c[0].verdict,
            Verdict::NoEvidence,
            "one seed outside is too few"
        );
        // No 16-16 on 2.1 here, and no raise tested.
        assert_eq!(c[1].verdict, Verdict::NotComparable);
        assert_eq!(c[2].verdict, Verdict::NotComparable);
        assert_eq!(accuracy_after(&seed(3).1.pruning, 2), Some(0.95));
        assert_eq!(accuracy_after(&seed(3).1.pruning, 9), None);
    }

    fn on(dataset: &str, spec: &[(&str, &str, &str, usize)]) -> Vec<RunRow> {
        let mut rs = runs(spec);
        for r in &mut rs {
            r.dataset = dataset.into();
            r.key = format!("{dataset}/{}", r.key);
        }
        rs
    }

    fn claim<'a>(claims: &'a [Claim], start: &str, cond: &str) -> &'a Claim {
        claims
            .iter()
            .find(|c| c.claim.starts_with(start) && c.condition == cond)
            .unwrap_or_else(|| panic!("{start} {cond}: {claims:?}"))
    }

    #[test]
    fn thesis_claims_get_the_verdict_the_data_gives() {
        let mut rs = on(
            "size",
            &[
                ("8", "a", "learned", 4),
                ("2-2", "a", "learned", 20),
                ("2-8", "a", "learned", 1),
                ("2-8", "a", "stuck", 4),
                ("8", "b", "stuck", 10),
                ("2-2", "b", "learned", 2),
                ("2-2", "b", "stuck", 2),
            ],
        );
        rs.extend(on(
            "rotation",
            &[
                ("2-2", "a", "learned", 20),
                ("2-2", "b", "learned", 1),
                ("2-2", "b", "stuck", 3),
            ],
        ));
        let sources: BTreeMap<String, String> = [
            ("size".to_string(), "thesis-1.3".to_string()),
            ("rotation".to_string(), "thesis-2.1".to_string()),
        ]
        .into();
        rs.extend(on("size", &[("2-2", "c", "learned", 5)]));
        let c = thesis_claims(&rs, &sources, &["a", "b", "c"]);
        // 5 of 5 against 3 of 6: the difference's interval holds 0, this study's own (57-100%)
        // does not hold 50%: too few runs to say.
        assert_eq!(claim(&c, "2-2 learns", "c").verdict, Verdict::NoEvidence);
        // One-layer nets learned 4 of 4 under a: "never learns" is contradicted; under b,
        // 0 of 10: reproduced.
        assert_eq!(
            claim(&c, "One conv layer", "a").verdict,
            Verdict::Contradicted
        );
        assert_eq!(
            claim(&c, "One conv layer", "b").verdict,
            Verdict::Reproduced
        );
        // Rotation against size, two-layer nets: a 20/20 vs 21/25, b 1/4 vs 2/4: neither
        // interval excludes 0.
        let rot = claim(&c, "Rotation", "a");
        let Evidence::Contrast(r, s, _) = &rot.evidence else {
            panic!()
        };
        assert_eq!((*r, *s), (Tally { k: 20, n: 20 }, Tally { k: 21, n: 25 }));
        assert_eq!(rot.verdict, Verdict::NoEvidence);
        // 2-2 learned 20 of 20 under a against the thesis's 3 of 6: beyond the interval.
        assert_eq!(claim(&c, "2-2 learns", "a").verdict, Verdict::Contradicted);
        assert_eq!(claim(&c, "2-2 learns", "b").verdict, Verdict::Reproduced);
        assert_eq!(claim(&c, "2-8 never", "a").verdict, Verdict::Contradicted);
        assert_eq!(claim(&c, "2-8 never", "b").verdict, Verdict::NotComparable);
        assert_eq!(
            claim(&c, "The same architecture", "a").verdict,
            Verdict::Reproduced
        );
        // Without the thesis's datasets, the dataset claims are not comparable.
        let c = thesis_claims(&rs, &BTreeMap::new(), &["a"]);
        assert_eq!(claim(&c, "Rotation", "a").verdict, Verdict::NotComparable);
        assert_eq!(claim(&c, "2-2 learns", "a").verdict, Verdict::NotComparable);
        // The sign test itself: harder (below 0) reproduces, easier (above 0) contradicts.
        assert_eq!(direction((-0.3, -0.5, -0.1), true), Verdict::Reproduced);
        assert_eq!(direction((0.3, 0.1, 0.5), true), Verdict::Contradicted);
        assert_eq!(direction((0.0, -0.1, 0.1), true), Verdict::NoEvidence);
    }

    fn group(arch: &str, runs: usize, stuck: usize, dead: f64, other: f64) -> StuckGroup {
        StuckGroup {
            dataset: "size".into(),
            condition: "sgd".into(),
            arch: arch.parse().unwrap(),
            runs,
            stuck,
            plateaus: [("0.333".to_string(), stuck)].into(),
            collapsed: BTreeMap::new(),
            dead_fraction_stuck: vec![0.0, dead],
            dead_fraction_other: vec![0.0, other],
            median_grad_norm: None,
            median_plateau_start: Some(3.0),
            continued: vec![(20, "same".into(), 0, stuck)],
        }
    }

    fn diagnosis(dead_last: usize, filters_last: usize) -> Diagnosis {
        Diagnosis {
            dead: vec![0, dead_last],
            filters: vec![2, filters_last],
            grad_norm: 0.0,
            grad_norms: vec![],
            loss: 1.1,
            collapsed: vec![],
            plateau: 1.0 / 3.0,
            plateau_start: 3,
        }
    }

    #[test]
    fn stuck_runs_are_counted_within_their_condition() {
        let rs = runs(&[
            ("2-4", "sgd", "stuck", 3),
            ("2-4", "sgd", "learned", 1),
            ("16-4", "sgd", "stuck", 1),
            ("16-4", "sgd", "learned", 3),
            ("8-16-32", "sgd", "stuck", 2),
            ("16-4", "adam", "learned", 4),
        ]);
        let mut groups = vec![group("2-4", 4, 3, 1.0, 0.0), group("16-4", 4, 1, 0.5, 0.25)];
        let mut adam = group("16-4", 4, 0, 0.0, 0.9);
        adam.condition = "adam".into();
        groups.push(adam);
        // Every stuck run's last layer entirely dead.
        let diagnoses: BTreeMap<String, Diagnosis> = rs
            .iter()
            .filter(|r| r.outcome == Outcome::Stuck)
            .map(|r| (r.key.clone(), diagnosis(4, 4)))
            .collect();
        let none = BTreeMap::new();
        let inp = inputs(&rs, &none, &diagnoses, &groups);
        let s = stuck(&inp, "sgd").unwrap();
        assert_eq!(s.tally.stuck, 4);
        // (3 x 1.0 + 1 x 0.5) / 4 and (1 x 0.0 + 3 x 0.25) / 4: the adam group's 0.9 is not
        // pooled in.
        assert_eq!(s.tally.dead_in_stuck(), Some(0.875));
        assert_eq!(s.tally.dead_in_others(), Some(0.1875));
        // Only two-layer nets enter the first-layer breakdown, each with its interval.
        let f1: Vec<(usize, Tally)> = s.by_first_layer.iter().map(|x| (x.0, x.1)).collect();
        assert_eq!(
            f1,
            vec![(2, Tally { k: 3, n: 4 }), (16, Tally { k: 1, n: 4 })]
        );
        assert_eq!(s.by_first_layer[0].2, wilson(3, 4));
        assert_eq!(s.fully_dead, Tally { k: 6, n: 6 });
        assert!(s.same_settings);
        // All dead, continued the same way: the 0 escapes are guaranteed, and said so.
        assert_eq!(s.verdict, StuckVerdict::DeadByConstruction);
        assert!(stuck(&inp, "adam").is_none(), "no stuck run under adam");
        // One run still alive: a real (if weak) test, no longer by construction.
        let mut some_alive = diagnoses.clone();
        let key = some_alive.keys().next().unwrap().clone();
        some_alive.insert(key, diagnosis(1, 4));
        let s = stuck(&inputs(&rs, &none, &some_alive, &groups), "sgd").unwrap();
        assert_eq!(s.fully_dead, Tally { k: 5, n: 6 });
        assert_eq!(s.verdict, StuckVerdict::Mixed);
        // A rescue that revives one run of three.
        groups[0].continued = vec![(20, "same".into(), 0, 3), (20, "adam".into(), 1, 3)];
        let s = stuck(&inputs(&rs, &none, &diagnoses, &groups), "sgd").unwrap();
        assert_eq!(s.verdict, StuckVerdict::Rescued);
        assert!(!s.same_settings);
        assert_eq!(s.rescues[0].0, "adam");
        assert_eq!(s.rescues[0].1, Tally { k: 1, n: 3 });
        assert_eq!(s.rescues[1].1, Tally { k: 0, n: 4 });
        // Rescues tried, none worked.
        groups[0].continued = vec![(20, "unit".into(), 0, 3)];
        let s = stuck(&inputs(&rs, &none, &diagnoses, &groups), "sgd").unwrap();
        assert_eq!(s.verdict, StuckVerdict::DeadEnds);
    }

    /// A case analysis with the given similarity, interaction and agreement; the rest empty.
    fn case(
        threshold: f64,
        activation_cosine: Vec<Vec<f64>>,
        drops: (Option<f64>, usize, Option<f64>, usize),
        interaction: Vec<Vec<Option<f64>>>,
        raised: &[(f64, f64)],
        rho: &[(usize, Criterion, Option<f64>)],
    ) -> Analysis {
        use crate::analyses::{interaction as ia, pruning::FilterRef, ranking, similarity};
        let mut a = Analysis::example();
        // Layer 1: three filters, pruned in index order (1, 2, then 3 survives); layer 2: two.
        a.ranking.filters = [
            (1, 1, Some(1)),
            (1, 2, Some(2)),
            (1, 3, None),
            (2, 1, None),
            (2, 2, Some(3)),
        ]
        .iter()
        .map(|&(layer, filter, pruned_at)| ranking::Importance {
            filter: FilterRef { layer, filter },
            l1_norm: 0.0,
            mean_activation: 0.0,
            taylor: 0.0,
            pruned_at,
        })
        .collect();
        a.ranking.agreement = rho
            .iter()
            .map(|&(layer, criterion, spearman)| ranking::Agreement {
                layer,
                criterion,
                spearman,
                kendall: None,
            })
            .collect();
        a.similarity = similarity::Similarity {
            threshold,
            layers: vec![similarity::LayerSimilarity {
                layer: 1,
                kernel_cosine: vec![],
                kernel_abs_cosine: vec![],
                activation_correlation: Some(activation_cosine.clone()),
                activation_cosine,
                clusters: vec![],
            }],
            drop_with_twin: drops.0,
            with_twin: drops.1,
            drop_without_twin: drops.2,
            without_twin: drops.3,
            null: Some(similarity::NullLevel {
                twins: (1, 2),
                median_correlation: vec![(threshold - 40.0, 10.0)],
            }),
        };
        a.interaction.interaction = interaction;
        a.interaction.events = raised
            .iter()
            .map(|&(before, after)| ia::Event {
                step: 1,
                kind: ia::EventKind::Raised,
                removed: vec![],
                other: None,
                before,
                after,
                text: format!("{before}->{after}"),
                flips: Some((((after - before) * 100.0).round() as usize, 0)),
                p_value: Some(mcnemar(after - before)),
            })
            .collect();
        a
    }

    #[test]
    fn the_three_conclusions_are_computed_over_the_study_own_cases() {
        // A custom [study] cases list: two cases, at different twin thresholds.
        let a = case(
            90.0,
            vec![vec![100.0, 95.0], vec![95.0, 100.0]],
            (Some(0.01), 2, None, 0),
            vec![vec![None, Some(0.2)], vec![Some(0.2), None]],
            &[(0.6, 0.9), (0.5, 0.6)],
            &[
                (1, Criterion::L1Norm, Some(1.0)),
                (1, Criterion::Taylor, Some(0.1)),
                (2, Criterion::L1Norm, None),
            ],
        );
        let b = case(
            80.0,
            vec![vec![100.0, 10.0], vec![10.0, 100.0]],
            (None, 0, Some(0.3), 2),
            vec![vec![None, Some(0.01)], vec![Some(0.01), None]],
            &[],
            &[
                (1, Criterion::L1Norm, Some(0.0)),
                (2, Criterion::Taylor, Some(0.3)),
            ],
        );
        // Single-removal drops from each interaction diagonal (the held-out split): with twins
        // 0.01 and 0.02 (case a), without 0.3 and 0.2 (case b); layer 2 has no similarity
        // layer, so it is skipped. The pruning tables' own first steps say otherwise and are
        // not read.
        let (mut a, mut b) = (a, b);
        for (x, diag) in [(&mut a, [0.99, 0.98, 0.5]), (&mut b, [0.7, 0.8, 0.5])] {
            x.interaction.filters = x.pruning.filters.clone();
            x.interaction.base_accuracy = 1.0;
            x.interaction.accuracy = (0..3)
                .map(|i| (0..3).map(|j| (i == j).then_some(diag[i])).collect())
                .collect();
            x.pruning.steps[0].accuracies = vec![Some(0.1), Some(0.2), Some(0.3)];
        }
        let cases = vec![
            ("size-8-16-32".to_string(), a),
            ("rotation-2-1".to_string(), b),
        ];
        let (with, without) = twin_drops(&cases, true);
        assert_eq!(with.len() + without.len(), 4);
        let d = redundancy(&cases).drop_difference.unwrap();
        assert!((d.0 + 0.235).abs() < 1e-12 && d.2 < 0.0, "{d:?}");
        assert_eq!(redundancy(&cases).twin_direction(), Some(false));
        let r = redundancy(&cases);
        assert_eq!(r.cases, 2);
        assert_eq!(r.twins, Tally { k: 2, n: 4 });
        assert_eq!(r.thresholds, vec![90.0, 80.0]);
        assert_eq!((r.drop_with_twin, r.with_twin), (Some(0.01), 2));
        assert_eq!((r.drop_without_twin, r.without_twin), (Some(0.3), 2));
        assert!(r.by_correlation);
        // The null level: 1 of 2 filters per case had a twin at initialisation.
        assert_eq!(r.null_twins, Some(Tally { k: 2, n: 4 }));
        // Medians (50, 10) and (40, 10): means 45 and 10.
        assert_eq!(r.median_correlation, Some((45.0, 10.0)));
        assert_eq!(
            r.removable[0],
            ("size-8-16-32".to_string(), Tally { k: 1, n: 3 })
        );
        let i = interplay(&cases);
        // One pair per case (the matrix is symmetric: each pair counted once).
        assert_eq!(i.strong, Tally { k: 1, n: 2 });
        assert_eq!(i.raised, 2);
        // Raises of 30 and 10 images with none lost: p = 2^-29 and 2^-9, both significant.
        assert_eq!(i.significant, Tally { k: 2, n: 2 });
        let (gain, text) = i.largest_raise.unwrap();
        assert!((gain - 0.3).abs() < 1e-12);
        assert_eq!(text, "size-8-16-32, 0.6->0.9");
        // Its flips on the held-out split: 30 right, none wrong, of the example's 10 images
        // (the fixture's counts are per hundred).
        assert_eq!(i.largest_raise_flips, Some((30, 0, 10)));
        assert_eq!(r.twins_cost_more(), Some(false));
        let mut both = r.clone();
        both.drop_without_twin = Some(0.001);
        assert_eq!(both.twins_cost_more(), Some(true));
        let g = agreement(&cases);
        // Layer 2 has two filters in both cases: left out, and said so.
        assert_eq!(
            g.layers,
            vec![(1, vec![(Criterion::L1Norm, 0.5), (Criterion::Taylor, 0.1)])]
        );
        assert_eq!(
            g.excluded,
            vec![
                ("size-8-16-32".to_string(), 2),
                ("rotation-2-1".to_string(), 2)
            ]
        );
        // Removal order 1, 2, then survivors last (the example table has one step, so filter
        // 3's "last" ties filter 2's step 2): index ranks 1, 2, 3 against 1, 2.5, 2.5 give
        // rho = sqrt(3) / 2.
        assert_eq!(g.index_control.len(), 1);
        // Random rankings of 3 filters against two cases' orders: a band around 0, seeded.
        let (lo, hi) = g.random_band[0].1;
        assert!(lo < 0.0 && hi > 0.0 && lo >= -1.0 && hi <= 1.0, "{lo} {hi}");
        assert_eq!(
            agreement(&cases).random_band,
            g.random_band,
            "seeded: the same band"
        );
        assert!((g.index_control[0].1 - 3f64.sqrt() / 2.0).abs() < 1e-12);
        // Each example table has one step, its best accuracy reached once: no tie.
        assert_eq!(g.tied_steps, Tally { k: 0, n: 2 });
        // The example tables broke ties by index; the report must not claim otherwise.
        assert_eq!(g.tie_rules, vec!["one".to_string()]);
        assert_eq!(Agreement::accord(&g.layers[0].1), Accord::Agree);
        assert_eq!(Agreement::accord(&[(Criterion::L1Norm, 0.3)]), Accord::Weak);
        assert_eq!(
            Agreement::accord(&[(Criterion::Taylor, -0.4)]),
            Accord::None
        );
        let none = BTreeMap::new();
        let all = findings(&Inputs {
            runs: &[],
            sources: &none,
            diagnoses: &BTreeMap::new(),
            stuck: &[],
            cases: &cases,
            continuations: &[],
            first_steps: &BTreeMap::new(),
            histories: &BTreeMap::new(),
        });
        assert!(matches!(
            all.as_slice(),
            [
                Finding::Headline(_),
                Finding::Thesis(_),
                Finding::Redundancy(_),
                Finding::Interplay(_),
                Finding::Agreement(_)
            ]
        ));
    }
}
