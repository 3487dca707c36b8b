//! The weight gradient of a layer with 2 to 7 filters, without packing.
//!
//! `d[W | b] [C, q] = dz [C, n] x [col; 1]^T [n, q]`: for a 16-4's second layer, `C = 4`
//! filters, `q = 145` rows of `col` (16 channels x 3 x 3 taps, and the ones of the bias) and
//! `n = 784` positions per chunk of 4 images. [`crate::direct::product`] cannot take it: its
//! tiles run along the output's columns, and there are only `C` of them. `ops::matmul` sent
//! it to the `gemm` crate, which first packs `col` into panels of 16 rows: in a 16-4's
//! training the packing alone took 21% of the time and the product 11% more (`perf record`
//! of `bench train --arch 16-4 --threads 1`). Here `col` is read in place: 8 rows by 8
//! positions at a time are transposed in registers ([`crate::transpose::block8`]), so that a
//! vector holds 8 rows at one position, and each filter's `dz` at that position is broadcast
//! onto it. Sixteen or more rows are in flight at once, as many sums as the registers keep.
//!
//! Hand-written for the reason of [`crate::direct`]: every output is summed over `n` in
//! order with a fused multiply-add from zero, in blocks of [`crate::direct::gemm_depth`]
//! whose sums are added in order. That is `gemm`'s order on these shapes (its 16 x 4 kernels
//! on a CPU with a 32 KiB 8-way L1), so the results keep the bits they had, and have them on
//! every CPU. Tests compare every version with the plain sum and with `gemm`.
//!
//! Must not allocate, and must not change the order of any sum.

use crate::direct::{blocks, gemm_depth};
use crate::isa::Isa;

/// Whether [`weight_gradient`] computes `d[W | b]` for `q` rows of `col` and `c` filters:
/// where `gemm` computed it with its packed kernels. Not for one filter (its matrix-vector
/// kernels), 8 or more ([`crate::direct::product`] on the transpose of `dz`), nor for
/// `q * c <= 256`, which `gemm` sums as dot products in another order.
pub fn applies(q: usize, c: usize) -> bool {
    (2..8).contains(&c) && q * c > 256
}

/// `out [c, q] = dz [c, n] x col [q, n]^T`, all row-major, with the kernels of
/// [`crate::isa::isa`]; `c` from 2 to 7.
///
/// # Shapes
/// `col [q, n]`, `dz [c, n]`, `out [c, q]`; panics when a slice is shorter.
pub fn weight_gradient(col: &[f32], dz: &[f32], shape: (usize, usize, usize), out: &mut [f32]) {
    weight_gradient_with(crate::isa::isa(), col, dz, shape, out)
}

/// [`weight_gradient`] with the kernels of `isa`, which the CPU must have (tests run each).
pub(crate) fn weight_gradient_with(
    isa: Isa,
    col: &[f32],
    dz: &[f32],
    (q, n, c): (usize, usize, usize),
    out: &mut [f32],
) {
    assert!(
        col.len() >= q * n && dz.len() >= c * n && out.len() >= c * q,
        "wgrad: {c}x{n} by {q}x{n} into {} values from {} and {}",
        out.len(),
        dz.len(),
        col.len()
    );
    assert!((2..8).contains(&c), "wgrad: {c} filters, not 2 to 7");
    assert!(isa.supported(), "wgrad: no {} here", isa.name());
    for (p0, p1, first) in blocks(n, gemm_depth(q, n, c)) {
        let args = Block {
            col,
            dz,
            shape: (q, n, c),
            depth: (p0, p1),
            first,
        };
        match isa {
            // SAFETY: the CPU has the instructions (asserted above), and every index the
            // blocks read or write is within the lengths asserted above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { block_avx512(args, out) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { block_avx2(args, out) },
            _ => rows(args, out),
        }
    }
}

