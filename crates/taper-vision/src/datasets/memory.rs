//! Images held in memory and augmented per epoch, batch by batch, in parallel.

use crate::transforms::{to_tensor_batch, Compose, Normalize};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use image::{DynamicImage, GrayImage, RgbImage};
use rayon::prelude::*;
use std::sync::Arc;
use taper_nn::init::mix;
use taper_train::data::{BatchSource, TensorBatch};

/// Decoded images and labels; each batch runs the pipeline over its images in
/// parallel with per-image seeds `(seed, epoch, index)`, so the pixels do not
/// depend on the thread count or on the batch an image lands in.
pub struct InMemoryImages {
    images: Vec<DynamicImage>,
    labels: Vec<u32>,
    pipeline: Arc<Compose>,
    normalize: Option<Normalize>,
    channels: usize,
    seed: u64,
    device: Device,
}

impl InMemoryImages {
    /// From `(N, C, H, W)` pixels in 0..1 (C = 1 or 3) and `(N,)` labels.
    pub fn from_tensors(x: &Tensor, y: &Tensor, device: &Device) -> Result<Self> {
        let (n, c, h, w) = x.dims4()?;
        let labels: Vec<u32> = y.to_dtype(DType::U32)?.to_vec1()?;
        if labels.len() != n {
            return Err(Error::Data(format!(
                "{n} images but {} labels",
                labels.len()
            )));
        }
        if n == 0 {
            return Err(Error::Data("no images".into()));
        }
        let bytes: Vec<u8> = (x
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .clamp(0f32, 1f32)?
            * 255.0)?
            .round()?
            .to_dtype(DType::U8)?
            .flatten_all()?
            .to_vec1()?;
        let per = c * h * w;
        let images = bytes
            .chunks_exact(per)
            .map(|chw| match c {
                1 => GrayImage::from_raw(w as u32, h as u32, chw.to_vec())
                    .map(DynamicImage::ImageLuma8),
                3 => {
                    let mut hwc = vec![0u8; per];
                    for i in 0..h * w {
                        for ch in 0..3 {
                            hwc[i * 3 + ch] = chw[ch * h * w + i];
                        }
                    }
                    RgbImage::from_raw(w as u32, h as u32, hwc).map(DynamicImage::ImageRgb8)
                }
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::Data(format!("images must have 1 or 3 channels, got {c}")))?;
        Ok(Self {
            images,
            labels,
            pipeline: Arc::new(Compose::new()),
            normalize: None,
            channels: c,
            seed: 0,
            device: device.clone(),
        })
    }

    /// Augments with `pipeline`, seeded by `seed`.
    pub fn with_transform(mut self, pipeline: Compose, seed: u64) -> Self {
        self.pipeline = Arc::new(pipeline);
        self.seed = seed;
        self
    }

    /// Normalises each batch.
    pub fn with_normalize(mut self, n: Normalize) -> Self {
        self.normalize = Some(n);
        self
    }
}

impl BatchSource for InMemoryImages {
    type Batch = TensorBatch;
    fn len(&self) -> usize {
        self.images.len()
    }
    fn batch(&self, indices: &[usize]) -> Result<TensorBatch> {
        self.batch_in_epoch(indices, 0)
    }
    fn batch_in_epoch(&self, indices: &[usize], epoch: usize) -> Result<TensorBatch> {
        let n = self.images.len();
        let imgs = indices
            .par_iter()
            .map(|&i| {
                let img = self
                    .images
                    .get(i)
                    .ok_or_else(|| Error::Data(format!("index {i} out of range for {n} images")))?;
                self.pipeline
                    .apply_ref(img, mix(&[self.seed, epoch as u64, i as u64], "augment"))
            })
            .collect::<Result<Vec<_>>>()?;
        let x = to_tensor_batch(&imgs, self.channels, self.normalize.as_ref(), &Device::Cpu)?;
        let y: Vec<u32> = indices.iter().map(|&i| self.labels[i]).collect();
        let y = Tensor::from_vec(y, indices.len(), &Device::Cpu)?;
        TensorBatch::new(vec![x.to_device(&self.device)?, y.to_device(&self.device)?])
    }
}
