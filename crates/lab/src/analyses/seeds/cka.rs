//! Linear centred kernel alignment (CKA; Kornblith, Norouzi, Lee and Hinton 2019) between two
//! layers' representations of the same images, with the unbiased HSIC estimator of Song et
//! al. (2012), as Nguyen, Raghu and Kornblith (2021) use it: the plug-in (biased) estimator
//! reads about 0.2 for independent features at n = 32 and only slowly falls to 0 as n grows.
//!
//! A representation is `[n, p]`: one row per image, its layer's maps after the activation
//! flattened (`p = C x H x W`), so that CKA sees where a feature fires as well as what. It is
//! invariant to orthogonal transforms of the features (a permutation of filters among them)
//! and to isotropic scaling.
//!
//! Values in, numbers out; must not know models or files.

use tinycnn::ops::{matmul, Mat};

/// The Gram matrix `K = X X^T`, `[n, n]`, of `x [n, p]` (row-major), in f64: summed in f32
/// over blocks of `block` features, the blocks added in f64. A block of features that is
/// moved as a whole (a filter's map) therefore contributes the same bits wherever it sits.
///
/// Computed in tiles of rows, the tiles on and below the diagonal only, in parallel: each
/// entry is the same f32 product of its two rows block by block, wherever its tile lies, and
/// `x_i . x_j` is `x_j . x_i` to the bit (the same products, summed in the same order), so the
/// upper triangle is the lower one mirrored: half the multiply-adds of the full product, the
/// same bits at any thread count (a test compares the full product). `compare` of two 32-32
/// runs on 6,000 images spent 61% of its time in this product, single-threaded for the
/// controls (`perf record`).
///
/// Cost `n^2 p / 2` multiply-adds in f32 products.
pub fn gram(x: &[f32], n: usize, p: usize, block: usize) -> Vec<f64> {
    gram_in_tiles(x, (n, p), block, TILE)
}

/// The rows of a tile of [`gram`]: about 512, so that each tile's product is large enough for
/// the GEMM kernel and there are tens of tiles to share among threads.
const TILE: usize = 512;

/// [`gram`] with tiles of about `tile` rows.
fn gram_in_tiles(x: &[f32], (n, p): (usize, usize), block: usize, tile: usize) -> Vec<f64> {
    use rayon::prelude::*;
    assert_eq!(x.len(), n * p, "gram: x is [n, p]");
    let block = block.clamp(1, p.max(1));
    let bounds = tile_bounds(n, tile);
    let mut k = vec![0.0f64; n * n];
    // Row band `t` (rows `bounds[t]..bounds[t + 1]`) gets its tiles left of the diagonal and
    // the diagonal one.
    let bands: Vec<(usize, &mut [f64])> = bounds
        .windows(2)
        .enumerate()
        .scan(&mut k[..], |rest, (t, r)| {
            let (band, tail) = std::mem::take(rest).split_at_mut((r[1] - r[0]) * n);
            *rest = tail;
            Some((t, band))
        })
        .collect();
    let widest = bounds.windows(2).map(|c| c[1] - c[0]).max().unwrap_or(0);
    bands.into_par_iter().for_each(|(t, band)| {
        let (i0, i1) = (bounds[t], bounds[t + 1]);
        // One f32 buffer per band: freeing one per tile cost a TLB shootdown each (`perf`).
        let mut part = vec![0.0f32; (i1 - i0) * widest];
        for c in bounds[..=t + 1].windows(2) {
            tile_product(x, (n, p), block, (i0..i1, c[0]..c[1]), band, &mut part);
        }
    });
    // The upper triangle: the lower one mirrored, outside the diagonal tiles (computed whole).
    for t in 0..bounds.len() - 1 {
        for i in bounds[t]..bounds[t + 1] {
            for j in bounds[t + 1]..n {
                k[i * n + j] = k[j * n + i];
            }
        }
    }
    k
}

