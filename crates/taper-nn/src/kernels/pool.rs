//! Max pooling with PyTorch's gradient: the first maximum of each window takes it.

use super::Real;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Max pooling with a `k`x`k` window and stride `k` over `(N, C, H, W)` (rows and
/// columns beyond a multiple of `k` are dropped). The gradient goes to the first
/// maximum of each window, as in PyTorch.
#[derive(Debug, Clone, Copy)]
pub struct MaxPool(pub usize);

/// The backward of [`MaxPool`]: `(input, output gradient)` → input gradient.
#[derive(Debug, Clone, Copy)]
struct MaxPoolGrad(usize);

fn pool_dims(l: &Layout, k: usize) -> Result<(usize, usize, usize, usize, usize, usize)> {
    let (n, c, h, w) = l.shape().dims4()?;
    if k == 0 || h < k || w < k {
        candle_core::bail!("max_pool2d: window {k} does not fit a {h}x{w} input");
    }
    Ok((n, c, h, w, h / k, w / k))
}

/// The first maximum of a 2x2 window `(a0, a1; b0, b1)` in reading order: each
/// value replaces the running one only when greater, as in the generic loops (a
/// NaN in front stays, later ones are passed over).
#[inline(always)]
fn first_max4<T: Real>(a0: T, a1: T, b0: T, b1: T) -> T {
    let mut m = a0;
    for v in [a1, b0, b1] {
        m = T::select(v > m, v, m);
    }
    m
}

/// Where [`first_max4`]'s window sends its gradient `g`: `[a0, a1, b0, b1]`, `g`
/// at the first maximum (`0 + g`, as the generic loop's `+=` gives) and zero at
/// the others. The comparisons are kept as masks: a position index selected per
/// window kept the loop scalar.
#[inline(always)]
fn route4<T: Real>(a0: T, a1: T, b0: T, b1: T, g: T) -> [T; 4] {
    let z = T::zero();
    let s1 = a1 > a0;
    let m = T::select(s1, a1, a0);
    let s2 = b0 > m;
    let s3 = b1 > T::select(s2, b0, m);
    let g = z + g;
    [
        T::select(!(s1 | s2 | s3), g, z),
        T::select(s1 & !(s2 | s3), g, z),
        T::select(s2 & !s3, g, z),
        T::select(s3, g, z),
    ]
}

/// Max pooling of one `(h, w)` plane with 2x2 windows (LeNet's and the batch-norm
/// CNN's), every one of the `ho·wo` values of `dst` written. Four windows at a
/// time are read as two fixed 8-value arrays, whose even and odd entries the
/// compiler splits with vector shuffles: with one
/// window per iteration (pairs of a run-time slice) it kept the loop scalar,
/// and with windows of run-time length the two pools of a LeNet step and their
/// gradients had been 18 % of its time on one thread.
#[inline(always)]
fn pool2_fwd<T: Real>(src: &[T], w: usize, dst: &mut [MaybeUninit<T>], wo: usize) {
    for (oh, drow) in dst.chunks_exact_mut(wo).enumerate() {
        let (a8, a_rest) = src[2 * oh * w..][..2 * wo].as_chunks::<8>();
        let (b8, b_rest) = src[(2 * oh + 1) * w..][..2 * wo].as_chunks::<8>();
        let (d4, d_rest) = drow.as_chunks_mut::<4>();
        for ((d, a), b) in d4.iter_mut().zip(a8).zip(b8) {
            // Read whole before anything is stored (see `route4`'s caller).
            let (a, b) = (*a, *b);
            *d = std::array::from_fn(|t| {
                MaybeUninit::new(first_max4(a[2 * t], a[2 * t + 1], b[2 * t], b[2 * t + 1]))
            });
        }
        let windows = a_rest.chunks_exact(2).zip(b_rest.chunks_exact(2));
        for (d, (a, b)) in d_rest.iter_mut().zip(windows) {
            d.write(first_max4(a[0], a[1], b[0], b[1]));
        }
    }
}

/// The gradient of [`pool2_fwd`] into the plane `dst`, every entry of its
/// `2·ho` x `2·wo` windows written (the rest of the plane is left alone): each
/// window's gradient to its first maximum ([`route4`]), four windows at a time
/// as in the forward pass.
#[inline(always)]
fn pool2_bwd<T: Real>(src: &[T], g: &[T], w: usize, dst: &mut [MaybeUninit<T>], wo: usize) {
    for (oh, grow) in g.chunks_exact(wo).enumerate() {
        let (a8, a_rest) = src[2 * oh * w..][..2 * wo].as_chunks::<8>();
        let (b8, b_rest) = src[(2 * oh + 1) * w..][..2 * wo].as_chunks::<8>();
        let (top, bottom) = dst[2 * oh * w..].split_at_mut(w);
        let (da8, da_rest) = top[..2 * wo].as_chunks_mut::<8>();
        let (db8, db_rest) = bottom[..2 * wo].as_chunks_mut::<8>();
        let (g4, g_rest) = grow.as_chunks::<4>();
        let blocks = g4.iter().zip(a8.iter().zip(b8));
        for ((gv, (a, b)), (da, db)) in blocks.zip(da8.iter_mut().zip(db8)) {
            // Every input read into locals before the first store: with loads
            // and stores interleaved the compiler could not tell that the
            // buffers do not overlap, and kept the windows scalar.
            let (a, b, gv) = (*a, *b, *gv);
            let r: [[T; 4]; 4] = std::array::from_fn(|t| {
                route4(a[2 * t], a[2 * t + 1], b[2 * t], b[2 * t + 1], gv[t])
            });
            *da = std::array::from_fn(|j| MaybeUninit::new(r[j / 2][j % 2]));
            *db = std::array::from_fn(|j| MaybeUninit::new(r[j / 2][2 + j % 2]));
        }
        let windows = a_rest.chunks_exact(2).zip(b_rest.chunks_exact(2));
        let outs = da_rest.chunks_exact_mut(2).zip(db_rest.chunks_exact_mut(2));
        for ((gv, (a, b)), (da, db)) in g_rest.iter().zip(windows).zip(outs) {
            let r = route4(a[0], a[1], b[0], b[1], *gv);
            da[0].write(r[0]);
            da[1].write(r[1]);
            db[0].write(r[2]);
            db[1].write(r[3]);
        }
    }
}

fn maxpool_fwd<T: Real>(x: &[T], l: &Layout, k: usize) -> Result<Vec<T>> {
    let (n, c, h, w, ho, wo) = pool_dims(l, k)?;
    if k == 2 {
        // SAFETY: `pool2_fwd` writes every output of its plane.
        return Ok(unsafe {
            super::par_new(n * c * ho * wo, ho * wo, |p, dst| {
                let src = &x[p * h * w..(p + 1) * h * w];
                super::simd::dispatch(
                    #[inline(always)]
                    || pool2_fwd(src, w, dst, wo),
                )
            })
        });
    }
    let mut out = vec![T::zero(); n * c * ho * wo];
    out.par_chunks_mut(ho * wo)
        .enumerate()
        .for_each(|(p, dst)| {
            let src = &x[p * h * w..(p + 1) * h * w];
            for oh in 0..ho {
                for ow in 0..wo {
                    let mut m = src[oh * k * w + ow * k];
                    for i in 0..k {
                        for v in &src[(oh * k + i) * w + ow * k..(oh * k + i) * w + ow * k + k] {
                            if *v > m {
                                m = *v;
                            }
                        }
                    }
                    dst[oh * wo + ow] = m;
                }
            }
        });
    Ok(out)
}

fn maxpool_bwd<T: Real>(x: &[T], g: &[T], l: &Layout, k: usize) -> Result<Vec<T>> {
    let (n, c, h, w, ho, wo) = pool_dims(l, k)?;
    if g.len() != n * c * ho * wo {
        candle_core::bail!(
            "max_pool2d backward: gradient of {} values for {n}x{c}x{ho}x{wo}",
            g.len()
        );
    }
    if k == 2 {
        // SAFETY: `pool2_bwd` writes the `2·ho` x `2·wo` windows of each plane,
        // and the loops before it the column and row an odd side leaves out.
        return Ok(unsafe {
            super::par_new(n * c * h * w, h * w, |p, dst| {
                let src = &x[p * h * w..(p + 1) * h * w];
                let gp = &g[p * ho * wo..(p + 1) * ho * wo];
                for r in 0..2 * ho {
                    for v in &mut dst[r * w + 2 * wo..(r + 1) * w] {
                        v.write(T::zero());
                    }
                }
                for v in &mut dst[2 * ho * w..] {
                    v.write(T::zero());
                }
                super::simd::dispatch(
                    #[inline(always)]
                    || pool2_bwd(src, gp, w, dst, wo),
                )
            })
        });
    }
    let mut out = vec![T::zero(); n * c * h * w];
    out.par_chunks_mut(h * w).enumerate().for_each(|(p, dst)| {
        let src = &x[p * h * w..(p + 1) * h * w];
        let gp = &g[p * ho * wo..(p + 1) * ho * wo];
        for oh in 0..ho {
            for ow in 0..wo {
                // Branch-free argmax (first maximum wins, as in PyTorch).
                let mut best = oh * k * w + ow * k;
                let mut top = src[best];
                for i in 0..k {
                    for j in 0..k {
                        let idx = (oh * k + i) * w + ow * k + j;
                        let v = src[idx];
                        let better = v > top;
                        best = if better { idx } else { best };
                        top = T::select(better, v, top);
                    }
                }
                dst[best] += gp[oh * wo + ow];
            }
        }
    });
    Ok(out)
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "taper-maxpool"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, _, _, ho, wo) = pool_dims(l, self.0)?;
        let out = crate::float_dispatch!(
            "max_pool2d",
            s.dtype(),
            [(x, s, l)],
            maxpool_fwd(x, l, self.0)?
        );
        Ok((out, Shape::from((n, c, ho, wo))))
    }
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(
            &grad_res.contiguous()?,
            &MaxPoolGrad(self.0),
        )?))
    }
}

