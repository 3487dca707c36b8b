//! Synthetic figures with controlled latent factors: the data side of shapelab.
//!
//! The thesis behind shapelab (docs THESIS.md) trained tiny CNNs on 28x28 images of ellipses,
//! rectangles and triangles whose size or rotation it controlled. This crate draws such images,
//! and any controlled variation of them, exactly and reproducibly:
//!
//! - [`factors`]: the vocabulary: classes and the latent factors recorded for every image;
//! - [`figure`]: exact geometry, including the one definition of `size` for all classes;
//! - [`raster`]: the anti-aliased scanline rasteriser;
//! - [`spec`]: dataset specs (TOML), validation with an exact fit check, the content hash;
//! - [`presets`] and [`panel`]: the thesis's datasets and image panels, and new variations;
//! - [`generate`]: whole splits in parallel, the same bytes whatever the thread count.
//!
//! **Architecture invariant:** this crate is pure and seeded. It does no file or network IO,
//! reads no clock and no global random generator; every draw comes from the spec's seed.

pub mod concepts;
pub mod factors;
pub mod figure;
pub mod generate;
pub mod panel;
pub mod presets;
pub mod raster;
pub mod spec;

pub use factors::{Class, Factors, FACTOR_NAMES, NUM_FACTORS};
pub use generate::{generate_split, render, Split, SplitData};
pub use spec::{DatasetSpec, Dist, SpecError, SpecFile, GENERATOR_VERSION};
