//! Forward and backward passes over one chunk of images.
//!
//! A [`Workspace`] owns every buffer one chunk needs (at most [`CHUNK`] images), so the hot
//! loop allocates nothing. Shape legend: `b` images in the chunk, `C` channels, `H x W`
//! spatial size of a layer's conv output, `k` kernel side, `D = F_L * h_L * w_L` dense
//! inputs, `K` classes. Layouts are described in [`crate::ops`].

use crate::arch::{Activation, Arch, LayerShape};
use crate::direct;
use crate::model::Model;
use crate::ops::{
    flip_transpose, im2col, matmul, matmul_strided, maxpool, maxpool_values, unpool, unpool_relu,
    unpool_relu_transposed, unpools_transposed, Mat,
};
use crate::silent;
use crate::sparse;
use crate::transpose::transpose;
use crate::wgrad;

/// Images per chunk: the unit of work of one thread, and the unit of every summation, so that
/// results do not depend on the thread count.
pub const CHUNK: usize = 4;

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
/// Values before and after a layer's `dz`: what its unfolding reads beyond the first and
/// last position.
fn dz_margin(s: &LayerShape, k: usize) -> usize {
    (k / 2) * (s.w + 1)
}

/// Whether layer `l`'s weight gradient may come from `dz`'s non-zeros ([`sparse`]): where it
/// pools (three values of `dz` in four are zero), has 3x3 kernels and 8 filters or more (the
/// direct product's shapes, whose bits it keeps), and is not the first layer. The first
/// layer's patches are 10 values (one channel): per non-zero there is too little to multiply
/// for the gather to beat the direct product (measured: slower, README "Speed").
fn sparse_takes(l: usize, s: &LayerShape, k: usize) -> bool {
    l > 0 && s.pool && k == sparse::K && s.cout >= 8
}

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
    /// Per layer: `col [cin*k*k + 1, b*H*W]` (a last row of ones carries the bias through
    /// the product), `pre [C, b*H*W]`, `post [C, b*H*W]`, `pooled [C, b*h*w]` and `arg`.
    /// A ReLU layer that pools goes straight from `pre` to `pooled` (the max of ReLUs is the
    /// ReLU of the max), and fills `post` only when `keep_post` asks for it.
    col: Vec<Vec<f32>>,
    pub(crate) pre: Vec<Vec<f32>>,
    pub(crate) post: Vec<Vec<f32>>,
    pub(crate) pooled: Vec<Vec<f32>>,
    arg: Vec<Vec<u8>>,
    /// Per layer, `[W | b]` as one `[C, cin*k*k + 1]` matrix.
    wb: Vec<Vec<f32>>,
    /// `[b, D]`.
    feats: Vec<f32>,
    /// `[b, K]`.
    pub(crate) logits: Vec<f32>,
    /// `[b, K]`, set by the caller before [`Workspace::backward`].
    pub(crate) dlogits: Vec<f32>,
    dfeats: Vec<f32>,
    /// Per layer, the gradient of its output after pooling `[C, b*h*w]`.
    dout: Vec<Vec<f32>>,
    /// Per layer, gradient of the pre-activation `[C, b*H*W]`, after a margin of
    /// [`dz_margin`] values and before another, so that the input gradient reads it unfolded
    /// in place ([`direct::Unfolded`]).
    dz: Vec<Vec<f32>>,
    /// Per layer from the second, [`direct::unfold_masks`] for `cap` images (empty for the
    /// first, whose input gradient is not needed).
    unfold_masks: Vec<direct::UnfoldMasks>,
    /// [`direct::unfold_taps`] of the layer being back-propagated.
    unfold_taps: Vec<(usize, usize)>,
    /// Unfolded `dz` of the layer being back-propagated, `[Cout*k*k, b*H*W]`.
    dcol: Vec<f32>,
    /// Flipped, transposed kernels of that layer, `[Cin, Cout*k*k]`.
    wt: Vec<f32>,
    /// Gradient of `[W | b]` of that layer, `[Cout, cin*k*k + 1]` (or transposed, from the
    /// direct product).
    dwb: Vec<f32>,
    /// `dz` of the layer being back-propagated, transposed: `[b*H*W, Cout]`.
    dzt: Vec<f32>,
    /// `dz`'s non-zero values of the layer being back-propagated, for [`sparse`].
    nonzeros: sparse::Nonzeros,
    /// Per layer that [`sparse`] takes (pooled, 3x3), [`sparse::frame`] for `cap` images.
    frames: Vec<Vec<u32>>,
    /// [`sparse`]'s buffers, each of the largest [`sparse::scratch_len`].
    sparse_scratch: [Vec<f32>; 2],
    /// Per layer, whether the last backward pass wrote `dz` (a first layer's may go to `dzt`
    /// alone, [`unpool_relu_transposed`]).
    dz_written: Vec<bool>,
    /// Per layer and filter: did the activation output anything non-zero (dead filters).
    pub(crate) alive: Vec<Vec<bool>>,
    /// Per layer, its input channels that are not all zeros on the loaded chunk (set by
    /// [`Workspace::forward`], read again by [`Workspace::backward`]).
    live: Vec<Vec<usize>>,
    /// The channels whose input-gradient rows are computed ([`pad_rows`]).
    rows: Vec<usize>,
    /// Per layer, whether the last forward pass wrote `col` (else it read its input in place).
    col_written: Vec<bool>,
    /// [`live_terms`]'s buffers.
    gather: Gather,
    /// Forward passes only (no [`Workspace::backward`]): the products read each layer's input
    /// unfolded in place ([`direct::Unfolded`]) instead of writing `col`.
    inference: bool,
    /// The input of the layer being computed, between margins, then `b*H*W` ones (the bias
    /// row), for [`direct::Unfolded`] in an inference pass.
    xin: Vec<f32>,
    /// The row table ([`direct::unfold_taps`]) of `xin`, the bias row last.
    taps_in: Vec<(usize, usize)>,
    /// The plain computation (tests compare): every term of the forward product, every row of
    /// the input gradient, and `col` written by every forward pass.
    #[cfg(test)]
    pub(crate) every_row: bool,
    /// Fill `post` for every layer (activation capture).
    pub(crate) keep_post: bool,
    /// Stop at the last conv layer's `post` (its pooling and the dense layer feed only the
    /// logits, which a capture of maps does not read); requires `keep_post`.
    pub(crate) maps_only: bool,
}

