//! `taper-nn`: Taper's layers, activations and losses, shaped like candle-nn.
//!
//! Every layer is built from a `VarBuilder` under PyTorch's parameter names
//! (`fc.weight`, `bn.running_mean`, `rnn.weight_ih_l0_reverse`), so checkpoints
//! load into PyTorch and back, and runs on hand-written CPU kernels
//! ([`kernels`]) with exact gradients where candle's are slow or missing. Layers
//! whose behaviour differs between training and evaluation implement
//! [`Forward`], which takes the pass's [`Mode`]: evaluation, or training with the
//! key of the step's random stream (dropout draws from it), so no hidden state
//! decides a result.
//!
//! - layers: [`linear`], [`conv`] (convolution and transposed convolution),
//!   [`batch_norm`], [`layer_norm`], [`dropout`], [`embedding`], [`rnn`]
//!   (LSTM/GRU, stacked, bidirectional), [`attention`] (additive, Luong,
//!   multi-head, masks);
//! - functions: [`activation`], [`pool`], [`loss`];
//! - [`init`]: seeded, order-independent initialisation; [`gradcheck`]:
//!   finite-difference gradient checks; [`kernels`]: the CPU custom ops, [`Real`]
//!   and [`float_dispatch!`] for writing more.
//!
//! ```
//! use candle_core::{DType, Device, Module, Tensor};
//! use candle_nn::VarMap;
//! use taper_nn::{init::seeded_var_builder, linear, relu, Dropout, Forward, Linear, Mode};
//!
//! struct Mlp { fc1: Linear, drop: Dropout, fc2: Linear }
//!
//! impl Forward for Mlp {
//!     fn forward_t(&self, x: &Tensor, mode: &Mode) -> candle_core::Result<Tensor> {
//!         let h = self.drop.forward_t(&relu(&self.fc1.forward(x)?)?, mode)?;
//!         self.fc2.forward(&h)
//!     }
//! }
//!
//! let varmap = VarMap::new();
//! let vb = seeded_var_builder(&varmap, 42, DType::F32, &Device::Cpu);
//! let mlp = Mlp {
//!     fc1: linear(4, 8, vb.pp("fc1"))?,
//!     drop: Dropout::new(0.1, "drop")?,
//!     fc2: linear(8, 3, vb.pp("fc2"))?,
//! };
//! let x = Tensor::ones((5, 4), DType::F32, &Device::Cpu)?;
//! assert_eq!(mlp.forward_t(&x, &Mode::eval())?.dims(), &[5, 3]);
//! let loss = taper_nn::cross_entropy(&mlp.forward_t(&x, &Mode::train(0))?, &Tensor::new(&[0u32, 1, 2, 0, 1], &Device::Cpu)?)?;
//! assert!(loss.to_scalar::<f32>()? > 0.0);
//! # Ok::<(), candle_core::Error>(())
//! ```

pub mod activation;
pub mod attention;
pub mod batch_norm;
pub mod conv;
pub mod dropout;
pub mod embedding;
pub mod gradcheck;
pub mod init;
pub mod kernels;
pub mod layer_norm;
pub mod linear;
pub mod loss;
pub mod mode;
pub mod pool;
pub mod rnn;

pub use activation::{gelu, leaky_relu, log_softmax, relu, sigmoid, softmax, tanh};
pub use batch_norm::{batch_norm, is_running_stat, BatchNorm, BatchNormConfig};
pub use conv::{
    conv2d, conv2d_no_bias, conv_transpose2d, conv_transpose2d_no_bias, Conv2d, Conv2dConfig,
    ConvTranspose2d,
};
pub use dropout::Dropout;
pub use embedding::{embedding, Embedding};
pub use kernels::Real;
pub use layer_norm::{layer_norm, rms_norm, LayerNorm};
pub use linear::{linear, linear_no_bias, Linear};
pub use loss::{binary_cross_entropy_with_logits, cross_entropy, cross_entropy_smoothed, mse};
pub use mode::{Forward, Mode, Stateless};
pub use pool::max_pool2d;
pub use rnn::{rnn, CellKind, Rnn, RnnConfig, RnnState};

/// candle, re-exported so a user's crate need not match its version by hand.
pub use candle_core as candle;
pub use candle_nn;
