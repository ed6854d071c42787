//! Sentence embeddings as sentence-transformers computes them: a BERT encoder,
//! the model's own `tokenizer.json` (truncation at `max_seq_length`, padding
//! per batch), pooling as `1_Pooling/config.json` says, and L2 normalisation
//! when `modules.json` lists a `Normalize` module. Texts are stripped of
//! surrounding white space first, as sentence-transformers does.

use crate::bert::{l2_normalize, BertEncoder, Pooling};
use crate::tokenizer::{Padding, Tokenizer};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use taper_nn::Mode;

/// Batches [`SentenceEncoder::embed`] cuts a short input into (see there).
const SPLIT_INTO: usize = 4;
/// The fewest texts in a batch made by that cut.
const SPLIT_MIN: usize = 8;
/// A pretrained sentence encoder loaded from a sentence-transformers folder
/// (`config.json`, `model.safetensors`, `tokenizer.json`, `modules.json`,
/// `1_Pooling/config.json`, `sentence_bert_config.json`).
pub struct SentenceEncoder {
    encoder: BertEncoder,
    /// The same weights (shared storage, so fine-tuning's updates show) as
    /// tensors that record no graph: [`SentenceEncoder::embed`] runs on it, and
    /// each activation is freed as soon as the next layer has read it.
    inference: BertEncoder,
    varmap: VarMap,
    tokenizer: Tokenizer,
    pooling: Pooling,
    normalize: bool,
    max_seq_length: usize,
    device: Device,
    dir: PathBuf,
    weights: PathBuf,
}

fn json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::ModelFile {
        path: path.to_path_buf(),
        msg: format!("not JSON: {e}"),
    })
}

/// The sentence encoder Taper's examples use when no model folder is given.
pub const DEFAULT_MODEL: &str = "all-MiniLM-L6-v2";

impl SentenceEncoder {
    /// The model folder to load: `given` (a `--model DIR` flag) when there is
    /// one, else [`DEFAULT_MODEL`] under the model root (`$TAPER_MODELS`,
    /// `../shared/models`, `./models`: [`taper_train::data::root::resolve_model_root`]).
    pub fn model_dir(given: Option<&Path>) -> std::path::PathBuf {
        given.map(Path::to_path_buf).unwrap_or_else(|| {
            taper_train::data::root::resolve_model_root(None).join(DEFAULT_MODEL)
        })
    }