/// The positions `p0..p1` of the product, written into `out` (`first`) or added to it.
#[derive(Clone, Copy)]
struct Block<'a> {
    col: &'a [f32],
    dz: &'a [f32],
    /// `(q, n, c)`.
    shape: (usize, usize, usize),
    /// `(p0, p1)`.
    depth: (usize, usize),
    first: bool,
}

/// One row and filter at a time: the baseline version.
fn rows(args: Block, out: &mut [f32]) {
    let ((q, n, c), (p0, p1)) = (args.shape, args.depth);
    for k in 0..c {
        let d = &args.dz[k * n + p0..k * n + p1];
        for i in 0..q {
            let x = &args.col[i * n + p0..i * n + p1];
            let acc = x
                .iter()
                .zip(d)
                .fold(0.0f32, |acc, (&x, &d)| x.mul_add(d, acc));
            let o = &mut out[k * q + i];
            *o = if args.first { acc } else { *o + acc };
        }
    }
}

// The versions differ in how many groups of 8 rows are in flight: as many as keep 8 or more
// sums going where 32 registers hold them, 4 or more where 16 do.

/// # Safety
/// The CPU must run AVX-512 F, BW, VL and FMA; the slices must hold the block's shape.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn block_avx512(args: Block, out: &mut [f32]) {
    match args.shape.2 {
        2 => groups::<4, 2>(args, out),
        3 => groups::<3, 3>(args, out),
        4 => groups::<2, 4>(args, out),
        5 => groups::<2, 5>(args, out),
        6 => groups::<2, 6>(args, out),
        _ => groups::<2, 7>(args, out),
    }
}

/// # Safety
/// The CPU must run AVX2 and FMA; the slices must hold the block's shape.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2(args: Block, out: &mut [f32]) {
    match args.shape.2 {
        2 => groups::<2, 2>(args, out),
        3 => groups::<2, 3>(args, out),
        4 => groups::<1, 4>(args, out),
        5 => groups::<1, 5>(args, out),
        6 => groups::<1, 6>(args, out),
        _ => groups::<1, 7>(args, out),
    }
}

/// Tiles of `G` groups of 8 rows, then single groups, the last one partly full.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn groups<const G: usize, const C: usize>(args: Block, out: &mut [f32]) {
    let q = args.shape.0;
    let mut i = 0;
    while i + 8 * G <= q {
        tile::<G, C>(args, i, out);
        i += 8 * G;
    }
    while i + 8 <= q {
        tile::<1, C>(args, i, out);
        i += 8;
    }
    if i < q {
        tile::<1, C>(args, i, out);
    }
}

