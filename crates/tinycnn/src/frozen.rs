//! Epochs of a frozen run: a last conv layer silent on every image, so that nothing but the
//! dense layer's biases can change, computed from those biases alone.
//!
//! Plain SGD on raw pixels (the thesis's `sgd-raw`) often kills the last conv layer in the
//! first epochs: its ReLU then outputs `+0` on every training image, passes no gradient back,
//! and every weight stays where it is while the dense biases drift towards the class
//! frequencies, for all the epochs left. In the thesis-scale study, 232 of 450 `sgd-raw` runs
//! did that, and their epochs after the first frozen one took 25.7 of the sweep's 47.9
//! run-minutes (the store's per-epoch dead-filter counts and gradient norms). Every one of
//! those epochs ran the whole network to learn that the logits are the biases.
//!
//! **The proof, checked on one whole epoch.** [`Watch`] follows an epoch of a run trained with
//! SGD (whose update of a parameter with gradient `+0` depends on that parameter and its
//! velocity alone, not on the step count) and ReLU, and it is frozen when:
//! 1. on every training chunk the last conv layer's output was `+0`, bit for bit, from finite
//!    pre-activations ([`crate::net::Workspace::last_silent`]);
//! 2. every update had the gradient `+0` (bits) for every parameter but the dense biases, and
//!    left those parameters and their velocities bit for bit as they were at the epoch's start.
//!
//! Then the next epoch starts from the same weights (2), so every training image gives the
//! same maps (an image's maps do not depend on the other images of its chunk) and the same `+0`
//! output (1); a last layer that outputs `+0` writes a `dz` of `+0` whatever the logits are
//! (`unpool_relu` and the ReLU pass nothing at a non-positive output), so every conv
//! gradient is again `+0`, the dense weights' too (their features are `+0`), and the update
//! again leaves everything but the biases where it was (2, and SGD's update does not depend on
//! the step). By induction this holds for every later epoch. The validation pass is taken
//! the same way when every validation chunk was silent after the proving epoch.
//!
//! **Same bits.** A frozen epoch runs the same shuffle, chunks, dense layer, softmax,
//! gradient sums, update and statistics as any epoch, on features of `+0` (what the conv
//! layers output); only the conv layers' forward and backward products are left out, whose
//! results are known. Its dead-filter counts are the proving epoch's (same weights, same
//! images).
//!
//! Must not guess: every condition is checked on the proving epoch's own computation, and a
//! frozen epoch first checks that the data, the configuration and the frozen parameters are
//! still those of the proof (a caller may change any of them between epochs).

use crate::arch::{Activation, Arch};
use crate::model::Model;
use crate::net::Scaling;
use crate::optim::{Optimizer, OptimizerState};
use crate::train::Data;

/// A proof that the run is frozen, and what it was proved for.
#[derive(Clone, Debug)]
pub(crate) struct Frozen {
    /// The parameters but the dense biases, then their velocities.
    fixed: Vec<u32>,
    optimizer: Optimizer,
    scaling: Scaling,
    batch_size: usize,
    /// Training images and labels, then validation images and labels.
    data: [Vec<u8>; 4],
    /// Per conv layer and filter: whether it output anything in the proving epoch.
    pub alive: Vec<Vec<bool>>,
    /// Whether every validation chunk was silent too.
    pub val_silent: bool,
}

/// The bits of every parameter but the dense biases, then of their velocities.
fn fixed_bits(model: &Model, state: &OptimizerState) -> Vec<u32> {
    let fc_b = model.layout().fc_b.clone();
    let outside = |v: &[f32]| -> Vec<u32> {
        v[..fc_b.start]
            .iter()
            .chain(&v[fc_b.end..])
            .map(|x| x.to_bits())
            .collect()
    };
    let mut bits = outside(&model.params);
    bits.extend(outside(state.velocity()));
    bits
}

/// Whether a run of `arch` trained with `optimizer` can be proved frozen: SGD and ReLU.
fn applies(arch: &Arch, optimizer: &Optimizer) -> bool {
    arch.activation == Activation::Relu && matches!(optimizer, Optimizer::Sgd { .. })
}

