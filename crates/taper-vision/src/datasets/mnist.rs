//! MNIST and Fashion-MNIST from their four standard IDX files.

use super::idx::read_idx;
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use std::path::Path;

/// Which half of the data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The 60,000 training images.
    Train,
    /// The 10,000 test images.
    Test,
}

fn find(dir: &Path, stem: &str) -> Result<std::path::PathBuf> {
    for name in [format!("{stem}.gz"), stem.to_string()] {
        let p = dir.join(&name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::DataMissing(format!(
        "missing {stem}(.gz) in {} (run `make data` to download MNIST / Fashion-MNIST)",
        dir.display()
    )))
}

/// Loads a split from `dir` (`mnist/` or `fashion-mnist/` under the data root):
/// images as f32 `(N, 1, 28, 28)` scaled to 0..1, labels as u32 `(N,)`, on the CPU.
pub fn load_mnist(dir: &Path, split: Split) -> Result<(Tensor, Tensor)> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let ip = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let lp = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let images = read_idx(&ip)?;
    let labels = read_idx(&lp)?;
    if images.dims.len() != 3 {
        return Err(Error::Data(format!(
            "{}: expected 3 dimensions (N, rows, cols), found {:?}",
            ip.display(),
            images.dims
        )));
    }
    if labels.dims.len() != 1 || labels.dims[0] != images.dims[0] {
        return Err(Error::Data(format!(
            "{}: {:?} labels for {} images",
            lp.display(),
            labels.dims,
            images.dims[0]
        )));
    }
    if let Some(bad) = labels.data.iter().position(|&l| l > 9) {
        return Err(Error::Data(format!(
            "{}: label {} at index {bad} is not a digit class 0..9",
            lp.display(),
            labels.data[bad]
        )));
    }
    let (n, h, w) = (images.dims[0], images.dims[1], images.dims[2]);
    let px: Vec<f32> = images.data.iter().map(|&b| b as f32 / 255.0).collect();
    let x = Tensor::from_vec(px, (n, 1, h, w), &Device::Cpu)?;
    let y: Vec<u32> = labels.data.iter().map(|&b| b as u32).collect();
    let y = Tensor::from_vec(y, n, &Device::Cpu)?;
    Ok((x, y))
}
