//! Activation sheets: the thesis's first analysis method, drawn for any run (its Figures 14-29).
//!
//! - The per-filter sheet of a layer (Figures 15 and 17): one column per filter, one row per
//!   panel image, the input image first, rows grouped by the panel's groups (figure and size or
//!   angle) with labels, filters numbered as in the thesis (L1 F1..).
//! - The per-image sheet (Figures 14, 16, 18-20): one image beside every map of every layer.
//!
//! Maps are drawn at a chosen stage (pre-activation, after the activation, after pooling),
//! normalised per map, per filter across the panel (the default: a filter's maps then compare
//! with each other) or per layer, in a colour map (gray or viridis; a diverging one for
//! signed pre-activations), enlarged by whole pixels so 14x14 and 7x7 maps stay legible.
//! Drawing only: the maps come from [`tinycnn::train::capture`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tinycnn::train::LayerMaps;
use tinycnn::{Model, Scaling};

use crate::data::dataset::Dataset;
use crate::data::panelfile::{PanelData, PanelMeta, PANEL_FORMAT};
use crate::draw::{Canvas, Colormap, FAINT, FRAME, INK, PAPER};
use crate::error::{Error, Result};
use crate::models::run::Run;

/// Which maps to draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Convolution plus bias, before the activation (signed).
    Pre,
    /// After the activation (what Keras's Conv2D layer outputs).
    Post,
    /// After the 2x2 max-pool (the next layer's input).
    Pooled,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Pre => "pre-activation",
            Stage::Post => "after the activation",
            Stage::Pooled => "after pooling",
        }
    }
}

/// How map values are scaled to colours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// Each map to its own maximum.
    Map,
    /// Each filter to its maximum over the whole panel (maps of a filter compare).
    Filter,
    /// Each layer to its maximum (every map of the layer compares).
    Layer,
}

/// Drawing options.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SheetOptions {
    pub stage: Stage,
    pub norm: Norm,
    /// Default: diverging for pre-activations, gray otherwise.
    pub colormap: Option<Colormap>,
    /// Side of one map cell in pixels (maps are enlarged by whole pixels to fit it).
    pub cell: usize,
}

impl Default for SheetOptions {
    fn default() -> Self {
        SheetOptions {
            stage: Stage::Post,
            norm: Norm::Filter,
            colormap: None,
            cell: 28,
        }
    }
}

impl SheetOptions {
    fn cmap(&self) -> Colormap {
        self.colormap.unwrap_or(if self.stage == Stage::Pre {
            Colormap::Diverging
        } else {
            Colormap::Gray
        })
    }
}

/// One layer's maps at one stage: `[n, C, h, w]`.
struct StageMaps<'a> {
    values: &'a [f32],
    c: usize,
    h: usize,
    w: usize,
}

impl StageMaps<'_> {
    fn map(&self, img: usize, f: usize) -> &[f32] {
        let hw = self.h * self.w;
        &self.values[(img * self.c + f) * hw..][..hw]
    }
}

fn stage_maps<'a>(model: &Model, maps: &'a [LayerMaps], l: usize, stage: Stage) -> StageMaps<'a> {
    let s = model.arch.layers()[l];
    let (values, h, w) = match stage {
        Stage::Pre => (&maps[l].pre[..], s.h, s.w),
        Stage::Post => (&maps[l].post[..], s.h, s.w),
        Stage::Pooled => (&maps[l].pooled[..], s.out_h, s.out_w),
    };
    StageMaps {
        values,
        c: s.cout,
        h,
        w,
    }
}

/// The magnitude a value is scaled by: max |v| for signed maps, max v otherwise.
fn magnitude(v: &[f32], signed: bool) -> f32 {
    v.iter()
        .fold(0.0f32, |m, &x| m.max(if signed { x.abs() } else { x }))
}

/// Per (image, filter) scale of a layer under the options' normalisation.
fn ranges(sm: &StageMaps, n: usize, norm: Norm, signed: bool) -> Vec<Vec<f32>> {
    let per: Vec<Vec<f32>> = (0..n)
        .map(|i| (0..sm.c).map(|f| magnitude(sm.map(i, f), signed)).collect())
        .collect();
    match norm {
        Norm::Map => per,
        Norm::Filter => {
            let fmax: Vec<f32> = (0..sm.c)
                .map(|f| per.iter().fold(0.0f32, |m, r| m.max(r[f])))
                .collect();
            vec![fmax; n]
        }
        Norm::Layer => {
            let m = per.iter().flatten().fold(0.0f32, |a, &b| a.max(b));
            vec![vec![m; sm.c]; n]
        }
    }
}

/// Runs the model on the panel's images and keeps every layer's maps.
pub fn capture(model: &Model, panel: &PanelData, scaling: Scaling) -> Vec<LayerMaps> {
    tinycnn::train::capture(model, &panel.images, scaling).0
}

