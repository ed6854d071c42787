//! word2vec (both paths), word vectors, the text format and WordSim evaluation.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use std::path::Path;
use taper_nlp::eval::{evaluate_word_pairs, load_word_pairs, pearson, spearman, WordPair};
use taper_nlp::word2vec::{
    train_candle, train_native, CandleOptimizer, CandleOptions, PreparedCorpus, Word2VecNet,
};
use taper_nlp::{Architecture, Corpus, CorpusOptions, Error, Vocab, Word2VecConfig, WordVectors};
use taper_train::data::TensorBatch;
use taper_train::optim::{named_vars, Sgd, SgdConfig};
use taper_train::schedule::Constant;
use taper_train::{clip::Clip, LossModel, Optimizers};

const GROUPS: [[&str; 5]; 6] = [
    ["cat", "dog", "horse", "cow", "sheep"],
    ["red", "blue", "green", "yellow", "purple"],
    ["one", "two", "three", "four", "five"],
    ["paris", "london", "rome", "berlin", "madrid"],
    ["apple", "pear", "plum", "cherry", "grape"],
    ["car", "bus", "train", "truck", "bike"],
];
const FILLER: [&str; 5] = ["the", "a", "of", "and", "is"];

/// Sentences that each talk about one group: 70 % of their words come from it,
/// the rest are filler words shared by all. Words of a group co-occur, words of
/// different groups never do.
fn planted_corpus(sentences: usize) -> Corpus {
    let mut rng = taper_nlp::word2vec::Rng::new(7, &[]);
    let mut text = String::new();
    for _ in 0..sentences {
        let g = rng.below(GROUPS.len());
        for i in 0..10 {
            let w = if rng.unit() < 0.7 {
                GROUPS[g][rng.below(5)]
            } else {
                FILLER[rng.below(5)]
            };
            if i > 0 {
                text.push(' ');
            }
            text.push_str(w);
        }
        text.push('\n');
    }
    Corpus::from_text("planted", text, &CorpusOptions::default()).unwrap()
}

fn small_config(arch: Architecture) -> Word2VecConfig {
    Word2VecConfig {
        arch,
        dim: 24,
        window: 3,
        negative: 5,
        epochs: 5,
        min_count: 1,
        threads: 2,
        seed: 3,
        ..Default::default()
    }
}

fn group_of(w: &str) -> Option<usize> {
    GROUPS.iter().position(|g| g.contains(&w))
}

/// Share of group words whose nearest neighbour is in their own group, and the
/// mean cosine within groups minus across groups.
fn planted_scores(v: &WordVectors) -> (f64, f64) {
    let mut hits = 0;
    let (mut within, mut nw, mut across, mut na) = (0.0, 0, 0.0, 0);
    for (g, group) in GROUPS.iter().enumerate() {
        for w in group {
            let nn = v.most_similar(w, 1).unwrap();
            if group_of(&nn[0].0) == Some(g) {
                hits += 1;
            }
            for (h, other) in GROUPS.iter().enumerate() {
                for o in other {
                    if o == w {
                        continue;
                    }
                    let s = v.similarity(w, o).unwrap() as f64;
                    if h == g {
                        within += s;
                        nw += 1;
                    } else {
                        across += s;
                        na += 1;
                    }
                }
            }
        }
    }
    (hits as f64 / 30.0, within / nw as f64 - across / na as f64)
}

#[test]
fn native_skipgram_and_cbow_find_the_planted_groups() {
    let corpus = planted_corpus(4000);
    for arch in [Architecture::SkipGram, Architecture::Cbow] {
        let cfg = small_config(arch);
        let prep = PreparedCorpus::new(&corpus, &cfg).unwrap();
        assert_eq!(prep.vocab.len(), 35);
        let (v, stats) = train_native(&prep, &cfg).unwrap();
        let (hits, margin) = planted_scores(&v);
        assert!(
            hits >= 0.95,
            "{arch:?}: {hits} of group words have a group neighbour"
        );
        assert!(
            margin > 0.3,
            "{arch:?}: within-minus-across cosine {margin}"
        );
        assert_eq!(stats.words, 5 * 40_000);
        // Subsampling dropped part of the frequent words.
        assert!(stats.effective_words < stats.words && stats.effective_words > stats.words / 10);
    }
}

