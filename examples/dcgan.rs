//! DCGAN on the embedded 8x8 digits (default, seconds), MNIST or Fashion-MNIST,
//! optionally conditioned on the class (`--conditional`), trained by Taper's
//! `Trainer` with two Adam groups (`d`, `g`). After each epoch it writes a grid of
//! samples from a fixed noise batch (`samples/epoch-NNNNN.png`) and the grids so far
//! as an animation (`samples/progress.gif`). At the end it scores 10,000 samples
//! with a LeNet trained by `examples/mnist_cnn` (`--classifier RUN_DIR`; one is
//! trained and cached when missing): Inception Score and Fréchet distance of the
//! LeNet's penultimate features, beside the same figures for the real test set.
//!
//! `cargo run --release --example dcgan` (digits) or `-- --dataset mnist`;
//! `--resume RUN_DIR` continues a run; `--generate N --resume RUN_DIR [--out DIR]
//! [--class K]` samples from a trained run.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use clap::Parser;
use std::path::{Path, PathBuf};
use std::time::Instant;
use taper::nn::Mode;
use taper::train::checkpoint;
use taper::train::data::{
    root::require_dir, split_indices, DataLoader, LoaderConfig, TensorDataset,
};
use taper::train::optim::{named_vars, Adam, AdamConfig};
use taper::train::record::EpochRecord;
use taper::train::schedule::OneCycle;
use taper::train::{
    cli::ExampleArgs, clip::Clip, Callback, Classifier, Control, Optimizers, Trainer, TrainerConfig,
};
use taper::vision::datasets::{digits, load_digits, load_mnist, Split};
use taper::vision::grid::{save_gif, save_grid};
use taper::vision::metrics::{GanScores, GaussianStats};
use taper::vision::models::dcgan::{noise, GanOptimConfig, Generator};
use taper::vision::models::{Dcgan, DcganConfig, LeNet, LeNetConfig};
use taper::vision::transforms::Normalize;

#[global_allocator]
static GLOBAL: taper::alloc::Allocator = taper::alloc::Allocator;

#[derive(Parser, Debug)]
#[command(about = "Train a DCGAN on digits, MNIST or Fashion-MNIST, or sample from one")]
struct Args {
    #[command(flatten)]
    common: ExampleArgs,
    /// digits (embedded, 8x8), mnist or fashion-mnist (28x28).
    #[arg(long, default_value = "digits")]
    dataset: String,
    /// Condition both networks on the class label.
    #[arg(long)]
    conditional: bool,
    /// Run directory of a LeNet trained by mnist_cnn on the same data set, for IS/FID
    /// (default runs/classifier-<dataset>, trained there when missing).
    #[arg(long, value_name = "RUN_DIR")]
    classifier: Option<PathBuf>,
    /// Generated samples scored for IS/FID (0: skip the scores).
    #[arg(long, default_value_t = 10_000)]
    eval_samples: usize,
    /// Sample N images from the trained run in --resume (or --out) instead of training.
    #[arg(long, value_name = "N")]
    generate: Option<usize>,
    /// Width of both networks (generator's last hidden layer, discriminator's first);
    /// default 32 (DcganConfig), the paper's is 64.
    #[arg(long)]
    width: Option<usize>,
    /// With --generate and a conditional model: the class to draw (default: 0..9 in turn).
    #[arg(long)]
    class: Option<u32>,
}

struct Data {
    train_x: Tensor,
    train_y: Tensor,
    /// Real images (0..1) the generated ones are compared with, and their labels.
    test_x: Tensor,
    test_y: Tensor,
    side: usize,
}

fn load(dataset: &str, c: &ExampleArgs) -> Result<Data> {
    Ok(match dataset {
        "digits" => {
            let (x, y) = load_digits(&digits::default_digits_path())?;
            let (tr, te) = split_indices(x.dim(0)?, 0.2, c.seed)?;
            let all = TensorDataset::new(vec![x, y], &Device::Cpu)?;
            let (a, b) = (all.subset(&tr)?, all.subset(&te)?);
            Data {
                train_x: a.fields()[0].clone(),
                train_y: a.fields()[1].clone(),
                test_x: b.fields()[0].clone(),
                test_y: b.fields()[1].clone(),
                side: 8,
            }
        }
        name @ ("mnist" | "fashion-mnist") => {
            let dir = require_dir(&c.data_root(), name)?;
            let (x, y) = load_mnist(&dir, Split::Train)?;
            let (tx, ty) = load_mnist(&dir, Split::Test)?;
            Data {
                train_x: x,
                train_y: y,
                test_x: tx,
                test_y: ty,
                side: 28,
            }
        }
        other => bail!("unknown --dataset '{other}' (digits, mnist or fashion-mnist)"),
    })
}

