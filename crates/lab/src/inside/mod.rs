//! Looking inside one trained network: activation sheets ([`maps`]), kernel pictures
//! ([`kernels`]), per-filter statistics ([`filterstats`]) and the network with filters
//! switched off ([`switched`]).
//!
//! Each is a function of a model and images; must not know experiments or stores.

pub mod filterstats;
pub mod kernels;
pub mod maps;
pub mod switched;
