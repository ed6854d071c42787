//! Composable, seeded image transforms (torchvision's `transforms`, on `image`).
//!
//! Random transforms draw from the RNG handed to them, so the same pipeline with
//! the same seed gives the same pixels; [`Compose::apply_batch`] runs a batch in
//! parallel (rayon) with one seed per image, so the result does not depend on
//! the thread count.

use crate::pixels::{resize_triangle, rotate_bilinear, to_planes};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{DynamicImage, GenericImageView, GrayImage, Pixel, RgbImage};
use imageproc::geometric_transformations::{warp, Border, Interpolation, Projection};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::borrow::Cow;

/// One step of a pipeline.
pub trait Transform: Send + Sync {
    /// Transforms `img`, drawing any randomness from `rng`.
    fn apply(&self, img: DynamicImage, rng: &mut ChaCha8Rng) -> Result<DynamicImage>;

    /// Transforms a borrowed `img`, drawing the same randomness as
    /// [`apply`](Self::apply) and giving the same pixels. The first step of
    /// [`Compose::apply_ref`] calls it, so an image kept in memory is read in
    /// place rather than copied first; the default clones, and the resizes,
    /// crops, rotations and flips override it.
    fn apply_ref(&self, img: &DynamicImage, rng: &mut ChaCha8Rng) -> Result<DynamicImage> {
        self.apply(img.clone(), rng)
    }
}

/// `img`'s 8-bit bytes as grey (1 channel) or RGB (3), borrowed when it already
/// is one of those, converted otherwise (the same rule as [`Px::of`]).
fn raw8(img: &DynamicImage) -> (Cow<'_, [u8]>, usize) {
    match img {
        DynamicImage::ImageLuma8(g) => (Cow::Borrowed(g.as_raw().as_slice()), 1),
        DynamicImage::ImageRgb8(c) => (Cow::Borrowed(c.as_raw().as_slice()), 3),
        DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageLuma16(_)
        | DynamicImage::ImageLumaA16(_) => (Cow::Owned(img.to_luma8().into_raw()), 1),
        other => (Cow::Owned(other.to_rgb8().into_raw()), 3),
    }
}

/// A grey or RGB image from `ch`-channel bytes of `w` x `h` pixels.
fn from_raw8(w: u32, h: u32, ch: usize, raw: Vec<u8>) -> Result<DynamicImage> {
    let n = raw.len();
    let bad = || Error::Config(format!("{n} bytes for a {w}x{h} image of {ch} channels"));
    match ch {
        1 if raw.len() == w as usize * h as usize => GrayImage::from_raw(w, h, raw)
            .map(DynamicImage::ImageLuma8)
            .ok_or_else(bad),
        3 if raw.len() == 3 * w as usize * h as usize => RgbImage::from_raw(w, h, raw)
            .map(DynamicImage::ImageRgb8)
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// Grey images stay grey (one channel), everything else is worked on as RGB.
enum Px {
    L(GrayImage),
    C(RgbImage),
}

impl Px {
    fn of(img: DynamicImage) -> Self {
        match img {
            DynamicImage::ImageLuma8(g) => Px::L(g),
            DynamicImage::ImageLumaA8(_)
            | DynamicImage::ImageLuma16(_)
            | DynamicImage::ImageLumaA16(_) => Px::L(img.to_luma8()),
            other => Px::C(other.to_rgb8()),
        }
    }
    fn into_image(self) -> DynamicImage {
        match self {
            Px::L(g) => DynamicImage::ImageLuma8(g),
            Px::C(c) => DynamicImage::ImageRgb8(c),
        }
    }
}

fn black<P: Pixel<Subpixel = u8>>() -> P {
    *P::from_slice(&[0u8; 4][..P::CHANNEL_COUNT as usize])
}

fn warp_px(img: DynamicImage, proj: Projection) -> DynamicImage {
    match Px::of(img) {
        Px::L(g) => Px::L(warp(
            &g,
            proj,
            Interpolation::Bilinear,
            Border::Constant(black()),
        )),
        Px::C(c) => Px::C(warp(
            &c,
            proj,
            Interpolation::Bilinear,
            Border::Constant(black()),
        )),
    }
    .into_image()
}

/// `img` with `p` black pixels added on each side.
fn pad(img: &DynamicImage, p: u32) -> Result<DynamicImage> {
    let (w, h) = img.dimensions();
    let (raw, ch) = raw8(img);
    let (nw, nh) = (w + 2 * p, h + 2 * p);
    let (pitch, npitch) = (w as usize * ch, nw as usize * ch);
    let mut out = vec![0u8; npitch * nh as usize];
    if pitch > 0 {
        for (y, row) in raw.chunks_exact(pitch).enumerate() {
            let at = (y + p as usize) * npitch + p as usize * ch;
            out[at..at + pitch].copy_from_slice(row);
        }
    }
    from_raw8(nw, nh, ch, out)
}

/// Resizes to exactly `width` x `height`.
#[derive(Debug, Clone, Copy)]
pub struct Resize {
    /// Output width.
    pub width: u32,
    /// Output height.
    pub height: u32,
    /// Resampling filter.
    pub filter: FilterType,
}

impl Resize {
    /// Bilinear (`Triangle`) resize.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            filter: FilterType::Triangle,
        }
    }
}

