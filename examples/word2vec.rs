//! word2vec (skip-gram or CBOW, negative sampling) on Penn Treebank or any
//! one-sentence-a-line text file, evaluated on WordSim-353.
//!
//! `cargo run --release --example word2vec` (native Hogwild loops, seconds) or
//! `cargo run --release --example word2vec -- --engine candle` (candle-nn
//! embeddings through taper-train's Trainer: checkpoints, `--resume`). A run
//! loads back with `WordVectors::load(RUN)`; a training run ends with
//! `RUN/report.html` (neighbours, analogies, the WordSim scatter plot).
//!
//! Longer than 200 lines because every gensim setting is a flag (seventy lines),
//! so that runs compare with gensim's setting for setting (`make bench`).

use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::time::Instant;
use taper::nlp::eval::{
    evaluate_word_pairs, load_word_pairs, neighbour_lines, word2vec_section, ANALOGIES,
};
use taper::nlp::word2vec::{
    train_candle, train_native, CandleOptimizer, CandleOptions, PreparedCorpus,
};
use taper::nlp::{Architecture, Corpus, CorpusOptions, Word2VecConfig, WordVectors};
use taper::train::cli::ExampleArgs;
use taper::train::report::{self, RunInfo};

#[global_allocator]
static GLOBAL: taper::alloc::Allocator = taper::alloc::Allocator;

#[derive(Parser, Debug)]
#[command(about = "Train word2vec on Penn Treebank (or --corpus) and score it on WordSim-353")]
struct Args {
    #[command(flatten)]
    common: ExampleArgs,
    /// Text file, one sentence a line (default DATA/text/ptb.train.txt).
    #[arg(long, value_name = "FILE")]
    corpus: Option<PathBuf>,
    /// native (hand-written Hogwild loops) or candle (Embedding + Trainer).
    #[arg(long, default_value = "native")]
    engine: String,
    /// sg (skip-gram) or cbow.
    #[arg(long, default_value = "sg")]
    arch: String,
    /// Vector dimension.
    #[arg(long, default_value_t = 100)]
    dim: usize,
    /// Context window (each word draws its own in 1..=window).
    #[arg(long, default_value_t = 5)]
    window: usize,
    /// Noise words per pair.
    #[arg(long, default_value_t = 5)]
    negative: usize,
    /// Words seen fewer times are dropped.
    #[arg(long, default_value_t = 5)]
    min_count: u64,
    /// Subsampling threshold of frequent words (0: off).
    #[arg(long, default_value_t = 1e-3)]
    sample: f64,
    /// Final learning rate (the rate decays linearly from --lr).
    #[arg(long, default_value_t = 1e-4)]
    min_lr: f64,
    /// Lower-case the corpus (and the WordSim words).
    #[arg(long)]
    lowercase: bool,
    /// Word-similarity file (default DATA/wordsim/combined.csv; skipped when absent).
    #[arg(long, value_name = "FILE")]
    wordsim: Option<PathBuf>,
    /// Where to write the vectors in word2vec text format (default RUN/vectors.txt).
    #[arg(long, value_name = "FILE")]
    vectors: Option<PathBuf>,
    /// Optimizer of the candle engine: adam (default, lr --adam-lr) or sgd (lr --lr).
    #[arg(long, default_value = "adam")]
    optimizer: String,
    /// Initial learning rate of Adam in the candle engine.
    #[arg(long, default_value_t = 0.005)]
    adam_lr: f64,
    /// Train nothing: read vectors in word2vec text format (e.g. saved by gensim)
    /// and print their neighbours and WordSim score.
    #[arg(long, value_name = "FILE")]
    score: Option<PathBuf>,
    /// Words whose nearest neighbours are printed.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "money,stock,president,japan,car,computer"
    )]
    show: Vec<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let c = &args.common;
    // word2vec has no validation split and its updates are per pair; only the
    // candle engine batches, checkpoints and resumes.
    c.reject("word2vec", &["accumulate", "valid-fraction"])?;
    if args.score.is_some() {
        c.reject("word2vec --score", ExampleArgs::TRAINING)?;
        // Scoring saved vectors writes nothing.
        c.reject("word2vec --score", &["out", "resume", "overwrite"])?;
    }
    if args.engine != "candle" {
        c.reject(
            "word2vec --engine native",
            &["batch-size", "checkpoint-every", "resume", "device"],
        )?;
    }
    let device = c.device()?;
    let root = c.data_root();
    let mut json = serde_json::json!({"example": "word2vec"});
    // A training run writes its report; scoring saved vectors writes none.
    let run_dir = match args.score {
        None => Some(c.run_dir("word2vec")?),
        Some(_) => None,
    };
    let vectors = match &args.score {
        Some(path) => {
            let v = WordVectors::load_text(path)?;
            println!(
                "{}: {} words of dimension {}",
                path.display(),
                v.len(),
                v.dim()
            );
            json["vectors"] = serde_json::json!(path);
            v
        }
        None => train(
            &args,
            &device,
            run_dir.as_deref().context("a run directory")?,
            &mut json,
        )?,
    };
    neighbour_lines(&vectors, &args.show, &ANALOGIES)
        .iter()
        .for_each(|l| println!("{l}"));
    json["vocab_size"] = vectors.len().into();
    json["dim"] = vectors.dim().into();
    let wordsim = args
        .wordsim
        .clone()
        .unwrap_or_else(|| root.join("wordsim").join("combined.csv"));
    let pairs = if wordsim.is_file() {
        Some(load_word_pairs(&wordsim)?)
    } else {
        None
    };
    if let Some(pairs) = &pairs {
        let r = evaluate_word_pairs(&vectors, pairs, args.lowercase);
        let (file, rho, pairs, oov) = (wordsim.display(), r.spearman, r.pairs, r.oov);
        println!(
            "WordSim ({file}): Spearman {rho:.4} over {pairs} pairs, {oov} pairs out of vocabulary"
        );
        json.as_object_mut()
            .context("a JSON object")?
            .extend(r.figures());
    } else {
        println!("WordSim skipped: {} not found", wordsim.display());
    }
    if let Some(dir) = &run_dir {
        let pairs = pairs.as_deref().map(|p| (p, args.lowercase));
        word2vec_section(dir, &vectors, &args.show, &ANALOGIES, pairs)?;
        let mut info = RunInfo::new(c.seed, &device);
        info.epochs = json["epochs"].as_u64().map(|e| e as usize);
        info.batch_size = json["batch_size"].as_u64().map(|b| b as usize);
        println!(
            "report: {}",
            report::finish(dir, &json, Some(info))?.display()
        );
    }
    println!("{json}");
    Ok(())
}

