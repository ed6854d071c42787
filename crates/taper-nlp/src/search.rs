//! Semantic search: an exact top-k cosine index over embeddings, saved with the
//! fingerprint of the model that made them; Okapi BM25 over words; and the
//! paraphrase-retrieval evaluation (recall@k, MRR@10) they are compared on.

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// A ranked hit: the document's row and its score.
pub type Hit = (u32, f32);

/// The `k` best `(row, score)` of `scores`, best first (ties: lower row first),
/// skipping `exclude`.
fn top_k(scores: &[f32], k: usize, exclude: Option<u32>) -> Vec<Hit> {
    let mut best: Vec<Hit> = Vec::with_capacity(k + 1);
    for (i, &s) in scores.iter().enumerate() {
        if Some(i as u32) == exclude || s.is_nan() {
            continue;
        }
        if best.len() == k && s <= best[k - 1].1 {
            continue;
        }
        let pos = best.partition_point(|&(_, b)| b >= s);
        best.insert(pos, (i as u32, s));
        best.truncate(k);
    }
    best
}

/// Exact cosine search over unit-length vectors: one matrix product of the
/// queries against blocks of the index (SIMD, multi-threaded through candle's
/// GEMM), then a top-k selection per query in parallel.
pub struct ExactIndex {
    dim: usize,
    vectors: Tensor,
    fingerprint: String,
}

/// Rows of the index scored at once (bounds the score matrix's memory).
const BLOCK: usize = 16_384;

impl ExactIndex {
    /// An index of the rows of `vectors` `(N, dim)` (normalised here to unit
    /// length), made by the model whose fingerprint is `fingerprint`.
    ///
    /// # Errors
    /// A tensor that is not a matrix.
    pub fn new(vectors: &Tensor, fingerprint: &str) -> Result<Self> {
        let (_, dim) = vectors.dims2()?;
        let v = crate::bert::l2_normalize(&vectors.to_dtype(DType::F32)?)?;
        Ok(Self {
            dim,
            vectors: v.contiguous()?,
            fingerprint: fingerprint.to_string(),
        })
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.vectors.dim(0).unwrap_or(0)
    }

    /// True when the index holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Width of a vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The fingerprint of the model that made the vectors.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The `k` nearest rows by cosine for each query `(Q, dim)`, best first;
    /// `exclude[q]` (when given) is left out of query `q`'s results (a query
    /// that is itself in the index).
    ///
    /// # Errors
    /// Queries of another width.
    pub fn search(
        &self,
        queries: &Tensor,
        k: usize,
        exclude: Option<&[u32]>,
    ) -> Result<Vec<Vec<Hit>>> {
        let (nq, d) = queries.dims2()?;
        if d != self.dim {
            return Err(Error::Config(format!(
                "queries of width {d} against an index of width {}",
                self.dim
            )));
        }
        let q = crate::bert::l2_normalize(&queries.to_dtype(DType::F32)?)?
            .to_device(self.vectors.device())?;
        let n = self.len();
        let mut best: Vec<Vec<Hit>> = vec![Vec::new(); nq];
        for start in (0..n).step_by(BLOCK) {
            let len = BLOCK.min(n - start);
            let block = self.vectors.narrow(0, start, len)?;
            let scores: Vec<Vec<f32>> = q.matmul(&block.t()?)?.to_vec2()?;
            best.par_iter_mut()
                .zip(scores.par_iter())
                .enumerate()
                .for_each(|(qi, (b, s))| {
                    let ex = exclude.and_then(|e| e.get(qi)).and_then(|&e| {
                        (e as usize >= start && (e as usize) < start + len)
                            .then(|| e - start as u32)
                    });
                    let mut merged: Vec<Hit> = top_k(s, k, ex)
                        .into_iter()
                        .map(|(i, v)| (i + start as u32, v))
                        .collect();
                    merged.extend(b.iter().copied());
                    merged.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
                    merged.truncate(k);
                    *b = merged;
                });
        }
        Ok(best)
    }

