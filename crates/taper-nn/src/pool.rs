//! Pooling.
//!
//! candle 0.11.1's `max_pool2d` backward multiplies the gradient by the fraction
//! of window elements equal to the maximum instead of dividing by their count,
//! so a unique maximum receives 1/k² of its gradient (Adam hides it, being scale
//! invariant; SGD does not). [`max_pool2d`] gives the first maximum of each
//! window the whole gradient, as PyTorch does (checked in `tests/gradcheck.rs`).
//!
//! ```
//! use candle_core::{Device, Tensor};
//!
//! let x = Tensor::arange(0f32, 16.0, &Device::Cpu)?.reshape((1, 1, 4, 4))?;
//! let y = taper_nn::max_pool2d(&x, 2)?;
//! assert_eq!(y.dims(), &[1, 1, 2, 2]);
//! assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [5.0, 7.0, 13.0, 15.0]);
//! # Ok::<(), candle_core::Error>(())
//! ```

pub use crate::kernels::pool::{max_pool2d, max_pool2d_reshape};
