//! The CIFAR-10 binary format: records of one label byte then 3072 pixel bytes
//! (1024 red, 1024 green, 1024 blue, row-major 32x32).

use crate::{Error, Result};
use candle_core::{Device, Tensor};
use std::path::Path;

const RECORD: usize = 1 + 3 * 32 * 32;

/// Reads one CIFAR-10 binary file: images f32 `(N, 3, 32, 32)` in 0..1, labels u32 `(N,)`.
pub fn read_cifar_file(path: &Path) -> Result<(Tensor, Tensor)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(Error::Data(format!(
            "{}: {} bytes is not a whole number of {RECORD}-byte CIFAR-10 records",
            path.display(),
            bytes.len()
        )));
    }
    let n = bytes.len() / RECORD;
    let mut labels = Vec::with_capacity(n);
    let mut px = Vec::with_capacity(n * (RECORD - 1));
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if rec[0] > 9 {
            return Err(Error::Data(format!(
                "{}: record {i} has label {} (CIFAR-10 has 0..9)",
                path.display(),
                rec[0]
            )));
        }
        labels.push(rec[0] as u32);
        px.extend(rec[1..].iter().map(|&b| b as f32 / 255.0));
    }
    Ok((
        Tensor::from_vec(px, (n, 3, 32, 32), &Device::Cpu)?,
        Tensor::from_vec(labels, n, &Device::Cpu)?,
    ))
}

/// Loads the training (`data_batch_1..5.bin`) or test (`test_batch.bin`) split from `dir`.
pub fn load_cifar10(dir: &Path, train: bool) -> Result<(Tensor, Tensor)> {
    let names: Vec<String> = if train {
        (1..=5).map(|i| format!("data_batch_{i}.bin")).collect()
    } else {
        vec!["test_batch.bin".into()]
    };
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for n in names {
        let p = dir.join(&n);
        if !p.is_file() {
            return Err(Error::DataMissing(format!(
                "missing CIFAR-10 file {}",
                p.display()
            )));
        }
        let (x, y) = read_cifar_file(&p)?;
        xs.push(x);
        ys.push(y);
    }
    Ok((Tensor::cat(&xs, 0)?, Tensor::cat(&ys, 0)?))
}
