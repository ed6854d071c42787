//! The whole-sequence LSTM kernel.
//!
//! An LSTM built from candle ops costs a dozen small ops per time step, and the
//! backward of each per-step slice of the input projection allocates a gradient
//! of the whole sequence (candle's `narrow` backward pads with zeros), so time
//! per step grows with the sequence. [`lstm_seq`] runs a whole layer direction as
//! one op: the forward loops over time with one matrix product per step, the
//! backward recomputes the gates with one large product, runs the recurrence
//! backwards, and gets the weight gradient from one more large product.

use super::{cpu_slice as slice, gemm, MatRef, Real};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// `dst (m, n) = (accumulate ? dst : 0) + a (m, k) · b`, all row-major except
/// that `b` is read with strides `(b_rs, b_cs)` (so a transposed view costs no
/// copy), on the whole pool.
fn gemm_into<T: WithDType>(
    dst: &mut [T],
    a: &[T],
    b: &[T],
    (m, n, k): (usize, usize, usize),
    (b_rs, b_cs): (usize, usize),
    accumulate: bool,
) {
    let b = MatRef {
        data: b,
        rs: b_rs,
        cs: b_cs,
    };
    gemm(
        dst,
        n,
        MatRef::rows(a, k),
        b,
        (m, n, k),
        accumulate,
        rayon::current_num_threads(),
    );
}

/// The whole-sequence LSTM op: `(xp (T, B, 4H), w_hh (4H, H), init (2, B, H))` →
/// `(2, T, B, H)` = every step's `h` then every step's `c`.
#[derive(Debug, Clone, Copy)]
struct LstmSeq;

/// Applies the gate nonlinearities in place to rows of `[i | f | g | o]`
/// pre-activations (`H` each): sigmoid, sigmoid, tanh, sigmoid. Each is a
/// plain loop over one slice, which the compiler vectorises.
fn activate_gates<T: Real>(gates: &mut [T], h: usize) {
    super::simd::dispatch(
        #[inline(always)]
        || {
            for row in gates.chunks_exact_mut(4 * h) {
                let (ifg, o) = row.split_at_mut(3 * h);
                let (i_f, g) = ifg.split_at_mut(2 * h);
                for v in i_f {
                    *v = v.sig();
                }
                for v in g {
                    *v = v.th();
                }
                for v in o {
                    *v = v.sig();
                }
            }
        },
    )
}

fn lstm_fwd<T: Real>(
    xp: &[T],
    w: &[T],
    init: &[T],
    (t, b, h): (usize, usize, usize),
) -> Result<Vec<T>> {
    let bh = b * h;
    let mut gates = vec![T::zero(); b * 4 * h];
    let mut out = vec![T::zero(); 2 * t * bh];
    let (hs, cs) = out.split_at_mut(t * bh);
    let mut hprev = init[..bh].to_vec();
    let mut cprev = init[bh..2 * bh].to_vec();
    for s in 0..t {
        // gates = xp_t + h_{t-1} W^T, W (4H, H) read transposed in place.
        gates.copy_from_slice(&xp[s * b * 4 * h..(s + 1) * b * 4 * h]);
        gemm_into(&mut gates, &hprev, w, (b, 4 * h, h), (1, h), true);
        let (hs_s, cs_s) = (&mut hs[s * bh..(s + 1) * bh], &mut cs[s * bh..(s + 1) * bh]);
        activate_gates(&mut gates, h);
        // At the CPU's vector width (a tanh per value), as the gates.
        super::simd::dispatch(
            #[inline(always)]
            || {
                for (((gr, cp), c_out), h_out) in gates
                    .chunks_exact(4 * h)
                    .zip(cprev.chunks_exact(h))
                    .zip(cs_s.chunks_exact_mut(h))
                    .zip(hs_s.chunks_exact_mut(h))
                {
                    let (gi, rest) = gr.split_at(h);
                    let (gf, rest) = rest.split_at(h);
                    let (gg, go) = rest.split_at(h);
                    for ((((c, &f), &p), &i), &g) in
                        c_out.iter_mut().zip(gf).zip(cp).zip(gi).zip(gg)
                    {
                        *c = f * p + i * g;
                    }
                    for ((hv, &o), &c) in h_out.iter_mut().zip(go).zip(c_out.iter()) {
                        *hv = o * c.th();
                    }
                }
            },
        );
        hprev.copy_from_slice(hs_s);
        cprev.copy_from_slice(cs_s);
    }
    Ok(out)
}

