//! tinycnn: the small convolutional networks of the thesis, trained exactly and fast.
//!
//! The family ([`arch`]): one-channel `H x W` input, conv blocks (k x k "same" convolution,
//! bias, ReLU / leaky ReLU / tanh, optional 2x2 max-pool), flatten in C, H, W order, one dense
//! layer, softmax cross-entropy. Keras's defaults train it ([`train::TrainConfig`]): Glorot
//! uniform kernels, zero biases, Adam (1e-3, 0.9, 0.999, 1e-7), batch 32, reshuffled every
//! epoch from the seed.
//!
//! - [`arch`]: architectures (`16-4`), shapes, parameter counts;
//! - [`model`]: the flat parameter vector with PyTorch names, initialisation, pruning;
//! - [`ops`]: im2col, matrix products (`matrixmultiply`, `gemm`), pooling;
//! - [`direct`], [`transpose`], [`wgrad`]: the convolutions' products without packing, the
//!   transpose the weight gradient reads, and the weight gradient of a layer with few
//!   filters; [`isa`]: which vector instructions they use;
//! - [`net`]: forward and backward over a chunk of images;
//! - [`optim`]: Adam and SGD with momentum, as Keras writes them;
//! - [`train`]: training, evaluation, masked evaluation, activation capture;
//! - [`prune`]: the thesis's greedy filter pruning, incremental and exact.
//!
//! Tensors are NCHW at the API, as in PyTorch; inside a chunk they are CNHW (see [`ops`]).
//! Shape legend used in the docs: `n` images, `b` images in a chunk, `C` channels, `H x W`
//! spatial size, `k` kernel side, `D` dense inputs, `K` classes.
//!
//! **Architecture invariant:** pure compute. No file IO, no clock, no global random
//! generator, no knowledge of shapes, files or SQL; every random draw comes from the
//! configuration's seed. Results are bitwise identical at any thread count.

pub mod arch;
pub mod direct;
pub mod error;
mod frozen;
mod fused;
pub mod isa;
pub mod model;
pub mod net;
pub mod ops;
pub mod optim;
mod pool512;
pub mod prune;
mod silent;
mod sparse;
#[cfg(test)]
mod testkit;
pub mod train;
pub mod transpose;
pub mod wgrad;

pub use arch::{Activation, Arch, ArchLabel};
pub use error::{Error, Result};
pub use fused::use_portable_kernels;
pub use model::{Init, Model};
pub use net::Scaling;
pub use optim::Optimizer;
pub use train::{Data, Ending, EpochStats, Evaluation, TrainConfig, Trained};

/// ChaCha8 stream of the initial weights.
pub(crate) const STREAM_INIT: u64 = 1;
/// ChaCha8 streams of the epoch shuffles start here (one per epoch).
pub(crate) const STREAM_SHUFFLE_BASE: u64 = 1 << 32;

/// Version of the numerics: bumped whenever the same inputs would give different bits.
pub const ENGINE_VERSION: &str = "tinycnn/1";
