//! `semantic_search` end to end on a fresh clone: a tiny random BERT written as
//! a sentence-transformers folder (config, weights, a WordPiece tokenizer,
//! pooling and normalisation), a corpus, a query, the index reused on the next
//! run and rebuilt when the corpus changes (exact, and approximate with
//! `--approximate`), embeddings written as JSON lines,
//! the paraphrase evaluation on a small pairs file, and bad model folders.

mod common;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use common::example;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use taper::nlp::tokenizer::{Tokenizer, TokenizerConfig, TokenizerKind};
use taper::nlp::{BertConfig, BertEncoder};

const DOCS: [&str; 6] = [
    "the cat sat on the mat",
    "a dog ran in the park",
    "stocks fell on monday",
    "the market rallied today",
    "she plays the violin",
    "he sings in a choir",
];

fn write_model(dir: &Path) {
    write_model_with(dir, None);
}

/// The tiny model; `vocab` overrides the encoder's vocabulary size (the
/// tokenizer keeps its own).
fn write_model_with(dir: &Path, vocab: Option<usize>) {
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    let cfg = TokenizerConfig {
        kind: TokenizerKind::WordPiece,
        vocab_size: 60,
        min_frequency: 1,
        wrap: Some(("[CLS]".into(), "[SEP]".into())),
        lowercase: true,
        ..Default::default()
    };
    let tok = Tokenizer::train_from_texts(&cfg, DOCS.iter().copied()).unwrap();
    tok.save(&dir.join("tokenizer.json")).unwrap();
    let bert = BertConfig::tiny(vocab.unwrap_or(tok.vocab_size()));
    let varmap = VarMap::new();
    BertEncoder::new(
        &bert,
        taper::nn::init::seeded_var_builder(&varmap, 9, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let tensors: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&bert).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("sentence_bert_config.json"),
        r#"{"max_seq_length": 32}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("1_Pooling/config.json"),
        r#"{"pooling_mode_mean_tokens": true}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("modules.json"),
        r#"[{"type": "sentence_transformers.models.Transformer"}, {"type": "sentence_transformers.models.Normalize"}]"#,
    )
    .unwrap();
}

fn run(args: &[&str]) -> Output {
    Command::new(example("semantic_search"))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

/// The largest `|x - y|` over paired values (0 for none).
fn max_abs_diff<'a>(
    a: impl IntoIterator<Item = &'a f32>,
    b: impl IntoIterator<Item = &'a f32>,
) -> f32 {
    a.into_iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

fn last_json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {text}\n{}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn search_embed_and_evaluate_with_a_tiny_model() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    write_model(&model);
    let m = model.to_str().unwrap();
    let corpus = tmp.path().join("docs.txt");
    std::fs::write(&corpus, DOCS.join("\n")).unwrap();
    let index = tmp.path().join("docs.index");
    let args = |q: &str| {
        vec![
            "--model".to_string(),
            m.to_string(),
            "--corpus".into(),
            corpus.to_str().unwrap().into(),
            "--index".into(),
            index.to_str().unwrap().into(),
            "--query".into(),
            q.into(),
            "--k".into(),
            "3".into(),
        ]
    };
    let a: Vec<String> = args(DOCS[2]);
    let out = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    common::assert_succeeded(&out);
    let j = last_json(&out);
    let hits = &j["results"][0]["hits"];
    // A document is its own nearest neighbour, whatever the (random) weights.
    assert_eq!(hits[0]["text"], DOCS[2], "{j}");
    assert!(
        (hits[0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-4,
        "{j}"
    );
    assert_eq!(hits.as_array().unwrap().len(), 3);
    assert!(String::from_utf8_lossy(&out.stderr).contains("building the index"));
    // Reused while model and corpus are the same, rebuilt when the corpus changes.
    let out = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("building the index"));
    assert_eq!(last_json(&out)["results"], j["results"]);
    std::fs::write(&corpus, DOCS[..4].join("\n")).unwrap();
    let out = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another model or corpus"));
    assert_eq!(last_json(&out)["documents"], 4);
    // --approximate: an HNSW index in its own file, reused the same way; the
    // exact index's file is not taken for one.
    let hnsw = tmp.path().join("docs.hnsw");
    for (file, building) in [(&hnsw, true), (&hnsw, false), (&index, true)] {
        let mut b = a.clone();
        b[5] = file.to_str().unwrap().into();
        b.push("--approximate".into());
        let out = run(&b.iter().map(String::as_str).collect::<Vec<_>>());
        common::assert_succeeded(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.contains("building the index"), building, "{stderr}");
        let j = last_json(&out);
        assert_eq!(j["approximate"], true);
        assert_eq!(j["results"][0]["hits"][0]["text"], DOCS[2], "{j}");
    }

    let jsonl = tmp.path().join("emb.jsonl");
    let out = run(&[
        "--model",
        m,
        "--embed",
        corpus.to_str().unwrap(),
        "--out",
        jsonl.to_str().unwrap(),
    ]);
    common::assert_succeeded(&out);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    let e = lines[0]["embedding"].as_array().unwrap();
    assert_eq!(e.len(), 16);
    let norm: f64 = e
        .iter()
        .map(|v| v.as_f64().unwrap().powi(2))
        .sum::<f64>()
        .sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "normalised: {norm}");

    let pairs = tmp.path().join("pairs.txt");
    std::fs::write(
        &pairs,
        "the cat sat on the mat\tle chat\nthe cat sat on a mat\tle chat\na dog ran in the park\tle chien\nstocks fell\tla bourse\n",
    )
    .unwrap();
    let out = run(&["--model", m, "--eval-paraphrases", pairs.to_str().unwrap()]);
    common::assert_succeeded(&out);
    let j = last_json(&out);
    assert_eq!(j["queries"], 2);
    assert_eq!(j["groups"], 1);
    // BM25 finds the near-identical paraphrase first.
    assert_eq!(j["methods"]["bm25"]["scores"]["recall_at_1"], 1.0, "{j}");
    for m in ["bm25", "word2vec average", "sentence encoder"] {
        let r = j["methods"][m]["scores"]["recall_at_10"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&r), "{m}: {j}");
    }
}

