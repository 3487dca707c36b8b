//! Activation maps brought to the image's resolution as Network Dissection does it (Bau et al.
//! 2017, section 2.2): bilinear interpolation with each unit anchored at the centre of its
//! receptive field, so that for a map half the image's side unit `i` sits at image coordinate
//! `2 i + 1`.
//!
//! Only resampling; must not threshold or count.

use rayon::prelude::*;
use tinycnn::{Model, Scaling};

/// Where an image pixel falls between two map units.
#[derive(Clone, Copy, Debug)]
struct Interp {
    lo: usize,
    hi: usize,
    t: f32,
}

impl Interp {
    /// For each of `side` image pixels, its two map units (of `n`) and the weight of the
    /// second: `u = (p + 0.5) * n / side - 0.5`, clamped to the map.
    fn table(side: usize, n: usize) -> Vec<Interp> {
        let s = side as f64 / n as f64;
        (0..side)
            .map(|p| {
                let u = ((p as f64 + 0.5) / s - 0.5).clamp(0.0, (n - 1) as f64);
                let lo = u.floor() as usize;
                Interp {
                    lo,
                    hi: (lo + 1).min(n - 1),
                    t: (u - lo as f64) as f32,
                }
            })
            .collect()
    }
}

/// Upsampling of `[h, w]` maps to `[side, side]`, its tables computed once. Separable: the
/// rows first, then the columns of the rows, which is the same arithmetic as interpolating
/// the two rows and then between them (so bit for bit the same result), in loops over
/// contiguous memory that vectorise.
#[derive(Clone, Debug)]
pub struct Upsampler {
    h: usize,
    w: usize,
    side: usize,
    rows: Vec<Interp>,
    cols: Vec<Interp>,
    /// `[h, side]`: the map's rows at the image's width.
    wide: Vec<f32>,
}

impl Upsampler {
    pub fn new(h: usize, w: usize, side: usize) -> Upsampler {
        Upsampler {
            h,
            w,
            side,
            rows: Interp::table(side, h),
            cols: Interp::table(side, w),
            wide: vec![0.0; h * side],
        }
    }

    /// Whether the maps already have the image's size (nothing to do).
    pub fn is_identity(&self) -> bool {
        self.h == self.side && self.w == self.side
    }

    /// One map `[h, w]` into `out [side, side]`.
    pub fn run(&mut self, map: &[f32], out: &mut [f32]) {
        if self.is_identity() {
            out.copy_from_slice(map);
            return;
        }
        separable(
            map,
            (self.w, self.side),
            (&self.rows, &self.cols),
            &mut self.wide,
            out,
        );
    }
}

/// [`Upsampler::run`]'s two passes, for the widest vectors the CPU has.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn separable(
    map: &[f32],
    (w, side): (usize, usize),
    (rows, cols): (&[Interp], &[Interp]),
    wide: &mut [f32],
    out: &mut [f32],
) {
    for (src, dst) in map.chunks_exact(w).zip(wide.chunks_exact_mut(side)) {
        for (d, x) in dst.iter_mut().zip(cols) {
            *d = src[x.lo] * (1.0 - x.t) + src[x.hi] * x.t;
        }
    }
    for (dst, y) in out.chunks_exact_mut(side).zip(rows) {
        let (top, bottom) = (&wide[y.lo * side..][..side], &wide[y.hi * side..][..side]);
        let (a, b) = (1.0 - y.t, y.t);
        for ((d, &t), &u) in dst.iter_mut().zip(top).zip(bottom) {
            *d = t * a + u * b;
        }
    }
}

/// Bilinear upsampling of one `[h, w]` map to `[side, side]` (see [`Upsampler`]).
pub fn upsample(map: &[f32], h: usize, w: usize, side: usize, out: &mut [f32]) {
    Upsampler::new(h, w, side).run(map, out);
}

/// Per conv layer, every filter's map after the activation upsampled to the image:
/// `[layer][n, F, side * side]` for `images [n, side, side]`. For a few images (the sheet's);
/// a whole split's maps are large, and [`super::kept`] does not keep them.
pub fn upsampled_maps(model: &Model, images: &[u8], scaling: Scaling) -> Vec<Vec<f32>> {
    const CHUNK: usize = 16;
    let arch = &model.arch;
    let (side, px) = (arch.height, arch.height * arch.width);
    let n = images.len() / px;
    let shapes = arch.layers();
    let mut up: Vec<Vec<f32>> = shapes.iter().map(|s| vec![0.0; n * s.cout * px]).collect();
    let mut per_chunk: Vec<Vec<&mut [f32]>> = (0..n.div_ceil(CHUNK)).map(|_| Vec::new()).collect();
    for (u, s) in up.iter_mut().zip(&shapes) {
        for (c, slice) in u.chunks_mut(CHUNK * s.cout * px).enumerate() {
            per_chunk[c].push(slice);
        }
    }
    per_chunk
        .into_par_iter()
        .zip(images.par_chunks(CHUNK * px))
        .for_each(|(outs, chunk)| {
            let mut post = vec![Vec::new(); shapes.len()];
            tinycnn::train::capture_post_into(model, chunk, scaling, &mut post);
            for ((out, p), s) in outs.into_iter().zip(&post).zip(&shapes) {
                let mut u = Upsampler::new(s.h, s.w, side);
                for (src, dst) in p.chunks(s.hw()).zip(out.chunks_mut(px)) {
                    u.run(src, dst);
                }
            }
        });
    up
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling_anchors_units_at_their_receptive_field_centres() {
        // The identity at the same size.
        let map: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let mut out = vec![0.0; 16];
        upsample(&map, 4, 4, 4, &mut out);
        assert_eq!(out, map);
        // A 2x2 map on a 4x4 image: units sit at image coordinates 1 and 3, so pixel centres
        // 0.5 and 1.5 clamp to the first unit's row and column... up to a quarter of the way.
        let map = [0.0f32, 4.0, 8.0, 12.0];
        let mut out = vec![0.0; 16];
        upsample(&map, 2, 2, 4, &mut out);
        assert_eq!(out[0], 0.0, "clamped at the border");
        assert_eq!(out[1], 1.0, "a quarter of the way to the next column");
        assert_eq!(out[2], 3.0);
        assert_eq!(out[3], 4.0);
        assert_eq!(out[4], 2.0, "a quarter of the way down");
        assert_eq!(out[15], 12.0);
    }

    #[test]
    fn the_separable_passes_equal_the_two_dimensional_formula() {
        let (h, w, side) = (7, 5, 14);
        let map: Vec<f32> = (0..h * w)
            .map(|v| ((v * 37) % 11) as f32 * 0.3 - 1.0)
            .collect();
        let mut got = vec![0.0; side * side];
        upsample(&map, h, w, side, &mut got);
        let (rows, cols) = (Interp::table(side, h), Interp::table(side, w));
        for (r, y) in rows.iter().enumerate() {
            for (c, x) in cols.iter().enumerate() {
                let top = map[y.lo * w + x.lo] * (1.0 - x.t) + map[y.lo * w + x.hi] * x.t;
                let bottom = map[y.hi * w + x.lo] * (1.0 - x.t) + map[y.hi * w + x.hi] * x.t;
                let want = top * (1.0 - y.t) + bottom * y.t;
                assert_eq!(got[r * side + c].to_bits(), want.to_bits(), "({r}, {c})");
            }
        }
    }
}
