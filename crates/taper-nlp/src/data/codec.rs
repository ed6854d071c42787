//! Text ↔ ids for sequence-to-sequence models: a word-level [`Tokenizer`] (NLP
//! part 1) or a character [`Vocab`], both with the four special ids the models
//! rely on.

use crate::corpus::read_text;
use crate::tokenizer::{Normalization, Tokenizer, TokenizerConfig, TokenizerKind};
use crate::vocab::Vocab;
use crate::{Error, Result};
use std::collections::BTreeSet;
use std::path::Path;

/// Padding id (never predicted, never scored).
pub const PAD: u32 = 0;
/// Unknown-token id.
pub const UNK: u32 = 1;
/// Start-of-sequence id (the decoder's first input).
pub const BOS: u32 = 2;
/// End-of-sequence id (the decoder's last target).
pub const EOS: u32 = 3;
/// The special tokens, by id.
pub const SPECIALS: [&str; 4] = ["<pad>", "<unk>", "<s>", "</s>"];

/// Turns text into ids and back.
#[derive(Debug, Clone)]
pub enum TextCodec {
    /// Lower-cased words and punctuation (`tokenizers`' word-level model).
    Words(Box<Tokenizer>),
    /// One id per character.
    Chars(Vocab),
}

impl TextCodec {
    /// Trains a lower-casing word-level tokenizer on `texts`, keeping at most
    /// `vocab_size` ids (specials included) of words seen `min_frequency` times.
    pub fn train_words(texts: &[&str], vocab_size: usize, min_frequency: u64) -> Result<Self> {
        let cfg = TokenizerConfig {
            kind: TokenizerKind::WordLevel,
            vocab_size,
            min_frequency,
            pad_token: SPECIALS[0].into(),
            unk_token: SPECIALS[1].into(),
            wrap: None,
            special_tokens: vec![SPECIALS[2].into(), SPECIALS[3].into()],
            lowercase: true,
            strip_accents: false,
            normalization: Normalization::Nfc,
        };
        let tok = Tokenizer::train_from_texts(&cfg, texts.iter().copied())?;
        let codec = TextCodec::Words(Box::new(tok));
        codec.check_specials("trained tokenizer")?;
        Ok(codec)
    }