    /// Writes the index atomically (safetensors, the fingerprint in its metadata).
    ///
    /// # Errors
    /// A file that cannot be written, naming it.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut meta = HashMap::new();
        meta.insert("fingerprint".to_string(), self.fingerprint.clone());
        meta.insert("format".to_string(), "taper-exact-index-1".to_string());
        let view = self.vectors.to_device(&Device::Cpu)?;
        let bytes = safetensors::serialize([("vectors", &view)], Some(meta))
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        taper_train::fs::atomic_write(path, &bytes)?;
        Ok(())
    }

    /// Reads an index written by [`ExactIndex::save`], refusing one whose
    /// fingerprint (the model's, and the corpus's where the caller adds it) is
    /// not `fingerprint`.
    ///
    /// # Errors
    /// [`Error::ModelFile`] naming the file: unreadable, not an index, or of
    /// another model.
    pub fn load(path: &Path, fingerprint: &str, device: &Device) -> Result<Self> {
        let bad = |msg: String| Error::ModelFile {
            path: path.to_path_buf(),
            msg,
        };
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not an index file: {e}")))?;
        let found = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("fingerprint").cloned())
            .ok_or_else(|| bad("not an index file: no model fingerprint".into()))?;
        if found != fingerprint {
            return Err(bad(format!(
                "built from another model or corpus (fingerprint {found}, expected {fingerprint}): rebuild it"
            )));
        }
        let tensors = candle_core::safetensors::load_buffer(&bytes, device)
            .map_err(|e| bad(format!("not an index file: {e}")))?;
        let vectors = tensors
            .get("vectors")
            .ok_or_else(|| bad("not an index file: no vectors".into()))?;
        let (_, dim) = vectors
            .dims2()
            .map_err(|e| bad(format!("not an index file: {e}")))?;
        // Stored already normalised: normalising again would move the last bits.
        Ok(Self {
            dim,
            vectors: vectors.to_dtype(DType::F32)?.contiguous()?,
            fingerprint: fingerprint.to_string(),
        })
    }
}

/// Lower-cased alphanumeric words of `text`: BM25's tokens.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Okapi BM25 (Robertson & Zaragoza 2009) as `rank_bm25.BM25Okapi` computes it:
/// `idf(t) = ln((N - n_t + 0.5) / (n_t + 0.5))`, negative values replaced by
/// `ε · mean idf` (ε = 0.25), and a term's score `idf · f (k1 + 1) / (f + k1
/// (1 - b + b · |d| / avgdl))` with k1 = 1.5, b = 0.75.
pub struct Bm25 {
    postings: HashMap<String, Vec<(u32, u32)>>,
    idf: HashMap<String, f64>,
    doc_len: Vec<f64>,
    avgdl: f64,
    k1: f64,
    b: f64,
}

impl Bm25 {
    /// The index of `docs` (tokenised by [`words`]).
    pub fn new<S: AsRef<str>>(docs: &[S]) -> Self {
        let mut postings: HashMap<String, Vec<(u32, u32)>> = HashMap::new();
        let mut doc_len = Vec::with_capacity(docs.len());
        for (i, d) in docs.iter().enumerate() {
            let w = words(d.as_ref());
            doc_len.push(w.len() as f64);
            let mut tf: BTreeMap<String, u32> = BTreeMap::new();
            for t in w {
                *tf.entry(t).or_default() += 1;
            }
            for (t, f) in tf {
                postings.entry(t).or_default().push((i as u32, f));
            }
        }
        let n = docs.len() as f64;
        let mut idf: HashMap<String, f64> = postings
            .iter()
            .map(|(t, p)| {
                (
                    t.clone(),
                    ((n - p.len() as f64 + 0.5) / (p.len() as f64 + 0.5)).ln(),
                )
            })
            .collect();
        let mean = if idf.is_empty() {
            0.0
        } else {
            idf.values().sum::<f64>() / idf.len() as f64
        };
        for v in idf.values_mut() {
            if *v < 0.0 {
                *v = 0.25 * mean;
            }
        }
        let avgdl = if doc_len.is_empty() {
            0.0
        } else {
            doc_len.iter().sum::<f64>() / n
        };
        Self {
            postings,
            idf,
            doc_len,
            avgdl,
            k1: 1.5,
            b: 0.75,
        }
    }

