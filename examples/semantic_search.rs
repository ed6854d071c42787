//! Semantic search with a pretrained sentence encoder (all-MiniLM-L6-v2 by
//! default): embed a corpus (one document per line), index it, and answer
//! queries; or write embeddings; or evaluate paraphrase retrieval on a parallel
//! corpus beside BM25 and averaged word2vec vectors.
//!
//! ```text
//! cargo run --release --example semantic_search -- --corpus docs.txt --query "how do I reset my password"
//! cargo run --release --example semantic_search -- --corpus docs.txt --interactive
//! cargo run --release --example semantic_search -- --corpus big.txt --approximate --interactive
//! cargo run --release --example semantic_search -- --embed docs.txt --out docs.jsonl
//! cargo run --release --example semantic_search -- --eval-paraphrases DATA/translation/eng-fra.txt
//! ```
//!
//! Longer than 200 lines: five modes (search, interactive, embed, evaluate,
//! fine-tune), each a few lines of the crate's `search` and `finetune` APIs.
//!
//! The index is kept in the run directory (`--index`, default
//! `runs/semantic_search/<corpus name>.index`, or `.hnsw` with `--approximate`)
//! and reused while the model and the corpus are the same.

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;
use taper::nlp::finetune::{self, MultipleNegativesRanking, PairBatcher, TextPairs};
use taper::nlp::search::{fingerprint, Hit, HnswParams, ParaphraseTask, SearchIndex};
use taper::nlp::SentenceEncoder;
use taper::train::cli::ExampleArgs;
use taper::train::data::{DataLoader, LoaderConfig};
use taper::train::report::RunInfo;
use taper::train::Trainer;

#[global_allocator]
static GLOBAL: taper::alloc::Allocator = taper::alloc::Allocator;

#[derive(Parser, Debug)]
#[command(about = "Semantic search, embeddings and paraphrase retrieval with a pretrained encoder")]
struct Args {
    #[command(flatten)]
    common: ExampleArgs,
    /// Model folder (default: all-MiniLM-L6-v2 under $TAPER_MODELS, ../shared/models or ./models).
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Corpus to search, one document per line.
    #[arg(long, value_name = "FILE")]
    corpus: Option<PathBuf>,
    /// Index file, built when missing or made from another model or corpus; a file
    /// that is not an index is never replaced [default:
    /// runs/semantic_search/<corpus name>.index, or .hnsw with --approximate].
    #[arg(long, value_name = "FILE")]
    index: Option<PathBuf>,
    /// Search an approximate (HNSW) index instead of the exact one: for large
    /// corpora, recall@10 about 0.98 of exact at a fraction of the time per query.
    #[arg(long)]
    approximate: bool,
    /// Answer this query.
    #[arg(long)]
    query: Option<String>,
    /// Answer queries typed on standard input, one a line.
    #[arg(long)]
    interactive: bool,
    /// Hits per query.
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// Write the embedding of each line of FILE to --out (JSON lines).
    #[arg(long, value_name = "FILE")]
    embed: Option<PathBuf>,
    /// Paraphrase retrieval on a `source TAB target` file: recall@1, @10 and MRR@10.
    #[arg(long, value_name = "FILE")]
    eval_paraphrases: Option<PathBuf>,
    /// With --eval-paraphrases: evaluate the first N queries only.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// With --eval-paraphrases: fine-tune on the paraphrase pairs of 80 % of the
    /// groups (multiple-negatives ranking loss) and compare recall on the other 20 %.
    #[arg(long)]
    fine_tune: bool,
}

fn model_dir(args: &Args) -> PathBuf {
    SentenceEncoder::model_dir(args.model.as_deref())
}