fn lstm_bwd<T: Real>(
    xp: &Tensor,
    w: &Tensor,
    init: &Tensor,
    res: &Tensor,
    grad: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (t, b, g4) = xp.dims3()?;
    let h = g4 / 4;
    let bh = b * h;
    let dev = Device::Cpu;
    let w_v: Vec<T> = w.flatten_all()?.to_vec1()?;
    let res_v: Vec<T> = res.flatten_all()?.to_vec1()?;
    let grad_v: Vec<T> = grad.flatten_all()?.to_vec1()?;
    let init_v: Vec<T> = init.flatten_all()?.to_vec1()?;
    let (hs, cs) = res_v.split_at(t * bh);
    let mut hprev_all = Vec::with_capacity(t * bh);
    hprev_all.extend_from_slice(&init_v[..bh]);
    hprev_all.extend_from_slice(&hs[..(t - 1) * bh]);
    // Pre-activations of every step at once: xp + h_{t-1} W^T, the product
    // added into a copy of xp by kernels::gemm (OpenBLAS where loaded; candle's
    // matmul would take the gemm crate and a separate add).
    let mut act: Vec<T> = xp.flatten_all()?.to_vec1()?;
    gemm_into(&mut act, &hprev_all, &w_v, (t * b, 4 * h, h), (1, h), true);
    // The gates and tanh(c) of every step, in two vectorising passes, so the
    // recurrence below is multiplies and adds only.
    act.par_chunks_mut(4 * h * b.max(1))
        .for_each(|c| activate_gates(c, h));
    let mut tcs = cs.to_vec();
    tcs.par_chunks_mut(1 << 14).for_each(|c| {
        super::simd::dispatch(
            #[inline(always)]
            || {
                for v in c {
                    *v = v.th();
                }
            },
        )
    });
    let mut dg = vec![T::zero(); t * b * 4 * h];
    let mut dh_carry = vec![T::zero(); bh];
    let mut dc_carry = vec![T::zero(); bh];
    let one = T::one();
    for s in (0..t).rev() {
        let cprev: &[T] = if s == 0 {
            &init_v[bh..2 * bh]
        } else {
            &cs[(s - 1) * bh..s * bh]
        };
        let tc_s = &tcs[s * bh..(s + 1) * bh];
        let gh = &grad_v[s * bh..(s + 1) * bh];
        let gc = &grad_v[t * bh + s * bh..t * bh + (s + 1) * bh];
        let act_s = &act[s * b * 4 * h..(s + 1) * b * 4 * h];
        let dg_s = &mut dg[s * b * 4 * h..(s + 1) * b * 4 * h];
        // At the CPU's vector width: this recurrence is plain arithmetic.
        super::simd::dispatch(
            #[inline(always)]
            || {
                for r in 0..b {
                    let row = r * h..(r + 1) * h;
                    let (p, d) = (
                        &act_s[r * 4 * h..(r + 1) * 4 * h],
                        &mut dg_s[r * 4 * h..(r + 1) * 4 * h],
                    );
                    // Re-slicing to `..h` tells the compiler every length, so the loop
                    // has no bounds checks and vectorises.
                    let (pi, pf, pg, po) =
                        (&p[..h], &p[h..2 * h], &p[2 * h..3 * h], &p[3 * h..4 * h]);
                    let (di, rest) = d.split_at_mut(h);
                    let (df, rest) = rest.split_at_mut(h);
                    let (dgg, dout) = rest.split_at_mut(h);
                    let (dgg, dout) = (&mut dgg[..h], &mut dout[..h]);
                    let (di, df) = (&mut di[..h], &mut df[..h]);
                    let (tc_r, cp, gh_r, gc_r) = (
                        &tc_s[row.clone()],
                        &cprev[row.clone()],
                        &gh[row.clone()],
                        &gc[row.clone()],
                    );
                    let (dh_r, dc_r) = (&dh_carry[row.clone()], &mut dc_carry[row]);
                    for j in 0..h {
                        let (i, f, g, o, tc) = (pi[j], pf[j], pg[j], po[j], tc_r[j]);
                        let dh = gh_r[j] + dh_r[j];
                        let dc = gc_r[j] + dc_r[j] + dh * o * (one - tc * tc);
                        di[j] = dc * g * i * (one - i);
                        df[j] = dc * cp[j] * f * (one - f);
                        dgg[j] = dc * i * (one - g * g);
                        dout[j] = dh * tc * o * (one - o);
                        dc_r[j] = dc * f;
                    }
                }
            },
        );
        gemm_into(&mut dh_carry, dg_s, &w_v, (b, h, 4 * h), (h, 1), false);
    }
    let dw = super::conv::gemm_new(
        MatRef::transposed(&dg, 4 * h),
        MatRef::rows(&hprev_all, h),
        (4 * h, h, t * b),
        rayon::current_num_threads(),
    );
    let dw = Tensor::from_vec(dw, (4 * h, h), &dev)?;
    let dg_t = Tensor::from_vec(dg, (t * b, 4 * h), &dev)?;
    let mut dinit = dh_carry;
    dinit.extend_from_slice(&dc_carry);
    Ok((
        dg_t.reshape((t, b, 4 * h))?,
        dw,
        Tensor::from_vec(dinit, (2, b, h), &dev)?,
    ))
}

