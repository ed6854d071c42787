//! Finite-difference checks of every layer and loss Taper writes or wraps.

use candle_core::{DType, Device, Module, Tensor, Var, D};
use candle_nn::{Conv2dConfig, VarBuilder, VarMap};
use taper_nn as nn;
use taper_nn::gradcheck::check_gradients;

const TOL: f64 = 1e-5;

fn randn(shape: &[usize], seed: u64) -> Tensor {
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn assert_grads<F>(name: &str, f: F, inputs: &[Tensor])
where
    F: Fn(&[Tensor]) -> candle_core::Result<Tensor>,
{
    // Weight the output so that a gradient that is summed instead of mapped shows.
    let r = check_gradients(
        |xs| {
            let out = f(xs)?;
            let w = randn(out.dims(), 99);
            out.mul(&w)
        },
        inputs,
        1e-6,
        40,
    )
    .unwrap();
    assert!(
        r.max_numeric > 1e-3,
        "{name}: the check is vacuous (numeric gradient ~0)"
    );
    assert!(
        r.passed(TOL),
        "{name}: autograd differs from finite differences: {r:?}"
    );
}

#[test]
fn linear_layer() {
    assert_grads(
        "linear",
        |xs| candle_nn::Linear::new(xs[1].clone(), Some(xs[2].clone())).forward(&xs[0]),
        &[randn(&[3, 4], 1), randn(&[5, 4], 2), randn(&[5], 3)],
    );
}

#[test]
fn conv2d_layer() {
    let cfg = Conv2dConfig {
        padding: 1,
        stride: 1,
        ..Default::default()
    };
    assert_grads(
        "conv2d",
        |xs| candle_nn::Conv2d::new(xs[1].clone(), Some(xs[2].clone()), cfg).forward(&xs[0]),
        &[
            randn(&[2, 2, 5, 5], 1),
            randn(&[3, 2, 3, 3], 2),
            randn(&[3], 3),
        ],
    );
}

#[test]
fn max_pool_and_activations() {
    assert_grads(
        "max_pool2d",
        |xs| nn::max_pool2d(&xs[0], 2),
        &[randn(&[2, 2, 4, 4], 4)],
    );
    assert_grads(
        "max_pool2d odd",
        |xs| nn::max_pool2d(&xs[0], 2),
        &[randn(&[1, 2, 5, 5], 4)],
    );
    assert_grads("tanh", |xs| xs[0].tanh(), &[randn(&[3, 4], 5)]);
    assert_grads(
        "sigmoid",
        |xs| candle_nn::ops::sigmoid(&xs[0]),
        &[randn(&[3, 4], 6)],
    );
    assert_grads("gelu", |xs| xs[0].gelu_erf(), &[randn(&[3, 4], 7)]);
}

#[test]
fn taper_softmax_and_log_softmax() {
    assert_grads("softmax", |xs| nn::softmax(&xs[0]), &[randn(&[3, 5], 8)]);
    assert_grads(
        "log_softmax",
        |xs| nn::log_softmax(&xs[0]),
        &[randn(&[3, 5], 9)],
    );
}

#[test]
fn taper_layer_norm_and_rms_norm() {
    assert_grads(
        "layer_norm",
        |xs| nn::LayerNorm::new(xs[1].clone(), Some(xs[2].clone()), 1e-5).forward(&xs[0]),
        &[randn(&[3, 6], 10), randn(&[6], 11), randn(&[6], 12)],
    );
    // The fused kernel's values equal candle-nn's (whose values are right; only
    // its gradient is missing), on a 3-D input, with and without bias.
    let (x, w, b) = (randn(&[2, 4, 7], 17), randn(&[7], 18), randn(&[7], 19));
    let f = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
    let (xf, wf) = (f(&x), f(&w));
    for bias in [Some(f(&b)), None] {
        let ours = nn::LayerNorm::new(wf.clone(), bias.clone(), 1e-5)
            .forward(&xf)
            .unwrap();
        let theirs = match &bias {
            Some(b) => candle_nn::LayerNorm::new(wf.clone(), b.clone(), 1e-5),
            None => candle_nn::LayerNorm::new_no_bias(wf.clone(), 1e-5),
        }
        .forward(&xf)
        .unwrap();
        let diff = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
    }
    assert_grads(
        "layer_norm without bias, 3-D",
        |xs| nn::LayerNorm::new(xs[1].clone(), None, 1e-5).forward(&xs[0]),
        &[x, w],
    );
    assert_grads(
        "rms_norm",
        |xs| nn::rms_norm(&xs[0], &xs[1], 1e-5),
        &[randn(&[3, 6], 13), randn(&[6], 14)],
    );
}

#[test]
fn losses() {
    let targets = Tensor::new(&[2u32, 0, 4], &Device::Cpu).unwrap();
    assert_grads(
        "cross_entropy",
        |xs| nn::cross_entropy(&xs[0], &targets),
        &[randn(&[3, 5], 15)],
    );
    let y = randn(&[3, 4], 16);
    assert_grads("mse", |xs| nn::mse(&xs[0], &y), &[randn(&[3, 4], 17)]);
    let t = Tensor::new(&[[1f64, 0.0], [0.0, 1.0]], &Device::Cpu).unwrap();
    assert_grads(
        "bce_with_logits",
        |xs| nn::binary_cross_entropy_with_logits(&xs[0], &t),
        &[randn(&[2, 2], 18)],
    );
}

#[test]
fn embedding_lookup() {
    let ids = Tensor::new(&[1u32, 3, 1], &Device::Cpu).unwrap();
    assert_grads(
        "embedding",
        |xs| candle_nn::Embedding::new(xs[0].clone(), 4).forward(&ids),
        &[randn(&[5, 4], 19)],
    );
}

#[test]
fn the_check_catches_candles_silent_gradient_cuts() {
    // The reason these checks exist: candle-nn 0.11.1's fused softmax and layer
    // norm give no gradient while raising no error. If a candle release fixes
    // them this test fails, and the wrappers in `nn` can be simplified.
    let x = randn(&[3, 5], 20);
    let r = check_gradients(
        |xs| candle_nn::ops::softmax_last_dim(&xs[0])?.mul(&randn(&[3, 5], 99)),
        &[x],
        1e-6,
        40,
    )
    .unwrap();
    assert!(!r.passed(TOL), "softmax_last_dim now propagates: {r:?}");
    // LayerNorm::forward: f32 only; its weight gets no gradient at all.
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let ln = candle_nn::layer_norm(5, 1e-5, vb).unwrap();
    let xf = randn(&[3, 5], 22).to_dtype(DType::F32).unwrap();
    let w = randn(&[3, 5], 23).to_dtype(DType::F32).unwrap();
    let grads = ln
        .forward(&xf)
        .unwrap()
        .mul(&w)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let weight = vm.all_vars().into_iter().find(|v| v.dims() == [5]).unwrap();
    let g = grads.get(&weight).map(|g| {
        g.abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    });
    assert!(
        g.unwrap_or(0.0) == 0.0,
        "LayerNorm::forward now gives its weight a gradient"
    );
    // max_pool2d: a unique maximum gets 1/4 of its gradient with a 2x2 window.
    let x = randn(&[1, 1, 2, 2], 24);
    let v = candle_core::Var::from_tensor(&x).unwrap();
    let g = v
        .as_tensor()
        .max_pool2d(2)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let total = g
        .get(&v)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!(
        (total - 0.25).abs() < 1e-12,
        "candle max_pool2d gradient sum is now {total}"
    );
    let v2 = candle_core::Var::from_tensor(&x).unwrap();
    let g = nn::max_pool2d(v2.as_tensor(), 2)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        g.get(&v2)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap(),
        1.0
    );
    // And ours agree with candle's values where both exist.
    let y = randn(&[3, 5], 21);
    let a = nn::softmax(&y).unwrap();
    let b = candle_nn::ops::softmax_last_dim(&y).unwrap();
    let diff = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_keepdim(D::Minus1)
        .unwrap()
        .max_all()
        .unwrap();
    assert!(diff.to_scalar::<f64>().unwrap() < 1e-12);
    // Log-softmax too, in f64 and f32 (a vocabulary-sized row, as decoding has).
    let a = nn::log_softmax(&y).unwrap();
    let b = candle_nn::ops::log_softmax(&y, D::Minus1).unwrap();
    let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
    assert!(diff.to_scalar::<f64>().unwrap() < 1e-12);
    let y = (randn(&[4, 2525], 22) * 5.0)
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap();
    let a = nn::log_softmax(&y).unwrap();
    let b = candle_nn::ops::log_softmax(&y, D::Minus1).unwrap();
    let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
    assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
}

