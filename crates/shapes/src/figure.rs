//! Exact geometry of the figures: from [`Factors`] to a convex outline in pixel coordinates.
//!
//! # The definition of size
//! `size` is the radius of the circle, centred on the figure's centroid, that circumscribes
//! the *undeformed* figure, as a fraction of half the image side. With `size = s` on an image of
//! side `W`, that radius is `R = s * W / 2` pixels and:
//! - the ellipse is a circle of radius `R` (area `pi R^2`);
//! - the rectangle is a square of half-side `R / sqrt(2)` (area `2 R^2`);
//! - the triangle is equilateral with circumradius `R`, apex up (area `1.299 R^2`).
//!
//! This is the thesis's "radius as a fraction of the half image" made one definition for all
//! three classes: at the same size every figure, turned any way, lies within the same disc, so
//! `s <= 1` always fits a centred figure and sizes compare across classes by extent. Areas do
//! not match across classes at equal size (a triangle covers 41% of the circle's area).
//!
//! # Deformation, rotation, position
//! The local figure (centroid at the origin, y up) is mapped by `L = Rot(rotation) * Aspect *
//! Shear`, where `Shear = [[1, shear], [0, 1]]` and `Aspect = diag(sqrt(a), 1/sqrt(a))`. Both
//! preserve area, and linear maps keep the centroid at the origin, so the centroid is then
//! translated to the image centre plus the offset. Pixel coordinates have x right, y down, and
//! pixel `(row i, column j)` covers `[j, j+1] x [i, i+1]`.
//!
//! # Outline
//! An outline is the band of width `stroke` inside the contour: for polygons, the region between
//! the polygon and its inward offset by `stroke` (exact); for ellipses, between the ellipse and the
//! ellipse whose principal semi-axes are each shorter by `stroke` (exact for circles, a close
//! approximation of the true parallel curve otherwise). A stroke wider than the figure's
//! inradius fills it.
//!
//! This module must stay pure arithmetic: no randomness, no allocation in the per-image path.

use crate::factors::{Class, Factors};

/// A 2-vector.
pub type P2 = [f64; 2];

/// A convex polygon with at most four vertices.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Poly {
    pub v: [P2; 4],
    pub n: usize,
}

impl Poly {
    fn new(points: &[P2]) -> Poly {
        let mut v = [[0.0; 2]; 4];
        v[..points.len()].copy_from_slice(points);
        Poly { v, n: points.len() }
    }

    /// The vertices.
    pub fn vertices(&self) -> &[P2] {
        &self.v[..self.n]
    }

    /// Signed area (shoelace; positive when counter-clockwise in a y-up frame).
    pub fn signed_area(&self) -> f64 {
        let v = self.vertices();
        let mut a = 0.0;
        for i in 0..v.len() {
            let p = v[i];
            let q = v[(i + 1) % v.len()];
            a += p[0] * q[1] - q[0] * p[1];
        }
        a / 2.0
    }

    /// The polygon moved inwards by `d` along every edge normal, or `None` when nothing is
    /// left. The polygon must be convex and counter-clockwise (y up).
    pub fn inset(&self, d: f64) -> Option<Poly> {
        let v = self.vertices();
        let n = v.len();
        // Each edge i (v[i] -> v[i+1]) as a line `normal . p = c`, moved inwards by d.
        let mut lines = [([0.0; 2], 0.0); 4];
        for (i, line) in lines.iter_mut().enumerate().take(n) {
            let p = v[i];
            let q = v[(i + 1) % n];
            let (ex, ey) = (q[0] - p[0], q[1] - p[1]);
            let len = (ex * ex + ey * ey).sqrt();
            let normal = [-ey / len, ex / len]; // left normal: inward for a CCW polygon
            *line = (normal, normal[0] * p[0] + normal[1] * p[1] + d);
        }
        let mut out = [[0.0; 2]; 4];
        for (i, vertex) in out.iter_mut().enumerate().take(n) {
            let (a, ca) = lines[(i + n - 1) % n];
            let (b, cb) = lines[i];
            let det = a[0] * b[1] - a[1] * b[0];
            *vertex = [(ca * b[1] - cb * a[1]) / det, (a[0] * cb - b[0] * ca) / det];
        }
        let inner = Poly { v: out, n };
        // Past the inradius the offset lines cross: some edge of the result then runs against
        // the edge of the polygon it lies on (for a triangle or square, all of them do).
        let edge = |p: &Poly, i: usize| {
            let (a, b) = (p.v[i], p.v[(i + 1) % n]);
            [b[0] - a[0], b[1] - a[1]]
        };
        let same_way = (0..n).all(|i| {
            let (e, f) = (edge(self, i), edge(&inner, i));
            e[0] * f[0] + e[1] * f[1] > 0.0
        });
        (same_way && inner.signed_area() > 1e-12).then_some(inner)
    }
}

