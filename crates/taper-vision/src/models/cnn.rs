//! A deeper CNN with batch normalisation and dropout.

use super::check_input;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use taper_nn::{batch_norm, BatchNorm, BatchNormConfig, Dropout, Forward, Mode};
use taper_nn::{conv2d_no_bias, linear, max_pool2d, Conv2d, Conv2dConfig, Linear};

/// Shape of a [`Cnn`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CnnConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Input height and width (each divisible by 4).
    pub image_size: (usize, usize),
    /// Channels of the first and second stage.
    pub channels: (usize, usize),
    /// Width of the hidden fully connected layer.
    pub hidden: usize,
    /// Number of classes.
    pub classes: usize,
    /// Dropout after the convolutions and before the last layer.
    pub dropout: f32,
}

impl CnnConfig {
    /// For 28x28 grey images.
    pub fn mnist() -> Self {
        Self {
            in_channels: 1,
            image_size: (28, 28),
            channels: (32, 64),
            hidden: 256,
            classes: 10,
            dropout: 0.3,
        }
    }
    /// For the embedded 8x8 digits.
    pub fn digits() -> Self {
        Self {
            image_size: (8, 8),
            hidden: 128,
            ..Self::mnist()
        }
    }
}

/// A 3x3 convolution without bias followed by batch norm and ReLU, on Taper's
/// CPU kernels (im2col convolution, one-pass batch norm).
#[derive(Debug, Clone)]
pub struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
}

impl ConvBn {
    /// `conv.weight` and `bn.{weight,bias,running_mean,running_var}` under `vb`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let cfg = Conv2dConfig { padding: 1, stride };
        Ok(Self {
            conv: conv2d_no_bias(in_channels, out_channels, 3, cfg, vb.pp("conv"))?,
            bn: batch_norm(out_channels, BatchNormConfig::default(), vb.pp("bn"))?,
        })
    }

    /// Convolution and batch norm, without the activation.
    pub fn forward_pre(&self, xs: &Tensor, mode: &Mode) -> Result<Tensor> {
        self.bn.forward_t(&self.conv.forward(xs)?, mode)
    }
}

impl Forward for ConvBn {
    fn forward_t(&self, xs: &Tensor, mode: &Mode) -> Result<Tensor> {
        self.bn.forward_relu_t(&self.conv.forward(xs)?, mode)
    }
}

/// [conv-bn-relu ×2, max-pool] ×2 → dropout → fc → ReLU → dropout → fc.
#[derive(Debug, Clone)]
pub struct Cnn {
    cfg: CnnConfig,
    blocks: Vec<ConvBn>,
    fc1: Linear,
    fc2: Linear,
    drop_conv: Dropout,
    drop_fc: Dropout,
}

impl Cnn {
    /// Builds the network under `vb` (`block{i}.conv.weight`, `block{i}.bn.*`, `fc1.*`, `fc2.*`).
    pub fn new(cfg: CnnConfig, vb: VarBuilder) -> Result<Self> {
        let (h, w) = cfg.image_size;
        if h % 4 != 0 || w % 4 != 0 || h == 0 || w == 0 {
            candle_core::bail!(
                "Cnn: image size {:?} must be divisible by 4",
                cfg.image_size
            );
        }
        let (c1, c2) = cfg.channels;
        let io = [(cfg.in_channels, c1), (c1, c1), (c1, c2), (c2, c2)];
        let blocks = io
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| ConvBn::new(a, b, 1, vb.pp(format!("block{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let p = vb.prefix();
        Ok(Self {
            cfg,
            blocks,
            fc1: linear(c2 * (h / 4) * (w / 4), cfg.hidden, vb.pp("fc1"))?,
            fc2: linear(cfg.hidden, cfg.classes, vb.pp("fc2"))?,
            drop_conv: Dropout::new(cfg.dropout / 2.0, &format!("{p}.drop_conv"))?,
            drop_fc: Dropout::new(cfg.dropout, &format!("{p}.drop_fc"))?,
        })
    }
}

impl Forward for Cnn {
    fn forward_t(&self, xs: &Tensor, mode: &Mode) -> Result<Tensor> {
        let (h, w) = self.cfg.image_size;
        check_input(xs, self.cfg.in_channels, h, w)?;
        let mut xs = xs.clone();
        for (i, b) in self.blocks.iter().enumerate() {
            xs = b.forward_t(&xs, mode)?;
            if i % 2 == 1 {
                xs = max_pool2d(&xs, 2)?;
            }
        }
        let xs = self.drop_conv.forward_t(&xs, mode)?.flatten_from(1)?;
        let xs = self.fc1.forward(&xs)?.apply(&taper_nn::relu)?;
        self.fc2.forward(&self.drop_fc.forward_t(&xs, mode)?)
    }
}
