//! Field faults (issue 21): inputs of the kinds that broke PyTorch, torchvision,
//! sacreBLEU, scipy, HF tokenizers and the image and flate2 crates for their
//! users, each with the right value from the tool named (reference scripts under
//! `tools/` where one is named). Each test failed before its fix.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use std::io::Write;
use std::path::Path;
use taper::nn::{Forward, Mode};
use taper::train::data::{DataLoader, Dataset, LoaderConfig, StackBatcher, TensorDataset};
use taper::train::schedule::{LrSchedule, OneCycle};
use taper::train::{Classifier, Error, Optimizers, Trainer, TrainerConfig};

/// Row 1. sacreBLEU 2.6.0 `CHRF()` (tools/field_faults_reference.py): a reference
/// shorter than an n-gram order contributes no hypothesis n-grams of that order.
#[test]
fn chrf_with_references_shorter_than_the_order() {
    use taper::nlp::metrics::corpus_chrf;
    let s = corpus_chrf(
        &["abcdefgh", "the cat sat on the mat"],
        &[vec!["abc", "the cat sat on the mat"]],
    )
    .unwrap();
    assert!((s.score - 97.6058).abs() < 1e-4, "{}", s.score);
    let s = corpus_chrf(
        &["hello world", "the cat sat on the mat"],
        &[vec!["", "the cat sat on the mat"]],
    )
    .unwrap();
    assert!((s.score - 100.0).abs() < 1e-9, "{}", s.score);
}

/// Row 2. scipy `pearsonr` gives NaN for a constant input (and warns); the mean
/// of a constant column is not always that constant after rounding. R² of a
/// constant target follows scikit-learn's convention (1 for a perfect fit, else 0).
#[test]
fn correlation_and_r2_of_constant_columns() {
    use taper::train::metrics::{pearson, spearman};
    let (a, b) = (vec![1.81; 1448], vec![0.576; 1448]);
    assert!(pearson(&a, &b).is_nan());
    let ramp: Vec<f64> = (0..254).map(|i| i as f64).collect();
    assert!(pearson(&[0.3; 254], &ramp).is_nan());
    assert!(pearson(&[0.1; 3], &[0.1; 3]).is_nan());
    assert!(spearman(&[0.3; 254], &ramp).is_nan());
    assert!((pearson(&ramp, &ramp) - 1.0).abs() < 1e-12);
    use taper::regression::metrics::r2;
    assert_eq!(r2(&a, &a).unwrap(), 1.0);
    assert_eq!(r2(&a, &[1.8; 1448]).unwrap(), 0.0);
}

