//! The thesis's pruning tables (its Tables 4, 6, 7, 9-11) and curve, from a
//! [`tinycnn::prune::Pruning`].
//!
//! The table has one row per filter (L1 F1.. then L2 F1..) and one column per step; a cell is
//! the accuracy after removing that filter at that step, "-" once it is removed; the removed
//! cell is marked. The table is measured on the split that chose the steps (validation); the
//! accuracy along the chosen path is measured again on the held-out test split ([`HeldOut`]),
//! which made no choice, and that is the number to report. The XLSX is coloured as the thesis did: the filter removed at each step,
//! and the surviving filters of the minimal network.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tinycnn::prune::Pruning;

use crate::data::dataset::Dataset;
use crate::draw::{Canvas, INK};
use crate::error::{Error, Result};
use crate::files::fsio::write_file_atomic;
use crate::models::run::{Metrics, Run};
use crate::models::training::engine_data;
use shapes::Split as Part;

/// A filter in user-facing numbering (from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterRef {
    pub layer: usize,
    pub filter: usize,
}

impl FilterRef {
    pub fn of((l, f): (usize, usize)) -> FilterRef {
        FilterRef {
            layer: l + 1,
            filter: f + 1,
        }
    }

    pub fn label(&self) -> String {
        format!("L{} F{}", self.layer, self.filter)
    }
}

/// One step, as the JSON shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepJson {
    pub accuracies: Vec<Option<f64>>,
    pub removed: Vec<FilterRef>,
    pub accuracy_after: f64,
}

/// The accuracy along a pruning path on data that made no choice: the network after each
/// step, evaluated on the held-out split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldOut {
    pub split: Part,
    pub images: usize,
    pub initial_accuracy: f64,
    /// After each step, aligned with [`PruneJson::steps`].
    pub after: Vec<f64>,
}

impl HeldOut {
    /// Evaluates `model` and the network after each step of `p` on `data` (split `split`).
    ///
    /// `data`: `[N, 1, H, W]` images with their labels. Cost: one evaluation per step.
    pub fn measure(
        model: &tinycnn::Model,
        p: &Pruning,
        data: &tinycnn::Data,
        scaling: tinycnn::Scaling,
        split: Part,
    ) -> Result<HeldOut> {
        let mut keep = model.arch.keep_all();
        let mut after = Vec::with_capacity(p.steps.len());
        for st in &p.steps {
            for &(l, f) in &st.removed {
                keep[l][f] = false;
            }
            let small = model.pruned(&keep)?;
            after.push(tinycnn::train::evaluate(&small, data, scaling).accuracy);
        }
        Ok(HeldOut {
            split,
            images: data.len(),
            initial_accuracy: tinycnn::train::evaluate(model, data, scaling).accuracy,
            after,
        })
    }
}

/// The whole result, as `prune --json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PruneJson {
    /// Version of this document's format ([`Schema`](crate::files::schema::Schema)): 2 added
    /// [`PruneJson::held_out`].
    #[serde(default)]
    pub schema: crate::files::schema::Schema<2>,
    pub filters: Vec<FilterRef>,
    pub initial_accuracy: f64,
    pub steps: Vec<StepJson>,
    /// The filters of the minimal network.
    pub survivors: Vec<FilterRef>,
    pub on: String,
    pub images: usize,
    pub ties: String,
    pub evaluations: usize,
    pub rechecked_images: usize,
    pub seconds: f64,
    /// The chosen path measured on the held-out split; absent when the steps were chosen on
    /// it, when the data has none, and in documents of schema 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out: Option<HeldOut>,
}

impl PruneJson {
    /// The accuracy to report along the path, `(split, initial, after each step)`: the
    /// held-out measurement when there is one, else the table's own.
    pub fn reported(&self) -> (&str, f64, Vec<f64>) {
        match &self.held_out {
            Some(h) => (h.split.name(), h.initial_accuracy, h.after.clone()),
            None => (
                self.on.as_str(),
                self.initial_accuracy,
                self.steps.iter().map(|s| s.accuracy_after).collect(),
            ),
        }
    }

