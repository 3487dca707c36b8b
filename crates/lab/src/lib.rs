//! shapelab's application library: everything a command computes, reads or writes, typed and
//! testable, grouped by concern:
//!
//! - [`files`]: atomic writes, the guard that keeps outputs off inputs, leftovers of killed
//!   writers, the `.npz` format underneath;
//! - [`data`]: datasets and panels in memory and on disk (`.npz`, ImageFolder), their
//!   summaries, contact sheets and factor bins;
//! - [`models`]: model directories, training and evaluation on datasets, predictions;
//! - [`experiments`]: experiment files expanded into runs, the sweep, the store (the only code
//!   that knows SQL), outcomes, stuck runs and success-rate summaries;
//! - [`inside`]: looking inside one trained network (activation sheets, kernels, per-filter
//!   statistics);
//! - [`analyses`]: the thesis's greedy pruning and the analyses it left as future work;
//! - [`study`]: the whole study as stages, and its report;
//! - [`draw`], [`text`], [`error`], [`mod@bench`]: the raster canvas, Unicode-safe text, typed
//!   errors, the measurements behind `shapelab bench`.
//!
//! Imports point one way, down this list's dependency order: `files` and `data` know nothing
//! of models or experiments; `models` nothing of experiments; `study` sits on top.
//!
//! **Architecture invariant:** the command-line binary holds no logic of its own beyond
//! parsing and printing; anything a command computes lives here. Every output is written
//! through [`files::fsio`], so nothing half-written ever carries a final name.

pub mod analyses;
pub mod bench;
pub mod chart;
pub mod data;
pub mod draw;
pub mod error;
pub mod experiments;
pub mod files;
pub mod inside;
pub mod models;
pub mod study;
pub mod text;

use std::path::Path;

pub use data::dataset::Dataset;
pub use data::panelfile::PanelData;
pub use error::{Error, Result};

/// The shapelab version recorded in every file it writes.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A file `inspect` and later commands accept.
pub enum Loaded {
    Dataset(Dataset),
    Panel(PanelData),
}

/// Reads a dataset (`.npz` or ImageFolder directory) or a panel (`.npz`).
pub fn load(path: &Path) -> Result<Loaded> {
    if !path.exists() {
        return Err(Error::NotFound(path.to_path_buf()));
    }
    if path.is_dir() {
        return data::imagefolder::read(path).map(Loaded::Dataset);
    }
    let f = files::npz::NpzFile::open(path)?;
    if f.has("x_panel") {
        PanelData::read_from(&f).map(Loaded::Panel)
    } else {
        data::dataset::read_from(&f).map(Loaded::Dataset)
    }
}
