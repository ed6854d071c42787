//! Corpora, vocabularies and tokenizers, on text the tests write themselves.

use candle_core::Device;
use std::path::{Path, PathBuf};
use taper_nlp::tokenizer::{Normalization, Padding};
use taper_nlp::{
    Corpus, CorpusOptions, Error, Tokenizer, TokenizerConfig, TokenizerKind, Vocab, VocabConfig,
};

/// A few hundred lines of varied English-like text, deterministic.
fn sample_text() -> String {
    let subjects = [
        "The cat",
        "A dog",
        "My neighbour",
        "The old teacher",
        "Our team",
        "Élodie",
    ];
    let verbs = [
        "watches",
        "finds",
        "builds",
        "paints",
        "remembers",
        "follows",
    ];
    let objects = [
        "the river",
        "a small boat",
        "three red houses",
        "the morning train",
        "a new song",
        "the café near the station",
    ];
    let ends = [".", "!", " today.", " again, slowly.", " (twice).", "?"];
    let mut out = String::new();
    let mut k = 7usize;
    for _ in 0..400 {
        k = k
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
            >> 1;
        out.push_str(&format!(
            "{} {} {}{}\n",
            subjects[k % 6],
            verbs[(k / 7) % 6],
            objects[(k / 49) % 6],
            ends[(k / 343) % 6]
        ));
    }
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write test file");
    p
}

#[test]
fn corpus_splits_lines_and_words() {
    let c = Corpus::from_text(
        "mem",
        "a b  c\n\n d a\nA\n".into(),
        &CorpusOptions {
            lowercase: true,
            max_sentence_len: 2,
        },
    )
    .unwrap();
    assert_eq!(c.num_words(), 6);
    let sentences: Vec<Vec<&str>> = c.sentences().map(|s| s.collect()).collect();
    // "a b c" cut after two words; the empty line gives no sentence.
    assert_eq!(
        sentences,
        vec![vec!["a", "b"], vec!["c"], vec!["d", "a"], vec!["a"]]
    );
    assert_eq!(c.counts()["a"], 3);
}

#[test]
fn corpus_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(dir.path(), "empty.txt", b"  \n\n\t\n");
    match Corpus::from_file(&empty, &CorpusOptions::default()) {
        Err(Error::EmptyCorpus { source_name }) => assert!(source_name.contains("empty.txt")),
        other => panic!("expected EmptyCorpus, got {other:?}"),
    }
    let latin1 = write(dir.path(), "latin1.txt", b"good line\ncaf\xe9 au lait\n");
    match Corpus::from_file(&latin1, &CorpusOptions::default()) {
        Err(e @ Error::NotUtf8 { line, .. }) => {
            assert_eq!(line, 2);
            assert!(e.to_string().contains("latin1.txt"), "{e}");
        }
        other => panic!("expected NotUtf8, got {other:?}"),
    }
    let missing = dir.path().join("nope.txt");
    match Corpus::from_file(&missing, &CorpusOptions::default()) {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("nope.txt")),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn vocab_counts_min_count_max_size_and_specials() {
    let c = Corpus::from_text(
        "mem",
        "the cat sat on the mat\nthe dog sat\nzebra".into(),
        &CorpusOptions::default(),
    )
    .unwrap();
    let v = Vocab::from_corpus(
        &c,
        &VocabConfig {
            min_count: 2,
            max_size: None,
            ..Default::default()
        },
    )
    .unwrap();
    // pad, unk, then by count: the (3), sat (2).
    assert_eq!(v.words(), &["<pad>", "<unk>", "the", "sat"]);
    assert_eq!(v.counts(), &[0, 0, 3, 2]);
    assert_eq!((v.pad_id(), v.unk_id()), (Some(0), Some(1)));
    assert_eq!(v.encode(["the", "zebra", "sat"]), vec![2, 1, 3]);
    assert_eq!(v.decode(&[2, 3]), vec!["the", "sat"]);
    assert!(matches!(v.id("zebra"), Err(Error::UnknownWord(w)) if w == "zebra"));

    let small = Vocab::from_corpus(
        &c,
        &VocabConfig {
            min_count: 1,
            max_size: Some(3),
            unk_token: None,
            pad_token: None,
        },
    )
    .unwrap();
    // Ties (count 1) are broken in byte order: cat < dog < mat < on < zebra.
    assert_eq!(small.words(), &["the", "sat", "cat"]);
    // Without an unknown token, left-out words are dropped.
    assert_eq!(small.encode(["the", "zebra", "cat"]), vec![0, 2]);

    let (ids, mask) = v
        .encode_padded(&[vec!["the", "sat", "the"], vec!["sat"]], None)
        .unwrap();
    assert_eq!(ids, vec![vec![2, 3, 2], vec![3, 0, 0]]);
    assert_eq!(mask, vec![vec![1, 1, 1], vec![1, 0, 0]]);
    let (ids, _) = v
        .encode_padded(&[vec!["the", "sat", "the"]], Some(2))
        .unwrap();
    assert_eq!(ids, vec![vec![2, 3]]);
}

