//! DCGAN (Radford et al., 2015) for small grey images, optionally conditioned on a
//! class label, trained by `taper-train`'s [`Trainer`](taper_train::Trainer) with
//! two optimizer groups: `"d"` (discriminator) and `"g"` (generator).
//!
//! Generator: noise (and a one-hot label) → linear → batch norm → ReLU →
//! transposed convolution (x2) → batch norm → ReLU → transposed convolution (x2) →
//! `tanh`, images in [-1, 1]. Discriminator: (image and one-hot label planes) →
//! strided convolution → LeakyReLU → strided convolution → batch norm → LeakyReLU →
//! linear → one logit.

use crate::{Error, Result};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Init, VarBuilder, VarMap};
use std::path::Path;
use taper_nn::init::{init_tensor, rng_for, seeded_var_builder};
use taper_nn::{batch_norm, is_running_stat, leaky_relu, BatchNorm, BatchNormConfig};
use taper_nn::{binary_cross_entropy_with_logits as bce, Conv2d, Conv2dConfig};
use taper_nn::{ConvTranspose2d, Forward, Linear, Mode};
use taper_train::card::ModelCard;
use taper_train::data::TensorBatch;
use taper_train::optim::{named_vars, Adam, AdamConfig, NamedVar};
use taper_train::schedule::Constant;
use taper_train::{clip::Clip, Metrics, Optimizers, StepContext, TrainStep};

/// DCGAN's initialisation of convolution weights: N(0, 0.02).
pub const DCGAN_INIT: Init = Init::Randn {
    mean: 0.0,
    stdev: 0.02,
};

/// A batch norm as DCGAN initialises it: scale from N(1, 0.02).
fn batch_norm_dcgan(channels: usize, vb: VarBuilder) -> candle_core::Result<BatchNorm> {
    let cfg = BatchNormConfig {
        weight_init: Init::Randn {
            mean: 1.0,
            stdev: 0.02,
        },
        ..Default::default()
    };
    batch_norm(channels, cfg, vb)
}

/// A `k`x`k` transposed convolution without bias (it precedes a batch norm or
/// `tanh`), weights drawn from [`DCGAN_INIT`].
fn up_conv(
    in_channels: usize,
    out_channels: usize,
    vb: VarBuilder,
) -> candle_core::Result<ConvTranspose2d> {
    let w = vb.get_with_hints((in_channels, out_channels, 4, 4), "weight", DCGAN_INIT)?;
    Ok(ConvTranspose2d::new(
        w,
        None,
        Conv2dConfig {
            padding: 1,
            stride: 2,
        },
    ))
}

/// Shape of a DCGAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DcganConfig {
    /// Length of the noise vector.
    pub latent: usize,
    /// Image channels.
    pub channels: usize,
    /// Image side (square, divisible by 4).
    pub image_size: usize,
    /// Channels of the generator's last hidden layer (its first has twice as many).
    pub gen_width: usize,
    /// Channels of the discriminator's first layer (its second has twice as many).
    pub disc_width: usize,
    /// Number of classes for the conditional variant; `None`: unconditional.
    pub classes: Option<usize>,
}

impl DcganConfig {
    /// For 28x28 grey digits (MNIST, Fashion-MNIST): noise 100, widths 32 (half
    /// the paper's 64, which costs four times as much in the two large layers; 32
    /// is what a 2-core CPU trains in minutes an epoch).
    pub fn mnist() -> Self {
        Self {
            latent: 100,
            channels: 1,
            image_size: 28,
            gen_width: 32,
            disc_width: 32,
            classes: None,
        }
    }

    /// For the embedded 8x8 digits: noise 32, widths 32.
    pub fn digits() -> Self {
        Self {
            latent: 32,
            image_size: 8,
            ..Self::mnist()
        }
    }

    /// The same shape conditioned on `classes` labels.
    pub fn conditional(self, classes: usize) -> Self {
        Self {
            classes: Some(classes),
            ..self
        }
    }

