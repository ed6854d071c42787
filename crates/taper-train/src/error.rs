//! The error type of `taper-train`.

use std::path::PathBuf;

/// Errors raised by the trainer, the data pipeline and checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error from candle (shapes, dtypes, devices, kernels).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// A file could not be read or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error (in the message, so not also a `source()`:
        /// a chain printer would say it twice).
        error: std::io::Error,
    },

    /// A data set or a batch is unusable (empty, wrong shape, bad value).
    #[error("data: {0}")]
    Data(String),

    /// A data folder is missing; the message names the folder and how to get it.
    #[error("{0}")]
    DataMissing(String),

    /// A checkpoint is missing, truncated or belongs to another model.
    #[error("checkpoint {}: {msg}", path.display())]
    Checkpoint {
        /// The checkpoint file or run directory.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },

    /// A tensor, a batch or a data set has the wrong shape or size.
    #[error("{what}: expected {expected}, got {got}")]
    Shape {
        /// What was checked (the operation or the data).
        what: String,
        /// The shape or size expected.
        expected: String,
        /// The shape or size found.
        got: String,
    },

    /// A class label outside the model's classes.
    #[error("label {label} is outside the model's {classes} classes (0..{classes})")]
    Label {
        /// The offending label.
        label: u64,
        /// How many classes the model has.
        classes: usize,
    },

    /// A saved model of another family than the one asked for.
    #[error("{}: holds a '{found}' model, not a '{expected}' one", path.display())]
    WrongModel {
        /// The model file.
        path: PathBuf,
        /// The family it holds.
        found: String,
        /// The family asked for.
        expected: String,
    },

    /// A saved model written by a newer Taper, in a format this one cannot read.
    #[error("{}: model format {found} is newer than this Taper reads ({supported}); update Taper", path.display())]
    NewerFormat {
        /// The model file.
        path: PathBuf,
        /// Its format version.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },

    /// A setting is invalid (batch size 0, unknown optimizer group, bad device name).
    #[error("config: {0}")]
    Config(String),

    /// Data-parallel training failed: the launcher's environment, the
    /// communication library, or ranks that disagree.
    #[error("distributed: {0}")]
    Distributed(String),

    /// The loss became NaN or infinite; training stopped.
    #[error("non-finite loss {value} at epoch {epoch}, step {step} (group '{group}'); nothing is saved from this step (an earlier checkpoint, if any, is kept)")]
    NonFinite {
        /// Global optimizer step at which it happened.
        step: usize,
        /// Epoch (0-based) at which it happened.
        epoch: usize,
        /// Optimizer group whose loss it was.
        group: String,
        /// The offending value.
        value: f64,
    },

    /// The loss was finite but a gradient was not (a NaN or infinity in the data
    /// that an operation such as ReLU hid from the loss); nothing was updated.
    #[error("non-finite gradient of '{param}' at epoch {epoch}, step {step} (group '{group}'): a NaN or infinity in the input batch is the usual cause; nothing is saved from this step (an earlier checkpoint, if any, is kept)")]
    NonFiniteGradient {
        /// Global optimizer step at which it happened.
        step: usize,
        /// Epoch (0-based) at which it happened.
        epoch: usize,
        /// Optimizer group of the parameter.
        group: String,
        /// The first parameter whose gradient holds a NaN or infinity.
        param: String,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error: source,
        }
    }

    /// A shape error: `what` expected `expected`, got `got`.
    pub fn shape(what: impl Into<String>, expected: impl ToString, got: impl ToString) -> Self {
        Error::Shape {
            what: what.into(),
            expected: expected.to_string(),
            got: got.to_string(),
        }
    }

    /// A checkpoint error for `path`.
    pub fn checkpoint(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            msg: msg.into(),
        }
    }
}

/// Result alias of `taper-train`.
pub type Result<T> = std::result::Result<T, Error>;
