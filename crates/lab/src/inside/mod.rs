//! Looking inside one trained network: activation sheets ([`maps`]), kernel pictures
//! ([`kernels`]) and per-filter statistics ([`filterstats`]).
//!
//! Each is a function of a model and images; must not know experiments or stores.

pub mod filterstats;
pub mod kernels;
pub mod maps;
