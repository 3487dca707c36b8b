//! Greedy pruning is exact: every accuracy in every table equals evaluating the physically
//! smaller network, on several models (trained and untrained, two and three layers, every
//! activation, pooled or not).

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tinycnn::prune::{greedy, Stop, Ties};
use tinycnn::train::{evaluate, train, Silent};
use tinycnn::{Activation, Arch, Data, Init, Model, Scaling, TrainConfig};

/// Three classes of noisy bars (left, right, top) on `side` x `side` images.
fn bars(n: usize, side: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
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

fn check_every_cell(model: &Model, data: &Data, ties: Ties) -> usize {
    let p = greedy(model, data, Scaling::Unit, ties, Stop::OnePerLayer).unwrap();
    assert_eq!(
        p.initial_accuracy,
        evaluate(model, data, Scaling::Unit).accuracy
    );
    let mut keep: Vec<Vec<bool>> = model.arch.filters.iter().map(|&f| vec![true; f]).collect();
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
        // The removed filter had the best accuracy; ties go to the lowest (layer, filter).
        if step.removed.len() == 1 {
            let best = step
                .accuracies
                .iter()
                .flatten()
                .fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            let first = step
                .accuracies
                .iter()
                .position(|a| *a == Some(best))
                .unwrap();
            assert_eq!(p.filters[first], step.removed[0]);
        }
    }
    assert_eq!(keep, p.keep);
    assert!(p.keep.iter().all(|k| k.iter().filter(|&&x| x).count() == 1));
    cells
}

#[test]
fn every_cell_equals_the_smaller_network() {
    let (ti, tl) = bars(240, 14, 1);
    let (vi, vl) = bars(150, 14, 2);
    let train_d = Data {
        images: &ti,
        labels: &tl,
        height: 14,
        width: 14,
    };
    let val = Data {
        images: &vi,
        labels: &vl,
        height: 14,
        width: 14,
    };
    let mut cells = 0;
    for (arch, act, pool, epochs) in [
        ("6-5", Activation::Relu, vec![true, true], 3),
        ("5-4", Activation::Relu, vec![true, true], 0),
        ("4-3-3", Activation::Relu, vec![true, false, true], 2),
        ("4-4", Activation::Tanh, vec![true, true], 2),
        ("3-4", Activation::LeakyRelu, vec![false, true], 1),
    ] {
        let mut a = Arch::parse(arch, 14, 14, 3).unwrap();
        a.activation = act;
        a.pool = pool;
        let model = if epochs == 0 {
            Model::init(&a, Init::He, 3).unwrap()
        } else {
            let cfg = TrainConfig {
                epochs,
                seed: 5,
                ..TrainConfig::default()
            };
            // Train on a few images only, so the network is imperfect and pruning matters.
            let small = Data {
                images: &ti[..60 * 196],
                labels: &tl[..60],
                height: 14,
                width: 14,
            };
            let _ = &train_d;
            tinycnn::train::train(&a, &cfg, &small, &small, &mut Silent)
                .unwrap()
                .model
        };
        cells += check_every_cell(&model, &val, Ties::One);
        cells += check_every_cell(&model, &val, Ties::Batch);
    }
    assert!(cells > 100, "{cells} cells checked");
}

#[test]
fn stop_below_and_minimal_networks() {
    let (vi, vl) = bars(90, 12, 4);
    let val = Data {
        images: &vi,
        labels: &vl,
        height: 12,
        width: 12,
    };
    let a = Arch::parse("4-4", 12, 12, 3).unwrap();
    let cfg = TrainConfig {
        epochs: 3,
        seed: 1,
        ..TrainConfig::default()
    };
    let m = train(&a, &cfg, &val, &val, &mut Silent).unwrap().model;
    let p = greedy(&m, &val, Scaling::Unit, Ties::One, Stop::Below(2.0)).unwrap();
    assert_eq!(p.steps.len(), 1, "stops after the first step below 2.0");
    let tiny = Model::init(&Arch::parse("1-1", 12, 12, 3).unwrap(), Init::He, 0).unwrap();
    assert!(
        greedy(&tiny, &val, Scaling::Unit, Ties::One, Stop::OnePerLayer)
            .unwrap_err()
            .to_string()
            .contains("already minimal")
    );
}

/// Thesis-sized maps (28x28 input, a last conv layer 14 wide: the fused kernel's full width)
/// and a wide last layer, so that last-layer filters go while the first layer still has
/// candidates (the cached path of the search).
#[test]
fn thesis_sized_maps_and_cached_steps_stay_exact() {
    let (ti, tl) = bars(120, 28, 3);
    let (vi, vl) = bars(100, 28, 4);
    let small = Data {
        images: &ti,
        labels: &tl,
        height: 28,
        width: 28,
    };
    let val = Data {
        images: &vi,
        labels: &vl,
        height: 28,
        width: 28,
    };
    let mut cells = 0;
    for (arch, epochs, seed) in [("3-12", 1, 1), ("5-9", 2, 2), ("4-6", 0, 3)] {
        let a = Arch::parse(arch, 28, 28, 3).unwrap();
        let model = if epochs == 0 {
            Model::init(&a, Init::He, seed).unwrap()
        } else {
            let cfg = TrainConfig {
                epochs,
                seed,
                ..TrainConfig::default()
            };
            tinycnn::train::train(&a, &cfg, &small, &small, &mut Silent)
                .unwrap()
                .model
        };
        let p = greedy(&model, &val, Scaling::Unit, Ties::One, Stop::OnePerLayer).unwrap();
        // Some last-layer filter is removed while the first layer still has two or more.
        let mut first_left = a.filters[0];
        let mut cached = false;
        for s in &p.steps {
            for &(l, _) in &s.removed {
                if l == 1 && first_left > 1 {
                    cached = true;
                }
                if l == 0 {
                    first_left -= 1;
                }
            }
        }
        assert!(cached || arch == "4-6", "{arch}: no cached step");
        cells += check_every_cell(&model, &val, Ties::One);
        cells += check_every_cell(&model, &val, Ties::Batch);
    }
    assert!(cells > 100, "{cells} cells checked");
}