#[test]
fn vocab_all_under_min_count_is_a_clear_error() {
    let c = Corpus::from_text("tiny.txt", "a b c a".into(), &CorpusOptions::default()).unwrap();
    match Vocab::from_corpus(&c, &VocabConfig::plain(5)) {
        Err(e @ Error::AllBelowMinCount { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("tiny.txt") && msg.contains("min_count = 5"),
                "{msg}"
            );
            assert!(msg.contains("'a', 2 times"), "{msg}");
        }
        other => panic!("expected AllBelowMinCount, got {other:?}"),
    }
}

fn train(kind: TokenizerKind, dir: &Path, cfg: impl FnOnce(&mut TokenizerConfig)) -> Tokenizer {
    let file = write(dir, "train.txt", sample_text().as_bytes());
    let mut config = TokenizerConfig {
        kind,
        vocab_size: 300,
        min_frequency: 1,
        ..Default::default()
    };
    cfg(&mut config);
    Tokenizer::train(&config, &[file]).expect("train tokenizer")
}

#[test]
fn bpe_round_trips_text_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let tok = train(TokenizerKind::Bpe, dir.path(), |_| {});
    assert!(
        tok.vocab_size() <= 300 && tok.vocab_size() > 256,
        "{}",
        tok.vocab_size()
    );
    assert_eq!(tok.token_to_id("[PAD]"), Some(0));
    assert_eq!(tok.pad_id(), 0);
    // Byte-level BPE decodes to the exact text, even unseen characters.
    for text in [
        "The cat finds a small boat today.",
        "Zürich ∑ 42 — naïve 猫",
    ] {
        let ids = tok.encode(text, true).unwrap();
        assert_eq!(tok.decode(&ids, true).unwrap(), text);
    }
    // Frequent words (with their leading space, byte-level style) become single
    // tokens after training.
    let ids = tok.encode(" the", false).unwrap();
    assert_eq!(ids.len(), 1, "{:?}", tok.tokens(" the", false));

    let path = dir.path().join("tokenizer.json");
    tok.save(&path).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["model"]["type"], "BPE");
    let back = Tokenizer::load(&path).unwrap();
    let texts = [
        "Our team paints the river again, slowly.",
        "Élodie remembers (twice).",
    ];
    for t in texts {
        assert_eq!(back.encode(t, true).unwrap(), tok.encode(t, true).unwrap());
        assert_eq!(back.tokens(t, true).unwrap(), tok.tokens(t, true).unwrap());
    }
    let a = tok.encode_batch(&texts, true, &Device::Cpu).unwrap();
    let b = back.encode_batch(&texts, true, &Device::Cpu).unwrap();
    assert_eq!(
        a.input_ids.to_vec2::<u32>().unwrap(),
        b.input_ids.to_vec2::<u32>().unwrap()
    );
}

