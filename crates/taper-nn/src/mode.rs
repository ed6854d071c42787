//! Training or evaluation, and where a training pass's random draws come from.
//!
//! candle's CPU device cannot be seeded, and a thread-local "current iteration"
//! silently breaks on threads that never set it (per-example passes on a thread
//! pool). So a forward pass receives its [`Mode`] as an argument: evaluation, or
//! training with the key of the step's random stream, which the trainer derives
//! from `(seed, iteration)`. Every random draw of the pass (dropout masks) takes a
//! fresh key from it, in call order.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use taper_nn::{Dropout, Forward, Mode};
//!
//! let x = Tensor::ones((2, 8), candle_core::DType::F32, &Device::Cpu)?;
//! let drop = Dropout::new(0.5, "drop")?;
//! // Evaluation: the identity.
//! assert_eq!(drop.forward_t(&x, &Mode::eval())?.sum_all()?.to_scalar::<f32>()?, 16.0);
//! // Training: the same key gives the same mask, another key another one.
//! let a = drop.forward_t(&x, &Mode::train(7))?.to_vec2::<f32>()?;
//! let b = drop.forward_t(&x, &Mode::train(7))?.to_vec2::<f32>()?;
//! let c = drop.forward_t(&x, &Mode::train(8))?.to_vec2::<f32>()?;
//! assert_eq!(a, b);
//! assert_ne!(a, c);
//! # Ok::<(), candle_core::Error>(())
//! ```

use crate::init::mix;
use candle_core::{Module, Result, Tensor};
use std::sync::atomic::{AtomicU64, Ordering};

/// How a forward pass runs: evaluation (deterministic), or training with the key
/// of its random stream.
///
/// Draws are numbered in the order the pass makes them ([`Mode::next_key`]), so the
/// same code on the same key draws the same values on any thread. A pass that
/// splits into independent sub-passes (one per example, in parallel) gives each
/// its own [`Mode::fork`], whose stream depends only on the index.
#[derive(Debug)]
pub struct Mode {
    train: bool,
    key: u64,
    draws: AtomicU64,
}

impl Clone for Mode {
    fn clone(&self) -> Self {
        Self {
            train: self.train,
            key: self.key,
            draws: AtomicU64::new(self.draws.load(Ordering::Relaxed)),
        }
    }
}

impl Mode {
    /// Evaluation: dropout is the identity, batch norm uses its running statistics.
    pub fn eval() -> Self {
        Self {
            train: false,
            key: 0,
            draws: AtomicU64::new(0),
        }
    }

    /// Training, with random draws from the stream of `key`.
    pub fn train(key: u64) -> Self {
        Self {
            train: true,
            key,
            draws: AtomicU64::new(0),
        }
    }

    /// True in training.
    pub fn is_train(&self) -> bool {
        self.train
    }

    /// The stream's key.
    pub fn key(&self) -> u64 {
        self.key
    }

    /// The key of the next random draw of this pass, mixed with `salt` (a layer's
    /// name hash, so two layers never share a draw even if called in another
    /// order). Each call numbers one draw.
    pub fn next_key(&self, salt: u64) -> u64 {
        let n = self.draws.fetch_add(1, Ordering::Relaxed);
        mix(&[self.key, salt, n], "draw")
    }

    /// An independent stream for sub-pass `index` (DP-SGD's per-example passes):
    /// the same mode and index give the same stream whatever thread runs it.
    pub fn fork(&self, index: u64) -> Mode {
        Mode {
            train: self.train,
            key: mix(&[self.key, index], "fork"),
            draws: AtomicU64::new(0),
        }
    }
}

/// A layer or model whose forward pass depends on the [`Mode`] (dropout, batch
/// norm): candle-nn's `ModuleT`, with the training flag replaced by the mode and
/// its random stream.
pub trait Forward {
    /// Output for input `xs`.
    ///
    /// # Errors
    /// A shape the layer cannot take, or a failing kernel.
    fn forward_t(&self, xs: &Tensor, mode: &Mode) -> Result<Tensor>;
}

impl<T: Forward + ?Sized> Forward for &T {
    fn forward_t(&self, xs: &Tensor, mode: &Mode) -> Result<Tensor> {
        (**self).forward_t(xs, mode)
    }
}

impl<T: Forward + ?Sized> Forward for Box<T> {
    fn forward_t(&self, xs: &Tensor, mode: &Mode) -> Result<Tensor> {
        (**self).forward_t(xs, mode)
    }
}

/// Layers that do the same in training and evaluation are [`Forward`] too.
macro_rules! forward_by_module {
    ($($t:ty),*) => {$(
        impl $crate::Forward for $t {
            fn forward_t(&self, xs: &candle_core::Tensor, _mode: &$crate::Mode) -> candle_core::Result<candle_core::Tensor> {
                candle_core::Module::forward(self, xs)
            }
        }
    )*};
}
pub(crate) use forward_by_module;

/// A model that is a function of its input alone: any candle [`Module`] (or a
/// closure) as a [`Forward`].
#[derive(Debug, Clone)]
pub struct Stateless<M>(pub M);

impl<M: Module> Forward for Stateless<M> {
    fn forward_t(&self, xs: &Tensor, _mode: &Mode) -> Result<Tensor> {
        self.0.forward(xs)
    }
}
