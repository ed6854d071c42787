//! Layers beyond the kernels' own checks: transposed convolution against candle's,
//! batch norm's statistics and gradients, LeakyReLU, the shared LSTM/GRU,
//! dropout's stream, and the `Forward` contract of each.

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{Init, VarMap};
use taper_nn::gradcheck::check_gradients;
use taper_nn::init::seeded_var_builder;
use taper_nn::{batch_norm, kernels, leaky_relu, BatchNormConfig, Dropout, Forward, Mode};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = taper_nn::init::rng_for(seed, "test");
    taper_nn::init::init_tensor(
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
        &shape.into(),
        &mut rng,
        DType::F64,
        &Device::Cpu,
    )
    .unwrap()
}

#[test]
fn conv_transpose_matches_candle_and_gradients() {
    for (stride, padding, side) in [(2, 1, 3), (1, 0, 4), (2, 0, 2)] {
        // Five images: the strided cases take the gather/scatter path.
        let x = randn(&[5, 3, side, side], 1);
        let w = randn(&[3, 4, 4, 4], 2);
        let ours = kernels::conv_transpose2d(&x, &w, stride, padding).unwrap();
        let theirs = x.conv_transpose2d(&w, padding, 0, stride, 1).unwrap();
        assert_eq!(ours.dims(), theirs.dims());
        let d: f64 = (ours - theirs)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(d < 1e-10, "stride {stride} padding {padding}: {d}");
        let g = check_gradients(
            |t| {
                kernels::conv_transpose2d(&t[0], &t[1], stride, padding)?
                    .sqr()?
                    .sum_all()
            },
            &[x, w],
            1e-5,
            40,
        )
        .unwrap();
        assert!(g.passed(1e-6), "{g:?}");
    }
    let e = kernels::conv_transpose2d(&randn(&[1, 2, 3, 3], 0), &randn(&[3, 1, 4, 4], 0), 2, 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("input has 2 channels, weight expects 3"), "{e}");
}

#[test]
fn batch_norm_normalises_and_propagates() {
    let vm = VarMap::new();
    let vb = seeded_var_builder(&vm, 0, DType::F64, &Device::Cpu);
    let bn = batch_norm(3, BatchNormConfig::default(), vb.pp("bn")).unwrap();
    let x = (randn(&[8, 3, 4, 4], 3) * 3.0)
        .unwrap()
        .affine(1.0, 2.0)
        .unwrap();
    let y = bn.forward_t(&x, &Mode::train(0)).unwrap();
    let per_channel = y.transpose(0, 1).unwrap().flatten_from(1).unwrap();
    let mean: Vec<f64> = per_channel.mean(1).unwrap().to_vec1().unwrap();
    assert!(mean.iter().all(|m| m.abs() < 0.05), "{mean:?}");
    let rm: Vec<f64> = vm.data().lock().unwrap()["bn.running_mean"]
        .as_tensor()
        .to_vec1()
        .unwrap();
    assert!(rm.iter().all(|m| (m - 0.2).abs() < 0.1), "{rm:?}");
    let g = check_gradients(
        |t| {
            let vm = VarMap::new();
            let bn = batch_norm(
                3,
                BatchNormConfig::default(),
                seeded_var_builder(&vm, 0, DType::F64, &Device::Cpu),
            )?;
            (bn.forward_t(&t[0], &Mode::train(0))? * &t[1])?.sum_all()
        },
        &[randn(&[4, 3, 2, 2], 4), randn(&[4, 3, 2, 2], 5)],
        1e-5,
        48,
    )
    .unwrap();
    assert!(g.passed(1e-6), "{g:?}");
}

#[test]
fn leaky_relu_values_and_gradient() {
    let x = Tensor::new(&[-2.0f64, -0.5, 0.0, 1.5], &Device::Cpu).unwrap();
    let y: Vec<f64> = leaky_relu(&x, 0.2).unwrap().to_vec1().unwrap();
    assert_eq!(y, vec![-0.4, -0.1, 0.0, 1.5]);
    let g = check_gradients(
        |t| (leaky_relu(&t[0], 0.2)? * &t[1])?.sum_all(),
        &[randn(&[3, 5], 8), randn(&[3, 5], 9)],
        1e-6,
        15,
    )
    .unwrap();
    assert!(g.passed(1e-6), "{g:?}");
}

