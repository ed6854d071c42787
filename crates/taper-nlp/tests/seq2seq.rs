//! Attention masks, the fused kernels against candle compositions, padding
//! invariance, the masked loss, and decoding.

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::VarMap;
use taper_nlp::data::{Seq2SeqBatch, BOS, EOS};
use taper_nlp::seq2seq::attention::{
    additive, causal_bias, luong, multi_head, Attention, LuongScore,
};
use taper_nlp::seq2seq::decoder::rnn_seq2seq;
use taper_nlp::seq2seq::kernels::{
    lstm_seq, lstm_seq_reference, token_losses, token_losses_reference,
};
use taper_nlp::seq2seq::train::sequence_loss;
use taper_nlp::seq2seq::transformer::transformer;
use taper_nlp::seq2seq::{
    beam_search, greedy, AttentionKind, BeamConfig, CellKind, Positions, RnnSeq2SeqConfig, Seq2Seq,
    Source, TransformerConfig,
};
use taper_train::gradcheck::check_gradients;
use taper_train::seed::seeded_var_builder;

fn randn(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = taper_train::seed::rng_for(seed, "test");
    taper_train::seed::init_tensor(
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
        &shape.into(),
        &mut rng,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap()
}

fn mask(lens: &[usize], s: usize) -> Tensor {
    let v: Vec<f32> = lens
        .iter()
        .flat_map(|&l| (0..s).map(move |i| if i < l { 1.0 } else { 0.0 }))
        .collect();
    Tensor::from_vec(v, (lens.len(), s), &Device::Cpu).unwrap()
}

#[test]
fn padded_keys_get_zero_weight_in_every_attention() {
    let (b, t, s, d) = (3, 4, 6, 8);
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, 1, DType::F32, &Device::Cpu);
    let atts: Vec<(&str, Box<dyn Attention>)> = vec![
        ("additive", Box::new(additive(d, d, d, vb.pp("a")).unwrap())),
        (
            "dot",
            Box::new(luong(LuongScore::Dot, d, d, vb.pp("d")).unwrap()),
        ),
        (
            "general",
            Box::new(luong(LuongScore::General, d, d, vb.pp("g")).unwrap()),
        ),
        ("mha", Box::new(multi_head(d, 2, vb.pp("m")).unwrap())),
    ];
    let q = randn(&[b, t, d], 1);
    let k = randn(&[b, s, d], 2);
    // Row 2 is fully masked: weights must stay finite.
    let lens = [6usize, 3, 0];
    let m = mask(&lens, s);
    for (name, att) in &atts {
        let (ctx, w) = att.forward(&q, &k, &k, Some(&m)).unwrap();
        let w: Vec<Vec<Vec<f32>>> = w.to_vec3().unwrap();
        assert!(ctx
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .all(|x| x.is_finite()));
        for (bi, &len) in lens.iter().enumerate() {
            for row in &w[bi] {
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "{name}: weights sum to {sum}");
                if len > 0 {
                    for &x in &row[len..] {
                        assert_eq!(x, 0.0, "{name}: padded key has weight {x}");
                    }
                }
            }
        }
        // Changing the padded keys changes nothing.
        let k2 = (&k
            + randn(&[b, s, d], 9)
                .broadcast_mul(&(1.0 - &m).unwrap().unsqueeze(2).unwrap())
                .unwrap())
        .unwrap();
        let (ctx2, _) = att.forward(&q, &k2, &k2, Some(&m)).unwrap();
        let diff = (ctx.narrow(0, 0, 2).unwrap() - ctx2.narrow(0, 0, 2).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            diff < 1e-6,
            "{name}: padded keys leak into the context ({diff})"
        );
    }
}

#[test]
fn causal_mask_hides_the_future() {
    let (b, t, d) = (2, 5, 8);
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, 2, DType::F32, &Device::Cpu);
    let att = multi_head(d, 2, vb).unwrap();
    let x = randn(&[b, t, d], 3);
    let causal = causal_bias(t, &Device::Cpu).unwrap();
    let mem = att.prepare(&x, &x, None).unwrap();
    let (y, w) = att.attend_with(&x, &mem, Some(&causal)).unwrap();
    let w: Vec<Vec<Vec<f32>>> = w.to_vec3().unwrap();
    for row in &w {
        for (i, r) in row.iter().enumerate() {
            for &x in &r[i + 1..] {
                assert_eq!(x, 0.0, "query {i} sees a later key");
            }
        }
    }
    // Changing the last position changes no earlier output.
    let tail = Tensor::cat(
        &[
            Tensor::zeros((b, t - 1, d), DType::F32, &Device::Cpu).unwrap(),
            randn(&[b, 1, d], 4),
        ],
        1,
    )
    .unwrap();
    let x2 = (&x + tail).unwrap();
    let mem2 = att.prepare(&x2, &x2, None).unwrap();
    let (y2, _) = att.attend_with(&x2, &mem2, Some(&causal)).unwrap();
    let diff = (y.narrow(1, 0, t - 1).unwrap() - y2.narrow(1, 0, t - 1).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-6, "the future leaks ({diff})");
}

