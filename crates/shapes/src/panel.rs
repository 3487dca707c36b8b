//! Curated image panels for looking inside networks (the thesis's Figures 14-17).
//!
//! The thesis picked its panels by hand from its datasets; here every panel image is drawn on
//! purpose with exact factor values, so a panel is the same for every run and every user.
//!
//! - `thesis-size` (27 images): for each figure, large, medium and small, three images each,
//!   at sizes {0.90, 0.85, 0.80}, {0.65, 0.60, 0.55} and {0.40, 0.35, 0.30} (within the 1.3
//!   range 0.3-0.9). Three sizes per group play the part of the thesis's three images per
//!   group: a filter's response is read on several images, not one.
//! - `thesis-rotation` (21 images), at size 0.7: 4 ellipses (0, 30, 330 and 180 degrees; a
//!   circle looks the same at every angle), rectangles at 0, 30 and 330 degrees (3 each, at the
//!   nominal angle -3, +0 and +3 degrees) and triangles at 0, 30, 330 and 180 degrees (2 each,
//!   at -2 and +2). The small offsets make the images of a group distinct, as the thesis's
//!   picks from a randomly rotated dataset were; the recorded angle is the one drawn.

use crate::factors::{Class, Factors};
use crate::generate::render;

/// One image of a panel.
#[derive(Clone, Debug, PartialEq)]
pub struct PanelItem {
    pub factors: Factors,
    /// Its group, e.g. `ellipse large` or `triangle 30`.
    pub group: String,
    /// A short caption, e.g. `ellipse large 0.85` or `triangle 30 (32)`.
    pub label: String,
}

/// A named, ordered list of images.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub name: &'static str,
    pub items: Vec<PanelItem>,
}

/// `(name, description)` of every panel.
pub const PANELS: &[(&str, &str)] = &[
    (
        "thesis-size",
        "27 images: 3 figures x (large, medium, small) x 3 sizes, for size datasets",
    ),
    (
        "thesis-rotation",
        "21 images: 4 ellipses, rectangles at 0/30/330 deg (3 each), triangles at 0/30/330/180 deg (2 each)",
    ),
];

/// The panel of that name, or `None`.
pub fn find(name: &str) -> Option<Panel> {
    let mut items = Vec::new();
    match name {
        "thesis-size" => {
            let groups = [
                ("large", [0.90, 0.85, 0.80]),
                ("medium", [0.65, 0.60, 0.55]),
                ("small", [0.40, 0.35, 0.30]),
            ];
            for class in Class::ALL {
                for (group, sizes) in groups {
                    for size in sizes {
                        items.push(PanelItem {
                            factors: Factors::new(class, size),
                            group: format!("{class} {group}"),
                            label: format!("{class} {group} {size:.2}"),
                        });
                    }
                }
            }
        }
        "thesis-rotation" => {
            let mut add = |class: Class, nominal: f64, jitter: &[f64]| {
                for j in jitter {
                    let drawn = nominal + j;
                    let group = if class == Class::Ellipse {
                        class.to_string()
                    } else {
                        format!("{class} {nominal}")
                    };
                    items.push(PanelItem {
                        factors: Factors::new(class, 0.7).rotated(drawn),
                        label: format!("{class} {nominal} ({drawn})"),
                        group,
                    });
                }
            };
            for angle in [0.0, 30.0, 330.0, 180.0] {
                add(Class::Ellipse, angle, &[0.0]);
            }
            for angle in [0.0, 30.0, 330.0] {
                add(Class::Rectangle, angle, &[-3.0, 0.0, 3.0]);
            }
            for angle in [0.0, 30.0, 330.0, 180.0] {
                add(Class::Triangle, angle, &[-2.0, 2.0]);
            }
        }
        _ => return None,
    }
    Some(Panel {
        name: PANELS.iter().find(|p| p.0 == name).map(|p| p.0)?,
        items,
    })
}

impl Panel {
    /// Draws every image.
    ///
    /// # Shapes
    /// Returns `[n, side, side]` row-major.
    pub fn render(&self, side: u32) -> Vec<u8> {
        self.items
            .iter()
            .flat_map(|it| render(&it.factors, side))
            .collect()
    }

    /// The concept masks of every item ([`crate::concepts`]), `[n, side * side]` words.
    pub fn masks(&self, side: u32) -> Vec<u16> {
        let px = (side * side) as usize;
        let mut out = vec![0u16; self.items.len() * px];
        for (it, m) in self.items.iter().zip(out.chunks_mut(px)) {
            crate::concepts::masks(
                &crate::figure::Figure::new(&it.factors, side),
                side as usize,
                m,
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panel_sizes_match_the_thesis() {
        let p = find("thesis-size").unwrap();
        assert_eq!(p.items.len(), 27);
        let p = find("thesis-rotation").unwrap();
        assert_eq!(p.items.len(), 21);
        let count = |c: Class| p.items.iter().filter(|i| i.factors.class == c).count();
        assert_eq!(
            (
                count(Class::Ellipse),
                count(Class::Rectangle),
                count(Class::Triangle)
            ),
            (4, 9, 8)
        );
        let tri180: Vec<f64> = p
            .items
            .iter()
            .filter(|i| i.group == "triangle 180")
            .map(|i| i.factors.rotation)
            .collect();
        assert_eq!(tri180, vec![178.0, 182.0]);
        assert!(find("nope").is_none());
    }

    #[test]
    fn panel_images_within_a_group_differ() {
        for name in ["thesis-size", "thesis-rotation"] {
            let p = find(name).unwrap();
            let img = p.render(28);
            for (i, a) in p.items.iter().enumerate() {
                for (j, b) in p.items.iter().enumerate().skip(i + 1) {
                    let circles = name == "thesis-rotation" && a.factors.class == Class::Ellipse;
                    if a.group == b.group && !circles {
                        assert_ne!(
                            img[i * 784..(i + 1) * 784],
                            img[j * 784..(j + 1) * 784],
                            "{name} {} vs {}",
                            a.label,
                            b.label
                        );
                    }
                }
            }
        }
    }
}
