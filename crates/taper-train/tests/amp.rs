//! Mixed precision against an ordinary f32 run of the same model and data.

use candle_core::{DType, Device, Module, ModuleT, Tensor};
use candle_nn::{linear, Linear, VarMap};
use taper_train::amp::{LossScaler, MixedPrecision};
use taper_train::data::{DataLoader, LoaderConfig, TensorDataset};
use taper_train::optim::{named_vars, Sgd, SgdConfig};
use taper_train::seed::seeded_var_builder;
use taper_train::{Classifier, Optimizers, Trainer, TrainerConfig};

struct Mlp(Linear, Linear);

impl ModuleT for Mlp {
    fn forward_t(&self, x: &Tensor, _train: bool) -> candle_core::Result<Tensor> {
        self.1.forward(&self.0.forward(x)?.relu()?)
    }
}

fn data() -> (
    DataLoader<taper_train::data::TensorBatch>,
    DataLoader<taper_train::data::TensorBatch>,
) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let n = 600;
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

fn quiet() -> TrainerConfig {
    TrainerConfig {
        epochs: 6,
        progress: false,
        verbose: false,
        ..Default::default()
    }
}

fn sgd(vm: &VarMap) -> Optimizers {
    Optimizers::single(Sgd::new(
        named_vars(vm, ""),
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            ..Default::default()
        },
    ))
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
    let (train, test) = data();
    let (net, vm) = build(DType::F32);
    let mut f32_model = Classifier::new(net, vm.clone());
    let reference = Trainer::new(quiet())
        .fit(&mut f32_model, &mut sgd(&vm), &train, Some(&test))
        .unwrap();
    let ref_acc = reference.last().unwrap().valid["accuracy"];
    let ref_loss = reference.last().unwrap().valid["loss"];
    assert!(ref_acc > 0.85, "{ref_acc}");

    for (dtype, scaler) in [
        (DType::BF16, LossScaler::none()),
        (DType::F16, LossScaler::new(16777216.0, 50)),
    ] {
        let (net, working) = build(dtype);
        let mut amp = MixedPrecision::new(net, working, scaler).unwrap();
        let mut opt = sgd(&amp.master);
        let report = Trainer::new(quiet())
            .fit(&mut amp, &mut opt, &train, Some(&test))
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
        // The masters stay f32 and close to the f32 run's weights.
        for (name, v) in named_vars(&amp.master, "") {
            assert_eq!(v.dtype(), DType::F32, "{name}");
        }
        if dtype == DType::F16 {
            // 2^24 overflows f16 gradients: steps are skipped and the scale drops,
            // then grows again after 50 good steps.
            assert!(amp.scaler.skipped > 0, "no overflow seen");
            assert!(amp.scaler.scale < 16777216.0, "scale {}", amp.scaler.scale);
        }
    }
}

#[test]
fn full_precision_weights_are_refused() {
    let (net, vm) = build(DType::F32);
    let e = MixedPrecision::new(net, vm, LossScaler::none())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("bf16 or f16"), "{e}");
}
