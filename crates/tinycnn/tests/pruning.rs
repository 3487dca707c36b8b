//! Greedy pruning is exact: every accuracy in every table equals evaluating the physically
//! smaller network, on several models (trained and untrained, one to three layers, every
//! activation, pooled or not).

mod common;

use common::{bars, check_every_cell, data};
use tinycnn::prune::{greedy, greedy_observed, Stop, Ties};
use tinycnn::train::{train, Silent};
use tinycnn::{Activation, Arch, Init, Model, Scaling, TrainConfig};

#[test]
fn every_cell_equals_the_smaller_network() {
    let (ti, tl) = bars(60, 14, 1);
    let (vi, vl) = bars(150, 14, 2);
    let val = data(&vi, &vl, 14);
    let mut cells = 0;
    for (arch, act, pool, epochs) in [
        ("6-5", Activation::Relu, vec![true, true], 3),
        ("5-4", Activation::Relu, vec![true, true], 0),
        ("4-3-3", Activation::Relu, vec![true, false, true], 2),
        ("4-4", Activation::Tanh, vec![true, true], 2),
        ("3-4", Activation::LeakyRelu, vec![false, true], 1),
        // One layer: its filters' removals drop their dense partial sums only.
        ("6", Activation::Relu, vec![true], 3),
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
            let small = data(&ti, &tl, 14);
            tinycnn::train::train(&a, &cfg, &small, &small, &mut Silent)
                .unwrap()
                .model
        };
        cells += check_every_cell(&model, &val, Ties::One);
        cells += check_every_cell(&model, &val, Ties::Loss);
        cells += check_every_cell(&model, &val, Ties::Batch);
    }
    assert!(cells > 100, "{cells} cells checked");
}

/// Breaking ties by loss changes the order where the index rule decides it: on a network that
/// keeps full accuracy without most of its filters, some step picks a filter other than the
/// lowest-numbered of the tied ones.
#[test]
fn ties_by_loss_are_not_ties_by_index() {
    let (ti, tl) = bars(150, 14, 5);
    let train_d = data(&ti, &tl, 14);
    let a = Arch::parse("6-6", 14, 14, 3).unwrap();
    let cfg = TrainConfig {
        epochs: 6,
        seed: 2,
        ..TrainConfig::default()
    };
    let m = train(&a, &cfg, &train_d, &train_d, &mut Silent)
        .unwrap()
        .model;
    let by_index = greedy(&m, &train_d, Scaling::Unit, Ties::One, Stop::OnePerLayer).unwrap();
    let by_loss = greedy(&m, &train_d, Scaling::Unit, Ties::Loss, Stop::OnePerLayer).unwrap();
    let ties = by_index
        .steps
        .iter()
        .filter(|s| {
            s.accuracies
                .iter()
                .flatten()
                .filter(|&&x| x == s.accuracy_after)
                .count()
                > 1
        })
        .count();
    assert!(ties > 0, "the network has tied steps");
    let order =
        |p: &tinycnn::prune::Pruning| -> Vec<_> { p.steps.iter().map(|s| s.removed[0]).collect() };
    assert_ne!(order(&by_index), order(&by_loss));
    check_every_cell(&m, &train_d, Ties::Loss);
    // Observed: the same pruning, and after each step the filters gone so far.
    let seen = std::sync::Mutex::new(Vec::new());
    let observed = greedy_observed(
        &m,
        &train_d,
        Scaling::Unit,
        (Ties::Batch, Stop::OnePerLayer),
        &|gone| seen.lock().unwrap().push(gone),
    )
    .unwrap();
    let batch = greedy(&m, &train_d, Scaling::Unit, Ties::Batch, Stop::OnePerLayer).unwrap();
    assert_eq!(order(&observed), order(&batch));
    let gone: Vec<usize> = batch
        .steps
        .iter()
        .scan(0, |n, s| {
            *n += s.removed.len();
            Some(*n)
        })
        .collect();
    assert_eq!(seen.into_inner().unwrap(), gone);
    assert_eq!(gone.last(), Some(&10), "6-6 down to 1-1");
}

#[test]
fn stop_below_and_minimal_networks() {
    let (vi, vl) = bars(90, 12, 4);
    let val = data(&vi, &vl, 12);
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
    let small = data(&ti, &tl, 28);
    let val = data(&vi, &vl, 28);
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
        cells += check_every_cell(&model, &val, Ties::Loss);
        cells += check_every_cell(&model, &val, Ties::Batch);
    }
    assert!(cells > 100, "{cells} cells checked");
}
