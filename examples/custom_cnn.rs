//! Your own CNN on your own folder of images, as a user writes it: split, train,
//! save, load back and predict by class name (the README's walk-through).
//!
//! ```text
//! cargo run --release --example custom_cnn -- photos/ runs/my-cnn photos/cats/felix.jpg
//! ```
//!
//! `photos/` holds one sub-folder of images per class.

use anyhow::{Context, Result};
use taper::nn::candle::{Module, Tensor};
use taper::nn::{candle_nn::VarBuilder, conv2d, linear, max_pool2d, relu, Conv2d, Conv2dConfig};
use taper::nn::{Forward, Linear, Mode};
use taper::train::data::{random_split, DataLoader, LoaderConfig, StackBatcher};
use taper::train::optim::{named_vars, Adam, AdamConfig};
use taper::train::{Optimizers, Trainer, TrainerConfig};
use taper::vision::datasets::{ImageFolder, OnBadFile};
use taper::vision::transforms::{Compose, Normalize, Resize};
use taper::vision::{ImageClassifier, Preprocessing};

#[global_allocator]
static GLOBAL: taper::alloc::Allocator = taper::alloc::Allocator;

/// Two 3x3 convolutions with max pooling, then a linear layer: 3x32x32 in.
struct MyCnn {
    conv1: Conv2d,
    conv2: Conv2d,
    fc: Linear,
}

impl MyCnn {
    fn new(classes: usize, vb: VarBuilder) -> taper::nn::candle::Result<Self> {
        let same = Conv2dConfig {
            padding: 1,
            stride: 1,
        };
        Ok(Self {
            conv1: conv2d(3, 16, 3, same, vb.pp("conv1"))?,
            conv2: conv2d(16, 32, 3, same, vb.pp("conv2"))?,
            fc: linear(32 * 8 * 8, classes, vb.pp("fc"))?,
        })
    }
}

impl Forward for MyCnn {
    fn forward_t(&self, x: &Tensor, _mode: &Mode) -> taper::nn::candle::Result<Tensor> {
        let x = max_pool2d(&relu(&self.conv1.forward(x)?)?, 2)?;
        let x = max_pool2d(&relu(&self.conv2.forward(&x)?)?, 2)?;
        self.fc.forward(&x.flatten_from(1)?)
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, folder, run, image] = &args[..] else {
        println!("usage: custom_cnn IMAGE_FOLDER RUN_DIR IMAGE_TO_CLASSIFY");
        let help = args.iter().any(|a| a == "--help" || a == "-h");
        anyhow::ensure!(help, "expected 3 arguments, got {}", args.len() - 1);
        return Ok(());
    };
    let device = taper::nn::candle::Device::Cpu;

    // Data: resized to 32x32, normalised to -1..1, 20 % of each class held out.
    let norm = Normalize::symmetric(3);
    let images = ImageFolder::open(folder.as_ref(), 3, OnBadFile::Fail)?
        .with_transform(Compose::new().then(Resize::new(32, 32)), 0)
        .with_normalize(norm.clone());
    let classes = images.classes().to_vec();
    let labels: Vec<u32> = images.items().iter().map(|(_, l)| *l).collect();
    let (train, valid) = random_split(images, 0.2, 42, Some(&labels))?;
    let loader = |d, cfg| DataLoader::from_dataset(d, StackBatcher::new(&device), cfg);
    let train = loader(train, LoaderConfig::train(16, 42))?;
    let valid = loader(valid, LoaderConfig::eval(64))?;

    // Model: the network above, with what feeding it needs (saved with the run).
    let pre = Preprocessing::new(3, (32, 32), classes.clone()).with_normalize(&norm);
    let n = classes.len();
    let mut model = ImageClassifier::custom("my-cnn", pre, 42, &device, |vb| MyCnn::new(n, vb))?;

    // Training: Adam, 20 epochs; the best epoch on the validation loss is kept.
    let adam = Adam::new(named_vars(model.varmap(), ""), AdamConfig::adamw(3e-3));
    let mut opt = Optimizers::single(adam);
    let config = TrainerConfig {
        epochs: 20,
        run_dir: Some(run.into()),
        ..Default::default()
    };
    Trainer::new(config).fit(&mut model, &mut opt, &train, Some(&valid))?;

    // Later, anywhere: load the run and predict by class name.
    let loaded =
        ImageClassifier::load_custom(run.as_ref(), &device, "my-cnn", |vb| MyCnn::new(n, vb))?;
    let top = loaded.predict_path(image.as_ref(), 2)?;
    let (best, p) = top.first().context("no class")?;
    println!("{image}: {best} ({:.1} %)", 100.0 * p);
    let json = serde_json::json!({"example": "custom_cnn", "top": top});
    println!("{json}");
    Ok(())
}