impl Transform for Resize {
    fn apply(&self, img: DynamicImage, rng: &mut ChaCha8Rng) -> Result<DynamicImage> {
        self.apply_ref(&img, rng)
    }

    fn apply_ref(&self, img: &DynamicImage, _: &mut ChaCha8Rng) -> Result<DynamicImage> {
        if self.width == 0 || self.height == 0 {
            return Err(Error::Config(format!(
                "resize to {}x{}: sizes must be positive",
                self.width, self.height
            )));
        }
        if self.filter == FilterType::Triangle {
            let (raw, ch) = raw8(img);
            let out = resize_triangle(&raw, img.dimensions(), ch, (self.width, self.height));
            return from_raw8(self.width, self.height, ch, out);
        }
        Ok(img.resize_exact(self.width, self.height, self.filter))
    }
}

fn crop_checked(
    img: &DynamicImage,
    x: u32,
    y: u32,
    w: u32,
    h: u32,
    what: &str,
) -> Result<DynamicImage> {
    let (iw, ih) = img.dimensions();
    if w == 0 || h == 0 || w > iw || h > ih {
        return Err(Error::Config(format!(
            "{what} {w}x{h} does not fit in a {iw}x{ih} image"
        )));
    }
    if x as u64 + w as u64 > iw as u64 || y as u64 + h as u64 > ih as u64 {
        return Err(Error::Config(format!(
            "{what} {w}x{h} at ({x}, {y}) does not fit in a {iw}x{ih} image"
        )));
    }
    let (x, y, iw) = (x as usize, y as usize, iw as usize);
    let rows = |raw: &[u8], ch: usize| -> Vec<u8> {
        let (pitch, len) = (iw * ch, w as usize * ch);
        let mut out = Vec::with_capacity(len * h as usize);
        for r in y..y + h as usize {
            out.extend_from_slice(&raw[r * pitch + x * ch..r * pitch + x * ch + len]);
        }
        out
    };
    // Grey and RGB (what the other transforms produce) as row copies; the
    // `image` crate's generic crop copied pixel by pixel, 6 % of the
    // preprocessing benchmark.
    match img {
        DynamicImage::ImageLuma8(g) => from_raw8(w, h, 1, rows(g.as_raw(), 1)),
        DynamicImage::ImageRgb8(c) => from_raw8(w, h, 3, rows(c.as_raw(), 3)),
        _ => Ok(img.crop_imm(x as u32, y as u32, w, h)),
    }
}

/// Crops the centre `width` x `height`.
#[derive(Debug, Clone, Copy)]
pub struct CenterCrop {
    /// Crop width.
    pub width: u32,
    /// Crop height.
    pub height: u32,
}

impl Transform for CenterCrop {
    fn apply(&self, img: DynamicImage, rng: &mut ChaCha8Rng) -> Result<DynamicImage> {
        self.apply_ref(&img, rng)
    }

    fn apply_ref(&self, img: &DynamicImage, _: &mut ChaCha8Rng) -> Result<DynamicImage> {
        let (iw, ih) = img.dimensions();
        let x = iw.saturating_sub(self.width) / 2;
        let y = ih.saturating_sub(self.height) / 2;
        crop_checked(img, x, y, self.width, self.height, "center crop")
    }
}

