//! The Rényi DP accountant against Opacus 1.6 (tools/dp_reference.py), and DP-SGD's
//! clipping and noise on a model whose per-example gradients are known.

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::VarMap;
use taper_nn::{linear, Dropout, Linear};
use taper_nn::{Forward, Mode};
use taper_train::clip::Clip;
use taper_train::data::{DataLoader, LoaderConfig, TensorDataset};
use taper_train::optim::{named_vars, Sgd, SgdConfig};
use taper_train::privacy::{noise_for_epsilon, DpSgd, RdpAccountant};
use taper_train::schedule::Constant;
use taper_train::{Classifier, Optimizers, Trainer, TrainerConfig};

/// (q, sigma, steps, delta, epsilon, best order) printed by tools/dp_reference.py.
const OPACUS: [(f64, f64, u64, f64, f64, f64); 7] = [
    (
        0.004266666666666667,
        1.1,
        14062,
        1e-05,
        2.5965558689607486,
        8.1,
    ),
    (
        0.004266666666666667,
        1.0,
        3515,
        1e-05,
        1.5596763335857946,
        9.7,
    ),
    (0.01, 4.0, 10000, 1e-05, 1.0354900660362476, 17.0),
    (0.001, 0.8, 1000, 1e-06, 1.4618758575568853, 8.6),
    (0.1, 2.5, 500, 1e-05, 4.507971633972563, 5.4),
    (1.0, 5.0, 10, 1e-05, 2.8136532471298397, 7.9),
    (0.004, 0.55, 3000, 1e-05, 8.225739126288582, 2.8),
];

#[test]
fn epsilon_matches_opacus_within_one_percent() {
    for (q, sigma, steps, delta, want, order) in OPACUS {
        let mut acc = RdpAccountant::new();
        // Recorded in two phases: the accountant must add them up.
        acc.record(q, sigma, steps / 2);
        acc.record(q, sigma, steps - steps / 2);
        assert_eq!(acc.steps(), steps);
        let (eps, best) = acc.epsilon(delta);
        let rel = (eps - want).abs() / want;
        assert!(
            rel < 0.01,
            "q={q} σ={sigma} steps={steps}: ε {eps} vs Opacus {want}"
        );
        assert_eq!(best, order, "q={q} σ={sigma}: best order");
    }
}

#[test]
fn noise_multiplier_for_a_target_epsilon_matches_opacus() {
    // Opacus get_noise_multiplier(target, 1e-5, 256/60000, 15 epochs).
    let steps = 15 * 60000 / 256;
    for (target, opacus) in [
        (1.0, 1.263427734375),
        (3.0, 0.773773193359375),
        (8.0, 0.5711555480957031),
    ] {
        let s = noise_for_epsilon(target, 1e-5, 256.0 / 60000.0, steps).unwrap();
        assert!(
            (s - opacus).abs() / opacus < 0.01,
            "ε {target}: σ {s} vs {opacus}"
        );
        let mut a = RdpAccountant::new();
        a.record(256.0 / 60000.0, s, steps);
        assert!(a.epsilon(1e-5).0 <= target + 1e-6);
    }
    assert!(noise_for_epsilon(0.0, 1e-5, 0.01, 10).is_err());
}

/// `Optimizers` with plain SGD (lr 1) on `vars` and DP-SGD installed.
fn dp_sgd(vars: Vec<(String, Var)>, dp: DpSgd) -> Optimizers {
    Optimizers::single(Sgd::new(
        vars,
        SgdConfig {
            lr: 1.0,
            ..Default::default()
        },
    ))
    .with_privacy(dp)
}