/// Fine-tuning through the Trainer on the pairs of the training groups writes
/// a run that loads back as a model (`SentenceEncoder::load_run`) and embeds
/// as the fine-tuned model, not the pretrained one.
#[test]
fn fine_tuning_writes_a_run_that_loads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    write_model(&model);
    let pairs = tmp.path().join("pairs.txt");
    let mut text = String::new();
    for (g, d) in DOCS.iter().enumerate() {
        for v in 0..3 {
            text.push_str(&format!("{d} {}\tgroup {g}\n", ["", "now", "again"][v]));
        }
    }
    std::fs::write(&pairs, text).unwrap();
    let run_dir = tmp.path().join("run");
    let out = run(&[
        "--model",
        model.to_str().unwrap(),
        "--eval-paraphrases",
        pairs.to_str().unwrap(),
        "--fine-tune",
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--lr",
        "1e-3",
        "--valid-fraction",
        "0.25",
        "--out",
        run_dir.to_str().unwrap(),
    ]);
    common::assert_succeeded(&out);
    let j = last_json(&out);
    assert_eq!(j["epochs"], 2, "{j}");
    for m in ["pretrained", "fine-tuned"] {
        assert!(j["test"][m]["recall_at_10"].as_f64().is_some(), "{j}");
    }
    assert!(run_dir.join("model.json").is_file() && run_dir.join("tokenizer.json").is_file());
    // The run report carries the retrieval figures of both models, as printed.
    let section: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("report/retrieval.json")).unwrap(),
    )
    .unwrap();
    let table = serde_json::to_string(&section).unwrap();
    for m in ["pretrained", "fine-tuned"] {
        let r1 = format!("{:.4}", j["test"][m]["recall_at_1"].as_f64().unwrap());
        assert!(
            table.contains(m) && table.contains(&r1),
            "{m} {r1}: {table}"
        );
    }
    let page = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(
        page.contains("Paraphrase retrieval"),
        "no retrieval section in the page"
    );
    let dev = Device::Cpu;
    let tuned = taper::nlp::SentenceEncoder::load_run(&run_dir, &dev).unwrap();
    let base = taper::nlp::SentenceEncoder::load(&model, &dev).unwrap();
    let (a, b) = (
        tuned.embed(&DOCS, 4).unwrap(),
        base.embed(&DOCS, 4).unwrap(),
    );
    let (a, b): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (a.to_vec2().unwrap(), b.to_vec2().unwrap());
    let diff = max_abs_diff(a.iter().flatten(), b.iter().flatten());
    assert!(
        diff > 1e-4,
        "the fine-tuned run embeds as the pretrained model"
    );
    let e = taper::nlp::SentenceEncoder::load_run(&model, &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("model.json"), "{e}");
}

