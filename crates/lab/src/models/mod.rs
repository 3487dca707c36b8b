//! Trained models: their directories on disk, training and evaluation on datasets, and
//! predictions.
//!
//! Owns the model directory format ([`run`]), `--data` resolution and the glue between
//! datasets and the engine ([`training`]), and logits and activation files with softmax
//! predictions ([`predictions`]). Must not know experiments, stores or studies.

pub mod predictions;
pub mod run;
pub mod training;
