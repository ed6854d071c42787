//! Semantic search: an exact top-k cosine index over embeddings and an
//! approximate one (an HNSW graph, for large corpora), each saved with the
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
    if k == 0 {
        return Vec::new();
    }
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

/// The number of rows of `queries` `(Q, dim)`, checking their width.
fn query_count(queries: &Tensor, dim: usize) -> Result<usize> {
    let (nq, d) = queries.dims2()?;
    if d != dim {
        return Err(Error::Config(format!(
            "queries of width {d} against an index of width {dim}"
        )));
    }
    Ok(nq)
}

/// Why a saved index of fingerprint `found` is refused for `expected`.
fn another_model(found: &str, expected: &str) -> String {
    format!(
        "built from another model or corpus (fingerprint {found}, expected {expected}): rebuild it"
    )
}

/// Exact cosine search over unit-length vectors: one matrix product of the
/// queries against blocks of the index (on the CPU taper-nn's GEMM, OpenBLAS
/// tiles where it is loaded; candle's matmul on other devices), then a top-k
/// selection per query in parallel.
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
        let nq = query_count(queries, self.dim)?;
        let q = crate::bert::l2_normalize(&queries.to_dtype(DType::F32)?)?
            .to_device(self.vectors.device())?;
        let n = self.len();
        let mut best: Vec<Vec<Hit>> = vec![Vec::new(); nq];
        let (storage, layout) = self.vectors.storage_and_layout();
        // On the CPU the vectors are read in place and scored by taper-nn's GEMM
        // (OpenBLAS where loaded, cut into tiles over both threads): candle's matmul
        // ran one query against 98,659 vectors in 11 ms, over the 10 ms the issue
        // allows.
        let host = match &*storage {
            candle_core::Storage::Cpu(cpu) => Some((
                taper_nn::kernels::cpu_slice::<f32>(cpu, layout, "exact index")?,
                q.flatten_all()?.to_vec1::<f32>()?,
            )),
            _ => None,
        };
        for start in (0..n).step_by(BLOCK) {
            let len = BLOCK.min(n - start);
            let scores: Vec<f32> = match &host {
                Some((all, qv)) => {
                    let mut out = vec![0f32; nq * len];
                    taper_nn::kernels::gemm(
                        &mut out,
                        len,
                        taper_nn::kernels::MatRef::rows(qv, self.dim),
                        taper_nn::kernels::MatRef::transposed(
                            &all[start * self.dim..(start + len) * self.dim],
                            self.dim,
                        ),
                        (nq, len, self.dim),
                        false,
                        rayon::current_num_threads(),
                    );
                    out
                }
                None => {
                    let block = self.vectors.narrow(0, start, len)?;
                    q.matmul(&block.t()?)?.flatten_all()?.to_vec1()?
                }
            };
            best.par_iter_mut()
                .zip(scores.par_chunks(len))
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
        let view = self.vectors.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        meta.insert("vectors_sha256".to_string(), sha256_hex(&f32_bytes(&view)?));
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
            return Err(bad(another_model(&found, fingerprint)));
        }
        // A damaged value would be ranked (an infinity first of all) without a word:
        // the saved bytes are checked in place, before they are copied into a tensor.
        let raw = safetensors::SafeTensors::deserialize(&bytes)
            .and_then(|st| st.tensor("vectors").map(|t| sha256_hex(t.data())))
            .map_err(|e| bad(format!("not an index file: {e}")))?;
        let sum = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("vectors_sha256"));
        if sum != Some(&raw) {
            return Err(bad(
                "corrupt: the vectors' SHA-256 does not match the one saved with them".into(),
            ));
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

/// Parameters of an HNSW graph (hierarchical navigable small world: Malkov &
/// Yashunin 2018, "Efficient and robust approximate nearest neighbor search
/// using Hierarchical Navigable Small World graphs", IEEE TPAMI 42(4)).
///
/// The defaults (M = 16, efConstruction = 256, ef = 96) reach recall@10 of
/// 0.985-0.988 against exact search on 97,659 all-MiniLM-L6-v2 embeddings of
/// Tatoeba's English sentences, 1,000 held-out queries, at about 0.5 ms a query
/// on one thread (exact: about 12 ms); see docs/BENCHMARKS-notes.md (issue 19).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct HnswParams {
    /// `M`: links kept per node on the upper layers (twice as many on the
    /// bottom one). More links raise recall at a given `ef_search` and cost
    /// build time, memory and file size (about 2·M·4 bytes a vector beside its
    /// own 4·dim). At least 2.
    pub connectivity: usize,
    /// `efConstruction`: candidates examined when a vector is linked in. Higher
    /// builds a better graph, more slowly. At least 1.
    pub ef_construction: usize,
    /// `ef`: candidates kept while searching, raised to the number of hits
    /// asked for when smaller. The recall/speed knob: time per query grows
    /// about linearly with it. At least 1.
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self {
            connectivity: 16,
            ef_construction: 256,
            ef_search: 96,
        }
    }
}