#[test]
fn fused_lstm_equals_candle_ops_and_passes_gradcheck() {
    let (t, b, h) = (5, 3, 4);
    let xp = randn(&[t, b, 4 * h], 5);
    let w = (randn(&[4 * h, h], 6) * 0.5).unwrap();
    let init = (randn(&[2, b, h], 7) * 0.5).unwrap();
    let a = lstm_seq(&xp, &w, &init).unwrap();
    let r = lstm_seq_reference(&xp, &w, &init).unwrap();
    let diff = (a - &r)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-5, "forward differs by {diff}");
    // Gradients of the fused op against finite differences (f64) for all inputs,
    // through both h and c outputs with a non-uniform weighting.
    let weights = randn(&[2, t, b, h], 8).to_dtype(DType::F64).unwrap();
    let check = check_gradients(
        |v| (lstm_seq(&v[0], &v[1], &v[2])? * &weights)?.sum_all(),
        &[xp.clone(), w.clone(), init.clone()],
        1e-6,
        40,
    )
    .unwrap();
    assert!(check.passed(1e-6), "fused LSTM gradient: {check:?}");
    assert!(check.max_numeric > 1e-3);
    // And the fused gradient equals candle's own in f32.
    let vars: Vec<Var> = [&xp, &w, &init]
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let wf = randn(&[2, t, b, h], 8);
    let g1 = (lstm_seq(&vars[0], &vars[1], &vars[2]).unwrap() * &wf)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g2 = (lstm_seq_reference(&vars[0], &vars[1], &vars[2]).unwrap() * &wf)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for v in &vars {
        let d = (g1.get(v).unwrap() - g2.get(v).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-4, "gradient differs by {d}");
    }
}

#[test]
fn fused_token_losses_equal_candle_ops_and_pass_gradcheck() {
    let (n, v) = (6, 7);
    let logits = randn(&[n, v], 10);
    let targets = [0u32, 3, 6, 2, 2, 5];
    for eps in [0.0, 0.1] {
        let a = token_losses(&logits, &targets, eps).unwrap();
        let r = token_losses_reference(&logits, &targets, eps).unwrap();
        let d = (a - r)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-5, "eps {eps}: differs by {d}");
        let wts = randn(&[n, 3], 11)
            .to_dtype(DType::F64)
            .unwrap()
            .narrow(1, 0, 2)
            .unwrap();
        let check = check_gradients(
            |x| (token_losses(&x[0], &targets, eps)?.narrow(1, 0, 2)? * &wts)?.sum_all(),
            std::slice::from_ref(&logits),
            1e-6,
            50,
        )
        .unwrap();
        assert!(check.passed(1e-6), "eps {eps}: {check:?}");
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn fused_output_head_equals_projection_then_losses_in_value_and_gradient() {
    use taper_nlp::seq2seq::kernels::linear_token_losses;
    use taper_train::kernels::linear::linear;
    // (B, T, H) features, as the models pass them; odd sizes.
    let (b, t, h, v) = (2, 3, 5, 11);
    let targets = [0u32, 3, 10, 2, 2, 7];
    let x = Var::from_tensor(&randn(&[b, t, h], 30)).unwrap();
    let w = Var::from_tensor(&randn(&[v, h], 31)).unwrap();
    let bias = Var::from_tensor(&randn(&[v], 32)).unwrap();
    let wts = randn(&[b * t, 3], 33).narrow(1, 0, 2).unwrap();
    for eps in [0.0, 0.1] {
        let fused = linear_token_losses(&x, &w, &bias, &targets, eps).unwrap();
        let logits = linear(&x.reshape((b * t, h)).unwrap(), &w, Some(&bias)).unwrap();
        let composed = token_losses(&logits, &targets, eps).unwrap();
        assert_eq!(fused.dims(), &[b * t, 3]);
        assert!(max_diff(&fused, &composed) < 1e-5, "eps {eps}: values");
        let loss = |per: &Tensor| (per.narrow(1, 0, 2).unwrap() * &wts).unwrap().sum_all();
        let gf = loss(&fused).unwrap().backward().unwrap();
        let gc = loss(&composed).unwrap().backward().unwrap();
        for (name, p) in [("x", &x), ("w", &w), ("b", &bias)] {
            let (a, r) = (gf.get(p).unwrap(), gc.get(p).unwrap());
            assert_eq!(a.dims(), p.dims(), "{name}: gradient shape");
            assert!(max_diff(a, r) < 1e-5, "eps {eps}: gradient of {name}");
        }
        // A second backward over the same graph recomputes what the first took.
        let again = loss(&fused).unwrap().backward().unwrap();
        assert!(max_diff(again.get(&w).unwrap(), gc.get(&w).unwrap()) < 1e-5);
    }
    let check = check_gradients(
        |p| {
            let per = linear_token_losses(&p[0], &p[1], &p[2], &targets, 0.1)?;
            (per.narrow(1, 0, 2)? * wts.to_dtype(DType::F64)?)?.sum_all()
        },
        &[randn(&[b, t, h], 34), randn(&[v, h], 35), randn(&[v], 36)],
        1e-6,
        50,
    )
    .unwrap();
    assert!(check.passed(1e-6), "{check:?}");
    // A target outside the vocabulary is an error, not a panic.
    assert!(linear_token_losses(&x, &w, &bias, &[0, 1, 2, 3, 4, 11], 0.0).is_err());
}

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
            .token_losses(s, &bt.tgt_in, &bt.tgt_out_host, 0.1, false)
            .unwrap();
        let logits = m.logits(s, &bt.tgt_in, false).unwrap();
        let (b, t, v) = logits.dims3().unwrap();
        let r = token_losses(&logits.reshape((b * t, v)).unwrap(), &bt.tgt_out_host, 0.1).unwrap();
        assert!(max_diff(&fused, &r) < 1e-5, "{name}");
    }
}

