//! Clip classification: a small CNN encodes each frame, an LSTM or GRU runs over
//! the frame features, and a linear layer classifies the last hidden state.
//! [`FrameClassifier`] is the single-frame baseline (same encoder, last frame only).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use taper_nn::{conv2d, linear, max_pool2d, relu, rnn, Conv2d, Conv2dConfig, Linear};
use taper_nn::{Forward, Mode, Rnn, RnnConfig};

/// Which recurrent cell runs over the frames: `taper-nn`'s LSTM or GRU, the
/// same fused, gradient-checked layers as the sequence models of `taper-nlp`.
pub use taper_nn::CellKind as RnnCell;

/// Shape of a [`VideoClassifier`] / [`FrameClassifier`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VideoConfig {
    /// Channels of each frame.
    pub channels: usize,
    /// Frame height and width (each divisible by 16).
    pub frame_size: (usize, usize),
    /// Channels of the encoder's three convolutions.
    pub conv: (usize, usize, usize),
    /// Length of a frame's feature vector.
    pub feature: usize,
    /// Hidden size of the recurrent cell.
    pub hidden: usize,
    /// The recurrent cell.
    pub cell: RnnCell,
    /// Number of classes.
    pub classes: usize,
}

impl VideoConfig {
    /// For 64x64 grey clips: convolutions of 16, 32, 32 channels, features 128,
    /// an LSTM of 64.
    pub fn moving_digits(classes: usize) -> Self {
        Self {
            channels: 1,
            frame_size: (64, 64),
            conv: (16, 32, 32),
            feature: 128,
            hidden: 64,
            cell: RnnCell::Lstm,
            classes,
        }
    }
}

/// Checks a batch of clips `(N, T, C, H, W)` against the model's frames.
pub fn check_clips(clips: &Tensor, cfg: &VideoConfig) -> Result<(usize, usize)> {
    let (ch, (h, w)) = (cfg.channels, cfg.frame_size);
    match clips.dims() {
        [_, 0, ..] => candle_core::bail!("a clip needs at least one frame, got 0 frames"),
        [n, t, c, fh, fw] if *c == ch && *fh == h && *fw == w => Ok((*n, *t)),
        [_, _, c, fh, fw] => candle_core::bail!(
            "frames are {c}x{fh}x{fw} (channels x height x width), the model expects {ch}x{h}x{w}"
        ),
        d => candle_core::bail!("clips must be (N, frames, {ch}, {h}, {w}), got {d:?}"),
    }
}

/// conv 4x4 stride 4 → ReLU → conv 3x3 → ReLU → pool → conv 3x3 → ReLU →
/// pool → linear → ReLU: a frame `(C, H, W)` to a feature vector.
#[derive(Debug, Clone)]
pub struct FrameEncoder {
    cfg: VideoConfig,
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    fc: Linear,
}

/// Builds a [`FrameEncoder`] under `vb` (`conv1.*`, `conv2.*`, `conv3.*`, `fc.*`).
pub fn frame_encoder(cfg: VideoConfig, vb: VarBuilder) -> Result<FrameEncoder> {
    let (h, w) = cfg.frame_size;
    if h == 0 || w == 0 || h % 16 != 0 || w % 16 != 0 {
        candle_core::bail!(
            "frame size {:?} must be a positive multiple of 16",
            cfg.frame_size
        );
    }
    let (c1, c2, c3) = cfg.conv;
    let same = Conv2dConfig {
        padding: 1,
        stride: 1,
    };
    Ok(FrameEncoder {
        cfg,
        // A 4x4 patch embedding first: the frames are mostly empty canvas, and a
        // 5x5 stride-2 first layer made activations 16 times larger (about 2 s a
        // step on two cores instead of a few hundred ms).
        conv1: conv2d(
            cfg.channels,
            c1,
            4,
            Conv2dConfig {
                padding: 0,
                stride: 4,
            },
            vb.pp("conv1"),
        )?,
        conv2: conv2d(c1, c2, 3, same, vb.pp("conv2"))?,
        conv3: conv2d(c2, c3, 3, same, vb.pp("conv3"))?,
        fc: linear(c3 * (h / 16) * (w / 16), cfg.feature, vb.pp("fc"))?,
    })
}

