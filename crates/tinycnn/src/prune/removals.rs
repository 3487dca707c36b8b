//! Every single filter's removal at once: what the absence of each filter does to every
//! image's prediction, measured as the first step of the greedy search measures it (the
//! incremental evaluator of [`super`]) and exact like it: each prediction equals that of the
//! physically smaller network ([`Model::pruned`]) evaluated by the engine.
//!
//! Dissection's causal check reads it (removing a filter, per class and per factor bin);
//! it must not choose or remove anything itself.

use super::{certified, initial_state, step_predictions, FilterId, Fused, Net, State, TermCache};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::net::Scaling;
use crate::train::Data;

/// The predictions of a network and of each network one filter smaller.
#[derive(Clone, Debug, PartialEq)]
pub struct Removals {
    /// The full network's predicted class of every image, `[n]`.
    pub full: Vec<usize>,
    /// In (layer, filter) order, every filter of a layer with more than one, and the class
    /// the network without it predicts for every image, `[n]`.
    pub without: Vec<(FilterId, Vec<usize>)>,
    /// Images re-checked with the engine because of a near tie.
    pub rechecked_images: usize,
}

/// [`Removals`] of `model` on `data`.
///
/// # Shapes
/// `data.images [n, H, W]`; every prediction vector is `[n]`.
pub fn single_removals(model: &Model, data: &Data, scaling: Scaling) -> Result<Removals> {
    data.check(&model.arch, "removing filters")?;
    if data.is_empty() {
        return Err(Error::Data("no images to measure removals on".into()));
    }
    let net = Net::of(model);
    let n = data.len();
    let keep = model.arch.keep_all();
    let fused = Fused::new(&net);
    let (mut st, logits): (State, Vec<f32>) = initial_state(&net, data, scaling, fused.is_some());
    let full = logits
        .chunks(net.classes)
        .map(crate::train::prediction)
        .collect();
    let candidates: Vec<FilterId> = (0..net.shapes.len())
        .filter(|&l| net.shapes[l].cout > 1)
        .flat_map(|l| (0..net.shapes[l].cout).map(move |f| (l, f)))
        .collect();
    let mut terms = TermCache::new(&net, n);
    let all = step_predictions(
        &net,
        &mut st,
        fused.as_ref(),
        &keep,
        &candidates,
        &mut terms,
    );
    let rechecked = std::sync::atomic::AtomicUsize::new(0);
    let without = candidates
        .iter()
        .zip(&all)
        .map(|(&c, preds)| {
            let classes = certified(model, data, scaling, (&keep, &[c]), preds, &rechecked)?;
            Ok((c, classes))
        })
        .collect::<Result<_>>()?;
    Ok(Removals {
        full,
        without,
        rechecked_images: rechecked.into_inner(),
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::arch::Arch;
    use crate::model::Init;

    pub(in crate::prune) use crate::testkit::labelled_images as data;

    /// Every prediction equals the engine's on the physically smaller network, for the fused
    /// two-stage case, a deeper network (the general path), tanh (no fusion) and one layer.
    #[test]
    fn every_removal_equals_evaluating_the_smaller_network() {
        let (images, labels) = data(150, 3);
        let d = Data {
            images: &images,
            labels: &labels,
            height: 28,
            width: 28,
        };
        use crate::arch::Activation;
        for (arch, act) in [
            ("8-6", Activation::Relu),
            ("4-3-5", Activation::Relu),
            ("5-4", Activation::Tanh),
            ("7", Activation::Relu),
        ] {
            let mut a = Arch::parse(arch, 28, 28, 3).unwrap();
            a.activation = act;
            let model = Model::init(&a, Init::Glorot, 11).unwrap();
            let r = single_removals(&model, &d, Scaling::Unit).unwrap();
            let preds = |m: &Model| -> Vec<usize> {
                crate::train::logits(m, &d, Scaling::Unit)
                    .chunks(3)
                    .map(crate::train::prediction)
                    .collect()
            };
            assert_eq!(r.full, preds(&model), "{arch}");
            let expected: usize = a.filters.iter().filter(|&&f| f > 1).sum();
            assert_eq!(r.without.len(), expected, "{arch}");
            assert!(
                r.without.iter().any(|(_, p)| p != &r.full),
                "{arch}: some removal changes a prediction, or the test proves nothing"
            );
            for ((l, f), got) in &r.without {
                let mut keep = a.keep_all();
                keep[*l][*f] = false;
                assert_eq!(
                    got,
                    &preds(&model.pruned(&keep).unwrap()),
                    "{arch} ({l}, {f})"
                );
            }
        }
    }
}
