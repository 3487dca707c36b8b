//! The statistics the thesis did by hand in Excel: success rates per architecture, as grids.
//!
//! For every dataset and training condition, every architecture's runs give a success rate
//! `k/n` (learned runs over runs) with a Wilson score 95% interval (Wilson 1927; preferred to
//! the normal approximation for the small `n` and the rates near 0 and 1 that tiny-net sweeps
//! produce), and the median epoch at which learned runs first reached the threshold.
//! Two-layer architectures are laid out as the thesis's FILTER1 x FILTER2 grid.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::draw::{viridis, Canvas, FAINT, INK};
use crate::error::{Error, Result};
use crate::experiments::store::RunRow;
use crate::files::fsio::write_file_atomic;

pub use crate::analyses::stats::{newcombe, wilson};

/// Median of some values (mean of the middle two for an even count).
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// One architecture's runs under one dataset and condition.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cell {
    pub arch: tinycnn::ArchLabel,
    pub runs: usize,
    pub learned: usize,
    pub rate: f64,
    /// Wilson 95% interval of the rate.
    pub low: f64,
    pub high: f64,
    /// Median epochs to learn over the learned runs.
    pub median_epochs: Option<f64>,
    /// Runs per outcome.
    pub outcomes: BTreeMap<String, usize>,
}

/// All architectures under one dataset and training condition.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Group {
    pub dataset: String,
    pub condition: String,
    pub cells: Vec<Cell>,
}

/// Runs of one (dataset, condition), by architecture (ordered by filters, so grids sort numerically).
type ByArch<'a> = BTreeMap<tinycnn::ArchLabel, Vec<&'a RunRow>>;

/// Groups runs by (dataset, condition) and architecture.
pub fn summarize(rows: &[RunRow]) -> Vec<Group> {
    let mut groups: BTreeMap<(String, String), ByArch> = BTreeMap::new();
    for r in rows {
        groups
            .entry((r.dataset.clone(), r.condition.clone()))
            .or_default()
            .entry(r.arch.clone())
            .or_default()
            .push(r);
    }
    groups
        .into_iter()
        .map(|((dataset, condition), archs)| Group {
            dataset,
            condition,
            cells: archs
                .into_iter()
                .map(|(arch, runs)| {
                    let learned = runs
                        .iter()
                        .filter(|r| r.outcome == crate::experiments::outcome::Outcome::Learned)
                        .count();
                    let (low, high) = wilson(learned, runs.len());
                    let mut epochs: Vec<f64> = runs
                        .iter()
                        .filter(|r| r.outcome == crate::experiments::outcome::Outcome::Learned)
                        .filter_map(|r| r.epochs_to_learn.map(|e| e as f64))
                        .collect();
                    let mut outcomes = BTreeMap::new();
                    for r in &runs {
                        *outcomes.entry(r.outcome.name().to_string()).or_insert(0) += 1;
                    }
                    Cell {
                        arch,
                        runs: runs.len(),
                        learned,
                        rate: learned as f64 / runs.len() as f64,
                        low,
                        high,
                        median_epochs: median(&mut epochs),
                        outcomes,
                    }
                })
                .collect(),
        })
        .collect()
}

/// The FILTER1 x FILTER2 layout of a group's two-layer cells: sorted filter counts.
fn grid_axes(g: &Group) -> (Vec<usize>, Vec<usize>) {
    let mut rows = Vec::new();
    let mut cols = Vec::new();
    for c in &g.cells {
        let f = c.arch.filters();
        if f.len() == 2 {
            rows.push(f[0]);
            cols.push(f[1]);
        }
    }
    rows.sort();
    rows.dedup();
    cols.sort();
    cols.dedup();
    (rows, cols)
}

fn cell_text(c: &Cell) -> String {
    let e = c.median_epochs.map_or(String::new(), |e| format!(" e{e}"));
    format!(
        "{}/{} [{:.0}-{:.0}%]{e}",
        c.learned,
        c.runs,
        100.0 * c.low,
        100.0 * c.high
    )
}