#[test]
fn taper_conv2d_matches_candle_and_has_exact_gradients() {
    use taper_nn::kernels;
    for (stride, padding) in [(1, 0), (1, 1), (2, 1), (2, 0)] {
        // Five images: strided convolutions of four or more small images take
        // the precomputed-gather im2col, the others the row-wise one.
        let x = randn(&[5, 3, 7, 6], 30);
        let w = randn(&[4, 3, 3, 3], 31);
        let ours = kernels::conv2d(&x, &w, stride, padding).unwrap();
        let theirs = x.conv2d(&w, padding, stride, 1, 1).unwrap();
        assert_eq!(ours.dims(), theirs.dims());
        let diff = (ours - theirs)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap();
        assert!(
            diff.to_scalar::<f64>().unwrap() < 1e-12,
            "stride {stride} padding {padding}"
        );
        assert_grads(
            "taper conv2d",
            |xs| kernels::conv2d(&xs[0], &xs[1], stride, padding),
            &[x.clone(), w.clone()],
        );
        // With the bias fused into the product.
        let b = randn(&[4], 37);
        let ours = kernels::conv2d_bias(&x, &w, Some(&b), stride, padding).unwrap();
        let theirs = x
            .conv2d(&w, padding, stride, 1, 1)
            .unwrap()
            .broadcast_add(&b.reshape((1, 4, 1, 1)).unwrap())
            .unwrap();
        let diff = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f64>().unwrap() < 1e-12);
        assert_grads(
            "taper conv2d with bias",
            |xs| kernels::conv2d_bias(&xs[0], &xs[1], Some(&xs[2]), stride, padding),
            &[x.clone(), w.clone(), b],
        );
    }
    // Other kernels whose output rows are as wide as their input rows (5x5 with
    // padding 2, 1x1 without) take the same one-copy im2col as 3x3 with padding 1.
    for (k, padding) in [(5, 2), (1, 0)] {
        let x = randn(&[2, 3, 7, 6], 38);
        let w = randn(&[4, 3, k, k], 39);
        let ours = kernels::conv2d(&x, &w, 1, padding).unwrap();
        let theirs = x.conv2d(&w, padding, 1, 1, 1).unwrap();
        let diff = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f64>().unwrap() < 1e-12, "{k}x{k}");
        assert_grads(
            "taper conv2d, same width",
            |xs| kernels::conv2d(&xs[0], &xs[1], 1, padding),
            &[x.clone(), w.clone()],
        );
    }
    // 5x5 convolutions without padding (LeNet's), output rows of 8 and 10
    // values: im2col's 8-value copies (the last overlapping) and col2im's
    // 8-value adds with a remainder; and with padding 1, rows narrower than
    // the input's and partly in the padding.
    for (h, wd, padding) in [(12, 12, 0), (9, 14, 0), (9, 14, 1)] {
        let x = randn(&[2, 3, h, wd], 42);
        let w = randn(&[4, 3, 5, 5], 43);
        let ours = kernels::conv2d(&x, &w, 1, padding).unwrap();
        let theirs = x.conv2d(&w, padding, 1, 1, 1).unwrap();
        let side = |s: usize| s + 2 * padding - 4;
        assert_eq!(ours.dims(), [2, 4, side(h), side(wd)]);
        let diff = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap();
        assert!(
            diff.to_scalar::<f64>().unwrap() < 1e-12,
            "{h}x{wd}, padding {padding}"
        );
        assert_grads(
            "taper conv2d, 5x5, narrower output rows",
            |xs| kernels::conv2d(&xs[0], &xs[1], 1, padding),
            &[x.clone(), w.clone()],
        );
    }
    // 4x4 and 3x3 convolutions with stride 2 and padding 1 on images of even
    // sides (a DCGAN's shapes), five images: the precomputed gather.
    for k in [4, 3] {
        let x = randn(&[5, 3, 8, 6], 40);
        let w = randn(&[4, 3, k, k], 41);
        let ours = kernels::conv2d(&x, &w, 2, 1).unwrap();
        let theirs = x.conv2d(&w, 1, 2, 1, 1).unwrap();
        assert_eq!(ours.dims(), [5, 4, 4, 3]);
        let diff = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f64>().unwrap() < 1e-12, "{k}x{k} stride 2");
        assert_grads(
            "taper conv2d, stride 2 on even sides",
            |xs| kernels::conv2d(&xs[0], &xs[1], 2, 1),
            &[x.clone(), w.clone()],
        );
    }
    // An image whose columns exceed the per-thread budget is convolved in bands
    // of output rows: same values, also with a stride and padding.
    let big = randn(&[3, 4, 700, 700], 32);
    let w1 = randn(&[2, 4, 3, 3], 33);
    const { assert!(4 * 9 * 700 * 700 > 8 * kernels::conv::COLUMN_BUDGET) };
    let sliced = kernels::conv2d(&big, &w1, 1, 1).unwrap();
    let whole = big.conv2d(&w1, 1, 1, 1, 1).unwrap();
    let diff = (sliced - whole)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    assert!(diff.to_scalar::<f64>().unwrap() < 1e-10);
    // Gradients through banded images equal candle's (4 bands, the last partial).
    let x = Var::from_tensor(&randn(&[1, 16, 301, 301], 34)).unwrap();
    let w = Var::from_tensor(&randn(&[3, 16, 3, 3], 35)).unwrap();
    let t = randn(&[1, 3, 151, 151], 36);
    const { assert!(16 * 9 * 151 * 151 > 3 * kernels::conv::COLUMN_BUDGET) };
    let grads = |y: Tensor| {
        let g = (y * &t).unwrap().sum_all().unwrap().backward().unwrap();
        [g.get(&x).unwrap().clone(), g.get(&w).unwrap().clone()]
    };
    let ours = grads(kernels::conv2d(x.as_tensor(), w.as_tensor(), 2, 1).unwrap());
    let theirs = grads(x.as_tensor().conv2d(w.as_tensor(), 1, 2, 1, 1).unwrap());
    for (a, b) in ours.iter().zip(&theirs) {
        let scale = b
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f64>().unwrap() < 1e-10 * scale.max(1.0));
    }
    let e = kernels::conv2d(&randn(&[1, 2, 5, 5], 1), &randn(&[4, 3, 3, 3], 2), 1, 0).unwrap_err();
    assert!(
        e.to_string()
            .contains("input has 2 channels, weight expects 3"),
        "{e}"
    );
    let e = kernels::conv2d(&randn(&[1, 3, 2, 2], 1), &randn(&[4, 3, 3, 3], 2), 1, 0).unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
}