#[test]
fn dropout_draws_from_the_mode_stream_only() {
    let x = Tensor::ones((4, 256), DType::F32, &Device::Cpu).unwrap();
    let d = Dropout::new(0.5, "d").unwrap();
    let mask = |m: &Mode| d.forward_t(&x, m).unwrap().to_vec2::<f32>().unwrap();
    // Same key, same mask; the evaluation mode is the identity.
    assert_eq!(mask(&Mode::train(3)), mask(&Mode::train(3)));
    assert_ne!(mask(&Mode::train(3)), mask(&Mode::train(4)));
    assert_eq!(mask(&Mode::eval()), x.to_vec2::<f32>().unwrap());
    // Two calls in one pass draw two masks, in call order.
    let m = Mode::train(3);
    let (a, b) = (mask(&m), mask(&m));
    assert_ne!(a, b);
    assert_eq!(a, mask(&Mode::train(3)));
    // A fork depends on its index only, not on what the parent drew before.
    let parent = Mode::train(9);
    let f1 = mask(&parent.fork(2));
    let _ = mask(&parent);
    assert_eq!(f1, mask(&parent.fork(2)));
    assert_ne!(f1, mask(&parent.fork(3)));
    // On a thread pool each fork still gives its own mask.
    let on_threads: Vec<Vec<Vec<f32>>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4u64)
            .map(|i| {
                let (parent, mask) = (&parent, &mask);
                s.spawn(move || mask(&parent.fork(i)))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, m) in on_threads.iter().enumerate() {
        assert_eq!(*m, mask(&parent.fork(i as u64)), "fork {i}");
    }
}

#[test]
fn transposed_convolution_layer_doubles_the_side_with_pytorch_names() {
    let vm = VarMap::new();
    let vb = seeded_var_builder(&vm, 0, DType::F32, &Device::Cpu);
    let cfg = taper_nn::Conv2dConfig {
        padding: 1,
        stride: 2,
    };
    let up = taper_nn::conv_transpose2d(3, 5, 4, cfg, vb.pp("up")).unwrap();
    let x = Tensor::ones((2, 3, 7, 7), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(up.forward(&x).unwrap().dims(), &[2, 5, 14, 14]);
    let mut names: Vec<String> = vm.data().lock().unwrap().keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["up.bias", "up.weight"]);
    assert_eq!(up.weight().dims(), &[3, 5, 4, 4]);
}

/// The recurrent layers of `taper-nlp`'s sequence models and `taper-vision`'s
/// video classifier: exact gradients for both cells, bidirectional and stacked.
#[test]
fn lstm_and_gru_layers_have_exact_gradients() {
    use taper_nn::{rnn, CellKind, RnnConfig};
    for cell in [CellKind::Lstm, CellKind::Gru] {
        let cfg = RnnConfig {
            cell,
            input: 3,
            hidden: 4,
            layers: 2,
            bidirectional: true,
            dropout: 0.0,
        };
        let x = randn(&[2, 5, 3], 21);
        let weights = randn(&[2, 5, 8], 22);
        let lens = [5usize, 3];
        let r = check_gradients(
            |t| {
                let vm = VarMap::new();
                let net = rnn(cfg, seeded_var_builder(&vm, 7, DType::F64, &Device::Cpu))?;
                let (out, _) = net.forward(&t[0], Some(&lens), None, &Mode::eval())?;
                (out * &t[1])?.sum_all()
            },
            &[x, weights],
            1e-6,
            30,
        )
        .unwrap();
        assert!(r.max_numeric > 1e-3 && r.passed(1e-6), "{cell:?}: {r:?}");
    }
}

#[test]
fn seeded_initialisation_repeats_and_follows_the_init() {
    let build = |seed| {
        let vm = VarMap::new();
        let vb = seeded_var_builder(&vm, seed, DType::F32, &Device::Cpu);
        let w = vb
            .get_with_hints((64, 32), "w", candle_nn::init::DEFAULT_KAIMING_UNIFORM)
            .unwrap();
        let n = vb
            .get_with_hints(
                4000,
                "n",
                Init::Randn {
                    mean: 1.0,
                    stdev: 2.0,
                },
            )
            .unwrap();
        let c = vb.get_with_hints(3, "c", Init::Const(0.5)).unwrap();
        (
            w.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            n.to_vec1::<f32>().unwrap(),
            c.to_vec1::<f32>().unwrap(),
        )
    };
    let (w, n, c) = build(1);
    assert_eq!(build(1).0, w);
    assert_ne!(build(2).0, w);
    // Kaiming uniform, fan-in 32, ReLU gain: bound sqrt(6 / 32).
    let bound = (6.0f32 / 32.0).sqrt();
    assert!(w.iter().all(|x| x.abs() <= bound));
    assert!(w.iter().map(|x| x.abs()).fold(0.0, f32::max) > 0.9 * bound);
    let mean = n.iter().sum::<f32>() / n.len() as f32;
    let std = (n.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n.len() as f32).sqrt();
    assert!(
        (mean - 1.0).abs() < 0.1 && (std - 2.0).abs() < 0.1,
        "mean {mean} std {std}"
    );
    assert_eq!(c, vec![0.5; 3]);
}

