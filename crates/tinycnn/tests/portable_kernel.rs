//! The portable (non-AVX-512) fused kernel in full greedy pruning: every cell of the table
//! still equals evaluating the smaller network. Its own test binary, so that the switch is
//! set before any kernel runs in this process.

mod common;

use common::{bars, check_every_cell, data};
use tinycnn::prune::Ties;
use tinycnn::train::{train, Silent};
use tinycnn::{Arch, Init, Model, TrainConfig};

#[test]
fn portable_kernel_stays_exact() {
    // The only test in this process, so no kernel has run yet.
    assert!(
        tinycnn::use_portable_kernels(),
        "set before any kernel runs"
    );
    let (ti, tl) = bars(120, 28, 5);
    let (vi, vl) = bars(90, 28, 6);
    let small = data(&ti, &tl, 28);
    let val = data(&vi, &vl, 28);
    let mut cells = 0;
    // Channel groups of eight and four, trained and untrained.
    for (arch, epochs) in [("3-12", 1), ("4-6", 0)] {
        let a = Arch::parse(arch, 28, 28, 3).unwrap();
        let model = if epochs == 0 {
            Model::init(&a, Init::He, 4).unwrap()
        } else {
            let cfg = TrainConfig {
                epochs,
                seed: 2,
                ..TrainConfig::default()
            };
            train(&a, &cfg, &small, &small, &mut Silent).unwrap().model
        };
        cells += check_every_cell(&model, &val, Ties::One);
        cells += check_every_cell(&model, &val, Ties::Batch);
    }
    assert!(cells > 50, "{cells} cells checked");
}