#[test]
fn taper_kernels_for_pooling_and_relu() {
    // A small offset keeps ReLU inputs away from 0, where it has no derivative.
    let x = (randn(&[2, 3, 6, 5], 40) + 0.01).unwrap();
    assert_grads(
        "kernel relu",
        |xs| nn::relu(&xs[0]),
        std::slice::from_ref(&x),
    );
    let a = nn::relu(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let b = x
        .relu()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    assert_eq!(a, b);
    let p1 = nn::max_pool2d(&x, 2).unwrap();
    let p2 = nn::pool::max_pool2d_reshape(&x, 2).unwrap();
    assert_eq!(p1.dims(), &[2, 3, 3, 2]);
    assert_eq!(
        p1.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
        p2.flatten_all().unwrap().to_vec1::<f64>().unwrap()
    );
    assert_grads(
        "kernel max_pool2d",
        |xs| nn::max_pool2d(&xs[0], 2),
        std::slice::from_ref(&x),
    );
    assert_grads("kernel max_pool2d k3", |xs| nn::max_pool2d(&xs[0], 3), &[x]);
    // Ties (values rounded to halves), odd sides, a weighted sum: the 2x2 kernel
    // gives each window's gradient to its first maximum, as the argmax-and-gather
    // path (and PyTorch) does, value for value.
    let t = (randn(&[2, 3, 7, 5], 25) * 2.0)
        .unwrap()
        .round()
        .unwrap()
        .affine(0.5, 0.0)
        .unwrap();
    let wts = randn(&[2, 3, 3, 2], 26);
    let grad_of = |t: &Tensor, wts: &Tensor, pool: &dyn Fn(&Tensor) -> Tensor| {
        let v = candle_core::Var::from_tensor(t).unwrap();
        let y = pool(v.as_tensor());
        let g = (y.clone() * wts)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        (flat(&y), flat(g.get(&v).unwrap()))
    };
    let ours = grad_of(&t, &wts, &|x| nn::max_pool2d(x, 2).unwrap());
    let theirs = grad_of(&t, &wts, &|x| nn::pool::max_pool2d_reshape(x, 2).unwrap());
    assert_eq!(ours, theirs);
    assert!(ours.1.iter().filter(|v| **v != 0.0).count() == 2 * 3 * 3 * 2);
    // Rows of 9 windows: two blocks of four windows, then one alone.
    let t = (randn(&[2, 3, 7, 19], 27) * 2.0)
        .unwrap()
        .round()
        .unwrap()
        .affine(0.5, 0.0)
        .unwrap();
    let wts = randn(&[2, 3, 3, 9], 28);
    let ours = grad_of(&t, &wts, &|x| nn::max_pool2d(x, 2).unwrap());
    let theirs = grad_of(&t, &wts, &|x| nn::pool::max_pool2d_reshape(x, 2).unwrap());
    assert_eq!(ours, theirs);
    assert!(ours.1.iter().filter(|v| **v != 0.0).count() == 2 * 3 * 3 * 9);
    assert!(nn::max_pool2d(&randn(&[1, 1, 1, 4], 1), 2).is_err());
}

#[test]
fn fused_linear_matches_candle_and_has_exact_gradients() {
    use taper_nn::kernels::linear::linear;
    let x = randn(&[2, 3, 5], 50);
    let w = randn(&[4, 5], 51);
    let b = randn(&[4], 52);
    let ours = linear(&x, &w, Some(&b)).unwrap();
    let theirs = x
        .reshape((6, 5))
        .unwrap()
        .matmul(&w.t().unwrap())
        .unwrap()
        .broadcast_add(&b)
        .unwrap()
        .reshape((2, 3, 4))
        .unwrap();
    assert_eq!(ours.dims(), &[2, 3, 4]);
    let diff = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap();
    assert!(diff.to_scalar::<f64>().unwrap() < 1e-12);
    assert_grads(
        "fused linear",
        |t| linear(&t[0], &t[1], Some(&t[2])),
        &[x.clone(), w.clone(), b],
    );
    assert_grads(
        "fused linear without bias",
        |t| linear(&t[0], &t[1], None),
        &[x, w],
    );
    let e = linear(&randn(&[2, 3], 1), &randn(&[4, 5], 2), None).unwrap_err();
    assert!(e.to_string().contains("has 3 features"), "{e}");
}

/// The batched product of attention (`kernels::bmm`): both operands' gradients, which
/// read the other operand and the output gradient transposed in place.
#[test]
fn batched_matmul() {
    assert_grads(
        "bmm",
        |xs| nn::kernels::bmm(&xs[0], &xs[1]),
        // At least blas::MIN_WORK multiply-adds per product: the GEMM path.
        &[randn(&[1, 2, 32, 40], 1), randn(&[1, 2, 40, 32], 2)],
    );
    assert_grads(
        "bmm, small products",
        |xs| nn::kernels::bmm(&xs[0], &xs[1]),
        // Fewer: the plain loops, one query row as in decoding and a few rows.
        &[randn(&[2, 3, 1, 9], 3), randn(&[2, 3, 9, 5], 4)],
    );
    assert_grads(
        "bmm, small products, several rows",
        |xs| nn::kernels::bmm(&xs[0], &xs[1]),
        &[randn(&[3, 4, 11], 5), randn(&[3, 11, 6], 6)],
    );
}