impl CustomOp3 for LstmSeq {
    fn name(&self) -> &'static str {
        "taper-lstm-seq"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (t, b, g4) = l1.shape().dims3()?;
        let h = g4 / 4;
        if g4 % 4 != 0 || l2.dims() != [4 * h, h] || l3.dims() != [2, b, h] {
            candle_core::bail!(
                "lstm: shapes xp {:?}, w_hh {:?}, init {:?} do not fit (T, B, 4H), (4H, H), (2, B, H)",
                l1.dims(),
                l2.dims(),
                l3.dims()
            );
        }
        let out = match s1.dtype() {
            DType::F32 => CpuStorage::F32(lstm_fwd::<f32>(
                slice(s1, l1, "lstm")?,
                slice(s2, l2, "lstm")?,
                slice(s3, l3, "lstm")?,
                (t, b, h),
            )?),
            DType::F64 => CpuStorage::F64(lstm_fwd::<f64>(
                slice(s1, l1, "lstm")?,
                slice(s2, l2, "lstm")?,
                slice(s3, l3, "lstm")?,
                (t, b, h),
            )?),
            d => candle_core::bail!("lstm: unsupported dtype {d:?}"),
        };
        Ok((out, Shape::from((2, t, b, h))))
    }

    fn bwd(
        &self,
        xp: &Tensor,
        w: &Tensor,
        init: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (xp, w, init, res, grad) = (
            xp.detach(),
            w.detach(),
            init.detach(),
            res.detach(),
            grad.detach(),
        );
        let (a, b, c) = match xp.dtype() {
            DType::F32 => lstm_bwd::<f32>(&xp, &w, &init, &res, &grad)?,
            DType::F64 => lstm_bwd::<f64>(&xp, &w, &init, &res, &grad)?,
            d => candle_core::bail!("lstm: unsupported dtype {d:?}"),
        };
        Ok((Some(a), Some(b), Some(c)))
    }
}

/// Runs one LSTM layer direction over a sequence. `xp (T, B, 4H)`: the input
/// projection of every step, biases included, gates in PyTorch's order (input,
/// forget, cell, output); `w_hh (4H, H)`; `init (2, B, H)`: initial `h` and `c`.
/// Returns `(2, T, B, H)`: all `h`, then all `c`. One fused op on the CPU,
/// candle ops elsewhere (see [`lstm_seq_reference`]).
pub fn lstm_seq(xp: &Tensor, w_hh: &Tensor, init: &Tensor) -> Result<Tensor> {
    if xp.device().is_cpu() && matches!(xp.dtype(), DType::F32 | DType::F64) {
        xp.contiguous()?
            .apply_op3(&w_hh.contiguous()?, &init.contiguous()?, LstmSeq)
    } else {
        lstm_seq_reference(xp, w_hh, init)
    }
}

/// [`lstm_seq`] built from candle ops, step by step (other devices, and tests).
pub fn lstm_seq_reference(xp: &Tensor, w_hh: &Tensor, init: &Tensor) -> Result<Tensor> {
    let (t, _, g4) = xp.dims3()?;
    let h = g4 / 4;
    let mut hc = (init.get(0)?, init.get(1)?);
    let (mut hs, mut cs) = (Vec::with_capacity(t), Vec::with_capacity(t));
    for s in 0..t {
        let gates = (xp.get(s)? + hc.0.matmul(&w_hh.t()?)?)?;
        let i = candle_nn::ops::sigmoid(&gates.narrow(1, 0, h)?)?;
        let f = candle_nn::ops::sigmoid(&gates.narrow(1, h, h)?)?;
        let g = gates.narrow(1, 2 * h, h)?.tanh()?;
        let o = candle_nn::ops::sigmoid(&gates.narrow(1, 3 * h, h)?)?;
        let c = ((f * &hc.1)? + (i * g)?)?;
        let hn = (o * c.tanh()?)?;
        hs.push(hn.clone());
        cs.push(c.clone());
        hc = (hn, c);
    }
    Tensor::stack(&[Tensor::stack(&hs, 0)?, Tensor::stack(&cs, 0)?], 0)
}
