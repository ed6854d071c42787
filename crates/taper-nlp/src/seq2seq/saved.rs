//! A trained translation model saved in a run directory: what rebuilds it
//! (`model.json`), its two vocabularies and its checkpoint, loaded in one call.

use super::beam::greedy;
use super::{
    rnn_seq2seq, transformer, AttentionKind, CellKind, Positions, RnnSeq2SeqConfig, Seq2Seq,
    Source, TransformerConfig,
};
use crate::data::codec::TextCodec;
use crate::data::source_batch;
use crate::{Error, Result};
use candle_core::{DType, Device};
use candle_nn::VarMap;
use std::path::{Path, PathBuf};
use taper_nn::init::seeded_var_builder;

/// What is needed to rebuild a model: written to `RUN/model.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelSpec {
    /// The task it was trained on (`dates`, `eng-fra`).
    pub task: String,
    /// `lstm` or `transformer`.
    pub model: String,
    /// `lstm` or `gru` (recurrent models).
    pub cell: String,
    /// Attention kind (recurrent models).
    pub attention: String,
    /// Embedding width.
    pub emb: usize,
    /// Hidden width (`d_model` of a Transformer).
    pub hidden: usize,
    /// Layers of the encoder and of the decoder.
    pub layers: usize,
    /// Attention heads (Transformer).
    pub heads: usize,
    /// Feed-forward width (Transformer).
    pub ffn: usize,
    /// `sinusoidal` or `learned` (Transformer).
    pub positions: String,
    /// Dropout.
    pub dropout: f32,
    /// Longest source, in ids.
    pub max_src_len: usize,
    /// Longest target, in ids.
    pub max_tgt_len: usize,
    /// Source vocabulary size.
    pub src_vocab: usize,
    /// Target vocabulary size.
    pub tgt_vocab: usize,
    /// Fingerprint of the source vocabulary.
    pub src_fingerprint: String,
    /// Fingerprint of the target vocabulary.
    pub tgt_fingerprint: String,
}

impl ModelSpec {
    /// Builds the model's variables into `varmap` (seeded initialisation).
    pub fn build(&self, varmap: &VarMap, seed_: u64, device: &Device) -> Result<Box<dyn Seq2Seq>> {
        let vb = seeded_var_builder(varmap, seed_, DType::F32, device);
        Ok(match self.model.as_str() {
            "lstm" => Box::new(rnn_seq2seq(
                RnnSeq2SeqConfig {
                    cell: self.cell.parse::<CellKind>().map_err(Error::Config)?,
                    src_vocab: self.src_vocab,
                    tgt_vocab: self.tgt_vocab,
                    emb: self.emb,
                    hidden: self.hidden,
                    enc_layers: self.layers,
                    dec_layers: self.layers,
                    bidirectional: true,
                    attention: self.attention.parse::<AttentionKind>()?,
                    dropout: self.dropout,
                    max_src_len: self.max_src_len,
                    max_tgt_len: self.max_tgt_len,
                },
                vb,
            )?),
            "transformer" => Box::new(transformer(
                TransformerConfig {
                    src_vocab: self.src_vocab,
                    tgt_vocab: self.tgt_vocab,
                    d_model: self.hidden,
                    heads: self.heads,
                    ffn: self.ffn,
                    enc_layers: self.layers,
                    dec_layers: self.layers,
                    dropout: self.dropout,
                    max_len: self.max_src_len.max(self.max_tgt_len),
                    positions: self.positions.parse::<Positions>()?,
                },
                vb,
            )?),
            o => {
                return Err(Error::Config(format!(
                    "unknown model '{o}' (lstm or transformer)"
                )))
            }
        })
    }
}

/// A sentence, its translation and the attention between them.
#[derive(Debug, Clone)]
pub struct Alignment {
    /// Source tokens (the model's columns).
    pub source: Vec<String>,
    /// Output tokens, the end marker last when one was produced (the rows).
    pub output: Vec<String>,
    /// Weight of each source position for each output token, rows summing to 1.
    pub weights: Vec<Vec<f32>>,
    /// The translation as text.
    pub text: String,
}

/// The token of each decoding step of `ids` (specials included, so that rows of
/// an attention map and tokens pair up), with the end marker appended when there
/// are `rows` > `ids.len()` steps (decoding stopped at it, not at the length limit).
pub fn step_tokens(codec: &TextCodec, ids: &[u32], rows: usize) -> Vec<String> {
    let mut out: Vec<String> = ids
        .iter()
        .map(|&i| codec.token(i).unwrap_or_else(|| format!("<{i}>")))
        .collect();
    if rows > out.len() {
        out.push("</s>".into());
    }
    out
}