impl Workspace {
    /// Buffers for chunks of up to `cap` images of `arch`.
    pub fn new(arch: &Arch, cap: usize) -> Workspace {
        let layers = arch.layers();
        let k2 = arch.kernel * arch.kernel;
        let d = arch.features();
        let kk = arch.classes;
        let max_dcol = layers
            .iter()
            .skip(1)
            .map(|l| l.cout * k2 * cap * l.hw())
            .max()
            .unwrap_or(0);
        let max_wt = layers
            .iter()
            .map(|l| l.cin * l.cout * k2)
            .max()
            .unwrap_or(0);
        let max_wb = layers
            .iter()
            .map(|l| l.cout * (l.cin * k2 + 1))
            .max()
            .unwrap_or(0);
        Workspace {
            arch: arch.clone(),
            cap,
            b: 0,
            x: vec![0.0; cap * arch.height * arch.width],
            col: layers
                .iter()
                .map(|l| vec![0.0; (l.cin * k2 + 1) * cap * l.hw()])
                .collect(),
            pre: layers
                .iter()
                .map(|l| vec![0.0; l.cout * cap * l.hw()])
                .collect(),
            post: layers
                .iter()
                .map(|l| vec![0.0; l.cout * cap * l.hw()])
                .collect(),
            pooled: layers
                .iter()
                .map(|l| vec![0.0; if l.pool { l.cout * cap * l.out_hw() } else { 0 }])
                .collect(),
            arg: layers
                .iter()
                .map(|l| vec![0; if l.pool { l.cout * cap * l.out_hw() } else { 0 }])
                .collect(),
            wb: layers
                .iter()
                .map(|l| vec![0.0; l.cout * (l.cin * k2 + 1)])
                .collect(),
            feats: vec![0.0; cap * d],
            logits: vec![0.0; cap * kk],
            dlogits: vec![0.0; cap * kk],
            dfeats: vec![0.0; cap * d],
            dout: layers
                .iter()
                .map(|l| vec![0.0; l.cout * cap * l.out_hw()])
                .collect(),
            dz: layers
                .iter()
                .map(|l| vec![0.0; l.cout * cap * l.hw() + 2 * dz_margin(l, arch.kernel)])
                .collect(),
            unfold_masks: layers
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    if i > 0 {
                        direct::unfold_masks(l.h, l.w, arch.kernel, cap)
                    } else {
                        direct::UnfoldMasks::default()
                    }
                })
                .collect(),
            unfold_taps: Vec::new(),
            dcol: vec![0.0; max_dcol],
            wt: vec![0.0; max_wt],
            dwb: vec![0.0; max_wb],
            // Only layers of 8 filters or more use it (the direct weight gradient); room to
            // start on a 64-byte line ([`sparse::aligned`]).
            dzt: vec![
                0.0;
                layers
                    .iter()
                    .filter(|l| l.cout >= 8)
                    .map(|l| l.cout * cap * l.hw() + sparse::ALIGN)
                    .max()
                    .unwrap_or(0)
            ],
            nonzeros: sparse::Nonzeros::default(),
            frames: layers
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    if sparse_takes(i, l, arch.kernel) {
                        sparse::frame(cap, l.h, l.w)
                    } else {
                        Vec::new()
                    }
                })
                .collect(),
            sparse_scratch: {
                let len = layers
                    .iter()
                    .enumerate()
                    .filter(|(i, l)| sparse_takes(*i, l, arch.kernel))
                    .map(|(_, l)| sparse::scratch_len(l.cin, l.cout, cap, l.h, l.w))
                    .max()
                    .unwrap_or(0);
                [vec![0.0; len], vec![0.0; len]]
            },
            dz_written: vec![false; layers.len()],
            alive: layers.iter().map(|l| vec![false; l.cout]).collect(),
            live: layers.iter().map(|s| Vec::with_capacity(s.cin)).collect(),
            rows: Vec::with_capacity(layers.iter().map(|s| s.cin).max().unwrap_or(0)),
            col_written: vec![false; layers.len()],
            gather: Gather::default(),
            inference: false,
            xin: Vec::new(),
            taps_in: Vec::new(),
            #[cfg(test)]
            every_row: false,
            keep_post: false,
            maps_only: false,
            layers,
        }
    }

    /// Buffers for forward passes alone over chunks of up to `cap` images of `arch` (an
    /// evaluation, a capture of maps): each layer's product reads its input unfolded in place
    /// rather than from a written `col`, the same values, so the same bits.
    /// [`Workspace::backward`] refuses it (the weight gradients read `col`).
    pub fn inference(arch: &Arch, cap: usize) -> Workspace {
        let mut ws = Workspace::new(arch, cap);
        ws.inference = true;
        if let Some(s) = ws.layers.first() {
            ws.unfold_masks[0] = direct::unfold_masks(s.h, s.w, arch.kernel, cap);
        }
        ws
    }

    /// Loads `b = images.len() / (H*W)` images, scaled.
    pub fn load(&mut self, images: &[u8], scaling: Scaling) {
        let px = self.arch.height * self.arch.width;
        let b = images.len() / px;
        assert!(
            b <= self.cap && b * px == images.len(),
            "chunk of {b} images exceeds {}",
            self.cap
        );
        self.b = b;
        for (d, &s) in self.x[..b * px].iter_mut().zip(images) {
            *d = scaling.apply(s);
        }
    }

    /// Loads the given images (each `H*W` bytes), scaled.
    pub fn load_images<'a>(
        &mut self,
        images: impl ExactSizeIterator<Item = &'a [u8]>,
        scaling: Scaling,
    ) {
        let px = self.arch.height * self.arch.width;
        let b = images.len();
        assert!(b <= self.cap, "chunk of {b} images exceeds {}", self.cap);
        self.b = b;
        for (dst, img) in self.x.chunks_mut(px).zip(images) {
            for (d, &s) in dst.iter_mut().zip(img) {
                *d = scaling.apply(s);
            }
        }
    }

    /// The output of layer `l` after pooling (the next layer's input), `[C, b*h*w]`.
    pub(crate) fn layer_out(&self, l: usize) -> &[f32] {
        output_of(&self.layers[l], self.b, &self.pooled[l], &self.post[l])
    }

    /// Sets layer `l`'s output (the next layer's input) for a chunk of `b` images to `src
    /// [C, b*h*w]` but for its channel `without`, as the network without that filter of `l`
    /// computes it when the others' sums do not depend on how many there are (for
    /// [`Workspace::forward_from`]).
    pub(crate) fn set_layer_out(
        &mut self,
        l: usize,
        b: usize,
        src: &[f32],
        without: Option<usize>,
    ) {
        let s = self.layers[l];
        let per = b * s.out_hw();
        assert!(b <= self.cap, "chunk of {b} images exceeds {}", self.cap);
        let gone = usize::from(without.is_some());
        assert_eq!(src.len(), (s.cout + gone) * per, "layer {l}'s output");
        self.b = b;
        let dst = if s.pool {
            &mut self.pooled[l]
        } else {
            &mut self.post[l]
        };
        let kept = src
            .chunks(per)
            .enumerate()
            .filter(|&(c, _)| Some(c) != without);
        for (d, (_, from)) in dst.chunks_mut(per).zip(kept) {
            d.copy_from_slice(from);
        }
    }

    /// The input of layer `l` for the loaded chunk, `[Cin, b*H*W]`.
    fn layer_in(&self, l: usize) -> &[f32] {
        if l == 0 {
            &self.x[..self.b * self.layers[0].hw()]
        } else {
            self.layer_out(l - 1)
        }
    }

    /// True when layer `l` pools straight from `pre` (ReLU), without `post`.
    fn fused(&self, s: &LayerShape) -> bool {
        s.pool && self.arch.activation == Activation::Relu
    }

    /// Runs the network on the loaded chunk: fills `pre`, `pooled` (and `post` where needed)
    /// and `logits`. With `track`, marks the filters whose activation output anything
    /// non-zero.
    ///
    /// # Shapes
    /// `x [b, H, W]` to `logits [b, K]`.
    pub fn forward(&mut self, model: &Model, track: bool) {
        self.forward_from(model, 0, track)
    }

    /// [`Workspace::forward`] from layer `first` on: layer `first - 1`'s output must be in
    /// place ([`Workspace::set_layer_out`]; the loaded images for `first = 0`). With `first`
    /// the number of conv layers, the dense layer alone on the last layer's output.
    ///
    /// # Shapes
    /// layer `first`'s input `[C, b*H*W]` to `logits [b, K]`.
    // A numeric kernel, long on purpose: one pass over the layers in which each layer's
    // workspace buffers are borrowed once; split, every piece would take a dozen of them.
    pub(crate) fn forward_from(&mut self, model: &Model, first: usize, track: bool) {
        debug_assert_eq!(model.arch, self.arch);
        let b = self.b;
        let k = self.arch.kernel;
        let act = self.arch.activation;
        for l in first..self.layers.len() {
            let s = self.layers[l];
            let n = b * s.hw();
            let kdim = s.cin * k * k;
            let fused = self.fused(&s);
            let input: &[f32] = if l == 0 {
                &self.x[..n]
            } else {
                output_of(
                    &self.layers[l - 1],
                    b,
                    &self.pooled[l - 1],
                    &self.post[l - 1],
                )
            };
            let mut live = std::mem::take(&mut self.live[l]);
            live_channels(input, n, &mut live);
            let silent_input = live.is_empty();
            let pays = direct::pays(s.cout, kdim + 1, n);
            // Read in place where no weight gradient will read `col`: passes with no backward,
            // and the layers whose gradient comes from dz's non-zeros ([`sparse`], which reads
            // its own copy of the input; `backward` writes `col` if it falls back).
            #[cfg(test)]
            let plain = self.every_row;
            #[cfg(not(test))]
            let plain = false;
            let unfold = pays && (self.inference || (sparse_takes(l, &s, k) && !plain));
            let operand = if unfold {
                self.col_written[l] = false;
                Operand::Unfolded(unfold_input(
                    input,
                    (s, b, k),
                    &self.unfold_masks[l],
                    (&mut self.xin, &mut self.taps_in),
                ))
            } else {
                self.write_col(l);
                Operand::Col(&self.col[l][..(kdim + 1) * n])
            };
            let wb = &mut self.wb[l];
            let (w, bias) = (model.conv_weight(l), model.conv_bias(l));
            for c in 0..s.cout {
                wb[c * (kdim + 1)..c * (kdim + 1) + kdim]
                    .copy_from_slice(&w[c * kdim..(c + 1) * kdim]);
                wb[c * (kdim + 1) + kdim] = bias[c];
            }
            // Z = [W | b] x [col; 1]: read in place by the direct product where it sums in the
            // GEMM's order; else computed as Z^T = [col; 1]^T x [W | b]^T written into Z's
            // layout, where the big operand packs along its rows, the faster way.
            let pre = &mut self.pre[l][..s.cout * n];
            if pays && silent_input && silent::all_finite(wb) {
                // A silent input (a dead layer before): the biases ([`silent`]).
                silent::bias_only(bias, n, pre);
            } else if pays {
                #[cfg(test)]
                let dropped = live.len() < s.cin && silent::all_finite(wb) && !self.every_row;
                #[cfg(not(test))]
                let dropped = live.len() < s.cin && silent::all_finite(wb);
                let shape = (s.cout, k * k, n);
                if !(dropped && live_terms(&live, (wb, operand), shape, &mut self.gather, pre)) {
                    match operand {
                        Operand::Col(col) => direct::product(wb, col, (s.cout, kdim + 1, n), pre),
                        Operand::Unfolded(u) => {
                            direct::product_unfolded(wb, u, (s.cout, kdim + 1, n), pre)
                        }
                    }
                }
            } else {
                let Operand::Col(col) = operand else {
                    unreachable!("unfolded only where the direct product pays")
                };
                matmul_strided(
                    n,
                    s.cout,
                    kdim + 1,
                    Mat::t(col, n),
                    Mat::t(wb, kdim + 1),
                    pre,
                    1,
                    n,
                    false,
                );
            }
            self.live[l] = live;
            if !fused || self.keep_post {
                let post = &mut self.post[l][..s.cout * n];
                match act {
                    Activation::Relu => {
                        for (y, &z) in post.iter_mut().zip(pre.iter()) {
                            *y = z.max(0.0);
                        }
                    }
                    Activation::LeakyRelu => {
                        for (y, &z) in post.iter_mut().zip(pre.iter()) {
                            *y = if z > 0.0 {
                                z
                            } else {
                                Activation::LEAKY_SLOPE * z
                            };
                        }
                    }
                    Activation::Tanh => {
                        for (y, &z) in post.iter_mut().zip(pre.iter()) {
                            *y = z.tanh();
                        }
                    }
                }
            }
            if self.maps_only && l + 1 == self.layers.len() {
                debug_assert!(self.keep_post);
                return;
            }
            if s.pool {
                let m = s.cout * b * s.out_hw();
                let src: &[f32] = if fused {
                    pre
                } else {
                    &self.post[l][..s.cout * n]
                };
                // Which input won is read by the backward pass only.
                let pool = if self.inference {
                    maxpool_values
                } else {
                    maxpool
                };
                pool(
                    src,
                    s.cout * b,
                    s.h,
                    s.w,
                    &mut self.pooled[l][..m],
                    &mut self.arg[l][..m],
                );
                if fused {
                    for v in &mut self.pooled[l][..m] {
                        *v = v.max(0.0);
                    }
                }
            }
            if track {
                // A filter is alive if its activation output is non-zero somewhere: for every
                // activation here that is a non-zero pre-activation (ReLU: a positive one).
                for c in 0..s.cout {
                    if !self.alive[l][c] {
                        let z = &self.pre[l][c * n..(c + 1) * n];
                        self.alive[l][c] = match act {
                            Activation::Relu => z.iter().any(|&v| v > 0.0),
                            _ => z.iter().any(|&v| v != 0.0),
                        };
                    }
                }
            }
        }
        // Flatten per image in C, H, W order, then the dense layer.
        let last = self.layers.len() - 1;
        let s = self.layers[last];
        let (hw, d) = (s.out_hw(), self.arch.features());
        let out = output_of(&s, b, &self.pooled[last], &self.post[last]);
        for c in 0..s.cout {
            for img in 0..b {
                self.feats[img * d + c * hw..][..hw]
                    .copy_from_slice(&out[(c * b + img) * hw..][..hw]);
            }
        }
        self.dense_forward(model);
    }

    /// The dense layer: `logits [b, K] = feats [b, D] x fc^T [D, K] + fc.bias`.
    fn dense_forward(&mut self, model: &Model) {
        let (b, d, kk) = (self.b, self.arch.features(), self.arch.classes);
        let logits = &mut self.logits[..b * kk];
        // logits [b, K] = feats [b, D] x fc^T [D, K]
        matmul(
            b,
            kk,
            d,
            Mat::rows(&self.feats[..b * d], d),
            Mat::t(model.fc_weight(), d),
            logits,
            kk,
            false,
        );
        let fb = model.fc_bias();
        for row in logits.chunks_mut(kk) {
            for (o, bias) in row.iter_mut().zip(fb) {
                *o += bias;
            }
        }
    }

    /// The dense layer's weight and bias gradients from `dlogits`, into `grad`'s `fc`
    /// ranges.
    ///
    /// # Shapes
    /// `dlogits [b, K]`, `feats [b, D]` to `fc.weight [K, D]`, `fc.bias [K]`.
    fn dense_backward(&mut self, model: &Model, grad: &mut [f32]) {
        let (b, d, kk) = (self.b, self.arch.features(), self.arch.classes);
        let layout = model.layout();
        let dl = &self.dlogits[..b * kk];
        // fc.weight grad [K, D] = dlogits^T [K, b] x feats [b, D]
        matmul(
            kk,
            d,
            b,
            Mat::t(dl, kk),
            Mat::rows(&self.feats[..b * d], d),
            &mut grad[layout.fc_w.clone()],
            d,
            false,
        );
        let gb = &mut grad[layout.fc_b.clone()];
        gb.fill(0.0);
        for row in dl.chunks(kk) {
            for (g, v) in gb.iter_mut().zip(row) {
                *g += v;
            }
        }
    }

    /// Whether the loaded chunk's last conv layer output `+0` everywhere (bits: `-0` counts
    /// as output) from finite pre-activations: what [`crate::frozen`] needs of every chunk.
    pub(crate) fn last_silent(&self) -> bool {
        let last = self.layers.len() - 1;
        let n = self.layers[last].cout * self.b * self.layers[last].hw();
        let out = self.layer_out(last);
        out.iter().fold(true, |z, &x| z & (x.to_bits() == 0))
            && silent::all_finite(&self.pre[last][..n])
    }

    /// [`Workspace::forward`] of `b` images on which the last conv layer is known to output
    /// `+0` everywhere ([`crate::frozen`]): the dense layer on features of `+0`, the input
    /// [`Workspace::forward`] would give it. Leaves the conv layers' buffers as they were.
    ///
    /// # Shapes
    /// `b` images to `logits [b, K]`.
    pub(crate) fn forward_silent(&mut self, model: &Model, b: usize) {
        assert!(b <= self.cap, "chunk of {b} images exceeds {}", self.cap);
        self.b = b;
        self.feats[..b * self.arch.features()].fill(0.0);
        self.dense_forward(model);
    }

    /// [`Workspace::backward`] after [`Workspace::forward_silent`]: `+0` for every conv
    /// parameter (a last layer that outputs `+0` passes no gradient back: `unpool_relu` and
    /// the ReLU write `+0` whatever `dlogits` is, and every product below sums that to `+0`,
    /// [`silent`]), the dense layer's as [`Workspace::backward`] computes them.
    pub(crate) fn backward_silent(&mut self, model: &Model, grad: &mut [f32]) {
        grad.fill(0.0);
        self.dense_backward(model, grad);
    }

    /// First-order Taylor importance terms of the last forward and backward (Molchanov et al.
    /// 2017): for layer `l`, filter `f` and image `img` of the chunk, the sum over positions
    /// of the activation output times the loss gradient with respect to it.
    pub(crate) fn taylor_terms(&mut self, l: usize, out: &mut [f64]) {
        // A first layer whose backward pass wrote `dzt` alone: its `dz` now.
        if !self.dz_written[l] && self.fused(&self.layers[l]) {
            self.unpool_dz(l);
            self.dz_written[l] = true;
        }
        let s = self.layers[l];
        let (b, n) = (self.b, self.b * s.hw());
        for f in 0..s.cout {
            for img in 0..b {
                let at = f * n + img * s.hw();
                let dz_at = dz_margin(&s, self.arch.kernel) + at;
                let z = &self.pre[l][at..at + s.hw()];
                let dz = &self.dz[l][dz_at..dz_at + s.hw()];
                // a * dL/da = a * dz / act'(z); for ReLU, a * dz wherever a > 0.
                let t: f64 = z
                    .iter()
                    .zip(dz)
                    .map(|(&z, &g)| match self.arch.activation {
                        Activation::Relu => (z.max(0.0) * g) as f64,
                        // a / act'(z) is z on both sides of zero.
                        Activation::LeakyRelu => (z * g) as f64,
                        Activation::Tanh => {
                            let y = z.tanh();
                            let d = 1.0 - y * y;
                            if d > 0.0 {
                                (y * g / d) as f64
                            } else {
                                0.0
                            }
                        }
                    })
                    .sum();
                out[f * b + img] = t;
            }
        }
    }

    /// Layer `l`'s `[col; 1]` from its input: for the forward product, or in `backward` where
    /// the forward pass read the input in place.
    fn write_col(&mut self, l: usize) {
        let (s, b, k) = (self.layers[l], self.b, self.arch.kernel);
        let (n, kdim) = (b * s.hw(), s.cin * k * k);
        let mut col = std::mem::take(&mut self.col[l]);
        im2col(
            self.layer_in(l),
            s.cin,
            b,
            s.h,
            s.w,
            k,
            &mut col[..kdim * n],
        );
        col[kdim * n..(kdim + 1) * n].fill(1.0);
        self.col[l] = col;
        self.col_written[l] = true;
    }

    /// Layer `l`'s `d[W | b]` from `dz`'s non-zeros ([`sparse::weight_gradient`]) into `dwb`
    /// as `[dW [Cout, cin*k*k] | db [Cout]]`; `false` (nothing written) where it does not
    /// apply. Needs `dz` of the layer and the state of the last forward pass.
    fn sparse_weight_gradient(&mut self, l: usize) -> bool {
        let (s, b, k) = (self.layers[l], self.b, self.arch.kernel);
        if !sparse_takes(l, &s, k) {
            return false;
        }
        let (n, kdim, margin) = (b * s.hw(), s.cin * k * k, dz_margin(&s, k));
        let dz = &self.dz[l][margin..margin + s.cout * n];
        let depth = direct::block_depth(kdim + 1, n, s.cout).expect("the direct product's");
        self.nonzeros.collect(dz, (s.cout, n), depth);
        let prev = &self.layers[l - 1];
        let args = sparse::WeightArgs {
            nz: &self.nonzeros,
            x: output_of(prev, b, &self.pooled[l - 1], &self.post[l - 1]),
            dz,
            frame: &self.frames[l],
        };
        let shape = sparse::Shape {
            cin: s.cin,
            cout: s.cout,
            b,
            h: s.h,
            w: s.w,
        };
        let (gw, gb) = self.dwb[..s.cout * (kdim + 1)].split_at_mut(s.cout * kdim);
        let [one, two] = &mut self.sparse_scratch;
        sparse::weight_gradient(crate::isa::isa(), args, shape, [one, two], gw, gb)
    }

    /// A fused layer's `dz` from its pooled gradient ([`unpool_relu`]): the gradient reaches
    /// each window's winner where the pooled value is positive.
    fn unpool_dz(&mut self, l: usize) {
        let (s, b, k) = (self.layers[l], self.b, self.arch.kernel);
        let (n, m, margin) = (b * s.hw(), s.cout * b * s.out_hw(), dz_margin(&s, k));
        unpool_relu(
            &self.dout[l][..m],
            &self.pooled[l][..m],
            &self.arg[l][..m],
            s.cout * b,
            s.h,
            s.w,
            &mut self.dz[l][margin..margin + s.cout * n],
        );
    }

    /// Whether layer `l`'s backward pass unpools its gradient straight into `dzt`
    /// ([`unpool_relu_transposed`]): a first layer (no input gradient reads `dz`) with ReLU
    /// and pooling, whose weight gradient is the direct product's, on shapes the kernel takes.
    fn unpools_transposed(&self, l: usize) -> bool {
        let s = &self.layers[l];
        let kdim = s.cin * self.arch.kernel * self.arch.kernel;
        #[cfg(test)]
        if self.every_row {
            return false;
        }
        l == 0
            && self.fused(s)
            && s.cout >= 8
            && direct::pays(kdim + 1, self.b * s.hw(), s.cout)
            && !sparse_takes(l, s, self.arch.kernel)
            && unpools_transposed(s.cout, s.h, s.w)
    }

    /// Back-propagates `dlogits [b, K]` (already scaled by the caller) and overwrites `grad`
    /// (laid out like the parameters) with the gradient of the chunk's share of the loss.
    /// Needs the state of the last [`Workspace::forward`].
    // A numeric kernel, long on purpose, for the reason `forward` gives.
    pub fn backward(&mut self, model: &Model, grad: &mut [f32]) {
        assert!(
            !self.inference,
            "an inference workspace wrote no col for the weight gradients"
        );
        let b = self.b;
        let k = self.arch.kernel;
        let (d, kk) = (self.arch.features(), self.arch.classes);
        let layout = model.layout().clone();
        self.dense_backward(model, grad);
        let dl = &self.dlogits[..b * kk];
        // dfeats [b, D] = dlogits [b, K] x fc [K, D]
        matmul(
            b,
            d,
            kk,
            Mat::rows(dl, kk),
            Mat::rows(model.fc_weight(), d),
            &mut self.dfeats[..b * d],
            d,
            false,
        );
        let last = self.layers.len() - 1;
        let s = self.layers[last];
        let hw = s.out_hw();
        for c in 0..s.cout {
            for img in 0..b {
                self.dout[last][(c * b + img) * hw..][..hw]
                    .copy_from_slice(&self.dfeats[img * d + c * hw..][..hw]);
            }
        }
        for l in (0..self.layers.len()).rev() {
            let s = self.layers[l];
            let n = b * s.hw();
            let kdim = s.cin * k * k;
            let fused = self.fused(&s);
            let margin = dz_margin(&s, k);
            // A first layer's `dz` goes to `dzt` alone, already transposed.
            let into_dzt = self.unpools_transposed(l);
            self.dz_written[l] = !into_dzt;
            if into_dzt {
                let m = s.cout * b * s.out_hw();
                unpool_relu_transposed(
                    &self.dout[l][..m],
                    &self.pooled[l][..m],
                    &self.arg[l][..m],
                    (s.cout, b, s.h, s.w),
                    &mut sparse::aligned(&mut self.dzt)[..n * s.cout],
                );
            } else if fused {
                self.unpool_dz(l);
            }
            let dz = &mut self.dz[l][margin..margin + s.cout * n];
            let pre = &self.pre[l][..s.cout * n];
            if !fused {
                if s.pool {
                    let m = s.cout * b * s.out_hw();
                    unpool(
                        &self.dout[l][..m],
                        &self.arg[l][..m],
                        s.cout * b,
                        s.h,
                        s.w,
                        dz,
                    );
                } else {
                    dz.copy_from_slice(&self.dout[l][..s.cout * n]);
                }
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
                        let post = &self.post[l][..s.cout * n];
                        for (g, &y) in dz.iter_mut().zip(post) {
                            *g *= 1.0 - y * y;
                        }
                    }
                }
            }
            // d[W | b] [Cout, kdim+1] = dz [Cout, n] x [col; 1]^T [n, kdim+1]. The direct
            // product reads [col; 1] in place and needs dz transposed, a small copy; it computes
            // d[W | b]^T [kdim+1, Cout]. Else the GEMM computes it transposed (as the forward
            // product) into d[W | b]'s layout, and so does `wgrad` for 2 to 7 filters.
            // A pooled layer's comes from dz's non-zeros instead, where it can ([`sparse`]).
            // A silent layer (dz all zeros) has +0 gradients, where the engine's own products
            // would compute them ([`silent`]).
            let (wr, br) = (layout.conv_w[l].start, layout.conv_b[l].start);
            let direct_w = s.cout >= 8 && direct::pays(kdim + 1, n, s.cout);
            let silent_dz = if into_dzt {
                silent::all_zero(&sparse::aligned(&mut self.dzt)[..n * s.cout])
            } else {
                silent::all_zero(&self.dz[l][margin..margin + s.cout * n])
            };
            let skip_w = silent_dz
                && (direct_w || wgrad::applies(kdim + 1, s.cout))
                && silent::all_finite(self.layer_in(l));
            let sparse = !skip_w && direct_w && self.sparse_weight_gradient(l);
            if !skip_w && !sparse && !self.col_written[l] {
                self.write_col(l);
            }
            let dwb = &mut self.dwb[..s.cout * (kdim + 1)];
            let col = &self.col[l][..(kdim + 1) * n];
            let dz = &self.dz[l][margin..margin + s.cout * n];
            if skip_w {
                grad[wr..wr + s.cout * kdim].fill(0.0);
                grad[br..br + s.cout].fill(0.0);
            } else if sparse {
                // [d W | d b] as [Cout*kdim | Cout].
                grad[wr..wr + s.cout * kdim].copy_from_slice(&dwb[..s.cout * kdim]);
                grad[br..br + s.cout].copy_from_slice(&dwb[s.cout * kdim..]);
            } else if direct_w {
                let dzt = &mut sparse::aligned(&mut self.dzt)[..n * s.cout];
                if !into_dzt {
                    transpose(dz, (s.cout, n), dzt);
                }
                direct::product(col, dzt, (kdim + 1, n, s.cout), dwb);
                for c in 0..s.cout {
                    for i in 0..kdim {
                        grad[wr + c * kdim + i] = dwb[i * s.cout + c];
                    }
                    grad[br + c] = dwb[kdim * s.cout + c];
                }
            } else {
                if wgrad::applies(kdim + 1, s.cout) {
                    wgrad::weight_gradient(col, dz, (kdim + 1, n, s.cout), dwb);
                } else {
                    matmul_strided(
                        kdim + 1,
                        s.cout,
                        n,
                        Mat::rows(col, n),
                        Mat::t(dz, n),
                        dwb,
                        1,
                        kdim + 1,
                        false,
                    );
                }
                for c in 0..s.cout {
                    grad[wr + c * kdim..wr + (c + 1) * kdim]
                        .copy_from_slice(&dwb[c * (kdim + 1)..c * (kdim + 1) + kdim]);
                    grad[br + c] = dwb[c * (kdim + 1) + kdim];
                }
            }
            if l > 0 {
                // The input gradient is a "same" convolution of dz with the flipped, transposed
                // kernels: dX [Cin, n] = Wt [Cin, Cout*k*k] x col(dz) [Cout*k*k, n]. Unfolding dz
                // (Cout channels) is a copy, cheaper than folding back Cin*k*k rows with adds.
                let kt = s.cout * k * k;
                flip_transpose(
                    model.conv_weight(l),
                    s.cout,
                    s.cin,
                    k,
                    &mut self.wt[..s.cin * kt],
                );
                let prev = self.layers[l - 1];
                let size = prev.cout * b * prev.out_hw();
                // A channel below that is silent on the chunk (ReLU and pooling, no positive
                // output) passes none of dX back: its dz is zero whatever its row of dX holds,
                // so the row is not computed; nor is dX when the whole layer is silent.
                // The forward found them: layer l's input is the layer below's output.
                let live = std::mem::take(&mut self.live[l]);
                #[cfg(test)]
                let fused = self.fused(&prev) && !self.every_row;
                #[cfg(not(test))]
                let fused = self.fused(&prev);
                let unread = fused && live.is_empty();
                // Rows of silent channels fill the last tile where they fit ([`pad_rows`]):
                // each costs less than the narrow tiles that leaving it out makes.
                let every = !fused || {
                    pad_rows(&live, s.cin, direct::tile_rows(), &mut self.rows);
                    self.rows.len() == s.cin
                };
                let dx = &mut self.dout[l - 1][..size];
                let pays = direct::pays(s.cin, kt, n);
                if unread || (pays && silent_dz && silent::all_finite(&self.wt[..s.cin * kt])) {
                    dx.fill(0.0);
                } else if pays {
                    // dz unfolded in place: no copy of Cout*k*k rows.
                    let masks = &self.unfold_masks[l];
                    let taps = &mut self.unfold_taps;
                    direct::unfold_taps((s.cout, n, s.w, k), margin, masks.stride, taps);
                    let rows = direct::Unfolded {
                        x: &self.dz[l],
                        taps: &self.unfold_taps,
                        masks,
                    };
                    if every {
                        direct::product_unfolded(&self.wt[..s.cin * kt], rows, (s.cin, kt, n), dx);
                    } else {
                        live_rows(&self.rows, (&mut self.wt, kt, n), rows, dx);
                    }
                } else {
                    let dcol = &mut self.dcol[..kt * n];
                    im2col(dz, s.cout, b, s.h, s.w, k, dcol);
                    matmul(
                        s.cin,
                        n,
                        kt,
                        Mat::rows(&self.wt[..s.cin * kt], kt),
                        Mat::rows(dcol, n),
                        dx,
                        n,
                        false,
                    );
                }
                self.live[l] = live;
            }
        }
    }
}

