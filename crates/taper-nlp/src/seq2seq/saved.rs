//! A trained translation model saved in a run directory: what rebuilds it
//! (`model.json`, a `taper-train` model card of family `nlp.seq2seq` holding the
//! [`ModelSpec`]), its two vocabularies and its checkpoint, loaded in one call
//! ([`Translator::load`]) for any kind of model: LSTM or GRU encoder–decoders
//! (one or two directions, any attention) and the Transformer.

use super::beam::{decode_corpus, greedy, BeamConfig};
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
use taper_train::card::ModelCard;

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
    /// A second encoder direction (recurrent models; runs before this field
    /// existed were all bidirectional).
    #[serde(default = "yes")]
    pub bidirectional: bool,
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
    /// Trained from the corpus's second column to its first (`translate --reverse`:
    /// French to English on eng-fra). Runs before this field existed were not.
    #[serde(default)]
    pub reversed: bool,
}

fn yes() -> bool {
    true
}

/// The model family of a translation run's card.
pub const FAMILY: &str = "nlp.seq2seq";

/// The feeding half of a translation run's card: its vocabulary files.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct CardData {
    src_vocab: String,
    tgt_vocab: String,
}

/// Writes what [`Translator::load`] needs into `run`: the model card (family
/// `nlp.seq2seq`, `spec`) and the two vocabularies (`src_vocab.json`,
/// `tgt_vocab.json`), atomically each.
///
/// # Errors
/// A file that cannot be written.
pub fn save_run(run: &Path, spec: &ModelSpec, src: &TextCodec, tgt: &TextCodec) -> Result<()> {
    std::fs::create_dir_all(run).map_err(|e| Error::io(run, e))?;
    src.save(&run.join("src_vocab.json"))?;
    tgt.save(&run.join("tgt_vocab.json"))?;
    let data = CardData {
        src_vocab: "src_vocab.json".into(),
        tgt_vocab: "tgt_vocab.json".into(),
    };
    ModelCard::new(
        FAMILY,
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_VERSION"),
        spec,
        &data,
    )?
    .save(run)?;
    Ok(())
}

/// The spec and vocabulary files of `run`'s `model.json`: a model card, or a bare
/// [`ModelSpec`] from before the cards.
fn read_card(run: &Path) -> Result<(ModelSpec, CardData)> {
    let spec_path = ModelCard::path(run);
    match ModelCard::load(run, FAMILY) {
        Ok(card) => Ok((card.config::<ModelSpec>()?, card.data::<CardData>()?)),
        Err(taper_train::Error::Checkpoint { msg, .. }) if msg.starts_with("not a model card") => {
            let text = std::fs::read_to_string(&spec_path).map_err(|e| Error::io(&spec_path, e))?;
            let spec = serde_json::from_str(&text)
                .map_err(|e| Error::Config(format!("{}: {e}", spec_path.display())))?;
            let data = CardData {
                src_vocab: "src_vocab.json".into(),
                tgt_vocab: "tgt_vocab.json".into(),
            };
            Ok((spec, data))
        }
        Err(e) => Err(e.into()),
    }
}