/// Row 3. A truncation shorter than the special tokens a tokenizer adds: HF
/// tokenizers 0.23 subtracts them (a panic in debug builds, no truncation in
/// release). Taper refuses it with a typed error.
#[test]
fn truncation_shorter_than_the_added_special_tokens() {
    use taper::nlp::{Tokenizer, TokenizerConfig, TokenizerKind};
    let cfg = TokenizerConfig {
        kind: TokenizerKind::WordLevel,
        vocab_size: 100,
        min_frequency: 1,
        wrap: Some(("<s>".into(), "</s>".into())),
        ..Default::default()
    };
    let text = "one two three four five six";
    let mut t = Tokenizer::train_from_texts(&cfg, [text].into_iter()).unwrap();
    let e = t.set_truncation(Some(1)).unwrap_err().to_string();
    assert!(e.contains("shorter than the 2 special tokens"), "{e}");
    t.set_truncation(Some(3)).unwrap();
    let ids = t.encode(text, true).unwrap();
    assert_eq!(ids.len(), 3, "{ids:?}");
    // A tokenizer.json carrying such a truncation is refused when loaded.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tokenizer.json");
    t.save(&p).unwrap();
    let json = std::fs::read_to_string(&p)
        .unwrap()
        .replace("\"max_length\": 3", "\"max_length\": 1");
    assert!(json.contains("\"max_length\": 1"));
    std::fs::write(&p, json).unwrap();
    let e = Tokenizer::load(&p).err().unwrap().to_string();
    assert!(
        e.contains("tokenizer.json") && e.contains("special tokens"),
        "{e}"
    );
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Row 4. A gzip file of two members (`cat a.gz b.gz`, as pigz and bgzip write):
/// Python's gzip and `gzip -dc` read every member.
#[test]
fn multi_member_gzip_is_read_whole() {
    use taper::regression::{load_csv, CsvOptions};
    let mut first = String::from("a,b,y\n");
    let mut second = String::new();
    for i in 0..12 {
        let row = format!("{i},{},{}\n", i * 2, i % 2);
        if i < 6 {
            first.push_str(&row);
        } else {
            second.push_str(&row);
        }
    }
    let mut bytes = gzip(first.as_bytes());
    bytes.extend(gzip(second.as_bytes()));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("two-members.csv.gz");
    std::fs::write(&p, bytes).unwrap();
    let d = load_csv(&p, &CsvOptions::default()).unwrap();
    assert_eq!(d.x.nrows(), 12);
    assert_eq!(d.y[11], 1.0);
    // The IDX reader (MNIST) takes the same path.
    let mut idx = vec![0u8, 0, 0x08, 1];
    idx.extend_from_slice(&6u32.to_be_bytes());
    let (head, tail) = ([idx, vec![1, 2, 3]].concat(), vec![4u8, 5, 6]);
    let mut bytes = gzip(&head);
    bytes.extend(gzip(&tail));
    let p = dir.path().join("labels-idx1-ubyte.gz");
    std::fs::write(&p, bytes).unwrap();
    let idx = taper::vision::datasets::read_idx(&p).unwrap();
    assert_eq!(idx.data.len(), 6);
}

fn png(path: &Path, colour: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(8, 8, image::Rgb([colour, 0, 0]))
        .save(path)
        .unwrap();
}

/// Row 5. A hidden `.ipynb_checkpoints/` beside the class folders is not a
/// class (torchvision's `ImageFolder` counts it and shifts every label by one).
#[test]
fn hidden_entries_are_not_classes() {
    use taper::vision::datasets::{ImageFolder, OnBadFile};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    png(&root.join("cat/a.png"), 10);
    png(&root.join("dog/b.png"), 200);
    png(&root.join("dog/.hidden.png"), 1);
    std::fs::create_dir_all(root.join(".ipynb_checkpoints")).unwrap();
    std::fs::write(root.join(".ipynb_checkpoints/x-checkpoint.ipynb"), "{}").unwrap();
    png(&root.join(".ipynb_checkpoints/c.png"), 5);
    let f = ImageFolder::open(root, 3, OnBadFile::Fail).unwrap();
    assert_eq!(f.classes(), ["cat", "dog"]);
    let labels: Vec<u32> = f.items().iter().map(|(_, l)| *l).collect();
    assert_eq!(labels, [0, 1]);
}

/// A PNG of `w` x `h` RGBA pixels, all zero, written without holding the image
/// in memory (576 MB decoded for 12000 x 12000).
fn big_rgba_png(path: &Path, w: u32, h: u32) {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut c = flate2::Crc::new();
        c.update(kind);
        c.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&c.sum().to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    let row = vec![0u8; 1 + 4 * w as usize];
    for _ in 0..h {
        z.write_all(&row).unwrap();
    }
    chunk(&mut out, b"IDAT", &z.finish().unwrap());
    chunk(&mut out, b"IEND", &[]);
    std::fs::write(path, out).unwrap();
}

/// Row 6. An image whose decoding needs more than the 512 MiB limit is found
/// when the folder is opened: skipped and listed, or named by the error.
#[test]
fn oversized_images_are_found_when_the_folder_opens() {
    use taper::vision::datasets::{ImageFolder, OnBadFile};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    png(&root.join("a/small.png"), 10);
    std::fs::create_dir_all(root.join("b")).unwrap();
    let big = root.join("b/huge.png");
    big_rgba_png(&big, 12000, 12000);
    let f = ImageFolder::open(root, 3, OnBadFile::Skip).unwrap();
    assert_eq!(f.items().len(), 1);
    assert_eq!(f.skipped().len(), 1, "{:?}", f.skipped());
    assert_eq!(f.skipped()[0].0, big);
    assert!(f.skipped()[0].1.contains("512 MiB"), "{:?}", f.skipped());
    let e = ImageFolder::open(root, 3, OnBadFile::Fail)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("huge.png") && e.contains("549 MiB"), "{e}");
}

