//! What the run view shows, gathered once per run from the lab's analyses: the network's
//! shape, its panel and kernels, every filter's statistics on the held-out split, and what the
//! store and the study recorded about its filters (dissection labels, families across seeds).
//! The slower pieces (the greedy pruning table and the filters' twins) are an
//! [`AnalysisView`] of their own, and two runs' matching a [`Matching`].
//!
//! Nothing recorded is ever defaulted: a study file that does not read back is reported in
//! the view as an error naming it.

use std::path::Path;

use lab::analyses::dissection::Dissection;
use lab::analyses::pruning::PruneJson;
use lab::analyses::seeds::compare::Pair;
use lab::analyses::seeds::families::Families;
use lab::analyses::similarity::Similarity;
use lab::inside::filterstats::FilterReport;
use lab::models::run::Run;
use lab::Dataset;
use serde::{Deserialize, Serialize};
use shapes::Split as Part;

use crate::state::Entry;
use crate::Result;

/// Bins per latent factor, as every per-factor table of the lab uses.
pub const BINS: usize = 5;

/// A run's panel of images: `[n][H x W]` pixels, with their captions and groups.
#[derive(Debug, Serialize, Deserialize)]
pub struct PanelView {
    pub name: String,
    pub images: Vec<Vec<u8>>,
    pub captions: Vec<String>,
    pub groups: Vec<String>,
}

/// One conv layer's kernels, `[C_out][C_in x k x k]`, their biases, and the largest absolute
/// weight (the layer's one colour scale, as in the kernel sheets).
#[derive(Debug, Serialize, Deserialize)]
pub struct LayerKernels {
    pub inputs: usize,
    pub weights: Vec<Vec<f32>>,
    pub bias: Vec<f32>,
    pub range: f32,
}

/// A filter's dissection label, as the store recorded it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Label {
    pub label: Option<String>,
    pub label_margin: Option<f64>,
    pub best: String,
    pub best_iou: f64,
}

/// The run's dissection: its split, quantile and a label per layer and filter.
#[derive(Debug, Serialize, Deserialize)]
pub struct DissectionView {
    pub split: Part,
    pub images: usize,
    pub quantile: f64,
    pub layers: Vec<Vec<Label>>,
}

/// The family a filter belongs to across seeds, from the study's `families.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct FamilyOf {
    /// The reference run's filter the family is named after (1-based).
    pub family: usize,
    /// This filter's correlation with it; `None` for the reference's own filter.
    pub correlation: Option<f64>,
    pub bar: f64,
    pub learned_with: usize,
    pub learned_runs: usize,
    pub interval: (f64, f64),
    pub label: Option<(String, usize, usize)>,
}

/// The families of the run's cell, as they concern its filters.
#[derive(Debug, Serialize, Deserialize)]
pub struct FamiliesView {
    /// The file read, relative to the served directory.
    pub file: String,
    pub reference: String,
    pub split: Part,
    /// `[layer][filter]`: the family the filter belongs to, if any.
    pub layers: Vec<Vec<Option<FamilyOf>>>,
}

/// Everything the run view needs at once.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunView {
    pub run: Entry,
    pub filters: Vec<usize>,
    pub kernel: usize,
    pub height: usize,
    pub width: usize,
    pub classes: Vec<String>,
    /// The splits the data has, and the held-out one (test; val for data without one).
    pub splits: Vec<Part>,
    pub held_out: Part,
    pub panel: PanelView,
    pub kernels: Vec<LayerKernels>,
    /// Every filter's statistics on the held-out split, with [`BINS`] bins per factor.
    pub stats: FilterReport,
    pub dissection: Option<DissectionView>,
    pub families: Option<FamiliesView>,
    /// Why the families could not be read, when they could not.
    pub families_error: Option<String>,
}

/// The run's greedy pruning table and its filters' similarity.
#[derive(Debug, Serialize, Deserialize)]
pub struct AnalysisView {
    /// Where the numbers come from: recorded in the store, or computed by the server.
    pub source: String,
    pub pruning: PruneJson,
    pub similarity: Similarity,
}

/// Run B's filters matched to run A's.
#[derive(Debug, Serialize, Deserialize)]
pub struct Matching {
    pub a: String,
    pub b: String,
    pub chosen_on: Part,
    pub split: Part,
    /// Per layer, by A's filter (0-based), with the correlation on `split`.
    pub layers: Vec<Vec<Pair>>,
}

