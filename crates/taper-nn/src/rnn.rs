//! Recurrent layers: LSTM and GRU, stacked, optionally bidirectional, with
//! PyTorch's parameter names (`weight_ih_l0`, `bias_hh_l1_reverse`, ...) and
//! initialisation (uniform in ±1/√hidden).
//!
//! Each layer direction projects its whole input sequence with one matrix product
//! before the recurrence; the LSTM recurrence is one fused op on the CPU
//! ([`crate::kernels::rnn::lstm_seq`]). The sequence models of `taper-nlp` and
//! the video classifier of `taper-vision` share these layers.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::VarMap;
//! use taper_nn::{init::seeded_var_builder, rnn, CellKind, Mode, RnnConfig};
//!
//! let varmap = VarMap::new();
//! let cfg = RnnConfig { cell: CellKind::Lstm, input: 8, hidden: 16, layers: 2, bidirectional: true, dropout: 0.0 };
//! let lstm = rnn(cfg, seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu).pp("rnn"))?;
//! let x = Tensor::zeros((4, 10, 8), DType::F32, &Device::Cpu)?; // (batch, time, features)
//! let (out, states) = lstm.forward(&x, None, None, &Mode::eval())?;
//! assert_eq!(out.dims(), &[4, 10, 32]); // two directions of 16
//! assert_eq!(states.len(), 2); // one per layer
//! # Ok::<(), candle_core::Error>(())
//! ```

use crate::kernels::rnn::lstm_seq;
use crate::{Dropout, Forward, Mode};
use candle_core::{DType, Device, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

/// The recurrent cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellKind {
    /// Long short-term memory (gates input, forget, cell, output).
    Lstm,
    /// Gated recurrent unit (gates reset, update, new), PyTorch's formulation.
    Gru,
}

impl CellKind {
    fn gates(self) -> usize {
        match self {
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }
}

impl std::str::FromStr for CellKind {
    type Err = String;
    /// `"lstm"` or `"gru"`; anything else is an error naming both.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "lstm" => Ok(CellKind::Lstm),
            "gru" => Ok(CellKind::Gru),
            o => Err(format!("unknown cell '{o}' (lstm or gru)")),
        }
    }
}

/// Settings of an [`Rnn`].
#[derive(Debug, Clone, Copy)]
pub struct RnnConfig {
    /// LSTM or GRU.
    pub cell: CellKind,
    /// Input features.
    pub input: usize,
    /// Hidden units per direction.
    pub hidden: usize,
    /// Stacked layers.
    pub layers: usize,
    /// Run a second direction over the reversed sequence and concatenate.
    pub bidirectional: bool,
    /// Dropout between stacked layers (training only).
    pub dropout: f32,
}

/// The state of one layer (direction): `h (B, H)` and, for an LSTM, `c (B, H)`.
#[derive(Debug, Clone)]
pub struct RnnState {
    /// Hidden state.
    pub h: Tensor,
    /// Cell state (LSTM only).
    pub c: Option<Tensor>,
}

/// One direction of one layer.
#[derive(Debug, Clone)]
pub struct RnnDirection {
    cell: CellKind,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    hidden: usize,
}

impl RnnDirection {
    /// Parameters `weight_ih_l{layer}{suffix}` etc. under `vb`.
    pub fn new(
        cell: CellKind,
        input: usize,
        hidden: usize,
        layer: usize,
        suffix: &str,
        vb: &VarBuilder,
    ) -> Result<Self> {
        let g = cell.gates() * hidden;
        let b = 1.0 / (hidden as f64).sqrt();
        let init = Init::Uniform { lo: -b, up: b };
        let name = |p: &str| format!("{p}_l{layer}{suffix}");
        Ok(Self {
            cell,
            w_ih: vb.get_with_hints((g, input), &name("weight_ih"), init)?,
            w_hh: vb.get_with_hints((g, hidden), &name("weight_hh"), init)?,
            b_ih: vb.get_with_hints(g, &name("bias_ih"), init)?,
            b_hh: vb.get_with_hints(g, &name("bias_hh"), init)?,
            hidden,
        })
    }

