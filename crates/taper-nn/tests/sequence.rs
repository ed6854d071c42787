//! The sequence models' layers and fused kernels against candle compositions:
//! attention masks (padding, causal), the whole-sequence LSTM, token losses,
//! the fused output head, additive attention scores and tanh, each with a
//! finite-difference gradient check.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use taper_nn::attention::{additive, causal_bias, luong, multi_head, Attention, LuongScore};
use taper_nn::gradcheck::check_gradients;
use taper_nn::init::seeded_var_builder;
use taper_nn::kernels::rnn::{lstm_seq, lstm_seq_reference};
use taper_nn::loss::{token_losses, token_losses_reference};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = taper_nn::init::rng_for(seed, "test");
    taper_nn::init::init_tensor(
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
    use taper_nn::kernels::linear::linear;
    use taper_nn::loss::linear_token_losses;
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
fn fused_additive_scores_match_and_pass_gradcheck() {
    use taper_nn::attention::{additive_scores, additive_scores_reference};
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
    let a = taper_nn::tanh(&x).unwrap();
    let d = (a - x.tanh().unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert!(d.to_scalar::<f32>().unwrap() < 2e-7);
    let w = randn(&[5, 33], 13).to_dtype(DType::F64).unwrap();
    let check =
        check_gradients(|v| (taper_nn::tanh(&v[0])? * &w)?.sum_all(), &[x], 1e-6, 60).unwrap();
    assert!(check.passed(1e-6), "{check:?}");
}

/// The separate ops the fused attention replaces: split heads, `Q·Kᵀ/√dh`, key
/// bias, causal bias (queries the last `Tq` of `S` positions), softmax, `·V`,
/// merge heads.
fn attention_reference(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_bias: Option<&Tensor>,
    heads: usize,
    causal: bool,
) -> Tensor {
    let (b, tq, d) = q.dims3().unwrap();
    let s = k.dim(1).unwrap();
    let dh = d / heads;
    let split = |x: &Tensor, t: usize| {
        x.reshape((b, t, heads, dh))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
    };
    let (qh, kh, vh) = (split(q, tq), split(k, s), split(v, s));
    let mut scores = (qh
        .matmul(&kh.transpose(2, 3).unwrap().contiguous().unwrap())
        .unwrap()
        / (dh as f64).sqrt())
    .unwrap();
    if causal {
        let full = causal_bias(s, &Device::Cpu)
            .unwrap()
            .narrow(0, s - tq, tq)
            .unwrap()
            .to_dtype(q.dtype())
            .unwrap();
        scores = scores.broadcast_add(&full).unwrap();
    }
    let bias = key_bias.map(|m| m.reshape((b, 1, 1, s)).unwrap());
    let w = taper_nn::attention::masked_softmax(&scores, bias.as_ref()).unwrap();
    w.matmul(&vh)
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .reshape((b, tq, d))
        .unwrap()
}

#[test]
fn fused_attention_equals_the_separate_ops_on_any_thread_count() {
    use taper_nn::attention::padding_bias;
    use taper_nn::kernels::sdpa::{sdpa, BLOCK};
    // (batch, queries, keys, features, heads, causal): a partial last row block,
    // more rows than one block, decoding's one query against a longer cache, and
    // per-head products above blas::MIN_WORK (OpenBLAS where loaded).
    let cases = [
        (2, 40, 160, 64, 2, false),
        (3, 2 * BLOCK + 7, 2 * BLOCK + 7, 48, 4, false),
        (2, 37, 37, 32, 2, true),
        (4, 1, 19, 64, 4, true),
        (2, 5, 40, 24, 3, true),
        (1, 9, 13, 16, 1, false),
    ];
    for (i, &(b, tq, s, d, heads, causal)) in cases.iter().enumerate() {
        let seed = 40 + 3 * i as u64;
        let (q, k, v) = (
            randn(&[b, tq, d], seed),
            randn(&[b, s, d], seed + 1),
            randn(&[b, s, d], seed + 2),
        );
        // Every batch entry but the first has padded keys.
        let lens: Vec<usize> = (0..b).map(|j| s - (j * s / (b + 1))).collect();
        let bias = padding_bias(&mask(&lens, s)).unwrap();
        for dtype in [DType::F32, DType::F64] {
            let (q, k, v) = (
                q.to_dtype(dtype).unwrap(),
                k.to_dtype(dtype).unwrap(),
                v.to_dtype(dtype).unwrap(),
            );
            let want = attention_reference(&q, &k, &v, Some(&bias), heads, causal);
            let got = sdpa(&q, &k, &v, Some(&bias), heads, causal).unwrap();
            assert_eq!(got.dims(), &[b, tq, d]);
            let diff = max_diff(
                &got.to_dtype(DType::F32).unwrap(),
                &want.to_dtype(DType::F32).unwrap(),
            );
            assert!(diff < 2e-6, "case {i} {dtype:?}: differs by {diff}");
        }
        let want = attention_reference(&q, &k, &v, None, heads, causal);
        let got = sdpa(&q, &k, &v, None, heads, causal).unwrap();
        assert!(max_diff(&got, &want) < 2e-6, "case {i} without a key bias");
        // One thread and two give the same bits.
        let on = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    sdpa(&q, &k, &v, Some(&bias), heads, causal)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap()
                })
        };
        let one = on(1);
        assert!(
            one.iter()
                .zip(on(2))
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "case {i}: 1 and 2 threads differ"
        );
    }
}