/// The text report: per group, the grid of `learned/runs [Wilson 95%] median-epochs`.
pub fn to_text(groups: &[Group]) -> String {
    let mut out = String::new();
    for g in groups {
        let cond = if g.condition.is_empty() {
            String::new()
        } else {
            format!(", {}", g.condition)
        };
        out += &format!(
            "{}{cond}: learned/runs [Wilson 95%] and median epochs to learn\n",
            g.dataset
        );
        let (rows, cols) = grid_axes(g);
        let find = |a: usize, b: usize| g.cells.iter().find(|c| c.arch.filters() == [a, b]);
        if !rows.is_empty() {
            let w = g
                .cells
                .iter()
                .map(|c| cell_text(c).len())
                .max()
                .unwrap_or(10)
                .max(8);
            out += &format!("  {:>8}", "F1 \\ F2");
            for c in &cols {
                out += &format!("  {c:>w$}");
            }
            out += "\n";
            for r in &rows {
                out += &format!("  {r:>8}");
                for c in &cols {
                    out += &format!("  {:>w$}", find(*r, *c).map_or("-".into(), cell_text));
                }
                out += "\n";
            }
        }
        for c in g.cells.iter().filter(|c| c.arch.layers() != 2) {
            out += &format!("  {:>8}  {}\n", c.arch, cell_text(c));
        }
        let total: usize = g.cells.iter().map(|c| c.runs).sum();
        let learned: usize = g.cells.iter().map(|c| c.learned).sum();
        let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
        for c in &g.cells {
            for (k, v) in &c.outcomes {
                *outcomes.entry(k).or_insert(0) += v;
            }
        }
        let parts: Vec<String> = outcomes.iter().map(|(k, v)| format!("{v} {k}")).collect();
        out += &format!(
            "  all: {learned}/{total} learned ({})\n\n",
            parts.join(", ")
        );
    }
    out
}