/// The tiles' row bounds: `0 = b_0 < ... < b_t = n`, as even as may be, each tile at least
/// `tile` rows and never under 8 unless `n` is (`matmul` takes products of 8 rows or more to
/// the same GEMM kernel as the full product, thinner ones to another).
fn tile_bounds(n: usize, tile: usize) -> Vec<usize> {
    let tiles = (n / tile.max(8)).max(1);
    (0..=tiles).map(|t| t * n / tiles).collect()
}

/// Rows `rows` by columns `cols` of the Gram into `band` (rows `rows` of `[n, n]`, from
/// `rows.start`): the f32 product of each block of features (in `part`, at least
/// `rows.len() * cols.len()`), added in f64 in block order.
fn tile_product(
    x: &[f32],
    (n, p): (usize, usize),
    block: usize,
    (rows, cols): (std::ops::Range<usize>, std::ops::Range<usize>),
    band: &mut [f64],
    part: &mut [f32],
) {
    let (h, w) = (rows.len(), cols.len());
    let part = &mut part[..h * w];
    for start in (0..p).step_by(block) {
        let depth = block.min(p - start);
        let a = Mat {
            data: &x[rows.start * p + start..],
            rs: p,
            cs: 1,
        };
        let b = Mat {
            data: &x[cols.start * p + start..],
            rs: 1,
            cs: p,
        };
        matmul(h, w, depth, a, b, part, w, false);
        for (r, sums) in part.chunks_exact(w).enumerate() {
            let out = &mut band[r * n + cols.start..][..w];
            if start == 0 {
                // Written, not read: the Gram's fresh pages are the kernel's zero page until
                // written, and a read first made each write a copy-on-write fault and a TLB
                // flush on every core (`perf`: 8% of `compare`). `0.0 + v` as the sum from
                // zero has it (+0 for a -0).
                for (acc, &v) in out.iter_mut().zip(sums) {
                    *acc = 0.0 + v as f64;
                }
            } else {
                for (acc, &v) in out.iter_mut().zip(sums) {
                    *acc += v as f64;
                }
            }
        }
    }
}

/// The unbiased estimator of HSIC(K, L) for Gram matrices `[n, n]`, `n >= 4` (Song et al.
/// 2012, eq. 5), with `K~`, `L~` the Grams with their diagonals set to zero:
/// `[tr(K~ L~) + (1'K~1)(1'L~1) / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))`.
pub fn hsic_unbiased(k: &[f64], l: &[f64], n: usize) -> f64 {
    assert!(n >= 4, "the unbiased HSIC needs at least 4 samples");
    assert!(k.len() == n * n && l.len() == n * n, "Grams are [n, n]");
    hsic_from(trace_off(k, l, n), &row_sums(k, n), &row_sums(l, n), n)
}

/// `tr(K~ L~) = sum_{i != j} K_ij L_ij` (both symmetric), summed in row-major order.
fn trace_off(k: &[f64], l: &[f64], n: usize) -> f64 {
    let mut trace = 0.0;
    for (i, (rk, rl)) in k.chunks_exact(n).zip(l.chunks_exact(n)).enumerate() {
        for (j, (&a, &b)) in rk.iter().zip(rl).enumerate() {
            if i != j {
                trace += a * b;
            }
        }
    }
    trace
}

/// The row sums of `K~` and their total `1'K~1`, each summed in order.
fn row_sums(k: &[f64], n: usize) -> (Vec<f64>, f64) {
    let rows: Vec<f64> = k
        .chunks_exact(n)
        .enumerate()
        .map(|(i, r)| {
            let mut sum = 0.0;
            for (j, &v) in r.iter().enumerate() {
                sum += if i == j { 0.0 } else { v };
            }
            sum
        })
        .collect();
    let mut total = 0.0;
    for &r in &rows {
        total += r;
    }
    (rows, total)
}

