//! Taper's side of the sentence-encoder rows of `make bench` (`bench/sentence_peer.py`
//! is sentence-transformers' side, on the same sentences, batch size and threads):
//! encoding throughput of a corpus's distinct sentences, single-sentence latency,
//! peak resident memory after encoding, and the latency of one exact top-10 query
//! against the whole corpus's embeddings.
//!
//! ```text
//! cargo run --release --example bench_encoder -- --threads 2 --batch-size 32
//! ```
//!
//! The corpus is the first column of `translation/eng-fra.txt` (98,659 distinct
//! English sentences, in first-seen order; `--corpus FILE` for another
//! tab-separated or one-sentence-a-line file, `--limit N` for the first N).

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use clap::Parser;
use std::path::PathBuf;
use std::time::Instant;
use taper::nlp::search::ExactIndex;
use taper::nlp::SentenceEncoder;
use taper::train::cli::ExampleArgs;
use taper::train::data::root::{require_dir, require_file};

#[global_allocator]
static GLOBAL: taper::alloc::Allocator = taper::alloc::Allocator;

#[derive(Parser, Debug)]
#[command(about = "Sentence-encoder throughput, latency, memory and search speed")]
struct Args {
    /// Sentences: the first tab-separated column of each line, distinct.
    #[arg(long, value_name = "FILE")]
    corpus: Option<PathBuf>,
    /// Model folder (default: `SentenceEncoder::model_dir`).
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    #[command(flatten)]
    common: ExampleArgs,
    /// Encode the first N distinct sentences only.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Sentences encoded one at a time for the latency figure, and queries timed.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Only time `--sweep-batches` batches of sentences of exactly each of these
    /// token counts (special tokens included; at most the model's 256),
    /// comma-separated: how encoding cost grows with sequence length
    /// (`len{L}_ms_per_batch` keys: the time over the number of batches).
    #[arg(long, value_delimiter = ',')]
    len_sweep: Vec<usize>,
    /// Batches encoded per timing of `--len-sweep` (1: a single batch, as a
    /// batch of queries is).
    #[arg(long, default_value_t = 4)]
    sweep_batches: usize,
}

/// A sentence of `tokens` word pieces once [CLS] and [SEP] are added: "the"
/// is one piece in BERT's vocabulary, as in every uncased WordPiece vocabulary.
fn sentence_of(tokens: usize) -> String {
    vec!["the"; tokens.saturating_sub(2).max(1)].join(" ")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args = Args::parse();
    let c = &args.common;
    c.reject(
        "bench_encoder",
        &[
            "accumulate",
            "checkpoint-every",
            "valid-fraction",
            "epochs",
            "lr",
            "resume",
            "overwrite",
        ],
    )?;
    let device = c.device()?;
    let batch = c.batch_size.unwrap_or(32);
    if !args.len_sweep.is_empty() {
        let dir = SentenceEncoder::model_dir(args.model.as_deref());
        let encoder = SentenceEncoder::load(&dir, &device)?;
        let mut out = serde_json::Map::new();
        for &len in &args.len_sweep {
            let text = sentence_of(len);
            let k = args.sweep_batches.max(1);
            let batch_text: Vec<&str> = vec![text.as_str(); k * batch];
            encoder.embed(&batch_text, batch)?;
            let mut times = Vec::new();
            let t_all = Instant::now();
            while times.len() < 5 || (times.len() < 50 && t_all.elapsed().as_secs_f64() < 2.0) {
                let s = Instant::now();
                encoder.embed(&batch_text, batch)?;
                times.push(s.elapsed().as_secs_f64() * 1e3 / k as f64);
            }
            out.insert(format!("len{len}_ms_per_batch"), median(times).into());
        }
        out.insert("example".into(), "bench_encoder".into());
        out.insert("batch_size".into(), batch.into());
        out.insert("sweep_batches".into(), args.sweep_batches.into());
        out.insert("threads".into(), c.threads.into());
        println!("{}", serde_json::Value::Object(out));
        return Ok(());
    }
    let corpus = match &args.corpus {
        Some(p) => p.clone(),
        None => require_file(&require_dir(&c.data_root(), "translation")?, "eng-fra.txt")?,
    };
    let text = std::fs::read_to_string(&corpus)
        .with_context(|| format!("{}: cannot read the corpus (`make data`)", corpus.display()))?;
    let mut seen = std::collections::HashSet::new();
    let mut sentences: Vec<&str> = text
        .lines()
        .map(|l| l.split('\t').next().unwrap_or(""))
        .filter(|s| seen.insert(*s))
        .collect();
    sentences.truncate(args.limit.unwrap_or(usize::MAX));
    if sentences.len() < 2 || args.samples == 0 {
        bail!("{}: fewer than two sentences to encode", corpus.display());
    }
    let dir = SentenceEncoder::model_dir(args.model.as_deref());
    let encoder = SentenceEncoder::load(&dir, &device)?;
    encoder.embed(&sentences[..64.min(sentences.len())], batch)?;

    let start = Instant::now();
    let embeddings = encoder.embed(&sentences, batch)?;
    let encode_s = start.elapsed().as_secs_f64();
    let peak_mb = taper::train::record::memory_use().map(|m| m.peak * 1.048576);

    // Evenly spaced sentences, so short and long ones are both timed.
    let picks: Vec<usize> = (0..args.samples)
        .map(|i| i * sentences.len() / args.samples)
        .collect();
    let mut latency = Vec::new();
    for &i in &picks {
        let s = Instant::now();
        encoder.embed(&sentences[i..i + 1], 1)?;
        latency.push(s.elapsed().as_secs_f64() * 1e3);
    }

    let index = ExactIndex::new(&embeddings, "bench")?;
    let mut search = Vec::new();
    for &i in &picks {
        let q: Tensor = embeddings.narrow(0, i, 1)?;
        let s = Instant::now();
        let hits = index.search(&q, 10, None)?;
        search.push(s.elapsed().as_secs_f64() * 1e3);
        if hits[0].first().map(|h| h.0 as usize) != Some(i) {
            eprintln!("note: sentence {i} is not its own nearest neighbour (a duplicate vector)");
        }
    }
    let figures = serde_json::json!({
        "example": "bench_encoder",
        "model": dir.display().to_string(),
        "sentences": sentences.len(),
        "batch_size": batch,
        "threads": c.threads,
        "gemm": taper::nn::kernels::blas::backend(),
        "encode_seconds": encode_s,
        "encode_sentences_per_s": sentences.len() as f64 / encode_s,
        "latency_ms_p50": median(latency),
        "encode_peak_rss_mb": peak_mb,
        "search_vectors": index.len(),
        "search_ms_p50": median(search),
    });
    println!("{figures}");
    Ok(())
}