#[test]
fn wordpiece_normalises_wraps_and_knows_unknowns() {
    let dir = tempfile::tempdir().unwrap();
    let tok = train(TokenizerKind::WordPiece, dir.path(), |c| {
        c.lowercase = true;
        c.strip_accents = true;
        c.normalization = Normalization::Nfkc;
        c.wrap = Some(("[CLS]".into(), "[SEP]".into()));
        c.special_tokens = vec!["[MASK]".into()];
    });
    // Special tokens come first, in order.
    for (i, t) in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .enumerate()
    {
        assert_eq!(tok.token_to_id(t), Some(i as u32), "{t}");
    }
    let tokens = tok.tokens("THE CAT watches ÉLODIE", true).unwrap();
    assert_eq!(tokens.first().map(String::as_str), Some("[CLS]"));
    assert_eq!(tokens.last().map(String::as_str), Some("[SEP]"));
    assert!(
        tokens.contains(&"the".to_string()) && tokens.contains(&"cat".to_string()),
        "{tokens:?}"
    );
    // Accents stripped and lower-cased: "élodie" is learnt as "elodie" pieces.
    assert!(
        tokens.iter().all(|t| !t.contains('É') && !t.contains('é')),
        "{tokens:?}"
    );
    // A character never seen in training is unknown.
    let ids = tok.encode("猫", false).unwrap();
    assert_eq!(ids, vec![1]);
    let ids = tok.encode("the cat", true).unwrap();
    assert_eq!(tok.decode(&ids, true).unwrap(), "the cat");
}

#[test]
fn word_level_maps_words_and_unknowns() {
    let dir = tempfile::tempdir().unwrap();
    let tok = train(TokenizerKind::WordLevel, dir.path(), |c| {
        c.vocab_size = 1000
    });
    let tokens = tok.tokens("The cat finds the river.", false).unwrap();
    assert_eq!(tokens, vec!["The", "cat", "finds", "the", "river", "."]);
    let ids = tok.encode("The cat finds a hippopotamus", false).unwrap();
    assert_eq!(ids.len(), 5);
    assert_eq!(ids[4], tok.token_to_id("[UNK]").unwrap());
    assert_eq!(tok.decode(&ids[..3], false).unwrap(), "The cat finds");
}

#[test]
fn batches_are_padded_masked_and_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let mut tok = train(TokenizerKind::WordLevel, dir.path(), |c| {
        c.vocab_size = 1000;
        c.wrap = Some(("<s>".into(), "</s>".into()));
    });
    let texts = ["The cat", "A dog finds the small boat today", "river"];
    let single: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t, true).unwrap()).collect();
    let b = tok.encode_batch(&texts, true, &Device::Cpu).unwrap();
    let ids = b.input_ids.to_vec2::<u32>().unwrap();
    let mask = b.attention_mask.to_vec2::<u32>().unwrap();
    let longest = single.iter().map(Vec::len).max().unwrap();
    assert_eq!(b.input_ids.dims(), &[3, longest]);
    assert_eq!(b.attention_mask.dims(), &[3, longest]);
    for (i, s) in single.iter().enumerate() {
        assert_eq!(b.lengths[i], s.len());
        assert_eq!(
            &ids[i][..s.len()],
            &s[..],
            "row {i} starts with its own ids"
        );
        assert!(
            ids[i][s.len()..].iter().all(|&x| x == tok.pad_id()),
            "padding ids"
        );
        assert!(mask[i][..s.len()].iter().all(|&m| m == 1));
        assert!(mask[i][s.len()..].iter().all(|&m| m == 0));
    }
    assert_eq!(b.type_ids.dims(), &[3, longest]);

    // Fixed length with truncation: every row is 4 ids, long ones still end with </s>.
    tok.set_padding(Padding::Fixed(4));
    tok.set_truncation(Some(4)).unwrap();
    let b = tok.encode_batch(&texts, true, &Device::Cpu).unwrap();
    let ids = b.input_ids.to_vec2::<u32>().unwrap();
    assert_eq!(b.input_ids.dims(), &[3, 4]);
    let eos = tok.token_to_id("</s>").unwrap();
    assert_eq!(ids[1][3], eos);
    assert_eq!(b.lengths, vec![4, 4, 3]);
    assert_eq!(
        b.attention_mask.to_vec2::<u32>().unwrap()[2],
        vec![1, 1, 1, 0]
    );
    // The settings travel with tokenizer.json, as in Hugging Face's format.
    let path = dir.path().join("tok.json");
    tok.save(&path).unwrap();
    let back = Tokenizer::load(&path).unwrap();
    let b2 = back.encode_batch(&texts, true, &Device::Cpu).unwrap();
    assert_eq!(b2.input_ids.to_vec2::<u32>().unwrap(), ids);
    assert!(tok.set_truncation(Some(0)).is_err());
}

