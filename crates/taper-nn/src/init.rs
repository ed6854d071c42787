//! Seeded initialisation that candle's CPU device cannot give.
//!
//! candle's CPU backend draws from the OS-seeded thread RNG, so `Device::set_seed`
//! fails on CPU and every `VarBuilder` initialisation differs between runs. Here
//! each new variable is drawn from a ChaCha8 stream seeded by `(seed, its path)`:
//! runs repeat bit for bit, and adding a layer changes no other layer's weights.
//!
//! ```
//! use candle_core::{DType, Device};
//! use candle_nn::VarMap;
//! use taper_nn::init::seeded_var_builder;
//!
//! let (a, b) = (VarMap::new(), VarMap::new());
//! let wa = taper_nn::linear(4, 3, seeded_var_builder(&a, 42, DType::F32, &Device::Cpu).pp("fc"))?;
//! let wb = taper_nn::linear(4, 3, seeded_var_builder(&b, 42, DType::F32, &Device::Cpu).pp("fc"))?;
//! assert_eq!(wa.weight().dims(), &[3, 4]);
//! assert_eq!(wa.weight().to_vec2::<f32>()?, wb.weight().to_vec2::<f32>()?);
//! # Ok::<(), candle_core::Error>(())
//! ```

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Mixes values into one 64-bit seed (FNV-1a over their bytes, then a SplitMix64
/// finaliser so that nearby inputs give unrelated streams).
pub fn mix(parts: &[u64], name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    for p in parts {
        p.to_le_bytes().into_iter().for_each(&mut feed);
    }
    name.bytes().for_each(&mut feed);
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A reproducible host RNG for `(seed, name)`.
pub fn rng_for(seed: u64, name: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(&[seed], name))
}

/// Draws a tensor of `shape` following `init` from a seeded host RNG, then moves it
/// to `device` (so the values do not depend on the device either).
///
/// # Errors
/// Bounds, mean or deviation that are not finite.
pub fn init_tensor(
    init: Init,
    shape: &Shape,
    rng: &mut ChaCha8Rng,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let n = shape.elem_count();
    let finite = match init {
        Init::Const(c) => c.is_finite(),
        Init::Uniform { lo, up } => lo.is_finite() && up.is_finite(),
        Init::Randn { mean, stdev } => mean.is_finite() && stdev.is_finite(),
        Init::Kaiming { .. } => true,
    };
    if !finite {
        // rand's ranges panic on infinite bounds.
        candle_core::bail!("initialisation {init:?} of shape {shape:?} is not finite");
    }
    let uniform = |rng: &mut ChaCha8Rng, lo: f64, up: f64| -> Vec<f32> {
        (0..n).map(|_| rng.random_range(lo..up) as f32).collect()
    };
    let normal = |rng: &mut ChaCha8Rng, mean: f64, std: f64| -> Vec<f32> {
        (0..n)
            .map(|_| {
                let z: f64 = StandardNormal.sample(rng);
                (mean + std * z) as f32
            })
            .collect()
    };
    let data = match init {
        Init::Const(c) => vec![c as f32; n],
        Init::Uniform { lo, up } if up > lo => uniform(rng, lo, up),
        Init::Uniform { lo, .. } => vec![lo as f32; n],
        Init::Randn { mean, stdev } => normal(rng, mean, stdev),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let fan = fan.for_shape(shape).max(1);
            let std = non_linearity.gain() / (fan as f64).sqrt();
            match dist {
                candle_nn::init::NormalOrUniform::Uniform => {
                    let b = 3f64.sqrt() * std;
                    uniform(rng, -b, b)
                }
                candle_nn::init::NormalOrUniform::Normal => normal(rng, 0.0, std),
            }
        }
    };
    Tensor::from_vec(data, shape.clone(), device)?.to_dtype(dtype)
}

/// A `VarBuilder` backend that stores variables in a [`VarMap`] like candle's own,
/// but initialises each new variable from `(seed, its path)`.
///
/// Because the draw depends on the name and not on creation order, adding a layer
/// to a model does not change the initial weights of the others.
#[derive(Clone)]
pub struct SeededVarMap {
    varmap: VarMap,
    seed: u64,
}

impl SeededVarMap {
    /// Wraps `varmap`; new variables are drawn from `seed`.
    pub fn new(varmap: VarMap, seed: u64) -> Self {
        Self { varmap, seed }
    }
}

impl SimpleBackend for SeededVarMap {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("var map lock poisoned".into()))?;
        if let Some(v) = data.get(name) {
            let t = v.as_tensor();
            if t.shape() != &s {
                candle_core::bail!(
                    "variable '{name}' exists with shape {:?}, requested {:?}",
                    t.dims(),
                    s.dims()
                );
            }
            return t.to_dtype(dtype);
        }
        // A layer with a width of 0 (`linear(0, 10)`, 0 classes) is a mistake in
        // its configuration, and its ±1/√0 initial bounds are infinite.
        if s.elem_count() == 0 {
            candle_core::bail!(
                "variable '{name}' would have shape {:?}, with no values: a layer size of 0",
                s.dims()
            );
        }
        let mut rng = rng_for(self.seed, name);
        let t = init_tensor(h, &s, &mut rng, dtype, dev)?;
        let v = Var::from_tensor(&t)?;
        let out = v.as_tensor().clone();
        data.insert(name.to_string(), v);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, _dev: &Device) -> Result<Tensor> {
        let data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("var map lock poisoned".into()))?;
        match data.get(name) {
            Some(v) => v.as_tensor().to_dtype(dtype),
            None => candle_core::bail!("no variable named '{name}'"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap
            .data()
            .lock()
            .map(|d| d.contains_key(name))
            .unwrap_or(false)
    }
}

/// A `VarBuilder` over `varmap` whose new variables are drawn from `seed`.
pub fn seeded_var_builder(
    varmap: &VarMap,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    VarBuilder::from_backend(
        Box::new(SeededVarMap::new(varmap.clone(), seed)),
        dtype,
        device.clone(),
    )
}