impl ModelSpec {
    /// Checks that this spec builds the model `run` saved, before its checkpoint
    /// is resumed: the model settings are stored only in `run/model.json`, so a
    /// command that leaves out a flag (say `--model transformer`) would build
    /// another model and fail on the checkpoint's tensor names.
    ///
    /// # Errors
    /// `model.json` missing or unreadable, or a setting that differs: the error
    /// names each one with its saved value, this spec's value and the
    /// `translate` flag that sets it.
    pub fn check_resumes(&self, run: &Path) -> Result<()> {
        let (saved, _) = read_card(run)?;
        let show = |v: &dyn std::fmt::Debug| format!("{v:?}");
        let fields: [(&str, &str, String, String); 12] = [
            ("model", "--model", show(&saved.model), show(&self.model)),
            ("cell", "--cell", show(&saved.cell), show(&self.cell)),
            (
                "attention",
                "--attention",
                show(&saved.attention),
                show(&self.attention),
            ),
            (
                "bidirectional",
                "--unidirectional",
                show(&saved.bidirectional),
                show(&self.bidirectional),
            ),
            ("emb", "--emb", show(&saved.emb), show(&self.emb)),
            (
                "hidden",
                "--hidden",
                show(&saved.hidden),
                show(&self.hidden),
            ),
            (
                "layers",
                "--layers",
                show(&saved.layers),
                show(&self.layers),
            ),
            ("heads", "--heads", show(&saved.heads), show(&self.heads)),
            ("ffn", "--ffn", show(&saved.ffn), show(&self.ffn)),
            (
                "positions",
                "--positions",
                show(&saved.positions),
                show(&self.positions),
            ),
            ("task", "--task", show(&saved.task), show(&self.task)),
            (
                "reversed",
                "--reverse",
                show(&saved.reversed),
                show(&self.reversed),
            ),
        ];
        let differ: Vec<String> = fields
            .iter()
            .filter(|f| f.2 != f.3)
            .map(|(k, flag, was, now)| format!("{k} {was} (this command: {now}; {flag})"))
            .collect();
        if differ.is_empty() {
            return Ok(());
        }
        Err(Error::Config(format!(
            "{}: the run was trained with {}; repeat the run's flags to resume it",
            ModelCard::path(run).display(),
            differ.join(", ")
        )))
    }

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
                    bidirectional: self.bidirectional,
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
    /// Loads the model card, the two vocabularies and the kept (best, else
    /// latest) checkpoint of `run`; a missing file, a card of another model
    /// family or a newer format, a vocabulary that does not match the model:
    /// each a typed error naming the file. Runs written before model cards (a
    /// bare [`ModelSpec`] in `model.json`) load too.
    pub fn load(run: &Path, device: &Device) -> Result<Self> {
        let (spec, data) = read_card(run)?;
        let (sp, tp) = (run.join(&data.src_vocab), run.join(&data.tgt_vocab));
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
        let ck = taper_train::checkpoint::kept(run)?;
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

    /// The translation of `text` by beam search of `beam` (1: greedy); a source
    /// longer than the model's maximum is cut to it.
    ///
    /// # Errors
    /// A text with no token the model knows.
    pub fn translate(&self, text: &str, beam: &BeamConfig) -> Result<String> {
        let mut ids = self.src.encode(text)?;
        ids.truncate(self.spec.max_src_len);
        if ids.is_empty() {
            return Err(Error::Config(format!("'{text}': no token the model knows")));
        }
        let out = decode_corpus(
            self.model.as_ref(),
            &[ids],
            Some(beam),
            beam.max_len,
            &self.device,
        )?;
        Ok(self.tgt.decode(&out[0]))
    }

    /// Greedy translation of `text` with the attention of each output token over
    /// the source (a source longer than the model's maximum is cut).
    pub fn align(&self, text: &str) -> Result<Alignment> {
        let mut ids = self.src.encode(text)?;
        ids.truncate(self.spec.max_src_len);
        if ids.is_empty() {
            return Err(Error::Config(format!("'{text}': no token the model knows")));
        }
        align_ids(
            self.model.as_ref(),
            &ids,
            &self.src,
            &self.tgt,
            &self.device,
        )
    }
}

/// Greedy decoding of the source `ids` with the attention of each output token.
fn align_ids(
    model: &dyn Seq2Seq,
    ids: &[u32],
    src: &TextCodec,
    tgt: &TextCodec,
    device: &Device,
) -> Result<Alignment> {
    let rows = [ids];
    let (t, mask, lens) = source_batch(&rows, device)?;
    let source = Source {
        ids: &t,
        mask: &mask,
        lens: &lens,
    };
    let dec = greedy(model, source, model.max_target_len(), true)?;
    let weights = dec
        .attention
        .and_then(|a| a.into_iter().next())
        .ok_or_else(|| Error::Config("greedy decoding returned no attention".into()))?;
    Ok(Alignment {
        source: ids
            .iter()
            .map(|&i| src.token(i).unwrap_or_default())
            .collect(),
        output: step_tokens(tgt, &dec.ids[0], weights.len()),
        weights,
        text: tgt.decode(&dec.ids[0]),
    })
}

impl Alignment {
    /// Writes the heat map `DIR/STEM.png` ([`attention_rgb`], 24-pixel cells)
    /// and its row and column tokens `DIR/STEM.txt`; returns both paths.
    ///
    /// # Errors
    /// An empty matrix or a file that cannot be written, naming the file.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let (w, h, rgb) = attention_rgb(&self.weights, 24);
        let img = image::RgbImage::from_raw(w as u32, h as u32, rgb)
            .ok_or_else(|| Error::Config("attention map of an empty matrix".into()))?;
        let png = dir.join(format!("{stem}.png"));
        img.save(&png)
            .map_err(|e| Error::Config(format!("{}: {e}", png.display())))?;
        let txt = dir.join(format!("{stem}.txt"));
        let text = format!(
            "columns (source): {}\nrows (output): {}\n",
            self.source.join(" | "),
            self.output.join(" | ")
        );
        std::fs::write(&txt, text).map_err(|e| Error::io(&txt, e))?;
        Ok((png, txt))
    }