#[test]
fn tokenizer_bad_inputs_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "broken.json",
        b"{\"model\": {\"type\": \"BPE\", \"vocab\": 3",
    );
    match Tokenizer::load(&bad) {
        Err(e @ Error::Tokenizer { .. }) => assert!(e.to_string().contains("broken.json"), "{e}"),
        other => panic!("expected Tokenizer error, got {other:?}"),
    }
    let not_tok = write(dir.path(), "other.json", b"{\"hello\": 1}");
    assert!(matches!(
        Tokenizer::load(&not_tok),
        Err(Error::Tokenizer { .. })
    ));
    let bin = write(dir.path(), "bin.txt", b"ok\n\xff\xfe\n");
    let cfg = TokenizerConfig::default();
    match Tokenizer::train(&cfg, &[&bin]) {
        Err(e @ Error::NotUtf8 { line: 2, .. }) => assert!(e.to_string().contains("bin.txt")),
        other => panic!("expected NotUtf8, got {other:?}"),
    }
    let empty = write(dir.path(), "empty.txt", b"\n\n");
    assert!(matches!(
        Tokenizer::train(&cfg, &[&empty]),
        Err(Error::EmptyCorpus { .. })
    ));
    let tiny = TokenizerConfig {
        vocab_size: 2,
        ..Default::default()
    };
    let ok = write(dir.path(), "ok.txt", b"some text\n");
    assert!(matches!(
        Tokenizer::train(&tiny, &[&ok]),
        Err(Error::Config(_))
    ));
    let tok = Tokenizer::train(&cfg, &[&ok]).unwrap();
    assert!(matches!(
        tok.encode_batch(&[], true, &Device::Cpu),
        Err(Error::Config(_))
    ));
}

/// Tokenizer training on Penn Treebank, when the shared data is there.
#[test]
fn bpe_on_ptb_compresses_text() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    let ptb = root.join("text/ptb.valid.txt");
    if !ptb.is_file() {
        println!(
            "skipped: bpe_on_ptb_compresses_text because {} is absent",
            ptb.display()
        );
        return;
    }
    let cfg = TokenizerConfig {
        vocab_size: 2000,
        ..Default::default()
    };
    let tok = Tokenizer::train(&cfg, &[&ptb]).unwrap();
    let text = std::fs::read_to_string(&ptb).unwrap();
    let lines: Vec<&str> = text.lines().take(500).collect();
    let words: usize = lines.iter().map(|l| l.split_whitespace().count()).sum();
    let b = tok.encode_batch(&lines, false, &Device::Cpu).unwrap();
    let tokens: usize = b.lengths.iter().sum();
    // A trained sub-word vocabulary needs well under two tokens a word.
    assert!(tokens < 2 * words, "{tokens} tokens for {words} words");
    for l in lines.iter().take(50) {
        let ids = tok.encode(l, false).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), *l);
    }
}

/// Found by `make fuzz`: malformed JSON inside the decoder section made the
/// tokenizers crate panic; loading it must be a clear error naming the file.
#[test]
fn fuzzed_tokenizer_json_is_an_error_not_a_panic() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz_tokenizer_decoder_panic.json");
    let e = match taper_nlp::Tokenizer::load(&p) {
        Ok(_) => panic!("must be refused"),
        Err(e) => e,
    };
    let msg = e.to_string();
    assert!(
        msg.contains("fuzz_tokenizer_decoder_panic.json") && msg.contains("not valid JSON"),
        "{msg}"
    );
}