/// An ellipse `{ c + p : p^T Q p <= 1 }` given by its shape matrix `S = Q^-1` (symmetric).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ellipse {
    /// `S = M M^T` for the linear map `M` that takes the unit disc onto the ellipse.
    pub s: [[f64; 2]; 2],
}

impl Ellipse {
    /// Half extents along x and y: `sqrt(S00)`, `sqrt(S11)`.
    pub fn half_extents(&self) -> P2 {
        [self.s[0][0].sqrt(), self.s[1][1].sqrt()]
    }

    /// `Q = S^-1`, the matrix of the quadratic form.
    pub fn quadratic_form(&self) -> [[f64; 2]; 2] {
        let [[a, b], [_, d]] = self.s;
        let det = a * d - b * b;
        [[d / det, -b / det], [-b / det, a / det]]
    }

    /// The ellipse whose principal semi-axes are each shorter by `d`, or `None` if one would
    /// vanish.
    pub fn shrunk(&self, d: f64) -> Option<Ellipse> {
        let [[a, b], [_, c]] = self.s;
        // Eigen-decomposition of the symmetric 2x2 S: eigenvalues are squared semi-axes.
        let mean = (a + c) / 2.0;
        let r = (((a - c) / 2.0).powi(2) + b * b).sqrt();
        let (l1, l2) = (mean + r, (mean - r).max(0.0));
        let (s1, s2) = (l1.sqrt() - d, l2.sqrt() - d);
        if s1 <= 0.0 || s2 <= 0.0 {
            return None;
        }
        // Unit eigenvector of l1.
        let (ux, uy) = if b.abs() > 1e-15 * (a.abs() + c.abs()) {
            let (x, y) = (b, l1 - a);
            let n = (x * x + y * y).sqrt();
            (x / n, y / n)
        } else if a >= c {
            (1.0, 0.0)
        } else {
            (0.0, 1.0)
        };
        let (m1, m2) = (s1 * s1, s2 * s2);
        // S' = m1 u u^T + m2 v v^T with v = u rotated by 90 degrees.
        let s00 = m1 * ux * ux + m2 * uy * uy;
        let s01 = (m1 - m2) * ux * uy;
        let s11 = m1 * uy * uy + m2 * ux * ux;
        Some(Ellipse {
            s: [[s00, s01], [s01, s11]],
        })
    }
}

/// The shape of a figure relative to its centroid, in a y-up frame, in pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
    Polygon(Poly),
    Ellipse(Ellipse),
}

/// A 2x2 matrix, row-major.
pub type M2 = [[f64; 2]; 2];

fn mul(a: M2, b: M2) -> M2 {
    [
        [
            a[0][0] * b[0][0] + a[0][1] * b[1][0],
            a[0][0] * b[0][1] + a[0][1] * b[1][1],
        ],
        [
            a[1][0] * b[0][0] + a[1][1] * b[1][0],
            a[1][0] * b[0][1] + a[1][1] * b[1][1],
        ],
    ]
}

fn apply(m: M2, p: P2) -> P2 {
    [
        m[0][0] * p[0] + m[0][1] * p[1],
        m[1][0] * p[0] + m[1][1] * p[1],
    ]
}

/// Counter-clockwise rotation by `degrees` in a y-up frame.
///
/// Uses `libm` rather than the platform's libm so that the same spec draws the same bytes on
/// every platform.
pub fn rotation_matrix(degrees: f64) -> M2 {
    let t = degrees.to_radians();
    let (s, c) = (libm::sin(t), libm::cos(t));
    [[c, -s], [s, c]]
}

/// `Aspect * Shear`: the deformation applied before the rotation.
pub fn deformation_matrix(aspect: f64, shear: f64) -> M2 {
    let sa = aspect.sqrt();
    mul([[sa, 0.0], [0.0, 1.0 / sa]], [[1.0, shear], [0.0, 1.0]])
}

