//! CPU kernels for the recurrent layers and the loss, as candle custom ops.
//!
//! An LSTM built from candle ops costs a dozen small ops per time step, and the
//! backward of each per-step slice of the input projection allocates a gradient
//! of the whole sequence (candle's `narrow` backward pads with zeros), so time
//! per step grows with the sequence. [`lstm_seq`] runs a whole layer direction as
//! one op: the forward loops over time with one matrix product per step, the
//! backward recomputes the gates with one large product, runs the recurrence
//! backwards, and gets the weight gradient from one more large product.
//! [`token_losses`] fuses log-softmax, label smoothing, the target's negative
//! log-likelihood and the arg-max check in one pass over the logits, and
//! [`linear_token_losses`] fuses the output projection with it, so the logits
//! never become a graph node.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Device, Layout, Result, Shape, Tensor};
use candle_core::{WithDType, D};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

use taper_train::kernels::vmath;
/// Floats the kernels run on (f32 for training, f64 for gradient checks); for
/// f32 its `ex`/`th`/`sig` are the vectorising ones of
/// [`taper_train::kernels::vmath`].
pub(crate) use taper_train::kernels::Real;

use taper_train::kernels::cpu_slice as slice;
use taper_train::kernels::{gemm, MatRef};

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

/// `tanh` with a one-pass backward (`g·(1 - y²)`), computed through `exp`:
/// candle's CPU tanh calls the slow `f32::tanh`, and the additive attention's
/// `(B, Tq, S, A)` tanh was the largest cost of a training step.
#[derive(Debug, Clone, Copy)]
struct Tanh;

#[derive(Debug, Clone, Copy)]
struct TanhGrad;

fn map_par<T: Real>(x: &[T], f: impl Fn(T) -> T + Sync + Send) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(1 << 14)
        .zip(x.par_chunks(1 << 14))
        .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(o, &v)| *o = f(v)));
    out
}

impl CustomOp1 for Tanh {
    fn name(&self) -> &'static str {
        "taper-tanh"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match s.dtype() {
            DType::F32 => CpuStorage::F32(map_par(slice::<f32>(s, l, "tanh")?, |v| v.th())),
            DType::F64 => CpuStorage::F64(map_par(slice::<f64>(s, l, "tanh")?, |v| v.th())),
            d => candle_core::bail!("tanh: unsupported dtype {d:?}"),
        };
        Ok((out, l.shape().clone()))
    }
    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(res.apply_op2_no_bwd(&grad.contiguous()?, &TanhGrad)?))
    }
}

fn tanh_grad<T: Real>(y: &[T], g: &[T]) -> Vec<T> {
    let mut out = vec![T::zero(); y.len()];
    out.par_chunks_mut(1 << 14)
        .zip(y.par_chunks(1 << 14).zip(g.par_chunks(1 << 14)))
        .for_each(|(d, (ys, gs))| {
            for ((o, &y), &g) in d.iter_mut().zip(ys).zip(gs) {
                *o = g * (T::one() - y * y);
            }
        });
    out
}

impl candle_core::CustomOp2 for TanhGrad {
    fn name(&self) -> &'static str {
        "taper-tanh-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!("tanh backward: shapes {:?} and {:?}", l1.dims(), l2.dims());
        }
        let out = match s1.dtype() {
            DType::F32 => CpuStorage::F32(tanh_grad(
                slice::<f32>(s1, l1, "tanh")?,
                slice::<f32>(s2, l2, "tanh")?,
            )),
            DType::F64 => CpuStorage::F64(tanh_grad(
                slice::<f64>(s1, l1, "tanh")?,
                slice::<f64>(s2, l2, "tanh")?,
            )),
            d => candle_core::bail!("tanh: unsupported dtype {d:?}"),
        };
        Ok((out, l1.shape().clone()))
    }
}

/// Hyperbolic tangent: the fused kernel on the CPU, candle's elsewhere.
pub fn tanh(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        x.contiguous()?.apply_op1(Tanh)
    } else {
        x.tanh()
    }
}

