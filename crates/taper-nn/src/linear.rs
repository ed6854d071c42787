//! Linear (fully connected) layers on the fused CPU kernel.
//!
//! ```
//! use candle_core::{DType, Device, Module, Tensor};
//! use candle_nn::VarMap;
//! use taper_nn::{init::seeded_var_builder, linear};
//!
//! let varmap = VarMap::new();
//! let fc = linear(784, 10, seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu).pp("fc"))?;
//! let x = Tensor::zeros((32, 784), DType::F32, &Device::Cpu)?;
//! assert_eq!(fc.forward(&x)?.dims(), &[32, 10]);
//! // Any leading dimensions: (batch, time, features) works too.
//! let seq = Tensor::zeros((4, 7, 784), DType::F32, &Device::Cpu)?;
//! assert_eq!(fc.forward(&seq)?.dims(), &[4, 7, 10]);
//! # Ok::<(), candle_core::Error>(())
//! ```

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// A linear layer `x·Wᵀ + b` over the last dimension of any input (leading
/// dimensions flatten into one matrix product), weights `weight (out_dim, in_dim)`
/// and optional `bias (out_dim,)` (PyTorch's names), on the fused op of
/// [`crate::kernels::linear`] on the CPU.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// From explicit tensors: `weight (out_dim, in_dim)`, `bias (out_dim,)`.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// The weight `(out_dim, in_dim)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The same layer with its parameters detached from autodiff (sharing their
    /// storage): gradients still flow to its input, but none are computed for
    /// its weight and bias.
    pub fn detached(&self) -> Self {
        Self {
            weight: self.weight.detach(),
            bias: self.bias.as_ref().map(Tensor::detach),
        }
    }
}

impl Module for Linear {
    /// `(…, in_dim)` → `(…, out_dim)`.
    ///
    /// # Errors
    /// An input whose last dimension is not `in_dim` (the message names both).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::kernels::linear::linear(x, &self.weight, self.bias.as_ref())
    }
}

crate::mode::forward_by_module!(Linear);

/// PyTorch's `nn.Linear` initialisation: weight and bias uniform in
/// ±1/√in_dim (kaiming-uniform with a = √5).
fn linear_init(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    let b = 1.0 / (in_dim as f64).sqrt();
    let init = Init::Uniform { lo: -b, up: b };
    let w = vb.get_with_hints((out_dim, in_dim), "weight", init)?;
    let bias = if bias {
        Some(vb.get_with_hints(out_dim, "bias", init)?)
    } else {
        None
    };
    Ok(Linear::new(w, bias))
}

/// A linear layer from `in_dim` to `out_dim` features, initialised like PyTorch's
/// `nn.Linear`; variables `weight` and `bias` under `vb`.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    linear_init(in_dim, out_dim, true, vb)
}

/// [`linear`] without bias.
pub fn linear_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    linear_init(in_dim, out_dim, false, vb)
}