/// The undeformed figure of a class with circumradius `r` pixels (y up, centroid at origin).
pub fn base_shape(class: Class, r: f64) -> Shape {
    match class {
        Class::Ellipse => Shape::Ellipse(Ellipse {
            s: [[r * r, 0.0], [0.0, r * r]],
        }),
        Class::Rectangle => {
            let h = r / std::f64::consts::SQRT_2;
            Shape::Polygon(Poly::new(&[[h, h], [-h, h], [-h, -h], [h, -h]]))
        }
        Class::Triangle => {
            let (x, y) = (r * 3f64.sqrt() / 2.0, r / 2.0);
            Shape::Polygon(Poly::new(&[[0.0, r], [-x, -y], [x, -y]]))
        }
    }
}

impl Shape {
    /// The shape mapped by the linear map `m` (whose determinant must be positive).
    pub fn transformed(&self, m: M2) -> Shape {
        match self {
            Shape::Polygon(p) => {
                let mut q = *p;
                for v in q.v.iter_mut().take(q.n) {
                    *v = apply(m, *v);
                }
                Shape::Polygon(q)
            }
            Shape::Ellipse(e) => {
                // S' = m S m^T
                let mt = [[m[0][0], m[1][0]], [m[0][1], m[1][1]]];
                Shape::Ellipse(Ellipse {
                    s: mul(mul(m, e.s), mt),
                })
            }
        }
    }

    /// Extents from the centroid: `[left, right, down, up]`, each a non-negative distance in
    /// pixels along -x, +x, -y, +y (y up).
    pub fn extents(&self) -> [f64; 4] {
        match self {
            Shape::Polygon(p) => {
                let mut e = [0.0f64; 4];
                for v in p.vertices() {
                    e[0] = e[0].max(-v[0]);
                    e[1] = e[1].max(v[0]);
                    e[2] = e[2].max(-v[1]);
                    e[3] = e[3].max(v[1]);
                }
                e
            }
            Shape::Ellipse(el) => {
                let [hx, hy] = el.half_extents();
                [hx, hx, hy, hy]
            }
        }
    }
}

/// A figure ready to rasterise: its shape (and inner shape for outlines) relative to the
/// centroid, y up, in pixels, and the centroid's pixel position.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Figure {
    /// Centroid in pixel coordinates (x right, y down).
    pub center: P2,
    pub outer: Shape,
    /// The hole of an outline; `None` for filled figures and strokes wider than the figure.
    pub inner: Option<Shape>,
    /// Foreground level, fraction of 255.
    pub intensity: f64,
}

impl Figure {
    /// Lays out `f` on a square image of side `image_size` pixels.
    pub fn new(f: &Factors, image_size: u32) -> Figure {
        let half = image_size as f64 / 2.0;
        let base = base_shape(f.class, f.size * half);
        let deform = deformation_matrix(f.aspect, f.shear);
        let local = base.transformed(mul(rotation_matrix(f.rotation), deform));
        let inner = if f.outline {
            let d = f.stroke * half;
            match local {
                Shape::Polygon(p) => p.inset(d).map(Shape::Polygon),
                Shape::Ellipse(e) => e.shrunk(d).map(Shape::Ellipse),
            }
        } else {
            None
        };
        Figure {
            center: [half + f.offset_x * half, half - f.offset_y * half],
            outer: local,
            inner,
            intensity: f.intensity,
        }
    }

    /// Bounding box in pixel coordinates: `[x_min, x_max, y_min, y_max]`.
    pub fn bbox(&self) -> [f64; 4] {
        let [l, r, d, u] = self.outer.extents();
        let [cx, cy] = self.center;
        [cx - l, cx + r, cy - u, cy + d]
    }
}

/// The local shape (y up, centroid at the origin, pixels) of `f` at rotation 0.
pub(crate) fn unrotated_shape(f: &Factors, image_size: u32) -> Shape {
    let half = image_size as f64 / 2.0;
    base_shape(f.class, f.size * half).transformed(deformation_matrix(f.aspect, f.shear))
}

