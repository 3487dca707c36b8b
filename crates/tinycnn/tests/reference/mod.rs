//! A naive reference implementation of the network family in f64: plain loops over NCHW
//! arrays, forward and backward, written for obviousness, not speed. The fast engine is
//! checked against it, and it is checked against finite differences.

// Index loops are the point here: the reference reads like the maths.
#![allow(clippy::needless_range_loop)]

use tinycnn::{Activation, Arch, Model};

pub struct Params {
    pub conv_w: Vec<Vec<f64>>, // [cout][cin][k][k] flattened
    pub conv_b: Vec<Vec<f64>>,
    pub fc_w: Vec<f64>, // [K][D]
    pub fc_b: Vec<f64>,
}

impl Params {
    pub fn of(model: &Model) -> Params {
        let to64 = |s: &[f32]| s.iter().map(|&v| v as f64).collect::<Vec<f64>>();
        let layers = model.arch.filters.len();
        Params {
            conv_w: (0..layers).map(|l| to64(model.conv_weight(l))).collect(),
            conv_b: (0..layers).map(|l| to64(model.conv_bias(l))).collect(),
            fc_w: to64(model.fc_weight()),
            fc_b: to64(model.fc_bias()),
        }
    }

    /// Flattened in the engine's layout order (conv1.w, conv1.b, ..., fc.w, fc.b).
    pub fn flat(&self) -> Vec<f64> {
        let mut v = Vec::new();
        for l in 0..self.conv_w.len() {
            v.extend(&self.conv_w[l]);
            v.extend(&self.conv_b[l]);
        }
        v.extend(&self.fc_w);
        v.extend(&self.fc_b);
        v
    }

    pub fn from_flat(like: &Params, flat: &[f64]) -> Params {
        let mut at = 0;
        let mut take = |n: usize| {
            let s = flat[at..at + n].to_vec();
            at += n;
            s
        };
        let mut p = Params {
            conv_w: vec![],
            conv_b: vec![],
            fc_w: vec![],
            fc_b: vec![],
        };
        for l in 0..like.conv_w.len() {
            p.conv_w.push(take(like.conv_w[l].len()));
            p.conv_b.push(take(like.conv_b[l].len()));
        }
        p.fc_w = take(like.fc_w.len());
        p.fc_b = take(like.fc_b.len());
        p
    }
}

fn act(a: Activation, z: f64) -> f64 {
    match a {
        Activation::Relu => z.max(0.0),
        Activation::LeakyRelu => {
            if z > 0.0 {
                z
            } else {
                0.01 * z
            }
        }
        Activation::Tanh => z.tanh(),
    }
}