const M: usize = 12;
const GAP: usize = 4;

fn norm_note(norm: Norm) -> &'static str {
    match norm {
        Norm::Map => "each map scaled to its own maximum",
        Norm::Filter => "each filter scaled to its maximum over the panel",
        Norm::Layer => "all maps of the layer on one scale",
    }
}

/// The per-filter sheet of conv layer `l` (0-based).
// Indices address images, filters and their ranges in parallel arrays.
#[allow(clippy::needless_range_loop)]
/// One row of a sheet: panel image `i` at `at`, then its map for every filter, one cell apart,
/// each scaled to its range in `ranges`.
#[allow(clippy::too_many_arguments)]
fn image_row(
    c: &mut Canvas,
    at: (usize, usize),
    cell: usize,
    panel: &PanelData,
    i: usize,
    in_scale: usize,
    sm: &StageMaps,
    m_scale: usize,
    ranges: &[f32],
    cmap: Colormap,
) {
    let (x0, y) = at;
    let px = panel.height * panel.width;
    c.gray(
        x0,
        y,
        &panel.images[i * px..(i + 1) * px],
        panel.width,
        panel.height,
        in_scale,
    );
    for (f, &range) in ranges.iter().enumerate().take(sm.c) {
        let x = x0 + (f + 1) * (cell + GAP) + GAP;
        c.map(x, y, sm.map(i, f), sm.w, sm.h, m_scale, range, cmap);
    }
}

pub fn filter_sheet(
    model: &Model,
    panel: &PanelData,
    maps: &[LayerMaps],
    l: usize,
    title: &str,
    o: &SheetOptions,
) -> Canvas {
    let sm = stage_maps(model, maps, l, o.stage);
    let n = panel.len();
    let cmap = o.cmap();
    let r = ranges(&sm, n, o.norm, cmap.signed());
    let cell = o
        .cell
        .max(sm.h.max(sm.w))
        .max(panel.height.max(panel.width));
    let label_w = panel
        .captions
        .iter()
        .chain(&panel.groups)
        .map(|c| Canvas::text_width(c, 1))
        .max()
        .unwrap_or(0)
        + 2 * GAP;
    let cols = sm.c + 1;
    let header = 2 * 8 + 10 + 28;
    let groups = panel.groups.windows(2).filter(|w| w[0] != w[1]).count() + 1;
    let note = format!("{}; {}", o.stage.name(), norm_note(o.norm));
    let width = (2 * M + label_w + cols * (cell + GAP) + GAP)
        .max(2 * M + Canvas::text_width(title, 2))
        .max(2 * M + 180 + Canvas::text_width(&note, 1));
    let height = 2 * M + header + n * (cell + GAP) + groups * 6 + 50;
    let mut c = Canvas::new(width, height, PAPER);
    c.text(M, M, title, 2, INK);
    let x0 = M + label_w;
    let y_head = M + 24;
    c.text(x0, y_head, "in", 1, FAINT);
    // Filters whose maps are all zero on the whole panel are marked silent.
    for f in 0..sm.c {
        let x = x0 + (f + 1) * (cell + GAP) + GAP;
        c.text(x, y_head, &format!("F{}", f + 1), 1, INK);
        if r.iter().take(n).all(|ri| ri[f] == 0.0) {
            c.text(x, y_head + 10, "off", 1, [178, 24, 43]);
        }
    }
    let mut y = y_head + 28;
    let in_scale = (cell / panel.height.max(panel.width)).max(1);
    let m_scale = (cell / sm.h.max(sm.w)).max(1);
    for (i, ri) in r.iter().enumerate().take(n) {
        // A rule between groups; the first caption of a group in ink, the others faint.
        let first = i == 0 || panel.groups[i] != panel.groups[i - 1];
        if first {
            c.fill(M, y + 2, width - 2 * M, 1, FRAME);
            y += 6;
        }
        c.text(
            M,
            y + cell / 2 - 4,
            &panel.captions[i],
            1,
            if first { INK } else { FAINT },
        );
        image_row(
            &mut c,
            (x0, y),
            cell,
            panel,
            i,
            in_scale,
            &sm,
            m_scale,
            ri,
            cmap,
        );
        y += cell + GAP;
    }
    let (lo, hi) = if cmap.signed() {
        ("-max", "+max")
    } else {
        ("0", "max")
    };
    c.colorbar(M, y + 8, 160, cmap, lo, hi);
    c.text(M + 180, y + 8, &note, 1, FAINT);
    c
}