/// Pads by `padding` black pixels on each side, then crops `width` x `height` at a
/// random position.
#[derive(Debug, Clone, Copy)]
pub struct RandomCrop {
    /// Crop width.
    pub width: u32,
    /// Crop height.
    pub height: u32,
    /// Black border added first.
    pub padding: u32,
}

impl Transform for RandomCrop {
    fn apply(&self, img: DynamicImage, rng: &mut ChaCha8Rng) -> Result<DynamicImage> {
        self.apply_ref(&img, rng)
    }

    fn apply_ref(&self, img: &DynamicImage, rng: &mut ChaCha8Rng) -> Result<DynamicImage> {
        let padded;
        let img = if self.padding > 0 {
            padded = pad(img, self.padding)?;
            &padded
        } else {
            img
        };
        let (iw, ih) = img.dimensions();
        if self.width > iw || self.height > ih {
            return crop_checked(img, 0, 0, self.width, self.height, "random crop");
        }
        let x = rng.random_range(0..=iw - self.width);
        let y = rng.random_range(0..=ih - self.height);
        crop_checked(img, x, y, self.width, self.height, "random crop")
    }
}

/// Rotates clockwise by a fixed angle about the centre (corners filled black).
#[derive(Debug, Clone, Copy)]
pub struct Rotate {
    /// Angle in degrees, clockwise.
    pub degrees: f32,
}

fn rotate(img: &DynamicImage, degrees: f32) -> Result<DynamicImage> {
    let (w, h) = img.dimensions();
    let (raw, ch) = raw8(img);
    let out = rotate_bilinear(&raw, (w as usize, h as usize), ch, degrees.to_radians());
    from_raw8(w, h, ch, out)
}

impl Transform for Rotate {
    fn apply(&self, img: DynamicImage, rng: &mut ChaCha8Rng) -> Result<DynamicImage> {
        self.apply_ref(&img, rng)
    }

    fn apply_ref(&self, img: &DynamicImage, _: &mut ChaCha8Rng) -> Result<DynamicImage> {
        rotate(img, self.degrees)
    }
}

/// Rotates by an angle drawn uniformly from `[-max_degrees, max_degrees]`.
#[derive(Debug, Clone, Copy)]
pub struct RandomRotation {
    /// Largest rotation in degrees.
    pub max_degrees: f32,
}

impl Transform for RandomRotation {
    fn apply(&self, img: DynamicImage, rng: &mut ChaCha8Rng) -> Result<DynamicImage> {
        self.apply_ref(&img, rng)
    }

    fn apply_ref(&self, img: &DynamicImage, rng: &mut ChaCha8Rng) -> Result<DynamicImage> {
        let a = self.max_degrees.abs();
        let d = if a > 0.0 {
            rng.random_range(-a..=a)
        } else {
            0.0
        };
        rotate(img, d)
    }
}

/// Mirrors left-right with probability `p`.
#[derive(Debug, Clone, Copy)]
pub struct HorizontalFlip {
    /// Probability of flipping.
    pub p: f64,
}

impl Transform for HorizontalFlip {
    fn apply(&self, mut img: DynamicImage, rng: &mut ChaCha8Rng) -> Result<DynamicImage> {
        if rng.random_bool(self.p.clamp(0.0, 1.0)) {
            img.apply_orientation(Orientation::FlipHorizontal);
        }
        Ok(img)
    }

    fn apply_ref(&self, img: &DynamicImage, rng: &mut ChaCha8Rng) -> Result<DynamicImage> {
        Ok(if rng.random_bool(self.p.clamp(0.0, 1.0)) {
            img.fliph()
        } else {
            img.clone()
        })
    }
}

/// Mirrors top-bottom with probability `p`.
#[derive(Debug, Clone, Copy)]
pub struct VerticalFlip {
    /// Probability of flipping.
    pub p: f64,
}

impl Transform for VerticalFlip {
    fn apply(&self, mut img: DynamicImage, rng: &mut ChaCha8Rng) -> Result<DynamicImage> {
        if rng.random_bool(self.p.clamp(0.0, 1.0)) {
            img.apply_orientation(Orientation::FlipVertical);
        }
        Ok(img)
    }

    fn apply_ref(&self, img: &DynamicImage, rng: &mut ChaCha8Rng) -> Result<DynamicImage> {
        Ok(if rng.random_bool(self.p.clamp(0.0, 1.0)) {
            img.flipv()
        } else {
            img.clone()
        })
    }
}