/// Additive attention scores `s[b, t, j] = Σ_a v[a]·tanh(q[b, t, a] + k[b, j, a])`
/// without materialising the `(B, Tq, S, A)` tensor: as candle ops its broadcast
/// sum, tanh and their backward passes (reductions over middle dimensions)
/// took most of a training step.
#[derive(Debug, Clone, Copy)]
struct AdditiveScores;

fn additive_fwd<T: Real>(
    q: &[T],
    k: &[T],
    v: &[T],
    (b, t, s, a): (usize, usize, usize, usize),
) -> Vec<T> {
    let mut out = vec![T::zero(); b * t * s];
    out.par_chunks_mut(t * s).enumerate().for_each(|(bi, o)| {
        for ti in 0..t {
            let qr = &q[(bi * t + ti) * a..(bi * t + ti + 1) * a];
            for si in 0..s {
                let kr = &k[(bi * s + si) * a..(bi * s + si + 1) * a];
                let mut acc = [T::zero(); 8];
                let mut tail = T::zero();
                let (qc, kc, vc) = (qr.chunks_exact(8), kr.chunks_exact(8), v.chunks_exact(8));
                for ((&x, &y), &w) in qc
                    .remainder()
                    .iter()
                    .zip(kc.remainder())
                    .zip(vc.remainder())
                {
                    tail += w * (x + y).th();
                }
                for ((x, y), w) in qc.zip(kc).zip(vc) {
                    for l in 0..8 {
                        acc[l] += w[l] * (x[l] + y[l]).th();
                    }
                }
                o[ti * s + si] = acc.iter().fold(tail, |a, &b| a + b);
            }
        }
    });
    out
}

type Grads3<T> = (Vec<T>, Vec<T>, Vec<T>);

fn additive_bwd<T: Real>(
    q: &[T],
    k: &[T],
    v: &[T],
    g: &[T],
    (b, t, s, a): (usize, usize, usize, usize),
) -> Grads3<T> {
    let parts: Vec<(Vec<T>, Vec<T>, Vec<T>)> = (0..b)
        .into_par_iter()
        .map(|bi| {
            let mut dq = vec![T::zero(); t * a];
            let mut dk = vec![T::zero(); s * a];
            let mut dv = vec![T::zero(); a];
            for ti in 0..t {
                let qr = &q[(bi * t + ti) * a..(bi * t + ti + 1) * a];
                let dqr = &mut dq[ti * a..(ti + 1) * a];
                for si in 0..s {
                    let gs = g[(bi * t + ti) * s + si];
                    if gs == T::zero() {
                        continue;
                    }
                    let kr = &k[(bi * s + si) * a..(bi * s + si + 1) * a];
                    let dkr = &mut dk[si * a..(si + 1) * a];
                    for ((((dq, dk), dv), (&x, &y)), &w) in dqr
                        .iter_mut()
                        .zip(dkr.iter_mut())
                        .zip(dv.iter_mut())
                        .zip(qr.iter().zip(kr))
                        .zip(v)
                    {
                        let th = (x + y).th();
                        let d = gs * w * (T::one() - th * th);
                        *dq += d;
                        *dk += d;
                        *dv += gs * th;
                    }
                }
            }
            (dq, dk, dv)
        })
        .collect();
    let mut dq = Vec::with_capacity(b * t * a);
    let mut dk = Vec::with_capacity(b * s * a);
    let mut dv = vec![T::zero(); a];
    for (pq, pk, pv) in parts {
        dq.extend(pq);
        dk.extend(pk);
        for (d, x) in dv.iter_mut().zip(pv) {
            *d += x;
        }
    }
    (dq, dk, dv)
}

