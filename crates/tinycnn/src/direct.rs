//! The convolutions' matrix products for the engine's small shapes, without packing.
//!
//! A chunk of 4 images makes products of a few hundred columns by at most a few hundred
//! rows: the forward convolution `pre [C_out, n] = [W | b] [C_out, q] x [col; 1] [q, n]` and
//! the input gradient `dX [C_in, n] = Wt [C_in, q] x col(dz) [q, n]`. A general GEMM packs
//! both operands first, and on these shapes packing cost as much as multiplying (`perf` on
//! `bench train --arch 16-16`: 35% packing, 37% kernel). Here the right operand's rows are
//! already contiguous along `n`, so a register tile of `R` rows by `P` columns reads them in
//! place and broadcasts the left operand's values: nothing is copied.
//!
//! Hand-written because no maintained crate offers a product that skips packing *and* sums
//! in a fixed, documented order: every output is summed over `q` in order with a fused
//! multiply-add from zero, in blocks of [`KC`] whose sums are then added in order. That is
//! exactly the order of `matrixmultiply`'s kernels (and of `gemm`'s on the thin shapes of
//! [`crate::ops::matmul`], up to [`KC`]), so the engine's results are bit for bit those of
//! the GEMM path it replaces (tests compare the two on random shapes). `mul_add` is exactly
//! rounded on every target, so every instruction set gives the same bits.
//!
//! Must not allocate, and must not change the order of any sum.

/// The depth of `matrixmultiply`'s f32 kernels' blocks: sums over longer `q` are made block
/// by block and the block sums added in order.
pub const KC: usize = 256;

/// Whether [`product`] of `a [m, q]` by `b [q, n]` has the bits of [`crate::ops::matmul`]'s
/// as the forward convolution and the input gradient call it: always up to [`KC`], and
/// beyond it where `matmul` uses `matrixmultiply` (both sides at least 8), whose blocks
/// [`product`] follows. (The weight gradient's layout has them only where `matrixmultiply`
/// computes it: both sides at least 8.)
pub fn same_as_gemm(m: usize, q: usize, n: usize) -> bool {
    q <= KC || (m >= 8 && n >= 8)
}

/// Whether the engine uses [`product`] for `a [m, q]` by `b [q, n]`: where it has the GEMM's
/// bits ([`same_as_gemm`]) and its rows fill a register tile (8 or more; thinner products,
/// such as a 2-4's, are faster through the GEMM crates, measured with `bench train`).
pub fn pays(m: usize, q: usize, n: usize) -> bool {
    m >= 8 && same_as_gemm(m, q, n)
}

/// `out [m, n] = a [m, q] x b [q, n]`, all row-major, each output summed over `q` in order
/// with fused multiply-adds from zero, in blocks of [`KC`].
///
/// # Shapes
/// `a [m, q]`, `b [q, n]`, `out [m, n]`; panics when a slice is shorter.
pub fn product(a: &[f32], b: &[f32], (m, q, n): (usize, usize, usize), out: &mut [f32]) {
    assert!(
        a.len() >= m * q && b.len() >= q * n && out.len() >= m * n,
        "direct::product: {m}x{q} by {q}x{n} into {} values needs more than {}, {}",
        out.len(),
        a.len(),
        b.len()
    );
    let mut q0 = 0;
    let mut first = true;
    while q0 < q || first {
        let q1 = (q0 + KC).min(q);
        block(a, b, (m, q, n), (q0, q1), first, out);
        first = false;
        q0 = q1;
    }
}

/// One block `q0..q1` of [`product`]: written into `out` (`first`) or added to it.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn block(
    a: &[f32],
    b: &[f32],
    (m, q, n): (usize, usize, usize),
    (q0, q1): (usize, usize),
    first: bool,
    out: &mut [f32],
) {
    use multiversion::target::selected_target;
    // The tile per target: as many accumulators as the vector registers hold with room for
    // the operands (32 x 512 bits; 16 x 256 bits; 32 x 128 bits).
    macro_rules! columns {
        ($r:literal, $p:literal, $from:expr, $to:expr) => {{
            let (full_m, end) = (m / $r * $r, $from + ($to - $from) / $p * $p);
            for j0 in ($from..end).step_by($p) {
                for i0 in (0..full_m).step_by($r) {
                    tile::<$r, $p>(a, b, (q, n), (q0, q1), (i0, j0), first, out);
                }
                // The last rows in tiles of 4, 2 and 1.
                let mut i = full_m;
                while i + 4 <= m {
                    tile::<4, $p>(a, b, (q, n), (q0, q1), (i, j0), first, out);
                    i += 4;
                }
                while i + 2 <= m {
                    tile::<2, $p>(a, b, (q, n), (q0, q1), (i, j0), first, out);
                    i += 2;
                }
                if i < m {
                    tile::<1, $p>(a, b, (q, n), (q0, q1), (i, j0), first, out);
                }
            }
            end
        }};
    }
    // Full-width tiles, then narrower ones for the last columns, then one at a time.
    macro_rules! tiles {
        ($r:literal, $p:literal) => {{
            let j = columns!($r, $p, 0, n);
            let j = columns!($r, 16, j, n);
            let j = columns!($r, 8, j, n);
            for i in 0..m {
                for jj in j..n {
                    tile::<1, 1>(a, b, (q, n), (q0, q1), (i, jj), first, out);
                }
            }
        }};
    }
    if selected_target!().supports_feature_str("avx512f") {
        tiles!(8, 32)
    } else if selected_target!().supports_feature_str("avx2") {
        tiles!(6, 16)
    } else {
        tiles!(6, 8)
    }
}

