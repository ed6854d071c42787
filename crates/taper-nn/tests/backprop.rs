//! The workspace's candle-core carries Taper's backward-pass patch
//! (tools/patch_candle.py, issue 22 item 5): a node's first gradient is stored as it
//! is, not added into a fresh tensor of zeros, and gradients that meet still add up.

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Result, Shape, Tensor, Var};
use std::sync::{Arc, Mutex};

/// Doubles its input; its backward returns a fresh gradient and remembers its id.
struct Double {
    grads: Arc<Mutex<Vec<candle_core::TensorId>>>,
}

impl CustomOp1 for Double {
    fn name(&self) -> &'static str {
        "test-double"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = match s {
            CpuStorage::F32(v) => v,
            _ => candle_core::bail!("f32 only"),
        };
        let (a, b) = l
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("contiguous only".into()))?;
        let out: Vec<f32> = x[a..b].iter().map(|v| 2.0 * v).collect();
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = (grad * 2.0)?;
        self.grads.lock().unwrap().push(g.id());
        Ok(Some(g))
    }
}

#[test]
fn a_single_gradient_is_stored_as_computed() -> Result<()> {
    let x = Var::new(&[1f32, -2.0, 3.0], &Device::Cpu)?;
    let ids = Arc::new(Mutex::new(Vec::new()));
    let y = x.as_tensor().apply_op1(Double { grads: ids.clone() })?;
    let grads = (y * 3.0)?.sum_all()?.backward()?;
    let g = grads.get(&x).expect("x has a gradient");
    assert_eq!(g.to_vec1::<f32>()?, vec![6.0; 3]);
    // Stock candle 0.11.1 adds the gradient into zeros, a new tensor with a new id.
    assert_eq!(
        ids.lock().unwrap().as_slice(),
        &[g.id()],
        "the gradient was copied: is vendor/candle-core the patched one (tools/patch_candle.sh)?"
    );
    Ok(())
}

#[test]
fn gradients_that_meet_are_summed() -> Result<()> {
    let x = Var::new(&[1f32, -2.0, 3.0], &Device::Cpu)?;
    let ids = Arc::new(Mutex::new(Vec::new()));
    let double = || Double { grads: ids.clone() };
    // x reaches the loss three ways: 2x, 2x and x², so dL/dx = 2 + 2 + 2x.
    let t = x.as_tensor();
    let loss = ((t.apply_op1(double())? + t.apply_op1(double())?)? + t.sqr()?)?.sum_all()?;
    let grads = loss.backward()?;
    assert_eq!(
        grads.get(&x).unwrap().to_vec1::<f32>()?,
        vec![6.0, 0.0, 10.0]
    );
    Ok(())
}
