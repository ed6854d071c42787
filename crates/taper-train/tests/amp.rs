//! Mixed precision as a strategy of `Optimizers`: agreement with an f32 run,
//! batch-norm running statistics kept and checkpointed, the loss scaler saved
//! and resumed bit for bit, and accumulation and clipping honoured.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarMap;
use std::path::Path;
use taper_nn::init::seeded_var_builder;
use taper_nn::{batch_norm, conv2d_no_bias, linear, BatchNorm, BatchNormConfig, Conv2d};
use taper_nn::{Conv2dConfig, Forward, Linear, Mode};
use taper_train::amp::{LossScaler, MixedPrecision};
use taper_train::clip::Clip;
use taper_train::data::{DataLoader, LoaderConfig, TensorBatch, TensorDataset};
use taper_train::optim::{named_vars, Sgd, SgdConfig};
use taper_train::schedule::Constant;
use taper_train::{Classifier, Optimizers, Trainer, TrainerConfig};

struct Mlp(Linear, Linear);

impl Forward for Mlp {
    fn forward_t(&self, x: &Tensor, _mode: &Mode) -> candle_core::Result<Tensor> {
        self.1.forward(&self.0.forward(x)?.relu()?)
    }
}

/// Three noisy classes in 8 features: `n` examples, a quarter held out.
fn data(n: usize) -> (DataLoader<TensorBatch>, DataLoader<TensorBatch>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..n {
        let c = (i % 3) as u32;
        for d in 0..8 {
            x.push(if d as u32 == c { 1.5 } else { 0.0 } + rng.random_range(-1.0f32..1.0));
        }
        y.push(c);
    }
    let ds = TensorDataset::new(
        vec![
            Tensor::from_vec(x, (n, 8), &Device::Cpu).unwrap(),
            Tensor::from_vec(y, n, &Device::Cpu).unwrap(),
        ],
        &Device::Cpu,
    )
    .unwrap();
    let (tr, te) = taper_train::data::split_indices(n, 0.25, 1).unwrap();
    (
        DataLoader::new(ds.subset(&tr).unwrap(), LoaderConfig::train(32, 1)).unwrap(),
        DataLoader::new(ds.subset(&te).unwrap(), LoaderConfig::eval(150)).unwrap(),
    )
}

fn quiet(epochs: usize, run: Option<&Path>) -> TrainerConfig {
    TrainerConfig {
        epochs,
        run_dir: run.map(Path::to_path_buf),
        progress: false,
        verbose: false,
        ..Default::default()
    }
}

fn sgd(vars: Vec<(String, candle_core::Var)>, momentum: f64) -> Sgd {
    Sgd::new(
        vars,
        SgdConfig {
            lr: 0.1,
            momentum,
            ..Default::default()
        },
    )
}

fn build(dtype: DType) -> (Mlp, VarMap) {
    let vm = VarMap::new();
    let vb = seeded_var_builder(&vm, 7, dtype, &Device::Cpu);
    (
        Mlp(
            linear(8, 32, vb.pp("a")).unwrap(),
            linear(32, 3, vb.pp("b")).unwrap(),
        ),
        vm,
    )
}

