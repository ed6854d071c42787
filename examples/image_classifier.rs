//! Train an image classifier on a folder of your own images, one sub-folder per
//! class (PNG, JPEG, GIF, BMP), and use it:
//!
//! ```text
//! cargo run --release --example image_classifier -- --data photos/ --out runs/photos
//! cargo run --release --example image_classifier -- --predict cat.jpg --resume runs/photos
//! ```
//!
//! A seeded, stratified `--valid-fraction` of the images (0.1) is held out:
//! keep-best and early stopping watch it, and the final figures are those of the
//! kept checkpoint. `--test DIR` (a folder laid out the same way) is evaluated
//! once, at the end. Hidden entries (`.ipynb_checkpoints`) are not classes;
//! unreadable or oversized files are skipped and listed.

use anyhow::{bail, Result};
use clap::Parser;
use std::path::PathBuf;
use taper::train::cli::ExampleArgs;
use taper::train::data::{random_split, DataLoader, Dataset, LoaderConfig, StackBatcher};
use taper::train::{Optimizers, Trainer};
use taper::vision::datasets::{ImageFolder, OnBadFile};
use taper::vision::transforms::{Compose, HorizontalFlip, Normalize, RandomAffine, Resize};
use taper::vision::{ClassifierConfig, ImageClassifier, Preprocessing};

#[global_allocator]
static GLOBAL: taper::alloc::Allocator = taper::alloc::Allocator;

#[derive(Parser, Debug)]
#[command(
    about = "Train an image classifier on a folder of class sub-folders, or predict with one",
    after_help = "Here --data DIR is the image folder itself, one sub-folder of images per class (DIR/cats/*.jpg, DIR/dogs/*.jpg), not a data root."
)]
struct Args {
    #[command(flatten)]
    common: ExampleArgs,
    /// Network: lenet, cnn (batch norm) or resnet.
    #[arg(long, default_value = "cnn")]
    model: String,
    /// Images are resized to SIZE x SIZE.
    #[arg(long, default_value_t = 32)]
    image_size: usize,
    /// 3 (RGB) or 1 (grey).
    #[arg(long, default_value_t = 3)]
    channels: usize,
    /// Random flips, rotations, shifts and zooms of the training images.
    #[arg(long)]
    augment: bool,
    /// A folder laid out like --data, evaluated once at the end.
    #[arg(long, value_name = "DIR")]
    test: Option<PathBuf>,
    /// Classify this image with the run given by --resume.
    #[arg(long, value_name = "IMAGE")]
    predict: Option<PathBuf>,
    /// Classes shown by --predict.
    #[arg(long, default_value_t = 3)]
    top: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let c = &args.common;
    let device = c.device()?;
    if let Some(image) = &args.predict {
        c.reject("image_classifier --predict", ExampleArgs::TRAINING)?;
        let Some(run) = &c.resume else {
            bail!("--predict needs --resume RUN, the run directory of a trained classifier");
        };
        let top = ImageClassifier::load(run, &device)?.predict_path(image, args.top)?;
        for (name, p) in &top {
            println!("{name}: {p:.4}");
        }
        println!(
            "{}",
            serde_json::json!({"example": "image_classifier", "image": image, "top": top})
        );
        return Ok(());
    }
    let Some(data) = &c.data else {
        bail!("--data DIR is required: a folder with one sub-folder of images per class");
    };
    let s = args.image_size;
    // Normalised to about [-1, 1]; the same preprocessing is saved with the run.
    let norm = Normalize {
        mean: vec![0.5; args.channels],
        std: vec![0.5; args.channels],
    };
    let pipeline = |augment: bool| {
        let plain = Compose::new().then(Resize::new(s as u32, s as u32));
        if !augment {
            return plain;
        }
        let affine = RandomAffine {
            degrees: 10.0,
            translate: (0.1, 0.1),
            scale: (0.9, 1.1),
        };
        plain.then(HorizontalFlip { p: 0.5 }).then(affine)
    };
    let open = |p: Compose| -> Result<ImageFolder> {
        Ok(ImageFolder::open(data, args.channels, OnBadFile::Skip)?
            .with_transform(p, c.seed)
            .with_normalize(norm.clone()))
    };
    let folder = open(pipeline(args.augment))?;
    for (file, why) in folder.skipped() {
        eprintln!("skipped {}: {why}", file.display());
    }
    let skipped = folder.skipped().len();
    let classes = folder.classes().to_vec();
    let labels: Vec<u32> = folder.items().iter().map(|(_, l)| *l).collect();
    // Two views of the same files: augmented for training, plain for validation.
    let (train, _) = random_split(folder, c.valid_fraction()?, c.seed, Some(&labels))?;
    let (_, valid) = random_split(
        open(pipeline(false))?,
        c.valid_fraction()?,
        c.seed,
        Some(&labels),
    )?;
    println!(
        "{} classes {classes:?}: {} training and {} validation images",
        classes.len(),
        train.len(),
        valid.len()
    );
    let batch = c.batch_size.unwrap_or(32);
    let loader = |d, cfg| DataLoader::from_dataset(d, StackBatcher::new(&device), cfg);
    let train = loader(train, LoaderConfig::train(batch, c.seed))?;
    let valid = loader(valid, LoaderConfig::eval(256))?;

