//! Taper's side of `make bench`: training-step times, an MNIST epoch, inference
//! throughput, preprocessing throughput and the matmul ceiling, each the median of
//! repeated timings after a warm-up. Prints one JSON object (the harness reads it);
//! `bench/torch_peer.py` measures the same cases in PyTorch.
//!
//! Longer than 200 lines: it is a benchmark harness, one timed case after
//! another (each mirrors one case of the PyTorch peer), not a training recipe.

use anyhow::Result;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarMap;
use clap::Parser;
use serde_json::{json, Map, Value};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::time::Instant;
use taper::nlp::data::Seq2SeqBatch;
use taper::nlp::seq2seq::{
    rnn_seq2seq, transformer, AttentionKind, CellKind, Positions, RnnSeq2SeqConfig, Seq2Seq,
    Seq2SeqTrainer, TeacherForcing, TransformerConfig,
};
use taper::nn::{linear, Linear};
use taper::nn::{Forward, Mode};
use taper::train::cli::ExampleArgs;
use taper::train::data::{root::require_dir, DataLoader, LoaderConfig};
use taper::train::device::in_pool;
use taper::train::optim::{named_vars, Adam, AdamConfig};
use taper::train::schedule::OneCycle;
use taper::train::{
    clip::Clip, Classifier, Optimizers, StepContext, StepOutput, TrainStep, Trainer,
};
use taper::vision::datasets::{load_mnist, InMemoryImages, Split};
use taper::vision::models::dcgan::GanOptimConfig;
use taper::vision::models::{Cnn, CnnConfig, Dcgan, DcganConfig, LeNet, LeNetConfig};
use taper::vision::transforms::*;

#[global_allocator]
static GLOBAL: taper::alloc::Allocator = taper::alloc::Allocator;

#[derive(Parser, Debug)]
#[command(
    about = "Training steps, MNIST epoch, inference, preprocessing and matmul: Taper's side of make bench"
)]
struct Args {
    #[command(flatten)]
    common: ExampleArgs,
    /// Timed repetitions per case.
    #[arg(long, default_value_t = 20)]
    reps: usize,
    /// Also train LeNet on MNIST: one epoch's time and the time to 98.5 % test accuracy.
    #[arg(long)]
    mnist: bool,
    /// Run only the cases whose names contain one of these (comma-separated:
    /// matmul, mlp, lenet, cnn_bn, dcgan, seq2seq, transformer, infer, preprocess);
    /// all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also time the MLP and LeNet steps at each of these batch sizes (`sweep_*` keys).
    #[arg(long, value_delimiter = ',')]
    batch_sweep: Vec<usize>,
    /// Also time the Transformer step at each of these sequence lengths
    /// (`sweep_transformer_len*` keys).
    #[arg(long, value_delimiter = ',')]
    len_sweep: Vec<usize>,
    /// Paired timing with the peer's process (`bench/run.sh`): two named pipes, this
    /// side's and the peer's, `MINE,THEIRS`. The training steps, the matmul, inference and
    /// preprocessing then run in `--blocks` blocks (of `--reps` steps, or of the case's
    /// own count), the two processes taking turns block by block.
    #[arg(long, value_delimiter = ',', requires = "rounds_out")]
    baton: Vec<std::path::PathBuf>,
    /// Blocks per paired case (with `--baton`).
    #[arg(long, default_value_t = 15)]
    blocks: usize,
    /// Where each block's figures go (with `--baton`): a path in which `{r}` becomes the
    /// block's number, from 1.
    #[arg(long)]
    rounds_out: Option<String>,
}

/// One side of the turn-taking between this process and the peer's (`--baton`).
///
/// Each process works only while it holds the baton, a byte passed through two named
/// pipes: `B` hands it over, `D` says the sender has finished (the receiver then keeps
/// it). A slow spell of the host, which on these shared 2-core machines lasts seconds
/// and moved one side's step time up to 2x between rounds, then falls on both sides of
/// a block pair instead of on one side's whole run of a case.
struct Baton {
    rx: File,
    tx: File,
    peer_done: bool,
}

