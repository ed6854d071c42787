//! Why did the LeNet say that? Grad-CAM (Selvaraju et al. 2017), Integrated
//! Gradients (Sundararajan et al. 2017) and SmoothGrad (Smilkov et al. 2017) maps
//! of a trained [`LeNet`], the model-parameter randomisation check of Adebayo et
//! al. (2018), and their overlays as PNG strips. The attribution methods
//! themselves are model-agnostic and live in `taper_train::explain`.

use crate::grid::overlay_rgb;
use crate::models::LeNet;
use crate::{Error, Result};
use candle_core::{DType, Device, IndexOp, Tensor, D};
use std::path::{Path, PathBuf};
use taper_train::explain::{
    grad_cam, integrated_gradients, rank_correlation, saliency, smooth_grad, to_map, Attribution,
};

/// Attribution maps of a batch of images and the randomisation check.
pub struct Explanation {
    /// The predicted class of each image (the class every map explains).
    pub predictions: Vec<u32>,
    /// Grad-CAM over the last convolution, upsampled: `(N, H, W)` in 0..1.
    pub grad_cam: Tensor,
    /// Integrated Gradients of the trained network, `(N, C, H, W)`.
    pub integrated_gradients: Attribution,
    /// SmoothGrad (25 noisy copies, noise 0.15 of the input range), `(N, C, H, W)`.
    pub smooth_grad: Tensor,
    /// Integrated Gradients of the same network with fresh random weights.
    pub random_integrated_gradients: Tensor,
    /// Spearman correlations of trained against random-weight maps.
    pub randomisation: Randomisation,
}

/// Rank correlations between maps of the trained and of a randomly initialised
/// network (Adebayo et al. 2018): low means the maps depend on what was learnt.
/// Absolute IG keeps the ink mask `x - baseline` both share, so the signed
/// maps and the plain gradients are the telling comparisons.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Randomisation {
    /// Signed Integrated Gradients.
    pub signed_ig: f64,
    /// Absolute Integrated Gradients.
    pub abs_ig: f64,
    /// Absolute input gradients.
    pub abs_gradient: f64,
}

fn logits(net: &LeNet) -> impl Fn(&Tensor) -> taper_train::Result<Tensor> + '_ {
    move |t| Ok(net.head_from_conv(&net.conv_features(t)?)?)
}

/// Explains `net`'s predictions for the normalised images `x` `(N, C, H, W)`:
/// Grad-CAM, Integrated Gradients with `steps` path points from `baseline`
/// (same shape; a black image, normalised, in the usual case), SmoothGrad, and
/// the randomisation check against the same network with weights drawn from
/// `seed`.
///
/// # Errors
/// Shapes the network does not take, or tensor failures.
pub fn explain_lenet(
    net: &LeNet,
    x: &Tensor,
    baseline: &Tensor,
    steps: usize,
    seed: u64,
) -> Result<Explanation> {
    let f = logits(net);
    let predictions: Vec<u32> = f(x)?.argmax(D::Minus1)?.to_vec1()?;
    let cam = grad_cam(
        |t| Ok(net.conv_features(t)?),
        |c| Ok(net.head_from_conv(c)?),
        x,
        &predictions,
    )?;
    let ig = integrated_gradients(&f, x, Some(baseline), &predictions, steps)?;
    let sg = smooth_grad(&f, x, &predictions, 25, 0.15, seed)?;
    let varmap = candle_nn::VarMap::new();
    let vb = taper_nn::init::seeded_var_builder(
        &varmap,
        seed.wrapping_add(1000),
        DType::F32,
        x.device(),
    );
    let random = LeNet::new(*net.config(), vb)?;
    let rf = logits(&random);
    let ig_rand = integrated_gradients(&rf, x, Some(baseline), &predictions, steps)?;
    let randomisation = Randomisation {
        signed_ig: rank_correlation(&ig.attributions, &ig_rand.attributions)?,
        abs_ig: rank_correlation(&ig.attributions.abs()?, &ig_rand.attributions.abs()?)?,
        abs_gradient: rank_correlation(
            &saliency(&f, x, &predictions)?.abs()?,
            &saliency(&rf, x, &predictions)?.abs()?,
        )?,
    };
    Ok(Explanation {
        predictions,
        grad_cam: cam,
        integrated_gradients: ig,
        smooth_grad: sg,
        random_integrated_gradients: ig_rand.attributions,
        randomisation,
    })
}