    pub fn new(p: &Pruning, on: &str, images: usize, ties: &str, seconds: f64) -> PruneJson {
        PruneJson {
            schema: crate::files::schema::Schema::CURRENT,
            filters: p.filters.iter().map(|&f| FilterRef::of(f)).collect(),
            initial_accuracy: p.initial_accuracy,
            steps: p
                .steps
                .iter()
                .map(|s| StepJson {
                    accuracies: s.accuracies.clone(),
                    removed: s.removed.iter().map(|&f| FilterRef::of(f)).collect(),
                    accuracy_after: s.accuracy_after,
                })
                .collect(),
            survivors: p
                .filters
                .iter()
                .filter(|&&(l, f)| p.keep[l][f])
                .map(|&f| FilterRef::of(f))
                .collect(),
            on: on.into(),
            images,
            ties: ties.into(),
            evaluations: p.evaluations,
            rechecked_images: p.rechecked_images,
            seconds,
            held_out: None,
        }
    }

    /// The step at which each filter was removed (1-based), `None` for survivors.
    pub fn removed_at(&self) -> Vec<Option<usize>> {
        self.filters
            .iter()
            .map(|f| {
                self.steps
                    .iter()
                    .position(|s| s.removed.contains(f))
                    .map(|i| i + 1)
            })
            .collect()
    }

    /// The text table; `[0.9870]` marks the filter removed at a step, `*` the survivors.
    pub fn to_text(&self) -> String {
        let removed_at = self.removed_at();
        let mut out = format!(
            "greedy pruning on {} {} images (ties: {}), starting at accuracy {:.4}\n",
            self.images, self.on, self.ties, self.initial_accuracy
        );
        out += &format!("{:>8}", "filter");
        for i in 0..self.steps.len() {
            out += &format!(" {:>8}", format!("step {}", i + 1));
        }
        out += "\n";
        for (j, f) in self.filters.iter().enumerate() {
            let mark = if removed_at[j].is_none() { "*" } else { " " };
            out += &format!("{:>7}{mark}", f.label());
            for (i, s) in self.steps.iter().enumerate() {
                let cell = match (s.accuracies[j], removed_at[j]) {
                    (_, Some(r)) if r < i + 1 => "-".to_string(),
                    (Some(a), Some(r)) if r == i + 1 => format!("[{a:.4}]"),
                    (Some(a), _) => format!("{a:.4}"),
                    (None, _) => "".into(),
                };
                out += &format!(" {cell:>8}");
            }
            out += "\n";
        }
        out += &format!("{:>8}", "after");
        for s in &self.steps {
            out += &format!(" {:>8.4}", s.accuracy_after);
        }
        out += "\n";
        if let Some(h) = &self.held_out {
            out += &format!("{:>8}", h.split.name());
            for a in &h.after {
                out += &format!(" {a:>8.4}");
            }
            out += &format!(
                "\n(steps chosen on {} {} images; the last row is the same networks on the {} held-out {} images, starting at {:.4})\n",
                self.images,
                self.on,
                h.images,
                h.split.name(),
                h.initial_accuracy
            );
        }
        let survivors: Vec<String> = self.survivors.iter().map(|f| f.label()).collect();
        out += &format!("minimal network (*): {}\n", survivors.join(", "));
        out
    }

