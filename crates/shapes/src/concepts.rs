//! Concept masks: which pixels of an image belong to the figure's interior, its outline, its
//! edges by the direction they face, its corners and the background. They are computed from
//! the same geometry ([`Figure`]) the image is drawn from, so they are exact where a
//! hand-labelled corpus (Network Dissection's Broden; Bau et al. 2017) can only be approximate.
//!
//! A pixel is judged by its centre `p`, through the signed distance `d(p)` to the figure's
//! contour (negative inside):
//! - **interior**: `d < 0`, inside the contour (for an outline figure, the region it encloses);
//! - **outline**: `|d| <= EDGE_BAND`, a band [`EDGE_BAND`] pixels wide on each side of the
//!   contour;
//! - **edge-E, edge-NE, ..., edge-SE**: the outline pixels by the direction of the contour's
//!   *outward* normal at the nearest contour point, in 8 bins of 45 degrees centred on east
//!   (right), north-east, north (up), ... in the image as seen. Polarity counts: a bright
//!   figure's left edge faces west, its right edge east;
//! - **corner**: within [`CORNER_RADIUS`] pixels of a vertex (rectangles and triangles;
//!   ellipses have none);
//! - **background**: `d >= 0`, outside the contour.
//!
//! For polygons `d` is exact (the distance to the nearest edge or vertex). For an ellipse it
//! is the first-order estimate `(f - 1) / |grad f|` with `f(p) = sqrt(p^T Q p)`, exact for
//! circles and within a small fraction of a pixel of the true distance across the band for the
//! aspect ratios the specs allow; the normal is `Q p`, exact at the contour.
//!
//! Pure arithmetic like [`crate::figure`]: no randomness, no allocation per pixel.

use crate::figure::{Figure, Shape, P2};

/// Half-width of the outline band, in pixels.
pub const EDGE_BAND: f64 = 1.0;

/// Radius around a vertex counted as its corner, in pixels.
pub const CORNER_RADIUS: f64 = 2.5;

/// Concepts per image.
pub const NUM_CONCEPTS: usize = 12;

/// The concepts, in mask order (bit `c` of a pixel's mask word is concept `c`).
pub const CONCEPT_NAMES: [&str; NUM_CONCEPTS] = [
    "interior",
    "outline",
    "edge-E",
    "edge-NE",
    "edge-N",
    "edge-NW",
    "edge-W",
    "edge-SW",
    "edge-S",
    "edge-SE",
    "corner",
    "background",
];

/// Index of the first edge bin in [`CONCEPT_NAMES`].
pub const FIRST_EDGE: usize = 2;
/// Index of `corner` and `background`.
pub const CORNER: usize = 10;
pub const BACKGROUND: usize = 11;

/// The signed distance from `p` (local frame, y up) to the contour of `shape`, and the
/// outward unit normal at the nearest contour point.
fn distance(shape: &Shape, p: P2) -> (f64, P2) {
    match shape {
        Shape::Polygon(poly) => {
            let v = poly.vertices();
            let n = v.len();
            // Inside: the largest signed distance to the edge lines (all negative); outside:
            // the distance to the nearest point of the boundary.
            let (mut inside_d, mut inside_n) = (f64::NEG_INFINITY, [0.0, 0.0]);
            let (mut out_d, mut out_n) = (f64::INFINITY, [0.0, 0.0]);
            let mut inside = true;
            for i in 0..n {
                let (a, b) = (v[i], v[(i + 1) % n]);
                let (ex, ey) = (b[0] - a[0], b[1] - a[1]);
                let len = (ex * ex + ey * ey).sqrt();
                // Counter-clockwise in a y-up frame: the outward normal is the right normal.
                let normal = [ey / len, -ex / len];
                let (px, py) = (p[0] - a[0], p[1] - a[1]);
                let line = normal[0] * px + normal[1] * py;
                if line > 0.0 {
                    inside = false;
                }
                if line > inside_d {
                    (inside_d, inside_n) = (line, normal);
                }
                // Nearest point of the segment.
                let t = ((px * ex + py * ey) / (len * len)).clamp(0.0, 1.0);
                let (dx, dy) = (px - t * ex, py - t * ey);
                let dist = (dx * dx + dy * dy).sqrt();
                if dist < out_d {
                    let nn = if t > 0.0 && t < 1.0 || dist == 0.0 {
                        normal
                    } else {
                        [dx / dist, dy / dist] // at a vertex: away from it
                    };
                    (out_d, out_n) = (dist, nn);
                }
            }
            if inside {
                (inside_d, inside_n)
            } else {
                (out_d, out_n)
            }
        }
        Shape::Ellipse(e) => {
            let q = e.quadratic_form();
            let qp = [
                q[0][0] * p[0] + q[0][1] * p[1],
                q[1][0] * p[0] + q[1][1] * p[1],
            ];
            let f = (p[0] * qp[0] + p[1] * qp[1]).sqrt();
            let g = (qp[0] * qp[0] + qp[1] * qp[1]).sqrt();
            if f == 0.0 || g == 0.0 {
                // The centre: as deep as the nearest point of the contour, whichever way.
                let r = e.half_extents();
                return (-r[0].min(r[1]), [1.0, 0.0]);
            }
            // grad f = Q p / f, so (f - 1) / |grad f| = (f - 1) f / |Q p|.
            ((f - 1.0) * f / g, [qp[0] / g, qp[1] / g])
        }
    }
}

