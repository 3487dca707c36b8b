//! Kernel pictures: every filter's weights as a diverging heatmap, one sheet per layer.
//!
//! Rows are the layer's filters (L{l} F1..), columns its input channels; each `k x k` kernel is
//! drawn enlarged, blue negative, red positive, on one symmetric scale shared by the whole layer
//! (its largest absolute weight), so kernels of a layer compare. The bias is printed at the end
//! of each row. Drawing only.

use std::path::{Path, PathBuf};

use tinycnn::Model;

use crate::draw::{Canvas, Colormap, FAINT, FRAME, INK, PAPER};
use crate::error::{Error, Result};

const M: usize = 12;
const GAP: usize = 4;

/// The sheet of conv layer `l` (0-based); `cell` is the side of one kernel in pixels.
pub fn kernel_sheet(model: &Model, l: usize, title: &str, cell: usize) -> Canvas {
    let s = model.arch.layers()[l];
    let k = model.arch.kernel;
    let scale = (cell / k).max(1);
    let side = k * scale;
    let w = model.conv_weight(l);
    let b = model.conv_bias(l);
    let range = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let label_w = Canvas::text_width("F32", 1) + 2 * GAP;
    let cols_shown = s.cin;
    let width = (2 * M + label_w + cols_shown * (side + GAP) + 110)
        .max(2 * M + Canvas::text_width(title, 2))
        .max(380);
    let height = 2 * M + 44 + s.cout * (side + GAP) + 50;
    let mut c = Canvas::new(width, height, PAPER);
    c.text(M, M, title, 2, INK);
    let x0 = M + label_w;
    let y0 = M + 44;
    for ci in 0..s.cin {
        let label = if l == 0 {
            "in".to_string()
        } else {
            format!("C{}", ci + 1)
        };
        if ci % ((14 / side.max(1)).max(1)) == 0 || side >= 14 {
            c.text(x0 + ci * (side + GAP), y0 - 12, &label, 1, FAINT);
        }
    }
    c.text(x0 + s.cin * (side + GAP) + 6, y0 - 12, "bias", 1, FAINT);
    for co in 0..s.cout {
        let y = y0 + co * (side + GAP);
        c.text(M, y + side / 2 - 4, &format!("F{}", co + 1), 1, INK);
        for ci in 0..s.cin {
            let x = x0 + ci * (side + GAP);
            let kern = &w[(co * s.cin + ci) * k * k..][..k * k];
            c.map(x, y, kern, k, k, scale, range, Colormap::Diverging);
            c.frame(x, y, side, side, FRAME);
        }
        c.text(
            x0 + s.cin * (side + GAP) + 6,
            y + side / 2 - 4,
            &format!("{:+.3}", b[co]),
            1,
            FAINT,
        );
    }
    let bar_y = y0 + s.cout * (side + GAP) + 10;
    c.colorbar(
        M,
        bar_y,
        160,
        Colormap::Diverging,
        &format!("{:.3}", -range),
        &format!("+{range:.3}"),
    );
    c.text(M + 180, bar_y, "weights, one scale for the layer", 1, FAINT);
    c
}

/// Writes `layer-1.png`, ... into `out` (atomically; replaced only with `force`).
pub fn write_kernel_sheets(
    model: &Model,
    name: &str,
    cell: usize,
    out: &Path,
    force: bool,
) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for l in 0..model.arch.filters.len() {
        let s = model.arch.layers()[l];
        let title = format!(
            "{name}: layer {} kernels ({} filters x {} inputs)",
            l + 1,
            s.cout,
            s.cin
        );
        let bytes = kernel_sheet(model, l, &title, cell)
            .to_png()
            .map_err(|e| Error::io(out, e))?;
        files.push((PathBuf::from(format!("layer-{}.png", l + 1)), bytes));
    }
    crate::files::fsio::write_dir_atomic(out, force, |dir| {
        for (p, b) in &files {
            std::fs::write(dir.join(p), b).map_err(|e| Error::io(&dir.join(p), e))?;
        }
        Ok(())
    })?;
    Ok(files.into_iter().map(|f| f.0).collect())
}