/// The heatmap of every group: a FILTER1 x FILTER2 grid coloured by success rate, each cell
/// labelled `k/n` and its interval; other architectures in a row below. Drawn with plotters
/// ([`crate::chart`]).
pub fn heatmap(groups: &[Group]) -> Canvas {
    use crate::chart::{label, rgb, text};
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, VPos};
    const CW: i32 = 104;
    const CH: i32 = 48;
    const M: i32 = 20;
    const LEFT: i32 = 70;
    let mut panels = Vec::new();
    for g in groups {
        let (rows, cols) = grid_axes(g);
        let others: Vec<&Cell> = g.cells.iter().filter(|c| c.arch.layers() != 2).collect();
        let grid_w = LEFT + cols.len().max(others.len()) as i32 * CW;
        let grid_h = 44 + 20 + rows.len() as i32 * CH + if others.is_empty() { 0 } else { CH + 24 };
        panels.push((g, rows, cols, others, grid_w, grid_h));
    }
    let width = panels.iter().map(|p| p.4).max().unwrap_or(300).max(440) + 2 * M;
    let legend = 60;
    let height = panels.iter().map(|p| p.5 + M).sum::<i32>() + 2 * M + legend;
    crate::chart::draw(width as usize, height as usize, |area| {
        let (ink, faint) = (text(13.0, INK), text(12.0, FAINT));
        let mut y = M;
        label(
            area,
            "success rate (learned/runs, Wilson 95%)",
            (M, y),
            &ink,
            HPos::Left,
            VPos::Top,
        )?;
        crate::chart::colorbar(
            area,
            (M, y + 20),
            220,
            crate::draw::Colormap::Viridis,
            (0.0, 100.0),
            "%",
        )?;
        y += legend;
        let cell = |x: i32, y: i32, cell: &Cell| -> crate::chart::Drawn {
            let col = viridis(cell.rate);
            area.draw(&Rectangle::new(
                [(x, y), (x + CW - 4, y + CH - 4)],
                rgb(col).filled(),
            ))?;
            let on = crate::analyses::plots::legible_on(col);
            label(
                area,
                &format!("{}/{}", cell.learned, cell.runs),
                (x + 8, y + 5),
                &text(18.0, on),
                HPos::Left,
                VPos::Top,
            )?;
            label(
                area,
                &format!("{:.0}\u{2013}{:.0}%", 100.0 * cell.low, 100.0 * cell.high),
                (x + 8, y + 28),
                &text(12.0, on),
                HPos::Left,
                VPos::Top,
            )
        };
        for (g, rows, cols, others, _, h) in &panels {
            let cond = if g.condition.is_empty() {
                String::new()
            } else {
                format!(", {}", g.condition)
            };
            label(
                area,
                &format!("{}{cond}", g.dataset),
                (M, y),
                &text(14.0, INK),
                HPos::Left,
                VPos::Top,
            )?;
            let top = y + 44;
            if !rows.is_empty() {
                label(area, "F1 \\ F2", (M, y + 24), &faint, HPos::Left, VPos::Top)?;
                for (j, col) in cols.iter().enumerate() {
                    let x = M + LEFT + j as i32 * CW + CW / 2;
                    label(
                        area,
                        &col.to_string(),
                        (x, y + 24),
                        &ink,
                        HPos::Center,
                        VPos::Top,
                    )?;
                }
                for (i, row) in rows.iter().enumerate() {
                    let yy = top + i as i32 * CH + CH / 2 - 2;
                    label(
                        area,
                        &row.to_string(),
                        (M + LEFT - 12, yy),
                        &ink,
                        HPos::Right,
                        VPos::Center,
                    )?;
                    for (j, col) in cols.iter().enumerate() {
                        if let Some(x) = g.cells.iter().find(|x| x.arch.filters() == [*row, *col]) {
                            cell(M + LEFT + j as i32 * CW, top + i as i32 * CH, x)?;
                        }
                    }
                }
            }
            if !others.is_empty() {
                let oy = top + rows.len() as i32 * CH + 4;
                label(
                    area,
                    "1 layer",
                    (M, oy + 16 + CH / 2),
                    &faint,
                    HPos::Left,
                    VPos::Center,
                )?;
                for (j, x) in others.iter().enumerate() {
                    let xx = M + LEFT + j as i32 * CW;
                    label(
                        area,
                        &x.arch.to_string(),
                        (xx, oy),
                        &ink,
                        HPos::Left,
                        VPos::Top,
                    )?;
                    cell(xx, oy + 16, x)?;
                }
            }
            y += h + M;
        }
        Ok(())
    })
}

/// The thesis's table layout (its Tables 2, 5 and 8): one row per run.
pub const THESIS_COLUMNS: [&str; 7] = [
    "DATASET",
    "FILTER1",
    "FILTER2",
    "NUM_EPOCH",
    "TRAIN_ACC",
    "VALID_ACC",
    "TIMESTAMP_NAME",
];

fn thesis_row(r: &RunRow) -> (String, String, String, usize, f64, f64, String) {
    let f = r.arch.filters();
    let (f1, f2) = (
        f.first().map_or(String::new(), |v| v.to_string()),
        if f.len() >= 2 {
            f[1..]
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join("-")
        } else {
            String::new()
        },
    );
    let dataset = if r.condition.is_empty() {
        r.dataset.clone()
    } else {
        format!("{} {}", r.dataset, r.condition)
    };
    (
        dataset,
        f1,
        f2,
        r.epochs_run,
        r.train_acc,
        r.val_acc,
        r.finished.clone(),
    )
}