/// Row 7. One-cycle schedules with a warm-up of one step or a cycle of one or
/// two steps: PyTorch divides zero by zero there; every rate must be finite.
#[test]
fn one_cycle_is_finite_for_degenerate_phases() {
    for (total, pct) in [(10, 0.1), (2, 0.5), (1, 1.0), (3, 0.0), (0, 0.3)] {
        let s = OneCycle {
            pct_start: pct,
            ..OneCycle::new(0.1, total)
        };
        for step in 0..total + 3 {
            let lr = s.learning_rate(step);
            assert!(
                lr.is_finite() && lr > 0.0,
                "total {total} pct {pct} step {step}: {lr}"
            );
            assert!(lr <= 0.1 + 1e-12);
        }
    }
    // The warm-up of one step ends at the peak.
    let one = OneCycle {
        pct_start: 0.1,
        ..OneCycle::new(0.1, 10)
    };
    assert!((one.learning_rate(0) - 0.1).abs() < 1e-12);
}

fn blobs(n: usize) -> TensorDataset {
    let x: Vec<f32> = (0..n * 4)
        .map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0 + if i % 4 == (i / 4) % 3 { 2.0 } else { 0.0 })
        .collect();
    let y: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
    TensorDataset::new(
        vec![
            Tensor::from_vec(x, (n, 4), &Device::Cpu).unwrap(),
            Tensor::from_vec(y, n, &Device::Cpu).unwrap(),
        ],
        &Device::Cpu,
    )
    .unwrap()
}

struct Mlp(taper::nn::Linear);

impl Forward for Mlp {
    fn forward_t(&self, x: &Tensor, _mode: &Mode) -> candle_core::Result<Tensor> {
        candle_core::Module::forward(&self.0, x)
    }
}

fn classifier(classes: usize) -> (Classifier<Mlp>, Optimizers) {
    use taper::train::optim::{named_vars, Sgd, SgdConfig};
    let vm = VarMap::new();
    let vb = taper::nn::init::seeded_var_builder(&vm, 1, DType::F32, &Device::Cpu);
    let net = Mlp(taper::nn::linear(4, classes, vb.pp("fc")).unwrap());
    let opt = Optimizers::single(Sgd::new(named_vars(&vm, ""), SgdConfig::default()));
    (Classifier::new(net, vm), opt)
}

/// Stops the run with an error after `at` steps (a crash after a mid-epoch
/// checkpoint).
struct CrashAt(u64);

impl taper::train::Callback for CrashAt {
    fn on_step_end(&mut self, info: &taper::train::StepInfo) -> taper::train::Result<()> {
        if info.iteration >= self.0 {
            return Err(Error::Data("simulated crash".into()));
        }
        Ok(())
    }
}