/// Builds the view of `entry`'s run.
pub fn run_view(
    entry: Entry,
    run: &Run,
    d: &Dataset,
    dissections: Vec<Dissection>,
    root: &Path,
) -> Result<RunView> {
    let model = &run.model;
    let panel = lab::inside::maps::panel_for(run, None, Some(d))?;
    let px = panel.height * panel.width;
    let kernels = (0..model.arch.filters.len())
        .map(|l| {
            let s = model.arch.layers()[l];
            let w = model.conv_weight(l);
            let per = s.cin * model.arch.kernel * model.arch.kernel;
            LayerKernels {
                inputs: s.cin,
                weights: w.chunks(per).map(<[f32]>::to_vec).collect(),
                bias: model.conv_bias(l).to_vec(),
                range: w.iter().fold(0.0f32, |m, v| m.max(v.abs())),
            }
        })
        .collect();
    let held_out = d.held_out();
    let stats =
        lab::inside::filterstats::filter_stats(model, d, held_out, run.meta.train.scaling, BINS);
    let (families, families_error) = match families_of(&entry.key, root) {
        Ok(f) => (f, None),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(RunView {
        filters: model.arch.filters.clone(),
        kernel: model.arch.kernel,
        height: model.arch.height,
        width: model.arch.width,
        classes: d.class_names.clone(),
        splits: [Part::Train, Part::Val, Part::Test]
            .into_iter()
            .filter(|&p| d.try_split(p).is_some())
            .collect(),
        held_out,
        panel: PanelView {
            name: panel.meta.name.clone(),
            images: panel.images.chunks(px).map(<[u8]>::to_vec).collect(),
            captions: panel.captions.clone(),
            groups: panel.groups.clone(),
        },
        kernels,
        stats,
        dissection: dissection_view(dissections, held_out),
        families,
        families_error,
        run: entry,
    })
}

/// The dissection to show: the one on the held-out split if recorded, else the first.
fn dissection_view(mut all: Vec<Dissection>, held_out: Part) -> Option<DissectionView> {
    let i = all.iter().position(|d| d.split == held_out).unwrap_or(0);
    if all.is_empty() {
        return None;
    }
    let d = all.swap_remove(i);
    Some(DissectionView {
        split: d.split,
        images: d.images,
        quantile: d.settings.quantile,
        layers: d
            .layers
            .into_iter()
            .map(|l| {
                l.filters
                    .into_iter()
                    .map(|f| Label {
                        label: f.label,
                        label_margin: f.label_margin,
                        best: f.best,
                        best_iou: f.best_iou,
                    })
                    .collect()
            })
            .collect(),
    })
}

/// The families (from a study's `seeds/cases/*/families.json`) that list run `key`, as they
/// concern its filters; `None` when no study file lists it.
fn families_of(key: &str, root: &Path) -> lab::Result<Option<FamiliesView>> {
    let cases = root.join("seeds").join("cases");
    let Ok(dirs) = std::fs::read_dir(&cases) else {
        return Ok(None);
    };
    let mut files: Vec<_> = dirs
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("families.json"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for file in files {
        let Some(f): Option<Families> = lab::study::data::read_json(&file)? else {
            continue;
        };
        if f.runs.iter().any(|r| r.key == key) {
            let rel = file.strip_prefix(root).unwrap_or(&file);
            return Ok(Some(view_of_families(key, &f, rel)));
        }
    }
    Ok(None)
}

fn view_of_families(key: &str, f: &Families, file: &Path) -> FamiliesView {
    let layers = f
        .layers
        .iter()
        .map(|l| {
            let width = if key == f.reference {
                l.families.len()
            } else {
                l.families
                    .iter()
                    .flat_map(|fam| fam.matches.iter().filter(|m| m.run == key))
                    .map(|m| m.filter)
                    .max()
                    .unwrap_or(0)
            };
            (1..=width)
                .map(|filter| {
                    l.families.iter().find_map(|fam| {
                        let correlation = if key == f.reference {
                            (fam.filter == filter).then_some(None)?
                        } else {
                            let m = fam
                                .matches
                                .iter()
                                .find(|m| m.run == key && m.filter == filter)?;
                            (m.correlation >= fam.bar).then_some(Some(m.correlation))?
                        };
                        (!fam.silent).then(|| FamilyOf {
                            family: fam.filter,
                            correlation,
                            bar: fam.bar,
                            learned_with: fam.learned_with,
                            learned_runs: fam.learned_runs,
                            interval: fam.interval,
                            label: fam.label.clone(),
                        })
                    })
                })
                .collect()
        })
        .collect();
    FamiliesView {
        file: file.display().to_string(),
        reference: f.reference.clone(),
        split: f.split,
        layers,
    }
}

/// The pruning table and similarity of `run`: recorded by the store when it has them
/// (`recorded`), else computed as `shapelab analyze` does (steps chosen on validation, the
/// path and the similarity measured on the held-out split), without its interaction table.
pub fn analysis_view(
    run: &Run,
    d: &Dataset,
    recorded: Option<lab::analyses::analysis::Report>,
) -> Result<AnalysisView> {
    if let Some(r) = recorded {
        return Ok(AnalysisView {
            source: "recorded in the store by `shapelab analyze` or `shapelab study`".into(),
            pruning: r.pruning,
            similarity: r.similarity,
        });
    }
    let model = &run.model;
    let scaling = run.meta.train.scaling;
    let (_, pruning) = lab::analyses::analysis::greedy_table(model, d, scaling)?;
    let part = d.held_out();
    let similarity = lab::analyses::similarity::similarity(model, d, part, scaling, 90.0, &[]);
    Ok(AnalysisView {
        source: "computed by the server as `shapelab analyze` does (without the interaction table)"
            .into(),
        pruning,
        similarity,
    })
}
