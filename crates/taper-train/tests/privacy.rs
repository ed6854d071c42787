//! The Rényi DP accountant against Opacus 1.6 (tools/dp_reference.py), and DP-SGD's
//! clipping and noise on a model whose per-example gradients are known.

use candle_core::{DType, Device, Tensor, Var};
use taper_train::privacy::{noise_for_epsilon, DpSgd, RdpAccountant};

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

#[test]
fn per_example_clipping_and_noise() {
    let dev = Device::Cpu;
    // loss_i = w · x_i: the per-example gradient is x_i itself.
    let w = Var::from_tensor(&Tensor::zeros(2, DType::F32, &dev).unwrap()).unwrap();
    let xs = [[3.0f32, 4.0], [0.3, 0.4], [0.0, -1.0]];
    let loss = |i: usize| -> taper_train::Result<Tensor> {
        let x = Tensor::new(&xs[i], &dev)?;
        Ok((w.as_tensor() * x)?.sum_all()?)
    };
    let quiet = DpSgd {
        max_grad_norm: 1.0,
        noise_multiplier: 0.0,
        seed: 1,
    };
    let (g, mean_norm) = quiet.noisy_grads(&[&w], 3, 0, loss).unwrap();
    // [3,4] (norm 5) is clipped to [0.6, 0.8]; the others are under the bound.
    let got = g.get(w.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    let want = [(0.6 + 0.3 + 0.0) / 3.0, (0.8 + 0.4 - 1.0) / 3.0];
    assert!(
        (got[0] - want[0]).abs() < 1e-5 && (got[1] - want[1]).abs() < 1e-5,
        "{got:?}"
    );
    assert!((mean_norm - (5.0 + 0.5 + 1.0) / 3.0).abs() < 1e-4);

    // With noise: standard deviation σC/n per coordinate, reproducible per step.
    let noisy = DpSgd {
        max_grad_norm: 1.0,
        noise_multiplier: 2.0,
        seed: 9,
    };
    let big = Var::from_tensor(&Tensor::zeros(20000, DType::F32, &dev).unwrap()).unwrap();
    let zero_loss = |_: usize| Ok((big.as_tensor() * 0.0)?.sum_all()?);
    let draw = |step| {
        let (g, _) = noisy.noisy_grads(&[&big], 4, step, zero_loss).unwrap();
        g.get(big.as_tensor()).unwrap().to_vec1::<f32>().unwrap()
    };
    let a = draw(5);
    assert_eq!(a, draw(5), "same seed and step, same noise");
    assert_ne!(a, draw(6));
    let var = a.iter().map(|v| (v * v) as f64).sum::<f64>() / a.len() as f64;
    let want = (2.0f64 / 4.0).powi(2);
    assert!(
        (var - want).abs() / want < 0.05,
        "noise variance {var} vs {want}"
    );
}

#[test]
fn dp_classifier_learns_and_counts_its_steps() {
    use candle_core::{Module, ModuleT};
    use candle_nn::{linear, Linear, VarMap};
    use taper_train::data::{DataLoader, LoaderConfig, TensorDataset};
    use taper_train::optim::{named_vars, Sgd, SgdConfig};
    use taper_train::privacy::DpClassifier;
    use taper_train::{Classifier, Optimizers, Trainer, TrainerConfig};

    struct Net(Linear);
    impl ModuleT for Net {
        fn forward_t(&self, x: &Tensor, _: bool) -> candle_core::Result<Tensor> {
            self.0.forward(x)
        }
    }
    // Two well separated classes in 2-D.
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
    let ds = TensorDataset::new(
        vec![
            Tensor::from_vec(x, (n, 2), &Device::Cpu).unwrap(),
            Tensor::from_vec(y, n, &Device::Cpu).unwrap(),
        ],
        &Device::Cpu,
    )
    .unwrap();
    let train = DataLoader::new(ds.clone(), LoaderConfig::train(32, 1)).unwrap();
    let valid = DataLoader::new(ds, LoaderConfig::eval(256)).unwrap();
    let vm = VarMap::new();
    let vb = taper_train::seed::seeded_var_builder(&vm, 1, DType::F32, &Device::Cpu);
    let mut model = DpClassifier {
        inner: Classifier::new(Net(linear(2, 2, vb).unwrap()), vm.clone()),
        dp: DpSgd {
            max_grad_norm: 1.0,
            noise_multiplier: 1.0,
            seed: 3,
        },
        sample_rate: 32.0 / 256.0,
        accountant: RdpAccountant::new(),
    };
    let mut opt = Optimizers::single(Sgd::new(
        named_vars(&vm, ""),
        SgdConfig {
            lr: 0.5,
            ..Default::default()
        },
    ));
    let cfg = TrainerConfig {
        epochs: 3,
        progress: false,
        verbose: false,
        ..Default::default()
    };
    let report = Trainer::new(cfg)
        .fit(&mut model, &mut opt, &train, Some(&valid))
        .unwrap();
    let acc = report.last().unwrap().valid["accuracy"];
    assert!(acc > 0.95, "accuracy {acc}");
    assert_eq!(model.accountant.steps(), 3 * 8);
    let (eps, _) = model.accountant.epsilon(1e-5);
    assert!(eps.is_finite() && eps > 0.0);
}