    fn check(&self) -> Result<()> {
        if self.image_size < 4 || !self.image_size.is_multiple_of(4) {
            return Err(Error::Config(format!(
                "DCGAN image side must be a positive multiple of 4, got {}",
                self.image_size
            )));
        }
        if self.latent == 0 || self.channels == 0 || self.gen_width == 0 || self.disc_width == 0 {
            return Err(Error::Config(format!(
                "DCGAN sizes must be positive: {self:?}"
            )));
        }
        if self.classes == Some(0) {
            return Err(Error::Config(
                "a conditional DCGAN needs at least one class".into(),
            ));
        }
        Ok(())
    }

    fn label_width(&self) -> usize {
        self.classes.unwrap_or(0)
    }
}

/// Checks `labels` against the classes a network was built for and returns them
/// one-hot `(N, classes)` in `dtype`; `None` for an unconditional network.
fn one_hot(
    cfg: &DcganConfig,
    labels: Option<&Tensor>,
    n: usize,
    dtype: DType,
) -> candle_core::Result<Option<Tensor>> {
    match (cfg.classes, labels) {
        (None, None) => Ok(None),
        (None, Some(_)) => candle_core::bail!(
            "this DCGAN was trained without class labels; it cannot generate a given class"
        ),
        (Some(k), None) => {
            candle_core::bail!("this DCGAN is conditional on {k} classes: give a label per sample")
        }
        (Some(k), Some(l)) => {
            let l: Vec<u32> = l.to_dtype(DType::U32)?.flatten_all()?.to_vec1()?;
            if l.len() != n {
                candle_core::bail!("{} labels for {n} samples", l.len());
            }
            if let Some(bad) = l.iter().find(|&&c| c as usize >= k) {
                candle_core::bail!(
                    "class {bad} was not trained on: this DCGAN knows classes 0..{}",
                    k - 1
                );
            }
            let mut v = vec![0f32; n * k];
            for (i, &c) in l.iter().enumerate() {
                v[i * k + c as usize] = 1.0;
            }
            let device = Device::Cpu;
            Ok(Some(Tensor::from_vec(v, (n, k), &device)?.to_dtype(dtype)?))
        }
    }
}

/// The DCGAN generator.
#[derive(Debug, Clone)]
pub struct Generator {
    cfg: DcganConfig,
    fc: Linear,
    bn0: BatchNorm,
    up1: ConvTranspose2d,
    bn1: BatchNorm,
    up2: ConvTranspose2d,
}

/// Builds a [`Generator`] under `vb` (`fc.*`, `bn0.*`, `up1.weight`, `bn1.*`, `up2.weight`).
pub fn generator(cfg: DcganConfig, vb: VarBuilder) -> Result<Generator> {
    cfg.check()?;
    let s = cfg.image_size / 4;
    let w2 = 2 * cfg.gen_width;
    let fc_in = cfg.latent + cfg.label_width();
    let fc_w = vb
        .pp("fc")
        .get_with_hints((w2 * s * s, fc_in), "weight", DCGAN_INIT)?;
    Ok(Generator {
        cfg,
        fc: Linear::new(fc_w, None),
        bn0: batch_norm_dcgan(w2, vb.pp("bn0"))?,
        up1: up_conv(w2, cfg.gen_width, vb.pp("up1"))?,
        bn1: batch_norm_dcgan(cfg.gen_width, vb.pp("bn1"))?,
        up2: up_conv(cfg.gen_width, cfg.channels, vb.pp("up2"))?,
    })
}

impl Generator {
    /// Its configuration.
    pub fn config(&self) -> &DcganConfig {
        &self.cfg
    }

    /// The generator of the DCGAN trained in `run` (its model card and the
    /// `gen.*` weights of its kept checkpoint), on `device`.
    ///
    /// # Errors
    /// A missing run or file, a run of another model family, weights that do
    /// not fit: each naming the file.
    pub fn load(run: &Path, device: &Device) -> Result<Self> {
        let card = ModelCard::load(run, Dcgan::FAMILY)?;
        let cfg: DcganConfig = card.config()?;
        let varmap = VarMap::new();
        let vb = seeded_var_builder(&varmap, 0, DType::F32, device);
        let gen = generator(cfg, vb.pp(GEN_PREFIX))?;
        let ck = taper_train::checkpoint::kept(run)?;
        let prefix = format!("{GEN_PREFIX}.");
        taper_train::checkpoint::load_weights_where(&varmap, &ck.weights_path(), |n| {
            n.starts_with(&prefix)
        })?;
        Ok(gen)
    }