/// Random rotation, shift and scale about the centre in one resampling
/// (torchvision `RandomAffine`).
#[derive(Debug, Clone, Copy)]
pub struct RandomAffine {
    /// Largest rotation in degrees.
    pub degrees: f32,
    /// Largest shift as a fraction of width and height.
    pub translate: (f32, f32),
    /// Scale range.
    pub scale: (f32, f32),
}

impl Transform for RandomAffine {
    fn apply(&self, img: DynamicImage, rng: &mut ChaCha8Rng) -> Result<DynamicImage> {
        let (w, h) = img.dimensions();
        let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
        let d = self.degrees.abs();
        let angle = if d > 0.0 {
            rng.random_range(-d..=d)
        } else {
            0.0
        };
        let (tx, ty) = (
            self.translate.0.abs() * w as f32,
            self.translate.1.abs() * h as f32,
        );
        let dx = if tx > 0.0 {
            rng.random_range(-tx..=tx)
        } else {
            0.0
        };
        let dy = if ty > 0.0 {
            rng.random_range(-ty..=ty)
        } else {
            0.0
        };
        let (lo, hi) = self.scale;
        if !(lo > 0.0 && hi >= lo) {
            return Err(Error::Config(format!(
                "affine scale range {lo}..{hi} must be positive and ordered"
            )));
        }
        let s = if hi > lo {
            rng.random_range(lo..=hi)
        } else {
            lo
        };
        let proj = Projection::translate(cx + dx, cy + dy)
            * Projection::rotate(angle.to_radians())
            * Projection::scale(s, s)
            * Projection::translate(-cx, -cy);
        Ok(warp_px(img, proj))
    }
}

/// Random brightness, contrast and saturation factors, each drawn from
/// `[max(0, 1 - v), 1 + v]` (torchvision `ColorJitter`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ColorJitter {
    /// Brightness spread.
    pub brightness: f32,
    /// Contrast spread.
    pub contrast: f32,
    /// Saturation spread (no effect on grey images).
    pub saturation: f32,
}

fn factor(rng: &mut ChaCha8Rng, v: f32) -> f32 {
    if v <= 0.0 {
        1.0
    } else {
        rng.random_range((1.0 - v).max(0.0)..=1.0 + v)
    }
}

fn blend_u8(a: u8, b: f32, f: f32) -> u8 {
    (b + (a as f32 - b) * f).round().clamp(0.0, 255.0) as u8
}

impl Transform for ColorJitter {
    fn apply(&self, img: DynamicImage, rng: &mut ChaCha8Rng) -> Result<DynamicImage> {
        let (fb, fc, fs) = (
            factor(rng, self.brightness),
            factor(rng, self.contrast),
            factor(rng, self.saturation),
        );
        let luma = |p: &[u8]| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
        Ok(match Px::of(img) {
            Px::L(mut g) => {
                let mean = g.pixels().map(|p| p[0] as f32).sum::<f32>() / (g.len().max(1) as f32);
                for p in g.pixels_mut() {
                    let v = blend_u8(p[0], 0.0, fb);
                    p[0] = blend_u8(v, mean * fb, fc);
                }
                Px::L(g)
            }
            Px::C(mut c) => {
                let mean =
                    c.pixels().map(|p| luma(&p.0)).sum::<f32>() / ((c.len() / 3).max(1) as f32);
                for p in c.pixels_mut() {
                    for ch in 0..3 {
                        p[ch] = blend_u8(p[ch], 0.0, fb);
                    }
                    for ch in 0..3 {
                        p[ch] = blend_u8(p[ch], mean * fb, fc);
                    }
                    let l = luma(&p.0);
                    for ch in 0..3 {
                        p[ch] = blend_u8(p[ch], l, fs);
                    }
                }
                Px::C(c)
            }
        }
        .into_image())
    }
}

/// Converts to one grey channel.
#[derive(Debug, Clone, Copy)]
pub struct Grayscale;

impl Transform for Grayscale {
    fn apply(&self, img: DynamicImage, _: &mut ChaCha8Rng) -> Result<DynamicImage> {
        Ok(DynamicImage::ImageLuma8(img.to_luma8()))
    }
}

/// Gaussian blur with a sigma drawn from `[min_sigma, max_sigma]`.
#[derive(Debug, Clone, Copy)]
pub struct GaussianBlur {
    /// Smallest sigma (pixels).
    pub min_sigma: f32,
    /// Largest sigma (pixels).
    pub max_sigma: f32,
}