/// Row 8. Resuming a checkpoint written mid-epoch with another batch size would
/// skip the wrong items: a typed error naming both sizes; the same size resumes.
#[test]
fn resuming_mid_epoch_with_another_batch_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |resume: bool| TrainerConfig {
        epochs: 2,
        run_dir: Some(dir.path().to_path_buf()),
        checkpoint_every: Some(2),
        resume,
        progress: false,
        verbose: false,
        ..Default::default()
    };
    let loader = |b: usize| DataLoader::new(blobs(60), LoaderConfig::train(b, 3)).unwrap();
    let (mut m, mut opt) = classifier(3);
    let e = Trainer::new(cfg(false))
        .with_callback(CrashAt(5))
        .fit(&mut m, &mut opt, &loader(10), None)
        .unwrap_err();
    assert!(e.to_string().contains("simulated crash"));
    let (mut m, mut opt) = classifier(3);
    let e = Trainer::new(cfg(true))
        .fit(&mut m, &mut opt, &loader(20), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("batch size 10 → 20") && e.contains("mid-epoch"),
        "{e}"
    );
    let (mut m, mut opt) = classifier(3);
    let report = Trainer::new(cfg(true))
        .fit(&mut m, &mut opt, &loader(10), None)
        .unwrap();
    assert_eq!(report.history.len(), 2);
}

/// A data set whose item 5 panics, as a buggy user transform would.
struct Panicky(TensorDataset);

impl Dataset for Panicky {
    type Item = Vec<Tensor>;
    fn len(&self) -> usize {
        Dataset::len(&self.0)
    }
    fn get(&self, i: usize) -> taper::train::Result<Vec<Tensor>> {
        if i == 5 {
            panic!("corrupt record");
        }
        self.0.get(i)
    }
}

/// Row 9. A panic while the background loader builds a batch reaches the caller
/// as an error naming the item, and the epoch is not counted as trained.
#[test]
fn a_panicking_data_set_is_an_error_naming_the_item() {
    for prefetch in [0, 2] {
        let cfg = LoaderConfig {
            prefetch,
            ..LoaderConfig::train(8, 1)
        };
        let loader =
            DataLoader::from_dataset(Panicky(blobs(40)), StackBatcher::new(&Device::Cpu), cfg)
                .unwrap();
        let results: Vec<_> = loader.epoch(0, 0).collect();
        let errors: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
            .collect();
        assert_eq!(errors.len(), 1, "prefetch {prefetch}: {errors:?}");
        assert!(
            errors[0].contains("item 5") && errors[0].contains("corrupt record"),
            "{}",
            errors[0]
        );
        let dir = tempfile::tempdir().unwrap();
        let (mut m, mut opt) = classifier(3);
        let e = Trainer::new(TrainerConfig {
            run_dir: Some(dir.path().to_path_buf()),
            progress: false,
            verbose: false,
            ..Default::default()
        })
        .fit(&mut m, &mut opt, &loader, None)
        .unwrap_err();
        assert!(e.to_string().contains("item 5"), "{e}");
        assert!(!dir.path().join("checkpoints/latest.json").exists());
    }
}

/// Row 10. f16 attention where every key of a query is padding: the -1e9 fill
/// becomes -inf in f16; the row must be uniform, as in f32 and bf16.
#[test]
fn fully_masked_rows_are_uniform_in_every_precision() {
    use taper::nn::attention::{masked_softmax, padding_bias};
    let mask = Tensor::new(&[[1f32, 1., 0.], [0., 0., 0.]], &Device::Cpu).unwrap();
    let bias = padding_bias(&mask).unwrap();
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        let scores = Tensor::zeros((2, 1, 3), dtype, &Device::Cpu).unwrap();
        let w: Vec<Vec<f32>> = masked_softmax(&scores, Some(&bias))
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .squeeze(1)
            .unwrap()
            .to_vec2()
            .unwrap();
        for v in &w[1] {
            assert!((v - 1.0 / 3.0).abs() < 2e-3, "{dtype:?}: {w:?}");
        }
        assert!(
            (w[0][0] - 0.5).abs() < 2e-3 && w[0][2] == 0.0,
            "{dtype:?}: {w:?}"
        );
    }
}