    /// The CSV grid: one row per filter, a column per step, and the step it was removed at.
    pub fn to_csv(&self) -> Vec<u8> {
        let removed_at = self.removed_at();
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["filter".to_string()];
        header.extend((1..=self.steps.len()).map(|i| format!("step {i}")));
        header.push("removed_at_step".into());
        w.write_record(&header).expect("in-memory csv");
        for (j, f) in self.filters.iter().enumerate() {
            let mut row = vec![f.label()];
            for (i, s) in self.steps.iter().enumerate() {
                row.push(match (s.accuracies[j], removed_at[j]) {
                    (_, Some(r)) if r < i + 1 => "-".into(),
                    (Some(a), _) => format!("{a}"),
                    (None, _) => String::new(),
                });
            }
            row.push(removed_at[j].map_or(String::new(), |r| r.to_string()));
            w.write_record(&row).expect("in-memory csv");
        }
        let mut row = vec!["accuracy after".to_string()];
        row.extend(self.steps.iter().map(|s| format!("{}", s.accuracy_after)));
        row.push(String::new());
        w.write_record(&row).expect("in-memory csv");
        if let Some(h) = &self.held_out {
            let mut row = vec![format!("{} accuracy after", h.split.name())];
            row.extend(h.after.iter().map(|a| format!("{a}")));
            row.push(String::new());
            w.write_record(&row).expect("in-memory csv");
        }
        w.into_inner().expect("in-memory csv")
    }

    /// The XLSX table, coloured as the thesis did.
    pub fn to_xlsx(&self, path: &Path) -> Result<Vec<u8>> {
        use rust_xlsxwriter::{Color, Format, Workbook};
        let xerr = |e: rust_xlsxwriter::XlsxError| {
            Error::bad(path, format!("cannot build the workbook: {e}"))
        };
        let removed_at = self.removed_at();
        let mut book = Workbook::new();
        let sheet = book.add_worksheet();
        sheet.set_name("pruning").map_err(xerr)?;
        let bold = Format::new().set_bold();
        let num = Format::new().set_num_format("0.0000");
        let removed = Format::new()
            .set_num_format("0.0000")
            .set_bold()
            .set_background_color(Color::RGB(0xF4B183));
        let survivor = Format::new()
            .set_bold()
            .set_background_color(Color::RGB(0xC6EFCE));
        sheet
            .write_with_format(0, 0, "filter", &bold)
            .map_err(xerr)?;
        for i in 0..self.steps.len() {
            sheet
                .write_with_format(0, (i + 1) as u16, format!("step {}", i + 1), &bold)
                .map_err(xerr)?;
        }
        for (j, f) in self.filters.iter().enumerate() {
            let r = (j + 1) as u32;
            let label_fmt = if removed_at[j].is_none() {
                &survivor
            } else {
                &bold
            };
            sheet
                .write_with_format(r, 0, f.label(), label_fmt)
                .map_err(xerr)?;
            for (i, s) in self.steps.iter().enumerate() {
                let c = (i + 1) as u16;
                match (s.accuracies[j], removed_at[j]) {
                    (_, Some(at)) if at < i + 1 => {
                        sheet.write(r, c, "-").map_err(xerr)?;
                    }
                    (Some(a), Some(at)) if at == i + 1 => {
                        sheet.write_with_format(r, c, a, &removed).map_err(xerr)?;
                    }
                    (Some(a), _) => {
                        sheet.write_with_format(r, c, a, &num).map_err(xerr)?;
                    }
                    (None, _) => {}
                }
            }
        }
        let r = (self.filters.len() + 1) as u32;
        sheet
            .write_with_format(r, 0, "accuracy after", &bold)
            .map_err(xerr)?;
        for (i, s) in self.steps.iter().enumerate() {
            sheet
                .write_with_format(r, (i + 1) as u16, s.accuracy_after, &num)
                .map_err(xerr)?;
        }
        if let Some(h) = &self.held_out {
            sheet
                .write_with_format(
                    r + 1,
                    0,
                    format!("{} accuracy after", h.split.name()),
                    &bold,
                )
                .map_err(xerr)?;
            for (i, a) in h.after.iter().enumerate() {
                sheet
                    .write_with_format(r + 1, (i + 1) as u16, *a, &num)
                    .map_err(xerr)?;
            }
        }
        sheet.autofit();
        book.save_to_buffer().map_err(xerr)
    }
}