impl Transform for GaussianBlur {
    fn apply(&self, img: DynamicImage, rng: &mut ChaCha8Rng) -> Result<DynamicImage> {
        let (lo, hi) = (self.min_sigma, self.max_sigma);
        if !(lo > 0.0 && hi >= lo) {
            return Err(Error::Config(format!(
                "blur sigma range {lo}..{hi} must be positive and ordered"
            )));
        }
        let s = if hi > lo {
            rng.random_range(lo..=hi)
        } else {
            lo
        };
        Ok(match Px::of(img) {
            Px::L(g) => Px::L(imageproc::filter::gaussian_blur_f32(&g, s)),
            Px::C(c) => Px::C(imageproc::filter::gaussian_blur_f32(&c, s)),
        }
        .into_image())
    }
}

/// A pipeline of transforms applied in order.
#[derive(Default)]
pub struct Compose {
    steps: Vec<Box<dyn Transform>>,
}

impl Compose {
    /// An empty pipeline (the identity).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a step.
    pub fn then(mut self, t: impl Transform + 'static) -> Self {
        self.steps.push(Box::new(t));
        self
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// True for the identity.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs the pipeline with randomness drawn from `seed`.
    pub fn apply(&self, mut img: DynamicImage, seed: u64) -> Result<DynamicImage> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for s in &self.steps {
            img = s.apply(img, &mut rng)?;
        }
        Ok(img)
    }

    /// Runs the pipeline on a borrowed image: the same pixels as
    /// [`apply`](Self::apply) on a copy, without copying it first (the first
    /// step reads it in place, see [`Transform::apply_ref`]).
    pub fn apply_ref(&self, img: &DynamicImage, seed: u64) -> Result<DynamicImage> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut steps = self.steps.iter();
        let mut img = match steps.next() {
            Some(first) => first.apply_ref(img, &mut rng)?,
            None => return Ok(img.clone()),
        };
        for s in steps {
            img = s.apply(img, &mut rng)?;
        }
        Ok(img)
    }

    /// Runs the pipeline over a batch in parallel, image `i` with `seeds[i]`;
    /// the images are read, not consumed.
    ///
    /// # Errors
    /// A seed count other than the image count, or any step's error.
    pub fn apply_batch(&self, imgs: &[DynamicImage], seeds: &[u64]) -> Result<Vec<DynamicImage>> {
        if seeds.len() != imgs.len() {
            return Err(Error::Config(format!(
                "{} images but {} seeds",
                imgs.len(),
                seeds.len()
            )));
        }
        imgs.par_iter()
            .zip(seeds.par_iter())
            .map(|(img, &s)| self.apply_ref(img, s))
            .collect()
    }
}

/// An image as a `(C, H, W)` f32 tensor with values in 0..1; `channels` is 1
/// (grey) or 3 (RGB), converting as needed.
///
/// # Errors
/// A channel count other than 1 or 3.
pub fn to_tensor(img: &DynamicImage, channels: usize, device: &Device) -> Result<Tensor> {
    let t = to_tensor_batch(std::slice::from_ref(img), channels, None, device)?;
    Ok(t.squeeze(0)?)
}