impl Baton {
    /// Opens both pipes read-write (so that neither open waits for the other process)
    /// and waits for the baton. Errors: a pipe that cannot be opened or read.
    fn take_first(mine: &std::path::Path, theirs: &std::path::Path) -> Result<Self> {
        let open = |p: &std::path::Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(p)
                .map_err(|e| anyhow::anyhow!("opening the pipe {}: {e}", p.display()))
        };
        let mut b = Baton {
            rx: open(mine)?,
            tx: open(theirs)?,
            peer_done: false,
        };
        b.take()?;
        Ok(b)
    }

    fn take(&mut self) -> Result<()> {
        if self.peer_done {
            return Ok(());
        }
        let mut byte = [0u8];
        self.rx.read_exact(&mut byte)?;
        self.peer_done = byte[0] == b'D';
        Ok(())
    }

    /// Hands the baton to the peer and waits until it comes back.
    fn pass(&mut self) -> Result<()> {
        if self.peer_done {
            return Ok(());
        }
        self.tx.write_all(b"B")?;
        self.take()
    }
}

impl Drop for Baton {
    // On every exit, an error's included, so that the peer never waits for a turn
    // that will not come.
    fn drop(&mut self) {
        if !self.peer_done {
            let _ = self.tx.write_all(b"D");
        }
    }
}

/// Timings, alone or paired with the peer's process in blocks (`--baton`); `put` keeps
/// each block's figure for its round file beside the overall one.
struct Timer {
    baton: Option<Baton>,
    /// The last paired timing's per-block medians (ms).
    last: Vec<f64>,
    /// One figure map per block; empty when not paired.
    rounds: Vec<Map<String, Value>>,
}

impl Timer {
    fn new(baton: Option<Baton>, blocks: usize) -> Self {
        let blocks = if baton.is_some() { blocks.max(1) } else { 0 };
        Timer {
            baton,
            last: Vec::new(),
            rounds: vec![Map::new(); blocks],
        }
    }

    /// Median milliseconds of `reps` calls of `f` after `warmup` calls. Paired, the
    /// median of each block's median: `blocks` blocks of `reps` timed calls, each after
    /// one untimed call (the peer's block has just run on the same cores and caches),
    /// the baton passed after each block.
    fn median_ms(
        &mut self,
        warmup: usize,
        reps: usize,
        mut f: impl FnMut() -> Result<()> + Send,
    ) -> Result<f64> {
        let Some(baton) = self.baton.as_mut() else {
            return alone_ms(warmup, reps, f);
        };
        // Each call on the CPU pool, as the Trainer runs its steps (`in_pool`).
        let mut call = || in_pool(&mut f);
        for _ in 0..warmup {
            call()?;
        }
        self.last.clear();
        for b in 0..self.rounds.len() {
            if b > 0 {
                call()?;
            }
            self.last.push(timed(&mut call, reps)?);
            baton.pass()?;
        }
        Ok(median(&mut self.last.clone()))
    }

    /// Records `conv(ms)` under `key` in `out` and, paired, each block's `conv` in its
    /// round (from the last `median_ms`).
    fn put(&mut self, out: &mut Map<String, Value>, key: &str, ms: f64, conv: impl Fn(f64) -> f64) {
        out.insert(key.into(), json!(conv(ms)));
        for (round, &m) in self.rounds.iter_mut().zip(&self.last) {
            round.insert(key.into(), json!(conv(m)));
        }
    }
}

/// The middle value of `t` (the upper one of an even count), in ms.
fn median(t: &mut [f64]) -> f64 {
    t.sort_by(|a, b| a.total_cmp(b));
    t[t.len() / 2]
}

/// Median milliseconds of `reps` calls of `f` after `warmup` calls, never paired.
fn alone_ms(warmup: usize, reps: usize, mut f: impl FnMut() -> Result<()> + Send) -> Result<f64> {
    // Each call on the CPU pool, as the Trainer runs its steps (`in_pool`).
    let mut call = || in_pool(&mut f);
    for _ in 0..warmup {
        call()?;
    }
    timed(&mut call, reps)
}

