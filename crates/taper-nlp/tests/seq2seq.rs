//! The sequence-to-sequence models: fused losses equal to their logits', padding
//! invariance, the masked loss, decoding, and saved runs. Their layers and
//! kernels are tested in `taper-nn` (`tests/sequence.rs`).

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::VarMap;
use taper_nlp::data::{Seq2SeqBatch, BOS, EOS};
use taper_nlp::seq2seq::decoder::rnn_seq2seq;
use taper_nlp::seq2seq::train::sequence_loss;
use taper_nlp::seq2seq::transformer::transformer;
use taper_nlp::seq2seq::{
    beam_search, decode_corpus, greedy, AttentionKind, BeamConfig, CellKind, Positions,
    RnnSeq2SeqConfig, Seq2Seq, Source, TransformerConfig,
};
use taper_nn::init::seeded_var_builder;
use taper_nn::loss::token_losses;
use taper_nn::Mode;

#[test]
fn models_fused_token_losses_equal_losses_of_their_logits() {
    let src: &[&[u32]] = &[&[4, 5, 6], &[7, 8]];
    let tgt: &[&[u32]] = &[&[4, 5], &[6, 7, 8]];
    let bt = batch(src, tgt);
    let s = Source {
        ids: &bt.src,
        mask: &bt.src_mask,
        lens: &bt.src_lens,
    };
    for (name, m) in models() {
        let fused = m
            .token_losses(s, &bt.tgt_in, &bt.tgt_out_host, 0.1, &Mode::eval())
            .unwrap();
        let logits = m.logits(s, &bt.tgt_in, &Mode::eval()).unwrap();
        let (b, t, v) = logits.dims3().unwrap();
        let r = token_losses(&logits.reshape((b * t, v)).unwrap(), &bt.tgt_out_host, 0.1).unwrap();
        let d: f32 = (fused - r)
            .and_then(|d| d.abs()?.max_all()?.to_scalar())
            .unwrap();
        assert!(d < 1e-5, "{name}: {d}");
    }
}

fn tiny_rnn(cell: CellKind, attention: AttentionKind, seed: u64) -> (Box<dyn Seq2Seq>, VarMap) {
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, seed, DType::F32, &Device::Cpu);
    let m = rnn_seq2seq(
        RnnSeq2SeqConfig {
            cell,
            src_vocab: 11,
            tgt_vocab: 9,
            emb: 6,
            hidden: 8,
            enc_layers: 2,
            dec_layers: 2,
            bidirectional: true,
            attention,
            dropout: 0.0,
            max_src_len: 20,
            max_tgt_len: 12,
        },
        vb,
    )
    .unwrap();
    (Box::new(m), varmap)
}

fn tiny_transformer(positions: Positions, seed: u64) -> (Box<dyn Seq2Seq>, VarMap) {
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, seed, DType::F32, &Device::Cpu);
    let m = transformer(
        TransformerConfig {
            src_vocab: 11,
            tgt_vocab: 9,
            d_model: 8,
            heads: 2,
            ffn: 16,
            enc_layers: 2,
            dec_layers: 2,
            dropout: 0.0,
            max_len: 20,
            positions,
        },
        vb,
    )
    .unwrap();
    (Box::new(m), varmap)
}

fn models() -> Vec<(String, Box<dyn Seq2Seq>)> {
    let mut v: Vec<(String, Box<dyn Seq2Seq>)> = Vec::new();
    for (cell, att) in [
        (CellKind::Lstm, AttentionKind::Additive),
        (CellKind::Gru, AttentionKind::General),
        (CellKind::Lstm, AttentionKind::Dot),
        (CellKind::Lstm, AttentionKind::MultiHead(2)),
    ] {
        v.push((format!("{cell:?}/{att:?}"), tiny_rnn(cell, att, 3).0));
    }
    v.push((
        "transformer/sin".into(),
        tiny_transformer(Positions::Sinusoidal, 3).0,
    ));
    v.push((
        "transformer/learned".into(),
        tiny_transformer(Positions::Learned, 4).0,
    ));
    v
}