impl HnswParams {
    fn check(&self) -> Result<()> {
        if self.connectivity < 2 || self.ef_construction == 0 || self.ef_search == 0 {
            return Err(Error::Config(format!(
                "HNSW parameters {self:?}: connectivity must be at least 2, ef_construction and ef_search at least 1"
            )));
        }
        Ok(())
    }
}

/// Concurrent callers allowed into the graph at once. USearch keeps one
/// scratch context per "thread" reserved up front and fails a call that finds
/// none free, so callers wait here for a context instead of failing.
struct Slots {
    free: std::sync::Mutex<usize>,
    ready: std::sync::Condvar,
    total: usize,
}

impl Slots {
    fn new() -> Self {
        let total = rayon::current_num_threads()
            .max(std::thread::available_parallelism().map_or(1, |n| n.get()));
        Self {
            free: std::sync::Mutex::new(total),
            ready: std::sync::Condvar::new(),
            total,
        }
    }

    /// Runs `f` holding one context (given back even if `f` panics).
    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Held<'a>(&'a Slots);
        impl Drop for Held<'_> {
            fn drop(&mut self) {
                *self.0.count() += 1;
                self.0.ready.notify_one();
            }
        }
        let mut free = self.count();
        while *free == 0 {
            free = self.ready.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        drop(free);
        let _held = Held(self);
        f()
    }

    fn count(&self) -> std::sync::MutexGuard<'_, usize> {
        // Nothing that can panic runs under this lock, and a poisoned one
        // still holds a right count.
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What [`ApproxIndex::save`] writes before the graph: the file's identity
/// and what loading must check before the graph reaches USearch's parser.
#[derive(serde::Serialize, serde::Deserialize)]
struct ApproxHeader {
    format: String,
    fingerprint: String,
    engine: String,
    dim: usize,
    len: usize,
    params: HnswParams,
    graph_bytes: usize,
    graph_sha256: String,
}

const APPROX_MAGIC: &[u8; 8] = b"TAPRHNSW";
const APPROX_FORMAT: &str = "taper-hnsw-index-1";

/// `bytes` as lower-case hexadecimal.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The values of an f32 tensor as little-endian bytes, as safetensors stores them
/// (for the checksum saved beside them).
fn f32_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let values = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    Ok(values.iter().flat_map(|v| v.to_le_bytes()).collect())
}