/// [`hsic_unbiased`] from its parts: `tr(K~ L~)`, and each Gram's [`row_sums`].
fn hsic_from(
    trace: f64,
    (rows_k, sum_k): &(Vec<f64>, f64),
    (rows_l, sum_l): &(Vec<f64>, f64),
    n: usize,
) -> f64 {
    let cross: f64 = rows_k.iter().zip(rows_l).map(|(a, b)| a * b).sum();
    let nf = n as f64;
    (trace + sum_k * sum_l / ((nf - 1.0) * (nf - 2.0)) - 2.0 / (nf - 2.0) * cross)
        / (nf * (nf - 3.0))
}

/// A Gram matrix `[n, n]` with what a CKA needs of it alone, computed once: its row sums, its
/// HSIC with itself, whether it is constant. A CKA of two then costs one pass over both
/// (`compare` measured one run's Grams against four others, each time redoing these).
pub struct Gram<'a> {
    k: &'a [f64],
    n: usize,
    sums: (Vec<f64>, f64),
    own: f64,
    constant: bool,
}

impl<'a> Gram<'a> {
    pub fn new(k: &'a [f64], n: usize) -> Gram<'a> {
        assert!(n >= 4, "the unbiased HSIC needs at least 4 samples");
        assert_eq!(k.len(), n * n, "Grams are [n, n]");
        let sums = row_sums(k, n);
        let own = hsic_from(trace_off(k, k, n), &sums, &sums, n);
        // A constant representation has HSIC 0 with itself, up to rounding: compare with the
        // size of its own terms.
        let constant = own <= 1e-9 * off_diagonal_square(k, n) / (n * n) as f64;
        Gram {
            k,
            n,
            sums,
            own,
            constant,
        }
    }

    /// [`cka`] of the two.
    pub fn cka(&self, o: &Gram) -> f64 {
        assert_eq!(self.n, o.n, "Grams of the same images");
        if self.constant || o.constant {
            return 0.0;
        }
        let h = hsic_from(trace_off(self.k, o.k, self.n), &self.sums, &o.sums, self.n);
        h / (self.own * o.own).sqrt()
    }
}

/// A Gram matrix in U-centred form (Székely and Rizzo 2014): zero on the diagonal and
/// `K_ij - r_i/(n-2) - r_j/(n-2) + s/((n-1)(n-2))` off it, with `r` the row sums and `s` the
/// total of `K~` (the Gram without its diagonal). The inner product of two U-centred matrices
/// over `n(n-3)` is the unbiased HSIC ([`hsic_unbiased`]), so a matrix of CKAs between many
/// representations costs one pass per representation and a dot product per pair.
#[derive(Clone, Debug)]
pub struct Centred {
    u: Vec<f64>,
    /// `sum_{i != j} K_ij^2`: the scale against which a zero is judged.
    scale: f64,
}

impl Centred {
    pub fn of(k: &[f64], n: usize) -> Centred {
        assert!(n >= 4, "the unbiased HSIC needs at least 4 samples");
        let off = |i: usize, j: usize| if i == j { 0.0 } else { k[i * n + j] };
        let rows: Vec<f64> = (0..n).map(|i| (0..n).map(|j| off(i, j)).sum()).collect();
        let total: f64 = rows.iter().sum();
        let nf = n as f64;
        let mut u = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    u[i * n + j] = off(i, j) - rows[i] / (nf - 2.0) - rows[j] / (nf - 2.0)
                        + total / ((nf - 1.0) * (nf - 2.0));
                }
            }
        }
        Centred {
            u,
            scale: off_diagonal_square(k, n),
        }
    }

    fn dot(&self, o: &Centred) -> f64 {
        self.u.iter().zip(&o.u).map(|(x, y)| x * y).sum()
    }

    /// Debiased linear CKA with another representation of the same images; 0 when either
    /// is constant over the images (its HSIC with itself is zero, to rounding).
    pub fn cka(&self, o: &Centred) -> f64 {
        let (kk, ll) = (self.dot(self), o.dot(o));
        if kk <= 1e-9 * self.scale || ll <= 1e-9 * o.scale {
            return 0.0;
        }
        self.dot(o) / (kk * ll).sqrt()
    }
}

