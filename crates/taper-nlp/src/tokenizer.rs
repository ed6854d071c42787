//! Sub-word and word tokenizers on Hugging Face's `tokenizers` crate: training from
//! text files, `tokenizer.json` load/save, and batches as candle tensors.

use crate::corpus::read_text;
use crate::vocab::IdRows;
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rayon::prelude::*;
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::models::wordlevel::{WordLevel, WordLevelTrainer};
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainer};
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::{Lowercase, Sequence, StripAccents, NFC, NFD, NFKC, NFKD};
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, NormalizerWrapper, PaddingDirection, PaddingParams, PaddingStrategy, PostProcessor,
    TruncationDirection, TruncationParams, TruncationStrategy,
};

/// The tokenization model to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerKind {
    /// Byte-level BPE (GPT-2 style): never produces an unknown token and decodes
    /// back to the exact text.
    Bpe,
    /// WordPiece (BERT style) with `##` continuation pieces.
    WordPiece,
    /// One id per whole word (split on white space and punctuation).
    WordLevel,
}

/// Unicode normalisation applied before anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalization {
    /// Leave the text as it is.
    None,
    /// Canonical composition.
    Nfc,
    /// Canonical decomposition.
    Nfd,
    /// Compatibility composition (folds ligatures, full-width forms).
    Nfkc,
    /// Compatibility decomposition.
    Nfkd,
}

/// How to train a [`Tokenizer`].
#[derive(Debug, Clone)]
pub struct TokenizerConfig {
    /// The model.
    pub kind: TokenizerKind,
    /// Target vocabulary size, special tokens included.
    pub vocab_size: usize,
    /// Pieces (BPE merges, WordPiece pieces, words) seen fewer times are not learnt.
    pub min_frequency: u64,
    /// Padding token, always given id 0.
    pub pad_token: String,
    /// Unknown token (WordPiece, word level; byte-level BPE needs none but keeps it).
    pub unk_token: String,
    /// Tokens put around each text when encoding with special tokens, e.g.
    /// `("[CLS]", "[SEP]")` or `("<s>", "</s>")`.
    pub wrap: Option<(String, String)>,
    /// Further special tokens (never split, never merged).
    pub special_tokens: Vec<String>,
    /// Lower-case the text.
    pub lowercase: bool,
    /// Strip accents (after a canonical decomposition).
    pub strip_accents: bool,
    /// Unicode normalisation.
    pub normalization: Normalization,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        Self {
            kind: TokenizerKind::Bpe,
            vocab_size: 8000,
            min_frequency: 2,
            pad_token: "[PAD]".into(),
            unk_token: "[UNK]".into(),
            wrap: None,
            special_tokens: Vec::new(),
            lowercase: false,
            strip_accents: false,
            normalization: Normalization::Nfc,
        }
    }
}

impl TokenizerConfig {
    /// Padding, unknown, wrap and extra tokens in id order, without duplicates.
    fn all_special_tokens(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let wrap = self.wrap.iter().flat_map(|(a, b)| [a.clone(), b.clone()]);
        let firsts = [self.pad_token.clone(), self.unk_token.clone()];
        for t in firsts
            .into_iter()
            .chain(wrap)
            .chain(self.special_tokens.clone())
        {
            if !out.contains(&t) {
                out.push(t);
            }
        }
        out
    }

    fn validate(&self) -> Result<()> {
        let specials = self.all_special_tokens();
        if specials.iter().any(|t| t.is_empty()) {
            return Err(Error::Config("a special token is the empty string".into()));
        }
        if self.vocab_size <= specials.len() {
            return Err(Error::Config(format!(
                "vocabulary size {} leaves no room beside {} special tokens",
                self.vocab_size,
                specials.len()
            )));
        }
        Ok(())
    }
}

/// Padding of batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// To the longest sequence of the batch.
    Longest,
    /// Every sequence to this length (longer ones need truncation to fit).
    Fixed(usize),
}

