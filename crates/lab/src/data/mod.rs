//! The data: datasets and image panels in memory and on disk, and what is shown of them.
//!
//! Owns the `.npz` dataset and panel formats ([`dataset`], [`panelfile`]), ImageFolder trees
//! ([`imagefolder`]), the generator's concept masks beside them ([`masks`]), `inspect`'s
//! summaries ([`inspect`]), contact sheets ([`contact`]) and the factor bins every per-factor
//! table shares ([`bins`]). Every reader validates what it
//! reads. Must not know models, training or stores.

pub mod bins;
pub mod contact;
pub mod dataset;
pub mod imagefolder;
pub mod inspect;
pub mod masks;
pub mod panelfile;
