//! Helpers shared by the pruning tests: a small labelled dataset, and the check that every
//! cell of a pruning table equals evaluating the physically smaller network.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tinycnn::prune::{greedy, Stop, Ties};
use tinycnn::train::evaluate;
use tinycnn::{Data, Model, Scaling};

/// Three classes of noisy bars (left, right, top) on `side` x `side` images.
pub fn bars(n: usize, side: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut images = vec![0u8; n * side * side];
    let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
    let third = side / 3;
    for i in 0..n {
        for y in 0..side {
            for x in 0..side {
                let on = match labels[i] {
                    0 => x < third,
                    1 => x >= side - third,
                    _ => y < third,
                };
                let noise = (rng.next_u32() % 90) as u8;
                images[(i * side + y) * side + x] = if on { 150 + noise } else { noise };
            }
        }
    }
    (images, labels)
}

/// `images` (`side` x `side` each) with their labels, as the engine reads them.
pub fn data<'a>(images: &'a [u8], labels: &'a [u8], side: usize) -> Data<'a> {
    Data {
        images,
        labels,
        height: side,
        width: side,
    }
}

/// Prunes `model` on `data` and checks every cell of the table against `evaluate` of the
/// smaller network; returns the number of cells checked.
pub fn check_every_cell(model: &Model, data: &Data, ties: Ties) -> usize {
    let p = greedy(model, data, Scaling::Unit, ties, Stop::OnePerLayer).unwrap();
    assert_eq!(
        p.initial_accuracy,
        evaluate(model, data, Scaling::Unit).accuracy
    );
    let mut keep = model.arch.keep_all();
    let mut cells = 0;
    for step in &p.steps {
        for (i, acc) in step.accuracies.iter().enumerate() {
            let (l, f) = p.filters[i];
            let candidate = keep[l][f] && keep[l].iter().filter(|&&x| x).count() > 1;
            assert_eq!(
                acc.is_some(),
                candidate,
                "candidate set at {:?}",
                p.filters[i]
            );
            if let Some(acc) = acc {
                let mut k2 = keep.clone();
                k2[l][f] = false;
                let want = evaluate(&model.pruned(&k2).unwrap(), data, Scaling::Unit).accuracy;
                assert_eq!(
                    *acc,
                    want,
                    "{} without L{} F{}",
                    model.arch.label(),
                    l + 1,
                    f + 1
                );
                cells += 1;
            }
        }
        for &(l, f) in &step.removed {
            keep[l][f] = false;
        }
        let after = evaluate(&model.pruned(&keep).unwrap(), data, Scaling::Unit).accuracy;
        assert_eq!(step.accuracy_after, after, "after step");
        // The removed filter had the best accuracy; ties go to the lowest (layer, filter), or
        // with `Ties::Loss` to the lowest loss of the smaller network first.
        if step.removed.len() == 1 {
            let best = step
                .accuracies
                .iter()
                .flatten()
                .fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            let tied: Vec<(usize, usize)> = (0..p.filters.len())
                .filter(|&i| step.accuracies[i] == Some(best))
                .map(|i| p.filters[i])
                .collect();
            let want = if ties == Ties::Loss {
                let (rl, rf) = step.removed[0];
                let loss = |&(l, f): &(usize, usize)| {
                    let mut k2 = keep.clone();
                    k2[rl][rf] = true; // the network before this step
                    k2[l][f] = false;
                    evaluate(&model.pruned(&k2).unwrap(), data, Scaling::Unit).loss
                };
                let mut pick = tied[0];
                for c in &tied[1..] {
                    if loss(c) < loss(&pick) {
                        pick = *c;
                    }
                }
                pick
            } else {
                tied[0]
            };
            assert_eq!(want, step.removed[0], "{ties:?} among {tied:?}");
        }
    }
    assert_eq!(keep, p.keep);
    assert!(p.keep.iter().all(|k| k.iter().filter(|&&x| x).count() == 1));
    cells
}