    /// `n` images `(n, C, S, S)` with values in 0..1, from standard normal noise
    /// drawn from `seed`; a conditional generator draws `class` (default: the
    /// classes in turn).
    ///
    /// # Errors
    /// A class outside the trained ones, or a class asked of an unconditional
    /// generator.
    pub fn sample(&self, n: usize, class: Option<u32>, seed: u64) -> Result<Tensor> {
        let device = self.fc.weight().device().clone();
        let mut out = Vec::new();
        for (b, s) in (0..n).step_by(500).enumerate() {
            let m = 500.min(n - s);
            let z = noise(seed, "sample", b as u64, m, self.cfg.latent, &device)?;
            let labels = match (self.cfg.classes, class) {
                (Some(k), _) => {
                    let l: Vec<u32> = (s..s + m)
                        .map(|i| class.unwrap_or((i % k) as u32))
                        .collect();
                    Some(Tensor::from_vec(l, m, &device)?)
                }
                (None, Some(c)) => {
                    return Err(Error::Config(format!(
                        "class {c} asked of an unconditional generator (train with --conditional)"
                    )))
                }
                (None, None) => None,
            };
            one_hot(&self.cfg, labels.as_ref(), m, DType::F32).map_err(config_error)?;
            let x = self.forward_t(&z, labels.as_ref(), &Mode::eval())?;
            out.push(((x + 1.0)? / 2.0)?);
        }
        Ok(Tensor::cat(&out, 0)?)
    }

    /// Images `(N, C, S, S)` in [-1, 1] from noise `z` `(N, latent)` and, for a
    /// conditional generator, labels `(N,)`.
    pub fn forward_t(
        &self,
        z: &Tensor,
        labels: Option<&Tensor>,
        mode: &Mode,
    ) -> candle_core::Result<Tensor> {
        let (n, l) = z.dims2()?;
        if l != self.cfg.latent {
            candle_core::bail!(
                "generator expects noise (N, {}), got {:?}",
                self.cfg.latent,
                z.dims()
            );
        }
        let z = match one_hot(&self.cfg, labels, n, z.dtype())? {
            Some(h) => Tensor::cat(&[z, &h.to_device(z.device())?], 1)?,
            None => z.clone(),
        };
        let s = self.cfg.image_size / 4;
        let x = self
            .fc
            .forward(&z)?
            .reshape((n, 2 * self.cfg.gen_width, s, s))?;
        let x = self.bn0.forward_relu_t(&x, mode)?;
        let x = self.bn1.forward_relu_t(&self.up1.forward(&x)?, mode)?;
        self.up2.forward(&x)?.tanh()
    }
}

/// The DCGAN discriminator.
#[derive(Debug, Clone)]
pub struct Discriminator {
    cfg: DcganConfig,
    conv1: Conv2d,
    conv2: Conv2d,
    bn2: BatchNorm,
    fc: Linear,
}

/// Builds a [`Discriminator`] under `vb` (`conv1.*`, `conv2.weight`, `bn2.*`, `fc.*`).
pub fn discriminator(cfg: DcganConfig, vb: VarBuilder) -> Result<Discriminator> {
    cfg.check()?;
    let (w1, w2) = (cfg.disc_width, 2 * cfg.disc_width);
    let cin = cfg.channels + cfg.label_width();
    let s = cfg.image_size / 4;
    let strided = Conv2dConfig {
        padding: 1,
        stride: 2,
    };
    let c1w = vb
        .pp("conv1")
        .get_with_hints((w1, cin, 4, 4), "weight", DCGAN_INIT)?;
    let c1b = vb
        .pp("conv1")
        .get_with_hints(w1, "bias", candle_nn::Init::Const(0.0))?;
    let c2w = vb
        .pp("conv2")
        .get_with_hints((w2, w1, 4, 4), "weight", DCGAN_INIT)?;
    let fcw = vb
        .pp("fc")
        .get_with_hints((1, w2 * s * s), "weight", DCGAN_INIT)?;
    let fcb = vb
        .pp("fc")
        .get_with_hints(1, "bias", candle_nn::Init::Const(0.0))?;
    Ok(Discriminator {
        cfg,
        conv1: Conv2d::new(c1w, Some(c1b), strided),
        conv2: Conv2d::new(c2w, None, strided),
        bn2: batch_norm_dcgan(w2, vb.pp("bn2"))?,
        fc: Linear::new(fcw, Some(fcb)),
    })
}