#[test]
fn per_example_clipping_and_noise() {
    let dev = Device::Cpu;
    // loss_i = w · x_i: the per-example gradient is x_i itself.
    let w = Var::from_tensor(&Tensor::zeros(2, DType::F32, &dev).unwrap()).unwrap();
    let xs = [[3.0f32, 4.0], [0.3, 0.4], [0.0, -1.0]];
    let loss = |i: usize, _: &Mode| -> taper_train::Result<Tensor> {
        let x = Tensor::new(&xs[i], &dev)?;
        Ok((w.as_tensor() * x)?.sum_all()?)
    };
    let quiet = DpSgd::new(1.0, 0.0, 0.1).unwrap().with_seeded_noise(1);
    let mut opt = dp_sgd(vec![("w".into(), w.clone())], quiet);
    // A batch-mean loss would reveal single examples: refused under DP-SGD.
    let e = opt
        .step("model", &w.as_tensor().sum_all().unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("per-example"), "{e}");
    let mean_norm = opt
        .step_per_example("model", 3, &Mode::train(0), loss)
        .unwrap();
    // [3,4] (norm 5) is clipped to [0.6, 0.8]; the others are under the bound.
    let got = w.as_tensor().to_vec1::<f32>().unwrap();
    let want = [-(0.6 + 0.3 + 0.0) / 3.0, -(0.8 + 0.4 - 1.0) / 3.0];
    assert!(
        (got[0] - want[0]).abs() < 1e-5 && (got[1] - want[1]).abs() < 1e-5,
        "{got:?}"
    );
    assert!((mean_norm - (5.0 + 0.5 + 1.0) / 3.0).abs() < 1e-4);
    assert_eq!(opt.privacy().unwrap().accountant.steps(), 1);
}

