//! A small residual network of basic blocks (He et al. 2016, CIFAR variant).

use super::check_input;
use super::cnn::ConvBn;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use taper_nn::{batch_norm, BatchNorm, BatchNormConfig, Forward, Mode};
use taper_nn::{conv2d_no_bias, linear, Conv2d, Conv2dConfig, Linear};

/// Shape of a [`ResNet`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResNetConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Input height and width.
    pub image_size: (usize, usize),
    /// Channels of each stage; every stage after the first halves the resolution.
    pub stages: Vec<usize>,
    /// Basic blocks per stage.
    pub blocks_per_stage: usize,
    /// Number of classes.
    pub classes: usize,
}

impl ResNetConfig {
    /// Three stages of 16, 32, 64 channels, two blocks each (a ResNet-14).
    pub fn small(in_channels: usize, image_size: (usize, usize), classes: usize) -> Self {
        Self {
            in_channels,
            image_size,
            stages: vec![16, 32, 64],
            blocks_per_stage: 2,
            classes,
        }
    }
}

/// Two 3x3 conv-bn layers with an identity (or 1x1 projection) shortcut.
#[derive(Debug, Clone)]
pub struct BasicBlock {
    a: ConvBn,
    b: ConvBn,
    shortcut: Option<(Conv2d, BatchNorm)>,
}

impl BasicBlock {
    /// A block from `in_channels` to `out_channels` with the given stride.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (cin, cout) = (in_channels, out_channels);
        let shortcut = if stride != 1 || cin != cout {
            let cfg = Conv2dConfig { padding: 0, stride };
            Some((
                conv2d_no_bias(cin, cout, 1, cfg, vb.pp("shortcut.conv"))?,
                batch_norm(cout, BatchNormConfig::default(), vb.pp("shortcut.bn"))?,
            ))
        } else {
            None
        };
        Ok(Self {
            a: ConvBn::new(cin, cout, stride, vb.pp("a"))?,
            b: ConvBn::new(cout, cout, 1, vb.pp("b"))?,
            shortcut,
        })
    }
}

impl Forward for BasicBlock {
    fn forward_t(&self, xs: &Tensor, mode: &Mode) -> Result<Tensor> {
        let y = self.b.forward_pre(&self.a.forward_t(xs, mode)?, mode)?;
        let s = match &self.shortcut {
            Some((conv, bn)) => bn.forward_t(&conv.forward(xs)?, mode)?,
            None => xs.clone(),
        };
        taper_nn::relu(&(y + s)?)
    }
}

/// stem conv-bn-relu → stages of basic blocks → global average pool → fc.
#[derive(Debug, Clone)]
pub struct ResNet {
    cfg: ResNetConfig,
    stem: ConvBn,
    blocks: Vec<BasicBlock>,
    fc: Linear,
}

impl ResNet {
    /// Builds the network under `vb` (`stem.*`, `stage{s}.block{b}.*`, `fc.*`).
    pub fn new(cfg: ResNetConfig, vb: VarBuilder) -> Result<Self> {
        let first = *cfg
            .stages
            .first()
            .ok_or_else(|| candle_core::Error::Msg("ResNet needs at least one stage".into()))?;
        let stem = ConvBn::new(cfg.in_channels, first, 1, vb.pp("stem"))?;
        let mut blocks = Vec::new();
        let mut cin = first;
        for (s, &c) in cfg.stages.iter().enumerate() {
            for b in 0..cfg.blocks_per_stage {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(
                    cin,
                    c,
                    stride,
                    vb.pp(format!("stage{s}.block{b}")),
                )?);
                cin = c;
            }
        }
        let fc = linear(cin, cfg.classes, vb.pp("fc"))?;
        Ok(Self {
            cfg,
            stem,
            blocks,
            fc,
        })
    }
}

impl Forward for ResNet {
    fn forward_t(&self, xs: &Tensor, mode: &Mode) -> Result<Tensor> {
        let (h, w) = self.cfg.image_size;
        check_input(xs, self.cfg.in_channels, h, w)?;
        let mut xs = self.stem.forward_t(xs, mode)?;
        for b in &self.blocks {
            xs = b.forward_t(&xs, mode)?;
        }
        self.fc.forward(&xs.mean(3)?.mean(2)?)
    }
}