fn act_grad(a: Activation, z: f64) -> f64 {
    match a {
        Activation::Relu => {
            if z > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::LeakyRelu => {
            if z > 0.0 {
                1.0
            } else {
                0.01
            }
        }
        Activation::Tanh => 1.0 - z.tanh().powi(2),
    }
}

/// Per layer of one image: input [cin][h][w], pre [cout][h][w], out (after pool) [cout][oh][ow],
/// and the pool's winner per output position.
struct Cache {
    input: Vec<f64>,
    pre: Vec<f64>,
    winner: Vec<usize>,
}

/// Forward for one image `x [H][W]`: returns logits and the per-layer caches.
fn forward_one(arch: &Arch, p: &Params, x: &[f64]) -> (Vec<f64>, Vec<Cache>, Vec<f64>) {
    let k = arch.kernel as isize;
    let pad = k / 2;
    let mut input = x.to_vec();
    let mut caches = Vec::new();
    for (l, s) in arch.layers().iter().enumerate() {
        let (h, w) = (s.h as isize, s.w as isize);
        let mut pre = vec![0.0; s.cout * s.h * s.w];
        for co in 0..s.cout {
            for y in 0..h {
                for xx in 0..w {
                    let mut sum = p.conv_b[l][co];
                    for ci in 0..s.cin {
                        for dy in 0..k {
                            for dx in 0..k {
                                let (sy, sx) = (y + dy - pad, xx + dx - pad);
                                if sy < 0 || sy >= h || sx < 0 || sx >= w {
                                    continue;
                                }
                                let wi = ((co * s.cin + ci) * k as usize + dy as usize)
                                    * k as usize
                                    + dx as usize;
                                sum += p.conv_w[l][wi]
                                    * input[(ci * s.h + sy as usize) * s.w + sx as usize];
                            }
                        }
                    }
                    pre[(co * s.h + y as usize) * s.w + xx as usize] = sum;
                }
            }
        }
        let post: Vec<f64> = pre.iter().map(|&z| act(arch.activation, z)).collect();
        let (out, winner) = if s.pool {
            let mut out = vec![0.0; s.cout * s.out_h * s.out_w];
            let mut win = vec![0; out.len()];
            for c in 0..s.cout {
                for oy in 0..s.out_h {
                    for ox in 0..s.out_w {
                        let mut best = (f64::NEG_INFINITY, 0);
                        for (i, (dy, dx)) in
                            [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate()
                        {
                            let idx = (c * s.h + 2 * oy + dy) * s.w + 2 * ox + dx;
                            if post[idx] > best.0 {
                                best = (post[idx], idx);
                            }
                            let _ = i;
                        }
                        out[(c * s.out_h + oy) * s.out_w + ox] = best.0;
                        win[(c * s.out_h + oy) * s.out_w + ox] = best.1;
                    }
                }
            }
            (out, win)
        } else {
            let n = post.len();
            (post, (0..n).collect())
        };
        caches.push(Cache { input, pre, winner });
        input = out;
    }
    let d = arch.features();
    let logits: Vec<f64> = (0..arch.classes)
        .map(|c| p.fc_b[c] + (0..d).map(|j| p.fc_w[c * d + j] * input[j]).sum::<f64>())
        .collect();
    (logits, caches, input)
}

fn xent(logits: &[f64], label: usize) -> (f64, Vec<f64>) {
    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = logits.iter().map(|v| (v - max).exp()).sum();
    let loss = sum.ln() - (logits[label] - max);
    let mut d: Vec<f64> = logits.iter().map(|v| (v - max).exp() / sum).collect();
    d[label] -= 1.0;
    (loss, d)
}

/// Per layer of one image: (pre-activation `[C][H][W]`, output after the pool `[C][h][w]`).
pub fn layer_maps(arch: &Arch, p: &Params, x: &[f64]) -> Vec<(Vec<f64>, Vec<f64>)> {
    let (_, caches, last) = forward_one(arch, p, x);
    let mut out: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
    for l in 0..caches.len() {
        let next = if l + 1 < caches.len() {
            caches[l + 1].input.clone()
        } else {
            last.clone()
        };
        out.push((caches[l].pre.clone(), next));
    }
    out
}

/// Logits `[n][K]` for images `[n][H][W]` (already scaled).
pub fn logits(arch: &Arch, p: &Params, xs: &[Vec<f64>]) -> Vec<Vec<f64>> {
    xs.iter().map(|x| forward_one(arch, p, x).0).collect()
}

/// Mean cross-entropy over the batch.
pub fn loss(arch: &Arch, p: &Params, xs: &[Vec<f64>], labels: &[u8]) -> f64 {
    xs.iter()
        .zip(labels)
        .map(|(x, &y)| xent(&forward_one(arch, p, x).0, y as usize).0)
        .sum::<f64>()
        / xs.len() as f64
}

/// Gradient of the mean cross-entropy, in the engine's flat layout order.
pub fn gradient(arch: &Arch, p: &Params, xs: &[Vec<f64>], labels: &[u8]) -> Vec<f64> {
    let n = xs.len() as f64;
    let k = arch.kernel as isize;
    let pad = k / 2;
    let layers = arch.layers();
    let mut g = Params {
        conv_w: p.conv_w.iter().map(|v| vec![0.0; v.len()]).collect(),
        conv_b: p.conv_b.iter().map(|v| vec![0.0; v.len()]).collect(),
        fc_w: vec![0.0; p.fc_w.len()],
        fc_b: vec![0.0; p.fc_b.len()],
    };
    let d = arch.features();
    for (x, &label) in xs.iter().zip(labels) {
        let (logits, caches, feats) = forward_one(arch, p, x);
        let (_, dl) = xent(&logits, label as usize);
        let mut dfeat = vec![0.0; d];
        for c in 0..arch.classes {
            g.fc_b[c] += dl[c] / n;
            for j in 0..d {
                g.fc_w[c * d + j] += dl[c] * feats[j] / n;
                dfeat[j] += dl[c] * p.fc_w[c * d + j];
            }
        }
        let mut dout = dfeat;
        for l in (0..layers.len()).rev() {
            let s = layers[l];
            let cache = &caches[l];
            // Through the pool: each output's gradient goes to its winner.
            let mut dpost = vec![0.0; s.cout * s.h * s.w];
            for (i, &win) in cache.winner.iter().enumerate() {
                dpost[win] += dout[i];
            }
            let dz: Vec<f64> = dpost
                .iter()
                .zip(&cache.pre)
                .map(|(g, &z)| g * act_grad(arch.activation, z))
                .collect();
            let mut din = vec![0.0; s.cin * s.h * s.w];
            let (h, w) = (s.h as isize, s.w as isize);
            for co in 0..s.cout {
                for y in 0..h {
                    for xx in 0..w {
                        let gz = dz[(co * s.h + y as usize) * s.w + xx as usize];
                        g.conv_b[l][co] += gz / n;
                        for ci in 0..s.cin {
                            for dy in 0..k {
                                for dx in 0..k {
                                    let (sy, sx) = (y + dy - pad, xx + dx - pad);
                                    if sy < 0 || sy >= h || sx < 0 || sx >= w {
                                        continue;
                                    }
                                    let wi = ((co * s.cin + ci) * k as usize + dy as usize)
                                        * k as usize
                                        + dx as usize;
                                    let ii = (ci * s.h + sy as usize) * s.w + sx as usize;
                                    g.conv_w[l][wi] += gz * cache.input[ii] / n;
                                    din[ii] += gz * p.conv_w[l][wi];
                                }
                            }
                        }
                    }
                }
            }
            dout = din;
        }
    }
    g.flat()
}