/// The edge bin (0 = east, counter-clockwise in 45-degree steps) of an outward normal given in
/// the y-up frame.
pub fn edge_bin(normal: P2) -> usize {
    let angle = normal[1].atan2(normal[0]).to_degrees();
    ((angle / 45.0).round() as i64).rem_euclid(8) as usize
}

/// The concept masks of `fig` on a `side x side` image, as one word per pixel whose bit `c`
/// is concept `c` of [`CONCEPT_NAMES`].
///
/// # Shapes
/// `out`: `[side * side]`, row-major (row = y down), overwritten.
pub fn masks(fig: &Figure, side: usize, out: &mut [u16]) {
    assert_eq!(out.len(), side * side, "output must be side x side");
    let [cx, cy] = fig.center;
    let vertices: &[P2] = match &fig.outer {
        Shape::Polygon(p) => p.vertices(),
        Shape::Ellipse(_) => &[],
    };
    for row in 0..side {
        for col in 0..side {
            let p = [col as f64 + 0.5 - cx, cy - (row as f64 + 0.5)];
            let (d, normal) = distance(&fig.outer, p);
            let mut word = 0u16;
            if d < 0.0 {
                word |= 1 << 0;
            } else {
                word |= 1 << BACKGROUND;
            }
            if d.abs() <= EDGE_BAND {
                word |= 1 << 1;
                word |= 1 << (FIRST_EDGE + edge_bin(normal));
            }
            let near = |v: &P2| (v[0] - p[0]).hypot(v[1] - p[1]) <= CORNER_RADIUS;
            if vertices.iter().any(near) {
                word |= 1 << CORNER;
            }
            out[row * side + col] = word;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::factors::{Class, Factors};

    fn of(f: &Factors, side: usize) -> Vec<u16> {
        let mut out = vec![0u16; side * side];
        masks(&Figure::new(f, side as u32), side, &mut out);
        out
    }

    fn count(m: &[u16], c: usize) -> usize {
        m.iter().filter(|&&w| w >> c & 1 == 1).count()
    }

    #[test]
    fn the_interior_has_the_figure_area() {
        // A mask judged by pixel centres counts lattice points, whose number for one placement
        // is off by up to half the perimeter; over placements shifted uniformly within a pixel
        // its mean is the area exactly. So the mean over an 8 x 8 grid of sub-pixel shifts
        // must be within 2% of the analytic area, at circumradius R: circle pi R^2, square
        // 2 R^2, triangle 1.299 R^2.
        for (class, k) in [
            (Class::Ellipse, std::f64::consts::PI),
            (Class::Rectangle, 2.0),
            (Class::Triangle, 3.0 * 3f64.sqrt() / 4.0),
        ] {
            for (size, rotation, aspect) in [(0.7, 0.0, 1.0), (0.55, 27.0, 1.0), (0.8, 63.0, 1.5)] {
                let side = 28;
                let mut total = 0;
                for shift in 0..64 {
                    let mut f = Factors::new(class, size);
                    f.rotation = rotation;
                    f.aspect = aspect;
                    // Offsets are fractions of half the image: 14 px here.
                    f.offset_x = (shift % 8) as f64 / 8.0 / 14.0;
                    f.offset_y = (shift / 8) as f64 / 8.0 / 14.0;
                    total += count(&of(&f, side), 0);
                }
                let r = size * side as f64 / 2.0;
                let want = k * r * r;
                let got = total as f64 / 64.0;
                assert!(
                    (got - want).abs() / want < 0.02,
                    "{class:?} size {size} rotation {rotation}: {got} against {want}"
                );
            }
        }
    }

    #[test]
    fn edge_bins_lie_where_their_normal_points() {
        // A centred circle: each edge pixel's bin is the direction from the centre to it.
        let f = Factors::new(Class::Ellipse, 0.8);
        let side = 28;
        let m = of(&f, side);
        let mut seen = [0usize; 8];
        for (i, &w) in m.iter().enumerate() {
            let (x, y) = (
                (i % side) as f64 + 0.5 - 14.0,
                14.0 - ((i / side) as f64 + 0.5),
            );
            for (b, n) in seen.iter_mut().enumerate() {
                if w >> (FIRST_EDGE + b) & 1 == 1 {
                    *n += 1;
                    let angle = y.atan2(x).to_degrees();
                    let off = ((angle - 45.0 * b as f64 + 540.0) % 360.0) - 180.0;
                    assert!(off.abs() <= 22.5 + 1e-9, "bin {b} at ({x}, {y})");
                    assert_eq!(w & 2, 2, "an edge pixel is in the outline");
                }
            }
        }
        assert!(seen.iter().all(|&n| n > 10), "{seen:?}");
        // A square: its left edge faces west, its right edge east; no diagonal bins away from
        // the corners.
        let f = Factors::new(Class::Rectangle, 0.7);
        let m = of(&f, side);
        let at = |row: usize, col: usize| m[row * side + col];
        let h = 0.7 * 14.0 / 2f64.sqrt(); // half side 6.93: edges at 7.07 and 20.93
        assert!(h > 6.5);
        assert_eq!(at(14, 7) >> (FIRST_EDGE + 4) & 1, 1, "left edge: west");
        assert_eq!(at(14, 20) >> FIRST_EDGE & 1, 1, "right edge: east");
        assert_eq!(at(7, 14) >> (FIRST_EDGE + 2) & 1, 1, "top edge: north");
        assert_eq!(at(14, 14), 1, "the centre is interior only");
        assert_eq!(at(0, 0), 1 << BACKGROUND);
        assert_eq!(count(&m, CORNER) > 0, true);
        assert_eq!(
            count(&of(&Factors::new(Class::Ellipse, 0.7), side), CORNER),
            0
        );
        // A triangle pointing down: its top edge faces north, its left edge south-west, its
        // right edge south-east (normals at 90, 210 and 330 degrees).
        let mut f = Factors::new(Class::Triangle, 0.7);
        f.rotation = 180.0;
        let m = of(&f, side);
        let bin = |row: usize, col: usize| {
            (0..8).find(|b| m[row * side + col] >> (FIRST_EDGE + b) & 1 == 1)
        };
        assert_eq!(bin(8, 14), Some(2));
        assert_eq!(bin(15, 8), Some(5));
        assert_eq!(bin(15, 19), Some(7));
        assert_eq!(bin(15, 14), None, "inside, away from the edges");
    }

    #[test]
    fn a_rotated_figure_has_rotated_masks() {
        // A triangle turned a quarter about the image centre (a pixel corner, so pixel centres
        // map onto pixel centres): its masks are the upright masks turned a quarter, with the
        // edge bins turned two steps.
        let side = 28;
        let mut f = Factors::new(Class::Triangle, 0.613);
        let upright = of(&f, side);
        f.rotation = 90.0;
        let turned = of(&f, side);
        let mut differ = 0;
        for row in 0..side {
            for col in 0..side {
                // A counter-clockwise quarter turn (y up) sends (x, y) to (-y, x): pixel
                // (row, col) goes to (side - 1 - col, row).
                let w = upright[row * side + col];
                let mut want = w & !(0xff << FIRST_EDGE);
                for b in 0..8 {
                    if w >> (FIRST_EDGE + b) & 1 == 1 {
                        want |= 1 << (FIRST_EDGE + (b + 2) % 8);
                    }
                }
                if turned[(side - 1 - col) * side + row] != want {
                    differ += 1;
                }
            }
        }
        // Pixels exactly on a bin boundary or band edge may round either way.
        assert!(differ <= 4, "{differ} pixels differ");
    }
}
