//! Semantic search with a pretrained sentence encoder (all-MiniLM-L6-v2 by
//! default): embed a corpus (one document per line), index it, and answer
//! queries; or write embeddings; or evaluate paraphrase retrieval on a parallel
//! corpus beside BM25 and averaged word2vec vectors.
//!
//! ```text
//! cargo run --release --example semantic_search -- --corpus docs.txt --query "how do I reset my password"
//! cargo run --release --example semantic_search -- --corpus docs.txt --interactive
//! cargo run --release --example semantic_search -- --embed docs.txt --out docs.jsonl
//! cargo run --release --example semantic_search -- --eval-paraphrases DATA/translation/eng-fra.txt
//! ```
//!
//! The index is kept in the run directory (`--index`, default
//! `runs/semantic_search/<corpus name>.index`) and reused while the model and
//! the corpus are the same.

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;
use taper::nlp::search::{average_word_vectors, fingerprint, Bm25, ExactIndex, ParaphraseTask};
use taper::nlp::word2vec::{train_native, PreparedCorpus};
use taper::nlp::{Corpus, CorpusOptions, SentenceEncoder, Word2VecConfig};
use taper::train::cli::ExampleArgs;
use taper::train::data::root::resolve_model_root;

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
    /// Index file (built when missing or made from another model or corpus).
    #[arg(long, value_name = "FILE")]
    index: Option<PathBuf>,
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

fn lines(path: &std::path::Path) -> Result<Vec<String>> {
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
    let dir = args
        .model
        .clone()
        .unwrap_or_else(|| resolve_model_root(None).join("all-MiniLM-L6-v2"));
    let model = SentenceEncoder::load(&dir, &device)?;
    let batch = c.batch_size.unwrap_or(32);
    if let Some(file) = &args.embed {
        let out = c.out.clone().context("--embed needs --out OUT.jsonl")?;
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
        c.run_dir("semantic_search")
            .with_file_name("semantic_search")
            .join(format!("{name}.index"))
    });
    let index = match ExactIndex::load(&index_path, &fp, &device) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("building the index ({}; {})", index_path.display(), e);
            let t0 = Instant::now();
            let emb = model.embed(&docs.iter().map(String::as_str).collect::<Vec<_>>(), batch)?;
            eprintln!(
                "{} documents embedded in {:.1} s",
                docs.len(),
                t0.elapsed().as_secs_f64()
            );
            let i = ExactIndex::new(&emb, &fp)?;
            if let Some(p) = index_path.parent() {
                std::fs::create_dir_all(p)?;
            }
            i.save(&index_path)?;
            i
        }
    };
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
        serde_json::json!({"example": "semantic_search", "documents": docs.len(), "index": index_path, "results": results})
    );
    Ok(())
}