fn additive_dims(q: &Layout, k: &Layout, v: &Layout) -> Result<(usize, usize, usize, usize)> {
    let (b, t, a) = q.shape().dims3()?;
    let (kb, s, ka) = k.shape().dims3()?;
    if kb != b || ka != a || v.dims() != [a] {
        candle_core::bail!(
            "additive scores: q {:?}, k {:?}, v {:?} do not fit (B, T, A), (B, S, A), (A,)",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    Ok((b, t, s, a))
}

impl CustomOp3 for AdditiveScores {
    fn name(&self) -> &'static str {
        "taper-additive-scores"
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
        let dims = additive_dims(l1, l2, l3)?;
        let out = match s1.dtype() {
            DType::F32 => CpuStorage::F32(additive_fwd::<f32>(
                slice(s1, l1, "additive")?,
                slice(s2, l2, "additive")?,
                slice(s3, l3, "additive")?,
                dims,
            )),
            DType::F64 => CpuStorage::F64(additive_fwd::<f64>(
                slice(s1, l1, "additive")?,
                slice(s2, l2, "additive")?,
                slice(s3, l3, "additive")?,
                dims,
            )),
            d => candle_core::bail!("additive scores: unsupported dtype {d:?}"),
        };
        Ok((out, Shape::from((dims.0, dims.1, dims.2))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, t, a) = q.dims3()?;
        let s = k.dim(1)?;
        let dev = q.device();
        fn host<T: WithDType>(x: &Tensor) -> Result<Vec<T>> {
            x.detach().flatten_all()?.to_vec1()
        }
        macro_rules! run {
            ($t:ty) => {{
                let (dq, dk, dv) =
                    additive_bwd::<$t>(&host(q)?, &host(k)?, &host(v)?, &host(grad)?, (b, t, s, a));
                (
                    Tensor::from_vec(dq, (b, t, a), dev)?,
                    Tensor::from_vec(dk, (b, s, a), dev)?,
                    Tensor::from_vec(dv, a, dev)?,
                )
            }};
        }
        let (dq, dk, dv) = match q.dtype() {
            DType::F32 => run!(f32),
            DType::F64 => run!(f64),
            d => candle_core::bail!("additive scores: unsupported dtype {d:?}"),
        };
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

/// Additive attention scores `(B, Tq, S)` from projected queries `q (B, Tq, A)`,
/// projected keys `k (B, S, A)` and the scoring vector `v (A,)`: one fused op on
/// the CPU, candle ops elsewhere.
pub fn additive_scores(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    if q.device().is_cpu() && matches!(q.dtype(), DType::F32 | DType::F64) {
        q.contiguous()?
            .apply_op3(&k.contiguous()?, &v.contiguous()?, AdditiveScores)
    } else {
        additive_scores_reference(q, k, v)
    }
}

/// [`additive_scores`] from candle ops.
pub fn additive_scores_reference(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let e = q.unsqueeze(2)?.broadcast_add(&k.unsqueeze(1)?)?.tanh()?;
    let (b, t, s, a) = e.dims4()?;
    e.reshape((b * t * s, a))?
        .matmul(&v.reshape((a, 1))?)?
        .reshape((b, t, s))
}

/// The whole-sequence LSTM op: `(xp (T, B, 4H), w_hh (4H, H), init (2, B, H))` →
/// `(2, T, B, H)` = every step's `h` then every step's `c`.
#[derive(Debug, Clone, Copy)]
struct LstmSeq;

/// Applies the gate nonlinearities in place to rows of `[i | f | g | o]`
/// pre-activations (`H` each): sigmoid, sigmoid, tanh, sigmoid. Each is a
/// plain loop over one slice, which the compiler vectorises.
fn activate_gates<T: Real>(gates: &mut [T], h: usize) {
    for row in gates.chunks_exact_mut(4 * h) {
        let (ifg, o) = row.split_at_mut(3 * h);
        let (i_f, g) = ifg.split_at_mut(2 * h);
        i_f.iter_mut().for_each(|v| *v = v.sig());
        g.iter_mut().for_each(|v| *v = v.th());
        o.iter_mut().for_each(|v| *v = v.sig());
    }
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
        for (((gr, cp), c_out), h_out) in gates
            .chunks_exact(4 * h)
            .zip(cprev.chunks_exact(h))
            .zip(cs_s.chunks_exact_mut(h))
            .zip(hs_s.chunks_exact_mut(h))
        {
            let (gi, rest) = gr.split_at(h);
            let (gf, rest) = rest.split_at(h);
            let (gg, go) = rest.split_at(h);
            for ((((c, &f), &p), &i), &g) in c_out.iter_mut().zip(gf).zip(cp).zip(gi).zip(gg) {
                *c = f * p + i * g;
            }
            for ((hv, &o), &c) in h_out.iter_mut().zip(go).zip(c_out.iter()) {
                *hv = o * c.th();
            }
        }
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
    let hprev_t = Tensor::from_vec(hprev_all, (t * b, h), &dev)?;
    // Pre-activations of every step at once: xp + h_{t-1} W^T.
    let mut act: Vec<T> = (xp.reshape((t * b, 4 * h))? + hprev_t.matmul(&w.t()?)?)?
        .flatten_all()?
        .to_vec1()?;
    // The gates and tanh(c) of every step, in two vectorising passes, so the
    // recurrence below is multiplies and adds only.
    act.par_chunks_mut(4 * h * b.max(1))
        .for_each(|c| activate_gates(c, h));
    let mut tcs = cs.to_vec();
    tcs.par_chunks_mut(1 << 14)
        .for_each(|c| c.iter_mut().for_each(|v| *v = v.th()));
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
        for r in 0..b {
            let row = r * h..(r + 1) * h;
            let (p, d) = (
                &act_s[r * 4 * h..(r + 1) * 4 * h],
                &mut dg_s[r * 4 * h..(r + 1) * 4 * h],
            );
            // Re-slicing to `..h` tells the compiler every length, so the loop
            // has no bounds checks and vectorises.
            let (pi, pf, pg, po) = (&p[..h], &p[h..2 * h], &p[2 * h..3 * h], &p[3 * h..4 * h]);
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
        gemm_into(&mut dh_carry, dg_s, &w_v, (b, h, 4 * h), (h, 1), false);
    }
    let dg_t = Tensor::from_vec(dg, (t * b, 4 * h), &dev)?;
    let dw = dg_t.t()?.matmul(&hprev_t)?;
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

/// Per-token losses of `logits (N, V)` against `targets`: columns
/// `[label-smoothed cross-entropy, negative log-likelihood, 1 if the arg-max is
/// the target]`. The smoothed loss is PyTorch's
/// `cross_entropy(label_smoothing = eps)`: `(1 - eps)·nll + eps·mean_v(-log p_v)`.
#[derive(Debug, Clone)]
struct TokenLosses {
    targets: Vec<u32>,
    eps: f64,
}

#[derive(Debug, Clone)]
struct TokenLossesGrad {
    targets: Vec<u32>,
    eps: f64,
}

fn token_losses_fwd<T: Real>(x: &[T], v: usize, targets: &[u32], eps: f64) -> Vec<T> {
    let mut out = vec![T::zero(); targets.len() * 3];
    out.par_chunks_mut(3)
        .zip(x.par_chunks(v))
        .zip(targets.par_iter())
        .for_each(|((o, row), &t)| {
            let st = RowStats::of(row, t);
            let z = vmath::sum_map(row, |a| (a - st.max).ex());
            st.write_losses(o, z, v, eps);
        });
    out
}

/// What one row of logits contributes to its losses besides `Σ e^{x - max}`.
struct RowStats<T> {
    max: T,
    /// The arg-max (the first maximum) is the target.
    hit: bool,
    sum: f64,
    target_logit: f64,
}

impl<T: Real> RowStats<T> {
    /// Separate vectorising passes over the row.
    fn of(row: &[T], t: u32) -> Self {
        let max = vmath::max(row);
        let arg = row.iter().position(|&a| a == max).unwrap_or(0);
        Self {
            max,
            hit: arg == t as usize,
            sum: vmath::sum(row),
            target_logit: row[t as usize].to_f64(),
        }
    }

    /// `o = [smoothed loss, nll, hit]` given `z = Σ e^{x - max}` over `v` logits.
    fn write_losses(&self, o: &mut [T], z: f64, v: usize, eps: f64) {
        let lse = self.max.to_f64() + z.ln();
        let nll = lse - self.target_logit;
        let smooth = lse - self.sum / v as f64;
        o[0] = T::from_f64((1.0 - eps) * nll + eps * smooth);
        o[1] = T::from_f64(nll);
        o[2] = T::from_f64(if self.hit { 1.0 } else { 0.0 });
    }
}

/// One row's logit gradient, in place over `e = e^{x - max}` with `inv_z =
/// 1 / Σ e` (1 for probabilities): for loss weights `(g0, g1)`,
/// `(g0 + g1)·p - g0·eps/V`, minus `g0·(1 - eps) + g1` at the target.
fn logit_grad_row<T: Real>(e: &mut [T], inv_z: f64, (g0, g1): (f64, f64), t: u32, eps: f64) {
    if g0 == 0.0 && g1 == 0.0 {
        e.fill(T::zero());
        return;
    }
    let scale = T::from_f64((g0 + g1) * inv_z);
    let uniform = T::from_f64(g0 * eps / e.len() as f64);
    e.iter_mut().for_each(|v| *v = *v * scale - uniform);
    e[t as usize] -= T::from_f64(g0 * (1.0 - eps) + g1);
}

fn token_losses_bwd<T: Real>(x: &[T], g: &[T], v: usize, targets: &[u32], eps: f64) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(v)
        .zip(x.par_chunks(v))
        .zip(g.par_chunks(3).zip(targets.par_iter()))
        .for_each(|((d, row), (gr, &t))| {
            let g = (gr[0].to_f64(), gr[1].to_f64());
            if g == (0.0, 0.0) {
                return;
            }
            let m = vmath::max(row);
            for (dj, &a) in d.iter_mut().zip(row) {
                *dj = (a - m).ex();
            }
            let z = vmath::sum(d);
            logit_grad_row(d, 1.0 / z, g, t, eps);
        });
    out
}

impl CustomOp1 for TokenLosses {
    fn name(&self) -> &'static str {
        "taper-token-losses"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, v) = l.shape().dims2()?;
        check_targets(&self.targets, n, v)?;
        let out = match s.dtype() {
            DType::F32 => CpuStorage::F32(token_losses_fwd::<f32>(
                slice(s, l, "token_losses")?,
                v,
                &self.targets,
                self.eps,
            )),
            DType::F64 => CpuStorage::F64(token_losses_fwd::<f64>(
                slice(s, l, "token_losses")?,
                v,
                &self.targets,
                self.eps,
            )),
            d => candle_core::bail!("token_losses: unsupported dtype {d:?}"),
        };
        Ok((out, Shape::from((n, 3))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let op = TokenLossesGrad {
            targets: self.targets.clone(),
            eps: self.eps,
        };
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &op)?))
    }
}

fn check_targets(targets: &[u32], n: usize, v: usize) -> Result<()> {
    if targets.len() != n {
        candle_core::bail!("token_losses: {} targets for {n} rows", targets.len());
    }
    if let Some(bad) = targets.iter().find(|&&t| t as usize >= v) {
        candle_core::bail!("token_losses: target {bad} outside a vocabulary of {v}");
    }
    Ok(())
}

impl candle_core::CustomOp2 for TokenLossesGrad {
    fn name(&self) -> &'static str {
        "taper-token-losses-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, v) = l1.shape().dims2()?;
        let out = match s1.dtype() {
            DType::F32 => CpuStorage::F32(token_losses_bwd::<f32>(
                slice(s1, l1, "token_losses")?,
                slice(s2, l2, "token_losses")?,
                v,
                &self.targets,
                self.eps,
            )),
            DType::F64 => CpuStorage::F64(token_losses_bwd::<f64>(
                slice(s1, l1, "token_losses")?,
                slice(s2, l2, "token_losses")?,
                v,
                &self.targets,
                self.eps,
            )),
            d => candle_core::bail!("token_losses: unsupported dtype {d:?}"),
        };
        Ok((out, l1.shape().clone()))
    }
}