fn batch(src: &[&[u32]], tgt: &[&[u32]]) -> Seq2SeqBatch {
    Seq2SeqBatch::new(src, tgt, &Device::Cpu).unwrap()
}

#[test]
fn padding_does_not_change_logits_or_loss() {
    // The same two pairs, alone and beside a longer pair that forces padding.
    let a: &[u32] = &[4, 5, 6];
    let b: &[u32] = &[7, 8];
    let long: &[u32] = &[4, 5, 6, 7, 8, 9, 10];
    let (ta, tb, tl): (&[u32], &[u32], &[u32]) = (&[4, 5], &[6], &[4, 5, 6, 7, 8]);
    for (name, m) in models() {
        let small = batch(&[a, b], &[ta, tb]);
        let padded = batch(&[a, b, long], &[ta, tb, tl]);
        let logits = |bt: &Seq2SeqBatch| {
            let src = Source {
                ids: &bt.src,
                mask: &bt.src_mask,
                lens: &bt.src_lens,
            };
            m.logits(src, &bt.tgt_in, &Mode::eval()).unwrap()
        };
        let l1 = logits(&small);
        let l2 = logits(&padded);
        for (row, len) in [(0usize, 3usize), (1, 2)] {
            let x = l1.get(row).unwrap().narrow(0, 0, len).unwrap();
            let y = l2.get(row).unwrap().narrow(0, 0, len).unwrap();
            let d = (x - y)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                d < 1e-5,
                "{name}: padding changed row {row}'s logits by {d}"
            );
        }
        // The masked loss ignores padded target positions, value and gradient.
        let v = Var::from_tensor(&l2).unwrap();
        let (loss, stats) = sequence_loss(&v, &padded, 0.1).unwrap();
        assert_eq!(stats.tokens, 3 + 2 + 6);
        let g = loss.backward().unwrap();
        let g = g.get(&v).unwrap();
        let pad_grad = g
            .get(1)
            .unwrap()
            .narrow(0, 2, g.dim(1).unwrap() - 2)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(pad_grad, 0.0, "{name}: padded position gets a gradient");
    }
}

#[test]
fn beam_width_one_equals_greedy() {
    let srcs: Vec<Vec<u32>> = vec![
        vec![4, 5, 6, 7],
        vec![8, 9],
        vec![10, 4, 4, 5, 6, 9],
        vec![7],
    ];
    let rows: Vec<&[u32]> = srcs.iter().map(|r| r.as_slice()).collect();
    let (ids, m, lens) = taper_nlp::data::source_batch(&rows, &Device::Cpu).unwrap();
    for (name, model) in models() {
        let src = Source {
            ids: &ids,
            mask: &m,
            lens: &lens,
        };
        let g = greedy(model.as_ref(), src, 10, true).unwrap();
        let b1 = beam_search(
            model.as_ref(),
            src,
            &BeamConfig {
                width: 1,
                alpha: 1.0,
                max_len: 10,
            },
        )
        .unwrap();
        assert_eq!(g.ids, b1.ids, "{name}: beam 1 differs from greedy");
        assert!(g.ids.iter().all(|r| !r.contains(&EOS)));
        let att = g.attention.unwrap();
        assert_eq!(att.len(), 4);
        // Attention over a padded source puts nothing on the padding.
        for a in &att[1] {
            assert!(a[2..].iter().all(|&x| x == 0.0), "{name}: {a:?}");
        }
        // Wider beams run, and each sentence's result is the same when decoded alone.
        let b4 = beam_search(
            model.as_ref(),
            src,
            &BeamConfig {
                width: 4,
                alpha: 0.6,
                max_len: 10,
            },
        )
        .unwrap();
        let (i1, m1, l1) = taper_nlp::data::source_batch(&rows[1..2], &Device::Cpu).unwrap();
        let alone = beam_search(
            model.as_ref(),
            Source {
                ids: &i1,
                mask: &m1,
                lens: &l1,
            },
            &BeamConfig {
                width: 4,
                alpha: 0.6,
                max_len: 10,
            },
        )
        .unwrap();
        assert_eq!(
            alone.ids[0], b4.ids[1],
            "{name}: batching changes the beam result"
        );
    }
}