impl Frozen {
    /// Whether the proof holds for an epoch of `model` with `state` under these settings on
    /// this data.
    pub fn holds(
        &self,
        (model, state): (&Model, &OptimizerState),
        (optimizer, scaling, batch_size): (&Optimizer, Scaling, usize),
        train: &Data,
        val: &Data,
    ) -> bool {
        *optimizer == self.optimizer
            && state.optimizer == self.optimizer
            && scaling == self.scaling
            && batch_size == self.batch_size
            && self.data[0] == train.images
            && self.data[1] == train.labels
            && self.data[2] == val.images
            && self.data[3] == val.labels
            && fixed_bits(model, state) == self.fixed
    }
}

/// One epoch followed for the proof.
pub(crate) struct Watch {
    start: Vec<u32>,
    /// Every chunk and update so far as the proof needs it.
    ok: bool,
}

impl Watch {
    /// Starts following an epoch of `model` with `state`, if the proof can apply to it.
    pub fn begin(model: &Model, state: &OptimizerState) -> Option<Watch> {
        applies(&model.arch, &state.optimizer).then(|| Watch {
            start: fixed_bits(model, state),
            ok: true,
        })
    }

    /// Whether the watch still needs to know if chunks are silent.
    pub fn watching(&self) -> bool {
        self.ok
    }

    /// After a batch whose chunks were all silent (`silent`) and the update that followed,
    /// with its gradient `grad`.
    pub fn step(&mut self, silent: bool, grad: &[f32], model: &Model, state: &OptimizerState) {
        if !self.ok {
            return;
        }
        let fc_b = model.layout().fc_b.clone();
        let zero = grad[..fc_b.start]
            .iter()
            .chain(&grad[fc_b.end..])
            .all(|g| g.to_bits() == 0);
        self.ok = silent && zero && fixed_bits(model, state) == self.start;
    }

