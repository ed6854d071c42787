//! Why did the CNN say that? Grad-CAM, Integrated Gradients and SmoothGrad for the
//! digit classifier, written as PNG overlays, plus the model-parameter
//! randomisation sanity check (attributions of the trained model against those of
//! the same network with fresh random weights).
//!
//! With no arguments it trains LeNet on the embedded digits for a few seconds and
//! explains held-out digits. `--resume RUN_DIR` explains a run of `mnist_cnn`
//! (e.g. one trained with `--dataset mnist`) on its test set; `--image PHOTO`
//! explains the prediction for a photograph, with the maps laid over the photo.
//! `--translation RUN --sentence TEXT` draws the attention map of a trained
//! `translate` model (LSTM or Transformer) for one sentence.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, IndexOp, Tensor, D};
use candle_nn::VarMap;
use clap::Parser;
use std::path::{Path, PathBuf};
use taper::nlp::seq2seq::{attention_rgb, Translator};
use taper::train::checkpoint;
use taper::train::data::{
    root::require_dir, split_indices, DataLoader, LoaderConfig, TensorDataset,
};
use taper::train::explain::{
    grad_cam, integrated_gradients, rank_correlation, smooth_grad, to_map,
};
use taper::train::optim::{named_vars, Adam, AdamConfig};
use taper::train::{cli::ExampleArgs, Classifier, Optimizers, Trainer, TrainerConfig};
use taper::vision::datasets::{digits, load_digits, load_mnist, Split};
use taper::vision::grid::overlay_rgb;
use taper::vision::models::{LeNet, LeNetConfig};
use taper::vision::transforms::{open_image, to_tensor, Compose, Normalize, Resize};

#[global_allocator]
static GLOBAL: taper::alloc::Allocator = taper::alloc::Allocator;

#[derive(Parser, Debug)]
#[command(
    about = "Attribution maps (Grad-CAM, Integrated Gradients, SmoothGrad) for the digit CNN"
)]
struct Args {
    #[command(flatten)]
    common: ExampleArgs,
    /// How many test images to explain.
    #[arg(long, default_value_t = 8)]
    count: usize,
    /// Integrated Gradients path points.
    #[arg(long, default_value_t = 128)]
    steps: usize,
    /// Explain the prediction for this photo instead of test images.
    #[arg(long, value_name = "PHOTO")]
    image: Option<PathBuf>,
    /// Draw the attention of a trained translation model instead: a run
    /// directory of the translate example (`translate --task dates`).
    #[arg(long, value_name = "RUN")]
    translation: Option<PathBuf>,
    /// The sentence to translate with `--translation`.
    #[arg(long, default_value = "14 March 2015")]
    sentence: String,
}

/// `--translation RUN`: translates `--sentence`, writes its attention heat map
/// (rows: output tokens, columns: source tokens) and the tokens beside it.
fn attention_map(args: &Args, run: &Path, device: &Device) -> Result<()> {
    let t = Translator::load(run, device)?;
    let a = t.align(&args.sentence)?;
    let out_dir = run.join("explain");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let (w, h, rgb) = attention_rgb(&a.weights, 24);
    let png = out_dir.join("attention.png");
    image::RgbImage::from_raw(w as u32, h as u32, rgb)
        .context("attention map size")?
        .save(&png)
        .with_context(|| format!("writing {}", png.display()))?;
    let txt = out_dir.join("attention.txt");
    std::fs::write(
        &txt,
        format!(
            "columns (source): {}\nrows (output): {}\n",
            a.source.join(" | "),
            a.output.join(" | ")
        ),
    )
    .with_context(|| format!("writing {}", txt.display()))?;
    // Where each output token looks most: the alignment a reader checks first.
    let peaks: Vec<String> = a
        .output
        .iter()
        .zip(&a.weights)
        .map(|(o, row)| {
            let (j, w) =
                row.iter()
                    .enumerate()
                    .fold((0, f32::MIN), |b, (j, &v)| if v > b.1 { (j, v) } else { b });
            format!(
                "{o} <- {} ({w:.2})",
                a.source.get(j).cloned().unwrap_or_default()
            )
        })
        .collect();
    for p in &peaks {
        eprintln!("  {p}");
    }
    println!(
        "{}",
        serde_json::json!({"example": "explain", "mode": "attention", "sentence": args.sentence,
            "translation": a.text, "source_tokens": a.source.len(), "output_tokens": a.output.len(),
            "peaks": peaks, "map": png, "tokens": txt, "checkpoint": t.checkpoint})
    );
    Ok(())
}

