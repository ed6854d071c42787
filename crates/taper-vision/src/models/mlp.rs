//! The seed's multi-layer perceptron.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use taper_nn::Dropout;
use taper_nn::{linear, Linear};
use taper_nn::{Forward, Mode};

/// Shape of an [`Mlp`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MlpConfig {
    /// Input features (an image `(C, H, W)` is flattened to `C·H·W`).
    pub in_dim: usize,
    /// Width of the first hidden layer.
    pub hidden1: usize,
    /// Width of the second hidden layer.
    pub hidden2: usize,
    /// Number of classes (outputs).
    pub classes: usize,
    /// Dropout after each hidden layer.
    pub dropout: f32,
}

/// The seed's multi-layer perceptron: input, hidden layers `h1`, `h2`, output
/// logits; ReLU between layers and optional dropout.
#[derive(Debug, Clone)]
pub struct Mlp {
    h1: Linear,
    h2: Linear,
    out: Linear,
    dropout: Dropout,
}

impl Mlp {
    /// An MLP of shape `cfg` (see [`Mlp::new`]).
    pub fn from_config(cfg: MlpConfig, vb: VarBuilder) -> Result<Self> {
        Self::new(
            cfg.in_dim,
            cfg.hidden1,
            cfg.hidden2,
            cfg.classes,
            cfg.dropout,
            vb,
        )
    }

    /// An MLP `in_dim -> hidden1 -> hidden2 -> out_dim`, weights named
    /// `h1.weight`, `h1.bias`, `h2.*`, `out.*` under `vb`.
    pub fn new(
        in_dim: usize,
        hidden1: usize,
        hidden2: usize,
        out_dim: usize,
        dropout: f32,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            h1: linear(in_dim, hidden1, vb.pp("h1"))?,
            h2: linear(hidden1, hidden2, vb.pp("h2"))?,
            out: linear(hidden2, out_dim, vb.pp("out"))?,
            dropout: Dropout::new(dropout, "mlp.dropout")?,
        })
    }
}

impl Forward for Mlp {
    fn forward_t(&self, xs: &Tensor, mode: &Mode) -> Result<Tensor> {
        let xs = xs.flatten_from(1)?;
        let xs = self.h1.forward(&xs)?.apply(&taper_nn::relu)?;
        let xs = self.dropout.forward_t(&xs, mode)?;
        let xs = self.h2.forward(&xs)?.apply(&taper_nn::relu)?;
        let xs = self.dropout.forward_t(&xs, mode)?;
        self.out.forward(&xs)
    }
}