/// The channels of `x [C, n]` that are not all zeros (of either sign), into `live`.
fn live_channels(x: &[f32], n: usize, live: &mut Vec<usize>) {
    live.clear();
    live.extend((0..x.len() / n).filter(|&c| !silent::all_zero(&x[c * n..][..n])));
}

/// The channels whose rows of the input gradient are computed: those in `live` (ascending),
/// then the first silent ones until a multiple of `tile` rows or all `cin`. A silent
/// channel's row is not read (its layer's backward pass zeroes its gradient whatever the row
/// holds), and the product sums each row alone, so the live rows keep their bits; in a
/// 32-32's training the first layer has a silent filter or two on nearly every chunk, and
/// its 31 rows as tiles of 8, 4, 2 and 1 took 18% longer than all 32 (2026-12-05).
fn pad_rows(live: &[usize], cin: usize, tile: usize, rows: &mut Vec<usize>) {
    rows.clear();
    rows.extend_from_slice(live);
    let want = live.len().next_multiple_of(tile.max(1)).min(cin);
    let mut silent = (0..cin).filter(|c| live.binary_search(c).is_err());
    while rows.len() < want {
        rows.push(silent.next().expect("fewer rows than channels"));
    }
    rows.sort_unstable();
}

/// Buffers of [`live_terms`]: the rows of `col` kept, and `[W | b]`'s columns for them.
#[derive(Default)]
struct Gather {
    rows: Vec<usize>,
    wb: Vec<f32>,
    /// The kept rows' taps, for an unfolded operand.
    taps: Vec<(usize, usize)>,
}

