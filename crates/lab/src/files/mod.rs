//! Files: how shapelab reads and writes them so that nothing the user has is lost.
//!
//! Owns atomic writes ([`fsio`]), the guard that keeps an output off the command's inputs and
//! off directories shapelab did not write ([`output`]), the removal of what killed writers
//! left ([`leftovers`]), the `.npz` container ([`npz`]), and the schema version of every JSON
//! document shapelab reads back ([`schema`]). Must not know what the files
//! mean: no datasets, models or stores here.

pub mod fsio;
pub mod leftovers;
pub mod npz;
pub mod output;
pub mod schema;
