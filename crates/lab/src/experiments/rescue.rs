//! Rescue experiments for stuck runs (thesis future work 4): what a stuck run is trained with
//! when it is continued, so that "is it a local minimum?" becomes a test that could fail.
//!
//! Continuing a run whose last conv layer is entirely dead with its own settings can never
//! escape: those filters' weight gradients are exactly zero. The rescues change one thing each:
//! - `same`: the run's own settings (the control; guaranteed to fail for dead layers);
//! - a learning rate (`0.001`): the same optimiser at another rate;
//! - `adam`: Adam at 0.001 from the stuck weights (the optimiser);
//! - `unit`: inputs rescaled to [0, 1] (the input scale);
//! - `reinit`: the last conv layer's dead filters drawn afresh (Glorot, from the run's seed),
//!   everything else kept (the dead units).
//!
//! A rescue is stored by its label in the continuation's `lr` column, so stores written before
//! rescues (`same` or a number) read back unchanged. Must not train; it only changes a model
//! and a configuration before training.

use tinycnn::{Model, Optimizer, Scaling, TrainConfig};

use crate::error::{Error, Result};

/// What a stuck run is continued with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rescue {
    Same,
    Lr(f64),
    Adam,
    Unit,
    Reinit,
}

impl Rescue {
    /// The label stored and shown.
    pub fn label(self) -> String {
        match self {
            Rescue::Same => "same".into(),
            Rescue::Lr(v) => v.to_string(),
            Rescue::Adam => "adam".into(),
            Rescue::Unit => "unit".into(),
            Rescue::Reinit => "reinit".into(),
        }
    }

    /// What the rescue changes, in words.
    pub fn describe(self) -> String {
        match self {
            Rescue::Same => "its own settings".into(),
            Rescue::Lr(v) => format!("learning rate {v}"),
            Rescue::Adam => "Adam at 0.001 from the stuck weights".into(),
            Rescue::Unit => "inputs rescaled to [0, 1]".into(),
            Rescue::Reinit => "its dead last-layer filters drawn afresh".into(),
        }
    }

    /// Changes `model` and `config` for the rescue. `images [n, H, W]` are training images on
    /// which a filter that outputs nothing counts as dead; `seed` draws re-initialised filters.
    pub fn apply(self, model: &mut Model, config: &mut TrainConfig, images: &[u8], seed: u64) {
        match self {
            Rescue::Same => {}
            Rescue::Lr(lr) => {
                config.optimizer = match config.optimizer {
                    Optimizer::Adam {
                        beta1, beta2, eps, ..
                    } => Optimizer::Adam {
                        lr,
                        beta1,
                        beta2,
                        eps,
                    },
                    Optimizer::Sgd { momentum, .. } => Optimizer::Sgd { lr, momentum },
                }
            }
            Rescue::Adam => config.optimizer = Optimizer::adam(1e-3),
            Rescue::Unit => config.scaling = Scaling::Unit,
            Rescue::Reinit => reinit_dead(model, config, images, seed),
        }
    }
}

impl serde::Serialize for Rescue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.label())
    }
}

impl<'de> serde::Deserialize<'de> for Rescue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Rescue {
    type Err = Error;

    fn from_str(s: &str) -> Result<Rescue> {
        match s {
            "same" => Ok(Rescue::Same),
            "adam" => Ok(Rescue::Adam),
            "unit" => Ok(Rescue::Unit),
            "reinit" => Ok(Rescue::Reinit),
            _ => match s.parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => Ok(Rescue::Lr(v)),
                _ => Err(Error::Usage(format!(
                    "rescue {s:?}: use same, adam, unit, reinit or a learning rate above 0"
                ))),
            },
        }
    }
}

/// Re-draws the last conv layer's filters that output zero on every one of `images` (weights
/// from a fresh Glorot model of the same architecture seeded with `seed`, bias zero).
fn reinit_dead(model: &mut Model, config: &TrainConfig, images: &[u8], seed: u64) {
    let l = model.arch.filters.len() - 1;
    let silent = crate::inside::filterstats::silent_filters(model, images, config.scaling);
    let cout = model.arch.filters[l];
    let fresh = Model::init(&model.arch, tinycnn::Init::Glorot, seed).expect("a valid arch");
    let (w, b) = (
        model.layout().conv_w[l].clone(),
        model.layout().conv_b[l].clone(),
    );
    let k = w.len() / cout;
    for (f, &dead) in silent[l].iter().enumerate() {
        if dead {
            let at = w.start + f * k;
            model.params[at..at + k].copy_from_slice(&fresh.params[at..at + k]);
            model.params[b.start + f] = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescues_parse_print_and_change_one_thing() {
        for s in ["same", "adam", "unit", "reinit", "0.001"] {
            assert_eq!(s.parse::<Rescue>().unwrap().label(), s);
        }
        assert!("0".parse::<Rescue>().is_err() && "fast".parse::<Rescue>().is_err());
        let arch = tinycnn::Arch::parse("2-2", 8, 8, 3).unwrap();
        let model = Model::init(&arch, tinycnn::Init::Glorot, 1).unwrap();
        let sgd = TrainConfig {
            optimizer: Optimizer::sgd(0.01, 0.0),
            scaling: Scaling::Raw,
            ..TrainConfig::default()
        };
        let (mut m, mut c) = (model.clone(), sgd.clone());
        Rescue::Unit.apply(&mut m, &mut c, &[0; 64], 0);
        assert_eq!(
            (c.scaling, c.optimizer, &m),
            (Scaling::Unit, sgd.optimizer.clone(), &model)
        );
        let (mut m, mut c) = (model.clone(), sgd.clone());
        Rescue::Adam.apply(&mut m, &mut c, &[0; 64], 0);
        assert_eq!(
            (c.optimizer, c.scaling),
            (Optimizer::adam(1e-3), Scaling::Raw)
        );
        let (mut m, mut c) = (model.clone(), sgd.clone());
        Rescue::Lr(0.5).apply(&mut m, &mut c, &[0; 64], 0);
        assert_eq!(c.optimizer, Optimizer::sgd(0.5, 0.0));
    }

    #[test]
    fn reinit_redraws_only_the_dead_filters_of_the_last_layer() {
        let arch = tinycnn::Arch::parse("2-2", 8, 8, 3).unwrap();
        let mut model = Model::init(&arch, tinycnn::Init::Glorot, 1).unwrap();
        let w = model.layout().conv_w[1].clone();
        let k = w.len() / 2;
        // Kill last-layer filter 0: weights zero, bias very negative.
        model.params[w.start..w.start + k].fill(0.0);
        let b0 = model.layout().conv_b[1].start;
        model.params[b0] = -100.0;
        let before = model.clone();
        let images: Vec<u8> = (0..4 * 64).map(|i| (i * 37 % 256) as u8).collect();
        let mut c = TrainConfig::default();
        Rescue::Reinit.apply(&mut model, &mut c, &images, 9);
        let fresh = Model::init(&arch, tinycnn::Init::Glorot, 9).unwrap();
        assert_eq!(
            model.params[w.start..w.start + k],
            fresh.params[w.start..w.start + k]
        );
        assert_eq!(model.params[b0], 0.0);
        // Filter 1 (alive on these images) and every other tensor are untouched.
        assert_eq!(
            model.params[w.start + k..w.end],
            before.params[w.start + k..w.end]
        );
        assert_eq!(model.params[b0 + 1..], before.params[b0 + 1..]);
        assert_eq!(model.params[..w.start], before.params[..w.start]);
    }
}
