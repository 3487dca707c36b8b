//! The pictures of a comparison: each layer's correlation matrix with B's filters in the
//! order of their matches, and the loss and accuracy along the straight line from A to B,
//! before and after alignment. Data in, pictures out; nothing here computes a statistic.

use crate::analyses::plots::grid;
use crate::draw::{Canvas, Colormap, INK};

use super::compare::{Comparison, LayerComparison, PathPoint};

/// A layer's correlations, A's filters down, B's across in the order of the A filters they
/// match (B's unmatched filters last), so that a learned correspondence shows as a diagonal.
pub fn correlation(c: &Comparison, layer: &LayerComparison) -> Canvas {
    let matched: Vec<usize> = layer.pairs.iter().map(|p| p.b).collect();
    let unmatched = (0..layer.filters_b).filter(|j| !matched.contains(j));
    let order: Vec<usize> = matched.iter().copied().chain(unmatched).collect();
    let rows: Vec<String> = (1..=layer.filters_a).map(|i| format!("A{i}")).collect();
    let cols: Vec<String> = order.iter().map(|j| format!("B{}", j + 1)).collect();
    let values: Vec<Vec<Option<f64>>> = layer
        .correlation
        .iter()
        .map(|row| order.iter().map(|&j| Some(row[j])).collect())
        .collect();
    grid(
        &format!(
            "layer {}: Pearson correlation of {} with {} ({} split), matched mean {:.2}",
            layer.layer,
            c.a,
            c.b,
            c.split.name(),
            layer.mean_matched
        ),
        (&rows, &cols),
        &values,
        (-1.0, 1.0),
        Colormap::Diverging,
        "",
    )
}

/// Loss (left) and accuracy (right) along the line `(1 - t) A + t B`, raw and aligned.
pub fn barrier(c: &Comparison) -> Option<Canvas> {
    use plotters::prelude::*;
    let path = c.path.as_ref()?;
    let top = path
        .before
        .iter()
        .chain(&path.after)
        .map(|p| p.loss)
        .fold(0.0f64, f64::max)
        * 1.08;
    let (grey, blue) = ([150, 150, 150], [33, 102, 172]);
    let series: [(&str, &Vec<PathPoint>, [u8; 3]); 2] = [
        ("B as trained", &path.before, grey),
        ("B permuted onto A", &path.after, blue),
    ];
    Some(crate::chart::draw(900, 360, |area| {
        let halves = area.split_evenly((1, 2));
        for (h, (what, upper)) in halves
            .iter()
            .zip([("loss", top.max(1e-9)), ("accuracy", 1.02)])
        {
            let mut chart = ChartBuilder::on(h)
                .caption(
                    format!(
                        "{what} from A (t = 0) to B (t = 1), {} split",
                        c.split.name()
                    ),
                    crate::chart::text(13.0, INK),
                )
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(52)
                .build_cartesian_2d(0.0..1.0, 0.0..upper)?;
            crate::chart::house_style(
                chart
                    .configure_mesh()
                    .x_desc("t")
                    .y_desc(what)
                    .x_labels(6)
                    .y_labels(6)
                    .y_label_formatter(&|v| crate::chart::short_number(*v)),
            )
            .draw()?;
            for (name, pts, colour) in &series {
                let c = crate::chart::rgb(*colour);
                let xy: Vec<(f64, f64)> = pts
                    .iter()
                    .map(|p| (p.t, if what == "loss" { p.loss } else { p.accuracy }))
                    .collect();
                chart
                    .draw_series(LineSeries::new(xy.iter().copied(), c.stroke_width(2)))?
                    .label(*name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                    });
                chart.draw_series(xy.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
            }
            let corner = if what == "loss" {
                SeriesLabelPosition::UpperLeft
            } else {
                SeriesLabelPosition::LowerLeft
            };
            crate::chart::legend(&mut chart, corner)?;
        }
        Ok(())
    }))
}

