//! The network family: what `--arch 16-4` means.
//!
//! Input `H x W`, one channel. Then one or more conv blocks, each a `k x k` convolution
//! (k odd, "same" zero padding, stride 1, bias), an activation (ReLU by default), and
//! optionally a 2x2 max-pool of stride 2 that floors odd sizes (as Keras and PyTorch do).
//! Then flatten in C, H, W order and one dense layer to the classes; the loss is softmax
//! cross-entropy. This is the thesis's Figure 13 generalised to any depth.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The non-linearity after each convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// `max(0, z)`.
    Relu,
    /// `z` if `z > 0` else `0.01 z` (PyTorch's default slope).
    LeakyRelu,
    /// `tanh(z)`.
    Tanh,
}

impl Activation {
    /// Slope of leaky ReLU for negative inputs.
    pub const LEAKY_SLOPE: f32 = 0.01;

    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::LeakyRelu => "leaky-relu",
            Activation::Tanh => "tanh",
        }
    }
}

/// One convolution block's geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LayerShape {
    /// Input channels.
    pub cin: usize,
    /// Output channels (filters).
    pub cout: usize,
    /// Spatial size of the input and of the conv output ("same" padding).
    pub h: usize,
    pub w: usize,
    /// Spatial size after the optional pool (equal to `h`, `w` without pooling).
    pub out_h: usize,
    pub out_w: usize,
    pub pool: bool,
}

impl LayerShape {
    /// Positions of the conv output, `h * w`.
    pub fn hw(&self) -> usize {
        self.h * self.w
    }

    /// Positions after the pool, `out_h * out_w`.
    pub fn out_hw(&self) -> usize {
        self.out_h * self.out_w
    }
}

/// A network architecture.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arch {
    /// Input height and width.
    pub height: usize,
    pub width: usize,
    /// Filters per conv layer, e.g. `[16, 4]`.
    pub filters: Vec<usize>,
    /// Kernel side (odd).
    pub kernel: usize,
    pub activation: Activation,
    /// Max-pool after each conv layer.
    pub pool: Vec<bool>,
    /// Output classes.
    pub classes: usize,
}

/// An architecture as the thesis writes it: the filters of each conv layer joined by `-`
/// (`16-4`, `8`, `8-16-32`), without the input size and classes that complete it into an
/// [`Arch`]. Parsed once where it is read; compared and ordered by its filters, so `2-16`
/// sorts before `16-4`. Stored and shown as its text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArchLabel(Vec<usize>);

impl ArchLabel {
    /// Filters per conv layer, e.g. `[16, 4]`.
    pub fn filters(&self) -> &[usize] {
        &self.0
    }

    /// Conv layers.
    pub fn layers(&self) -> usize {
        self.0.len()
    }
}

impl std::str::FromStr for ArchLabel {
    type Err = Error;

    fn from_str(s: &str) -> Result<ArchLabel> {
        s.split('-')
            .map(|t| t.trim().parse::<usize>().ok().filter(|&f| (1..=MAX_FILTERS).contains(&f)))
            .collect::<Option<Vec<usize>>>()
            .filter(|f| !f.is_empty() && f.len() <= MAX_LAYERS)
            .map(ArchLabel)
            .ok_or_else(|| {
                Error::Arch(format!(
                    "`{s}` is not an architecture; write filters per conv layer joined by '-', e.g. 16-4 or 8-16-32 (1 to {MAX_FILTERS} filters, at most {MAX_LAYERS} layers)"
                ))
            })
    }
}

impl std::fmt::Display for ArchLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let text: Vec<String> = self.0.iter().map(|x| x.to_string()).collect();
        f.pad(&text.join("-"))
    }
}

impl Serialize for ArchLabel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ArchLabel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Most filters in one layer, and most conv layers, accepted.
pub const MAX_FILTERS: usize = 1024;
pub const MAX_LAYERS: usize = 8;

impl Arch {
    /// The architecture written as the thesis does (`16-4`, `8`, `8-16-32`), with 3x3 kernels,
    /// ReLU and pooling after every block.
    pub fn parse(s: &str, height: usize, width: usize, classes: usize) -> Result<Arch> {
        Arch::from_label(&s.parse()?, height, width, classes)
    }

    /// The architecture `label` on `height x width` inputs of `classes` classes, with 3x3
    /// kernels, ReLU and pooling after every block.
    pub fn from_label(
        label: &ArchLabel,
        height: usize,
        width: usize,
        classes: usize,
    ) -> Result<Arch> {
        let filters = label.filters().to_vec();
        let arch = Arch {
            height,
            width,
            pool: vec![true; filters.len()],
            filters,
            kernel: 3,
            activation: Activation::Relu,
            classes,
        };
        arch.validate()?;
        Ok(arch)
    }