fn gan_config(dataset: &str, conditional: bool, width: Option<usize>) -> DcganConfig {
    let mut cfg = if dataset == "digits" {
        DcganConfig::digits()
    } else {
        DcganConfig::mnist()
    };
    if let Some(w) = width {
        cfg.gen_width = w;
        cfg.disc_width = w;
    }
    if conditional {
        cfg.conditional(10)
    } else {
        cfg
    }
}

/// Fixed noise (and labels) of the per-epoch grids: 10 columns, one class each
/// when conditional.
fn fixed_batch(cfg: &DcganConfig, seed: u64, device: &Device) -> Result<(Tensor, Option<Tensor>)> {
    let n = 100;
    let z = noise(seed, "fixed", 0, n, cfg.latent, device)?;
    let labels = cfg
        .classes
        .map(|k| {
            let l: Vec<u32> = (0..n as u32).map(|i| i % k as u32).collect();
            Tensor::from_vec(l, n, device)
        })
        .transpose()?;
    Ok((z, labels))
}

/// Writes the grid of each epoch and the animation of all grids so far.
struct SampleGrids {
    gen: Generator,
    z: Tensor,
    labels: Option<Tensor>,
    dir: PathBuf,
    scale: u32,
}

impl Callback for SampleGrids {
    fn on_epoch_end(&mut self, record: &EpochRecord) -> taper::train::Result<Control> {
        std::fs::create_dir_all(&self.dir).map_err(|e| taper::train::Error::io(&self.dir, e))?;
        let x = self
            .gen
            .forward_t(&self.z, self.labels.as_ref(), &Mode::eval())?;
        let path = self.dir.join(format!("epoch-{:05}.png", record.epoch + 1));
        save_grid(&x, 10, self.scale, (-1.0, 1.0), &path)?;
        // Earlier epochs' grids come from disk, so a resumed run's animation is whole.
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(|e| taper::train::Error::io(&self.dir, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("epoch-") && n.ends_with(".png"))
            })
            .collect();
        names.sort();
        let frames = names
            .iter()
            .filter_map(|p| image::open(p).ok().map(|i| i.to_luma8()))
            .collect::<Vec<_>>();
        save_gif(&frames, 500, &self.dir.join("progress.gif"))?;
        Ok(Control::Continue)
    }
}

fn lenet_config(side: usize) -> LeNetConfig {
    if side == 8 {
        LeNetConfig::digits()
    } else {
        LeNetConfig::mnist()
    }
}

