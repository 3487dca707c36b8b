//! The transpose of a row-major matrix, for the weight gradient's direct product.
//!
//! The weight gradient `d[W | b]^T [q, C] = [col; 1] [q, n] x dz^T [n, C]` reads `dz [C, n]`
//! transposed. Done one element at a time, with `C` loads `n` apart per output row, the copy
//! took 13% of a 16-16's training (`perf record`), more than conv1's product it feeds. Here 8
//! x 8 blocks are transposed in registers (eight loads, 24 shuffles, eight stores; Intel's
//! optimisation manual, "8x8 matrix transposition"), and the edges are copied one by one.
//!
//! Hand-written because the compiler does not turn a scalar transpose into shuffles, and no
//! maintained crate offers a transpose with AVX2 shuffles into a caller's buffer (the
//! `transpose` crate's is a cache-blocked scalar loop, as the baseline version here is).
//!
//! Must not allocate. A transpose moves values, so every version gives the same bits.

use crate::isa::Isa;

/// `dst [n, m] = src [m, n]^T`, with the kernels of [`crate::isa::isa`].
///
/// # Shapes
/// `src [m, n]`, `dst [n, m]`; panics when a slice is shorter.
pub fn transpose(src: &[f32], (m, n): (usize, usize), dst: &mut [f32]) {
    transpose_with(crate::isa::isa(), src, (m, n), dst)
}

/// [`transpose`] with the kernels of `isa`, which the CPU must have (tests run each).
pub(crate) fn transpose_with(isa: Isa, src: &[f32], (m, n): (usize, usize), dst: &mut [f32]) {
    assert!(
        src.len() >= m * n && dst.len() >= m * n,
        "transpose: {m}x{n} from {} into {} values",
        src.len(),
        dst.len()
    );
    assert!(isa.supported(), "transpose: no {} here", isa.name());
    let (m8, n8) = (m / 8 * 8, n / 8 * 8);
    match isa {
        // SAFETY: the CPU has AVX (asserted: both versions imply it); every block's rows and
        // columns lie within the asserted lengths.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Avx2 => unsafe { blocks_avx(src, (m, n), (m8, n8), dst) },
        _ => blocks_scalar(src, (m, n), (m8, n8), dst),
    }
    edges(src, (m, n), (m8, n8), dst);
}

/// The full 8 x 8 blocks (`m8 x n8`), one element at a time, block by block so that the
/// eight source rows stay in cache.
fn blocks_scalar(src: &[f32], (m, n): (usize, usize), (m8, n8): (usize, usize), dst: &mut [f32]) {
    for i0 in (0..m8).step_by(8) {
        for j0 in (0..n8).step_by(8) {
            for j in j0..j0 + 8 {
                for i in i0..i0 + 8 {
                    dst[j * m + i] = src[i * n + j];
                }
            }
        }
    }
}

/// The last `m - m8` rows and `n - n8` columns, one element at a time.
fn edges(src: &[f32], (m, n): (usize, usize), (m8, n8): (usize, usize), dst: &mut [f32]) {
    for i in 0..m {
        let from = if i < m8 { n8 } else { 0 };
        for j in from..n {
            dst[j * m + i] = src[i * n + j];
        }
    }
}

/// The full 8 x 8 blocks with AVX shuffles.
///
/// # Safety
/// The CPU must have AVX, and `src`, `dst` must hold `m * n` values with `m8 <= m`,
/// `n8 <= n` multiples of 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn blocks_avx(
    src: &[f32],
    (m, n): (usize, usize),
    (m8, n8): (usize, usize),
    dst: &mut [f32],
) {
    use std::arch::x86_64::*;
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    // Column blocks outside: each of `dst`'s rows is then written whole before the next (a
    // row of `m` values, a line or two), where row blocks outside wrote every line of `dst`
    // in `m / 8` visits far apart, each fetching it again (`perf annotate`: the stores took
    // most of the time). `src`'s `m8` rows are read 32 bytes at a time, each line twice in a row.
    for j0 in (0..n8).step_by(8) {
        for i0 in (0..m8).step_by(8) {
            // Rows r0..r7 of the block: r_i = src[i0 + i][j0..j0 + 8].
            let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(s.add((i0 + i) * n + j0)));
            let c = block8(r);
            for (j, v) in c.into_iter().enumerate() {
                _mm256_storeu_ps(d.add((j0 + j) * m + i0), v);
            }
        }
    }
}

/// The transpose of an 8 x 8 block held as eight rows: column `j` of `r` as vector `j`.
/// Interleaves pairs of rows, then pairs of pairs, then the 128-bit halves (24 shuffles).
///
/// # Safety
/// The CPU must have AVX; inlined into callers compiled with it.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn block8(r: [std::arch::x86_64::__m256; 8]) -> [std::arch::x86_64::__m256; 8] {
    use std::arch::x86_64::*;
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every version equals the definition on shapes with and without full blocks.
    #[test]
    fn every_version_transposes() {
        for (m, n) in [
            (16, 3136),
            (16, 784),
            (8, 8),
            (9, 17),
            (1, 5),
            (32, 196),
            (12, 10),
            (0, 3),
        ] {
            let src: Vec<f32> = (0..m * n).map(|v| v as f32 * 0.5 - 7.0).collect();
            for isa in Isa::available() {
                let mut dst = vec![f32::NAN; m * n];
                transpose_with(isa, &src, (m, n), &mut dst);
                for i in 0..m {
                    for j in 0..n {
                        assert_eq!(
                            dst[j * m + i],
                            src[i * n + j],
                            "{} {m}x{n} at {i},{j}",
                            isa.name()
                        );
                    }
                }
            }
        }
    }
}