    /// The score of every document for `query`.
    pub fn scores(&self, query: &str) -> Vec<f32> {
        let mut s = vec![0f64; self.doc_len.len()];
        for t in words(query) {
            let (Some(p), Some(&idf)) = (self.postings.get(&t), self.idf.get(&t)) else {
                continue;
            };
            for &(d, f) in p {
                let f = f as f64;
                let norm =
                    self.k1 * (1.0 - self.b + self.b * self.doc_len[d as usize] / self.avgdl);
                s[d as usize] += idf * f * (self.k1 + 1.0) / (f + norm);
            }
        }
        s.into_iter().map(|v| v as f32).collect()
    }

    /// The `k` best documents for each query, `exclude[q]` left out.
    pub fn search<S: AsRef<str> + Sync>(
        &self,
        queries: &[S],
        k: usize,
        exclude: Option<&[u32]>,
    ) -> Vec<Vec<Hit>> {
        queries
            .par_iter()
            .enumerate()
            .map(|(i, q)| {
                top_k(
                    &self.scores(q.as_ref()),
                    k,
                    exclude.and_then(|e| e.get(i).copied()),
                )
            })
            .collect()
    }
}

/// Paraphrase retrieval on a parallel corpus (Tatoeba's `eng-fra.txt`):
/// English sentences that share one French translation are paraphrases.
/// Every member of a group is a query against all distinct English sentences
/// (itself left out); relevant are the other members.
#[derive(Debug, Clone)]
pub struct ParaphraseTask {
    /// The distinct source sentences, in order of first appearance.
    pub corpus: Vec<String>,
    /// Each query's row in `corpus`.
    pub queries: Vec<u32>,
    /// Each query's relevant rows.
    pub relevant: Vec<HashSet<u32>>,
    /// Each query's group (the shared translation's index), for splitting by group.
    pub group: Vec<u32>,
}

/// Recall at 1 and 10 and the mean reciprocal rank within the first 10.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RetrievalScores {
    /// Mean over queries of |relevant ∩ top 1| / |relevant|.
    pub recall_at_1: f64,
    /// Mean over queries of |relevant ∩ top 10| / |relevant|.
    pub recall_at_10: f64,
    /// Mean over queries of 1 / rank of the first relevant hit (0 past 10).
    pub mrr_at_10: f64,
    /// Queries evaluated.
    pub queries: usize,
}

impl ParaphraseTask {
    /// Groups the `source TAB target` lines of `path`.
    ///
    /// # Errors
    /// An unreadable file, a line without a tab, or no group of two.
    pub fn from_pairs(path: &Path) -> Result<Self> {
        let text = crate::corpus::read_text(path)?;
        let mut index: HashMap<&str, u32> = HashMap::new();
        let mut corpus: Vec<String> = Vec::new();
        let mut groups: Vec<Vec<u32>> = Vec::new();
        let mut group_of: HashMap<&str, usize> = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mut parts = line.split('\t');
            let (Some(src), Some(tgt)) = (parts.next(), parts.next()) else {
                return Err(Error::Parse {
                    path: path.to_path_buf(),
                    line: n + 1,
                    msg: "expected `source TAB target`".into(),
                });
            };
            let id = *index.entry(src).or_insert_with(|| {
                corpus.push(src.to_string());
                corpus.len() as u32 - 1
            });
            let g = *group_of.entry(tgt).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            if !groups[g].contains(&id) {
                groups[g].push(id);
            }
        }
        let (mut queries, mut relevant, mut group) = (Vec::new(), Vec::new(), Vec::new());
        for (g, members) in groups.iter().enumerate().filter(|(_, m)| m.len() >= 2) {
            for &q in members {
                queries.push(q);
                relevant.push(members.iter().copied().filter(|&m| m != q).collect());
                group.push(g as u32);
            }
        }
        if queries.is_empty() {
            return Err(Error::NoData(format!(
                "{}: no two sources share a translation",
                path.display()
            )));
        }
        Ok(Self {
            corpus,
            queries,
            relevant,
            group,
        })
    }

    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.group.iter().collect::<HashSet<_>>().len()
    }

    /// Scores of `ranked[q]` (each query's best hits, at least 10 of them when
    /// there are) for the queries `which` (all when `None`).
    pub fn score(&self, ranked: &[Vec<Hit>], which: Option<&[usize]>) -> RetrievalScores {
        let all: Vec<usize> = (0..self.queries.len()).collect();
        let which = which.unwrap_or(&all);
        let (mut r1, mut r10, mut mrr) = (0.0, 0.0, 0.0);
        for &q in which {
            let rel = &self.relevant[q];
            let hits = &ranked[q];
            let found =
                |k: usize| hits.iter().take(k).filter(|(i, _)| rel.contains(i)).count() as f64;
            r1 += found(1) / rel.len() as f64;
            r10 += found(10) / rel.len() as f64;
            if let Some(pos) = hits.iter().take(10).position(|(i, _)| rel.contains(i)) {
                mrr += 1.0 / (pos + 1) as f64;
            }
        }
        let n = which.len().max(1) as f64;
        RetrievalScores {
            recall_at_1: r1 / n,
            recall_at_10: r10 / n,
            mrr_at_10: mrr / n,
            queries: which.len(),
        }
    }
}

