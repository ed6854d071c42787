//! Token embeddings.
//!
//! ```
//! use candle_core::{DType, Device, Module, Tensor};
//! use candle_nn::VarMap;
//! use taper_nn::{embedding, init::seeded_var_builder};
//!
//! let varmap = VarMap::new();
//! let emb = embedding(100, 16, seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu).pp("emb"))?;
//! let ids = Tensor::new(&[[1u32, 5, 99], [0, 0, 7]], &Device::Cpu)?;
//! assert_eq!(emb.forward(&ids)?.dims(), &[2, 3, 16]);
//! # Ok::<(), candle_core::Error>(())
//! ```

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// A lookup table `weight (vocab, dim)`: ids `(…)` (`u32`) → vectors `(…, dim)`.
#[derive(Debug, Clone)]
pub struct Embedding {
    weight: Tensor,
    dim: usize,
}

impl Embedding {
    /// From an explicit table `(vocab, dim)`.
    pub fn new(weight: Tensor, dim: usize) -> Self {
        Self { weight, dim }
    }

    /// The table `(vocab, dim)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl Module for Embedding {
    /// # Errors
    /// An id at or past the vocabulary size (candle's index error names it).
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let mut shape = ids.dims().to_vec();
        shape.push(self.dim);
        self.weight
            .index_select(&ids.flatten_all()?, 0)?
            .reshape(shape)
    }
}

crate::mode::forward_by_module!(Embedding);

/// An [`Embedding`] of `vocab` ids to `dim` values, drawn from N(0, 1) as
/// PyTorch's `nn.Embedding`; variable `weight` under `vb`.
pub fn embedding(vocab: usize, dim: usize, vb: VarBuilder) -> Result<Embedding> {
    let w = vb.get_with_hints(
        (vocab, dim),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
    )?;
    Ok(Embedding::new(w, dim))
}