impl Discriminator {
    /// Its configuration.
    pub fn config(&self) -> &DcganConfig {
        &self.cfg
    }

    /// The same discriminator with its parameters detached from autodiff
    /// (sharing their storage, and the batch norm's running statistics): for
    /// the generator's step, whose backward pass then computes no gradient of
    /// the discriminator's weights (it only needs the gradient of its input).
    /// The generator's gradients are unchanged, bit for bit.
    pub fn frozen(&self) -> Self {
        Self {
            cfg: self.cfg,
            conv1: self.conv1.detached(),
            conv2: self.conv2.detached(),
            bn2: self.bn2.detached(),
            fc: self.fc.detached(),
        }
    }

    /// One logit per image `(N,)` ("real" when positive) for images `(N, C, S, S)`
    /// and, when conditional, labels `(N,)`.
    pub fn forward_t(
        &self,
        x: &Tensor,
        labels: Option<&Tensor>,
        mode: &Mode,
    ) -> candle_core::Result<Tensor> {
        let c = &self.cfg;
        super::check_input(x, c.channels, c.image_size, c.image_size)?;
        let n = x.dim(0)?;
        let x = match one_hot(c, labels, n, x.dtype())? {
            Some(h) => {
                let k = h.dim(1)?;
                let planes = h
                    .to_device(x.device())?
                    .reshape((n, k, 1, 1))?
                    .broadcast_as((n, k, c.image_size, c.image_size))?;
                Tensor::cat(&[x, &planes], 1)?
            }
            None => x.clone(),
        };
        let x = leaky_relu(&self.conv1.forward(&x)?, 0.2)?;
        let x = leaky_relu(&self.bn2.forward_t(&self.conv2.forward(&x)?, mode)?, 0.2)?;
        self.fc.forward(&x.flatten_from(1)?)?.squeeze(D::Minus1)
    }
}

/// Adam settings of both DCGAN groups.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GanOptimConfig {
    /// Learning rate of the discriminator.
    pub lr_d: f64,
    /// Learning rate of the generator.
    pub lr_g: f64,
    /// Adam's beta1 (0.5 in DCGAN: the default 0.9 oscillates).
    pub beta1: f64,
    /// Adam's beta2.
    pub beta2: f64,
}

impl Default for GanOptimConfig {
    fn default() -> Self {
        Self {
            lr_d: 2e-4,
            lr_g: 2e-4,
            beta1: 0.5,
            beta2: 0.999,
        }
    }
}

/// A generator and a discriminator over one [`VarMap`] (names `gen.*` and
/// `disc.*`), trained as a [`TrainStep`] over batches of (images in [-1, 1],
/// labels): each batch one discriminator update (group `"d"`, on a detached fake
/// batch) then one generator update (group `"g"`, non-saturating loss).
///
/// Metrics: `d_loss`, `g_loss`, `d_real` and `d_fake` (mean probability the
/// discriminator gives real and fake images), and `loss` = `d_loss + g_loss`
/// for the progress line.
pub struct Dcgan {
    /// The generator.
    pub gen: Generator,
    /// The discriminator.
    pub disc: Discriminator,
    varmap: VarMap,
    seed: u64,
}

/// Prefix of the generator's variables.
pub const GEN_PREFIX: &str = "gen";
/// Prefix of the discriminator's variables.
pub const DISC_PREFIX: &str = "disc";

impl Dcgan {
    /// The model family in `model.json`.
    pub const FAMILY: &'static str = "vision.dcgan";

