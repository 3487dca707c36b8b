//! Experiments: many runs over grids of architectures, settings and seeds, and what they
//! say together.
//!
//! Owns experiment files expanded into runs ([`experiment`]), their parallel, resumable
//! execution ([`sweep`]) on local threads or as workers claiming runs from a shared store
//! ([`worker`]) and the cluster recipes that start such workers ([`recipes`]), the store in SQLite or PostgreSQL ([`store`], the only code that knows SQL) and the
//! typed records of the analyses it keeps ([`recorded`]), run outcomes and the stuck-run diagnosis ([`outcome`]), the stuck-run study ([`stuck`]) and
//! success-rate statistics and tables ([`summary`]), and the dissection of a store's learned
//! runs ([`dissections`]), and the families and barriers across seeds ([`families`],
//! [`barriers`]). Must not draw activation maps or implement an analysis: it runs
//! `analyses` over a store's runs and records their results, typed by `analyses`.

pub mod barriers;
pub mod dissections;
pub mod experiment;
pub mod families;
pub mod first_steps;
pub mod logistic;
pub mod outcome;
pub mod recipes;
pub mod recorded;
pub mod rescue;
pub mod store;
pub mod stuck;
pub mod summary;
pub mod sweep;
pub mod worker;
