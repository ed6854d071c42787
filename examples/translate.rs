//! Sequence-to-sequence translation with attention: English → French on
//! Tatoeba's `eng-fra.txt` (LSTM + attention or Transformer), or the generated
//! date-normalisation task. Trains through taper-train's `Trainer` (checkpoints,
//! `--resume`), reports BLEU and chrF (sacreBLEU's definitions) with greedy and
//! beam decoding on a held-out 10 %, writes attention heat maps, and translates
//! typed lines with `--interactive`.
//!
//! `cargo run --release --example translate -- --task dates` (seconds),
//! `cargo run --release --example translate` (eng-fra, LSTM),
//! `cargo run --release --example translate -- --model transformer`,
//! `cargo run --release --example translate -- --interactive --checkpoint RUN`.
//!
//! Sources longer than the model's maximum are cut to it, with a warning.

use anyhow::{bail, Context, Result};
use candle_core::Device;
use candle_nn::VarMap;
use clap::Parser;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use taper::nlp::data::{
    generate_dates, source_batch, BucketedPairs, EncodedPairs, PairFilter, ParallelCorpus,
    TextCodec, ENG_PREFIXES,
};
use taper::nlp::metrics::{corpus_bleu, corpus_chrf, perplexity};
use taper::nlp::seq2seq::{
    beam_search, greedy, step_tokens, BeamConfig, ModelSpec, Seq2Seq, Seq2SeqTrainer, Source,
    TeacherForcing, Translator,
};
use taper::train::cli::ExampleArgs;
use taper::train::clip::Clip;
use taper::train::data::{split_indices, DataLoader, LoaderConfig};
use taper::train::optim::{named_vars, Adam, AdamConfig};
use taper::train::schedule::{Direction, WarmupCosine};
use taper::train::{Optimizers, Trainer, TrainerConfig};

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
    /// lstm (recurrent encoder–decoder with attention) or transformer.
    #[arg(long, default_value = "lstm")]
    model: String,
    /// Recurrent cell of the lstm model: lstm or gru.
    #[arg(long, default_value = "lstm")]
    cell: String,
    /// Attention of the recurrent model: additive, dot, general or mha.
    #[arg(long, default_value = "additive")]
    attention: String,
    /// Embedding size (recurrent model).
    #[arg(long)]
    emb: Option<usize>,
    /// Hidden size (recurrent model) or model width (Transformer).
    #[arg(long)]
    hidden: Option<usize>,
    /// Layers of the encoder and of the decoder.
    #[arg(long)]
    layers: Option<usize>,
    /// Transformer heads.
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Transformer feed-forward width (default 2 x width).
    #[arg(long)]
    ffn: Option<usize>,
    /// Transformer positions: sinusoidal or learned.
    #[arg(long, default_value = "sinusoidal")]
    positions: String,
    /// Dropout.
    #[arg(long)]
    dropout: Option<f32>,
    /// Label smoothing of the loss (default 0.1 for the Transformer, 0 otherwise).
    #[arg(long)]
    label_smoothing: Option<f64>,
    /// Teacher-forcing ratio at the start and at the end of training (linear in between).
    #[arg(long, num_args = 2, value_names = ["START", "END"], default_values_t = [1.0, 1.0])]
    teacher_forcing: Vec<f64>,
    /// Keep pairs of at most this many words on each side.
    #[arg(long, default_value_t = 10)]
    max_words: usize,
    /// Keep only English sources starting with "i am", "he is", ... (PyTorch tutorial's subset).
    #[arg(long)]
    prefixes: bool,
    /// Keep at most this many pairs (file order).
    #[arg(long)]
    max_pairs: Option<usize>,
    /// Largest vocabulary per language (words seen fewer than --min-freq times are left out).
    #[arg(long, default_value_t = 12000)]
    vocab_size: usize,
    /// Minimum word count.
    #[arg(long, default_value_t = 2)]
    min_freq: u64,
    /// Generated dates (task dates).
    #[arg(long, default_value_t = 20000)]
    num_dates: usize,
    /// Held-out fraction.
    #[arg(long, default_value_t = 0.1)]
    test_fraction: f64,
    /// Beam width.
    #[arg(long, default_value_t = 5)]
    beam: usize,
    /// Length normalisation exponent of beam search.
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    /// Decode at most this many held-out sentences (default all).
    #[arg(long)]
    eval_limit: Option<usize>,
    /// Write attention heat maps of this many held-out sentences.
    #[arg(long, default_value_t = 4)]
    heatmaps: usize,
    /// Write the split and ids for bench/seq2seq_torch.py into this folder.
    #[arg(long, value_name = "DIR")]
    export: Option<PathBuf>,
    /// Translate lines typed on stdin with the model of run directory --checkpoint.
    #[arg(long)]
    interactive: bool,
    /// Run directory to translate with (interactive mode).
    #[arg(long, value_name = "DIR")]
    checkpoint: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = args.common.device()?;
    if args.interactive {
        return interactive(&args, &device);
    }
    let c = &args.common;
    let started = Instant::now();
    let dates = match args.task.as_str() {
        "dates" => true,
        "translation" => false,
        o => bail!("unknown --task '{o}' (translation or dates)"),
    };
    let (pairs, source_name) = if dates {
        (
            generate_dates(args.num_dates, c.seed),
            "generated dates".to_string(),
        )
    } else {
        let path = args
            .corpus
            .clone()
            .unwrap_or_else(|| c.data_root().join("translation").join("eng-fra.txt"));
        if !path.is_file() {
            bail!(
                "corpus {} not found (pass --corpus FILE, or --data DIR holding translation/eng-fra.txt)",
                path.display()
            );
        }
        let filter = PairFilter {
            max_words: Some(args.max_words),
            prefixes: if args.prefixes {
                ENG_PREFIXES.iter().map(|s| s.to_string()).collect()
            } else {
                Vec::new()
            },
            max_pairs: args.max_pairs,
        };
        let corpus = ParallelCorpus::read(&path, &filter)?;
        (corpus.pairs, path.display().to_string())
    };
    let (train_idx, test_idx) = split_indices(pairs.len(), args.test_fraction, c.seed)?;
    if train_idx.is_empty() || test_idx.is_empty() {
        bail!(
            "{} pairs leave an empty train or test split at --test-fraction {}",
            pairs.len(),
            args.test_fraction
        );
    }
    let train_pairs: Vec<(String, String)> = train_idx.iter().map(|&i| pairs[i].clone()).collect();
    let test_pairs: Vec<(String, String)> = test_idx.iter().map(|&i| pairs[i].clone()).collect();
    let run_dir = c.run_dir("translate");
    std::fs::create_dir_all(&run_dir)?;
    let resume = c.resume.is_some();
    // A resumed run reuses its vocabularies: retraining them could order ties differently.
    let (src_codec, tgt_codec) = if resume {
        (
            TextCodec::load(&run_dir.join("src_vocab.json"))?,
            TextCodec::load(&run_dir.join("tgt_vocab.json"))?,
        )
    } else if dates {
        (
            TextCodec::chars(train_pairs.iter().map(|p| p.0.as_str()))?,
            TextCodec::chars(train_pairs.iter().map(|p| p.1.as_str()))?,
        )
    } else {
        let s: Vec<&str> = train_pairs.iter().map(|p| p.0.as_str()).collect();
        let t: Vec<&str> = train_pairs.iter().map(|p| p.1.as_str()).collect();
        (
            TextCodec::train_words(&s, args.vocab_size, args.min_freq)?,
            TextCodec::train_words(&t, args.vocab_size, args.min_freq)?,
        )
    };
    let transformer_model = args.model == "transformer";
    let (emb, hidden, layers, dropout, epochs, lr, batch) = match (dates, transformer_model) {
        (true, false) => (32, 128, 1, 0.0, 2, 3e-3, 64),
        (true, true) => (0, 64, 2, 0.0, 6, 2e-3, 64),
        (false, false) => (256, 256, 2, 0.2, 10, 2e-3, 64),
        (false, true) => (0, 256, 3, 0.1, 5, 1e-3, 64),
    };
    let ffn = args.ffn.unwrap_or(2 * args.hidden.unwrap_or(hidden));
    let max_src_len = train_pairs
        .iter()
        .map(|p| src_codec.encode(&p.0).map(|v| v.len()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .max()
        .unwrap_or(1)
        .max(1);
    let max_tgt_len = 1 + train_pairs
        .iter()
        .map(|p| tgt_codec.encode(&p.1).map(|v| v.len()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .max()
        .unwrap_or(1);
    let spec = ModelSpec {
        task: args.task.clone(),
        model: args.model.clone(),
        cell: args.cell.clone(),
        attention: args.attention.clone(),
        emb: args.emb.unwrap_or(emb),
        hidden: args.hidden.unwrap_or(hidden),
        layers: args.layers.unwrap_or(layers),
        heads: args.heads,
        ffn,
        positions: args.positions.clone(),
        dropout: args.dropout.unwrap_or(dropout),
        // Room for held-out sentences a little longer than any training one.
        max_src_len: max_src_len + 8,
        max_tgt_len: max_tgt_len + 8,
        src_vocab: src_codec.len(),
        tgt_vocab: tgt_codec.len(),
        src_fingerprint: src_codec.fingerprint(),
        tgt_fingerprint: tgt_codec.fingerprint(),
    };
    if !resume {
        src_codec.save(&run_dir.join("src_vocab.json"))?;
        tgt_codec.save(&run_dir.join("tgt_vocab.json"))?;
        std::fs::write(
            run_dir.join("model.json"),
            serde_json::to_string_pretty(&spec)?,
        )?;
    }
    let epochs = c.epochs.unwrap_or(epochs);
    let lr = c.lr.unwrap_or(lr);
    let batch = c.batch_size.unwrap_or(batch);
    let (train_enc, cut_train) = EncodedPairs::encode(
        &train_pairs,
        &src_codec,
        &tgt_codec,
        spec.max_src_len,
        spec.max_tgt_len - 1,
    )?;
    let (test_enc, cut_test) = EncodedPairs::encode(
        &test_pairs,
        &src_codec,
        &tgt_codec,
        spec.max_src_len,
        spec.max_tgt_len - 1,
    )?;
    if cut_test > 0 || cut_train > 0 {
        eprintln!("warning: {cut_train} training and {cut_test} held-out pairs cut to the model's maximum length");
    }
    eprintln!(
        "{source_name}: {} pairs ({} train, {} held out); vocabularies {} / {}; max lengths {} / {}",
        pairs.len(),
        train_pairs.len(),
        test_pairs.len(),
        src_codec.len(),
        tgt_codec.len(),
        spec.max_src_len,
        spec.max_tgt_len
    );
    if let Some(dir) = &args.export {
        export(
            dir,
            &train_enc,
            &test_enc,
            &test_pairs,
            &tgt_codec,
            &spec,
            batch,
            c.seed,
        )?;
    }
    let train_enc = Arc::new(train_enc);
    let test_enc = Arc::new(test_enc);
    let varmap = VarMap::new();
    let model = spec.build(&varmap, c.seed, &device)?;
    let train = DataLoader::new(
        BucketedPairs::new(train_enc.clone(), batch, c.seed, &device),
        LoaderConfig::train(1, c.seed),
    )?;
    let valid = DataLoader::new(
        BucketedPairs::new(test_enc.clone(), 256, c.seed, &device),
        LoaderConfig::eval(1),
    )?;
    let steps = epochs * train.num_batches();
    let adam = Adam::new(
        named_vars(&varmap, ""),
        AdamConfig {
            lr,
            ..Default::default()
        },
    );
    let warmup = if transformer_model { steps / 20 } else { 0 };
    let mut schedule = WarmupCosine::cosine(lr, lr * 0.05, steps);
    schedule.warmup_steps = warmup;
    schedule.warmup_start = 0.01;
    let mut opt = Optimizers::new().with_group("model", adam, schedule, Clip::GlobalNorm(1.0));
    let label_smoothing = args
        .label_smoothing
        .unwrap_or(if transformer_model { 0.1 } else { 0.0 });
    let tf = TeacherForcing {
        start: args.teacher_forcing[0],
        end: args.teacher_forcing[1],
        steps: steps as u64,
    };
    let mut task = Seq2SeqTrainer {
        model,
        varmap: varmap.clone(),
        label_smoothing,
        teacher_forcing: tf,
        seed: c.seed,
    };
    let mut trainer = Trainer::new(TrainerConfig {
        epochs,
        run_dir: Some(run_dir.clone()),
        seed: c.seed,
        monitor: Some(("valid.nll".into(), Direction::Min)),
        resume,
        config: serde_json::json!({"example": "translate", "spec": spec, "lr": lr,
            "batch_size": batch, "epochs": epochs, "label_smoothing": label_smoothing,
            "teacher_forcing": args.teacher_forcing}),
        ..Default::default()
    });
    let report = trainer.fit(&mut task, &mut opt, &train, Some(&valid))?;
    let last = report.last().context("no epoch was run")?;
    let secs_per_epoch =
        report.history.iter().map(|r| r.seconds).sum::<f64>() / report.history.len() as f64;
    let valid_nll = last.valid.get("nll").copied().unwrap_or(f64::NAN);
    let model = task.model;

    // Held-out decoding.
    let n_eval = args
        .eval_limit
        .unwrap_or(test_pairs.len())
        .min(test_pairs.len());
    let t0 = Instant::now();
    let greedy_out = decode_all(
        model.as_ref(),
        &test_enc,
        n_eval,
        None,
        &device,
        spec.max_tgt_len,
    )?;
    let greedy_secs = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let beam_cfg = BeamConfig {
        width: args.beam,
        alpha: args.alpha,
        max_len: spec.max_tgt_len,
    };
    let beam_out = decode_all(
        model.as_ref(),
        &test_enc,
        n_eval,
        Some(&beam_cfg),
        &device,
        spec.max_tgt_len,
    )?;
    let beam_secs = t0.elapsed().as_secs_f64();
    let refs: Vec<String> = test_pairs[..n_eval]
        .iter()
        .map(|p| tgt_codec.normalize(&p.1))
        .collect::<Result<_, _>>()?;
    let hyp_g: Vec<String> = greedy_out.iter().map(|ids| tgt_codec.decode(ids)).collect();
    let hyp_b: Vec<String> = beam_out.iter().map(|ids| tgt_codec.decode(ids)).collect();
    for i in 0..n_eval.min(5) {
        println!(
            "src:    {}\nref:    {}\ngreedy: {}\nbeam:   {}\n",
            test_pairs[i].0, refs[i], hyp_g[i], hyp_b[i]
        );
    }
    let refs_stream = vec![refs.clone()];
    let bleu_g = corpus_bleu(&hyp_g, &refs_stream)?.score;
    let bleu_b = corpus_bleu(&hyp_b, &refs_stream)?.score;
    let chrf_g = corpus_chrf(&hyp_g, &refs_stream)?.score;
    let chrf_b = corpus_chrf(&hyp_b, &refs_stream)?.score;
    let exact = |h: &[String]| {
        h.iter().zip(&refs).filter(|(a, b)| a == b).count() as f64 / n_eval.max(1) as f64
    };
    let (em_g, em_b) = (exact(&hyp_g), exact(&hyp_b));
    println!(
        "held out ({n_eval} sentences): greedy BLEU {bleu_g:.2} chrF {chrf_g:.2} exact {:.2} % ({greedy_secs:.1} s); \
         beam {} BLEU {bleu_b:.2} chrF {chrf_b:.2} exact {:.2} % ({beam_secs:.1} s); perplexity {:.2}",
        100.0 * em_g,
        args.beam,
        100.0 * em_b,
        perplexity(valid_nll)
    );
    std::fs::write(
        run_dir.join("hypotheses.greedy.txt"),
        hyp_g.join("\n") + "\n",
    )?;
    std::fs::write(run_dir.join("hypotheses.beam.txt"), hyp_b.join("\n") + "\n")?;
    std::fs::write(run_dir.join("references.txt"), refs.join("\n") + "\n")?;
    let maps = heatmaps(
        model.as_ref(),
        &test_enc,
        &src_codec,
        &tgt_codec,
        args.heatmaps,
        &run_dir,
        &device,
    )?;
    let mut out = serde_json::json!({"example": "translate", "task": args.task, "model": args.model,
        "cell": spec.cell, "attention": spec.attention, "pairs": pairs.len(),
        "train_pairs": train_pairs.len(), "test_pairs": test_pairs.len(), "evaluated": n_eval,
        "src_vocab": spec.src_vocab, "tgt_vocab": spec.tgt_vocab, "epochs": report.history.len(),
        "batch_size": batch, "lr": lr, "seconds_per_epoch": secs_per_epoch,
        "train_seconds": report.seconds, "seconds": started.elapsed().as_secs_f64(),
        "valid_perplexity": perplexity(valid_nll), "beam": args.beam,
        "greedy_decode_seconds": greedy_secs, "beam_decode_seconds": beam_secs,
        "heatmaps": maps, "run_dir": run_dir});
    let o = out.as_object_mut().context("json")?;
    if dates {
        o.insert("exact_match".into(), em_g.into());
        o.insert("exact_match_beam".into(), em_b.into());
    } else {
        o.insert("bleu".into(), bleu_b.into());
        o.insert("chrf".into(), chrf_b.into());
        o.insert("bleu_greedy".into(), bleu_g.into());
        o.insert("chrf_greedy".into(), chrf_g.into());
    }
    println!("{out}");
    Ok(())
}

/// Decodes the first `n` held-out sources in length-sorted batches; results in
/// the original order.
fn decode_all(
    model: &dyn Seq2Seq,
    data: &EncodedPairs,
    n: usize,
    beam: Option<&BeamConfig>,
    device: &Device,
    max_len: usize,
) -> Result<Vec<Vec<u32>>> {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| data.src[i].len());
    let mut out = vec![Vec::new(); n];
    let bs = if beam.is_some() { 64 } else { 256 };
    for chunk in order.chunks(bs) {
        let rows: Vec<&[u32]> = chunk.iter().map(|&i| data.src[i].as_slice()).collect();
        let (ids, mask, lens) = source_batch(&rows, device)?;
        let src = Source {
            ids: &ids,
            mask: &mask,
            lens: &lens,
        };
        let dec = match beam {
            Some(cfg) => beam_search(model, src, cfg)?,
            None => greedy(model, src, max_len, false)?,
        };
        for (&i, ids) in chunk.iter().zip(dec.ids) {
            out[i] = ids;
        }
    }
    Ok(out)
}

/// Writes `RUN/attention-<i>.png` for the first `n` held-out sentences: one cell
/// per (output token, source token) in the heat ramp of `taper::train::explain`
/// (no fonts here: the tokens go to `RUN/attention-<i>.txt`).
fn heatmaps(
    model: &dyn Seq2Seq,
    data: &EncodedPairs,
    src_codec: &TextCodec,
    tgt_codec: &TextCodec,
    n: usize,
    run_dir: &Path,
    device: &Device,
) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for i in 0..n.min(data.len()) {
        let rows = [data.src[i].as_slice()];
        let (ids, mask, lens) = source_batch(&rows, device)?;
        let dec = greedy(
            model,
            Source {
                ids: &ids,
                mask: &mask,
                lens: &lens,
            },
            model.max_target_len(),
            true,
        )?;
        let att = &dec.attention.as_ref().context("attention")?[0];
        let (w, h, rgb) = taper::nlp::seq2seq::attention_rgb(att, 24);
        let img = image::RgbImage::from_raw(w as u32, h as u32, rgb).context("heat map size")?;
        let p = run_dir.join(format!("attention-{i}.png"));
        img.save(&p)?;
        let src_toks: Vec<String> = rows[0]
            .iter()
            .map(|&t| src_codec.token(t).unwrap_or_default())
            .collect();
        let out_toks = step_tokens(tgt_codec, &dec.ids[0], att.len());
        std::fs::write(
            run_dir.join(format!("attention-{i}.txt")),
            format!(
                "columns (source): {}\nrows (output): {}\n",
                src_toks.join(" | "),
                out_toks.join(" | ")
            ),
        )?;
        paths.push(p);
    }
    Ok(paths)
}

/// Writes what bench/seq2seq_torch.py needs to train the same model on the same
/// data: ids of both splits, the target vocabulary, references, settings.
#[allow(clippy::too_many_arguments)]
fn export(
    dir: &Path,
    train: &EncodedPairs,
    test: &EncodedPairs,
    test_pairs: &[(String, String)],
    tgt: &TextCodec,
    spec: &ModelSpec,
    batch: usize,
    seed_: u64,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let ids = |d: &EncodedPairs| -> String {
        let j = |v: &[u32]| {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        d.src
            .iter()
            .zip(&d.tgt)
            .map(|(s, t)| format!("{}\t{}\n", j(s), j(t)))
            .collect()
    };
    std::fs::write(dir.join("train.ids.tsv"), ids(train))?;
    std::fs::write(dir.join("test.ids.tsv"), ids(test))?;
    let vocab: Vec<String> = (0..tgt.len() as u32)
        .map(|i| tgt.token(i).unwrap_or_default())
        .collect();
    std::fs::write(dir.join("tgt_vocab.txt"), vocab.join("\n") + "\n")?;
    let refs: Vec<String> = test_pairs
        .iter()
        .map(|p| tgt.normalize(&p.1))
        .collect::<Result<_, _>>()?;
    std::fs::write(dir.join("test_refs.txt"), refs.join("\n") + "\n")?;
    let words = matches!(tgt, TextCodec::Words(_));
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&serde_json::json!({"spec": spec, "batch_size": batch,
            "seed": seed_, "join": if words { " " } else { "" }}))?,
    )?;
    eprintln!("exported split and ids to {}", dir.display());
    Ok(())
}