/// Row 11. Max-pool with tied maxima: the first maximum takes the gradient (as
/// PyTorch), on the CPU kernel and on the portable path other devices take.
#[test]
fn max_pool_gives_tied_maxima_one_gradient() {
    let x =
        Var::from_tensor(&Tensor::ones((1, 1, 2, 2), DType::F32, &Device::Cpu).unwrap()).unwrap();
    for (name, y) in [
        ("kernel", taper::nn::max_pool2d(x.as_tensor(), 2).unwrap()),
        (
            "portable",
            taper::nn::pool::max_pool2d_reshape(x.as_tensor(), 2).unwrap(),
        ),
    ] {
        let g = y.sum_all().unwrap().backward().unwrap();
        let g: Vec<f32> = g.get(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(g, [1.0, 0.0, 0.0, 0.0], "{name}");
    }
    // f16 on the CPU takes the portable path too.
    let h = x.as_tensor().to_dtype(DType::F16).unwrap();
    let v = Var::from_tensor(&h).unwrap();
    let g = taper::nn::max_pool2d(v.as_tensor(), 2)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g: Vec<f32> = g
        .get(&v)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(g, [1.0, 0.0, 0.0, 0.0]);
}

/// A label outside the model's classes is a typed error naming the label and the
/// class count (candle said "gather invalid index 3 with dim size 3").
#[test]
fn labels_outside_the_classes_are_named() {
    let x = Tensor::zeros((4, 4), DType::F32, &Device::Cpu).unwrap();
    let y = Tensor::new(&[0u32, 1, 3, 2], &Device::Cpu).unwrap();
    let ds = TensorDataset::new(vec![x, y], &Device::Cpu).unwrap();
    let (mut m, mut opt) = classifier(3);
    let e = Trainer::new(TrainerConfig {
        progress: false,
        verbose: false,
        ..Default::default()
    })
    .fit(
        &mut m,
        &mut opt,
        &DataLoader::new(ds, LoaderConfig::eval(4)).unwrap(),
        None,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Label {
                label: 3,
                classes: 3
            }
        ),
        "{e}"
    );
}

/// A monitored metric no step produces is an error when training starts, naming
/// the metrics there are (it used to turn early stopping off without a word).
#[test]
fn a_monitored_metric_that_does_not_exist_is_an_error() {
    use taper::train::schedule::Direction;
    let loader = DataLoader::new(blobs(30), LoaderConfig::train(10, 1)).unwrap();
    for key in ["valid.acuracy", "train.acuracy"] {
        let (mut m, mut opt) = classifier(3);
        let e = Trainer::new(TrainerConfig {
            monitor: Some((key.into(), Direction::Max)),
            early_stopping_patience: Some(2),
            progress: false,
            verbose: false,
            ..Default::default()
        })
        .fit(&mut m, &mut opt, &loader, Some(&loader))
        .unwrap_err()
        .to_string();
        assert!(e.contains(key) && e.contains("accuracy, loss"), "{e}");
    }
}

/// Panics reachable from a caller: an id out of range, a batch without fields, a
/// subset past the end.
#[test]
fn out_of_range_ids_are_typed_errors() {
    use taper::nlp::data::EncodedPairs;
    use taper::nlp::{Vocab, VocabConfig, WordVectors};
    let vocab = Vocab::from_counts(
        [("a", 3), ("b", 2), ("c", 1)],
        &VocabConfig::default(),
        "test",
    )
    .unwrap();
    let n = vocab.len();
    let wv = WordVectors::new(vocab, 2, vec![0.5; n * 2]).unwrap();
    assert_eq!(wv.row(0).unwrap(), [0.5, 0.5]);
    let e = wv.row(n as u32).unwrap_err().to_string();
    assert!(
        e.contains(&format!("id {n} is out of range for {n}")),
        "{e}"
    );
    let e = taper::train::data::TensorBatch::new(vec![])
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least one field"), "{e}");
    let pairs = EncodedPairs {
        src: vec![vec![4, 5]],
        tgt: vec![vec![6]],
    };
    let e = pairs.subset(&[0, 3]).unwrap_err().to_string();
    assert!(e.contains("id 3 is out of range for 1"), "{e}");
}