impl Explanation {
    /// Writes one strip a method into `dir` (`input.png`, `gradcam.png`,
    /// `integrated_gradients.png`, `smoothgrad.png`,
    /// `integrated_gradients_random_weights.png`): each image of `display`
    /// `(N, C, H, W)` (values in 0..1) with the map laid over it, 112 pixels a
    /// tile. Returns the paths.
    ///
    /// # Errors
    /// A file that cannot be written, naming it.
    pub fn write_strips(&self, display: &Tensor, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let (n, h, w) = (
            display.dim(0)?,
            display.dim(2)? as u32,
            display.dim(3)? as u32,
        );
        let names = [
            "input",
            "gradcam",
            "integrated_gradients",
            "smoothgrad",
            "integrated_gradients_random_weights",
        ];
        let mut rows: Vec<Vec<Vec<u8>>> = vec![Vec::new(); names.len()];
        let cpu = |t: Tensor| t.to_device(&Device::Cpu);
        for i in 0..n {
            let img = cpu(display.i(i)?)?;
            let grey = (img.mean(0)? * 255.0)?
                .to_dtype(DType::U8)?
                .flatten_all()?
                .to_vec1::<u8>()?;
            rows[0].push(grey.iter().flat_map(|&v| [v; 3]).collect());
            let maps = [
                cpu(self.grad_cam.i(i)?)?,
                to_map(&cpu(self.integrated_gradients.attributions.i(i)?)?)?,
                to_map(&cpu(self.smooth_grad.i(i)?)?)?,
                to_map(&cpu(self.random_integrated_gradients.i(i)?)?)?,
            ];
            for (r, m) in maps.iter().enumerate() {
                rows[r + 1].push(overlay_rgb(&img, m, 0.6)?);
            }
        }
        let mut files = Vec::new();
        for (name, tiles) in names.iter().zip(&rows) {
            let p = dir.join(format!("{name}.png"));
            save_strip(&p, tiles, (w, h), 112)?;
            files.push(p);
        }
        Ok(files)
    }
}

/// RGB `tiles` of `size` (width, height) side by side, each scaled to `side`
/// pixels square with nearest neighbours, written to `path`.
fn save_strip(path: &Path, tiles: &[Vec<u8>], size: (u32, u32), side: u32) -> Result<()> {
    let mut out = image::RgbImage::new(side * tiles.len() as u32, side);
    for (k, rgb) in tiles.iter().enumerate() {
        let tile = image::RgbImage::from_raw(size.0, size.1, rgb.clone())
            .ok_or_else(|| Error::Config(format!("{}: tile of the wrong size", path.display())))?;
        let big = image::imageops::resize(&tile, side, side, image::imageops::FilterType::Nearest);
        image::imageops::replace(&mut out, &big, (k as u32 * side) as i64, 0);
    }
    out.save(path)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// Grad-CAM of `net`'s prediction for a photograph, upsampled to the photo and
/// laid over it, written to `path`. `x` is the photo as the network's input
/// `(1, C, H, W)`. Returns the predicted class.
///
/// # Errors
/// Tensor failures or a file that cannot be written.
pub fn grad_cam_over_photo(
    net: &LeNet,
    x: &Tensor,
    photo: &image::DynamicImage,
    path: &Path,
) -> Result<u32> {
    let pred: Vec<u32> = logits(net)(x)?.argmax(D::Minus1)?.to_vec1()?;
    let cam = grad_cam(
        |t| Ok(net.conv_features(t)?),
        |c| Ok(net.head_from_conv(c)?),
        x,
        &pred,
    )?;
    let rgb = photo.to_rgb8();
    let (w, h) = rgb.dimensions();
    let big = cam
        .unsqueeze(1)?
        .upsample_bilinear2d(h as usize, w as usize, false)?;
    let photo_t = Tensor::from_vec(rgb.into_raw(), (h as usize, w as usize, 3), &Device::Cpu)?
        .permute((2, 0, 1))?
        .to_dtype(DType::F32)?
        .affine(1.0 / 255.0, 0.0)?;
    let over = overlay_rgb(&photo_t, &big.i((0, 0))?.to_device(&Device::Cpu)?, 0.5)?;
    image::RgbImage::from_raw(w, h, over)
        .ok_or_else(|| Error::Config("overlay of the wrong size".into()))?
        .save(path)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    Ok(pred[0])
}
