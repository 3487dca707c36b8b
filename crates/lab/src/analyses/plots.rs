//! Small plots for the analyses: matrix heatmaps and bar charts drawn with plotters
//! ([`crate::chart`]), and image grids on the bitmap canvas (`draw`). Data in, pictures out;
//! nothing here computes a statistic.

use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::draw::{Canvas, Colormap, FAINT, FRAME, INK, PAPER};

/// A labelled `n x n` heatmap of `values` (None drawn as blank), coloured by `cmap` over
/// `[low, high]` (for the diverging map, symmetric around 0 with `high` as the extent), with
/// a colour bar; drawn with plotters ([`crate::chart`]).
pub fn matrix(
    title: &str,
    labels: &[String],
    values: &[Vec<Option<f64>>],
    low: f64,
    high: f64,
    cmap: Colormap,
    unit: &str,
) -> Canvas {
    grid(title, (labels, labels), values, (low, high), cmap, unit)
}

/// A labelled `rows x cols` heatmap, as [`matrix`] draws a square one: row labels on the
/// left, column labels under the matrix.
pub fn grid(
    title: &str,
    (rows, cols): (&[String], &[String]),
    values: &[Vec<Option<f64>>],
    (low, high): (f64, f64),
    cmap: Colormap,
    unit: &str,
) -> Canvas {
    use plotters::prelude::*;
    let n = rows.len().max(cols.len()).max(1);
    let cell: i32 = if n <= 16 {
        28
    } else if n <= 32 {
        18
    } else {
        11
    };
    let longest = |ls: &[String]| ls.iter().map(|l| l.chars().count()).max().unwrap_or(1) as i32;
    let (label_w, label_h) = (12 + 7 * longest(rows), 12 + 7 * longest(cols));
    let (m, top) = (14, 40);
    let (side_x, side_y) = (cols.len() as i32 * cell, rows.len() as i32 * cell);
    let width = (2 * m + label_w + side_x + 10)
        .max(440)
        .max(16 + 8 * title.chars().count() as i32);
    let height = top + side_y + label_h + 70;
    crate::chart::draw(width as usize, height as usize, |area| {
        let ink = crate::chart::text(14.0, INK);
        crate::chart::label(area, title, (m, 12), &ink, HPos::Left, VPos::Top)?;
        let (x0, y0) = (m + label_w, top);
        let small = crate::chart::text(12.0, INK);
        let faint = crate::chart::text(12.0, FAINT);
        for (i, l) in rows.iter().enumerate() {
            let c = y0 + i as i32 * cell + cell / 2;
            crate::chart::label(area, l, (x0 - 6, c), &small, HPos::Right, VPos::Center)?;
        }
        for (i, l) in cols.iter().enumerate() {
            // Column labels a quarter turn, read upwards, just under the matrix.
            let up = faint.transform(FontTransform::Rotate270);
            let cx = x0 + i as i32 * cell + cell / 2;
            area.draw(&Text::new(
                l.clone(),
                (
                    cx - 7,
                    y0 + side_y + 6 + crate::chart::width_of(area, l, &faint),
                ),
                up,
            ))?;
        }
        for (i, row) in values.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                let (x, y) = (x0 + j as i32 * cell, y0 + i as i32 * cell);
                let colour = match v {
                    Some(v) => cmap.color(if cmap.signed() {
                        v / high.abs().max(1e-12)
                    } else {
                        (v - low) / (high - low).max(1e-12)
                    }),
                    None => [225, 225, 220],
                };
                area.draw(&Rectangle::new(
                    [(x, y), (x + cell - 1, y + cell - 1)],
                    crate::chart::rgb(colour).filled(),
                ))?;
            }
        }
        area.draw(&Rectangle::new(
            [(x0 - 1, y0 - 1), (x0 + side_x, y0 + side_y)],
            crate::chart::rgb(FRAME),
        ))?;
        let range = if cmap.signed() {
            (-high.abs(), high.abs())
        } else {
            (low, high)
        };
        crate::chart::colorbar(area, (m + 18, height - 44), 220, cmap, range, unit)
    })
}

