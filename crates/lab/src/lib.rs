//! shapelab's application library: file formats, outputs and the views of the data.
//!
//! - [`dataset`] and [`panelfile`]: datasets and image panels in memory and as `.npz`;
//! - [`imagefolder`]: the ImageFolder tree layout Keras and torchvision read;
//! - [`npz`]: the `.npz` reader and writer underneath;
//! - [`fsio`]: atomic file and directory writes;
//! - [`draw`] and [`contact`]: the raster canvas and contact sheets;
//! - [`inspect`]: summaries of files, as text or JSON;
//! - [`pruning`] and [`analysis`]: the thesis's greedy pruning tables and the analyses it left
//!   as future work (ranking, similarity, interaction, failures), with [`plots`];
//! - [`maps`], [`kernels`] and [`filterstats`]: activation sheets, kernel pictures and
//!   per-filter statistics (looking inside a trained network);
//! - [`run`] and [`training`]: trained models on disk, and training/evaluation on datasets;
//! - [`experiment`], [`sweep`], [`store`] and [`outcome`]: experiments expanded into runs, run
//!   in parallel into the SQLite store (the only module that knows SQL), and classified;
//! - [`bench`]: the measurements behind `shapelab bench`.
//!
//! **Architecture invariant:** the command-line binary holds no logic of its own beyond
//! parsing and printing; anything a command computes lives here, typed and testable. Every
//! output is written through [`fsio`], so nothing half-written ever carries a final name.

pub mod analysis;
pub mod bench;
pub mod bins;
pub mod contact;
pub mod dataset;
pub mod draw;
pub mod error;
pub mod experiment;
pub mod filterstats;
pub mod fsio;
pub mod imagefolder;
pub mod inspect;
pub mod kernels;
pub mod leftovers;
pub mod maps;
pub mod npz;
pub mod outcome;
pub mod output;
pub mod panelfile;
pub mod plots;
pub mod predictions;
pub mod pruning;
pub mod report;
pub mod run;
pub mod store;
pub mod stuck;
pub mod study;
pub mod summary;
pub mod sweep;
pub mod text;
pub mod training;

use std::path::Path;

pub use dataset::Dataset;
pub use error::{Error, Result};
pub use panelfile::PanelData;

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
        return imagefolder::read(path).map(Loaded::Dataset);
    }
    let f = npz::NpzFile::open(path)?;
    if f.has("x_panel") {
        PanelData::read_from(&f).map(Loaded::Panel)
    } else {
        dataset::read_from(&f).map(Loaded::Dataset)
    }
}
