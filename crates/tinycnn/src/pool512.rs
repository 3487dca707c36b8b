//! Max-pooling and its backward pass in AVX-512, one pooled row per vector.
//!
//! The pooled rows are short (14 and 7 values for the 28x28 and 14x14 maps), so the compiled
//! loops of [`crate::ops::maxpool`] ran 4 lanes at a time with scalar tails, and pooling and
//! its backward pass took 13% of a 16-16's training (`perf record`, one thread). Here a row of
//! up to 16 pooled values is one masked vector: the two input rows are loaded masked, split
//! into even and odd columns by one permute each, and compared; the backward pass interleaves
//! the routed gradients back the same way. Masked loads never touch what the mask leaves out,
//! so no row reads past its end.
//!
//! Hand-written because the compiler does not turn a loop over a runtime row length into
//! masked vectors, and no crate offers pooling kernels on our layout. Every value is chosen by
//! exactly the comparisons of the portable loops (the same strict `>` in the same order), so
//! the results are the same bits (tests compare the two on ties, NaNs and signed zeros).
//!
//! Must not allocate, and must not change which input wins.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// The lanes of a split: the even and the odd of 32 values held in two vectors.
#[cfg(target_arch = "x86_64")]
const EVEN: [i32; 16] = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30];
#[cfg(target_arch = "x86_64")]
const ODD: [i32; 16] = [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31];
/// The lanes of an interleave: `a0 b0 a1 b1 ...` from the first and the last 8 of two vectors.
#[cfg(target_arch = "x86_64")]
const LOW: [i32; 16] = [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23];
#[cfg(target_arch = "x86_64")]
const HIGH: [i32; 16] = [8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31];

/// The first `n` lanes of 16 (`n` may exceed 16).
#[inline(always)]
fn lanes(n: usize) -> u16 {
    if n >= 16 {
        u16::MAX
    } else {
        (1u16 << n) - 1
    }
}

/// [`crate::ops::maxpool`]: `y [planes, h, w]` to `p [planes, h/2, w/2]` and, unless `None`
/// (a pass with no backward), `arg`, the winner of each 2x2 block (0..4, row-major; ties to
/// the first). Without `arg`, each choice is one `vmaxps`: `if a > b { a } else { b }` is
/// exactly what it computes, NaNs and signed zeros included.
///
/// # Safety
/// The CPU must run AVX-512 F, BW and VL.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub unsafe fn maxpool(
    y: &[f32],
    (planes, h, w): (usize, usize, usize),
    p: &mut [f32],
    mut arg: Option<&mut [u8]>,
) {
    let (oh, ow) = (h / 2, w / 2);
    assert!(y.len() >= planes * h * w && p.len() >= planes * oh * ow);
    assert!(arg.as_ref().is_none_or(|a| a.len() >= planes * oh * ow));
    let (even, odd) = (
        _mm512_loadu_epi32(EVEN.as_ptr()),
        _mm512_loadu_epi32(ODD.as_ptr()),
    );
    let (zero, one) = (_mm512_set1_epi32(0), _mm512_set1_epi32(1));
    let (two, three) = (_mm512_set1_epi32(2), _mm512_set1_epi32(3));
    // Counted by hand: neither a division per row nor an iterator adapter (which is not
    // inlined into a `target_feature` function) is free at 7 values a row.
    let (mut pl, mut oy) = (0, 0);
    for row in 0..planes * oh {
        let r0 = y.as_ptr().add(pl * h * w + 2 * oy * w);
        let r1 = r0.add(w);
        let o = row * ow;
        let mut x = 0;
        while x < ow {
            let (first, second) = (
                lanes(2 * (ow - x)),
                lanes((2 * (ow - x)).saturating_sub(16)),
            );
            // The two columns of each block: t0 t1 from the top row, u0 u1 from the bottom.
            let a = _mm512_maskz_loadu_ps(first, r0.add(2 * x));
            let b = _mm512_maskz_loadu_ps(second, r0.add(2 * x + 16));
            let (t0, t1) = (
                _mm512_permutex2var_ps(a, even, b),
                _mm512_permutex2var_ps(a, odd, b),
            );
            let a = _mm512_maskz_loadu_ps(first, r1.add(2 * x));
            let b = _mm512_maskz_loadu_ps(second, r1.add(2 * x + 16));
            let (u0, u1) = (
                _mm512_permutex2var_ps(a, even, b),
                _mm512_permutex2var_ps(a, odd, b),
            );
            let out = lanes(ow - x);
            let Some(arg) = arg.as_deref_mut() else {
                let (m1, m2) = (_mm512_max_ps(t1, t0), _mm512_max_ps(u1, u0));
                _mm512_mask_storeu_ps(p.as_mut_ptr().add(o + x), out, _mm512_max_ps(m2, m1));
                x += 16;
                continue;
            };
            // As the portable loop: if t1 > t0 { t1 } else { t0 }, the same for u, then
            // if m2 > m1 { m2 } else { m1 }; `_CMP_GT_OQ` is false on NaN, as `>` is.
            let c1 = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(t1, t0);
            let m1 = _mm512_mask_blend_ps(c1, t0, t1);
            let i1 = _mm512_mask_blend_epi32(c1, zero, one);
            let c2 = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(u1, u0);
            let m2 = _mm512_mask_blend_ps(c2, u0, u1);
            let i2 = _mm512_mask_blend_epi32(c2, two, three);
            let c = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(m2, m1);
            _mm512_mask_storeu_ps(
                p.as_mut_ptr().add(o + x),
                out,
                _mm512_mask_blend_ps(c, m1, m2),
            );
            // Narrowed in a register, then stored: Zen 4 runs a masked narrowing store
            // (`vpmovdb` to memory) many times slower than the two steps.
            let i = _mm512_cvtepi32_epi8(_mm512_mask_blend_epi32(c, i1, i2));
            _mm_mask_storeu_epi8(arg.as_mut_ptr().add(o + x).cast(), out, i);
            x += 16;
        }
        (pl, oy) = if oy + 1 == oh {
            (pl + 1, 0)
        } else {
            (pl, oy + 1)
        };
    }
}

