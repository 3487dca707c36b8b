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
use tinycnn::ops::{matmul, Mat};
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
    /// `y`'s sums and the cross products (`x`'s sums come with its [`Captured`] maps).
    fn add_maps(&mut self, x: &[f32], y: &[f32], s: usize, part: &mut Vec<f32>) {
        for (f, m) in y.chunks(s).enumerate() {
            let (sum, sq) = sums(m);
            self.sum_b[f] += sum;
            self.sq_b[f] += sq;
        }
        part.resize(self.a * self.b, 0.0);
        let yt = Mat {
            data: y,
            rs: 1,
            cs: s,
        };
        matmul(self.a, self.b, s, Mat::rows(x, s), yt, part, self.b, false);
        for (c, &v) in self.cross.iter_mut().zip(part.iter()) {
            *c += v as f64;
        }
        self.count += s as f64;
    }

    /// The correlations `[a][b]`; 0 where either filter is constant.
    pub fn correlation(&self) -> Vec<Vec<f64>> {
        let n = self.count.max(1.0);
        let var = |sum: f64, sq: f64| (sq - sum * sum / n).max(0.0);
        (0..self.a)
            .map(|i| {
                (0..self.b)
                    .map(|j| {
                        let cov = self.cross[i * self.b + j] - self.sum_a[i] * self.sum_b[j] / n;
                        let (va, vb) = (
                            var(self.sum_a[i], self.sq_a[i]),
                            var(self.sum_b[j], self.sq_b[j]),
                        );
                        // Constant maps (to rounding): no correlation.
                        let floor = 1e-9 * n;
                        if va <= floor * (1.0 + self.sq_a[i] / n)
                            || vb <= floor * (1.0 + self.sq_b[j] / n)
                        {
                            0.0
                        } else {
                            (cov / (va * vb).sqrt()).clamp(-1.0, 1.0)
                        }
                    })
                    .collect()
            })
            .collect()
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
fn sums(v: &[f32]) -> (f64, f64) {
    let (mut s, mut q) = ([0.0f64; 8], [0.0f64; 8]);
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for j in 0..8 {
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
    against(&Captured::of(a.0, a.1, images), b, images)
}

/// [`moments`] with `a`'s maps captured beforehand over the same `images`.
pub fn against(a: &Captured, (b, scale_b): (&Model, Scaling), images: &[u8]) -> Vec<Moments> {
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
                        o.add_maps(&xa[l][..o.a * s], &mb.last()[l][..o.b * s], s, part);
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
}