/// The right operand `[col; 1] [C_in*k*k + 1, n]` of a layer's forward product: written by
/// `im2col`, or read in place ([`Workspace::inference`]).
#[derive(Clone, Copy)]
enum Operand<'a> {
    Col(&'a [f32]),
    Unfolded(direct::Unfolded<'a>),
}

/// Layer input `x [C_in, n]` (`n = b*h*w` of layer `s`) as the unfolded operand
/// `[col; 1] [C_in*k*k + 1, n]`: copied into `buf` between margins, followed by `n` ones
/// read as the bias row through the centre tap's mask (all ones); `masks` are
/// [`direct::unfold_masks`] of the layer.
fn unfold_input<'a>(
    x: &'a [f32],
    (s, b, k): (LayerShape, usize, usize),
    masks: &'a direct::UnfoldMasks,
    (buf, taps): (&'a mut Vec<f32>, &'a mut Vec<(usize, usize)>),
) -> direct::Unfolded<'a> {
    let n = b * s.hw();
    let margin = dz_margin(&s, k);
    let ones = margin + s.cin * n + margin;
    if buf.len() < ones + n {
        buf.resize(ones + n, 0.0);
    }
    buf[margin..margin + s.cin * n].copy_from_slice(&x[..s.cin * n]);
    buf[ones..ones + n].fill(1.0);
    direct::unfold_taps((s.cin, n, s.w, k), margin, masks.stride, taps);
    let centre = (k / 2) * k + k / 2;
    taps.push((ones, centre * masks.stride));
    direct::Unfolded {
        x: buf,
        taps,
        masks,
    }
}