fn lines(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let docs: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    if docs.is_empty() {
        bail!("{}: no document (one a line)", path.display());
    }
    Ok(docs)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.k == 0 {
        anyhow::bail!("--k must be at least 1 (hits per query)");
    }
    if args.limit == Some(0) {
        anyhow::bail!("--limit must be at least 1 (queries to evaluate)");
    }
    if args.query.as_deref().is_some_and(|q| q.trim().is_empty()) {
        anyhow::bail!("--query is empty: give the text to search for");
    }
    // A flag of one mode given with another is refused, not ignored.
    let search = [
        ("--query", args.query.is_some()),
        ("--corpus", args.corpus.is_some()),
        ("--interactive", args.interactive),
        ("--index", args.index.is_some()),
        ("--approximate", args.approximate),
    ];
    let mode = match (&args.embed, &args.eval_paraphrases) {
        (Some(_), Some(_)) => anyhow::bail!("give one of --embed and --eval-paraphrases"),
        (Some(_), None) => Some("--embed"),
        (None, Some(_)) => Some("--eval-paraphrases"),
        (None, None) => None,
    };
    if let Some(mode) = mode {
        if let Some((flag, _)) = search.iter().find(|(_, given)| *given) {
            anyhow::bail!("semantic_search {mode} does not use {flag}");
        }
    }
    if mode != Some("--eval-paraphrases") {
        if let Some(flag) = [
            ("--fine-tune", args.fine_tune),
            ("--limit", args.limit.is_some()),
        ]
        .iter()
        .find_map(|(f, given)| given.then_some(f))
        {
            anyhow::bail!("{flag} goes with --eval-paraphrases");
        }
    }
    let c = &args.common;
    if !args.fine_tune {
        c.reject(
            "semantic_search (without --fine-tune)",
            ExampleArgs::TRAINING
                .iter()
                .filter(|f| **f != "batch-size")
                .copied()
                .collect::<Vec<_>>()
                .as_slice(),
        )?;
        c.reject("semantic_search (without --fine-tune)", &["resume"])?;
    }
    let device = c.device()?;
    let model = SentenceEncoder::load(&model_dir(&args), &device)?;
    let batch = c.batch_size.unwrap_or(32);
    if let Some(file) = &args.embed {
        let out = c.out.clone().context("--embed needs --out OUT.jsonl")?;
        // Replaced only if it is an earlier embeddings file (or empty).
        if out.exists() {
            let ours = std::fs::read_to_string(&out).is_ok_and(|text| {
                text.lines().next().is_none_or(|first| {
                    serde_json::from_str::<serde_json::Value>(first)
                        .is_ok_and(|v| v.get("embedding").is_some())
                })
            });
            if !ours {
                anyhow::bail!(
                    "--out {} exists and is not an embeddings file, so it is not replaced",
                    out.display()
                );
            }
        }
        let docs = lines(file)?;
        let t0 = Instant::now();
        let emb: Vec<Vec<f32>> = model
            .embed(&docs.iter().map(String::as_str).collect::<Vec<_>>(), batch)?
            .to_vec2()?;
        let secs = t0.elapsed().as_secs_f64();
        let mut text = String::new();
        for (d, e) in docs.iter().zip(&emb) {
            text.push_str(&serde_json::json!({"text": d, "embedding": e}).to_string());
            text.push('\n');
        }
        taper::train::fs::atomic_write(&out, text.as_bytes())?;
        println!(
            "{}",
            serde_json::json!({"example": "semantic_search", "embedded": docs.len(), "seconds": secs,
            "sentences_per_second": docs.len() as f64 / secs, "out": out})
        );
        return Ok(());
    }
    if let Some(pairs) = &args.eval_paraphrases {
        if args.fine_tune {
            return fine_tune(&args, model, pairs, batch);
        }
        return evaluate(&args, &model, pairs, batch);
    }
    let corpus_path = args
        .corpus
        .clone()
        .context("--corpus FILE (one document per line) is needed to search")?;
    let docs = lines(&corpus_path)?;
    let fp = format!("{}:{}", model.fingerprint()?, fingerprint(&[&corpus_path])?);
    let index_path = args.index.clone().unwrap_or_else(|| {
        let name = corpus_path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let ext = if args.approximate { "hnsw" } else { "index" };
        // A cache shared by searches, beside the runs (not a run of its own).
        let runs = c.out.as_deref().and_then(std::path::Path::parent);
        runs.unwrap_or(std::path::Path::new("runs"))
            .join("semantic_search")
            .join(format!("{name}.{ext}"))
    });
    let hnsw = args.approximate.then(HnswParams::default);
    let index = SearchIndex::load_or_build(&index_path, &fp, hnsw, &device, |why| {
        match index_path.exists() {
            true => eprintln!("building the index ({}; {why})", index_path.display()),
            false => eprintln!(
                "building the index {} (first search of this corpus)",
                index_path.display()
            ),
        }
        let t0 = Instant::now();
        let emb = model.embed(&docs.iter().map(String::as_str).collect::<Vec<_>>(), batch)?;
        eprintln!(
            "{} documents embedded in {:.1} s",
            docs.len(),
            t0.elapsed().as_secs_f64()
        );
        Ok(emb)
    })?;
    let answer = |q: &str| -> Result<serde_json::Value> {
        let hits = index.search(&model.embed(&[q], 1)?, args.k, None)?;
        for (rank, (i, s)) in hits[0].iter().enumerate() {
            println!("{:>2}. {s:.4}  {}", rank + 1, docs[*i as usize]);
        }
        Ok(serde_json::json!(hits[0]
            .iter()
            .map(|(i, s)| serde_json::json!({"line": i + 1, "score": s, "text": docs[*i as usize]}))
            .collect::<Vec<_>>()))
    };
    let mut results = Vec::new();
    if let Some(q) = &args.query {
        results.push(serde_json::json!({"query": q, "hits": answer(q)?}));
    }
    if args.interactive {
        eprint!("query> ");
        std::io::stderr().flush()?;
        for line in std::io::stdin().lock().lines() {
            let line = line?;
            if !line.trim().is_empty() {
                results.push(serde_json::json!({"query": line, "hits": answer(&line)?}));
            }
            eprint!("query> ");
        }
    }
    println!(
        "{}",
        serde_json::json!({"example": "semantic_search", "documents": docs.len(), "index": index_path,
        "approximate": args.approximate, "results": results})
    );
    Ok(())
}