    /// Checks sizes: odd kernel, a pool mask per layer, nothing pooled down to zero.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Arch(m));
        if self.kernel.is_multiple_of(2) || self.kernel == 0 || self.kernel > 15 {
            return bad(format!("kernel {} must be odd, from 1 to 15", self.kernel));
        }
        if self.filters.is_empty() || self.filters.iter().any(|&f| f == 0 || f > MAX_FILTERS) {
            return bad(format!(
                "filters {:?}: every layer needs 1 to {MAX_FILTERS} filters",
                self.filters
            ));
        }
        if self.pool.len() != self.filters.len() {
            return bad(format!(
                "{} pool flags for {} conv layers; give one per layer",
                self.pool.len(),
                self.filters.len()
            ));
        }
        if self.classes < 2 || self.classes > 256 {
            return bad(format!("{} classes: need 2 to 256", self.classes));
        }
        if self.height == 0 || self.width == 0 {
            return bad(format!("input {}x{} is empty", self.height, self.width));
        }
        let last = self.layers().last().copied().expect("at least one layer");
        if last.out_h == 0 || last.out_w == 0 {
            return bad(format!(
                "{} pooling layers shrink a {}x{} input to nothing; use fewer layers or --pool off for some",
                self.pool.iter().filter(|&&p| p).count(),
                self.height,
                self.width
            ));
        }
        Ok(())
    }

    /// Geometry of every conv block.
    pub fn layers(&self) -> Vec<LayerShape> {
        let (mut h, mut w, mut cin) = (self.height, self.width, 1);
        self.filters
            .iter()
            .zip(&self.pool)
            .map(|(&cout, &pool)| {
                let (out_h, out_w) = if pool { (h / 2, w / 2) } else { (h, w) };
                let l = LayerShape {
                    cin,
                    cout,
                    h,
                    w,
                    out_h,
                    out_w,
                    pool,
                };
                (h, w, cin) = (out_h, out_w, cout);
                l
            })
            .collect()
    }

    /// Inputs of the dense layer: `F_L * h_L * w_L`.
    pub fn features(&self) -> usize {
        let l = self.layers().last().copied().expect("at least one layer");
        l.cout * l.out_hw()
    }

    /// Floating-point operations of one training image (multiply and add counted apart), as
    /// the dense products define them: every conv and the dense layer forward, each layer's
    /// weight gradient (as many as its forward), and the input gradient of every layer but
    /// the first (the image needs none). Biases, activations and pooling are left out: they
    /// are a few percent of the products. The engine executes fewer where a pooled layer's
    /// weight gradient skips the zeros of `dz` (`sparse.rs`), with the same results; a rate
    /// computed from this count is then an effective one.
    pub fn train_flops_per_image(&self) -> f64 {
        let k2 = (self.kernel * self.kernel) as f64;
        let conv: Vec<f64> = self
            .layers()
            .iter()
            .map(|s| 2.0 * (s.cout * s.cin) as f64 * k2 * s.hw() as f64)
            .collect();
        let dense = 2.0 * (self.features() * self.classes) as f64;
        2.0 * conv.iter().sum::<f64>() + conv[1..].iter().sum::<f64>() + 3.0 * dense
    }

    /// Parameters in all: weights and biases of every layer (Keras counts the same).
    pub fn param_count(&self) -> usize {
        let k2 = self.kernel * self.kernel;
        let conv: usize = self
            .layers()
            .iter()
            .map(|l| l.cout * l.cin * k2 + l.cout)
            .sum();
        conv + self.classes * self.features() + self.classes
    }

    /// The filters per layer in the thesis's notation, as a value.
    pub fn arch_label(&self) -> ArchLabel {
        ArchLabel(self.filters.clone())
    }

    /// The thesis's notation: `16-4`.
    pub fn label(&self) -> String {
        self.filters
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join("-")
    }

    /// Every filter kept, `keep[l][f]` all true: the mask [`Arch::pruned`] and
    /// [`crate::Model::pruned`] take before any filter is switched off.
    pub fn keep_all(&self) -> Vec<Vec<bool>> {
        self.filters.iter().map(|&n| vec![true; n]).collect()
    }

    /// Which filters stay when `off` (`(layer, filter)`, both from 1) are switched off, as
    /// [`Arch::pruned`] and [`crate::Model::pruned`] take it: `keep[l][f]`. A filter the
    /// architecture does not have is an error naming it.
    pub fn keep_without(&self, off: &[(usize, usize)]) -> Result<Vec<Vec<bool>>> {
        let mut keep = self.keep_all();
        for &(l, f) in off {
            if l == 0 || l > self.filters.len() || f == 0 || f > self.filters[l - 1] {
                return Err(Error::Arch(format!(
                    "filter {l}:{f} is not in a {} (layers 1 to {}, filters {})",
                    self.label(),
                    self.filters.len(),
                    self.filters
                        .iter()
                        .map(|n| format!("1-{n}"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                )));
            }
            keep[l - 1][f - 1] = false;
        }
        Ok(keep)
    }

    /// The architecture with some filters removed: `keep[l][f]` says whether filter `f` of
    /// conv layer `l` stays. Every layer must keep at least one filter.
    pub fn pruned(&self, keep: &[Vec<bool>]) -> Result<Arch> {
        check_keep(self, keep)?;
        Ok(Arch {
            filters: keep
                .iter()
                .map(|k| k.iter().filter(|&&x| x).count())
                .collect(),
            ..self.clone()
        })
    }
}

/// Checks a keep-mask against an architecture.
pub(crate) fn check_keep(arch: &Arch, keep: &[Vec<bool>]) -> Result<()> {
    if keep.len() != arch.filters.len() {
        return Err(Error::Arch(format!(
            "a mask for {} layers given to a {}-layer network",
            keep.len(),
            arch.filters.len()
        )));
    }
    for (l, (k, &f)) in keep.iter().zip(&arch.filters).enumerate() {
        if k.len() != f {
            return Err(Error::Arch(format!(
                "layer {} has {f} filters but its mask has {}",
                l + 1,
                k.len()
            )));
        }
        if !k.iter().any(|&x| x) {
            return Err(Error::Arch(format!(
                "layer {} would keep no filter; keep at least one",
                l + 1
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_training_image_of_16_16_costs_3_2_mflop() {
        // conv1 16x1x9 at 28x28, conv2 16x16x9 at 14x14, dense 784x3; by hand:
        // 2 x (225,792 + 903,168) forward and weight gradients, 903,168 for conv2's input
        // gradient, 3 x 4,704 for the dense layer.
        let a = Arch::parse("16-16", 28, 28, 3).unwrap();
        assert_eq!(a.train_flops_per_image(), 3_175_200.0);
        // One layer: no input gradient at all.
        let one = Arch::parse("4", 28, 28, 3).unwrap();
        let conv = 2.0 * 4.0 * 9.0 * 784.0;
        assert_eq!(
            one.train_flops_per_image(),
            2.0 * conv + 3.0 * 2.0 * 784.0 * 3.0
        );
    }

    #[test]
    fn keep_without_switches_off_the_named_filters_and_refuses_others() {
        let a = Arch::parse("4-3", 28, 28, 3).unwrap();
        let keep = a.keep_without(&[(1, 2), (2, 3), (1, 2)]).unwrap();
        assert_eq!(
            keep,
            vec![vec![true, false, true, true], vec![true, true, false]]
        );
        for bad in [(3, 1), (1, 5), (0, 1), (2, 0)] {
            let e = a.keep_without(&[bad]).unwrap_err().to_string();
            assert!(e.contains(&format!("filter {}:{}", bad.0, bad.1)), "{e}");
        }
    }

    #[test]
    fn labels_parse_print_and_sort_by_their_filters() {
        let l: ArchLabel = "8-16-32".parse().unwrap();
        assert_eq!(l.filters(), &[8, 16, 32]);
        assert_eq!(l.layers(), 3);
        assert_eq!(l.to_string(), "8-16-32");
        let mut v: Vec<ArchLabel> = ["16-4", "2-16", "8", "2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        v.sort();
        let shown: Vec<String> = v.iter().map(|l| l.to_string()).collect();
        assert_eq!(shown, ["2", "2-16", "8", "16-4"]);
        for bad in ["", "16-", "0-4", "a", "1-2-3-4-5-6-7-8-9", "2000"] {
            assert!(bad.parse::<ArchLabel>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(json, "\"8-16-32\"");
        assert_eq!(serde_json::from_str::<ArchLabel>(&json).unwrap(), l);
        assert!(serde_json::from_str::<ArchLabel>("\"16-x\"").is_err());
        assert_eq!(
            Arch::parse("16-4", 28, 28, 3).unwrap().arch_label(),
            "16-4".parse().unwrap()
        );
    }

    #[test]
    fn thesis_parameter_count() {
        // THESIS.md, Model: 40 + 148 + 591 = 779 for 4-4 on 28x28.
        assert_eq!(Arch::parse("4-4", 28, 28, 3).unwrap().param_count(), 779);
        let a = Arch::parse("16-4", 28, 28, 3).unwrap();
        assert_eq!(a.param_count(), 16 * 9 + 16 + 4 * 16 * 9 + 4 + 3 * 196 + 3);
        assert_eq!(a.label(), "16-4");
    }

    #[test]
    fn shapes_floor_odd_sizes() {
        let a = Arch::parse("8-16-32", 28, 28, 3).unwrap();
        let l = a.layers();
        assert_eq!((l[2].h, l[2].out_h), (7, 3));
        assert_eq!(a.features(), 32 * 9);
        let mut b = Arch::parse("8", 28, 28, 3).unwrap();
        b.pool = vec![false];
        assert_eq!(b.features(), 8 * 784);
    }

    #[test]
    fn bad_architectures_are_named() {
        for s in ["", "16-", "a-4", "0-4", "4-4-4-4-4-4-4-4-4", "99999"] {
            let e = Arch::parse(s, 28, 28, 3).unwrap_err().to_string();
            assert!(e.contains(&format!("`{s}`")), "{e}");
        }
        let e = Arch::parse("4-4-4-4-4", 28, 28, 3).unwrap_err().to_string();
        assert!(e.contains("to nothing"), "{e}");
    }
}
