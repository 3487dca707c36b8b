//! Parameters: one flat `f32` vector with named views, initialisation, and pruning.
//!
//! Names and layouts follow PyTorch (README, "In PyTorch") so a Python user loads them
//! unchanged: `conv{i}.weight` `[F_i, F_{i-1}, k, k]`, `conv{i}.bias` `[F_i]` (i from 1),
//! `fc.weight` `[classes, F_L * h_L * w_L]` with inputs in C, H, W order, `fc.bias`
//! `[classes]`. Keeping every parameter in one vector makes the optimiser one loop and the
//! gradient of a batch one buffer.

use std::ops::Range;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::arch::{check_keep, Arch};
use crate::error::{Error, Result};

/// Where each tensor lives in the flat parameter vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub conv_w: Vec<Range<usize>>,
    pub conv_b: Vec<Range<usize>>,
    pub fc_w: Range<usize>,
    pub fc_b: Range<usize>,
    pub total: usize,
}

impl Layout {
    pub fn new(arch: &Arch) -> Layout {
        let k2 = arch.kernel * arch.kernel;
        let mut at = 0;
        let mut take = |n: usize| {
            let r = at..at + n;
            at += n;
            r
        };
        let (mut conv_w, mut conv_b) = (Vec::new(), Vec::new());
        for l in arch.layers() {
            conv_w.push(take(l.cout * l.cin * k2));
            conv_b.push(take(l.cout));
        }
        let fc_w = take(arch.classes * arch.features());
        let fc_b = take(arch.classes);
        Layout {
            conv_w,
            conv_b,
            fc_w,
            fc_b,
            total: at,
        }
    }

    /// The weight tensors, each conv layer's then the dense layer's (biases excluded).
    pub fn weight_tensors(&self) -> Vec<Range<usize>> {
        let mut all = self.conv_w.clone();
        all.push(self.fc_w.clone());
        all
    }
}

/// How weights start. Biases always start at zero (Keras's default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// Glorot (Xavier) uniform, Keras's default: `U(-l, l)`, `l = sqrt(6 / (fan_in + fan_out))`.
    Glorot,
    /// He uniform: `U(-l, l)`, `l = sqrt(6 / fan_in)`.
    He,
}

/// A network: its architecture and parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub arch: Arch,
    /// All parameters, laid out as [`Model::layout`] says.
    pub params: Vec<f32>,
    layout: Layout,
}