/// A batch of encoded texts as tensors, padded on the right.
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    /// Token ids, `(batch, len)`, `u32`.
    pub input_ids: Tensor,
    /// 1 for a real token, 0 for padding, `(batch, len)`, `u32`.
    pub attention_mask: Tensor,
    /// Segment ids (0 for a single text), `(batch, len)`, `u32`.
    pub type_ids: Tensor,
    /// Real (unpadded) length of each sequence.
    pub lengths: Vec<usize>,
}

/// A trained or loaded tokenizer.
///
/// Padding is applied here, on ids and masks only: `tokenizers` pads every
/// field of an `Encoding`, a `String` per padded position included, which made
/// padded batches slower than unpadded single texts. The settings are still
/// written to (and read from) `tokenizer.json`'s `padding` entry.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    pad: PadSettings,
}

#[derive(Debug, Clone)]
struct PadSettings {
    strategy: PaddingStrategy,
    multiple_of: Option<usize>,
    id: u32,
    type_id: u32,
    token: String,
}

impl PadSettings {
    fn from_params(p: &PaddingParams) -> Self {
        Self {
            strategy: p.strategy.clone(),
            multiple_of: p.pad_to_multiple_of,
            id: p.pad_id,
            type_id: p.pad_type_id,
            token: p.pad_token.clone(),
        }
    }

    fn params(&self) -> PaddingParams {
        PaddingParams {
            strategy: self.strategy.clone(),
            direction: PaddingDirection::Right,
            pad_to_multiple_of: self.multiple_of,
            pad_id: self.id,
            pad_type_id: self.type_id,
            pad_token: self.token.clone(),
        }
    }

    /// The padded length of a batch whose longest sequence has `longest` ids.
    fn length(&self, longest: usize) -> usize {
        let n = match self.strategy {
            PaddingStrategy::BatchLongest => longest,
            PaddingStrategy::Fixed(n) => n,
        };
        match self.multiple_of {
            Some(m) if m > 0 => n.div_ceil(m) * m,
            _ => n,
        }
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("padding", &self.pad)
            .finish()
    }
}

impl Tokenizer {
    /// Trains on the lines of `files` (UTF-8; an invalid file is named in the error).
    pub fn train<P: AsRef<Path>>(config: &TokenizerConfig, files: &[P]) -> Result<Self> {
        if files.is_empty() {
            return Err(Error::Config("no training file given".into()));
        }
        let mut texts = Vec::with_capacity(files.len());
        for f in files {
            let t = read_text(f.as_ref())?;
            if t.trim().is_empty() {
                return Err(Error::EmptyCorpus {
                    source_name: f.as_ref().display().to_string(),
                });
            }
            texts.push(t);
        }
        Self::train_from_texts(config, texts.iter().flat_map(|t| t.lines()))
    }

