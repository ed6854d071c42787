//! The training loop: learning, resume, checkpoints, guards and bad input.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{linear, Linear, VarMap};
use std::path::Path;
use taper_nn::init::seeded_var_builder;
use taper_nn::Dropout;
use taper_nn::{Forward, Mode};
use taper_train::checkpoint::{self, load_weights};
use taper_train::clip::Clip;
use taper_train::data::{DataLoader, LoaderConfig, TensorBatch, TensorDataset};
use taper_train::optim::{named_vars, Adam, AdamConfig, Sgd, SgdConfig};
use taper_train::schedule::{Constant, Direction};
use taper_train::{
    Callback, Classifier, Error, LossModel, Metrics, Optimizers, StepContext, StepInfo, Supervised,
    TrainStep, Trainer, TrainerConfig,
};

/// Two Gaussian blobs per class in 4-D, 3 classes: learnable, not trivial.
fn blobs(n: usize, seed: u64) -> (Tensor, Tensor) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..n {
        let c = (i % 3) as u32;
        for d in 0..4 {
            let centre = if d as u32 == c { 2.0 } else { 0.0 };
            x.push(centre + rng.random_range(-1.0f32..1.0));
        }
        y.push(c);
    }
    (
        Tensor::from_vec(x, (n, 4), &Device::Cpu).unwrap(),
        Tensor::from_vec(y, n, &Device::Cpu).unwrap(),
    )
}

struct Net {
    a: Linear,
    b: Linear,
    drop: Dropout,
}

impl Forward for Net {
    fn forward_t(&self, xs: &Tensor, mode: &Mode) -> candle_core::Result<Tensor> {
        let h = self.a.forward(xs)?.relu()?;
        self.b.forward(&self.drop.forward_t(&h, mode)?)
    }
}

fn model(seed: u64) -> (Classifier<Net>, VarMap) {
    let vm = VarMap::new();
    let vb = seeded_var_builder(&vm, seed, DType::F32, &Device::Cpu);
    let net = Net {
        a: linear(4, 16, vb.pp("a")).unwrap(),
        b: linear(16, 3, vb.pp("b")).unwrap(),
        drop: Dropout::new(0.2, "drop").unwrap(),
    };
    (Classifier::new(net, vm.clone()), vm)
}

fn loaders(seed: u64) -> (DataLoader<TensorBatch>, DataLoader<TensorBatch>) {
    let (x, y) = blobs(300, 1);
    let (vx, vy) = blobs(90, 2);
    let train = DataLoader::new(
        TensorDataset::new(vec![x, y], &Device::Cpu).unwrap(),
        LoaderConfig::train(16, seed),
    )
    .unwrap();
    let valid = DataLoader::new(
        TensorDataset::new(vec![vx, vy], &Device::Cpu).unwrap(),
        LoaderConfig::eval(64),
    )
    .unwrap();
    (train, valid)
}

fn optimizers(vm: &VarMap) -> Optimizers {
    Optimizers::new().with_group(
        "model",
        Adam::new(
            named_vars(vm, ""),
            AdamConfig {
                lr: 0.01,
                ..Default::default()
            },
        ),
        Constant(0.01),
        Clip::GlobalNorm(1.0),
    )
}

fn quiet(epochs: usize, run: Option<&Path>) -> TrainerConfig {
    TrainerConfig {
        epochs,
        run_dir: run.map(|p| p.to_path_buf()),
        seed: 7,
        progress: false,
        verbose: false,
        ..Default::default()
    }
}

fn weights(vm: &VarMap) -> Vec<(String, Vec<f32>)> {
    named_vars(vm, "")
        .into_iter()
        .map(|(k, v)| (k, v.as_tensor().flatten_all().unwrap().to_vec1().unwrap()))
        .collect()
}