/// Whether `bytes` (a file's first 64 KiB) is an index Taper wrote, even a damaged or
/// stale one: an HNSW header, or a safetensors header naming the exact format.
fn looks_like_an_index(bytes: &[u8]) -> bool {
    bytes.starts_with(APPROX_MAGIC)
        || (bytes.len() > 8
            && bytes[8] == b'{'
            && bytes.windows(17).any(|w| w == b"taper-exact-index"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

/// Approximate cosine search over unit-length vectors: an HNSW graph (Malkov
/// & Yashunin 2018) built and searched by the `usearch` crate (inner-product
/// metric, f32 storage), queries in parallel. Same API, hits and scores as
/// [`ExactIndex`], except that a few true neighbours may be missed (recall@10
/// about 0.985 at the default [`HnswParams`]) for a search that follows links
/// through a small part of the vectors instead of scoring all of them.
///
/// The graph is built in parallel, so two builds from the same vectors may
/// differ in their last hits; a saved index answers identically once loaded.
pub struct ApproxIndex {
    graph: usearch::Index,
    dim: usize,
    len: usize,
    params: HnswParams,
    fingerprint: String,
    slots: Slots,
}

/// The rows of `x` `(N, dim)`, scaled to unit length, as f32 on the CPU.
fn unit_rows(x: &Tensor) -> Result<Vec<f32>> {
    Ok(crate::bert::l2_normalize(&x.to_dtype(DType::F32)?)?
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

fn engine_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("approximate index: {what}: {e}"))
}

impl ApproxIndex {
    fn empty_graph(dim: usize, params: &HnswParams) -> Result<usearch::Index> {
        let opts = usearch::IndexOptions {
            dimensions: dim,
            metric: usearch::MetricKind::IP,
            quantization: usearch::ScalarKind::F32,
            connectivity: params.connectivity,
            expansion_add: params.ef_construction,
            expansion_search: params.ef_search,
            multi: false,
        };
        usearch::Index::new(&opts).map_err(|e| engine_error("creating the graph", e))
    }

    /// An index of the rows of `vectors` `(N, dim)` (normalised here to unit
    /// length; row `i` is hit `i`), made by the model whose fingerprint is
    /// `fingerprint`, built on rayon's threads. Building time grows with
    /// N · efConstruction (45 s for 100k 384-d vectors on two cores at the
    /// defaults).
    ///
    /// # Errors
    /// A tensor that is not a matrix, a width of 0, more than `u32::MAX` rows,
    /// parameters out of range, or the graph library failing (out of memory).
    pub fn new(vectors: &Tensor, fingerprint: &str, params: HnswParams) -> Result<Self> {
        params.check()?;
        let (n, dim) = vectors.dims2()?;
        if dim == 0 || u32::try_from(n).is_err() {
            return Err(Error::Config(format!(
                "approximate index of {n} vectors of width {dim}: needs a width of at least 1 and at most {} vectors",
                u32::MAX
            )));
        }
        let rows = unit_rows(vectors)?;
        let graph = Self::empty_graph(dim, &params)?;
        let slots = Slots::new();
        graph
            .reserve_capacity_and_threads(n, slots.total)
            .map_err(|e| engine_error("reserving memory", e))?;
        rows.par_chunks(dim)
            .enumerate()
            .try_for_each(|(i, row)| slots.with(|| graph.add(i as u64, row)))
            .map_err(|e| engine_error("adding a vector", e))?;
        Ok(Self {
            graph,
            dim,
            len: n,
            params,
            fingerprint: fingerprint.to_string(),
            slots,
        })
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the index holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Width of a vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The fingerprint of the model that made the vectors.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The parameters the graph was built with and is searched with.
    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// Changes `ef` (see [`HnswParams::ef_search`]) for later searches; the
    /// graph is unchanged. Takes `&mut self` because USearch's setter is not
    /// safe against searches running at the same time.
    ///
    /// # Errors
    /// An `ef` of 0.
    pub fn set_ef_search(&mut self, ef: usize) -> Result<()> {
        let params = HnswParams {
            ef_search: ef,
            ..self.params
        };
        params.check()?;
        self.graph.change_expansion_search(ef);
        self.params = params;
        Ok(())
    }

    /// The `k` nearest rows by cosine for each query `(Q, dim)` as far as the
    /// graph finds them, best first (ties: lower row first), scores as
    /// [`ExactIndex::search`] gives them up to float rounding (±1e-6);
    /// `exclude[q]` (when given) is left out of query `q`'s results. Queries
    /// run in parallel on rayon's threads.
    ///
    /// # Errors
    /// Queries of another width, or the graph library failing.
    pub fn search(
        &self,
        queries: &Tensor,
        k: usize,
        exclude: Option<&[u32]>,
    ) -> Result<Vec<Vec<Hit>>> {
        let nq = query_count(queries, self.dim)?;
        if k == 0 || self.len == 0 || nq == 0 {
            return Ok(vec![Vec::new(); nq]);
        }
        let q = unit_rows(queries)?;
        q.par_chunks(self.dim)
            .enumerate()
            .map(|(qi, query)| -> Result<Vec<Hit>> {
                let skip = exclude.and_then(|e| e.get(qi)).copied();
                // One more when a row is to be left out, so k remain.
                let want = (k + usize::from(skip.is_some())).min(self.len);
                let found = self
                    .slots
                    .with(|| self.graph.search(query, want))
                    .map_err(|e| engine_error("searching", e))?;
                let mut hits: Vec<Hit> = found
                    .keys
                    .iter()
                    .zip(&found.distances)
                    .map(|(&key, &dist)| (key as u32, 1.0 - dist))
                    .filter(|&(row, _)| Some(row) != skip)
                    .collect();
                hits.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
                hits.truncate(k);
                Ok(hits)
            })
            .collect()
    }

    /// Writes the index atomically: a header (format, fingerprint, shape,
    /// parameters, the graph's length and SHA-256) then USearch's serialised
    /// graph, which holds the vectors too (about N · (4 · dim + 8 · M) bytes).
    ///
    /// # Errors
    /// A file that cannot be written, naming it.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut graph = vec![0u8; self.graph.serialized_length()];
        self.graph
            .save_to_buffer(&mut graph)
            .map_err(|e| engine_error(&format!("{}: serialising", path.display()), e))?;
        let header = serde_json::to_vec(&ApproxHeader {
            format: APPROX_FORMAT.into(),
            fingerprint: self.fingerprint.clone(),
            engine: format!("usearch {}", usearch::version()),
            dim: self.dim,
            len: self.len,
            params: self.params,
            graph_bytes: graph.len(),
            graph_sha256: sha256_hex(&graph),
        })
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let mut bytes = Vec::with_capacity(16 + header.len() + graph.len());
        bytes.extend_from_slice(APPROX_MAGIC);
        bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&graph);
        taper_train::fs::atomic_write(path, &bytes)?;
        Ok(())
    }

    /// Reads an index written by [`ApproxIndex::save`], refusing one whose
    /// fingerprint (the model's, and the corpus's where the caller adds it) is
    /// not `fingerprint`. The graph's length and SHA-256 are checked before
    /// USearch parses it, because its loader trusts the bytes it is given (a
    /// damaged graph can make it read out of bounds): that catches truncated
    /// and corrupted files, not one crafted with a matching checksum, so load
    /// only index files written by a process you trust.
    ///
    /// # Errors
    /// [`Error::ModelFile`] naming the file: unreadable, not an approximate
    /// index, of another model, truncated or corrupt.
    pub fn load(path: &Path, fingerprint: &str) -> Result<Self> {
        let bad = |msg: String| Error::ModelFile {
            path: path.to_path_buf(),
            msg,
        };
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let rest = bytes
            .strip_prefix(APPROX_MAGIC)
            .ok_or_else(|| bad("not an approximate index file (no HNSW header)".into()))?;
        let header_len = rest
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()) as usize)
            .ok_or_else(|| bad("truncated: the header is cut short".into()))?;
        let header_end = header_len
            .checked_add(8)
            .filter(|&end| end <= rest.len())
            .ok_or_else(|| bad("truncated: the header is cut short".into()))?;
        let header: ApproxHeader = serde_json::from_slice(&rest[8..header_end])
            .map_err(|e| bad(format!("not an approximate index file: {e}")))?;
        if header.format != APPROX_FORMAT {
            return Err(bad(format!(
                "format {}, expected {APPROX_FORMAT}",
                header.format
            )));
        }
        if header.fingerprint != fingerprint {
            return Err(bad(another_model(&header.fingerprint, fingerprint)));
        }
        let graph = &rest[header_end..];
        if graph.len() != header.graph_bytes {
            return Err(bad(format!(
                "truncated or padded: {} bytes of graph where the header says {}",
                graph.len(),
                header.graph_bytes
            )));
        }
        if sha256_hex(graph) != header.graph_sha256 {
            return Err(bad("corrupt: the graph's SHA-256 does not match".into()));
        }
        header.params.check().map_err(|e| bad(e.to_string()))?;
        let index =
            Self::empty_graph(header.dim, &header.params).map_err(|e| bad(e.to_string()))?;
        index
            .load_from_buffer(graph)
            .map_err(|e| bad(format!("graph not readable: {e}")))?;
        if index.size() != header.len || index.dimensions() != header.dim {
            return Err(bad(format!(
                "graph of {} vectors of width {} where the header says {} of {}",
                index.size(),
                index.dimensions(),
                header.len,
                header.dim
            )));
        }
        let slots = Slots::new();
        index
            .reserve_capacity_and_threads(header.len, slots.total)
            .map_err(|e| bad(format!("reserving memory: {e}")))?;
        index.change_expansion_search(header.params.ef_search);
        Ok(Self {
            graph: index,
            dim: header.dim,
            len: header.len,
            params: header.params,
            fingerprint: header.fingerprint,
            slots,
        })
    }
}

