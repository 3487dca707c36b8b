//! The inner kernel of greedy pruning's search: what one removed filter of layer L-1 does to
//! the logits through the last conv layer, for four of its output channels at once.
//!
//! Why by hand: it fuses a 2D convolution of one input channel into four output channels,
//! ReLU, 2x2 max-pooling and the dense layer, for maps at most 16 wide, entirely in
//! registers; no maintained crate offers such a fused small-map kernel, and calling a GEMM per
//! image and candidate costs more in packing than the arithmetic itself.
//!
//! Layout ("even/odd rows"): a row of a map at most [`ROW`] wide is stored as its even
//! columns in lanes 0..8 and its odd columns in lanes 8..16. The horizontal half of a 2x2 pool
//! is then the maximum of a vector's two halves, and every kernel tap is one plain 16-lane
//! load: for tap column `dx`, [`input_rows`] stores, per padded input row, the 16 values the
//! even and odd output columns read (`x[2i + dx]` and `x[2i + 1 + dx]`).
//!
//! Numerics: fused multiply-adds where the CPU has them. The results round differently from
//! the engine's forward pass (by about 1e-7 relative); [`crate::prune`] certifies every
//! accuracy by re-evaluating near ties with the engine.

/// Lanes of one row in the even/odd layout, and the widest map handled.
pub(crate) const ROW: usize = 16;
/// Lanes of one half (the even or the odd columns).
pub(crate) const HALF: usize = ROW / 2;
/// Output channels per kernel call.
pub(crate) const BLOCK: usize = 4;
/// Most pooled rows handled (maps at most 16 high).
const MAX_OH: usize = ROW / 2;

/// Whether the AVX-512 kernels can run here (checked once).
#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma")
    })
}

/// One row `[w]` (`w <= 16`) in the even/odd layout; lanes past the row are zero.
#[inline]
pub(crate) fn even_odd(row: &[f32]) -> [f32; ROW] {
    assert!(row.len() <= ROW, "row of {} > {ROW}", row.len());
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: AVX-512F is present; the row holds at most ROW values (asserted).
        return unsafe { avx512::even_odd(row) };
    }
    even_odd_portable(row)
}

fn even_odd_portable(row: &[f32]) -> [f32; ROW] {
    let mut padded = [0.0f32; ROW];
    padded[..row.len()].copy_from_slice(row);
    let mut out = [0.0f32; ROW];
    for j in 0..HALF {
        out[j] = padded[2 * j];
        out[HALF + j] = padded[2 * j + 1];
    }
    out
}

/// The removed input channel `x [h, w]`, zero-padded by `k / 2`, as the kernel reads it:
/// `out [(h + k - 1) * k, ROW]`, for padded row `r` and tap column `dx` the values at
/// padded columns `2i + dx` (lanes `i < 8`) and `2i + 1 + dx` (lanes `8 + i`).
pub(crate) fn input_rows(x: &[f32], h: usize, w: usize, k: usize, out: &mut Vec<f32>) {
    assert!(
        w <= ROW && k % 2 == 1 && k <= 15 && x.len() >= h * w,
        "input_rows: {h}x{w}, k {k}"
    );
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: AVX-512F is present; the sizes were asserted above.
        unsafe { avx512::input_rows(x, h, w, k, out) };
        return;
    }
    input_rows_portable(x, h, w, k, out);
}

fn input_rows_portable(x: &[f32], h: usize, w: usize, k: usize, out: &mut Vec<f32>) {
    let p = k / 2;
    let ph = h + k - 1;
    out.clear();
    out.resize(ph * k * ROW, 0.0);
    // Room for the widest padded row read: 2 * 7 + 1 + (k - 1) + 1 <= 32 for k <= 15.
    let mut padded = [0.0f32; 2 * ROW + 16];
    for r in p..p + h {
        padded.fill(0.0);
        padded[p..p + w].copy_from_slice(&x[(r - p) * w..(r - p + 1) * w]);
        for dx in 0..k {
            let dst = &mut out[(r * k + dx) * ROW..][..ROW];
            for j in 0..HALF {
                dst[j] = padded[2 * j + dx];
                dst[HALF + j] = padded[2 * j + 1 + dx];
            }
        }
    }
}