/// Debiased linear CKA from two Gram matrices `[n, n]` of the same images:
/// `HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`. Near 0 for unrelated representations (it can
/// dip below), 1 for ones equal up to an orthogonal transform and a scale. 0 when either
/// representation is constant over the images (its HSIC with itself is not positive).
pub fn cka(k: &[f64], l: &[f64], n: usize) -> f64 {
    Gram::new(k, n).cka(&Gram::new(l, n))
}

/// `sum_{i != j} m_ij^2`.
fn off_diagonal_square(m: &[f64], n: usize) -> f64 {
    // Row by row, not a division per entry (4% of `compare`, `perf`); the same order.
    m.chunks_exact(n)
        .enumerate()
        .flat_map(|(i, r)| {
            r.iter()
                .enumerate()
                .filter(move |&(j, _)| j != i)
                .map(|(_, v)| v * v)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::{RngCore, SeedableRng};

    fn normal(rng: &mut rand_chacha::ChaCha8Rng) -> f32 {
        // Box-Muller from two uniforms in (0, 1].
        let u =
            |r: &mut rand_chacha::ChaCha8Rng| (r.next_u32() as f64 + 1.0) / (u32::MAX as f64 + 1.0);
        let (a, b) = (u(rng), u(rng));
        ((-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
    }

    fn features(n: usize, p: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n * p).map(|_| normal(&mut rng)).collect()
    }

    /// The estimator written out with explicit matrices, for small n.
    fn hsic_naive(k: &[f64], l: &[f64], n: usize) -> f64 {
        let kt: Vec<f64> = (0..n * n)
            .map(|i| if i / n == i % n { 0.0 } else { k[i] })
            .collect();
        let lt: Vec<f64> = (0..n * n)
            .map(|i| if i / n == i % n { 0.0 } else { l[i] })
            .collect();
        let mut kl = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                kl[i * n + j] = (0..n).map(|m| kt[i * n + m] * lt[m * n + j]).sum();
            }
        }
        let tr: f64 = (0..n).map(|i| kl[i * n + i]).sum();
        let (sk, sl): (f64, f64) = (kt.iter().sum(), lt.iter().sum());
        let one_kl_one: f64 = kl.iter().sum();
        let nf = n as f64;
        (tr + sk * sl / ((nf - 1.0) * (nf - 2.0)) - 2.0 / (nf - 2.0) * one_kl_one)
            / (nf * (nf - 3.0))
    }

    #[test]
    fn the_estimator_equals_its_formula_and_the_gram_its_product() {
        let (n, p, q) = (9, 5, 3);
        let (x, y) = (features(n, p, 1), features(n, q, 2));
        let (k, l) = (gram(&x, n, p, 2), gram(&y, n, q, 3));
        for i in 0..n {
            for j in 0..n {
                let want: f64 = (0..p)
                    .map(|m| x[i * p + m] as f64 * x[j * p + m] as f64)
                    .sum();
                assert!((k[i * n + j] - want).abs() < 1e-5);
            }
        }
        assert!((hsic_unbiased(&k, &l, n) - hsic_naive(&k, &l, n)).abs() < 1e-9);
        // The U-centred inner product is the same estimator, and gives the same CKA.
        let (ku, lu) = (Centred::of(&k, n), Centred::of(&l, n));
        let h = hsic_unbiased(&k, &l, n);
        assert!((ku.dot(&lu) / (n * (n - 3)) as f64 - h).abs() < 1e-9 * (1.0 + h.abs()));
        assert!((ku.cka(&lu) - cka(&k, &l, n)).abs() < 1e-12);
        assert_eq!(ku.cka(&Centred::of(&vec![1.0; n * n], n)), 0.0);
    }

    /// The Gram as one full product, as it was computed before tiles: the tiled one must
    /// give its bits.
    fn gram_full(x: &[f32], n: usize, p: usize, block: usize) -> Vec<f64> {
        let block = block.clamp(1, p.max(1));
        let mut k = vec![0.0f64; n * n];
        let mut part = vec![0.0f32; n * n];
        for start in (0..p).step_by(block) {
            let w = block.min(p - start);
            let a = Mat {
                data: &x[start..],
                rs: p,
                cs: 1,
            };
            let b = Mat {
                data: &x[start..],
                rs: 1,
                cs: p,
            };
            matmul(n, n, w, a, b, &mut part, n, false);
            for (acc, &v) in k.iter_mut().zip(&part) {
                *acc += v as f64;
            }
        }
        k
    }

    #[test]
    fn the_tiled_gram_has_the_full_products_bits() {
        // Tiles of 16 rows (one tile, several with a short last one, many), blocks that
        // divide the features and blocks that do not, and thin matrices.
        for (n, p, block, tile) in [
            (9, 5, 2, 16),
            (40, 37, 8, 16),
            (67, 100, 16, 16),
            (130, 49, 49, 32),
            (47, 20, 6, 8),
            (23, 300, 64, 8),
            (5, 7, 3, 2),
        ] {
            let mut x = features(n, p, (n * p) as u64);
            // ReLU maps: many exact zeros, as the representations have.
            for v in x.iter_mut().step_by(3) {
                *v = v.max(0.0);
            }
            let full = gram_full(&x, n, p, block);
            let tiled = gram_in_tiles(&x, (n, p), block, tile);
            let bits = |k: &[f64]| k.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&tiled),
                bits(&full),
                "n {n}, p {p}, block {block}, tile {tile}"
            );
        }
        for (n, tile) in [(6000, 512), (23, 8), (5, 512), (20, 2), (1030, 512)] {
            let b = tile_bounds(n, tile);
            assert_eq!((b[0], b[b.len() - 1]), (0, n));
            assert!(
                b.windows(2).all(|w| w[1] - w[0] >= tile.max(8).min(n)),
                "{b:?}"
            );
        }
        assert_eq!(tile_bounds(6000, 512).len(), 12);
    }

    /// Debiased CKA of independent random features is near 0 at n = 256, where the plug-in
    /// estimator would read well above it.
    #[test]
    fn independent_features_score_near_zero() {
        let n = 256;
        for (p, q, seed) in [(64, 64, 3), (16, 100, 5), (300, 8, 7)] {
            let (x, y) = (features(n, p, seed), features(n, q, seed + 1));
            let c = cka(&gram(&x, n, p, 16), &gram(&y, n, q, 16), n);
            assert!(c.abs() < 0.05, "p {p}, q {q}: {c}");
        }
    }

    /// Invariant to an orthogonal transform of the features (a rotation in a plane of two
    /// features, and a permutation of all of them) and to isotropic scaling; 1 for equal
    /// representations.
    #[test]
    fn invariant_to_orthogonal_transforms_and_scaling() {
        let (n, p) = (64, 6);
        let x = features(n, p, 11);
        let k = gram(&x, n, p, 4);
        assert!((cka(&k, &k, n) - 1.0).abs() < 1e-12);
        let (c, s) = (0.6f32, 0.8f32);
        let mut y = vec![0.0f32; n * p];
        for i in 0..n {
            let r = &x[i * p..(i + 1) * p];
            // Rotate features 0 and 1, then reverse the order of all six; scale by 3.
            let mut z = r.to_vec();
            z[0] = c * r[0] - s * r[1];
            z[1] = s * r[0] + c * r[1];
            z.reverse();
            for (o, v) in y[i * p..(i + 1) * p].iter_mut().zip(&z) {
                *o = 3.0 * v;
            }
        }
        let l = gram(&y, n, p, 4);
        assert!((cka(&k, &l, n) - 1.0).abs() < 1e-6, "{}", cka(&k, &l, n));
        // A different representation of the same images scores below 1.
        let other = features(n, p, 12);
        assert!(cka(&k, &gram(&other, n, p, 4), n) < 0.5);
        // A constant representation carries nothing.
        assert_eq!(cka(&k, &vec![1.0; n * n], n), 0.0);
    }
}
