//! Contact sheets: a labelled grid of example images to look at a dataset or a panel.
//!
//! One row per class (datasets) or per group (panels); each thumbnail is the image scaled up
//! by an integer factor (nearest neighbour, so pixels stay pixels) with the values of the
//! factors that vary written under it.

use crate::data::dataset::Dataset;
use crate::data::panelfile::PanelData;
use crate::draw::{Canvas, FAINT, FRAME, INK, PAPER};

/// One labelled row of thumbnails.
struct Row<'a> {
    label: String,
    sublabel: String,
    /// `(image [h, w], caption lines)`.
    items: Vec<(&'a [u8], Vec<String>)>,
}

const MARGIN: usize = 16;
const GAP: usize = 10;
const LINE: usize = 10;

/// Integer upscaling that makes a thumbnail about 84 pixels wide (3x for 28x28).
fn thumb_scale(w: usize) -> usize {
    (84 / w.max(1)).max(1)
}

fn grid(title: &str, subtitle: &str, rows: &[Row], w: usize, h: usize) -> Canvas {
    let scale = thumb_scale(w);
    let (tw, th) = (w * scale, h * scale);
    let lines = rows
        .iter()
        .flat_map(|r| r.items.iter().map(|i| i.1.len()))
        .max()
        .unwrap_or(0);
    let cell_w = tw.max(lines.min(1) * 6 * 8) + GAP;
    let cell_h = th + 4 + lines * LINE + GAP;
    let label_w = rows
        .iter()
        .map(|r| Canvas::text_width(&r.label, 2).max(Canvas::text_width(&r.sublabel, 1)))
        .max()
        .unwrap_or(0)
        + 2 * GAP;
    let cols = rows.iter().map(|r| r.items.len()).max().unwrap_or(0);
    let header = 2 * 8 + 6 + 8 + 2 * GAP;
    let width = (2 * MARGIN + label_w + cols * cell_w)
        .max(2 * MARGIN + Canvas::text_width(title, 2))
        .max(2 * MARGIN + Canvas::text_width(subtitle, 1));
    let height = 2 * MARGIN + header + rows.len() * cell_h;
    let mut c = Canvas::new(width, height, PAPER);
    c.text(MARGIN, MARGIN, title, 2, INK);
    c.text(MARGIN, MARGIN + 22, subtitle, 1, FAINT);
    for (r, row) in rows.iter().enumerate() {
        let y = MARGIN + header + r * cell_h;
        c.text(MARGIN, y + th / 2 - 10, &row.label, 2, INK);
        c.text(MARGIN, y + th / 2 + 10, &row.sublabel, 1, FAINT);
        for (i, (img, caption)) in row.items.iter().enumerate() {
            let x = MARGIN + label_w + i * cell_w;
            c.gray(x, y, img, w, h, scale);
            c.frame(x, y, tw, th, FRAME);
            for (l, line) in caption.iter().enumerate() {
                c.text(x, y + th + 4 + l * LINE, line, 1, FAINT);
            }
        }
    }
    c
}

/// Short caption prefixes of the factors.
fn abbreviation(factor: &str) -> &str {
    match factor {
        "size" => "s",
        "rotation" => "r",
        "aspect" => "a",
        "shear" => "sh",
        "offset_x" => "x",
        "offset_y" => "y",
        "outline" => "o",
        "stroke" => "w",
        "intensity" => "i",
        "noise" => "n",
        other => other,
    }
}

