//! The scans of one map in AVX-512 that dissection makes for every filter and image: its
//! extremes, and the values at or above the filter's bound appended to what it keeps, 16 at a
//! time, without a branch or a store per value.
//!
//! The portable scan ([`super::kept`]'s `at_least`, then a loop over the positions found) cost
//! 17% of a dissection of the thesis-scale study's learned runs (`perf record`, 32-32 at one
//! thread): about 5% of a map's values clear a bound at the 5% quantile, and each was found,
//! looked up, compared with the flats and pushed one at a time. Here a vector of 16 values is
//! compared with the bound and with every flat's value; the hits that equal no flat are
//! compressed into consecutive lanes (`vcompressps`, into a register: Zen 4 runs the
//! compressing store to memory many times slower) and written as 16 pixels at once. The hits
//! that equal a flat, rare, are returned as positions for the portable loop to count.
//!
//! Hand-written because the compiler does not turn a loop that appends to a vector into
//! compressed stores. The pixels kept are the portable scan's, in the same order; the tests
//! compare the two. Must not decide which values are kept: that is `lo`'s, and the flats'.

use std::arch::x86_64::*;

use super::kept::Pixel;

/// Lanes of a pixel pair from a value vector and a word vector: `v0 w0 v1 w1 ...`, from the
/// first and the last 8 of each.
const LOW: [i32; 16] = [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23];
const HIGH: [i32; 16] = [8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31];

/// Appends to `pixels` a [`Pixel`] for every value of `values [px]` at or above `lo` that
/// equals none of `flats` (at most 16), with its concept word from `words [px]` and `class`;
/// writes into `hits` the positions of the values at or above `lo` that equal a flat, and
/// returns how many.
///
/// # Safety
/// The CPU must run AVX-512 F, BW and VL.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn scan(
    values: &[f32],
    words: &[u16],
    (lo, flats): (f32, &[f32]),
    class: u8,
    (pixels, hits): (&mut Vec<Pixel>, &mut [u16]),
) -> usize {
    let n = values.len();
    assert!(words.len() >= n && hits.len() >= n && flats.len() <= 16);
    assert!(n <= u16::MAX as usize + 1, "positions are u16");
    let (low, high) = (
        _mm512_loadu_epi32(LOW.as_ptr()),
        _mm512_loadu_epi32(HIGH.as_ptr()),
    );
    let bound = _mm512_set1_ps(lo);
    let meta = _mm512_set1_epi32((class as i32) << 16);
    let mut flat_values = [_mm512_setzero_ps(); 16];
    for (v, &f) in flat_values.iter_mut().zip(flats) {
        *v = _mm512_set1_ps(f);
    }
    let flat_values = &flat_values[..flats.len()];
    let mut found = 0;
    let mut at = 0;
    while at < n {
        let lanes = if n - at >= 16 {
            u16::MAX
        } else {
            (1u16 << (n - at)) - 1
        };
        let v = _mm512_maskz_loadu_ps(lanes, values.as_ptr().add(at));
        // `>=` is false on NaN, as the portable comparison is.
        let hit = _mm512_mask_cmp_ps_mask::<_CMP_GE_OQ>(lanes, v, bound);
        if hit == 0 {
            at += 16;
            continue;
        }
        let mut flat = 0u16;
        for &f in flat_values {
            flat |= _mm512_mask_cmp_ps_mask::<_CMP_EQ_OQ>(hit, v, f);
        }
        let kept = hit & !flat;
        if kept != 0 {
            let w = _mm256_maskz_loadu_epi16(lanes, words.as_ptr().add(at).cast());
            let w = _mm512_or_si512(_mm512_cvtepu16_epi32(w), meta);
            let (v, w) = (
                _mm512_maskz_compress_epi32(kept, _mm512_castps_si512(v)),
                _mm512_maskz_compress_epi32(kept, w),
            );
            pixels.reserve(16);
            let len = pixels.len();
            // SAFETY: 16 pixels of capacity from `len`; a `Pixel` is `repr(C)`, 8 bytes: its
            // value's bits, then its word and class as the next 32 bits (padding zero).
            let dst = pixels.as_mut_ptr().add(len).cast::<__m512i>();
            _mm512_storeu_si512(dst, _mm512_permutex2var_epi32(v, low, w));
            _mm512_storeu_si512(dst.add(1), _mm512_permutex2var_epi32(v, high, w));
            pixels.set_len(len + kept.count_ones() as usize);
        }
        while flat != 0 {
            hits[found] = (at + flat.trailing_zeros() as usize) as u16;
            found += 1;
            flat &= flat - 1;
        }
        at += 16;
    }
    found
}

/// [`super::kept`]'s `extremes` in AVX-512: per lane, `hi = if v > hi { v } else { hi }` is
/// `vmaxps(v, hi)` exactly (it returns its second operand on NaN and on equal values), and
/// the same for `lo` with `vminps`; the lanes and the last values are folded as the portable
/// version folds them. The compiled portable loop ran its comparisons through mask-to-vector
/// moves and shuffles (`perf annotate`), as slow as the scan.
///
/// # Safety
/// The CPU must run AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn extremes(values: &[f32]) -> (f32, f32) {
    let (mut hi, mut lo) = (
        _mm512_set1_ps(f32::NEG_INFINITY),
        _mm512_set1_ps(f32::INFINITY),
    );
    let mut chunks = values.chunks_exact(16);
    for c in &mut chunks {
        let v = _mm512_loadu_ps(c.as_ptr());
        hi = _mm512_max_ps(v, hi);
        lo = _mm512_min_ps(v, lo);
    }
    let (mut his, mut los) = ([0.0f32; 16], [0.0f32; 16]);
    _mm512_storeu_ps(his.as_mut_ptr(), hi);
    _mm512_storeu_ps(los.as_mut_ptr(), lo);
    let rest = chunks.remainder();
    (
        rest.iter()
            .chain(&his)
            .fold(f32::NEG_INFINITY, |m, &v| m.max(v)),
        rest.iter()
            .chain(&los)
            .fold(f32::INFINITY, |m, &v| m.min(v)),
    )
}