impl Module for FrameEncoder {
    fn forward(&self, frames: &Tensor) -> Result<Tensor> {
        let (h, w) = self.cfg.frame_size;
        super::check_input(frames, self.cfg.channels, h, w)?;
        let x = relu(&self.conv1.forward(frames)?)?;
        let x = max_pool2d(&relu(&self.conv2.forward(&x)?)?, 2)?;
        let x = max_pool2d(&relu(&self.conv3.forward(&x)?)?, 2)?;
        relu(&self.fc.forward(&x.flatten_from(1)?)?)
    }
}

/// CNN per frame, then an LSTM or GRU over the frames, then a linear classifier
/// of the last hidden state. Input: clips `(N, T, C, H, W)`; output: logits `(N, classes)`.
#[derive(Debug, Clone)]
pub struct VideoClassifier {
    cfg: VideoConfig,
    encoder: FrameEncoder,
    rnn: Rnn,
    head: Linear,
}

/// Builds a [`VideoClassifier`] under `vb` (`encoder.*`, `rnn.weight_ih_l0` and the
/// other PyTorch `nn.LSTM`/`nn.GRU` names, `head.*`).
pub fn video_classifier(cfg: VideoConfig, vb: VarBuilder) -> Result<VideoClassifier> {
    let rnn = rnn(
        RnnConfig {
            cell: cfg.cell,
            input: cfg.feature,
            hidden: cfg.hidden,
            layers: 1,
            bidirectional: false,
            dropout: 0.0,
        },
        vb.pp("rnn"),
    )?;
    Ok(VideoClassifier {
        cfg,
        encoder: frame_encoder(cfg, vb.pp("encoder"))?,
        rnn,
        head: linear(cfg.hidden, cfg.classes, vb.pp("head"))?,
    })
}

impl VideoClassifier {
    /// Its configuration.
    pub fn config(&self) -> &VideoConfig {
        &self.cfg
    }
}

impl Forward for VideoClassifier {
    fn forward_t(&self, clips: &Tensor, mode: &Mode) -> Result<Tensor> {
        let (n, t) = check_clips(clips, &self.cfg)?;
        let (h, w) = self.cfg.frame_size;
        // All frames of all clips through the CNN at once: one large convolution
        // per layer instead of T small ones.
        let frames = clips.reshape((n * t, self.cfg.channels, h, w))?;
        let feats = self
            .encoder
            .forward(&frames)?
            .reshape((n, t, self.cfg.feature))?;
        let (_, mut states) = self.rnn.forward(&feats, None, None, mode)?;
        match states.pop() {
            Some(last) => self.head.forward(&last.h),
            None => candle_core::bail!("the recurrent layer returned no state"),
        }
    }
}

/// The single-frame baseline: the same encoder and a linear classifier on the
/// clip's last frame only. Input: clips `(N, T, C, H, W)`.
#[derive(Debug, Clone)]
pub struct FrameClassifier {
    cfg: VideoConfig,
    encoder: FrameEncoder,
    head: Linear,
}

/// Builds a [`FrameClassifier`] under `vb` (`encoder.*`, `head.*`).
pub fn frame_classifier(cfg: VideoConfig, vb: VarBuilder) -> Result<FrameClassifier> {
    Ok(FrameClassifier {
        cfg,
        encoder: frame_encoder(cfg, vb.pp("encoder"))?,
        head: linear(cfg.feature, cfg.classes, vb.pp("head"))?,
    })
}

impl Forward for FrameClassifier {
    fn forward_t(&self, clips: &Tensor, _mode: &Mode) -> Result<Tensor> {
        let (_, t) = check_clips(clips, &self.cfg)?;
        let last = clips.narrow(1, t - 1, 1)?.squeeze(1)?.contiguous()?;
        self.head.forward(&self.encoder.forward(&last)?)
    }
}