    /// Runs over `x (T, B, I)` (time first) from `init` (zeros when `None`);
    /// returns the outputs `(T, B, H)` and the state after the last step.
    pub fn forward_time_major(
        &self,
        x: &Tensor,
        init: Option<&RnnState>,
    ) -> Result<(Tensor, RnnState)> {
        let (t, b, _) = x.dims3()?;
        let h = self.hidden;
        // One fused op (matrix product from the bias) over every step at once;
        // it rejects an input of the wrong width with a named error.
        match self.cell {
            CellKind::Lstm => {
                let bias = (&self.b_ih + &self.b_hh)?;
                let xp = crate::kernels::linear::linear(x, &self.w_ih, Some(&bias))?;
                let init = match init {
                    Some(s) => {
                        let c = match &s.c {
                            Some(c) => c.clone(),
                            None => s.h.zeros_like()?,
                        };
                        Tensor::stack(&[&s.h, &c], 0)?
                    }
                    None => Tensor::zeros((2, b, h), x.dtype(), x.device())?,
                };
                let out = lstm_seq(&xp, &self.w_hh, &init)?;
                let hs = out.get(0)?;
                let last = RnnState {
                    h: hs.get(t - 1)?,
                    c: Some(out.get(1)?.get(t - 1)?),
                };
                Ok((hs, last))
            }
            CellKind::Gru => {
                let xp = crate::kernels::linear::linear(x, &self.w_ih, Some(&self.b_ih))?;
                let mut hprev = match init {
                    Some(s) => s.h.clone(),
                    None => Tensor::zeros((b, h), x.dtype(), x.device())?,
                };
                let mut outs = Vec::with_capacity(t);
                for s in 0..t {
                    let xs = xp.get(s)?;
                    let hp = hprev.matmul(&self.w_hh.t()?)?.broadcast_add(&self.b_hh)?;
                    let r = candle_nn::ops::sigmoid(&(xs.narrow(1, 0, h)? + hp.narrow(1, 0, h)?)?)?;
                    let z = candle_nn::ops::sigmoid(&(xs.narrow(1, h, h)? + hp.narrow(1, h, h)?)?)?;
                    let n =
                        crate::tanh(&(xs.narrow(1, 2 * h, h)? + (r * hp.narrow(1, 2 * h, h)?)?)?)?;
                    hprev = (&n + (z * (&hprev - &n)?)?)?;
                    outs.push(hprev.clone());
                }
                Ok((Tensor::stack(&outs, 0)?, RnnState { h: hprev, c: None }))
            }
        }
    }
}

/// Stacked (optionally bidirectional) LSTM or GRU over batch-first sequences.
#[derive(Debug, Clone)]
pub struct Rnn {
    cfg: RnnConfig,
    layers: Vec<(RnnDirection, Option<RnnDirection>)>,
    dropouts: Vec<Dropout>,
}

/// An [`Rnn`] with parameters under `vb`.
pub fn rnn(cfg: RnnConfig, vb: VarBuilder) -> Result<Rnn> {
    if cfg.layers == 0 || cfg.hidden == 0 || cfg.input == 0 {
        candle_core::bail!("an RNN needs at least one layer, input and hidden unit: {cfg:?}");
    }
    let dirs = if cfg.bidirectional { 2 } else { 1 };
    let mut layers = Vec::with_capacity(cfg.layers);
    let mut dropouts = Vec::new();
    for l in 0..cfg.layers {
        let input = if l == 0 { cfg.input } else { cfg.hidden * dirs };
        let fwd = RnnDirection::new(cfg.cell, input, cfg.hidden, l, "", &vb)?;
        let bwd = if cfg.bidirectional {
            Some(RnnDirection::new(
                cfg.cell, input, cfg.hidden, l, "_reverse", &vb,
            )?)
        } else {
            None
        };
        layers.push((fwd, bwd));
        dropouts.push(Dropout::new(
            cfg.dropout,
            &format!("{}.drop{l}", vb.prefix()),
        )?);
    }
    Ok(Rnn {
        cfg,
        layers,
        dropouts,
    })
}

/// Flat row indices that reverse each sequence of a `(B, T)` batch within its
/// own length (padding stays in place): its own inverse.
pub fn reverse_index(lens: &[usize], t: usize, device: &Device) -> Result<Tensor> {
    let mut idx = Vec::with_capacity(lens.len() * t);
    for (b, &len) in lens.iter().enumerate() {
        let len = len.min(t);
        for s in 0..t {
            let src = if s < len { len - 1 - s } else { s };
            idx.push((b * t + src) as u32);
        }
    }
    Tensor::from_vec(idx, lens.len() * t, device)
}

