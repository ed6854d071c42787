//! What vision runs add to their `report.html` ([`taper_train::report`]): a
//! classifier's confusion matrix and its most confidently wrong examples, a
//! GAN's sample grids over the epochs with its scores.

use crate::{Error, ImageClassifier, Result};
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};
use taper_train::report::{section_dir, Block, Picture, Section, Series};

/// Images scored per forward pass when evaluating a split.
const BATCH: usize = 256;

/// One image `(C, H, W)`, values in 0..1, as a grey or RGB PNG at `path`.
fn save_image(image: &Tensor, path: &Path) -> Result<()> {
    let (c, h, w) = image.dims3()?;
    let px: Vec<u8> = image
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .permute((1, 2, 0))?
        .flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let bad = || Error::Config(format!("report thumbnail: {c} channels of {h}x{w}"));
    let img = match c {
        1 => image::DynamicImage::ImageLuma8(
            image::GrayImage::from_raw(w as u32, h as u32, px).ok_or_else(bad)?,
        ),
        3 => image::DynamicImage::ImageRgb8(
            image::RgbImage::from_raw(w as u32, h as u32, px).ok_or_else(bad)?,
        ),
        _ => return Err(bad()),
    };
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| Error::Data(format!("{}: cannot encode PNG: {e}", path.display())))?;
    taper_train::fs::atomic_write(path, &bytes)
}

/// The counts of `confusion[true][predicted]`, and each wrong example as
/// `(index, true, predicted, confidence)`, most confident first.
type Evaluation = (Vec<Vec<f64>>, Vec<(usize, usize, usize, f32)>);

fn evaluate(model: &ImageClassifier, images: &Tensor, labels: &[u32]) -> Result<Evaluation> {
    let n = images.dim(0)?;
    if labels.len() != n {
        return Err(Error::shape("report: labels", n, labels.len()));
    }
    let classes = model.preprocessing().class_names.len();
    let norm = model.preprocessing().normalize();
    let mut confusion = vec![vec![0.0; classes]; classes];
    let mut wrong = Vec::new();
    for start in (0..n).step_by(BATCH) {
        let len = BATCH.min(n - start);
        let x = images.narrow(0, start, len)?.to_dtype(DType::F32)?;
        let x = match &norm {
            Some(nm) => nm.apply(&x)?,
            None => x,
        };
        let p: Vec<Vec<f32>> = model.probabilities(&x)?.to_vec2()?;
        for (i, row) in p.iter().enumerate() {
            let (pred, conf) =
                row.iter()
                    .enumerate()
                    .fold((0, f32::MIN), |b, (j, &v)| if v > b.1 { (j, v) } else { b });
            let truth = labels[start + i] as usize;
            if truth >= classes {
                return Err(Error::Label {
                    label: truth as u64,
                    classes,
                });
            }
            confusion[truth][pred] += 1.0;
            if pred != truth {
                wrong.push((start + i, truth, pred, conf));
            }
        }
    }
    wrong.sort_by(|a, b| b.3.total_cmp(&a.3).then(a.0.cmp(&b.0)));
    Ok((confusion, wrong))
}

