//! Taper: deep learning in Rust on candle, from regression to seq2seq.
//!
//! This umbrella crate re-exports the crates: `taper::nn` (layers, losses,
//! kernels) and `taper::train` (the trainer) always, the domains behind features
//! (all on by default); depend on a single `taper-*` crate to pull only that
//! domain.

#[cfg(feature = "nlp")]
pub use taper_nlp as nlp;
pub use taper_nn as nn;
/// candle, the version Taper is built on: no need to match it by hand.
pub use taper_nn::{candle, candle_nn};
#[cfg(feature = "regression")]
pub use taper_regression as regression;
pub use taper_train as train;
#[cfg(feature = "vision")]
pub use taper_vision as vision;

#[cfg(feature = "alloc")]
pub mod alloc;