/// Rotation angles (degrees, in `[0, 360)`) at which some extent of `shape` is largest.
///
/// For a polygon, every vertex's x and y coordinate is a sinusoid of the angle, so each extent
/// peaks where some vertex points straight along an axis. For an ellipse, the squared half
/// extent is `(S00 + S11)/2 + (S00 - S11)/2 cos 2t - S01 sin 2t`, which peaks at `t*` and
/// `t* + 90`. Together with the ends of an angle range these candidates give the exact worst
/// case over the range.
pub(crate) fn critical_angles(shape: &Shape, out: &mut Vec<f64>) {
    let norm = |deg: f64| deg.rem_euclid(360.0);
    match shape {
        Shape::Polygon(p) => {
            for v in p.vertices() {
                let phi = libm::atan2(v[1], v[0]).to_degrees();
                // x = |v| cos(t + phi), y = |v| sin(t + phi)
                for k in 0..4 {
                    out.push(norm(-phi + 90.0 * k as f64));
                }
            }
        }
        Shape::Ellipse(e) => {
            let [[a, b], [_, d]] = e.s;
            let t = libm::atan2(-b, (a - d) / 2.0).to_degrees() / 2.0;
            for k in 0..4 {
                out.push(norm(t + 90.0 * k as f64));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn base_shapes_have_circumradius_r_and_centroid_at_origin() {
        for class in Class::ALL {
            if let Shape::Polygon(p) = base_shape(class, 10.0) {
                let v = p.vertices();
                for q in v {
                    assert!(close((q[0] * q[0] + q[1] * q[1]).sqrt(), 10.0, 1e-12));
                }
                let cx: f64 = v.iter().map(|q| q[0]).sum::<f64>() / v.len() as f64;
                let cy: f64 = v.iter().map(|q| q[1]).sum::<f64>() / v.len() as f64;
                assert!(close(cx, 0.0, 1e-12) && close(cy, 0.0, 1e-12));
                assert!(p.signed_area() > 0.0, "{class} must be counter-clockwise");
            }
        }
    }

    #[test]
    fn deformation_preserves_area() {
        let Shape::Polygon(p) = base_shape(Class::Triangle, 10.0) else {
            unreachable!()
        };
        let m = mul(rotation_matrix(37.0), deformation_matrix(2.5, -0.7));
        let Shape::Polygon(q) = Shape::Polygon(p).transformed(m) else {
            unreachable!()
        };
        assert!(close(p.signed_area(), q.signed_area(), 1e-9));
    }

    #[test]
    fn inset_of_square_is_smaller_square() {
        let Shape::Polygon(p) = base_shape(Class::Rectangle, 2f64.sqrt() * 5.0) else {
            unreachable!()
        };
        let q = p.inset(1.0).unwrap();
        for v in q.vertices() {
            assert!(close(v[0].abs(), 4.0, 1e-12) && close(v[1].abs(), 4.0, 1e-12));
        }
        assert!(p.inset(5.0).is_none());
        assert!(p.inset(6.0).is_none());
    }

    #[test]
    fn inset_of_equilateral_triangle_stops_at_inradius() {
        let Shape::Polygon(p) = base_shape(Class::Triangle, 10.0) else {
            unreachable!()
        };
        // inradius = R / 2
        let q = p.inset(2.5).unwrap();
        assert!(close(q.signed_area(), p.signed_area() / 4.0, 1e-9));
        assert!(p.inset(5.01).is_none());
    }

    #[test]
    fn shrunk_ellipse_has_shorter_axes() {
        let e = Ellipse {
            s: [[25.0, 0.0], [0.0, 9.0]],
        };
        let Shape::Ellipse(r) = Shape::Ellipse(e).transformed(rotation_matrix(30.0)) else {
            unreachable!()
        };
        let s = r.shrunk(1.0).unwrap();
        let Shape::Ellipse(back) = Shape::Ellipse(s).transformed(rotation_matrix(-30.0)) else {
            unreachable!()
        };
        assert!(close(back.s[0][0], 16.0, 1e-9), "{:?}", back.s);
        assert!(close(back.s[1][1], 4.0, 1e-9));
        assert!(close(back.s[0][1], 0.0, 1e-9));
        assert!(e.shrunk(3.0).is_none());
    }

    #[test]
    fn bbox_of_centred_circle() {
        let f = Factors::new(Class::Ellipse, 0.5);
        let b = Figure::new(&f, 28).bbox();
        assert_eq!(b, [7.0, 21.0, 7.0, 21.0]);
    }

    #[test]
    fn offsets_move_right_and_up() {
        let mut f = Factors::new(Class::Ellipse, 0.2);
        f.offset_x = 0.5;
        f.offset_y = 0.5;
        let fig = Figure::new(&f, 28);
        assert_eq!(fig.center, [21.0, 7.0]);
    }

    #[test]
    fn critical_angles_find_the_extreme_rotation() {
        let f = Factors::new(Class::Rectangle, 1.0);
        let shape = unrotated_shape(&f, 28);
        let mut angles = Vec::new();
        critical_angles(&shape, &mut angles);
        let best = angles
            .iter()
            .map(|&t| shape.transformed(rotation_matrix(t)).extents()[1])
            .fold(0.0, f64::max);
        // A square of circumradius 14 reaches 14 px along x when turned 45 degrees.
        assert!(close(best, 14.0, 1e-9), "{best}");
    }
}
