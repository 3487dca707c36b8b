//! The Pearson correlation of every filter of one run with every filter of another, at the
//! same conv layer, over the same images and every position of their maps: how convergent
//! learning (Li, Yosinski et al. 2016) compares units, and what Git Re-Basin's activation
//! matching (Ainsworth et al. 2022) maximises.
//!
//! Maps are taken after the activation. A filter whose maps are constant over the images (a
//! dead ReLU) correlates with nothing: 0.
//!
//! Values in, numbers out; must not write files.

use rayon::prelude::*;
use tinycnn::train::PostMaps;
use tinycnn::{Model, Scaling};

/// Images per block of the pass: blocks are fixed, their sums added in block order, so the
/// result does not depend on the number of threads.
const BLOCK: usize = 64;

/// What two runs' maps of one conv layer share over the images: sums, sums of squares and
/// cross products, in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct Moments {
    /// Filters of the first and the second run.
    pub a: usize,
    pub b: usize,
    /// Values per filter (images x positions).
    pub count: f64,
    sum_a: Vec<f64>,
    sq_a: Vec<f64>,
    sum_b: Vec<f64>,
    sq_b: Vec<f64>,
    /// `[a, b]`.
    cross: Vec<f64>,
}

impl Moments {
    fn new(a: usize, b: usize) -> Moments {
        Moments {
            a,
            b,
            count: 0.0,
            sum_a: vec![0.0; a],
            sq_a: vec![0.0; a],
            sum_b: vec![0.0; b],
            sq_b: vec![0.0; b],
            cross: vec![0.0; a * b],
        }
    }

    fn add(&mut self, o: &Moments) {
        self.count += o.count;
        for (x, y) in [
            (&mut self.sum_a, &o.sum_a),
            (&mut self.sq_a, &o.sq_a),
            (&mut self.sum_b, &o.sum_b),
            (&mut self.sq_b, &o.sq_b),
            (&mut self.cross, &o.cross),
        ] {
            for (s, v) in x.iter_mut().zip(y) {
                *s += v;
            }
        }
    }

    /// Adds one chunk's maps, `x [a, s]` and `y [b, s]` (channel-major, `s` values each):
    /// `y`'s sums and the cross products, of every pair or of the pairs `only` (`x`'s sums
    /// come with its [`Captured`] maps).
    fn add_maps(
        &mut self,
        (x, y): (&[f32], &[f32]),
        s: usize,
        only: Option<&[(usize, usize)]>,
        part: &mut Vec<f32>,
    ) {
        for (f, m) in y.chunks(s).enumerate() {
            let (sum, sq) = sums(m);
            self.sum_b[f] += sum;
            self.sq_b[f] += sq;
        }
        match only {
            None => {
                part.resize(self.a * self.b, 0.0);
                cross_products(x, y, (self.a, self.b, s), part);
                for (c, &v) in self.cross.iter_mut().zip(part.iter()) {
                    *c += v as f64;
                }
            }
            Some(pairs) => {
                for &(i, j) in pairs {
                    self.cross[i * self.b + j] += cross_product(x, y, (i, j), s) as f64;
                }
            }
        }
        self.count += s as f64;
    }

    /// The correlations `[a][b]`; 0 where either filter is constant.
    pub fn correlation(&self) -> Vec<Vec<f64>> {
        (0..self.a)
            .map(|i| (0..self.b).map(|j| self.of(i, j)).collect())
            .collect()
    }

