//! Forward and backward passes over one chunk of images.
//!
//! A [`Workspace`] owns every buffer one chunk needs (at most [`CHUNK`] images), so the hot
//! loop allocates nothing. Shape legend: `b` images in the chunk, `C` channels, `H x W`
//! spatial size of a layer's conv output, `k` kernel side, `D = F_L * h_L * w_L` dense
//! inputs, `K` classes. Layouts are described in [`crate::ops`].

use crate::arch::{Activation, Arch, LayerShape};
use crate::model::Model;
use crate::ops::{col2im, im2col, matmul, maxpool, unpool, Mat};

/// Images per chunk: the unit of work of one thread, and the unit of every summation, so that
/// results do not depend on the thread count.
pub const CHUNK: usize = 8;

/// How pixel bytes become network inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scaling {
    /// `x / 255`, in `[0, 1]` (the default).
    Unit,
    /// `x` as is, 0 to 255 (what makes plain SGD stick, as in the thesis).
    Raw,
}

impl Scaling {
    #[inline]
    pub fn apply(self, v: u8) -> f32 {
        match self {
            Scaling::Unit => v as f32 / 255.0,
            Scaling::Raw => v as f32,
        }
    }
}

/// The pooled output if the layer pools, else the activation output: `[C, b*h*w]`.
fn output_of<'a>(s: &LayerShape, b: usize, pooled: &'a [f32], post: &'a [f32]) -> &'a [f32] {
    let n = s.cout * b * s.out_hw();
    if s.pool {
        &pooled[..n]
    } else {
        &post[..n]
    }
}

/// Buffers for one chunk.
pub struct Workspace {
    pub(crate) arch: Arch,
    layers: Vec<LayerShape>,
    cap: usize,
    /// Images in the chunk now.
    pub(crate) b: usize,
    /// Input `[b, H, W]` (one channel: CNHW and NCHW coincide).
    pub(crate) x: Vec<f32>,
    /// Per layer: `col [cin*k*k, b*H*W]`, `pre [C, b*H*W]`, `post [C, b*H*W]`,
    /// `pooled [C, b*h*w]` and `arg` (pooled layers only).
    col: Vec<Vec<f32>>,
    pub(crate) pre: Vec<Vec<f32>>,
    pub(crate) post: Vec<Vec<f32>>,
    pub(crate) pooled: Vec<Vec<f32>>,
    arg: Vec<Vec<u8>>,
    /// `[b, D]`.
    feats: Vec<f32>,
    /// `[b, K]`.
    pub(crate) logits: Vec<f32>,
    /// `[b, K]`, set by the caller before [`Workspace::backward`].
    pub(crate) dlogits: Vec<f32>,
    dfeats: Vec<f32>,
    /// Per layer, the gradient of its output after pooling `[C, b*h*w]`.
    dout: Vec<Vec<f32>>,
    /// Per layer, gradient of the pre-activation `[C, b*H*W]`.
    dz: Vec<Vec<f32>>,
    dcol: Vec<f32>,
    /// Gradient of the chunk's loss, laid out like the parameters.
    pub(crate) grad: Vec<f32>,
    /// Per layer and filter: did the activation output anything non-zero (dead filters).
    pub(crate) alive: Vec<Vec<bool>>,
}

impl Workspace {
    /// Buffers for chunks of up to `cap` images of `arch`.
    pub fn new(arch: &Arch, cap: usize) -> Workspace {
        let layers = arch.layers();
        let k2 = arch.kernel * arch.kernel;
        let d = arch.features();
        let kk = arch.classes;
        let max_col = layers.iter().map(|l| l.cin * k2 * cap * l.hw()).max().unwrap_or(0);
        Workspace {
            arch: arch.clone(),
            cap,
            b: 0,
            x: vec![0.0; cap * arch.height * arch.width],
            col: layers.iter().map(|l| vec![0.0; l.cin * k2 * cap * l.hw()]).collect(),
            pre: layers.iter().map(|l| vec![0.0; l.cout * cap * l.hw()]).collect(),
            post: layers.iter().map(|l| vec![0.0; l.cout * cap * l.hw()]).collect(),
            pooled: layers.iter().map(|l| vec![0.0; if l.pool { l.cout * cap * l.out_hw() } else { 0 }]).collect(),
            arg: layers.iter().map(|l| vec![0; if l.pool { l.cout * cap * l.out_hw() } else { 0 }]).collect(),
            feats: vec![0.0; cap * d],
            logits: vec![0.0; cap * kk],
            dlogits: vec![0.0; cap * kk],
            dfeats: vec![0.0; cap * d],
            dout: layers.iter().map(|l| vec![0.0; l.cout * cap * l.out_hw()]).collect(),
            dz: layers.iter().map(|l| vec![0.0; l.cout * cap * l.hw()]).collect(),
            dcol: vec![0.0; max_col],
            grad: vec![0.0; arch.param_count()],
            alive: layers.iter().map(|l| vec![false; l.cout]).collect(),
            layers,
        }
    }

