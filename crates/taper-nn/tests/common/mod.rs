//! Helpers shared by the kernel tests that compare runs bit for bit.

use candle_core::{DType, Device, Tensor, Var};
use taper_nn::init::{init_tensor, rng_for};

/// An operation under test: inputs to output.
pub type Op<'a> = dyn Fn(&[Tensor]) -> candle_core::Result<Tensor> + Sync + 'a;

/// A standard-normal f32 tensor on the CPU, from `seed`.
pub fn randn(shape: &[usize], seed: u64) -> Tensor {
    init_tensor(
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
        &shape.into(),
        &mut rng_for(seed, "determinism"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap()
}

/// The value of `f(inputs)` weighted by a fixed random tensor, and the gradient of
/// that sum with respect to every input: all as bits.
pub fn run(f: &Op<'_>, inputs: &[Tensor]) -> Vec<Vec<u32>> {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts).unwrap();
    let w = randn(y.dims(), 99);
    let grads = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let bits = |t: &Tensor| -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(f32::to_bits)
            .collect()
    };
    let mut out = vec![bits(&y)];
    for v in &vars {
        out.push(grads.get(v).map(bits).unwrap_or_default());
    }
    out
}
