//! Batch normalisation (Ioffe and Szegedy 2015), optionally fused with the ReLU
//! that follows it.
//!
//! In training the batch's statistics normalise and the running ones move by
//! `momentum`; in evaluation the running ones normalise. The running statistics
//! are buffers, not parameters: they live in the `VarBuilder`'s map (so
//! checkpoints hold them, under PyTorch's names `running_mean` and
//! `running_var`) but no optimizer updates them ([`is_running_stat`]).
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::VarMap;
//! use taper_nn::{batch_norm, init::seeded_var_builder, BatchNormConfig, Forward, Mode};
//!
//! let varmap = VarMap::new();
//! let vb = seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu);
//! let bn = batch_norm(3, BatchNormConfig::default(), vb.pp("bn"))?;
//! let x = Tensor::randn(2f32, 1.0, (8, 3, 4, 4), &Device::Cpu)?;
//! assert_eq!(bn.forward_t(&x, &Mode::train(0))?.dims(), &[8, 3, 4, 4]);
//! // Training moved the running mean from 0 towards the batch's mean (about 2).
//! let rm = varmap.data().lock().unwrap()["bn.running_mean"].as_tensor().to_vec1::<f32>()?;
//! assert!(rm.iter().all(|&m| m > 0.1));
//! # Ok::<(), candle_core::Error>(())
//! ```

use crate::kernels::batch_norm::{BnTrain, ChannelAffine};
use crate::{Forward, Mode};
use candle_core::{DType, Result, Tensor, Var, D};
use candle_nn::{Init, VarBuilder};

/// Batch normalisation over `(N, C, ...)` (statistics per channel `C`): fused CPU
/// kernels in f32/f64, differentiable candle ops elsewhere.
///
/// Weights `weight`, `bias`, `running_mean`, `running_var` (PyTorch's names). In
/// training the batch statistics normalise and the running ones move by
/// `momentum`; in evaluation the running ones normalise.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    momentum: f64,
    eps: f64,
}

impl BatchNorm {
    /// The number of channels.
    pub fn channels(&self) -> usize {
        self.weight.dim(0).unwrap_or(0)
    }

    /// The same layer with its scale and shift detached from autodiff (sharing
    /// their storage): gradients still flow to its input, but none are kept for
    /// its parameters. The running statistics are the same variables, so
    /// training-mode passes still update them.
    pub fn detached(&self) -> Self {
        Self {
            weight: self.weight.detach(),
            bias: self.bias.detach(),
            ..self.clone()
        }
    }

    /// `relu(forward_t(xs))`, fused into the batch norm's passes on the CPU.
    pub fn forward_relu_t(&self, xs: &Tensor, mode: &Mode) -> Result<Tensor> {
        self.forward_impl(xs, mode.is_train(), true)
    }