/// The per-image sheet: panel image `i` beside every map of every layer.
#[allow(clippy::needless_range_loop)]
pub fn image_sheet(
    model: &Model,
    panel: &PanelData,
    maps: &[LayerMaps],
    i: usize,
    title: &str,
    o: &SheetOptions,
) -> Canvas {
    let layers = model.arch.filters.len();
    let n = panel.len();
    let cmap = o.cmap();
    let cell = o.cell.max(model.arch.height.max(model.arch.width));
    let most = model.arch.filters.iter().copied().max().unwrap_or(1);
    let label_w = Canvas::text_width("L8", 1) + 2 * GAP;
    let note = format!("{}; {}", o.stage.name(), norm_note(o.norm));
    let width = (2 * M + label_w + (most + 1) * (cell + GAP) + GAP)
        .max(2 * M + Canvas::text_width(title, 2))
        .max(2 * M + 180 + Canvas::text_width(&note, 1));
    let height = 2 * M + 30 + layers * (cell + GAP + 14) + 50;
    let mut c = Canvas::new(width, height, PAPER);
    c.text(M, M, title, 2, INK);
    let x0 = M + label_w;
    let mut y = M + 30;
    let in_scale = (cell / panel.height.max(panel.width)).max(1);
    for l in 0..layers {
        let sm = stage_maps(model, maps, l, o.stage);
        let r = ranges(&sm, n, o.norm, cmap.signed());
        c.text(x0, y, "in", 1, FAINT);
        for f in 0..sm.c {
            c.text(
                x0 + (f + 1) * (cell + GAP) + GAP,
                y,
                &format!("F{}", f + 1),
                1,
                INK,
            );
        }
        y += 12;
        c.text(M, y + cell / 2 - 4, &format!("L{}", l + 1), 1, INK);
        let m_scale = (cell / sm.h.max(sm.w)).max(1);
        image_row(
            &mut c,
            (x0, y),
            cell,
            panel,
            i,
            in_scale,
            &sm,
            m_scale,
            &r[i],
            cmap,
        );
        y += cell + GAP + 2;
    }
    let (lo, hi) = if cmap.signed() {
        ("-max", "+max")
    } else {
        ("0", "max")
    };
    c.colorbar(M, y + 8, 160, cmap, lo, hi);
    c.text(M + 180, y + 8, &note, 1, FAINT);
    c
}

/// A file-name-safe version of a caption. A minus sign that starts a number becomes `m`, so
/// `rectangle 0 (-3)` and `rectangle 0 (3)` get different names.
fn slug(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let starts_number = c == '-'
            && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit())
            && (i == 0 || !chars[i - 1].is_ascii_alphanumeric());
        out.push(match c {
            _ if starts_number => 'm',
            c if c.is_ascii_alphanumeric() || c == '.' || c == '-' => c,
            _ => '-',
        });
    }
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    out.trim_matches('-').to_string()
}

/// Draws every sheet of a run on a panel into `out` (atomically; replaced only with
/// `force`): `layer-1.png`, ... and `images/01-ellipse-large-0.90.png`, .... Returns the
/// files written, relative to `out`.
pub fn write_sheets(
    model: &Model,
    panel: &PanelData,
    scaling: Scaling,
    name: &str,
    o: &SheetOptions,
    out: &Path,
    force: bool,
) -> Result<Vec<PathBuf>> {
    let maps = capture(model, panel, scaling);
    let mut canvases: Vec<(PathBuf, Canvas)> = Vec::new();
    for l in 0..model.arch.filters.len() {
        let title = format!(
            "{name}: layer {} ({} filters), panel {}",
            l + 1,
            model.arch.filters[l],
            panel.meta.name
        );
        canvases.push((
            PathBuf::from(format!("layer-{}.png", l + 1)),
            filter_sheet(model, panel, &maps, l, &title, o),
        ));
    }
    for i in 0..panel.len() {
        let title = format!("{name}: {}", panel.captions[i]);
        let file =
            PathBuf::from("images").join(format!("{:02}-{}.png", i + 1, slug(&panel.captions[i])));
        canvases.push((file, image_sheet(model, panel, &maps, i, &title, o)));
    }
    use rayon::prelude::*;
    let encoded: Vec<(PathBuf, Vec<u8>)> = canvases
        .par_iter()
        .map(|(p, c)| c.to_png().map(|b| (p.clone(), b)))
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(out, e))?;
    crate::files::fsio::write_dir_atomic(out, force, |dir| {
        std::fs::create_dir_all(dir.join("images")).map_err(|e| Error::io(dir, e))?;
        for (p, bytes) in &encoded {
            let full = dir.join(p);
            std::fs::write(&full, bytes).map_err(|e| Error::io(&full, e))?;
        }
        Ok(())
    })?;
    Ok(encoded.into_iter().map(|(p, _)| p).collect())
}

