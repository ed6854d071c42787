//! `taper-vision`: image data sets and models for Taper.
//!
//! Errors are `taper-train`'s: file errors name the file and what is wrong.

pub mod datasets;
pub mod grid;
pub mod metrics;
pub mod models;
pub mod transforms;

pub use taper_train::{Error, Result};
