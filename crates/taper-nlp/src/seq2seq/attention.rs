//! Which attention a recurrent decoder uses. The modules themselves (additive,
//! Luong, multi-head; padding and causal masks) are `taper-nn`'s
//! [`taper_nn::attention`], re-exported here.

use crate::{Error, Result};
use candle_nn::VarBuilder;
pub use taper_nn::attention::*;
/// The linear layer of every model here: `taper-nn`'s fused one (leading
/// dimensions flatten into one product).
pub use taper_nn::{linear, linear_no_bias, Linear};

/// Which attention an RNN decoder uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKind {
    /// [`AdditiveAttention`].
    Additive,
    /// [`LuongAttention`] with [`LuongScore::Dot`].
    Dot,
    /// [`LuongAttention`] with [`LuongScore::General`].
    General,
    /// [`MultiHeadAttention`] with this many heads.
    MultiHead(usize),
}

impl std::str::FromStr for AttentionKind {
    type Err = Error;
    /// `additive` (or `bahdanau`), `dot`, `general`, `mha` (4 heads).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "additive" | "bahdanau" => Ok(Self::Additive),
            "dot" => Ok(Self::Dot),
            "general" => Ok(Self::General),
            "mha" => Ok(Self::MultiHead(4)),
            o => Err(Error::Config(format!(
                "unknown attention '{o}' (additive, dot, general or mha)"
            ))),
        }
    }
}

/// Builds the attention of `kind` over queries and keys of `dim` features.
///
/// # Errors
/// A head count that does not divide `dim`; variables that cannot be made.
pub fn build(kind: AttentionKind, dim: usize, vb: VarBuilder) -> Result<Box<dyn Attention>> {
    Ok(match kind {
        AttentionKind::Additive => Box::new(additive(dim, dim, dim, vb)?),
        AttentionKind::Dot => Box::new(luong(LuongScore::Dot, dim, dim, vb)?),
        AttentionKind::General => Box::new(luong(LuongScore::General, dim, dim, vb)?),
        AttentionKind::MultiHead(h) => Box::new(multi_head(dim, h, vb)?),
    })
}