    /// A character vocabulary of every character in `texts` (sorted, so the same
    /// texts always give the same ids).
    pub fn chars<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let set: BTreeSet<char> = texts.into_iter().flat_map(|t| t.chars()).collect();
        if set.is_empty() {
            return Err(Error::NoData(
                "no character to build a vocabulary from".into(),
            ));
        }
        let words = SPECIALS
            .iter()
            .map(|s| s.to_string())
            .chain(set.into_iter().map(String::from));
        Ok(TextCodec::Chars(Vocab::from_words(words)?))
    }

    fn check_specials(&self, what: &str) -> Result<()> {
        for (id, tok) in SPECIALS.iter().enumerate() {
            if self.token(id as u32).as_deref() != Some(*tok) {
                return Err(Error::VocabMismatch(format!(
                    "{what}: id {id} should be '{tok}', is {:?}",
                    self.token(id as u32)
                )));
            }
        }
        Ok(())
    }

    /// Number of ids, specials included.
    pub fn len(&self) -> usize {
        match self {
            TextCodec::Words(t) => t.vocab_size(),
            TextCodec::Chars(v) => v.len(),
        }
    }

    /// True for an empty codec (never, by construction).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The token of `id`.
    pub fn token(&self, id: u32) -> Option<String> {
        match self {
            TextCodec::Words(t) => t.id_to_token(id),
            TextCodec::Chars(v) => v.word(id).map(String::from),
        }
    }

    /// Ids of `text`, without start or end markers; unknown pieces get [`UNK`].
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            TextCodec::Words(t) => t.encode(text, false),
            TextCodec::Chars(v) => Ok(text
                .chars()
                .map(|c| v.get(c.encode_utf8(&mut [0; 4])).unwrap_or(UNK))
                .collect()),
        }
    }

    /// Text of `ids`: stops at [`EOS`], skips padding and [`BOS`]; words are joined
    /// by single spaces.
    pub fn decode(&self, ids: &[u32]) -> String {
        let toks = self.decode_tokens(ids);
        match self {
            TextCodec::Words(_) => toks.join(" "),
            TextCodec::Chars(_) => toks.concat(),
        }
    }

    /// Tokens of `ids` (as [`TextCodec::decode`], before joining).
    pub fn decode_tokens(&self, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .take_while(|&&i| i != EOS)
            .filter(|&&i| i != PAD && i != BOS)
            .map(|&i| self.token(i).unwrap_or_else(|| SPECIALS[1].to_string()))
            .collect()
    }

    /// `text` as the model sees it, with the original words kept where the
    /// vocabulary has none (lower-cased words joined by spaces, or the text itself
    /// for characters): the form hypotheses are scored against.
    pub fn normalize(&self, text: &str) -> Result<String> {
        match self {
            TextCodec::Words(t) => {
                let enc = t
                    .inner()
                    .encode(text, false)
                    .map_err(|e| Error::Tokenizer {
                        context: "encode".into(),
                        msg: e.to_string(),
                    })?;
                let words: Vec<String> = enc
                    .get_offsets()
                    .iter()
                    .map(|&(a, b)| text.get(a..b).unwrap_or("").to_lowercase())
                    .filter(|w| !w.is_empty())
                    .collect();
                Ok(words.join(" "))
            }
            TextCodec::Chars(_) => Ok(text.to_string()),
        }
    }

    /// A 64-bit digest of the tokens in id order: two codecs with the same
    /// fingerprint map text to the same ids.
    pub fn fingerprint(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for id in 0..self.len() as u32 {
            let t = self.token(id).unwrap_or_default();
            for b in t.bytes().chain(std::iter::once(0xff)) {
                h ^= b as u64;
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{h:016x}")
    }

    /// Checks that this codec is the one a model was trained with (`size` ids,
    /// [`TextCodec::fingerprint`] `fingerprint`); `what` names the codec's file.
    pub fn check_matches(&self, size: usize, fingerprint: &str, what: &str) -> Result<()> {
        if self.len() != size || self.fingerprint() != fingerprint {
            return Err(Error::VocabMismatch(format!(
                "{what} has {} ids (fingerprint {}), the checkpoint was trained with {size} \
                 (fingerprint {fingerprint})",
                self.len(),
                self.fingerprint()
            )));
        }
        Ok(())
    }

    /// Saves as a Hugging Face `tokenizer.json`, or `{"kind": "chars", "tokens": [...]}`.
    pub fn save(&self, path: &Path) -> Result<()> {
        match self {
            TextCodec::Words(t) => t.save(path),
            TextCodec::Chars(v) => {
                let json = serde_json::json!({"kind": "chars", "tokens": v.words()});
                taper_train::checkpoint::atomic_write(path, json.to_string().as_bytes())?;
                Ok(())
            }
        }
    }

    /// Loads what [`TextCodec::save`] wrote and checks the special ids.
    pub fn load(path: &Path) -> Result<Self> {
        let text = read_text(path)?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            line: e.line(),
            msg: e.to_string(),
        })?;
        let codec = if value.get("kind").and_then(|k| k.as_str()) == Some("chars") {
            let toks = value
                .get("tokens")
                .and_then(|t| t.as_array())
                .ok_or_else(|| Error::Parse {
                    path: path.to_path_buf(),
                    line: 1,
                    msg: "a character vocabulary needs a 'tokens' list".into(),
                })?;
            let words = toks
                .iter()
                .map(|t| t.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| Error::Parse {
                    path: path.to_path_buf(),
                    line: 1,
                    msg: "'tokens' must hold strings".into(),
                })?;
            TextCodec::Chars(Vocab::from_words(words)?)
        } else {
            TextCodec::Words(Box::new(Tokenizer::load(path)?))
        };
        codec.check_specials(&path.display().to_string())?;
        Ok(codec)
    }
}