/// A layer's families, most shared first: each with its mean kernel after alignment (every
/// input channel's `k x k` slice for a deeper layer), the shown images and its typical maps
/// on them, and its share. `images`: the shown images `[shown, side, side]`.
pub fn families(
    f: &super::families::Families,
    layer: &super::families::LayerFamilies,
    images: &[u8],
    side: usize,
) -> Canvas {
    use crate::draw::{FAINT, FRAME, PAPER};
    let mut rows: Vec<&super::families::Family> =
        layer.families.iter().filter(|x| !x.silent).collect();
    rows.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.filter.cmp(&b.filter)));
    let first = rows.first().map_or(9, |x| x.mean_kernel.len());
    let cin = if layer.layer == 1 {
        1
    } else {
        (first / 9).max(1)
    };
    let k = ((first / cin) as f64).sqrt().round() as usize;
    let kscale = if cin == 1 { 36 / k.max(1) } else { 4 };
    let kernel_w = cin * (k * kscale + 2);
    let shown = f.shown.len();
    let hw = rows
        .first()
        .map_or(side * side, |x| x.typical_maps.first().map_or(1, Vec::len));
    let mside = (hw as f64).sqrt().round() as usize;
    let (iscale, mscale) = (2, (56 / mside.max(1)).max(1));
    let cell = (side * iscale).max(mside * mscale) + 8;
    let label_w = 40;
    let text_w = 24 + Canvas::text_width("3 of 30 other learned runs (100%, CI 100-100%)", 1);
    let title = format!(
        "{} on {}{}: layer {} families across {} runs, most shared first (mean kernel, then each shown image and the family's mean map on it)",
        f.arch,
        f.data,
        if f.condition.is_empty() { String::new() } else { format!(" ({})", f.condition) },
        layer.layer,
        f.runs.len()
    );
    let width = (12 + label_w + kernel_w + 12 + shown * 2 * cell + text_w)
        .max(24 + Canvas::text_width(&title, 1));
    let (top, row_h) = (36, (cell).max(k * kscale) + 10);
    let mut c = Canvas::new(width, top + rows.len().max(1) * row_h + 12, PAPER);
    c.text(12, 10, &title, 1, INK);
    for (r, fam) in rows.iter().enumerate() {
        let y = top + r * row_h;
        c.text(12, y + 8, &format!("F{}", fam.filter), 1, INK);
        let range = fam
            .mean_kernel
            .iter()
            .fold(0.0f32, |m, v| m.max(v.abs()))
            .max(1e-12);
        let kx = 12 + label_w;
        for ch in 0..cin {
            let x = kx + ch * (k * kscale + 2);
            let slice = &fam.mean_kernel[ch * k * k..(ch + 1) * k * k];
            c.map(x, y, slice, k, k, kscale, range, Colormap::Diverging);
            c.frame(x, y, k * kscale, k * kscale, FRAME);
        }
        let mrange = fam
            .typical_maps
            .iter()
            .flatten()
            .fold(0.0f32, |m, v| m.max(*v))
            .max(1e-12);
        for (j, map) in fam.typical_maps.iter().enumerate() {
            let x = kx + kernel_w + 12 + j * 2 * cell;
            c.gray(
                x,
                y,
                &images[j * side * side..(j + 1) * side * side],
                side,
                side,
                iscale,
            );
            c.map(
                x + cell,
                y,
                map,
                mside,
                mside,
                mscale,
                mrange,
                Colormap::Viridis,
            );
            c.frame(x + cell, y, mside * mscale, mside * mscale, FRAME);
        }
        let tx = kx + kernel_w + 12 + shown * 2 * cell + 12;
        c.text(
            tx,
            y + 4,
            &format!(
                "{} of {} other learned runs ({:.0}%, CI {:.0}-{:.0}%)",
                fam.learned_with,
                fam.learned_runs,
                100.0 * fam.share,
                100.0 * fam.interval.0,
                100.0 * fam.interval.1
            ),
            1,
            INK,
        );
        c.text(
            tx,
            y + 16,
            &format!("bar r {:.2}, mean r {:.2}", fam.bar, fam.mean_correlation),
            1,
            FAINT,
        );
        if let Some((label, n, of)) = &fam.label {
            c.text(
                tx,
                y + 28,
                &format!("{label} ({n} of {of} dissected)"),
                1,
                FAINT,
            );
        }
    }
    c
}