#[test]
fn half_precision_training_agrees_with_f32() {
    let (train, test) = data(600);
    let (net, vm) = build(DType::F32);
    let mut f32_model = Classifier::new(net, vm.clone());
    let mut opt = Optimizers::single(sgd(named_vars(&vm, ""), 0.9));
    let reference = Trainer::new(quiet(6, None))
        .fit(&mut f32_model, &mut opt, &train, Some(&test))
        .unwrap();
    let ref_acc = reference.last().unwrap().valid["accuracy"];
    let ref_loss = reference.last().unwrap().valid["loss"];
    assert!(ref_acc > 0.85, "{ref_acc}");

    for (dtype, scaler) in [
        (DType::BF16, LossScaler::none()),
        (DType::F16, LossScaler::new(16777216.0, 50)),
    ] {
        let (net, working) = build(dtype);
        let amp = MixedPrecision::new(&working, scaler).unwrap();
        let master = amp.master().clone();
        let mut opt = Optimizers::single(sgd(amp.trainable(""), 0.9)).with_mixed_precision(amp);
        let mut model = Classifier::new(net, master.clone());
        let report = Trainer::new(quiet(6, None))
            .fit(&mut model, &mut opt, &train, Some(&test))
            .unwrap();
        let acc = report.last().unwrap().valid["accuracy"];
        let loss = report.last().unwrap().valid["loss"];
        assert!(
            (acc - ref_acc).abs() <= 0.03,
            "{dtype:?}: accuracy {acc} vs f32 {ref_acc}"
        );
        assert!(
            (loss - ref_loss).abs() <= 0.05 * ref_loss.max(0.1),
            "{dtype:?}: loss {loss} vs {ref_loss}"
        );
        // The masters stay f32; the working weights are their rounding.
        for (name, v) in named_vars(&master, "") {
            assert_eq!(v.dtype(), DType::F32, "{name}");
            let w = working.data().lock().unwrap()[&name].as_tensor().clone();
            assert_eq!(w.dtype(), dtype);
            let diff = (v
                .as_tensor()
                .to_dtype(dtype)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                - w.to_dtype(DType::F32).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
            assert_eq!(diff, 0.0, "{name}: working weights not refreshed");
        }
        let scaler = &opt.precision().unwrap().scaler;
        if dtype == DType::F16 {
            // 2^24 overflows f16 gradients: updates are skipped and the scale
            // drops, then grows again after 50 good updates.
            assert!(scaler.skipped > 0, "no overflow seen");
            assert!(scaler.scale < 16777216.0, "scale {}", scaler.scale);
            assert!(report.last().unwrap().train.contains_key("loss_scale"));
        }
    }
}

#[test]
fn full_precision_weights_are_refused() {
    let (_, vm) = build(DType::F32);
    let e = MixedPrecision::new(&vm, LossScaler::none())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("bf16 or f16"), "{e}");
}

/// conv 3x3 (no bias) → batch norm → ReLU → mean over the image → linear: the
/// smallest model with running statistics.
struct BnNet {
    conv: Conv2d,
    bn: BatchNorm,
    fc: Linear,
}

impl Forward for BnNet {
    fn forward_t(&self, x: &Tensor, mode: &Mode) -> candle_core::Result<Tensor> {
        let h = self.bn.forward_relu_t(&self.conv.forward(x)?, mode)?;
        self.fc.forward(&h.mean(3)?.mean(2)?)
    }
}

fn bn_net(dtype: DType) -> (BnNet, VarMap) {
    let vm = VarMap::new();
    let vb = seeded_var_builder(&vm, 11, dtype, &Device::Cpu);
    let same = Conv2dConfig {
        padding: 1,
        stride: 1,
    };
    let net = BnNet {
        conv: conv2d_no_bias(3, 6, 3, same, vb.pp("conv")).unwrap(),
        bn: batch_norm(6, BatchNormConfig::default(), vb.pp("bn")).unwrap(),
        fc: linear(6, 3, vb.pp("fc")).unwrap(),
    };
    (net, vm)
}

/// 3x8x8 images whose class is the brightest channel, shifted so the batch
/// statistics are far from the initial running ones (mean 0, variance 1).
fn images(n: usize) -> DataLoader<TensorBatch> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut x = Vec::with_capacity(n * 192);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % 3;
        for ch in 0..3 {
            for _ in 0..64 {
                x.push(2.0 + if ch == c { 1.0 } else { 0.0 } + rng.random_range(-0.5f32..0.5));
            }
        }
        y.push(c as u32);
    }
    let ds = TensorDataset::new(
        vec![
            Tensor::from_vec(x, (n, 3, 8, 8), &Device::Cpu).unwrap(),
            Tensor::from_vec(y, n, &Device::Cpu).unwrap(),
        ],
        &Device::Cpu,
    )
    .unwrap();
    DataLoader::new(ds, LoaderConfig::train(16, 2)).unwrap()
}

fn running_stats(vm: &VarMap) -> Vec<Vec<f32>> {
    ["bn.running_mean", "bn.running_var"]
        .iter()
        .map(|n| {
            vm.data().lock().unwrap()[*n]
                .as_tensor()
                .to_dtype(DType::F32)
                .unwrap()
                .to_vec1()
                .unwrap()
        })
        .collect()
}

fn all_values(vm: &VarMap) -> Vec<(String, Vec<f32>)> {
    named_vars(vm, "")
        .into_iter()
        .map(|(n, v)| {
            let t = v.as_tensor().to_dtype(DType::F32).unwrap();
            (n, t.flatten_all().unwrap().to_vec1().unwrap())
        })
        .collect()
}