impl candle_core::CustomOp2 for MaxPoolGrad {
    fn name(&self) -> &'static str {
        "taper-maxpool-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = crate::float_dispatch!(
            "max_pool2d",
            s1.dtype(),
            [(x, s1, l1), (g, s2, l2)],
            maxpool_bwd(x, g, l1, self.0)?
        );
        Ok((out, l1.shape().clone()))
    }
}

/// `k`x`k` max pooling with stride `k`: the kernel above on the CPU, candle's
/// (with a corrected gradient, see [`crate::pool::max_pool2d`]) elsewhere.
pub fn max_pool2d(x: &Tensor, k: usize) -> Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        x.contiguous()?.apply_op1(MaxPool(k))
    } else {
        max_pool2d_reshape(x, k)
    }
}

/// [`max_pool2d`] from candle ops (any device and dtype): each window's first
/// maximum is picked by `argmax` and taken by `gather`, so the gradient goes to
/// that element alone, as in the CPU kernel and PyTorch. (A `max` reduction's
/// backward gave every tied element the whole gradient, so CPU and GPU training
/// differed on saturated activations.)
pub fn max_pool2d_reshape(xs: &Tensor, k: usize) -> Result<Tensor> {
    let (n, c, h, w) = xs.dims4()?;
    let (ho, wo) = (h / k.max(1), w / k.max(1));
    if k == 0 || ho == 0 || wo == 0 {
        candle_core::bail!("max_pool2d: window {k} does not fit a {h}x{w} input");
    }
    let xs = if ho * k != h || wo * k != w {
        xs.narrow(2, 0, ho * k)?.narrow(3, 0, wo * k)?
    } else {
        xs.clone()
    };
    // Each window's k·k values along the last dimension.
    let windows = xs
        .reshape((n, c, ho, k, wo, k))?
        .permute((0, 1, 2, 4, 3, 5))?
        .contiguous()?
        .reshape((n, c, ho, wo, k * k))?;
    let first_max = windows.argmax_keepdim(4)?;
    windows.gather(&first_max, 4)?.squeeze(4)
}