/// The panel for a run: a named panel or a panel file if given; else the thesis panel that
/// matches the run's dataset (rotation varies: `thesis-rotation`, otherwise `thesis-size`);
/// for a run on a user's own data, the first three validation images of each class.
pub fn panel_for(run: &Run, arg: Option<&str>, data: Option<&Dataset>) -> Result<PanelData> {
    let (h, w) = (run.model.arch.height, run.model.arch.width);
    let panel = match arg {
        Some(name) if shapes::panel::find(name).is_some() => {
            if h != w {
                return Err(Error::Usage(format!(
                    "built-in panels are square; the model takes {w}x{h}: pass a panel file"
                )));
            }
            PanelData::from_panel(&shapes::panel::find(name).expect("found"), h as u32)
        }
        Some(file) => {
            let p = Path::new(file);
            let names: Vec<&str> = shapes::panel::PANELS.iter().map(|p| p.0).collect();
            if !p.exists() && crate::models::training::looks_like_path(file) {
                return Err(Error::Missing(format!(
                    "--panel {file}: no such file; check the path, or name a panel ({})",
                    names.join(", ")
                )));
            }
            if !p.exists() {
                return Err(Error::Usage(format!(
                    "--panel {file}: no such file, and not a panel ({})",
                    names.join(", ")
                )));
            }
            PanelData::read_npz(p)?
        }
        None => match &run.meta.data.spec {
            Some(spec) if h == w => {
                let spec = shapes::DatasetSpec::from_canonical_json(&spec.to_string())?;
                let rotation = spec.varying_factors().contains(&"rotation");
                let size = spec.varying_factors().contains(&"size");
                let name = if rotation && !size {
                    "thesis-rotation"
                } else {
                    "thesis-size"
                };
                PanelData::from_panel(&shapes::panel::find(name).expect("built in"), h as u32)
            }
            _ => first_of_each_class(
                data.ok_or_else(|| {
                    Error::Usage(
                        "this run's data is not a shapelab dataset: pass --panel FILE".into(),
                    )
                })?,
                3,
            ),
        },
    };
    if (panel.height, panel.width) != (h, w) {
        return Err(Error::Usage(format!(
            "the panel's images are {}x{} but the model takes {w}x{h}",
            panel.width, panel.height
        )));
    }
    Ok(panel)
}

/// A panel of the first `k` validation images of each class.
pub fn first_of_each_class(d: &Dataset, k: usize) -> PanelData {
    let px = d.pixels();
    let kf = d.factor_names.len();
    let mut p = PanelData {
        meta: PanelMeta {
            schema: crate::files::schema::Schema::CURRENT,
            format: PANEL_FORMAT.into(),
            name: format!("first {k} of each class"),
            generator: "-".into(),
            shapelab_version: crate::VERSION.into(),
        },
        height: d.height,
        width: d.width,
        class_names: d.class_names.clone(),
        factor_names: d.factor_names.clone(),
        images: Vec::new(),
        labels: Vec::new(),
        factors: Vec::new(),
        groups: Vec::new(),
        captions: Vec::new(),
    };
    for (label, class) in d.class_names.iter().enumerate() {
        let idx = (0..d.val.len())
            .filter(|&i| d.val.labels[i] as usize == label)
            .take(k);
        for (j, i) in idx.enumerate() {
            p.images
                .extend_from_slice(&d.val.images[i * px..(i + 1) * px]);
            p.labels.push(label as u8);
            p.factors
                .extend_from_slice(&d.val.factors[i * kf..(i + 1) * kf]);
            p.groups.push(class.clone());
            p.captions.push(format!("{class} {}", j + 1));
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_the_normalisation() {
        // 2 images x 2 filters of 1x2 maps.
        let values = [
            1.0, 2.0, /**/ 0.0, 0.0, /**/ 4.0, 3.0, /**/ -5.0, 1.0,
        ];
        let sm = StageMaps {
            values: &values,
            c: 2,
            h: 1,
            w: 2,
        };
        assert_eq!(
            ranges(&sm, 2, Norm::Map, false),
            vec![vec![2.0, 0.0], vec![4.0, 1.0]]
        );
        assert_eq!(
            ranges(&sm, 2, Norm::Filter, false),
            vec![vec![4.0, 1.0], vec![4.0, 1.0]]
        );
        assert_eq!(
            ranges(&sm, 2, Norm::Layer, false),
            vec![vec![4.0, 4.0], vec![4.0, 4.0]]
        );
        assert_eq!(
            ranges(&sm, 2, Norm::Filter, true),
            vec![vec![4.0, 5.0], vec![4.0, 5.0]]
        );
    }

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(slug("triangle 30 (32)"), "triangle-30-32");
        assert_eq!(slug("ellipse large 0.90"), "ellipse-large-0.90");
        assert_eq!(slug("rectangle 0 (-3)"), "rectangle-0-m3");
        assert_eq!(slug("rectangle 0 (3)"), "rectangle-0-3");
        assert_eq!(slug("a-b"), "a-b");
    }
}