    fn forward_impl(&self, xs: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        let c = self.channels();
        if xs.rank() < 2 || xs.dim(1)? != c {
            candle_core::bail!(
                "batch norm over {c} channels got input of shape {:?}",
                xs.dims()
            );
        }
        let m = xs.elem_count() / c.max(1);
        if train && m < 2 {
            candle_core::bail!(
                "batch norm in training needs more than one value per channel, got input {:?}",
                xs.dims()
            );
        }
        if train && xs.device().is_cpu() && matches!(xs.dtype(), DType::F32 | DType::F64) {
            let op = BnTrain::new(self.eps, relu);
            let y = xs
                .contiguous()?
                .apply_op3(&self.weight, &self.bias, op.clone())?;
            let (mean, var) = op.batch_stats()?;
            let (dev, dt) = (xs.device(), self.running_mean.dtype());
            self.update_running(
                &Tensor::from_vec(mean, c, dev)?.to_dtype(dt)?,
                &Tensor::from_vec(var, c, dev)?.to_dtype(dt)?,
                m,
            )?;
            return Ok(y);
        }
        if !train && xs.device().is_cpu() && matches!(xs.dtype(), DType::F32 | DType::F64) {
            // Evaluation is one per-channel affine map: fold the running statistics
            // into a scale and a shift (two vectors of C), then a single pass.
            let dt = xs.dtype();
            let rm = self.running_mean.as_tensor().to_dtype(dt)?;
            let rv = self.running_var.as_tensor().to_dtype(dt)?;
            let scale = self.weight.broadcast_div(&(rv + self.eps)?.sqrt()?)?;
            let shift = (&self.bias - (&scale * rm)?)?;
            let y = xs.contiguous()?.apply_op3(&scale, &shift, ChannelAffine)?;
            return if relu { crate::relu(&y) } else { Ok(y) };
        }
        let mut shape = vec![1usize; xs.rank()];
        shape[1] = c;
        let (mean, var) = if train {
            // Channels first, everything else flattened: one reduction per channel.
            let flat = xs.transpose(0, 1)?.contiguous()?.reshape((c, ()))?;
            let mean = flat.mean_keepdim(D::Minus1)?;
            let var = flat.broadcast_sub(&mean)?.sqr()?.mean_keepdim(D::Minus1)?;
            self.update_running(&mean.flatten_all()?, &var.flatten_all()?, m)?;
            (mean.reshape(shape.clone())?, var.reshape(shape.clone())?)
        } else {
            (
                self.running_mean.as_tensor().reshape(shape.clone())?,
                self.running_var.as_tensor().reshape(shape.clone())?,
            )
        };
        let normed = xs
            .broadcast_sub(&mean)?
            .broadcast_div(&(var + self.eps)?.sqrt()?)?;
        let y = normed
            .broadcast_mul(&self.weight.reshape(shape.clone())?)?
            .broadcast_add(&self.bias.reshape(shape)?)?;
        if relu {
            crate::relu(&y)
        } else {
            Ok(y)
        }
    }

    /// Moves the running statistics towards a batch's (biased variance `var` over
    /// `m` values per channel; the running variance is unbiased, as PyTorch's).
    fn update_running(&self, mean: &Tensor, var: &Tensor, m: usize) -> Result<()> {
        let mo = self.momentum;
        let unbiased = (var.detach() * (m as f64 / (m - 1) as f64))?;
        let rm = ((self.running_mean.as_tensor() * (1.0 - mo))? + (mean.detach() * mo)?)?;
        let rv = ((self.running_var.as_tensor() * (1.0 - mo))? + (unbiased * mo)?)?;
        self.running_mean
            .set(&rm.to_dtype(self.running_mean.dtype())?)?;
        self.running_var
            .set(&rv.to_dtype(self.running_var.dtype())?)
    }
}

impl Forward for BatchNorm {
    /// Normalises `xs (N, C, ...)`: batch statistics in training (and the running
    /// ones move), running statistics in evaluation.
    fn forward_t(&self, xs: &Tensor, mode: &Mode) -> Result<Tensor> {
        self.forward_impl(xs, mode.is_train(), false)
    }
}

/// Settings of a [`BatchNorm`]; the default is PyTorch's (momentum 0.1, epsilon
/// 1e-5, scale 1).
#[derive(Debug, Clone, Copy)]
pub struct BatchNormConfig {
    /// Added to the variance before the square root.
    pub eps: f64,
    /// Weight of the batch in the running statistics' update.
    pub momentum: f64,
    /// Initialisation of the scale (`weight`); the shift starts at 0.
    pub weight_init: Init,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        Self {
            eps: 1e-5,
            momentum: 0.1,
            weight_init: Init::Const(1.0),
        }
    }
}

/// A [`BatchNorm`] of `channels`: variables `weight`, `bias`, `running_mean`
/// (zeros) and `running_var` (ones) under `vb`.
pub fn batch_norm(channels: usize, cfg: BatchNormConfig, vb: VarBuilder) -> Result<BatchNorm> {
    let weight = vb.get_with_hints(channels, "weight", cfg.weight_init)?;
    let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
    let running_mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?;
    let running_var = vb.get_with_hints(channels, "running_var", Init::Const(1.0))?;
    Ok(BatchNorm {
        weight,
        bias,
        running_mean: Var::from_tensor(&running_mean)?,
        running_var: Var::from_tensor(&running_var)?,
        momentum: cfg.momentum,
        eps: cfg.eps,
    })
}

/// True for the names of batch-norm running statistics, which no optimizer updates.
pub fn is_running_stat(name: &str) -> bool {
    name.ends_with(".running_mean") || name.ends_with(".running_var")
}