#[test]
fn dropout_gradient_is_its_mask() {
    let x =
        Var::from_tensor(&(Tensor::rand(0.5f32, 1.5, (37, 53), &Device::Cpu).unwrap())).unwrap();
    let d = Dropout::new(0.25, "g").unwrap();
    let y = d.forward_t(x.as_tensor(), &Mode::train(3)).unwrap();
    let grad = y.sum_all().unwrap().backward().unwrap();
    let g = grad
        .get(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let ratio = (y / x.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for (a, b) in g.iter().zip(&ratio) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        assert!(*a == 0.0 || (a - 1.0 / 0.75).abs() < 1e-6, "{a}");
    }
}

#[test]
fn dropout_is_seeded_per_step_and_scales() {
    let x = Tensor::ones((100, 100), DType::F32, &Device::Cpu).unwrap();
    let d = Dropout::new(0.3, "d").unwrap();
    // One step's mode: its calls draw in order.
    let step5 = Mode::train(5);
    let a = d
        .forward_t(&x, &step5)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let second_call = d
        .forward_t(&x, &step5)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_ne!(a, second_call, "two calls in one step draw two masks");
    let d2 = Dropout::new(0.3, "d").unwrap();
    assert_eq!(
        d2.forward_t(&x, &Mode::train(5))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
        a
    );
    assert_ne!(
        d2.forward_t(&x, &Mode::train(6))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
        a
    );
    let kept = a.iter().filter(|v| **v > 0.0).count() as f32 / a.len() as f32;
    assert!((kept - 0.7).abs() < 0.03, "kept {kept}");
    assert!(a.iter().all(|v| *v == 0.0 || (*v - 1.0 / 0.7).abs() < 1e-6));
    assert_eq!(
        d.forward_t(&x, &Mode::eval())
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        10000.0
    );
}

/// Weight gradients, not only input gradients: each layer built in f64, its
/// loss differentiated with respect to every parameter and compared with
/// central differences.
#[test]
fn recurrent_and_attention_layers_have_exact_weight_gradients() {
    use taper_nn::attention::{additive, luong, multi_head, Attention, LuongScore};
    use taper_nn::gradcheck::check_param_gradients;
    use taper_nn::{rnn, CellKind, RnnConfig};
    let f64_vb = |vm: &VarMap| seeded_var_builder(vm, 3, DType::F64, &Device::Cpu);
    let check = |name: &str, vm: &VarMap, f: &dyn Fn() -> candle_core::Result<Tensor>| {
        let params = vm.all_vars();
        assert!(!params.is_empty(), "{name}: no parameters");
        let r = check_param_gradients(f, &params, 1e-6, 12).unwrap();
        assert!(r.max_numeric > 1e-4 && r.passed(1e-6), "{name}: {r:?}");
    };
    // The recurrent layers of the sequence models and the video classifier.
    for cell in [CellKind::Lstm, CellKind::Gru] {
        let vm = VarMap::new();
        let cfg = RnnConfig {
            cell,
            input: 3,
            hidden: 4,
            layers: 2,
            bidirectional: true,
            dropout: 0.0,
        };
        let net = rnn(cfg, f64_vb(&vm)).unwrap();
        let (x, w) = (randn(&[2, 4, 3], 31), randn(&[2, 4, 8], 32));
        check(&format!("{cell:?}"), &vm, &|| {
            let (out, _) = net.forward(&x, Some(&[4, 2]), None, &Mode::eval())?;
            out * &w
        });
    }
    // Attention: queries (2, 3, 4) over 5 keys, the last two of the second
    // sequence padding.
    let (q, kv) = (randn(&[2, 3, 4], 33), randn(&[2, 5, 4], 34));
    let mask = Tensor::new(
        &[[1f64, 1., 1., 1., 1.], [1., 1., 1., 0., 0.]],
        &Device::Cpu,
    )
    .unwrap();
    let w = randn(&[2, 3, 4], 35);
    let modules: Vec<(&str, VarMap, Box<dyn Attention>)> = vec![
        {
            let vm = VarMap::new();
            let a = additive(4, 4, 6, f64_vb(&vm)).unwrap();
            ("additive", vm, Box::new(a))
        },
        {
            let vm = VarMap::new();
            let a = luong(LuongScore::General, 4, 4, f64_vb(&vm)).unwrap();
            ("luong general", vm, Box::new(a))
        },
        {
            let vm = VarMap::new();
            let a = multi_head(4, 2, f64_vb(&vm)).unwrap();
            ("multi-head", vm, Box::new(a))
        },
    ];
    for (name, vm, att) in &modules {
        check(name, vm, &|| {
            let (ctx, _) = att.forward(&q, &kv, &kv, Some(&mask))?;
            ctx * &w
        });
    }
    // Luong dot has no parameters: its gradient reaches queries, keys and values.
    let dot = luong(LuongScore::Dot, 4, 4, f64_vb(&VarMap::new())).unwrap();
    let r = check_gradients(
        |t| (dot.forward(&t[0], &t[1], &t[1], Some(&mask))?.0 * &w)?.sum_all(),
        &[q.clone(), kv.clone()],
        1e-6,
        20,
    )
    .unwrap();
    assert!(r.max_numeric > 1e-4 && r.passed(1e-6), "luong dot: {r:?}");
}

#[test]
fn batched_f32_convolutions_match_one_image_at_a_time() {
    // 32 filters over 8 channels at 10x10: every side of the per-image products
    // is at least 32, so a batch takes the `gemm` crate while one image takes
    // the funnel (OpenBLAS where loaded). Both must agree with candle's
    // convolution, values and gradients, within f32 rounding.
    let f32s = |t: Tensor| t.to_dtype(DType::F32).unwrap();
    let x = f32s(randn(&[4, 8, 10, 10], 41));
    let wv = Var::from_tensor(&f32s(randn(&[32, 8, 3, 3], 42))).unwrap();
    let worst = |a: &Tensor, b: &Tensor| -> f32 {
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        d.to_scalar().unwrap()
    };
    let conv = |x: &Tensor| kernels::conv2d(x, &wv, 1, 1).unwrap();
    // Gradients of sum(conv(x)²) with respect to x and the weight.
    let grads = |x: &Tensor| -> (Tensor, Tensor) {
        let xv = Var::from_tensor(x).unwrap();
        let g = conv(&xv)
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        (g.get(&xv).unwrap().clone(), g.get(&wv).unwrap().clone())
    };
    let batch = conv(&x);
    assert!(worst(&batch, &x.conv2d(&wv, 1, 1, 1, 1).unwrap()) < 1e-4);
    let (gx, gw) = grads(&x);
    let mut gw_sum = gw.zeros_like().unwrap();
    for i in 0..4 {
        let xi = x.narrow(0, i, 1).unwrap();
        assert!(worst(&batch.narrow(0, i, 1).unwrap(), &conv(&xi)) < 1e-4);
        let (gxi, gwi) = grads(&xi);
        assert!(worst(&gx.narrow(0, i, 1).unwrap(), &gxi) < 1e-3);
        gw_sum = (gw_sum + gwi).unwrap();
    }
    let scale: f32 = gw.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
    assert!(worst(&gw, &gw_sum) < 1e-5 * scale.max(1.0));
}

#[test]
fn dropout_refuses_a_probability_outside_zero_to_one() {
    for p in [-0.1f32, 1.5, 2.0, f32::NAN] {
        let e = Dropout::new(p, "drop").unwrap_err().to_string();
        assert!(
            e.contains("dropout probability") && e.contains("drop"),
            "{e}"
        );
    }
    for p in [0.0f32, 0.5, 1.0] {
        assert_eq!(Dropout::new(p, "drop").unwrap().p(), p);
    }
}

#[test]
fn a_layer_of_width_zero_is_an_error_not_a_panic() {
    let varmap = candle_nn::VarMap::new();
    let vb = taper_nn::init::seeded_var_builder(&varmap, 1, DType::F32, &Device::Cpu);
    let e = taper_nn::linear(0, 10, vb.pp("fc"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("fc.weight") && e.contains("layer size of 0"),
        "{e}"
    );
    let e = taper_nn::linear(10, 0, vb.pp("head"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("head.weight"), "{e}");
    // Infinite bounds are refused by the initialiser itself.
    let mut rng = taper_nn::init::rng_for(1, "x");
    let init = candle_nn::Init::Uniform {
        lo: f64::NEG_INFINITY,
        up: f64::INFINITY,
    };
    let e = taper_nn::init::init_tensor(init, &(3,).into(), &mut rng, DType::F32, &Device::Cpu);
    assert!(e.unwrap_err().to_string().contains("not finite"));
}