/// Paraphrase retrieval for the pretrained model, BM25 and averaged word2vec.
fn evaluate(args: &Args, model: &SentenceEncoder, pairs: &Path, batch: usize) -> Result<()> {
    let task = ParaphraseTask::from_pairs(pairs)?;
    let n = args
        .limit
        .unwrap_or(task.queries.len())
        .min(task.queries.len());
    let which: Vec<usize> = (0..n).collect();
    let docs: Vec<&str> = task.corpus.iter().map(String::as_str).collect();
    eprintln!(
        "{} sentences, {} groups, {n} queries",
        docs.len(),
        task.groups()
    );
    let mut report = serde_json::Map::new();
    let mut record = |name: &str, ranked: Vec<Vec<Hit>>, t0: Instant| {
        let (s, secs) = (
            task.score(&ranked, Some(&which)),
            t0.elapsed().as_secs_f64(),
        );
        let (r1, r10, mrr) = (s.recall_at_1, s.recall_at_10, s.mrr_at_10);
        println!("{name:<18} recall@1 {r1:.4}  recall@10 {r10:.4}  MRR@10 {mrr:.4}  ({secs:.0} s)");
        report.insert(
            name.into(),
            serde_json::json!({"scores": s, "seconds": secs}),
        );
    };
    let t0 = Instant::now();
    record("bm25", task.rank_by_bm25(&which, 10), t0);
    let t0 = Instant::now();
    let w2v = task.word2vec_embeddings(args.common.seed, args.common.threads)?;
    record(
        "word2vec average",
        task.rank_by_embeddings(&w2v, &which, 10)?,
        t0,
    );
    let t0 = Instant::now();
    let emb = model.embed(&docs, batch)?;
    let embed_secs = t0.elapsed().as_secs_f64();
    record(
        "sentence encoder",
        task.rank_by_embeddings(&emb, &which, 10)?,
        t0,
    );
    println!(
        "{}",
        serde_json::json!({"example": "semantic_search", "pairs": pairs, "sentences": docs.len(),
        "groups": task.groups(), "queries": n, "model": model.dir(), "embed_seconds": embed_secs,
        "sentences_per_second": docs.len() as f64 / embed_secs, "methods": report})
    );
    Ok(())
}

