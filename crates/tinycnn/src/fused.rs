//! The inner kernel of greedy pruning's search: what one removed filter of layer L-1 does to
//! the logits through the last conv layer, for eight (or four) of its output channels at once;
//! and, when the filter goes for good, the updated pre-activations.
//!
//! Why by hand: it fuses a 2D convolution of one input channel into eight output channels,
//! ReLU, 2x2 max-pooling and the dense layer, for maps at most 16 wide, entirely in
//! registers; no maintained crate offers such a fused small-map kernel, and calling a GEMM per
//! image and candidate costs more in packing than the arithmetic itself. Eight channels give
//! sixteen independent accumulators (two rows each), enough to hide the multiply-add latency;
//! two channels are pooled in one vector, which halves the pooling and dense work. The
//! AVX-512 version is specialised for the common kernel sizes and class counts, so its loops
//! unroll and its dense sums stay in registers.
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
/// Most pooled rows handled (maps at most 16 high).
const MAX_OH: usize = ROW / 2;

/// Whether the AVX-512 kernels run here: the kernels' version ([`crate::isa::isa`]) is.
#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    crate::isa::isa() == crate::isa::Isa::Avx512
}

/// Selects the kernels an AVX2-only CPU runs ([`crate::isa::Isa::portable`]) for the rest of
/// the process, for the engine and pruning's fused kernel: for tests and for comparing the
/// two. Returns false, changing nothing, once a kernel has run (the choice is made once).
/// The engine never reads the environment; the `shapelab` binary calls this when
/// `TINYCNN_PORTABLE` is set.
pub fn use_portable_kernels() -> bool {
    crate::isa::choose(crate::isa::Isa::portable()).is_ok()
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

/// The inverse of [`even_odd`]: one row in the even/odd layout back to `out [w]`.
pub(crate) fn from_even_odd(eo: &[f32], out: &mut [f32]) {
    assert!(eo.len() == ROW && out.len() <= ROW);
    for (x, v) in out.iter_mut().enumerate() {
        *v = eo[x / 2 + (x % 2) * HALF];
    }
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
    // Every row is written below but the padding rows, zeroed here (no fresh buffer per call).
    out.resize(ph * k * ROW, 0.0);
    out[..p * k * ROW].fill(0.0);
    out[(p + h) * k * ROW..].fill(0.0);
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

/// For `B` output channels of the last conv layer (`B` is 4 or 8): the pre-activation minus
/// one removed input channel's contribution, ReLU, 2x2 max-pool, and the dense layer, into
/// `out[b][c]` (class `c`, `c < kk`). When `znew` is not empty, the updated pre-activations
/// are also written to it, `[B, h, ROW]` in the even/odd layout (removing the channel for
/// good); lanes past the map's width hold unspecified finite values there, which the
/// zero-padded dense weights ignore.
///
/// # Shapes
/// `z[b] [h, ROW]` each channel's cached pre-activation in the even/odd layout, `xr` from
/// [`input_rows`], `taps [k * k, B]` the weights from the removed channel into each
/// channel, tap by tap (zeros for an unused slot), `fc [B / 2, kk, h / 2, ROW]` the dense
/// weights of channel pairs (see [`pair_dense`]). The hot loop runs over exact-size chunks, so
/// it has no bounds checks and its accumulators stay in registers.
#[allow(clippy::too_many_arguments)]
pub(crate) fn block<const B: usize>(
    z: [&[f32]; B],
    xr: &[f32],
    taps: &[f32],
    k: usize,
    h: usize,
    fc: &[f32],
    kk: usize,
    out: &mut [[f32; 16]; B],
    znew: &mut [f32],
) {
    let oh = h / 2;
    assert!(
        h <= ROW && kk <= 16 && k >= 1 && (B == 4 || B == 8),
        "block: map {h} high, {kk} classes, {B} channels"
    );
    assert!(xr.len() >= (h + k - 1) * k * ROW && taps.len() >= k * k * B);
    assert!(znew.is_empty() || znew.len() >= B * h * ROW);
    assert!(fc.len() >= B / 2 * kk * oh * ROW);
    for zb in z {
        assert!(zb.len() >= h * ROW);
    }
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU has the features (checked just above), and the slice lengths the
        // kernel reads and writes within were asserted above.
        unsafe {
            if znew.is_empty() {
                avx512::dispatch::<B, false>(z, xr, taps, k, h, fc, kk, out, znew)
            } else {
                avx512::dispatch::<B, true>(z, xr, taps, k, h, fc, kk, out, znew)
            }
        };
        return;
    }
    block_portable(z, xr, taps, k, h, fc, kk, out, znew);
}

/// Dense weights for [`block`]: `fc[b] [kk, h / 2, HALF]` per channel (pooled rows,
/// zero-padded; an empty slice for an unused slot) to `[B / 2, kk, h / 2, ROW]`, channel
/// `2j` in lanes `0..8` and `2j + 1` in lanes `8..16` of pair `j`. Pooling two channels into
/// one vector halves the pool and dense work of the kernel.
pub(crate) fn pair_dense<const B: usize>(fc: [&[f32]; B], kk: usize, h: usize) -> Vec<f32> {
    let oh = h / 2;
    let mut out = vec![0.0f32; B / 2 * kk * oh * ROW];
    for (b, w) in fc.iter().enumerate() {
        if w.is_empty() {
            continue;
        }
        for c in 0..kk {
            for oy in 0..oh {
                let at = ((b / 2 * kk + c) * oh + oy) * ROW + (b % 2) * HALF;
                out[at..at + HALF].copy_from_slice(&w[(c * oh + oy) * HALF..][..HALF]);
            }
        }
    }
    out
}

/// The same as [`block`] in plain Rust, vectorised by the compiler (AVX2, NEON, ...).
#[allow(clippy::too_many_arguments)]
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx512dq+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn block_portable<const B: usize>(
    z: [&[f32]; B],
    xr: &[f32],
    taps: &[f32],
    k: usize,
    h: usize,
    fc: &[f32],
    kk: usize,
    out: &mut [[f32; 16]; B],
    znew: &mut [f32],
) {
    let (oh, kt) = (h / 2, k * k);
    let store = !znew.is_empty();
    // One output row `y` of channel `b`: its cached pre-activation minus the removed channel's
    // contribution. Taps (dy, dx) in order read consecutive rows of `xr` from row `y * k`. One
    // row at a time keeps the accumulator in registers; rows are independent, so the CPU
    // overlaps them.
    let conv_row = |b: usize, y: usize| -> [f32; ROW] {
        let mut a: [f32; ROW] = z[b][y * ROW..(y + 1) * ROW].try_into().expect("row");
        for (t, x) in xr[y * k * ROW..][..kt * ROW].chunks_exact(ROW).enumerate() {
            let w = taps[t * B + b];
            let nw = -w;
            for i in 0..ROW {
                if multiversion::target::target_cfg_f!(target_feature = "fma") {
                    a[i] = nw.mul_add(x[i], a[i]);
                } else {
                    a[i] -= w * x[i];
                }
            }
        }
        a
    };
    for (b, ob) in out.iter_mut().enumerate() {
        let mut sums = [[0.0f32; HALF]; 16];
        for oy in 0..oh {
            let (a0, a1) = (conv_row(b, 2 * oy), conv_row(b, 2 * oy + 1));
            if store {
                znew[(b * h + 2 * oy) * ROW..][..ROW].copy_from_slice(&a0);
                znew[(b * h + 2 * oy + 1) * ROW..][..ROW].copy_from_slice(&a1);
            }
            // The 2x2 pool (rows, then even against odd columns) and the ReLU (comparisons,
            // not f32::max: no NaN can occur here, and its NaN handling costs more).
            let mut p = [0.0f32; HALF];
            for i in 0..HALF {
                let m = |u: f32, v: f32| if u > v { u } else { v };
                let v = m(m(a0[i], a1[i]), m(a0[HALF + i], a1[HALF + i]));
                p[i] = if v > 0.0 { v } else { 0.0 };
            }
            for (c, s) in sums.iter_mut().enumerate().take(kk) {
                let at = ((b / 2 * kk + c) * oh + oy) * ROW + (b % 2) * HALF;
                let wr: &[f32; HALF] = fc[at..at + HALF].try_into().expect("weights");
                for i in 0..HALF {
                    s[i] += wr[i] * p[i];
                }
            }
        }
        if store && h % 2 == 1 {
            // The last row of an odd-height map is not pooled, but it is still updated.
            znew[(b * h + h - 1) * ROW..][..ROW].copy_from_slice(&conv_row(b, h - 1));
        }
        for (o, s) in ob.iter_mut().zip(&sums).take(kk) {
            *o = s.iter().sum();
        }
    }
}

/// [`block`] written with AVX-512 intrinsics: the compiler's vectoriser spills the sixteen
/// accumulators and gathers across channels for the pool, at several times the cost.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{HALF, MAX_OH, ROW};
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
        out.resize(ph * k * ROW, 0.0);
        let zero = _mm512_setzero_ps();
        let dst = out.as_mut_ptr();
        // Every row is written below but the padding rows, zeroed here (no fresh buffer per
        // call).
        for r in (0..p).chain(p + h..ph) {
            for dx in 0..k {
                _mm512_storeu_ps(dst.add((r * k + dx) * ROW), zero);
            }
        }
        // Per tap column: where each lane reads in the unpadded row, `2 * (lane % 8) + lane /
        // 8 + dx - p`, or 16 (the zero vector) outside it (negative wraps past `w`).
        let base = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        let (outside, width) = (_mm512_set1_epi32(16), _mm512_set1_epi32(w as i32));
        let mut idx = [outside; 15];
        for (dx, slot) in idx.iter_mut().enumerate().take(k) {
            let col = _mm512_add_epi32(base, _mm512_set1_epi32(dx as i32 - p as i32));
            let inside = _mm512_cmplt_epu32_mask(col, width);
            *slot = _mm512_mask_blend_epi32(inside, outside, col);
        }
        let m = mask(w);
        for y in 0..h {
            let v = _mm512_maskz_loadu_ps(m, x.as_ptr().add(y * w));
            for (dx, ix) in idx.iter().enumerate().take(k) {
                let r = _mm512_permutex2var_ps(v, *ix, zero);
                _mm512_storeu_ps(dst.add(((y + p) * k + dx) * ROW), r);
            }
        }
    }

    /// [`super::block`] with the kernel size and class count as constants where they are the
    /// common ones (the tap loop unrolls, the dense sums stay in registers), and as runtime
    /// values otherwise.
    ///
    /// # Safety
    /// The CPU must support AVX-512F and FMA, and the lengths [`super::block`] asserts must
    /// hold: `z[b] >= h * ROW`, `xr >= (h + k - 1) * k * ROW`, `taps >= k * k * B`,
    /// `fc >= B / 2 * kk * (h / 2) * ROW`, `h <= ROW`, `kk <= 16`, and when `STORE`,
    /// `znew >= B * h * ROW`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn dispatch<const B: usize, const STORE: bool>(
        z: [&[f32]; B],
        xr: &[f32],
        taps: &[f32],
        k: usize,
        h: usize,
        fc: &[f32],
        kk: usize,
        out: &mut [[f32; 16]; B],
        znew: &mut [f32],
    ) {
        match (k, kk) {
            (3, 2) => kernel::<B, STORE, 2>(z, xr, taps, 3, h, fc, 2, out, znew),
            (3, 3) => kernel::<B, STORE, 3>(z, xr, taps, 3, h, fc, 3, out, znew),
            (3, 4) => kernel::<B, STORE, 4>(z, xr, taps, 3, h, fc, 4, out, znew),
            (5, 3) => kernel::<B, STORE, 3>(z, xr, taps, 5, h, fc, 3, out, znew),
            _ => kernel::<B, STORE, 16>(z, xr, taps, k, h, fc, kk, out, znew),
        }
    }

    /// The kernel body, inlined into each arm of [`dispatch`] so that constant `k` and `kk`
    /// propagate into it; `KK >= kk` sizes the dense accumulators (equal: they live in
    /// registers).
    ///
    /// # Safety
    /// As [`dispatch`].
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn kernel<const B: usize, const STORE: bool, const KK: usize>(
        z: [&[f32]; B],
        xr: &[f32],
        taps: &[f32],
        k: usize,
        h: usize,
        fc: &[f32],
        kk: usize,
        out: &mut [[f32; 16]; B],
        znew: &mut [f32],
    ) {
        let oh = h / 2;
        debug_assert!(oh <= MAX_OH && B <= 8 && B.is_multiple_of(2));
        let zero = _mm512_setzero_ps();
        debug_assert!(kk <= KK);
        // Per channel pair and class (at most 4 pairs; the unused ones are optimised away).
        let mut dacc = [[zero; KK]; 4];
        // Lanes 0..8 of each pair's vectors (the even columns), then lanes 8..16 (odd).
        let even = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
        let odd = _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
        let fp = fc.as_ptr();
        let kk2 = k * k;
        let tp = taps.as_ptr();
        let zn = znew.as_mut_ptr();
        for oy in 0..oh {
            let mut a0 = [zero; B];
            let mut a1 = [zero; B];
            for b in 0..B {
                let zp = z[b].as_ptr();
                a0[b] = _mm512_loadu_ps(zp.add(2 * oy * ROW));
                a1[b] = _mm512_loadu_ps(zp.add((2 * oy + 1) * ROW));
            }
            let x0p = xr.as_ptr().add(2 * oy * k * ROW);
            let x1p = xr.as_ptr().add((2 * oy + 1) * k * ROW);
            for t in 0..kk2 {
                let x0 = _mm512_loadu_ps(x0p.add(t * ROW));
                let x1 = _mm512_loadu_ps(x1p.add(t * ROW));
                for b in 0..B {
                    let w = _mm512_set1_ps(*tp.add(t * B + b));
                    a0[b] = _mm512_fnmadd_ps(w, x0, a0[b]);
                    a1[b] = _mm512_fnmadd_ps(w, x1, a1[b]);
                }
            }
            if STORE {
                for b in 0..B {
                    _mm512_storeu_ps(zn.add((b * h + 2 * oy) * ROW), a0[b]);
                    _mm512_storeu_ps(zn.add((b * h + 2 * oy + 1) * ROW), a1[b]);
                }
            }
            for j in 0..B / 2 {
                // Vertical half of the pool per channel, then the horizontal half (even
                // against odd columns) and ReLU for the pair at once.
                let m0 = _mm512_max_ps(a0[2 * j], a1[2 * j]);
                let m1 = _mm512_max_ps(a0[2 * j + 1], a1[2 * j + 1]);
                let e = _mm512_permutex2var_ps(m0, even, m1);
                let o = _mm512_permutex2var_ps(m0, odd, m1);
                let p = _mm512_max_ps(_mm512_max_ps(e, o), zero);
                for (c, acc) in dacc[j].iter_mut().enumerate().take(kk) {
                    let w = _mm512_loadu_ps(fp.add(((j * kk + c) * oh + oy) * ROW));
                    *acc = _mm512_fmadd_ps(w, p, *acc);
                }
            }
        }
        if STORE && h % 2 == 1 {
            // The last row of an odd-height map is not pooled, but it is still updated.
            let y = h - 1;
            let xp = xr.as_ptr().add(y * k * ROW);
            for (b, zb) in z.iter().enumerate() {
                let mut a = _mm512_loadu_ps(zb.as_ptr().add(y * ROW));
                for t in 0..kk2 {
                    let w = _mm512_set1_ps(*tp.add(t * B + b));
                    a = _mm512_fnmadd_ps(w, _mm512_loadu_ps(xp.add(t * ROW)), a);
                }
                _mm512_storeu_ps(zn.add((b * h + y) * ROW), a);
            }
        }
        for j in 0..B / 2 {
            for c in 0..kk {
                let mut lanes = [0.0f32; ROW];
                _mm512_storeu_ps(lanes.as_mut_ptr(), dacc[j][c]);
                out[2 * j][c] = lanes[..HALF].iter().sum();
                out[2 * j + 1][c] = lanes[HALF..].iter().sum();
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
    ) -> (Vec<f32>, Vec<f32>) {
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
        let logits = (0..kk)
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
            .collect();
        (logits, c)
    }

    #[test]
    fn layouts_match_the_portable_versions() {
        let x: Vec<f32> = (0..16 * 16).map(|i| i as f32 + 1.0).collect();
        for w in [1, 7, 11, 14, 16] {
            for h in [1, 5, 14] {
                assert_eq!(even_odd(&x[..w]), even_odd_portable(&x[..w]));
                let mut back = vec![0.0; w];
                from_even_odd(&even_odd(&x[..w]), &mut back);
                assert_eq!(back, &x[..w]);
                for k in [1, 3, 5, 15] {
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    input_rows(&x[..h * w], h, w, k, &mut a);
                    input_rows_portable(&x[..h * w], h, w, k, &mut b);
                    assert_eq!(a, b, "{h}x{w} k{k}");
                }
            }
        }
    }

    /// Every kernel variant (AVX-512 with constant and runtime sizes, portable; reading only
    /// and updating) against [`naive`], for `B` channels per call.
    fn check_block<const B: usize>() {
        let mut seed = 7u32;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for &(h, w, k, kk) in &[
            (14, 14, 3, 3),
            (14, 14, 3, 2),
            (7, 7, 3, 4),
            (14, 14, 5, 3),
            (13, 11, 5, 4),
            (16, 16, 1, 2),
            (6, 9, 7, 3),
            (16, 15, 15, 5),
        ] {
            let (oh, ow) = (h / 2, w / 2);
            let zs: Vec<Vec<f32>> = (0..B)
                .map(|_| (0..h * w).map(|_| rnd()).collect())
                .collect();
            let x: Vec<f32> = (0..h * w).map(|_| rnd().abs()).collect();
            let taps: Vec<Vec<f32>> = (0..B)
                .map(|_| (0..k * k).map(|_| rnd()).collect())
                .collect();
            let fcs: Vec<Vec<f32>> = (0..B)
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
            let tb: Vec<f32> = (0..k * k)
                .flat_map(|t| taps.iter().map(move |tp| tp[t]))
                .collect();
            let zr: [&[f32]; B] = std::array::from_fn(|b| zeo[b].as_slice());
            let fr = pair_dense::<B>(std::array::from_fn(|b| fcp[b].as_slice()), kk, h);
            let mut results = Vec::new();
            for store in [false, true] {
                let mut znew = vec![0.0; if store { B * h * ROW } else { 0 }];
                let mut out = [[0.0f32; 16]; B];
                block(zr, &xr, &tb, k, h, &fr, kk, &mut out, &mut znew);
                results.push((out, znew.clone()));
                let mut out = [[0.0f32; 16]; B];
                block_portable(zr, &xr, &tb, k, h, &fr, kk, &mut out, &mut znew);
                results.push((out, znew));
            }
            for b in 0..B {
                let (want, zwant) = naive(&zs[b], &x, &taps[b], k, h, w, &fcs[b], kk);
                let zwant: Vec<f32> = zwant.chunks(w).flat_map(even_odd).collect();
                for (out, znew) in &results {
                    for c in 0..kk {
                        let got = out[b][c];
                        assert!(
                            (got - want[c]).abs() <= 1e-4 * (1.0 + want[c].abs()),
                            "{h}x{w} k{k}: {got} vs {}",
                            want[c]
                        );
                    }
                    if !znew.is_empty() {
                        for (i, (g, e)) in znew[b * h * ROW..(b + 1) * h * ROW]
                            .iter()
                            .zip(&zwant)
                            .enumerate()
                        {
                            let lane = i % ROW;
                            if lane % HALF * 2 + lane / HALF >= w {
                                continue; // padding: unspecified
                            }
                            assert!(
                                (g - e).abs() <= 1e-5 * (1.0 + e.abs()),
                                "{h}x{w} k{k} updated z[{b}][{i}]: {g} vs {e}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn block_matches_plain_loops() {
        check_block::<4>();
        check_block::<8>();
    }
}
