//! The whole analysis of one trained run: greedy pruning on the validation split (ties broken
//! by loss, so the order is not the filter numbers'), then
//! [`ranking`](crate::analyses::ranking), [`similarity`](crate::analyses::similarity),
//! [`interaction`](crate::analyses::interaction) and [`failures`](crate::analyses::failures),
//! gathered into one [`Report`] and written as `analysis.json`, tables and pictures.
//!
//! Choices use validation, measurements the held-out test split: the pruning path is chosen
//! on validation and measured again on test; the criteria, similarities, interactions, the
//! tests of raising events and the failures are measured on test. A dataset without a test
//! split (made before it existed) is measured on validation, and the report says so.
//!
//! Composes the per-concept analyses; must not compute any of them itself, nor know stores or
//! studies.

use shapes::Split as Part;
use tinycnn::{Model, Scaling};

use crate::analyses::failures::{failures, Failures};
use crate::analyses::interaction::{interaction, Interaction};
use crate::analyses::pruning::{FilterRef, PruneJson};
use crate::analyses::ranking::{ranking, Ranking};
use crate::analyses::similarity::{similarity, Similarity};
use crate::data::dataset::Dataset;
use crate::models::training::engine_data;
use serde::{Deserialize, Serialize};

/// Everything `shapelab analyze` computes for one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Version of this document's format ([`Schema`](crate::files::schema::Schema)): 2 added
    /// the activation correlation and its null level to the similarity; 3 the held-out split
    /// ([`Report::measured_on`]).
    #[serde(default)]
    pub schema: crate::files::schema::Schema<3>,
    pub model: String,
    pub arch: String,
    pub data: String,
    pub pruning: PruneJson,
    pub ranking: Ranking,
    pub similarity: Similarity,
    pub interaction: Interaction,
    pub failures: Failures,
    /// The split every measurement was made on (test; validation for a dataset without one).
    /// Absent before schema 3, when it was validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_on: Option<Part>,
}

/// Runs every analysis of a run: choices on `d`'s validation split, measurements on its
/// held-out split ([`Dataset::held_out`]).
pub fn analyze(
    model: &Model,
    d: &Dataset,
    scaling: Scaling,
    name: &str,
    data_name: &str,
) -> crate::error::Result<Report> {
    let part = d.held_out();
    let measure = engine_data(d, part);
    let stats = crate::inside::filterstats::filter_stats(model, d, part, scaling, 5);
    let (p, pruning) = greedy_table(model, d, scaling)?;
    let interaction = interaction(model, &measure, scaling, &p)?;
    let single_drop = single_drops(model, &interaction);
    Ok(Report {
        schema: crate::files::schema::Schema::CURRENT,
        model: name.into(),
        arch: model.arch.label(),
        data: data_name.into(),
        ranking: ranking(model, d, part, scaling, &p, &stats),
        similarity: similarity(model, d, part, scaling, 90.0, &single_drop),
        failures: failures(model, d, part, scaling, 5),
        interaction,
        pruning,
        measured_on: Some(part),
    })
}

/// The thesis's greedy pruning table of `model`: steps chosen on `d`'s validation split (ties
/// to the lower loss, down to one filter per layer), the chosen path measured again on its
/// held-out split. Returns the pruning and its table.
pub fn greedy_table(
    model: &Model,
    d: &Dataset,
    scaling: Scaling,
) -> crate::error::Result<(tinycnn::prune::Pruning, PruneJson)> {
    let val = engine_data(d, Part::Val);
    let start = std::time::Instant::now();
    let p = tinycnn::prune::greedy(
        model,
        &val,
        scaling,
        tinycnn::prune::Ties::Loss,
        tinycnn::prune::Stop::OnePerLayer,
    )?;
    let seconds = start.elapsed().as_secs_f64();
    let mut pruning = PruneJson::new(&p, "val", val.len(), "loss", seconds);
    let part = d.held_out();
    if part != Part::Val {
        let measure = engine_data(d, part);
        pruning.held_out = Some(crate::analyses::pruning::HeldOut::measure(
            model, &p, &measure, scaling, part,
        )?);
    }
    Ok((p, pruning))
}

