//! A trained image classifier as a model you load and use.
//!
//! [`ImageClassifier`] is a network ([`ClassifierConfig`]: MLP, LeNet, the
//! batch-norm CNN, the small ResNet, the CNN + LSTM/GRU clip classifier and its
//! single-frame baseline, or a network of your own) with what feeding it needs
//! ([`Preprocessing`]: channels, size, normalisation, class names). It trains
//! through `taper-train`'s `Trainer` like any classifier, writes its
//! `model.json` into the run directory when training starts, and loads back
//! from that run in one call to predict class names
//! (the crate's top-level documentation shows it end to end).

use crate::models::video::{frame_classifier, video_classifier};
use crate::models::VideoConfig;
use crate::models::{Cnn, CnnConfig, LeNet, LeNetConfig, Mlp, MlpConfig, ResNet, ResNetConfig};
use crate::transforms::{open_image, to_tensor, Normalize};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use image::DynamicImage;
use serde::{Deserialize, Serialize};
use std::path::Path;
use taper_nn::{Forward, Mode};
use taper_train::card::ModelCard;
use taper_train::data::TensorBatch;
use taper_train::{ClassificationOutput, Classifier, Optimizers, StepContext, TrainStep};

/// Which network an [`ImageClassifier`] is, with its shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "lowercase")]
pub enum ClassifierConfig {
    /// The multi-layer perceptron.
    Mlp(MlpConfig),
    /// LeNet.
    LeNet(LeNetConfig),
    /// The batch-norm CNN.
    Cnn(CnnConfig),
    /// The small ResNet.
    ResNet(ResNetConfig),
    /// A clip classifier: a CNN over each frame and an LSTM/GRU over time
    /// (input `(N, T, C, H, W)`).
    Video(VideoConfig),
    /// The same frame encoder on a clip's last frame alone: the baseline
    /// without time (input `(N, T, C, H, W)`).
    Frame(VideoConfig),
    /// A network of the user's own ([`ImageClassifier::custom`]), rebuilt by the
    /// same code when loaded ([`ImageClassifier::load_custom`]).
    Custom {
        /// The user's name for it, checked when it is loaded.
        name: String,
        /// Number of classes.
        classes: usize,
    },
}

/// A network of any [`ClassifierConfig`].
pub type Network = Box<dyn Forward + Send + Sync>;

impl ClassifierConfig {
    /// `model` (`mlp`, `lenet`, `cnn` or `resnet`) sized for `channels` x
    /// `size` images and `classes` classes, with the widths the examples use
    /// (small images, 16 pixels or less a side, get the narrower variants).
    ///
    /// # Errors
    /// An unknown model name, or a size the model cannot take (the CNN needs
    /// sides divisible by 4).
    pub fn for_images(
        model: &str,
        channels: usize,
        size: (usize, usize),
        classes: usize,
    ) -> Result<Self> {
        let small = size.0.max(size.1) <= 16;
        Ok(match model {
            "mlp" => ClassifierConfig::Mlp(MlpConfig {
                in_dim: channels * size.0 * size.1,
                hidden1: 256,
                hidden2: 128,
                classes,
                dropout: 0.1,
            }),
            "lenet" => ClassifierConfig::LeNet(LeNetConfig {
                in_channels: channels,
                image_size: size,
                classes,
                ..if small {
                    LeNetConfig::digits()
                } else {
                    LeNetConfig::mnist()
                }
            }),
            "cnn" => ClassifierConfig::Cnn(CnnConfig {
                in_channels: channels,
                image_size: size,
                classes,
                ..if small {
                    CnnConfig::digits()
                } else {
                    CnnConfig::mnist()
                }
            }),
            "resnet" => ClassifierConfig::ResNet(ResNetConfig::small(channels, size, classes)),
            other => {
                return Err(Error::Config(format!(
                    "unknown model '{other}' (mlp, lenet, cnn or resnet)"
                )))
            }
        })
    }

    /// The network's name (`lenet`, ..., or a custom network's own).
    pub fn name(&self) -> &str {
        match self {
            ClassifierConfig::Mlp(_) => "mlp",
            ClassifierConfig::LeNet(_) => "lenet",
            ClassifierConfig::Cnn(_) => "cnn",
            ClassifierConfig::ResNet(_) => "resnet",
            ClassifierConfig::Video(_) => "video",
            ClassifierConfig::Frame(_) => "frame",
            ClassifierConfig::Custom { name, .. } => name,
        }
    }

