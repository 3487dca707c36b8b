//! Dissection across the learned runs of a sweep: per cell (dataset, condition, architecture)
//! and conv layer, the share of filters that carry a label, with its Wilson interval, beside
//! the share of the same layer's Glorot-initial filters that the same rule labels (the
//! control); which concepts; and, for the runs whose greedy pruning is recorded, which
//! concepts the filters of the minimal network carry. Never pooled across cells.
//!
//! Dissections in, summary out; must not dissect, read stores or draw.

use serde::{Deserialize, Serialize};
use shapes::Split as Part;

use super::{label_counts, Dissection, FilterDissection, Settings};
use crate::analyses::pruning::FilterRef;
use crate::analyses::stats::wilson;
use crate::error::Result;

/// One dissected run of a population.
#[derive(Clone, Debug)]
pub struct Member {
    /// The run's key in its store.
    pub key: String,
    pub dataset: String,
    pub condition: String,
    pub seed: usize,
    pub dissection: Dissection,
    /// The filters of the run's minimal network, when its greedy pruning is recorded.
    pub survivors: Option<Vec<FilterRef>>,
}

/// A count out of a total with its 95% Wilson interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Share {
    pub k: usize,
    pub n: usize,
    pub low: f64,
    pub high: f64,
}

impl Share {
    pub fn of(k: usize, n: usize) -> Share {
        let (low, high) = wilson(k, n);
        Share { k, n, low, high }
    }

    pub fn rate(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.k as f64 / self.n as f64
        }
    }

    /// "61 of 80 (76%, 66-84%)".
    pub fn words(&self) -> String {
        format!(
            "{} of {} ({:.0}%, 95% CI {:.0}-{:.0}%)",
            self.k,
            self.n,
            100.0 * self.rate(),
            100.0 * self.low,
            100.0 * self.high
        )
    }
}

/// The filters of the runs' minimal networks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Survivors {
    /// Runs with a recorded pruning.
    pub runs: usize,
    pub labelled: Share,
    /// Labels among them, most common first.
    pub concepts: Vec<(String, usize)>,
}

/// One conv layer of one cell, over its runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSummary {
    /// 1-based.
    pub layer: usize,
    /// Filters per run.
    pub width: usize,
    /// Filters with a label, of all the runs' filters of this layer.
    pub labelled: Share,
    /// The control: initial filters the same rule labels.
    pub null_labelled: Share,
    /// Labels, most common first.
    pub concepts: Vec<(String, usize)>,
    /// Labelled filters whose label is an edge bin (orientation-selective), and how many of
    /// the 8 directions occur among them.
    pub edges: usize,
    pub directions: usize,
    /// Mean change of accuracy on removing a labelled filter, and an unlabelled one (`None`
    /// when there is none, or the layer's filters cannot be removed).
    pub removal_labelled: Option<f64>,
    pub removal_unlabelled: Option<f64>,
    pub survivors: Option<Survivors>,
}

/// One cell of the sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub dataset: String,
    pub condition: String,
    pub arch: String,
    pub seeds: Vec<usize>,
    pub layers: Vec<LayerSummary>,
}

/// The whole population.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Population {
    /// Version of this document's format ([`Schema`](crate::files::schema::Schema)).
    #[serde(default)]
    pub schema: crate::files::schema::Schema<1>,
    pub split: Part,
    pub settings: Settings,
    pub runs: usize,
    pub cells: Vec<Cell>,
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Layer `l` (0-based) of the runs of one cell.
fn layer_summary(members: &[&Member], l: usize) -> LayerSummary {
    let layers: Vec<&super::LayerDissection> =
        members.iter().map(|m| &m.dissection.layers[l]).collect();
    let filters: Vec<&FilterDissection> = layers.iter().flat_map(|x| &x.filters).collect();
    let labelled: Vec<&FilterDissection> = filters
        .iter()
        .copied()
        .filter(|f| f.label.is_some())
        .collect();
    let edge = |f: &FilterDissection| f.label.as_deref().is_some_and(|l| l.starts_with("edge-"));
    let mut directions: Vec<&str> = labelled
        .iter()
        .filter(|f| edge(f))
        .filter_map(|f| f.label.as_deref())
        .collect();
    directions.sort_unstable();
    directions.dedup();
    let removal = |want: bool| -> Vec<f64> {
        filters
            .iter()
            .filter(|f| f.label.is_some() == want)
            .filter_map(|f| f.removal.as_ref().map(|r| r.overall))
            .collect()
    };
    let pruned: Vec<(&&Member, &Vec<FilterRef>)> = members
        .iter()
        .filter_map(|m| m.survivors.as_ref().map(|s| (m, s)))
        .collect();
    let survivors = (!pruned.is_empty()).then(|| {
        let kept: Vec<&FilterDissection> = pruned
            .iter()
            .flat_map(|(m, s)| {
                m.dissection.layers[l]
                    .filters
                    .iter()
                    .filter(|f| s.contains(&f.filter))
            })
            .collect();
        Survivors {
            runs: pruned.len(),
            labelled: Share::of(
                kept.iter().filter(|f| f.label.is_some()).count(),
                kept.len(),
            ),
            concepts: label_counts(kept),
        }
    });
    LayerSummary {
        layer: l + 1,
        width: layers[0].filters.len(),
        labelled: Share::of(labelled.len(), filters.len()),
        null_labelled: Share::of(layers[0].null_labelled, layers[0].null_filters),
        concepts: label_counts(filters.iter().copied()),
        edges: labelled.iter().filter(|f| edge(f)).count(),
        directions: directions.len(),
        removal_labelled: mean(&removal(true)),
        removal_unlabelled: mean(&removal(false)),
        survivors,
    }
}