    /// The correlation of filter `i` of the first run with filter `j` of the second; 0 where
    /// either is constant. Only pairs whose cross products were summed are meaningful (every
    /// pair, or those given to [`against`]).
    pub fn of(&self, i: usize, j: usize) -> f64 {
        let n = self.count.max(1.0);
        let var = |sum: f64, sq: f64| (sq - sum * sum / n).max(0.0);
        let cov = self.cross[i * self.b + j] - self.sum_a[i] * self.sum_b[j] / n;
        let (va, vb) = (
            var(self.sum_a[i], self.sq_a[i]),
            var(self.sum_b[j], self.sq_b[j]),
        );
        // Constant maps (to rounding): no correlation.
        let floor = 1e-9 * n;
        if va <= floor * (1.0 + self.sq_a[i] / n) || vb <= floor * (1.0 + self.sq_b[j] / n) {
            0.0
        } else {
            (cov / (va * vb).sqrt()).clamp(-1.0, 1.0)
        }
    }
}

/// One run's maps after the activation over a set of images, kept as the engine writes them:
/// per chunk of [`PostMaps::CHUNK`] images, per layer `[C, b, H, W]`. For comparing one run
/// with many (a reference with a cell's runs) without running it again each time.
pub struct Captured {
    chunks: Vec<Vec<Vec<f32>>>,
    widths: Vec<usize>,
    /// Per layer, each filter's sum and sum of squares over all the images.
    sums: Vec<(Vec<f64>, Vec<f64>)>,
}

impl Captured {
    /// `model`'s maps over the choosing and the measuring images, side by side: a reference
    /// captured once for every run aligned to it.
    pub fn both(model: &Model, scaling: Scaling, images: (&[u8], &[u8])) -> (Captured, Captured) {
        rayon::join(
            || Captured::of(model, scaling, images.0),
            || Captured::of(model, scaling, images.1),
        )
    }

    /// `model`'s maps over `images [n, H, W]`, chunks in parallel.
    pub fn of(model: &Model, scaling: Scaling, images: &[u8]) -> Captured {
        let px = model.arch.height * model.arch.width;
        let chunks = images
            .par_chunks(PostMaps::CHUNK * px)
            .map_init(
                || PostMaps::new(&model.arch),
                |maps, imgs| {
                    let m = imgs.len() / px;
                    maps.run(model, imgs, scaling)
                        .iter()
                        .zip(model.arch.layers())
                        .map(|(x, s)| x[..s.cout * m * s.hw()].to_vec())
                        .collect()
                },
            )
            .collect::<Vec<Vec<Vec<f32>>>>();
        let layers = model.arch.layers();
        let sums = layers
            .iter()
            .enumerate()
            .map(|(l, s)| {
                let (mut sum, mut sq) = (vec![0.0; s.cout], vec![0.0; s.cout]);
                for c in &chunks {
                    let per = c[l].len() / s.cout;
                    for (f, m) in c[l].chunks(per.max(1)).enumerate() {
                        let (a, b) = sums(m);
                        sum[f] += a;
                        sq[f] += b;
                    }
                }
                (sum, sq)
            })
            .collect();
        Captured {
            chunks,
            widths: model.arch.filters.clone(),
            sums,
        }
    }
}

/// The sum and the sum of squares of `v`, in f64, in eight independent lanes so that the
/// loop vectorises (one running f64 sum would wait on each addition); the order is fixed, so
/// the result is too.
/// Lanes of the partial sums in [`cross_products`]: fixed, so that every instruction set
/// adds in the same order and gives the same bits.
const LANES: usize = 16;

/// `out [a, b] = x [a, s] . y [b, s]^T`: every row of `x` dotted with every row of `y`.
///
/// Written by hand because a general GEMM spends most of its time packing here: the output is
/// at most 32 x 32 while `s` (images x positions of a chunk) runs to tens of thousands, and
/// `y`'s rows are read as columns. Blocks of 4 rows of each are dotted together, in
/// [`LANES`] lanes with fused multiply-adds (exactly rounded on every target, so the result
/// is the same on every CPU; a CPU without FMA, older than the targets below, computes them
/// in software, slowly), then the lanes are summed in order.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn cross_products(x: &[f32], y: &[f32], (a, b, s): (usize, usize, usize), out: &mut [f32]) {
    let (full_a, full_b) = (a / 4 * 4, b / 4 * 4);
    for i0 in (0..full_a).step_by(4) {
        for j0 in (0..full_b).step_by(4) {
            let d = dots::<4, 4>(x, y, (i0, j0), s);
            for (r, row) in d.iter().enumerate() {
                out[(i0 + r) * b + j0..][..4].copy_from_slice(row);
            }
        }
    }
    // The edges one pair at a time: the same lanes in the same order, so the same bits.
    for i in 0..a {
        for j in 0..b {
            if i >= full_a || j >= full_b {
                out[i * b + j] = dots::<1, 1>(x, y, (i, j), s)[0][0];
            }
        }
    }
}

