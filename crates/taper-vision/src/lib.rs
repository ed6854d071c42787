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
//!
//! LeNet trained on the embedded digits, saved with its run and loaded back to
//! predict class names (a network of your own goes the same way through
//! [`ImageClassifier::custom`] and [`ImageClassifier::load_custom`]; a DCGAN's
//! generator loads with [`models::Generator::load`]):
//!
//! ```
//! use taper_train::data::{DataLoader, LoaderConfig, TensorDataset};
//! use taper_train::optim::{named_vars, Adam, AdamConfig};
//! use taper_train::{Optimizers, Trainer, TrainerConfig};
//! use taper_vision::datasets::{digits, load_digits};
//! use taper_vision::{ClassifierConfig, ImageClassifier, Preprocessing};
//! use candle_core::Device;
//!
//! let (x, y) = load_digits(&digits::default_digits_path())?; // 1797 8x8 digits
//! let names: Vec<String> = (0..10).map(|d| d.to_string()).collect();
//! let pre = Preprocessing::new(1, (8, 8), names);
//! let cfg = ClassifierConfig::for_images("lenet", 1, (8, 8), 10)?;
//! let mut model = ImageClassifier::new(cfg, pre, 42, &Device::Cpu)?;
//! let train = DataLoader::new(TensorDataset::new(vec![x.clone(), y], &Device::Cpu)?, LoaderConfig::train(64, 42))?;
//! let mut opt = Optimizers::single(Adam::new(named_vars(model.varmap(), ""), AdamConfig::default()));
//! let run = tempfile::tempdir()?;
//! let cfg = TrainerConfig { epochs: 3, run_dir: Some(run.path().into()), progress: false, verbose: false, ..Default::default() };
//! Trainer::new(cfg).fit(&mut model, &mut opt, &train, None)?;
//!
//! // Later, anywhere: the run directory is the model.
//! let loaded = ImageClassifier::load(run.path(), &Device::Cpu)?;
//! let image = x.get(0)?; // an image tensor (C, H, W), already normalised
//! let top = loaded.predict_tensor(&image, 3)?;
//! assert_eq!(top.len(), 3);
//! assert_eq!(top[0], model.predict_tensor(&image, 3)?[0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod classifier;
pub mod datasets;
pub mod explain;
pub mod grid;
pub mod metrics;
pub mod models;
mod pixels;
pub mod report;
pub mod transforms;

pub use classifier::{load_lenet, ClassifierConfig, ImageClassifier, Preprocessing};
pub use taper_train::{Error, Result};