/// `decode_corpus` decodes its batches side by side on the CPU: the results are
/// the same on one thread or two, in the order given, and each sentence's the
/// same as decoding it alone.
#[test]
fn corpus_decoding_does_not_depend_on_threads_or_batches() {
    // 300 sources (3 greedy batches, 5 beam batches) of 1-15 ids, from a fixed LCG.
    let mut x = 12345u64;
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as u32
    };
    let sources: Vec<Vec<u32>> = (0..300)
        .map(|_| (0..1 + next() % 15).map(|_| 4 + next() % 7).collect())
        .collect();
    let beam = BeamConfig {
        width: 3,
        alpha: 1.0,
        max_len: 10,
    };
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    for (name, model) in models() {
        let m = model.as_ref();
        let run = |n: usize, b: Option<&BeamConfig>| {
            pool(n).install(|| decode_corpus(m, &sources, b, 10, &Device::Cpu).unwrap())
        };
        for b in [None, Some(&beam)] {
            let (one, two) = (run(1, b), run(2, b));
            assert_eq!(one, two, "{name}: one thread and two differ (beam {b:?})");
            assert_eq!(one.len(), sources.len());
            for i in [0, 137, 299] {
                let alone = decode_corpus(m, &sources[i..i + 1], b, 10, &Device::Cpu).unwrap();
                assert_eq!(alone[0], one[i], "{name}: sentence {i} alone (beam {b:?})");
            }
        }
    }
}

/// A Transformer decoding step through its key/value caches gives the
/// log-probabilities of the whole decoder re-run over the prefix (`logits`, the
/// training path) at every step, and greedy decoding through the caches picks
/// what arg-max over those re-runs picks.
#[test]
fn cached_transformer_steps_equal_the_whole_decoder_rerun() {
    let srcs: Vec<Vec<u32>> = vec![vec![4, 5, 6, 7], vec![8, 9], vec![10, 4, 4, 5, 6, 9]];
    let rows: Vec<&[u32]> = srcs.iter().map(|r| r.as_slice()).collect();
    let (ids, m, lens) = taper_nlp::data::source_batch(&rows, &Device::Cpu).unwrap();
    let src = Source {
        ids: &ids,
        mask: &m,
        lens: &lens,
    };
    for (positions, seed) in [(Positions::Sinusoidal, 5), (Positions::Learned, 6)] {
        let (model, _) = tiny_transformer(positions, seed);
        let b = rows.len();
        let mut state = model.start(src).unwrap();
        let mut prefix: Vec<Vec<u32>> = vec![vec![BOS]; b];
        let mut rerun_ids: Vec<Vec<u32>> = vec![Vec::new(); b];
        let mut ended = vec![false; b];
        for step in 0..10 {
            let prev: Vec<u32> = prefix.iter().map(|p| *p.last().unwrap()).collect();
            let (lp, next, _) = model
                .step(&state, &Tensor::new(prev.as_slice(), &Device::Cpu).unwrap())
                .unwrap();
            state = next;
            let tgt_in = Tensor::new(prefix.clone(), &Device::Cpu).unwrap();
            let full = model.logits(src, &tgt_in, &Mode::eval()).unwrap();
            let full = taper_nn::log_softmax(&full.narrow(1, step, 1).unwrap().squeeze(1).unwrap())
                .unwrap();
            let d: f32 = (&lp - &full)
                .and_then(|d| d.abs()?.max_all()?.to_scalar())
                .unwrap();
            assert!(
                d < 1e-5,
                "{positions:?}, step {step}: cached and re-run differ by {d}"
            );
            let pick: Vec<u32> = full
                .argmax(D::Minus1)
                .unwrap()
                .to_dtype(DType::U32)
                .unwrap()
                .to_vec1()
                .unwrap();
            for (i, &tok) in pick.iter().enumerate() {
                if !ended[i] {
                    if tok == EOS {
                        ended[i] = true;
                    } else {
                        rerun_ids[i].push(tok);
                    }
                }
                prefix[i].push(tok);
            }
        }
        let g = greedy(model.as_ref(), src, 10, false).unwrap();
        assert_eq!(g.ids, rerun_ids, "{positions:?}: greedy through the caches");
    }
}