/// Writes a classifier's section of its run report (`RUN/report/classifier.json`):
/// accuracy and the confusion matrix of `model` on `images` `(N, C, H, W)`
/// (values in 0..1, before the model's normalisation, which is applied here)
/// with class indices `labels` `(N,)`, and the `worst` most confidently wrong
/// examples as thumbnails (`RUN/report/wrong-K.png`) captioned with their true
/// and predicted classes. `split` names the images (`validation`).
///
/// # Errors
/// Images the model cannot take, labels of another count or out of range,
/// files that cannot be written.
pub fn classifier_section(
    model: &ImageClassifier,
    images: &Tensor,
    labels: &Tensor,
    split: &str,
    run_dir: &Path,
    worst: usize,
) -> Result<PathBuf> {
    let labels: Vec<u32> = labels.to_dtype(DType::U32)?.to_vec1()?;
    let (confusion, wrong) = evaluate(model, images, &labels)?;
    let names = model.preprocessing().class_names.clone();
    let right: f64 = (0..names.len()).map(|i| confusion[i][i]).sum();
    let n = labels.len();
    let dir = section_dir(run_dir)?;
    let mut pictures = Vec::new();
    for (k, &(i, t, p, conf)) in wrong.iter().take(worst).enumerate() {
        let file = format!("wrong-{k}.png");
        save_image(&images.get(i)?, &dir.join(&file))?;
        pictures.push(Picture {
            file: format!("{}/{file}", taper_train::report::SECTION_DIR),
            caption: format!(
                "#{i}: true {}, predicted {} ({:.0} %)",
                names[t],
                names[p],
                100.0 * conf
            ),
        });
    }
    let mut section = Section::new(format!("Classifier on the {split} split"), 10)
        .with(Block::Figures {
            figures: vec![
                (format!("{split}_items"), n.into()),
                (
                    format!("{split}_accuracy_of_kept_model"),
                    (right / n.max(1) as f64).into(),
                ),
                (format!("{split}_errors"), wrong.len().into()),
            ],
        })
        .with(Block::Matrix {
            title: format!("confusion ({split})"),
            rows: names.clone(),
            columns: names,
            values: confusion,
            x_label: "predicted".into(),
            y_label: "true".into(),
        });
    section = if pictures.is_empty() {
        section.with(Block::Text {
            text: format!("No {split} example is misclassified."),
        })
    } else {
        section
            .with(Block::Text {
                text: format!(
                    "The {} most confidently wrong {split} examples:",
                    pictures.len()
                ),
            })
            .with(Block::Images {
                images: pictures,
                slider: false,
            })
    };
    section.save(run_dir, "classifier")
}

/// Writes a GAN's section of its run report (`RUN/report/gan.json`): the
/// sample grids `grids` (one per epoch, in order; paths inside `run_dir`)
/// under a slider, and the Inception Score and Fréchet distance per epoch
/// where `scores` holds them (`(epoch, IS, FID)`, epochs counted from 1).
///
/// # Errors
/// A section that cannot be written.
pub fn gan_section(
    run_dir: &Path,
    grids: &[PathBuf],
    scores: &[(usize, f64, f64)],
) -> Result<PathBuf> {
    let images = grids
        .iter()
        .map(|g| {
            let rel = g.strip_prefix(run_dir).unwrap_or(g);
            let stem = g
                .file_stem()
                .map(|s| s.to_string_lossy().replace('-', " "))
                .unwrap_or_default();
            Picture {
                file: rel.to_string_lossy().into_owned(),
                caption: format!(
                    "samples after epoch {}",
                    stem.trim_start_matches("epoch ").trim_start_matches('0')
                ),
            }
        })
        .collect();
    let mut section = Section::new("Generated samples", 10)
        .with(Block::Text {
            text: "One grid of samples from the same fixed noise after each epoch; the slider goes through the epochs.".into(),
        })
        .with(Block::Images {
            images,
            slider: true,
        });
    if !scores.is_empty() {
        let pts = |f: fn(&(usize, f64, f64)) -> f64| -> Vec<(f64, f64)> {
            scores.iter().map(|s| (s.0 as f64, f(s))).collect()
        };
        section = section
            .with(Block::Lines {
                title: "Inception Score".into(),
                x_label: "epoch".into(),
                y_label: "IS".into(),
                series: vec![Series {
                    name: String::new(),
                    points: pts(|s| s.1),
                }],
            })
            .with(Block::Lines {
                title: "Fréchet distance".into(),
                x_label: "epoch".into(),
                y_label: "FID".into(),
                series: vec![Series {
                    name: String::new(),
                    points: pts(|s| s.2),
                }],
            });
    }
    section.save(run_dir, "gan")
}