/// Row `i` of `x [_, s]` dotted with row `j` of `y [_, s]`, with the same bits as
/// [`cross_products`] gives them.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn cross_product(x: &[f32], y: &[f32], (i, j): (usize, usize), s: usize) -> f32 {
    dots::<1, 1>(x, y, (i, j), s)[0][0]
}

/// Rows `i0..i0 + R` of `x [_, s]` dotted with rows `j0..j0 + C` of `y [_, s]`, each in
/// [`LANES`] partial sums summed in order, then the tail. Sizes are constants so that the
/// partial sums stay in registers; inlined into [`cross_products`]'s instruction sets.
#[inline(always)]
fn dots<const R: usize, const C: usize>(
    x: &[f32],
    y: &[f32],
    (i0, j0): (usize, usize),
    s: usize,
) -> [[f32; C]; R] {
    let whole = s / LANES * LANES;
    let xr: [&[f32]; R] = std::array::from_fn(|r| &x[(i0 + r) * s..][..s]);
    let yr: [&[f32]; C] = std::array::from_fn(|c| &y[(j0 + c) * s..][..s]);
    let mut acc = [[[0.0f32; LANES]; C]; R];
    for k in (0..whole).step_by(LANES) {
        let mut xv = [[0.0f32; LANES]; R];
        let mut yv = [[0.0f32; LANES]; C];
        for r in 0..R {
            xv[r].copy_from_slice(&xr[r][k..k + LANES]);
        }
        for c in 0..C {
            yv[c].copy_from_slice(&yr[c][k..k + LANES]);
        }
        for r in 0..R {
            for c in 0..C {
                for l in 0..LANES {
                    acc[r][c][l] = xv[r][l].mul_add(yv[c][l], acc[r][c][l]);
                }
            }
        }
    }
    std::array::from_fn(|r| {
        std::array::from_fn(|c| {
            let mut t: f32 = acc[r][c].iter().sum();
            for k in whole..s {
                t = xr[r][k].mul_add(yr[c][k], t);
            }
            t
        })
    })
}

/// Lanes of [`sums`]: four independent vectors of eight, so that the additions do not wait
/// on each other.
const SUM_LANES: usize = 32;

/// The sum and the sum of squares of `v`, in f64 (a square of an f32 is exact in f64).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn sums(v: &[f32]) -> (f64, f64) {
    let (mut s, mut q) = ([0.0f64; SUM_LANES], [0.0f64; SUM_LANES]);
    let mut chunks = v.chunks_exact(SUM_LANES);
    for c in &mut chunks {
        for j in 0..SUM_LANES {
            let x = c[j] as f64;
            s[j] += x;
            q[j] += x * x;
        }
    }
    for (j, &x) in chunks.remainder().iter().enumerate() {
        s[j] += x as f64;
        q[j] += (x as f64) * (x as f64);
    }
    (s.iter().sum(), q.iter().sum())
}

impl Captured {
    /// Whether filter `f` of conv layer `l` (0-based) is constant over the images (a dead
    /// ReLU): it then correlates with nothing.
    pub fn constant(&self, l: usize, f: usize) -> bool {
        let (sum, sq) = (&self.sums[l].0, &self.sums[l].1);
        let n: usize = self
            .chunks
            .iter()
            .map(|c| c[l].len() / self.widths[l])
            .sum();
        let n = n.max(1) as f64;
        sq[f] - sum[f] * sum[f] / n <= 1e-9 * n * (1.0 + sq[f] / n)
    }
}