/// The trained model, its data set name, and its test images (normalised).
fn model(args: &Args, device: &Device) -> Result<(LeNet, String, Tensor, Tensor)> {
    let c = &args.common;
    if let Some(run) = &c.resume {
        let ck = checkpoint::read(run, "best")?
            .or(checkpoint::read(run, "latest")?)
            .with_context(|| {
                format!(
                    "{}: no checkpoint; train with mnist_cnn first",
                    run.display()
                )
            })?;
        let cfg = &ck.state.config;
        if cfg["model"].as_str().unwrap_or("lenet") != "lenet" {
            bail!(
                "{}: explain supports mnist_cnn runs of --model lenet",
                run.display()
            );
        }
        let dataset = cfg["dataset"].as_str().unwrap_or("digits").to_string();
        let varmap = VarMap::new();
        let vb = taper::nn::init::seeded_var_builder(&varmap, 0, DType::F32, device);
        let (net, tx, ty) = if dataset == "digits" {
            let (x, y) = load_digits(&digits::default_digits_path())?;
            (LeNet::new(LeNetConfig::digits(), vb)?, x, y)
        } else {
            let (x, y) = load_mnist(&require_dir(&c.data_root(), &dataset)?, Split::Test)?;
            (LeNet::new(LeNetConfig::mnist(), vb)?, x, y)
        };
        ck.load_weights(&varmap)?;
        let tx = Normalize::mnist().apply(&tx.to_device(device)?)?;
        return Ok((net, dataset, tx, ty));
    }
    // No run given: a LeNet on the embedded digits, trained here in seconds.
    let (x, y) = load_digits(&digits::default_digits_path())?;
    let (tr, te) = split_indices(x.dim(0)?, 0.2, c.seed)?;
    let x = Normalize::mnist().apply(&x)?;
    let all = TensorDataset::new(vec![x, y], device)?;
    let (train, test) = (all.subset(&tr)?, all.subset(&te)?);
    let (tx, ty) = (test.fields()[0].clone(), test.fields()[1].clone());
    let varmap = VarMap::new();
    let vb = taper::nn::init::seeded_var_builder(&varmap, c.seed, DType::F32, device);
    let net = LeNet::new(LeNetConfig::digits(), vb)?;
    let mut clf = Classifier::new(net, varmap.clone());
    let adam = Adam::new(
        named_vars(&varmap, ""),
        AdamConfig {
            lr: 3e-3,
            ..Default::default()
        },
    );
    let loader = DataLoader::new(train, LoaderConfig::train(32, c.seed))?;
    Trainer::new(TrainerConfig {
        epochs: c.epochs.unwrap_or(10),
        seed: c.seed,
        progress: false,
        verbose: false,
        ..Default::default()
    })
    .fit(&mut clf, &mut Optimizers::single(adam), &loader, None)?;
    Ok((clf.model, "digits".into(), tx, ty))
}

/// `(C, H, W)` image in 0..1 (after undoing the MNIST normalisation).
fn display(x: &Tensor) -> Result<Tensor> {
    Ok((x * 0.3081)?.affine(1.0, 0.1307)?.clamp(0.0, 1.0)?)
}

/// RGB bytes of an image, its width and height.
type Tile = (Vec<u8>, u32, u32);

