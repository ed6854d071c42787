//! Every vector-instruction level the CPU has (`kernels::simd`) gives the same
//! bits as the portable build, values and gradients, for every kernel whose loops
//! run through `simd::dispatch`. One test function: the level is process-wide, so
//! nothing else may run beside it in this binary.

mod common;

use candle_core::Module;
use common::{randn, run, Op};
use taper_nn::kernels::{self, simd};

#[test]
fn every_level_matches_the_portable_one_bit_for_bit() {
    let targets: Vec<u32> = (0..640).map(|i| (i * 7 % 1000) as u32).collect();
    // Odd sizes, so the vector loops' remainders are covered as well.
    let cases: Vec<(&str, Box<Op<'_>>, Vec<candle_core::Tensor>)> = vec![
        (
            "gelu",
            Box::new(|t| taper_nn::gelu(&t[0])),
            vec![randn(&[37, 1539], 1)],
        ),
        (
            "tanh, relu, leaky relu",
            Box::new(|t| taper_nn::tanh(&taper_nn::leaky_relu(&taper_nn::relu(&t[0])?, 0.2)?)),
            vec![randn(&[33, 1001], 2)],
        ),
        (
            "layer norm",
            Box::new(|t| {
                taper_nn::LayerNorm::new(t[1].clone(), Some(t[2].clone()), 1e-12).forward(&t[0])
            }),
            vec![randn(&[97, 383], 3), randn(&[383], 4), randn(&[383], 5)],
        ),
        (
            "batch norm + relu (training statistics)",
            Box::new(|t| {
                let vm = candle_nn::VarMap::new();
                let bn = taper_nn::batch_norm(
                    5,
                    taper_nn::BatchNormConfig::default(),
                    taper_nn::init::seeded_var_builder(
                        &vm,
                        0,
                        candle_core::DType::F32,
                        &candle_core::Device::Cpu,
                    ),
                )?;
                bn.forward_relu_t(&t[0], &taper_nn::Mode::train(0))
            }),
            vec![randn(&[3, 5, 7, 9], 14)],
        ),
        (
            "3x3 convolution with bias, padding 1 (col2im and channel sums in its gradients)",
            Box::new(|t| kernels::conv2d_bias(&t[0], &t[1], Some(&t[2]), 1, 1)),
            vec![
                randn(&[2, 3, 9, 7], 18),
                randn(&[4, 3, 3, 3], 19),
                randn(&[4], 23),
            ],
        ),
        (
            "4x4 convolution, stride 2 (col2im's strided rows)",
            Box::new(|t| kernels::conv2d(&t[0], &t[1], 2, 1)),
            vec![randn(&[2, 3, 10, 14], 20), randn(&[5, 3, 4, 4], 21)],
        ),
        (
            "4x4 convolution, stride 2, five images (the precomputed gather and its inverse)",
            Box::new(|t| kernels::conv2d(&t[0], &t[1], 2, 1)),
            vec![randn(&[5, 3, 10, 14], 27), randn(&[5, 3, 4, 4], 28)],
        ),
        (
            "2x2 max pooling, odd sides",
            Box::new(|t| taper_nn::max_pool2d(&t[0], 2)),
            vec![randn(&[2, 3, 9, 7], 22)],
        ),
        (
            "2x2 max pooling, rows of 9 windows (blocks of four and a remainder)",
            Box::new(|t| taper_nn::max_pool2d(&t[0], 2)),
            vec![randn(&[2, 3, 7, 19], 24)],
        ),
        (
            "5x5 convolution without padding, rows of 10 (short copies and adds)",
            Box::new(|t| kernels::conv2d(&t[0], &t[1], 1, 0)),
            vec![randn(&[2, 3, 9, 14], 25), randn(&[4, 3, 5, 5], 26)],
        ),
        (
            "softmax",
            Box::new(|t| taper_nn::softmax(&t[0])),
            vec![randn(&[130, 77], 6)],
        ),
        (
            "log-softmax",
            Box::new(|t| taper_nn::log_softmax(&t[0])),
            vec![randn(&[130, 2525], 15)],
        ),
        (
            "small batched products (decoding's attention)",
            Box::new(|t| kernels::bmm(&t[0], &t[1])),
            vec![randn(&[33, 4, 3, 67], 16), randn(&[33, 4, 67, 13], 17)],
        ),
        (
            "token losses",
            Box::new(|t| taper_nn::loss::token_losses(&t[0], &targets, 0.1)),
            vec![randn(&[640, 1000], 7)],
        ),
        (
            "lstm",
            Box::new(|t| kernels::rnn::lstm_seq(&t[0], &t[1], &t[2])),
            vec![
                randn(&[9, 5, 4 * 27], 8),
                randn(&[4 * 27, 27], 9),
                randn(&[2, 5, 27], 10),
            ],
        ),
        (
            "additive attention scores",
            Box::new(|t| kernels::attention::additive_scores(&t[0], &t[1], &t[2])),
            vec![
                randn(&[3, 7, 37], 11),
                randn(&[3, 5, 37], 12),
                randn(&[37], 13),
            ],
        ),
    ];
    let levels = simd::available();
    println!(
        "levels on this CPU: {:?}",
        levels.iter().map(|l| l.name()).collect::<Vec<_>>()
    );
    for (name, op, inputs) in &cases {
        simd::set_level(simd::Level::Portable).unwrap();
        let portable = run(op.as_ref(), inputs);
        for &level in &levels[1..] {
            simd::set_level(level).unwrap();
            let got = run(op.as_ref(), inputs);
            for (i, (a, b)) in got.iter().zip(&portable).enumerate() {
                let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
                assert!(
                    a == b,
                    "{name} at {}: output {i} differs from the portable build in {} of {} values",
                    level.name(),
                    a.len() - same,
                    a.len()
                );
            }
        }
    }
    // The f64 sums themselves (a difference in their last bit rarely reaches an
    // f32 output above): dot_sums' vector paths against the generic lane sums,
    // on lengths with every remainder.
    let data = randn(&[2, 1001], 29).to_vec2::<f32>().unwrap();
    for &level in &levels {
        simd::set_level(level).unwrap();
        for n in (0..=40).chain([1001]) {
            let (a, b) = (&data[0][..n], &data[1][..n]);
            let want = kernels::vmath::lane_sums(a, b, |x, y| (y, x * y));
            let got = kernels::vmath::dot_sums(a, b);
            assert!(
                got.0.to_bits() == want.0.to_bits() && got.1.to_bits() == want.1.to_bits(),
                "dot_sums at {}, length {n}: {got:?} against {want:?}",
                level.name()
            );
        }
    }
    simd::set_level(simd::detected()).unwrap();
}
