//! Attributions: which parts of an input a model's output depends on.
//!
//! Every method works on any model given as a closure from an input batch to
//! logits `(N, classes)`, through candle's autograd: the input becomes a [`Var`]
//! so the backward pass reaches it. Grad-CAM needs the model split in two at the
//! layer to explain (`features`, then `head`).
//!
//! - [`saliency`]: the gradient of the target logit (Simonyan et al. 2014);
//! - [`smooth_grad`]: that gradient averaged over noisy copies (Smilkov et al. 2017);
//! - [`integrated_gradients`]: the path integral from a baseline (Sundararajan et
//!   al. 2017), with its completeness gap;
//! - [`grad_cam`]: class activation maps of a convolutional layer (Selvaraju et al. 2017);
//! - [`to_map`], [`heat_rgb`], [`heat_color`]: attributions as colour maps (the
//!   domains draw them: overlays on images in `taper-vision`, attention maps in
//!   `taper-nlp`).

use crate::{Error, Result};
use candle_core::{DType, Device, IndexOp, Tensor, Var, D};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// Sum over the batch of each example's logit for its target class: one backward
/// pass then gives every example's gradient, since examples do not interact.
fn target_score(logits: &Tensor, target: &[u32]) -> Result<Tensor> {
    let (n, c) = logits.dims2()?;
    if target.len() != n {
        return Err(Error::shape(
            "explain: targets",
            format!("{n} (one per example)"),
            target.len(),
        ));
    }
    if let Some(&bad) = target.iter().find(|&&t| t as usize >= c) {
        return Err(Error::Label {
            label: bad as u64,
            classes: c,
        });
    }
    let idx = Tensor::from_slice(target, (n, 1), logits.device())?;
    Ok(logits.gather(&idx, 1)?.sum_all()?)
}

/// The gradient of `model(x)[i, target[i]]` with respect to `x`, per example;
/// same shape as `x`.
pub fn saliency<F>(model: F, x: &Tensor, target: &[u32]) -> Result<Tensor>
where
    F: Fn(&Tensor) -> Result<Tensor>,
{
    let var = Var::from_tensor(&x.detach())?;
    let score = target_score(&model(var.as_tensor())?, target)?;
    let grads = score.backward()?;
    grads.get(var.as_tensor()).cloned().ok_or_else(|| {
        Error::Config("explain: the model's output does not depend on its input".into())
    })
}

/// [`saliency`] averaged over `samples` copies of `x` with Gaussian noise of
/// standard deviation `noise * (max(x) - min(x))` added; `seed` fixes the noise.
pub fn smooth_grad<F>(
    model: F,
    x: &Tensor,
    target: &[u32],
    samples: usize,
    noise: f64,
    seed: u64,
) -> Result<Tensor>
where
    F: Fn(&Tensor) -> Result<Tensor>,
{
    if samples == 0 {
        return Err(Error::Config(
            "smooth_grad: samples must be at least 1".into(),
        ));
    }
    let flat: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let (lo, hi) = flat
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let sigma = (noise * (hi - lo) as f64).max(0.0);
    // Host-side noise: candle's CPU random source cannot be seeded.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, sigma as f32).map_err(|e| Error::Config(e.to_string()))?;
    let mut total: Option<Tensor> = None;
    for _ in 0..samples {
        let noisy: Vec<f32> = flat.iter().map(|v| v + normal.sample(&mut rng)).collect();
        let xn = Tensor::from_vec(noisy, x.shape(), x.device())?.to_dtype(x.dtype())?;
        let g = saliency(&model, &xn, target)?;
        total = Some(match total {
            None => g,
            Some(t) => (t + g)?,
        });
    }
    let total = total.ok_or_else(|| Error::Config("smooth_grad: no sample drawn".into()))?;
    Ok((total / samples as f64)?)
}

/// Integrated Gradients and how well they add up.
#[derive(Debug, Clone)]
pub struct Attribution {
    /// Attributions, same shape as the input.
    pub attributions: Tensor,
    /// Per example: `f(x) - f(baseline)` for the target class.
    pub output_change: Vec<f32>,
    /// Per example: sum of attributions minus `output_change` (0 for an exact integral).
    pub delta: Vec<f32>,
}

impl Attribution {
    /// The largest completeness gap relative to the output change (0.01 = 1 %).
    pub fn relative_gap(&self) -> f32 {
        self.delta
            .iter()
            .zip(&self.output_change)
            .map(|(d, c)| d.abs() / c.abs().max(1e-6))
            .fold(0.0, f32::max)
    }
}