    /// Both networks in `varmap`, initial weights and the noise of each step drawn
    /// from `seed`.
    pub fn new(cfg: DcganConfig, varmap: &VarMap, seed: u64, device: &Device) -> Result<Self> {
        let vb = seeded_var_builder(varmap, seed, DType::F32, device);
        Ok(Self {
            gen: generator(cfg, vb.pp(GEN_PREFIX))?,
            disc: discriminator(cfg, vb.pp(DISC_PREFIX))?,
            varmap: varmap.clone(),
            seed,
        })
    }

    /// The shape.
    pub fn config(&self) -> &DcganConfig {
        &self.gen.cfg
    }

    /// The trainable variables of one network (`"gen"` or `"disc"`), without the
    /// batch-norm running statistics.
    pub fn trainable(&self, prefix: &str) -> Vec<NamedVar> {
        named_vars(&self.varmap, &format!("{prefix}."))
            .into_iter()
            .filter(|(n, _)| !is_running_stat(n))
            .collect()
    }

    /// The two optimizer groups, `"d"` and `"g"`: Adam with constant learning rates.
    pub fn optimizers(&self, o: GanOptimConfig) -> Optimizers {
        let adam = |prefix: &str, lr: f64| {
            Adam::new(
                self.trainable(prefix),
                AdamConfig {
                    lr,
                    beta1: o.beta1,
                    beta2: o.beta2,
                    ..Default::default()
                },
            )
        };
        Optimizers::new()
            .with_group("d", adam(DISC_PREFIX, o.lr_d), Constant(o.lr_d), Clip::None)
            .with_group("g", adam(GEN_PREFIX, o.lr_g), Constant(o.lr_g), Clip::None)
    }

    /// Standard normal noise `(n, latent)`, a pure function of `(seed, stream, index)`.
    pub fn noise(&self, stream: &str, index: u64, n: usize, device: &Device) -> Result<Tensor> {
        noise(self.seed, stream, index, n, self.config().latent, device)
    }

    /// Samples in evaluation mode (running batch-norm statistics): images in
    /// [-1, 1] from noise `z` and, for a conditional model, labels. A label the
    /// model was not trained on, or labels given to an unconditional model, is
    /// an error.
    pub fn generate(&self, z: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        one_hot(self.config(), labels, z.dim(0)?, DType::F32).map_err(config_error)?;
        Ok(self.gen.forward_t(z, labels, &Mode::eval())?)
    }

    /// Loads both networks from a weights file, with an error naming the network a
    /// checkpoint lacks before anything is changed.
    pub fn load_weights(&self, path: &Path) -> Result<()> {
        check_gan_weights(path)?;
        taper_train::checkpoint::load_weights(&self.varmap, path)
    }

    /// The discriminator's loss on a batch and a fake batch drawn for step `ctx`.
    fn losses(&self, batch: &TensorBatch, ctx: &StepContext, mode: &Mode) -> Result<GanLosses> {
        let real = batch.inputs();
        let n = real.dim(0)?;
        if n == 0 {
            return Err(Error::Data("empty batch".into()));
        }
        let dev = real.device();
        let it = ctx.iteration;
        let z = self.noise("train.z", it, n, dev)?;
        let conditional = self.config().classes;
        let real_labels = conditional.map(|_| batch.targets().clone());
        let fake_labels = match conditional {
            Some(k) => Some(random_labels(self.seed, it, n, k, dev)?),
            None => None,
        };
        let fake = self.gen.forward_t(&z, fake_labels.as_ref(), mode)?;
        let real_logits = self.disc.forward_t(real, real_labels.as_ref(), mode)?;
        let fake_logits = self
            .disc
            .forward_t(&fake.detach(), fake_labels.as_ref(), mode)?;
        let ones = Tensor::ones(n, real_logits.dtype(), dev)?;
        let zeros = Tensor::zeros(n, real_logits.dtype(), dev)?;
        let d_loss = (bce(&real_logits, &ones)? + bce(&fake_logits, &zeros)?)?;
        Ok(GanLosses {
            d_loss,
            fake,
            fake_labels,
            d_real: mean_prob(&real_logits)?,
            d_fake: mean_prob(&fake_logits)?,
            ones,
        })
    }
}

struct GanLosses {
    d_loss: Tensor,
    fake: Tensor,
    fake_labels: Option<Tensor>,
    d_real: f64,
    d_fake: f64,
    ones: Tensor,
}