/// Translates lines typed on stdin with the best (else latest) checkpoint of
/// `--checkpoint RUN`; an empty line is refused with a message, EOF ends.
fn interactive(args: &Args, device: &Device) -> Result<()> {
    let run = args
        .checkpoint
        .clone()
        .or_else(|| args.common.resume.clone())
        .context("--interactive needs --checkpoint RUN (a run directory of this example)")?;
    let t = Translator::load(&run, device)?;
    let (spec, model, src_codec, tgt_codec) = (&t.spec, &t.model, &t.src, &t.tgt);
    eprintln!(
        "loaded {}; type a sentence per line (Ctrl-D ends)",
        t.checkpoint.display()
    );
    let cfg = BeamConfig {
        width: args.beam,
        alpha: args.alpha,
        max_len: spec.max_tgt_len,
    };
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for (n, line) in stdin.lock().lines().enumerate() {
        let line = line.with_context(|| format!("stdin line {}", n + 1))?;
        let text = line.trim();
        if text.is_empty() {
            eprintln!("line {}: empty line, nothing to translate", n + 1);
            continue;
        }
        let mut ids = src_codec.encode(text)?;
        if ids.len() > spec.max_src_len {
            eprintln!(
                "line {}: {} tokens, cut to the model's maximum of {}",
                n + 1,
                ids.len(),
                spec.max_src_len
            );
            ids.truncate(spec.max_src_len);
        }
        if ids.is_empty() {
            eprintln!("line {}: no token the model knows", n + 1);
            continue;
        }
        let rows = [ids.as_slice()];
        let (ids, mask, lens) = source_batch(&rows, device)?;
        let dec = beam_search(
            model.as_ref(),
            Source {
                ids: &ids,
                mask: &mask,
                lens: &lens,
            },
            &cfg,
        )?;
        writeln!(stdout, "{}", tgt_codec.decode(&dec.ids[0]))?;
        stdout.flush()?;
    }
    Ok(())
}