/// Per-token `[smoothed loss, nll, correct]` rows, `(N, 3)`, for `logits (N, V)`
/// and `targets` (host ids, one per row). One fused op on the CPU (its backward
/// is `g·(softmax - (1 - eps)·onehot - eps/V)`), candle ops elsewhere.
pub fn token_losses(logits: &Tensor, targets: &[u32], eps: f64) -> Result<Tensor> {
    let (n, v) = logits.dims2()?;
    check_targets(targets, n, v)?;
    if logits.device().is_cpu() && matches!(logits.dtype(), DType::F32 | DType::F64) {
        logits.contiguous()?.apply_op1(TokenLosses {
            targets: targets.to_vec(),
            eps,
        })
    } else {
        token_losses_reference(logits, targets, eps)
    }
}

/// [`token_losses`] from candle ops.
pub fn token_losses_reference(logits: &Tensor, targets: &[u32], eps: f64) -> Result<Tensor> {
    let n = targets.len();
    let t = Tensor::from_slice(targets, (n, 1), logits.device())?;
    let logp = taper_train::nn::log_softmax(logits)?;
    let nll = logp.gather(&t, 1)?.neg()?;
    let smooth = logp.mean_keepdim(D::Minus1)?.neg()?;
    let loss = ((&nll * (1.0 - eps))? + (smooth * eps)?)?;
    let correct = logits
        .argmax_keepdim(D::Minus1)?
        .eq(&t)?
        .to_dtype(logits.dtype())?;
    Tensor::cat(&[loss, nll, correct], 1)
}