#[test]
fn trains_to_high_accuracy_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut clf, vm) = model(3);
    let (train, valid) = loaders(5);
    let mut opt = optimizers(&vm);
    let report = Trainer::new(quiet(8, Some(dir.path())))
        .fit(&mut clf, &mut opt, &train, Some(&valid))
        .unwrap();
    assert_eq!(report.history.len(), 8);
    let acc = report.last().unwrap().valid["accuracy"];
    assert!(acc > 0.9, "validation accuracy {acc}");
    let first = report.history[0].train["loss"];
    let last = report.last().unwrap().train["loss"];
    assert!(last < first * 0.5, "loss {first} -> {last}");
    let lines = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 8);
    assert!(dir.path().join("loss.png").metadata().unwrap().len() > 1000);
    // The best checkpoint loads into a fresh model of the same shape.
    let ck = checkpoint::read(dir.path(), "best").unwrap().unwrap();
    let (_, vm2) = model(99);
    ck.load_weights(&vm2).unwrap();
}

/// Zero epochs evaluate the initial weights (a baseline), where they used to
/// fail looking for a checkpoint that no epoch wrote.
#[test]
fn fit_and_test_with_no_epoch_evaluates_the_initial_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (mut clf, vm) = model(3);
    let before = weights(&vm);
    let (train, valid) = loaders(5);
    let mut opt = optimizers(&vm);
    let r = Trainer::new(quiet(0, Some(dir.path())))
        .fit_and_test(&mut clf, &mut opt, &train, &valid, &valid)
        .unwrap();
    assert!(r.fit.history.is_empty() && r.kept.is_none());
    assert_eq!(weights(&vm), before);
    let expected = Trainer::evaluate(&mut clf, &valid).unwrap();
    assert_eq!(r.test.mean("loss"), expected.mean("loss"));
    let acc = r.test.mean("accuracy").unwrap();
    assert!(acc < 0.9, "an untrained model scored {acc}");
}

struct CrashAt(u64);

impl Callback for CrashAt {
    fn on_step_end(&mut self, info: &StepInfo) -> taper_train::Result<()> {
        if info.iteration == self.0 {
            return Err(Error::Config("simulated crash".into()));
        }
        Ok(())
    }
}

#[test]
fn resume_mid_epoch_is_bit_exact() {
    // Uninterrupted reference.
    let (mut clf, vm) = model(3);
    let (train, valid) = loaders(5);
    let mut opt = optimizers(&vm);
    Trainer::new(quiet(3, None))
        .fit(&mut clf, &mut opt, &train, Some(&valid))
        .unwrap();
    let reference = weights(&vm);

    // Crash in epoch 2 after a mid-epoch checkpoint, then resume in a new "process"
    // (fresh model and optimizer, different initial weights).
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = quiet(3, Some(dir.path()));
    cfg.checkpoint_every = Some(5);
    let (mut clf, vm) = model(3);
    let mut opt = optimizers(&vm);
    let err = Trainer::new(cfg.clone())
        .with_callback(CrashAt(27)) // 19 batches per epoch: mid-epoch 2
        .fit(&mut clf, &mut opt, &train, Some(&valid))
        .unwrap_err();
    assert!(err.to_string().contains("simulated crash"));
    let ck = checkpoint::read(dir.path(), "latest").unwrap().unwrap();
    assert_eq!(ck.state.iteration, 25, "last checkpoint at step 25");
    assert_eq!((ck.state.epoch, ck.state.batch_in_epoch), (1, 6));

    let (mut clf, vm) = model(1234);
    let mut opt = optimizers(&vm);
    cfg.resume = true;
    let report = Trainer::new(cfg)
        .fit(&mut clf, &mut opt, &train, Some(&valid))
        .unwrap();
    assert_eq!(report.resumed_at, 1);
    assert_eq!(report.history.len(), 3);
    assert_eq!(
        weights(&vm),
        reference,
        "resumed run must end bit for bit equal"
    );
    let lines = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(
        lines.lines().count(),
        3,
        "no duplicated epoch lines after resume"
    );
}

#[test]
fn same_seed_same_run_other_seed_other_run() {
    let run = |s: u64| {
        let (mut clf, vm) = model(s);
        let (train, _) = loaders(s);
        let mut opt = optimizers(&vm);
        Trainer::new(quiet(1, None))
            .fit(&mut clf, &mut opt, &train, None)
            .unwrap();
        weights(&vm)
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11), run(12));
}

struct NanAfter {
    inner: Classifier<Net>,
    calls: std::cell::Cell<usize>,
    at: usize,
}

