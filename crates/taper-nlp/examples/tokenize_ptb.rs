//! Tokenizer training time and batch-encoding throughput on Penn Treebank.
//!
//! `cargo run --release -p taper-nlp --example tokenize_ptb [-- DATA_ROOT]`: trains
//! byte-level BPE, WordPiece and word-level tokenizers on `text/ptb.train.txt`,
//! then encodes the whole file in padded batches into candle tensors. The last
//! line is one JSON object.

use candle_core::Device;
use std::path::PathBuf;
use std::time::Instant;
use taper_nlp::{Tokenizer, TokenizerConfig, TokenizerKind};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| taper_train::data::root::resolve_data_root(None));
    let path = taper_train::data::root::require_file(&root.join("text"), "ptb.train.txt")?;
    let text = std::fs::read_to_string(&path)?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let words: usize = lines.iter().map(|l| l.split_whitespace().count()).sum();
    let mut results = serde_json::Map::new();
    for (name, kind, vocab) in [
        ("bpe", TokenizerKind::Bpe, 8000),
        ("wordpiece", TokenizerKind::WordPiece, 8000),
        ("wordlevel", TokenizerKind::WordLevel, 10_000),
    ] {
        let cfg = TokenizerConfig {
            kind,
            vocab_size: vocab,
            ..Default::default()
        };
        let t0 = Instant::now();
        let tok = Tokenizer::train(&cfg, &[&path])?;
        let train_s = t0.elapsed().as_secs_f64();
        let mut per_batch = serde_json::Map::new();
        for batch in [1usize, 64, 256] {
            let t0 = Instant::now();
            let mut tokens = 0usize;
            let mut padded = 0usize;
            for chunk in lines.chunks(batch) {
                let b = tok.encode_batch(chunk, false, &Device::Cpu)?;
                tokens += b.lengths.iter().sum::<usize>();
                padded += b.input_ids.elem_count();
            }
            let s = t0.elapsed().as_secs_f64();
            println!(
                "{name} (vocab {}): batches of {batch}: {tokens} tokens ({:.2} a word, {padded} with padding) in {s:.2} s = {:.0} tokens/s",
                tok.vocab_size(),
                tokens as f64 / words as f64,
                tokens as f64 / s
            );
            per_batch.insert(
                format!("batch_{batch}_tokens_per_second"),
                serde_json::json!(tokens as f64 / s),
            );
        }
        println!(
            "{name}: trained on {} ({words} words) in {train_s:.2} s",
            path.display()
        );
        per_batch.insert("train_seconds".into(), serde_json::json!(train_s));
        per_batch.insert("vocab_size".into(), serde_json::json!(tok.vocab_size()));
        results.insert(name.into(), serde_json::Value::Object(per_batch));
    }
    results.insert("corpus_words".into(), serde_json::json!(words));
    results.insert(
        "threads".into(),
        serde_json::json!(rayon::current_num_threads()),
    );
    println!("{}", serde_json::Value::Object(results));
    Ok(())
}
