//! Small plots for the analyses: matrix heatmaps, bar charts and image grids, on the bitmap
//! canvas (`draw`). Data in, pictures out; nothing here computes a statistic.

use crate::draw::{Canvas, Colormap, FAINT, FRAME, INK, PAPER};

/// A labelled `n x n` heatmap of `values` (None drawn as blank), coloured by `cmap` over
/// `[low, high]` (for the diverging map, symmetric around 0 with `high` as the extent).
pub fn matrix(
    title: &str,
    labels: &[String],
    values: &[Vec<Option<f64>>],
    low: f64,
    high: f64,
    cmap: Colormap,
    unit: &str,
) -> Canvas {
    let n = labels.len();
    let cell = if n <= 16 {
        26
    } else if n <= 32 {
        16
    } else {
        10
    };
    let lw = labels
        .iter()
        .map(|l| Canvas::text_width(l, 1))
        .max()
        .unwrap_or(0)
        + 8;
    let (m, top) = (12, 40);
    let width = (2 * m + lw + n * cell + 20)
        .max(2 * m + Canvas::text_width(title, 1))
        .max(360);
    let height = top + lw + n * cell + 60;
    let mut c = Canvas::new(width, height, PAPER);
    c.text(m, m, title, 1, INK);
    let (x0, y0) = (m + lw, top + lw);
    for (i, l) in labels.iter().enumerate() {
        c.text(m, y0 + i * cell + cell / 2 - 4, l, 1, INK);
        // Column labels turned a quarter turn, read upwards, ending just above the matrix.
        c.text_up(x0 + i * cell + cell / 2 - 4, y0 - 4, l, FAINT);
    }
    for (i, row) in values.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            let (x, y) = (x0 + j * cell, y0 + i * cell);
            match v {
                Some(v) => {
                    let t = if cmap.signed() {
                        v / high.abs().max(1e-12)
                    } else {
                        (v - low) / (high - low).max(1e-12)
                    };
                    c.fill(x, y, cell - 1, cell - 1, cmap.color(t));
                }
                None => c.fill(x, y, cell - 1, cell - 1, [225, 225, 220]),
            }
        }
    }
    c.frame(x0, y0, n * cell - 1, n * cell - 1, FRAME);
    let (lo, hi) = if cmap.signed() {
        (
            format!("{:.2}{unit}", -high.abs()),
            format!("+{:.2}{unit}", high.abs()),
        )
    } else {
        (format!("{low:.2}{unit}"), format!("{high:.2}{unit}"))
    };
    c.colorbar(m, y0 + n * cell + 14, 180, cmap, &lo, &hi);
    c
}

/// A bar chart of values in [0, 1] with labels under the bars.
pub fn bars(title: &str, bars: &[(String, f64, usize)]) -> Canvas {
    let (m, top, ph) = (12usize, 36usize, 160usize);
    let bw = bars
        .iter()
        .map(|b| {
            Canvas::text_width(&b.0, 1)
                .max(Canvas::text_width(&format!("n={}", b.2), 1))
                .max(Canvas::text_width(&format!("{:.2}", b.1), 1))
        })
        .max()
        .unwrap_or(24)
        .max(24)
        + 8;
    let width = (2 * m + 40 + bars.len() * bw)
        .max(2 * m + Canvas::text_width(title, 1))
        .max(300);
    let height = top + ph + 50;
    let mut c = Canvas::new(width, height, PAPER);
    c.text(m, m, title, 1, INK);
    let x0 = m + 40;
    for t in [0.0, 0.5, 1.0] {
        let y = top + ((1.0 - t) * ph as f64) as usize;
        c.fill(x0, y, bars.len() * bw, 1, [225, 225, 220]);
        c.text(m, y.saturating_sub(4), &format!("{t:.1}"), 1, FAINT);
    }
    for (i, (label, v, n)) in bars.iter().enumerate() {
        let h = (v.clamp(0.0, 1.0) * ph as f64).round() as usize;
        let x = x0 + i * bw + 4;
        c.fill(x, top + ph - h, bw - 8, h, crate::draw::viridis(*v));
        c.text(x, top + ph + 6, label, 1, INK);
        c.text(x, top + ph + 18, &format!("{:.2}", v), 1, FAINT);
        c.text(x, top + ph + 30, &format!("n={n}"), 1, FAINT);
    }
    c
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