#[test]
fn log_probabilities_of_a_step_are_normalised() {
    let (model, _) = tiny_transformer(Positions::Sinusoidal, 9);
    let rows: Vec<&[u32]> = vec![&[4, 5, 6]];
    let (ids, m, lens) = taper_nlp::data::source_batch(&rows, &Device::Cpu).unwrap();
    let st = model
        .start(Source {
            ids: &ids,
            mask: &m,
            lens: &lens,
        })
        .unwrap();
    let prev = Tensor::new(&[BOS], &Device::Cpu).unwrap();
    let (lp, _, _) = model.step(&st, &prev).unwrap();
    let s = lp
        .exp()
        .unwrap()
        .sum(D::Minus1)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!((s[0] - 1.0).abs() < 1e-5);
}

/// A run directory written by `save_run` and the trainer's checkpoint loads back
/// into a `Translator` whose alignment is the original model's greedy decoding,
/// for every seq2seq kind (bidirectional LSTM, unidirectional GRU, Transformer);
/// a missing card, another family's card or a mismatched vocabulary is a named
/// error.
#[test]
fn a_saved_run_loads_into_a_translator_that_aligns() {
    use taper_nlp::data::TextCodec;
    use taper_nlp::seq2seq::Translator;
    let texts = ["one two three", "two three four", "four one"];
    let src = TextCodec::chars(texts.iter().copied()).unwrap();
    let tgt = TextCodec::chars(["un deux", "deux trois", "quatre"].iter().copied()).unwrap();
    for (model, cell, bidirectional) in [
        ("lstm", "lstm", true),
        ("lstm", "gru", false),
        ("transformer", "lstm", true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let spec = small_spec(model, cell, bidirectional, &src, &tgt);
        let varmap = VarMap::new();
        let original = spec.build(&varmap, 3, &Device::Cpu).unwrap();
        let state = taper_train::checkpoint::TrainerState::default();
        taper_train::checkpoint::save(dir.path(), "step-1", &varmap, &[], &state, true).unwrap();
        let err = Translator::load(dir.path(), &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("model.json"), "{err}");
        // Another family's card is refused by name.
        taper_train::card::ModelCard::new("vision.dcgan", "x", "0.1.0", &1, &0)
            .unwrap()
            .save(dir.path())
            .unwrap();
        let err = Translator::load(dir.path(), &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("model.json") && err.contains("vision.dcgan"),
            "{err}"
        );
        taper_nlp::seq2seq::save_run(dir.path(), &spec, &src, &tgt).unwrap();
        let t = Translator::load(dir.path(), &Device::Cpu).unwrap();
        let a = t.align("two one").unwrap();
        let ids = src.encode("two one").unwrap();
        assert_eq!(a.source.len(), ids.len());
        assert_eq!(a.output.len(), a.weights.len(), "{model}");
        for row in &a.weights {
            assert_eq!(row.len(), ids.len());
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-4, "{model}: row sums to {sum}");
        }
        let rows = [ids.as_slice()];
        let (s, m, l) = taper_nlp::data::source_batch(&rows, &Device::Cpu).unwrap();
        let src_ref = Source {
            ids: &s,
            mask: &m,
            lens: &l,
        };
        let dec = greedy(original.as_ref(), src_ref, original.max_target_len(), false).unwrap();
        assert_eq!(a.text, tgt.decode(&dec.ids[0]), "{model}");
        // A vocabulary from another run is refused by its fingerprint.
        src.save(&dir.path().join("tgt_vocab.json")).unwrap();
        let err = Translator::load(dir.path(), &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("tgt_vocab.json"), "{err}");
    }
}