    /// Builds the network under `vb` (PyTorch-style names, no prefix).
    ///
    /// # Errors
    /// A shape the network cannot take.
    pub fn build(&self, vb: VarBuilder) -> Result<Network> {
        Ok(match self {
            ClassifierConfig::Mlp(c) => Box::new(Mlp::from_config(*c, vb)?),
            ClassifierConfig::LeNet(c) => Box::new(LeNet::new(*c, vb)?),
            ClassifierConfig::Cnn(c) => Box::new(Cnn::new(*c, vb)?),
            ClassifierConfig::ResNet(c) => Box::new(ResNet::new(c.clone(), vb)?),
            ClassifierConfig::Video(c) => Box::new(video_classifier(*c, vb)?),
            ClassifierConfig::Frame(c) => Box::new(frame_classifier(*c, vb)?),
            ClassifierConfig::Custom { name, .. } => {
                return Err(Error::Config(format!(
                    "'{name}' is a network of your own: build it with ImageClassifier::custom and load it with ImageClassifier::load_custom"
                )))
            }
        })
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        match self {
            ClassifierConfig::Mlp(c) => c.classes,
            ClassifierConfig::LeNet(c) => c.classes,
            ClassifierConfig::Cnn(c) => c.classes,
            ClassifierConfig::ResNet(c) => c.classes,
            ClassifierConfig::Video(c) | ClassifierConfig::Frame(c) => c.classes,
            ClassifierConfig::Custom { classes, .. } => *classes,
        }
    }
}

/// What turns an image into the network's input, and its outputs into names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Height and width the image is resized to.
    pub image_size: (usize, usize),
    /// Per-channel mean subtracted after scaling to 0..1 (empty: none).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation divided by (empty: none).
    pub std: Vec<f32>,
    /// Class names, index = label.
    pub class_names: Vec<String>,
}

impl Preprocessing {
    /// `channels` x `image_size` images, no normalisation, classes `class_names`.
    pub fn new(channels: usize, image_size: (usize, usize), class_names: Vec<String>) -> Self {
        Self {
            channels,
            image_size,
            mean: Vec::new(),
            std: Vec::new(),
            class_names,
        }
    }

    /// With per-channel normalisation `(x - mean) / std`.
    pub fn with_normalize(mut self, n: &Normalize) -> Self {
        self.mean = n.mean.clone();
        self.std = n.std.clone();
        self
    }

    /// The normalisation, if any.
    pub fn normalize(&self) -> Option<Normalize> {
        (!self.mean.is_empty()).then(|| Normalize {
            mean: self.mean.clone(),
            std: self.std.clone(),
        })
    }

    /// An image as the network's input `(C, H, W)`: resized, converted to the
    /// channel count, scaled to 0..1 and normalised.
    ///
    /// # Errors
    /// A normalisation of another channel count.
    pub fn tensor(&self, img: &DynamicImage, device: &Device) -> Result<Tensor> {
        let (h, w) = self.image_size;
        let img = if (img.width() as usize, img.height() as usize) == (w, h) {
            img.clone()
        } else {
            img.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle)
        };
        let t = to_tensor(&img, self.channels, device)?;
        match self.normalize() {
            Some(n) => n.apply(&t),
            None => Ok(t),
        }
    }
}

/// The LeNet of an image-classifier run (`mnist_cnn --model lenet`,
/// `image_classifier --model lenet`) with its preprocessing and kept weights,
/// for tools that need LeNet's own parts: its penultimate features (IS/FID)
/// and its last convolution (Grad-CAM).
///
/// # Errors
/// As [`ImageClassifier::load`]; [`Error::WrongModel`] for a run of another
/// network.
pub fn load_lenet(run: &Path, device: &Device) -> Result<(crate::models::LeNet, Preprocessing)> {
    let card = ModelCard::load(run, ImageClassifier::FAMILY)?;
    let cfg = match card.config::<ClassifierConfig>()? {
        ClassifierConfig::LeNet(c) => c,
        other => {
            return Err(Error::WrongModel {
                path: ModelCard::path(run),
                found: format!("{}: {}", ImageClassifier::FAMILY, other.name()),
                expected: format!("{}: lenet", ImageClassifier::FAMILY),
            })
        }
    };
    let data: CardData = card.data()?;
    let varmap = VarMap::new();
    let vb = taper_nn::init::seeded_var_builder(&varmap, 0, DType::F32, device);
    let lenet = crate::models::LeNet::new(cfg, vb)?;
    taper_train::checkpoint::kept(run)?.load_weights(&varmap)?;
    Ok((lenet, data.preprocessing))
}

