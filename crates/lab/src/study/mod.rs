//! The whole study in one command: its configuration ([`config`]), where its store lives
//! ([`location`]), its resumable stages
//! ([`stages`]) and its self-contained HTML report ([`report`], with its section on what the
//! filters detect in [`filters`], its section on whether seeds agree in [`seeds`], and the HTML pieces the sections share in [`html`]).
//!
//! The top floor: it may use everything below. Imports point one way, `stages` to `report`
//! to `config`. The report computes nothing that needs training or a model; it reads the
//! store and the pictures the study wrote.

pub mod config;
pub mod data;
pub mod filters;
pub mod findings;
pub mod html;
pub mod location;
pub mod report;
pub mod seeds;
pub mod stages;

pub use config::{Case, Study, DEFAULT, THESIS};
pub use stages::{check_dir, run, StudyObserver};