    /// The model in the folder `dir`, on `device`.
    ///
    /// # Errors
    /// A missing or malformed file, a config of another architecture, weights
    /// that do not fit the config, or a tokenizer whose ids reach past the
    /// embedding matrix: each naming the file.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        Self::load_with_weights(dir, &dir.join("model.safetensors"), device)
    }

    /// A model fine-tuned by the `Trainer` (see [`crate::finetune`]): the
    /// folder files copied into the run and its kept checkpoint's weights.
    ///
    /// # Errors
    /// As [`SentenceEncoder::load`]; a run of another model family, or one
    /// without a checkpoint.
    pub fn load_run(run: &Path, device: &Device) -> Result<Self> {
        taper_train::card::ModelCard::load(run, crate::finetune::FAMILY)?;
        let ck = taper_train::checkpoint::kept(run)?;
        Self::load_with_weights(run, &ck.weights_path(), device)
    }

    fn load_with_weights(dir: &Path, weights: &Path, device: &Device) -> Result<Self> {
        if !dir.join("config.json").is_file() {
            return Err(Error::ModelFile {
                path: dir.join("config.json"),
                msg: "not found: a model folder holds config.json, model.safetensors and tokenizer.json (`make models`)".into(),
            });
        }
        let varmap = VarMap::new();
        let cfg = crate::bert::BertConfig::load(&dir.join("config.json"))?;
        let vb = taper_nn::init::seeded_var_builder(&varmap, 0, candle_core::DType::F32, device);
        let encoder = BertEncoder::new(&cfg, vb)?;
        crate::bert::load_hf_weights(&varmap, weights, device)?;
        // Outputs of the variables hold their whole forward graph (every
        // activation of a batch: 9.6 GB for 128 sentences of 256 tokens) until
        // dropped; detached copies of the same storage record none.
        let detached: std::collections::HashMap<String, candle_core::Tensor> = varmap
            .data()
            .lock()
            .map_err(|_| Error::Config("the encoder's variables are poisoned".into()))?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect();
        let inference = BertEncoder::new(
            &cfg,
            candle_nn::VarBuilder::from_tensors(detached, candle_core::DType::F32, device),
        )?;
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::load(&tok_path)?;
        let vocab = encoder.config().vocab_size;
        if tokenizer.vocab_size() > vocab {
            return Err(Error::ModelFile {
                path: tok_path,
                msg: format!(
                    "{} token ids, but the model's embedding matrix has {vocab} rows",
                    tokenizer.vocab_size()
                ),
            });
        }
        let st = dir.join("sentence_bert_config.json");
        let max_seq_length = if st.is_file() {
            json(&st)?["max_seq_length"].as_u64().map(|v| v as usize)
        } else {
            None
        }
        .unwrap_or(encoder.config().max_position_embeddings)
        .min(encoder.config().max_position_embeddings);
        tokenizer.set_truncation(Some(max_seq_length))?;
        tokenizer.set_padding(Padding::Longest);
        let pool = dir.join("1_Pooling").join("config.json");
        let pooling = if pool.is_file() {
            Pooling::load(&pool)?
        } else {
            Pooling::Mean
        };
        let modules = dir.join("modules.json");
        let normalize = modules.is_file()
            && json(&modules)?.as_array().is_some_and(|m| {
                m.iter()
                    .any(|x| x["type"].as_str().is_some_and(|t| t.ends_with("Normalize")))
            });
        Ok(Self {
            encoder,
            inference,
            varmap,
            tokenizer,
            pooling,
            normalize,
            max_seq_length,
            device: device.clone(),
            dir: dir.to_path_buf(),
            weights: weights.to_path_buf(),
        })
    }

    /// The encoder.
    pub fn encoder(&self) -> &BertEncoder {
        &self.encoder
    }

    /// The encoder's variables (fine-tuning trains them).
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// The fingerprint of its weights and config (what an index built with it
    /// records): see [`crate::search::fingerprint`].
    ///
    /// # Errors
    /// A file that can no longer be read.
    pub fn fingerprint(&self) -> Result<String> {
        crate::search::fingerprint(&[&self.dir.join("config.json"), &self.weights])
    }

    /// The folder it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Longest input in tokens; longer texts are cut (documented truncation).
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Width of an embedding.
    pub fn dim(&self) -> usize {
        self.encoder.config().hidden_size
    }

    /// Embeddings `(N, dim)` of one batch of texts, in `mode` (training draws
    /// dropout): the path fine-tuning differentiates through.
    ///
    /// # Errors
    /// A tokenizer or tensor failure.
    pub fn embed_batch(&self, texts: &[&str], mode: &Mode) -> Result<Tensor> {
        self.embed_batch_on(&self.encoder, texts, mode)
    }

    fn embed_batch_on(&self, encoder: &BertEncoder, texts: &[&str], mode: &Mode) -> Result<Tensor> {
        let stripped: Vec<&str> = texts.iter().map(|t| t.trim()).collect();
        let b = self.tokenizer.encode_batch(&stripped, true, &self.device)?;
        let h = encoder.forward_t(&b.input_ids, Some(&b.type_ids), &b.attention_mask, mode)?;
        let v = self.pooling.apply(&h, &b.attention_mask)?;
        if self.normalize {
            l2_normalize(&v)
        } else {
            Ok(v)
        }
    }

    /// Embeddings `(N, dim)` of `texts` in their order, `batch_size` at a time,
    /// batches formed of texts of similar length (sorted by token count, so
    /// little padding is computed). An input of fewer than four batches is cut
    /// into up to four smaller ones (of at least 8 texts), so that they run side
    /// by side on a CPU's cores.
    ///
    /// # Errors
    /// No batch size, or a tokenizer or tensor failure.
    pub fn embed(&self, texts: &[&str], batch_size: usize) -> Result<Tensor> {
        if batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        if texts.is_empty() {
            return Ok(Tensor::zeros(
                (0, self.dim()),
                candle_core::DType::F32,
                &self.device,
            )?);
        }
        let lens: Vec<usize> = texts
            .par_iter()
            .map(|t| self.tokenizer.encode(t.trim(), true).map(|v| v.len()))
            .collect::<Result<_>>()?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(lens[i]));
        // Fewer batches than a machine has cores would leave cores idle (one
        // batch's small products share threads badly): cut a short input into up
        // to SPLIT_INTO batches of at least SPLIT_MIN texts. The cut depends on the
        // input alone, never on the thread count, so the embeddings do not either.
        let per = {
            let batches = texts.len().div_ceil(batch_size);
            let want = SPLIT_INTO.min(texts.len() / SPLIT_MIN).max(1);
            if batches < want {
                texts.len().div_ceil(want)
            } else {
                batch_size
            }
        };
        let chunks: Vec<&[usize]> = order.chunks(per).collect();
        let embed_chunk = |chunk: &[usize]| -> Result<Tensor> {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            // On the graph-free copy of the weights (see `inference`).
            let run = || self.embed_batch_on(&self.inference, &batch, &Mode::eval());
            if chunks.len() > 1 {
                // Several batches: whichever way they are spread over threads,
                // each one's products run whole (fewer repacks), so embeddings do
                // not depend on the thread count.
                taper_nn::kernels::blas::whole_products(run)
            } else {
                run()
            }
        };
        if !self.device.is_cpu() {
            let parts = chunks
                .iter()
                .map(|c| embed_chunk(c))
                .collect::<Result<Vec<_>>>()?;
            let sorted = Tensor::cat(&parts, 0)?;
            // Back to the callers' order: row `order[k]` is sorted row `k`.
            let mut inverse = vec![0u32; texts.len()];
            for (k, &i) in order.iter().enumerate() {
                inverse[i] = k as u32;
            }
            let idx = Tensor::from_vec(inverse, texts.len(), &self.device)?;
            return Ok(sorted.index_select(&idx, 0)?);
        }
        // On the CPU, whole batches run side by side, one per thread: inside a
        // batch of short sentences the operations are too small to share across
        // threads (0.82x sentence-transformers' throughput that way on 2 threads,
        // 1.3x with a batch per thread). Each batch's rows go straight to their
        // place in the output, so the corpus's embeddings are held once.
        let dim = self.dim();
        let out = std::sync::Mutex::new(vec![0f32; texts.len() * dim]);
        chunks.par_iter().try_for_each(|chunk| -> Result<()> {
            let rows = embed_chunk(chunk)?
                .flatten_all()?
                .to_dtype(candle_core::DType::F32)?
                .to_vec1::<f32>()?;
            let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
            for (row, &i) in rows.chunks_exact(dim).zip(chunk.iter()) {
                out[i * dim..(i + 1) * dim].copy_from_slice(row);
            }
            Ok(())
        })?;
        let out = out.into_inner().unwrap_or_else(|e| e.into_inner());
        Ok(Tensor::from_vec(out, (texts.len(), dim), &self.device)?)
    }
}