/// A uniform in `[0, 1)` with 24 random bits (exact in f32).
fn unit(rng: &mut ChaCha8Rng) -> f32 {
    (rng.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}

impl Model {
    /// Fresh weights drawn from `seed` (its own ChaCha8 stream, tensor by tensor in layout
    /// order).
    pub fn init(arch: &Arch, init: Init, seed: u64) -> Result<Model> {
        arch.validate()?;
        let layout = Layout::new(arch);
        let mut params = vec![0.0; layout.total];
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(crate::STREAM_INIT);
        let k2 = arch.kernel * arch.kernel;
        let mut fill = |r: &Range<usize>, fan_in: usize, fan_out: usize| {
            let limit = match init {
                Init::Glorot => (6.0 / (fan_in + fan_out) as f64).sqrt(),
                Init::He => (6.0 / fan_in as f64).sqrt(),
            } as f32;
            for p in &mut params[r.clone()] {
                *p = (2.0 * unit(&mut rng) - 1.0) * limit;
            }
        };
        for (l, shape) in arch.layers().iter().enumerate() {
            fill(&layout.conv_w[l], shape.cin * k2, shape.cout * k2);
        }
        fill(&layout.fc_w, arch.features(), arch.classes);
        Ok(Model {
            arch: arch.clone(),
            params,
            layout,
        })
    }

    /// A model from given parameters (e.g. read from a file).
    pub fn from_params(arch: &Arch, params: Vec<f32>) -> Result<Model> {
        arch.validate()?;
        let layout = Layout::new(arch);
        if params.len() != layout.total {
            return Err(Error::Params(format!(
                "{} parameters given, architecture {} needs {}",
                params.len(),
                arch.label(),
                layout.total
            )));
        }
        if let Some(i) = params.iter().position(|p| !p.is_finite()) {
            return Err(Error::Params(format!(
                "parameter {i} is {}; the model is damaged",
                params[i]
            )));
        }
        Ok(Model {
            arch: arch.clone(),
            params,
            layout,
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// `conv{l+1}.weight`, `[cout, cin, k, k]`.
    pub fn conv_weight(&self, l: usize) -> &[f32] {
        &self.params[self.layout.conv_w[l].clone()]
    }

    /// `conv{l+1}.bias`, `[cout]`.
    pub fn conv_bias(&self, l: usize) -> &[f32] {
        &self.params[self.layout.conv_b[l].clone()]
    }

    /// `fc.weight`, `[classes, features]`.
    pub fn fc_weight(&self) -> &[f32] {
        &self.params[self.layout.fc_w.clone()]
    }

    /// `fc.bias`, `[classes]`.
    pub fn fc_bias(&self) -> &[f32] {
        &self.params[self.layout.fc_b.clone()]
    }

    /// Every tensor with its PyTorch name and shape, in layout order.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>, Range<usize>)> {
        let k = self.arch.kernel;
        let mut out = Vec::new();
        for (l, s) in self.arch.layers().iter().enumerate() {
            out.push((
                format!("conv{}.weight", l + 1),
                vec![s.cout, s.cin, k, k],
                self.layout.conv_w[l].clone(),
            ));
            out.push((
                format!("conv{}.bias", l + 1),
                vec![s.cout],
                self.layout.conv_b[l].clone(),
            ));
        }
        out.push((
            "fc.weight".into(),
            vec![self.arch.classes, self.arch.features()],
            self.layout.fc_w.clone(),
        ));
        out.push((
            "fc.bias".into(),
            vec![self.arch.classes],
            self.layout.fc_b.clone(),
        ));
        out
    }

    /// The physically smaller network with some conv filters removed, as KerasSurgeon removes
    /// them: filter `f` of layer `l` goes (its weights and bias), and so do the next layer's
    /// weights that read channel `f` (the next conv's input channel, or the dense layer's
    /// `h_L * w_L` inputs of that channel). No retraining.
    pub fn pruned(&self, keep: &[Vec<bool>]) -> Result<Model> {
        check_keep(&self.arch, keep)?;
        let arch = self.arch.pruned(keep)?;
        let k2 = self.arch.kernel * self.arch.kernel;
        let layers = self.arch.layers();
        let mut params = Vec::with_capacity(Layout::new(&arch).total);
        for (l, s) in layers.iter().enumerate() {
            let w = self.conv_weight(l);
            let keep_in: Vec<bool> = if l == 0 {
                vec![true]
            } else {
                keep[l - 1].clone()
            };
            for co in (0..s.cout).filter(|&co| keep[l][co]) {
                for ci in (0..s.cin).filter(|&ci| keep_in[ci]) {
                    let at = (co * s.cin + ci) * k2;
                    params.extend_from_slice(&w[at..at + k2]);
                }
            }
            let b = self.conv_bias(l);
            params.extend((0..s.cout).filter(|&co| keep[l][co]).map(|co| b[co]));
        }
        let last = layers.last().expect("a layer");
        let hw = last.out_hw();
        let fc = self.fc_weight();
        let features = self.arch.features();
        for c in 0..self.arch.classes {
            for ch in (0..last.cout).filter(|&ch| keep[layers.len() - 1][ch]) {
                let at = c * features + ch * hw;
                params.extend_from_slice(&fc[at..at + hw]);
            }
        }
        params.extend_from_slice(self.fc_bias());
        Model::from_params(&arch, params)
    }
}

impl Model {
    /// The same function with its filters renumbered: filter `j` of conv layer `l` in the
    /// result is filter `perms[l][j]` here, and every weight that reads a channel (the next
    /// conv's input channels, the dense layer's `h_L * w_L` inputs of a channel) follows it.
    /// Pure data movement, so the result computes what this model computes (up to the order
    /// in which the next layer sums its input channels).
    pub fn permuted(&self, perms: &[Vec<usize>]) -> Result<Model> {
        let layers = self.arch.layers();
        if perms.len() != layers.len() {
            return Err(Error::Arch(format!(
                "{} permutations for {} conv layers",
                perms.len(),
                layers.len()
            )));
        }
        for (l, (p, s)) in perms.iter().zip(&layers).enumerate() {
            let mut seen = vec![false; s.cout];
            for &f in p {
                if f >= s.cout || std::mem::replace(&mut seen[f], true) {
                    return Err(Error::Arch(format!(
                        "the permutation of layer {} is not one of 0..{}: {p:?}",
                        l + 1,
                        s.cout
                    )));
                }
            }
            if p.len() != s.cout {
                return Err(Error::Arch(format!(
                    "the permutation of layer {} has {} entries for {} filters",
                    l + 1,
                    p.len(),
                    s.cout
                )));
            }
        }
        let k2 = self.arch.kernel * self.arch.kernel;
        let mut params = Vec::with_capacity(self.params.len());
        for (l, s) in layers.iter().enumerate() {
            let w = self.conv_weight(l);
            let identity: Vec<usize> = (0..s.cin).collect();
            let inputs = if l == 0 { &identity } else { &perms[l - 1] };
            for &co in &perms[l] {
                for &ci in inputs {
                    let at = (co * s.cin + ci) * k2;
                    params.extend_from_slice(&w[at..at + k2]);
                }
            }
            let b = self.conv_bias(l);
            params.extend(perms[l].iter().map(|&co| b[co]));
        }
        let last = layers.last().expect("a layer");
        let hw = last.out_hw();
        let fc = self.fc_weight();
        let features = self.arch.features();
        for c in 0..self.arch.classes {
            for &ch in &perms[layers.len() - 1] {
                let at = c * features + ch * hw;
                params.extend_from_slice(&fc[at..at + hw]);
            }
        }
        params.extend_from_slice(self.fc_bias());
        Model::from_params(&self.arch, params)
    }

    /// The point `(1 - t) a + t b` of the straight line between two models of one
    /// architecture, computed from the nearer end (`a + t (b - a)` up to `t = 1/2`, then
    /// `b + (1 - t) (a - b)`): the ends are exactly `a` and `b`, and a parameter the two share
    /// stays exactly itself at any `t`.
    pub fn lerp(a: &Model, b: &Model, t: f32) -> Result<Model> {
        if a.arch != b.arch {
            return Err(Error::Arch(format!(
                "cannot interpolate {} and {}: the architectures differ",
                a.arch.label(),
                b.arch.label()
            )));
        }
        let params = a
            .params
            .iter()
            .zip(&b.params)
            .map(|(&x, &y)| {
                if t <= 0.5 {
                    x + t * (y - x)
                } else {
                    y + (1.0 - t) * (x - y)
                }
            })
            .collect();
        Model::from_params(&a.arch, params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glorot_limits_and_zero_biases() {
        let arch = Arch::parse("16-4", 28, 28, 3).unwrap();
        let m = Model::init(&arch, Init::Glorot, 1).unwrap();
        assert_eq!(m.params.len(), arch.param_count());
        let limit = (6.0f32 / (9.0 + 16.0 * 9.0)).sqrt();
        let w = m.conv_weight(0);
        assert!(w.iter().all(|x| x.abs() <= limit));
        assert!(
            w.iter().any(|x| x.abs() > 0.9 * limit),
            "uses the whole range"
        );
        assert!(m.conv_bias(1).iter().all(|&b| b == 0.0));
        assert_eq!(m, Model::init(&arch, Init::Glorot, 1).unwrap());
        assert_ne!(m, Model::init(&arch, Init::Glorot, 2).unwrap());
        let names: Vec<String> = m.tensors().into_iter().map(|t| t.0).collect();
        assert_eq!(
            names,
            [
                "conv1.weight",
                "conv1.bias",
                "conv2.weight",
                "conv2.bias",
                "fc.weight",
                "fc.bias"
            ]
        );
    }

    #[test]
    fn a_permuted_model_computes_the_same_function() {
        let arch = Arch::parse("5-4", 12, 12, 3).unwrap();
        let m = Model::init(&arch, Init::Glorot, 3).unwrap();
        let perms = vec![vec![3, 0, 4, 1, 2], vec![2, 3, 1, 0]];
        let p = m.permuted(&perms).unwrap();
        // Filter j of the result is filter perms[l][j] of the original.
        assert_eq!(&p.conv_weight(0)[9..18], &m.conv_weight(0)[0..9]);
        assert_eq!(p.conv_bias(1)[0], m.conv_bias(1)[2]);
        let images: Vec<u8> = (0..6 * 144).map(|i| ((i * 37) % 256) as u8).collect();
        let labels = vec![0u8; 6];
        let data = crate::train::Data {
            images: &images,
            labels: &labels,
            height: 12,
            width: 12,
        };
        let (x, y) = (
            crate::train::logits(&m, &data, crate::Scaling::Unit),
            crate::train::logits(&p, &data, crate::Scaling::Unit),
        );
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{a} vs {b}");
        }
        // The inverse permutation gives back the original, bit for bit.
        let inverse: Vec<Vec<usize>> = perms
            .iter()
            .map(|p| {
                let mut inv = vec![0; p.len()];
                for (j, &f) in p.iter().enumerate() {
                    inv[f] = j;
                }
                inv
            })
            .collect();
        assert_eq!(p.permuted(&inverse).unwrap().params, m.params);
        assert!(m
            .permuted(&[vec![0, 0, 1, 2, 3], vec![0, 1, 2, 3]])
            .is_err());
        assert!(m.permuted(&[vec![0, 1, 2, 3, 4]]).is_err());
    }

    #[test]
    fn the_straight_line_ends_at_its_models() {
        let arch = Arch::parse("3-2", 8, 8, 3).unwrap();
        let (a, b) = (
            Model::init(&arch, Init::Glorot, 1).unwrap(),
            Model::init(&arch, Init::Glorot, 2).unwrap(),
        );
        assert_eq!(Model::lerp(&a, &b, 0.0).unwrap().params, a.params);
        assert_eq!(Model::lerp(&a, &b, 1.0).unwrap().params, b.params);
        let mid = Model::lerp(&a, &b, 0.5).unwrap();
        for ((m, x), y) in mid.params.iter().zip(&a.params).zip(&b.params) {
            assert!((m - (x + y) / 2.0).abs() < 1e-6);
        }
        for t in [0.1, 0.3, 0.7, 0.9] {
            assert_eq!(Model::lerp(&a, &a, t).unwrap().params, a.params);
        }
        let other = Model::init(&Arch::parse("3-3", 8, 8, 3).unwrap(), Init::Glorot, 1).unwrap();
        assert!(Model::lerp(&a, &other, 0.5).is_err());
    }

    #[test]
    fn pruning_keeps_the_right_slices() {
        let arch = Arch::parse("3-2", 8, 8, 3).unwrap();
        let mut m = Model::init(&arch, Init::Glorot, 0).unwrap();
        for (i, p) in m.params.iter_mut().enumerate() {
            *p = i as f32;
        }
        let p = m
            .pruned(&[vec![true, false, true], vec![false, true]])
            .unwrap();
        assert_eq!(p.arch.filters, vec![2, 1]);
        assert_eq!(
            p.conv_weight(0),
            [&m.conv_weight(0)[0..9], &m.conv_weight(0)[18..27]].concat()
        );
        // conv2 filter 1 reads input channels 0 and 2
        let w2 = m.conv_weight(1);
        assert_eq!(p.conv_weight(1), [&w2[27..36], &w2[45..54]].concat());
        // fc reads channel 1 of conv2: 4 positions (8 -> 4 -> 2, 2x2)
        let fc = m.fc_weight();
        assert_eq!(&p.fc_weight()[0..4], &fc[4..8]);
        assert_eq!(&p.fc_weight()[4..8], &fc[12..16]);
        assert!(m
            .pruned(&[vec![false, false, false], vec![true, true]])
            .is_err());
    }
}
