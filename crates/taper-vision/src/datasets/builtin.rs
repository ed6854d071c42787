//! The built-in image data sets by name, split the same way for every example:
//! `digits` (embedded 8x8, a seeded 80/20 split), `mnist` and `fashion-mnist`
//! (their own train and test files under the data root).

use super::{digits, load_digits, load_mnist, Split};
use crate::{Error, Result};
use candle_core::Tensor;
use std::path::Path;
use taper_train::data::{root::require_dir, split_indices};

/// Fashion-MNIST's class names, label order.
pub const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// A built-in data set: images `(N, 1, S, S)` with values in 0..1 and labels
/// `(N,)` (`u32`) of each split.
#[derive(Debug, Clone)]
pub struct Builtin {
    /// Training images.
    pub train_x: Tensor,
    /// Training labels.
    pub train_y: Tensor,
    /// Test images.
    pub test_x: Tensor,
    /// Test labels.
    pub test_y: Tensor,
    /// Image side (8 or 28).
    pub side: usize,
    /// Class names, label order.
    pub classes: Vec<String>,
}

/// The rows `idx` of `t`.
pub fn rows(t: &Tensor, idx: &[usize]) -> Result<Tensor> {
    let i: Vec<u32> = idx.iter().map(|&v| v as u32).collect();
    Ok(t.index_select(&Tensor::new(i, t.device())?, 0)?)
}

/// The built-in data set `name` (`digits`, `mnist`, `fashion-mnist`); MNIST and
/// Fashion-MNIST are read from `data_root` (`data_root/mnist/`, ...), the digits
/// are split 80/20 by `seed`.
///
/// # Errors
/// An unknown name, or a data folder that is missing (the message says how to
/// get it) or unreadable.
pub fn builtin(name: &str, data_root: &Path, seed: u64) -> Result<Builtin> {
    let digit_names = || (0..10).map(|d| d.to_string()).collect();
    Ok(match name {
        "digits" => {
            let (x, y) = load_digits(&digits::default_digits_path())?;
            let (tr, te) = split_indices(x.dim(0)?, 0.2, seed)?;
            Builtin {
                train_x: rows(&x, &tr)?,
                train_y: rows(&y, &tr)?,
                test_x: rows(&x, &te)?,
                test_y: rows(&y, &te)?,
                side: 8,
                classes: digit_names(),
            }
        }
        "mnist" | "fashion-mnist" => {
            let dir = require_dir(data_root, name)?;
            let (train_x, train_y) = load_mnist(&dir, Split::Train)?;
            let (test_x, test_y) = load_mnist(&dir, Split::Test)?;
            let classes = if name == "mnist" {
                digit_names()
            } else {
                FASHION_CLASSES.map(String::from).to_vec()
            };
            Builtin {
                train_x,
                train_y,
                test_x,
                test_y,
                side: 28,
                classes,
            }
        }
        other => {
            return Err(Error::Config(format!(
                "unknown --dataset '{other}' (digits, mnist or fashion-mnist)"
            )))
        }
    })
}

/// Images and labels of one split.
pub type Split2 = (Tensor, Tensor);

impl Builtin {
    /// Keeps the first `n` training images (quick runs); `n` at least 1.
    ///
    /// # Errors
    /// `n` of 0.
    pub fn limit(mut self, n: usize) -> Result<Self> {
        if n == 0 {
            return Err(Error::Config("--limit must be at least 1".into()));
        }
        if n < self.train_x.dim(0)? {
            self.train_x = self.train_x.narrow(0, 0, n)?;
            self.train_y = self.train_y.narrow(0, 0, n)?;
        }
        Ok(self)
    }

    /// The training images split into `(train, valid)`, `fraction` of each
    /// class held out for validation, drawn from `seed`: the test split stays
    /// untouched until the end.
    ///
    /// # Errors
    /// A fraction outside [0, 1), or one that leaves either split empty (too
    /// few images).
    pub fn split_valid(&self, fraction: f64, seed: u64) -> Result<(Split2, Split2)> {
        let labels: Vec<u32> = self.train_y.to_vec1()?;
        let (tr, va) = taper_train::data::stratified_split(&labels, fraction, seed)?;
        if tr.is_empty() || (va.is_empty() && fraction > 0.0) {
            return Err(Error::Data(format!(
                "a validation fraction of {fraction} of {} training images leaves {} to train on and {} to validate on: use more images or another fraction",
                labels.len(),
                tr.len(),
                va.len()
            )));
        }
        Ok((
            (rows(&self.train_x, &tr)?, rows(&self.train_y, &tr)?),
            (rows(&self.train_x, &va)?, rows(&self.train_y, &va)?),
        ))
    }
}