/// An exact or an approximate index behind one set of calls, for a caller
/// that picks the kind at run time (a command-line flag).
pub enum SearchIndex {
    /// Every vector scored: [`ExactIndex`].
    Exact(ExactIndex),
    /// An HNSW graph: [`ApproxIndex`].
    Approximate(ApproxIndex),
}

impl SearchIndex {
    /// The index saved at `path` when it was made by `fingerprint`, else one
    /// built from `embed(why)` `(N, dim)` and saved there (its folder
    /// created), `why` saying why the saved one could not be used (missing,
    /// another model or corpus, damaged): approximate with `hnsw`, exact
    /// without.
    ///
    /// # Errors
    /// Those of `embed`, of building, a file that cannot be written, and a file
    /// at `path` that is not an index ([`Error::ModelFile`]: it is not replaced).
    pub fn load_or_build(
        path: &Path,
        fingerprint: &str,
        hnsw: Option<HnswParams>,
        device: &Device,
        embed: impl FnOnce(&Error) -> Result<Tensor>,
    ) -> Result<Self> {
        let loaded = match hnsw {
            Some(_) => ApproxIndex::load(path, fingerprint).map(Self::Approximate),
            None => ExactIndex::load(path, fingerprint, device).map(Self::Exact),
        };
        let why = match loaded {
            Ok(index) => return Ok(index),
            Err(e) => e,
        };
        // Rebuilding replaces the file: only one Taper wrote (a stale or damaged
        // index), never a corpus or anything else given as the index's path.
        if let Some(head) = taper_train::fs::read_head(path, 1 << 16) {
            if !looks_like_an_index(&head) {
                return Err(Error::ModelFile {
                    path: path.to_path_buf(),
                    msg: "exists and is not a search index Taper wrote, so it is not replaced: give the index another path".into(),
                });
            }
        }
        let vectors = embed(&why)?;
        let index = match hnsw {
            Some(p) => Self::Approximate(ApproxIndex::new(&vectors, fingerprint, p)?),
            None => Self::Exact(ExactIndex::new(&vectors, fingerprint)?),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        index.save(path)?;
        Ok(index)
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        match self {
            Self::Exact(i) => i.len(),
            Self::Approximate(i) => i.len(),
        }
    }

    /// True when the index holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// See [`ExactIndex::search`] and [`ApproxIndex::search`].
    ///
    /// # Errors
    /// Queries of another width.
    pub fn search(
        &self,
        queries: &Tensor,
        k: usize,
        exclude: Option<&[u32]>,
    ) -> Result<Vec<Vec<Hit>>> {
        match self {
            Self::Exact(i) => i.search(queries, k, exclude),
            Self::Approximate(i) => i.search(queries, k, exclude),
        }
    }

    /// See [`ExactIndex::save`] and [`ApproxIndex::save`].
    ///
    /// # Errors
    /// A file that cannot be written, naming it.
    pub fn save(&self, path: &Path) -> Result<()> {
        match self {
            Self::Exact(i) => i.save(path),
            Self::Approximate(i) => i.save(path),
        }
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
    Ok(hex(&h.finalize()[..16]))
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
    /// Writes the run report's retrieval section (`RUN/report/retrieval.json`,
    /// drawn by `taper_train::report`): recall@1, recall@10 and MRR@10 of each
    /// named model (`scores`), then up to `examples` of the queries `ranked` (as
    /// [`ParaphraseTask::rank_by_embeddings`] gives them) with their top 3 hits,
    /// each hit marked when it is one of the query's paraphrases.
    ///
    /// # Errors
    /// The section cannot be written.
    pub fn report_section(
        &self,
        run_dir: &Path,
        scores: &[(&str, RetrievalScores)],
        ranked: &[Vec<Hit>],
        examples: usize,
    ) -> Result<std::path::PathBuf> {
        use taper_train::report::{Block, Section};
        let rows = scores
            .iter()
            .map(|(name, s)| {
                vec![
                    name.to_string(),
                    format!("{:.4}", s.recall_at_1),
                    format!("{:.4}", s.recall_at_10),
                    format!("{:.4}", s.mrr_at_10),
                    s.queries.to_string(),
                ]
            })
            .collect();
        let hits = ranked
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.is_empty())
            .take(examples)
            .map(|(q, r)| {
                let shown: Vec<String> = r
                    .iter()
                    .take(3)
                    .map(|&(row, score)| {
                        let mark = if self.relevant[q].contains(&row) {
                            " ✓"
                        } else {
                            ""
                        };
                        format!("{} ({score:.3}){mark}", self.corpus[row as usize])
                    })
                    .collect();
                vec![
                    self.corpus[self.queries[q] as usize].clone(),
                    shown.join(" | "),
                ]
            })
            .collect();
        let section = Section::new("Paraphrase retrieval (test groups)", 20)
            .with(Block::Table {
                header: ["model", "recall@1", "recall@10", "MRR@10", "queries"]
                    .map(String::from)
                    .to_vec(),
                rows,
            })
            .with(Block::Table {
                header: vec!["query".into(), "top 3 (cosine; ✓ a paraphrase)".into()],
                rows: hits,
            });
        Ok(section.save(run_dir, "retrieval")?)
    }

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
