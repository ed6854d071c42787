//! The same inputs give bit-identical values and gradients on every call, on two
//! threads, whatever the thread timing, and the same as on one thread: every
//! parallel reduction in the kernels sums in a fixed order.

mod common;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarMap;
use common::{randn, run, Op};
use taper_nn::init::seeded_var_builder;
use taper_nn::{kernels, Forward, Mode};

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// 20 calls on two threads agree bit for bit, and with a call on one thread.
fn check(name: &str, f: &Op<'_>, inputs: &[Tensor]) {
    let one = pool(1).install(|| run(f, inputs));
    let two = pool(2);
    for call in 0..20 {
        let got = two.install(|| run(f, inputs));
        for (i, (a, b)) in got.iter().zip(&one).enumerate() {
            let what = if i == 0 {
                "value".to_string()
            } else {
                format!("gradient of input {}", i - 1)
            };
            assert!(
                a == b,
                "{name}: {what} differs on call {call} (2 threads vs 1)"
            );
        }
    }
}

#[test]
fn convolutions_are_deterministic() {
    // A LeNet-sized and a CIFAR-sized batch: 3x32x32 images, 32 of them.
    check(
        "conv2d + bias",
        &|t| kernels::conv2d_bias(&t[0], &t[1], Some(&t[2]), 1, 1),
        &[
            randn(&[32, 3, 32, 32], 1),
            randn(&[16, 3, 3, 3], 2),
            randn(&[16], 3),
        ],
    );
    check(
        "strided conv2d",
        &|t| kernels::conv2d_bias(&t[0], &t[1], Some(&t[2]), 2, 1),
        &[
            randn(&[64, 16, 14, 14], 4),
            randn(&[32, 16, 4, 4], 5),
            randn(&[32], 6),
        ],
    );
    check(
        "transposed conv2d",
        &|t| kernels::conv_transpose2d(&t[0], &t[1], 2, 1),
        &[randn(&[64, 32, 7, 7], 7), randn(&[32, 16, 4, 4], 8)],
    );
}

#[test]
fn dense_and_normalising_layers_are_deterministic() {
    check(
        "linear",
        &|t| kernels::linear::linear(&t[0], &t[1], Some(&t[2])),
        &[
            randn(&[256, 784], 10),
            randn(&[128, 784], 11),
            randn(&[128], 12),
        ],
    );
    check(
        "layer norm",
        &|t| taper_nn::LayerNorm::new(t[1].clone(), Some(t[2].clone()), 1e-5).forward(&t[0]),
        &[randn(&[640, 256], 13), randn(&[256], 14), randn(&[256], 15)],
    );
    check(
        "softmax",
        &|t| taper_nn::softmax(&t[0]),
        &[randn(&[640, 500], 16)],
    );
    let vm = VarMap::new();
    let bn = taper_nn::batch_norm(
        32,
        taper_nn::BatchNormConfig::default(),
        seeded_var_builder(&vm, 0, DType::F32, &Device::Cpu),
    )
    .unwrap();
    check(
        "batch norm + relu",
        &|t| bn.forward_relu_t(&t[0], &Mode::train(0)),
        &[randn(&[64, 32, 14, 14], 17)],
    );
    check(
        "max-pool, relu, leaky relu, tanh",
        &|t| {
            let p = taper_nn::max_pool2d(&taper_nn::relu(&t[0])?, 2)?;
            taper_nn::tanh(&taper_nn::leaky_relu(&p, 0.2)?)
        },
        &[randn(&[64, 32, 28, 28], 18)],
    );
    let drop = taper_nn::Dropout::new(0.3, "d").unwrap();
    check(
        "dropout",
        &|t| drop.forward_t(&t[0], &Mode::train(5)),
        &[randn(&[64, 32, 28, 28], 19)],
    );
}

