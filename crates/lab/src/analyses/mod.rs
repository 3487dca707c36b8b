//! The thesis's greedy pruning tables ([`pruning`]) and the analyses it left as future work,
//! one concept per file: [`ranking`] (L1, activation and Taylor ranking), [`similarity`],
//! [`interaction`], [`failures`] by latent factor, the rank correlations they share
//! ([`stats`]); [`analysis`] runs them all on one run and writes their files, with their
//! plots ([`plots`]). [`dissection`] labels each filter with the concept it detects, against
//! the generator's concept masks, and draws it.
//!
//! Pure functions of a model and a dataset, plus the files they write; must not know
//! experiments, stores or studies.

pub mod analysis;
pub mod dissection;
pub mod failures;
pub mod interaction;
pub mod plots;
pub mod pruning;
pub mod ranking;
pub mod seeds;
pub mod similarity;
pub mod stats;