impl LossModel<TensorBatch> for NanAfter {
    fn loss(&self, batch: &TensorBatch, mode: &Mode) -> taper_train::Result<(Tensor, Metrics)> {
        let logits = self.inner.model.forward_t(batch.inputs(), mode)?;
        let l = taper_nn::cross_entropy(&logits, batch.targets())?;
        let m = Metrics::new().with("loss", l.to_scalar::<f32>()? as f64, batch.len() as f64);
        if mode.is_train() {
            self.calls.set(self.calls.get() + 1);
            if self.calls.get() > self.at {
                return Ok(((l * f64::NAN)?, m));
            }
        }
        Ok((l, m))
    }
    fn varmap(&self) -> &VarMap {
        &self.inner.varmap
    }
}

#[test]
fn nan_loss_stops_with_step_and_keeps_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (inner, vm) = model(3);
    let mut m = Supervised(NanAfter {
        inner,
        calls: Default::default(),
        at: 25,
    });
    let (train, _) = loaders(5);
    let mut opt = optimizers(&vm);
    let before = weights(&vm);
    let err = Trainer::new(quiet(3, Some(dir.path())))
        .fit(&mut m, &mut opt, &train, None)
        .unwrap_err();
    match &err {
        Error::NonFinite {
            step,
            epoch,
            group,
            value,
        } => {
            assert_eq!((*step, *epoch, group.as_str()), (25, 1, "model"));
            assert!(value.is_nan());
        }
        other => panic!("expected NonFinite, got {other}"),
    }
    assert!(err.to_string().contains("step 25"), "{err}");
    // Epoch 1's checkpoint is intact and loads; the weights are still finite.
    let ck = checkpoint::read(dir.path(), "latest").unwrap().unwrap();
    assert_eq!(ck.state.epoch, 1);
    ck.load_weights(&vm).unwrap();
    assert_ne!(weights(&vm), before);
    assert!(weights(&vm)
        .iter()
        .all(|(_, v)| v.iter().all(|x| x.is_finite())));
}

/// Serves the blobs, but from epoch 1 on the batch holding item 0 carries a NaN
/// feature: a record corrupted mid-run.
struct PoisonedFromEpoch1(TensorDataset);

impl taper_train::data::BatchSource for PoisonedFromEpoch1 {
    type Batch = TensorBatch;
    fn len(&self) -> usize {
        self.0.len()
    }
    fn batch(&self, indices: &[usize]) -> taper_train::Result<TensorBatch> {
        self.0.batch(indices)
    }
    fn batch_in_epoch(&self, indices: &[usize], epoch: usize) -> taper_train::Result<TensorBatch> {
        let b = self.0.batch(indices)?;
        if epoch >= 1 {
            if let Some(row) = indices.iter().position(|&i| i == 0) {
                let mut fields = b.into_fields();
                let mut x = fields[0].to_vec2::<f32>()?.concat();
                x[row * 4 + 2] = f32::NAN;
                fields[0] = Tensor::from_vec(x, (indices.len(), 4), &Device::Cpu)?;
                return TensorBatch::new(fields);
            }
        }
        Ok(b)
    }
}

#[test]
fn nan_in_the_data_mid_run_stops_with_a_clear_message() {
    use taper_train::data::BatchSource;
    let dir = tempfile::tempdir().unwrap();
    let (mut m, vm) = model(3);
    let (x, y) = blobs(300, 1);
    let ds = TensorDataset::new(vec![x, y], &Device::Cpu).unwrap();
    assert_eq!(PoisonedFromEpoch1(ds.clone()).len(), 300);
    let train = DataLoader::new(PoisonedFromEpoch1(ds), LoaderConfig::train(16, 5)).unwrap();
    let mut opt = optimizers(&vm);
    let err = Trainer::new(quiet(4, Some(dir.path())))
        .fit(&mut m, &mut opt, &train, None)
        .unwrap_err();
    // ReLU maps the NaN to 0, so the loss stays finite: the gradient guard catches it.
    let Error::NonFiniteGradient {
        epoch, step, param, ..
    } = &err
    else {
        panic!("expected NonFiniteGradient, got {err}");
    };
    assert_eq!(param, "a.weight", "{err}");
    assert_eq!(*epoch, 1, "{err}");
    assert!(
        (19..38).contains(step),
        "epoch 1 runs global steps 19..38: {err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("epoch 1") && msg.contains("an earlier checkpoint, if any, is kept"),
        "{msg}"
    );
    // The checkpoint written at the end of epoch 0 is the latest, intact, finite.
    let ck = checkpoint::read(dir.path(), "latest").unwrap().unwrap();
    assert_eq!((ck.state.epoch, ck.state.batch_in_epoch), (1, 0));
    ck.load_weights(&vm).unwrap();
    assert!(weights(&vm)
        .iter()
        .all(|(_, v)| v.iter().all(|x| x.is_finite())));
}