/// The loss barrier of each pair of a grid's cells, as trained (grey) and with the second run
/// permuted onto the first (blue), one column per architecture, narrowest on the left; a
/// thin line joins a pair's two points, and a cell's pairs stand side by side in its column.
/// `cells` in the order drawn.
pub fn barriers(title: &str, cells: &[&super::barriers::CellBarriers]) -> Canvas {
    use plotters::prelude::*;
    let nc = cells.len().max(1);
    let top = cells
        .iter()
        .flat_map(|c| &c.pairs)
        .map(|p| p.loss_before.max(p.loss_after))
        .fold(0.0f64, f64::max)
        .max(1e-6)
        * 1.1;
    let width = (120 + 44 * nc).max(640);
    let grey = crate::chart::rgb([150, 150, 150]);
    let blue = crate::chart::rgb([33, 102, 172]);
    crate::chart::draw(width, 330, |area| {
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{title}: loss barrier between two seeds, narrowest architecture first"),
                crate::chart::text(13.0, INK),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(52)
            .build_cartesian_2d(-0.5..nc as f64 - 0.5, 0.0..top)?;
        crate::chart::house_style(
            chart
                .configure_mesh()
                .disable_x_mesh()
                .y_desc("loss barrier (held-out split)")
                .y_labels(6)
                .y_label_formatter(&|v| crate::chart::short_number(*v))
                .x_labels(nc + 1)
                .x_label_formatter(&|v| category(v, |i| cells.get(i).map(|c| c.arch.clone()))),
        )
        .draw()?;
        for (i, c) in cells.iter().enumerate() {
            let n = c.pairs.len();
            for (k, p) in c.pairs.iter().enumerate() {
                let x = i as f64 + (k as f64 - (n as f64 - 1.0) / 2.0) * 0.2;
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(x, p.loss_before), (x, p.loss_after)],
                    grey.mix(0.6),
                )))?;
                chart.draw_series([
                    Circle::new((x, p.loss_before), 4, grey.filled()),
                    Circle::new((x, p.loss_after), 4, blue.filled()),
                ])?;
            }
        }
        // Empty series carry the legend: the points above are drawn pair by pair.
        for (name, colour) in [
            ("as trained", grey),
            ("second run permuted onto the first", blue),
        ] {
            chart
                .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
        }
        crate::chart::legend(&mut chart, plotters::chart::SeriesLabelPosition::UpperRight)?;
        Ok(())
    })
}

/// Per layer, the CKA between every two learned runs of a cell (blue) and of its reference
/// with each Glorot initialisation (grey), one column each, on an axis zoomed to the values.
pub fn cka_strip(f: &super::families::Families) -> Canvas {
    use plotters::prelude::*;
    let columns: Vec<(String, Vec<f64>, RGBColor)> = f
        .layers
        .iter()
        .flat_map(|l| {
            [
                (
                    format!("layer {}: learned runs", l.layer),
                    f.learned_cka(l),
                    crate::chart::rgb([33, 102, 172]),
                ),
                (
                    format!("layer {}: initialisations", l.layer),
                    l.cka_null.clone(),
                    crate::chart::rgb([150, 150, 150]),
                ),
            ]
        })
        .collect();
    let all = columns.iter().flat_map(|c| c.1.iter().copied());
    let low = all.fold(1.0f64, f64::min);
    let low = (low - 0.1 * (1.0 - low)).max(-1.0);
    let n = columns.len().max(1);
    let width = (140 + 150 * n).max(560);
    crate::chart::draw(width, 300, |area| {
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "{} {}: debiased linear CKA on {} held-out images",
                    f.data, f.arch, f.cka_images
                ),
                crate::chart::text(13.0, INK),
            )
            .margin(12)
            .x_label_area_size(34)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5..n as f64 - 0.5, low..1.0 + 0.02 * (1.0 - low))?;
        crate::chart::house_style(
            chart
                .configure_mesh()
                .disable_x_mesh()
                .y_desc("CKA")
                .y_labels(6)
                .y_label_formatter(&|v| format!("{v:.3}"))
                .x_labels(n + 1)
                .x_label_formatter(&|v| category(v, |i| columns.get(i).map(|c| c.0.clone()))),
        )
        .draw()?;
        for (i, (_, values, colour)) in columns.iter().enumerate() {
            let k = values.len().max(1);
            chart.draw_series(values.iter().enumerate().map(|(j, &v)| {
                // Spread the points across the column so that equal values stay visible.
                let x = i as f64 + (j as f64 / k as f64 - 0.5) * 0.5;
                Circle::new((x, v), 3, colour.filled())
            }))?;
        }
        Ok(())
    })
}

/// The label of a category axis drawn on `f64`: category `i` sits at `x = i`; ticks between
/// categories are left blank.
fn category(v: &f64, label: impl Fn(usize) -> Option<String>) -> String {
    let i = v.round();
    if (v - i).abs() < 1e-6 && i >= 0.0 {
        label(i as usize).unwrap_or_default()
    } else {
        String::new()
    }
}
