//! The picture of a dissected layer: a row per filter with its kernel (summed over its input
//! channels), the images that activate it most with the region above its threshold outlined,
//! the mask of its best concept on each of them, and its label and IoU.
//!
//! Data in, picture out; must not compute a statistic (the thresholds and labels come from
//! the [`Dissection`]).

use super::{Dissection, LayerDissection};
use crate::draw::{Canvas, Colormap, FAINT, FRAME, INK, PAPER};

/// Images shown per filter.
pub const SHOWN: usize = 4;

/// The sheet of one layer.
///
/// `shown`: the images the sheet shows (indices in the split, ascending) and that layer's
/// upsampled maps of them, `[shown, F, px]` ([`super::upsample::upsampled_maps`]);
/// `images`: the split's `[n, h, w]`; `masks`: its `[n, px]` concept words; `kernel`:
/// per filter, the `k x k` kernel summed over the filter's input channels.
pub fn layer_sheet(
    d: &Dissection,
    layer: &LayerDissection,
    (shown, maps): (&[usize], &[f32]),
    images: &[u8],
    masks: &[u16],
    kernels: &[Vec<f32>],
    (h, w): (usize, usize),
) -> Canvas {
    let px = h * w;
    let filters = layer.filters.len();
    let scale = (56 / h.max(w)).max(1);
    let (cw, ch) = (w * scale + 6, h * scale + 8);
    let k = (kernels.first().map_or(9, Vec::len) as f64).sqrt() as usize;
    let kscale = (40 / k.max(1)).max(1);
    let label_w = 48;
    let text_w = 200;
    let title = format!(
        "{} {}: layer {} against the concept masks (top {} of activations outlined; its best concept beside)",
        d.model, d.arch, layer.layer, d.settings.quantile
    );
    let width = (12 + label_w + k * kscale + 12 + SHOWN * 2 * cw + 12 + text_w)
        .max(24 + Canvas::text_width(&title, 1));
    let top = 36;
    let mut c = Canvas::new(width, top + filters * ch + 16, PAPER);
    c.text(12, 10, &title, 1, INK);
    let range = kernels
        .iter()
        .flatten()
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(1e-12);
    for (row, f) in layer.filters.iter().enumerate() {
        let y = top + row * ch;
        let fi = f.filter.filter - 1;
        c.text(12, y + ch / 2 - 4, &f.filter.label(), 1, INK);
        let kx = 12 + label_w;
        c.map(
            kx,
            y,
            &kernels[fi],
            k,
            k,
            kscale,
            range,
            Colormap::Diverging,
        );
        c.frame(kx, y, k * kscale, k * kscale, FRAME);
        let best = d.concepts.iter().position(|x| *x == f.best).unwrap_or(0);
        for (j, &i) in f.top_images.iter().take(SHOWN).enumerate() {
            let x = kx + k * kscale + 12 + j * 2 * cw;
            let at = shown
                .binary_search(&i)
                .expect("the maps of every image shown");
            let a = &maps[(at * filters + fi) * px..][..px];
            let on = |p: usize| super::in_mask(a[p], f.threshold);
            c.gray(x, y, &images[i * px..(i + 1) * px], w, h, scale);
            // Outline the region: pixels in it with a neighbour outside it.
            for p in 0..px {
                let (r, col) = (p / w, p % w);
                let edge = on(p)
                    && [(0, 1), (2, 1), (1, 0), (1, 2)].iter().any(|&(dr, dc)| {
                        let (rr, cc) = (r + dr, col + dc);
                        rr == 0 || cc == 0 || rr > h || cc > w || !on((rr - 1) * w + cc - 1)
                    });
                if edge {
                    c.fill(x + col * scale, y + r * scale, scale, scale, [230, 60, 40]);
                }
            }
            let concept: Vec<u8> = masks[i * px..(i + 1) * px]
                .iter()
                .map(|&m| if m >> best & 1 == 1 { 255 } else { 0 })
                .collect();
            c.gray(x + cw, y, &concept, w, h, scale);
            c.frame(x + cw, y, w * scale, h * scale, FRAME);
        }
        let tx = width - text_w;
        let label = f.label.as_deref().unwrap_or("no label");
        c.text(
            tx,
            y + 4,
            label,
            1,
            if f.label.is_some() { INK } else { FAINT },
        );
        c.text(
            tx,
            y + 16,
            &format!("best {} IoU {:.3}", f.best, f.best_iou),
            1,
            FAINT,
        );
        if let Some(r) = &f.removal {
            c.text(tx, y + 28, &format!("removed: {:+.4}", r.overall), 1, FAINT);
        }
    }
    c
}

/// Draws every layer's sheet into `out` as `sheet-layer-N.png`.
///
/// `images`: the dissected split's `[n, h, w]`; `masks`: its `[n, px]` concept words.
pub fn write_sheets(
    d: &Dissection,
    model: &tinycnn::Model,
    images: &[u8],
    masks: &[u16],
    scaling: tinycnn::Scaling,
    out: &std::path::Path,
) -> crate::error::Result<Vec<std::path::PathBuf>> {
    let px = model.arch.height * model.arch.width;
    let mut shown: Vec<usize> = d
        .layers
        .iter()
        .flat_map(|l| &l.filters)
        .flat_map(|f| f.top_images.iter().copied())
        .collect();
    shown.sort_unstable();
    shown.dedup();
    let selected: Vec<u8> = shown
        .iter()
        .flat_map(|&i| images[i * px..(i + 1) * px].iter().copied())
        .collect();
    let maps = super::upsample::upsampled_maps(model, &selected, scaling);
    let k2 = model.arch.kernel * model.arch.kernel;
    let mut written = Vec::new();
    for layer in &d.layers {
        let l = layer.layer - 1;
        let s = model.arch.layers()[l];
        let w = model.conv_weight(l);
        let kernels: Vec<Vec<f32>> = (0..s.cout)
            .map(|f| {
                (0..k2)
                    .map(|t| (0..s.cin).map(|ci| w[(f * s.cin + ci) * k2 + t]).sum())
                    .collect()
            })
            .collect();
        let sheet = layer_sheet(
            d,
            layer,
            (&shown, &maps[l]),
            images,
            masks,
            &kernels,
            (model.arch.height, model.arch.width),
        );
        let p = out.join(format!("sheet-layer-{}.png", layer.layer));
        sheet.save_png(&p)?;
        written.push(p);
    }
    Ok(written)
}