/// The forward product `pre [C_out, n] = [W | b] [C_out, q+1] x [col; 1] [q+1, n]` without the
/// terms of the input channels that are silent on the chunk (not in `live`): their `col` rows
/// are zeros, whose products with finite weights are zeros. The kept terms are summed in the
/// same order and in the blocks of the whole product, so each output is the whole product's
/// or, where a left-out zero would have turned a `-0` sum into `+0`, `-0` (the argument of
/// [`crate::sparse`]): returns `false` when an output is `-0`, and the caller computes the
/// whole product.
///
/// # Shapes
/// `wb [C_out, q+1]`, `col [q+1, n]` (`q = C_in*per`, `per = k*k` rows per channel),
/// `pre [C_out, n]`.
fn live_terms(
    live: &[usize],
    (wb, operand): (&[f32], Operand),
    (cout, per, n): (usize, usize, usize),
    gather: &mut Gather,
    pre: &mut [f32],
) -> bool {
    let q = wb.len() / cout - 1;
    let depth = direct::block_depth(cout, q + 1, n).unwrap_or(direct::KC);
    gather.rows.clear();
    for &c in live {
        gather.rows.extend(c * per..(c + 1) * per);
    }
    gather.rows.push(q);
    let kept = gather.rows.len();
    gather.wb.clear();
    for f in 0..cout {
        let row = &wb[f * (q + 1)..(f + 1) * (q + 1)];
        gather.wb.extend(gather.rows.iter().map(|&r| row[r]));
    }
    // The blocks of the whole product, `depth` terms each, as runs of the kept terms.
    let mut spans = [(0usize, 0usize); 8];
    let mut count = 0;
    let mut start = 0;
    for i in 1..=kept {
        if i == kept || gather.rows[i] / depth != gather.rows[start] / depth {
            assert!(count < spans.len(), "at most 8 blocks");
            spans[count] = (start, i);
            count += 1;
            start = i;
        }
    }
    let shape = (cout, kept, n);
    match operand {
        Operand::Col(col) => {
            let b = direct::Gathered {
                b: col,
                n,
                rows: &gather.rows,
            };
            direct::product_gathered(&gather.wb, b, shape, &spans[..count], pre);
        }
        Operand::Unfolded(u) => {
            gather.taps.clear();
            gather.taps.extend(gather.rows.iter().map(|&r| u.taps[r]));
            let b = direct::Unfolded {
                taps: &gather.taps,
                ..u
            };
            direct::product_gathered(&gather.wb, b, shape, &spans[..count], pre);
        }
    }
    !silent::any_negative_zero(&pre[..cout * n])
}

