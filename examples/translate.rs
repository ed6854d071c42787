//! Sequence-to-sequence translation with attention: English → French on
//! Tatoeba's `eng-fra.txt` (LSTM/GRU + attention, or the Transformer), or the
//! generated date-normalisation task; BLEU and chrF (sacreBLEU's definitions)
//! with greedy and beam decoding, attention heat maps, and `--interactive`.
//!
//! ```text
//! cargo run --release --example translate -- --task dates          (seconds)
//! cargo run --release --example translate -- --prefixes          (Transformer, 13 s/epoch)
//! cargo run --release --example translate -- --model lstm
//! cargo run --release --example translate -- --prefixes --reverse (French → English)
//! cargo run --release --example translate -- --interactive --resume RUN
//! ```
//!
//! Honest evaluation: `--test-fraction` (0.1) of the pairs is held out and
//! decoded once, at the end, with the kept checkpoint; keep-best watches the
//! loss on `--valid-fraction` (0.1) of the rest. Longer than 200 lines because of
//! its flags (a hundred lines: every architecture setting of both model families
//! is one) and the model specification they fill; the recipe itself is the
//! crate's (`PairSplits`, `Seq2SeqTrainer`, `TestDecoding`, `save_run`).

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use taper::nlp::data::{generate_dates, BucketedPairs, EncodedPairs, PairFilter, ParallelCorpus};
use taper::nlp::data::{TextCodec, ENG_PREFIXES};
use taper::nlp::metrics::perplexity;
use taper::nlp::seq2seq::{export_split, save_run, write_attention_maps, BeamConfig, ModelSpec};
use taper::nlp::seq2seq::{PairSplits, Seq2SeqTrainer, TeacherForcing, TestDecoding, Translator};
use taper::train::cli::ExampleArgs;
use taper::train::data::root::{require_dir, require_file};
use taper::train::data::{DataLoader, LoaderConfig};
use taper::train::optim::{named_vars, Adam, AdamConfig};
use taper::train::schedule::{Direction, WarmupCosine};
use taper::train::{clip::Clip, Optimizers, Trainer};

#[global_allocator]
static GLOBAL: taper::alloc::Allocator = taper::alloc::Allocator;