/// Rows `i0..i0+R` by columns `j0..j0+P` of one block of [`product`]; inlined into each
/// target's clone of [`block`], where its loops become vector multiply-adds.
#[inline(always)]
fn tile<const R: usize, const P: usize>(
    a: &[f32],
    b: &[f32],
    (q, n): (usize, usize),
    (q0, q1): (usize, usize),
    (i0, j0): (usize, usize),
    first: bool,
    out: &mut [f32],
) {
    let mut acc = [[0.0f32; P]; R];
    for p in q0..q1 {
        let x: [f32; P] = b[p * n + j0..][..P].try_into().expect("P values");
        for (r, row) in acc.iter_mut().enumerate() {
            let w = a[(i0 + r) * q + p];
            for j in 0..P {
                row[j] = x[j].mul_add(w, row[j]);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        let o = &mut out[(i0 + r) * n + j0..][..P];
        if first {
            o.copy_from_slice(row);
        } else {
            for (d, &s) in o.iter_mut().zip(row) {
                *d += s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{matmul, matmul_strided, Mat};

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s % 2001) as f32 - 1000.0) / 997.0
            })
            .collect()
    }

    /// The product equals the GEMM path bit for bit, both as the forward convolution calls it
    /// (transposed, into a strided output) and as the input gradient does.
    #[test]
    fn the_same_bits_as_the_gemm_path() {
        let shapes = [
            (16, 146, 784),
            (16, 10, 3136),
            (4, 145, 784),
            (2, 37, 196),
            (16, 144, 784),
            (1, 1, 1),
            (7, 300, 33),
            (32, 289, 784),
            (9, 513, 40),
            (3, 5, 17),
            (13, 256, 64),
            (8, 257, 48),
            (145, 784, 16),
            (10, 3136, 16),
            (289, 784, 32),
            (145, 196, 4),
            (19, 600, 20),
        ];
        for (i, &(m, q, n)) in shapes.iter().enumerate() {
            let a = values(m * q, 3 + i as u64);
            let b = values(q * n, 77 + i as u64);
            let mut got = vec![f32::NAN; m * n];
            product(&a, &b, (m, q, n), &mut got);
            // As the forward convolution: out^T [n, m] = b^T [n, q] x a^T [q, m], strided.
            let mut fwd = vec![f32::NAN; m * n];
            matmul_strided(n, m, q, Mat::t(&b, n), Mat::t(&a, q), &mut fwd, 1, n, false);
            // As the input gradient: out [m, n] = a [m, q] x b [q, n].
            let mut bwd = vec![f32::NAN; m * n];
            matmul(
                m,
                n,
                q,
                Mat::rows(&a, q),
                Mat::rows(&b, n),
                &mut bwd,
                n,
                false,
            );
            // As the weight gradient: out^T [n, m] = bt [n, q] x a^T [q, m], strided into out's
            // layout, with bt [n, q] the transpose of b.
            let mut bt = vec![0.0; q * n];
            for p in 0..q {
                for j in 0..n {
                    bt[j * q + p] = b[p * n + j];
                }
            }
            let mut wgt = vec![f32::NAN; m * n];
            matmul_strided(
                m,
                n,
                q,
                Mat::rows(&a, q),
                Mat::t(&bt, q),
                &mut wgt,
                n,
                1,
                false,
            );
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            if same_as_gemm(m, q, n) {
                assert_eq!(bits(&got), bits(&fwd), "forward {m}x{q}x{n}");
                assert_eq!(bits(&got), bits(&bwd), "input gradient {m}x{q}x{n}");
            }
            // The weight gradient's layout goes to `gemm`'s dot-product kernels on thin
            // shapes, which sum in another order; the engine uses the direct product for it
            // only where `matrixmultiply` computes it.
            if m >= 8 && n >= 8 {
                assert_eq!(bits(&got), bits(&wgt), "weight gradient {m}x{q}x{n}");
            }
        }
    }

    #[test]
    fn an_empty_depth_gives_zeros() {
        let mut out = vec![f32::NAN; 6];
        product(&[], &[], (2, 0, 3), &mut out);
        assert_eq!(out, vec![0.0; 6]);
    }
}