#[test]
fn bad_model_folders_and_corpora_are_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("docs.txt");
    std::fs::write(&corpus, "one\ntwo\n").unwrap();
    let c = corpus.to_str().unwrap();
    // A query against `corpus` with the model folder `model`: (succeeded, stderr).
    let query = |model: &Path, corpus: &str| {
        let out = run(&[
            "--model",
            model.to_str().unwrap(),
            "--corpus",
            corpus,
            "--query",
            "x",
        ]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, err) = query(&empty, c);
    assert!(
        !ok && err.contains("config.json") && !err.contains("panicked"),
        "{err}"
    );
    let model = tmp.path().join("model");
    write_model(&model);
    std::fs::write(model.join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    let (ok, err) = query(&model, c);
    assert!(!ok && err.contains("gpt2"), "{err}");
    // A tokenizer with more ids than the embedding matrix has rows.
    write_model_with(&model, Some(10));
    let (ok, err) = query(&model, c);
    assert!(
        !ok && err.contains("tokenizer.json") && err.contains("10 rows"),
        "{err}"
    );
    write_model(&model);
    let blank = tmp.path().join("blank.txt");
    std::fs::write(&blank, "\n  \n").unwrap();
    let (ok, err) = query(&model, blank.to_str().unwrap());
    assert!(
        !ok && err.contains("blank.txt") && err.contains("no document"),
        "{err}"
    );
    // A query far longer than the model's 32 tokens is cut, not refused.
    let long = "word ".repeat(500);
    let out = run(&[
        "--model",
        model.to_str().unwrap(),
        "--corpus",
        c,
        "--query",
        &long,
        "--index",
        tmp.path().join("i").to_str().unwrap(),
    ]);
    common::assert_succeeded(&out);
}

/// Stops training after the first epoch, as an interruption would (with the same
/// settings, so a resume must continue exactly).
struct StopAfterFirstEpoch;
impl taper::train::trainer::Callback for StopAfterFirstEpoch {
    fn on_epoch_end(
        &mut self,
        _: &taper::train::record::EpochRecord,
    ) -> taper::train::Result<taper::train::trainer::Control> {
        Ok(taper::train::trainer::Control::Stop)
    }
}

/// Fine-tuning resumes exactly: two epochs stopped after the first and resumed
/// from the checkpoint end with weights equal, bit for bit, to two epochs run at
/// once (dropout, data order, optimizer and schedule state all carried over).
#[test]
fn fine_tuning_resumes_exactly() {
    use taper::nlp::finetune::{self, MultipleNegativesRanking, PairBatcher, TextPairs};
    use taper::train::data::{DataLoader, LoaderConfig};
    use taper::train::{Trainer, TrainerConfig};

    let tmp = tempfile::tempdir().unwrap();
    let model_dir = tmp.path().join("model");
    write_model(&model_dir);
    let pairs: Vec<(String, String)> = DOCS
        .iter()
        .flat_map(|d| {
            [
                (d.to_string(), format!("{d} now")),
                (format!("{d} again"), d.to_string()),
            ]
        })
        .collect();
    let train = || {
        DataLoader::from_dataset(
            TextPairs(pairs.clone()),
            PairBatcher,
            LoaderConfig {
                drop_last: true,
                ..LoaderConfig::train(4, 5)
            },
        )
        .unwrap()
    };
    let fit = |run: &Path, resume: bool, stop: bool| {
        let model = taper::nlp::SentenceEncoder::load(&model_dir, &Device::Cpu).unwrap();
        let loader = train();
        let mut opt = finetune::optimizers(&model, 1e-3, 2 * loader.num_batches());
        let mut mnrl = MultipleNegativesRanking { model, scale: 20.0 };
        let mut trainer = Trainer::new(TrainerConfig {
            epochs: 2,
            run_dir: Some(run.to_path_buf()),
            seed: 3,
            resume,
            verbose: false,
            ..Default::default()
        });
        if stop {
            trainer = trainer.with_callback(StopAfterFirstEpoch);
        }
        trainer.fit(&mut mnrl, &mut opt, &loader, None).unwrap()
    };
    let (whole, split) = (tmp.path().join("whole"), tmp.path().join("split"));
    assert_eq!(fit(&whole, false, false).history.len(), 2);
    assert_eq!(fit(&split, false, true).history.len(), 1);
    fit(&split, true, false);
    let weights = |run: &Path| {
        let ck = taper::train::checkpoint::read(run, "latest")
            .unwrap()
            .unwrap();
        assert_eq!(ck.state.epoch, 2, "{}", run.display());
        std::fs::read(ck.weights_path()).unwrap()
    };
    assert!(
        weights(&whole) == weights(&split),
        "a resumed fine-tuning run differs from an uninterrupted one"
    );
}

/// A corpus of several batches embeds to the same bits on one thread and on two
/// (the batches then run side by side), each row in the caller's order: equal
/// to that text embedded alone, up to the rounding that padding to the batch's
/// length brings.
#[test]
fn corpus_embeddings_do_not_depend_on_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path());
    let model = taper::nlp::SentenceEncoder::load(dir.path(), &Device::Cpu).unwrap();
    // Lengths interleaved, so sorting by length reorders them.
    let texts: Vec<String> = (0..23)
        .map(|i| DOCS[..=i % DOCS.len()].join(" ; "))
        .collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let on = |threads: usize| -> Vec<Vec<f32>> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| model.embed(&texts, 4).unwrap().to_vec2().unwrap())
    };
    let (one, two) = (on(1), on(2));
    assert_eq!(one.len(), texts.len());
    assert!(one == two, "embeddings differ between 1 and 2 threads");
    // One batch of 20 is cut in two to run side by side, on any thread count
    // alike: the same rows as the corpus run's.
    let single = |threads: usize| -> Vec<Vec<f32>> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| model.embed(&texts[..20], 32).unwrap().to_vec2().unwrap())
    };
    let (s1, s2) = (single(1), single(2));
    assert!(
        s1 == s2,
        "a single batch's embeddings differ between 1 and 2 threads"
    );
    for (a, b) in s1.iter().zip(&one) {
        let diff = max_abs_diff(a, b);
        assert!(
            diff < 1e-5,
            "a single batch's row is {diff} away from the corpus run's"
        );
    }
    for (i, row) in one.iter().enumerate() {
        let alone: Vec<f32> = model.embed(&texts[i..=i], 1).unwrap().to_vec2().unwrap()[0].clone();
        let diff = max_abs_diff(row, &alone);
        assert!(
            diff < 1e-5,
            "text {i}: {diff} away from its embedding alone"
        );
    }
}

/// `embed` runs on graph-free copies of the weights that share the variables'
/// storage: an update of the variables (an optimizer step, a checkpoint load)
/// shows in its embeddings at once, equal to the differentiable path's.
#[test]
fn embeddings_follow_updates_of_the_variables() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path());
    let model = taper::nlp::SentenceEncoder::load(dir.path(), &Device::Cpu).unwrap();
    let texts = &DOCS[..3];
    let before = model.embed(texts, 8).unwrap().to_vec2::<f32>().unwrap();
    // Halve every weight in place, as optimizers and checkpoint loads write.
    for var in model.varmap().all_vars() {
        var.set(&(var.as_tensor() * 0.5).unwrap()).unwrap();
    }
    let after = model.embed(texts, 8).unwrap().to_vec2::<f32>().unwrap();
    let tracked = model
        .embed_batch(texts, &taper::nn::Mode::eval())
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_ne!(before, after, "embed did not see the update");
    for (a, t) in after.iter().zip(&tracked) {
        let diff = max_abs_diff(a, t);
        assert!(
            diff < 1e-5,
            "embed is {diff} away from the variables' own forward pass"
        );
    }
}
