//! `shapelab inspect`: what a dataset or panel file holds, as text or JSON.
//!
//! The [`Summary`] struct *is* the JSON schema of `inspect --json`; its text rendering is a
//! view of the same numbers, never computed separately.

use serde::Serialize;

use crate::data::dataset::{Dataset, DatasetMeta, Split};
use crate::data::panelfile::{PanelData, PanelMeta};

/// Statistics of one factor over one split.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    pub min: f32,
    pub max: f32,
    pub mean: f64,
}

fn stats(values: impl Iterator<Item = f32>) -> Option<Stats> {
    let (mut min, mut max, mut sum, mut n) = (f32::INFINITY, f32::NEG_INFINITY, 0.0f64, 0usize);
    for v in values {
        min = min.min(v);
        max = max.max(v);
        sum += v as f64;
        n += 1;
    }
    (n > 0).then(|| Stats {
        min,
        max,
        mean: sum / n as f64,
    })
}

/// Counts of one split.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SplitSummary {
    pub name: String,
    pub total: usize,
    /// Images per class, in label order.
    pub per_class: Vec<usize>,
    /// Mean pixel value (0-255) over the split.
    pub mean_pixel: f64,
}

/// One factor over both splits.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FactorSummary {
    pub name: String,
    pub train: Option<Stats>,
    pub val: Option<Stats>,
    /// `None` as well when the dataset has no test split.
    pub test: Option<Stats>,
}

/// What `inspect` reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Summary {
    Dataset {
        path: String,
        height: usize,
        width: usize,
        class_names: Vec<String>,
        splits: Vec<SplitSummary>,
        factors: Vec<FactorSummary>,
        meta: Option<DatasetMeta>,
        contact_sheet: Option<String>,
    },
    Panel {
        path: String,
        height: usize,
        width: usize,
        class_names: Vec<String>,
        images: usize,
        /// `(group, count)` in panel order.
        groups: Vec<(String, usize)>,
        meta: PanelMeta,
        contact_sheet: Option<String>,
    },
}

fn split_summary(name: &str, s: &Split, classes: usize) -> SplitSummary {
    let mut per_class = vec![0; classes];
    for &l in &s.labels {
        per_class[l as usize] += 1;
    }
    let sum: u64 = s.images.iter().map(|&p| p as u64).sum();
    SplitSummary {
        name: name.into(),
        total: s.len(),
        per_class,
        mean_pixel: if s.images.is_empty() {
            0.0
        } else {
            sum as f64 / s.images.len() as f64
        },
    }
}

/// Up to 4 decimals, trailing zeros dropped.
fn short(v: f32) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

impl Summary {
    /// Summarises a dataset read from `path`.
    pub fn of_dataset(d: &Dataset, path: &str, contact_sheet: Option<String>) -> Summary {
        let k = d.factor_names.len();
        let column = |s: &Split, j: usize| stats(s.factors.chunks(k).map(move |r| r[j]));
        Summary::Dataset {
            path: path.into(),
            height: d.height,
            width: d.width,
            class_names: d.class_names.clone(),
            splits: d
                .parts()
                .into_iter()
                .map(|(part, s)| split_summary(part.name(), s, d.class_names.len()))
                .collect(),
            factors: d
                .factor_names
                .iter()
                .enumerate()
                .map(|(j, name)| FactorSummary {
                    name: name.clone(),
                    train: column(&d.train, j),
                    val: column(&d.val, j),
                    test: d.test.as_ref().and_then(|t| column(t, j)),
                })
                .collect(),
            meta: d.meta.clone(),
            contact_sheet,
        }
    }