/// Rows `i0..i0 + 8G` of one block for all `C` filters: `acc[g][k]` holds filter `k`'s
/// sums of rows `i0 + 8g..i0 + 8g + 8`. Past the last row (`q - i0 < 8G`, the last tile) the
/// last row is read again and its sums not written: a row's sums do not depend on its
/// neighbours. A numeric kernel, so one screen does not hold it.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile<const G: usize, const C: usize>(args: Block, i0: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let ((q, n, _), (p0, p1)) = (args.shape, args.depth);
    let dz = args.dz.as_ptr();
    let mut rows = [[args.col.as_ptr(); 8]; G];
    for (g, rows) in rows.iter_mut().enumerate() {
        for (j, row) in rows.iter_mut().enumerate() {
            *row = row.add((i0 + 8 * g + j).min(q - 1) * n);
        }
    }
    let mut acc = [[_mm256_setzero_ps(); C]; G];
    let mut p = p0;
    while p + 8 <= p1 {
        for (acc, rows) in acc.iter_mut().zip(&rows) {
            let mut r = [_mm256_setzero_ps(); 8];
            for (r, row) in r.iter_mut().zip(rows) {
                *r = _mm256_loadu_ps(row.add(p));
            }
            // v[j]: the 8 rows at position p + j.
            let v = crate::transpose::block8(r);
            for (j, v) in v.iter().enumerate() {
                for (k, acc) in acc.iter_mut().enumerate() {
                    let d = _mm256_broadcast_ss(&*dz.add(k * n + p + j));
                    *acc = _mm256_fmadd_ps(*v, d, *acc);
                }
            }
        }
        p += 8;
    }
    while p < p1 {
        for (acc, rows) in acc.iter_mut().zip(&rows) {
            let mut x = [0.0f32; 8];
            for (x, row) in x.iter_mut().zip(rows) {
                *x = *row.add(p);
            }
            let v = _mm256_loadu_ps(x.as_ptr());
            for (k, acc) in acc.iter_mut().enumerate() {
                let d = _mm256_broadcast_ss(&*dz.add(k * n + p));
                *acc = _mm256_fmadd_ps(v, d, *acc);
            }
        }
        p += 1;
    }
    for (g, acc) in acc.iter().enumerate() {
        let i = i0 + 8 * g;
        for (k, &acc) in acc.iter().enumerate() {
            let o = &mut out[k * q + i..k * q + q.min(i + 8)];
            let mut sum = [0.0f32; 8];
            if args.first {
                _mm256_storeu_ps(sum.as_mut_ptr(), acc);
            } else {
                sum[..o.len()].copy_from_slice(o);
                _mm256_storeu_ps(
                    sum.as_mut_ptr(),
                    _mm256_add_ps(_mm256_loadu_ps(sum.as_ptr()), acc),
                );
            }
            o.copy_from_slice(&sum[..o.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{matmul_strided, Mat};
    use crate::testkit::{bits, gemm_depth_here, reference, values};

    /// Every version equals the plain sum in `gemm`'s blocks, and `gemm` itself where it
    /// blocks as [`gemm_depth`] says on this CPU, called as the engine called it.
    #[test]
    fn the_plain_sum_and_the_bits_of_gemm() {
        let shapes = [
            (145, 784, 4),
            (145, 784, 2),
            (289, 784, 4),
            (289, 784, 2),
            (73, 784, 4),
            (145, 196, 4),
            (145, 588, 4),
            (37, 784, 7),
            (51, 1500, 6),
            (129, 3136, 3),
            (300, 37, 5),
            (145, 0, 4),
            (64, 1030, 5),
        ];
        for (s, &(q, n, c)) in shapes.iter().enumerate() {
            assert!(applies(q, c), "{q}x{n}x{c}");
            let col = values(q * n, 11 + s as u64);
            let mut dz = values(c * n, 40 + s as u64);
            // Pooling keeps a quarter of the positions, and zeros of both signs are summed.
            for (p, d) in dz.iter_mut().enumerate() {
                if p % 4 != 1 {
                    *d = if p % 3 == 0 { -0.0 } else { 0.0 };
                }
            }
            let depth = gemm_depth(q, n, c);
            // The plain sum of dz [c, n] x col^T [n, q].
            let mut colt = vec![0.0; q * n];
            for i in 0..q {
                for p in 0..n {
                    colt[p * q + i] = col[i * n + p];
                }
            }
            let want = reference(&dz, &colt, (c, n, q), depth.max(1));
            for isa in Isa::available() {
                let mut got = vec![f32::NAN; c * q];
                weight_gradient_with(isa, &col, &dz, (q, n, c), &mut got);
                assert_eq!(bits(&got), bits(&want), "{} {q}x{n}x{c}", isa.name());
            }
            if gemm_depth_here(q, n, c) == depth {
                let mut theirs = vec![f32::NAN; c * q];
                matmul_strided(
                    q,
                    c,
                    n,
                    Mat::rows(&col, n),
                    Mat::t(&dz, n),
                    &mut theirs,
                    1,
                    q,
                    false,
                );
                assert_eq!(bits(&theirs), bits(&want), "gemm {q}x{n}x{c}");
            }
        }
    }

    #[test]
    fn it_takes_what_gemm_packed_and_nothing_else() {
        assert!(applies(145, 4) && applies(145, 2) && applies(73, 4) && applies(289, 7));
        assert!(!applies(145, 1) && !applies(145, 8) && !applies(37, 4) && !applies(10, 4));
    }
}
