//! Experiments: many runs over grids of architectures, settings and seeds, and what they
//! say together.
//!
//! Owns experiment files expanded into runs ([`experiment`]), their parallel, resumable
//! execution ([`sweep`]), the SQLite store ([`store`], the only code that knows SQL) and the
//! typed records of the analyses it keeps ([`recorded`]), run outcomes and the stuck-run diagnosis ([`outcome`]), the stuck-run study ([`stuck`]) and
//! success-rate statistics and tables ([`summary`]). Must not draw activation maps or analyse
//! single networks: it records the analyses' results, typed by `analyses`, but never computes
//! them.

pub mod experiment;
pub mod first_steps;
pub mod logistic;
pub mod outcome;
pub mod recorded;
pub mod rescue;
pub mod store;
pub mod stuck;
pub mod summary;
pub mod sweep;