/// Accuracy against step: the curve of the thesis's Figures 22-29, on the split that chose the
/// steps and, when there is one, on the held-out split; drawn with plotters
/// ([`crate::chart`]).
pub fn curve(p: &PruneJson, title: &str) -> Canvas {
    use plotters::prelude::*;
    let steps = p.steps.len().max(1);
    let (blue, grey) = ([33, 102, 172], [150, 150, 150]);
    let chosen: Vec<(usize, f64)> = std::iter::once((0, p.initial_accuracy))
        .chain(
            p.steps
                .iter()
                .enumerate()
                .map(|(i, s)| (i + 1, s.accuracy_after)),
        )
        .collect();
    let held: Option<(&str, Vec<(usize, f64)>)> = p.held_out.as_ref().map(|h| {
        (
            h.split.name(),
            std::iter::once((0, h.initial_accuracy))
                .chain(h.after.iter().copied().enumerate().map(|(i, a)| (i + 1, a)))
                .collect(),
        )
    });
    crate::chart::draw(600, 340, |area| {
        let mut chart = ChartBuilder::on(area)
            .caption(title, crate::chart::text(14.0, INK))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(52)
            .build_cartesian_2d(0..steps, 0.0..1.02)?;
        crate::chart::house_style(
            chart
                .configure_mesh()
                .x_desc("pruning step")
                .y_desc("accuracy after the step")
                .x_labels(steps.min(12) + 1)
                .y_labels(6)
                .y_label_formatter(&|v| crate::chart::short_number(*v)),
        )
        .draw()?;
        let mut lines = vec![(
            format!("{} (chose the steps)", p.on),
            &chosen,
            if held.is_some() { grey } else { blue },
        )];
        if let Some((name, pts)) = &held {
            lines.push((format!("{name} (held out)"), pts, blue));
        }
        for (name, pts, colour) in lines {
            let c = crate::chart::rgb(colour);
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
            chart.draw_series(pts.iter().map(|&xy| Circle::new(xy, 3, c.filled())))?;
        }
        crate::chart::legend(&mut chart, SeriesLabelPosition::LowerLeft)
    })
}

/// The network `keep` leaves of `run` (`keep[l][f]`: filter `f` of conv layer `l` stays), as
/// a model directory `shapelab eval` accepts: the run's metadata with the smaller architecture
/// and its metrics measured again on both splits of `d` (the history stays the original
/// training's).
pub fn minimal_run(run: &Run, keep: &[Vec<bool>], d: &Dataset) -> Result<Run> {
    let small = run.model.pruned(keep)?;
    let scaling = run.meta.train.scaling;
    let et = tinycnn::train::evaluate(&small, &engine_data(d, Part::Train), scaling);
    let ev = tinycnn::train::evaluate(&small, &engine_data(d, Part::Val), scaling);
    let mut meta = run.meta.clone();
    meta.arch = small.arch.clone();
    meta.param_count = small.arch.param_count();
    meta.metrics = Some(Metrics {
        epochs_run: run.history.len(),
        train_loss: et.loss,
        train_acc: et.accuracy,
        val_loss: ev.loss,
        val_acc: ev.accuracy,
    });
    Ok(Run {
        model: small,
        meta,
        history: run.history.clone(),
    })
}

/// Writes `prune.json`, `prune.csv`, `prune.xlsx` and `accuracy.png` into `out` (replaced
/// atomically: the directory is derived data).
pub fn write(p: &PruneJson, title: &str, out: &Path) -> Result<Vec<PathBuf>> {
    let json = serde_json::to_string_pretty(p).expect("json") + "\n";
    let csv = p.to_csv();
    let xlsx = p.to_xlsx(&out.join("prune.xlsx"))?;
    let png = curve(p, title).to_png().map_err(|e| Error::io(out, e))?;
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("prune.json", json.into_bytes()),
        ("prune.csv", csv),
        ("prune.xlsx", xlsx),
        ("accuracy.png", png),
    ];
    crate::files::fsio::derived_dir(out)?;
    let mut written = Vec::new();
    for (name, bytes) in files {
        let path = out.join(name);
        write_file_atomic(&path, true, |w| std::io::Write::write_all(w, &bytes))?;
        written.push(path);
    }
    Ok(written)
}