/// A bar chart of values in [0, 1], a bar per `(label, value, count)` with its label on the x
/// axis and its count above it; drawn with plotters ([`crate::chart`]).
pub fn bars(title: &str, bars: &[(String, f64, usize)]) -> Canvas {
    use plotters::prelude::*;
    let nb = bars.len().max(1);
    let per = (12 + 7 * bars.iter().map(|b| b.0.chars().count()).max().unwrap_or(2)).max(34);
    let width = (90 + nb * per).max(420).max(20 + 8 * title.chars().count());
    crate::chart::draw(width, 280, |area| {
        let mut chart = ChartBuilder::on(area)
            .caption(title, crate::chart::text(14.0, INK))
            .margin(12)
            .x_label_area_size(34)
            .y_label_area_size(44)
            // A segmented range `0..k` holds k + 1 segments.
            .build_cartesian_2d((0..nb - 1).into_segmented(), 0.0..1.08)?;
        crate::chart::house_style(
            chart
                .configure_mesh()
                .disable_x_mesh()
                .y_labels(6)
                .y_label_formatter(&|v| crate::chart::short_number(*v))
                .x_labels(nb)
                .x_label_formatter(&|v| match v {
                    SegmentValue::CenterOf(i) => {
                        bars.get(*i).map_or(String::new(), |b| b.0.clone())
                    }
                    _ => String::new(),
                }),
        )
        .draw()?;
        chart.draw_series(bars.iter().enumerate().map(|(i, (_, v, _))| {
            let mut r = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), v.clamp(0.0, 1.0)),
                ],
                crate::chart::rgb(crate::draw::viridis(*v)).filled(),
            );
            r.set_margin(0, 0, 4, 4);
            r
        }))?;
        // The count above each bar; the value inside it, where it fits.
        let faint = crate::chart::text(12.0, FAINT).pos(Pos::new(HPos::Center, VPos::Bottom));
        chart.draw_series(bars.iter().enumerate().map(|(i, (_, v, n))| {
            Text::new(
                format!("n={n}"),
                (SegmentValue::CenterOf(i), v.clamp(0.0, 1.0) + 0.015),
                faint.clone(),
            )
        }))?;
        chart.draw_series(bars.iter().enumerate().filter(|b| b.1 .1 >= 0.15).map(
            |(i, (_, v, _))| {
                let ink = legible_on(crate::draw::viridis(*v));
                Text::new(
                    format!("{v:.2}"),
                    (SegmentValue::CenterOf(i), v.clamp(0.0, 1.0) - 0.02),
                    crate::chart::text(12.0, ink).pos(Pos::new(HPos::Center, VPos::Top)),
                )
            },
        ))?;
        Ok(())
    })
}

/// Dark ink on a light colour, light ink on a dark one.
pub fn legible_on(c: crate::draw::Rgb) -> crate::draw::Rgb {
    let lum = 0.3 * c[0] as f64 + 0.59 * c[1] as f64 + 0.11 * c[2] as f64;
    if lum > 140.0 {
        INK
    } else {
        [250, 250, 250]
    }
}

/// A grid of grayscale images `[h, w]` with up to two caption lines each.
pub fn image_grid(
    title: &str,
    images: &[(&[u8], Vec<String>)],
    w: usize,
    h: usize,
    columns: usize,
) -> Canvas {
    let scale = (56 / w.max(h)).max(1);
    let (cw, ch) = (w * scale + 12, h * scale + 30);
    let cols = columns.max(1).min(images.len().max(1));
    let rows = images.len().div_ceil(cols).max(1);
    let width = (24 + cols * cw).max(24 + Canvas::text_width(title, 1));
    let mut c = Canvas::new(width, 40 + rows * ch, PAPER);
    c.text(12, 12, title, 1, INK);
    for (k, (img, cap)) in images.iter().enumerate() {
        let (x, y) = (12 + (k % cols) * cw, 34 + (k / cols) * ch);
        c.gray(x, y, img, w, h, scale);
        c.frame(x, y, w * scale, h * scale, FRAME);
        for (l, line) in cap.iter().take(2).enumerate() {
            c.text(x, y + h * scale + 3 + l * 10, line, 1, FAINT);
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixel(c: &Canvas, x: usize, y: usize) -> [u8; 3] {
        let i = (y * c.width + x) * 3;
        [c.pixels[i], c.pixels[i + 1], c.pixels[i + 2]]
    }

    #[test]
    fn a_matrix_colours_each_cell_by_its_value() {
        let labels = vec!["L1 F1".to_string(), "L1 F2".to_string()];
        let values = vec![vec![Some(1.0), Some(-0.5)], vec![None, Some(0.0)]];
        let c = matrix("t", &labels, &values, -1.0, 1.0, Colormap::Diverging, "");
        // The layout of `matrix`: cells of 28 px from (14 + label width, 40).
        let label_w = 12 + 7 * 5;
        let at = |i: usize, j: usize| pixel(&c, 14 + label_w + j * 28 + 14, 40 + i * 28 + 14);
        assert_eq!(at(0, 0), Colormap::Diverging.color(1.0));
        assert_eq!(at(0, 1), Colormap::Diverging.color(-0.5));
        assert_eq!(at(1, 0), [225, 225, 220], "a missing value is blank");
        assert_eq!(at(1, 1), Colormap::Diverging.color(0.0));
        assert_eq!(
            c,
            matrix("t", &labels, &values, -1.0, 1.0, Colormap::Diverging, "")
        );
    }

    #[test]
    fn bars_are_as_tall_as_their_values() {
        let c = bars(
            "t",
            &[
                ("a".into(), 1.0, 5),
                ("b".into(), 0.5, 3),
                ("c".into(), 0.0, 0),
            ],
        );
        // Count each bar's coloured pixels down its middle column.
        let height_of = |v: f64| {
            let colour = crate::draw::viridis(v);
            (0..c.width)
                .map(|x| (0..c.height).filter(|&y| pixel(&c, x, y) == colour).count())
                .max()
                .unwrap()
        };
        let (full, half) = (height_of(1.0), height_of(0.5));
        assert!(full > 100, "{full}");
        let ratio = half as f64 / full as f64;
        assert!((ratio - 0.5).abs() < 0.03, "{half} of {full}");
    }
}
