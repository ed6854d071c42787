//! Image grids (PNG) and their animation over training (GIF).

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, DynamicImage, Frame, GrayImage, Rgba, RgbaImage};
use std::path::Path;

/// Tiles images `(N, 1, H, W)` (values in `range`, clamped) into a grey grid of
/// `columns` columns, each pixel repeated `scale` times, with a 2-pixel border.
pub fn image_grid(
    images: &Tensor,
    columns: usize,
    scale: u32,
    range: (f32, f32),
) -> Result<GrayImage> {
    let (n, c, h, w) = images.dims4()?;
    if c != 1 {
        return Err(Error::Config(format!(
            "image grid: grey images (N, 1, H, W) expected, got {:?}",
            images.dims()
        )));
    }
    if n == 0 || columns == 0 || scale == 0 || range.1 <= range.0 {
        return Err(Error::Config(format!(
            "image grid: {n} images, {columns} columns, scale {scale}, range {range:?}"
        )));
    }
    let px: Vec<f32> = images
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1()?;
    let rows = n.div_ceil(columns);
    let s = scale as usize;
    let pad = 2usize;
    let (cw, ch) = (w * s + pad, h * s + pad);
    let (gw, gh) = (columns * cw + pad, rows * ch + pad);
    let mut img = GrayImage::new(gw as u32, gh as u32);
    for (i, im) in px.chunks_exact(h * w).enumerate() {
        let (ox, oy) = ((i % columns) * cw + pad, (i / columns) * ch + pad);
        for y in 0..h * s {
            for x in 0..w * s {
                let v = im[(y / s) * w + x / s];
                let v = ((v - range.0) / (range.1 - range.0)).clamp(0.0, 1.0);
                img.put_pixel(
                    (ox + x) as u32,
                    (oy + y) as u32,
                    image::Luma([(v * 255.0).round() as u8]),
                );
            }
        }
    }
    Ok(img)
}

/// Saves a grid (see [`image_grid`]) as PNG.
pub fn save_grid(
    images: &Tensor,
    columns: usize,
    scale: u32,
    range: (f32, f32),
    path: &Path,
) -> Result<GrayImage> {
    let g = image_grid(images, columns, scale, range)?;
    g.save(path)
        .map_err(|e| Error::Data(format!("{}: cannot write PNG: {e}", path.display())))?;
    Ok(g)
}