#[test]
fn fused_additive_scores_match_and_pass_gradcheck() {
    use taper_nlp::seq2seq::kernels::{additive_scores, additive_scores_reference};
    let (q, k, v) = (
        randn(&[2, 3, 5], 20),
        randn(&[2, 4, 5], 21),
        randn(&[5], 22),
    );
    let d = (additive_scores(&q, &k, &v).unwrap() - additive_scores_reference(&q, &k, &v).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert!(d.to_scalar::<f32>().unwrap() < 1e-5);
    let w = randn(&[2, 3, 4], 23).to_dtype(DType::F64).unwrap();
    let check = check_gradients(
        |x| (additive_scores(&x[0], &x[1], &x[2])? * &w)?.sum_all(),
        &[q, k, v],
        1e-6,
        40,
    )
    .unwrap();
    assert!(check.passed(1e-6), "{check:?}");
}

#[test]
fn fused_tanh_matches_and_passes_gradcheck() {
    let x = (randn(&[5, 33], 12) * 3.0).unwrap();
    let a = taper_nlp::seq2seq::kernels::tanh(&x).unwrap();
    let d = (a - x.tanh().unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert!(d.to_scalar::<f32>().unwrap() < 2e-7);
    let w = randn(&[5, 33], 13).to_dtype(DType::F64).unwrap();
    let check = check_gradients(
        |v| (taper_nlp::seq2seq::kernels::tanh(&v[0])? * &w)?.sum_all(),
        &[x],
        1e-6,
        60,
    )
    .unwrap();
    assert!(check.passed(1e-6), "{check:?}");
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
            m.logits(src, &bt.tgt_in, false).unwrap()
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

/// A run directory written the way the translate example writes one loads back
/// into a `Translator` whose alignment is the original model's greedy decoding,
/// for both model kinds; a missing or mismatched file is a named error.
#[test]
fn a_saved_run_loads_into_a_translator_that_aligns() {
    use taper_nlp::data::TextCodec;
    use taper_nlp::seq2seq::{ModelSpec, Translator};
    let texts = ["one two three", "two three four", "four one"];
    let src = TextCodec::chars(texts.iter().copied()).unwrap();
    let tgt = TextCodec::chars(["un deux", "deux trois", "quatre"].iter().copied()).unwrap();
    for model in ["lstm", "transformer"] {
        let dir = tempfile::tempdir().unwrap();
        let spec = ModelSpec {
            task: "test".into(),
            model: model.into(),
            cell: "lstm".into(),
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
        };
        let varmap = VarMap::new();
        let original = spec.build(&varmap, 3, &Device::Cpu).unwrap();
        src.save(&dir.path().join("src_vocab.json")).unwrap();
        tgt.save(&dir.path().join("tgt_vocab.json")).unwrap();
        let state = taper_train::checkpoint::TrainerState::default();
        taper_train::checkpoint::save(dir.path(), "step-1", &varmap, &[], &state, true).unwrap();
        let err = Translator::load(dir.path(), &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("model.json"), "{err}");
        std::fs::write(
            dir.path().join("model.json"),
            serde_json::to_string(&spec).unwrap(),
        )
        .unwrap();
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
