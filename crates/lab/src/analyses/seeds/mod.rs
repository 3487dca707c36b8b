//! Do different seeds learn the same filters? The comparisons of runs with each other, filter
//! by filter and layer by layer:
//! - [`assignment`]: the one-to-one matching that maximises summed similarity (Hungarian);
//! - [`correlation`]: the Pearson correlation of two runs' activation maps over the same
//!   images and positions, as convergent learning (Li, Yosinski et al. 2016) matches filters;
//! - [`cka`]: debiased linear CKA between two layers (Kornblith et al. 2019);
//! - [`compare`]: two runs compared, one permuted onto the other (Git Re-Basin's activation
//!   matching, Ainsworth et al. 2022), and the loss along the straight line between them;
//! - [`families`]: every run of a cell aligned to a reference, its filters read as families;
//! - [`barriers`]: the barriers of disjoint pairs over a sweep's grid, against width.
//!
//! Pure functions of models and a dataset, plus the files they write; must not know
//! experiments, stores or studies.

pub mod assignment;
pub mod barriers;
pub mod cka;
pub mod compare;
pub mod correlation;
pub mod families;
pub mod figures;