/// A trained model with its vocabularies, loaded from a run directory.
pub struct Translator {
    /// How the model was built.
    pub spec: ModelSpec,
    /// The model, with the checkpoint's weights.
    pub model: Box<dyn Seq2Seq>,
    /// Source vocabulary.
    pub src: TextCodec,
    /// Target vocabulary.
    pub tgt: TextCodec,
    /// The checkpoint read (the best, else the latest).
    pub checkpoint: PathBuf,
    device: Device,
}

impl Translator {
    /// Loads `RUN/model.json`, `RUN/src_vocab.json`, `RUN/tgt_vocab.json` and the
    /// best (else latest) checkpoint of `run`; each file that is missing or does
    /// not match the others is named in the error.
    pub fn load(run: &Path, device: &Device) -> Result<Self> {
        let spec_path = run.join("model.json");
        let text = std::fs::read_to_string(&spec_path).map_err(|e| {
            Error::Config(format!(
                "{}: {e} (a run directory of the translate example?)",
                spec_path.display()
            ))
        })?;
        let spec: ModelSpec = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", spec_path.display())))?;
        let (sp, tp) = (run.join("src_vocab.json"), run.join("tgt_vocab.json"));
        let src = TextCodec::load(&sp)?;
        let tgt = TextCodec::load(&tp)?;
        src.check_matches(
            spec.src_vocab,
            &spec.src_fingerprint,
            &sp.display().to_string(),
        )?;
        tgt.check_matches(
            spec.tgt_vocab,
            &spec.tgt_fingerprint,
            &tp.display().to_string(),
        )?;
        let varmap = VarMap::new();
        let model = spec.build(&varmap, 0, device)?;
        let ck = match taper_train::checkpoint::read(run, "best")? {
            Some(c) => c,
            None => taper_train::checkpoint::read(run, "latest")?.ok_or_else(|| {
                Error::Config(format!("{}: no checkpoint in this run", run.display()))
            })?,
        };
        ck.load_weights(&varmap)?;
        Ok(Self {
            spec,
            model,
            src,
            tgt,
            checkpoint: ck.dir,
            device: device.clone(),
        })
    }

    /// Greedy translation of `text` with the attention of each output token over
    /// the source (a source longer than the model's maximum is cut).
    pub fn align(&self, text: &str) -> Result<Alignment> {
        let mut ids = self.src.encode(text)?;
        ids.truncate(self.spec.max_src_len);
        if ids.is_empty() {
            return Err(Error::Config(format!("'{text}': no token the model knows")));
        }
        let rows = [ids.as_slice()];
        let (t, mask, lens) = source_batch(&rows, &self.device)?;
        let dec = greedy(
            self.model.as_ref(),
            Source {
                ids: &t,
                mask: &mask,
                lens: &lens,
            },
            self.model.max_target_len(),
            true,
        )?;
        let weights = dec
            .attention
            .and_then(|a| a.into_iter().next())
            .ok_or_else(|| Error::Config("greedy decoding returned no attention".into()))?;
        let output = step_tokens(&self.tgt, &dec.ids[0], weights.len());
        Ok(Alignment {
            source: ids
                .iter()
                .map(|&i| self.src.token(i).unwrap_or_default())
                .collect(),
            output,
            weights,
            text: self.tgt.decode(&dec.ids[0]),
        })
    }
}

/// An attention matrix (`weights[row][column]`, values in 0..1: rows the output
/// tokens, columns the source tokens) drawn as `cell`-pixel squares in the heat
/// colours of [`taper_train::explain::heat_color`], with grey grid lines: `(width, height, RGB bytes)`.
pub fn attention_rgb(weights: &[Vec<f32>], cell: usize) -> (usize, usize, Vec<u8>) {
    let cols = weights.iter().map(|r| r.len()).max().unwrap_or(0);
    let (w, h) = (cols * cell, weights.len() * cell);
    let mut out = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let grid = cell > 2 && (x % cell == 0 || y % cell == 0);
            let v = weights[y / cell].get(x / cell).copied().unwrap_or(0.0);
            out.extend(if grid {
                [160, 160, 160]
            } else {
                taper_train::explain::heat_color(v)
            });
        }
    }
    (w, h, out)
}