    /// Summarises a panel read from `path`.
    pub fn of_panel(p: &PanelData, path: &str, contact_sheet: Option<String>) -> Summary {
        let mut groups: Vec<(String, usize)> = Vec::new();
        for g in &p.groups {
            match groups.last_mut() {
                Some((name, n)) if name == g => *n += 1,
                _ => groups.push((g.clone(), 1)),
            }
        }
        Summary::Panel {
            path: path.into(),
            height: p.height,
            width: p.width,
            class_names: p.class_names.clone(),
            images: p.len(),
            groups,
            meta: p.meta.clone(),
            contact_sheet,
        }
    }

    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        match self {
            Summary::Dataset {
                path,
                height,
                width,
                class_names,
                splits,
                factors,
                meta,
                contact_sheet,
            } => {
                out += &format!(
                    "{path}: dataset, {width}x{height} px, {} classes\n",
                    class_names.len()
                );
                if let Some(m) = meta {
                    let name = m.name.as_deref().unwrap_or("unnamed spec");
                    out += &format!(
                        "  {name}, hash {}, generator {}, shapelab {}\n",
                        m.short_hash(),
                        m.generator,
                        m.shapelab_version
                    );
                } else {
                    out += "  not made by shapelab (no spec recorded)\n";
                }
                let cw = class_names
                    .iter()
                    .map(|c| crate::text::width(c))
                    .max()
                    .unwrap_or(0)
                    .max(7);
                out += &format!("\n  {:<7}", "split");
                for c in class_names {
                    out += &format!(" {c:>cw$}");
                }
                out += &format!(" {:>cw$}  {:>10}\n", "total", "mean pixel");
                for s in splits {
                    out += &format!("  {:<7}", s.name);
                    for n in &s.per_class {
                        out += &format!(" {n:>cw$}");
                    }
                    out += &format!(" {:>cw$}  {:>10.1}\n", s.total, s.mean_pixel);
                }
                if !factors.is_empty() {
                    out += &format!(
                        "\n  {:<10} {:>21}  {:>21}  {:>21}\n",
                        "factor", "train min..max", "val min..max", "test min..max"
                    );
                    for f in factors {
                        let range = |s: &Option<Stats>| match s {
                            Some(s) if s.min == s.max => format!("{} (fixed)", s.min),
                            Some(s) => format!("{}..{}", short(s.min), short(s.max)),
                            None => "-".into(),
                        };
                        out += &format!(
                            "  {:<10} {:>21}  {:>21}  {:>21}\n",
                            f.name,
                            range(&f.train),
                            range(&f.val),
                            range(&f.test)
                        );
                    }
                }
                if let Some(p) = contact_sheet {
                    out += &format!("\n  contact sheet: {p}\n");
                }
            }
            Summary::Panel {
                path,
                height,
                width,
                images,
                groups,
                meta,
                contact_sheet,
                ..
            } => {
                out += &format!(
                    "{path}: panel {}, {images} images, {width}x{height} px, generator {}\n\n",
                    meta.name, meta.generator
                );
                let gw = groups
                    .iter()
                    .map(|g| crate::text::width(&g.0))
                    .max()
                    .unwrap_or(5)
                    .max(5);
                out += &format!("  {:<gw$}  images\n", "group");
                for (g, n) in groups {
                    out += &format!("  {g:<gw$}  {n:>6}\n");
                }
                if let Some(p) = contact_sheet {
                    out += &format!("\n  contact sheet: {p}\n");
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_ranges_are_computed() {
        let spec = shapes::SpecFile::from_toml(
            "train = 31\nval = 10\n[factors]\nsize = { min = 0.3, max = 0.9 }",
        )
        .unwrap()
        .resolve()
        .unwrap();
        let d = Dataset::generate(&spec, Some("t".into()), &|_| {});
        let Summary::Dataset {
            splits, factors, ..
        } = Summary::of_dataset(&d, "x.npz", None)
        else {
            unreachable!()
        };
        assert_eq!(splits[0].per_class, vec![11, 10, 10]);
        assert_eq!(splits[1].total, 10);
        let size = factors
            .iter()
            .find(|f| f.name == "size")
            .unwrap()
            .train
            .clone()
            .unwrap();
        assert!(size.min >= 0.3 && size.max <= 0.9 && size.min < size.max);
        let want = d.train.factors.chunks(11).map(|r| r[1] as f64).sum::<f64>() / 31.0;
        assert!((size.mean - want).abs() < 1e-9);
        let mean_px =
            d.train.images.iter().map(|&p| p as f64).sum::<f64>() / d.train.images.len() as f64;
        assert!((splits[0].mean_pixel - mean_px).abs() < 1e-9);
    }
}