#[derive(Parser, Debug)]
#[command(about = "Train a sequence-to-sequence model (eng-fra or dates) and score it")]
struct Args {
    #[command(flatten)]
    common: ExampleArgs,
    /// translation (a tab-separated parallel corpus) or dates (generated).
    #[arg(long, default_value = "translation")]
    task: String,
    /// Parallel corpus, `source TAB target` a line (default DATA/translation/eng-fra.txt).
    #[arg(long, value_name = "FILE")]
    corpus: Option<PathBuf>,
    /// lstm (recurrent encoder–decoder with attention) or transformer
    /// (default: transformer for translation, lstm for dates).
    #[arg(long)]
    model: Option<String>,
    /// Recurrent cell: lstm or gru.
    #[arg(long, default_value = "lstm")]
    cell: String,
    /// Attention of the recurrent model: additive, dot, general or mha.
    #[arg(long, default_value = "additive")]
    attention: String,
    /// One encoder direction instead of two (recurrent model).
    #[arg(long)]
    unidirectional: bool,
    /// Embedding size of the recurrent model [default: 256; dates 32].
    #[arg(long)]
    emb: Option<usize>,
    /// Hidden size, the model's width [default: 256; dates 128, dates Transformer 64].
    #[arg(long)]
    hidden: Option<usize>,
    /// Layers of the encoder and of the decoder [default: Transformer 1, LSTM 2; dates 2 and 1].
    #[arg(long)]
    layers: Option<usize>,
    /// Dropout probability [default: Transformer 0.1, LSTM 0.2; dates 0].
    #[arg(long)]
    dropout: Option<f32>,
    /// Transformer attention heads.
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Transformer feed-forward width [default: 2 x --hidden].
    #[arg(long)]
    ffn: Option<usize>,
    /// Transformer positions: sinusoidal or learned.
    #[arg(long, default_value = "sinusoidal")]
    positions: String,
    /// Label smoothing of the loss (default 0.1 for the Transformer, 0 otherwise).
    #[arg(long)]
    label_smoothing: Option<f64>,
    /// Teacher-forcing ratio at the start and at the end of training.
    #[arg(long, num_args = 2, value_names = ["START", "END"], default_values_t = [1.0, 1.0])]
    teacher_forcing: Vec<f64>,
    /// Learning-rate schedule after the warm-up: cosine (to 5 % of the rate at
    /// the last epoch) or constant (default: constant for translation, chosen
    /// on validation BLEU against training time; cosine for dates).
    #[arg(long)]
    schedule: Option<String>,
    /// Linear warm-up steps (default: 100 for translation; for dates a 20th of
    /// the run for the Transformer, none for the LSTM).
    #[arg(long)]
    warmup: Option<usize>,
    /// Keep pairs of at most this many words on each side.
    #[arg(long, default_value_t = 10)]
    max_words: usize,
    /// Keep only pairs whose English side starts "i am", "he is", "she is", "you are",
    /// "we are" or "they are" (the PyTorch tutorial's filter).
    #[arg(long)]
    prefixes: bool,
    /// Translate from the corpus's second column to its first (French to English on
    /// eng-fra); `--prefixes` still selects pairs by their English side.
    #[arg(long)]
    reverse: bool,
    /// Keep at most this many pairs (the first in file order that pass the filters).
    #[arg(long)]
    max_pairs: Option<usize>,
    /// Largest vocabulary per language.
    #[arg(long, default_value_t = 12000)]
    vocab_size: usize,
    /// A word's minimum count in the training pairs to get its own id.
    #[arg(long, default_value_t = 2)]
    min_freq: u64,
    /// Generated dates (task dates).
    #[arg(long, default_value_t = 20000)]
    num_dates: usize,
    /// Held-out test fraction.
    #[arg(long, default_value_t = 0.1)]
    test_fraction: f64,
    /// Beam width of the test decoding (1 or more).
    #[arg(long, default_value_t = 5)]
    beam: usize,
    /// Length-normalisation exponent of beam search (0: none; 1: divide by length).
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    /// Decode at most this many test sentences (1 or more).
    #[arg(long)]
    eval_limit: Option<usize>,
    /// Attention maps written for the first test sentences.
    #[arg(long, default_value_t = 4)]
    heatmaps: usize,
    /// Write the split and ids for bench/seq2seq_torch.py into this folder.
    #[arg(long, value_name = "DIR")]
    export: Option<PathBuf>,
    /// Translate lines typed on stdin with the run given by --resume.
    #[arg(long)]
    interactive: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let c = &args.common;
    // Checked before training, which a bad decoding setting would otherwise waste.
    if args.beam == 0 || args.eval_limit == Some(0) {
        bail!("--beam and --eval-limit must be at least 1");
    }
    if !(args.alpha.is_finite() && args.alpha >= 0.0) {
        bail!(
            "--alpha must be a finite number at or above 0, got {}",
            args.alpha
        );
    }
    if args
        .teacher_forcing
        .iter()
        .any(|r| !(0.0..=1.0).contains(r))
    {
        bail!(
            "--teacher-forcing ratios must be in [0, 1], got {:?}",
            args.teacher_forcing
        );
    }
    let device = c.device()?;
    let beam = |max_len| BeamConfig {
        width: args.beam,
        alpha: args.alpha,
        max_len,
    };
    if args.interactive {
        let t = Translator::load(
            c.resume
                .as_ref()
                .context("--interactive needs --resume RUN")?,
            &device,
        )?;
        eprintln!(
            "loaded {}; type a sentence per line (Ctrl-D ends)",
            t.checkpoint.display()
        );
        for line in std::io::stdin().lock().lines() {
            match t.translate(line?.trim(), &beam(t.spec.max_tgt_len)) {
                Ok(text) => println!("{text}"),
                Err(e) => eprintln!("{e}"),
            }
        }
        return Ok(());
    }
    let dates = match args.task.as_str() {
        "dates" => true,
        "translation" => false,
        o => bail!("unknown --task '{o}' (translation or dates)"),
    };
    let corpus = match (&args.corpus, dates) {
        (_, true) => None,
        (Some(p), false) => Some(p.clone()),
        (None, false) => Some(require_file(
            &require_dir(&c.data_root(), "translation")?,
            "eng-fra.txt",
        )?),
    };
    let mut pairs = match &corpus {
        None => generate_dates(args.num_dates, c.seed),
        Some(path) => {
            let prefixes = if args.prefixes {
                ENG_PREFIXES.iter().map(|s| s.to_string()).collect()
            } else {
                Vec::new()
            };
            let filter = PairFilter {
                max_words: Some(args.max_words),
                prefixes,
                max_pairs: args.max_pairs,
            };
            ParallelCorpus::read(path, &filter)
                .with_context(|| format!("corpus {}", path.display()))?
                .pairs
        }
    };
    if args.reverse {
        for (s, t) in &mut pairs {
            std::mem::swap(s, t);
        }
    }
    let splits = PairSplits::new(&pairs, args.test_fraction, c.valid_fraction()?, c.seed)?;
    let run_dir = c.run_dir("translate")?;
    let resume = c.resume.is_some();
    // The flags that decide the pairs and their split: a resume with others would
    // train, and then test, on another split (the seed is checked by the trainer).
    let data = if dates {
        serde_json::json!({"--num-dates": args.num_dates})
    } else {
        // The file's name, not its path: the same data may sit elsewhere on another machine.
        let name = corpus
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy());
        serde_json::json!({"--corpus": name, "--max-words": args.max_words,
            "--prefixes": args.prefixes, "--max-pairs": args.max_pairs})
    };
    let mut data = data.as_object().cloned().unwrap_or_default();
    data.insert("--test-fraction".into(), args.test_fraction.into());
    data.insert("--valid-fraction".into(), c.valid_fraction()?.into());
    data.insert("pairs".into(), pairs.len().into());
    if resume {
        let saved =
            taper::train::report::RunInfo::load(&run_dir)?.map(|info| info.config["data"].clone());
        if let Some(serde_json::Value::Object(saved)) = saved {
            let differ: Vec<String> = saved
                .iter()
                .filter(|(k, v)| data.get(*k) != Some(*v))
                .map(|(k, v)| {
                    format!(
                        "{k} {v} (this command: {})",
                        data.get(k).unwrap_or(&serde_json::Value::Null)
                    )
                })
                .collect();
            if !differ.is_empty() {
                bail!(
                    "{}: the run's pairs were chosen with {}; repeat those flags to resume it",
                    run_dir.display(),
                    differ.join(", ")
                );
            }
        }
    }
    // A resumed run reuses its vocabularies: retraining them could order ties differently.
    let (src, tgt) = if resume {
        let load = |f: &str| TextCodec::load(&run_dir.join(f));
        (load("src_vocab.json")?, load("tgt_vocab.json")?)
    } else {
        splits.codecs(dates, args.vocab_size, args.min_freq)?
    };
    let model_name = args
        .model
        .clone()
        .unwrap_or_else(|| if dates { "lstm" } else { "transformer" }.into());
    let transformer = model_name == "transformer";
    // The translation defaults (a one-layer Transformer, batch 32, a constant
    // rate after 100 warm-up steps) were chosen on validation BLEU against
    // training time beside PyTorch's tutorial model (docs/BENCHMARKS.md).
    let (emb, hidden, layers, dropout, epochs, lr, batch) = match (dates, transformer) {
        (true, false) => (32, 128, 1, 0.0, 2, 3e-3, 64),
        (true, true) => (0, 64, 2, 0.0, 6, 2e-3, 64),
        (false, false) => (256, 256, 2, 0.2, 10, 2e-3, 64),
        (false, true) => (0, 256, 1, 0.1, 10, 1e-3, 32),
    };
    let (longest_src, longest_tgt) = splits.longest(&src, &tgt)?;
    let hidden = args.hidden.unwrap_or(hidden);
    let spec = ModelSpec {
        task: args.task.clone(),
        model: model_name.clone(),
        cell: args.cell.clone(),
        attention: args.attention.clone(),
        bidirectional: !args.unidirectional,
        emb: args.emb.unwrap_or(emb),
        hidden,
        layers: args.layers.unwrap_or(layers),
        heads: args.heads,
        ffn: args.ffn.unwrap_or(2 * hidden),
        positions: args.positions.clone(),
        dropout: args.dropout.unwrap_or(dropout),
        // Room for held-out sentences a little longer than any training one.
        max_src_len: longest_src.max(1) + 8,
        max_tgt_len: longest_tgt + 9,
        src_vocab: src.len(),
        tgt_vocab: tgt.len(),
        src_fingerprint: src.fingerprint(),
        tgt_fingerprint: tgt.fingerprint(),
        reversed: args.reverse,
    };
    if resume {
        spec.check_resumes(&run_dir)?;
    } else {
        save_run(&run_dir, &spec, &src, &tgt)?;
    }
    let (epochs, lr, batch) = (
        c.epochs_or(epochs)?,
        c.lr.unwrap_or(lr),
        c.batch_size.unwrap_or(batch),
    );
    let enc = splits.encode(&src, &tgt, spec.max_src_len, spec.max_tgt_len - 1)?;
    if let Some(dir) = &args.export {
        export_split(
            dir,
            (&enc.train, &enc.test),
            &enc.references,
            &tgt,
            &spec,
            batch,
            c.seed,
        )?;
    }
    eprintln!(
        "{} pairs ({} train, {} validation, {} test); vocabularies {} / {}",
        pairs.len(),
        splits.train.len(),
        splits.valid.len(),
        splits.test.len(),
        src.len(),
        tgt.len()
    );
    let varmap = candle_nn::VarMap::new();
    let model = spec.build(&varmap, c.seed, &device)?;
    let loader = |d: &Arc<EncodedPairs>, b, cfg| {
        DataLoader::new(BucketedPairs::new(d.clone(), b, c.seed, &device), cfg)
    };
    let train_loader = loader(&enc.train, batch, LoaderConfig::train(1, c.seed))?;
    let valid_loader = loader(&enc.valid, 256, LoaderConfig::eval(1))?;
    let updates = epochs * train_loader.num_batches().div_ceil(c.accumulate.max(1));
    let default_schedule = if dates { "cosine" } else { "constant" };
    let end = match args.schedule.as_deref().unwrap_or(default_schedule) {
        "cosine" => lr * 0.05,
        "constant" => lr,
        o => bail!("unknown --schedule '{o}' (cosine or constant)"),
    };
    let mut schedule = WarmupCosine::cosine(lr, end, updates);
    let warmup = match (dates, transformer) {
        (false, _) => 100,
        (true, true) => updates / 20,
        (true, false) => 0,
    };
    (schedule.warmup_steps, schedule.warmup_start) = (args.warmup.unwrap_or(warmup), 0.01);
    let adam = Adam::new(
        named_vars(&varmap, ""),
        AdamConfig {
            lr,
            ..Default::default()
        },
    );
    let mut opt = Optimizers::new()
        .with_group("model", adam, schedule, Clip::GlobalNorm(1.0))
        .with_accumulation(c.accumulate);
    let label_smoothing = args
        .label_smoothing
        .unwrap_or(if transformer { 0.1 } else { 0.0 });
    let (start, end) = (args.teacher_forcing[0], args.teacher_forcing[1]);
    let teacher_forcing = TeacherForcing {
        start,
        end,
        steps: updates as u64,
    };
    let mut task = Seq2SeqTrainer {
        model,
        varmap: varmap.clone(),
        label_smoothing,
        teacher_forcing,
        seed: c.seed,
        valid_bleu: true,
    };
    let config = serde_json::json!({"example": "translate", "spec": spec, "data": data, "lr": lr, "batch_size": batch,
        "epochs": epochs, "label_smoothing": label_smoothing, "teacher_forcing": args.teacher_forcing});
    let mut trainer = Trainer::new(taper::train::TrainerConfig {
        monitor: Some(("valid.nll".into(), Direction::Min)),
        ..c.trainer_config("translate", epochs, config)?
    });
    // The kept checkpoint's losses on both splits, then the test split decoded once.
    let test_loader = loader(&enc.test, 256, LoaderConfig::eval(1))?;
    let r = trainer.fit_and_test(
        &mut task,
        &mut opt,
        &train_loader,
        &valid_loader,
        &test_loader,
    )?;
    let nll = |m: &taper::train::Metrics| perplexity(m.mean("nll").unwrap_or(f64::NAN));
    let test = &splits.test;
    let n = args.eval_limit.unwrap_or(test.len()).min(test.len());
    let (model, refs) = (task.model.as_ref(), &enc.references[..n]);
    let d = TestDecoding::run(
        model,
        &enc.test.src[..n],
        refs,
        &tgt,
        &beam(spec.max_tgt_len),
        &device,
    )?;
    d.write(&run_dir, refs)?;
    for i in 0..n.min(5) {
        println!(
            "src:    {}\nref:    {}\ngreedy: {}\nbeam:   {}\n",
            test[i].0, refs[i], d.greedy[i], d.beam[i]
        );
    }
    let maps = write_attention_maps(
        model,
        &enc.test.src,
        &src,
        &tgt,
        args.heatmaps,
        &run_dir,
        &device,
    )?;
    let sources: Vec<String> = test[..n].iter().map(|p| p.0.clone()).collect();
    d.report_section(&run_dir, &sources, refs, &maps, 8)?;
    let (greedy, beamed, (secs_g, secs_b)) = (d.greedy_scores, d.beam_scores, d.seconds);
    println!("test ({n} sentences): greedy {greedy:?} ({secs_g:.1} s); beam {} {beamed:?} ({secs_b:.1} s)", args.beam);
    let json = serde_json::json!({"example": "translate", "task": args.task, "model": model_name, "cell": spec.cell,
            "attention": spec.attention, "pairs": pairs.len(), "train_pairs": splits.train.len(), "valid_pairs": splits.valid.len(),
            "test_pairs": test.len(), "evaluated": n, "epochs": r.fit.history.len(), "batch_size": batch, "lr": lr,
            "valid_perplexity": nll(&r.valid), "test_perplexity": nll(&r.test), "test_bleu": beamed.bleu, "test_chrf": beamed.chrf,
            "test_exact_match": beamed.exact_match, "test_bleu_greedy": greedy.bleu, "test_chrf_greedy": greedy.chrf,
            "test_exact_match_greedy": greedy.exact_match, "beam": args.beam, "greedy_decode_seconds": secs_g,
            "beam_decode_seconds": secs_b, "train_seconds": r.fit.seconds, "heatmaps": maps, "run_dir": run_dir});
    // The loaders yield pre-built buckets (batch size 1 to the trainer): the
    // report's header shows sentence pairs and the real batch size instead.
    if let Some(mut info) = taper::train::report::RunInfo::load(&run_dir)? {
        info.train_items = Some(splits.train.len());
        info.valid_items = Some(splits.valid.len());
        info.test_items = Some(test.len());
        info.batch_size = Some(batch);
        info.save(&run_dir)?;
    }
    let page = taper::train::report::finish(&run_dir, &json, None)?;
    println!("report: {}", page.display());
    println!("{json}");
    Ok(())
}