/// A factor value in at most 5 characters: integers as such, else 2 decimals (3 significant
/// digits above 10).
pub fn format_value(v: f32) -> String {
    if v == v.round() {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Indices of the factors (other than the class) whose values vary over `rows`, at most two.
fn varying(names: &[String], factors: &[f32]) -> Vec<usize> {
    let k = names.len();
    if k == 0 {
        return Vec::new();
    }
    (0..k)
        .filter(|&j| names[j] != "class")
        .filter(|&j| {
            let mut col = factors.chunks(k).map(|r| r[j]);
            let first = col.next();
            col.any(|v| Some(v) != first)
        })
        .take(2)
        .collect()
}

fn captions(names: &[String], row: &[f32], cols: &[usize]) -> Vec<String> {
    cols.iter()
        .map(|&j| format!("{}{}", abbreviation(&names[j]), format_value(row[j])))
        .collect()
}

/// The dataset's contact sheet: `per_class` training images of every class.
pub fn dataset_sheet(d: &Dataset, title: &str, per_class: usize) -> Canvas {
    let (px, k) = (d.pixels(), d.factor_names.len());
    let split = &d.train;
    let cols = varying(&d.factor_names, &split.factors);
    let rows: Vec<Row> = d
        .class_names
        .iter()
        .enumerate()
        .map(|(label, name)| {
            let idx: Vec<usize> = (0..split.len())
                .filter(|&i| split.labels[i] as usize == label)
                .collect();
            Row {
                label: name.clone(),
                sublabel: format!("{} train", idx.len()),
                items: idx
                    .iter()
                    .take(per_class)
                    .map(|&i| {
                        let cap = if k > 0 {
                            captions(&d.factor_names, &split.factors[i * k..(i + 1) * k], &cols)
                        } else {
                            vec![]
                        };
                        (&split.images[i * px..(i + 1) * px], cap)
                    })
                    .collect(),
            }
        })
        .collect();
    let mut subtitle = format!(
        "{}x{} px, {} train / {} val / {}",
        d.width,
        d.height,
        d.train.len(),
        d.val.len(),
        d.test
            .as_ref()
            .map_or("no test".to_string(), |t| format!("{} test", t.len()))
    );
    if let Some(m) = &d.meta {
        subtitle += &format!(", hash {}, generator {}", m.short_hash(), m.generator);
    }
    if !cols.is_empty() {
        let legend: Vec<String> = cols
            .iter()
            .map(|&j| format!("{}={}", abbreviation(&d.factor_names[j]), d.factor_names[j]))
            .collect();
        subtitle += &format!("; captions: {}", legend.join(", "));
    }
    grid(title, &subtitle, &rows, d.width, d.height)
}

/// The panel's sheet: one row per group, in panel order.
pub fn panel_sheet(p: &PanelData, title: &str) -> Canvas {
    let (px, k) = (p.height * p.width, p.factor_names.len());
    let cols = varying(&p.factor_names, &p.factors);
    let mut rows: Vec<Row> = Vec::new();
    for i in 0..p.len() {
        let item = (
            &p.images[i * px..(i + 1) * px],
            captions(&p.factor_names, &p.factors[i * k..(i + 1) * k], &cols),
        );
        match rows.last_mut() {
            Some(r) if r.label == p.groups[i] => r.items.push(item),
            _ => rows.push(Row {
                label: p.groups[i].clone(),
                sublabel: String::new(),
                items: vec![item],
            }),
        }
    }
    for r in rows.iter_mut() {
        r.sublabel = format!("{} images", r.items.len());
    }
    let subtitle = format!(
        "panel {}: {} images, {}x{} px, generator {}",
        p.meta.name,
        p.len(),
        p.width,
        p.height,
        p.meta.generator
    );
    grid(title, &subtitle, &rows, p.width, p.height)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheet_has_a_row_per_class_and_shows_images() {
        let spec = shapes::SpecFile::from_toml(
            "train = 60\nval = 3\n[factors]\nsize = { min = 0.3, max = 0.9 }",
        )
        .unwrap()
        .resolve()
        .unwrap();
        let d = Dataset::generate(&spec, None, &|_| {});
        let c = dataset_sheet(&d, "t", 8);
        // 8 thumbnails of 84 px plus labels fit; three rows of at least 84 px.
        assert!(c.width > 8 * 84 && c.height > 3 * 84);
        // Thumbnails put white figure pixels on the sheet.
        assert!(c.pixels.chunks(3).filter(|p| *p == [255, 255, 255]).count() > 3 * 8 * 100);
        assert_eq!(varying(&d.factor_names, &d.train.factors), vec![1]);
    }
}