/// The output projection and [`token_losses`] as one op: `(x (…, H), w (V, H),
/// b (V))` → per-token losses `(rows, 3)`.
///
/// The logits never become a graph node: composed, the `(rows, V)` logits (10-17
/// MB in the benchmark models) got a zero-filled gradient buffer and an add from
/// candle's backward, and the loss's backward recomputed every exponential. Here
/// the forward keeps the softmax probabilities for the backward, which turns
/// them into the logits' gradient in place and runs the projection's two GEMMs.
#[derive(Debug, Clone)]
struct LinearTokenLosses {
    targets: Vec<u32>,
    eps: f64,
    /// Probabilities `(rows, V)` from the forward, taken by the backward.
    probs: Arc<Mutex<Option<CpuStorage>>>,
}

/// `(losses (rows, 3), probabilities (rows, V))`.
fn head_fwd<T: Real>(
    x: &[T],
    w: &[T],
    b: &[T],
    (m, k, n): (usize, usize, usize),
    targets: &[u32],
    eps: f64,
) -> (Vec<T>, Vec<T>) {
    let mut probs = taper_train::kernels::linear::forward(x, w, Some(b), (m, k, n));
    let mut out = vec![T::zero(); m * 3];
    out.par_chunks_mut(3)
        .zip(probs.par_chunks_mut(n))
        .zip(targets.par_iter())
        .for_each(|((o, row), &t)| {
            let st = RowStats::of(row, t);
            for v in row.iter_mut() {
                *v = (*v - st.max).ex();
            }
            let z = vmath::sum(row);
            st.write_losses(o, z, n, eps);
            let inv = T::from_f64(1.0 / z);
            row.iter_mut().for_each(|v| *v *= inv);
        });
    (out, probs)
}