/// A batch of same-sized images as one `(N, C, H, W)` f32 tensor, each value
/// `v / 255`, then normalised by `normalize` where given: the same values as
/// [`to_tensor`] on each image, [`Tensor::stack`] and [`Normalize::apply`], in
/// one pass over the pixels (images in parallel) with one allocation.
/// `channels` is 1 (grey) or 3 (RGB), converting as needed.
///
/// # Errors
/// A channel count other than 1 or 3, images of different sizes, or a
/// normalisation of another channel count (see [`Normalize::apply`]).
pub fn to_tensor_batch(
    imgs: &[DynamicImage],
    channels: usize,
    normalize: Option<&Normalize>,
    device: &Device,
) -> Result<Tensor> {
    if channels != 1 && channels != 3 {
        return Err(Error::Config(format!(
            "to_tensor: {channels} channels requested (1 or 3)"
        )));
    }
    let stats = match normalize {
        Some(n) => {
            n.check(channels)?;
            Some((n.mean.as_slice(), n.std.as_slice()))
        }
        None => None,
    };
    let (w, h) = imgs.first().map(|i| i.dimensions()).unwrap_or((0, 0));
    if let Some((k, other)) = imgs
        .iter()
        .enumerate()
        .find(|(_, i)| i.dimensions() != (w, h))
    {
        return Err(Error::Config(format!(
            "to_tensor_batch: image {k} is {}x{}, image 0 is {w}x{h}",
            other.width(),
            other.height()
        )));
    }
    let (w, h) = (w as usize, h as usize);
    let per = channels * w * h;
    let mut data = vec![0f32; imgs.len() * per];
    if per > 0 {
        let fill = |(out, img): (&mut [f32], &DynamicImage)| {
            let bytes: Cow<'_, [u8]> = match (channels, img) {
                (1, DynamicImage::ImageLuma8(g)) => Cow::Borrowed(g.as_raw().as_slice()),
                (3, DynamicImage::ImageRgb8(c)) => Cow::Borrowed(c.as_raw().as_slice()),
                (1, other) => Cow::Owned(other.to_luma8().into_raw()),
                (_, other) => Cow::Owned(other.to_rgb8().into_raw()),
            };
            to_planes(&bytes, channels, stats, out);
        };
        if imgs.len() > 1 {
            data.par_chunks_mut(per).zip(imgs.par_iter()).for_each(fill);
        } else {
            data.chunks_mut(per).zip(imgs.iter()).for_each(fill);
        }
    }
    Ok(Tensor::from_vec(
        data,
        (imgs.len(), channels, h, w),
        device,
    )?)
}

/// Per-channel `(x - mean) / std` on a `(C, H, W)` or `(N, C, H, W)` tensor.
#[derive(Debug, Clone)]
pub struct Normalize {
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Standard deviation per channel.
    pub std: Vec<f32>,
}

impl Normalize {
    /// MNIST's statistics (one channel).
    pub fn mnist() -> Self {
        Self {
            mean: vec![0.1307],
            std: vec![0.3081],
        }
    }

    /// `(x - 0.5) / 0.5` on each of `channels` channels: values in 0..1 mapped
    /// to -1..1, torchvision's `Normalize((0.5,)*C, (0.5,)*C)`.
    pub fn symmetric(channels: usize) -> Self {
        Self {
            mean: vec![0.5; channels],
            std: vec![0.5; channels],
        }
    }

    /// ImageNet's statistics (RGB).
    pub fn imagenet() -> Self {
        Self {
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        }
    }

    /// Refuses statistics that do not fit `c` channels or a std that is not positive.
    fn check(&self, c: usize) -> Result<()> {
        if self.mean.len() != c || self.std.len() != c {
            return Err(Error::Config(format!(
                "normalize has {} means and {} stds for an image of {c} channels",
                self.mean.len(),
                self.std.len()
            )));
        }
        if self.std.iter().any(|s| *s <= 0.0) {
            return Err(Error::Config(
                "normalize: every std must be positive".into(),
            ));
        }
        Ok(())
    }

    /// Applies the normalisation; the channel count must match.
    pub fn apply(&self, t: &Tensor) -> Result<Tensor> {
        let cdim = match t.rank() {
            3 => 0,
            4 => 1,
            r => {
                return Err(Error::Config(format!(
                    "normalize expects (C,H,W) or (N,C,H,W), got rank {r}"
                )))
            }
        };
        let c = t.dim(cdim)?;
        self.check(c)?;
        let mut shape = vec![1usize; t.rank()];
        shape[cdim] = c;
        let mean =
            Tensor::from_vec(self.mean.clone(), shape.clone(), t.device())?.to_dtype(t.dtype())?;
        let std = Tensor::from_vec(self.std.clone(), shape, t.device())?.to_dtype(t.dtype())?;
        Ok(t.broadcast_sub(&mean)?.broadcast_div(&std)?)
    }
}

/// Decodes an image file with limits on its dimensions and memory, so a header
/// claiming enormous dimensions is refused before anything large is allocated.
pub fn open_image(path: &std::path::Path) -> Result<DynamicImage> {
    let bad = |m: String| Error::Data(format!("{}: {m}", path.display()));
    check_image_header(path)?;
    let mut reader = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    reader.limits(limits());
    reader
        .decode()
        .map_err(|e| bad(format!("cannot decode image: {e}")))
}

fn limits() -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    limits
}