#[test]
fn native_single_thread_is_a_function_of_the_seed() {
    let corpus = planted_corpus(500);
    let cfg = Word2VecConfig {
        threads: 1,
        epochs: 2,
        ..small_config(Architecture::SkipGram)
    };
    let prep = PreparedCorpus::new(&corpus, &cfg).unwrap();
    let (a, _) = train_native(&prep, &cfg).unwrap();
    let (b, _) = train_native(&prep, &cfg).unwrap();
    assert_eq!(a.as_slice(), b.as_slice());
    let other = Word2VecConfig { seed: 4, ..cfg };
    let (c, _) = train_native(&prep, &other).unwrap();
    assert_ne!(a.as_slice(), c.as_slice());
}

#[test]
fn candle_path_finds_the_planted_groups() {
    let corpus = planted_corpus(4000);
    for arch in [Architecture::SkipGram, Architecture::Cbow] {
        let cfg = small_config(arch);
        let prep = PreparedCorpus::new(&corpus, &cfg).unwrap();
        let opts = CandleOptions {
            optimizer: CandleOptimizer::Adam(0.01),
            batch_size: 256,
            ..Default::default()
        };
        let (v, stats, report) = train_candle(&prep, &cfg, &opts).unwrap();
        let (hits, margin) = planted_scores(&v);
        assert!(
            hits >= 0.95,
            "{arch:?}: {hits} of group words have a group neighbour"
        );
        assert!(
            margin > 0.3,
            "{arch:?}: within-minus-across cosine {margin}"
        );
        let first = report.history[0].train["loss"];
        let last = report.last().unwrap().train["loss"];
        assert!(last < first, "{arch:?}: loss {first} -> {last}");
        assert_eq!(stats.words, 5 * 40_000);
    }
    // Plain SGD at word2vec's rate, on small batches.
    let cfg = Word2VecConfig {
        epochs: 3,
        ..small_config(Architecture::SkipGram)
    };
    let prep = PreparedCorpus::new(&planted_corpus(2000), &cfg).unwrap();
    let opts = CandleOptions {
        optimizer: CandleOptimizer::Sgd,
        batch_size: 32,
        ..Default::default()
    };
    let (v, _, _) = train_candle(&prep, &cfg, &opts).unwrap();
    let (hits, _) = planted_scores(&v);
    assert!(hits >= 0.9, "SGD: {hits}");
}

