//! Word vectors: cosine queries, analogies, and the word2vec text format.

use crate::vocab::Vocab;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::OnceLock;

/// One vector per vocabulary word, whichever way it was trained (native loops,
/// the candle trainer) or read (word2vec text format).
#[derive(Debug, Clone)]
pub struct WordVectors {
    vocab: Vocab,
    dim: usize,
    data: Vec<f32>,
    // Unit-length copy for cosine queries, built at the first query.
    unit: OnceLock<Vec<f32>>,
}

/// The file names a word-vector run holds beside its `model.json`.
#[derive(serde::Serialize, serde::Deserialize)]
struct CardData {
    vectors: String,
}

impl WordVectors {
    /// The model family in `model.json`.
    pub const FAMILY: &'static str = "nlp.word2vec";

    /// Saves the vectors into the run directory `run` as a model that
    /// [`WordVectors::load`] reads back: `vectors.txt` (word2vec text format)
    /// and `model.json` (family `nlp.word2vec`, the training settings `cfg`),
    /// atomically each.
    ///
    /// # Errors
    /// A file that cannot be written, or a word the text format cannot store.
    pub fn save_run(&self, run: &Path, cfg: &crate::Word2VecConfig) -> Result<()> {
        std::fs::create_dir_all(run).map_err(|e| Error::io(run, e))?;
        self.save_text(&run.join("vectors.txt"))?;
        let data = CardData {
            vectors: "vectors.txt".into(),
        };
        taper_train::card::ModelCard::new(
            Self::FAMILY,
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
            cfg,
            &data,
        )?
        .save(run)?;
        Ok(())
    }

    /// The vectors of a run saved by [`WordVectors::save_run`] (the
    /// `word2vec` example's run directories).
    ///
    /// # Errors
    /// A missing run or file, another model family's card, a newer format, or a
    /// malformed vectors file: each naming the file.
    pub fn load(run: &Path) -> Result<Self> {
        let card = taper_train::card::ModelCard::load(run, Self::FAMILY)?;
        let data: CardData = card.data()?;
        Self::load_text(&run.join(data.vectors))
    }

    /// Vectors of `vocab`'s words, `data` holding `vocab.len() × dim` values row by row.
    pub fn new(vocab: Vocab, dim: usize, data: Vec<f32>) -> Result<Self> {
        if dim == 0 {
            return Err(Error::Config("vector dimension must be positive".into()));
        }
        if data.len() != vocab.len() * dim {
            return Err(Error::Config(format!(
                "{} values for {} words of dimension {dim}",
                data.len(),
                vocab.len()
            )));
        }
        Ok(Self {
            vocab,
            dim,
            data,
            unit: OnceLock::new(),
        })
    }

    /// Vectors from a `(vocab.len(), dim)` tensor (any float dtype, any device).
    pub fn from_tensor(vocab: Vocab, t: &Tensor) -> Result<Self> {
        let (n, d) = t.dims2()?;
        if n != vocab.len() {
            return Err(Error::Config(format!(
                "tensor has {n} rows for {} words",
                vocab.len()
            )));
        }
        let data = t
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Self::new(vocab, d, data)
    }