/// Trains on the corpus, saves the run (`WordVectors::load` reads it back) and
/// records the settings and speed in `json`.
fn train(
    args: &Args,
    device: &candle_core::Device,
    run_dir: &std::path::Path,
    json: &mut serde_json::Value,
) -> Result<WordVectors> {
    let c = &args.common;
    let corpus_path = args
        .corpus
        .clone()
        .unwrap_or_else(|| c.data_root().join("text").join("ptb.train.txt"));
    if !corpus_path.is_file() {
        anyhow::bail!(
            "corpus {} not found (pass --corpus FILE, or --data DIR holding text/ptb.train.txt; `make data` downloads it)",
            corpus_path.display()
        );
    }
    let cfg = Word2VecConfig {
        arch: args.arch.parse::<Architecture>()?,
        dim: args.dim,
        window: args.window,
        negative: args.negative,
        epochs: c.epochs_or(5)?,
        min_count: args.min_count,
        sample: args.sample,
        alpha: c.lr.unwrap_or(0.025),
        min_alpha: args.min_lr,
        threads: c.threads,
        seed: c.seed,
        verbose: true,
        ..Default::default()
    };
    let t0 = Instant::now();
    let corpus = Corpus::from_file(
        &corpus_path,
        &CorpusOptions {
            lowercase: args.lowercase,
            ..Default::default()
        },
    )?;
    let prep = PreparedCorpus::new(&corpus, &cfg)?;
    eprintln!(
        "corpus {}: {} words, {} sentences, vocabulary {} (min count {}), read in {:.2} s",
        corpus_path.display(),
        corpus.num_words(),
        corpus.num_sentences(),
        prep.vocab.len(),
        cfg.min_count,
        t0.elapsed().as_secs_f64()
    );
    drop(corpus);
    let (vectors, stats, batch_size) = match args.engine.as_str() {
        "native" => {
            let (v, s) = train_native(&prep, &cfg)?;
            (v, s, None)
        }
        "candle" => {
            let optimizer = match args.optimizer.as_str() {
                "adam" => CandleOptimizer::Adam(args.adam_lr),
                "sgd" => CandleOptimizer::Sgd,
                other => anyhow::bail!("unknown --optimizer '{other}' (adam or sgd)"),
            };
            let opts = CandleOptions {
                optimizer,
                batch_size: c.batch_size.unwrap_or(1024),
                device: device.clone(),
                run_dir: Some(run_dir.to_path_buf()),
                resume: c.resume.is_some(),
                overwrite: c.overwrite,
                checkpoint_every: c.checkpoint_every,
                progress: true,
                stop_after: None,
            };
            let (v, s, _) = train_candle(&prep, &cfg, &opts)?;
            (v, s, Some(opts.batch_size))
        }
        other => anyhow::bail!("unknown --engine '{other}' (native or candle)"),
    };
    let wps = stats.words_per_second();
    println!(
        "trained {} epochs in {:.2} s: {:.0} words/s ({} corpus words, {} after subsampling)",
        cfg.epochs, stats.seconds, wps, stats.words, stats.effective_words
    );
    vectors.save_run(run_dir, &cfg)?;
    let vec_path = match &args.vectors {
        Some(p) => {
            vectors.save_text(p)?;
            p.clone()
        }
        None => run_dir.join("vectors.txt"),
    };
    println!("vectors written to {}", vec_path.display());
    let threads = match cfg.threads {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        t => t,
    };
    let more = serde_json::json!({"engine": args.engine, "arch": args.arch, "corpus": corpus_path,
        "window": cfg.window, "negative": cfg.negative, "epochs": cfg.epochs, "min_count": cfg.min_count,
        "sample": cfg.sample, "lr": cfg.alpha, "batch_size": batch_size, "seed": cfg.seed, "threads": threads,
        "train_seconds": stats.seconds, "words_per_second": wps, "corpus_words": prep.raw_words,
        "effective_words": stats.effective_words, "vectors": vec_path, "run_dir": run_dir});
    if let (Some(j), serde_json::Value::Object(m)) = (json.as_object_mut(), more) {
        j.extend(m);
    }
    Ok(vectors)
}
