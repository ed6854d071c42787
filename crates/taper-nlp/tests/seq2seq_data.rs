//! Parallel corpora (bad input), codecs, batches, and a small end-to-end run of
//! the date task through taper-train's Trainer.

use candle_core::{DType, Device};
use candle_nn::VarMap;
use std::path::Path;
use std::sync::Arc;
use taper_nlp::data::{
    generate_dates, source_batch, BucketedPairs, EncodedPairs, PairFilter, ParallelCorpus,
    Seq2SeqBatch, TextCodec, ENG_PREFIXES,
};
use taper_nlp::metrics::BleuStats;
use taper_nlp::seq2seq::{
    greedy, rnn_seq2seq, AttentionKind, CellKind, RnnSeq2SeqConfig, Seq2SeqTrainer, Source,
    TeacherForcing,
};
use taper_nlp::Error;
use taper_train::data::{DataLoader, LoaderConfig};
use taper_train::optim::{named_vars, Adam, AdamConfig};
use taper_train::{Optimizers, Trainer, TrainerConfig};

fn parse(text: &str, filter: &PairFilter) -> taper_nlp::Result<ParallelCorpus> {
    ParallelCorpus::parse(Path::new("pairs.txt"), text, filter)
}

#[test]
fn parallel_corpus_reads_filters_and_reports_bad_lines() {
    let text = "Go.\tVa !\nI am cold.\tJ'ai froid.\n\nHe's tall.\tIl est grand.\tCC-BY\n";
    let all = parse(text, &PairFilter::default()).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all.pairs[2].1, "Il est grand.");
    let pre = PairFilter {
        prefixes: ENG_PREFIXES.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let kept = parse(text, &pre).unwrap();
    assert_eq!(kept.pairs.len(), 2, "{:?}", kept.pairs);
    let short = PairFilter {
        max_words: Some(2),
        ..Default::default()
    };
    assert_eq!(parse(text, &short).unwrap().len(), 1);

    let e = parse("Go.\tVa !\nno tab here\n", &PairFilter::default()).unwrap_err();
    assert!(matches!(e, Error::Parse { line: 2, .. }), "{e}");
    assert!(e.to_string().contains("pairs.txt: line 2: no tab"), "{e}");
    let e = parse("Go.\t \n", &PairFilter::default()).unwrap_err();
    assert!(e.to_string().contains("line 1: empty target"), "{e}");
    let e = parse("\tVa !\n", &PairFilter::default()).unwrap_err();
    assert!(e.to_string().contains("line 1: empty source"), "{e}");
    let none = PairFilter {
        prefixes: vec!["zzz".into()],
        ..Default::default()
    };
    let e = parse(text, &none).unwrap_err();
    assert!(matches!(e, Error::NoData(_)), "{e}");
    let e = ParallelCorpus::read(
        Path::new("/nonexistent/eng-fra.txt"),
        &PairFilter::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/eng-fra.txt"), "{e}");
}

#[test]
fn codecs_round_trip_and_refuse_a_different_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let texts = [
        "Je suis content.",
        "Il est là, je suis là.",
        "Je suis grand.",
    ];
    let words = TextCodec::train_words(&texts, 100, 1).unwrap();
    let ids = words.encode("je suis là.").unwrap();
    assert_eq!(words.decode(&ids), "je suis là .");
    assert_eq!(
        words.normalize("Je suis inconnu.").unwrap(),
        "je suis inconnu ."
    );
    let p = dir.path().join("tgt_vocab.json");
    words.save(&p).unwrap();
    let back = TextCodec::load(&p).unwrap();
    assert_eq!(back.fingerprint(), words.fingerprint());
    back.check_matches(words.len(), &words.fingerprint(), "tgt_vocab.json")
        .unwrap();

    let chars = TextCodec::chars(generate_dates(50, 1).iter().map(|p| p.0.as_str())).unwrap();
    let cp = dir.path().join("src_vocab.json");
    chars.save(&cp).unwrap();
    let cb = TextCodec::load(&cp).unwrap();
    assert_eq!(cb.decode(&cb.encode("29 Nov").unwrap()), "29 Nov");
    let e = cb
        .check_matches(words.len(), &words.fingerprint(), "src_vocab.json")
        .unwrap_err();
    assert!(matches!(e, Error::VocabMismatch(_)), "{e}");
    assert!(e.to_string().contains("src_vocab.json"), "{e}");

    std::fs::write(&cp, "{not json").unwrap();
    assert!(matches!(TextCodec::load(&cp), Err(Error::Parse { .. })));
}