/// A bf16 batch-norm network trained `epochs` epochs in `run` (resuming when
/// asked): its masters, the optimizers and the report.
fn train_bn(run: &Path, epochs: usize, resume: bool) -> (VarMap, Optimizers) {
    let (net, working) = bn_net(DType::BF16);
    let amp = MixedPrecision::new(&working, LossScaler::new(256.0, 3)).unwrap();
    let master = amp.master().clone();
    let mut opt = Optimizers::single(sgd(amp.trainable(""), 0.9)).with_mixed_precision(amp);
    let mut model = Classifier::new(net, master.clone());
    let cfg = TrainerConfig {
        resume,
        ..quiet(epochs, Some(run))
    };
    Trainer::new(cfg)
        .fit(&mut model, &mut opt, &images(96), None)
        .unwrap();
    (master, opt)
}

#[test]
fn bf16_batch_norm_keeps_and_checkpoints_its_running_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let (master, opt) = train_bn(&dir.path().join("whole"), 3, false);
    let stats = running_stats(&master);
    // The statistics moved from their initial values (0 and 1).
    assert!(
        stats[0].iter().all(|&m| m.abs() > 0.05),
        "running mean {:?}",
        stats[0]
    );
    assert!(
        stats[1].iter().all(|&v| v != 1.0),
        "running var {:?}",
        stats[1]
    );
    // The checkpoint holds them.
    let ck = taper_train::checkpoint::read(&dir.path().join("whole"), "latest")
        .unwrap()
        .unwrap();
    let saved = taper_train::checkpoint::read_tensors(&ck.weights_path(), &Device::Cpu).unwrap();
    let saved_mean: Vec<f32> = saved["bn.running_mean"].to_vec1().unwrap();
    assert_eq!(saved_mean, stats[0]);
    // The scaler grew after every 3 good updates, and that is in the checkpoint.
    let scaler = &opt.precision().unwrap().scaler;
    assert!(scaler.scale > 256.0, "{scaler:?}");
    assert_eq!(ck.state.strategies["loss_scaler"]["scale"], scaler.scale);

    // Interrupted after 2 epochs, resumed to 3: the same statistics, weights
    // and loss scaler, bit for bit.
    let run = dir.path().join("resumed");
    train_bn(&run, 2, false);
    let (resumed, ropt) = train_bn(&run, 3, true);
    assert_eq!(running_stats(&resumed), stats);
    assert_eq!(all_values(&resumed), all_values(&master));
    assert_eq!(
        ropt.precision().unwrap().scaler,
        opt.precision().unwrap().scaler
    );
}

#[test]
fn mixed_precision_honours_accumulation_and_clipping() {
    let (train, _) = data(96); // 72 training rows: 3 batches of 32 (the last of 8)
    let (net, working) = build(DType::BF16);
    let amp = MixedPrecision::new(&working, LossScaler::none()).unwrap();
    let master = amp.master().clone();
    let before = all_values(&master);
    let max_norm = 1e-3;
    let mut opt = Optimizers::new()
        .with_group(
            "model",
            sgd(amp.trainable(""), 0.0),
            Constant(0.1),
            Clip::GlobalNorm(max_norm),
        )
        .with_accumulation(2)
        .with_mixed_precision(amp);
    let mut model = Classifier::new(net, master.clone());
    Trainer::new(quiet(1, None))
        .fit(&mut model, &mut opt, &train, None)
        .unwrap();
    // 3 batches, 2 per update: one full update and the flushed remainder.
    assert_eq!(opt.groups()[0].steps(), 2);
    let norm = opt.groups()[0]
        .last_grad_norm()
        .expect("clipping by norm records the norm");
    assert!(
        norm > max_norm,
        "the test needs gradients above the bound: {norm}"
    );
    // Two clipped SGD steps move the weights by at most 2 · lr · max_norm in norm.
    let moved: f64 = before
        .iter()
        .zip(all_values(&master))
        .flat_map(|((_, a), (_, b))| {
            a.iter()
                .zip(b)
                .map(|(x, y)| ((x - y) as f64).powi(2))
                .collect::<Vec<_>>()
        })
        .sum::<f64>()
        .sqrt();
    assert!(
        moved > 0.0 && moved <= 2.0 * 0.1 * max_norm * 1.01,
        "moved {moved}"
    );
}