/// [`crate::ops::unpool_relu`]: each pooled gradient `dp` goes to its winner (`arg`) where
/// the pooled value is positive; every other value of `dz [planes, h, w]` becomes +0.0.
///
/// # Safety
/// The CPU must run AVX-512 F, BW and VL.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub unsafe fn unpool_relu(
    dp: &[f32],
    pooled: &[f32],
    arg: &[u8],
    (planes, h, w): (usize, usize, usize),
    dz: &mut [f32],
) {
    let (oh, ow) = (h / 2, w / 2);
    let m = planes * oh * ow;
    assert!(dp.len() >= m && pooled.len() >= m && arg.len() >= m);
    assert!(dz.len() >= planes * h * w);
    let (low, high) = (
        _mm512_loadu_epi32(LOW.as_ptr()),
        _mm512_loadu_epi32(HIGH.as_ptr()),
    );
    let zero = _mm512_setzero_ps();
    let which = |a: __m512i, i: i32, g: __m512| {
        _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(a, _mm512_set1_epi32(i)), g)
    };
    // Counted by hand: neither a division per row nor an iterator adapter (which is not
    // inlined into a `target_feature` function) is free at 7 values a row.
    let (mut pl, mut oy) = (0, 0);
    for row in 0..planes * oh {
        let top = dz.as_mut_ptr().add(pl * h * w + 2 * oy * w);
        let o = row * ow;
        let mut x = 0;
        while x < ow {
            let k = lanes(ow - x);
            let g = _mm512_maskz_loadu_ps(k, dp.as_ptr().add(o + x));
            let p = _mm512_maskz_loadu_ps(k, pooled.as_ptr().add(o + x));
            let a = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, arg.as_ptr().add(o + x).cast()));
            // if p > 0.0 { g } else { 0.0 }, then g at the winner and +0.0 elsewhere.
            let g = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(p, zero), g);
            let (first, second) = (
                lanes(2 * (ow - x)),
                lanes((2 * (ow - x)).saturating_sub(16)),
            );
            for (dst, left, right) in [
                (top, which(a, 0, g), which(a, 1, g)),
                (top.add(w), which(a, 2, g), which(a, 3, g)),
            ] {
                let dst = dst.add(2 * x);
                _mm512_mask_storeu_ps(dst, first, _mm512_permutex2var_ps(left, low, right));
                _mm512_mask_storeu_ps(
                    dst.add(16),
                    second,
                    _mm512_permutex2var_ps(left, high, right),
                );
            }
            x += 16;
        }
        if w % 2 == 1 {
            *top.add(w - 1) = 0.0;
            *top.add(2 * w - 1) = 0.0;
        }
        (pl, oy) = if oy + 1 == oh {
            (pl + 1, 0)
        } else {
            (pl, oy + 1)
        };
    }
    if h % 2 == 1 {
        for pl in 0..planes {
            dz[pl * h * w + (h - 1) * w..][..w].fill(0.0);
        }
    }
}