    /// Trains on texts in memory (each item one line or document).
    pub fn train_from_texts<'a>(
        config: &TokenizerConfig,
        texts: impl Iterator<Item = &'a str> + Send,
    ) -> Result<Self> {
        config.validate()?;
        let specials = config.all_special_tokens();
        let added: Vec<AddedToken> = specials
            .iter()
            .map(|t| AddedToken::from(t.clone(), true))
            .collect();
        let fail = |e: tokenizers::Error| Error::tokenizer("training", e);
        let (mut inner, mut trainer) = match config.kind {
            TokenizerKind::Bpe => {
                let alphabet = ByteLevel::alphabet().into_iter().collect();
                let trainer = BpeTrainer::builder()
                    .vocab_size(config.vocab_size)
                    .min_frequency(config.min_frequency)
                    .special_tokens(added)
                    .initial_alphabet(alphabet)
                    .show_progress(false)
                    .build();
                let mut t = tokenizers::Tokenizer::new(BPE::default());
                t.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
                t.with_decoder(Some(ByteLevelDecoder::default()));
                (t, TrainerWrapper::BpeTrainer(trainer))
            }
            TokenizerKind::WordPiece => {
                let trainer = WordPieceTrainer::builder()
                    .vocab_size(config.vocab_size)
                    .min_frequency(config.min_frequency)
                    .special_tokens(added)
                    .show_progress(false)
                    .build();
                let model = WordPiece::builder()
                    .unk_token(config.unk_token.clone())
                    .build()
                    .map_err(fail)?;
                let mut t = tokenizers::Tokenizer::new(model);
                t.with_pre_tokenizer(Some(BertPreTokenizer));
                t.with_decoder(Some(WordPieceDecoder::default()));
                (t, TrainerWrapper::WordPieceTrainer(trainer))
            }
            TokenizerKind::WordLevel => {
                let trainer = WordLevelTrainer::builder()
                    .vocab_size(config.vocab_size)
                    .min_frequency(config.min_frequency)
                    .special_tokens(added)
                    .show_progress(false)
                    .build()
                    .map_err(|e| Error::tokenizer("training", e))?;
                let model = WordLevel::builder()
                    .unk_token(config.unk_token.clone())
                    .build()
                    .map_err(fail)?;
                let mut t = tokenizers::Tokenizer::new(model);
                t.with_pre_tokenizer(Some(Whitespace));
                (t, TrainerWrapper::WordLevelTrainer(trainer))
            }
        };
        let mut norms: Vec<NormalizerWrapper> = Vec::new();
        match config.normalization {
            Normalization::None => {}
            Normalization::Nfc => norms.push(NFC.into()),
            Normalization::Nfd => norms.push(NFD.into()),
            Normalization::Nfkc => norms.push(NFKC.into()),
            Normalization::Nfkd => norms.push(NFKD.into()),
        }
        if config.strip_accents {
            norms.push(NFD.into());
            norms.push(StripAccents.into());
        }
        if config.lowercase {
            norms.push(Lowercase.into());
        }
        if !norms.is_empty() {
            inner
                .with_normalizer(Some(Sequence::new(norms)))
                .map_err(fail)?;
        }
        let mut empty = true;
        let texts = texts.inspect(|t| empty &= t.trim().is_empty());
        inner.train(&mut trainer, texts).map_err(fail)?;
        if empty {
            return Err(Error::EmptyCorpus {
                source_name: "<tokenizer training texts>".into(),
            });
        }
        if let Some((bos, eos)) = &config.wrap {
            let id = |t: &str| {
                inner
                    .token_to_id(t)
                    .ok_or_else(|| Error::tokenizer("training", format!("'{t}' got no id")))
            };
            let (b, e) = (id(bos)?, id(eos)?);
            let template = TemplateProcessing::builder()
                .try_single(format!("{bos} $A {eos}"))
                .and_then(|t| t.try_pair(format!("{bos} $A {eos} $B:1 {eos}:1")))
                .map_err(|e| Error::tokenizer("template", e))?
                .special_tokens(vec![(bos.clone(), b), (eos.clone(), e)])
                .build()
                .map_err(|e| Error::tokenizer("template", e))?;
            inner.with_post_processor(Some(template));
        }
        let id = inner.token_to_id(&config.pad_token).ok_or_else(|| {
            Error::tokenizer("training", format!("'{}' got no id", config.pad_token))
        })?;
        let pad = PadSettings {
            strategy: PaddingStrategy::BatchLongest,
            multiple_of: None,
            id,
            type_id: 0,
            token: config.pad_token.clone(),
        };
        Ok(Self { inner, pad })
    }

    /// Wraps a `tokenizers` tokenizer, taking over its padding settings (without
    /// any, batches are padded to the longest with id 0).
    pub fn from_inner(mut inner: tokenizers::Tokenizer) -> Self {
        let pad = inner
            .get_padding()
            .map(PadSettings::from_params)
            .unwrap_or_else(|| PadSettings::from_params(&PaddingParams::default()));
        inner.with_padding(None);
        Self { inner, pad }
    }

    /// The underlying `tokenizers` tokenizer (without padding settings: this
    /// type pads batches itself).
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Loads a Hugging Face `tokenizer.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = read_text(path)?;
        let name = path.display().to_string();
        // tokenizers 0.23 panics (`expect("Helper")`) on some malformed JSON inside
        // the decoder section, found by fuzzing: check the syntax first, and turn
        // any panic left into an error.
        serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| Error::tokenizer(name.clone(), format!("not valid JSON: {e}")))?;
        let parsed =
            std::panic::catch_unwind(|| text.parse::<tokenizers::Tokenizer>()).map_err(|_| {
                Error::tokenizer(name.clone(), "the tokenizers crate could not read it")
            })?;
        let inner = parsed.map_err(|e| Error::tokenizer(name.clone(), e))?;
        if let Some(t) = inner.get_truncation() {
            check_truncation(&inner, t.max_length).map_err(|m| Error::tokenizer(name, m))?;
        }
        Ok(Self::from_inner(inner))
    }

    /// Saves as a Hugging Face `tokenizer.json`, padding settings included
    /// (written atomically: a crash never leaves half a file).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut full = self.inner.clone();
        full.with_padding(Some(self.pad.params()));
        let json = full
            .to_string(true)
            .map_err(|e| Error::tokenizer(path.display().to_string(), e))?;
        taper_train::fs::atomic_write(path, json.as_bytes())?;
        Ok(())
    }

    /// Number of ids, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The padding id.
    pub fn pad_id(&self) -> u32 {
        self.pad.id
    }

    /// Pads batches as `padding` says.
    pub fn set_padding(&mut self, padding: Padding) {
        self.pad.strategy = match padding {
            Padding::Longest => PaddingStrategy::BatchLongest,
            Padding::Fixed(n) => PaddingStrategy::Fixed(n),
        };
    }

    /// Cuts every encoding (special tokens included) to at most `max_len` ids,
    /// dropping from the end; `None` keeps whole texts.
    ///
    /// # Errors
    /// A length of 0, or one shorter than the special tokens the tokenizer adds
    /// to every text (`<s> … </s>`: 2), which would leave no room for the text.
    pub fn set_truncation(&mut self, max_len: Option<usize>) -> Result<()> {
        let params = match max_len {
            Some(0) => return Err(Error::Config("truncation length must be positive".into())),
            Some(n) => Some({
                check_truncation(&self.inner, n).map_err(|m| Error::tokenizer("truncation", m))?;
                TruncationParams {
                    direction: TruncationDirection::Right,
                    max_length: n,
                    strategy: TruncationStrategy::LongestFirst,
                    stride: 0,
                }
            }),
            None => None,
        };
        self.inner
            .with_truncation(params)
            .map_err(|e| Error::tokenizer("truncation", e))?;
        Ok(())
    }

    /// The ids of one text (truncated when truncation is set, never padded).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| Error::tokenizer("encode", e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The tokens (strings) of one text.
    pub fn tokens(&self, text: &str, add_special_tokens: bool) -> Result<Vec<String>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| Error::tokenizer("encode", e))?;
        Ok(enc.get_tokens().to_vec())
    }

    /// The text of a list of ids.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::tokenizer("decode", e))
    }

    /// Texts of a batch of id lists (padding dropped with the special tokens).
    pub fn decode_batch(&self, ids: &[&[u32]], skip_special_tokens: bool) -> Result<Vec<String>> {
        self.inner
            .decode_batch(ids, skip_special_tokens)
            .map_err(|e| Error::tokenizer("decode", e))
    }

    /// Encodes texts (in parallel) and pads them: flat `(batch × len)` ids, mask
    /// and type ids, the padded length and each text's own length.
    fn encode_flat(&self, texts: &[&str], add_special_tokens: bool) -> Result<FlatBatch> {
        if texts.is_empty() {
            return Err(Error::Config("cannot encode an empty batch".into()));
        }
        let encs = texts
            .par_iter()
            .map(|t| self.inner.encode(*t, add_special_tokens))
            .collect::<tokenizers::Result<Vec<_>>>()
            .map_err(|e| Error::tokenizer("encode", e))?;
        let longest = encs.iter().map(|e| e.len()).max().unwrap_or(0);
        let len = self.pad.length(longest);
        if let Some(bad) = encs.iter().position(|e| e.len() > len) {
            return Err(Error::Config(format!(
                "text {bad} encodes to {} ids, more than the padded length {len}: set truncation to it",
                encs[bad].len()
            )));
        }
        let n = encs.len() * len;
        let mut out = FlatBatch {
            ids: Vec::with_capacity(n),
            mask: Vec::with_capacity(n),
            types: Vec::with_capacity(n),
            len,
            lengths: Vec::with_capacity(encs.len()),
        };
        for e in &encs {
            let k = e.len();
            out.ids.extend_from_slice(e.get_ids());
            out.ids.resize(out.ids.len() + len - k, self.pad.id);
            out.mask.extend_from_slice(e.get_attention_mask());
            out.mask.resize(out.mask.len() + len - k, 0);
            out.types.extend_from_slice(e.get_type_ids());
            out.types
                .resize(out.types.len() + len - k, self.pad.type_id);
            out.lengths.push(k);
        }
        Ok(out)
    }

    /// Encodes texts (in parallel) into padded id lists, masks and type ids.
    pub fn encode_batch_ids(
        &self,
        texts: &[&str],
        add_special_tokens: bool,
    ) -> Result<(IdRows, IdRows, IdRows)> {
        let f = self.encode_flat(texts, add_special_tokens)?;
        let rows = |v: &[u32]| {
            v.chunks(f.len.max(1))
                .map(<[u32]>::to_vec)
                .collect::<Vec<_>>()
        };
        if f.len == 0 {
            let empty = vec![Vec::new(); texts.len()];
            return Ok((empty.clone(), empty.clone(), empty));
        }
        Ok((rows(&f.ids), rows(&f.mask), rows(&f.types)))
    }

    /// Encodes texts into `(batch, len)` tensors on `device`, padded as set by
    /// [`Tokenizer::set_padding`] and cut as set by [`Tokenizer::set_truncation`].
    pub fn encode_batch(
        &self,
        texts: &[&str],
        add_special_tokens: bool,
        device: &Device,
    ) -> Result<EncodedBatch> {
        let f = self.encode_flat(texts, add_special_tokens)?;
        let shape = (texts.len(), f.len);
        Ok(EncodedBatch {
            input_ids: Tensor::from_vec(f.ids, shape, device)?,
            attention_mask: Tensor::from_vec(f.mask, shape, device)?,
            type_ids: Tensor::from_vec(f.types, shape, device)?,
            lengths: f.lengths,
        })
    }
}

struct FlatBatch {
    ids: Vec<u32>,
    mask: Vec<u32>,
    types: Vec<u32>,
    len: usize,
    lengths: Vec<usize>,
}

/// Refuses a truncation length shorter than the special tokens the
/// post-processor adds to one text: `tokenizers` subtracts them from the length
/// (an underflow: a panic in debug builds, no truncation at all in release).
fn check_truncation(
    inner: &tokenizers::Tokenizer,
    max_len: usize,
) -> std::result::Result<(), String> {
    let added = inner
        .get_post_processor()
        .map_or(0, |p| p.added_tokens(false));
    if max_len < added {
        return Err(format!(
            "truncation to {max_len} ids is shorter than the {added} special tokens added to every text"
        ));
    }
    Ok(())
}