/// The LeNet of `dir` (a mnist_cnn run), or one trained there now.
fn classifier(
    dir: &Path,
    data: &Data,
    dataset: &str,
    c: &ExampleArgs,
    device: &Device,
) -> Result<LeNet> {
    let varmap = VarMap::new();
    let vb = taper::nn::init::seeded_var_builder(&varmap, c.seed, DType::F32, device);
    let model = LeNet::new(lenet_config(data.side), vb)?;
    let ck = match checkpoint::read(dir, "best")? {
        Some(ck) => Some(ck),
        None => checkpoint::read(dir, "latest")?,
    };
    if let Some(ck) = ck {
        let trained_on = ck.state.config["dataset"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        if trained_on != dataset || ck.state.config["model"].as_str() != Some("lenet") {
            bail!(
                "classifier {} is a {} trained on {trained_on}; IS/FID on {dataset} need a lenet trained on {dataset}",
                dir.display(),
                ck.state.config["model"].as_str().unwrap_or("?")
            );
        }
        ck.load_weights(&varmap)?;
        eprintln!("classifier: {} ({})", dir.display(), ck.dir.display());
        return Ok(model);
    }
    let epochs = if data.side == 8 { 20 } else { 1 };
    eprintln!(
        "classifier: none in {}; training a LeNet there ({epochs} epochs, as `mnist_cnn --dataset {dataset} --epochs {epochs}`)",
        dir.display()
    );
    let norm = Normalize::mnist();
    let train = TensorDataset::new(
        vec![norm.apply(&data.train_x)?, data.train_y.clone()],
        device,
    )?;
    let test = TensorDataset::new(vec![norm.apply(&data.test_x)?, data.test_y.clone()], device)?;
    let batch = if data.side == 8 { 32 } else { 128 };
    let train = DataLoader::new(train, LoaderConfig::train(batch, c.seed))?;
    let test = DataLoader::new(test, LoaderConfig::eval(500))?;
    let lr = 3e-3;
    let adam = Adam::new(
        named_vars(&varmap, ""),
        AdamConfig {
            lr,
            weight_decay: 1e-4,
            decoupled_weight_decay: true,
            ..Default::default()
        },
    );
    let mut opt = Optimizers::new().with_group(
        "model",
        adam,
        OneCycle::new(lr, epochs * train.num_batches()),
        Clip::GlobalNorm(5.0),
    );
    let mut clf = Classifier::new(model, varmap.clone());
    let mut trainer = Trainer::new(TrainerConfig {
        epochs,
        run_dir: Some(dir.to_path_buf()),
        seed: c.seed,
        monitor: Some((
            "valid.accuracy".into(),
            taper::train::schedule::Direction::Max,
        )),
        verbose: true,
        config: serde_json::json!({"example": "mnist_cnn", "dataset": dataset, "model": "lenet",
            "augment": false, "lr": lr, "batch_size": batch, "epochs": epochs, "trained_by": "dcgan"}),
        ..Default::default()
    });
    trainer.fit(&mut clf, &mut opt, &train, Some(&test))?;
    Ok(clf.model)
}

/// `n` samples in 0..1 (labels 0..9 in turn when conditional).
fn sample(gan: &Dcgan, n: usize, class: Option<u32>, device: &Device) -> Result<Tensor> {
    let mut out = Vec::new();
    for (b, s) in (0..n).step_by(500).enumerate() {
        let m = 500.min(n - s);
        let z = gan.noise("eval", b as u64, m, device)?;
        let labels = match gan.config().classes {
            Some(k) => {
                let l: Vec<u32> = (s..s + m)
                    .map(|i| class.unwrap_or((i % k) as u32))
                    .collect();
                Some(Tensor::from_vec(l, m, device)?)
            }
            None if class.is_some() => {
                bail!("--class needs a conditional model (trained with --conditional)")
            }
            None => None,
        };
        out.push(((gan.generate(&z, labels.as_ref())? + 1.0)? / 2.0)?);
    }
    Ok(Tensor::cat(&out, 0)?)
}

fn generate(args: &Args, n: usize, device: &Device) -> Result<()> {
    let c = &args.common;
    let run = c
        .resume
        .as_ref()
        .or(c.out.as_ref())
        .context("--generate needs the trained run: --resume RUN_DIR (or --out RUN_DIR)")?;
    let ck = checkpoint::read(run, "latest")?
        .with_context(|| format!("{}: no checkpoint; train first", run.display()))?;
    let cfg = &ck.state.config;
    let dataset = cfg["dataset"].as_str().unwrap_or("digits").to_string();
    let conditional = cfg["conditional"].as_bool().unwrap_or(false);
    let width = cfg["width"].as_u64().map(|w| w as usize);
    let varmap = VarMap::new();
    let gan = Dcgan::new(
        gan_config(&dataset, conditional, width),
        &varmap,
        c.seed,
        device,
    )?;
    gan.load_weights(&ck.weights_path())?;
    if let (Some(k), Some(cls)) = (gan.config().classes, args.class) {
        if cls as usize >= k {
            bail!(
                "class {cls} was not trained on: this DCGAN knows classes 0..{}",
                k - 1
            );
        }
    }
    let x = sample(&gan, n, args.class, device)?;
    let out = match (&c.resume, &c.out) {
        (Some(_), Some(o)) => o.clone(),
        _ => run.join("generated"),
    };
    std::fs::create_dir_all(&out)?;
    let scale = if gan.config().image_size == 8 { 4 } else { 2 };
    let grid = out.join("samples.png");
    save_grid(&x, 10.min(n), scale, (0.0, 1.0), &grid)?;
    for i in 0..n {
        save_grid(
            &x.narrow(0, i, 1)?,
            1,
            1,
            (0.0, 1.0),
            &out.join(format!("sample-{i:05}.png")),
        )?;
    }
    println!(
        "{n} samples of {dataset} in {} (grid: {})",
        out.display(),
        grid.display()
    );
    println!(
        "{}",
        serde_json::json!({"example": "dcgan", "generated": n, "dataset": dataset, "conditional": conditional,
            "class": args.class, "out": out, "grid": grid})
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let c = &args.common;
    let device = c.device()?;
    if let Some(n) = args.generate {
        return generate(&args, n, &device);
    }
    let started = Instant::now();
    let data = load(&args.dataset, c)?;
    let (epochs, batch) = if args.dataset == "digits" {
        (30, 64)
    } else {
        (5, 64)
    };
    let epochs = c.epochs.unwrap_or(epochs);
    let batch = c.batch_size.unwrap_or(batch);
    let o = GanOptimConfig {
        lr_d: c.lr.unwrap_or(2e-4),
        lr_g: c.lr.unwrap_or(2e-4),
        ..Default::default()
    };
    let cfg = gan_config(&args.dataset, args.conditional, args.width);
    let varmap = VarMap::new();
    let mut gan = Dcgan::new(cfg, &varmap, c.seed, &device)?;
    let mut opt = gan.optimizers(o);
    // tanh's range: the generator's images are compared with real ones in [-1, 1].
    let x = data.train_x.affine(2.0, -1.0)?;
    let src = TensorDataset::new(vec![x, data.train_y.clone()], &device)?;
    let train = DataLoader::new(
        src,
        LoaderConfig {
            drop_last: true,
            ..LoaderConfig::train(batch, c.seed)
        },
    )?;
    let run_dir = c.run_dir("dcgan");
    if c.resume.is_some() {
        let ck = checkpoint::read(&run_dir, "latest")?
            .with_context(|| format!("{}: no checkpoint to resume", run_dir.display()))?;
        gan.load_weights(&ck.weights_path())?;
    }
    let (z, labels) = fixed_batch(&cfg, c.seed, &device)?;
    let grids = SampleGrids {
        gen: gan.gen.clone(),
        z,
        labels,
        dir: run_dir.join("samples"),
        scale: if data.side == 8 { 4 } else { 2 },
    };
    let mut trainer = Trainer::new(TrainerConfig {
        epochs,
        run_dir: Some(run_dir.clone()),
        seed: c.seed,
        resume: c.resume.is_some(),
        config: serde_json::json!({"example": "dcgan", "dataset": args.dataset, "conditional": args.conditional,
            "lr_d": o.lr_d, "lr_g": o.lr_g, "beta1": o.beta1, "batch_size": batch, "epochs": epochs,
            "latent": cfg.latent, "width": cfg.gen_width}),
        ..Default::default()
    })
    .with_callback(grids);
    let report = trainer.fit(&mut gan, &mut opt, &train, None)?;
    let train_seconds = report.seconds;
    let steps = report.history.len().saturating_sub(report.resumed_at) * train.num_batches();
    let step_ms = 1000.0 * train_seconds / steps.max(1) as f64;
    let last = report.last().context("no epoch was run")?;
    println!("run directory: {}", run_dir.display());
    println!(
        "dcgan {}{}: {} epochs, d_loss {:.3}, g_loss {:.3}, D(real) {:.3}, D(fake) {:.3}, {:.0} ms a step",
        args.dataset,
        if args.conditional { " (conditional)" } else { "" },
        report.history.len(),
        last.train["d_loss"],
        last.train["g_loss"],
        last.train["d_real"],
        last.train["d_fake"],
        step_ms
    );
    let mut json = serde_json::json!({"example": "dcgan", "dataset": args.dataset, "conditional": args.conditional,
        "epochs": report.history.len(), "train_seconds": train_seconds, "step_ms": step_ms,
        "d_loss": last.train["d_loss"], "g_loss": last.train["g_loss"],
        "inception_score": null, "frechet_distance": null, "run_dir": run_dir});
    if args.eval_samples > 0 {
        let t0 = Instant::now();
        let dir = args
            .classifier
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join(format!("classifier-{}", args.dataset)));
        let clf = classifier(&dir, &data, &args.dataset, c, &device)?;
        // Reference statistics: real training images (at most 10,000), so the real
        // test set's distance is the floor a perfect generator would reach.
        let n_ref = data.train_x.dim(0)?.min(10_000);
        let ref_x = data.train_x.narrow(0, 0, n_ref)?.to_device(&device)?;
        let (_, ref_f) = taper::vision::metrics::classifier_outputs(&clf, &ref_x, 500)?;
        let reference = GaussianStats::from_features(&ref_f)?;
        let splits = if args.eval_samples >= 1000 { 10 } else { 1 };
        let real_x = data.test_x.to_device(&device)?;
        let real_splits = if real_x.dim(0)? >= 1000 { 10 } else { 1 };
        let real = GanScores::compute(&clf, &real_x, &reference, real_splits)?;
        let fake_x = sample(&gan, args.eval_samples, None, &device)?;
        let fake = GanScores::compute(&clf, &fake_x, &reference, splits)?;
        println!(
            "Inception Score {:.3} ± {:.3} (real test set {:.3}), Fréchet distance {:.3} (real test set {:.3}); {} samples, {:.0} s",
            fake.inception_score,
            fake.inception_score_std,
            real.inception_score,
            fake.frechet_distance,
            real.frechet_distance,
            args.eval_samples,
            t0.elapsed().as_secs_f64()
        );
        json["inception_score"] = fake.inception_score.into();
        json["inception_score_std"] = fake.inception_score_std.into();
        json["frechet_distance"] = fake.frechet_distance.into();
        json["real_inception_score"] = real.inception_score.into();
        json["real_frechet_distance"] = real.frechet_distance.into();
        json["eval_samples"] = args.eval_samples.into();
        json["classifier"] = serde_json::json!(dir);
    }
    json["seconds"] = started.elapsed().as_secs_f64().into();
    println!("{json}");
    Ok(())
}
