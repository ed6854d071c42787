//! Moving-MNIST-style clips generated on the fly: one digit moving in a straight
//! line inside a square canvas and bouncing off its walls. Each clip is a pure
//! function of `(seed, index)`, so the data set needs no storage and no download.
//!
//! The task needs time: the label is the direction the digit moves at the end of
//! the clip (one of four diagonals), which no single frame shows.

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use rand::Rng;
use rayon::prelude::*;
use taper_nn::init::{mix, rng_for};
use taper_train::data::{BatchSource, TensorBatch};

/// Direction classes: the signs of the last step's (dx, dy), y pointing down.
pub const DIRECTIONS: [&str; 4] = ["right-down", "right-up", "left-down", "left-up"];

/// Settings of [`MovingDigits`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MovingDigitsConfig {
    /// Side of the square canvas.
    pub canvas: usize,
    /// Frames per clip.
    pub frames: usize,
    /// Speed range in pixels per frame.
    pub speed: (f32, f32),
    /// Number of clips.
    pub clips: usize,
    /// Seed of positions, directions and digit choice.
    pub seed: u64,
}

impl Default for MovingDigitsConfig {
    fn default() -> Self {
        Self {
            canvas: 64,
            frames: 16,
            speed: (3.0, 5.0),
            clips: 4096,
            seed: 0,
        }
    }
}

/// Clips of digits bouncing in a canvas, labelled with the direction of motion at
/// the last frame; batches are `(clips (N, T, 1, S, S) in 0..1, labels (N,))`.
pub struct MovingDigits {
    digits: Vec<Vec<f32>>,
    side: usize,
    cfg: MovingDigitsConfig,
    device: Device,
}