/// `[layer][filter]`: the accuracy drop of removing each filter alone, from the interaction's
/// diagonal (measured on its split); `None` where that would empty a layer.
fn single_drops(model: &Model, inter: &Interaction) -> Vec<Vec<Option<f64>>> {
    model
        .arch
        .filters
        .iter()
        .enumerate()
        .map(|(l, &nf)| {
            (0..nf)
                .map(|f| {
                    let i = inter
                        .filters
                        .iter()
                        .position(|x| *x == FilterRef::of((l, f)))?;
                    inter.accuracy[i][i].map(|a| inter.base_accuracy - a)
                })
                .collect()
        })
        .collect()
}

impl Report {
    /// The split the measurements were made on.
    pub fn measured(&self) -> Part {
        self.measured_on.unwrap_or(Part::Val)
    }

    /// The findings in words, each with its number.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{} ({}) on {}: {} accuracy {:.4} (pruning steps chosen on validation, everything else measured on {})\n\n",
            self.model,
            self.arch,
            self.data,
            self.measured().name(),
            self.failures.accuracy,
            self.measured().name()
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
            "\nFailures: {} of {} {} images\n",
            self.failures.failures.len(),
            self.failures.images,
            self.measured().name()
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
        let activations = match &l.activation_correlation {
            Some(c) => crate::analyses::plots::matrix(
                &format!("layer {}: activation-map correlation (%)", l.layer),
                &labels,
                &opt(c),
                -100.0,
                100.0,
                Colormap::Diverging,
                "%",
            ),
            None => crate::analyses::plots::matrix(
                &format!("layer {}: activation-map similarity (cosine, %)", l.layer),
                &labels,
                &opt(&l.activation_cosine),
                0.0,
                100.0,
                Colormap::Viridis,
                "%",
            ),
        };
        files.push((
            format!("similarity-layer-{}-activations.png", l.layer),
            png(activations)?,
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

/// The sheet of misclassified images of the measured split (the first 60), captioned
/// true>predicted.
fn failures_sheet(report: &Report, d: &Dataset, png: &Png) -> crate::Result<File> {
    let px = d.pixels();
    let val = d.try_split(report.measured()).ok_or_else(|| {
        crate::error::Error::bad(
            std::path::Path::new(&report.data),
            format!(
                "has no {} split, which the analysis was measured on",
                report.measured().name()
            ),
        )
    })?;
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
                "{} misclassified of {} {} images (true>predicted; first 60)",
                report.failures.failures.len(),
                report.failures.images,
                report.measured().name()
            ),
            &shown,
            d.width,
            d.height,
            10,
        ))?,
    ))
}

#[cfg(test)]
impl Report {
    /// A report for tests: three filters (two in layer 1), one pruning step that removes
    /// L1 F1 at no cost, every analysis empty.
    pub(crate) fn example() -> Report {
        let pruning = serde_json::from_value(serde_json::json!({
            "filters": [{"layer":1,"filter":1},{"layer":1,"filter":2},{"layer":2,"filter":1}],
            "initial_accuracy": 1.0,
            "steps": [{"accuracies": [], "removed": [{"layer":1,"filter":1}], "accuracy_after": 1.0}],
            "survivors": [{"layer":1,"filter":2},{"layer":2,"filter":1}],
            "evaluations": 3, "on": "val", "images": 10, "ties": "one",
            "rechecked_images": 0, "seconds": 0.0
        }))
        .expect("a pruning table");
        Report {
            schema: crate::files::schema::Schema::CURRENT,
            model: "m".into(),
            arch: "2-1".into(),
            data: "d".into(),
            pruning,
            ranking: Ranking {
                filters: vec![],
                agreement: vec![],
            },
            similarity: Similarity {
                threshold: 90.0,
                layers: vec![],
                drop_with_twin: None,
                with_twin: 0,
                drop_without_twin: None,
                without_twin: 0,
                null: None,
            },
            interaction: Interaction {
                filters: vec![],
                base_accuracy: 1.0,
                accuracy: vec![],
                interaction: vec![],
                most_redundant: vec![],
                most_antagonistic: vec![],
                events: vec![],
            },
            failures: Failures {
                images: 10,
                accuracy: 1.0,
                failures: vec![],
                by_factor: vec![],
                by_class: vec![],
            },
            measured_on: Some(Part::Test),
        }
    }
}