    /// The proof, if the epoch gave it: `alive` its filters that output anything,
    /// `val_silent` whether every validation chunk after it was silent.
    pub fn finish(
        self,
        (alive, val_silent): (&[Vec<bool>], bool),
        (optimizer, scaling, batch_size): (&Optimizer, Scaling, usize),
        train: &Data,
        val: &Data,
    ) -> Option<Frozen> {
        self.ok.then(|| Frozen {
            fixed: self.start,
            optimizer: optimizer.clone(),
            scaling,
            batch_size,
            data: [
                train.images.to_vec(),
                train.labels.to_vec(),
                val.images.to_vec(),
                val.labels.to_vec(),
            ],
            alive: alive.to_vec(),
            val_silent,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::arch::Arch;
    use crate::model::{Init, Model};
    use crate::net::Scaling;
    use crate::optim::Optimizer;
    use crate::train::{Data, EpochStats, Silent, TrainConfig, Trainer};

    use crate::testkit::labelled_images as data;

    fn config(optimizer: Optimizer) -> TrainConfig {
        TrainConfig {
            epochs: 5,
            batch_size: 32,
            optimizer,
            init: Init::Glorot,
            scaling: Scaling::Raw,
            seed: 7,
            early_stop: false,
        }
    }

    /// `arch` at its Glorot initialisation with the last conv layer's biases at `bias`.
    fn with_last_bias(arch: &str, bias: f32) -> Model {
        let a = Arch::parse(arch, 28, 28, 3).unwrap();
        let mut m = Model::init(&a, Init::Glorot, 3).unwrap();
        let r = m.layout().conv_b.last().unwrap().clone();
        m.params[r].fill(bias);
        m
    }

    /// Epochs of `model`; `tamper` may change the trainer after each epoch. Returns the
    /// histories, the final weights' bits and, per epoch, whether the run was frozen after it.
    fn run(
        model: Model,
        optimizer: Optimizer,
        may_freeze: bool,
        tamper: &dyn Fn(usize, &mut Trainer),
    ) -> (Vec<EpochStats>, Vec<u32>, Vec<bool>) {
        let (ti, tl) = data(150, 1);
        let (vi, vl) = data(41, 2);
        let train = Data {
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
        let mut t = Trainer::from_model(model, config(optimizer)).unwrap();
        t.may_freeze = may_freeze;
        let (mut history, mut frozen) = (Vec::new(), Vec::new());
        for e in 0..5 {
            history.push(t.epoch(&train, &val, &mut Silent).unwrap().unwrap());
            // What `train` hands on as the trained weights' evaluation, frozen or not.
            let again = crate::train::evaluate(&t.model, &val, Scaling::Raw);
            assert_eq!(t.last_val.as_ref(), Some(&again), "epoch {e}");
            frozen.push(t.is_frozen());
            tamper(e, &mut t);
        }
        let bits = t.model.params.iter().map(|x| x.to_bits()).collect();
        (history, bits, frozen)
    }

    /// A run whose last conv layer is dead from the start is proved frozen after its first
    /// epoch, and its later epochs (computed from the dense biases alone) give the weights,
    /// biases and statistics of the full computation, bit for bit: one, two and three conv
    /// layers, plain SGD and SGD with momentum.
    #[test]
    fn frozen_epochs_have_the_full_computations_bits() {
        for arch in ["4", "8-16", "16-4", "4-3-5"] {
            for optimizer in [Optimizer::sgd(0.01, 0.0), Optimizer::sgd(0.05, 0.9)] {
                let model = with_last_bias(arch, -1e6);
                let none = &|_: usize, _: &mut Trainer| {};
                let (h1, w1, f1) = run(model.clone(), optimizer.clone(), true, none);
                let (h0, w0, f0) = run(model, optimizer, false, none);
                assert_eq!(f1, vec![true; 5], "{arch}: proved after the first epoch");
                assert_eq!(f0, vec![false; 5]);
                assert_eq!(w1, w0, "{arch}");
                assert_eq!(h1, h0, "{arch}");
                // The dense biases moved: the frozen epochs computed something.
                assert_ne!(h1[1].train_loss, h1[4].train_loss, "{arch}");
                assert_eq!(
                    h1[4].dead.last(),
                    Some(&arch.split('-').last().unwrap().parse().unwrap())
                );
            }
        }
    }

    /// A frozen run whose weights a caller changes between epochs (here the dead layer's
    /// biases raised so that it lives again) is computed in full from then on, with the same
    /// bits as a run never frozen.
    #[test]
    fn a_changed_model_is_no_longer_frozen() {
        let revive = &|e: usize, t: &mut Trainer| {
            if e == 1 {
                let r = t.model.layout().conv_b.last().unwrap().clone();
                t.model.params[r].fill(1.0);
            }
        };
        let model = with_last_bias("8-16", -1e6);
        let sgd = Optimizer::sgd(0.01, 0.0);
        let (h1, w1, f1) = run(model.clone(), sgd.clone(), true, revive);
        let (h0, w0, _) = run(model, sgd, false, revive);
        assert_eq!(&f1[..2], &[true, true]);
        assert!(!f1[2], "the revived run is not proved frozen again");
        assert_eq!(
            h1[2].dead,
            vec![h1[2].dead[0], 0],
            "the last layer lives again"
        );
        assert_eq!(w1, w0);
        assert_eq!(h1, h0);
    }

    /// Runs that are not frozen are never proved so: a live last layer, and Adam (whose
    /// moments keep moving dead weights).
    #[test]
    fn live_runs_and_adam_are_not_frozen() {
        let none = &|_: usize, _: &mut Trainer| {};
        let (_, _, f) = run(
            with_last_bias("8-16", 0.0),
            Optimizer::sgd(0.01, 0.0),
            true,
            none,
        );
        assert_eq!(f, vec![false; 5]);
        let (h, _, f) = run(
            with_last_bias("8-16", -1e6),
            Optimizer::adam(1e-3),
            true,
            none,
        );
        assert_eq!(f, vec![false; 5]);
        assert_eq!(h[4].dead[1], 16, "dead all along, yet not frozen");
    }
}
