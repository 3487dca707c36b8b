//! A network with some conv filters switched off, as the explorer (`shapelab serve`) shows it:
//! its evaluation overall, per class and per factor bin (the thesis's Table 12), and its maps.
//!
//! "Switched off" means removed: every number here comes from the physically smaller network
//! ([`tinycnn::Model::pruned`]), so it equals `shapelab eval --remove` and the pruning tables
//! by construction. The maps are that network's, put back at the full width with the removed
//! filters' maps as zeros, so filter numbers keep their meaning.
//!
//! A pure function of a model and images; must not know stores or files.

use serde::{Deserialize, Serialize};
use shapes::Split as Part;
use tinycnn::train::Evaluation;
use tinycnn::{Model, Scaling};

use crate::analyses::failures::{of_predictions, FactorBin};
use crate::data::dataset::Dataset;
use crate::error::{Error, Result};
use crate::models::training::engine_data;

/// The evaluation of a network with filters switched off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Switched {
    pub split: Part,
    pub images: usize,
    pub accuracy: f64,
    pub loss: f64,
    /// Per class: its name and the share of its images predicted right.
    pub by_class: Vec<(String, f64)>,
    /// Per varying factor, accuracy in equal-width bins (the thesis's Table 12).
    pub by_factor: Vec<(String, Vec<FactorBin>)>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

/// `model` without the filters `keep` marks false, evaluated on split `part` of `d`, with
/// `bins` bins per factor. One forward pass of the smaller network over the split.
///
/// # Shapes
/// `keep[l][f]` for every conv layer `l` and filter `f`; `d`'s images `[n, H, W]`.
pub fn evaluate(
    model: &Model,
    keep: &[Vec<bool>],
    d: &Dataset,
    part: Part,
    scaling: Scaling,
    bins: usize,
) -> Result<Switched> {
    if d.try_split(part).is_none() {
        return Err(Error::Usage(format!(
            "the data has no {} split; ask for val",
            part.name()
        )));
    }
    let small = model
        .pruned(keep)
        .map_err(|e| Error::Usage(e.to_string()))?;
    let data = engine_data(d, part);
    let logits = tinycnn::train::logits(&small, &data, scaling);
    let classes = model.arch.classes;
    let e = Evaluation::of_logits(&logits, data.labels, classes);
    let preds: Vec<usize> = logits
        .chunks(classes)
        .map(tinycnn::train::prediction)
        .collect();
    let f = of_predictions(d, part, &preds, bins);
    Ok(Switched {
        split: part,
        images: e.total,
        accuracy: e.accuracy,
        loss: e.loss,
        by_class: f.by_class,
        by_factor: f.by_factor,
        confusion: e.confusion,
    })
}

/// What the smaller network computes on some images, at the full network's width.
#[derive(Clone, Debug, PartialEq)]
pub struct SwitchedMaps {
    /// Per conv layer, the maps after the activation, `[n, C, H, W]` with `C` the full
    /// network's filters; a removed filter's maps are zero.
    pub post: Vec<Vec<f32>>,
    /// Softmax of the logits, `[n, K]`.
    pub probabilities: Vec<f32>,
}

/// `model` without the filters `keep` marks false, run on `images` (`[n, H, W]`).
pub fn maps(
    model: &Model,
    keep: &[Vec<bool>],
    images: &[u8],
    scaling: Scaling,
) -> Result<SwitchedMaps> {
    let small = model
        .pruned(keep)
        .map_err(|e| Error::Usage(e.to_string()))?;
    let (maps, logits) = tinycnn::train::capture(&small, images, scaling);
    let px = model.arch.height * model.arch.width;
    let n = images.len() / px.max(1);
    let post = model
        .arch
        .layers()
        .iter()
        .zip(&maps)
        .zip(keep)
        .map(|((s, m), keep)| {
            let hw = s.hw();
            let kept = keep.iter().filter(|&&k| k).count();
            let mut full = vec![0.0f32; n * s.cout * hw];
            for img in 0..n {
                for (j, (f, _)) in keep.iter().enumerate().filter(|(_, &k)| k).enumerate() {
                    full[(img * s.cout + f) * hw..][..hw]
                        .copy_from_slice(&m.post[(img * kept + j) * hw..][..hw]);
                }
            }
            full
        })
        .collect();
    let probabilities = logits
        .chunks(model.arch.classes)
        .flat_map(|z| {
            let max = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let e: Vec<f32> = z.iter().map(|&v| (v - max).exp()).collect();
            let sum: f32 = e.iter().sum();
            e.into_iter().map(move |v| v / sum)
        })
        .collect();
    Ok(SwitchedMaps {
        post,
        probabilities,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Model, Dataset) {
        let mut f = shapes::presets::find("thesis-1.3")
            .expect("preset")
            .spec_file();
        (f.train, f.val, f.test) = (Some(30), Some(60), Some(30));
        let d = Dataset::generate(&f.resolve().expect("spec"), None, &|_| {});
        let arch = tinycnn::Arch::parse("4-3", 28, 28, 3).expect("arch");
        (
            Model::init(&arch, tinycnn::Init::Glorot, 7).expect("init"),
            d,
        )
    }

    #[test]
    fn switched_off_is_the_pruned_network_evaluated() {
        let (m, d) = setup();
        let keep = m.arch.keep_without(&[(1, 2), (2, 3)]).expect("keep");
        let s = evaluate(&m, &keep, &d, Part::Val, Scaling::Unit, 5).expect("evaluate");
        let e = tinycnn::train::evaluate(
            &m.pruned(&keep).expect("pruned"),
            &engine_data(&d, Part::Val),
            Scaling::Unit,
        );
        assert_eq!(
            (s.accuracy, s.loss, &s.confusion),
            (e.accuracy, e.loss, &e.confusion)
        );
        // Every factor's bins hold every image, and their accuracies average to the total.
        for (_, bins) in &s.by_factor {
            assert_eq!(bins.iter().map(|b| b.images).sum::<usize>(), 60);
            let right: f64 = bins.iter().map(|b| b.accuracy * b.images as f64).sum();
            assert!((right / 60.0 - s.accuracy).abs() < 1e-9);
        }
        assert!(evaluate(&m, &keep, &d, Part::Train, Scaling::Unit, 5).is_ok());
    }

    #[test]
    fn maps_keep_filter_numbers_with_zeros_for_the_removed() {
        let (m, d) = setup();
        let images = &d.split(Part::Val).images[..2 * 784];
        let all = maps(
            &m,
            &m.arch.keep_without(&[]).expect("keep"),
            images,
            Scaling::Unit,
        )
        .expect("maps");
        let (full, _) = tinycnn::train::capture(&m, images, Scaling::Unit);
        assert_eq!(all.post[0], full[0].post);
        assert_eq!(all.post[1], full[1].post);
        // Layer 1's filter 2 off: its maps are zero, layer 1's others unchanged.
        let off = maps(
            &m,
            &m.arch.keep_without(&[(1, 2)]).expect("keep"),
            images,
            Scaling::Unit,
        )
        .expect("maps");
        let hw = 28 * 28;
        for img in 0..2 {
            for f in 0..4 {
                let got = &off.post[0][(img * 4 + f) * hw..][..hw];
                if f == 1 {
                    assert!(got.iter().all(|&v| v == 0.0));
                } else {
                    assert_eq!(got, &full[0].post[(img * 4 + f) * hw..][..hw]);
                }
            }
        }
        for p in off.probabilities.chunks(3) {
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }
}