    /// The vectors as a `(len, dim)` f32 tensor.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_slice(
            &self.data,
            (self.len(), self.dim),
            device,
        )?)
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.vocab.len()
    }

    /// True when there is no word (never, by construction).
    pub fn is_empty(&self) -> bool {
        self.vocab.is_empty()
    }

    /// All values, row by row.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// The vector of word id `id`.
    ///
    /// # Errors
    /// [`Error::IdOutOfRange`] for an id at or past the vocabulary size.
    pub fn row(&self, id: u32) -> Result<&[f32]> {
        self.row_of(id as usize).ok_or(Error::IdOutOfRange {
            id: id as u64,
            len: self.len(),
        })
    }

    fn row_of(&self, i: usize) -> Option<&[f32]> {
        self.data.get(i * self.dim..(i + 1) * self.dim)
    }

    /// The vector of `word`.
    pub fn vector(&self, word: &str) -> Result<&[f32]> {
        self.row(self.vocab.id(word)?)
    }

    fn unit(&self) -> &[f32] {
        self.unit.get_or_init(|| {
            let mut u = self.data.clone();
            for row in u.chunks_exact_mut(self.dim) {
                let n = dot(row, row).sqrt();
                if n > 0.0 {
                    row.iter_mut().for_each(|x| *x /= n);
                }
            }
            u
        })
    }

    fn unit_row(&self, id: u32) -> &[f32] {
        let i = id as usize * self.dim;
        &self.unit()[i..i + self.dim]
    }

    /// Cosine similarity of two words.
    pub fn similarity(&self, a: &str, b: &str) -> Result<f32> {
        let (ia, ib) = (self.vocab.id(a)?, self.vocab.id(b)?);
        Ok(dot(self.unit_row(ia), self.unit_row(ib)))
    }

    /// The `k` words nearest to `word` by cosine, nearest first (itself excluded).
    pub fn most_similar(&self, word: &str, k: usize) -> Result<Vec<(String, f32)>> {
        let id = self.vocab.id(word)?;
        let q = self.unit_row(id).to_vec();
        Ok(self.nearest(&q, k, &[id]))
    }

    /// The `k` words nearest by cosine to an arbitrary vector, skipping `exclude` ids.
    pub fn nearest_to_vector(
        &self,
        v: &[f32],
        k: usize,
        exclude: &[u32],
    ) -> Result<Vec<(String, f32)>> {
        if v.len() != self.dim {
            return Err(Error::Config(format!(
                "query vector has dimension {}, vectors have {}",
                v.len(),
                self.dim
            )));
        }
        let n = dot(v, v).sqrt();
        let q: Vec<f32> = v.iter().map(|x| if n > 0.0 { x / n } else { *x }).collect();
        Ok(self.nearest(&q, k, exclude))
    }

    /// "`a` is to `b` as `c` is to ?": the `k` words nearest to
    /// `unit(b) − unit(a) + unit(c)`, the three query words excluded (gensim's
    /// `most_similar(positive=[b, c], negative=[a])`). For "king − man + woman"
    /// call `analogy("man", "king", "woman", k)`.
    pub fn analogy(&self, a: &str, b: &str, c: &str, k: usize) -> Result<Vec<(String, f32)>> {
        let ids = [self.vocab.id(a)?, self.vocab.id(b)?, self.vocab.id(c)?];
        let (ua, ub, uc) = (
            self.unit_row(ids[0]),
            self.unit_row(ids[1]),
            self.unit_row(ids[2]),
        );
        let q: Vec<f32> = (0..self.dim).map(|i| ub[i] - ua[i] + uc[i]).collect();
        self.nearest_to_vector(&q, k, &ids)
    }

    fn nearest(&self, unit_query: &[f32], k: usize, exclude: &[u32]) -> Vec<(String, f32)> {
        let unit = self.unit();
        let mut scored: Vec<(u32, f32)> = unit
            .chunks_exact(self.dim)
            .enumerate()
            .filter(|(i, _)| !exclude.contains(&(*i as u32)))
            .map(|(i, row)| (i as u32, dot(unit_query, row)))
            .filter(|(_, s)| s.is_finite())
            .collect();
        let k = k.min(scored.len());
        if k == 0 {
            return Vec::new();
        }
        scored.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
        scored.truncate(k);
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored
            .into_iter()
            .filter_map(|(i, s)| self.vocab.word(i).map(|w| (w.to_string(), s)))
            .collect()
    }

    /// Writes the word2vec text format: `count dim`, then a word and its values a
    /// line (what gensim's `KeyedVectors.load_word2vec_format` reads). Written to a
    /// temporary file and renamed into place.
    pub fn save_text(&self, path: &Path) -> Result<()> {
        if let Some(w) = self
            .vocab
            .words()
            .iter()
            .find(|w| w.is_empty() || w.chars().any(char::is_whitespace))
        {
            return Err(Error::Config(format!(
                "word '{w}' is empty or holds white space: the text format cannot store it"
            )));
        }
        // Streamed: a large vocabulary's text does not fit in memory twice.
        taper_train::fs::atomic_write_with(path, |out| {
            writeln!(out, "{} {}", self.len(), self.dim)?;
            for (i, w) in self.vocab.words().iter().enumerate() {
                out.write_all(w.as_bytes())?;
                // Rust prints the shortest text that reads back as the same f32, so
                // the round trip is exact.
                for x in self.row_of(i).unwrap_or_default() {
                    write!(out, " {x}")?;
                }
                out.write_all(b"\n")?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Reads the word2vec text format; every line must hold the header's dimension.
    pub fn load_text(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let reader = BufReader::new(file);
        let bad = |line: usize, msg: String| Error::VectorFormat {
            path: path.to_path_buf(),
            line,
            msg,
        };
        let mut lines = reader.lines();
        let header = match lines.next() {
            None => return Err(bad(1, "empty file: expected a 'count dim' header".into())),
            Some(l) => l.map_err(|e| read_err(path, 1, e))?,
        };
        let parts: Vec<&str> = header.split_whitespace().collect();
        let (count, dim) = match parts.as_slice() {
            [c, d] => match (c.parse::<usize>(), d.parse::<usize>()) {
                (Ok(c), Ok(d)) if d > 0 => (c, d),
                _ => {
                    return Err(bad(
                        1,
                        format!("bad header '{header}': expected 'count dim'"),
                    ))
                }
            },
            _ => {
                return Err(bad(
                    1,
                    format!("bad header '{header}': expected 'count dim'"),
                ))
            }
        };
        // The header is only a claim: reserve no more than the file's size can hold
        // (each value takes at least two bytes), so a lying header cannot exhaust memory.
        let file_len = std::fs::metadata(path)
            .map(|m| m.len() as usize)
            .unwrap_or(0);
        let mut words = Vec::with_capacity(count.min(file_len / 2));
        let mut seen = std::collections::HashSet::new();
        let mut data = Vec::with_capacity(count.saturating_mul(dim).min(file_len / 2));
        let mut last_line = 1;
        for (i, line) in lines.enumerate() {
            let n = i + 2;
            last_line = n;
            let line = line.map_err(|e| read_err(path, n, e))?;
            if line.trim().is_empty() {
                continue;
            }
            let mut it = line.split_whitespace();
            let word = it.next().unwrap_or_default().to_string();
            let before = data.len();
            for tok in it {
                let v: f32 = tok
                    .parse()
                    .map_err(|_| bad(n, format!("'{tok}' is not a number (word '{word}')")))?;
                if !v.is_finite() {
                    return Err(bad(
                        n,
                        format!("value '{tok}' of word '{word}' is not finite"),
                    ));
                }
                data.push(v);
            }
            let got = data.len() - before;
            if got != dim {
                return Err(bad(
                    n,
                    format!("word '{word}' has {got} values, the header says {dim}"),
                ));
            }
            if words.len() == count {
                return Err(bad(
                    n,
                    format!("more than the {count} words the header announces"),
                ));
            }
            if !seen.insert(word.clone()) {
                return Err(bad(n, format!("word '{word}' appears twice")));
            }
            words.push(word);
        }
        if words.len() != count {
            // Where the next word was expected: just past the last line read.
            return Err(bad(
                last_line + 1,
                format!(
                    "the header announces {count} words, the file holds {}",
                    words.len()
                ),
            ));
        }
        let vocab = Vocab::from_words(words)?;
        Self::new(vocab, dim, data)
    }
}

fn read_err(path: &Path, line: usize, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::InvalidData {
        Error::VectorFormat {
            path: path.to_path_buf(),
            line,
            msg: "not valid UTF-8".into(),
        }
    } else {
        Error::io(path, e)
    }
}

/// Dot product with eight independent sums, which the compiler turns into SIMD
/// (a single running sum would force sequential adds).
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    s += (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]);
    s
}
