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