/// Summarises `members`, cell by cell (in the order cells first appear), dissected on `split`
/// with `settings` (an empty population has no cells).
pub fn summarize(members: &[Member], split: Part, settings: &Settings) -> Population {
    let mut keys: Vec<(&str, &str, &str)> = Vec::new();
    for m in members {
        let k = (
            m.dataset.as_str(),
            m.condition.as_str(),
            m.dissection.arch.as_str(),
        );
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let cells = keys
        .into_iter()
        .map(|(dataset, condition, arch)| {
            let runs: Vec<&Member> = members
                .iter()
                .filter(|m| {
                    m.dataset == dataset && m.condition == condition && m.dissection.arch == arch
                })
                .collect();
            Cell {
                dataset: dataset.into(),
                condition: condition.into(),
                arch: arch.into(),
                seeds: runs.iter().map(|m| m.seed).collect(),
                layers: (0..runs[0].dissection.layers.len())
                    .map(|l| layer_summary(&runs, l))
                    .collect(),
            }
        })
        .collect();
    Population {
        schema: crate::files::schema::Schema::CURRENT,
        split,
        settings: settings.clone(),
        runs: members.len(),
        cells,
    }
}

/// "edge-W 4, interior 3".
fn concept_list(c: &[(String, usize)]) -> String {
    c.iter()
        .map(|(c, n)| format!("{c} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl LayerSummary {
    /// The layer's finding in one sentence.
    pub fn sentence(&self, cell: &Cell) -> String {
        let runs = cell.seeds.len();
        let mut s = format!(
            "In {} on {} ({}), layer {} ({} filters per run, {runs} learned run{}): {} filters carry a label, against {} of the same layer's initial filters",
            cell.arch,
            cell.dataset,
            cell.condition,
            self.layer,
            self.width,
            if runs == 1 { "" } else { "s" },
            self.labelled.words(),
            self.null_labelled.words(),
        );
        if self.labelled.k > 0 {
            s += &format!(
                "; {} of them {} ({} of the 8 directions), and the labels are {}",
                self.edges,
                if self.edges == 1 {
                    "is an edge detector"
                } else {
                    "are edge detectors"
                },
                self.directions,
                concept_list(&self.concepts)
            );
        }
        if let (Some(a), Some(b)) = (self.removal_labelled, self.removal_unlabelled) {
            s += &format!(
                ". Removing a labelled filter changes accuracy by {:+.3} on average, an unlabelled one by {:+.3}",
                a, b
            );
        }
        if let Some(sv) = &self.survivors {
            s += &format!(
                ". Of the filters that survive greedy pruning in {} run{}, {} carry a label{}",
                sv.runs,
                if sv.runs == 1 { "" } else { "s" },
                sv.labelled.words(),
                if sv.concepts.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", concept_list(&sv.concepts))
                }
            );
        }
        s + "."
    }
}

impl Population {
    /// The summary in words: the method, then a sentence per cell and layer.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{} learned runs dissected on their {} split; filters thresholded at their top {}; a label counts when its IoU exceeds by {} the 95th percentile of the same layer's initial filters (Glorot, {} seeds). Intervals are 95% Wilson intervals over the filters of each cell, never pooled across cells.\n",
            self.runs,
            self.split.name(),
            self.settings.quantile,
            self.settings.margin,
            self.settings.null_seeds
        );
        for c in &self.cells {
            out += "\n";
            for l in &c.layers {
                out += &format!("{}\n", l.sentence(c));
            }
        }
        out
    }

    /// One row per cell and layer.
    pub fn to_csv(&self) -> Vec<u8> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record([
            "dataset",
            "condition",
            "arch",
            "runs",
            "layer",
            "width",
            "filters",
            "labelled",
            "labelled_low",
            "labelled_high",
            "null_filters",
            "null_labelled",
            "edges",
            "directions",
            "concepts",
            "removal_labelled",
            "removal_unlabelled",
            "survivor_runs",
            "survivors",
            "survivors_labelled",
            "survivor_concepts",
        ])
        .expect("in-memory csv");
        let opt = |v: Option<f64>| v.map_or(String::new(), |x| x.to_string());
        for c in &self.cells {
            for l in &c.layers {
                let sv = l.survivors.as_ref();
                w.write_record([
                    c.dataset.clone(),
                    c.condition.clone(),
                    c.arch.clone(),
                    c.seeds.len().to_string(),
                    l.layer.to_string(),
                    l.width.to_string(),
                    l.labelled.n.to_string(),
                    l.labelled.k.to_string(),
                    l.labelled.low.to_string(),
                    l.labelled.high.to_string(),
                    l.null_labelled.n.to_string(),
                    l.null_labelled.k.to_string(),
                    l.edges.to_string(),
                    l.directions.to_string(),
                    concept_list(&l.concepts),
                    opt(l.removal_labelled),
                    opt(l.removal_unlabelled),
                    sv.map_or(String::new(), |s| s.runs.to_string()),
                    sv.map_or(String::new(), |s| s.labelled.n.to_string()),
                    sv.map_or(String::new(), |s| s.labelled.k.to_string()),
                    sv.map_or(String::new(), |s| concept_list(&s.concepts)),
                ])
                .expect("in-memory csv");
            }
        }
        w.into_inner().expect("in-memory csv")
    }

    /// Writes `population.json` and `population.csv` into `out` (derived data, replaced).
    pub fn write(&self, out: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
        crate::files::fsio::write_json_and_csv(out, "population", self, self.to_csv())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{LayerDissection, Removal};
    use super::*;

    fn filter(f: usize, label: Option<&str>, removal: f64) -> FilterDissection {
        FilterDissection {
            filter: FilterRef::of((0, f)),
            threshold: 1.0,
            coverage: 0.005,
            iou: vec![0.1],
            best: "interior".into(),
            best_iou: 0.1,
            margin: 0.0,
            label: label.map(String::from),
            label_margin: label.map(|_| 0.05),
            per_class: vec![],
            at_quantiles: vec![],
            removal: Some(Removal {
                overall: removal,
                per_class: vec![],
                per_factor: vec![],
            }),
            top_images: vec![],
        }
    }

    fn member(condition: &str, seed: usize, labels: [Option<&str>; 4]) -> Member {
        Member {
            key: format!("e/size/4/{condition}/seed{seed}"),
            dataset: "size".into(),
            condition: condition.into(),
            seed,
            dissection: Dissection {
                schema: crate::files::schema::Schema::CURRENT,
                model: "m".into(),
                arch: "4".into(),
                data: "size".into(),
                split: Part::Test,
                images: 10,
                settings: Settings::default(),
                concepts: vec!["interior".into()],
                accuracy: 1.0,
                layers: vec![LayerDissection {
                    layer: 1,
                    filters: labels
                        .iter()
                        .enumerate()
                        .map(|(f, l)| filter(f, *l, if l.is_some() { -0.2 } else { 0.0 }))
                        .collect(),
                    null_filters: 20,
                    null_labelled: 1,
                    chance: vec![0.1],
                }],
            },
            survivors: (seed == 1).then(|| vec![FilterRef::of((0, 0))]),
        }
    }

    #[test]
    fn cells_are_never_pooled_and_shares_count_filters() {
        let members = vec![
            member("adam-unit", 1, [Some("edge-W"), Some("edge-E"), None, None]),
            member(
                "adam-unit",
                2,
                [Some("edge-W"), Some("interior"), None, None],
            ),
            member("sgd-raw", 1, [None, None, None, Some("interior")]),
        ];
        let p = summarize(&members, Part::Test, &Settings::default());
        assert_eq!(p.cells.len(), 2, "one cell per condition");
        let a = &p.cells[0].layers[0];
        assert_eq!((a.labelled.k, a.labelled.n), (4, 8));
        assert_eq!((a.null_labelled.k, a.null_labelled.n), (1, 20));
        assert_eq!(a.labelled.low, wilson(4, 8).0);
        assert_eq!(
            a.concepts,
            vec![
                ("edge-W".to_string(), 2),
                ("edge-E".into(), 1),
                ("interior".into(), 1)
            ]
        );
        assert_eq!((a.edges, a.directions), (3, 2));
        assert_eq!(
            (a.removal_labelled, a.removal_unlabelled),
            (Some(-0.2), Some(0.0))
        );
        let sv = a.survivors.as_ref().unwrap();
        assert_eq!((sv.runs, sv.labelled.k, sv.labelled.n), (1, 1, 1));
        assert_eq!(sv.concepts, vec![("edge-W".to_string(), 1)]);
        let b = &p.cells[1].layers[0];
        assert_eq!((b.labelled.k, b.labelled.n, b.edges), (1, 4, 0));
        let text = p.to_text();
        assert!(text.contains("4 of 8 (50%"), "{text}");
        assert!(text.contains("1 of 20 (5%"), "{text}");
        let empty = summarize(&[], Part::Test, &Settings::default());
        assert!(empty.cells.is_empty() && empty.runs == 0);
    }
}