    /// Where each output token looks most, as `"out <- source (weight)"`: the
    /// alignment a reader checks first.
    pub fn peaks(&self) -> Vec<String> {
        self.output
            .iter()
            .zip(&self.weights)
            .map(|(o, row)| {
                let (j, w) =
                    row.iter()
                        .enumerate()
                        .fold((0, f32::MIN), |b, (j, &v)| if v > b.1 { (j, v) } else { b });
                let s = self.source.get(j).cloned().unwrap_or_default();
                format!("{o} <- {s} ({w:.2})")
            })
            .collect()
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

/// Writes `DIR/attention-<i>.png` (heat map, [`attention_rgb`]) and
/// `DIR/attention-<i>.txt` (its row and column tokens) for the first `n`
/// `sources`, greedily decoded; returns the image paths.
///
/// # Errors
/// A failing decoding step or a file that cannot be written.
pub fn write_attention_maps(
    model: &dyn Seq2Seq,
    sources: &[Vec<u32>],
    src: &TextCodec,
    tgt: &TextCodec,
    n: usize,
    dir: &Path,
    device: &Device,
) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for (i, ids) in sources.iter().take(n).enumerate() {
        let a = align_ids(model, ids, src, tgt, device)?;
        paths.push(a.write(dir, &format!("attention-{i}"))?.0);
    }
    Ok(paths)
}

/// Writes what the PyTorch peer of `make bench` (`bench/seq2seq_torch.py`) needs
/// to train the same model on the same split: the ids of both splits, the target
/// vocabulary, the test references and the settings; `(train, test)` splits.
///
/// # Errors
/// A file that cannot be written.
pub fn export_split(
    dir: &Path,
    (train, test): (&crate::data::EncodedPairs, &crate::data::EncodedPairs),
    test_refs: &[String],
    tgt: &TextCodec,
    spec: &ModelSpec,
    batch: usize,
    seed: u64,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let ids = |d: &crate::data::EncodedPairs| -> String {
        let j = |v: &[u32]| {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        d.src
            .iter()
            .zip(&d.tgt)
            .map(|(s, t)| format!("{}\t{}\n", j(s), j(t)))
            .collect()
    };
    let vocab: Vec<String> = (0..tgt.len() as u32)
        .map(|i| tgt.token(i).unwrap_or_default())
        .collect();
    let words = matches!(tgt, TextCodec::Words(_));
    let config = serde_json::json!({"spec": spec, "batch_size": batch, "seed": seed,
        "join": if words { " " } else { "" }});
    for (name, text) in [
        ("train.ids.tsv", ids(train)),
        ("test.ids.tsv", ids(test)),
        ("tgt_vocab.txt", vocab.join("\n") + "\n"),
        ("test_refs.txt", test_refs.join("\n") + "\n"),
        ("config.json", config.to_string()),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| Error::io(&p, e))?;
    }
    Ok(())
}