#[test]
fn early_stopping_and_keep_best() {
    let dir = tempfile::tempdir().unwrap();
    let (mut clf, vm) = model(3);
    let (train, valid) = loaders(5);
    // lr 0: nothing improves after the first epoch, so patience 2 stops at epoch 3.
    let mut opt = Optimizers::single(Sgd::new(
        named_vars(&vm, ""),
        SgdConfig {
            lr: 0.0,
            ..Default::default()
        },
    ));
    let mut cfg = quiet(20, Some(dir.path()));
    cfg.early_stopping_patience = Some(2);
    cfg.monitor = Some(("valid.accuracy".into(), Direction::Max));
    let report = Trainer::new(cfg)
        .fit(&mut clf, &mut opt, &train, Some(&valid))
        .unwrap();
    assert!(report.stopped_early);
    assert_eq!(report.history.len(), 3);
    let best = checkpoint::read(dir.path(), "best").unwrap().unwrap();
    assert_eq!(best.state.epoch, 1, "best is the first epoch's checkpoint");
}

/// A two-group model in the shape of a GAN: each group is stepped on its own loss.
struct TwoGroups {
    vm: VarMap,
    g: Linear,
    d: Linear,
}

impl TrainStep<TensorBatch> for TwoGroups {
    type Output = Metrics;
    fn train_step(
        &mut self,
        b: &TensorBatch,
        _ctx: &StepContext,
        opt: &mut Optimizers,
    ) -> taper_train::Result<Metrics> {
        let d_loss = self.d.forward(b.inputs())?.sqr()?.mean_all()?;
        opt.step("disc", &d_loss)?;
        let g_loss = self.g.forward(b.inputs())?.sqr()?.mean_all()?;
        opt.step("gen", &g_loss)?;
        Ok(Metrics::new().with("loss", g_loss.to_scalar::<f32>()? as f64, b.len() as f64))
    }
    fn valid_step(&mut self, _b: &TensorBatch, _ctx: &StepContext) -> taper_train::Result<Metrics> {
        Ok(Metrics::new())
    }
    fn varmap(&self) -> &VarMap {
        &self.vm
    }
}

#[test]
fn two_optimizer_groups_step_independently() {
    let vm = VarMap::new();
    let vb = seeded_var_builder(&vm, 1, DType::F32, &Device::Cpu);
    let mut m = TwoGroups {
        g: linear(4, 2, vb.pp("gen")).unwrap(),
        d: linear(4, 1, vb.pp("disc")).unwrap(),
        vm: vm.clone(),
    };
    let (train, _) = loaders(5);
    let sgd = |p: &str, lr: f64| {
        Sgd::new(
            named_vars(&vm, p),
            SgdConfig {
                lr,
                ..Default::default()
            },
        )
    };
    let mut opt = Optimizers::new()
        .with_group("disc", sgd("disc.", 0.1), Constant(0.1), Clip::None)
        .with_group("gen", sgd("gen.", 0.0), Constant(0.0), Clip::None);
    let before = weights(&vm);
    let dir = tempfile::tempdir().unwrap();
    Trainer::new(quiet(1, Some(dir.path())))
        .fit(&mut m, &mut opt, &train, None)
        .unwrap();
    let after = weights(&vm);
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        if name.starts_with("gen.") {
            assert_eq!(a, b, "{name} has lr 0 and must not move");
        } else {
            assert_ne!(a, b, "{name} must be trained");
        }
    }
    assert_eq!(opt.groups()[0].steps(), 19);
    assert_eq!(opt.groups()[1].steps(), 19);
    // Both groups' states are in the checkpoint.
    let ck = checkpoint::read(dir.path(), "latest").unwrap().unwrap();
    assert!(ck.state.groups.contains_key("gen") && ck.state.groups.contains_key("disc"));
    let err = opt
        .step("critic", &Tensor::new(1f32, &Device::Cpu).unwrap())
        .unwrap_err();
    assert!(
        err.to_string().contains("no optimizer group 'critic'"),
        "{err}"
    );
}