/// Whether [`unpool_relu_transposed`] takes a layer of `c` filters on `h x w` maps: whole
/// vectors of filters and no floored row or column.
pub fn transposes(c: usize, h: usize, w: usize) -> bool {
    c.is_multiple_of(16) && h.is_multiple_of(2) && w.is_multiple_of(2)
}

/// [`unpool_relu`] of `c` filters on `b` maps of `h x w`, written transposed: `dzt [b*h*w, c]`
/// is `dz [c, b*h*w]^T`, the layout the direct weight gradient reads, without writing `dz`
/// and transposing it (on a 32-32's first layer, the transpose alone took 4% of a training
/// step, `perf record` on an Intel Xeon). For 16 filters by 16 windows at a time, the routed
/// gradients (`dp` where the pooled value is positive, else +0) and the winners are
/// transposed in registers ([`transpose16`]), then each window writes its four positions'
/// rows: the gradient where it won, +0 elsewhere. The same values as [`unpool_relu`]'s, only
/// moved, so the same bits.
///
/// # Safety
/// The CPU must run AVX-512 F, BW and VL.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub unsafe fn unpool_relu_transposed(
    dp: &[f32],
    pooled: &[f32],
    arg: &[u8],
    (c, b, h, w): (usize, usize, usize, usize),
    dzt: &mut [f32],
) {
    let (oh, ow) = (h / 2, w / 2);
    let windows = b * oh * ow;
    assert!(
        transposes(c, h, w),
        "unpool_relu_transposed: {c} filters of {h}x{w}"
    );
    assert!(dp.len() >= c * windows && pooled.len() >= c * windows && arg.len() >= c * windows);
    assert!(dzt.len() >= b * h * w * c);
    let zero = _mm512_setzero_ps();
    for f0 in (0..c).step_by(16) {
        for w0 in (0..windows).step_by(16) {
            let m = lanes(windows - w0);
            let (mut g, mut a) = ([zero; 16], [_mm512_setzero_si512(); 16]);
            for r in 0..16 {
                let at = (f0 + r) * windows + w0;
                // SAFETY: windows `w0..w0 + 16` of filter `f0 + r`, masked to those that exist
                // (asserted lengths); masked loads touch no other lane.
                unsafe {
                    let v = _mm512_maskz_loadu_ps(m, pooled.as_ptr().add(at));
                    let d = _mm512_maskz_loadu_ps(m, dp.as_ptr().add(at));
                    // if p > 0.0 { g } else { 0.0 }; `_CMP_GT_OQ` is false on NaN, as `>` is.
                    g[r] = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, zero), d);
                    let x = _mm_maskz_loadu_epi8(m, arg.as_ptr().add(at).cast());
                    a[r] = _mm512_cvtepu8_epi32(x);
                }
            }
            let g = transpose16(g);
            let a = transpose16(a.map(|x| _mm512_castsi512_ps(x)));
            // The first window's image and row, then counted along (a division per window
            // cost more than its four stores).
            let (mut img, rest) = (w0 / (oh * ow), w0 % (oh * ow));
            let (mut oy, mut ox) = (rest / ow, rest % ow);
            for (&g, &a) in g.iter().zip(&a).take(windows - w0) {
                let top = img * h * w + 2 * oy * w + 2 * ox;
                (ox, oy) = if ox + 1 < ow {
                    (ox + 1, oy)
                } else {
                    (0, oy + 1)
                };
                (img, oy) = if oy < oh { (img, oy) } else { (img + 1, 0) };
                let a = _mm512_castps_si512(a);
                for (s, pos) in [top, top + 1, top + w, top + w + 1].into_iter().enumerate() {
                    let won = _mm512_cmpeq_epi32_mask(a, _mm512_set1_epi32(s as i32));
                    // SAFETY: `pos < b*h*w` (a position of window `win`), 16 filters from
                    // `f0 < c` (asserted length).
                    unsafe {
                        let out = dzt.as_mut_ptr().add(pos * c + f0);
                        _mm512_storeu_ps(out, _mm512_maskz_mov_ps(won, g));
                    }
                }
            }
        }
    }
}