/// The logits' gradient, in place over the probabilities ([`logit_grad_row`]).
fn head_logit_grad<T: Real>(p: &mut [T], g: &[T], n: usize, targets: &[u32], eps: f64) {
    p.par_chunks_mut(n)
        .zip(g.par_chunks(3).zip(targets.par_iter()))
        .for_each(|(row, (gr, &t))| {
            logit_grad_row(row, 1.0, (gr[0].to_f64(), gr[1].to_f64()), t, eps);
        });
}

fn head_dims(x: &Layout, w: &Layout, b: &Layout) -> Result<(usize, usize, usize)> {
    let k = *x.dims().last().unwrap_or(&0);
    let m = x.shape().elem_count() / k.max(1);
    match w.dims() {
        [n, wk] if *wk == k && b.dims() == [*n] && k > 0 => Ok((m, k, *n)),
        _ => candle_core::bail!(
            "output head: input {:?}, weight {:?}, bias {:?} do not fit (…, H), (V, H), (V)",
            x.dims(),
            w.dims(),
            b.dims()
        ),
    }
}

impl CustomOp3 for LinearTokenLosses {
    fn name(&self) -> &'static str {
        "taper-linear-token-losses"
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
        let d = head_dims(l1, l2, l3)?;
        check_targets(&self.targets, d.0, d.2)?;
        let (out, probs) = match s1.dtype() {
            DType::F32 => {
                let (o, p) = head_fwd::<f32>(
                    slice(s1, l1, "output head")?,
                    slice(s2, l2, "output head")?,
                    slice(s3, l3, "output head")?,
                    d,
                    &self.targets,
                    self.eps,
                );
                (CpuStorage::F32(o), CpuStorage::F32(p))
            }
            DType::F64 => {
                let (o, p) = head_fwd::<f64>(
                    slice(s1, l1, "output head")?,
                    slice(s2, l2, "output head")?,
                    slice(s3, l3, "output head")?,
                    d,
                    &self.targets,
                    self.eps,
                );
                (CpuStorage::F64(o), CpuStorage::F64(p))
            }
            dt => candle_core::bail!("output head: unsupported dtype {dt:?}"),
        };
        *self.probs.lock().unwrap_or_else(|e| e.into_inner()) = Some(probs);
        Ok((out, Shape::from((d.0, 3))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let k = x.dim(D::Minus1)?;
        let m = x.elem_count() / k.max(1);
        let n = w.dim(0)?;
        let cached = self.probs.lock().unwrap_or_else(|e| e.into_inner()).take();
        macro_rules! logit_grad {
            ($t:ty, $variant:ident) => {{
                let mut p: Vec<$t> = match cached {
                    Some(CpuStorage::$variant(p)) if p.len() == m * n => p,
                    // A second backward over the same graph: recompute.
                    _ => {
                        let host = |t: &Tensor| t.detach().flatten_all()?.to_vec1::<$t>();
                        let (xv, wv, bv) = (host(x)?, host(w)?, host(b)?);
                        head_fwd::<$t>(&xv, &wv, &bv, (m, k, n), &self.targets, self.eps).1
                    }
                };
                let g: Vec<$t> = grad.flatten_all()?.to_vec1()?;
                head_logit_grad(&mut p, &g, n, &self.targets, self.eps);
                Tensor::from_vec(p, (m, n), &Device::Cpu)?
            }};
        }
        let dlogits = match x.dtype() {
            DType::F32 => logit_grad!(f32, F32),
            DType::F64 => logit_grad!(f64, F64),
            dt => candle_core::bail!("output head: unsupported dtype {dt:?}"),
        };
        taper_train::kernels::linear::backward(
            &x.detach(),
            &w.detach(),
            &dlogits,
            (x.track_op(), w.track_op(), b.track_op()),
        )
    }
}

/// `token_losses(x·Wᵀ + b, targets, eps)` as one op on the CPU (see
/// [`LinearTokenLosses`]); candle's projection and [`token_losses`] elsewhere.
/// `x (…, H)`, `w (V, H)`, `b (V)`; returns `(rows, 3)`.
pub fn linear_token_losses(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    targets: &[u32],
    eps: f64,
) -> Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        x.contiguous()?.apply_op3(
            &w.contiguous()?,
            &b.contiguous()?,
            LinearTokenLosses {
                targets: targets.to_vec(),
                eps,
                probs: Arc::new(Mutex::new(None)),
            },
        )
    } else {
        let k = x.dim(D::Minus1)?;
        let logits = taper_train::kernels::linear::linear(&x.reshape(((), k))?, w, Some(b))?;
        token_losses(&logits, targets, eps)
    }
}