#[test]
fn wrong_input_shape_is_a_clear_error() {
    let (mut clf, vm) = model(3);
    let x = Tensor::zeros((10, 5), DType::F32, &Device::Cpu).unwrap(); // model expects 4 features
    let y = Tensor::zeros(10, DType::U32, &Device::Cpu).unwrap();
    let train = DataLoader::new(
        TensorDataset::new(vec![x, y], &Device::Cpu).unwrap(),
        LoaderConfig::train(4, 0),
    )
    .unwrap();
    let mut opt = optimizers(&vm);
    let err = Trainer::new(quiet(1, None))
        .fit(&mut clf, &mut opt, &train, None)
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("shape mismatch") && msg.contains("[4, 5]"),
        "{msg}"
    );
}

#[test]
fn checkpoints_of_other_models_and_truncated_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, vm) = model(3);
    let path = dir.path().join("w.safetensors");
    checkpoint::save_weights(&vm, &path).unwrap();
    let (_, same) = model(4);
    load_weights(&same, &path).unwrap();
    assert_eq!(weights(&same), weights(&vm));

    // Another architecture: names and shapes differ; nothing is changed.
    let other = VarMap::new();
    let vb = seeded_var_builder(&other, 1, DType::F32, &Device::Cpu);
    linear(4, 8, vb.pp("a")).unwrap();
    linear(8, 3, vb.pp("c")).unwrap();
    let before = weights(&other);
    let msg = load_weights(&other, &path).unwrap_err().to_string();
    assert!(msg.contains("does not match this model"), "{msg}");
    assert!(
        msg.contains("'a.weight' has shape [16, 4], the model expects [8, 4]"),
        "{msg}"
    );
    assert!(
        msg.contains("missing tensor 'c.bias'") && msg.contains("unexpected tensor 'b.bias'"),
        "{msg}"
    );
    assert_eq!(weights(&other), before);

    // Truncated.
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let msg = load_weights(&vm, &cut).unwrap_err().to_string();
    assert!(
        msg.contains("cut.safetensors") && msg.contains("truncated"),
        "{msg}"
    );
    // Missing.
    let msg = load_weights(&vm, &dir.path().join("nope.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("nope.safetensors") && msg.contains("not found"),
        "{msg}"
    );
}

#[test]
fn resume_without_checkpoint_or_with_other_seed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut clf, vm) = model(3);
    let (train, _) = loaders(5);
    let mut opt = optimizers(&vm);
    let mut cfg = quiet(1, Some(dir.path()));
    cfg.resume = true;
    let msg = Trainer::new(cfg.clone())
        .fit(&mut clf, &mut opt, &train, None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("no checkpoint to resume from"), "{msg}");
    cfg.resume = false;
    Trainer::new(cfg.clone())
        .fit(&mut clf, &mut opt, &train, None)
        .unwrap();
    cfg.resume = true;
    cfg.seed = 8;
    cfg.epochs = 2;
    let msg = Trainer::new(cfg)
        .fit(&mut clf, &mut opt, &train, None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("seed 7") && msg.contains("seed 8"), "{msg}");
}

#[test]
fn checkpoint_pointer_survives_partial_write() {
    // A crash while writing a new checkpoint leaves a partial folder that no
    // pointer names: `latest` still reads the previous, complete checkpoint.
    let dir = tempfile::tempdir().unwrap();
    let (mut clf, vm) = model(3);
    let (train, _) = loaders(5);
    let mut opt = optimizers(&vm);
    Trainer::new(quiet(1, Some(dir.path())))
        .fit(&mut clf, &mut opt, &train, None)
        .unwrap();
    let partial = checkpoint::checkpoints_dir(dir.path()).join("epoch-00002");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join("model.safetensors"), b"\x08\x00").unwrap();
    let ck = checkpoint::read(dir.path(), "latest").unwrap().unwrap();
    assert_eq!(ck.dir.file_name().unwrap(), "epoch-00001");
    ck.load_weights(&vm).unwrap();
}

