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
use crate::experiments::outcome::Outcome;
use crate::experiments::store::RunRow;
use crate::experiments::stuck::StuckGroup;
use crate::experiments::summary::{median, wilson};

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
    pub partial: usize,
    /// Learned among the nets with two, one, and three or more conv layers.
    pub two_layers: Tally,
    pub one_layer: Tally,
    pub deeper: Tally,
    /// Dataset-architecture cells whose seeds both learned and failed, of all cells.
    pub mixed_cells: Tally,
}

/// Whether a stuck run is a dead end (thesis future work 4), as the continuations show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StuckVerdict {
    /// Fewer than one in ten escaped and at least half the last layer is dead.
    DeadEnds,
    /// At least one in ten escaped when trained further.
    SlowStretches,
    Mixed,
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
        for (_, _, k, n) in &g.continued {
            self.escaped += k;
            self.tried += n;
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
    pub tally: StuckTally,
    /// Stuck runs per condition, in condition order.
    pub by_condition: Vec<(String, Tally)>,
    /// Stuck two-layer runs by the first layer's filters.
    pub by_first_layer: Vec<(usize, Tally)>,
    pub verdict: StuckVerdict,
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
/// of accuracy, how many keep it at or above 0.90, and which filters survive.
pub fn pruning_reading(p: &PruneJson) -> PruningReading {
    let initial = p.initial_accuracy;
    let (mut removed, mut keep99, mut keep90) = (0, 0, 0);
    for st in &p.steps {
        let before = removed;
        removed += st.removed.len();
        let a = st.accuracy_after;
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
    /// Per case: its slug and the removals costing at most 0.01, of its filters.
    pub removable: Vec<(String, Tally)>,
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
}

/// Thesis conclusion c: do simple readings of the filters agree with pruning?
#[derive(Clone, Debug, PartialEq)]
pub struct Agreement {
    /// Per layer, each criterion's mean Spearman correlation with the pruning order over the
    /// cases where it is defined.
    pub layers: Vec<(usize, Vec<(Criterion, f64)>)>,
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
    Learning(Learning),
    Stuck(Stuck),
    Redundancy(Redundancy),
    Interplay(Interplay),
    Agreement(Agreement),
}

/// Every finding of a study, in the report's order: learning per condition, stuck runs (when
/// any), then the three conclusions over the case analyses (when any).
pub fn findings(
    runs: &[RunRow],
    stuck_groups: &[StuckGroup],
    cases: &[(String, Analysis)],
) -> Vec<Finding> {
    let conds = conditions(runs);
    let mut out: Vec<Finding> = conds
        .iter()
        .map(|c| Finding::Learning(learning(runs, c)))
        .collect();
    if let Some(s) = stuck(runs, &conds, stuck_groups) {
        out.push(Finding::Stuck(s));
    }
    if !cases.is_empty() {
        out.push(Finding::Redundancy(redundancy(cases)));
        out.push(Finding::Interplay(interplay(cases)));
        out.push(Finding::Agreement(agreement(cases)));
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

/// How the runs of `condition` ended, overall and by depth.
pub fn learning(runs: &[RunRow], condition: &str) -> Learning {
    let rs: Vec<&RunRow> = runs.iter().filter(|r| r.condition == condition).collect();
    let learned = |r: &RunRow| r.outcome == Outcome::Learned;
    let depth = |keep: fn(usize) -> bool| {
        Tally::of(
            rs.iter().copied().filter(|r| keep(r.arch.layers())),
            learned,
        )
    };
    let all = Tally::of(rs.iter().copied(), learned);
    let mut cells: BTreeMap<(&str, &tinycnn::ArchLabel), Tally> = BTreeMap::new();
    for r in &rs {
        let e = cells.entry((r.dataset.as_str(), &r.arch)).or_default();
        e.n += 1;
        e.k += usize::from(learned(r));
    }
    Learning {
        condition: condition.to_string(),
        interval: wilson(all.k, all.n),
        learned: all,
        stuck: rs.iter().filter(|r| r.outcome == Outcome::Stuck).count(),
        partial: rs.iter().filter(|r| r.outcome == Outcome::Partial).count(),
        two_layers: depth(|l| l == 2),
        one_layer: depth(|l| l == 1),
        deeper: depth(|l| l > 2),
        mixed_cells: Tally {
            k: cells.values().filter(|t| t.k > 0 && t.k < t.n).count(),
            n: cells.len(),
        },
    }
}

/// When runs get stuck; `None` when none did.
pub fn stuck(runs: &[RunRow], conds: &[&str], groups: &[StuckGroup]) -> Option<Stuck> {
    let mut tally = StuckTally::default();
    for g in groups {
        tally.add(g);
    }
    if tally.stuck == 0 {
        return None;
    }
    let is_stuck = |r: &RunRow| r.outcome == Outcome::Stuck;
    let by_condition = conds
        .iter()
        .map(|c| {
            let t = Tally::of(runs.iter().filter(|r| r.condition == *c), is_stuck);
            (c.to_string(), t)
        })
        .collect();
    let mut by_f1: BTreeMap<usize, Tally> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.arch.layers() == 2) {
        let e = by_f1.entry(r.arch.filters()[0]).or_default();
        e.n += 1;
        e.k += usize::from(is_stuck(r));
    }
    let escapes = tally.tried > 0 && tally.escaped * 10 >= tally.tried;
    let dead = tally.dead_in_stuck().is_some_and(|d| d >= 0.5);
    let verdict = if tally.tried > 0 && !escapes && dead {
        StuckVerdict::DeadEnds
    } else if escapes {
        StuckVerdict::SlowStretches
    } else {
        StuckVerdict::Mixed
    };
    Some(Stuck {
        tally,
        by_condition,
        by_first_layer: by_f1.into_iter().collect(),
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
    };
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
        for l in &s.layers {
            for (i, row) in l.activation_cosine.iter().enumerate() {
                r.twins.n += 1;
                let twin = row
                    .iter()
                    .enumerate()
                    .any(|(j, &v)| j != i && v >= s.threshold);
                r.twins.k += usize::from(twin);
            }
        }
        let p = pruning_reading(&a.pruning);
        let t = Tally {
            k: p.keep99,
            n: p.filters,
        };
        r.removable.push((slug.clone(), t));
    }
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
    };
    for (slug, a) in cases {
        for e in &a.interaction.events {
            if e.kind == EventKind::Raised {
                out.raised += 1;
                let gain = e.after - e.before;
                if out.largest_raise.as_ref().is_none_or(|b| gain > b.0) {
                    out.largest_raise = Some((gain, format!("{slug}, {}", e.text)));
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

/// Each criterion's mean Spearman correlation with the pruning order, per layer.
pub fn agreement(cases: &[(String, Analysis)]) -> Agreement {
    let mut agree: BTreeMap<(usize, Criterion), Vec<f64>> = BTreeMap::new();
    for (_, a) in cases {
        for ag in &a.ranking.agreement {
            if let Some(v) = ag.spearman {
                agree.entry((ag.layer, ag.criterion)).or_default().push(v);
            }
        }
    }
    let mut layers: BTreeMap<usize, Vec<(Criterion, f64)>> = BTreeMap::new();
    for ((l, c), v) in &agree {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        layers.entry(*l).or_default().push((*c, mean));
    }
    Agreement {
        layers: layers.into_iter().collect(),
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
        let f = findings(&rs, &[], &[]);
        assert_eq!(
            f.len(),
            2,
            "one learning finding per condition, no stuck groups"
        );
        let Finding::Learning(adam) = &f[0] else {
            panic!("{f:?}")
        };
        assert_eq!(adam.condition, "adam");
        assert_eq!(adam.learned, Tally { k: 6, n: 8 });
        assert_eq!((adam.stuck, adam.partial), (1, 1));
        // A three-layer net is neither a two-layer nor a one-layer net.
        assert_eq!(adam.two_layers, Tally { k: 3, n: 4 });
        assert_eq!(adam.one_layer, Tally { k: 2, n: 2 });
        assert_eq!(adam.deeper, Tally { k: 1, n: 2 });
        // 16-4 and 8-16-32 both learned and failed; 8 always learned.
        assert_eq!(adam.mixed_cells, Tally { k: 2, n: 3 });
        let (lo, hi) = adam.interval;
        // Wilson's interval for 6 of 8 (z = 1.959964): 0.4093 to 0.9285.
        assert!(
            (lo - 0.4093).abs() < 1e-4 && (hi - 0.9285).abs() < 1e-4,
            "{lo} {hi}"
        );
        let Finding::Learning(sgd) = &f[1] else {
            panic!("{f:?}")
        };
        assert_eq!((sgd.learned, sgd.stuck), (Tally { k: 0, n: 5 }, 5));
        assert_eq!(sgd.mixed_cells, Tally { k: 0, n: 1 });
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

    #[test]
    fn stuck_runs_weigh_each_group_by_its_runs() {
        let rs = runs(&[
            ("2-4", "sgd", "stuck", 3),
            ("2-4", "sgd", "learned", 1),
            ("16-4", "sgd", "stuck", 1),
            ("16-4", "sgd", "learned", 3),
            ("8-16-32", "sgd", "stuck", 2),
        ]);
        let groups = [group("2-4", 4, 3, 1.0, 0.0), group("16-4", 4, 1, 0.5, 0.25)];
        let f = findings(&rs, &groups, &[]);
        let Some(Finding::Stuck(s)) = f.get(1) else {
            panic!("{f:?}")
        };
        assert_eq!(s.tally.stuck, 4);
        // (3 x 1.0 + 1 x 0.5) / 4 and (1 x 0.0 + 3 x 0.25) / 4.
        assert_eq!(s.tally.dead_in_stuck(), Some(0.875));
        assert_eq!(s.tally.dead_in_others(), Some(0.1875));
        assert_eq!(
            s.by_condition,
            vec![("sgd".to_string(), Tally { k: 6, n: 10 })]
        );
        // Only two-layer nets enter the first-layer breakdown.
        assert_eq!(
            s.by_first_layer,
            vec![(2, Tally { k: 3, n: 4 }), (16, Tally { k: 1, n: 4 })]
        );
        assert_eq!((s.tally.escaped, s.tally.tried), (0, 4));
        assert_eq!(s.verdict, StuckVerdict::DeadEnds);
        let mut escaping = groups.clone();
        escaping[0].continued = vec![(20, "same".into(), 1, 3)];
        let Some(Finding::Stuck(s)) = findings(&rs, &escaping, &[]).get(1).cloned() else {
            panic!()
        };
        assert_eq!(s.verdict, StuckVerdict::SlowStretches);
        assert!(findings(&rs, &[group("2-4", 4, 0, 0.0, 0.0)], &[])
            .iter()
            .all(|f| !matches!(f, Finding::Stuck(_))));
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
        use crate::analyses::{interaction as ia, ranking, similarity};
        let mut a = Analysis::example();
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
                activation_cosine,
                clusters: vec![],
            }],
            drop_with_twin: drops.0,
            with_twin: drops.1,
            drop_without_twin: drops.2,
            without_twin: drops.3,
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
        let cases = vec![
            ("size-8-16-32".to_string(), a),
            ("rotation-2-1".to_string(), b),
        ];
        let r = redundancy(&cases);
        assert_eq!(r.cases, 2);
        assert_eq!(r.twins, Tally { k: 2, n: 4 });
        assert_eq!(r.thresholds, vec![90.0, 80.0]);
        assert_eq!((r.drop_with_twin, r.with_twin), (Some(0.01), 2));
        assert_eq!((r.drop_without_twin, r.without_twin), (Some(0.3), 2));
        assert_eq!(
            r.removable[0],
            ("size-8-16-32".to_string(), Tally { k: 1, n: 3 })
        );
        let i = interplay(&cases);
        // One pair per case (the matrix is symmetric: each pair counted once).
        assert_eq!(i.strong, Tally { k: 1, n: 2 });
        assert_eq!(i.raised, 2);
        let (gain, text) = i.largest_raise.unwrap();
        assert!((gain - 0.3).abs() < 1e-12);
        assert_eq!(text, "size-8-16-32, 0.6->0.9");
        let g = agreement(&cases);
        assert_eq!(
            g.layers,
            vec![
                (1, vec![(Criterion::L1Norm, 0.5), (Criterion::Taylor, 0.1)]),
                (2, vec![(Criterion::Taylor, 0.3)]),
            ]
        );
        assert_eq!(Agreement::accord(&g.layers[0].1), Accord::Agree);
        assert_eq!(Agreement::accord(&g.layers[1].1), Accord::Weak);
        assert_eq!(
            Agreement::accord(&[(Criterion::Taylor, -0.4)]),
            Accord::None
        );
        let all = findings(&[], &[], &cases);
        assert!(matches!(
            all.as_slice(),
            [
                Finding::Redundancy(_),
                Finding::Interplay(_),
                Finding::Agreement(_)
            ]
        ));
    }
}
