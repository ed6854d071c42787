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
//! log-likelihood and the arg-max check in one pass over the logits.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Device, Layout, Result, Shape, Tensor};
use candle_core::{WithDType, D};
use rayon::prelude::*;

/// Floats the kernels run on (f32 for training, f64 for gradient checks).
pub(crate) trait Real: WithDType {
    fn sig(self) -> Self;
    fn th(self) -> Self;
    fn ex(self) -> Self;
}

impl Real for f32 {
    fn sig(self) -> Self {
        1.0 / (1.0 + (-self).exp())
    }
    fn th(self) -> Self {
        // std's f32 tanh measured ~10x slower than exp here; through exp the
        // absolute error stays below 1e-7 and both tails saturate exactly.
        1.0 - 2.0 / (1.0 + (2.0 * self).exp())
    }
    fn ex(self) -> Self {
        self.exp()
    }
}

impl Real for f64 {
    fn sig(self) -> Self {
        1.0 / (1.0 + (-self).exp())
    }
    fn th(self) -> Self {
        self.tanh()
    }
    fn ex(self) -> Self {
        self.exp()
    }
}

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
                let mut acc = T::zero();
                for ((&x, &y), &w) in qr.iter().zip(kr).zip(v) {
                    acc += w * (x + y).th();
                }
                o[ti * s + si] = acc;
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
                    for j in 0..a {
                        let th = (qr[j] + kr[j]).th();
                        let d = gs * v[j] * (T::one() - th * th);
                        dqr[j] += d;
                        dkr[j] += d;
                        dv[j] += gs * th;
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
        for r in 0..b {
            let gr = &gates[r * 4 * h..(r + 1) * 4 * h];
            for j in 0..h {
                let i = gr[j].sig();
                let f = gr[h + j].sig();
                let g = gr[2 * h + j].th();
                let o = gr[3 * h + j].sig();
                let c = f * cprev[r * h + j] + i * g;
                cs_s[r * h + j] = c;
                hs_s[r * h + j] = o * c.th();
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
    let pre: Vec<T> = (xp.reshape((t * b, 4 * h))? + hprev_t.matmul(&w.t()?)?)?
        .flatten_all()?
        .to_vec1()?;
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
        let c_s = &cs[s * bh..(s + 1) * bh];
        let gh = &grad_v[s * bh..(s + 1) * bh];
        let gc = &grad_v[t * bh + s * bh..t * bh + (s + 1) * bh];
        let pre_s = &pre[s * b * 4 * h..(s + 1) * b * 4 * h];
        let dg_s = &mut dg[s * b * 4 * h..(s + 1) * b * 4 * h];
        for r in 0..b {
            let p = &pre_s[r * 4 * h..(r + 1) * 4 * h];
            let d = &mut dg_s[r * 4 * h..(r + 1) * 4 * h];
            for j in 0..h {
                let k = r * h + j;
                let i = p[j].sig();
                let f = p[h + j].sig();
                let g = p[2 * h + j].th();
                let o = p[3 * h + j].sig();
                let tc = c_s[k].th();
                let dh = gh[k] + dh_carry[k];
                let dc = gc[k] + dc_carry[k] + dh * o * (one - tc * tc);
                d[j] = dc * g * i * (one - i);
                d[h + j] = dc * cprev[k] * f * (one - f);
                d[2 * h + j] = dc * i * (one - g * g);
                d[3 * h + j] = dh * tc * o * (one - o);
                dc_carry[k] = dc * f;
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
            let mut max = row[0];
            let mut arg = 0usize;
            let mut sum = 0f64;
            for (j, &a) in row.iter().enumerate() {
                if a > max {
                    max = a;
                    arg = j;
                }
                sum += a.to_f64();
            }
            let m = max.to_f64();
            // exp in the row's own precision (f64 exp was 6 % of a step), sums in f64.
            let z: f64 = row.iter().map(|&a| (a - max).ex().to_f64()).sum();
            let lse = m + z.ln();
            let xt = row[t as usize].to_f64();
            let nll = lse - xt;
            let smooth = lse - sum / v as f64;
            o[0] = T::from_f64((1.0 - eps) * nll + eps * smooth);
            o[1] = T::from_f64(nll);
            o[2] = T::from_f64(if arg == t as usize { 1.0 } else { 0.0 });
        });
    out
}

fn token_losses_bwd<T: Real>(x: &[T], g: &[T], v: usize, targets: &[u32], eps: f64) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    out.par_chunks_mut(v)
        .zip(x.par_chunks(v))
        .zip(g.par_chunks(3).zip(targets.par_iter()))
        .for_each(|((d, row), (gr, &t))| {
            let (g0, g1) = (gr[0].to_f64(), gr[1].to_f64());
            if g0 == 0.0 && g1 == 0.0 {
                return;
            }
            let m = row.iter().fold(row[0], |a, &b| if b > a { b } else { a });
            let z: f64 = row.iter().map(|&a| (a - m).ex().to_f64()).sum();
            let gs = g0 + g1;
            let uniform = g0 * eps / v as f64;
            for (j, (dj, &a)) in d.iter_mut().zip(row).enumerate() {
                let p = (a - m).ex().to_f64() / z;
                let mut val = gs * p - uniform;
                if j == t as usize {
                    val -= g0 * (1.0 - eps) + g1;
                }
                *dj = T::from_f64(val);
            }
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
