//! DCGAN: a short training run (both losses move, both networks change, samples
//! in [-1, 1]), exact resume of both networks and both optimizers, bad input, and
//! IS / Fréchet distance on known cases. Its layers are tested in `taper-nn`.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use std::path::Path;
use taper_nn::init::seeded_var_builder;
use taper_nn::Mode;
use taper_train::data::{DataLoader, LoaderConfig, TensorDataset};
use taper_train::{Trainer, TrainerConfig};
use taper_vision::datasets::{digits, load_digits};
use taper_vision::metrics::{frechet_distance, inception_score, GaussianStats};
use taper_vision::models::dcgan::{check_gan_weights, GanOptimConfig};
use taper_vision::models::{Dcgan, DcganConfig};

fn tiny() -> DcganConfig {
    DcganConfig {
        latent: 8,
        channels: 1,
        image_size: 8,
        gen_width: 8,
        disc_width: 8,
        classes: None,
    }
}

/// 128 embedded digits scaled to [-1, 1], and their labels.
fn digits_loader(batch: usize) -> DataLoader<taper_train::data::TensorBatch> {
    let (x, y) = load_digits(&digits::default_digits_path()).unwrap();
    let x = x.narrow(0, 0, 128).unwrap().affine(2.0, -1.0).unwrap();
    let y = y.narrow(0, 0, 128).unwrap();
    let cfg = LoaderConfig {
        drop_last: true,
        ..LoaderConfig::train(batch, 7)
    };
    DataLoader::new(TensorDataset::new(vec![x, y], &Device::Cpu).unwrap(), cfg).unwrap()
}

fn train(
    cfg: DcganConfig,
    epochs: usize,
    run: Option<&Path>,
    resume: bool,
) -> (Dcgan, taper_train::FitReport) {
    let vm = VarMap::new();
    let mut gan = Dcgan::new(cfg, &vm, 5, &Device::Cpu).unwrap();
    let mut opt = gan.optimizers(GanOptimConfig::default());
    let mut trainer = Trainer::new(TrainerConfig {
        epochs,
        run_dir: run.map(Path::to_path_buf),
        seed: 5,
        resume,
        progress: false,
        verbose: false,
        ..Default::default()
    });
    let report = trainer
        .fit(&mut gan, &mut opt, &digits_loader(32), None)
        .unwrap();
    (gan, report)
}

fn snapshot(gan: &Dcgan, prefix: &str) -> Vec<f32> {
    let mut v = Vec::new();
    for (_, var) in gan.trainable(prefix) {
        v.extend(
            var.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
        );
    }
    v
}

#[test]
fn short_training_moves_both_networks() {
    let vm = VarMap::new();
    let before = Dcgan::new(tiny(), &vm, 5, &Device::Cpu).unwrap();
    let (g0, d0) = (snapshot(&before, "gen"), snapshot(&before, "disc"));
    let (gan, report) = train(tiny(), 3, None, false);
    assert_ne!(g0, snapshot(&gan, "gen"), "generator unchanged");
    assert_ne!(d0, snapshot(&gan, "disc"), "discriminator unchanged");
    let h = &report.history;
    for key in ["d_loss", "g_loss"] {
        let (a, b) = (h[0].train[key], h[2].train[key]);
        assert!(a.is_finite() && b.is_finite());
        assert!((a - b).abs() > 1e-3, "{key} did not move: {a} -> {b}");
    }
    let z = gan.noise("test", 0, 16, &Device::Cpu).unwrap();
    let x = gan.generate(&z, None).unwrap();
    assert_eq!(x.dims(), &[16, 1, 8, 8]);
    let (lo, hi): (f32, f32) = (
        x.min_all().unwrap().to_scalar().unwrap(),
        x.max_all().unwrap().to_scalar().unwrap(),
    );
    assert!((-1.0..=1.0).contains(&lo) && (-1.0..=1.0).contains(&hi) && hi > lo);
    let logits = gan.disc.forward_t(&x, None, &Mode::eval()).unwrap();
    assert_eq!(logits.dims(), &[16]);
}

#[test]
fn resume_restores_both_networks_and_optimizers() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, _) = train(tiny(), 2, None, false);
    train(tiny(), 1, Some(dir.path()), false);
    let (resumed, report) = train(tiny(), 2, Some(dir.path()), true);
    assert_eq!(report.resumed_at, 1);
    for p in ["gen", "disc"] {
        assert_eq!(
            snapshot(&whole, p),
            snapshot(&resumed, p),
            "{p} differs after resume"
        );
    }
    let ck = dir.path().join("checkpoints");
    let latest = taper_train::checkpoint::read(dir.path(), "latest")
        .unwrap()
        .unwrap();
    for f in [
        "optim-d.safetensors",
        "optim-g.safetensors",
        "model.safetensors",
    ] {
        assert!(
            latest.dir.join(f).is_file(),
            "{f} missing in {}",
            ck.display()
        );
    }
    check_gan_weights(&latest.weights_path()).unwrap();
}