#[test]
fn fused_attention_refuses_what_it_cannot_compute() {
    use taper_nn::kernels::sdpa::{fusable, sdpa};
    let (q, k) = (randn(&[2, 4, 8], 60), randn(&[2, 6, 8], 61));
    let err = |r: candle_core::Result<Tensor>| r.unwrap_err().to_string();
    // Heads that do not divide the features, keys and values of other lengths,
    // a bias of the wrong size, 2-D inputs.
    assert!(err(sdpa(&q, &k, &k, None, 3, false)).contains("do not split into 3 heads"));
    let v5 = randn(&[2, 5, 8], 62);
    assert!(err(sdpa(&q, &k, &v5, None, 2, false)).contains("do not fit together"));
    let bias = Tensor::zeros((2, 5), DType::F32, &Device::Cpu).unwrap();
    assert!(err(sdpa(&q, &k, &k, Some(&bias), 2, false)).contains("key bias of 10 values"));
    let flat = randn(&[4, 8], 63);
    assert!(err(sdpa(&flat, &flat, &flat, None, 2, false)).contains("must be 3-D"));
    // An input that records a graph: no backward pass exists, so no result.
    let var = Var::from_tensor(&q).unwrap();
    assert!(!fusable(var.as_tensor(), &k, &k));
    assert!(err(sdpa(var.as_tensor(), &k, &k, None, 2, false)).contains("record no graph"));
    assert!(fusable(&q, &k, &k));
    // Empty inputs are empty outputs, not a panic: no queries, no features, no keys.
    let none = |dims: (usize, usize, usize)| Tensor::zeros(dims, DType::F32, &Device::Cpu).unwrap();
    let out = sdpa(&none((2, 0, 8)), &k, &k, None, 2, false).unwrap();
    assert_eq!(out.dims(), &[2, 0, 8]);
    let out = sdpa(
        &none((2, 4, 0)),
        &none((2, 6, 0)),
        &none((2, 6, 0)),
        None,
        2,
        true,
    )
    .unwrap();
    assert_eq!(out.dims(), &[2, 4, 0]);
    let out = sdpa(&q, &none((2, 0, 8)), &none((2, 0, 8)), None, 2, false).unwrap();
    assert_eq!(out.dims(), &[2, 4, 8]);
}
