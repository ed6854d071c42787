//! Why did the CNN say that? Grad-CAM, Integrated Gradients and SmoothGrad for a
//! LeNet trained by `mnist_cnn` (or `image_classifier --model lenet`), written as
//! PNG overlays, with the model-parameter randomisation sanity check (attributions
//! of the trained model against those of the same network with fresh weights).
//! `--translation RUN` instead draws the attention map of a `translate` model.
//!
//! ```text
//! cargo run --release --example explain -- --resume runs/demo-mnist_cnn
//! cargo run --release --example explain -- --resume RUN --image photo.png
//! cargo run --release --example explain -- --translation runs/demo-translate-dates --sentence "14 March 2015"
//! ```

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::path::{Path, PathBuf};
use taper::nlp::seq2seq::Translator;
use taper::train::report::{self, Block, Picture, Section};
use taper::train::{checkpoint, cli::ExampleArgs};
use taper::vision::datasets::builtin;
use taper::vision::explain::{explain_lenet, grad_cam_over_photo};
use taper::vision::load_lenet;
use taper::vision::transforms::open_image;

#[global_allocator]
static GLOBAL: taper::alloc::Allocator = taper::alloc::Allocator;

#[derive(Parser, Debug)]
#[command(
    about = "Attribution maps (Grad-CAM, Integrated Gradients, SmoothGrad) of a trained LeNet"
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
    /// Draw the attention of a trained translation model instead (a run of `translate`).
    #[arg(long, value_name = "RUN")]
    translation: Option<PathBuf>,
    /// The sentence to translate with `--translation`.
    #[arg(long, default_value = "14 March 2015")]
    sentence: String,
}

/// Adds the pictures (in `run`) to the run's report as section `name`, and
/// rewrites the page.
fn explained(
    run: &Path,
    name: &str,
    title: &str,
    note: &str,
    pictures: &[(PathBuf, String)],
) -> Result<()> {
    let images = pictures
        .iter()
        .map(|(f, caption)| Picture {
            file: f
                .strip_prefix(run)
                .unwrap_or(f)
                .to_string_lossy()
                .into_owned(),
            caption: caption.clone(),
        })
        .collect();
    Section::new(title, 20)
        .with(Block::Text { text: note.into() })
        .with(Block::Images {
            images,
            slider: false,
        })
        .save(run, name)?;
    println!("report: {}", report::write(run)?.display());
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let c = &args.common;
    // Nothing is trained here.
    c.reject("explain", ExampleArgs::TRAINING)?;
    let device = c.device()?;
    if let Some(run) = &args.translation {
        if args.image.is_some() {
            anyhow::bail!(
                "explain --translation draws attention for --sentence; --image is for a LeNet run"
            );
        }
        c.reject("explain --translation", &["resume"])?;
        let t = Translator::load(run, &device)?;
        let a = t.align(&args.sentence)?;
        let out_dir = c.out.clone().unwrap_or_else(|| run.join("explain"));
        let (png, txt) = a.write(&out_dir, "attention")?;
        let peaks = a.peaks();
        peaks.iter().for_each(|p| eprintln!("  {p}"));
        let caption = format!("{} -> {}", args.sentence, a.text);
        explained(
            run,
            "explain-attention",
            "Explanation: attention",
            "",
            &[(png.clone(), caption)],
        )?;
        println!(
            "{}",
            serde_json::json!({"example": "explain", "mode": "attention", "sentence": args.sentence,
                "translation": a.text, "source_tokens": a.source.len(), "output_tokens": a.output.len(),
                "peaks": peaks, "map": png, "tokens": txt, "checkpoint": t.checkpoint})
        );
        return Ok(());
    }
    let run = c.resume.as_ref().context(
        "explain needs a trained LeNet: --resume RUN (`mnist_cnn --out RUN` trains one on the embedded digits in seconds)",
    )?;
    let (net, pre) = load_lenet(run, &device)?;
    let norm = pre.normalize().context("the run saved no normalisation")?;
    let out_dir = c.out.clone().unwrap_or_else(|| run.join("explain"));
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    if let Some(photo) = &args.image {
        let img = open_image(photo)?;
        // Dark strokes on light paper become the training sets' light-on-dark.
        let mut grey = img.grayscale();
        let luma = grey.to_luma8();
        if luma.iter().map(|&v| v as f64).sum::<f64>() / luma.len().max(1) as f64 > 127.5 {
            grey.invert();
        }
        let x = pre.tensor(&grey, &device)?.unsqueeze(0)?;
        let path = out_dir.join("photo_gradcam.png");
        let pred = grad_cam_over_photo(&net, &x, &img, &path)?;
        let name = &pre.class_names[pred as usize];
        println!(
            "{}: predicted {name}; Grad-CAM over the photo in {}",
            photo.display(),
            path.display()
        );
        println!(
            "{}",
            serde_json::json!({"example": "explain", "image": photo, "prediction": name, "files": [path]})
        );
        return Ok(());
    }

    // The test split of the data set the run was trained on (the digits' split
    // depends on the run's seed).
    let cfg = checkpoint::kept(run)?.state.config;
    let dataset = cfg["dataset"].as_str().unwrap_or_default().to_string();
    if !matches!(dataset.as_str(), "digits" | "mnist" | "fashion-mnist") {
        bail!(
            "{}: not a digits/mnist/fashion-mnist run; explain one photo with --image",
            run.display()
        );
    }
    let data = builtin(
        &dataset,
        &c.data_root(),
        cfg["seed"].as_u64().unwrap_or(c.seed),
    )?;
    let n = args.count.clamp(1, data.test_x.dim(0)?);
    let shown = data.test_x.narrow(0, 0, n)?.to_device(&device)?;
    let labels: Vec<u32> = data.test_y.narrow(0, 0, n)?.to_vec1()?;
    let x = norm.apply(&shown)?;
    // A black image, normalised, is the Integrated Gradients baseline.
    let e = explain_lenet(
        &net,
        &x,
        &norm.apply(&shown.zeros_like()?)?,
        args.steps,
        c.seed,
    )?;
    let files = e.write_strips(&shown, &out_dir)?;
    let gap = e.integrated_gradients.relative_gap();
    let r = e.randomisation;
    println!(
        "{dataset}: {n} test images, labels {labels:?}, predictions {:?}\n\
         Integrated Gradients completeness gap (max over images): {:.3} %\n\
         rank correlation, trained vs random weights (low = the maps depend on what was learnt):\n\
         \x20 signed IG {:.3}, |IG| {:.3}, |gradient| {:.3}\nmaps written to {}",
        e.predictions,
        100.0 * gap,
        r.signed_ig,
        r.abs_ig,
        r.abs_gradient,
        out_dir.display()
    );
    let correct = labels
        .iter()
        .zip(&e.predictions)
        .filter(|(a, b)| a == b)
        .count();
    // One strip a method, the same test images left to right.
    let shown: Vec<(PathBuf, String)> = files
        .iter()
        .map(|f| {
            let stem = f.file_stem().unwrap_or_default().to_string_lossy();
            (f.clone(), stem.replace('_', " "))
        })
        .collect();
    let note = format!(
        "test images left to right: labels {labels:?}, predictions {:?}",
        e.predictions
    );
    explained(
        run,
        "explain",
        "Explanations: attribution overlays",
        &note,
        &shown,
    )?;
    println!(
        "{}",
        serde_json::json!({"example": "explain", "dataset": dataset, "images": n, "correct": correct,
            "ig_completeness_gap": gap, "ig_steps": args.steps, "randomisation_rank_correlation": r, "files": files})
    );
    Ok(())
}