    /// Loads `b = images.len() / (H*W)` images, scaled.
    pub fn load(&mut self, images: &[u8], scaling: Scaling) {
        let px = self.arch.height * self.arch.width;
        let b = images.len() / px;
        assert!(b <= self.cap && b * px == images.len(), "chunk of {b} images exceeds {}", self.cap);
        self.b = b;
        for (d, &s) in self.x[..b * px].iter_mut().zip(images) {
            *d = scaling.apply(s);
        }
    }

    /// The output of layer `l` after pooling (the next layer's input), `[C, b*h*w]`.
    pub(crate) fn layer_out(&self, l: usize) -> &[f32] {
        output_of(&self.layers[l], self.b, &self.pooled[l], &self.post[l])
    }

    /// Runs the network on the loaded chunk: fills `pre`, `post`, `pooled` and `logits`.
    /// With `track`, marks the filters whose activation output anything non-zero.
    ///
    /// # Shapes
    /// `x [b, H, W]` to `logits [b, K]`.
    pub fn forward(&mut self, model: &Model, track: bool) {
        debug_assert_eq!(model.arch, self.arch);
        let b = self.b;
        let k = self.arch.kernel;
        let act = self.arch.activation;
        for l in 0..self.layers.len() {
            let s = self.layers[l];
            let n = b * s.hw();
            let kdim = s.cin * k * k;
            let input: &[f32] = if l == 0 {
                &self.x[..n]
            } else {
                output_of(&self.layers[l - 1], b, &self.pooled[l - 1], &self.post[l - 1])
            };
            im2col(input, s.cin, b, s.h, s.w, k, &mut self.col[l][..kdim * n]);
            let pre = &mut self.pre[l][..s.cout * n];
            // Z = W x col, then + bias per row.
            matmul(s.cout, n, kdim, Mat::rows(model.conv_weight(l), kdim), Mat::rows(&self.col[l][..kdim * n], n), pre, n, false);
            let bias = model.conv_bias(l);
            let post = &mut self.post[l][..s.cout * n];
            for c in 0..s.cout {
                let (z, y) = (&mut pre[c * n..(c + 1) * n], &mut post[c * n..(c + 1) * n]);
                let bc = bias[c];
                match act {
                    Activation::Relu => {
                        for (zi, yi) in z.iter_mut().zip(y.iter_mut()) {
                            *zi += bc;
                            *yi = zi.max(0.0);
                        }
                    }
                    Activation::LeakyRelu => {
                        for (zi, yi) in z.iter_mut().zip(y.iter_mut()) {
                            *zi += bc;
                            *yi = if *zi > 0.0 { *zi } else { Activation::LEAKY_SLOPE * *zi };
                        }
                    }
                    Activation::Tanh => {
                        for (zi, yi) in z.iter_mut().zip(y.iter_mut()) {
                            *zi += bc;
                            *yi = zi.tanh();
                        }
                    }
                }
                if track && !self.alive[l][c] {
                    self.alive[l][c] = y.iter().any(|&v| v != 0.0);
                }
            }
            if s.pool {
                let m = s.cout * b * s.out_hw();
                maxpool(post, s.cout * b, s.h, s.w, &mut self.pooled[l][..m], &mut self.arg[l][..m]);
            }
        }
        // Flatten per image in C, H, W order, then the dense layer.
        let last = self.layers.len() - 1;
        let s = self.layers[last];
        let (hw, d, kk) = (s.out_hw(), self.arch.features(), self.arch.classes);
        let out = output_of(&s, b, &self.pooled[last], &self.post[last]);
        for c in 0..s.cout {
            for img in 0..b {
                self.feats[img * d + c * hw..][..hw].copy_from_slice(&out[(c * b + img) * hw..][..hw]);
            }
        }
        let logits = &mut self.logits[..b * kk];
        // logits [b, K] = feats [b, D] x fc^T [D, K]
        matmul(b, kk, d, Mat::rows(&self.feats[..b * d], d), Mat::t(model.fc_weight(), d), logits, kk, false);
        let fb = model.fc_bias();
        for row in logits.chunks_mut(kk) {
            for (o, bias) in row.iter_mut().zip(fb) {
                *o += bias;
            }
        }
    }

