//! Vision models, each built from a `VarBuilder` (so weights save and load through
//! `taper-train` checkpoints under PyTorch-style names) on `taper-nn`'s layers,
//! and run with [`taper_nn::Forward`] (the [`taper_nn::Mode`] switches dropout and
//! batch norm, and carries the step's random stream).

pub mod cnn;
pub mod dcgan;
pub mod lenet;
pub mod mlp;
pub mod resnet;
pub mod video;

pub use cnn::{Cnn, CnnConfig};
pub use dcgan::{Dcgan, DcganConfig, Discriminator, GanOptimConfig, Generator};
pub use lenet::{LeNet, LeNetConfig};
pub use mlp::{Mlp, MlpConfig};
pub use resnet::{ResNet, ResNetConfig};
pub use video::{FrameClassifier, RnnCell, VideoClassifier, VideoConfig};

use candle_core::{Result, Tensor};

/// Output side of a convolution (PyTorch's formula).
pub fn conv_out(size: usize, kernel: usize, padding: usize, stride: usize) -> Result<usize> {
    let padded = size + 2 * padding;
    if padded < kernel || stride == 0 {
        candle_core::bail!(
            "a {kernel}x{kernel} kernel does not fit a side of {size} with padding {padding}"
        );
    }
    Ok((padded - kernel) / stride + 1)
}

/// Checks that a batch is `(N, channels, height, width)` before the first layer, so
/// a mismatch names the expected image shape rather than a matmul.
pub fn check_input(xs: &Tensor, channels: usize, height: usize, width: usize) -> Result<()> {
    match xs.dims() {
        [_, c, h, w] if *c == channels && *h == height && *w == width => Ok(()),
        d => {
            candle_core::bail!("model expects images (N, {channels}, {height}, {width}), got {d:?}")
        }
    }
}