/// The update of a 20000-value zero-gradient parameter over a batch of 4 with
/// noise multiplier 2: pure noise of standard deviation σC/n.
fn noise_draw(dp: DpSgd) -> Vec<f32> {
    let big = Var::from_tensor(&Tensor::zeros(20000, DType::F32, &Device::Cpu).unwrap()).unwrap();
    let mut opt = dp_sgd(vec![("big".into(), big.clone())], dp);
    opt.step_per_example("model", 4, &Mode::train(0), |_, _| {
        Ok((big.as_tensor() * 0.0)?.sum_all()?)
    })
    .unwrap();
    big.as_tensor().neg().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn noise_has_the_right_scale_and_is_secret_by_default() {
    let seeded = |seed| noise_draw(DpSgd::new(1.0, 2.0, 0.1).unwrap().with_seeded_noise(seed));
    let a = seeded(9);
    assert_eq!(a, seeded(9), "a seeded stream repeats");
    assert_ne!(a, seeded(10));
    let var = a.iter().map(|v| (v * v) as f64).sum::<f64>() / a.len() as f64;
    let want = (2.0f64 / 4.0).powi(2);
    assert!(
        (var - want).abs() / want < 0.05,
        "noise variance {var} vs {want}"
    );
    // By default the noise comes from the OS's secure generator: two runs
    // configured identically draw different noise, of the same scale.
    let secure = || noise_draw(DpSgd::new(1.0, 2.0, 0.1).unwrap());
    let (s1, s2) = (secure(), secure());
    assert_ne!(s1, s2);
    let var = s1.iter().map(|v| (v * v) as f64).sum::<f64>() / s1.len() as f64;
    assert!(
        (var - want).abs() / want < 0.05,
        "secure noise variance {var}"
    );
    // Bad settings are refused when built.
    assert!(DpSgd::new(0.0, 1.0, 0.1).is_err());
    assert!(DpSgd::new(1.0, -1.0, 0.1).is_err());
    assert!(DpSgd::new(1.0, 1.0, 1.5).is_err());
}

/// Linear → dropout → linear: a classifier whose training draws randomness.
struct Net {
    a: Linear,
    drop: Dropout,
    b: Linear,
}

impl Forward for Net {
    fn forward_t(&self, x: &Tensor, mode: &Mode) -> candle_core::Result<Tensor> {
        let h = self.drop.forward_t(&self.a.forward(x)?.relu()?, mode)?;
        self.b.forward(&h)
    }
}

/// Two well separated classes in 2-D: 256 rows.
fn two_classes() -> TensorDataset {
    let n = 256;
    let x: Vec<f32> = (0..n)
        .flat_map(|i| {
            let s = if i % 2 == 0 { 1.0 } else { -1.0 };
            [
                s * 2.0 + (i % 7) as f32 * 0.1,
                s * 2.0 - (i % 5) as f32 * 0.1,
            ]
        })
        .collect();
    let y: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
    TensorDataset::new(
        vec![
            Tensor::from_vec(x, (n, 2), &Device::Cpu).unwrap(),
            Tensor::from_vec(y, n, &Device::Cpu).unwrap(),
        ],
        &Device::Cpu,
    )
    .unwrap()
}

struct DpRun {
    weights: Vec<Vec<f32>>,
    accuracy: f64,
    opt: Optimizers,
}

/// Three epochs of DP-SGD (batch 32, C = 1, σ = 1, seeded noise) on the two
/// classes, trainer seed `seed`, accumulating `accumulate` batches per update.
fn dp_run(seed: u64, accumulate: usize, clip: Clip) -> DpRun {
    let ds = two_classes();
    let train = DataLoader::new(ds.clone(), LoaderConfig::train(32, 1)).unwrap();
    let valid = DataLoader::new(ds, LoaderConfig::eval(256)).unwrap();
    let vm = VarMap::new();
    let vb = taper_nn::init::seeded_var_builder(&vm, 1, DType::F32, &Device::Cpu);
    let net = Net {
        a: linear(2, 8, vb.pp("a")).unwrap(),
        drop: Dropout::new(0.2, "drop").unwrap(),
        b: linear(8, 2, vb.pp("b")).unwrap(),
    };
    let mut model = Classifier::new(net, vm.clone());
    let dp = DpSgd::new(1.0, 1.0, 32.0 / 256.0)
        .unwrap()
        .with_seeded_noise(3);
    let mut opt = Optimizers::new()
        .with_group(
            "model",
            Sgd::new(
                named_vars(&vm, ""),
                SgdConfig {
                    lr: 0.5,
                    ..Default::default()
                },
            ),
            Constant(0.5),
            clip,
        )
        .with_accumulation(accumulate)
        .with_privacy(dp);
    let cfg = TrainerConfig {
        epochs: 3,
        seed,
        progress: false,
        verbose: false,
        ..Default::default()
    };
    let report = Trainer::new(cfg)
        .fit(&mut model, &mut opt, &train, Some(&valid))
        .unwrap();
    DpRun {
        weights: named_vars(&vm, "")
            .into_iter()
            .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
            .collect(),
        accuracy: report.last().unwrap().valid["accuracy"],
        opt,
    }
}

#[test]
fn dp_classifier_learns_and_counts_its_updates() {
    let run = dp_run(0, 1, Clip::None);
    assert!(run.accuracy > 0.95, "accuracy {}", run.accuracy);
    let dp = run.opt.privacy().unwrap();
    assert_eq!(dp.accountant.steps(), 3 * 8);
    let (eps, _) = dp.epsilon(1e-5);
    assert!(eps.is_finite() && eps > 0.0);
}

#[test]
fn dp_sgd_with_dropout_repeats_with_the_same_seed() {
    // Per-example passes run on the thread pool: each example's dropout mask is
    // a fork of the step's stream, so the weights repeat exactly...
    let a = dp_run(7, 1, Clip::None);
    let b = dp_run(7, 1, Clip::None);
    assert_eq!(a.weights, b.weights);
    // ...and the masks are really drawn: another trainer seed, other weights.
    assert_ne!(a.weights, dp_run(8, 1, Clip::None).weights);
}

#[test]
fn dp_sgd_honours_accumulation_and_clipping() {
    let run = dp_run(0, 2, Clip::GlobalNorm(0.01));
    // 8 batches an epoch, 2 per update: 4 updates an epoch, each one sampled at
    // twice the batch rate, and the noise drawn once per update.
    let g = &run.opt.groups()[0];
    assert_eq!(g.steps(), 3 * 4);
    let dp = run.opt.privacy().unwrap();
    assert_eq!(dp.accountant.steps(), 3 * 4);
    assert_eq!(dp.accountant.history, vec![(64.0 / 256.0, 1.0, 12)]);
    // The group's clipping applied to the noisy mean gradient.
    assert!(g.last_grad_norm().unwrap() > 0.01);
}