/// The Transformer's encoder and decoder blocks (self-attention with the padding
/// and causal masks, cross-attention, feed-forward, layer norms, embeddings and
/// positions): every parameter's gradient against central differences, in f64.
#[test]
fn transformer_blocks_have_exact_gradients() {
    use taper_nn::gradcheck::check_param_gradients;
    for positions in [Positions::Sinusoidal, Positions::Learned] {
        let varmap = VarMap::new();
        let vb = seeded_var_builder(&varmap, 4, DType::F64, &Device::Cpu);
        let m = transformer(
            TransformerConfig {
                src_vocab: 7,
                tgt_vocab: 6,
                d_model: 4,
                heads: 2,
                ffn: 6,
                enc_layers: 1,
                dec_layers: 1,
                dropout: 0.0,
                max_len: 6,
                positions,
            },
            vb,
        )
        .unwrap();
        let bt = batch(&[&[3, 4, 5], &[6, 3]], &[&[4, 5], &[3, 4, 5]]);
        let s = Source {
            ids: &bt.src,
            mask: &bt.src_mask,
            lens: &bt.src_lens,
        };
        let w = Tensor::arange(0f64, 48.0, &Device::Cpu)
            .unwrap()
            .affine(0.1, -1.0)
            .unwrap()
            .sin()
            .unwrap()
            .reshape((2, 4, 6))
            .unwrap();
        let r = check_param_gradients(
            || {
                m.logits(s, &bt.tgt_in, &Mode::eval())
                    .map_err(|e| candle_core::Error::Msg(e.to_string()))?
                    * &w
            },
            &varmap.all_vars(),
            1e-6,
            6,
        )
        .unwrap();
        assert!(
            r.max_numeric > 1e-3 && r.passed(1e-6),
            "{positions:?}: {r:?}"
        );
    }
}

/// A run trained in one direction (`reversed`) refuses to resume in the other, naming
/// the flag, and a card written before the field existed reads as not reversed.
#[test]
fn a_run_resumes_only_in_its_own_direction() {
    use taper_nlp::data::TextCodec;
    use taper_nlp::seq2seq::{save_run, ModelSpec};
    let src = TextCodec::chars(["one two", "three"].iter().copied()).unwrap();
    let tgt = TextCodec::chars(["un deux", "trois"].iter().copied()).unwrap();
    let spec = ModelSpec {
        reversed: true,
        ..small_spec("transformer", "lstm", true, &src, &tgt)
    };
    let dir = tempfile::tempdir().unwrap();
    save_run(dir.path(), &spec, &src, &tgt).unwrap();
    spec.check_resumes(dir.path()).unwrap();
    let forward = ModelSpec {
        reversed: false,
        ..spec.clone()
    };
    let err = forward.check_resumes(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("reversed true") && err.contains("--reverse"),
        "{err}"
    );
    let mut old = serde_json::to_value(&spec).unwrap();
    old.as_object_mut().unwrap().remove("reversed");
    let old: ModelSpec = serde_json::from_value(old).unwrap();
    assert!(!old.reversed);
    assert_eq!(old, forward);
}

/// A tiny model of the given kind over `src` and `tgt`, for the saved-run tests.
fn small_spec(
    model: &str,
    cell: &str,
    bidirectional: bool,
    src: &taper_nlp::data::TextCodec,
    tgt: &taper_nlp::data::TextCodec,
) -> taper_nlp::seq2seq::ModelSpec {
    taper_nlp::seq2seq::ModelSpec {
        task: "test".into(),
        model: model.into(),
        cell: cell.into(),
        bidirectional,
        attention: "additive".into(),
        emb: 6,
        hidden: 8,
        layers: 1,
        heads: 2,
        ffn: 16,
        positions: "sinusoidal".into(),
        dropout: 0.0,
        max_src_len: 24,
        max_tgt_len: 10,
        src_vocab: src.len(),
        tgt_vocab: tgt.len(),
        src_fingerprint: src.fingerprint(),
        tgt_fingerprint: tgt.fingerprint(),
        reversed: false,
    }
}
