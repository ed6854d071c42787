//! The embedded 8x8 hand-written digits (UCI, via scikit-learn; see `assets/README.md`).

use crate::{Error, Result};
use candle_core::{Device, Tensor};
use flate2::read::MultiGzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The copy shipped in the repository's `assets/`.
pub fn default_digits_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/digits.csv.gz")
}

/// Loads `digits.csv.gz` (rows of 64 pixel values 0..16, then the label): images as
/// f32 `(N, 1, 8, 8)` scaled to 0..1 and labels u32 `(N,)`, on the CPU.
pub fn load_digits(path: &Path) -> Result<(Tensor, Tensor)> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut text = String::new();
    let read = if raw.starts_with(&[0x1f, 0x8b]) {
        MultiGzDecoder::new(&raw[..])
            .read_to_string(&mut text)
            .map(|_| ())
    } else {
        String::from_utf8(raw)
            .map(|s| text = s)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    };
    read.map_err(|e| Error::Data(format!("{}: cannot decode: {e}", path.display())))?;
    let mut px = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let vals: Vec<&str> = line.split(',').collect();
        if vals.len() != 65 {
            return Err(Error::Data(format!(
                "{} line {}: expected 65 values (64 pixels and a label), found {}",
                path.display(),
                i + 1,
                vals.len()
            )));
        }
        for (j, v) in vals.iter().enumerate() {
            let x: f32 = v.trim().parse().map_err(|_| {
                Error::Data(format!(
                    "{} line {}, column {}: '{v}' is not a number",
                    path.display(),
                    i + 1,
                    j + 1
                ))
            })?;
            if !(0.0..=16.0).contains(&x) || (j == 64 && (x > 9.0 || x.fract() != 0.0)) {
                return Err(Error::Data(format!(
                    "{} line {}, column {}: value {x} out of range",
                    path.display(),
                    i + 1,
                    j + 1
                )));
            }
            if j < 64 {
                px.push(x / 16.0);
            } else {
                labels.push(x as u32);
            }
        }
    }
    let n = labels.len();
    if n == 0 {
        return Err(Error::Data(format!("{}: no rows", path.display())));
    }
    Ok((
        Tensor::from_vec(px, (n, 1, 8, 8), &Device::Cpu)?,
        Tensor::from_vec(labels, n, &Device::Cpu)?,
    ))
}
