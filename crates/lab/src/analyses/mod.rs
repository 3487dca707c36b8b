//! The thesis's greedy pruning tables ([`pruning`]) and the analyses it left as future work
//! ([`analysis`]: L1 and Taylor ranking, similarity, interaction, failures), with their plots
//! ([`plots`]).
//!
//! Pure functions of a model and a dataset, plus the files they write; must not know
//! experiments, stores or studies.

pub mod analysis;
pub mod plots;
pub mod pruning;