/// The input gradient `dX [C_in, n] = Wt [C_in, q] x col(dz) [q, n]` on the rows of the
/// channels in `live` (ascending) alone, the others `+0`: each row summed in the blocks of the
/// whole product ([`direct::product_unfolded_rows`]), so with its bits. `wt`'s rows are moved
/// up in place to make the smaller left operand.
///
/// # Shapes
/// `wt [C_in, q]`, `dx [C_in, n]`, `live` of at most `C_in` channels.
fn live_rows(
    live: &[usize],
    (wt, q, n): (&mut [f32], usize, usize),
    rows: direct::Unfolded,
    dx: &mut [f32],
) {
    let cin = dx.len() / n;
    let depth = direct::block_depth(cin, q, n).unwrap_or(direct::KC);
    for (i, &c) in live.iter().enumerate() {
        wt.copy_within(c * q..(c + 1) * q, i * q);
    }
    let m = live.len();
    direct::product_unfolded_rows(&wt[..m * q], rows, (m, q, n), depth, &mut dx[..m * n]);
    // Each row to its channel, the last first (a row only moves down).
    for (i, &c) in live.iter().enumerate().rev() {
        if c != i {
            dx.copy_within(i * n..(i + 1) * n, c * n);
        }
    }
    let mut next = live.iter().peekable();
    for c in 0..cin {
        if next.peek() == Some(&&c) {
            next.next();
        } else {
            dx[c * n..(c + 1) * n].fill(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;
    use crate::model::Init;
    use crate::testkit::{bits, labelled_images};

    /// A pooled layer whose input holds an infinity (its first layer's bias is one) gets the
    /// plain computation's gradient: its forward pass read the input in place, the sparse
    /// gradient declines a non-finite input, and `backward` writes `col` for the product
    /// (a stale `col` fails: the plain pass writes it, a fresh workspace holds zeros).
    #[test]
    fn a_non_finite_input_writes_col_for_the_dense_gradient() {
        for label in ["16-16", "8-16", "32-8", "16-8-8"] {
            let arch = Arch::parse(label, 28, 28, 3).unwrap();
            let mut model = Model::init(&arch, Init::Glorot, 5).unwrap();
            let bias = model.layout().conv_b[0].start;
            model.params[bias + 1] = f32::INFINITY;
            let (images, _) = labelled_images(CHUNK, 4);
            let grad = |plain: bool| {
                let mut ws = Workspace::new(&arch, CHUNK);
                ws.every_row = plain;
                ws.load(&images, Scaling::Unit);
                ws.forward(&model, false);
                ws.dlogits[..CHUNK * 3].copy_from_slice(&[0.25, -0.5, 0.25].repeat(CHUNK));
                let mut grad = vec![f32::NAN; model.params.len()];
                ws.backward(&model, &mut grad);
                assert!(ws.col_written[1], "{label}: the layer above wrote no col");
                bits(&grad)
            };
            assert_eq!(grad(false), grad(true), "{label}");
        }
    }

    /// A first layer whose gradient is unpooled straight into `dzt` (AVX-512, 16 or 32
    /// filters) gives the plain pass's gradient, and its `dz`, written when the Taylor terms
    /// ask for it, the plain pass's terms; so do layers that write `dz`.
    #[test]
    fn a_first_layer_unpooled_into_dzt_has_the_plain_gradient_and_taylor_terms() {
        for label in ["16-16", "32-32", "8-16", "32-8-8"] {
            let arch = Arch::parse(label, 28, 28, 3).unwrap();
            let model = Model::init(&arch, Init::Glorot, 7).unwrap();
            let (images, _) = labelled_images(CHUNK, 6);
            let run = |plain: bool| {
                let mut ws = Workspace::new(&arch, CHUNK);
                ws.every_row = plain;
                ws.load(&images, Scaling::Unit);
                ws.forward(&model, false);
                ws.dlogits[..CHUNK * 3].copy_from_slice(&[0.25, -0.5, 0.25].repeat(CHUNK));
                let mut grad = vec![f32::NAN; model.params.len()];
                ws.backward(&model, &mut grad);
                let transposed = !ws.dz_written[0];
                let mut out = bits(&grad);
                for l in 0..ws.layers.len() {
                    let mut terms = vec![f64::NAN; ws.layers[l].cout * CHUNK];
                    ws.taylor_terms(l, &mut terms);
                    out.extend(terms.iter().map(|t| t.to_bits() as u32));
                }
                (out, transposed)
            };
            let ((fast, transposed), (plain, _)) = (run(false), run(true));
            assert_eq!(fast, plain, "{label}");
            let expected = unpools_transposed(arch.filters[0], 28, 28);
            assert_eq!(transposed, expected, "{label}: the first layer went to dzt");
        }
    }

    /// The rows computed: every live channel, then the first silent ones up to a multiple
    /// of the tile, ascending, none twice, never more than the channels.
    #[test]
    fn padded_rows_keep_every_live_channel() {
        let mut rows = Vec::new();
        for (live, cin, tile, want) in [
            (
                vec![0, 1, 3, 4, 5, 6, 7, 8, 9, 10],
                16,
                8,
                vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
            ),
            (vec![5, 9], 32, 8, vec![0, 1, 2, 3, 4, 5, 6, 9]),
            (vec![31], 32, 6, vec![0, 1, 2, 3, 4, 31]),
            ((0..24).collect(), 32, 8, (0..24).collect()),
            (vec![2], 3, 8, vec![0, 1, 2]),
            (vec![], 8, 8, vec![]),
        ] {
            pad_rows(&live, cin, tile, &mut rows);
            assert_eq!(rows, want, "{live:?} of {cin}, tiles of {tile}");
        }
    }

    /// An inference pass (the products read the input unfolded in place) gives a training
    /// pass's pre-activations, maps and logits bit for bit: full and partial chunks, thin and
    /// deep products, with no silent channel, some (the kept terms gathered), and a whole
    /// silent layer below (the biases alone).
    #[test]
    fn inference_reads_the_same_values_as_col() {
        for label in [
            "2", "4-3-5", "16-16", "32-32", "8-2", "32-2", "29-9", "16-8-8",
        ] {
            let arch = Arch::parse(label, 28, 28, 3).unwrap();
            for dead in [0, 1, 2] {
                let mut model = Model::init(&arch, Init::Glorot, 5).unwrap();
                let r = model.layout().conv_b[0].clone();
                let f1 = arch.filters[0];
                for c in (0..f1).filter(|&c| dead == 2 || (dead == 1 && c % 3 != 1)) {
                    model.params[r.start + c] = -1e4;
                }
                for (b, scaling) in [(CHUNK, Scaling::Unit), (CHUNK - 1, Scaling::Raw)] {
                    let (images, _) = labelled_images(b, 3 + dead as u64);
                    let run = |mut ws: Workspace| {
                        ws.keep_post = true;
                        ws.load(&images, scaling);
                        ws.forward(&model, false);
                        let mut out = Vec::new();
                        for l in 0..ws.layers.len() {
                            let n = ws.layers[l].cout * b * ws.layers[l].hw();
                            out.extend(bits(&ws.pre[l][..n]));
                            out.extend(bits(&ws.post[l][..n]));
                            out.extend(bits(ws.layer_out(l)));
                        }
                        out.extend(bits(&ws.logits[..b * 3]));
                        out
                    };
                    let want = run(Workspace::new(&arch, CHUNK));
                    let got = run(Workspace::inference(&arch, CHUNK));
                    assert_eq!(got, want, "{label}, dead {dead}, {b} images");
                }
            }
        }
    }
}