/// Writes the thesis table as `base.csv` and `base.xlsx` (both atomically).
pub fn write_thesis_table(
    rows: &[RunRow],
    base: &Path,
) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let csv_path = base.with_extension("csv");
    let xlsx_path = base.with_extension("xlsx");
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(THESIS_COLUMNS).expect("in-memory csv");
    for r in rows {
        let t = thesis_row(r);
        w.write_record([
            t.0,
            t.1,
            t.2,
            t.3.to_string(),
            format!("{:.4}", t.4),
            format!("{:.4}", t.5),
            t.6,
        ])
        .expect("in-memory csv");
    }
    let bytes = w.into_inner().expect("in-memory csv");
    write_file_atomic(&csv_path, true, |f| std::io::Write::write_all(f, &bytes))?;

    let xerr = |e: rust_xlsxwriter::XlsxError| {
        Error::bad(&xlsx_path, format!("cannot build the workbook: {e}"))
    };
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name("runs").map_err(xerr)?;
    let bold = rust_xlsxwriter::Format::new().set_bold();
    let acc = rust_xlsxwriter::Format::new().set_num_format("0.0000");
    let learned = rust_xlsxwriter::Format::new()
        .set_num_format("0.0000")
        .set_background_color(rust_xlsxwriter::Color::RGB(0xC6EFCE));
    for (j, h) in THESIS_COLUMNS.iter().enumerate() {
        sheet
            .write_with_format(0, j as u16, *h, &bold)
            .map_err(xerr)?;
    }
    for (i, r) in rows.iter().enumerate() {
        let t = thesis_row(r);
        let row = (i + 1) as u32;
        sheet.write(row, 0, t.0.as_str()).map_err(xerr)?;
        match t.1.parse::<f64>() {
            Ok(v) => sheet.write(row, 1, v).map_err(xerr)?,
            Err(_) => sheet.write(row, 1, t.1.as_str()).map_err(xerr)?,
        };
        match t.2.parse::<f64>() {
            Ok(v) => sheet.write(row, 2, v).map_err(xerr)?,
            Err(_) => sheet.write(row, 2, t.2.as_str()).map_err(xerr)?,
        };
        sheet.write(row, 3, t.3 as f64).map_err(xerr)?;
        sheet.write_with_format(row, 4, t.4, &acc).map_err(xerr)?;
        let f = if r.outcome == crate::experiments::outcome::Outcome::Learned {
            &learned
        } else {
            &acc
        };
        sheet.write_with_format(row, 5, t.5, f).map_err(xerr)?;
        sheet.write(row, 6, t.6.as_str()).map_err(xerr)?;
    }
    sheet.autofit();
    let bytes = book.save_to_buffer().map_err(xerr)?;
    write_file_atomic(&xlsx_path, true, |f| std::io::Write::write_all(f, &bytes))?;
    Ok((csv_path, xlsx_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newcombe_matches_the_paper() {
        // Newcombe (1998), Table II, example (a): 56/70 - 48/80 = 0.2000, 95% CI by method 10
        // 0.0524 to 0.3339; example (d): 0/10 - 0/20, -0.1611 to 0.2775.
        let (d, lo, hi) = newcombe(56, 70, 48, 80);
        assert!((d - 0.2).abs() < 1e-12);
        assert!(
            (lo - 0.0524).abs() < 5e-5 && (hi - 0.3339).abs() < 5e-5,
            "{lo} {hi}"
        );
        let (d, lo, hi) = newcombe(0, 10, 0, 20);
        assert_eq!(d, 0.0);
        assert!(
            (lo + 0.1611).abs() < 5e-5 && (hi - 0.2775).abs() < 5e-5,
            "{lo} {hi}"
        );
    }

    #[test]
    fn wilson_matches_known_values() {
        // Wilson (1927) / Newcombe (1998) example values.
        let (lo, hi) = wilson(0, 10);
        assert!(
            (lo - 0.0).abs() < 1e-9 && (hi - 0.2775).abs() < 1e-4,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(5, 10);
        assert!(
            (lo - 0.2366).abs() < 1e-4 && (hi - 0.7634).abs() < 1e-4,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(10, 10);
        assert!((lo - 0.7225).abs() < 1e-4 && (hi - 1.0).abs() < 1e-9);
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