/// The feeding half of the model card.
#[derive(Serialize, Deserialize)]
struct CardData {
    preprocessing: Preprocessing,
}

/// A network with its preprocessing: trains as a classifier, saves itself with
/// its run and loads back to predict class names (see the module documentation).
pub struct ImageClassifier {
    inner: Classifier<Network>,
    config: ClassifierConfig,
    pre: Preprocessing,
    device: Device,
}

impl ImageClassifier {
    /// The model family in `model.json`.
    pub const FAMILY: &'static str = "vision.classifier";

    /// A fresh network of `config`, its weights drawn from `seed`.
    ///
    /// # Errors
    /// Class names of another count than the network's classes, or a shape the
    /// network cannot take.
    pub fn new(
        config: ClassifierConfig,
        pre: Preprocessing,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        Self::with_builder(config, pre, seed, device, |c, vb| c.build(vb))
    }

    /// A network of your own, named `name`, built by `build` (under a
    /// `VarBuilder` whose weights are drawn from `seed`); it must return logits
    /// `(N, classes)` for `pre`'s images, one per class name.
    ///
    /// # Errors
    /// Whatever `build` raises.
    pub fn custom<N, F>(
        name: &str,
        pre: Preprocessing,
        seed: u64,
        device: &Device,
        build: F,
    ) -> Result<Self>
    where
        N: Forward + Send + Sync + 'static,
        F: FnOnce(VarBuilder) -> candle_core::Result<N>,
    {
        let config = ClassifierConfig::Custom {
            name: name.to_string(),
            classes: pre.class_names.len(),
        };
        Self::with_builder(config, pre, seed, device, |_, vb| {
            Ok(Box::new(build(vb)?) as Network)
        })
    }

    /// The custom network `name` saved in `run`, rebuilt by `build` (the same
    /// code that built it for training) with the run's kept weights.
    ///
    /// # Errors
    /// As [`ImageClassifier::load`]; a run of another network than `name`.
    pub fn load_custom<N, F>(run: &Path, device: &Device, name: &str, build: F) -> Result<Self>
    where
        N: Forward + Send + Sync + 'static,
        F: FnOnce(VarBuilder) -> candle_core::Result<N>,
    {
        let card = ModelCard::load(run, Self::FAMILY)?;
        let config: ClassifierConfig = card.config()?;
        if config.name() != name {
            return Err(Error::WrongModel {
                path: ModelCard::path(run),
                found: format!("{}: {}", Self::FAMILY, config.name()),
                expected: format!("{}: {name}", Self::FAMILY),
            });
        }
        let data: CardData = card.data()?;
        let model = Self::custom(name, data.preprocessing, 0, device, build)?;
        model.load_checkpoint(run)?;
        Ok(model)
    }

    fn with_builder(
        config: ClassifierConfig,
        pre: Preprocessing,
        seed: u64,
        device: &Device,
        build: impl FnOnce(&ClassifierConfig, VarBuilder) -> Result<Network>,
    ) -> Result<Self> {
        if pre.class_names.len() != config.classes() {
            return Err(Error::shape(
                "image classifier: class names",
                format!("{} (the network's classes)", config.classes()),
                pre.class_names.len(),
            ));
        }
        let varmap = VarMap::new();
        let vb = taper_nn::init::seeded_var_builder(&varmap, seed, DType::F32, device);
        let net = build(&config, vb)?;
        Ok(Self {
            inner: Classifier::new(net, varmap),
            config,
            pre,
            device: device.clone(),
        })
    }