#[test]
fn sequence_kernels_are_deterministic() {
    let targets: Vec<u32> = (0..640).map(|i| (i * 7 % 1000) as u32).collect();
    check(
        "token losses",
        &|t| taper_nn::loss::token_losses(&t[0], &targets, 0.1),
        &[randn(&[640, 1000], 20)],
    );
    check(
        "linear + token losses",
        &|t| taper_nn::loss::linear_token_losses(&t[0], &t[1], &t[2], &targets, 0.1),
        &[
            randn(&[32, 20, 256], 21),
            randn(&[1000, 256], 22),
            randn(&[1000], 23),
        ],
    );
    check(
        "lstm",
        &|t| kernels::rnn::lstm_seq(&t[0], &t[1], &t[2]),
        &[
            randn(&[20, 32, 512], 24),
            randn(&[512, 128], 25),
            randn(&[2, 32, 128], 26),
        ],
    );
    check(
        "batched matmul (attention scores)",
        &|t| kernels::bmm(&t[0], &t[1]),
        &[randn(&[32, 4, 128, 64], 30), randn(&[32, 4, 64, 128], 31)],
    );
    check(
        "batched matmul, small products (decoding's attention)",
        &|t| kernels::bmm(&t[0], &t[1]),
        &[randn(&[64, 4, 1, 64], 32), randn(&[64, 4, 64, 19], 33)],
    );
    check(
        "log-softmax",
        &|t| taper_nn::log_softmax(&t[0]),
        &[randn(&[300, 2525], 34)],
    );
    check(
        "additive attention scores",
        &|t| kernels::attention::additive_scores(&t[0], &t[1], &t[2]),
        &[
            randn(&[32, 20, 128], 27),
            randn(&[32, 20, 128], 28),
            randn(&[128], 29),
        ],
    );
}

/// Strided convolutions of four or more images multiply several images'
/// columns in one product (`conv::group_size`): each image's output and input
/// gradient are the same bits as when it is convolved alone (one image takes
/// the row-wise im2col and a product of its own). Nineteen images: groups of
/// eight and a last, partial one.
#[test]
fn grouped_convolution_products_equal_per_image_ones() {
    use candle_core::Var;
    type Conv = dyn Fn(&Tensor) -> candle_core::Result<Tensor>;
    let (w, b) = (randn(&[32, 16, 4, 4], 21), randn(&[32], 22));
    let wt = randn(&[32, 16, 4, 4], 23);
    let cases: [(&str, Box<Conv>, Tensor); 2] = [
        (
            "strided conv2d + bias",
            Box::new(move |x: &Tensor| kernels::conv2d_bias(x, &w, Some(&b), 2, 1)),
            randn(&[19, 16, 14, 14], 24),
        ),
        (
            "transposed conv2d",
            Box::new(move |x: &Tensor| kernels::conv_transpose2d(x, &wt, 2, 1)),
            randn(&[19, 32, 7, 7], 25),
        ),
    ];
    let bits = |t: &Tensor| -> Vec<u32> {
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        v.into_iter().map(f32::to_bits).collect()
    };
    for (name, f, x) in cases {
        // The output and the input gradient of a weighted sum of the output.
        let value_and_grad = |x: &Tensor, weights: &Tensor| {
            let v = Var::from_tensor(x).unwrap();
            let y = f(v.as_tensor()).unwrap();
            let g = (&y * weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            (y, g.get(&v).unwrap().clone())
        };
        let weights = randn(f(&x).unwrap().dims(), 26);
        let (y, dx) = value_and_grad(&x, &weights);
        for i in 0..19 {
            let (yi, dxi) = value_and_grad(
                &x.narrow(0, i, 1).unwrap(),
                &weights.narrow(0, i, 1).unwrap(),
            );
            assert_eq!(
                bits(&y.narrow(0, i, 1).unwrap()),
                bits(&yi),
                "{name}: image {i}'s value"
            );
            assert_eq!(
                bits(&dx.narrow(0, i, 1).unwrap()),
                bits(&dxi),
                "{name}: image {i}'s input gradient"
            );
        }
    }
}