#[test]
fn batches_pad_and_mark_targets() {
    let b = Seq2SeqBatch::new(&[&[5, 6, 7], &[8]], &[&[9], &[10, 11]], &Device::Cpu).unwrap();
    assert_eq!(b.src_lens, vec![3, 1]);
    assert_eq!(
        b.tgt_in.to_vec2::<u32>().unwrap(),
        vec![vec![2, 9, 0], vec![2, 10, 11]]
    );
    assert_eq!(
        b.tgt_out.to_vec2::<u32>().unwrap(),
        vec![vec![9, 3, 0], vec![10, 11, 3]]
    );
    assert_eq!(b.tokens, 5);
    assert_eq!(
        b.src_mask.to_vec2::<f32>().unwrap(),
        vec![vec![1.0, 1.0, 1.0], vec![1.0, 0.0, 0.0]]
    );
}

/// The date task at small scale: a few hundred steps of a small LSTM + additive
/// attention reach most held-out dates exactly.
#[test]
fn date_task_trains_end_to_end() {
    let dev = Device::Cpu;
    let pairs = generate_dates(3000, 5);
    let (train, test) = pairs.split_at(2700);
    let src = TextCodec::chars(pairs.iter().map(|p| p.0.as_str())).unwrap();
    let tgt = TextCodec::chars(pairs.iter().map(|p| p.1.as_str())).unwrap();
    let (tr, _) = EncodedPairs::encode(train, &src, &tgt, 30, 12).unwrap();
    let (te, _) = EncodedPairs::encode(test, &src, &tgt, 30, 12).unwrap();
    let varmap = VarMap::new();
    let vb = taper_nn::init::seeded_var_builder(&varmap, 3, DType::F32, &dev);
    let model = rnn_seq2seq(
        RnnSeq2SeqConfig {
            cell: CellKind::Lstm,
            src_vocab: src.len(),
            tgt_vocab: tgt.len(),
            emb: 16,
            hidden: 64,
            enc_layers: 1,
            dec_layers: 1,
            bidirectional: true,
            attention: AttentionKind::Additive,
            dropout: 0.0,
            max_src_len: 30,
            max_tgt_len: 12,
        },
        vb,
    )
    .unwrap();
    let te = Arc::new(te);
    let train_loader = DataLoader::new(
        BucketedPairs::new(Arc::new(tr), 32, 3, &dev),
        LoaderConfig::train(1, 3),
    )
    .unwrap();
    let mut task = Seq2SeqTrainer {
        model: Box::new(model),
        varmap: varmap.clone(),
        label_smoothing: 0.0,
        teacher_forcing: TeacherForcing {
            start: 1.0,
            end: 0.9,
            steps: 200,
        },
        seed: 3,
        valid_bleu: true,
    };
    let adam = Adam::new(
        named_vars(&varmap, ""),
        AdamConfig {
            lr: 5e-3,
            ..Default::default()
        },
    );
    let mut opt = Optimizers::single(adam);
    let mut trainer = Trainer::new(TrainerConfig {
        epochs: 3,
        progress: false,
        verbose: false,
        ..Default::default()
    });
    let report = trainer
        .fit(&mut task, &mut opt, &train_loader, None)
        .unwrap();
    let loss = report.last().unwrap().train["loss"];
    assert!(loss < 0.3, "training loss {loss}");
    let rows: Vec<&[u32]> = te.src.iter().map(|r| r.as_slice()).collect();
    let (ids, mask, lens) = source_batch(&rows, &dev).unwrap();
    let out = greedy(
        task.model.as_ref(),
        Source {
            ids: &ids,
            mask: &mask,
            lens: &lens,
        },
        12,
        false,
    )
    .unwrap();
    let exact = out
        .ids
        .iter()
        .zip(test)
        .filter(|(o, p)| tgt.decode(o) == p.1)
        .count() as f64
        / test.len() as f64;
    assert!(exact > 0.8, "held-out exact match {exact}");

    // The validation BLEU the trainer reports, summed over 5 batches, is the
    // corpus BLEU of the same greedy outputs against the target ids.
    let mut expected = BleuStats::default();
    for (h, r) in out.ids.iter().zip(&te.tgt) {
        expected.add_sentence(h, &[r.as_slice()]);
    }
    let expected = expected.score().score;
    assert!(expected > 80.0, "held-out BLEU {expected}");
    let test_loader = DataLoader::new(
        BucketedPairs::new(te.clone(), 64, 3, &dev),
        LoaderConfig::eval(1),
    )
    .unwrap();
    let m = Trainer::evaluate(&mut task, &test_loader).unwrap();
    let bleu = m.mean("token_bleu").unwrap();
    assert!((bleu - expected).abs() < 1e-9, "{bleu} against {expected}");
    assert!(m.means().keys().all(|k| !k.starts_with("_bleu")));
    task.valid_bleu = false;
    let m = Trainer::evaluate(&mut task, &test_loader).unwrap();
    assert!(m.mean("token_bleu").is_none() && m.mean("nll").is_some());
}