/// For [`BLOCK`] output channels of the last conv layer: the pre-activation minus one removed
/// input channel's contribution, ReLU, 2x2 max-pool, and the dense layer, into `out[b][c]`
/// (class `c`, `c < kk`).
///
/// # Shapes
/// `z[b] [h, ROW]` each channel's cached pre-activation in the even/odd layout, `xr` from
/// [`input_rows`], `taps [k * k, BLOCK]` the weights from the removed channel into each
/// channel, tap by tap (zeros for an unused slot), `fc[b] [kk, h / 2, HALF]` the channel's
/// dense weights, rows zero-padded. The hot loop runs over exact-size chunks, so it has no
/// bounds checks and its accumulators stay in registers.
#[allow(clippy::too_many_arguments)]
pub(crate) fn block(
    z: [&[f32]; BLOCK],
    xr: &[f32],
    taps: &[f32],
    k: usize,
    h: usize,
    fc: [&[f32]; BLOCK],
    kk: usize,
    out: &mut [[f32; 16]; BLOCK],
) {
    let oh = h / 2;
    assert!(
        h <= ROW && kk <= 16 && k >= 1,
        "block: map {h} high, {kk} classes"
    );
    assert!(xr.len() >= (h + k - 1) * k * ROW && taps.len() >= k * k * BLOCK);
    for b in 0..BLOCK {
        assert!(z[b].len() >= h * ROW && fc[b].len() >= kk * oh * HALF);
    }
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU has the features (checked just above), and the slice lengths the
        // kernel reads within were asserted above.
        unsafe { avx512::block(z, xr, taps, k, h, fc, kk, out) };
        return;
    }
    block_portable(z, xr, taps, k, h, fc, kk, out);
}

/// The same as [`block`] in plain Rust, vectorised by the compiler (AVX2, NEON, ...).
#[allow(clippy::too_many_arguments)]
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx512dq+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn block_portable(
    z: [&[f32]; BLOCK],
    xr: &[f32],
    taps: &[f32],
    k: usize,
    h: usize,
    fc: [&[f32]; BLOCK],
    kk: usize,
    out: &mut [[f32; 16]; BLOCK],
) {
    let oh = h / 2;
    // Per channel and pooled row: the row pair's lane-wise maximum after ReLU.
    let mut rows = [[[0.0f32; ROW]; MAX_OH]; BLOCK];
    let row = |v: &[f32], at: usize| -> [f32; ROW] { v[at..at + ROW].try_into().expect("row") };
    for oy in 0..oh {
        let mut a0 = [[0.0f32; ROW]; BLOCK];
        let mut a1 = [[0.0f32; ROW]; BLOCK];
        for b in 0..BLOCK {
            a0[b] = row(z[b], 2 * oy * ROW);
            a1[b] = row(z[b], (2 * oy + 1) * ROW);
        }
        // Taps (dy, dx) in order read consecutive rows of `xr`, from row 2*oy*k for output
        // row 2*oy and from row (2*oy + 1)*k for the next.
        let x0s = &xr[2 * oy * k * ROW..][..k * k * ROW];
        let x1s = &xr[(2 * oy + 1) * k * ROW..][..k * k * ROW];
        for ((x0, x1), tb) in x0s
            .chunks_exact(ROW)
            .zip(x1s.chunks_exact(ROW))
            .zip(taps[..k * k * BLOCK].chunks_exact(BLOCK))
        {
            for b in 0..BLOCK {
                let w = tb[b];
                let nw = -w;
                for i in 0..ROW {
                    if multiversion::target::target_cfg_f!(target_feature = "fma") {
                        a0[b][i] = nw.mul_add(x0[i], a0[b][i]);
                        a1[b][i] = nw.mul_add(x1[i], a1[b][i]);
                    } else {
                        a0[b][i] -= w * x0[i];
                        a1[b][i] -= w * x1[i];
                    }
                }
            }
        }
        // The vertical half of the pool, and the ReLU, lane by lane (comparisons, not
        // f32::max: no NaN can occur here, and its NaN handling costs more than the pool).
        for b in 0..BLOCK {
            let mut m = [0.0f32; ROW];
            for i in 0..ROW {
                let v = if a0[b][i] > a1[b][i] {
                    a0[b][i]
                } else {
                    a1[b][i]
                };
                m[i] = if v > 0.0 { v } else { 0.0 };
            }
            rows[b][oy] = m;
        }
    }
    // The horizontal half of the pool (even against odd columns), then the dense layer.
    for b in 0..BLOCK {
        let mut pooled = [[0.0f32; HALF]; MAX_OH];
        for (p, m) in pooled.iter_mut().zip(&rows[b]).take(oh) {
            let (even, odd) = m.split_at(HALF);
            for i in 0..HALF {
                p[i] = if even[i] > odd[i] { even[i] } else { odd[i] };
            }
        }
        for c in 0..kk {
            let mut s = [0.0f32; HALF];
            for (oy, p) in pooled.iter().enumerate().take(oh) {
                let wr: &[f32; HALF] = fc[b][(c * oh + oy) * HALF..][..HALF]
                    .try_into()
                    .expect("weights");
                for i in 0..HALF {
                    s[i] += wr[i] * p[i];
                }
            }
            out[b][c] = s.iter().sum();
        }
    }
}