/// Median milliseconds of `reps` timed calls of `call`.
fn timed(call: &mut impl FnMut() -> Result<()>, reps: usize) -> Result<f64> {
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            call().map(|_| s.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_>>()?;
    Ok(median(&mut t))
}

struct Mlp(Linear, Linear, Linear);

impl Mlp {
    /// 784-256-256-10, as `bench/torch_peer.py` builds it.
    fn new(vb: &candle_nn::VarBuilder) -> candle_core::Result<Self> {
        Ok(Mlp(
            linear(784, 256, vb.pp("fc1"))?,
            linear(256, 256, vb.pp("fc2"))?,
            linear(256, 10, vb.pp("fc3"))?,
        ))
    }
}

impl Forward for Mlp {
    fn forward_t(&self, xs: &Tensor, _mode: &Mode) -> candle_core::Result<Tensor> {
        let h = taper::nn::relu(&self.0.forward(&xs.flatten_from(1)?)?)?;
        let h = taper::nn::relu(&self.1.forward(&h)?)?;
        self.2.forward(&h)
    }
}

fn step_case<M: Forward + Sync + Send>(
    timer: &mut Timer,
    model: M,
    vm: VarMap,
    x: Tensor,
    y: Tensor,
    reps: usize,
) -> Result<f64> {
    let mut clf = Classifier::new(model, vm.clone());
    let mut opt = Optimizers::single(Adam::new(named_vars(&vm, ""), AdamConfig::adamw(1e-3)));
    let batch = taper::train::data::TensorBatch::new(vec![x, y])?;
    let mut it = 0u64;
    timer.median_ms(5, reps, || {
        let ctx = StepContext::new(0, 0, 0, it);
        it += 1;
        clf.train_step(&batch, &ctx, &mut opt)?.metrics()?;
        Ok(())
    })
}

/// Trainable parameters of `vm` (the gradient an all-reduce moves: 4 bytes each).
fn param_count(vm: &VarMap) -> usize {
    vm.all_vars().iter().map(|v| v.elem_count()).sum()
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.to_string())
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() -> Result<()> {
    let args = Args::parse();
    // Nothing is trained or resumed here.
    args.common.reject("bench_steps", ExampleArgs::TRAINING)?;
    args.common.reject("bench_steps", &["resume"])?;
    let c = &args.common;
    let dev = c.device()?;
    let mut out = Map::new();
    let vbf = |vm: &VarMap| taper::nn::init::seeded_var_builder(vm, 0, DType::F32, &dev);
    let labels =
        |n: usize| Tensor::from_vec((0..n as u32).map(|i| i % 10).collect::<Vec<_>>(), n, &dev);

    let want =
        |case: &str| args.only.is_empty() || args.only.iter().any(|o| case.contains(o.as_str()));
    // Paired: the baton before any work, so that this process's set-up never runs
    // during the peer's timed block.
    let baton = match args.baton.as_slice() {
        [] => None,
        [mine, theirs] => Some(Baton::take_first(mine, theirs)?),
        other => anyhow::bail!("--baton takes two pipes, MINE,THEIRS; got {}", other.len()),
    };
    let mut timer = Timer::new(baton, args.blocks);

    // Matmul ceiling: Taper's GEMM (`kernels::gemm`, what its layers call), and
    // candle's `Tensor::matmul` beside it. Candle's runs first: whichever ran
    // first measured up to 40 % low (the pool and the output pages warming up).
    let mut gflops = f64::NAN;
    if want("matmul") || want("mlp") {
        let n = 1024;
        let flop = 2.0 * (n as f64).powi(3);
        let a = Tensor::randn(0f32, 1.0, (n, n), &dev)?;
        let ms = alone_ms(3, 10, || {
            a.matmul(&a)?.sum_all()?.to_scalar::<f32>()?;
            Ok(())
        })?;
        out.insert(
            "matmul_candle_gflops".into(),
            json!(flop / (ms / 1e3) / 1e9),
        );
        let av = a.flatten_all()?.to_vec1::<f32>()?;
        let mut c = vec![0f32; n * n];
        let threads = rayon::current_num_threads();
        let ms = timer.median_ms(3, 10, || {
            let m = taper::nn::kernels::MatRef::rows(&av, n);
            taper::nn::kernels::gemm(&mut c, n, m, m, (n, n, n), false, threads);
            Ok(())
        })?;
        let to_gflops = |ms: f64| flop / (ms / 1e3) / 1e9;
        timer.put(&mut out, "matmul_gflops", ms, to_gflops);
        gflops = to_gflops(ms);
        out.insert("gemm".into(), json!(taper::nn::kernels::blas::backend()));
    }

    // Training steps.
    if want("mlp") {
        let vm = VarMap::new();
        let vb = vbf(&vm);
        let mlp = Mlp::new(&vb)?;
        out.insert("params_mlp".into(), json!(param_count(&vm)));
        let mlp_ms = step_case(
            &mut timer,
            mlp,
            vm,
            Tensor::randn(0f32, 1.0, (128, 784), &dev)?,
            labels(128)?,
            args.reps,
        )?;
        timer.put(&mut out, "step_mlp_ms", mlp_ms, |ms| ms);
        // 3 matmuls forward, 6 backward, of the MLP's sizes: its share of the ceiling.
        let mlp_flops = 3.0 * 2.0 * 128.0 * (784.0 * 256.0 + 256.0 * 256.0 + 256.0 * 10.0);
        out.insert(
            "step_mlp_fraction_of_matmul_ceiling".into(),
            json!(mlp_flops / (mlp_ms / 1e3) / 1e9 / gflops),
        );
    }
    if want("lenet") {
        let vm = VarMap::new();
        let lenet = LeNet::new(LeNetConfig::mnist(), vbf(&vm))?;
        out.insert("params_lenet".into(), json!(param_count(&vm)));
        let ms = step_case(
            &mut timer,
            lenet,
            vm,
            Tensor::randn(0f32, 1.0, (64, 1, 28, 28), &dev)?,
            labels(64)?,
            args.reps,
        )?;
        timer.put(&mut out, "step_lenet_ms", ms, |ms| ms);
    }
    // Step time against batch size: how the cost grows with the work.
    for &b in &args.batch_sweep {
        let vm = VarMap::new();
        let vb = vbf(&vm);
        let mlp = Mlp::new(&vb)?;
        let x = Tensor::randn(0f32, 1.0, (b, 784), &dev)?;
        let ms = step_case(&mut timer, mlp, vm, x, labels(b)?, args.reps)?;
        timer.put(&mut out, &format!("sweep_mlp_b{b}_ms"), ms, |ms| ms);
        let vm = VarMap::new();
        let lenet = LeNet::new(LeNetConfig::mnist(), vbf(&vm))?;
        let x = Tensor::randn(0f32, 1.0, (b, 1, 28, 28), &dev)?;
        let ms = step_case(&mut timer, lenet, vm, x, labels(b)?, args.reps.min(10))?;
        timer.put(&mut out, &format!("sweep_lenet_b{b}_ms"), ms, |ms| ms);
    }
    if want("cnn_bn") {
        let vm = VarMap::new();
        let cnn = Cnn::new(CnnConfig::mnist(), vbf(&vm))?;
        out.insert("params_cnn_bn".into(), json!(param_count(&vm)));
        let ms = step_case(
            &mut timer,
            cnn,
            vm,
            Tensor::randn(0f32, 1.0, (64, 1, 28, 28), &dev)?,
            labels(64)?,
            args.reps.min(10),
        )?;
        timer.put(&mut out, "step_cnn_bn_ms", ms, |ms| ms);
    }

    // A DCGAN step: discriminator update, then generator update (MNIST shapes).
    if want("dcgan") {
        let vm = VarMap::new();
        let mut gan = Dcgan::new(DcganConfig::mnist(), &vm, 0, &dev)?;
        let mut gopt = gan.optimizers(GanOptimConfig::default());
        out.insert("params_dcgan".into(), json!(param_count(&vm)));
        let real = Tensor::rand(0f32, 1.0, (64, 1, 28, 28), &dev)?.affine(2.0, -1.0)?;
        let batch = taper::train::data::TensorBatch::new(vec![real, labels(64)?])?;
        let mut it = 0u64;
        let ms = timer.median_ms(3, args.reps.min(10), || {
            let ctx = StepContext::new(0, 0, 0, it);
            it += 1;
            gan.train_step(&batch, &ctx, &mut gopt)?.metrics()?;
            Ok(())
        })?;
        timer.put(&mut out, "step_dcgan_ms", ms, |ms| ms);
    }

    // Sequence-to-sequence training steps (teacher forcing, Adam): the LSTM with
    // additive attention and the Transformer, on synthetic ids of fixed length.
    // bench/torch_peer.py builds the same sizes from bench/seq2seq_torch.py's model
    // and torch.nn.Transformer.
    if want("seq2seq") || want("transformer") || !args.len_sweep.is_empty() {
        const VOCAB: usize = 4000;
        let ids = |rows: usize, len: usize, salt: usize| -> Vec<Vec<u32>> {
            (0..rows)
                .map(|i| {
                    (0..len)
                        .map(|j| (4 + (i * 7919 + j * 104_729 + salt * 31) % (VOCAB - 4)) as u32)
                        .collect()
                })
                .collect()
        };
        let mut cases: Vec<(String, &str, usize)> = [("seq2seq", 20), ("transformer", 32)]
            .into_iter()
            .filter(|(name, _)| want(name))
            .map(|(name, len)| (format!("step_{name}_ms"), name, len))
            .collect();
        cases.extend(
            args.len_sweep
                .iter()
                .map(|&l| (format!("sweep_transformer_len{l}_ms"), "transformer", l)),
        );
        for (key, name, len) in cases {
            let (src, tgt) = (ids(32, len, 1), ids(32, len, 2));
            let src: Vec<&[u32]> = src.iter().map(|r| r.as_slice()).collect();
            let tgt: Vec<&[u32]> = tgt.iter().map(|r| r.as_slice()).collect();
            let batch = Seq2SeqBatch::new(&src, &tgt, &dev)?;
            let vm = VarMap::new();
            let model: Box<dyn Seq2Seq> = if name == "seq2seq" {
                Box::new(rnn_seq2seq(
                    RnnSeq2SeqConfig {
                        cell: CellKind::Lstm,
                        src_vocab: VOCAB,
                        tgt_vocab: VOCAB,
                        emb: 256,
                        hidden: 256,
                        enc_layers: 1,
                        dec_layers: 1,
                        bidirectional: true,
                        attention: AttentionKind::Additive,
                        dropout: 0.1,
                        max_src_len: len,
                        max_tgt_len: len + 1,
                    },
                    vbf(&vm),
                )?)
            } else {
                Box::new(transformer(
                    TransformerConfig {
                        src_vocab: VOCAB,
                        tgt_vocab: VOCAB,
                        d_model: 256,
                        heads: 4,
                        ffn: 1024,
                        enc_layers: 2,
                        dec_layers: 2,
                        dropout: 0.1,
                        max_len: len + 1,
                        positions: Positions::Sinusoidal,
                    },
                    vbf(&vm),
                )?)
            };
            out.insert(format!("params_{name}"), json!(param_count(&vm)));
            let mut task = Seq2SeqTrainer {
                model,
                varmap: vm.clone(),
                label_smoothing: if name == "seq2seq" { 0.0 } else { 0.1 },
                teacher_forcing: TeacherForcing::always(),
                seed: 0,
                valid_bleu: false,
            };
            let mut opt = Optimizers::single(Adam::new(
                named_vars(&vm, ""),
                AdamConfig {
                    lr: 1e-3,
                    ..Default::default()
                },
            ));
            let mut it = 0u64;
            let ms = timer.median_ms(3, args.reps.min(10), || {
                let ctx = StepContext::new(0, 0, 0, it);
                it += 1;
                task.train_step(&batch, &ctx, &mut opt)?.metrics()?;
                Ok(())
            })?;
            timer.put(&mut out, &key, ms, |ms| ms);
        }
    }

    // Inference throughput of the CNN.
    if want("infer") {
        let vm = VarMap::new();
        let cnn = Cnn::new(CnnConfig::mnist(), vbf(&vm))?;
        for b in [1usize, 256] {
            let x = Tensor::randn(0f32, 1.0, (b, 1, 28, 28), &dev)?;
            // 400 repetitions at batch 1 (about half a second): with 50 the median
            // moved by 30 % between runs.
            let ms = timer.median_ms(3, if b == 1 { 400 } else { 5 }, || {
                cnn.forward_t(&x, &Mode::eval())?
                    .sum_all()?
                    .to_scalar::<f32>()?;
                Ok(())
            })?;
            let key = format!("infer_cnn_b{b}_images_per_s");
            timer.put(&mut out, &key, ms, |ms| b as f64 / (ms / 1e3));
        }
    }

    // Preprocessing: resize, random crop, rotate, flip, normalize on the asset photos.
    if want("preprocess") {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let photos = [
            open_image(&root.join("china.jpg"))?,
            open_image(&root.join("flower.jpg"))?,
        ];
        let pipeline = Compose::new()
            .then(Resize::new(256, 256))
            .then(RandomCrop {
                width: 224,
                height: 224,
                padding: 0,
            })
            .then(RandomRotation { max_degrees: 15.0 })
            .then(HorizontalFlip { p: 0.5 });
        let norm = Normalize::imagenet();
        let n = 32usize;
        let batch: Vec<_> = (0..n).map(|i| photos[i % 2].clone()).collect();
        let mut round = 0u64;
        let ms = timer.median_ms(2, 20, || {
            let seeds: Vec<u64> = (0..n as u64).map(|i| round * 1000 + i).collect();
            round += 1;
            let imgs = pipeline.apply_batch(&batch, &seeds)?;
            to_tensor_batch(&imgs, 3, Some(&norm), &Device::Cpu)?;
            Ok(())
        })?;
        timer.put(&mut out, "preprocess_images_per_s", ms, |ms| {
            n as f64 / (ms / 1e3)
        });
    }

    if args.mnist {
        let dir = require_dir(&c.data_root(), "mnist")?;
        let (x, y) = load_mnist(&dir, Split::Train)?;
        let (tx, ty) = load_mnist(&dir, Split::Test)?;
        let norm = Normalize::mnist();
        let train = DataLoader::new(
            InMemoryImages::from_tensors(&x, &y, &dev)?.with_normalize(norm.clone()),
            LoaderConfig::train(64, 0),
        )?;
        let test = DataLoader::new(
            InMemoryImages::from_tensors(&tx, &ty, &dev)?.with_normalize(norm),
            LoaderConfig::eval(1000),
        )?;
        let vm = VarMap::new();
        let mut clf = Classifier::new(LeNet::new(LeNetConfig::mnist(), vbf(&vm))?, vm.clone());
        let steps = train.num_batches();
        let mut opt = Optimizers::new().with_group(
            "model",
            Adam::new(named_vars(&vm, ""), AdamConfig::adamw(3e-3)),
            OneCycle::new(3e-3, steps),
            Clip::None,
        );
        // Time to 98.5 %: evaluate every 100 steps (evaluation time excluded).
        let t0 = Instant::now();
        let mut eval_secs = 0.0;
        let mut reached: Option<f64> = None;
        for (i, b) in train.epoch(0, 0).enumerate() {
            let ctx = StepContext::new(0, 0, i, i as u64);
            let b = b?;
            // On the CPU pool, as the Trainer runs its steps.
            in_pool(|| clf.train_step(&b, &ctx, &mut opt)?.metrics())?;
            if reached.is_none() && (i + 1) % 100 == 0 {
                let e = Instant::now();
                let acc = Trainer::evaluate(&mut clf, &test)?
                    .mean("accuracy")
                    .unwrap_or(0.0);
                eval_secs += e.elapsed().as_secs_f64();
                if acc >= 0.985 {
                    reached = Some(t0.elapsed().as_secs_f64() - eval_secs);
                }
            }
        }
        out.insert(
            "mnist_lenet_epoch_s".into(),
            json!(t0.elapsed().as_secs_f64() - eval_secs),
        );
        let acc = Trainer::evaluate(&mut clf, &test)?
            .mean("accuracy")
            .unwrap_or(0.0);
        out.insert("mnist_lenet_epoch_test_accuracy".into(), json!(acc));
        out.insert("mnist_lenet_seconds_to_98_5".into(), json!(reached));
    }
    out.insert("peak_rss_mb".into(), json!(peak_rss_mb()));
    let threads = json!(candle_core::utils::get_num_threads());
    out.insert("threads".into(), threads.clone());
    if let Some(pattern) = &args.rounds_out {
        for (r, mut round) in timer.rounds.into_iter().enumerate() {
            round.insert("threads".into(), threads.clone());
            let path = pattern.replace("{r}", &(r + 1).to_string());
            std::fs::write(&path, format!("{}\n", Value::Object(round)))
                .map_err(|e| anyhow::anyhow!("writing {path}: {e}"))?;
        }
    }
    println!("{}", Value::Object(out));
    Ok(())
}