#[test]
fn checkpoint_missing_a_network_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let vm = VarMap::new();
    let gan = Dcgan::new(tiny(), &vm, 1, &Device::Cpu).unwrap();
    // A weights file holding only the generator.
    let only_gen = VarMap::new();
    let _ = taper_vision::models::dcgan::generator(
        tiny(),
        seeded_var_builder(&only_gen, 1, DType::F32, &Device::Cpu).pp("gen"),
    )
    .unwrap();
    let p = dir.path().join("gen.safetensors");
    taper_train::checkpoint::save_weights(&only_gen, &p).unwrap();
    let e = gan.load_weights(&p).unwrap_err().to_string();
    assert!(e.contains("no discriminator"), "{e}");
    let e = gan
        .load_weights(&dir.path().join("none.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("file not found"), "{e}");
}

#[test]
fn conditional_generation_and_bad_labels() {
    let cfg = tiny().conditional(10);
    let (gan, report) = train(cfg, 1, None, false);
    assert!(report.history[0].train["g_loss"].is_finite());
    let z = gan.noise("test", 0, 10, &Device::Cpu).unwrap();
    let labels = Tensor::arange(0u32, 10, &Device::Cpu).unwrap();
    assert_eq!(
        gan.generate(&z, Some(&labels)).unwrap().dims(),
        &[10, 1, 8, 8]
    );
    let bad = Tensor::new(&[3u32, 1, 4, 1, 5, 9, 2, 6, 5, 10], &Device::Cpu).unwrap();
    let e = gan.generate(&z, Some(&bad)).unwrap_err().to_string();
    assert!(e.contains("class 10 was not trained on"), "{e}");
    let e = gan.generate(&z, None).unwrap_err().to_string();
    assert!(e.contains("conditional"), "{e}");
    let (plain, _) = (
        Dcgan::new(tiny(), &VarMap::new(), 0, &Device::Cpu).unwrap(),
        (),
    );
    let e = plain
        .generate(&z.narrow(1, 0, 8).unwrap(), Some(&labels))
        .unwrap_err()
        .to_string();
    assert!(e.contains("trained without class labels"), "{e}");
    let e = Dcgan::new(
        DcganConfig {
            image_size: 10,
            ..tiny()
        },
        &VarMap::new(),
        0,
        &Device::Cpu,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("multiple of 4"), "{e}");
    // A generator's output fed back with the wrong size names the expected shape.
    let e = gan
        .disc
        .forward_t(
            &Tensor::zeros((2, 1, 28, 28), DType::F32, &Device::Cpu).unwrap(),
            Some(&labels.narrow(0, 0, 2).unwrap()),
            &Mode::eval(),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("(N, 1, 8, 8)"), "{e}");
    let _ = gan.gen.config();
}

#[test]
fn inception_score_known_cases() {
    let eye = Tensor::eye(10, DType::F64, &Device::Cpu).unwrap();
    let confident = Tensor::cat(&[&eye; 10], 0).unwrap(); // 100 rows, 10 of each class
    let (is, sd) = inception_score(&confident, 10).unwrap();
    assert!((is - 10.0).abs() < 1e-9 && sd < 1e-9, "{is} {sd}");
    let one_class = Tensor::cat(&[&eye.narrow(0, 3, 1).unwrap(); 50], 0).unwrap();
    assert!((inception_score(&one_class, 1).unwrap().0 - 1.0).abs() < 1e-12);
    let uniform = Tensor::full(0.1f64, (20, 10), &Device::Cpu).unwrap();
    assert!((inception_score(&uniform, 2).unwrap().0 - 1.0).abs() < 1e-12);
    assert!(inception_score(&uniform, 21).is_err());
}

#[test]
fn frechet_distance_known_cases() {
    let x = taper_nn::init::init_tensor(
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
        &(500, 6).into(),
        &mut taper_nn::init::rng_for(11, "test"),
        DType::F64,
        &Device::Cpu,
    )
    .unwrap();
    let s = GaussianStats::from_features(&x).unwrap();
    assert!(frechet_distance(&s, &s).unwrap().abs() < 1e-9);
    // Shifting every sample by mu leaves the covariance: the distance is |mu|^2.
    let mu = Tensor::new(&[1.0f64, -2.0, 0.5, 0.0, 3.0, 1.0], &Device::Cpu).unwrap();
    let shifted = GaussianStats::from_features(&x.broadcast_add(&mu).unwrap()).unwrap();
    let d = frechet_distance(&s, &shifted).unwrap();
    assert!((d - 15.25).abs() < 1e-8, "{d}");
    // Diagonal covariances: sum of (sigma1 - sigma2)^2 plus the mean term.
    let a = GaussianStats {
        mean: nalgebra::DVector::from_vec(vec![0.0, 0.0]),
        cov: nalgebra::DMatrix::from_diagonal(&nalgebra::DVector::from_vec(vec![1.0, 4.0])),
    };
    let b = GaussianStats {
        mean: nalgebra::DVector::from_vec(vec![1.0, 1.0]),
        cov: nalgebra::DMatrix::from_diagonal(&nalgebra::DVector::from_vec(vec![9.0, 1.0])),
    };
    let d = frechet_distance(&a, &b).unwrap();
    assert!((d - (2.0 + 4.0 + 1.0)).abs() < 1e-10, "{d}");
    assert!(GaussianStats::from_features(&x.narrow(0, 0, 1).unwrap()).is_err());
}

#[test]
fn per_epoch_scores_reach_the_report_section() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path();
    let vm = VarMap::new();
    let mut gan = Dcgan::new(tiny(), &vm, 5, &Device::Cpu).unwrap();
    let mut opt = gan.optimizers(GanOptimConfig::default());
    let scorer_vars = VarMap::new();
    let lenet = taper_vision::models::LeNet::new(
        taper_vision::models::LeNetConfig::digits(),
        seeded_var_builder(&scorer_vars, 3, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let (reference, _) = load_digits(&digits::default_digits_path()).unwrap();
    let grids = taper_vision::grid::SampleGrids::new(gan.gen.clone(), 5, &run.join("samples"), 1)
        .with_report(run)
        .with_scores(lenet, &reference.narrow(0, 0, 200).unwrap(), 64)
        .unwrap();
    let mut trainer = Trainer::new(TrainerConfig {
        epochs: 2,
        run_dir: Some(run.to_path_buf()),
        seed: 5,
        progress: false,
        verbose: false,
        ..Default::default()
    })
    .with_callback(grids);
    trainer
        .fit(&mut gan, &mut opt, &digits_loader(32), None)
        .unwrap();
    let scores = taper_vision::grid::load_scores(&run.join("samples"));
    assert_eq!(scores.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 2]);
    // One class among ten at worst, ten at best; a distance is never negative.
    assert!(scores
        .iter()
        .all(|s| (1.0..=10.0).contains(&s.1) && s.2 >= 0.0));
    let sections = taper_train::report::Section::load_all(run).unwrap();
    let gan_section = sections
        .iter()
        .find(|s| s.title == "Generated samples")
        .unwrap();
    let curves: Vec<(&str, Vec<(f64, f64)>)> = gan_section
        .blocks
        .iter()
        .filter_map(|b| match b {
            taper_train::report::Block::Lines { title, series, .. } => {
                Some((title.as_str(), series[0].points.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(curves.len(), 2);
    assert_eq!(curves[0].0, "Inception Score");
    assert_eq!(curves[0].1, vec![(1.0, scores[0].1), (2.0, scores[1].1)]);
    assert_eq!(curves[1].0, "Fréchet distance");
    assert_eq!(curves[1].1, vec![(1.0, scores[0].2), (2.0, scores[1].2)]);
    // The page draws them.
    let page = taper_train::report::render(run).unwrap();
    assert!(page.contains("Inception Score") && page.contains("Fréchet distance"));
}

#[test]
fn frozen_discriminator_gives_input_gradients_only() {
    use taper_vision::models::dcgan::discriminator;
    let vm = VarMap::new();
    let vb = seeded_var_builder(&vm, 3, DType::F32, &Device::Cpu);
    let d = discriminator(tiny(), vb).unwrap();
    let x = Tensor::randn(0f32, 1.0, (4, 1, 8, 8), &Device::Cpu).unwrap();
    let x = candle_core::Var::from_tensor(&x).unwrap();
    let mode = Mode::train(0);
    let grads = |disc: &taper_vision::models::dcgan::Discriminator| {
        let y = disc.forward_t(x.as_tensor(), None, &mode).unwrap();
        (y.sqr().unwrap().sum_all().unwrap().backward().unwrap(), y)
    };
    let (live, y_live) = grads(&d);
    let (frozen, y_frozen) = grads(&d.frozen());
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    // Same outputs and the same input gradient, bit for bit.
    assert_eq!(flat(&y_live), flat(&y_frozen));
    let dx = |g: &candle_core::backprop::GradStore| flat(g.get(x.as_tensor()).unwrap());
    assert_eq!(dx(&live), dx(&frozen));
    // Every trainable weight has a gradient in the live pass, none in the frozen one.
    let with_grad = |g: &candle_core::backprop::GradStore| {
        vm.all_vars()
            .iter()
            .filter(|v| g.get(v.as_tensor()).is_some())
            .count()
    };
    assert_eq!(
        with_grad(&live),
        7,
        "conv1 weight and bias, conv2 weight, bn2 scale and shift, fc weight and bias"
    );
    assert_eq!(with_grad(&frozen), 0);
}
