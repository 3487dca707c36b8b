//! Every pair of filters' removal: the accuracy of the network without filters `i` and `j`,
//! for every pair, measured as the greedy search measures a step (the incremental evaluator
//! of [`super`]) and exact like it: every accuracy equals that of the physically smaller
//! network ([`Model::pruned`]) evaluated by the engine.
//!
//! The interaction analysis (the thesis's future work 3) reads it. Evaluating each of a
//! 16-16's 528 smaller networks from scratch on 6,000 held-out images took 50 s; here the
//! network without `i` is one removal from the cached state, and every `j` is one candidate of
//! the step that follows. It must not choose or remove anything itself.

use super::{
    apply_removal, certify, initial_state, step_predictions, FilterId, Fused, Net, State, TermCache,
};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::net::Scaling;
use crate::train::Data;

/// The accuracy of a network without each filter and without each pair of filters.
#[derive(Clone, Debug, PartialEq)]
pub struct PairRemovals {
    /// Every filter of the network, layer by layer.
    pub filters: Vec<FilterId>,
    /// `[F, F]`, symmetric: the accuracy without filters `i` and `j` (without `i` alone on
    /// the diagonal); `None` where that would leave a layer without filters.
    pub accuracy: Vec<Vec<Option<f64>>>,
    /// Images re-checked with the engine because of a near tie.
    pub rechecked_images: usize,
}

/// [`PairRemovals`] of `model` on `data`.
///
/// # Shapes
/// `data.images [n, H, W]`; the result is `[F, F]` for the network's `F` filters.
pub fn pair_removals(model: &Model, data: &Data, scaling: Scaling) -> Result<PairRemovals> {
    data.check(&model.arch, "removing filters")?;
    if data.is_empty() {
        return Err(Error::Data("no images to measure removals on".into()));
    }
    let net = Net::of(model);
    let n = data.len();
    let full = model.arch.keep_all();
    let fused = Fused::new(&net);
    let (start, _) = initial_state(&net, data, scaling, fused.is_some());
    let filters: Vec<FilterId> = (0..net.shapes.len())
        .flat_map(|l| (0..net.shapes[l].cout).map(move |f| (l, f)))
        .collect();
    let rechecked = std::sync::atomic::AtomicUsize::new(0);
    let terms = |n| TermCache::new(&net, n);
    let mut accuracy = vec![vec![None; filters.len()]; filters.len()];
    let removable = |keep: &[Vec<bool>], (l, f): FilterId| {
        keep[l][f] && keep[l].iter().filter(|&&x| x).count() > 1
    };
    // The diagonal: every single removal, one step from the full network.
    let singles: Vec<(usize, FilterId)> = filters
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, c)| removable(&full, c))
        .collect();
    let candidates: Vec<FilterId> = singles.iter().map(|&(_, c)| c).collect();
    let all = if candidates.is_empty() {
        Vec::new()
    } else {
        let mut st = start.clone();
        step_predictions(
            &net,
            &mut st,
            fused.as_ref(),
            &full,
            &candidates,
            &mut terms(n),
        )
    };
    for (&(i, c), preds) in singles.iter().zip(&all) {
        accuracy[i][i] = Some(certify(
            model,
            data,
            scaling,
            &full,
            &[c],
            preds,
            &rechecked,
        )?);
    }
    // Row `i`: the network without `i`, then every later filter `j` of a layer that keeps one.
    for (i, &first) in filters.iter().enumerate() {
        if !removable(&full, first) {
            continue;
        }
        let mut keep = full.clone();
        keep[first.0][first.1] = false;
        let later: Vec<(usize, FilterId)> = filters
            .iter()
            .copied()
            .enumerate()
            .skip(i + 1)
            .filter(|&(_, c)| removable(&keep, c))
            .collect();
        if later.is_empty() {
            continue;
        }
        let mut st: State = start.clone();
        // Marks `first` removed again (it is) and takes it out of the state.
        apply_removal(&net, &mut st, fused.as_ref(), &mut keep, first.0, first.1);
        let candidates: Vec<FilterId> = later.iter().map(|&(_, c)| c).collect();
        let all = step_predictions(
            &net,
            &mut st,
            fused.as_ref(),
            &keep,
            &candidates,
            &mut terms(n),
        );
        for (&(j, c), preds) in later.iter().zip(&all) {
            let acc = certify(model, data, scaling, &keep, &[c], preds, &rechecked)?;
            accuracy[i][j] = Some(acc);
            accuracy[j][i] = Some(acc);
        }
    }
    Ok(PairRemovals {
        filters,
        accuracy,
        rechecked_images: rechecked.into_inner(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{Activation, Arch};
    use crate::model::Init;

    /// Every pair's accuracy equals the engine's evaluation of the physically smaller network,
    /// for the fused two-stage case, a deeper network (the general path), tanh (no fusion),
    /// one layer, and layers of one and two filters (where a pair would empty a layer).
    #[test]
    fn every_pair_equals_evaluating_the_smaller_network() {
        let (images, labels) = crate::prune::removals::tests::data(130, 7);
        let d = Data {
            images: &images,
            labels: &labels,
            height: 28,
            width: 28,
        };
        for (arch, act) in [
            ("8-6", Activation::Relu),
            ("4-3-5", Activation::Relu),
            ("5-4", Activation::Tanh),
            ("7", Activation::Relu),
            ("2-3", Activation::Relu),
            ("1-4", Activation::Relu),
        ] {
            let mut a = Arch::parse(arch, 28, 28, 3).unwrap();
            a.activation = act;
            let model = Model::init(&a, Init::Glorot, 5).unwrap();
            let got = pair_removals(&model, &d, Scaling::Unit).unwrap();
            let base = crate::train::evaluate(&model, &d, Scaling::Unit).accuracy;
            let mut changed = false;
            for (i, &(li, fi)) in got.filters.iter().enumerate() {
                for (j, &(lj, fj)) in got.filters.iter().enumerate() {
                    let mut keep = a.keep_all();
                    keep[li][fi] = false;
                    keep[lj][fj] = false;
                    let want = model
                        .pruned(&keep)
                        .ok()
                        .map(|m| crate::train::evaluate(&m, &d, Scaling::Unit).accuracy);
                    assert_eq!(got.accuracy[i][j], want, "{arch} ({li},{fi}) ({lj},{fj})");
                    changed |= want.is_some_and(|w| w != base);
                }
            }
            assert!(
                changed,
                "{arch}: no removal changes accuracy; the test proves nothing"
            );
        }
    }
}