/// Two epochs of SGD with momentum on 288 blob points: (weights, updates made).
fn train_accumulated(batch: usize, accumulate: usize) -> (Vec<(String, Vec<f32>)>, usize) {
    let vm = VarMap::new();
    let vb = seeded_var_builder(&vm, 4, DType::F32, &Device::Cpu);
    let net = Net {
        a: linear(4, 16, vb.pp("a")).unwrap(),
        b: linear(16, 3, vb.pp("b")).unwrap(),
        drop: Dropout::new(0.0, "drop").unwrap(),
    };
    let mut m = Classifier::new(net, vm.clone());
    let (x, y) = blobs(288, 1);
    let train = DataLoader::new(
        TensorDataset::new(vec![x, y], &Device::Cpu).unwrap(),
        LoaderConfig::train(batch, 5),
    )
    .unwrap();
    let sgd = Sgd::new(
        named_vars(&vm, ""),
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            ..Default::default()
        },
    );
    let mut opt = Optimizers::single(sgd).with_accumulation(accumulate);
    Trainer::new(quiet(2, None))
        .fit(&mut m, &mut opt, &train, None)
        .unwrap();
    assert!(!opt.pending(), "the epoch end applies what is left");
    (weights(&vm), opt.groups()[0].steps())
}

#[test]
fn accumulating_four_batches_of_8_equals_batches_of_32() {
    let (plain, n_plain) = train_accumulated(32, 1);
    let (accumulated, n_acc) = train_accumulated(8, 4);
    assert_eq!((n_plain, n_acc), (18, 18), "updates made");
    for ((name, a), (_, b)) in plain.iter().zip(&accumulated) {
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "{name}: differs by {worst}");
    }
    // Accumulation really changes something: batches of 8 without it differ.
    let (small, n_small) = train_accumulated(8, 1);
    assert_eq!(n_small, 72);
    assert!(small.iter().zip(&plain).any(|((_, a), (_, b))| a != b));
}

/// A fresh run clears its own `metrics.jsonl` and `report/`; where no Taper run
/// (`run.json`) wrote them they are somebody else's, and the fit is refused.
#[test]
fn a_fresh_run_refuses_to_replace_files_no_run_wrote() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("metrics.jsonl"), "mine\n").unwrap();
    let (mut clf, vm) = model(3);
    let (train, valid) = loaders(5);
    let mut opt = optimizers(&vm);
    let e = Trainer::new(quiet(1, Some(dir.path())))
        .fit(&mut clf, &mut opt, &train, Some(&valid))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("metrics.jsonl") && e.contains("no Taper run"),
        "{e}"
    );
    let kept = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(kept, "mine\n");
    // Beside a run.json they are an earlier run's, and a fresh run replaces them.
    std::fs::write(dir.path().join("run.json"), "{}").unwrap();
    Trainer::new(quiet(1, Some(dir.path())))
        .fit(&mut clf, &mut opt, &train, Some(&valid))
        .unwrap();
    let lines = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert!(lines.starts_with('{'), "{lines}");
}

/// A learning rate that is NaN or negative is refused at the first update, before
/// any weight changes (it used to surface one step later as a NaN loss).
#[test]
fn a_nan_or_negative_learning_rate_is_refused_before_the_update() {
    for lr in [f64::NAN, -1.0, f64::INFINITY] {
        let (mut clf, vm) = model(3);
        let (train, _) = loaders(5);
        let before = weights(&vm);
        let mut opt = Optimizers::new().with_group(
            "model",
            Adam::new(named_vars(&vm, ""), AdamConfig::default()),
            Constant(lr),
            Clip::None,
        );
        let e = Trainer::new(quiet(1, None))
            .fit(&mut clf, &mut opt, &train, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("learning rate") && e.contains("group 'model'"),
            "{lr}: {e}"
        );
        assert!(weights(&vm) == before, "{lr}: the weights changed");
    }
}