    let pre = Preprocessing::new(args.channels, (s, s), classes.clone()).with_normalize(&norm);
    let config = ClassifierConfig::for_images(&args.model, args.channels, (s, s), classes.len())?;
    let mut model = ImageClassifier::new(config, pre, c.seed, &device)?;
    let epochs = c.epochs_or(15)?;
    let lr = c.lr.unwrap_or(3e-3);
    let batches = train.num_batches();
    let mut opt =
        Optimizers::adamw_one_cycle(model.varmap(), lr, 0.01, epochs, batches, c.accumulate);
    let run_dir = c.run_dir("image_classifier")?;
    let config = serde_json::json!({"example": "image_classifier", "data": data, "model": args.model,
        "image_size": s, "channels": args.channels, "augment": args.augment, "lr": lr, "batch_size": batch});
    // Keep-best and early stopping watch the validation loss: on a small folder
    // the accuracy reaches 100 % long before the model is confident.
    let trainer_config = taper::train::TrainerConfig {
        early_stopping_patience: Some(8),
        ..c.trainer_config("image_classifier", epochs, config)?
    };
    let report = Trainer::new(trainer_config).fit(&mut model, &mut opt, &train, Some(&valid))?;

    // The figures of the kept (best validation) checkpoint.
    model.load_checkpoint(&run_dir)?;
    let valid_acc = Trainer::evaluate(&mut model, &valid)?.mean("accuracy");
    let test_acc = match &args.test {
        Some(dir) => {
            let t = ImageFolder::open(dir, args.channels, OnBadFile::Skip)?
                .with_transform(pipeline(false), c.seed)
                .with_normalize(norm);
            if t.classes() != classes.as_slice() {
                bail!(
                    "{}: classes {:?} differ from the training folder's {classes:?}",
                    dir.display(),
                    t.classes()
                );
            }
            let test =
                DataLoader::from_dataset(t, StackBatcher::new(&device), LoaderConfig::eval(256))?;
            Trainer::evaluate(&mut model, &test)?.mean("accuracy")
        }
        None => None,
    };
    println!(
        "run directory: {} (predict with --predict IMAGE --resume {0})",
        run_dir.display()
    );
    println!(
        "{}",
        serde_json::json!({"example": "image_classifier", "model": args.model, "classes": classes,
            "epochs": report.history.len(), "valid_accuracy": valid_acc, "test_accuracy": test_acc,
            "skipped": skipped, "run_dir": run_dir, "seconds": report.seconds})
    );
    Ok(())
}