/// A model's fingerprint: the SHA-256 of its `config.json` and weights
/// (hex, first 16 bytes), what an index records to refuse another model's.
///
/// # Errors
/// A file that cannot be read.
pub fn fingerprint(files: &[&Path]) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for f in files {
        let mut file = std::fs::File::open(f).map_err(|e| Error::io(*f, e))?;
        std::io::copy(&mut file, &mut h).map_err(|e| Error::io(*f, e))?;
    }
    Ok(h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Sentence vectors as the mean of their words' vectors (lower-cased
/// [`words`]; unknown words skipped; a text with none gets zeros): the
/// word2vec baseline of the retrieval evaluation. `(N, dim)`.
///
/// # Errors
/// Tensor failures.
pub fn average_word_vectors<S: AsRef<str> + Sync>(
    vectors: &crate::WordVectors,
    texts: &[S],
) -> Result<Tensor> {
    let dim = vectors.dim();
    let mut out = vec![0f32; texts.len() * dim];
    out.par_chunks_mut(dim)
        .zip(texts.par_iter())
        .for_each(|(row, t)| {
            let mut n = 0;
            for w in words(t.as_ref()) {
                if let Ok(v) = vectors.vector(&w) {
                    row.iter_mut().zip(v).for_each(|(a, b)| *a += b);
                    n += 1;
                }
            }
            if n > 0 {
                row.iter_mut().for_each(|a| *a /= n as f32);
            }
        });
    Ok(Tensor::from_vec(out, (texts.len(), dim), &Device::Cpu)?)
}

/// A split of a [`ParaphraseTask`] by group (by the shared translation), so no
/// pair of a test group is trained on.
#[derive(Debug, Clone)]
pub struct GroupSplit {
    /// `(member, next member)` pairs of the training groups.
    pub train_pairs: Vec<(String, String)>,
    /// The same of the validation groups.
    pub valid_pairs: Vec<(String, String)>,
    /// The queries (indices into [`ParaphraseTask::queries`]) of the test groups.
    pub test_queries: Vec<usize>,
}

impl ParaphraseTask {
    /// Rankings (the `k` best rows, the query left out) of the queries `which`
    /// by cosine between the corpus `embeddings` `(corpus, dim)`; other queries
    /// get no ranking. Indexed like [`ParaphraseTask::queries`], ready for
    /// [`ParaphraseTask::score`].
    ///
    /// # Errors
    /// Embeddings of another count than the corpus.
    pub fn rank_by_embeddings(
        &self,
        embeddings: &Tensor,
        which: &[usize],
        k: usize,
    ) -> Result<Vec<Vec<Hit>>> {
        if embeddings.dim(0)? != self.corpus.len() {
            return Err(Error::Config(format!(
                "{} embeddings for a corpus of {}",
                embeddings.dim(0)?,
                self.corpus.len()
            )));
        }
        let index = ExactIndex::new(embeddings, "")?;
        let rows: Vec<u32> = which.iter().map(|&q| self.queries[q]).collect();
        let idx = Tensor::from_vec(rows.clone(), rows.len(), embeddings.device())?;
        let ranked = index.search(&embeddings.index_select(&idx, 0)?, k, Some(&rows))?;
        Ok(self.spread(which, ranked))
    }

    /// Rankings of the queries `which` by BM25 over the corpus (see
    /// [`ParaphraseTask::rank_by_embeddings`]).
    pub fn rank_by_bm25(&self, which: &[usize], k: usize) -> Vec<Vec<Hit>> {
        let bm25 = Bm25::new(&self.corpus);
        let texts: Vec<&str> = which
            .iter()
            .map(|&q| self.corpus[self.queries[q] as usize].as_str())
            .collect();
        let rows: Vec<u32> = which.iter().map(|&q| self.queries[q]).collect();
        self.spread(which, bm25.search(&texts, k, Some(&rows)))
    }

    /// Sentence vectors of the corpus as averaged word2vec vectors trained on
    /// the corpus itself (lower-cased, every word kept, 10 epochs, gensim's
    /// other defaults), drawn from `seed` on `threads` threads (0: all).
    ///
    /// # Errors
    /// Training failures.
    pub fn word2vec_embeddings(&self, seed: u64, threads: usize) -> Result<Tensor> {
        let text: String = self.corpus.iter().map(|d| format!("{d}\n")).collect();
        let opts = crate::CorpusOptions {
            lowercase: true,
            ..Default::default()
        };
        let corpus = crate::Corpus::from_text("paraphrase corpus", text, &opts)?;
        let cfg = crate::Word2VecConfig {
            min_count: 1,
            epochs: 10,
            seed,
            threads,
            ..Default::default()
        };
        let (vectors, _) = crate::word2vec::train_native(
            &crate::word2vec::PreparedCorpus::new(&corpus, &cfg)?,
            &cfg,
        )?;
        average_word_vectors(&vectors, &self.corpus)
    }

    fn spread(&self, which: &[usize], ranked: Vec<Vec<Hit>>) -> Vec<Vec<Hit>> {
        let mut full = vec![Vec::new(); self.queries.len()];
        for (&q, r) in which.iter().zip(ranked) {
            full[q] = r;
        }
        full
    }

    /// Groups split `test_fraction` for test, then `valid_fraction` of the rest
    /// for validation, drawn from `seed`.
    ///
    /// # Errors
    /// Fractions outside [0, 1).
    pub fn split_by_group(
        &self,
        test_fraction: f64,
        valid_fraction: f64,
        seed: u64,
    ) -> Result<GroupSplit> {
        use taper_train::data::split_indices;
        let mut groups: Vec<u32> = self.group.clone();
        groups.dedup();
        let (rest, test) = split_indices(groups.len(), test_fraction, seed)?;
        let (train, valid) = split_indices(rest.len(), valid_fraction, seed.wrapping_add(1))?;
        let set = |idx: &[usize], base: Option<&[usize]>| -> HashSet<u32> {
            idx.iter()
                .map(|&i| groups[base.map_or(i, |b| b[i])])
                .collect()
        };
        let test_g = set(&test, None);
        let pairs = |gs: &HashSet<u32>| -> Vec<(String, String)> {
            let mut members: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
            for (q, g) in self.queries.iter().zip(&self.group) {
                if gs.contains(g) {
                    members.entry(*g).or_default().push(*q);
                }
            }
            let text = |i: u32| self.corpus[i as usize].clone();
            members
                .values()
                .flat_map(|m| {
                    m.windows(2)
                        .map(|w| (text(w[0]), text(w[1])))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        Ok(GroupSplit {
            train_pairs: pairs(&set(&train, Some(&rest))),
            valid_pairs: pairs(&set(&valid, Some(&rest))),
            test_queries: (0..self.queries.len())
                .filter(|&q| test_g.contains(&self.group[q]))
                .collect(),
        })
    }
}