/// Integrated Gradients from `baseline` (same shape as `x`; zeros when `None`)
/// with `steps` points of the Gauss–Legendre rule on the straight path, several
/// points per forward pass (up to [`IG_BATCH`] examples). For ReLU networks the
/// integrand is piecewise constant: use a few hundred steps for a 1 % gap.
pub fn integrated_gradients<F>(
    model: F,
    x: &Tensor,
    baseline: Option<&Tensor>,
    target: &[u32],
    steps: usize,
) -> Result<Attribution>
where
    F: Fn(&Tensor) -> Result<Tensor>,
{
    if steps == 0 {
        return Err(Error::Config(
            "integrated_gradients: steps must be at least 1".into(),
        ));
    }
    let base = match baseline {
        Some(b) if b.shape() != x.shape() => {
            return Err(Error::shape(
                "integrated_gradients: baseline",
                format!("{:?} (the input's shape)", x.dims()),
                format!("{:?}", b.dims()),
            ))
        }
        Some(b) => b.clone(),
        None => x.zeros_like()?,
    };
    let diff = (x - &base)?;
    let (nodes, weights) = gauss_legendre(steps);
    let n = x.dim(0)?;
    // Several path points share one forward/backward pass: larger matrix products
    // run far closer to the machine's peak than one small batch per point.
    let per_pass = (IG_BATCH / n.max(1)).clamp(1, steps);
    let mut acc = diff.zeros_like()?;
    for (a, w) in nodes.chunks(per_pass).zip(weights.chunks(per_pass)) {
        let points = a
            .iter()
            .map(|&a| &base + (&diff * a)?)
            .collect::<candle_core::Result<Vec<_>>>()?;
        let tgt: Vec<u32> = (0..a.len()).flat_map(|_| target.iter().copied()).collect();
        let g = saliency(&model, &Tensor::cat(&points, 0)?, &tgt)?;
        for (j, w) in w.iter().enumerate() {
            acc = (acc + (g.narrow(0, j * n, n)? * *w)?)?;
        }
    }
    let attributions = (acc * &diff)?;
    let at = |t: &Tensor| -> Result<Vec<f32>> {
        let logits = model(t)?;
        let idx = Tensor::from_slice(target, (target.len(), 1), logits.device())?;
        Ok(logits
            .gather(&idx, 1)?
            .flatten_all()?
            .to_dtype(DType::F32)?
            .to_vec1()?)
    };
    let fx = at(x)?;
    let fb = at(&base)?;
    let output_change: Vec<f32> = fx.iter().zip(&fb).map(|(a, b)| a - b).collect();
    let sums: Vec<f32> = attributions
        .flatten_from(1)?
        .sum(D::Minus1)?
        .to_dtype(DType::F32)?
        .to_vec1()?;
    let delta = sums
        .iter()
        .zip(&output_change)
        .map(|(s, c)| s - c)
        .collect();
    Ok(Attribution {
        attributions,
        output_change,
        delta,
    })
}

/// Examples per forward pass when Integrated Gradients batches its path points.
pub const IG_BATCH: usize = 256;

/// Nodes in [0, 1] and weights (summing to 1) of the `n`-point Gauss–Legendre
/// rule: exact for polynomials of degree 2n-1, so far fewer model evaluations than
/// a Riemann sum reach the same completeness.
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut nodes = Vec::with_capacity(n);
    let mut weights = Vec::with_capacity(n);
    for i in 0..n {
        // Newton's method on P_n from the Chebyshev-like first guess.
        let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0f64, z);
            for k in 2..=n {
                let p2 = ((2 * k - 1) as f64 * z * p1 - (k - 1) as f64 * p0) / k as f64;
                p0 = p1;
                p1 = p2;
            }
            let pn = if n == 1 { z } else { p1 };
            let pm = if n == 1 { 1.0 } else { p0 };
            dp = n as f64 * (z * pn - pm) / (z * z - 1.0);
            let dz = pn / dp;
            z -= dz;
            if dz.abs() < 1e-15 {
                break;
            }
        }
        let w = 2.0 / ((1.0 - z * z) * dp * dp);
        // Map [-1, 1] to [0, 1]: halve the weights.
        nodes.push((1.0 - z) / 2.0);
        weights.push(w / 2.0);
    }
    (nodes, weights)
}

