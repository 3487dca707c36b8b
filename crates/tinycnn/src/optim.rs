//! Optimisers, following Keras 3's update rules exactly (the thesis used Keras).
//!
//! - Adam (Kingma & Ba 2015) as Keras writes it: `alpha = lr * sqrt(1 - b2^t) / (1 - b1^t)`,
//!   `m += (g - m)(1 - b1)`, `v += (g^2 - v)(1 - b2)`, `w -= alpha m / (sqrt(v) + eps)`.
//!   Keras adds `eps` to `sqrt(v)` before bias correction, PyTorch after; they coincide when
//!   PyTorch's eps is `eps / sqrt(1 - b2^t)`, which the PyTorch fixture uses for its one step.
//! - SGD with momentum as Keras writes it: `u = momentum u - lr g`, `w += u`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// An optimiser and its hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Optimizer {
    Adam {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
    },
    Sgd {
        lr: f64,
        momentum: f64,
    },
}

impl Optimizer {
    /// Keras's Adam defaults: lr 1e-3, betas 0.9/0.999, eps 1e-7.
    pub fn adam(lr: f64) -> Optimizer {
        Optimizer::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
        }
    }

    /// SGD, with momentum 0 for plain SGD.
    pub fn sgd(lr: f64, momentum: f64) -> Optimizer {
        Optimizer::Sgd { lr, momentum }
    }

    pub fn lr(&self) -> f64 {
        match self {
            Optimizer::Adam { lr, .. } | Optimizer::Sgd { lr, .. } => *lr,
        }
    }

    /// Checks the hyper-parameters.
    pub fn validate(&self) -> Result<()> {
        let lr = self.lr();
        if !(lr.is_finite() && lr > 0.0 && lr <= 100.0) {
            return Err(Error::Config(format!(
                "learning rate {lr} is out of range; use a value above 0, e.g. 0.001"
            )));
        }
        match *self {
            Optimizer::Adam {
                beta1, beta2, eps, ..
            } => {
                if !(0.0..1.0).contains(&beta1) || !(0.0..1.0).contains(&beta2) {
                    return Err(Error::Config(format!(
                        "Adam betas {beta1}/{beta2} must lie in [0, 1)"
                    )));
                }
                if eps.is_nan() || eps <= 0.0 {
                    return Err(Error::Config(format!("Adam epsilon {eps} must be above 0")));
                }
            }
            Optimizer::Sgd { momentum, .. } => {
                if !(0.0..1.0).contains(&momentum) {
                    return Err(Error::Config(format!(
                        "momentum {momentum} must lie in [0, 1)"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// An optimiser with its state for one parameter vector.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState {
    pub optimizer: Optimizer,
    /// Updates applied so far.
    pub step: u64,
    /// First moment (Adam) or velocity (SGD).
    m: Vec<f32>,
    /// Second moment (Adam only).
    v: Vec<f32>,
}

impl OptimizerState {
    pub fn new(optimizer: Optimizer, params: usize) -> OptimizerState {
        let v = match optimizer {
            Optimizer::Adam { .. } => vec![0.0; params],
            Optimizer::Sgd { .. } => Vec::new(),
        };
        OptimizerState {
            optimizer,
            step: 0,
            m: vec![0.0; params],
            v,
        }
    }

    /// The velocity of each parameter (SGD), or Adam's first moment.
    pub(crate) fn velocity(&self) -> &[f32] {
        &self.m
    }

    /// Applies one update to `params` from the gradient `grad` of the mean batch loss.
    pub fn update(&mut self, params: &mut [f32], grad: &[f32]) {
        debug_assert_eq!(params.len(), grad.len());
        self.step += 1;
        match self.optimizer {
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
            } => {
                let t = self.step as f64;
                let alpha = (lr * (1.0 - beta2.powf(t)).sqrt() / (1.0 - beta1.powf(t))) as f32;
                let (b1, b2, eps) = ((1.0 - beta1) as f32, (1.0 - beta2) as f32, eps as f32);
                for (((w, &g), m), v) in params
                    .iter_mut()
                    .zip(grad)
                    .zip(&mut self.m)
                    .zip(&mut self.v)
                {
                    *m += (g - *m) * b1;
                    *v += (g * g - *v) * b2;
                    *w -= *m * alpha / (v.sqrt() + eps);
                }
            }
            Optimizer::Sgd { lr, momentum } => {
                let (lr, mu) = (lr as f32, momentum as f32);
                for ((w, &g), u) in params.iter_mut().zip(grad).zip(&mut self.m) {
                    *u = mu * *u - lr * g;
                    *w += *u;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_adam_step_is_lr_times_sign() {
        let mut s = OptimizerState::new(Optimizer::adam(0.01), 3);
        let mut w = [1.0f32, 1.0, 1.0];
        s.update(&mut w, &[0.5, -2.0, 0.0]);
        assert!(
            (w[0] - 0.99).abs() < 1e-6 && (w[1] - 1.01).abs() < 1e-6 && w[2] == 1.0,
            "{w:?}"
        );
    }

    #[test]
    fn sgd_momentum_accumulates() {
        let mut s = OptimizerState::new(Optimizer::sgd(0.1, 0.9), 1);
        let mut w = [0.0f32];
        s.update(&mut w, &[1.0]);
        s.update(&mut w, &[1.0]);
        // u1 = -0.1, u2 = 0.9 * -0.1 - 0.1 = -0.19; w = -0.29
        assert!((w[0] + 0.29).abs() < 1e-6);
        assert!(Optimizer::sgd(0.0, 0.0).validate().is_err());
        assert!(Optimizer::sgd(0.1, 1.0).validate().is_err());
    }
}