/// Fine-tunes on the paraphrase pairs of the training groups and compares the
/// pretrained and the fine-tuned model on the queries of the held-out groups
/// (split by their shared translation, so no test pair is trained on).
fn fine_tune(args: &Args, model: SentenceEncoder, pairs: &Path, batch: usize) -> Result<()> {
    let c = &args.common;
    let task = ParaphraseTask::from_pairs(pairs)?;
    let split = task.split_by_group(0.2, c.valid_fraction()?, c.seed)?;
    let (tp, vp, test) = (split.train_pairs, split.valid_pairs, split.test_queries);
    eprintln!(
        "{} training pairs, {} validation pairs, {} test queries",
        tp.len(),
        vp.len(),
        test.len()
    );
    let cfg = |b| LoaderConfig {
        drop_last: true,
        ..LoaderConfig::eval(b)
    };
    let vb = batch.min(vp.len()).max(2);
    let train = DataLoader::from_dataset(
        TextPairs(tp),
        PairBatcher,
        LoaderConfig {
            drop_last: true,
            ..LoaderConfig::train(batch, c.seed)
        },
    )?;
    let valid = DataLoader::from_dataset(TextPairs(vp), PairBatcher, cfg(vb))?;
    let run = c.run_dir("semantic_search-finetune")?;
    // A fine-tuning run holds the encoder's files (written before its first
    // checkpoint); another example's run must not get them.
    if c.resume.is_some() && !run.join("config.json").is_file() {
        anyhow::bail!(
            "{} is not a semantic_search fine-tuning run (no config.json): resume one of those",
            run.display()
        );
    }
    finetune::save_run(&model, &run)?;
    let (epochs, lr) = (c.epochs_or(1)?, c.lr.unwrap_or(2e-5));
    let mut opt = finetune::optimizers(&model, lr, epochs * train.num_batches());
    let mut mnrl = MultipleNegativesRanking { model, scale: 20.0 };
    let config = serde_json::json!({"example": "semantic_search", "fine_tune": true, "lr": lr, "epochs": epochs, "batch_size": batch});
    let report = Trainer::new(c.trainer_config("semantic_search-finetune", epochs, config)?).fit(
        &mut mnrl,
        &mut opt,
        &train,
        Some(&valid),
    )?;
    let device = c.device()?;
    let docs: Vec<&str> = task.corpus.iter().map(String::as_str).collect();
    let mut figures = serde_json::Map::new();
    let (mut scores, mut tuned_ranked) = (Vec::new(), Vec::new());
    for (name, m) in [
        (
            "pretrained",
            SentenceEncoder::load(&model_dir(args), &device)?,
        ),
        ("fine-tuned", SentenceEncoder::load_run(&run, &device)?),
    ] {
        let ranked = task.rank_by_embeddings(&m.embed(&docs, batch)?, &test, 10)?;
        let s = task.score(&ranked, Some(&test));
        scores.push((name, s));
        tuned_ranked = ranked;
        println!(
            "{name:<12} test groups: recall@1 {:.4}  recall@10 {:.4}  MRR@10 {:.4}",
            s.recall_at_1, s.recall_at_10, s.mrr_at_10
        );
        figures.insert(name.to_string(), serde_json::json!(s));
    }
    let json = serde_json::json!({"example": "semantic_search", "fine_tune": true, "run_dir": run,
        "epochs": report.history.len(), "train_seconds": report.seconds, "test_queries": test.len(), "test": figures});
    task.report_section(&run, &scores, &tuned_ranked, 5)?;
    let mut info = RunInfo::new(c.seed, &device);
    info.epochs = Some(report.history.len());
    info.batch_size = Some(batch);
    println!(
        "report: {}",
        taper::train::report::finish(&run, &json, Some(info))?.display()
    );
    println!("{json}");
    Ok(())
}