fn config_error(e: candle_core::Error) -> Error {
    Error::Config(e.to_string())
}

fn mean_prob(logits: &Tensor) -> Result<f64> {
    Ok(candle_nn::ops::sigmoid(logits)?
        .mean_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?)
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// Standard normal noise `(n, latent)` drawn on the host from `(seed, stream, index)`
/// (candle's CPU RNG cannot be seeded).
pub fn noise(
    seed: u64,
    stream: &str,
    index: u64,
    n: usize,
    latent: usize,
    device: &Device,
) -> Result<Tensor> {
    let mut rng = rng_for(taper_nn::init::mix(&[seed, index], stream), "dcgan.noise");
    Ok(init_tensor(
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
        &candle_core::Shape::from((n, latent)),
        &mut rng,
        DType::F32,
        device,
    )?)
}

fn random_labels(seed: u64, it: u64, n: usize, k: usize, dev: &Device) -> Result<Tensor> {
    use rand::Rng;
    let mut rng = rng_for(taper_nn::init::mix(&[seed, it], "labels"), "dcgan.labels");
    let l: Vec<u32> = (0..n).map(|_| rng.random_range(0..k as u32)).collect();
    Ok(Tensor::from_vec(l, n, dev)?)
}

/// Checks that a weights file holds both networks (tensors under `gen.` and
/// `disc.`), naming the one that is missing.
pub fn check_gan_weights(path: &Path) -> Result<()> {
    let tensors = taper_train::checkpoint::read_tensors(path, &Device::Cpu)?;
    let has = |p: &str| tensors.keys().any(|k| k.starts_with(&format!("{p}.")));
    let missing: Vec<String> = [("generator", GEN_PREFIX), ("discriminator", DISC_PREFIX)]
        .iter()
        .filter(|(_, p)| !has(p))
        .map(|(n, p)| format!("no {n} (no tensor named '{p}.*')"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::checkpoint(
            path,
            format!("not a whole DCGAN: {}", missing.join(", ")),
        ))
    }
}

impl TrainStep<TensorBatch> for Dcgan {
    type Output = Metrics;

    fn train_step(
        &mut self,
        batch: &TensorBatch,
        ctx: &StepContext,
        opt: &mut Optimizers,
    ) -> Result<Metrics> {
        let mode = ctx.mode();
        let l = self.losses(batch, ctx, &mode)?;
        opt.step("d", &l.d_loss)?;
        // The fake batch's graph is kept: the generator has not changed since it
        // was drawn, and the updated discriminator judges it, frozen: the
        // generator's group needs no discriminator weight gradients, and
        // computing them was about a tenth of the step.
        let g_logits = self
            .disc
            .frozen()
            .forward_t(&l.fake, l.fake_labels.as_ref(), &mode)?;
        let g_loss = bce(&g_logits, &l.ones)?;
        opt.step("g", &g_loss)?;
        Self::metrics(batch, &l, &g_loss)
    }

    fn valid_step(&mut self, batch: &TensorBatch, ctx: &StepContext) -> Result<Metrics> {
        let mode = Mode::eval();
        let l = self.losses(batch, ctx, &mode)?;
        let g_logits = self
            .disc
            .forward_t(&l.fake, l.fake_labels.as_ref(), &mode)?;
        let g_loss = bce(&g_logits, &l.ones)?;
        Self::metrics(batch, &l, &g_loss)
    }

    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn model_card(&self) -> Option<ModelCard> {
        ModelCard::new(
            Self::FAMILY,
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
            self.config(),
            &serde_json::Value::Null,
        )
        .ok()
    }
}

impl Dcgan {
    fn metrics(batch: &TensorBatch, l: &GanLosses, g_loss: &Tensor) -> Result<Metrics> {
        let n = batch.len() as f64;
        let (d, g) = (scalar(&l.d_loss)?, scalar(g_loss)?);
        Ok(Metrics::new()
            .with("loss", d + g, n)
            .with("d_loss", d, n)
            .with("g_loss", g, n)
            .with("d_real", l.d_real, n)
            .with("d_fake", l.d_fake, n))
    }
}