/// The transpose of a 16 x 16 block of `f32` held in 16 vectors: `out[j][i] = rows[i][j]`.
/// Four rounds of in-register shuffles (Intel's optimisation manual, "Matrix transposition";
/// the 8 x 8 version of [`crate::transpose`] widened): pairs of rows interleaved by 32 bits,
/// then by 64, then 128-bit lanes gathered twice.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn transpose16(rows: [__m512; 16]) -> [__m512; 16] {
    // Per 128-bit lane k: t[2i] = r[2i][4k], r[2i+1][4k], r[2i][4k+1], r[2i+1][4k+1]; t[2i+1]
    // the same of columns 4k+2 and 4k+3.
    let t: [__m512; 16] = std::array::from_fn(|j| {
        let (a, b) = (rows[j / 2 * 2], rows[j / 2 * 2 + 1]);
        if j % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    // u[4q + i]: column 4k + i of rows 4q..4q + 4, per lane k.
    let u: [__m512; 16] = std::array::from_fn(|j| {
        let (q, i) = (j / 4, j % 4);
        let (a, b) = (
            _mm512_castps_pd(t[4 * q + i / 2]),
            _mm512_castps_pd(t[4 * q + 2 + i / 2]),
        );
        _mm512_castpd_ps(if i % 2 == 0 {
            _mm512_unpacklo_pd(a, b)
        } else {
            _mm512_unpackhi_pd(a, b)
        })
    });
    // Lanes 0 and 2 (or 1 and 3) of rows 0..8, then of rows 8..16.
    let v: [__m512; 16] = std::array::from_fn(|j| {
        let (half, odd, i) = (j / 8, j / 4 % 2, j % 4);
        let (a, b) = (u[8 * half + i], u[8 * half + 4 + i]);
        if odd == 0 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xDD>(a, b)
        }
    });
    // Column 4k + i: lane k of u[i], u[4 + i], u[8 + i], u[12 + i].
    std::array::from_fn(|col| {
        let (k, i) = (col / 4, col % 4);
        let (a, b) = (v[4 * (k % 2) + i], v[8 + 4 * (k % 2) + i]);
        if k < 2 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xDD>(a, b)
        }
    })
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::testkit::bits;

    /// Values with many ties, signed zeros and NaNs, so every branch of the choice is taken.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                match s % 11 {
                    0 => -0.0,
                    1 => 0.0,
                    2 => f32::NAN,
                    3 => 1.0,
                    _ => ((s >> 20) % 7) as f32 - 3.0,
                }
            })
            .collect()
    }

    const SHAPES: [(usize, usize, usize); 9] = [
        (3, 4, 9),
        (3, 28, 28),
        (5, 14, 14),
        (2, 7, 7),
        (1, 1, 1),
        (2, 3, 5),
        (4, 6, 40),
        (1, 9, 33),
        (2, 2, 32),
    ];

    #[test]
    fn maxpool_has_the_portable_bits() {
        if !std::arch::is_x86_feature_detected!("avx512bw") {
            return;
        }
        for (i, &(planes, h, w)) in SHAPES.iter().enumerate() {
            let y = values(planes * h * w, 1 + i as u64);
            let m = planes * (h / 2) * (w / 2);
            let (mut p, mut a) = (vec![7.0; m + 3], vec![9u8; m + 3]);
            let (mut q, mut b) = (p.clone(), a.clone());
            let mut values_only = p.clone();
            // SAFETY: checked above.
            unsafe {
                maxpool(&y, (planes, h, w), &mut p[..m], Some(&mut a[..m]));
                maxpool(&y, (planes, h, w), &mut values_only[..m], None);
            }
            crate::ops::maxpool_body(&y, planes, h, w, &mut q[..m], &mut b[..m]);
            assert_eq!(bits(&p), bits(&q), "{planes}x{h}x{w}");
            assert_eq!(bits(&values_only), bits(&q), "{planes}x{h}x{w}, no winners");
            assert_eq!(a, b, "{planes}x{h}x{w}");
        }
    }

    #[test]
    fn unpool_relu_has_the_portable_bits() {
        if !std::arch::is_x86_feature_detected!("avx512bw") {
            return;
        }
        for (i, &(planes, h, w)) in SHAPES.iter().enumerate() {
            let m = planes * (h / 2) * (w / 2);
            let (dp, pooled) = (values(m, 40 + i as u64), values(m, 80 + i as u64));
            let arg: Vec<u8> = (0..m).map(|j| ((j * 7 + i) % 4) as u8).collect();
            let n = planes * h * w;
            let (mut got, mut want) = (vec![f32::NAN; n + 5], vec![f32::NAN; n + 5]);
            // SAFETY: checked above.
            unsafe { unpool_relu(&dp, &pooled, &arg, (planes, h, w), &mut got[..n]) };
            crate::ops::unpool_relu_body(&dp, &pooled, &arg, planes, h, w, &mut want[..n]);
            assert_eq!(bits(&got), bits(&want), "{planes}x{h}x{w}");
        }
    }

    #[test]
    fn transpose16_transposes() {
        if !std::arch::is_x86_feature_detected!("avx512bw") {
            return;
        }
        let m: Vec<f32> = (0..256).map(|i| i as f32).collect();
        // SAFETY: checked above.
        let t = unsafe {
            let rows = std::array::from_fn(|i| _mm512_loadu_ps(m.as_ptr().add(16 * i)));
            transpose16(rows)
        };
        for (j, col) in t.iter().enumerate() {
            let mut out = [0.0f32; 16];
            // SAFETY: 16 values.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr(), *col) };
            let want: Vec<f32> = (0..16).map(|i| m[16 * i + j]).collect();
            assert_eq!(out.to_vec(), want, "column {j}");
        }
    }

    /// The transposed unpooling against the plain one transposed, on the engine's shapes and
    /// on window counts that leave a partial vector, NaNs and signed zeros included.
    #[test]
    fn unpool_relu_transposed_is_unpool_relu_transposed() {
        if !std::arch::is_x86_feature_detected!("avx512bw") {
            return;
        }
        for (i, &(c, b, h, w)) in [
            (32, 4, 28, 28),
            (16, 1, 28, 28),
            (16, 3, 6, 10),
            (48, 2, 2, 2),
        ]
        .iter()
        .enumerate()
        {
            assert!(transposes(c, h, w));
            let m = c * b * (h / 2) * (w / 2);
            let (dp, pooled) = (values(m, 140 + i as u64), values(m, 180 + i as u64));
            let arg: Vec<u8> = (0..m).map(|j| ((j * 7 + i) % 4) as u8).collect();
            let n = b * h * w;
            let mut dz = vec![f32::NAN; c * n];
            crate::ops::unpool_relu_body(&dp, &pooled, &arg, c * b, h, w, &mut dz);
            let mut want = vec![0.0; n * c];
            crate::transpose::transpose(&dz, (c, n), &mut want);
            let mut got = vec![f32::NAN; n * c + 3];
            // SAFETY: checked above.
            unsafe { unpool_relu_transposed(&dp, &pooled, &arg, (c, b, h, w), &mut got[..n * c]) };
            assert_eq!(bits(&got[..n * c]), bits(&want), "{c} filters, {b}x{h}x{w}");
            assert!(got[n * c..].iter().all(|v| v.is_nan()), "wrote past dzt");
        }
        assert!(!transposes(8, 28, 28) && !transposes(16, 7, 7));
    }
}