    /// Back-propagates `dlogits [b, K]` (already scaled by the caller) and overwrites `grad`
    /// with the gradient of the chunk's share of the loss. Needs the state of the last
    /// [`Workspace::forward`].
    pub fn backward(&mut self, model: &Model) {
        let b = self.b;
        let k = self.arch.kernel;
        let (d, kk) = (self.arch.features(), self.arch.classes);
        let layout = model.layout().clone();
        let dl = &self.dlogits[..b * kk];
        // fc.weight grad [K, D] = dlogits^T [K, b] x feats [b, D]
        matmul(kk, d, b, Mat::t(dl, kk), Mat::rows(&self.feats[..b * d], d), &mut self.grad[layout.fc_w.clone()], d, false);
        let gb = &mut self.grad[layout.fc_b.clone()];
        gb.fill(0.0);
        for row in dl.chunks(kk) {
            for (g, v) in gb.iter_mut().zip(row) {
                *g += v;
            }
        }
        // dfeats [b, D] = dlogits [b, K] x fc [K, D]
        matmul(b, d, kk, Mat::rows(dl, kk), Mat::rows(model.fc_weight(), d), &mut self.dfeats[..b * d], d, false);
        let last = self.layers.len() - 1;
        let s = self.layers[last];
        let hw = s.out_hw();
        for c in 0..s.cout {
            for img in 0..b {
                self.dout[last][(c * b + img) * hw..][..hw].copy_from_slice(&self.dfeats[img * d + c * hw..][..hw]);
            }
        }
        for l in (0..self.layers.len()).rev() {
            let s = self.layers[l];
            let n = b * s.hw();
            let kdim = s.cin * k * k;
            let dz = &mut self.dz[l][..s.cout * n];
            if s.pool {
                let m = s.cout * b * s.out_hw();
                unpool(&self.dout[l][..m], &self.arg[l][..m], s.cout * b, s.h, s.w, dz);
            } else {
                dz.copy_from_slice(&self.dout[l][..s.cout * n]);
            }
            let (pre, post) = (&self.pre[l][..s.cout * n], &self.post[l][..s.cout * n]);
            match self.arch.activation {
                Activation::Relu => {
                    for (g, &z) in dz.iter_mut().zip(pre) {
                        if z <= 0.0 {
                            *g = 0.0;
                        }
                    }
                }
                Activation::LeakyRelu => {
                    for (g, &z) in dz.iter_mut().zip(pre) {
                        if z <= 0.0 {
                            *g *= Activation::LEAKY_SLOPE;
                        }
                    }
                }
                Activation::Tanh => {
                    for (g, &y) in dz.iter_mut().zip(post) {
                        *g *= 1.0 - y * y;
                    }
                }
            }
            let gbias = &mut self.grad[layout.conv_b[l].clone()];
            for (c, g) in gbias.iter_mut().enumerate() {
                *g = dz[c * n..(c + 1) * n].iter().sum();
            }
            // dW [Cout, kdim] = dz [Cout, n] x col^T [n, kdim]
            matmul(s.cout, kdim, n, Mat::rows(dz, n), Mat::t(&self.col[l][..kdim * n], n), &mut self.grad[layout.conv_w[l].clone()], kdim, false);
            if l > 0 {
                // dcol [kdim, n] = W^T [kdim, Cout] x dz [Cout, n]
                let dcol = &mut self.dcol[..kdim * n];
                matmul(kdim, n, s.cout, Mat::t(model.conv_weight(l), kdim), Mat::rows(dz, n), dcol, n, false);
                let prev = self.layers[l - 1];
                let size = prev.cout * b * prev.out_hw();
                col2im(dcol, s.cin, b, s.h, s.w, k, &mut self.dout[l - 1][..size]);
            }
        }
    }
}