fn reverse_rows(x: &Tensor, idx: &Tensor) -> Result<Tensor> {
    let (b, t, f) = x.dims3()?;
    x.reshape((b * t, f))?
        .index_select(idx, 0)?
        .reshape((b, t, f))
}

impl Rnn {
    /// The settings.
    pub fn config(&self) -> &RnnConfig {
        &self.cfg
    }

    /// Output features: hidden units times directions.
    pub fn output_size(&self) -> usize {
        self.cfg.hidden * if self.cfg.bidirectional { 2 } else { 1 }
    }

    /// Runs over `x (B, T, I)`. `lens` (real lengths) is needed by a bidirectional
    /// RNN, whose second direction reads each sequence backwards from its own last
    /// token rather than from the padding. `init`: one state per layer for the
    /// forward direction (zeros when `None`). Returns `(B, T, output_size)` and the
    /// forward direction's state after the last step of each layer (meaningful
    /// for unpadded input, e.g. decoding one step at a time).
    pub fn forward(
        &self,
        x: &Tensor,
        lens: Option<&[usize]>,
        init: Option<&[RnnState]>,
        mode: &Mode,
    ) -> Result<(Tensor, Vec<RnnState>)> {
        let (b, t, _) = x.dims3()?;
        if let Some(s) = init {
            if s.len() != self.layers.len() {
                candle_core::bail!(
                    "{} initial states for {} layers",
                    s.len(),
                    self.layers.len()
                );
            }
        }
        let rev = match (self.cfg.bidirectional, lens) {
            (false, _) => None,
            (true, Some(l)) => Some(reverse_index(l, t, x.device())?),
            (true, None) => Some(reverse_index(&vec![t; b], t, x.device())?),
        };
        let mut input = x.clone();
        let mut finals = Vec::with_capacity(self.layers.len());
        for (l, (fwd, bwd)) in self.layers.iter().enumerate() {
            if l > 0 {
                input = self.dropouts[l - 1].forward_t(&input, mode)?;
            }
            let tm = input.transpose(0, 1)?.contiguous()?;
            let (out_f, last) = fwd.forward_time_major(&tm, init.map(|s| &s[l]))?;
            let out_f = out_f.transpose(0, 1)?;
            finals.push(last);
            input = match (bwd, &rev) {
                (Some(bwd), Some(rev)) => {
                    let xr = reverse_rows(&input, rev)?.transpose(0, 1)?.contiguous()?;
                    let (out_b, _) = bwd.forward_time_major(&xr, None)?;
                    let out_b = reverse_rows(&out_b.transpose(0, 1)?.contiguous()?, rev)?;
                    Tensor::cat(&[&out_f.contiguous()?, &out_b], D::Minus1)?
                }
                _ => out_f.contiguous()?,
            };
        }
        Ok((input, finals))
    }
}

/// The state of a bidirectional (or not) RNN's top layer after each sequence's
/// last real token: the forward half at `len - 1`, the backward half at 0.
/// `outputs (B, T, output_size)`.
pub fn final_states(outputs: &Tensor, lens: &[usize], bidirectional: bool) -> Result<Tensor> {
    let (b, t, f) = outputs.dims3()?;
    let hid = if bidirectional { f / 2 } else { f };
    let idx: Vec<u32> = lens
        .iter()
        .enumerate()
        .map(|(i, &l)| (i * t + l.clamp(1, t) - 1) as u32)
        .collect();
    let idx = Tensor::from_vec(idx, b, outputs.device())?;
    let fwd = outputs
        .narrow(2, 0, hid)?
        .contiguous()?
        .reshape((b * t, hid))?
        .index_select(&idx, 0)?;
    if !bidirectional {
        return Ok(fwd);
    }
    let bwd = outputs.narrow(2, hid, hid)?.narrow(1, 0, 1)?.squeeze(1)?;
    Tensor::cat(&[&fwd, &bwd], 1)
}

/// Zero state `(B, H)` of `dtype` on `device`.
pub fn zeros_state(b: usize, h: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    Tensor::zeros((b, h), dtype, device)
}