    /// The model saved in `run` (its `model.json` and its kept checkpoint: the
    /// best, else the latest), on `device`.
    ///
    /// # Errors
    /// A missing run or file, a card of another model family or a newer format,
    /// weights that do not fit the configuration: each naming the file.
    pub fn load(run: &Path, device: &Device) -> Result<Self> {
        let card = ModelCard::load(run, Self::FAMILY)?;
        let config: ClassifierConfig = card.config()?;
        let data: CardData = card.data()?;
        let model = Self::new(config, data.preprocessing, 0, device)?;
        model.load_checkpoint(run)?;
        Ok(model)
    }

    /// Loads the kept checkpoint of `run` (the best, else the latest) into this
    /// network: after training, the weights to evaluate and use.
    ///
    /// # Errors
    /// As [`taper_train::checkpoint::kept`] and weights of another shape.
    pub fn load_checkpoint(&self, run: &Path) -> Result<std::path::PathBuf> {
        let ck = taper_train::checkpoint::kept(run)?;
        ck.load_weights(&self.inner.varmap)?;
        Ok(ck.dir)
    }

    /// The network's variables.
    pub fn varmap(&self) -> &VarMap {
        &self.inner.varmap
    }

    /// The network's configuration.
    pub fn config(&self) -> &ClassifierConfig {
        &self.config
    }

    /// The preprocessing.
    pub fn preprocessing(&self) -> &Preprocessing {
        &self.pre
    }

    /// Class probabilities `(N, classes)` of a batch of input tensors
    /// `(N, C, H, W)` (already preprocessed), in evaluation mode, computed on
    /// the CPU pool ([`taper_train::device::in_pool`]).
    ///
    /// # Errors
    /// Inputs of another shape than the network's.
    pub fn probabilities(&self, x: &Tensor) -> Result<Tensor> {
        // On the CPU pool: a batch of one is a chain of small kernels, each of
        // which would otherwise wake the pool from this thread.
        taper_train::device::in_pool(|| {
            let logits = self.inner.model.forward_t(x, &Mode::eval())?;
            Ok(taper_nn::softmax(&logits.to_dtype(DType::F32)?)?)
        })
    }

    /// The `k` most probable classes of one preprocessed image `(C, H, W)`, as
    /// (class name, probability), most probable first.
    ///
    /// # Errors
    /// As [`ImageClassifier::probabilities`].
    pub fn predict_tensor(&self, image: &Tensor, k: usize) -> Result<Vec<(String, f32)>> {
        let p: Vec<f32> = self
            .probabilities(&image.to_device(&self.device)?.unsqueeze(0)?)?
            .squeeze(0)?
            .to_vec1()?;
        let mut ranked: Vec<(usize, f32)> = p.into_iter().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(ranked
            .into_iter()
            .take(k)
            .map(|(i, p)| (self.pre.class_names[i].clone(), p))
            .collect())
    }

    /// The `k` most probable classes of an image (resized, converted and
    /// normalised as in training).
    ///
    /// # Errors
    /// As [`ImageClassifier::probabilities`].
    pub fn predict(&self, image: &DynamicImage, k: usize) -> Result<Vec<(String, f32)>> {
        let t = self.pre.tensor(image, &self.device)?;
        self.predict_tensor(&t, k)
    }

    /// [`ImageClassifier::predict`] on an image file.
    ///
    /// # Errors
    /// An unreadable image (naming the file), or as [`ImageClassifier::predict`].
    pub fn predict_path(&self, path: &Path, k: usize) -> Result<Vec<(String, f32)>> {
        self.predict(&open_image(path)?, k)
    }
}

impl TrainStep<TensorBatch> for ImageClassifier {
    type Output = ClassificationOutput;
    fn train_step(
        &mut self,
        batch: &TensorBatch,
        ctx: &StepContext,
        opt: &mut Optimizers,
    ) -> taper_train::Result<ClassificationOutput> {
        self.inner.train_step(batch, ctx, opt)
    }
    fn valid_step(
        &mut self,
        batch: &TensorBatch,
        ctx: &StepContext,
    ) -> taper_train::Result<ClassificationOutput> {
        self.inner.valid_step(batch, ctx)
    }
    fn varmap(&self) -> &VarMap {
        &self.inner.varmap
    }
    fn model_card(&self) -> Option<ModelCard> {
        ModelCard::new(
            Self::FAMILY,
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
            &self.config,
            &CardData {
                preprocessing: self.pre.clone(),
            },
        )
        .ok()
    }
}