#[test]
fn candle_path_resumes_to_the_same_vectors() {
    let corpus = planted_corpus(600);
    let cfg = Word2VecConfig {
        epochs: 2,
        ..small_config(Architecture::SkipGram)
    };
    let prep = PreparedCorpus::new(&corpus, &cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = |name: &str| CandleOptions {
        optimizer: CandleOptimizer::Adam(0.01),
        batch_size: 128,
        run_dir: Some(dir.path().join(name)),
        ..Default::default()
    };
    let (whole, _, _) = train_candle(&prep, &cfg, &opts("whole")).unwrap();
    let first = CandleOptions {
        stop_after: Some(1),
        ..opts("split")
    };
    let (half, _, r1) = train_candle(&prep, &cfg, &first).unwrap();
    assert_eq!(r1.history.len(), 1);
    assert_ne!(half.as_slice(), whole.as_slice());
    let again = CandleOptions {
        resume: true,
        ..opts("split")
    };
    let (resumed, _, r2) = train_candle(&prep, &cfg, &again).unwrap();
    assert_eq!(r2.resumed_at, 1);
    assert_eq!(resumed.as_slice(), whole.as_slice());
    // The checkpoint holds the embeddings under PyTorch-style names.
    let ck = taper_train::checkpoint::read(&dir.path().join("split"), "latest")
        .unwrap()
        .unwrap();
    let t = taper_train::checkpoint::read_tensors(&ck.weights_path(), &Device::Cpu).unwrap();
    let mut names: Vec<_> = t.keys().cloned().collect();
    names.sort();
    assert_eq!(names, vec!["input.weight", "output.weight"]);
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One SGD step of the candle model at rate α on a single example equals the
/// word2vec update that the native loops apply.
#[test]
fn candle_gradient_is_the_word2vec_update() {
    let (vocab, dim, alpha) = (7usize, 5usize, 0.3f64);
    for arch in [Architecture::SkipGram, Architecture::Cbow] {
        let varmap = VarMap::new();
        let vb = taper_nn::init::seeded_var_builder(&varmap, 9, DType::F32, &Device::Cpu);
        let net = Word2VecNet::new(vocab, dim, arch, vb, varmap.clone()).unwrap();
        // Non-zero output vectors so that every term of the update matters.
        let out0 = Tensor::randn(0f32, 0.5, (vocab, dim), &Device::Cpu).unwrap();
        for (name, var) in named_vars(&varmap, "") {
            if name == "output.weight" {
                var.set(&out0).unwrap();
            }
        }
        let inp0 = net.input_weights().to_vec2::<f32>().unwrap();
        let out0 = out0.to_vec2::<f32>().unwrap();
        let (contexts, target, negs) = (vec![1u32, 4], 2u32, vec![3u32, 5, 6]);
        let batch = match arch {
            Architecture::SkipGram => TensorBatch::new(vec![
                Tensor::new(&[contexts[0]], &Device::Cpu).unwrap(),
                Tensor::new(&[target], &Device::Cpu).unwrap(),
                Tensor::new(&[[negs[0], negs[1], negs[2]]], &Device::Cpu).unwrap(),
            ]),
            Architecture::Cbow => TensorBatch::new(vec![
                Tensor::new(&[[contexts[0], contexts[1], 0, 0]], &Device::Cpu).unwrap(),
                Tensor::new(&[[1f32, 1.0, 0.0, 0.0]], &Device::Cpu).unwrap(),
                Tensor::new(&[target], &Device::Cpu).unwrap(),
                Tensor::new(&[[negs[0], negs[1], negs[2]]], &Device::Cpu).unwrap(),
            ]),
        }
        .unwrap();
        let used: Vec<u32> = match arch {
            Architecture::SkipGram => vec![contexts[0]],
            Architecture::Cbow => contexts.clone(),
        };
        // The update by hand, in f64.
        let h: Vec<f64> = (0..dim)
            .map(|d| {
                used.iter()
                    .map(|&c| inp0[c as usize][d] as f64)
                    .sum::<f64>()
                    / used.len() as f64
            })
            .collect();
        let mut inp = inp0
            .iter()
            .map(|r| r.iter().map(|&x| x as f64).collect())
            .collect::<Vec<Vec<f64>>>();
        let mut out = out0
            .iter()
            .map(|r| r.iter().map(|&x| x as f64).collect())
            .collect::<Vec<Vec<f64>>>();
        let mut neu1e = vec![0.0; dim];
        for (t, label) in std::iter::once((target, 1.0)).chain(negs.iter().map(|&n| (n, 0.0))) {
            let row = &mut out[t as usize];
            let f: f64 = (0..dim).map(|d| h[d] * row[d]).sum();
            let g = (label - sigmoid(f)) * alpha;
            for d in 0..dim {
                neu1e[d] += g * row[d];
                row[d] += g * h[d];
            }
        }
        for &c in &used {
            for d in 0..dim {
                inp[c as usize][d] += neu1e[d];
            }
        }
        let sgd = Sgd::new(
            named_vars(&varmap, ""),
            SgdConfig {
                lr: alpha,
                ..Default::default()
            },
        );
        let mut opt = Optimizers::new().with_group("model", sgd, Constant(alpha), Clip::None);
        let (loss, _) = net.loss(&batch, &taper_nn::Mode::train(0)).unwrap();
        opt.step_single(&loss).unwrap();
        let got_in = net.input_weights().to_vec2::<f32>().unwrap();
        let got_out = net.output_weights().to_vec2::<f32>().unwrap();
        for r in 0..vocab {
            for d in 0..dim {
                assert!(
                    (got_in[r][d] as f64 - inp[r][d]).abs() < 1e-5,
                    "{arch:?} input {r},{d}"
                );
                assert!(
                    (got_out[r][d] as f64 - out[r][d]).abs() < 1e-5,
                    "{arch:?} output {r},{d}"
                );
            }
        }
    }
}

fn toy_vectors() -> WordVectors {
    let words = ["king", "queen", "man", "woman", "apple"].map(String::from);
    let vocab = Vocab::from_words(words).unwrap();
    #[rustfmt::skip]
    let data = vec![
        1.0, 0.0, 1.0,
        0.0, 1.0, 1.0,
        2.0, 0.0, 0.0,
        0.0, 3.0, 0.0,
        -1.0, -1.0, 0.1,
    ];
    WordVectors::new(vocab, 3, data).unwrap()
}

#[test]
fn queries_neighbours_analogies_similarity() {
    let v = toy_vectors();
    // Cosine ignores length: man (2,0,0) and king (1,0,1) are at 45 degrees.
    let s = v.similarity("man", "king").unwrap();
    assert!((s - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    assert_eq!(s, v.similarity("king", "man").unwrap());
    let nn = v.most_similar("king", 4).unwrap();
    let names: Vec<&str> = nn.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(names, vec!["man", "queen", "woman", "apple"]);
    assert!(nn.windows(2).all(|p| p[0].1 >= p[1].1));
    assert_eq!(v.analogy("man", "king", "woman", 1).unwrap()[0].0, "queen");
    match v.most_similar("emperor", 3) {
        Err(e @ Error::UnknownWord(_)) => assert!(e.to_string().contains("emperor")),
        other => panic!("expected UnknownWord, got {other:?}"),
    }
    assert!(
        matches!(v.analogy("man", "king", "empress", 1), Err(Error::UnknownWord(w)) if w == "empress")
    );
    assert!(v.nearest_to_vector(&[1.0, 0.0], 2, &[]).is_err());
}

/// Skip-gram vectors after one epoch on the planted corpus.
fn one_epoch_vectors() -> WordVectors {
    let corpus = planted_corpus(300);
    let cfg = Word2VecConfig {
        epochs: 1,
        ..small_config(Architecture::SkipGram)
    };
    let prep = PreparedCorpus::new(&corpus, &cfg).unwrap();
    train_native(&prep, &cfg).unwrap().0
}

#[test]
fn text_format_round_trips_exactly() {
    let v = one_epoch_vectors();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vectors.txt");
    v.save_text(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text.lines().next(),
        Some(format!("{} {}", v.len(), v.dim()).as_str())
    );
    assert_eq!(text.lines().count(), v.len() + 1);
    let back = WordVectors::load_text(&path).unwrap();
    assert_eq!(back.vocab().words(), v.vocab().words());
    assert_eq!(back.as_slice(), v.as_slice());
    let t = back.to_tensor(&Device::Cpu).unwrap();
    assert_eq!(t.dims(), &[v.len(), v.dim()]);

    let spaced = WordVectors::new(
        Vocab::from_words(["new york".to_string()]).unwrap(),
        1,
        vec![1.0],
    )
    .unwrap();
    assert!(matches!(
        spaced.save_text(&dir.path().join("x.txt")),
        Err(Error::Config(_))
    ));
}

#[test]
fn malformed_vector_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, body: &str, line: usize, needle: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        match WordVectors::load_text(&p) {
            Err(e @ Error::VectorFormat { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(name), "{msg}");
                assert!(msg.contains(&format!("line {line}:")), "{msg}");
                assert!(msg.contains(needle), "{msg}");
            }
            other => panic!("{name}: expected VectorFormat, got {other:?}"),
        }
    };
    check(
        "dims.txt",
        "2 3\ncat 1 2 3\ndog 1 2\n",
        3,
        "word 'dog' has 2 values",
    );
    check("header.txt", "cat 1 2 3\n", 1, "bad header");
    check(
        "count.txt",
        "3 2\ncat 1 2\ndog 3 4\n",
        4,
        "announces 3 words",
    );
    check(
        "number.txt",
        "1 2\ncat 1 zwei\n",
        2,
        "'zwei' is not a number",
    );
    check("empty.txt", "", 1, "empty file");
    check("dup.txt", "2 1\ncat 1\ncat 2\n", 3, "appears twice");
    let bin = dir.path().join("bin.txt");
    std::fs::write(&bin, b"1 1\n\xffcat 1\n").unwrap();
    assert!(matches!(
        WordVectors::load_text(&bin),
        Err(Error::VectorFormat { line: 2, .. })
    ));
}

#[test]
fn spearman_follows_ranks() {
    let x = [1.0, 2.0, 3.0, 4.0, 5.0];
    assert!((spearman(&x, &[2.0, 4.0, 8.0, 16.0, 32.0]) - 1.0).abs() < 1e-12);
    assert!((spearman(&x, &[5.0, 4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
    // Ties take their average rank: Spearman is Pearson on ranks.
    let y = [1.0, 3.0, 3.0, 2.0, 5.0];
    let ranks_y = [1.0, 3.5, 3.5, 2.0, 5.0];
    assert!((spearman(&x, &y) - pearson(&x, &ranks_y)).abs() < 1e-12);
    assert!(spearman(&x, &[1.0; 5]).is_nan());
    assert!(spearman(&[1.0], &[1.0]).is_nan());
}

#[test]
fn word_pair_evaluation_counts_unknown_pairs() {
    let v = toy_vectors();
    let pairs = vec![
        WordPair {
            a: "King".into(),
            b: "queen".into(),
            score: 8.0,
        },
        WordPair {
            a: "man".into(),
            b: "woman".into(),
            score: 7.0,
        },
        WordPair {
            a: "king".into(),
            b: "apple".into(),
            score: 1.0,
        },
        WordPair {
            a: "king".into(),
            b: "emperor".into(),
            score: 9.0,
        },
    ];
    let r = evaluate_word_pairs(&v, &pairs, true);
    assert_eq!((r.pairs, r.oov), (3, 1));
    let cos = [
        v.similarity("king", "queen").unwrap() as f64,
        v.similarity("man", "woman").unwrap() as f64,
        v.similarity("king", "apple").unwrap() as f64,
    ];
    assert!((r.spearman - spearman(&cos, &[8.0, 7.0, 1.0])).abs() < 1e-12);
    let r = evaluate_word_pairs(&v, &pairs, false);
    assert_eq!((r.pairs, r.oov), (2, 2));

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pairs.csv");
    std::fs::write(
        &p,
        "Word 1,Word 2,Human (mean)\nking,queen,8.5\nman,woman,7\n",
    )
    .unwrap();
    let loaded = load_word_pairs(&p).unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(
        loaded[0],
        WordPair {
            a: "king".into(),
            b: "queen".into(),
            score: 8.5
        }
    );
    std::fs::write(&p, "a,b,1\nc,d,high\n").unwrap();
    assert!(matches!(
        load_word_pairs(&p),
        Err(Error::VectorFormat { line: 2, .. })
    ));
}

#[test]
fn noise_and_subsampling_follow_their_formulas() {
    // Counts 1, 16, 81, 256 → noise weights count^0.75 = 1, 8, 27, 64.
    let text: String = [("a", 1), ("b", 16), ("c", 81), ("d", 256)]
        .iter()
        .map(|(w, n)| format!("{w}\n").repeat(*n))
        .collect();
    let c = Corpus::from_text("counts", text, &CorpusOptions::default()).unwrap();
    let cfg = Word2VecConfig {
        min_count: 1,
        sample: 0.01,
        ..Default::default()
    };
    let prep = PreparedCorpus::new(&c, &cfg).unwrap();
    let mut rng = taper_nlp::word2vec::Rng::new(1, &[]);
    let mut hist = [0usize; 4];
    let n = 400_000;
    for _ in 0..n {
        hist[prep.noise.sample(&mut rng) as usize] += 1;
    }
    let weights = [1.0, 8.0, 27.0, 64.0];
    for (id, word) in ["d", "c", "b", "a"].iter().enumerate() {
        let w = weights[3 - id] / 100.0;
        let got = hist[prep.vocab.id(word).unwrap() as usize] as f64 / n as f64;
        assert!((got - w).abs() < 0.005, "{word}: {got} vs {w}");
    }
    // keep = (sqrt(c / t) + 1) · t / c with t = 0.01 · 354, capped at 1.
    let t: f64 = 0.01 * 354.0;
    for (word, count) in [("a", 1.0f64), ("b", 16.0), ("c", 81.0), ("d", 256.0)] {
        let want = ((count / t).sqrt() + 1.0) * t / count;
        let got = prep.keep[prep.vocab.id(word).unwrap() as usize] as f64;
        assert!(
            (got - want.min(1.0)).abs() < 1e-6,
            "{word}: {got} vs {want}"
        );
    }
}

#[test]
fn bad_word2vec_inputs_are_typed_errors() {
    let c = Corpus::from_text("few.txt", "a b c\n".into(), &CorpusOptions::default()).unwrap();
    let cfg = small_config(Architecture::SkipGram);
    assert!(matches!(
        PreparedCorpus::new(
            &c,
            &Word2VecConfig {
                min_count: 2,
                ..cfg.clone()
            }
        ),
        Err(Error::AllBelowMinCount { .. })
    ));
    let prep = PreparedCorpus::new(&c, &cfg).unwrap();
    assert!(matches!(
        train_native(
            &prep,
            &Word2VecConfig {
                dim: 0,
                ..cfg.clone()
            }
        ),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        train_candle(
            &prep,
            &cfg,
            &CandleOptions {
                batch_size: 0,
                ..Default::default()
            }
        ),
        Err(Error::Config(_))
    ));
    assert!("glove".parse::<Architecture>().is_err());
}

/// Penn Treebank and WordSim-353, when the shared data is there: a short native
/// run already puts related words together and correlates with people.
#[test]
fn native_on_ptb_scores_on_wordsim() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    let (ptb, ws) = (
        root.join("text/ptb.train.txt"),
        root.join("wordsim/combined.csv"),
    );
    if !ptb.is_file() || !ws.is_file() {
        println!(
            "skipped: native_on_ptb_scores_on_wordsim because {} is absent",
            root.display()
        );
        return;
    }
    let corpus = Corpus::from_file(&ptb, &CorpusOptions::default()).unwrap();
    let cfg = Word2VecConfig {
        dim: 50,
        epochs: 2,
        threads: 2,
        ..Default::default()
    };
    let prep = PreparedCorpus::new(&corpus, &cfg).unwrap();
    let (v, stats) = train_native(&prep, &cfg).unwrap();
    println!("PTB: {} words/s", stats.words_per_second());
    let pairs = load_word_pairs(&ws).unwrap();
    let lines = std::fs::read_to_string(&ws)
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count();
    let r = evaluate_word_pairs(&v, &pairs, true);
    assert_eq!(r.pairs + r.oov, lines);
    assert!(r.spearman > 0.08, "WordSim Spearman {}", r.spearman);
    let nn: Vec<String> = v
        .most_similar("president", 10)
        .unwrap()
        .into_iter()
        .map(|p| p.0)
        .collect();
    assert!(
        ["vice", "executive", "chairman", "chief"]
            .iter()
            .any(|w| nn.iter().any(|n| n == w)),
        "{nn:?}"
    );
}

#[test]
fn report_section_holds_neighbours_analogies_and_the_wordsim_scatter() {
    use taper_train::report::{Block, Section};
    let v = toy_vectors();
    let dir = tempfile::tempdir().unwrap();
    let pair = |a: &str, b: &str, score: f64| WordPair {
        a: a.into(),
        b: b.into(),
        score,
    };
    let pairs = vec![
        pair("King", "Man", 8.0),
        pair("king", "apple", 1.0),
        pair("queen", "woman", 9.0),
        pair("king", "emperor", 7.0),
    ];
    let words = ["king".to_string(), "emperor".to_string()];
    taper_nlp::eval::word2vec_section(
        dir.path(),
        &v,
        &words,
        &[("man", "king", "woman"), ("a", "b", "c")],
        Some((&pairs, true)),
    )
    .unwrap();
    let sections = Section::load_all(dir.path()).unwrap();
    assert_eq!(sections.len(), 1);
    assert_eq!(sections[0].title, "Word vectors (5 words of dimension 3)");
    let blocks = &sections[0].blocks;
    // The unknown word and the analogy of unknown words are left out.
    let Block::Table { rows, .. } = &blocks[0] else {
        panic!("a table first, got {:?}", blocks[0]);
    };
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0][0], "king");
    assert!(rows[0][1].starts_with("man 0.707, queen 0.500"));
    assert_eq!(rows[1][0], "king - man + woman");
    assert!(rows[1][1].starts_with("queen "));
    let Block::Figures { figures } = &blocks[1] else {
        panic!("figures second, got {:?}", blocks[1]);
    };
    let expected = evaluate_word_pairs(&v, &pairs, true).figures();
    assert_eq!(figures, &expected.into_iter().collect::<Vec<_>>());
    assert_eq!(figures[1], ("wordsim_pairs".to_string(), 3.into()));
    let Block::Scatter { points, .. } = &blocks[2] else {
        panic!("a scatter plot third, got {:?}", blocks[2]);
    };
    let cos = |a, b| v.similarity(a, b).unwrap() as f64;
    assert_eq!(
        points,
        &vec![
            (8.0, cos("king", "man")),
            (1.0, cos("king", "apple")),
            (9.0, cos("queen", "woman"))
        ]
    );
    // Without a similarity file: only the table.
    taper_nlp::eval::word2vec_section(dir.path(), &v, &words, &[], None).unwrap();
    assert_eq!(Section::load_all(dir.path()).unwrap()[0].blocks.len(), 1);
}

#[test]
fn writers_saving_the_same_vectors_at_once_all_succeed() {
    // Data-parallel ranks each save the run's vectors: with one shared temporary
    // name, one writer's rename took the file from under the others.
    let v = one_epoch_vectors();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vectors.txt");
    let start = std::sync::Barrier::new(8);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    (0..5).try_for_each(|_| v.save_text(&path))
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    });
    let back = WordVectors::load_text(&path).unwrap();
    assert_eq!(back.as_slice(), v.as_slice());
    // Nothing left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["vectors.txt"]);
}