/// A strip of tiles, each `side` pixels square, scaled with nearest neighbours.
fn save_strip(path: &Path, tiles: &[Tile], side: u32) -> Result<()> {
    let mut out = image::RgbImage::new(side * tiles.len() as u32, side);
    for (k, (rgb, w, h)) in tiles.iter().enumerate() {
        let tile = image::RgbImage::from_raw(*w, *h, rgb.clone()).context("tile size")?;
        let big = image::imageops::resize(&tile, side, side, image::imageops::FilterType::Nearest);
        image::imageops::replace(&mut out, &big, (k as u32 * side) as i64, 0);
    }
    out.save(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = args.common.device()?;
    if let Some(run) = &args.translation {
        return attention_map(&args, run, &device);
    }
    let (net, dataset, tx, ty) = model(&args, &device)?;
    let out_dir = args.common.run_dir("explain");
    let out_dir = if args.common.resume.is_some() {
        out_dir.join("explain")
    } else {
        out_dir
    };
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let logits = |t: &Tensor| -> taper::train::Result<Tensor> {
        Ok(net.head_from_conv(&net.conv_features(t)?)?)
    };

    if let Some(photo) = &args.image {
        let side = tx.dim(2)? as u32;
        let img = open_image(photo)?;
        let grey = Compose::new()
            .then(Resize::new(side, side))
            .apply(img.clone(), 0)?;
        let mut x = to_tensor(&grey, 1, &device)?;
        // Dark strokes on light paper become the training sets' light-on-dark.
        if x.mean_all()?.to_scalar::<f32>()? > 0.5 {
            x = (1.0 - x)?;
        }
        let x = Normalize::mnist().apply(&x.unsqueeze(0)?)?;
        let pred = logits(&x)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let cam = grad_cam(
            |t| Ok(net.conv_features(t)?),
            |f| Ok(net.head_from_conv(f)?),
            &x,
            &pred,
        )?;
        // The map, scaled up to the photo, over the photo itself.
        let rgb = img.to_rgb8();
        let (w, h) = rgb.dimensions();
        let big = cam
            .unsqueeze(1)?
            .upsample_bilinear2d(h as usize, w as usize, false)?;
        let photo_t = Tensor::from_vec(rgb.into_raw(), (h as usize, w as usize, 3), &Device::Cpu)?
            .permute((2, 0, 1))?
            .to_dtype(DType::F32)?
            .affine(1.0 / 255.0, 0.0)?;
        let over = overlay_rgb(&photo_t, &big.i((0, 0))?.to_device(&Device::Cpu)?, 0.5)?;
        let path = out_dir.join("photo_gradcam.png");
        image::RgbImage::from_raw(w, h, over)
            .context("overlay size")?
            .save(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "{}: predicted {} ; Grad-CAM over the photo in {}",
            photo.display(),
            pred[0],
            path.display()
        );
        println!(
            "{}",
            serde_json::json!({"example": "explain", "image": photo, "prediction": pred[0],
                "files": [path]})
        );
        return Ok(());
    }

    let n = args.count.min(tx.dim(0)?).max(1);
    let x = tx.narrow(0, 0, n)?;
    let labels: Vec<u32> = ty.narrow(0, 0, n)?.to_vec1()?;
    let pred: Vec<u32> = logits(&x)?.argmax(D::Minus1)?.to_vec1()?;
    // Explain the predicted class; a black image (normalised) is the IG baseline.
    let baseline = Normalize::mnist().apply(&x.zeros_like()?)?;
    let cam = grad_cam(
        |t| Ok(net.conv_features(t)?),
        |f| Ok(net.head_from_conv(f)?),
        &x,
        &pred,
    )?;
    let ig = integrated_gradients(logits, &x, Some(&baseline), &pred, args.steps)?;
    let sg = smooth_grad(logits, &x, &pred, 25, 0.15, args.common.seed)?;

    // Model-parameter randomisation: the same network with fresh weights.
    let rand_vm = VarMap::new();
    let rand_vb =
        taper::nn::init::seeded_var_builder(&rand_vm, args.common.seed + 1000, DType::F32, &device);
    let rnet = LeNet::new(*net.config(), rand_vb)?;
    let rlogits = |t: &Tensor| -> taper::train::Result<Tensor> {
        Ok(rnet.head_from_conv(&rnet.conv_features(t)?)?)
    };
    let ig_rand = integrated_gradients(rlogits, &x, Some(&baseline), &pred, args.steps)?;
    // Spearman correlation of trained against random-weight maps (Adebayo et al.
    // 2018): absolute IG keeps the ink mask x - baseline both share, so the signed
    // maps and the plain gradients are the telling comparisons.
    let rho_abs = rank_correlation(&ig.attributions.abs()?, &ig_rand.attributions.abs()?)?;
    let rho = rank_correlation(&ig.attributions, &ig_rand.attributions)?;
    let g_trained = taper::train::explain::saliency(logits, &x, &pred)?;
    let g_random = taper::train::explain::saliency(rlogits, &x, &pred)?;
    let rho_grad = rank_correlation(&g_trained.abs()?, &g_random.abs()?)?;

    let (h, w) = (x.dim(2)? as u32, x.dim(3)? as u32);
    let mut rows: Vec<(String, Vec<Tile>)> = vec![
        ("input".into(), vec![]),
        ("gradcam".into(), vec![]),
        ("integrated_gradients".into(), vec![]),
        ("smoothgrad".into(), vec![]),
        ("integrated_gradients_random_weights".into(), vec![]),
    ];
    for i in 0..n {
        let img = display(&x.i(i)?.to_device(&Device::Cpu)?)?;
        let grey: Vec<u8> = img
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|&v| [(v * 255.0) as u8; 3])
            .collect();
        rows[0].1.push((grey, w, h));
        let maps = [
            cam.i(i)?.to_device(&Device::Cpu)?,
            to_map(&ig.attributions.i(i)?.to_device(&Device::Cpu)?)?,
            to_map(&sg.i(i)?.to_device(&Device::Cpu)?)?,
            to_map(&ig_rand.attributions.i(i)?.to_device(&Device::Cpu)?)?,
        ];
        for (r, m) in maps.iter().enumerate() {
            rows[r + 1].1.push((overlay_rgb(&img, m, 0.6)?, w, h));
        }
    }
    let mut files = Vec::new();
    for (name, tiles) in &rows {
        let p = out_dir.join(format!("{name}.png"));
        save_strip(&p, tiles, 112)?;
        files.push(p);
    }
    let gap = ig.relative_gap();
    println!(
        "{dataset}: {n} test images, labels {labels:?}, predictions {pred:?}\n\
         Integrated Gradients completeness gap (max over images): {:.3} %\n\
         rank correlation, trained vs random weights (low = the maps depend on what was learnt):\n\
         \x20 signed IG {rho:.3}, |IG| {rho_abs:.3}, |gradient| {rho_grad:.3}\n\
         maps written to {}",
        100.0 * gap,
        out_dir.display()
    );
    let correct = labels.iter().zip(&pred).filter(|(a, b)| a == b).count();
    println!(
        "{}",
        serde_json::json!({"example": "explain", "dataset": dataset, "images": n,
            "correct": correct, "ig_completeness_gap": gap, "ig_steps": args.steps,
            "randomisation_rank_correlation": {"signed_ig": rho, "abs_ig": rho_abs,
                "abs_gradient": rho_grad}, "files": files})
    );
    Ok(())
}