/// Grad-CAM: for the layer whose output `features(x)` is `(N, C, h, w)`, the
/// ReLU of the channel sum of activations weighted by the spatially averaged
/// gradient of the target logit of `head(features)`; upsampled (bilinear) to
/// `(N, H, W)` of the input and scaled so each map's maximum is 1.
pub fn grad_cam<F, G>(features: F, head: G, x: &Tensor, target: &[u32]) -> Result<Tensor>
where
    F: Fn(&Tensor) -> Result<Tensor>,
    G: Fn(&Tensor) -> Result<Tensor>,
{
    let a = features(x)?.detach();
    let (n, _c, _h, _w) = a.dims4().map_err(|_| {
        Error::Config(format!(
            "grad_cam: the layer's output must be (N, C, h, w), found {:?}",
            a.dims()
        ))
    })?;
    let var = Var::from_tensor(&a)?;
    let score = target_score(&head(var.as_tensor())?, target)?;
    let grads = score.backward()?;
    let g = grads
        .get(var.as_tensor())
        .ok_or_else(|| Error::Config("grad_cam: the head does not use the features".into()))?;
    let w = g.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?;
    let cam = a.broadcast_mul(&w)?.sum_keepdim(1)?.relu()?;
    let (ih, iw) = match x.dims() {
        [_, _, h, w] => (*h, *w),
        d => {
            return Err(Error::shape(
                "grad_cam: input",
                "(N, C, H, W)",
                format!("{d:?}"),
            ))
        }
    };
    let up = cam.upsample_bilinear2d(ih, iw, false)?.squeeze(1)?;
    let max = up.flatten_from(1)?.max_keepdim(1)?.unsqueeze(2)?;
    let max = (max.clamp(1e-12, f64::MAX))?;
    let out = up.broadcast_div(&max)?;
    debug_assert_eq!(out.dim(0)?, n);
    Ok(out)
}

/// Reduces an attribution `(C, H, W)` or `(H, W)` to one map `(H, W)` of absolute
/// values summed over channels, scaled to 0..1 by its maximum.
pub fn to_map(attr: &Tensor) -> Result<Tensor> {
    let a = attr.abs()?;
    let m = match a.rank() {
        2 => a,
        3 => a.sum(0)?,
        r => {
            return Err(Error::shape(
                "to_map: attribution",
                "(C, H, W) or (H, W)",
                format!("rank {r}"),
            ))
        }
    };
    let max = m.max_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()?;
    Ok((m / (max.max(1e-12) as f64))?)
}

/// A map `(H, W)` of values in 0..1 as RGB bytes (row-major, 3 per pixel) in a
/// blue–cyan–yellow–red ramp.
pub fn heat_rgb(map: &Tensor) -> Result<Vec<u8>> {
    let v: Vec<f32> = map.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    Ok(v.iter().flat_map(|&t| heat_color(t)).collect())
}

/// The heat colour of a value in 0..1 (clamped): a blue–cyan–yellow–red ramp,
/// as RGB bytes. The domains draw their maps with it (attribution overlays in
/// `taper-vision`, attention maps in `taper-nlp`).
pub fn heat_color(t: f32) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0);
    const STOPS: [(f32, [f32; 3]); 5] = [
        (0.0, [0.0, 0.0, 0.5]),
        (0.25, [0.0, 0.4, 1.0]),
        (0.5, [0.0, 1.0, 1.0]),
        (0.75, [1.0, 1.0, 0.0]),
        (1.0, [1.0, 0.0, 0.0]),
    ];
    let k = STOPS.iter().position(|(s, _)| *s >= t).unwrap_or(4).max(1);
    let (s0, c0) = STOPS[k - 1];
    let (s1, c1) = STOPS[k];
    let f = (t - s0) / (s1 - s0);
    let mix = |i: usize| ((c0[i] + f * (c1[i] - c0[i])) * 255.0).round() as u8;
    [mix(0), mix(1), mix(2)]
}

/// Spearman rank correlation of two attribution tensors (flattened): the
/// similarity measure of the model-parameter randomisation test.
pub fn rank_correlation(a: &Tensor, b: &Tensor) -> Result<f64> {
    let va: Vec<f64> = a.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    let vb: Vec<f64> = b.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    if va.len() != vb.len() || va.len() < 2 {
        return Err(Error::shape(
            "rank_correlation",
            "two tensors of one size (at least 2 values)",
            format!("{} and {} values", va.len(), vb.len()),
        ));
    }
    let rho = crate::metrics::spearman(&va, &vb);
    // A constant map (all zeros) has no ranking: call it uncorrelated.
    Ok(if rho.is_nan() { 0.0 } else { rho })
}

/// The first example of a batch as `(C, H, W)`, on the CPU (for writing images).
pub fn first_example(t: &Tensor) -> Result<Tensor> {
    Ok(t.i(0)?.to_device(&Device::Cpu)?)
}