/// Per conv layer, the [`Moments`] of `a`'s and `b`'s maps over `images [n, H, W]`, each run
/// with its own input scaling. The runs must have the same number of conv layers and input
/// size (the caller checks, with a message).
pub fn moments(a: (&Model, Scaling), b: (&Model, Scaling), images: &[u8]) -> Vec<Moments> {
    against(&Captured::of(a.0, a.1, images), b, images, None)
}

/// [`moments`] with `a`'s maps captured beforehand over the same `images`; with `only`, the
/// cross products of those pairs per layer (filter of `a`, filter of `b`) alone.
pub fn against(
    a: &Captured,
    (b, scale_b): (&Model, Scaling),
    images: &[u8],
    only: Option<&[Vec<(usize, usize)>]>,
) -> Vec<Moments> {
    let lb = b.arch.layers();
    assert_eq!(a.widths.len(), lb.len(), "same number of conv layers");
    let px = b.arch.height * b.arch.width;
    let chunk = PostMaps::CHUNK;
    let per_block = BLOCK / chunk;
    let fresh = || -> Vec<Moments> {
        a.widths
            .iter()
            .zip(&lb)
            .map(|(&x, y)| Moments::new(x, y.cout))
            .collect()
    };
    let parts: Vec<Vec<Moments>> = images
        .par_chunks(BLOCK * px)
        .enumerate()
        .map_init(
            || (PostMaps::new(&b.arch), Vec::new()),
            |(mb, part), (blk, block)| {
                let mut out = fresh();
                for (c, imgs) in block.chunks(chunk * px).enumerate() {
                    let m = imgs.len() / px;
                    mb.run(b, imgs, scale_b);
                    let xa = &a.chunks[blk * per_block + c];
                    for (l, o) in out.iter_mut().enumerate() {
                        let s = m * lb[l].hw();
                        let maps = (&xa[l][..o.a * s], &mb.last()[l][..o.b * s]);
                        o.add_maps(maps, s, only.map(|p| &p[l][..]), part);
                    }
                }
                out
            },
        )
        .collect();
    let mut total = fresh();
    for p in &parts {
        for (t, m) in total.iter_mut().zip(p) {
            t.add(m);
        }
    }
    for (t, (sum, sq)) in total.iter_mut().zip(&a.sums) {
        t.sum_a.clone_from(sum);
        t.sq_a.clone_from(sq);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Correlations equal numpy.corrcoef-style centred sums computed naively from the
    /// captured maps, for runs of different widths.
    #[test]
    fn equals_a_naive_correlation() {
        let a = Model::init(
            &tinycnn::Arch::parse("4-3", 12, 12, 3).unwrap(),
            tinycnn::Init::Glorot,
            1,
        )
        .unwrap();
        let b = Model::init(
            &tinycnn::Arch::parse("2-5", 12, 12, 3).unwrap(),
            tinycnn::Init::Glorot,
            2,
        )
        .unwrap();
        let n = 70;
        let images: Vec<u8> = (0..n * 144)
            .map(|i| ((i * 7919 + i / 13) % 256) as u8)
            .collect();
        let got = moments((&a, Scaling::Unit), (&b, Scaling::Raw), &images);
        let (ca, _) = tinycnn::train::capture(&a, &images, Scaling::Unit);
        let (cb, _) = tinycnn::train::capture(&b, &images, Scaling::Raw);
        for l in 0..2 {
            let (sa, sb) = (a.arch.layers()[l], b.arch.layers()[l]);
            let hw = sa.hw();
            let values = |maps: &[f32], c: usize, f: usize| -> Vec<f64> {
                (0..n)
                    .flat_map(|i| {
                        maps[(i * c + f) * hw..(i * c + f + 1) * hw]
                            .iter()
                            .map(|&v| v as f64)
                    })
                    .collect()
            };
            let corr = got[l].correlation();
            for i in 0..sa.cout {
                for j in 0..sb.cout {
                    let (x, y) = (
                        values(&ca[l].post, sa.cout, i),
                        values(&cb[l].post, sb.cout, j),
                    );
                    let (mx, my) = (
                        x.iter().sum::<f64>() / x.len() as f64,
                        y.iter().sum::<f64>() / y.len() as f64,
                    );
                    let cov: f64 = x.iter().zip(&y).map(|(p, q)| (p - mx) * (q - my)).sum();
                    let vx: f64 = x.iter().map(|p| (p - mx).powi(2)).sum();
                    let vy: f64 = y.iter().map(|q| (q - my).powi(2)).sum();
                    let want = if vx < 1e-12 || vy < 1e-12 {
                        0.0
                    } else {
                        cov / (vx * vy).sqrt()
                    };
                    assert!(
                        (corr[i][j] - want).abs() < 1e-5,
                        "layer {l} ({i}, {j}): {} vs {want}",
                        corr[i][j]
                    );
                }
            }
        }
        // The same at one thread as at several.
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let again = one.install(|| moments((&a, Scaling::Unit), (&b, Scaling::Raw), &images));
        assert_eq!(again, got);
    }

    /// The hand-written cross products against a plain f64 sum, on shapes with edges (widths
    /// not multiples of 4, lengths not multiples of the lanes); a single pair gives the same
    /// bits as the block it sits in.
    #[test]
    fn cross_products_equal_plain_sums() {
        let value = |i: usize| ((i * 2654435761) % 1000) as f32 / 500.0 - 1.0;
        for (a, b, s) in [
            (1, 1, 5),
            (4, 4, 16),
            (6, 5, 37),
            (16, 16, 784),
            (3, 8, 200),
        ] {
            let x: Vec<f32> = (0..a * s).map(value).collect();
            let y: Vec<f32> = (0..b * s).map(|i| value(i + 7)).collect();
            let mut out = vec![0.0; a * b];
            cross_products(&x, &y, (a, b, s), &mut out);
            for i in 0..a {
                for j in 0..b {
                    let want: f64 = (0..s)
                        .map(|k| x[i * s + k] as f64 * y[j * s + k] as f64)
                        .sum();
                    let got = out[i * b + j];
                    assert!(
                        (got as f64 - want).abs() < 1e-4 * (1.0 + want.abs()),
                        "{a}x{b}x{s} ({i}, {j}): {got} vs {want}"
                    );
                    assert_eq!(cross_product(&x, &y, (i, j), s).to_bits(), got.to_bits());
                }
            }
        }
    }

    /// Measuring only some pairs gives those pairs' correlations exactly as measuring all.
    #[test]
    fn some_pairs_equal_all_pairs() {
        let arch = tinycnn::Arch::parse("5-3", 12, 12, 3).unwrap();
        let a = Model::init(&arch, tinycnn::Init::Glorot, 3).unwrap();
        let b = Model::init(&arch, tinycnn::Init::Glorot, 4).unwrap();
        let images: Vec<u8> = (0..40 * 144)
            .map(|i| ((i * 31 + i / 7) % 256) as u8)
            .collect();
        let captured = Captured::of(&a, Scaling::Unit, &images);
        let all = against(&captured, (&b, Scaling::Unit), &images, None);
        let pairs = vec![vec![(0, 4), (3, 1), (4, 0)], vec![(2, 2), (1, 0)]];
        let some = against(&captured, (&b, Scaling::Unit), &images, Some(&pairs));
        for (l, p) in pairs.iter().enumerate() {
            for &(i, j) in p {
                assert_eq!(all[l].of(i, j).to_bits(), some[l].of(i, j).to_bits());
            }
        }
    }
}