/// Paraphrase retrieval for the pretrained model, BM25 and averaged word2vec.
fn evaluate(args: &Args, model: &SentenceEncoder, pairs: &std::path::Path, batch: usize) -> Result<()> {
    let task = ParaphraseTask::from_pairs(pairs)?;
    let n = args
        .limit
        .unwrap_or(task.queries.len())
        .min(task.queries.len());
    let which: Vec<usize> = (0..n).collect();
    let qtext: Vec<&str> = task.queries[..n]
        .iter()
        .map(|&i| task.corpus[i as usize].as_str())
        .collect();
    let exclude = &task.queries[..n];
    let docs: Vec<&str> = task.corpus.iter().map(String::as_str).collect();
    eprintln!(
        "{} sentences, {} groups, {n} queries",
        docs.len(),
        task.groups()
    );
    let k = 10;
    let mut report = serde_json::Map::new();
    let mut record = |name: &str, ranked: Vec<Vec<(u32, f32)>>, secs: f64| {
        let mut full = vec![Vec::new(); task.queries.len()];
        full[..n].clone_from_slice(&ranked);
        let s = task.score(&full, Some(&which));
        println!(
            "{name:<22} recall@1 {:.4}  recall@10 {:.4}  MRR@10 {:.4}  ({secs:.0} s)",
            s.recall_at_1, s.recall_at_10, s.mrr_at_10
        );
        report.insert(
            name.to_string(),
            serde_json::json!({"scores": s, "seconds": secs}),
        );
    };
    let t0 = Instant::now();
    let bm25 = Bm25::new(&docs);
    record(
        "bm25",
        bm25.search(&qtext, k, Some(exclude)),
        t0.elapsed().as_secs_f64(),
    );

    let t0 = Instant::now();
    let text: String = docs.iter().map(|d| format!("{d}\n")).collect();
    let corpus = Corpus::from_text(
        "paraphrase corpus",
        text,
        &CorpusOptions {
            lowercase: true,
            ..Default::default()
        },
    )?;
    let w2v = Word2VecConfig {
        min_count: 1,
        epochs: 10,
        seed: args.common.seed,
        threads: args.common.threads,
        ..Default::default()
    };
    let (vectors, _) = train_native(&PreparedCorpus::new(&corpus, &w2v)?, &w2v)?;
    let avg = ExactIndex::new(&average_word_vectors(&vectors, &docs)?, "word2vec")?;
    let q = avg.search(&average_word_vectors(&vectors, &qtext)?, k, Some(exclude))?;
    record("word2vec average", q, t0.elapsed().as_secs_f64());

    let t0 = Instant::now();
    let emb = model.embed(&docs, batch)?;
    let embed_secs = t0.elapsed().as_secs_f64();
    let index = ExactIndex::new(&emb, "model")?;
    let rows: Vec<u32> = exclude.to_vec();
    let idx = candle_core::Tensor::from_vec(rows, n, emb.device())?;
    let ranked = index.search(&emb.index_select(&idx, 0)?, k, Some(exclude))?;
    record("sentence encoder", ranked, t0.elapsed().as_secs_f64());
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
fn fine_tune(args: &Args, model: SentenceEncoder, pairs: &std::path::Path, batch: usize) -> Result<()> {
    use taper::nlp::finetune::{self, MultipleNegativesRanking, PairBatcher, TextPairs};
    use taper::train::data::{split_indices, DataLoader, LoaderConfig};
    use taper::train::optim::{named_vars, Adam, AdamConfig};
    use taper::train::schedule::WarmupCosine;
    use taper::train::{clip::Clip, Optimizers, Trainer};
    let c = &args.common;
    let task = ParaphraseTask::from_pairs(pairs)?;
    let mut groups: Vec<u32> = task.group.clone();
    groups.dedup();
    let (rest, test) = split_indices(groups.len(), 0.2, c.seed)?;
    let (train, valid) = split_indices(rest.len(), c.valid_fraction()?, c.seed.wrapping_add(1))?;
    let pick = |idx: &[usize], base: Option<&[usize]>| -> std::collections::HashSet<u32> {
        idx.iter()
            .map(|&i| groups[base.map_or(i, |b| b[i])])
            .collect()
    };
    let (train_g, valid_g, test_g) = (
        pick(&train, Some(&rest)),
        pick(&valid, Some(&rest)),
        pick(&test, None),
    );
    // One pair per two members of a group: (each member, the next one).
    let pairs_of = |gs: &std::collections::HashSet<u32>| -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut members: std::collections::BTreeMap<u32, Vec<u32>> = Default::default();
        for (q, g) in task.queries.iter().zip(&task.group) {
            if gs.contains(g) {
                members.entry(*g).or_default().push(*q);
            }
        }
        for m in members.values() {
            for w in m.windows(2) {
                out.push((
                    task.corpus[w[0] as usize].clone(),
                    task.corpus[w[1] as usize].clone(),
                ));
            }
        }
        out
    };
    let (tp, vp) = (pairs_of(&train_g), pairs_of(&valid_g));
    let test_queries: Vec<usize> = (0..task.queries.len())
        .filter(|&q| test_g.contains(&task.group[q]))
        .collect();
    eprintln!(
        "{} training pairs, {} validation pairs, {} test queries",
        tp.len(),
        vp.len(),
        test_queries.len()
    );
    let drop_last = |cfg: LoaderConfig| LoaderConfig {
        drop_last: true,
        ..cfg
    };
    let train_l = DataLoader::from_dataset(
        TextPairs(tp),
        PairBatcher,
        drop_last(LoaderConfig::train(batch, c.seed)),
    )?;
    let vb = batch.min(vp.len()).max(2);
    let valid_l = DataLoader::from_dataset(
        TextPairs(vp),
        PairBatcher,
        drop_last(LoaderConfig::eval(vb)),
    )?;
    let run = c.run_dir("semantic_search-finetune");
    finetune::save_run(&model, &run)?;
    let (epochs, lr) = (c.epochs.unwrap_or(1), c.lr.unwrap_or(2e-5));
    let steps = epochs * train_l.num_batches();
    let mut schedule = WarmupCosine::cosine(lr, 0.0, steps);
    (schedule.warmup_steps, schedule.warmup_start) = (steps / 10, 0.0);
    let adam = Adam::new(named_vars(model.varmap(), ""), AdamConfig::adamw(lr));
    let mut opt = Optimizers::new().with_group("model", adam, schedule, Clip::GlobalNorm(1.0));
    let mut mnrl = MultipleNegativesRanking { model, scale: 20.0 };
    let config = serde_json::json!({"example": "semantic_search", "fine_tune": true, "lr": lr, "epochs": epochs, "batch_size": batch, "seed": c.seed});
    let report = Trainer::new(c.trainer_config("semantic_search-finetune", epochs, config)).fit(
        &mut mnrl,
        &mut opt,
        &train_l,
        Some(&valid_l),
    )?;
    drop(mnrl);
    let device = c.device()?;
    let docs: Vec<&str> = task.corpus.iter().map(String::as_str).collect();
    let mut figures = serde_json::Map::new();
    for (name, m) in [
        (
            "pretrained",
            SentenceEncoder::load(
                &args
                    .model
                    .clone()
                    .unwrap_or_else(|| resolve_model_root(None).join("all-MiniLM-L6-v2")),
                &device,
            )?,
        ),
        ("fine-tuned", SentenceEncoder::load_run(&run, &device)?),
    ] {
        let emb = m.embed(&docs, batch)?;
        let index = ExactIndex::new(&emb, "eval")?;
        let rows: Vec<u32> = test_queries.iter().map(|&q| task.queries[q]).collect();
        let idx = candle_core::Tensor::from_vec(rows.clone(), rows.len(), emb.device())?;
        let ranked = index.search(&emb.index_select(&idx, 0)?, 10, Some(&rows))?;
        let mut full = vec![Vec::new(); task.queries.len()];
        for (k, &q) in test_queries.iter().enumerate() {
            full[q] = ranked[k].clone();
        }
        let s = task.score(&full, Some(&test_queries));
        println!(
            "{name:<12} test groups: recall@1 {:.4}  recall@10 {:.4}  MRR@10 {:.4}",
            s.recall_at_1, s.recall_at_10, s.mrr_at_10
        );
        figures.insert(name.to_string(), serde_json::json!(s));
    }
    println!(
        "{}",
        serde_json::json!({"example": "semantic_search", "fine_tune": true, "run_dir": run,
        "epochs": report.history.len(), "train_seconds": report.seconds, "test_queries": test_queries.len(), "test": figures})
    );
    Ok(())
}