/// Reads an image file's header and refuses, naming the file, what
/// [`open_image`] would refuse: an empty file, an unknown format, a side over
/// [`MAX_SIDE`] or a decoded size over [`MAX_ALLOC`] bytes. Returns
/// `(width, height)`. Nothing is decoded.
pub fn check_image_header(path: &std::path::Path) -> Result<(u32, u32)> {
    use image::ImageDecoder;
    let bad = |m: String| Error::Data(format!("{}: {m}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() == 0 {
        return Err(bad("empty file (0 bytes)".into()));
    }
    let mut reader = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    if reader.format().is_none() {
        return Err(bad("not a recognised image format".into()));
    }
    // The side limits go to the decoder, which checks them as soon as it has
    // read the dimensions; the decoded size is checked below, with the figures.
    let mut side_limits = image::Limits::default();
    side_limits.max_image_width = Some(MAX_SIDE);
    side_limits.max_image_height = Some(MAX_SIDE);
    side_limits.max_alloc = None;
    reader.limits(side_limits);
    let decoder = reader
        .into_decoder()
        .map_err(|e| bad(format!("unreadable image header: {e}")))?;
    let (w, h) = decoder.dimensions();
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(bad(format!(
            "image of {w}x{h} exceeds the {MAX_SIDE}x{MAX_SIDE} limit"
        )));
    }
    let bytes = decoder.total_bytes();
    if bytes > MAX_ALLOC {
        return Err(bad(format!(
            "image of {w}x{h} ({:?}) needs {} MiB to decode, over the {} MiB limit",
            decoder.color_type(),
            bytes >> 20,
            MAX_ALLOC >> 20
        )));
    }
    Ok((w, h))
}

/// Largest width or height [`open_image`] accepts.
pub const MAX_SIDE: u32 = 16_384;
/// Largest decoder allocation [`open_image`] accepts (bytes).
pub const MAX_ALLOC: u64 = 512 * 1024 * 1024;

#[cfg(test)]
mod fast_path_tests {
    use super::*;

    #[test]
    fn fast_resize_equals_image_crates_triangle_up_to_rounding() {
        let (w, h) = (41u32, 29u32);
        let img = RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 11 % 256) as u8,
                if (x / 5 + y / 3) % 2 == 0 { 250 } else { 5 },
            ])
        });
        // Shrinking (antialiased), enlarging, and mixed.
        for (nw, nh) in [(16u32, 12u32), (64, 50), (20, 40), (41, 29)] {
            let ours = resize_triangle(img.as_raw(), (w, h), 3, (nw, nh));
            let theirs = image::imageops::resize(&img, nw, nh, FilterType::Triangle);
            let worst = ours
                .iter()
                .zip(theirs.as_raw())
                .map(|(a, b)| (*a as i32 - *b as i32).abs())
                .max()
                .unwrap();
            assert!(worst <= 1, "{nw}x{nh}: differs by {worst}");
        }
    }
    use imageproc::geometric_transformations::rotate_about_center;

    #[test]
    fn fast_rotation_equals_imageprocs_up_to_rounding() {
        // A photo-like pattern: smooth gradients plus sharp edges, odd sizes.
        let (w, h) = (37u32, 23u32);
        let img = RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 11 % 256) as u8,
                if (x / 5 + y / 3) % 2 == 0 { 250 } else { 5 },
            ])
        });
        for deg in [0.0f32, 7.5, -15.0, 90.0, 180.0, 33.3] {
            let theta = deg.to_radians();
            let ours = rotate_bilinear(img.as_raw(), (w as usize, h as usize), 3, theta);
            let theirs = rotate_about_center(
                &img,
                theta,
                Interpolation::Bilinear,
                Border::Constant(image::Rgb([0, 0, 0])),
            );
            let diffs: Vec<i32> = ours
                .iter()
                .zip(theirs.as_raw())
                .map(|(a, b)| (*a as i32 - *b as i32).abs())
                .collect();
            let worst = *diffs.iter().max().unwrap();
            let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
            // imageproc truncates after each of its three blends (darker by 0.4
            // levels on average), we round once.
            assert!(
                worst <= 2 && mean < 0.6,
                "{deg} degrees: worst {worst}, mean {mean}"
            );
        }
        assert_eq!(
            rotate_bilinear(img.as_raw(), (w as usize, h as usize), 3, 0.0),
            img.as_raw().clone()
        );
    }
}