/// [`block`] written with AVX-512 intrinsics: the compiler's vectoriser spills the sixteen
/// accumulators and gathers across channels for the pool, at several times the cost.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{BLOCK, HALF, MAX_OH, ROW};
    use std::arch::x86_64::*;

    /// Lanes `0..len` set.
    fn mask(len: usize) -> __mmask16 {
        ((1u32 << len) - 1) as __mmask16
    }

    /// # Safety
    /// The CPU must support AVX-512F; `row.len() <= ROW`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn even_odd(row: &[f32]) -> [f32; ROW] {
        let v = _mm512_maskz_loadu_ps(mask(row.len()), row.as_ptr());
        let idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        let mut out = [0.0f32; ROW];
        _mm512_storeu_ps(out.as_mut_ptr(), _mm512_permutexvar_ps(idx, v));
        out
    }

    /// # Safety
    /// The CPU must support AVX-512F; `w <= ROW`, `k` odd and at most 15, `x.len() >= h * w`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn input_rows(x: &[f32], h: usize, w: usize, k: usize, out: &mut Vec<f32>) {
        let p = k / 2;
        let ph = h + k - 1;
        out.clear();
        out.resize(ph * k * ROW, 0.0);
        // Per tap column: where each lane reads in the unpadded row (16: the zero vector).
        let mut idx = [_mm512_setzero_si512(); 15];
        for (dx, slot) in idx.iter_mut().enumerate().take(k) {
            let mut v = [16i32; ROW];
            for (lane, at) in v.iter_mut().enumerate() {
                let col = 2 * (lane % HALF) + lane / HALF + dx; // padded column
                if col >= p && col - p < w {
                    *at = (col - p) as i32;
                }
            }
            *slot = _mm512_loadu_si512(v.as_ptr().cast());
        }
        let zero = _mm512_setzero_ps();
        let m = mask(w);
        let dst = out.as_mut_ptr();
        for y in 0..h {
            let v = _mm512_maskz_loadu_ps(m, x.as_ptr().add(y * w));
            for (dx, ix) in idx.iter().enumerate().take(k) {
                let r = _mm512_permutex2var_ps(v, *ix, zero);
                _mm512_storeu_ps(dst.add(((y + p) * k + dx) * ROW), r);
            }
        }
    }

    /// # Safety
    /// The CPU must support AVX-512F and FMA, and the lengths [`super::block`] asserts must
    /// hold: `z[b] >= h * ROW`, `xr >= (h + k - 1) * k * ROW`, `taps >= k * k * BLOCK`,
    /// `fc[b] >= kk * (h / 2) * HALF`, `h <= ROW`, `kk <= 16`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn block(
        z: [&[f32]; BLOCK],
        xr: &[f32],
        taps: &[f32],
        k: usize,
        h: usize,
        fc: [&[f32]; BLOCK],
        kk: usize,
        out: &mut [[f32; 16]; BLOCK],
    ) {
        let oh = h / 2;
        debug_assert!(oh <= MAX_OH);
        let zero = _mm512_setzero_ps();
        let mut dacc = [[_mm256_setzero_ps(); 16]; BLOCK];
        let kk2 = k * k;
        for oy in 0..oh {
            let mut a0 = [zero; BLOCK];
            let mut a1 = [zero; BLOCK];
            for b in 0..BLOCK {
                let zp = z[b].as_ptr();
                a0[b] = _mm512_loadu_ps(zp.add(2 * oy * ROW));
                a1[b] = _mm512_loadu_ps(zp.add((2 * oy + 1) * ROW));
            }
            let x0p = xr.as_ptr().add(2 * oy * k * ROW);
            let x1p = xr.as_ptr().add((2 * oy + 1) * k * ROW);
            let tp = taps.as_ptr();
            for t in 0..kk2 {
                let x0 = _mm512_loadu_ps(x0p.add(t * ROW));
                let x1 = _mm512_loadu_ps(x1p.add(t * ROW));
                for b in 0..BLOCK {
                    let w = _mm512_set1_ps(*tp.add(t * BLOCK + b));
                    a0[b] = _mm512_fnmadd_ps(w, x0, a0[b]);
                    a1[b] = _mm512_fnmadd_ps(w, x1, a1[b]);
                }
            }
            for b in 0..BLOCK {
                // Vertical half of the pool and ReLU on 16 lanes, then even against odd.
                let m = _mm512_max_ps(_mm512_max_ps(a0[b], a1[b]), zero);
                let lo = _mm512_castps512_ps256(m);
                let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(m)));
                let p = _mm256_max_ps(lo, hi);
                let fp = fc[b].as_ptr();
                for (c, acc) in dacc[b].iter_mut().enumerate().take(kk) {
                    let w = _mm256_loadu_ps(fp.add((c * oh + oy) * HALF));
                    *acc = _mm256_fmadd_ps(w, p, *acc);
                }
            }
        }
        for b in 0..BLOCK {
            for c in 0..kk {
                let mut lanes = [0.0f32; HALF];
                _mm256_storeu_ps(lanes.as_mut_ptr(), dacc[b][c]);
                out[b][c] = lanes.iter().sum();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same computation in plain loops over NCHW maps.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        z: &[f32],
        x: &[f32],
        taps: &[f32],
        k: usize,
        h: usize,
        w: usize,
        fc: &[f32],
        kk: usize,
    ) -> Vec<f32> {
        let p = k as isize / 2;
        let mut c = z.to_vec();
        for y in 0..h {
            for xx in 0..w {
                let mut s = 0.0;
                for dy in 0..k {
                    for dx in 0..k {
                        let (iy, ix) =
                            (y as isize + dy as isize - p, xx as isize + dx as isize - p);
                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                            s += taps[dy * k + dx] * x[iy as usize * w + ix as usize];
                        }
                    }
                }
                c[y * w + xx] -= s;
            }
        }
        let (oh, ow) = (h / 2, w / 2);
        (0..kk)
            .map(|cl| {
                let mut s = 0.0;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let v = c[2 * oy * w + 2 * ox]
                            .max(c[2 * oy * w + 2 * ox + 1])
                            .max(c[(2 * oy + 1) * w + 2 * ox])
                            .max(c[(2 * oy + 1) * w + 2 * ox + 1])
                            .max(0.0);
                        s += fc[(cl * oh + oy) * ow + ox] * v;
                    }
                }
                s
            })
            .collect()
    }

    #[test]
    fn layouts_match_the_portable_versions() {
        let x: Vec<f32> = (0..16 * 16).map(|i| i as f32 + 1.0).collect();
        for w in [1, 7, 11, 14, 16] {
            for h in [1, 5, 14] {
                assert_eq!(even_odd(&x[..w]), even_odd_portable(&x[..w]));
                for k in [1, 3, 5, 15] {
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    input_rows(&x[..h * w], h, w, k, &mut a);
                    input_rows_portable(&x[..h * w], h, w, k, &mut b);
                    assert_eq!(a, b, "{h}x{w} k{k}");
                }
            }
        }
    }

    #[test]
    fn block_matches_plain_loops() {
        let mut seed = 7u32;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for &(h, w, k, kk) in &[
            (14, 14, 3, 3),
            (13, 11, 5, 4),
            (16, 16, 1, 2),
            (6, 9, 7, 3),
            (16, 15, 15, 5),
        ] {
            let (oh, ow) = (h / 2, w / 2);
            let zs: Vec<Vec<f32>> = (0..BLOCK)
                .map(|_| (0..h * w).map(|_| rnd()).collect())
                .collect();
            let x: Vec<f32> = (0..h * w).map(|_| rnd().abs()).collect();
            let taps: Vec<Vec<f32>> = (0..BLOCK)
                .map(|_| (0..k * k).map(|_| rnd()).collect())
                .collect();
            let fcs: Vec<Vec<f32>> = (0..BLOCK)
                .map(|_| (0..kk * oh * ow).map(|_| rnd()).collect())
                .collect();
            // To the kernel's layouts.
            let zeo: Vec<Vec<f32>> = zs
                .iter()
                .map(|z| z.chunks(w).flat_map(even_odd).collect())
                .collect();
            let mut xr = Vec::new();
            input_rows(&x, h, w, k, &mut xr);
            let fcp: Vec<Vec<f32>> = fcs
                .iter()
                .map(|f| {
                    let mut v = vec![0.0; kk * oh * HALF];
                    for c in 0..kk {
                        for oy in 0..oh {
                            v[(c * oh + oy) * HALF..][..ow]
                                .copy_from_slice(&f[(c * oh + oy) * ow..][..ow]);
                        }
                    }
                    v
                })
                .collect();
            let mut out = [[0.0f32; 16]; BLOCK];
            let tb: Vec<f32> = (0..k * k)
                .flat_map(|t| taps.iter().map(move |tp| tp[t]))
                .collect();
            block(
                std::array::from_fn(|b| zeo[b].as_slice()),
                &xr,
                &tb,
                k,
                h,
                std::array::from_fn(|b| fcp[b].as_slice()),
                kk,
                &mut out,
            );
            let mut portable = [[0.0f32; 16]; BLOCK];
            block_portable(
                std::array::from_fn(|b| zeo[b].as_slice()),
                &xr,
                &tb,
                k,
                h,
                std::array::from_fn(|b| fcp[b].as_slice()),
                kk,
                &mut portable,
            );
            for b in 0..BLOCK {
                let want = naive(&zs[b], &x, &taps[b], k, h, w, &fcs[b], kk);
                for c in 0..kk {
                    for got in [out[b][c], portable[b][c]] {
                        assert!(
                            (got - want[c]).abs() <= 1e-4 * (1.0 + want[c].abs()),
                            "{h}x{w} k{k}: {got} vs {}",
                            want[c]
                        );
                    }
                }
            }
        }
    }
}
