//! `taper-vision`: image data sets, preprocessing and models for Taper.
//!
//! - [`datasets`]: MNIST/Fashion-MNIST (IDX), CIFAR-10, image folders
//!   ([`datasets::ImageFolder`], one sub-folder per class), the embedded digits,
//!   generated moving-digit clips;
//! - [`transforms`]: seeded, torchvision-style augmentation and preprocessing;
//! - [`models`]: MLP, LeNet, a batch-norm CNN, a small ResNet, DCGAN, a video
//!   CNN + LSTM/GRU, all on `taper-nn`'s layers;
//! - [`ImageClassifier`]: a classifier with its preprocessing that saves itself
//!   with its run and loads back to predict class names ([`classifier`]);
//! - [`grid`]: sample grids, GIFs, heat-map overlays; [`metrics`]: Inception
//!   Score and Fréchet distance; [`explain`]: Grad-CAM, Integrated Gradients and
//!   SmoothGrad maps of a LeNet with the randomisation check.
//!
//! Errors are `taper-train`'s: file errors name the file and what is wrong.

pub mod classifier;
pub mod datasets;
pub mod explain;
pub mod grid;
pub mod metrics;
pub mod models;
pub mod transforms;

pub use classifier::{load_lenet, ClassifierConfig, ImageClassifier, Preprocessing};
pub use taper_train::{Error, Result};
