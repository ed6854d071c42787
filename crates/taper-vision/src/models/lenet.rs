//! The seed's convolutional network: (convolution, ReLU, max-pool) twice, then
//! fully connected layers.

use super::{check_input, conv_out};
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use taper_nn::max_pool2d;
use taper_nn::Dropout;
use taper_nn::{conv2d, Conv2d, Conv2dConfig};
use taper_nn::{linear, Linear};
use taper_nn::{Forward, Mode};

/// Shape of a [`LeNet`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LeNetConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Input height and width.
    pub image_size: (usize, usize),
    /// Channels of the two convolutions.
    pub channels: (usize, usize),
    /// Kernel side of both convolutions.
    pub kernel: usize,
    /// Zero padding of both convolutions.
    pub padding: usize,
    /// Width of the hidden fully connected layer.
    pub hidden: usize,
    /// Number of classes.
    pub classes: usize,
    /// Dropout before the last layer.
    pub dropout: f32,
}

impl LeNetConfig {
    /// For 28x28 grey digits: 5x5 convolutions of 32 and 64 channels, 128 hidden.
    pub fn mnist() -> Self {
        Self {
            in_channels: 1,
            image_size: (28, 28),
            channels: (32, 64),
            kernel: 5,
            padding: 0,
            hidden: 128,
            classes: 10,
            dropout: 0.25,
        }
    }

    /// For the embedded 8x8 digits: 3x3 convolutions with padding.
    pub fn digits() -> Self {
        Self {
            image_size: (8, 8),
            kernel: 3,
            padding: 1,
            ..Self::mnist()
        }
    }
}

/// conv1 → ReLU → pool → conv2 → ReLU → pool → fc1 → ReLU → dropout → fc2.
#[derive(Debug, Clone)]
pub struct LeNet {
    cfg: LeNetConfig,
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
    dropout: Dropout,
}

impl LeNet {
    /// Builds the network; weights `conv1.*`, `conv2.*`, `fc1.*`, `fc2.*` under `vb`.
    pub fn new(cfg: LeNetConfig, vb: VarBuilder) -> Result<Self> {
        let cc = Conv2dConfig {
            padding: cfg.padding,
            ..Default::default()
        };
        let (mut h, mut w) = cfg.image_size;
        for _ in 0..2 {
            h = conv_out(h, cfg.kernel, cfg.padding, 1)? / 2;
            w = conv_out(w, cfg.kernel, cfg.padding, 1)? / 2;
        }
        if h == 0 || w == 0 {
            candle_core::bail!(
                "LeNet: input {:?} is too small for two conv+pool blocks",
                cfg.image_size
            );
        }
        Ok(Self {
            cfg,
            conv1: conv2d(
                cfg.in_channels,
                cfg.channels.0,
                cfg.kernel,
                cc,
                vb.pp("conv1"),
            )?,
            conv2: conv2d(
                cfg.channels.0,
                cfg.channels.1,
                cfg.kernel,
                cc,
                vb.pp("conv2"),
            )?,
            fc1: linear(cfg.channels.1 * h * w, cfg.hidden, vb.pp("fc1"))?,
            fc2: linear(cfg.hidden, cfg.classes, vb.pp("fc2"))?,
            dropout: Dropout::new(cfg.dropout, &format!("{}.dropout", vb.prefix()))?,
        })
    }

    /// Its configuration.
    pub fn config(&self) -> &LeNetConfig {
        &self.cfg
    }
}

impl LeNet {
    /// The penultimate layer: `fc1` after ReLU, `(N, hidden)` (the features a
    /// Fréchet distance compares).
    pub fn features(&self, xs: &Tensor) -> Result<Tensor> {
        let (h, w) = self.cfg.image_size;
        check_input(xs, self.cfg.in_channels, h, w)?;
        let xs = max_pool2d(&self.conv1.forward(xs)?.apply(&taper_nn::relu)?, 2)?;
        let xs = max_pool2d(&self.conv2.forward(&xs)?.apply(&taper_nn::relu)?, 2)?;
        self.fc1
            .forward(&xs.flatten_from(1)?)?
            .apply(&taper_nn::relu)
    }

    /// Logits from [`LeNet::features`] (evaluation mode: no dropout).
    pub fn logits_from_features(&self, features: &Tensor) -> Result<Tensor> {
        self.fc2.forward(features)
    }
}

impl Forward for LeNet {
    fn forward_t(&self, xs: &Tensor, mode: &Mode) -> Result<Tensor> {
        let xs = self.features(xs)?;
        self.fc2.forward(&self.dropout.forward_t(&xs, mode)?)
    }
}

/// The split Grad-CAM needs (`taper_train::explain::grad_cam`): the last
/// convolutional layer's activations, and the rest of the network from them.
impl LeNet {
    /// `conv2` after ReLU, before its pooling: `(N, channels.1, h, w)`.
    pub fn conv_features(&self, xs: &Tensor) -> Result<Tensor> {
        let (h, w) = self.cfg.image_size;
        check_input(xs, self.cfg.in_channels, h, w)?;
        let xs = max_pool2d(&self.conv1.forward(xs)?.apply(&taper_nn::relu)?, 2)?;
        self.conv2.forward(&xs)?.apply(&taper_nn::relu)
    }

    /// Logits from [`LeNet::conv_features`] (evaluation mode: no dropout).
    pub fn head_from_conv(&self, conv: &Tensor) -> Result<Tensor> {
        let xs = max_pool2d(conv, 2)?;
        let xs = self
            .fc1
            .forward(&xs.flatten_from(1)?)?
            .apply(&taper_nn::relu)?;
        self.fc2.forward(&xs)
    }
}