/// Writes `frames` (same size) as a looping GIF, `delay_ms` per frame.
pub fn save_gif(frames: &[GrayImage], delay_ms: u32, path: &Path) -> Result<()> {
    let Some(first) = frames.first() else {
        return Err(Error::Config("GIF: no frames".into()));
    };
    if frames.iter().any(|f| f.dimensions() != first.dimensions()) {
        return Err(Error::Config("GIF: frames differ in size".into()));
    }
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut enc = GifEncoder::new(std::io::BufWriter::new(file));
    let err =
        |e: image::ImageError| Error::Data(format!("{}: cannot write GIF: {e}", path.display()));
    enc.set_repeat(Repeat::Infinite).map_err(err)?;
    for f in frames {
        let rgba: RgbaImage = DynamicImage::ImageLuma8(f.clone()).to_rgba8();
        let rgba = RgbaImage::from_fn(rgba.width(), rgba.height(), |x, y| {
            let p = rgba.get_pixel(x, y);
            Rgba([p[0], p[1], p[2], 255])
        });
        enc.encode_frame(Frame::from_parts(
            rgba,
            0,
            0,
            Delay::from_numer_denom_ms(delay_ms, 1),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// An image `(C, H, W)` with values in 0..1 (C = 1 or 3) blended with the heat
/// map `(H, W)` (values in 0..1, [`taper_train::explain::heat_rgb`]'s colours):
/// `alpha` of the map's colour over the image, as RGB bytes (row-major, 3 per
/// pixel). Attributions ([`taper_train::explain`]) are drawn this way.
///
/// # Errors
/// A map of another size than the image, or an image of other than 1 or 3 channels.
pub fn overlay_rgb(image: &Tensor, map: &Tensor, alpha: f32) -> Result<Vec<u8>> {
    let (c, h, w) = image.dims3()?;
    if map.dims() != [h, w] {
        return Err(Error::shape(
            "overlay: heat map",
            format!("[{h}, {w}] (the image's size)"),
            format!("{:?}", map.dims()),
        ));
    }
    let img = match c {
        1 => image.repeat((3, 1, 1))?,
        3 => image.clone(),
        _ => {
            return Err(Error::Config(format!(
                "overlay: images need 1 or 3 channels, found {c}"
            )))
        }
    };
    let px: Vec<f32> = img
        .to_dtype(DType::F32)?
        .permute((1, 2, 0))?
        .flatten_all()?
        .to_vec1()?;
    let heat = taper_train::explain::heat_rgb(map)?;
    Ok(px
        .iter()
        .zip(&heat)
        .map(|(&p, &hc)| {
            let base = p.clamp(0.0, 1.0) * 255.0;
            ((1.0 - alpha) * base + alpha * hc as f32).round() as u8
        })
        .collect())
}

/// A training callback that writes, after each epoch, a grid of a generator's
/// samples from a fixed noise batch (`DIR/epoch-NNNNN.png`, 10 columns; one
/// class a column when conditional) and the grids so far as an animation
/// (`DIR/progress.gif`; earlier grids are read back from the folder, so a
/// resumed run's animation is whole). With [`SampleGrids::with_report`] the
/// grids also go to the run's report page ([`crate::report::gan_section`]);
/// with [`SampleGrids::with_scores`] the generator is also scored after each
/// epoch, and the page draws the Inception Score and Fréchet distance as curves.
pub struct SampleGrids {
    gen: crate::models::Generator,
    seed: u64,
    dir: std::path::PathBuf,
    scale: u32,
    report: Option<std::path::PathBuf>,
    scorer: Option<EpochScorer>,
}

/// What scores the generator after each epoch: the classifier, the Gaussian
/// statistics of the real reference images and how many samples to draw.
struct EpochScorer {
    classifier: crate::models::LeNet,
    reference: crate::metrics::GaussianStats,
    samples: usize,
}

/// The file of a grid folder that keeps the per-epoch scores, so a resumed run
/// draws its whole curve: a JSON list of `[epoch, IS, FID]`, epochs from 1.
pub const SCORES_FILE: &str = "scores.json";

/// The per-epoch scores kept in `dir` ([`SCORES_FILE`]); none when missing or unreadable.
pub fn load_scores(dir: &Path) -> Vec<(usize, f64, f64)> {
    std::fs::read(dir.join(SCORES_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

impl SampleGrids {
    /// Grids of `gen` (which shares its weights with the model in training)
    /// from noise drawn from `seed`, into `dir`, each pixel drawn `scale` times.
    pub fn new(gen: crate::models::Generator, seed: u64, dir: &Path, scale: u32) -> Self {
        Self {
            gen,
            seed,
            dir: dir.to_path_buf(),
            scale,
            report: None,
            scorer: None,
        }
    }

    /// Also scores the generator after each epoch: `samples` images from
    /// noise of its own (not the grid's) get an Inception Score and a Fréchet
    /// distance from `classifier` (a LeNet of the same image size) against the
    /// real images `reference` `(N, 1, S, S)`, values in 0..1 (at most 10,000
    /// used). The scores are kept in `DIR/scores.json` and drawn per epoch on
    /// the report page. A few hundred samples of 8x8 digits take milliseconds.
    ///
    /// # Errors
    /// `samples` under 2, no reference images, or tensor failures.
    pub fn with_scores(
        mut self,
        classifier: crate::models::LeNet,
        reference: &Tensor,
        samples: usize,
    ) -> Result<Self> {
        if samples < 2 {
            return Err(Error::Config(format!(
                "per-epoch GAN scores need at least 2 samples, got {samples}"
            )));
        }
        let n = reference.dim(0)?.min(10_000);
        let (_, feats) =
            crate::metrics::classifier_outputs(&classifier, &reference.narrow(0, 0, n)?, 500)?;
        self.scorer = Some(EpochScorer {
            classifier,
            reference: crate::metrics::GaussianStats::from_features(&feats)?,
            samples,
        });
        Ok(self)
    }

    /// Also writes, after each epoch, the GAN section of the report of the run
    /// in `run_dir` (the grids so far under a slider).
    pub fn with_report(mut self, run_dir: &Path) -> Self {
        self.report = Some(run_dir.to_path_buf());
        self
    }
}

impl taper_train::Callback for SampleGrids {
    fn on_epoch_end(
        &mut self,
        record: &taper_train::record::EpochRecord,
    ) -> Result<taper_train::Control> {
        if !taper_train::distributed::is_primary() {
            // Rank 0 writes the grids of a data-parallel run; the others hold
            // the same generator.
            return Ok(taper_train::Control::Continue);
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let x = self.gen.sample(100, None, self.seed)?;
        let path = self.dir.join(format!("epoch-{:05}.png", record.epoch + 1));
        save_grid(&x, 10, self.scale, (0.0, 1.0), &path)?;
        let mut names: Vec<std::path::PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("epoch-") && n.ends_with(".png"))
            })
            .collect();
        names.sort();
        let frames: Vec<GrayImage> = names
            .iter()
            .filter_map(|p| image::open(p).ok().map(|i| i.to_luma8()))
            .collect();
        save_gif(&frames, 500, &self.dir.join("progress.gif"))?;
        let mut scores = Vec::new();
        if let Some(sc) = &self.scorer {
            let fake = self
                .gen
                .sample(sc.samples, None, self.seed.wrapping_add(1))?;
            let s = crate::metrics::GanScores::compute(&sc.classifier, &fake, &sc.reference, 1)?;
            // Earlier epochs from the file (a resumed run), this one replaced.
            scores = load_scores(&self.dir);
            scores.retain(|e| e.0 <= record.epoch);
            scores.push((record.epoch + 1, s.inception_score, s.frechet_distance));
            let json =
                serde_json::to_vec(&scores).map_err(|e| Error::Data(format!("GAN scores: {e}")))?;
            taper_train::fs::atomic_write(&self.dir.join(SCORES_FILE), &json)?;
        }
        if let Some(run) = &self.report {
            crate::report::gan_section(run, &names, &scores)?;
        }
        Ok(taper_train::Control::Continue)
    }
}