impl MovingDigits {
    /// Clips drawn from `digits` `(N, 1, d, d)` with values in 0..1 (each clip picks
    /// one at random); `d` must be smaller than the canvas.
    pub fn new(digits: &Tensor, cfg: MovingDigitsConfig, device: &Device) -> Result<Self> {
        let (n, c, h, w) = digits.dims4()?;
        if c != 1 || h != w {
            return Err(Error::Data(format!(
                "moving digits need square grey digits (N, 1, d, d), got {:?}",
                digits.dims()
            )));
        }
        if n == 0 {
            return Err(Error::Data("moving digits: no digit images".into()));
        }
        if cfg.frames < 2 {
            return Err(Error::Config(format!(
                "a clip needs at least 2 frames for motion to show, got {}",
                cfg.frames
            )));
        }
        let (lo, hi) = cfg.speed;
        if !(lo > 0.0 && hi >= lo) {
            return Err(Error::Config(format!(
                "speed range {:?} must be positive and ordered",
                cfg.speed
            )));
        }
        // Room to move: a step must fit in the free band, or bouncing is undefined.
        if h >= cfg.canvas || (cfg.canvas - h) as f32 <= 2.0 * hi {
            return Err(Error::Config(format!(
                "a {h}x{h} digit moving up to {hi} px a frame does not fit a {0}x{0} canvas",
                cfg.canvas
            )));
        }
        let flat: Vec<f32> = digits
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        let digits = flat.chunks_exact(h * w).map(|c| c.to_vec()).collect();
        Ok(Self {
            digits,
            side: h,
            cfg,
            device: device.clone(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &MovingDigitsConfig {
        &self.cfg
    }

    /// Clip `index`: `frames·canvas·canvas` pixels (frame-major) and its label.
    pub fn clip(&self, index: usize) -> Result<(Vec<f32>, u32)> {
        if index >= self.cfg.clips {
            return Err(Error::Data(format!(
                "clip {index} out of range for {} clips",
                self.cfg.clips
            )));
        }
        let c = &self.cfg;
        let mut rng = rng_for(mix(&[c.seed, index as u64], "clip"), "moving-digits");
        let digit = &self.digits[rng.random_range(0..self.digits.len())];
        let room = (c.canvas - self.side) as f32;
        let mut p = [rng.random_range(0.0..room), rng.random_range(0.0..room)];
        let quadrant = rng.random_range(0..4u32);
        let angle = rng.random_range(25f32..65.0).to_radians();
        let speed = if c.speed.1 > c.speed.0 {
            rng.random_range(c.speed.0..c.speed.1)
        } else {
            c.speed.0
        };
        let mut v = [
            speed * angle.cos() * if quadrant < 2 { 1.0 } else { -1.0 },
            speed * angle.sin() * if quadrant % 2 == 0 { 1.0 } else { -1.0 },
        ];
        let s = c.canvas;
        let mut out = vec![0f32; c.frames * s * s];
        for t in 0..c.frames {
            if t > 0 {
                // Turn before a step would leave the canvas, so every step moves
                // the way the velocity points and the last step shows the label.
                for a in 0..2 {
                    if p[a] + v[a] < 0.0 || p[a] + v[a] > room {
                        v[a] = -v[a];
                    }
                    p[a] += v[a];
                }
            }
            let (x0, y0) = (p[0].round() as usize, p[1].round() as usize);
            let frame = &mut out[t * s * s..(t + 1) * s * s];
            for dy in 0..self.side {
                let row = &mut frame[(y0 + dy) * s + x0..(y0 + dy) * s + x0 + self.side];
                for (o, px) in row
                    .iter_mut()
                    .zip(&digit[dy * self.side..(dy + 1) * self.side])
                {
                    *o = o.max(*px);
                }
            }
        }
        let label = match (v[0] > 0.0, v[1] > 0.0) {
            (true, true) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => 3,
        };
        Ok((out, label))
    }

    /// Clip `index` as a `(frames, 1, canvas, canvas)` tensor and its label.
    pub fn clip_tensor(&self, index: usize) -> Result<(Tensor, u32)> {
        let (px, label) = self.clip(index)?;
        let s = self.cfg.canvas;
        Ok((
            Tensor::from_vec(px, (self.cfg.frames, 1, s, s), &self.device)?,
            label,
        ))
    }
}

impl BatchSource for MovingDigits {
    type Batch = TensorBatch;
    fn len(&self) -> usize {
        self.cfg.clips
    }
    fn batch(&self, indices: &[usize]) -> Result<TensorBatch> {
        let clips = indices
            .par_iter()
            .map(|&i| self.clip(i))
            .collect::<Result<Vec<_>>>()?;
        let (s, t, n) = (self.cfg.canvas, self.cfg.frames, indices.len());
        let mut px = Vec::with_capacity(n * t * s * s);
        let mut labels = Vec::with_capacity(n);
        for (p, l) in clips {
            px.extend_from_slice(&p);
            labels.push(l);
        }
        TensorBatch::new(vec![
            Tensor::from_vec(px, (n, t, 1, s, s), &self.device)?,
            Tensor::from_vec(labels, n, &self.device)?,
        ])
    }
}

/// Stacks frames `(C, H, W)` into one clip `(T, C, H, W)`, refusing an empty list
/// and frames of different sizes.
pub fn clip_from_frames(frames: &[Tensor]) -> Result<Tensor> {
    let Some(first) = frames.first() else {
        return Err(Error::Data("a clip needs at least one frame, got 0".into()));
    };
    if first.rank() != 3 {
        return Err(Error::Data(format!(
            "frames must be (C, H, W), frame 0 is {:?}",
            first.dims()
        )));
    }
    if let Some((i, f)) = frames
        .iter()
        .enumerate()
        .find(|(_, f)| f.dims() != first.dims())
    {
        return Err(Error::Data(format!(
            "frame {i} is {:?}, frame 0 is {:?}: all frames of a clip must have one size",
            f.dims(),
            first.dims()
        )));
    }
    Ok(Tensor::stack(frames, 0)?)
}
